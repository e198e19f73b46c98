//! The checkout saga: read the cart → price every line from the catalog → place a PENDING
//! order → reserve stock → charge → mark the order paid → empty the cart.
//!
//! Its progress is written to the `sagas` table twice on the way to success: one row, with the
//! priced lines, before the first remote write (`placing_order`), and one update with the
//! answer (order, charge, outcome) at the end. Nothing in between: every remote step is
//! idempotent under the saga id (the order's idempotency key; the order id keys the stock
//! reservation, the charge and the cart cleanup), so the recovery worker drives a saga left at
//! `placing_order` from the start — the order by the saga id, then payment's void of that
//! order, which either finds the charge (mark paid, clean the cart) or shuts one out
//! (compensate). A refusal before any remote write (empty cart, unknown product) is one row
//! with its answer. Failures write more (compensation records each stage). An Alipay checkout stops
//! after the stock with the order's signed pay link (`saga.alipay_link`): the buyer pays on
//! Alipay's page, and payment marks the order PAID and cleans the cart once Alipay confirms it
//! (or the order sweeper cancels the order unpaid).
//!
//! The rooms: this module holds the [`Engine`], the `checkout` entry (a new saga, or the
//! replay of an earlier one) and the progress writes; `forward.rs` has one function per step;
//! `compensate.rs` undoes; `resume.rs` drives open sagas for the recovery worker; `outcome.rs`
//! records and replays what the client was told; [`error`] is the typed [`StepError`] and the
//! one mapping of failures to the client's `Status`.
//!
//! Compensation runs in one fixed order whatever went wrong: cancel the order first (once it is
//! CANCELLED it can never become PAID, so a refund after it is safe; a cancel refused because
//! the order is already PAID by our transaction means the checkout actually succeeded), then
//! release the stock, then refund whatever of the charge is not refunded yet. Every action is
//! idempotent or guarded, so the recovery worker can simply run the whole compensation again.
//!
//! Each remote call of a step runs in that step's span (`saga.<step>`: `saga.read_cart`,
//! `saga.price`, `saga.place_order`, `saga.reserve_stock`, `saga.charge`, `saga.mark_paid`,
//! `saga.cart_cleanup`, `saga.alipay_link`, `saga.compensate.find_order`, `saga.compensate.cancel_order`,
//! `saga.compensate.release_stock`, `saga.compensate.refund`) with the saga id as `saga.id`, so
//! a trace of a checkout shows its steps, and the calls of each step under it.
//!
//! The answer the client gets is recorded as the saga's outcome; a retry with the same
//! idempotency key gets exactly that answer.

mod compensate;
pub mod error;
mod forward;
mod outcome;
mod resume;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mall_types::time::unix_secs as unix_now;
use mall_types::{Cents, OrderId, TransactionId, UserId};
use tonic::Status;
use tracing::Instrument as _;

pub use self::error::{
    CHARGE_UNKNOWN_MESSAGE, Failure, INTERRUPTED_MESSAGE, NOT_CHARGED_MESSAGE, REFUNDED_MESSAGE,
    UNSETTLED_MESSAGE,
};
pub use self::outcome::{Answer, DECIDED_FAILURE_REASON};
use crate::domain::{CheckoutInput, Contact, PricedLine, fingerprint, new_saga_id};
use crate::downstream::{Downstream, StepError};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{Change, Inserted, NewSaga, Sagas, Start, now_ms};

/// How often `MarkOrderPaid` is tried after a successful charge before the charge is refunded.
pub const MARK_PAID_ATTEMPTS: u32 = 3;
/// Backoff between those attempts (doubled each time).
pub const MARK_PAID_BACKOFF: Duration = Duration::from_millis(100);
/// How long a request without a key is recognised by its fingerprint.
pub const FINGERPRINT_WINDOW_SECS: i64 = 10;
/// How close to the end of the budget a failed step counts as cut by the budget.
const BUDGET_SLACK: Duration = Duration::from_millis(20);
/// The reason given to order when the saga cancels its order.
pub const CANCEL_REASON: &str = "checkout could not be completed";

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The saga's time limits.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Deadline of each remote call.
    pub step: Duration,
    /// Budget of the whole forward path of one checkout request.
    pub budget: Duration,
    /// How long an owner holds a saga before others may take it over.
    pub lease: Duration,
    /// After a failed step, how long before the recovery worker retries the saga.
    pub retry_delay: Duration,
}

/// A successful checkout: the order and its transaction (card), or the order and its pay link
/// (Alipay: `transaction_id` is empty until the buyer pays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    /// The order.
    pub order_id: OrderId,
    /// The card charge (`None` for Alipay).
    pub transaction_id: Option<TransactionId>,
    /// The Alipay pay link (empty for cards).
    pub pay_url: String,
}

