//! `loadgen`: the call-path benchmark (default), the shopper workload and the invariant checker.
//! `loadgen --help` lists the commands, `loadgen <command> --help` their options.
//!
//! The `serve-*` commands are the server processes `floor` starts (see `loadgen::floor::serve`);
//! `loadgen drive` sends a fixed number of `GetProduct`s to one of them (for a profiler's counts
//! per call).
//!
//! Exit codes: `shop` 2 when a service answered INTERNAL or UNKNOWN; `check` 1 on any violated
//! invariant; 2 on a usage error; 1 on a setup error; else 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use loadgen::check::{self, CheckOptions, Checked};
use loadgen::floor::FloorArgs;
use loadgen::floor::calls::DriveArgs;
use loadgen::floor::serve::{BareArgs, FleetArgs, ProductArgs};
use loadgen::shop::{self, Load, ShopOptions};

/// The allocator trial of `loadgen floor memory` (see the crate's `mimalloc` feature).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// TikTokMall's benchmarks, shopper workload and invariant checker.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a command: the call-path benchmark.
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The call-path benchmark (the default): GetProduct through the platform's layers.
    Bench(BenchArgs),
    /// The shopper workload against a running fleet.
    Shop(ShopArgs),
    /// Checks a fleet's databases against the invariants (or records the initial stock).
    Check(CheckArgs),
    /// The performance floor: calls, checkout, overload and memory, each against a baseline
    /// measured in the same run.
    Floor(FloorArgs),
    /// A bare tonic product server (a server process of `floor calls`).
    ServeBare(BareArgs),
    /// The product service as the fleet runs it (a server process of `floor calls`).
    ServeProduct(ProductArgs),
    /// The whole fleet in one process (the server process of `floor checkout|overload|memory`).
    ServeFleet(FleetArgs),
    /// A fixed number of GetProduct calls against one server, for a profiler.
    Drive(DriveArgs),
}

#[derive(Debug, Clone, Args)]
struct BenchArgs {
    /// Calls per scenario.
    #[arg(long)]
    calls: Option<usize>,
    /// Concurrent callers.
    #[arg(long)]
    concurrency: Option<usize>,
    /// The slow store's delay, in ms.
    #[arg(long, value_name = "MS")]
    slow_ms: Option<u64>,
    /// A scenario stops early after this long.
    #[arg(long, value_name = "SECS")]
    max_secs: Option<u64>,
    /// Export traces (to an in-process OTLP collector) to measure what tracing costs.
    #[arg(long)]
    trace: bool,
}

impl BenchArgs {
    fn options(&self) -> loadgen::Options {
        let mut options = loadgen::Options::default();
        if let Some(n) = self.calls {
            options.calls = n;
        }
        if let Some(n) = self.concurrency {
            options.concurrency = n;
        }
        if let Some(ms) = self.slow_ms {
            options.slow = Duration::from_millis(ms);
        }
        if let Some(secs) = self.max_secs {
            options.max_time = Duration::from_secs(secs);
        }
        options
    }
}

#[derive(Debug, Clone, Args)]
struct ShopArgs {
    /// Registered users the shoppers sign in as.
    #[arg(long)]
    users: Option<usize>,
    /// Concurrent shoppers (a closed workload; the default, 16).
    #[arg(long, conflicts_with = "rate")]
    shoppers: Option<usize>,
    /// Operations per second whatever the answers (an open workload).
    #[arg(long)]
    rate: Option<f64>,
    /// How long to shop, in seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Stop after this many operations.
    #[arg(long)]
    max_ops: Option<u64>,
    /// Seed of the shoppers' choices.
    #[arg(long)]
    seed: Option<u64>,
    /// Also write the report as JSON here.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Allow addresses other than loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Each call's deadline, in ms.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    deadline_ms: Option<u64>,
    /// Shoppers refused come back at once, ignoring the pushback.
    #[arg(long)]
    retry_at_once: bool,
    /// Auth's address(es), comma-separated.
    #[arg(long, value_name = "A[,A...]")]
    auth_addr: Option<String>,
    /// User's address(es).
    #[arg(long, value_name = "A[,A...]")]
    user_addr: Option<String>,
    /// Product's address(es).
    #[arg(long, value_name = "A[,A...]")]
    product_addr: Option<String>,
    /// Cart's address(es).
    #[arg(long, value_name = "A[,A...]")]
    cart_addr: Option<String>,
    /// Order's address(es).
    #[arg(long, value_name = "A[,A...]")]
    order_addr: Option<String>,
    /// Checkout's address(es).
    #[arg(long, value_name = "A[,A...]")]
    checkout_addr: Option<String>,
}

