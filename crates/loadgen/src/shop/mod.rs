//! `loadgen shop`: shoppers against a running fleet, over the network.
//!
//! Users are registered up front through the user service; then shoppers draw operations from
//! the Online Boutique mix ([`mix`]) — as a fixed number of concurrent shoppers (closed model)
//! or as arrivals at a target rate (open model, Poisson, at most one operation per user at a
//! time) — until the duration or the operation budget runs out. Every call has a deadline; a
//! progress line goes to stderr; the report ([`stats::ShopReport`]) has count, rate, latency and
//! every status seen per operation and for the whole mix, and the checkouts over time
//! ([`timeline`]). Every service may be given several addresses: calls are balanced over them
//! ([`api`]).

pub mod api;
pub mod mix;
pub mod shopper;
pub mod stats;
pub mod timeline;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mall_proto::product::v1 as product;
use mall_proto::user::v1 as user;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::api::{Addrs, Api, bearer};
use self::mix::{MIX_CALLS, Op};
use self::shopper::{Catalog, Session, User};
use self::stats::{Recorder, ShopReport};

/// Default number of users registered before the load.
pub const DEFAULT_USERS: usize = 50;
/// Default number of concurrent shoppers (closed model).
pub const DEFAULT_SHOPPERS: usize = 16;
/// Default length of the load.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);
/// Deadline of every call.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(5);
/// How long to wait for every service to report SERVING before giving up.
const READY_PATIENCE: Duration = Duration::from_secs(15);
/// Registrations in flight at once (each hashes a password on the server).
const REGISTER_CONCURRENCY: usize = 4;
/// Products per page when reading the whole catalog before the load.
const CATALOG_PAGE: i64 = 100;
/// The catalog is read up to this many pages.
const CATALOG_MAX_PAGES: i32 = 100;

/// How load arrives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// This many shoppers, each starting its next operation when the last one ended.
    Closed {
        /// Concurrent shoppers.
        shoppers: usize,
    },
    /// Operations arriving at this rate (Poisson), whether or not earlier ones have ended;
    /// an arrival finding every user busy is dropped and counted.
    Open {
        /// Arrivals per second.
        rate: f64,
    },
}

/// What `loadgen shop` runs.
#[derive(Debug, Clone)]
pub struct ShopOptions {
    /// Where the services listen.
    pub addrs: Addrs,
    /// Users registered before the load.
    pub users: usize,
    /// Closed or open model.
    pub load: Load,
    /// No operation starts after this long.
    pub duration: Duration,
    /// No more than this many operations (a checkout with its retries is one).
    pub max_ops: Option<u64>,
    /// Seed of the shoppers' choices (random when `None`; the report names it).
    pub seed: Option<u64>,
    /// Allow addresses off this machine's loopback.
    pub allow_remote: bool,
    /// Deadline of every call.
    pub call_deadline: Duration,
    /// A progress line on stderr this often (`None`: quiet).
    pub progress_every: Option<Duration>,
    /// Retry a refused or undecided checkout at once, as naive clients do, instead of after
    /// the server's retry pushback or a backoff (see [`shopper`]).
    pub retry_at_once: bool,
}

impl Default for ShopOptions {
    fn default() -> Self {
        ShopOptions {
            addrs: Addrs::default(),
            users: DEFAULT_USERS,
            load: Load::Closed {
                shoppers: DEFAULT_SHOPPERS,
            },
            duration: DEFAULT_DURATION,
            max_ops: None,
            seed: None,
            allow_remote: false,
            call_deadline: DEFAULT_CALL_DEADLINE,
            progress_every: Some(Duration::from_secs(2)),
            retry_at_once: false,
        }
    }
}

/// Users not busy with an operation; taking one waits until one is free.
struct Pool {
    users: Mutex<VecDeque<User>>,
    free: Semaphore,
}

impl Pool {
    fn new(users: Vec<User>) -> Pool {
        let free = Semaphore::new(users.len());
        Pool {
            users: Mutex::new(users.into()),
            free,
        }
    }

    async fn take(&self) -> Option<User> {
        self.free.acquire().await.ok()?.forget();
        self.users.lock().pop_front()
    }

    fn try_take(&self) -> Option<User> {
        self.free.try_acquire().ok()?.forget();
        self.users.lock().pop_front()
    }

    fn put(&self, user: User) {
        self.users.lock().push_back(user);
        self.free.add_permits(1);
    }
}

/// What every shopper shares.
struct Run {
    api: Api,
    catalog: Catalog,
    run_id: String,
    pool: Pool,
    recorder: Mutex<Recorder>,
    /// Operations still allowed (`u64::MAX` without `--max-ops`).
    ops_left: AtomicU64,
    ops_done: AtomicU64,
    stop_at: Instant,
    hard_stop: Instant,
    retry_at_once: bool,
}

impl Run {
    /// Claims one operation from the budget, if the run is not over.
    fn claim(&self) -> bool {
        Instant::now() < self.stop_at
            && self
                .ops_left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
    }

