//! `loadgen check` on MariaDB/MySQL (runs only with `MALL_TEST_MYSQL_URL`): a fleet on its own
//! databases buys and fails to buy a few things and takes some shopper load; the checker finds
//! it consistent, against the demo seed and against a snapshot taken before; then rows are
//! corrupted one rule at a time and each is reported with its ids.

use std::time::Duration;

use loadgen::check::model::Rule;
use loadgen::check::{self, CheckOptions, CheckReport, Checked};
use loadgen::shop::api::Addrs;
use loadgen::shop::{self, Load, ShopOptions};
use mall_testing::{DECLINED_CARD, GOOD_CARD, MYSQL_ENV, TestFleet};
use mall_types::ServiceName;
use sqlx::{AssertSqlSafe, Connection, MySqlConnection};

async fn check(options: &CheckOptions) -> CheckReport {
    match check::run(options.clone()).await.expect("check runs") {
        Checked::Report(report) => *report,
        Checked::SnapshotWritten(..) => panic!("asked for a check"),
    }
}

fn rules(report: &CheckReport) -> Vec<Rule> {
    let mut rules: Vec<Rule> = report.violations.iter().map(|v| v.rule).collect();
    rules.sort();
    rules
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_after_load_is_consistent_and_each_corruption_is_found() {
    let Ok(server) = std::env::var(MYSQL_ENV) else {
        eprintln!("skipped: set {MYSQL_ENV} to run the checker on MariaDB/MySQL");
        return;
    };
    let server = server.trim_end_matches('/').to_string();
    let names: Vec<&str> = ServiceName::ALL.iter().map(|s| s.as_str()).collect();
    let fleet = TestFleet::start_with(&names, &[("MALL__CATALOG__SEED_DEMO", "true")]).await;
    let product_db = fleet.database_url("product");
    let prefix = product_db
        .rsplit('/')
        .next()
        .and_then(|db| db.strip_suffix("product"))
        .expect("a {service} database template")
        .to_string();
    let dir = tempfile::tempdir().expect("temporary directory");
    let snapshot_file = dir.path().join("initial-stock.json");
    let options = CheckOptions {
        mysql_url: server.clone(),
        db_prefix: prefix.clone(),
        recovery_window: Duration::from_secs(30),
        initial_stock: None,
        snapshot: None,
    };

    // Before any load: the initial stock, to compare against later.
    let written = check::run(CheckOptions {
        snapshot: Some(snapshot_file.clone()),
        ..options.clone()
    })
    .await
    .expect("snapshot");
    assert!(
        matches!(&written, Checked::SnapshotWritten(_, 30)),
        "{written:?}"
    );

    // Two purchases, one declined card (order cancelled, stock released), then shoppers.
    let mut paid = Vec::new();
    for (user, card) in [(101, GOOD_CARD), (102, GOOD_CARD), (103, DECLINED_CARD)] {
        fleet.cart(user).add(1, 2).await.expect("add");
        fleet.cart(user).add(7, 1).await.expect("add");
        let answer = fleet.checkout(user).pay(card, &format!("k-{user}")).await;
        if card == GOOD_CARD {
            paid.push(answer.expect("checkout").order_id);
        } else {
            assert!(answer.is_err(), "{answer:?}");
        }
    }
    let at = |name: &str| fleet.endpoints(name).grpc.to_string();
    let load = shop::run(ShopOptions {
        addrs: Addrs {
            auth: at("auth"),
            user: at("user"),
            product: at("product"),
            cart: at("cart"),
            order: at("order"),
            checkout: at("checkout"),
        },
        users: 3,
        load: Load::Closed { shoppers: 3 },
        max_ops: Some(120),
        seed: Some(3),
        progress_every: None,
        call_deadline: Duration::from_secs(20),
        ..ShopOptions::default()
    })
    .await
    .expect("shoppers");

    let clean = check(&options).await;
    let md = clean.to_markdown();
    eprintln!("{}\n{md}", load.to_markdown());
    assert!(clean.violations.is_empty(), "{md}\n{}", load.to_markdown());
    assert_eq!(clean.exit_code(), 0);
    assert_eq!(clean.products_checked, 30, "{md}");
    assert!(
        clean.counts.orders.get("PAID").is_some_and(|n| *n >= 2),
        "{md}"
    );
    assert!(clean.counts.orders.contains_key("CANCELLED"), "{md}");
    assert!(md.contains("No violation."), "{md}");
    let from_snapshot = check(&CheckOptions {
        initial_stock: Some(snapshot_file),
        ..options.clone()
    })
    .await;
    assert!(
        from_snapshot.violations.is_empty(),
        "{}",
        from_snapshot.to_markdown()
    );
    assert!(from_snapshot.initial_stock.contains("initial-stock.json"));

    // Now break each rule, with timestamps old enough that nothing is left to settle.
    let mut db = MySqlConnection::connect(&server).await.expect("connect");
    let (order, payment, product, checkout) = (
        format!("`{prefix}order`"),
        format!("`{prefix}payment`"),
        format!("`{prefix}product`"),
        format!("`{prefix}checkout`"),
    );
    let (cancelled, underpaid) = (&paid[0], &paid[1]);
    for sql in [
        // Rules 1 and 2: a paid order turned CANCELLED keeps its payment and its reservation.
        format!("UPDATE {order}.orders SET status = 3, updated_at = 1 WHERE id = '{cancelled}'"),
        format!("UPDATE {payment}.payments SET updated_at = 1 WHERE order_id = '{cancelled}'"),
        // Rule 5: a paid order whose payment is a cent short.
        format!(
            "UPDATE {payment}.payments SET amount_cents = amount_cents - 1 \
             WHERE order_id = '{underpaid}'"
        ),
        // Rule 3: a unit appears from nowhere.
        format!("UPDATE {product}.products SET stock = stock + 1 WHERE id = 2"),
        // Rule 4: a saga that never finished.
        format!(
            "INSERT INTO {checkout}.sagas (id, user_id, idempotency_key, fingerprint, state, step, \
             contact_json, created_at, updated_at) \
             VALUES ('stuck-saga', 104, 'k:stuck', 'f', 'running', 'charge', '{{}}', 1, 1)"
        ),
    ] {
        sqlx::raw_sql(AssertSqlSafe(sql.clone()))
            .execute(&mut db)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let broken = check(&options).await;
    let md = broken.to_markdown();
    eprintln!("{md}");
    assert_eq!(
        rules(&broken),
        [
            Rule::PaymentWithoutPaidOrder,
            Rule::CancelledOrderHoldsStock,
            Rule::StockDoesNotAddUp,
            Rule::SagaLeftOpen,
            Rule::PaidOrderWithoutPayment,
        ],
        "{md}"
    );
    assert_eq!(broken.exit_code(), 1);
    for id in [cancelled.as_str(), underpaid, "stuck-saga", "product 2"] {
        assert!(md.contains(id), "{id} in\n{md}");
    }
    assert!(broken.waited_secs < 5.0, "nothing was left to settle: {md}");
    drop(db);
    fleet.stop().await;
}
