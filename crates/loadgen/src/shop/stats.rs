//! What the shopper workload measured: a latency histogram and the statuses seen per operation,
//! the messages of every refusal and failure (bounded), and the report made of them (Markdown for
//! people, JSON for scripts).

use std::collections::BTreeMap;
use std::error::Error as _;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tonic::{Code, Status};

use super::api::CLIENT_DEADLINE_MESSAGE;
use super::mix::Op;
use super::timeline::{self, Bucket, Timeline};

/// Latencies are recorded in microseconds up to this (longer ones count as this long).
const MAX_LATENCY_US: u64 = 120_000_000;
/// Distinct refusal messages kept per operation and status; the rest are counted together.
const MESSAGES_PER_STATUS: usize = 8;
/// Distinct INTERNAL/UNKNOWN answers kept (each with its count).
const MAX_FAULTS: usize = 20;
/// What a status's messages are grouped under once [`MESSAGES_PER_STATUS`] are kept.
const OTHER_MESSAGES: &str = "(other messages)";

/// How one call ended, as the report names it: `OK`, a status code the service sent
/// (`FAILED_PRECONDITION`), a code tonic made up locally for a broken or refused connection
/// (`UNAVAILABLE (transport)`), or loadgen's own deadline (`DEADLINE_EXCEEDED (client)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The gRPC code.
    pub code: Code,
    /// Where the status came from.
    pub origin: Origin,
}

/// Where a status came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The service answered with it (grpc-status in the trailers), or the call succeeded.
    Service,
    /// tonic made it from a transport error (connection refused, reset, stream broken): the
    /// service never answered. A status from the wire has no source; these have one.
    Transport,
    /// loadgen's own deadline passed first.
    Client,
}

impl PartialOrd for Outcome {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Outcome {
    // By code number (OK first), then origin; `Code` itself has no order.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.code as i32, self.origin).cmp(&(other.code as i32, other.origin))
    }
}

impl Outcome {
    /// A successful call.
    pub const OK: Outcome = Outcome {
        code: Code::Ok,
        origin: Origin::Service,
    };

    /// How a call that failed with `status` ended.
    pub fn of(status: &Status) -> Outcome {
        let origin = if status.source().is_some() {
            Origin::Transport
        } else {
            Origin::Service
        };
        Outcome {
            code: status.code(),
            origin,
        }
    }

    /// loadgen's own deadline.
    pub fn client_deadline() -> Outcome {
        Outcome {
            code: Code::DeadlineExceeded,
            origin: Origin::Client,
        }
    }

    /// INTERNAL or UNKNOWN sent by a service: a bug in the service answering.
    pub fn is_fault(&self) -> bool {
        self.origin == Origin::Service && matches!(self.code, Code::Internal | Code::Unknown)
    }

    /// The report's name for it.
    pub fn label(&self) -> String {
        let name = code_name(self.code);
        match self.origin {
            Origin::Service => name.to_string(),
            Origin::Transport => format!("{name} (transport)"),
            Origin::Client => format!("{name} (client)"),
        }
    }
}

/// The canonical upper-case name of `code`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A message with every run of digits replaced by `N`, so "insufficient stock for product 12"
/// and "... product 7" count together; a word of six or more hex digits with a digit in it (an
/// error reference, an id) becomes one `N`, so "(ref 3fd799e)" and "(ref 1e14e51)" do too.
pub fn message_shape(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_alphanumeric() {
            let end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let word = &rest[..end];
            if word.len() >= 6
                && word.chars().all(|c| c.is_ascii_hexdigit())
                && word.chars().any(|c| c.is_ascii_digit())
            {
                out.push('N');
            } else {
                let mut in_digits = false;
                for c in word.chars() {
                    if c.is_ascii_digit() {
                        if !in_digits {
                            out.push('N');
                        }
                        in_digits = true;
                    } else {
                        out.push(c);
                        in_digits = false;
                    }
                }
            }
            rest = &rest[end..];
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// One operation's measurements.
#[derive(Debug, Clone)]
struct OpStats {
    latency_us: Histogram<u64>,
    statuses: BTreeMap<Outcome, u64>,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency_us: new_histogram(),
            statuses: BTreeMap::new(),
        }
    }

    fn count(&self) -> u64 {
        self.statuses.values().sum()
    }
}