    /// `user` performs one operation drawn with `rng`.
    async fn one_operation(&self, rng: &mut StdRng, user: &mut User) {
        let op = mix::draw(rng);
        let mut session = Session {
            api: &self.api,
            catalog: &self.catalog,
            run_id: &self.run_id,
            recorder: &self.recorder,
            rng,
            hard_stop: self.hard_stop,
            retry_at_once: self.retry_at_once,
        };
        session.perform(op, user).await;
        self.ops_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Refuses options that cannot make a run.
fn check_options(options: &ShopOptions) -> anyhow::Result<()> {
    anyhow::ensure!(options.users > 0, "--users must be at least 1");
    match options.load {
        Load::Closed { shoppers } => anyhow::ensure!(shoppers > 0, "--shoppers must be at least 1"),
        Load::Open { rate } => anyhow::ensure!(
            rate.is_finite() && rate > 0.0 && rate <= 100_000.0,
            "--rate must be above 0 and at most 100000"
        ),
    }
    anyhow::ensure!(!options.duration.is_zero(), "--duration must be positive");
    Ok(())
}

/// Runs the workload and returns its report.
pub async fn run(options: ShopOptions) -> anyhow::Result<ShopReport> {
    check_options(&options)?;
    options.addrs.ensure_loopback(options.allow_remote).await?;
    api::wait_until_serving(&options.addrs, READY_PATIENCE).await?;
    let api = Api::new(&options.addrs, options.call_deadline)?;
    let catalog = read_catalog(&api).await?;
    let seed = options.seed.unwrap_or_else(|| rand::rng().random());
    let run_id = format!("{:08x}", rand::rng().random::<u32>());
    let recorder = Mutex::new(Recorder::default());
    let registering = Instant::now();
    let users = register_users(&api, &run_id, options.users, &recorder).await;
    let registered_in = registering.elapsed();
    anyhow::ensure!(
        !users.is_empty(),
        "no user could be registered (see the Register row):\n{}",
        partial_report(&recorder)
    );
    let user_count = users.len();

    let started = Instant::now();
    let load_started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    recorder.lock().timeline.start(started);
    let stop_at = started + options.duration;
    let run = Arc::new(Run {
        api,
        catalog,
        run_id,
        pool: Pool::new(users),
        recorder,
        ops_left: AtomicU64::new(options.max_ops.unwrap_or(u64::MAX)),
        ops_done: AtomicU64::new(0),
        stop_at,
        hard_stop: stop_at + options.call_deadline * 2,
        retry_at_once: options.retry_at_once,
    });
    let progress = options
        .progress_every
        .map(|every| tokio::spawn(progress(run.clone(), started, every)));
    let mut tasks = JoinSet::new();
    let dropped = match options.load {
        Load::Closed { shoppers } => {
            drive_closed(&run, shoppers, seed, &mut tasks);
            0
        }
        Load::Open { rate } => drive_open(&run, rate, seed, started, &mut tasks).await,
    };
    // Operations in flight finish (each call is deadline-bound, checkout retries stop at
    // `hard_stop`); anything still running well after that is abandoned.
    let give_up = run.hard_stop + options.call_deadline * 3;
    while let Ok(Some(_)) = tokio::time::timeout_at(give_up, tasks.join_next()).await {}
    tasks.abort_all();
    let elapsed = started.elapsed();
    if let Some(progress) = progress {
        progress.abort();
    }
    let measured = Measured {
        users: user_count,
        seed,
        elapsed,
        registered_in,
        load_started_unix,
        dropped,
    };
    Ok(report(&options, &run, &measured))
}

/// The closed model: `shoppers` tasks, each doing one operation after another until the run
/// stops.
fn drive_closed(run: &Arc<Run>, shoppers: usize, seed: u64, tasks: &mut JoinSet<()>) {
    for i in 0..shoppers {
        let run = run.clone();
        let shopper_seed = seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(shopper_seed);
            while run.claim() {
                let Ok(Some(mut user)) =
                    tokio::time::timeout_at(run.stop_at, run.pool.take()).await
                else {
                    break;
                };
                run.one_operation(&mut rng, &mut user).await;
                run.pool.put(user);
            }
        });
    }
}

/// The open model: operations arrive as a Poisson process at `rate` per second, each on a
/// free user; returns how many arrivals found no free user (dropped).
async fn drive_open(
    run: &Arc<Run>,
    rate: f64,
    seed: u64,
    started: Instant,
    tasks: &mut JoinSet<()>,
) -> u64 {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut next = started;
    let mut dropped = 0;
    loop {
        // Exponential gaps: a Poisson process at `rate`.
        let u: f64 = rng.random_range(0.0..1.0);
        next += Duration::from_secs_f64(-(1.0 - u).ln() / rate);
        if next >= run.stop_at {
            break;
        }
        tokio::time::sleep_until(next).await;
        while tasks.try_join_next().is_some() {}
        let Some(mut user) = run.pool.try_take() else {
            dropped += 1;
            continue;
        };
        if !run.claim() {
            run.pool.put(user);
            break;
        }
        let run = run.clone();
        let op_seed: u64 = rng.random();
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(op_seed);
            run.one_operation(&mut rng, &mut user).await;
            run.pool.put(user);
        });
    }
    dropped
}

