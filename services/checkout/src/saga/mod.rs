//! The checkout saga: read the cart → price every line from the catalog → place a PENDING
//! order → reserve stock → charge → mark the order paid → empty the cart, with the progress
//! written to the `sagas` table before and after each remote call. An Alipay checkout stops
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
use std::time::{Duration, Instant};

use mall_types::ids::stored_to_api as id_to_api;
use mall_types::time::unix_secs as unix_now;
use tonic::Status;
use tracing::Instrument as _;

pub use self::error::{
    BUDGET_MESSAGE, CHARGE_UNKNOWN_MESSAGE, Failure, INTERRUPTED_MESSAGE, NOT_CHARGED_MESSAGE,
    REFUNDED_MESSAGE, STOPPED_MESSAGE, StepError, UNSETTLED_MESSAGE,
};
pub use self::outcome::Answer;
use crate::domain::{CheckoutInput, Contact, PricedLine, fingerprint, new_saga_id};
use crate::downstream::Downstream;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::store::{Change, Inserted, NewSaga, Sagas, now_ms};

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
    pub order_id: String,
    /// The card charge (empty for Alipay).
    pub transaction_id: String,
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
    timing: Timing,
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
    user_id: i64,
    contact: Contact,
    lines: Vec<PricedLine>,
    total: i64,
    order_id: Option<String>,
    tx: Option<String>,
    outcome_recorded: bool,
    deadline: Instant,
}

impl Run {
    fn user(&self) -> u64 {
        id_to_api(self.user_id)
    }
}

/// What [`Engine::open`] found for a request.
enum Opened {
    /// A new saga (its id), whose lease this instance holds.
    New(String),
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
                timing,
                owner: uuid::Uuid::new_v4().to_string(),
                fingerprint_secret,
            }),
        }
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
        let lease = i64::try_from(self.inner.timing.lease.as_millis()).unwrap_or(i64::MAX);
        now_ms().saturating_add(lease)
    }

    fn retry_at(&self) -> i64 {
        let delay = i64::try_from(self.inner.timing.retry_delay.as_millis()).unwrap_or(i64::MAX);
        now_ms().saturating_add(delay)
    }

    fn down(&self) -> &dyn Downstream {
        self.inner.down.as_ref()
    }

    /// Runs a checkout for a validated request, or answers a retry of an earlier one.
    pub async fn checkout(&self, input: CheckoutInput) -> Result<Done, Status> {
        let started = Instant::now();
        let mut run = match self.open(&input).await {
            Ok(Opened::New(id)) => self.new_run(id, &input, started),
            Ok(Opened::Existing(answer)) => return answer,
            Err(e) => return Err(e.into_status()),
        };
        let answer = self.forward(&mut run, &input.pay).await;
        self.inner.metrics.duration(started.elapsed());
        answer.unwrap_or_else(|e| Err(e.into_status()))
    }

    /// Finds the saga of this request's key, or starts one. A stale fingerprint row (no
    /// explicit key, older than the window) is retired and the insert tried again; a few rounds
    /// settle any race.
    async fn open(&self, input: &CheckoutInput) -> Result<Opened, StepError> {
        let fp = fingerprint(&self.inner.fingerprint_secret, input);
        let explicit = input.idempotency_key.is_some();
        let key = match &input.idempotency_key {
            Some(k) => format!("k:{k}"),
            None => format!("fp:{fp}"),
        };
        let id = new_saga_id();
        let trace_parent = mall_common::telemetry::trace::current_traceparent();
        let new = NewSaga {
            id: &id,
            user_id: input.user_id,
            idempotency_key: &key,
            fingerprint: &fp,
            contact: &input.contact,
            trace_parent: trace_parent.as_deref(),
        };
        for _ in 0..3 {
            let sagas = &self.inner.sagas;
            let existing = match sagas.find_by_key(input.user_id, &key).await? {
                Some(saga) => saga,
                None => match sagas.insert(&new, self.owner(), self.lease_until()).await? {
                    Inserted::New => return Ok(Opened::New(id)),
                    Inserted::Existing(saga) => *saga,
                },
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
        Run {
            id,
            user_id: input.user_id,
            contact: input.contact.clone(),
            lines: Vec::new(),
            total: 0,
            order_id: None,
            tx: None,
            outcome_recorded: false,
            deadline: started + self.inner.timing.budget,
        }
    }

    /// The deadline of the next pre-charge call: the step timeout, cut to what is left of the
    /// budget; [`StepError::Budget`] when nothing is.
    fn within_budget(&self, run: &Run) -> Result<Duration, StepError> {
        let left = run.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StepError::Budget);
        }
        Ok(left.min(self.inner.timing.step))
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

    /// Writes `change` to the saga, as long as this instance still holds its lease.
    async fn save(&self, run: &Run, change: Change) -> Result<(), StepError> {
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
