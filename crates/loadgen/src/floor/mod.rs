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
}

/// Which floor benchmark `loadgen floor` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Which {
    /// GetProduct through a bare server and the real product service.
    Calls,
    /// Checkouts through the whole fleet, with the database's own INSERT rate as baseline.
    Checkout,
    /// 1×–8× the knee, clients honouring the pushback or retrying at once, limiter on and off.
    Overload,
    /// The fleet's memory under a checkout load, for each `--fleet-exe`.
    Memory,
    /// All of them.
    #[default]
    All,
}

/// `loadgen floor`'s command line.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// The benchmark to run.
    #[arg(value_enum, default_value_t = Which::All)]
    pub which: Which,
    /// The MySQL/MariaDB server the fleet's databases are made on.
    #[arg(long, value_name = "URL")]
    pub mysql_url: Option<String>,
    /// The Redis the fleet caches in.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// The prefix of the databases this run creates (and drops).
    #[arg(long, value_name = "P", value_parser = db_prefix)]
    pub db_prefix: Option<String>,
    /// `calls`: GetProducts per server per round.
    #[arg(long, value_parser = positive)]
    pub calls: Option<usize>,
    /// `calls`: concurrent callers.
    #[arg(long, value_parser = positive)]
    pub concurrency: Option<usize>,
    /// `calls`: rounds, alternating the servers.
    #[arg(long, value_parser = positive)]
    pub rounds: Option<usize>,
    /// `checkout` and `memory`: concurrent shoppers.
    #[arg(long, value_parser = positive)]
    pub shoppers: Option<usize>,
    /// `checkout`: length of the load; `overload`: of each multiple (seconds, fractions too).
    #[arg(long, value_name = "S", value_parser = seconds)]
    pub secs: Option<Duration>,
    /// `overload`: length of each knee-search level, in seconds.
    #[arg(long, value_name = "S", value_parser = seconds)]
    pub step_secs: Option<Duration>,
    /// `overload`: the knee search stops here.
    #[arg(long, value_parser = positive)]
    pub max_shoppers: Option<usize>,
    /// `memory`: checkouts per fleet binary.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkouts: Option<u64>,
    /// `memory`: the binaries whose `serve-fleet` is measured (default: this one).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    pub fleet_exe: Vec<PathBuf>,
    /// The fleet hashes passwords at the default Argon2 cost (else cheaply).
    #[arg(long)]
    pub real_hashing: bool,
    /// Refused shoppers come back after a fixed backoff, ignoring the pushback.
    #[arg(long, conflicts_with = "retry_at_once")]
    pub ignore_pushback: bool,
    /// Refused shoppers come back at once.
    #[arg(long)]
    pub retry_at_once: bool,
}

/// A database name prefix: letters, digits and underscores.
pub fn db_prefix(v: &str) -> Result<String, String> {
    if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(v.to_string())
    } else {
        Err("must be letters, digits and underscores".into())
    }
}

fn positive(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a positive number".into()),
    }
}

fn seconds(v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        _ => Err("must be a positive number of seconds".into()),
    }
}

impl FloorOptions {
    /// `args` over the defaults, with `exe` as the server binary.
    pub fn from_args(exe: PathBuf, args: &FloorArgs) -> FloorOptions {
        let mut o = FloorOptions::new(exe);
        if let Some(v) = &args.mysql_url {
            o.mysql_url = v.trim_end_matches('/').to_string();
        }
        if let Some(v) = &args.redis_url {
            o.redis_url.clone_from(v);
        }
        if let Some(v) = &args.db_prefix {
            o.db_prefix.clone_from(v);
        }
        for (given, slot) in [
            (args.calls, &mut o.calls),
            (args.concurrency, &mut o.concurrency),
            (args.rounds, &mut o.rounds),
            (args.shoppers, &mut o.shoppers),
            (args.max_shoppers, &mut o.max_shoppers),
        ] {
            if let Some(v) = given {
                *slot = v;
            }
        }
        o.secs = args.secs.unwrap_or(o.secs);
        o.step_secs = args.step_secs.unwrap_or(o.step_secs);
        o.checkouts = args.checkouts.unwrap_or(o.checkouts);
        o.fleet_exes.clone_from(&args.fleet_exe);
        o.real_hashing = args.real_hashing;
        o.retry = match (args.ignore_pushback, args.retry_at_once) {
            (true, _) => fleet::Retry::Fixed,
            (false, true) => fleet::Retry::AtOnce,
            (false, false) => fleet::Retry::Pushback,
        };
        o
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
pub async fn main(exe: PathBuf, args: FloorArgs) -> anyhow::Result<()> {
    let options = FloorOptions::from_args(exe, &args);
    let (calls, checkout, overload, memory) = match args.which {
        Which::Calls => (true, false, false, false),
        Which::Checkout => (false, true, false, false),
        Which::Overload => (false, false, true, false),
        Which::Memory => (false, false, false, true),
        Which::All => (true, true, true, true),
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

    #[derive(Debug, clap::Parser)]
    struct Floor {
        #[command(flatten)]
        args: FloorArgs,
    }

    fn parse(line: &str) -> Result<FloorOptions, clap::Error> {
        use clap::Parser as _;
        let floor = Floor::try_parse_from(std::iter::once("floor").chain(line.split_whitespace()))?;
        Ok(FloorOptions::from_args("x".into(), &floor.args))
    }

    #[test]
    fn flags_override_the_defaults_and_bad_values_are_refused() {
        let o = parse(
            "--calls 100 --concurrency 3 --shoppers 5 --secs 1.5 --checkouts 70 \
             --fleet-exe a,b --db-prefix p_ --mysql-url mysql://h:1/",
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
        let d = parse("").unwrap();
        assert!(d.db_prefix.starts_with("floor_"), "{}", d.db_prefix);
        assert_eq!((d.calls, d.checkouts, d.max_shoppers), (20_000, 50_000, 64));
        assert_eq!(
            parse("--retry-at-once").unwrap().retry,
            fleet::Retry::AtOnce
        );
        for bad in [
            "--calls 0",
            "--secs -1",
            "--db-prefix a-b",
            "--rounds x",
            "--nope 1",
            "--ignore-pushback --retry-at-once",
            "sideways",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
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
