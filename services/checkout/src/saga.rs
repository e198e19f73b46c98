//! The checkout saga: read the cart → price every line from the catalog → place a PENDING
//! order → reserve stock → charge → mark the order paid → empty the cart, with the progress
//! written to the `sagas` table before and after each remote call.
//!
//! Compensation runs in one fixed order whatever went wrong: cancel the order first (once it is
//! CANCELLED it can never become PAID, so a refund after it is safe; a cancel refused because
//! the order is already PAID by our transaction means the checkout actually succeeded), then
//! release the stock, then refund whatever of the charge is not refunded yet. Every action is
//! idempotent or guarded, so the recovery worker can simply run the whole compensation again.
//!
//! The answer the client gets is recorded as the saga's outcome; a retry with the same
//! idempotency key gets exactly that answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mall_common::store::{id_to_api, unix_now};
use tonic::{Code, Status};

use crate::domain::{
    CheckoutInput, Contact, Error, PricedLine, PricingError, SagaState, Step, fingerprint,
    new_saga_id, price_lines,
};
use crate::downstream::{Downstream, OrderState};
use crate::metrics::{CompensationKind, Metrics, OutcomeKind};
use crate::store::{Change, Inserted, NewSaga, Outcome, Saga, Sagas, now_ms};

/// How often `MarkOrderPaid` is tried after a successful charge before the charge is refunded.
pub const MARK_PAID_ATTEMPTS: u32 = 3;
/// Backoff between those attempts (doubled each time).
pub const MARK_PAID_BACKOFF: Duration = Duration::from_millis(100);
/// How long a request without a key is recognised by its fingerprint.
pub const FINGERPRINT_WINDOW_SECS: i64 = 10;
/// The message of a checkout whose charge was refunded because the order could not be paid.
pub const REFUNDED_MESSAGE: &str = "payment refunded: order could not be completed";
/// The message of a checkout that was interrupted before anything was charged.
pub const INTERRUPTED_MESSAGE: &str = "checkout was interrupted; nothing was charged";
/// How close to the end of the budget a failed step counts as cut by the budget.
const BUDGET_SLACK: Duration = Duration::from_millis(20);
/// The answer when the checkout's time budget runs out before its outcome is decided.
pub const BUDGET_MESSAGE: &str = "checkout did not finish within its time budget";
/// The answer while a charged checkout cannot be settled yet (paid, or cancelled and refunded).
pub const UNSETTLED_MESSAGE: &str = "checkout in progress: the payment is being settled; \
     retry with the same idempotency_key for the outcome";
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

/// A successful checkout: `(order_id, transaction_id)`.
pub type Done = (String, String);

/// Drives sagas: new ones for requests ([`Engine::checkout`]), open ones for the recovery
/// worker ([`Engine::resume`]).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    sagas: Sagas,
    down: Downstream,
    metrics: Metrics,
    timing: Timing,
    /// This instance's lease-owner id.
    owner: String,
    /// Secret mixed into request fingerprints.
    pepper: String,
}

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

/// What compensation found.
enum Undone {
    /// Order cancelled, stock back, charge (if any) refunded.
    Done,
    /// The order turned out to be PAID by this saga's charge: the checkout succeeded.
    OrderPaid,
}

fn lost_lease() -> Status {
    Status::aborted("checkout in progress")
}

fn db(e: Error) -> Status {
    e.into()
}

/// A dependency's failure as the client sees it: `UNAVAILABLE` for a down or slow service,
/// `INTERNAL` (logged) for anything unexpected.
fn dependency(what: &str, status: &Status) -> Status {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
            tracing::warn!(dependency = what, code = ?status.code(), message = status.message(), "dependency failed");
            Status::unavailable(format!("{what} service unavailable"))
        }
        _ => {
            tracing::error!(dependency = what, code = ?status.code(), message = status.message(), "dependency refused a saga step");
            Status::internal(format!("{what} service failed"))
        }
    }
}

fn outcome_of(answer: &Result<Done, Status>) -> Outcome {
    match answer {
        Ok(_) => Outcome {
            code: Code::Ok,
            message: String::new(),
        },
        Err(s) => Outcome {
            code: s.code(),
            message: s.message().to_string(),
        },
    }
}