/// Drives sagas: new ones for requests ([`Engine::checkout`]), open ones for the recovery
/// worker ([`Engine::resume`]).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    sagas: Sagas,
    down: Arc<dyn Downstream>,
    metrics: Metrics,
    /// Reloadable ([`Engine::set_timing`]); each run keeps the timing it started with.
    timing: parking_lot::RwLock<Timing>,
    /// The longest `timing.lease` set so far, in ms (see [`Engine::lease_until`]).
    max_lease_ms: AtomicU64,
    /// This instance's lease-owner id.
    owner: String,
    /// Secret keying request fingerprints (`checkout.fingerprint_secret`).
    fingerprint_secret: String,
}

/// The span of one step of `run` (see the module docs), around the step's remote call.
fn step_span(step: &'static str, run: &Run) -> tracing::Span {
    tracing::info_span!(
        "saga.step",
        otel.name = %format_args!("saga.{step}"),
        saga.step = step,
        saga.id = %run.id
    )
}

/// A step's remote call, run in its span ([`step_span`]) and timed into
/// `checkout_step_duration_seconds{step}`.
trait StepCall: Future + Sized {
    fn step(
        self,
        metrics: &Metrics,
        step: &'static str,
        run: &Run,
    ) -> impl Future<Output = Self::Output> {
        let metrics = metrics.clone();
        async move {
            let started = Instant::now();
            let out = self.await;
            metrics.step(step, started.elapsed());
            out
        }
        .instrument(step_span(step, run))
    }
}

impl<F: Future> StepCall for F {}

/// One saga being driven (the in-memory mirror of its row).
struct Run {
    id: String,
    user_id: UserId,
    contact: Contact,
    lines: Vec<PricedLine>,
    total: Cents,
    order_id: Option<OrderId>,
    tx: Option<TransactionId>,
    outcome_recorded: bool,
    deadline: Instant,
    /// The timing this run started with (its lease was written with it).
    timing: Timing,
}

impl Run {
    fn user(&self) -> UserId {
        self.user_id
    }
}

/// What [`Engine::open`] found for a request.
enum Opened {
    /// The new saga's row is written (and, when priced, leased to this instance).
    New,
    /// The request repeats an earlier one (or is refused): this is its answer.
    Existing(Answer),
}

