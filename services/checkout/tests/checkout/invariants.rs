//! Invariant tests of the checkout saga: a few hundred randomized checkouts with injected
//! faults against a real fleet (auth, product, payment, cart, order) and one checkout instance,
//! then the saga invariants of API.md checked on what the services report through gRPC; and
//! the checkout metrics on the admin port.
//!
//! The run is driven by a seeded RNG (`CHECKOUT_INVARIANTS_SEED` overrides the seed, printed on
//! failure). SQLite and the in-process cache by default; MariaDB and Redis when
//! `MALL_TEST_MYSQL_URL` and `MALL_TEST_REDIS_URL` are set.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mall_proto::checkout::v1 as pb;
use mall_proto::order::v1 as order_pb;
use mall_testing::order_status as status;
use mall_testing::{DECLINED_CARD, GOOD_CARD, checkout_request as request, http_get};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::support::{Faults, Instance, fleet};

/// The value of the sample line `series` (name with labels, exactly as exposed) in a
/// Prometheus text exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let rest = rest.strip_prefix(' ')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

async fn metrics_of(instance: &Instance) -> String {
    let (code, body) = http_get(instance.admin_addr, "/metrics").await;
    assert_eq!(code, 200, "GET /metrics: {body}");
    body
}

/// What one randomized checkout does besides filling the cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Action {
    /// Pays with the good card.
    Good,
    /// Pays with the always-declined card.
    Declined,
    /// Arms this many `MarkOrderPaid` failures, then pays with the good card (1 is absorbed by
    /// the saga's retries; more than `MARK_PAID_ATTEMPTS` forces the refund path, unless
    /// concurrent checkouts take some of them).
    FailMarkPaid(u32),
    /// Arms one `EmptyCart` failure, then pays with the good card.
    FailRemovePurchased,
}

#[derive(Debug, Clone)]
struct Plan {
    index: usize,
    user: u64,
    /// `(product index, quantity)` added to the cart first.
    lines: Vec<(usize, i32)>,
    action: Action,
}

