//! Invariant tests of the checkout saga: a few hundred randomized checkouts with injected
//! faults against a real fleet (auth, product, payment, cart, order) and one checkout instance,
//! then the saga invariants of API.md checked on what the services report through gRPC; and
//! the checkout metrics on the admin port.
//!
//! The run is driven by a seeded RNG (`CHECKOUT_INVARIANTS_SEED` overrides the seed, printed on
//! failure). SQLite and the in-process cache by default; MariaDB and Redis when
//! `MALL_TEST_MYSQL_URL` and `MALL_TEST_REDIS_URL` are set.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mall::testing::{DECLINED_CARD, GOOD_CARD, TestFleet, checkout_request as request};
use mall_common::client::{Channel, Clients};
use mall_common::config::{self, Source};
use mall_proto::cart::v1 as cart_pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::checkout::v1 as pb;
use mall_proto::checkout::v1::checkout_service_client::CheckoutServiceClient;
use mall_proto::common::v1::CartItem;
use mall_proto::order::v1 as order_pb;
use mall_proto::order::v1::order_service_client::OrderServiceClient;
use mall_proto::payment::v1 as payment_pb;
use mall_proto::payment::v1::payment_service_client::PaymentServiceClient;
use mall_proto::product::v1 as product_pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::oneshot;
use tonic::Code;

use crate::support::Faults;

type CheckoutClient = CheckoutServiceClient<Channel>;
type CartClient = CartServiceClient<Channel>;
type OrderClient = OrderServiceClient<Channel>;
type PaymentClient = PaymentServiceClient<Channel>;
type ProductClient = ProductCatalogServiceClient<Channel>;

/// The services checkout calls.
async fn fleet() -> TestFleet {
    TestFleet::start(&["auth", "product", "payment", "cart", "order"]).await
}

/// A database URL for checkout beside the fleet's (same backend, fresh database).
fn checkout_db_url(fleet: &TestFleet) -> String {
    let order = fleet.database_url("order");
    match order.strip_suffix("_order") {
        Some(base) => format!("{base}_checkout"),
        None => order.replace("/order.db", "/checkout.db"),
    }
}

/// A checkout instance on port 0.
struct Instance {
    addr: SocketAddr,
    admin_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

async fn start_checkout(fleet: &TestFleet, db_url: &str, hooks: Faults) -> Instance {
    let mut env = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    put("MALL__PROFILE", "test".into());
    put("MALL__SERVER__HOST", "127.0.0.1".into());
    put("MALL__SERVER__PORT", "0".into());
    put("MALL__SERVER__DRAIN_DELAY", "0s".into());
    put("MALL__SERVER__SHUTDOWN_GRACE", "2s".into());
    put("MALL__DATABASE__URL", db_url.to_string());
    put(
        "MALL__CACHE__NAMESPACE",
        format!("checkout-test-{}", uuid::Uuid::new_v4().simple()),
    );
    if let Ok(redis) = std::env::var(mall::testing::REDIS_ENV) {
        put("MALL__CACHE__URL", redis);
    }
    for name in ["product", "cart", "order", "payment"] {
        put(
            &format!("MALL__DISCOVERY__STATIC__{}", name.to_uppercase()),
            fleet.endpoints(name).grpc.to_string(),
        );
    }
    put("MALL__CHECKOUT__STEP_TIMEOUT", "2s".into());
    put("MALL__CHECKOUT__BUDGET", "8s".into());
    put("MALL__CHECKOUT__RECOVERY_INTERVAL", "100ms".into());
    put("MALL__CHECKOUT__RETRY_DELAY", "100ms".into());
    let settings = config::load(
        checkout::NAME,
        checkout::default_settings(),
        &Source { file: None, env },
    )
    .expect("checkout settings");
    let bound = checkout::build_with(settings, hooks.wrap())
        .await
        .expect("start checkout");
    let addr = bound.grpc_addr;
    let admin_addr = bound.admin_addr;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(async move {
        let _ = stopped.await;
    }));
    Instance {
        addr,
        admin_addr,
        stop: Some(stop),
        task,
    }
}

/// A checkout client for `instance` acting as `user_id`.
fn user_client(fleet: &TestFleet, instance: &Instance, user_id: u64) -> CheckoutClient {
    let mut discovery = config::Settings::defaults("test").discovery;
    discovery
        .static_addrs
        .insert("checkout".into(), vec![instance.addr.to_string()]);
    let mut client = config::Settings::defaults("test").client;
    client.request_timeout = std::time::Duration::from_secs(30);
    Clients::discover(&discovery, &client, None)
        .expect("clients")
        .client_as::<CheckoutClient>("checkout", &fleet.user_token(user_id))
        .expect("checkout client")
}

