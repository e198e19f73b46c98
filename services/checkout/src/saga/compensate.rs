//! Undoing a saga, in one fixed order whatever went wrong: cancel the order (once it is
//! CANCELLED it can never become PAID, so a refund after it is safe), release the stock, refund
//! what is left of the charge. Every action is idempotent or guarded, so the recovery worker
//! can run the whole compensation again after a partial one.

use mall_types::{Cents, OrderId};

use super::outcome::{Answer, unless_stopping};
use super::{CANCEL_REASON, Engine, Failure, Run, StepCall as _};
use crate::domain::{SagaState, Step};
use crate::downstream::StepError;
use crate::downstream::{OrderState, reason};
use crate::metrics::CompensationKind;
use crate::store::{Change, now_ms};

/// What compensation found.
enum Undone {
    /// Order cancelled, stock back, charge (if any) refunded.
    Done,
    /// The order turned out to be PAID by this saga's charge: the checkout succeeded.
    OrderPaid,
}

impl Engine {
    /// Compensates and answers `failure` (or, if the order turns out PAID by our charge,
    /// success). A compensation that cannot finish now is left to the recovery worker.
    pub(super) async fn fail(&self, run: &mut Run, failure: Failure) -> Result<Answer, StepError> {
        let failure = unless_stopping(failure)?;
        tracing::info!(saga = %run.id, %failure, "checkout failed; compensating");
        self.save(run, Change::step(Step::Compensating)).await?;
        match self.compensate(run).await {
            Ok(Undone::Done) => {
                let change = Change {
                    state: Some(SagaState::Failed),
                    step: Some(Step::Compensated),
                    release_lease_at: Some(now_ms()),
                    ..Change::default()
                };
                self.decide(run, change, Err(failure)).await
            }
            Ok(Undone::OrderPaid) => {
                tracing::info!(saga = %run.id, "order was paid after all");
                self.paid(run).await
            }
            Err(e) if e.ends_drive() => Err(e),
            Err(e) => {
                tracing::warn!(saga = %run.id, error = %e, "compensation incomplete; the recovery worker will finish it");
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
                    return Ok(Err(Failure::Unsettled.into_status()));
                }
                self.decide(run, change, Err(failure)).await
            }
        }
    }

    /// Cancel the order, release the stock, refund what is left of the charge.
    async fn compensate(&self, run: &mut Run) -> Result<Undone, StepError> {
        let Some(order_id) = self.order_to_undo(run).await? else {
            return Ok(Undone::Done);
        };
        if let Undone::OrderPaid = self.cancel_order(run, &order_id).await? {
            return Ok(Undone::OrderPaid);
        }
        let step = run.timing.step;
        self.down()
            .release_stock(&order_id, step)
            .step(&self.inner.metrics, "compensate.release_stock", run)
            .await?;
        self.inner
            .metrics
            .compensation(CompensationKind::ReleaseStock);
        self.refund_rest(run, &order_id).await?;
        Ok(Undone::Done)
    }

    /// The saga's order, if it may have one. `PlaceOrder` may have created the order without
    /// the saga learning its id; the saga id as its key names it (or creates it, to be
    /// cancelled right away).
    pub(super) async fn order_to_undo(&self, run: &mut Run) -> Result<Option<OrderId>, StepError> {
        if let Some(id) = &run.order_id {
            return Ok(Some(id.clone()));
        }
        if run.lines.is_empty() {
            return Ok(None);
        }
        let id = self
            .down()
            .place_order(
                &run.id,
                run.user(),
                &run.contact,
                &run.lines,
                // Finds the order placed under the saga id whatever its method; one created
                // now is cancelled right away.
                mall_types::PaymentMethod::CreditCard,
                run.timing.step,
            )
            .step(&self.inner.metrics, "compensate.find_order", run)
            .await?;
        run.order_id = Some(id.clone());
        let found = Change {
            order_id: Some(id.clone()),
            ..Change::default()
        };
        self.save(run, found).await?;
        Ok(Some(id))
    }

    /// Cancels the order. One that is no longer PENDING is already cancelled (an earlier pass),
    /// or PAID, which by this saga's charge means the checkout succeeded (a `MarkOrderPaid`
    /// whose answer was lost).
    async fn cancel_order(&self, run: &Run, order_id: &OrderId) -> Result<Undone, StepError> {
        let step = run.timing.step;
        let user = run.user();
        let cancelled = self
            .down()
            .cancel_order(user, order_id, CANCEL_REASON, step)
            .step(&self.inner.metrics, "compensate.cancel_order", run)
            .await;
        match cancelled {
            Ok(()) => {
                self.inner
                    .metrics
                    .compensation(CompensationKind::CancelOrder);
                Ok(Undone::Done)
            }
            Err(e) if e.refusal(&[reason::ORDER_NOT_PENDING]).is_some() => {
                match self.down().order_state(user, order_id, step).await? {
                    OrderState::Cancelled => Ok(Undone::Done),
                    OrderState::Paid(tx) if run.tx.as_deref() == Some(tx.as_str()) => {
                        Ok(Undone::OrderPaid)
                    }
                    other => Err(StepError::Unexpected {
                        service: "order",
                        what: format!("order {order_id} cannot be cancelled: {other:?}"),
                    }),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Refunds whatever of the saga's charge is not refunded yet.
    async fn refund_rest(&self, run: &Run, order_id: &OrderId) -> Result<(), StepError> {
        let Some(tx) = &run.tx else {
            return Ok(());
        };
        let step = run.timing.step;
        let payment = self.down().get_payment(tx, step).await?;
        let left = payment
            .amount_cents
            .checked_sub(payment.refunded_cents)
            .unwrap_or(Cents::ZERO);
        if left > Cents::ZERO {
            self.down()
                .refund(tx, order_id, run.user(), left, CANCEL_REASON, step)
                .step(&self.inner.metrics, "compensate.refund", run)
                .await?;
            self.inner.metrics.compensation(CompensationKind::Refund);
            tracing::info!(saga = %run.id, transaction = %tx, amount_cents = left.get(), "charge refunded");
        }
        Ok(())
    }
}
