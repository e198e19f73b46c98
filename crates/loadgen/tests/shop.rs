//! `loadgen shop` against a whole fleet on port 0 (the demo catalog, SQLite or MariaDB as the
//! suite runs): short runs of both load models, bounded by operations and time.

use std::time::Duration;

use loadgen::shop::api::Addrs;
use loadgen::shop::stats::ShopReport;
use loadgen::shop::{self, Load, ShopOptions};
use mall_testing::TestFleet;
use mall_types::ServiceName;

async fn demo_fleet() -> TestFleet {
    let names: Vec<&str> = ServiceName::ALL.iter().map(|s| s.as_str()).collect();
    TestFleet::start_with(&names, &[("MALL__CATALOG__SEED_DEMO", "true")]).await
}

fn addrs(fleet: &TestFleet) -> Addrs {
    let at = |name: &str| fleet.endpoints(name).grpc.to_string();
    Addrs {
        auth: at("auth"),
        user: at("user"),
        product: at("product"),
        cart: at("cart"),
        order: at("order"),
        checkout: at("checkout"),
    }
}

fn row<'a>(report: &'a ShopReport, name: &str) -> &'a loadgen::shop::stats::OpRow {
    report
        .operations
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no {name} row in\n{}", report.to_markdown()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_model_shoppers_browse_add_and_check_out() {
    let fleet = demo_fleet().await;
    let options = ShopOptions {
        addrs: addrs(&fleet),
        users: 4,
        load: Load::Closed { shoppers: 4 },
        duration: Duration::from_secs(60),
        max_ops: Some(260),
        seed: Some(11),
        progress_every: None,
        // Debug builds on a loaded CI machine.
        call_deadline: Duration::from_secs(20),
        ..ShopOptions::default()
    };
    let report = shop::run(options).await.expect("the run");
    let md = report.to_markdown();
    assert_eq!(report.users, 4, "{md}");
    assert_eq!(report.operations_done, 260, "{md}");
    assert_eq!(report.setup[0].name, "Register", "{md}");
    assert_eq!(report.setup[0].statuses.get("OK"), Some(&4), "{md}");
    for name in [
        "ListProducts",
        "SearchProducts",
        "GetProduct",
        "AddItem",
        "GetCart",
    ] {
        let row = row(&report, name);
        assert_eq!(row.statuses.get("OK"), Some(&row.count), "{name}: {md}");
        assert!(row.p50_ms <= row.p99_ms && row.p99_ms <= row.max_ms, "{md}");
    }
    // Checkouts happen, and are only sent for a cart the shopper has added to: never "empty".
    let checkout = row(&report, "Checkout");
    assert!(checkout.statuses.get("OK").is_some_and(|n| *n > 0), "{md}");
    assert!(
        !report.messages.iter().any(|m| m.message.contains("empty")),
        "{md}"
    );
    let end_to_end = report.checkouts.as_ref().expect("end-to-end checkouts");
    assert_eq!(end_to_end.name, "Checkout (end to end)", "{md}");
    assert!(end_to_end.count <= checkout.count, "{md}");
    assert_eq!(
        report.total.count,
        report.operations.iter().map(|r| r.count).sum::<u64>()
    );
    assert_eq!(report.exit_code(), 0, "{md}");
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_model_arrivals_are_bounded_in_time_and_by_users() {
    let fleet = demo_fleet().await;
    let options = ShopOptions {
        addrs: addrs(&fleet),
        users: 2,
        load: Load::Open { rate: 100.0 },
        duration: Duration::from_secs(2),
        seed: Some(5),
        progress_every: None,
        call_deadline: Duration::from_secs(20),
        ..ShopOptions::default()
    };
    let report = shop::run(options).await.expect("the run");
    let md = report.to_markdown();
    assert_eq!(report.model, "open", "{md}");
    assert!(report.operations_done > 0, "{md}");
    // About 200 arrivals in 2 s: each performed or (every user busy) dropped.
    let arrivals = report.operations_done + report.arrivals_dropped;
    assert!((100..=320).contains(&arrivals), "{arrivals} arrivals: {md}");
    assert!(report.elapsed_secs < 30.0, "{md}");
    assert_eq!(report.exit_code(), 0, "{md}");
    fleet.stop().await;
}

#[tokio::test]
async fn addresses_off_loopback_are_refused_unless_allowed() {
    let options = ShopOptions {
        addrs: Addrs {
            product: "192.0.2.10:8003".into(),
            ..Addrs::default()
        },
        progress_every: None,
        ..ShopOptions::default()
    };
    let err = shop::run(options).await.expect_err("a remote address");
    assert!(err.to_string().contains("--product-addr"), "{err}");
    assert!(err.to_string().contains("--allow-remote"), "{err}");
}

/// A loopback port nothing listens on (bound, then let go).
fn dead_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("its address");
    drop(listener);
    addr.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_balanced_around_an_address_nobody_listens_on() {
    let fleet = demo_fleet().await;
    let mut addrs = addrs(&fleet);
    // Every service the shoppers call has a dead address next to its live one, first or last.
    addrs.product = format!("{},{}", dead_port(), addrs.product);
    addrs.cart = format!("{},{}", addrs.cart, dead_port());
    addrs.checkout = format!("{},{}", dead_port(), addrs.checkout);
    addrs.user = format!("{},{}", addrs.user, dead_port());
    let options = ShopOptions {
        addrs,
        users: 3,
        load: Load::Closed { shoppers: 3 },
        duration: Duration::from_secs(60),
        max_ops: Some(150),
        seed: Some(17),
        progress_every: None,
        call_deadline: Duration::from_secs(20),
        ..ShopOptions::default()
    };
    let report = shop::run(options).await.expect("the run");
    let md = report.to_markdown();
    assert_eq!(report.operations_done, 150, "{md}");
    assert_eq!(report.setup[0].statuses.get("OK"), Some(&3), "{md}");
    // Every call answered OK: the dead addresses were never the answer.
    for row in &report.operations {
        assert_eq!(
            row.statuses.get("OK"),
            Some(&row.count),
            "{}: {md}",
            row.name
        );
    }
    assert!(
        !report
            .messages
            .iter()
            .any(|m| m.status.contains("transport")),
        "{md}"
    );
    // The timeline counts the checkouts: all ok, none without a connection.
    let ok: u64 = report.timeline.iter().map(|b| b.ok).sum();
    let conn_failed: u64 = report.timeline.iter().map(|b| b.conn_failed).sum();
    let checkouts = report.checkouts.as_ref().expect("checkouts");
    assert!(ok > 0, "{md}");
    assert_eq!((ok, conn_failed), (checkouts.count, 0), "{md}");
    assert!(report.load_started_unix > 1.6e9, "{md}");
    assert_eq!(report.exit_code(), 0, "{md}");
    fleet.stop().await;
}
