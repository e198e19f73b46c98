//! The forward path of a new saga, one function per step: cart, pricing, place order, reserve,
//! charge, mark paid, remove the purchased lines from the cart. Before the saga's row is
//! written (cart and pricing: reads only) a failure is a rejection; from the order on it
//! compensates (see [`super::compensate`]). No step writes the saga's row: the answer does.

use mall_types::{Cents, OrderId, PaymentMethod, TransactionId};

use super::StepCall as _;
use super::outcome::Answer;
use super::{Done, Engine, Failure, MARK_PAID_ATTEMPTS, MARK_PAID_BACKOFF, Run};
use crate::domain::{Card, MAX_LINES, Pay, PricedLine, PricingError, SagaState, Step, price_lines};
use crate::downstream::StepError;
use crate::downstream::reason;
use crate::store::{Change, now_ms};

/// Reasons product refuses a reservation for that the client is told as they are.
const STOCK_REFUSALS: [&str; 2] = [reason::INSUFFICIENT_STOCK, reason::RESERVATION_RELEASED];
/// Reasons payment refuses a charge for (nothing was charged): the card's fault.
const CHARGE_REFUSALS: [&str; 2] = [reason::CARD_DECLINED, reason::INVALID_REQUEST];

/// How step 3, the order, went.
enum Placed {
    /// The PENDING order exists.
    Order(OrderId),
    /// The order service refused: nothing was created.
    Refused(Failure),
    /// The order may exist: compensate.
    Failed(Failure),
}

impl Engine {
    /// Drives a new saga, priced and written, from its order to its answer.
    pub(super) async fn forward(&self, run: &mut Run, pay: &Pay) -> Result<Answer, StepError> {
        // 3. The order. From here on an order may exist, so failures compensate.
        let order_id = match self.place_order(run, pay.method()).await {
            Placed::Order(id) => id,
            Placed::Refused(failure) => return self.reject(run, failure).await,
            Placed::Failed(failure) => return self.fail(run, failure).await,
        };
        // 4. Stock.
        if let Err(failure) = self.reserve_stock(run, &order_id).await {
            return self.fail(run, failure).await;
        }
        match pay {
            // 5. The charge, then 6. paid and 7. the cart.
            Pay::Card(card) => self.charge(run, &order_id, card).await,
            // 5'. The pay link; payment takes it from there.
            Pay::Alipay { return_url } => self.alipay_link(run, &order_id, return_url).await,
        }
    }

    /// Step 5 of an Alipay checkout: the order's signed pay link, recorded with the answer.
    /// A refusal or failure compensates (the buyer never saw a link, so nothing can be paid
    /// through it; a payment that still arrives is refunded by payment's reconciliation).
    async fn alipay_link(
        &self,
        run: &mut Run,
        order_id: &OrderId,
        return_url: &str,
    ) -> Result<Answer, StepError> {
        let timeout = match self.within_budget(run) {
            Ok(t) => t,
            Err(e) => return self.fail(run, e.into()).await,
        };
        let linked = self
            .down()
            .alipay_pay_link(order_id, run.user(), run.total, return_url, timeout)
            .step(&self.inner.metrics, "alipay_link", run)
            .await;
        match linked {
            Ok(url) => {
                let change = Change {
                    state: Some(SagaState::Succeeded),
                    step: Some(Step::AwaitingPayment),
                    pay_url: Some(url.clone()),
                    release_lease_at: Some(now_ms()),
                    ..Change::default()
                };
                let done = super::Done {
                    order_id: order_id.clone(),
                    transaction_id: None,
                    pay_url: url,
                };
                let answer = self.decide(run, change, Ok(done)).await?;
                tracing::info!(saga = %run.id, order = %order_id, "alipay checkout: pay link given");
                Ok(answer)
            }
            Err(e) if e.ends_drive() => Err(e),
            Err(e) => {
                tracing::warn!(saga = %run.id, error = %e, "no alipay pay link");
                self.fail(run, Self::cut_by_budget(run, e).into()).await
            }
        }
    }

    /// Step 1: the cart's lines.
    pub(super) async fn read_cart(&self, run: &Run) -> Result<Vec<(u64, i32)>, Failure> {
        let timeout = self.within_budget(run)?;
        let cart = self
            .down()
            .get_cart(run.user(), timeout)
            .step(&self.inner.metrics, "read_cart", run)
            .await
            .map_err(|e| Self::cut_by_budget(run, e))?;
        if cart.is_empty() {
            return Err(Failure::Pricing(PricingError::EmptyCart));
        }
        // Before any other call: one order (and one catalog lookup) takes at most this many.
        if cart.len() > MAX_LINES {
            return Err(Failure::Pricing(PricingError::TooManyLines));
        }
        Ok(cart)
    }

    /// Step 2: every line priced from the catalog, all in one call, never from the client.
    pub(super) async fn price(
        &self,
        run: &Run,
        cart: &[(u64, i32)],
    ) -> Result<(Vec<PricedLine>, Cents), Failure> {
        let mut ids: Vec<u64> = cart.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let timeout = self.within_budget(run)?;
        let prices = self
            .down()
            .prices(ids, timeout)
            .step(&self.inner.metrics, "price", run)
            .await
            .map_err(|e| Self::cut_by_budget(run, e))?;
        price_lines(cart, &prices).map_err(Failure::Pricing)
    }

