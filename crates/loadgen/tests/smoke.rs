//! A tiny run of every scenario: each completes its calls without failures and the report has
//! a ratio for each. No timing is asserted (benchmarks report ratios; they do not pass or fail).

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
