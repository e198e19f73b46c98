//! `loadgen`: the call-path benchmark (default), the shopper workload and the invariant checker.
//!
//! ```text
//! loadgen [bench] [--calls N] [--concurrency N] [--slow-ms N] [--max-secs N] [--trace]
//! loadgen shop  [--users N] [--shoppers N | --rate R] [--duration SECS] [--max-ops N]
//!               [--seed N] [--json FILE] [--allow-remote] [--deadline-ms N] [--retry-at-once]
//!               [--auth-addr A[,A...]] [--user-addr A[,A...]] [--product-addr A[,A...]]
//!               [--cart-addr A[,A...]] [--order-addr A[,A...]] [--checkout-addr A[,A...]]
//! loadgen check --mysql-url URL --db-prefix P [--recovery-window SECS]
//!               [--initial-stock FILE | --snapshot FILE]
//! loadgen floor [calls|checkout|overload|memory|all] [--mysql-url U] [--redis-url U]
//!               [--db-prefix P] [--calls N] [--concurrency N] [--rounds N] [--shoppers N]
//!               [--secs S] [--step-secs S] [--max-shoppers N] [--checkouts N]
//!               [--fleet-exe A,B] [--real-hashing] [--ignore-pushback | --retry-at-once]
//! loadgen serve-bare --payload-hex H | serve-product [--cache-url U]
//!               | serve-fleet --mysql-url U --db-prefix P [--cache-url U] [--products N]
//!               [--real-hashing]
//! ```
//!
//! The `serve-*` commands are the server processes `floor` starts (see `loadgen::floor::serve`);
//! `loadgen drive --addr A --id N [--calls N] [--concurrency N] [--print-payload]` sends a fixed
//! number of `GetProduct`s to one of them (for a profiler's counts per call).
//!
//! Exit codes: `shop` 2 when a service answered INTERNAL or UNKNOWN; `check` 1 on any violated
//! invariant; 1 on a usage or setup error; else 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use loadgen::args::Flags;

/// The allocator trial of `loadgen floor memory` (see the crate's `mimalloc` feature).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use loadgen::check::{self, CheckOptions, Checked};
use loadgen::shop::{self, Load, ShopOptions};

const USAGE: &str = "\
usage:
  loadgen [bench] [--calls N] [--concurrency N] [--slow-ms N] [--max-secs N] [--trace]
  loadgen shop  [--users N] [--shoppers N | --rate R] [--duration SECS] [--max-ops N]
                [--seed N] [--json FILE] [--allow-remote] [--deadline-ms N] [--retry-at-once]
                [--auth-addr A[,A...]] [--user-addr A[,A...]] [--product-addr A[,A...]]
                [--cart-addr A[,A...]] [--order-addr A[,A...]] [--checkout-addr A[,A...]]
  loadgen check --mysql-url URL --db-prefix P [--recovery-window SECS]
                [--initial-stock FILE | --snapshot FILE]
  loadgen floor [calls|checkout|overload|memory|all] [--mysql-url U] [--redis-url U]
                [--db-prefix P] [--calls N] [--concurrency N] [--rounds N] [--shoppers N]
                [--secs S] [--step-secs S] [--max-shoppers N] [--checkouts N]
                [--fleet-exe A,B] [--real-hashing] [--ignore-pushback | --retry-at-once]
  loadgen serve-bare --payload-hex H | serve-product [--cache-url U]
                | serve-fleet --mysql-url U --db-prefix P [--cache-url U] [--products N] [--real-hashing]";

/// The benchmark's options, and whether `--trace` asks for trace export (to an in-process
/// OTLP collector, so the cost of tracing the call path can be compared with a run without).
fn bench_options(args: &[String]) -> anyhow::Result<(loadgen::Options, bool)> {
    let flags = Flags::parse(
        args,
        &["--calls", "--concurrency", "--slow-ms", "--max-secs"],
        &["--trace"],
    )?;
    let mut options = loadgen::Options::default();
    if let Some(n) = flags.get::<usize>("--calls")? {
        options.calls = n;
    }
    if let Some(n) = flags.get::<usize>("--concurrency")? {
        options.concurrency = n;
    }
    if let Some(n) = flags.get::<u64>("--slow-ms")? {
        options.slow = Duration::from_millis(n);
    }
    if let Some(n) = flags.get::<u64>("--max-secs")? {
        options.max_time = Duration::from_secs(n);
    }
    Ok((options, flags.switch("--trace")))
}