/// The recorded answer of `saga`: its ids, its error, or "in progress" while undecided.
fn replay(saga: &Saga) -> Result<Done, Status> {
    match &saga.outcome {
        Some(o) if o.code == Code::Ok => match (&saga.order_id, &saga.transaction_id) {
            (Some(order), Some(tx)) => Ok((order.clone(), tx.clone())),
            _ => Err(db(Error::Corrupt(format!(
                "saga {} succeeded without ids",
                saga.id
            )))),
        },
        Some(o) => Err(Status::new(o.code, o.message.clone())),
        None => Err(Error::InProgress.into()),
    }
}

impl Engine {
    /// An engine over `sagas` calling `down`; `pepper` keys request fingerprints.
    pub fn new(
        sagas: Sagas,
        down: Downstream,
        metrics: Metrics,
        timing: Timing,
        pepper: String,
    ) -> Self {
        Engine {
            inner: Arc::new(Inner {
                sagas,
                down,
                metrics,
                timing,
                owner: uuid::Uuid::new_v4().to_string(),
                pepper,
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

    /// Runs a checkout for a validated request, or answers a retry of an earlier one.
    pub async fn checkout(&self, input: CheckoutInput) -> Result<Done, Status> {
        let started = Instant::now();
        let fp = fingerprint(&self.inner.pepper, &input);
        let explicit = input.idempotency_key.is_some();
        let key = match &input.idempotency_key {
            Some(k) => format!("k:{k}"),
            None => format!("fp:{fp}"),
        };
        let id = new_saga_id();
        let new = NewSaga {
            id: &id,
            user_id: input.user_id,
            idempotency_key: &key,
            fingerprint: &fp,
            contact: &input.contact,
        };
        // A stale fingerprint row is retired and the insert tried again; a few rounds settle.
        let mut created = false;
        for _ in 0..3 {
            let existing = match self
                .inner
                .sagas
                .find_by_key(input.user_id, &key)
                .await
                .map_err(db)?
            {
                Some(saga) => Some(saga),
                None => match self
                    .inner
                    .sagas
                    .insert(&new, &self.inner.owner, self.lease_until())
                    .await
                    .map_err(db)?
                {
                    Inserted::New => None,
                    Inserted::Existing(saga) => Some(*saga),
                },
            };
            let Some(saga) = existing else {
                created = true;
                break;
            };
            if !explicit && unix_now() - saga.created_at >= FINGERPRINT_WINDOW_SECS {
                self.inner.sagas.retire_key(&saga).await.map_err(db)?;
                continue;
            }
            if explicit && saga.fingerprint != fp {
                return Err(Error::KeyReused.into());
            }
            return replay(&saga);
        }
        if !created {
            return Err(Error::InProgress.into());
        }
        let mut run = Run {
            id,
            user_id: input.user_id,
            contact: input.contact.clone(),
            lines: Vec::new(),
            total: 0,
            order_id: None,
            tx: None,
            outcome_recorded: false,
            deadline: started + self.inner.timing.budget,
        };
        let answer = self.forward(&mut run, &input).await;
        self.inner.metrics.duration(started.elapsed());
        answer
    }

    /// How a failed remote step is answered: `DEADLINE_EXCEEDED` when the checkout's budget is
    /// what ran out (whichever call it cut), else the dependency's failure.
    fn step_failed(run: &Run, what: &str, status: &Status) -> Status {
        // A call cut by the budget can fail a moment before the budget's end: deadlines travel
        // as whole milliseconds and each hop measures from its own clock reading.
        if run.deadline <= Instant::now() + BUDGET_SLACK {
            tracing::warn!(dependency = what, code = ?status.code(), message = status.message(), "checkout budget exhausted");
            Status::deadline_exceeded(BUDGET_MESSAGE)
        } else {
            dependency(what, status)
        }
    }

    /// The deadline of the next pre-charge call: the step timeout, cut to what is left of the
    /// budget; `DEADLINE_EXCEEDED` when nothing is.
    fn within_budget(&self, run: &Run) -> Result<Duration, Status> {
        let left = run.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Status::deadline_exceeded(BUDGET_MESSAGE));
        }
        Ok(left.min(self.inner.timing.step))
    }

    async fn save(&self, run: &Run, change: Change) -> Result<(), Status> {
        if self
            .inner
            .sagas
            .update(&run.id, &self.inner.owner, &change)
            .await
            .map_err(db)?
        {
            Ok(())
        } else {
            tracing::warn!(saga = %run.id, "lost the saga's lease; another instance drives it");
            Err(lost_lease())
        }
    }

    /// Records `answer` as the outcome (unless one is recorded already) with `change`, counting
    /// it; returns the recorded answer.
    async fn decide(
        &self,
        run: &mut Run,
        mut change: Change,
        answer: Result<Done, Status>,
        kind: OutcomeKind,
    ) -> Result<Done, Status> {
        let first = !run.outcome_recorded;
        if first {
            change.outcome = Some(outcome_of(&answer));
        }
        self.save(run, change).await?;
        if first {
            run.outcome_recorded = true;
            self.inner.metrics.outcome(kind);
        }
        answer
    }

    /// Ends a saga that wrote nothing elsewhere.
    async fn reject(
        &self,
        run: &mut Run,
        status: Status,
        kind: OutcomeKind,
    ) -> Result<Done, Status> {
        tracing::info!(saga = %run.id, code = ?status.code(), message = status.message(), "checkout refused");
        let change = Change {
            state: Some(SagaState::Failed),
            step: Some(Step::Rejected),
            release_lease_at: Some(now_ms()),
            ..Change::default()
        };
        self.decide(run, change, Err(status), kind).await
    }

    /// Leaves the saga to the recovery worker after the retry delay.
    async fn park(&self, run: &Run) -> Result<(), Status> {
        self.save(
            run,
            Change {
                release_lease_at: Some(self.retry_at()),
                ..Change::default()
            },
        )
        .await
    }

    async fn forward(&self, run: &mut Run, input: &CheckoutInput) -> Result<Done, Status> {
        let user = run.user();
        // 1. The cart (a read: nothing to undo).
        let cart = match self.within_budget(run) {
            Ok(t) => self.inner.down.get_cart(user, t).await,
            Err(s) => Err(s),
        };
        let cart = match cart {
            Ok(cart) => cart,
            Err(s) => {
                let status = Self::step_failed(run, "cart", &s);
                return self.reject(run, status, OutcomeKind::Error).await;
            }
        };
        if cart.is_empty() {
            let status = Status::failed_precondition(PricingError::EmptyCart.to_string());
            return self.reject(run, status, OutcomeKind::EmptyCart).await;
        }
        // 2. Prices, all in one call, never from the client.
        let mut ids: Vec<u64> = cart.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let prices = match self.within_budget(run) {
            Ok(t) => self.inner.down.prices(ids, t).await,
            Err(s) => Err(s),
        };
        let prices = match prices {
            Ok(p) => p,
            Err(s) => {
                let status = Self::step_failed(run, "product", &s);
                return self.reject(run, status, OutcomeKind::Error).await;
            }
        };
        let (lines, total) = match price_lines(&cart, &prices) {
            Ok(priced) => priced,
            Err(e) => {
                let kind = match e {
                    PricingError::EmptyCart => OutcomeKind::EmptyCart,
                    _ => OutcomeKind::Error,
                };
                return self
                    .reject(run, Status::failed_precondition(e.to_string()), kind)
                    .await;
            }
        };
        run.lines = lines.clone();
        run.total = total;
        // 3. The order. From here on an order may exist, so failures compensate.
        let t = match self.within_budget(run) {
            Ok(t) => t,
            Err(s) => return self.reject(run, s, OutcomeKind::Error).await,
        };
        self.save(
            run,
            Change {
                step: Some(Step::PlacingOrder),
                priced: Some((lines, total)),
                ..Change::default()
            },
        )
        .await?;
        let placed = self
            .inner
            .down
            .place_order(&run.id, user, &run.contact, &run.lines, t)
            .await;
        let order_id = match placed {
            Ok(id) => id,
            Err(s)
                if matches!(
                    s.code(),
                    Code::InvalidArgument | Code::FailedPrecondition | Code::PermissionDenied
                ) =>
            {
                let status = Self::step_failed(run, "order", &s);
                return self.reject(run, status, OutcomeKind::Error).await;
            }
            Err(s) => {
                let status = Self::step_failed(run, "order", &s);
                return self.fail(run, status, OutcomeKind::Error).await;
            }
        };
        run.order_id = Some(order_id.clone());
        self.save(
            run,
            Change {
                step: Some(Step::ReservingStock),
                order_id: Some(order_id.clone()),
                ..Change::default()
            },
        )
        .await?;
        // 4. Stock.
        let reserved = match self.within_budget(run) {
            Ok(t) => {
                self.inner
                    .down
                    .reserve_stock(&order_id, &run.lines, t)
                    .await
            }
            Err(s) => Err(s),
        };
        match reserved {
            Ok(()) => {}
            Err(s) if s.code() == Code::FailedPrecondition => {
                let status = Status::failed_precondition(s.message().to_string());
                return self.fail(run, status, OutcomeKind::InsufficientStock).await;
            }
            Err(s) => {
                let status = Self::step_failed(run, "product", &s);
                return self.fail(run, status, OutcomeKind::Error).await;
            }
        }
        // 5. The charge.
        let t = match self.within_budget(run) {
            Ok(t) => t,
            Err(s) => return self.fail(run, s, OutcomeKind::Error).await,
        };
        self.save(run, Change::step(Step::Charging)).await?;
        let charged = self
            .inner
            .down
            .charge(&order_id, user, run.total, &input.card, t)
            .await;
        match charged {
            Ok(tx) => {
                if self.inner.down.hooks().crash_before_recording_charge() {
                    return Err(Status::unavailable(
                        "checkout instance stopped before recording the charge (simulated crash)",
                    ));
                }
                run.tx = Some(tx.clone());
                self.save(
                    run,
                    Change {
                        step: Some(Step::Charged),
                        transaction_id: Some(tx),
                        ..Change::default()
                    },
                )
                .await?;
            }
            Err(s) if matches!(s.code(), Code::FailedPrecondition | Code::InvalidArgument) => {
                let status = Status::new(s.code(), s.message().to_string());
                return self.fail(run, status, OutcomeKind::Declined).await;
            }
            // Only a charge that never left this service is known not to have happened; a
            // connection lost mid-call may have charged the card, so that is asked below.
            Err(s) if s.code() == Code::Unavailable && mall_common::client::never_sent(&s) => {
                tracing::warn!(saga = %run.id, message = s.message(), "payment unreachable");
                let status =
                    Status::unavailable("payment service unavailable; nothing was charged");
                return self.fail(run, status, OutcomeKind::Error).await;
            }
            Err(s) => {
                tracing::warn!(saga = %run.id, code = ?s.code(), message = s.message(), "charge outcome unknown");
                return self.resolve_charge(run).await;
            }
        }
        if self.inner.down.hooks().crash_after_charge() {
            return Err(Status::unavailable(
                "checkout instance stopped after the charge (simulated crash)",
            ));
        }
        // 6. Paid, 7. cart.
        self.finish_charged(run).await
    }

    /// After a `Charge` whose outcome is unknown: ask payment whether the order was charged.
    async fn resolve_charge(&self, run: &mut Run) -> Result<Done, Status> {
        let Some(order_id) = run.order_id.clone() else {
            return self
                .fail(
                    run,
                    Status::unavailable(INTERRUPTED_MESSAGE),
                    OutcomeKind::Error,
                )
                .await;
        };
        match self
            .inner
            .down
            .payment_of_order(&order_id, self.inner.timing.step)
            .await
        {
            Ok(Some(payment)) => {
                run.tx = Some(payment.transaction_id.clone());
                self.save(
                    run,
                    Change {
                        step: Some(Step::Charged),
                        transaction_id: Some(payment.transaction_id),
                        ..Change::default()
                    },
                )
                .await?;
                self.finish_charged(run).await
            }
            Ok(None) => {
                let status =
                    Status::unavailable("payment service unavailable; nothing was charged");
                self.fail(run, status, OutcomeKind::Error).await
            }
            Err(s) => {
                tracing::warn!(saga = %run.id, code = ?s.code(), message = s.message(), "cannot tell whether the order was charged; will retry");
                self.park(run).await?;
                Err(Status::unavailable(
                    "payment outcome unknown; the checkout will be completed or refunded automatically",
                ))
            }
        }
    }

    /// Charged: mark the order paid (bounded retries), else refund and cancel.
    async fn finish_charged(&self, run: &mut Run) -> Result<Done, Status> {
        let (Some(order_id), Some(tx)) = (run.order_id.clone(), run.tx.clone()) else {
            return Err(db(Error::Corrupt(format!(
                "saga {} is charged without ids",
                run.id
            ))));
        };
        let step = self.inner.timing.step;
        for attempt in 0..MARK_PAID_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(MARK_PAID_BACKOFF * 2u32.pow(attempt - 1)).await;
            }
            match self
                .inner
                .down
                .mark_paid(run.user(), &order_id, &tx, step)
                .await
            {
                Ok(()) => return self.paid(run).await,
                Err(s) => {
                    tracing::warn!(saga = %run.id, attempt, code = ?s.code(), message = s.message(), "MarkOrderPaid failed");
                }
            }
        }
        self.fail(run, Status::aborted(REFUNDED_MESSAGE), OutcomeKind::Error)
            .await
    }

