//! Admission after a store stall longer than the callers' deadline: once the store answers
//! again, calls with (about) that same deadline are admitted again within a few seconds.
//!
//! The defect this guards against: admission refuses a call whose `grpc-timeout` is shorter than
//! "the fastest call of the last closed window" (`DEADLINE_EXCEEDED`, `x-mall-shed: deadline`),
//! and that floor only moves when an admitted call finishes. While the store stalls, every
//! call ends at the deadline (the server drops it there), so the windows of the stall close
//! with a floor of about the deadline; after the stall each call with that deadline is refused
//! before it can run, no call finishes, the floor never moves: the refusals go on forever.
//! (checkout-2 refused every public Checkout for 3 minutes after a 5 s MariaDB stall.)
//!
//! The stall holds the row the calls write: on SQLite a second connection holding the write lock
//! (`BEGIN IMMEDIATE`; the service's writers wait up to its 5 s `busy_timeout`, longer than
//! the stall, so they wait rather than fail), on MariaDB `SELECT ... FOR UPDATE` on the product's
//! row in an open transaction (the service's `UPDATE` waits for it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use mall_common::client::Clients;
use mall_common::config;
use mall_proto::product::v1 as pb;
use mall_testing::{ProductClient as Client, TestFleet, http_get};
use sqlx::{Connection, Executor};
use tonic::{Request, Status};

/// The callers' deadline, on the warm-up and stalled calls.
const DEADLINE: Duration = Duration::from_secs(1);
/// The deadline of the calls after the stall: the callers' deadline, a hair shorter. Where a
/// stalled call ends relative to its own deadline is a matter of a millisecond either way
/// (timer granularity, `grpc-timeout` in whole milliseconds, when the client's cancel or the
/// server's timer wins), as is the deadline left to a call that crossed a hop; the margin keeps
/// that from deciding the outcome. It is still hundreds of times a call's normal latency.
const DEADLINE_AFTER: Duration = Duration::from_millis(980);
/// How long the store stalls (longer than [`DEADLINE`]).
const STALL: Duration = Duration::from_millis(2_500);
/// Calls sent during the stall, one every [`SPACING`], as steady traffic arrives: they end at
/// the deadline [`SPACING`] apart, so several whole windows (10 calls and 20 ms) of them close.
const STALLED_CALLS: u32 = 40;
/// See [`STALLED_CALLS`].
const SPACING: Duration = Duration::from_millis(15);
/// Successful calls that warm the limiter up first (windows close at normal latency).
const WARM_UP_CALLS: u32 = 30;
/// How long after the stall calls may still be refused.
const RECOVERY: Duration = Duration::from_secs(5);
/// Consecutive successes that count as recovered.
const RECOVERED_AFTER: u32 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_longer_than_the_deadline_does_not_latch_admission() {
    // Default admission settings: adaptive, deadline check on.
    let fleet = TestFleet::start(&["product"]).await;
    let product = fleet.catalog().create_product("stalled", 100, 50).await;
    let admin = admin_client(&fleet);

    for i in 0..WARM_UP_CALLS {
        if let Err(e) = reprice(&admin, product, i, DEADLINE).await {
            panic!("warm-up call {i}: {e:?}");
        }
    }

    let mut lock = hold_row(&fleet, product).await;
    let stall_began = Instant::now();
    let stalled: Vec<_> = (0..STALLED_CALLS)
        .map(|i| {
            let admin = admin.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SPACING * i).await;
                let started = Instant::now();
                let result = reprice(&admin, product, 1_000 + i, DEADLINE).await;
                (result, started.elapsed())
            })
        })
        .collect();
    let mut stalled_outcomes = Tally::default();
    let mut at_deadline = 0;
    for call in stalled {
        let (result, took) = call.await.expect("stalled call task");
        if result.is_err() && took >= DEADLINE.mul_f64(0.9) {
            at_deadline += 1;
        }
        stalled_outcomes.add(&result);
    }
    assert!(
        stall_began.elapsed() < STALL,
        "the stalled calls outlasted the stall ({:?}): slow machine?",
        stall_began.elapsed()
    );
    assert!(
        at_deadline >= STALLED_CALLS / 2,
        "the stall did not hold the calls until their deadline: {at_deadline} of \
         {STALLED_CALLS} did; outcomes {stalled_outcomes}"
    );
    tokio::time::sleep(STALL.saturating_sub(stall_began.elapsed())).await;
    release(&mut lock).await;

    // Calls with (about) the same deadline must be served again soon.
    let released = Instant::now();
    let mut after = Tally::default();
    let mut in_a_row = 0;
    while in_a_row < RECOVERED_AFTER {
        if released.elapsed() > RECOVERY {
            let (_, metrics) = http_get(fleet.endpoints("product").admin, "/metrics").await;
            let admission: Vec<&str> = metrics
                .lines()
                .filter(|l| {
                    l.starts_with("grpc_server_shed_total")
                        || l.starts_with("grpc_server_concurrency_limit")
                })
                .collect();
            panic!(
                "calls with a {DEADLINE_AFTER:?} deadline were not served again within \
                 {RECOVERY:?} of the end of a {STALL:?} stall of {DEADLINE:?} calls \
                 ({RECOVERED_AFTER} in a row needed, last run {in_a_row}).\n during the stall, \
                 {stalled_outcomes}\n after it, {after}\n admission metrics: {admission:#?}"
            );
        }
        let result = reprice(&admin, product, 2_000 + after.total, DEADLINE_AFTER).await;
        if result.is_ok() {
            in_a_row += 1;
        } else {
            in_a_row = 0;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        after.add(&result);
    }
    println!(
        "served again {:?} after the stall; during it {stalled_outcomes}; after it {after}",
        released.elapsed()
    );
    fleet.stop().await;
}