async fn create_product(fleet: &TestFleet, name: &str, price_cents: i64, stock: u32) -> u64 {
    fleet
        .client_as::<ProductClient>("product", &fleet.admin_token())
        .create_product(product_pb::CreateProductReq {
            name: name.into(),
            description: format!("{name} for checkout invariant tests"),
            picture: String::new(),
            price_cents,
            stock,
            categories: vec![],
        })
        .await
        .expect("create product")
        .into_inner()
        .id
}

async fn stock_of(fleet: &TestFleet, id: u64) -> u32 {
    fleet
        .client::<ProductClient>("product")
        .get_product(product_pb::GetProductReq { id })
        .await
        .expect("get product")
        .into_inner()
        .product
        .expect("product")
        .stock
}

async fn add_to_cart(fleet: &TestFleet, user_id: u64, product_id: u64, quantity: i32) {
    fleet
        .client::<CartClient>("cart")
        .add_item(cart_pb::AddItemReq {
            user_id,
            item: Some(CartItem {
                product_id,
                quantity,
            }),
        })
        .await
        .expect("add to cart");
}

async fn empty_cart(fleet: &TestFleet, user_id: u64) {
    fleet
        .client::<CartClient>("cart")
        .empty_cart(cart_pb::EmptyCartReq { user_id })
        .await
        .expect("empty cart");
}

async fn orders_of(fleet: &TestFleet, user_id: u64) -> Vec<order_pb::Order> {
    let resp = fleet
        .client::<OrderClient>("order")
        .list_order(order_pb::ListOrderReq {
            user_id,
            page: 1,
            page_size: 100,
        })
        .await
        .expect("list orders")
        .into_inner();
    assert_eq!(
        resp.total,
        resp.orders.len() as u64,
        "user {user_id}: all orders fit one page"
    );
    resp.orders
}

fn status(order: &order_pb::Order) -> order_pb::OrderStatus {
    order_pb::OrderStatus::try_from(order.status).expect("known status")
}

async fn payment_of_order(
    fleet: &TestFleet,
    order_id: &str,
) -> Result<payment_pb::Payment, tonic::Status> {
    fleet
        .client::<PaymentClient>("payment")
        .get_payment(payment_pb::GetPaymentReq {
            transaction_id: String::new(),
            order_id: order_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn checkout(
    client: &mut CheckoutClient,
    req: pb::CheckoutReq,
) -> Result<pb::CheckoutResp, tonic::Status> {
    client.checkout(req).await.map(|r| r.into_inner())
}

async fn cleanup(fleet: TestFleet, db_url: String) {
    fleet.stop().await;
    let _ = mall_common::store::drop_database(&db_url).await;
}

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
    let (code, body) = mall::testing::http_get(instance.admin_addr, "/metrics").await;
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
    FailEmptyCart,
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
    let db = checkout_db_url(&fleet);
    let hooks = Faults::default();
    let instance = start_checkout(&fleet, &db, hooks.clone()).await;

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
        let id = create_product(&fleet, name, price, stock).await;
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
                _ => Action::FailEmptyCart,
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
                empty_cart(fleet, plan.user).await;
                for (p, quantity) in &plan.lines {
                    add_to_cart(fleet, plan.user, products[*p].0, *quantity).await;
                }
                let card = match plan.action {
                    Action::Declined => DECLINED_CARD,
                    Action::FailMarkPaid(n) => {
                        hooks.fail_mark_paid.store(n, Ordering::SeqCst);
                        GOOD_CARD
                    }
                    Action::FailEmptyCart => {
                        hooks.fail_empty_cart.store(1, Ordering::SeqCst);
                        GOOD_CARD
                    }
                    Action::Good => GOOD_CARD,
                };
                let req = request(plan.user, card, &format!("inv-{seed}-{}", plan.index));
                let result = checkout(&mut user_client(fleet, instance, plan.user), req).await;
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
            pending += orders_of(&fleet, *user)
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
        for o in orders_of(&fleet, *user).await {
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
        let payment = match payment_of_order(&fleet, id).await {
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
        let now = stock_of(&fleet, *id).await;
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
    cleanup(fleet, db).await;
}

#[tokio::test]
async fn metrics_count_outcomes_and_compensations() {
    let fleet = fleet().await;
    let db = checkout_db_url(&fleet);
    let instance = start_checkout(&fleet, &db, Faults::default()).await;
    let product = create_product(&fleet, "Kettle", 2_500, 5).await;
    let (payer, decliner) = (30_001, 30_002);
    add_to_cart(&fleet, payer, product, 1).await;
    add_to_cart(&fleet, decliner, product, 2).await;

    checkout(
        &mut user_client(&fleet, &instance, payer),
        request(payer, GOOD_CARD, "metrics-ok"),
    )
    .await
    .expect("checkout");
    let err = checkout(
        &mut user_client(&fleet, &instance, decliner),
        request(decliner, DECLINED_CARD, "metrics-declined"),
    )
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

    instance.stop().await;
    cleanup(fleet, db).await;
}
