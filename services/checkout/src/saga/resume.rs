//! Driving open sagas for the recovery worker: from the step each was left at to an end state,
//! and finding out whether a charge whose answer never arrived happened.

use std::time::Instant;

use tracing::Instrument as _;

use super::outcome::Answer;
use super::{Engine, Failure, Run};
use crate::domain::{SagaState, Step};
use crate::downstream::StepError;
use mall_types::PaymentMethod;

use crate::downstream::{PaymentInfo, Settlement};
use crate::store::{Change, Saga, now_ms};

impl Engine {
    /// Drives an open saga whose lease this instance just claimed to an end state (or parks
    /// it again for later). A saga that ends in an error answer has still been driven: only
    /// a lost lease, a stop or a storage failure is the worker's problem.
    ///
    /// It runs in a `saga.resume` span of its own trace, linked to the trace of the request
    /// that opened the saga (when traces were exported then and now).
    pub async fn resume(&self, saga: Saga) -> Result<(), StepError> {
        let span = tracing::info_span!(
            "saga.resume",
            saga.id = %saga.id,
            saga.step = %saga.step
        );
        mall_common::telemetry::trace::adopt(&span, crate::NAME, saga.trace_parent.as_deref());
        self.drive_open(saga).instrument(span).await
    }

    /// [`Engine::resume`] inside its span.
    async fn drive_open(&self, saga: Saga) -> Result<(), StepError> {
        tracing::info!(saga = %saga.id, step = %saga.step, "resuming saga");
        let timing = self.timing();
        let mut run = Run {
            id: saga.id.clone(),
            user_id: saga.user_id,
            contact: saga.contact.clone(),
            lines: saga.lines.clone(),
            total: saga.total_cents.unwrap_or_default(),
            order_id: saga.order_id.clone(),
            tx: saga.transaction_id.clone(),
            outcome_recorded: saga.outcome.is_some(),
            deadline: Instant::now() + timing.budget,
            timing,
        };
        let run = &mut run;
        match saga.step {
            // Only reads so far: nothing to undo.
            Step::Started | Step::Rejected => {
                self.reject(run, Failure::Interrupted).await.map(drop)
            }
            // Written before the first remote step and not since: anything up to the charge
            // and beyond may have happened. The order by the saga id, then payment's void.
            Step::PlacingOrder => self.resolve_in_flight(run).await.map(drop),
            // Never charged (the card is not stored), or charged and refunding.
            // (An Alipay checkout that stopped before its answer was recorded: the buyer never
            // got the pay link, so it is undone like one that was never charged.)
            Step::OrderPlaced
            | Step::ReservingStock
            | Step::StockReserved
            | Step::LinkingPayment
            | Step::Compensating => {
                let failure = if run.tx.is_some() {
                    Failure::Refunded
                } else {
                    Failure::Abandoned
                };
                self.fail(run, failure).await.map(drop)
            }
            Step::Charging => self
                .resolve_charge(run, Failure::NotCharged)
                .await
                .map(drop),
            Step::Charged => self.finish_charged(run).await.map(drop),
            Step::CartPending => self.paid(run).await.map(drop),
            Step::Completed | Step::AwaitingPayment | Step::Compensated => {
                let state = if saga.step != Step::Compensated {
                    SagaState::Succeeded
                } else {
                    SagaState::Failed
                };
                let ended = Change {
                    state: Some(state),
                    release_lease_at: Some(now_ms()),
                    ..Change::default()
                };
                self.save(run, ended).await
            }
        }
    }

    /// A saga left where the forward path wrote it (`placing_order`): its order, found (or
    /// made, to be cancelled) under the saga id, then [`Engine::resolve_charge`]; a saga that
    /// was never charged is answered as abandoned. An order lookup that fails now is retried
    /// later.
    pub(super) async fn resolve_in_flight(&self, run: &mut Run) -> Result<Answer, StepError> {
        if run.order_id.is_none() {
            match self.order_to_undo(run).await {
                Ok(Some(_)) => {}
                Ok(None) => return self.fail(run, Failure::Abandoned).await,
                Err(e) if e.ends_drive() => return Err(e),
                Err(e) => {
                    tracing::warn!(saga = %run.id, error = %e, "cannot find the saga's order; will retry");
                    self.park(run).await?;
                    return Ok(Err(Failure::ChargeUnknown.into_status()));
                }
            }
        }
        self.resolve_charge(run, Failure::Abandoned).await
    }

    /// After a `Charge` whose outcome is unknown: void the order at payment, which either
    /// shuts out a charge still in flight or finds the charge that landed. A charge that is this
    /// saga's (its amount, user and method) finishes the checkout; otherwise nothing of ours was
    /// charged and the saga compensates with `uncharged` as its answer (a foreign payment on the
    /// cancelled order is refunded by payment's reconciliation).
    pub(super) async fn resolve_charge(
        &self,
        run: &mut Run,
        uncharged: Failure,
    ) -> Result<Answer, StepError> {
        let Some(order_id) = run.order_id.clone() else {
            return self.fail(run, Failure::Interrupted).await;
        };
        let found = self.down().void_order(&order_id, run.timing.step).await;
        match found {
            Ok(Settlement::Charged(payment)) if is_this_sagas(run, &payment) => {
                run.tx = Some(payment.transaction_id);
                self.finish_charged(run).await
            }
            Ok(Settlement::Charged(payment)) => {
                tracing::error!(saga = %run.id, order = %order_id, transaction = %payment.transaction_id, "the order's payment is not this checkout's charge");
                self.fail(run, uncharged).await
            }
            Ok(Settlement::Voided) => self.fail(run, uncharged).await,
            Err(e) if e.ends_drive() => Err(e),
            Err(e) => {
                tracing::warn!(saga = %run.id, error = %e, "cannot tell whether the order was charged; will retry");
                self.park(run).await?;
                Ok(Err(Failure::ChargeUnknown.into_status()))
            }
        }
    }
}

/// Whether `payment` is the charge this saga asked for: its user, its total, by card.
fn is_this_sagas(run: &Run, payment: &PaymentInfo) -> bool {
    payment.user_id == run.user()
        && payment.amount_cents == run.total
        && payment.method == PaymentMethod::CreditCard
}