/// What a run measured besides its recorder.
struct Measured {
    users: usize,
    seed: u64,
    elapsed: Duration,
    registered_in: Duration,
    load_started_unix: f64,
    dropped: u64,
}

/// The report of a finished run.
fn report(options: &ShopOptions, run: &Run, m: &Measured) -> ShopReport {
    let recorder = run.recorder.lock();
    let (operations, total) = recorder.rows(&MIX_CALLS, m.elapsed);
    let (checkouts, _) = recorder.rows(&[Op::CheckoutEndToEnd], m.elapsed);
    let (setup, _) = recorder.rows(&[Op::Register], m.registered_in);
    let (faults, faults_left_off) = recorder.fault_rows();
    let (model, shoppers, rate_per_sec) = match options.load {
        Load::Closed { shoppers } => ("closed", Some(shoppers), None),
        Load::Open { rate } => ("open", None, Some(rate)),
    };
    ShopReport {
        model: model.into(),
        shoppers,
        rate_per_sec,
        users: m.users,
        seed: m.seed,
        elapsed_secs: m.elapsed.as_secs_f64(),
        load_started_unix: m.load_started_unix,
        retry_at_once: options.retry_at_once,
        operations_done: run.ops_done.load(Ordering::Relaxed),
        arrivals_dropped: m.dropped,
        operations,
        total,
        checkouts: checkouts.into_iter().next(),
        setup,
        messages: recorder.message_rows(),
        faults,
        faults_left_off,
        timeline: recorder.timeline.series(m.elapsed),
    }
}

/// Every listed product (the shoppers' catalog); refuses an empty one.
async fn read_catalog(api: &Api) -> anyhow::Result<Catalog> {
    let mut products: Vec<product::Product> = Vec::new();
    for page in 1..=CATALOG_MAX_PAGES {
        let answer = api
            .list_products(product::ListProductsReq {
                page,
                page_size: CATALOG_PAGE,
                category_name: String::new(),
            })
            .await
            .map_err(|s| anyhow::anyhow!("ListProducts: {:?} {}", s.code(), s.message()))?;
        let got = answer.products.len();
        products.extend(answer.products);
        if got == 0 || products.len() as u64 >= answer.total {
            break;
        }
    }
    anyhow::ensure!(
        !products.is_empty(),
        "the catalog is empty: start the fleet with the demo catalog (catalog.seed_demo)"
    );
    Ok(Catalog::of(&products))
}

/// Registers `count` users named after `run_id` (a few at a time); those that fail are left
/// out, their statuses recorded as `Register`.
async fn register_users(
    api: &Api,
    run_id: &str,
    count: usize,
    recorder: &Mutex<Recorder>,
) -> Vec<User> {
    futures::stream::iter(0..count)
        .map(|i| async move {
            let username = format!("lg_{run_id}_{i}");
            let password = format!("lg-{run_id}-secret");
            let email = format!("{username}@example.com");
            let req = user::RegisterReq {
                username: username.clone(),
                password: password.clone(),
                email: email.clone(),
                phone: String::new(),
            };
            let started = Instant::now();
            let answer = api.register(req).await;
            recorder
                .lock()
                .record_result(Op::Register, started.elapsed(), &answer);
            let registered = answer.ok()?;
            Some(User {
                id: registered.user_id,
                username,
                password,
                email,
                auth: bearer(&registered.token).ok()?,
                pending: false,
                unsettled_key: None,
                checkouts: 0,
            })
        })
        .buffer_unordered(REGISTER_CONCURRENCY)
        .filter_map(|user| async move { user })
        .collect()
        .await
}

fn partial_report(recorder: &Mutex<Recorder>) -> String {
    let recorder = recorder.lock();
    recorder
        .message_rows()
        .iter()
        .map(|m| format!("  {} {} ×{}: {}", m.operation, m.status, m.count, m.message))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line on stderr every `every`: elapsed, operations, their rate, calls not OK, faults.
async fn progress(run: Arc<Run>, started: Instant, every: Duration) {
    let mut ticks = tokio::time::interval_at(started + every, every);
    loop {
        ticks.tick().await;
        let elapsed = started.elapsed().as_secs_f64();
        let ops = run.ops_done.load(Ordering::Relaxed);
        let ((calls, failed), faults) = {
            let r = run.recorder.lock();
            (r.calls_and_failures(), r.fault_count())
        };
        eprintln!(
            "[{elapsed:6.1}s] ops {ops} ({:.0}/s), calls {calls}, not OK {failed}, \
             INTERNAL/UNKNOWN {faults}",
            ops as f64 / elapsed.max(f64::EPSILON)
        );
    }
}