impl ShopArgs {
    fn options(&self) -> ShopOptions {
        let mut options = ShopOptions::default();
        if let Some(n) = self.users {
            options.users = n;
        }
        if let Some(shoppers) = self.shoppers {
            options.load = Load::Closed { shoppers };
        }
        if let Some(rate) = self.rate {
            options.load = Load::Open { rate };
        }
        if let Some(secs) = self.duration {
            options.duration = Duration::from_secs(secs);
        }
        options.max_ops = self.max_ops;
        options.seed = self.seed;
        options.allow_remote = self.allow_remote;
        options.retry_at_once = self.retry_at_once;
        if let Some(ms) = self.deadline_ms {
            options.call_deadline = Duration::from_millis(ms);
        }
        let addrs = &mut options.addrs;
        for (given, slot) in [
            (&self.auth_addr, &mut addrs.auth),
            (&self.user_addr, &mut addrs.user),
            (&self.product_addr, &mut addrs.product),
            (&self.cart_addr, &mut addrs.cart),
            (&self.order_addr, &mut addrs.order),
            (&self.checkout_addr, &mut addrs.checkout),
        ] {
            if let Some(addr) = given {
                slot.clone_from(addr);
            }
        }
        options
    }
}

#[derive(Debug, Clone, Args)]
struct CheckArgs {
    /// The MySQL/MariaDB server holding the fleet's databases.
    #[arg(long, value_name = "URL")]
    mysql_url: String,
    /// The prefix of the fleet's database names.
    #[arg(long, value_name = "P")]
    db_prefix: String,
    /// How long an open saga may stay open before it counts as stuck, in seconds.
    #[arg(long, value_name = "SECS")]
    recovery_window: Option<u64>,
    /// The snapshot of the initial stock to check against.
    #[arg(long, value_name = "FILE", conflicts_with = "snapshot")]
    initial_stock: Option<PathBuf>,
    /// Record the initial stock here (before the run) instead of checking.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,
}

