//! The fleet `loadgen floor` loads: every service in one child process (`loadgen serve-fleet`)
//! on MariaDB and Redis, and shoppers that each add one item and check out, over and over.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mall_proto::cart::v1 as cart;
use mall_proto::common::v1::CartItem;
use mall_proto::user::v1 as user;
use parking_lot::Mutex;
use rand::Rng;
use tokio::time::Instant;
use tonic::Code;

use super::Latencies;
use super::procs::ServerChild;
use crate::shop::api::{Addrs, Api, bearer};
use crate::shop::shopper::{User, checkout_request};

/// How a shopper comes back after a refusal (or any failed call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// After what the refusal's retry pushback says (jittered ±20%), else [`REFUSED_BACKOFF`]:
    /// a client with gRPC's retry policy.
    Pushback,
    /// After [`REFUSED_BACKOFF`] (jittered ±50%), whatever the server says.
    Fixed,
    /// At once, with no pause at all: load tools, gateways, naive retry loops.
    AtOnce,
}

impl Retry {
    /// How the report names it.
    pub fn label(self) -> &'static str {
        match self {
            Retry::Pushback => "pushback",
            Retry::Fixed => "50 ms",
            Retry::AtOnce => "at once",
        }
    }
}

/// Deadline of every call the shoppers make.
const CALL_DEADLINE: Duration = Duration::from_secs(5);
/// A shopper refused (`RESOURCE_EXHAUSTED` without a pushback, or any other failure) waits
/// this long, jittered ±50%, before trying again — as a client with a retry budget would,
/// instead of spinning. A refusal with gRPC's retry pushback (`grpc-retry-pushback-ms`, which
/// the fleet's admission sends) waits what it says, jittered ±20%, as gRPC's retry policy does.
pub const REFUSED_BACKOFF: Duration = Duration::from_millis(50);

/// A running floor fleet.
pub struct FloorFleet {
    /// The child process.
    pub child: ServerChild,
    /// Clients to it.
    pub api: Api,
    /// The products it created.
    pub products: Vec<u64>,
    /// Users registered so far.
    users: Vec<User>,
    run_id: String,
    /// Loads driven so far (part of every idempotency key).
    loads: AtomicU64,
    /// How refused shoppers come back.
    pub retry: Retry,
}

impl FloorFleet {
    /// Starts `exe serve-fleet` on databases `<db_prefix><service>` (with the default Argon2 cost
    /// if `real_hashing`).
    pub async fn start(
        exe: &Path,
        mysql_url: &str,
        cache_url: &str,
        db_prefix: &str,
        real_hashing: bool,
    ) -> anyhow::Result<FloorFleet> {
        Self::start_with_env(exe, mysql_url, cache_url, db_prefix, real_hashing, &[]).await
    }

