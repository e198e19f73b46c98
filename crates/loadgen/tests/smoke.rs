//! A tiny run of every scenario: each completes its calls without failures and the report has
//! a ratio for each. No timing is asserted (benchmarks report ratios; they do not pass or fail).
//! The `loadgen floor` benchmarks run too, tiny, with their servers as child processes of this
//! package's binary; the MariaDB ones skip (with a note) without `MALL_TEST_MYSQL_URL`.

use std::time::Duration;

use loadgen::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_and_is_reported_against_the_baseline() {
    let options = Options {
        calls: 300,
        concurrency: 4,
        slow: Duration::from_millis(5),
        max_time: Duration::from_secs(30),
    };
    let report = loadgen::run(options).await.expect("run");
    let names: Vec<&str> = report.scenarios.iter().map(|m| m.name).collect();
    assert_eq!(
        names,
        [
            "direct",
            "mall x1",
            "mall x3",
            "round-robin x3, 1 slow",
            "mall x3, 1 slow"
        ]
    );
    for m in &report.scenarios {
        assert_eq!((m.ok, m.failed), (300, 0), "{m:?}");
        assert!(m.throughput > 0.0 && m.p99 >= m.p50, "{m:?}");
    }
    let table = report.to_markdown();
    assert_eq!(table.matches("| mall x3, 1 slow |").count(), 1, "{table}");
    assert!(table.contains("| direct | 300 | 0 |"), "{table}");
    assert!(table.contains("1.00× | 1.00× |"), "{table}");
}

/// `loadgen floor`'s options for a tiny run: the server processes are this package's binary.
fn floor_options() -> loadgen::floor::FloorOptions {
    let mut o = loadgen::floor::FloorOptions::new(env!("CARGO_BIN_EXE_loadgen").into());
    o.redis_url = std::env::var("MALL_TEST_REDIS_URL").unwrap_or_else(|_| "memory://".into());
    if let Ok(url) = std::env::var("MALL_TEST_MYSQL_URL") {
        o.mysql_url = url.trim_end_matches('/').to_string();
    }
    o
}