    /// The order is PAID: record success, then empty the cart (or leave that to the worker).
    async fn paid(&self, run: &mut Run) -> Result<Done, Status> {
        let (Some(order_id), Some(tx)) = (run.order_id.clone(), run.tx.clone()) else {
            return Err(db(Error::Corrupt(format!(
                "saga {} is paid without ids",
                run.id
            ))));
        };
        let done = self
            .decide(
                run,
                Change::step(Step::CartPending),
                Ok((order_id, tx)),
                OutcomeKind::Success,
            )
            .await?;
        match self
            .inner
            .down
            .empty_cart(run.user(), self.inner.timing.step)
            .await
        {
            Ok(()) => {
                self.save(
                    run,
                    Change {
                        state: Some(SagaState::Succeeded),
                        step: Some(Step::Completed),
                        release_lease_at: Some(now_ms()),
                        ..Change::default()
                    },
                )
                .await?;
                tracing::info!(saga = %run.id, order = %done.0, "checkout completed");
            }
            Err(s) => {
                tracing::warn!(saga = %run.id, code = ?s.code(), message = s.message(), "EmptyCart failed; the recovery worker will retry");
                self.park(run).await?;
            }
        }
        Ok(done)
    }

    /// Compensates and answers `status` (or, if the order turns out PAID by our charge,
    /// success). A compensation that cannot finish now is left to the recovery worker.
    async fn fail(&self, run: &mut Run, status: Status, kind: OutcomeKind) -> Result<Done, Status> {
        tracing::info!(saga = %run.id, code = ?status.code(), message = status.message(), "checkout failed; compensating");
        self.save(run, Change::step(Step::Compensating)).await?;
        match self.compensate(run).await {
            Ok(Undone::Done) => {
                let change = Change {
                    state: Some(SagaState::Failed),
                    step: Some(Step::Compensated),
                    release_lease_at: Some(now_ms()),
                    ..Change::default()
                };
                self.decide(run, change, Err(status), kind).await
            }
            Ok(Undone::OrderPaid) => {
                tracing::info!(saga = %run.id, "order was paid after all");
                self.paid(run).await
            }
            Err(e) => {
                tracing::warn!(saga = %run.id, code = ?e.code(), message = e.message(), "compensation incomplete; the recovery worker will finish it");
                let change = Change {
                    release_lease_at: Some(self.retry_at()),
                    ..Change::default()
                };
                if run.tx.is_some() && !run.outcome_recorded {
                    // Charged, and the order may yet turn out PAID (a MarkOrderPaid whose answer
                    // was lost): the outcome is unknown until compensation ends, so none is
                    // recorded. Retries with the same key hear "in progress" until the worker
                    // has settled it one way or the other.
                    self.save(run, change).await?;
                    return Err(Status::aborted(UNSETTLED_MESSAGE));
                }
                self.decide(run, change, Err(status), kind).await
            }
        }
    }