impl CheckArgs {
    fn options(self) -> CheckOptions {
        CheckOptions {
            mysql_url: self.mysql_url,
            db_prefix: self.db_prefix,
            recovery_window: self
                .recovery_window
                .map_or(check::DEFAULT_RECOVERY_WINDOW, Duration::from_secs),
            initial_stock: self.initial_stock,
            snapshot: self.snapshot,
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<u8> {
    match cli.command.unwrap_or(Command::Bench(cli.bench)) {
        Command::Bench(args) => bench(&args).await,
        Command::Shop(args) => shop(&args).await,
        Command::Check(args) => match check::run(args.options()).await? {
            Checked::SnapshotWritten(path, products) => {
                println!(
                    "initial stock of {products} products written to {}",
                    path.display()
                );
                Ok(0)
            }
            Checked::Report(report) => {
                print!("{}", report.to_markdown());
                Ok(u8::try_from(report.exit_code()).unwrap_or(1))
            }
        },
        Command::Floor(args) => {
            loadgen::floor::main(std::env::current_exe()?, args).await?;
            Ok(0)
        }
        Command::ServeBare(args) => loadgen::floor::serve::serve_bare(args).await.map(|()| 0),
        Command::ServeProduct(args) => loadgen::floor::serve::serve_product(args).await.map(|()| 0),
        Command::ServeFleet(args) => loadgen::floor::serve::serve_fleet(args).await.map(|()| 0),
        Command::Drive(args) => loadgen::floor::calls::drive(args).await.map(|()| 0),
    }
}

async fn shop(args: &ShopArgs) -> anyhow::Result<u8> {
    let report = shop::run(args.options()).await?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    print!("{}", report.to_markdown());
    Ok(u8::try_from(report.exit_code()).unwrap_or(2))
}

async fn bench(args: &BenchArgs) -> anyhow::Result<u8> {
    // Every span of the run (servers' and clients') goes to this collector; logs stay quiet.
    let collector = match args.trace {
        true => Some(mall_testkit::otlp::Collector::start_counting().await),
        false => None,
    };
    if let Some(collector) = &collector {
        let settings = mall_common::config::TelemetrySettings {
            log_filter: "warn".into(),
            otlp_endpoint: Some(collector.endpoint()),
            ..Default::default()
        };
        mall_common::telemetry::init("loadgen", &settings);
    }
    let report = loadgen::run(args.options()).await?;
    print!("{}", report.to_markdown());
    if let Some(collector) = &collector {
        mall_common::telemetry::trace::shutdown().await;
        println!("\nspans exported: {}", collector.count());
    }
    Ok(0)
}

#[tokio::main]
async fn main() -> ExitCode {
    // Help, the version and usage errors are printed here and exit 0, 0 and 2.
    let cli = Cli::parse();
    let result = execute(cli).await;
    // The servers' last log lines (stdout gets them in batches).
    mall_common::telemetry::flush_logs();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(line: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadgen").chain(line.split_whitespace()))
    }

    fn shop_args(line: &str) -> ShopArgs {
        match parse(&format!("shop {line}")).unwrap().command {
            Some(Command::Shop(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Help and the version answer without running anything (a benchmark is the default);
    /// each command has its own help; an unknown argument is a usage error.
    #[test]
    fn help_and_version_answer_and_unknown_arguments_are_usage_errors() {
        for line in [
            "--help",
            "-h",
            "help",
            "--version",
            "-V",
            "shop --help",
            "floor --help",
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.exit_code(), 0, "{line}");
        }
        for line in [
            "--nope",
            "shop --nope 1",
            "floor nope",
            "check --db-prefix p",
        ] {
            assert_eq!(parse(line).unwrap_err().exit_code(), 2, "{line}");
        }
    }

    #[test]
    fn shop_takes_the_scripts_flags() {
        let args = shop_args(
            "--users 8 --shoppers 3 --duration 20 --max-ops 500 --seed 9 --json out.json \
             --allow-remote --auth-addr 127.0.0.1:1 --user-addr 127.0.0.1:2 \
             --product-addr 127.0.0.1:3 --cart-addr 127.0.0.1:4 --order-addr 127.0.0.1:5 \
             --checkout-addr 127.0.0.1:6",
        );
        let options = args.options();
        assert_eq!(options.users, 8);
        assert_eq!(options.load, Load::Closed { shoppers: 3 });
        assert_eq!(options.duration, Duration::from_secs(20));
        assert_eq!((options.max_ops, options.seed), (Some(500), Some(9)));
        assert!(options.allow_remote);
        assert_eq!(args.json, Some(PathBuf::from("out.json")));
        assert_eq!(options.addrs.auth, "127.0.0.1:1");
        assert_eq!(options.addrs.checkout, "127.0.0.1:6");
        assert!(!options.retry_at_once);
        // Several instances of a service, balanced; retrying at once.
        let balanced =
            shop_args("--checkout-addr 127.0.0.1:8006,127.0.0.1:8106 --retry-at-once").options();
        assert_eq!(balanced.addrs.checkout, "127.0.0.1:8006,127.0.0.1:8106");
        assert!(balanced.retry_at_once);
        assert_eq!(
            shop_args("--rate 250").options().load,
            Load::Open { rate: 250.0 }
        );
        // Defaults: 16 shoppers, 60 s, the well-known ports.
        let defaults = shop_args("").options();
        assert_eq!(defaults.load, Load::Closed { shoppers: 16 });
        assert_eq!(defaults.duration, Duration::from_secs(60));
        assert_eq!(defaults.addrs.product, "127.0.0.1:8003");
        assert!(parse("shop --shoppers 2 --rate 5").is_err());
        assert!(parse("shop --deadline-ms 0").is_err());
    }

    #[test]
    fn check_needs_a_server_and_a_prefix() {
        let check = |line: &str| match parse(&format!("check {line}")).map(|c| c.command) {
            Ok(Some(Command::Check(args))) => Ok(args.options()),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        };
        let options = check(
            "--mysql-url mysql://root@127.0.0.1:3306 --db-prefix fleet_ --recovery-window 30",
        )
        .unwrap();
        assert_eq!(options.db_prefix, "fleet_");
        assert_eq!(options.recovery_window, Duration::from_secs(30));
        let defaults = check("--mysql-url mysql://h --db-prefix p_ --snapshot s.json").unwrap();
        assert_eq!(defaults.recovery_window, check::DEFAULT_RECOVERY_WINDOW);
        assert_eq!(defaults.snapshot, Some(PathBuf::from("s.json")));
        assert!(check("--db-prefix fleet_").is_err());
        assert!(check("--mysql-url m --db-prefix p --snapshot a --initial-stock b").is_err());
    }

    #[test]
    fn bench_keeps_its_flags_with_or_without_its_name() {
        for line in [
            "--calls 300 --concurrency 4 --slow-ms 5 --max-secs 9",
            "bench --calls 300 --concurrency 4 --slow-ms 5 --max-secs 9",
        ] {
            let cli = parse(line).unwrap();
            let args = match cli.command {
                Some(Command::Bench(args)) => args,
                None => cli.bench,
                other => panic!("{other:?}"),
            };
            assert!(!args.trace);
            let options = args.options();
            assert_eq!((options.calls, options.concurrency), (300, 4));
            assert_eq!(options.slow, Duration::from_millis(5));
            assert_eq!(options.max_time, Duration::from_secs(9));
        }
        assert!(parse("--trace").unwrap().bench.trace);
    }
}