    /// Like [`FloorFleet::start`], with `env` (`MALL__*` settings) added to the fleet's.
    pub async fn start_with_env(
        exe: &Path,
        mysql_url: &str,
        cache_url: &str,
        db_prefix: &str,
        real_hashing: bool,
        env: &[(&str, &str)],
    ) -> anyhow::Result<FloorFleet> {
        let mut args: Vec<String> = vec![
            "serve-fleet".into(),
            "--mysql-url".into(),
            mysql_url.into(),
            "--db-prefix".into(),
            db_prefix.into(),
            "--cache-url".into(),
            cache_url.into(),
        ];
        if real_hashing {
            args.push("--real-hashing".into());
        }
        let child = ServerChild::start_with_env(exe, &args, env, Duration::from_secs(180)).await?;
        let addr = |name: &str| -> anyhow::Result<String> {
            child
                .ready
                .get("addrs")
                .and_then(|a| a.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| anyhow::anyhow!("serve-fleet named no {name} address"))
        };
        let addrs = Addrs {
            auth: addr("auth")?,
            user: addr("user")?,
            product: addr("product")?,
            cart: addr("cart")?,
            order: addr("order")?,
            checkout: addr("checkout")?,
        };
        let products: Vec<u64> = child
            .ready
            .get("products")
            .and_then(|p| p.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default();
        anyhow::ensure!(!products.is_empty(), "serve-fleet created no products");
        Ok(FloorFleet {
            child,
            api: Api::new(&addrs, CALL_DEADLINE)?,
            products,
            users: Vec::new(),
            run_id: format!("{:08x}", rand::rng().random::<u32>()),
            loads: AtomicU64::new(0),
            retry: Retry::Pushback,
        })
    }

    /// Makes sure at least `count` users are registered; the first `count`.
    pub async fn users(&mut self, count: usize) -> anyhow::Result<Vec<User>> {
        let have = self.users.len();
        if count > have {
            let api = &self.api;
            let run_id = &self.run_id;
            let more: Vec<anyhow::Result<User>> = futures::stream::iter(have..count)
                .map(|i| async move {
                    let username = format!("floor_{run_id}_{i}");
                    let password = format!("floor-{run_id}-secret");
                    let email = format!("{username}@example.com");
                    let registered = api
                        .register(user::RegisterReq {
                            username: username.clone(),
                            password: password.clone(),
                            email: email.clone(),
                            phone: String::new(),
                        })
                        .await
                        .map_err(|s| anyhow::anyhow!("Register: {:?} {}", s.code(), s.message()))?;
                    Ok(User {
                        id: registered.user_id,
                        username,
                        password,
                        email,
                        auth: bearer(&registered.token)?,
                        pending: false,
                        unsettled_key: None,
                        checkouts: 0,
                    })
                })
                .buffered(4)
                .collect()
                .await;
            for user in more {
                self.users.push(user?);
            }
        }
        Ok(self.users[..count].to_vec())
    }

    /// Stops the fleet (it drops its databases).
    pub async fn stop(self) {
        self.child.stop().await;
    }
}

/// When a load stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// After this long.
    Elapsed(Duration),
    /// Once this many checkouts succeeded (a few more may finish in flight).
    Checkouts(u64),
}

/// What shoppers saw during one load.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Wall time of the load.
    pub elapsed: Duration,
    /// Latencies of successful checkouts (the Checkout call).
    pub admitted: Latencies,
    /// Latencies of calls refused with `RESOURCE_EXHAUSTED` (AddItem or Checkout).
    pub shed: Latencies,
    /// Those of them refused at once (no room to wait, or no waiting room).
    pub shed_at_once: Latencies,
    /// Those refused after waiting for a slot (`x-mall-shed: queue`).
    pub shed_waited: Latencies,
    /// Other failures by code.
    pub failed: BTreeMap<String, u64>,
}

impl Outcome {
    /// Successful checkouts per second.
    pub fn goodput(&self) -> f64 {
        self.admitted.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Failures other than shedding.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// The failures as `CODE×n, …` (or `-`).
    pub fn failures_text(&self) -> String {
        if self.failed.is_empty() {
            return "-".into();
        }
        self.failed
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Default)]
struct Shared {
    admitted: Vec<Duration>,
    /// With whether the call waited for a slot first.
    shed: Vec<(Duration, bool)>,
    failed: BTreeMap<String, u64>,
}

/// Whether a refusal came after waiting for a slot.
fn waited(status: &tonic::Status) -> bool {
    status
        .metadata()
        .get(mall_common::context::SHED_HEADER)
        .is_some_and(|v| v == "queue")
}

/// Whether the checkout may have happened (the same idempotency key is retried).
fn outcome_unknown(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Aborted | Code::DeadlineExceeded | Code::Unknown
    ) && !crate::shop::shopper::decided(status)
}

/// Waits before the next try after `refused`, as `retry` says.
async fn back_off(refused: &tonic::Status, retry: Retry) {
    let pause = match (retry, mall_common::context::retry_pushback(refused)) {
        (Retry::AtOnce, _) => return,
        (Retry::Pushback, Some(pause)) => pause.mul_f64(rand::rng().random_range(0.8..1.2)),
        (Retry::Pushback | Retry::Fixed, _) => {
            REFUSED_BACKOFF.mul_f64(rand::rng().random_range(0.5..1.5))
        }
    };
    tokio::time::sleep(pause).await;
}

/// What the shoppers of one load share.
struct Load {
    api: Api,
    shared: Mutex<Shared>,
    done: AtomicU64,
    products: Vec<u64>,
    run_id: String,
    load_id: u64,
    retry: Retry,
    stop_at: Instant,
    target: u64,
}