fn shop_options(args: &[String]) -> anyhow::Result<(ShopOptions, Option<PathBuf>)> {
    let flags = Flags::parse(
        args,
        &[
            "--users",
            "--shoppers",
            "--rate",
            "--duration",
            "--max-ops",
            "--seed",
            "--json",
            "--deadline-ms",
            "--auth-addr",
            "--user-addr",
            "--product-addr",
            "--cart-addr",
            "--order-addr",
            "--checkout-addr",
        ],
        &["--allow-remote", "--retry-at-once"],
    )?;
    let mut options = ShopOptions::default();
    if let Some(n) = flags.get("--users")? {
        options.users = n;
    }
    options.load = match (
        flags.get::<usize>("--shoppers")?,
        flags.get::<f64>("--rate")?,
    ) {
        (Some(_), Some(_)) => anyhow::bail!("give --shoppers or --rate, not both"),
        (Some(shoppers), None) => Load::Closed { shoppers },
        (None, Some(rate)) => Load::Open { rate },
        (None, None) => options.load,
    };
    if let Some(secs) = flags.get::<u64>("--duration")? {
        options.duration = Duration::from_secs(secs);
    }
    options.max_ops = flags.get("--max-ops")?;
    options.seed = flags.get("--seed")?;
    options.allow_remote = flags.switch("--allow-remote");
    options.retry_at_once = flags.switch("--retry-at-once");
    if let Some(ms) = flags.get::<u64>("--deadline-ms")? {
        anyhow::ensure!(ms > 0, "--deadline-ms must be positive");
        options.call_deadline = Duration::from_millis(ms);
    }
    let addrs = &mut options.addrs;
    for (flag, slot) in [
        ("--auth-addr", &mut addrs.auth),
        ("--user-addr", &mut addrs.user),
        ("--product-addr", &mut addrs.product),
        ("--cart-addr", &mut addrs.cart),
        ("--order-addr", &mut addrs.order),
        ("--checkout-addr", &mut addrs.checkout),
    ] {
        if let Some(addr) = flags.text(flag) {
            *slot = addr.to_string();
        }
    }
    Ok((options, flags.get::<PathBuf>("--json")?))
}

fn check_options(args: &[String]) -> anyhow::Result<CheckOptions> {
    let flags = Flags::parse(
        args,
        &[
            "--mysql-url",
            "--db-prefix",
            "--recovery-window",
            "--initial-stock",
            "--snapshot",
        ],
        &[],
    )?;
    let required = |name: &str| {
        flags
            .text(name)
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("{name} is required"))
    };
    let options = CheckOptions {
        mysql_url: required("--mysql-url")?,
        db_prefix: required("--db-prefix")?,
        recovery_window: flags
            .get::<u64>("--recovery-window")?
            .map_or(check::DEFAULT_RECOVERY_WINDOW, Duration::from_secs),
        initial_stock: flags.get("--initial-stock")?,
        snapshot: flags.get("--snapshot")?,
    };
    anyhow::ensure!(
        options.initial_stock.is_none() || options.snapshot.is_none(),
        "give --initial-stock (to check) or --snapshot (to record), not both"
    );
    Ok(options)
}

