//! Checkouts over time: per second since the load started, how many checkout operations (a
//! purchase with all its retries) ended ok, refused, failed or without ever connecting, and how
//! many checkout attempts were refused — so a script can line availability up with the faults
//! it injected (the report's JSON has the 1 s series and the load's wall-clock start; the
//! Markdown a 10 s table).

use std::fmt::Write as _;
use std::time::Duration;

use mall_common::context::SHED_HEADER;
use serde::Serialize;
use tokio::time::Instant;
use tonic::{Code, Status};

use super::api::connect_failed;

/// How one checkout operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckoutEnd {
    /// Its last attempt succeeded.
    Ok,
    /// It gave up after a refusal: `RESOURCE_EXHAUSTED`, or any answer a server's admission
    /// shed (the `x-mall-shed` header).
    Refused,
    /// It ended with any other failure.
    Failed,
    /// No attempt reached a server: every one failed to connect, on every address.
    ConnFailed,
}

/// Whether `status` is a refusal: `RESOURCE_EXHAUSTED`, or shed by a server's admission.
pub fn is_refusal(status: &Status) -> bool {
    status.code() == Code::ResourceExhausted || status.metadata().get(SHED_HEADER).is_some()
}

impl CheckoutEnd {
    /// How a checkout ended whose last answer was `last`; `all_connect_failed` when every one
    /// of its attempts failed to connect.
    pub fn of<T>(last: &Result<T, Status>, all_connect_failed: bool) -> CheckoutEnd {
        match last {
            Ok(_) => CheckoutEnd::Ok,
            Err(status) if all_connect_failed && connect_failed(status) => CheckoutEnd::ConnFailed,
            Err(status) if is_refusal(status) => CheckoutEnd::Refused,
            Err(_) => CheckoutEnd::Failed,
        }
    }
}

/// One bucket of the timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Where the bucket starts, in seconds since the load started.
    pub start_secs: u64,
    /// Checkout operations that ended in it and succeeded.
    pub ok: u64,
    /// ... that gave up after a refusal.
    pub refused: u64,
    /// ... that ended with any other failure.
    pub failed: u64,
    /// ... that never reached a server.
    pub conn_failed: u64,
    /// Checkout attempts refused in it (every retry counted).
    pub attempts_refused: u64,
}

impl Bucket {
    /// Checkout operations that ended in it.
    pub fn checkouts(&self) -> u64 {
        self.ok + self.refused + self.failed + self.conn_failed
    }

    /// Successes among the checkouts that reached a server, if any did.
    pub fn success(&self) -> Option<f64> {
        let reached = self.ok + self.refused + self.failed;
        (reached > 0).then(|| self.ok as f64 / reached as f64)
    }

    fn add(&mut self, other: &Bucket) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.failed += other.failed;
        self.conn_failed += other.conn_failed;
        self.attempts_refused += other.attempts_refused;
    }
}

/// The per-second counts of one run.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    started: Option<Instant>,
    seconds: Vec<Bucket>,
}

impl Timeline {
    /// Counts from `at` on (nothing is counted before).
    pub fn start(&mut self, at: Instant) {
        self.started = Some(at);
    }

    fn second(&mut self, at: Instant) -> Option<&mut Bucket> {
        let offset = at.saturating_duration_since(self.started?);
        Some(self.at_offset(offset))
    }

    fn at_offset(&mut self, offset: Duration) -> &mut Bucket {
        let i = usize::try_from(offset.as_secs()).unwrap_or(usize::MAX - 1);
        if self.seconds.len() <= i {
            let from = self.seconds.len() as u64;
            self.seconds
                .extend((from..=i as u64).map(|start_secs| Bucket {
                    start_secs,
                    ..Bucket::default()
                }));
        }
        &mut self.seconds[i]
    }

    /// A checkout operation ended at `at` as `end`.
    pub fn checkout_ended(&mut self, at: Instant, end: CheckoutEnd) {
        if let Some(bucket) = self.second(at) {
            count(bucket, end);
        }
    }

    /// A checkout attempt was refused at `at`.
    pub fn attempt_refused(&mut self, at: Instant) {
        if let Some(bucket) = self.second(at) {
            bucket.attempts_refused += 1;
        }
    }

    /// As [`checkout_ended`](Self::checkout_ended), `offset` after the start.
    pub fn checkout_ended_after(&mut self, offset: Duration, end: CheckoutEnd) {
        count(self.at_offset(offset), end);
    }

    /// As [`attempt_refused`](Self::attempt_refused), `offset` after the start.
    pub fn attempt_refused_after(&mut self, offset: Duration) {
        self.at_offset(offset).attempts_refused += 1;
    }

    /// Adds everything `other` counted (second by second).
    pub fn merge(&mut self, other: &Timeline) {
        for b in &other.seconds {
            self.at_offset(Duration::from_secs(b.start_secs)).add(b);
        }
        if self.started.is_none() {
            self.started = other.started;
        }
    }

    /// Every second of a run that lasted `elapsed` (empty ones too), and any later one that
    /// saw something.
    pub fn series(&self, elapsed: Duration) -> Vec<Bucket> {
        let secs = elapsed.as_secs_f64().ceil() as u64;
        let len = self.seconds.len().max(usize::try_from(secs).unwrap_or(0));
        (0..len)
            .map(|i| {
                self.seconds.get(i).copied().unwrap_or(Bucket {
                    start_secs: i as u64,
                    ..Bucket::default()
                })
            })
            .collect()
    }
}