/// The MariaDB-dependent floor benchmarks run only with `MALL_TEST_MYSQL_URL`.
fn mysql_or_skip(test: &str) -> bool {
    let set = std::env::var("MALL_TEST_MYSQL_URL").is_ok();
    if !set {
        eprintln!("{test}: skipped (set MALL_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306 to run)");
    }
    set
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_calls_measures_the_product_server_against_a_bare_one() {
    let mut options = floor_options();
    options.calls = 300;
    options.concurrency = 2;
    options.rounds = 1;
    let report = loadgen::floor::calls::run(&options).await.expect("run");
    let names: Vec<&str> = report.rows.iter().map(|r| r.name).collect();
    assert_eq!(names, ["bare tonic", "product server"]);
    for r in &report.rows {
        assert_eq!((r.ok, r.failed), (300, 0), "{r:?}");
        assert!(r.throughput > 0.0 && r.p99 >= r.p50, "{r:?}");
    }
    // The same product bytes from both (an encoded Product with the benchmark's name).
    assert!(report.payload_bytes > 20, "{report:?}");
    let table = report.to_markdown();
    assert!(table.contains("| bare tonic | 300 | 0 |"), "{table}");
    assert!(table.contains("| product server | 300 | 0 |"), "{table}");
    assert!(table.contains("Goal ≤ 1.30×"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_checkout_and_overload_run_against_a_child_fleet() {
    if !mysql_or_skip("floor_checkout_and_overload_run_against_a_child_fleet") {
        return;
    }
    let mut options = floor_options();
    options.shoppers = 2;
    options.secs = Duration::from_secs(1);
    options.step_secs = Duration::from_secs(1);
    options.max_shoppers = 2;
    let prefix = format!("{}f_", options.db_prefix);
    let mut fleet = loadgen::floor::fleet::FloorFleet::start(
        &options.exe,
        &options.mysql_url,
        &options.redis_url,
        &prefix,
        false,
    )
    .await
    .expect("fleet");
    let checkout = loadgen::floor::checkout::run(&options, &mut fleet).await;
    let overload = loadgen::floor::overload::run(&options, &mut fleet).await;
    // Every successful checkout made an order (none was an idempotent replay of an earlier one).
    let orders: Result<i64, _> = async {
        let pool = loadgen::floor::checkout::server_pool(&options.mysql_url, 1).await?;
        let n = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM `{prefix}order`.orders"
        )))
        .fetch_one(&pool)
        .await?;
        anyhow::Ok(n)
    }
    .await;
    fleet.stop().await;

    let checkout = checkout.expect("checkout");
    let c = &checkout.checkouts;
    assert!(!c.admitted.is_empty(), "{checkout:?}");
    assert_eq!(c.failures(), 0, "{:?}", c.failed);
    // Every checkout ran statements and committed; the INSERTs committed once each at least.
    let [questions, _, handler_commits] = checkout.checkout_cost.counters;
    assert!(questions >= c.admitted.len() as u64, "{checkout:?}");
    assert!(handler_commits >= c.admitted.len() as u64, "{checkout:?}");
    assert!(!checkout.inserts.latencies.is_empty(), "{checkout:?}");
    assert_eq!(checkout.inserts.failed, 0, "{checkout:?}");
    assert!(
        checkout.insert_cost.counters[2] >= checkout.inserts.latencies.len() as u64,
        "{checkout:?}"
    );
    let table = checkout.to_markdown();
    assert!(table.contains("| AddItem + Checkout |"), "{table}");
    assert!(table.contains("| autocommit INSERT (floor) |"), "{table}");

    let overload = overload.expect("overload");
    assert!((1..=2).contains(&overload.knee), "{overload:?}");
    use loadgen::floor::overload::{MODES, MULTIPLES};
    assert_eq!(overload.levels.len(), 2 * MODES.len() * MULTIPLES.len());
    for limiter in [true, false] {
        for retry in MODES {
            for m in MULTIPLES {
                let level = overload.level(m, limiter, retry).expect("every level ran");
                assert_eq!(level.shoppers, overload.knee * m);
                assert!(!level.outcome.admitted.is_empty(), "{level:?}");
            }
        }
    }
    assert!(overload.peak() > 0.0 && overload.unloaded_p50() > Duration::ZERO);
    let admitted: usize = c.admitted.len()
        + overload
            .search
            .iter()
            .chain(overload.levels.iter().filter(|l| l.limiter))
            .map(|l| l.outcome.admitted.len())
            .sum::<usize>();
    let orders = orders.expect("count orders");
    assert!(
        orders >= admitted as i64,
        "{orders} orders, {admitted} checkouts"
    );
    let table = overload.to_markdown();
    assert!(table.contains("| on | at once | 8× |"), "{table}");
    assert!(table.contains("| off | pushback | 8× |"), "{table}");
    assert!(
        table.contains("Goals at 8×, clients retrying at once"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floor_memory_reads_the_fleets_resident_set_as_checkouts_go() {
    if !mysql_or_skip("floor_memory_reads_the_fleets_resident_set_as_checkouts_go") {
        return;
    }
    let mut options = floor_options();
    options.shoppers = 2;
    options.checkouts = 40;
    let report = loadgen::floor::memory::run(&options).await.expect("run");
    let [run] = report.runs.as_slice() else {
        panic!("one run per fleet binary: {report:?}");
    };
    assert!(run.checkouts >= 40, "{run:?}");
    assert_eq!(run.failures, 0, "{run:?}");
    assert_eq!(run.allocator, loadgen::ALLOCATOR);
    assert_eq!(run.rss.len(), 5, "{run:?}");
    assert!(run.rss_start > 1 << 20, "{run:?}");
    assert!(run.rss.iter().all(|(_, rss)| *rss > 1 << 20), "{run:?}");
    let table = report.to_markdown();
    assert!(table.contains(loadgen::ALLOCATOR), "{table}");
}