fn new_histogram() -> Histogram<u64> {
    // Constant, valid bounds (1 µs to 2 min at 3 significant digits): this cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Everything recorded during a run (merged from every shopper).
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    ops: BTreeMap<Op, OpStats>,
    /// (op, status label, message shape) → count, at most [`MESSAGES_PER_STATUS`] shapes per
    /// (op, label).
    messages: BTreeMap<(Op, String, String), u64>,
    /// (op, status label, exact message) → count of INTERNAL/UNKNOWN answers.
    faults: BTreeMap<(Op, String, String), u64>,
    faults_left_off: u64,
    /// Checkout operations and refused attempts per second of the load.
    pub timeline: Timeline,
}

impl Recorder {
    /// Records one call of `op` that took `latency` and ended as `outcome` with `message`.
    pub fn record(&mut self, op: Op, latency: Duration, outcome: Outcome, message: &str) {
        let stats = self.ops.entry(op).or_insert_with(OpStats::new);
        let us = u64::try_from(latency.as_micros()).unwrap_or(MAX_LATENCY_US);
        stats
            .latency_us
            .saturating_record(us.clamp(1, MAX_LATENCY_US));
        *stats.statuses.entry(outcome.clone()).or_default() += 1;
        // A checkout's end-to-end status is its last attempt's, already listed under Checkout.
        if outcome.code == Code::Ok || op == Op::CheckoutEndToEnd {
            return;
        }
        let label = outcome.label();
        if outcome.is_fault() {
            let key = (op, label.clone(), message.to_string());
            if self.faults.contains_key(&key) || self.faults.len() < MAX_FAULTS {
                *self.faults.entry(key).or_default() += 1;
            } else {
                self.faults_left_off += 1;
            }
        }
        let mut shape = message_shape(message);
        let kept = self
            .messages
            .range((op, label.clone(), String::new())..)
            .take_while(|((o, l, _), _)| *o == op && *l == label)
            .count();
        if kept >= MESSAGES_PER_STATUS
            && !self
                .messages
                .contains_key(&(op, label.clone(), shape.clone()))
        {
            shape = OTHER_MESSAGES.to_string();
        }
        *self.messages.entry((op, label, shape)).or_default() += 1;
    }

    /// Records the answer to one call.
    pub fn record_result<T>(&mut self, op: Op, latency: Duration, result: &Result<T, Status>) {
        match result {
            Ok(_) => self.record(op, latency, Outcome::OK, ""),
            Err(status) => self.record(op, latency, outcome_of(status), status.message()),
        }
    }

    /// Adds everything `other` recorded.
    pub fn merge(&mut self, other: Recorder) {
        for (op, stats) in other.ops {
            let mine = self.ops.entry(op).or_insert_with(OpStats::new);
            // Same bounds on both sides: adding cannot fail.
            let _ = mine.latency_us.add(&stats.latency_us);
            for (outcome, n) in stats.statuses {
                *mine.statuses.entry(outcome).or_default() += n;
            }
        }
        for (key, n) in other.messages {
            *self.messages.entry(key).or_default() += n;
        }
        for (key, n) in other.faults {
            if self.faults.contains_key(&key) || self.faults.len() < MAX_FAULTS {
                *self.faults.entry(key).or_default() += n;
            } else {
                self.faults_left_off += n;
            }
        }
        self.faults_left_off += other.faults_left_off;
        self.timeline.merge(&other.timeline);
    }

    /// Calls recorded so far, and how many of them did not succeed.
    pub fn calls_and_failures(&self) -> (u64, u64) {
        self.ops.values().fold((0, 0), |(calls, failed), s| {
            let ok = s.statuses.get(&Outcome::OK).copied().unwrap_or(0);
            (calls + s.count(), failed + s.count() - ok)
        })
    }

    fn row(name: &str, stats: &OpStats, elapsed: Duration) -> OpRow {
        let h = &stats.latency_us;
        let ms = |us: u64| us as f64 / 1_000.0;
        let count = stats.count();
        OpRow {
            name: name.to_string(),
            count,
            rate_per_sec: count as f64 / elapsed.as_secs_f64().max(f64::EPSILON),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            statuses: stats
                .statuses
                .iter()
                .map(|(o, n)| (o.label(), *n))
                .collect(),
        }
    }

    /// The rows of `ops` (in that order, skipping those never called) and their total, over
    /// `elapsed`.
    pub fn rows(&self, ops: &[Op], elapsed: Duration) -> (Vec<OpRow>, OpRow) {
        let mut total = OpStats::new();
        let mut rows = Vec::new();
        for op in ops {
            if let Some(stats) = self.ops.get(op) {
                rows.push(Self::row(op.name(), stats, elapsed));
                let _ = total.latency_us.add(&stats.latency_us);
                for (outcome, n) in &stats.statuses {
                    *total.statuses.entry(outcome.clone()).or_default() += n;
                }
            }
        }
        (rows, Self::row("all", &total, elapsed))
    }

