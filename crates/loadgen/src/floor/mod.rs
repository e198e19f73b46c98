//! `loadgen floor`: benchmarks against the physical floor, each reported as ratios against a
//! baseline measured in the same run (never asserted as wall-clock limits):
//!
//! - [`calls`] (`floor calls`): server CPU per `GetProduct` and throughput, the product server
//!   against a bare tonic server answering the same bytes, each in its own process;
//! - [`checkout`] (`floor checkout`): checkouts/s, p50/p99, statements and commits per checkout,
//!   CPU per checkout (fleet + mariadbd + redis-server), next to MariaDB's own autocommit INSERT
//!   rate at the same concurrency;
//! - [`overload`] (`floor overload`): goodput and admitted latency at 1×, 2×, 4×, 8× the knee;
//! - [`memory`] (`floor memory`): the fleet's RSS over a long run, per fleet binary (allocator);
//! - `floor all`: calls, checkout, overload, memory in one run.
//!
//! The servers are child processes (`loadgen serve-bare`, `serve-product`, `serve-fleet`, see
//! [`serve`]) so `/proc/<pid>/stat` gives their CPU apart from the client's.

pub mod calls;
pub mod checkout;
pub mod fleet;
pub mod memory;
pub mod overload;
pub mod procs;
pub mod serve;

use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;

use crate::args::Flags;

/// Everything `loadgen floor` can be told.
#[derive(Debug, Clone)]
pub struct FloorOptions {
    /// The loadgen binary the server processes run (this one).
    pub exe: PathBuf,
    /// MariaDB (no database part).
    pub mysql_url: String,
    /// Redis, the shared cache of every server (`memory://` for the in-process one).
    pub redis_url: String,
    /// The prefix of the databases this run creates (and drops).
    pub db_prefix: String,
    /// `calls`: GetProducts per server per round.
    pub calls: usize,
    /// `calls`: concurrent callers.
    pub concurrency: usize,
    /// `calls`: rounds, alternating the servers.
    pub rounds: usize,
    /// `calls`: a batch stops early after this long.
    pub max_time: Duration,
    /// `checkout` and `memory`: concurrent shoppers.
    pub shoppers: usize,
    /// `checkout`: length of the load (and of the INSERTs); `overload`: of each multiple.
    pub secs: Duration,
    /// `overload`: length of each knee-search level.
    pub step_secs: Duration,
    /// `overload`: the knee search stops here.
    pub max_shoppers: usize,
    /// `memory`: checkouts per fleet binary.
    pub checkouts: u64,
    /// `memory`: the binaries whose `serve-fleet` is measured (default: this one).
    pub fleet_exes: Vec<PathBuf>,
    /// The fleet hashes passwords at the default Argon2 cost (else cheaply).
    pub real_hashing: bool,
    /// `checkout` and the knee search of `overload`: how refused shoppers come back
    /// (`--ignore-pushback`: [`fleet::REFUSED_BACKOFF`]; `--retry-at-once`: at once).
    pub retry: fleet::Retry,
}

impl FloorOptions {
    /// The defaults, with `exe` as the server binary.
    pub fn new(exe: PathBuf) -> FloorOptions {
        FloorOptions {
            exe,
            mysql_url: "mysql://root@127.0.0.1:3306".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            db_prefix: format!("floor_{:08x}_", rand::rng().random::<u32>()),
            calls: 20_000,
            concurrency: 16,
            rounds: 2,
            max_time: Duration::from_secs(60),
            shoppers: 16,
            secs: Duration::from_secs(10),
            step_secs: Duration::from_secs(5),
            max_shoppers: 64,
            checkouts: 50_000,
            fleet_exes: Vec::new(),
            real_hashing: false,
            retry: fleet::Retry::Pushback,
        }
    }

    /// Parses the flags of `loadgen floor <what>` over the defaults.
    pub fn parse(exe: PathBuf, args: &[String]) -> anyhow::Result<FloorOptions> {
        let flags = Flags::parse(
            args,
            &[
                "--mysql-url",
                "--redis-url",
                "--db-prefix",
                "--calls",
                "--concurrency",
                "--rounds",
                "--shoppers",
                "--secs",
                "--step-secs",
                "--max-shoppers",
                "--checkouts",
                "--fleet-exe",
            ],
            &["--real-hashing", "--ignore-pushback", "--retry-at-once"],
        )?;
        let mut o = FloorOptions::new(exe);
        o.real_hashing = flags.switch("--real-hashing");
        o.retry = match (
            flags.switch("--ignore-pushback"),
            flags.switch("--retry-at-once"),
        ) {
            (true, true) => anyhow::bail!("--ignore-pushback or --retry-at-once, not both"),
            (true, false) => fleet::Retry::Fixed,
            (false, true) => fleet::Retry::AtOnce,
            (false, false) => fleet::Retry::Pushback,
        };
        if let Some(v) = flags.text("--mysql-url") {
            o.mysql_url = v.trim_end_matches('/').to_string();
        }
        if let Some(v) = flags.text("--redis-url") {
            o.redis_url = v.to_string();
        }
        if let Some(v) = flags.text("--db-prefix") {
            anyhow::ensure!(
                !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "--db-prefix must be letters, digits and underscores"
            );
            o.db_prefix = v.to_string();
        }
        let positive = |name: &str, v: Option<usize>, slot: &mut usize| -> anyhow::Result<()> {
            if let Some(v) = v {
                anyhow::ensure!(v > 0, "{name} must be positive");
                *slot = v;
            }
            Ok(())
        };
        positive("--calls", flags.get("--calls")?, &mut o.calls)?;
        positive(
            "--concurrency",
            flags.get("--concurrency")?,
            &mut o.concurrency,
        )?;
        positive("--rounds", flags.get("--rounds")?, &mut o.rounds)?;
        positive("--shoppers", flags.get("--shoppers")?, &mut o.shoppers)?;
        positive(
            "--max-shoppers",
            flags.get("--max-shoppers")?,
            &mut o.max_shoppers,
        )?;
        for (name, slot) in [("--secs", &mut o.secs), ("--step-secs", &mut o.step_secs)] {
            if let Some(v) = flags.get::<f64>(name)? {
                anyhow::ensure!(v.is_finite() && v > 0.0, "{name} must be positive");
                *slot = Duration::from_secs_f64(v);
            }
        }
        if let Some(n) = flags.get::<u64>("--checkouts")? {
            anyhow::ensure!(n > 0, "--checkouts must be positive");
            o.checkouts = n;
        }
        if let Some(list) = flags.text("--fleet-exe") {
            o.fleet_exes = list.split(',').map(PathBuf::from).collect();
        }
        Ok(o)
    }
}