impl Engine {
    /// An engine over `sagas` calling `down`; `fingerprint_secret` keys request fingerprints.
    pub fn new(
        sagas: Sagas,
        down: Arc<dyn Downstream>,
        metrics: Metrics,
        timing: Timing,
        fingerprint_secret: String,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                sagas,
                down,
                metrics,
                timing: parking_lot::RwLock::new(timing),
                max_lease_ms: AtomicU64::new(millis(timing.lease)),
                owner: uuid::Uuid::new_v4().to_string(),
                fingerprint_secret,
            }),
        }
    }

    /// The saga timing new runs start with.
    pub fn timing(&self) -> Timing {
        *self.inner.timing.read()
    }

    /// Takes new timing (a config-centre reload of `checkout.*`): runs already going keep
    /// theirs, and their leases, so the worker still never takes a saga a live request drives.
    pub fn set_timing(&self, timing: Timing) {
        *self.inner.timing.write() = timing;
        self.inner
            .max_lease_ms
            .fetch_max(millis(timing.lease), Ordering::Relaxed);
    }

    /// The sagas repository.
    pub fn sagas(&self) -> &Sagas {
        &self.inner.sagas
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// This instance's lease-owner id.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// The lease an owner takes, in unix ms from now.
    pub fn lease_until(&self) -> i64 {
        // The longest lease any timing of this process asked for, so a lease taken while the
        // timing is reloaded still covers a run that started with the old one.
        let lease =
            i64::try_from(self.inner.max_lease_ms.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        now_ms().saturating_add(lease)
    }

    fn retry_at(&self) -> i64 {
        let delay = i64::try_from(self.timing().retry_delay.as_millis()).unwrap_or(i64::MAX);
        now_ms().saturating_add(delay)
    }

    fn down(&self) -> &dyn Downstream {
        self.inner.down.as_ref()
    }

    /// Runs a checkout for a validated request, or answers a retry of an earlier one.
    pub async fn checkout(&self, input: CheckoutInput) -> Result<Done, Status> {
        let started = Instant::now();
        let mut run = self.new_run(new_saga_id(), &input, started);
        let answer = self.start(&mut run, &input).await;
        self.inner.metrics.duration(started.elapsed());
        answer.unwrap_or_else(|e| Err(e.into_status()))
    }

    /// Reads and prices the cart, then writes the saga's row — its only write before the
    /// answer — with the priced lines (or the refusal), and drives it forward. A request that
    /// repeats an earlier one finds that saga's row in its way and gets that saga's answer.
    async fn start(&self, run: &mut Run, input: &CheckoutInput) -> Result<Answer, StepError> {
        // 1–2. Reads only: a failure leaves nothing to undo.
        let priced = match self.read_cart(run).await {
            Ok(cart) => self.price(run, &cart).await,
            Err(failure) => Err(failure),
        };
        let refused = match priced {
            Ok((lines, total)) => {
                run.lines = lines;
                run.total = total;
                None
            }
            Err(failure) => {
                let failure = outcome::unless_stopping(failure)?;
                Some((failure.kind(), failure.into_status()))
            }
        };
        let start = match &refused {
            None => Start::Priced {
                lines: &run.lines,
                total: run.total,
            },
            Some((_, status)) => Start::Rejected(outcome::outcome_of(&Err(status.clone()))),
        };
        if let Opened::Existing(answer) = self.open(input, &run.id, start).await? {
            return Ok(answer);
        }
        if let Some((kind, status)) = refused {
            tracing::info!(saga = %run.id, status = %status.message(), "checkout refused");
            run.outcome_recorded = true;
            self.inner.metrics.outcome(kind);
            return Ok(Err(status));
        }
        self.forward(run, &input.pay).await
    }

    /// Writes the new saga `id` (leased to this instance when it starts priced), unless the
    /// request's key names an earlier one. A stale fingerprint row (no explicit key, older than
    /// the window) is retired and the insert tried again; a few rounds settle any race.
    async fn open(
        &self,
        input: &CheckoutInput,
        id: &str,
        start: Start<'_>,
    ) -> Result<Opened, StepError> {
        let fp = fingerprint(&self.inner.fingerprint_secret, input);
        let explicit = input.idempotency_key.is_some();
        let key = match &input.idempotency_key {
            Some(k) => format!("k:{k}"),
            None => format!("fp:{fp}"),
        };
        let trace_parent = mall_common::telemetry::trace::current_traceparent();
        let new = NewSaga {
            id,
            user_id: input.user_id,
            idempotency_key: &key,
            fingerprint: &fp,
            contact: &input.contact,
            trace_parent: trace_parent.as_deref(),
            start,
        };
        for _ in 0..3 {
            let sagas = &self.inner.sagas;
            let existing = match sagas.insert(&new, self.owner(), self.lease_until()).await? {
                Inserted::New => return Ok(Opened::New),
                Inserted::Existing(saga) => *saga,
            };
            if !explicit && unix_now() - existing.created_at >= FINGERPRINT_WINDOW_SECS {
                sagas.retire_key(&existing).await?;
                continue;
            }
            if explicit && existing.fingerprint != fp {
                return Ok(Opened::Existing(Err(Error::KeyReused.into())));
            }
            return Ok(Opened::Existing(outcome::replay(&existing)));
        }
        Ok(Opened::Existing(Err(Error::InProgress.into())))
    }

    fn new_run(&self, id: String, input: &CheckoutInput, started: Instant) -> Run {
        let timing = self.timing();
        Run {
            id,
            user_id: input.user_id,
            contact: input.contact.clone(),
            lines: Vec::new(),
            total: Cents::ZERO,
            order_id: None,
            tx: None,
            outcome_recorded: false,
            deadline: started + timing.budget,
            timing,
        }
    }

    /// The deadline of the next pre-charge call: the step timeout, cut to what is left of the
    /// budget; [`StepError::Budget`] when nothing is.
    fn within_budget(&self, run: &Run) -> Result<Duration, StepError> {
        let left = run.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StepError::Budget);
        }
        Ok(left.min(run.timing.step))
    }

    /// A failed pre-charge call: [`StepError::Budget`] when the checkout's budget is what ran
    /// out (whichever call it cut), else the dependency's failure.
    fn cut_by_budget(run: &Run, e: StepError) -> StepError {
        // A call cut by the budget can fail a moment before the budget's end: deadlines travel
        // as whole milliseconds and each hop measures from its own clock reading.
        if e.is_dependency() && run.deadline <= Instant::now() + BUDGET_SLACK {
            tracing::warn!(saga = %run.id, error = %e, "checkout budget exhausted");
            StepError::Budget
        } else {
            e
        }
    }

    /// Writes `change` to the saga, as long as this instance still holds its lease, with the
    /// order and the charge as far as they are known (the forward path writes them only with
    /// its answer: recovery finds both through the saga id, see `resume.rs`).
    async fn save(&self, run: &Run, mut change: Change) -> Result<(), StepError> {
        if change.order_id.is_none() {
            change.order_id = run.order_id.clone();
        }
        if change.transaction_id.is_none() {
            change.transaction_id = run.tx.clone();
        }
        if self
            .inner
            .sagas
            .update(&run.id, &self.inner.owner, &change)
            .await?
        {
            Ok(())
        } else {
            tracing::warn!(saga = %run.id, "lost the saga's lease; another instance drives it");
            Err(StepError::LostLease)
        }
    }

    /// Leaves the saga to the recovery worker after the retry delay.
    async fn park(&self, run: &Run) -> Result<(), StepError> {
        self.save(
            run,
            Change {
                release_lease_at: Some(self.retry_at()),
                ..Change::default()
            },
        )
        .await
    }
}
