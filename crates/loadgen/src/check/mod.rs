//! `loadgen check`: the invariant checker. It reads the fleet's databases directly
//! ([`read`]), applies the rules ([`model`]) and reports every violation with its ids, plus
//! counts of orders, payments, refunds, sagas and reservations.
//!
//! Run it after the load has stopped. What the fleet may still be finishing (a checkout in
//! flight, a release the order sweeper retries) is *settling*; the checker re-reads every
//! [`POLL_EVERY`] until nothing settles or the recovery window has passed, and then every
//! finding left is a violation. A consistent fleet at rest passes at the first read.
//!
//! `--snapshot FILE` instead records the initial stock (stock + live reservations per product)
//! for a later `--initial-stock FILE`; without one, the demo catalog's seed is the initial stock.

pub mod model;
pub mod read;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use self::model::{Counts, Finding, InitialStock, Snapshot};

/// Default recovery window: how long the fleet may take to settle a checkout by itself.
pub const DEFAULT_RECOVERY_WINDOW: Duration = Duration::from_secs(120);
/// How often a settling fleet is read again.
pub const POLL_EVERY: Duration = Duration::from_secs(2);

/// What `loadgen check` does.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// The database server (`mysql://root@127.0.0.1:3306`).
    pub mysql_url: String,
    /// The fleet's database names are this plus the service name (`fleet_` → `fleet_order`).
    pub db_prefix: String,
    /// How long sagas and compensations may take to end by themselves.
    pub recovery_window: Duration,
    /// Initial stock from a file `--snapshot` wrote (else the demo catalog).
    pub initial_stock: Option<PathBuf>,
    /// Write the initial stock to this file and stop (before a load).
    pub snapshot: Option<PathBuf>,
}

/// The result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The prefix checked.
    pub db_prefix: String,
    /// The server's clock at the last read (unix seconds).
    pub taken_at: i64,
    /// Seconds spent waiting for the fleet to settle.
    pub waited_secs: f64,
    /// Where the initial stock came from.
    pub initial_stock: String,
    /// Products checked by rule 3.
    pub products_checked: usize,
    /// Products whose initial stock is unknown.
    pub unchecked_products: Vec<i64>,
    /// Sagas still open but within the recovery window at the last read.
    pub open_sagas_in_window: usize,
    /// What the databases hold.
    pub counts: Counts,
    /// Every violation.
    pub violations: Vec<Finding>,
}

impl CheckReport {
    /// 1 on any violation, else 0.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.violations.is_empty())
    }

    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let c = &self.counts;
        let join = |m: &std::collections::BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Invariant check of `{}*` at {} (waited {:.0} s for the fleet to settle)\n",
            self.db_prefix, self.taken_at, self.waited_secs
        );
        out.push_str("| what | count |\n|---|---|\n");
        let _ = writeln!(out, "| orders | {} |", join(&c.orders));
        let _ = writeln!(
            out,
            "| payments | {} ({} cents) |",
            join(&c.payments),
            c.paid_cents
        );
        let _ = writeln!(
            out,
            "| refunds | {} ({} cents) |",
            c.refunds, c.refunded_cents
        );
        let _ = writeln!(out, "| sagas | {} |", join(&c.sagas));
        let _ = writeln!(out, "| stock reservations | {} |", join(&c.reservations));
        let _ = writeln!(
            out,
            "| products | {} ({} units in stock; {} checked against the {}) |",
            c.products, c.stock_units, self.products_checked, self.initial_stock
        );
        if !self.unchecked_products.is_empty() {
            let _ = writeln!(
                out,
                "\nNot checked by rule 3 (initial stock unknown): products {:?}",
                self.unchecked_products
            );
        }
        if self.open_sagas_in_window > 0 {
            let _ = writeln!(
                out,
                "\n{} sagas still open within the recovery window (is a load still running?)",
                self.open_sagas_in_window
            );
        }
        if self.violations.is_empty() {
            out.push_str("\nNo violation.\n");
        } else {
            let _ = writeln!(out, "\n{} violations:\n", self.violations.len());
            for v in &self.violations {
                let note = if v.settling {
                    " (still settling when the window ran out)"
                } else {
                    ""
                };
                let _ = writeln!(out, "- {}: {}{note}", v.rule, v.detail);
            }
        }
        out
    }
}

/// The demo catalog's `(name, stock)`, in seeding order.
fn demo_stock() -> anyhow::Result<Vec<(String, i64)>> {
    Ok(product::demo::products()?
        .into_iter()
        .map(|p| (p.name.as_str().to_string(), p.stock))
        .collect())
}

/// Writes the initial stock as `snapshot` shows it to `path`.
pub fn write_snapshot(snapshot: &Snapshot, path: &std::path::Path) -> anyhow::Result<InitialStock> {
    let initial = InitialStock::of(
        snapshot,
        &format!("snapshot taken at {}", snapshot.taken_at),
    );
    std::fs::write(path, serde_json::to_string_pretty(&initial)? + "\n")
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    Ok(initial)
}

/// Reads an initial stock file written by [`write_snapshot`].
pub fn read_initial_stock(path: &std::path::Path) -> anyhow::Result<InitialStock> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let mut initial: InitialStock = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not an initial stock snapshot: {e}", path.display()))?;
    initial.source = format!("{} ({})", path.display(), initial.source);
    Ok(initial)
}

/// What a run of `loadgen check` did.
#[derive(Debug)]
pub enum Checked {
    /// `--snapshot`: the initial stock written, with its product count.
    SnapshotWritten(PathBuf, usize),
    /// The invariants checked.
    Report(Box<CheckReport>),
}

/// Runs the check (or writes the snapshot).
pub async fn run(options: CheckOptions) -> anyhow::Result<Checked> {
    read::validate_prefix(&options.db_prefix)?;
    let mut conn = read::connect(&options.mysql_url).await?;
    if let Some(path) = &options.snapshot {
        let snapshot = read::snapshot(&mut conn, &options.db_prefix).await?;
        let initial = write_snapshot(&snapshot, path)?;
        return Ok(Checked::SnapshotWritten(path.clone(), initial.units.len()));
    }
    let from_file = options
        .initial_stock
        .as_deref()
        .map(read_initial_stock)
        .transpose()?;
    let demo = demo_stock()?;
    let window_secs = i64::try_from(options.recovery_window.as_secs()).unwrap_or(i64::MAX);
    let started = Instant::now();
    loop {
        let snapshot = read::snapshot(&mut conn, &options.db_prefix).await?;
        let initial = match &from_file {
            Some(initial) => initial.clone(),
            None => InitialStock::demo(&snapshot, &demo),
        };
        let findings = model::evaluate(&snapshot, &initial, window_secs);
        let out_of_time = started.elapsed() + POLL_EVERY > options.recovery_window;
        if !findings.settling() || out_of_time {
            let products_checked = snapshot.products.len() - findings.unchecked_products.len();
            return Ok(Checked::Report(Box::new(CheckReport {
                db_prefix: options.db_prefix,
                taken_at: snapshot.taken_at,
                waited_secs: started.elapsed().as_secs_f64(),
                initial_stock: initial.source,
                products_checked,
                unchecked_products: findings.unchecked_products,
                open_sagas_in_window: findings.open_sagas_in_window,
                counts: Counts::of(&snapshot),
                violations: findings.findings,
            })));
        }
        let settling = findings.findings.iter().filter(|f| f.settling).count();
        eprintln!(
            "[{:5.1}s] waiting for the fleet to settle: {} open sagas, {settling} findings on \
             recent rows",
            started.elapsed().as_secs_f64(),
            findings.open_sagas_in_window
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
