//! `loadgen floor memory`: the fleet process's resident memory over a long run of checkouts,
//! once per fleet binary given (`--fleet-exe A,B`: e.g. loadgen built with and without
//! `--features mimalloc`), each on fresh databases.

use std::path::PathBuf;
use std::time::Duration;

use super::fleet::{FloorFleet, Until, drive};
use super::procs::rss_bytes;
use super::{FloorOptions, ms};

/// Checkpoints per run (RSS is read after each fifth of the checkouts).
const CHECKPOINTS: u64 = 5;

/// One fleet binary's run.
#[derive(Debug)]
pub struct MemoryRun {
    /// The binary.
    pub exe: PathBuf,
    /// The allocator it reported.
    pub allocator: String,
    /// RSS once started and its users registered.
    pub rss_start: u64,
    /// (checkouts so far, RSS) after each checkpoint.
    pub rss: Vec<(usize, u64)>,
    /// Checkouts done.
    pub checkouts: usize,
    /// Wall time of the checkouts.
    pub elapsed: Duration,
    /// p99 of checkout latency over the whole run.
    pub p99: Duration,
    /// Failures other than shedding, and shed calls.
    pub failures: u64,
}

/// Every binary's run.
#[derive(Debug)]
pub struct MemoryReport {
    /// Concurrent shoppers.
    pub shoppers: usize,
    /// Checkouts per run.
    pub target: u64,
    /// Whether the fleet hashed passwords at the default Argon2 cost.
    pub real_hashing: bool,
    /// In the order given.
    pub runs: Vec<MemoryRun>,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl MemoryReport {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "### Memory: fleet RSS over {} checkouts, {} shoppers (MariaDB + Redis, {} password \
             hashing)\n\n\
             | allocator | checkouts/s | p99 | failures | RSS at start | RSS by checkouts done | \
             RSS at end |\n|---|---:|---:|---:|---:|---|---:|\n",
            self.target,
            self.shoppers,
            if self.real_hashing {
                "default"
            } else {
                "cheap"
            }
        );
        for r in &self.runs {
            let series = r
                .rss
                .iter()
                .map(|(n, b)| format!("{n}: {:.0}", mib(*b)))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!(
                "| {} | {:.0} | {:.2} ms | {} | {:.0} MiB | {series} MiB | {:.0} MiB |\n",
                r.allocator,
                r.checkouts as f64 / r.elapsed.as_secs_f64().max(f64::EPSILON),
                ms(r.p99),
                r.failures,
                mib(r.rss_start),
                mib(r.rss.last().map_or(0, |x| x.1)),
            ));
        }
        if let Some(r) = self.runs.first() {
            let end = mib(r.rss.last().map_or(0, |x| x.1));
            out.push_str(&format!(
                "\nTarget ≤ 150 MiB after 50k checkouts ({}): {} at {end:.0} MiB after {} \
                 checkouts.\n",
                r.allocator,
                if end <= 150.0 { "met" } else { "missed" },
                r.checkouts
            ));
        }
        out
    }
}

/// Runs `options.checkouts` checkouts on a fresh fleet of each binary.
pub async fn run(options: &FloorOptions) -> anyhow::Result<MemoryReport> {
    anyhow::ensure!(options.checkouts > 0, "--checkouts must be positive");
    let exes = if options.fleet_exes.is_empty() {
        vec![options.exe.clone()]
    } else {
        options.fleet_exes.clone()
    };
    let mut runs = Vec::new();
    for (i, exe) in exes.iter().enumerate() {
        let prefix = format!("{}m{i}_", options.db_prefix);
        let mut fleet = FloorFleet::start(
            exe,
            &options.mysql_url,
            &options.redis_url,
            &prefix,
            options.real_hashing,
        )
        .await?;
        let allocator = fleet
            .child
            .ready
            .get("allocator")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string();
        let users = fleet.users(options.shoppers).await?;
        let rss_start = rss_bytes(fleet.child.pid).unwrap_or(0);
        let step = options.checkouts.div_ceil(CHECKPOINTS).max(1);
        let mut rss = Vec::new();
        let mut done = 0usize;
        let mut elapsed = Duration::ZERO;
        let mut latencies = Vec::new();
        let mut failures = 0;
        while (done as u64) < options.checkouts {
            let want = step.min(options.checkouts - done as u64);
            let outcome = drive(&fleet, users.clone(), Until::Checkouts(want)).await;
            done += outcome.admitted.len();
            elapsed += outcome.elapsed;
            failures += outcome.failures() + outcome.shed.len() as u64;
            latencies.extend(outcome.admitted.values().iter().copied());
            rss.push((done, rss_bytes(fleet.child.pid).unwrap_or(0)));
            eprintln!(
                "[floor memory] {allocator}: {done} checkouts, RSS {:.0} MiB",
                mib(rss.last().map_or(0, |x| x.1))
            );
            if outcome.admitted.is_empty() {
                break;
            }
        }
        fleet.stop().await;
        runs.push(MemoryRun {
            exe: exe.clone(),
            allocator,
            rss_start,
            rss,
            checkouts: done,
            elapsed,
            p99: super::Latencies::of(latencies).at(0.99),
            failures,
        });
    }
    Ok(MemoryReport {
        shoppers: options.shoppers,
        target: options.checkouts,
        real_hashing: options.real_hashing,
        runs,
    })
}