async fn main_with(args: &[String]) -> anyhow::Result<u8> {
    match args.first().map(String::as_str) {
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(0)
        }
        Some("-V" | "--version") => {
            println!("loadgen {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Some("shop") => {
            let (options, json) = shop_options(&args[1..])?;
            let report = shop::run(options).await?;
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
            print!("{}", report.to_markdown());
            Ok(u8::try_from(report.exit_code()).unwrap_or(2))
        }
        Some("check") => match check::run(check_options(&args[1..])?).await? {
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
        Some("floor") => {
            loadgen::floor::main(std::env::current_exe()?, &args[1..]).await?;
            Ok(0)
        }
        Some("serve-bare") => loadgen::floor::serve::serve_bare(&args[1..])
            .await
            .map(|()| 0),
        Some("serve-product") => loadgen::floor::serve::serve_product(&args[1..])
            .await
            .map(|()| 0),
        Some("serve-fleet") => loadgen::floor::serve::serve_fleet(&args[1..])
            .await
            .map(|()| 0),
        Some("drive") => loadgen::floor::calls::drive(&args[1..]).await.map(|()| 0),
        Some("bench") => bench(&args[1..]).await,
        _ => bench(args).await,
    }
}

async fn bench(args: &[String]) -> anyhow::Result<u8> {
    let (options, traced) = bench_options(args)?;
    // Every span of the run (servers' and clients') goes to this collector; logs stay quiet.
    let collector = match traced {
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
    let report = loadgen::run(options).await?;
    print!("{}", report.to_markdown());
    if let Some(collector) = &collector {
        mall_common::telemetry::trace::shutdown().await;
        println!("\nspans exported: {}", collector.count());
    }
    Ok(0)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = main_with(&args).await;
    // The servers' last log lines (stdout gets them in batches).
    mall_common::telemetry::flush_logs();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("loadgen: {e:#} (loadgen --help for usage)");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    /// Help and the version answer without running anything (a benchmark is the default).
    #[tokio::test]
    async fn help_and_version_answer_without_running() {
        for flag in ["--help", "-h", "help", "--version", "-V"] {
            assert_eq!(main_with(&args(flag)).await.unwrap(), 0, "{flag}");
        }
    }

    #[test]
    fn shop_takes_the_scripts_flags() {
        let (options, json) = shop_options(&args(
            "--users 8 --shoppers 3 --duration 20 --max-ops 500 --seed 9 --json out.json \
             --allow-remote --auth-addr 127.0.0.1:1 --user-addr 127.0.0.1:2 \
             --product-addr 127.0.0.1:3 --cart-addr 127.0.0.1:4 --order-addr 127.0.0.1:5 \
             --checkout-addr 127.0.0.1:6",
        ))
        .unwrap();
        assert_eq!(options.users, 8);
        assert_eq!(options.load, Load::Closed { shoppers: 3 });
        assert_eq!(options.duration, Duration::from_secs(20));
        assert_eq!((options.max_ops, options.seed), (Some(500), Some(9)));
        assert!(options.allow_remote);
        assert_eq!(json, Some(PathBuf::from("out.json")));
        assert_eq!(options.addrs.auth, "127.0.0.1:1");
        assert_eq!(options.addrs.checkout, "127.0.0.1:6");
        assert!(!options.retry_at_once);
        // Several instances of a service, balanced; retrying at once.
        let (balanced, _) = shop_options(&args(
            "--checkout-addr 127.0.0.1:8006,127.0.0.1:8106 --retry-at-once",
        ))
        .unwrap();
        assert_eq!(balanced.addrs.checkout, "127.0.0.1:8006,127.0.0.1:8106");
        assert!(balanced.retry_at_once);
        let (open, _) = shop_options(&args("--rate 250")).unwrap();
        assert_eq!(open.load, Load::Open { rate: 250.0 });
        // Defaults: 16 shoppers, 60 s, the well-known ports.
        let (defaults, _) = shop_options(&[]).unwrap();
        assert_eq!(defaults.load, Load::Closed { shoppers: 16 });
        assert_eq!(defaults.duration, Duration::from_secs(60));
        assert_eq!(defaults.addrs.product, "127.0.0.1:8003");
        assert!(shop_options(&args("--shoppers 2 --rate 5")).is_err());
    }

    #[test]
    fn check_needs_a_server_and_a_prefix() {
        let options = check_options(&args(
            "--mysql-url mysql://root@127.0.0.1:3306 --db-prefix fleet_ --recovery-window 30",
        ))
        .unwrap();
        assert_eq!(options.db_prefix, "fleet_");
        assert_eq!(options.recovery_window, Duration::from_secs(30));
        let defaults = check_options(&args(
            "--mysql-url mysql://h --db-prefix p_ --snapshot s.json",
        ))
        .unwrap();
        assert_eq!(defaults.recovery_window, check::DEFAULT_RECOVERY_WINDOW);
        assert_eq!(defaults.snapshot, Some(PathBuf::from("s.json")));
        assert!(check_options(&args("--db-prefix fleet_")).is_err());
        assert!(
            check_options(&args(
                "--mysql-url m --db-prefix p --snapshot a --initial-stock b"
            ))
            .is_err()
        );
    }

    #[test]
    fn bench_keeps_its_flags() {
        let (options, traced) = bench_options(&args(
            "--calls 300 --concurrency 4 --slow-ms 5 --max-secs 9",
        ))
        .unwrap();
        assert!(!traced);
        assert!(bench_options(&args("--trace")).unwrap().1);
        assert_eq!((options.calls, options.concurrency), (300, 4));
        assert_eq!(options.slow, Duration::from_millis(5));
        assert_eq!(options.max_time, Duration::from_secs(9));
    }
}