    /// Cancel the order, release the stock, refund what is left of the charge.
    async fn compensate(&self, run: &mut Run) -> Result<Undone, Status> {
        let step = self.inner.timing.step;
        let down = &self.inner.down;
        let user = run.user();
        let order_id = match run.order_id.clone() {
            Some(id) => id,
            None if run.lines.is_empty() => return Ok(Undone::Done),
            None => {
                // PlaceOrder may have created the order; the same key names it (or creates it,
                // to be cancelled right away).
                let id = down
                    .place_order(&run.id, user, &run.contact, &run.lines, step)
                    .await?;
                run.order_id = Some(id.clone());
                self.save(
                    run,
                    Change {
                        order_id: Some(id.clone()),
                        ..Change::default()
                    },
                )
                .await?;
                id
            }
        };
        match down
            .cancel_order(user, &order_id, CANCEL_REASON, step)
            .await
        {
            Ok(()) => self
                .inner
                .metrics
                .compensation(CompensationKind::CancelOrder),
            Err(s) if s.code() == Code::FailedPrecondition => {
                match down.order_state(user, &order_id, step).await? {
                    OrderState::Cancelled => {}
                    OrderState::Paid(tx) if run.tx.as_deref() == Some(tx.as_str()) => {
                        return Ok(Undone::OrderPaid);
                    }
                    other => {
                        return Err(Status::internal(format!(
                            "order {order_id} cannot be cancelled: {other:?}"
                        )));
                    }
                }
            }
            Err(s) => return Err(s),
        }
        down.release_stock(&order_id, step).await?;
        self.inner
            .metrics
            .compensation(CompensationKind::ReleaseStock);
        if let Some(tx) = run.tx.clone() {
            let payment = down.get_payment(&tx, step).await?;
            let left = payment.amount_cents - payment.refunded_cents;
            if left > 0 {
                down.refund(&tx, &order_id, user, left, CANCEL_REASON, step)
                    .await?;
                self.inner.metrics.compensation(CompensationKind::Refund);
                tracing::info!(saga = %run.id, transaction = %tx, amount_cents = left, "charge refunded");
            }
        }
        Ok(Undone::Done)
    }