fn count(bucket: &mut Bucket, end: CheckoutEnd) {
    match end {
        CheckoutEnd::Ok => bucket.ok += 1,
        CheckoutEnd::Refused => bucket.refused += 1,
        CheckoutEnd::Failed => bucket.failed += 1,
        CheckoutEnd::ConnFailed => bucket.conn_failed += 1,
    }
}

/// `series` (1 s buckets from 0) in buckets `width` seconds wide.
pub fn widen(series: &[Bucket], width: u64) -> Vec<Bucket> {
    let width = width.max(1);
    let mut out: Vec<Bucket> = Vec::new();
    for b in series {
        let start_secs = b.start_secs / width * width;
        match out.last_mut() {
            Some(last) if last.start_secs == start_secs => last.add(b),
            _ => {
                let mut wide = *b;
                wide.start_secs = start_secs;
                out.push(wide);
            }
        }
    }
    out
}

/// The 10 s table of the Markdown report.
pub fn to_markdown(series: &[Bucket]) -> String {
    let mut out = String::from(
        "| from (s) | checkouts ok | refused | failed | conn-failed | success | attempts refused |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for b in widen(series, 10) {
        let success = b
            .success()
            .map_or_else(|| "-".to_string(), |s| format!("{:.1}%", s * 100.0));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {success} | {} |",
            b.start_secs, b.ok, b.refused, b.failed, b.conn_failed, b.attempts_refused
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn checkouts_fall_in_the_second_they_end() {
        let mut t = Timeline::default();
        t.checkout_ended_after(ms(0), CheckoutEnd::Ok);
        t.checkout_ended_after(ms(999), CheckoutEnd::Ok);
        t.checkout_ended_after(ms(1_000), CheckoutEnd::Refused);
        t.attempt_refused_after(ms(1_500));
        t.attempt_refused_after(ms(1_600));
        t.checkout_ended_after(ms(3_200), CheckoutEnd::Failed);
        t.checkout_ended_after(ms(3_900), CheckoutEnd::ConnFailed);
        let series = t.series(Duration::from_secs_f64(5.2));
        assert_eq!(series.len(), 6, "{series:?}");
        assert_eq!(
            series.iter().map(|b| b.start_secs).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!((series[0].ok, series[0].checkouts()), (2, 2));
        assert_eq!((series[1].refused, series[1].attempts_refused), (1, 2));
        assert_eq!(
            series[2],
            Bucket {
                start_secs: 2,
                ..Bucket::default()
            }
        );
        assert_eq!((series[3].failed, series[3].conn_failed), (1, 1));
        // Connection failures are left out of the success rate.
        assert_eq!(series[3].success(), Some(0.0));
        assert_eq!(series[0].success(), Some(1.0));
        assert_eq!(series[2].success(), None);
        assert_eq!(series[4].checkouts(), 0);
    }

    #[test]
    fn ten_second_buckets_add_up_the_seconds() {
        let mut t = Timeline::default();
        for s in 0..25 {
            t.checkout_ended_after(Duration::from_secs(s), CheckoutEnd::Ok);
        }
        t.checkout_ended_after(Duration::from_secs(12), CheckoutEnd::Refused);
        let wide = widen(&t.series(Duration::from_secs(25)), 10);
        assert_eq!(
            wide.iter()
                .map(|b| (b.start_secs, b.ok, b.refused))
                .collect::<Vec<_>>(),
            [(0, 10, 0), (10, 10, 1), (20, 5, 0)]
        );
        let md = to_markdown(&t.series(Duration::from_secs(25)));
        assert!(md.contains("| 10 | 10 | 1 | 0 | 0 | 90.9% | 0 |"), "{md}");
    }

    #[test]
    fn nothing_counts_before_the_start() {
        let mut t = Timeline::default();
        t.checkout_ended(Instant::now(), CheckoutEnd::Ok);
        assert!(t.series(Duration::ZERO).is_empty());
        t.start(Instant::now());
        t.checkout_ended(Instant::now(), CheckoutEnd::Ok);
        assert_eq!(t.series(Duration::ZERO)[0].ok, 1);
    }

    #[test]
    fn endings_are_classified_by_the_last_answer() {
        let ok: Result<(), Status> = Ok(());
        assert_eq!(CheckoutEnd::of(&ok, false), CheckoutEnd::Ok);
        let refused: Result<(), Status> = Err(Status::resource_exhausted("overloaded"));
        assert_eq!(CheckoutEnd::of(&refused, false), CheckoutEnd::Refused);
        let mut shed = Status::deadline_exceeded("too short");
        shed.metadata_mut()
            .insert(SHED_HEADER, "deadline".parse().unwrap());
        assert_eq!(
            CheckoutEnd::of(&Err::<(), _>(shed), false),
            CheckoutEnd::Refused
        );
        let failed: Result<(), Status> = Err(Status::unavailable("down"));
        assert_eq!(CheckoutEnd::of(&failed, true), CheckoutEnd::Failed);
    }
}