/// An admin's client for the product service with the breaker off (it would open on the
/// stalled calls and fail the calls after them itself, hiding what the server answers).
fn admin_client(fleet: &TestFleet) -> Client {
    let defaults = config::Settings::defaults("test");
    let mut discovery = defaults.discovery;
    discovery.static_addrs.insert(
        "product".into(),
        vec![fleet.endpoints("product").grpc.to_string()],
    );
    let mut client = defaults.client;
    client.breaker.min_calls = u32::MAX;
    Clients::discover(&discovery, &client, None)
        .expect("clients")
        .client_as::<Client>(mall_types::ServiceName::Product, &fleet.admin_token())
        .unwrap_or_else(|e| panic!("product client: {e}"))
}

/// A public write (an admin's `UpdateProduct`) with `deadline`.
async fn reprice(admin: &Client, product: u64, n: u32, deadline: Duration) -> Result<(), Status> {
    let mut req = Request::new(pb::UpdateProductReq {
        id: product,
        price_cents: 100 + i64::from(n),
        ..Default::default()
    });
    req.set_timeout(deadline);
    admin.clone().update_product(req).await.map(|_| ())
}

/// Stalls the product service's writes to `product`: on SQLite the database's write lock, on
/// MySQL the product's row.
async fn hold_row(fleet: &TestFleet, product: u64) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = fleet.database_url("product");
    let mut lock = sqlx::AnyConnection::connect(&url).await.unwrap();
    if url.starts_with("sqlite:") {
        lock.execute("BEGIN IMMEDIATE").await.unwrap();
    } else {
        lock.execute("START TRANSACTION").await.unwrap();
        let id = i64::try_from(product).expect("a stored id");
        sqlx::query("SELECT id FROM products WHERE id = ? FOR UPDATE")
            .bind(id)
            .fetch_one(&mut lock)
            .await
            .unwrap();
    }
    lock
}

async fn release(lock: &mut sqlx::AnyConnection) {
    lock.execute("ROLLBACK").await.unwrap();
}

/// Outcomes of calls by code, message and `x-mall-shed`, for the failure message.
#[derive(Default)]
struct Tally {
    total: u32,
    seen: BTreeMap<String, u32>,
}

impl Tally {
    fn add(&mut self, result: &Result<(), Status>) {
        self.total += 1;
        let what = match result {
            Ok(()) => "OK".to_string(),
            Err(e) => {
                let shed = e
                    .metadata()
                    .get("x-mall-shed")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| format!(" [x-mall-shed: {v}]"))
                    .unwrap_or_default();
                format!("{:?} {:?}{shed}", e.code(), e.message())
            }
        };
        *self.seen.entry(what).or_default() += 1;
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} calls:", self.total)?;
        let mut sep = " ";
        for (what, n) in &self.seen {
            write!(f, "{sep}{n} × {what}")?;
            sep = ", ";
        }
        Ok(())
    }
}