    /// Step 3: the PENDING order, under the saga id as its idempotency key (so recovery finds
    /// it again, or compensation cancels it).
    async fn place_order(&self, run: &mut Run, method: PaymentMethod) -> Placed {
        let timeout = match self.within_budget(run) {
            Ok(t) => t,
            Err(e) => return Placed::Refused(e.into()),
        };
        let placed = self
            .down()
            .place_order(
                &run.id,
                run.user(),
                &run.contact,
                &run.lines,
                method,
                timeout,
            )
            .step(&self.inner.metrics, "place_order", run)
            .await;
        match placed {
            Ok(id) => {
                run.order_id = Some(id.clone());
                Placed::Order(id)
            }
            // A refusal with a reason is the order service's own "no": it created nothing
            // (compensation finds no order to cancel under the saga id, or cancels one).
            Err(e) if e.reason().is_some() => Placed::Refused(Self::cut_by_budget(run, e).into()),
            Err(e) => Placed::Failed(Self::cut_by_budget(run, e).into()),
        }
    }

    /// Step 4: the order's stock, reserved under its id.
    async fn reserve_stock(&self, run: &Run, order_id: &OrderId) -> Result<(), Failure> {
        let reserved = match self.within_budget(run) {
            Ok(timeout) => {
                self.down()
                    .reserve_stock(order_id, &run.lines, timeout)
                    .step(&self.inner.metrics, "reserve_stock", run)
                    .await
            }
            Err(e) => Err(e),
        };
        reserved.map_err(|e| match e.refusal(&STOCK_REFUSALS) {
            Some(refusal) => Failure::Stock(refusal.message().to_string()),
            None => Self::cut_by_budget(run, e).into(),
        })
    }

    /// Step 5: the charge. Only a charge refused by payment, or one that never left this
    /// service, is known not to have happened; any other failure (a connection lost mid-call)
    /// may have charged the card, so payment is asked.
    async fn charge(
        &self,
        run: &mut Run,
        order_id: &OrderId,
        card: &Card,
    ) -> Result<Answer, StepError> {
        let timeout = match self.within_budget(run) {
            Ok(t) => t,
            Err(e) => return self.fail(run, e.into()).await,
        };
        let charged = self
            .down()
            .charge(order_id, run.user(), run.total, card, timeout)
            .step(&self.inner.metrics, "charge", run)
            .await;
        match charged {
            Ok(tx) => {
                run.tx = Some(tx);
                self.finish_charged(run).await
            }
            Err(e) if e.ends_drive() => Err(e),
            Err(e) => match e.refusal(&CHARGE_REFUSALS) {
                Some(refusal) => self.fail(run, Failure::declined(refusal)).await,
                None if matches!(e, StepError::NotSent { .. }) => {
                    tracing::warn!(saga = %run.id, error = %e, "payment unreachable");
                    self.fail(run, Failure::NotCharged).await
                }
                None => {
                    tracing::warn!(saga = %run.id, error = %e, "charge outcome unknown");
                    self.resolve_charge(run, Failure::NotCharged).await
                }
            },
        }
    }

    /// Step 6: charged, so mark the order paid (bounded retries), else refund and cancel.
    pub(super) async fn finish_charged(&self, run: &mut Run) -> Result<Answer, StepError> {
        let (order_id, tx) = charged_ids(run, "charged")?;
        let step = run.timing.step;
        for attempt in 0..MARK_PAID_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(MARK_PAID_BACKOFF * 2u32.pow(attempt - 1)).await;
            }
            match self
                .down()
                .mark_paid(run.user(), &order_id, &tx, step)
                .step(&self.inner.metrics, "mark_paid", run)
                .await
            {
                Ok(()) => return self.paid(run).await,
                Err(e) if e.ends_drive() => return Err(e),
                Err(e) => {
                    tracing::warn!(saga = %run.id, attempt, error = %e, "MarkOrderPaid failed")
                }
            }
        }
        self.fail(run, Failure::Refunded).await
    }

    /// Step 7: the order is PAID, so take the purchased lines out of the cart, then record
    /// success (one write: the order, the charge, the answer). When the cart cannot be cleaned
    /// now, success is recorded with the cart left to the worker (`cart_pending`): once per
    /// order, so a late retry cannot touch what the shopper added since.
    pub(super) async fn paid(&self, run: &mut Run) -> Result<Answer, StepError> {
        let (order_id, tx) = charged_ids(run, "paid")?;
        let done = Done {
            order_id,
            transaction_id: Some(tx),
            pay_url: String::new(),
        };
        let cleaned = self
            .down()
            .remove_purchased(run.user(), &done.order_id, &run.lines, run.timing.step)
            .step(&self.inner.metrics, "cart_cleanup", run)
            .await;
        let change = match cleaned {
            Ok(()) => Change {
                state: Some(SagaState::Succeeded),
                step: Some(Step::Completed),
                release_lease_at: Some(now_ms()),
                ..Change::default()
            },
            Err(e) if e.ends_drive() => return Err(e),
            Err(e) => {
                tracing::warn!(saga = %run.id, error = %e, "RemovePurchased failed; the recovery worker will retry");
                Change {
                    step: Some(Step::CartPending),
                    release_lease_at: Some(self.retry_at()),
                    ..Change::default()
                }
            }
        };
        let completed = change.state.is_some();
        let order = done.order_id.clone();
        let answer = self.decide(run, change, Ok(done)).await?;
        if completed {
            tracing::info!(saga = %run.id, %order, "checkout completed");
        }
        Ok(answer)
    }
}

/// The order and transaction of a saga that is `what` (charged, paid): both must be known.
fn charged_ids(run: &Run, what: &str) -> Result<(OrderId, TransactionId), StepError> {
    match (&run.order_id, &run.tx) {
        (Some(order_id), Some(tx)) => Ok((order_id.clone(), tx.clone())),
        _ => Err(
            crate::error::Error::Corrupt(format!("saga {} is {what} without ids", run.id)).into(),
        ),
    }
}