/// Latencies, sorted, with percentiles.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    /// Sorts `values`.
    pub fn of(mut values: Vec<Duration>) -> Latencies {
        values.sort_unstable();
        Latencies(values)
    }

    /// The `q` quantile (0 when empty).
    pub fn at(&self, q: f64) -> Duration {
        let n = self.0.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.0[((n as f64 * q) as usize).min(n - 1)]
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every value, sorted.
    pub fn values(&self) -> &[Duration] {
        &self.0
    }
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// `a / b`, NaN when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

/// A note on what the machine was doing: its load average and core count.
pub fn machine_note() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cores} cores, load average {} (1/5/15 min) at the end",
        load.join(" ")
    )
}

/// `loadgen floor <calls|checkout|overload|memory|all> [flags]`: runs and prints the tables.
pub async fn main(exe: PathBuf, args: &[String]) -> anyhow::Result<()> {
    let (what, rest) = match args.split_first() {
        Some((w, rest)) if !w.starts_with("--") => (w.as_str(), rest),
        _ => ("all", args),
    };
    let options = FloorOptions::parse(exe, rest)?;
    let (calls, checkout, overload, memory) = match what {
        "calls" => (true, false, false, false),
        "checkout" => (false, true, false, false),
        "overload" => (false, false, true, false),
        "memory" => (false, false, false, true),
        "all" => (true, true, true, true),
        other => anyhow::bail!(
            "unknown floor benchmark `{other}` (calls, checkout, overload, memory, all)"
        ),
    };
    if calls {
        println!("{}", calls::run(&options).await?.to_markdown());
    }
    if checkout || overload {
        let prefix = format!("{}f_", options.db_prefix);
        let mut fleet = fleet::FloorFleet::start(
            &options.exe,
            &options.mysql_url,
            &options.redis_url,
            &prefix,
            options.real_hashing,
        )
        .await?;
        fleet.retry = options.retry;
        let result = async {
            if checkout {
                println!(
                    "{}",
                    checkout::run(&options, &mut fleet).await?.to_markdown()
                );
            }
            if overload {
                println!(
                    "{}",
                    overload::run(&options, &mut fleet).await?.to_markdown()
                );
            }
            anyhow::Ok(())
        }
        .await;
        fleet.stop().await;
        result?;
    }
    if memory {
        println!("{}", memory::run(&options).await?.to_markdown());
    }
    println!("Machine: {}.", machine_note());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_override_the_defaults_and_bad_values_are_refused() {
        let o = FloorOptions::parse(
            "x".into(),
            &args(
                "--calls 100 --concurrency 3 --shoppers 5 --secs 1.5 --checkouts 70 \
                 --fleet-exe a,b --db-prefix p_ --mysql-url mysql://h:1/",
            ),
        )
        .unwrap();
        assert_eq!((o.calls, o.concurrency, o.shoppers), (100, 3, 5));
        assert_eq!(o.secs, Duration::from_millis(1500));
        assert_eq!(o.checkouts, 70);
        assert_eq!(o.fleet_exes, [PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(
            (o.db_prefix.as_str(), o.mysql_url.as_str()),
            ("p_", "mysql://h:1")
        );
        let d = FloorOptions::parse("x".into(), &[]).unwrap();
        assert!(d.db_prefix.starts_with("floor_"), "{}", d.db_prefix);
        assert_eq!((d.calls, d.checkouts, d.max_shoppers), (20_000, 50_000, 64));
        for bad in [
            "--calls 0",
            "--secs -1",
            "--db-prefix a-b",
            "--rounds x",
            "--nope 1",
        ] {
            assert!(
                FloorOptions::parse("x".into(), &args(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn percentiles_pick_from_the_sorted_values() {
        let l = Latencies::of((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.at(0.5), Duration::from_millis(51));
        assert_eq!(l.at(0.99), Duration::from_millis(100));
        assert_eq!(Latencies::default().at(0.5), Duration::ZERO);
    }
}