const CHECKOUTS: usize = 200;
const USERS: u64 = 40;
const FIRST_USER: u64 = 20_000;
const CONCURRENCY: usize = 8;
const DEFAULT_SEED: u64 = 0x5eed_c0de;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomized_checkouts_with_injected_faults_keep_every_invariant() {
    let seed = std::env::var("CHECKOUT_INVARIANTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let hooks = Faults::default();
    let instance = Instance::start(&fleet, &db, hooks.clone(), &[]).await;

    // Products with known prices: three scarce ones (sold out early, so checkouts race for
    // the last units) and three with a few dozen units (enough that most of the run still
    // reaches the charge, the step the faults hit, before they sell out too).
    let catalog: [(&str, i64, u32); 6] = [
        ("Apple", 250, 3),
        ("Bread", 1_000, 5),
        ("Cheese", 799, 8),
        ("Donut", 125, 40),
        ("Eggs", 399, 45),
        ("Flour", 1_499, 50),
    ];
    const SCARCE: usize = 3;
    let mut products = Vec::new();
    for (name, price, stock) in catalog {
        let id = fleet.catalog().create_product(name, price, stock).await;
        products.push((id, price, stock));
    }

    // The whole run is decided up front by the seeded RNG.
    let plans: Vec<Plan> = (0..CHECKOUTS)
        .map(|index| {
            let user = FIRST_USER + rng.random_range(0..USERS);
            let lines = (0..rng.random_range(1..=3))
                .map(|_| {
                    // One line in six is a scarce product.
                    let product = if rng.random_range(0..6) == 0 {
                        rng.random_range(0..SCARCE)
                    } else {
                        rng.random_range(SCARCE..products.len())
                    };
                    (product, rng.random_range(1..=2))
                })
                .collect();
            let action = match rng.random_range(0..100) {
                0..50 => Action::Good,
                50..70 => Action::Declined,
                70..78 => Action::FailMarkPaid(1),
                78..86 => Action::FailMarkPaid(checkout::saga::MARK_PAID_ATTEMPTS + 2),
                _ => Action::FailRemovePurchased,
            };
            Plan {
                index,
                user,
                lines,
                action,
            }
        })
        .collect();

    let results: Vec<(Plan, Result<pb::CheckoutResp, tonic::Status>)> =
        futures::stream::iter(plans.into_iter().map(|plan| {
            let fleet = &fleet;
            let instance = &instance;
            let hooks = &hooks;
            let products = &products;
            async move {
                // A fresh cart per checkout: a failed checkout leaves its lines in the cart,
                // and a sold-out line would fail every later checkout of that user.
                fleet.cart(plan.user).empty().await.expect("empty cart");
                for (p, quantity) in &plan.lines {
                    fleet
                        .cart(plan.user)
                        .add(products[*p].0, *quantity)
                        .await
                        .unwrap();
                }
                let card = match plan.action {
                    Action::Declined => DECLINED_CARD,
                    Action::FailMarkPaid(n) => {
                        hooks.fail_mark_paid.store(n, Ordering::SeqCst);
                        GOOD_CARD
                    }
                    Action::FailRemovePurchased => {
                        hooks.fail_remove_purchased.store(1, Ordering::SeqCst);
                        GOOD_CARD
                    }
                    Action::Good => GOOD_CARD,
                };
                let req = request(plan.user, card, &format!("inv-{seed}-{}", plan.index));
                let result = instance.checkout(fleet, plan.user).send(req).await;
                (plan, result)
            }
        }))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let ran = started.elapsed();

    // What the clients were told, by action and answer (for the report on failure).
    let mut answers: BTreeMap<(Action, String), usize> = BTreeMap::new();
    for (plan, result) in &results {
        let answer = match result {
            Ok(_) => "OK".to_string(),
            Err(e) => format!("{:?}: {}", e.code(), e.message()),
        };
        *answers.entry((plan.action, answer)).or_default() += 1;
    }
    let summary = answers
        .iter()
        .map(|((action, answer), n)| format!("  {n:>4} × {action:?} → {answer}"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("seed {seed}: {CHECKOUTS} checkouts in {ran:?}\n{summary}");

    // Wait for the recovery worker: no saga open, no order PENDING.
    let users: Vec<u64> = (FIRST_USER..FIRST_USER + USERS).collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let open = sample(&metrics_of(&instance).await, "checkout_open_sagas");
        let mut pending = 0;
        for user in &users {
            pending += fleet
                .orders(*user)
                .list()
                .await
                .iter()
                .filter(|o| status(o) == order_pb::OrderStatus::Pending)
                .count();
        }
        if open == Some(0.0) && pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the recovery worker did not finish within 15 s: \
             checkout_open_sagas = {open:?}, PENDING orders = {pending}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Read everything back and check the invariants, collecting every violation.
    let mut violations: Vec<String> = Vec::new();
    let mut orders: HashMap<String, order_pb::Order> = HashMap::new();
    for user in &users {
        for o in fleet.orders(*user).list().await {
            if o.user_id != *user {
                violations.push(format!(
                    "order {} listed for user {user}: {o:?}",
                    o.order_id
                ));
            }
            orders.insert(o.order_id.clone(), o);
        }
    }
    for (plan, result) in &results {
        if let Ok(resp) = result {
            match orders.get(&resp.order_id) {
                None => violations.push(format!(
                    "checkout #{} ({:?}) answered order {} which user {} does not have",
                    plan.index, plan.action, resp.order_id, plan.user
                )),
                Some(o) if status(o) != order_pb::OrderStatus::Paid => violations.push(format!(
                    "checkout #{} ({:?}) succeeded but its order is {:?}: {o:?}",
                    plan.index,
                    plan.action,
                    status(o)
                )),
                Some(o) if o.transaction_id != resp.transaction_id => violations.push(format!(
                    "checkout #{} answered transaction {} but its order carries {}",
                    plan.index, resp.transaction_id, o.transaction_id
                )),
                Some(_) => {}
            }
        }
    }

    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut refunded = 0;
    let mut sold: HashMap<u64, i64> = HashMap::new();
    let mut ids: Vec<&String> = orders.keys().collect();
    ids.sort();
    for id in ids {
        let o = &orders[id];
        let st = status(o);
        *by_status.entry(format!("{st:?}")).or_default() += 1;
        let payment = match fleet.payments().of_order(id).await {
            Ok(p) => Some(p),
            Err(e) if e.code() == Code::NotFound => None,
            Err(e) => panic!("GetPayment for order {id}: {e:?}"),
        };
        if let Some(p) = &payment
            && (p.order_id != *id || p.user_id != o.user_id)
        {
            violations.push(format!(
                "payment {} of order {id} names order {} / user {} (order's user {})",
                p.transaction_id, p.order_id, p.user_id, o.user_id
            ));
        }
        match st {
            order_pb::OrderStatus::Paid => {
                for line in &o.order_items {
                    if let Some(item) = &line.item {
                        *sold.entry(item.product_id).or_default() += i64::from(item.quantity);
                    }
                }
                match &payment {
                    None => violations.push(format!("PAID order has no payment: {o:?}")),
                    Some(p) => {
                        if p.amount_cents != o.total_cents
                            || p.refunded_cents != 0
                            || p.transaction_id != o.transaction_id
                        {
                            violations.push(format!(
                                "PAID order {id} (total {}, tx {}) has payment {p:?}",
                                o.total_cents, o.transaction_id
                            ));
                        }
                    }
                }
            }
            order_pb::OrderStatus::Cancelled => {
                if let Some(p) = &payment {
                    refunded += 1;
                    if p.refunded_cents != p.amount_cents {
                        violations.push(format!(
                            "CANCELLED order {id} has a payment not fully refunded: {p:?}; order {o:?}"
                        ));
                    }
                }
            }
            other => violations.push(format!("order {id} ended {other:?}: {o:?}")),
        }
        // The order's total is the catalog price of its lines.
        let expected: i64 = o
            .order_items
            .iter()
            .filter_map(|l| l.item.as_ref())
            .map(|i| {
                let price = products
                    .iter()
                    .find(|p| p.0 == i.product_id)
                    .map(|p| p.1)
                    .unwrap_or_default();
                price * i64::from(i.quantity)
            })
            .sum();
        if expected != o.total_cents {
            violations.push(format!(
                "order {id} totals {} but its lines cost {expected}: {o:?}",
                o.total_cents
            ));
        }
    }

    // Stock: what is left plus what PAID orders hold is what there was.
    for (id, _, initial) in &products {
        let now = fleet.catalog().stock_of(*id).await;
        let held = sold.get(id).copied().unwrap_or_default();
        if i64::from(now) + held != i64::from(*initial) {
            violations.push(format!(
                "product {id}: stock now {now} + sold in PAID orders {held} != initial {initial}"
            ));
        }
    }

    eprintln!(
        "seed {seed}: {} orders {by_status:?}, {refunded} refunded charges",
        orders.len()
    );
    assert!(
        violations.is_empty(),
        "seed {seed}: {} invariant violations:\n{}\nanswers:\n{summary}",
        violations.len(),
        violations.join("\n")
    );

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn metrics_count_outcomes_and_compensations() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let instance = Instance::start(&fleet, &db, Faults::default(), &[]).await;
    let product = fleet.catalog().create_product("Kettle", 2_500, 5).await;
    let (payer, decliner) = (30_001, 30_002);
    fleet.cart(payer).add(product, 1).await.unwrap();
    fleet.cart(decliner).add(product, 2).await.unwrap();

    instance
        .checkout(&fleet, payer)
        .pay(GOOD_CARD, "metrics-ok")
        .await
        .expect("checkout");
    let err = instance
        .checkout(&fleet, decliner)
        .pay(DECLINED_CARD, "metrics-declined")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let body = metrics_of(&instance).await;
    for line in [
        r#"checkout_outcomes_total{outcome="success"} 1"#,
        r#"checkout_outcomes_total{outcome="declined"} 1"#,
        r#"checkout_compensations_total{kind="cancel_order"} 1"#,
        r#"checkout_compensations_total{kind="release_stock"} 1"#,
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing `{line}` in /metrics:\n{body}"
        );
    }
    assert!(
        !body.contains(r#"checkout_compensations_total{kind="refund"}"#),
        "nothing was charged, so nothing refunded:\n{body}"
    );
    assert!(
        !body.contains(r#"checkout_outcomes_total{outcome="error"}"#),
        "{body}"
    );
    assert_eq!(
        sample(&body, "checkout_saga_duration_seconds_count"),
        Some(2.0),
        "both checkouts timed:\n{body}"
    );
    assert!(
        sample(&body, "checkout_saga_duration_seconds_sum").is_some_and(|s| s > 0.0),
        "{body}"
    );
    // Every step's call is timed by step: both checkouts read, priced, placed, reserved and
    // charged; one was paid, the other compensated.
    for (step, count) in [
        ("read_cart", 2.0),
        ("charge", 2.0),
        ("mark_paid", 1.0),
        ("cart_cleanup", 1.0),
        ("compensate.cancel_order", 1.0),
        ("compensate.release_stock", 1.0),
    ] {
        let series = format!("checkout_step_duration_seconds_count{{step=\"{step}\"}}");
        assert_eq!(sample(&body, &series), Some(count), "{series}:\n{body}");
    }

    instance.stop().await;
    fleet.stop().await;
}