    /// INTERNAL/UNKNOWN answers so far.
    pub fn fault_count(&self) -> u64 {
        self.faults.values().sum::<u64>() + self.faults_left_off
    }

    /// Every refusal and failure message (shapes), most frequent first.
    pub fn message_rows(&self) -> Vec<MessageRow> {
        let mut rows: Vec<MessageRow> = self
            .messages
            .iter()
            .map(|((op, status, message), count)| MessageRow {
                operation: op.name().to_string(),
                status: status.clone(),
                message: message.clone(),
                count: *count,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.operation.cmp(&b.operation))
        });
        rows
    }

    /// Every INTERNAL/UNKNOWN answer (exact messages, at most [`MAX_FAULTS`]) and how many more
    /// were left off.
    pub fn fault_rows(&self) -> (Vec<MessageRow>, u64) {
        let rows = self
            .faults
            .iter()
            .map(|((op, status, message), count)| MessageRow {
                operation: op.name().to_string(),
                status: status.clone(),
                message: message.clone(),
                count: *count,
            })
            .collect();
        (rows, self.faults_left_off)
    }
}

/// How a failed call ended; a status loadgen's own deadline made is marked as such.
pub fn outcome_of(status: &Status) -> Outcome {
    if status.code() == Code::DeadlineExceeded && status.message() == CLIENT_DEADLINE_MESSAGE {
        Outcome::client_deadline()
    } else {
        Outcome::of(status)
    }
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct OpRow {
    /// The operation (`GetProduct`, `Checkout`, ..., `all`).
    pub name: String,
    /// Calls.
    pub count: u64,
    /// Calls per second over the run.
    pub rate_per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest call, milliseconds.
    pub max_ms: f64,
    /// Every status seen (see [`Outcome::label`]) and its count.
    pub statuses: BTreeMap<String, u64>,
}

/// A message seen, with its operation, status and count.
#[derive(Debug, Clone, Serialize)]
pub struct MessageRow {
    /// The operation.
    pub operation: String,
    /// The status label.
    pub status: String,
    /// The message (digits shown as `N` for refusals; exact for faults).
    pub message: String,
    /// How often.
    pub count: u64,
}

/// The result of one `loadgen shop` run.
#[derive(Debug, Clone, Serialize)]
pub struct ShopReport {
    /// `closed` or `open`.
    pub model: String,
    /// Concurrent shoppers (closed model).
    pub shoppers: Option<usize>,
    /// Target arrivals per second (open model).
    pub rate_per_sec: Option<f64>,
    /// Users registered and shopping.
    pub users: usize,
    /// The seed of the shoppers' choices.
    pub seed: u64,
    /// Seconds the load ran (first operation to last answer).
    pub elapsed_secs: f64,
    /// When the load started, in seconds since the Unix epoch (the timeline's 0).
    pub load_started_unix: f64,
    /// Whether refused or undecided checkouts were retried at once (`--retry-at-once`) rather
    /// than after a backoff or the server's pushback.
    pub retry_at_once: bool,
    /// Operations of the mix performed (a checkout with its retries is one).
    pub operations_done: u64,
    /// Open model: arrivals dropped because every user was busy.
    pub arrivals_dropped: u64,
    /// The mix, one row per RPC, each call (each checkout attempt) counted.
    pub operations: Vec<OpRow>,
    /// Every call of the mix together.
    pub total: OpRow,
    /// One row per checkout as the shopper saw it: retries included, its final status.
    pub checkouts: Option<OpRow>,
    /// Setup calls (registration, its rate over the registration time), not part of the mix.
    pub setup: Vec<OpRow>,
    /// Every refusal and failure message, most frequent first.
    pub messages: Vec<MessageRow>,
    /// INTERNAL/UNKNOWN answers from the services (exact messages).
    pub faults: Vec<MessageRow>,
    /// INTERNAL/UNKNOWN answers beyond those listed.
    pub faults_left_off: u64,
    /// Checkout operations per second since the load started (see [`timeline`](super::timeline)).
    pub timeline: Vec<Bucket>,
}

impl ShopReport {
    /// 2 when any service answered INTERNAL or UNKNOWN, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.faults.is_empty() && self.faults_left_off == 0 {
            0
        } else {
            2
        }
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = self.heading();
        self.push_operations(&mut out);
        self.push_messages(&mut out);
        if !self.timeline.is_empty() {
            out.push_str(
                "\nCheckouts over time (each with its retries, counted when it ended; success \
                 leaves out those that never connected):\n\n",
            );
            out.push_str(&timeline::to_markdown(&self.timeline));
        }
        self.push_faults(&mut out);
        out
    }

    /// The first line: the load, the users, the operations done, the seed, the retry mode.
    fn heading(&self) -> String {
        let load = match (self.shoppers, self.rate_per_sec) {
            (Some(n), _) => format!("{n} concurrent shoppers (closed model)"),
            (None, Some(r)) => format!(
                "{r} arrivals/s (open model, Poisson; {} dropped: every user busy)",
                self.arrivals_dropped
            ),
            (None, None) => self.model.clone(),
        };
        let retry = if self.retry_at_once {
            "checkouts retried at once"
        } else {
            "checkouts retried after a backoff or the server's pushback"
        };
        format!(
            "Shopper mix: {load}, {} users, {} operations in {:.1} s, seed {}; {retry}\n\n",
            self.users, self.operations_done, self.elapsed_secs, self.seed
        )
    }

    /// The table of operations: the mix, its total (bold), checkouts end to end, the setup.
    fn push_operations(&self, out: &mut String) {
        out.push_str(
            "| operation | count | rate (/s) | p50 | p99 | max | statuses |\n\
             |---|---:|---:|---:|---:|---:|---|\n",
        );
        let mut line = |row: &OpRow, bold: bool| {
            let name = if bold {
                format!("**{}**", row.name)
            } else {
                row.name.clone()
            };
            let statuses: Vec<String> = row
                .statuses
                .iter()
                .map(|(label, n)| format!("{label} {n}"))
                .collect();
            let _ = writeln!(
                out,
                "| {name} | {} | {:.1} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
                row.count,
                row.rate_per_sec,
                row.p50_ms,
                row.p99_ms,
                row.max_ms,
                statuses.join(", ")
            );
        };
        for row in &self.operations {
            line(row, false);
        }
        line(&self.total, true);
        if let Some(checkouts) = &self.checkouts {
            line(checkouts, false);
        }
        for row in &self.setup {
            line(row, false);
        }
        out.push_str(
            "\n`Checkout` counts every attempt; `Checkout (end to end)` one per checkout with its \
             retries (same idempotency key) and final status. `EmptyCart` follows a refused \
             checkout, `Login` an expired token; `Register` is setup, outside the mix and `all`.\n",
        );
    }

    /// The most frequent failure messages (at most 30).
    fn push_messages(&self, out: &mut String) {
        if self.messages.is_empty() {
            return;
        }
        out.push_str("\n| operation | status | message | count |\n|---|---|---|---:|\n");
        for m in self.messages.iter().take(30) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                m.operation,
                m.status,
                m.message.replace('|', "\\|"),
                m.count
            );
        }
    }

    /// The INTERNAL/UNKNOWN answers, or that there were none.
    fn push_faults(&self, out: &mut String) {
        if self.faults.is_empty() {
            out.push_str("\nNo INTERNAL or UNKNOWN answer from any service.\n");
            return;
        }
        out.push_str("\nINTERNAL/UNKNOWN answers (bugs in the service answering):\n\n");
        for f in &self.faults {
            let _ = writeln!(
                out,
                "- {} {} ×{}: {}",
                f.operation, f.status, f.count, f.message
            );
        }
        if self.faults_left_off > 0 {
            let _ = writeln!(out, "- ... and {} more", self.faults_left_off);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn statuses_are_labelled_by_origin() {
        assert_eq!(Outcome::OK.label(), "OK");
        let sent = Status::failed_precondition("insufficient stock for product 3");
        assert_eq!(Outcome::of(&sent).label(), "FAILED_PRECONDITION");
        let local = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert_eq!(Outcome::of(&local).label(), "UNKNOWN (transport)");
        assert!(!Outcome::of(&local).is_fault());
        assert!(Outcome::of(&Status::internal("boom")).is_fault());
        assert!(Outcome::of(&Status::unknown("boom")).is_fault());
        assert!(!Outcome::of(&Status::unavailable("down")).is_fault());
        let mine = Status::deadline_exceeded(CLIENT_DEADLINE_MESSAGE);
        assert_eq!(outcome_of(&mine).label(), "DEADLINE_EXCEEDED (client)");
    }

    #[test]
    fn messages_group_by_shape_and_stay_bounded() {
        assert_eq!(
            message_shape("insufficient stock for product 12 (3 left)"),
            "insufficient stock for product N (N left)"
        );
        assert_eq!(
            message_shape("revocation list unavailable (ref 3fd799e)"),
            message_shape("revocation list unavailable (ref 1e14e51)")
        );
        assert_eq!(
            message_shape("revocation list unavailable (ref 3fd799e)"),
            "revocation list unavailable (ref N)"
        );
        // Short or digit-free hex-looking words stay words.
        assert_eq!(message_shape("a cafe deadbeef 12ab"), "a cafe deadbeef Nab");
        assert_eq!(message_shape("ünïcode 7 ok"), "ünïcode N ok");
        let mut r = Recorder::default();
        for i in 0..100 {
            let status = Status::failed_precondition(format!("out of stock: item{i}x"));
            r.record_result::<()>(Op::Checkout, ms(1), &Err(status));
        }
        let rows = r.message_rows();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].message, "out of stock: itemNx");
        assert_eq!(rows[0].count, 100);
        for i in 0..100 {
            let status = Status::failed_precondition(format!("reason {}", "x".repeat(i)));
            r.record_result::<()>(Op::AddItem, ms(1), &Err(status));
        }
        let add: Vec<_> = r
            .message_rows()
            .into_iter()
            .filter(|m| m.operation == "AddItem")
            .collect();
        assert_eq!(add.len(), MESSAGES_PER_STATUS + 1, "{add:?}");
        assert_eq!(add.iter().map(|m| m.count).sum::<u64>(), 100);
        assert!(add.iter().any(|m| m.message == OTHER_MESSAGES));
    }

    #[test]
    fn rows_total_and_exit_code_follow_what_was_recorded() {
        let mut a = Recorder::default();
        for i in 1..=100 {
            a.record_result::<()>(Op::GetProduct, ms(i), &Ok(()));
        }
        let mut b = Recorder::default();
        b.record_result::<()>(Op::GetCart, ms(500), &Err(Status::unavailable("cart down")));
        b.record_result::<()>(Op::GetCart, ms(2), &Err(Status::internal("bug 1")));
        b.record_result::<()>(Op::GetCart, ms(2), &Err(Status::internal("bug 1")));
        a.merge(b);
        assert_eq!(a.calls_and_failures(), (103, 3));
        let elapsed = Duration::from_secs(10);
        let (rows, total) = a.rows(&[Op::GetProduct, Op::AddItem, Op::GetCart], elapsed);
        assert_eq!(rows.len(), 2, "AddItem was never called: {rows:?}");
        assert_eq!(rows[0].count, 100);
        assert!((rows[0].rate_per_sec - 10.0).abs() < 1e-9);
        assert!((rows[0].p50_ms - 50.0).abs() < 0.1, "{:?}", rows[0]);
        assert!((rows[0].max_ms - 100.0).abs() < 0.1, "{:?}", rows[0]);
        assert_eq!(total.count, 103);
        assert!((total.max_ms - 500.0).abs() < 1.0, "{total:?}");
        assert_eq!(total.statuses["OK"], 100);
        assert_eq!(total.statuses["INTERNAL"], 2);
        assert_eq!(total.statuses["UNAVAILABLE"], 1);
        let (faults, left_off) = a.fault_rows();
        assert_eq!(faults.len(), 1);
        assert_eq!((faults[0].count, left_off), (2, 0));
        let report = ShopReport {
            model: "closed".into(),
            shoppers: Some(2),
            rate_per_sec: None,
            users: 2,
            seed: 1,
            elapsed_secs: 10.0,
            load_started_unix: 1_700_000_000.5,
            retry_at_once: false,
            operations_done: 103,
            arrivals_dropped: 0,
            operations: rows,
            total,
            checkouts: None,
            setup: vec![],
            messages: a.message_rows(),
            faults,
            faults_left_off: left_off,
            timeline: vec![Bucket {
                start_secs: 0,
                ok: 3,
                refused: 1,
                ..Bucket::default()
            }],
        };
        assert_eq!(report.exit_code(), 2);
        let md = report.to_markdown();
        assert!(md.contains("| GetProduct | 100 | 10.0 |"), "{md}");
        assert!(md.contains("| **all** | 103 |"), "{md}");
        assert!(md.contains("INTERNAL 2"), "{md}");
        assert!(md.contains("GetCart INTERNAL ×2: bug 1"), "{md}");
        assert!(md.contains("| 0 | 3 | 1 | 0 | 0 | 75.0% | 0 |"), "{md}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["total"]["statuses"]["OK"], 100);
        assert_eq!(json["load_started_unix"], 1_700_000_000.5);
        assert_eq!(json["timeline"][0]["start_secs"], 0);
        assert_eq!(json["timeline"][0]["refused"], 1);
    }
}