    /// Drives an open saga whose lease this instance just claimed to an end state (or parks
    /// it again for later).
    pub async fn resume(&self, saga: Saga) -> Result<(), Status> {
        tracing::info!(saga = %saga.id, step = %saga.step, "resuming saga");
        let mut run = Run {
            id: saga.id.clone(),
            user_id: saga.user_id,
            contact: saga.contact.clone(),
            lines: saga.lines.clone(),
            total: saga.total_cents.unwrap_or_default(),
            order_id: saga.order_id.clone(),
            tx: saga.transaction_id.clone(),
            outcome_recorded: saga.outcome.is_some(),
            deadline: Instant::now() + self.inner.timing.budget,
        };
        let result = match saga.step {
            Step::Started | Step::Rejected => self
                .reject(
                    &mut run,
                    Status::unavailable(INTERRUPTED_MESSAGE),
                    OutcomeKind::Error,
                )
                .await
                .map(drop),
            Step::PlacingOrder
            | Step::OrderPlaced
            | Step::ReservingStock
            | Step::StockReserved
            | Step::Compensating => {
                let status = if run.tx.is_some() {
                    Status::aborted(REFUNDED_MESSAGE)
                } else {
                    Status::aborted(INTERRUPTED_MESSAGE)
                };
                self.fail(&mut run, status, OutcomeKind::Error)
                    .await
                    .map(drop)
            }
            Step::Charging => self.resolve_charge(&mut run).await.map(drop),
            Step::Charged => self.finish_charged(&mut run).await.map(drop),
            Step::CartPending => self.paid(&mut run).await.map(drop),
            Step::Completed | Step::Compensated => {
                let state = if saga.step == Step::Completed {
                    SagaState::Succeeded
                } else {
                    SagaState::Failed
                };
                self.save(
                    &run,
                    Change {
                        state: Some(state),
                        release_lease_at: Some(now_ms()),
                        ..Change::default()
                    },
                )
                .await
            }
        };
        // A saga that ends in an error answer has still been driven; only lost leases and
        // storage failures are the worker's problem.
        match result {
            Err(s) if s.code() == Code::Internal || s.message() == lost_lease().message() => Err(s),
            _ => Ok(()),
        }
    }
}