impl Load {
    fn running(&self) -> bool {
        Instant::now() < self.stop_at && self.done.load(Ordering::Relaxed) < self.target
    }

    /// Counts a failure other than shedding.
    fn failed(&self, what: String) {
        *self.shared.lock().failed.entry(what).or_default() += 1;
    }

    /// One shopper: adds an item and checks out, over and over, while the load runs.
    async fn shopper(&self, user: User) {
        let (api, retry) = (&self.api, self.retry);
        let mut pending = false;
        let mut key: Option<String> = None;
        let mut n = 0u64;
        while self.running() {
            if !pending {
                let product_id = self.products[rand::rng().random_range(0..self.products.len())];
                let req = cart::AddItemReq {
                    user_id: user.id,
                    item: Some(CartItem {
                        product_id,
                        quantity: 1,
                    }),
                };
                let t = Instant::now();
                match api.add_item(req, &user.auth).await {
                    Ok(_) => pending = true,
                    Err(s) => {
                        match s.code() {
                            Code::ResourceExhausted => {
                                self.shared.lock().shed.push((t.elapsed(), waited(&s)))
                            }
                            code => self.failed(format!("AddItem {code:?}")),
                        }
                        back_off(&s, retry).await;
                        continue;
                    }
                }
            }
            let key_now = key
                .get_or_insert_with(|| {
                    n += 1;
                    format!("floor-{}-{}-{}-{n}", self.run_id, self.load_id, user.id)
                })
                .clone();
            let t = Instant::now();
            let answer = api
                .checkout(checkout_request(&user, &key_now), &user.auth)
                .await;
            let took = t.elapsed();
            match answer {
                Ok(_) => {
                    self.shared.lock().admitted.push(took);
                    self.done.fetch_add(1, Ordering::Relaxed);
                    pending = false;
                    key = None;
                }
                // Shed before any work: the same key is fine to retry.
                Err(s) if s.code() == Code::ResourceExhausted => {
                    self.shared.lock().shed.push((took, waited(&s)));
                    back_off(&s, retry).await;
                }
                Err(s) => {
                    self.failed(format!("Checkout {:?}", s.code()));
                    if !outcome_unknown(&s) {
                        // Refused for good: start over with a fresh cart and key.
                        key = None;
                        let _ = api
                            .empty_cart(cart::EmptyCartReq { user_id: user.id }, &user.auth)
                            .await;
                        pending = false;
                    }
                    back_off(&s, retry).await;
                }
            }
        }
    }
}

/// One shopper per user in `users`, each adding one item (quantity 1) and checking out, until
/// `until`.
pub async fn drive(fleet: &FloorFleet, users: Vec<User>, until: Until) -> Outcome {
    let started = Instant::now();
    let (stop_at, target) = match until {
        Until::Elapsed(d) => (started + d, u64::MAX),
        Until::Checkouts(n) => (started + Duration::from_secs(24 * 3600), n),
    };
    let load = Arc::new(Load {
        api: fleet.api.clone(),
        shared: Mutex::new(Shared::default()),
        done: AtomicU64::new(0),
        products: fleet.products.clone(),
        run_id: fleet.run_id.clone(),
        // Idempotency keys are new in every load (a key reused from an earlier load would
        // replay that checkout's answer instead of checking out).
        load_id: fleet.loads.fetch_add(1, Ordering::Relaxed),
        retry: fleet.retry,
        stop_at,
        target,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for user in users {
        let load = load.clone();
        tasks.spawn(async move { load.shopper(user).await });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let shared = std::mem::take(&mut *load.shared.lock());
    let pick = |waited: Option<bool>| {
        Latencies::of(
            shared
                .shed
                .iter()
                .filter(|(_, w)| waited.is_none_or(|want| *w == want))
                .map(|(d, _)| *d)
                .collect(),
        )
    };
    Outcome {
        elapsed,
        admitted: Latencies::of(shared.admitted.clone()),
        shed: pick(None),
        shed_at_once: pick(Some(false)),
        shed_waited: pick(Some(true)),
        failed: shared.failed,
    }
}
