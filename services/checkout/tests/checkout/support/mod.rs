//! Fault injection for the checkout tests: [`Faults`] wraps the production gRPC
//! [`Downstream`] (through `checkout::build_with`) in one that fails, loses answers, refuses or
//! "crashes" where a test arms it, and otherwise passes every call through.
//!
//! The saga and invariant tests also share [`fleet`] and the checkout [`Instance`] each test
//! builds itself beside it (`instance.rs`).

mod instance;

pub use instance::{Instance, fleet};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use checkout::Downstream;
use checkout::domain::{Card, Contact, PricedLine};
use checkout::downstream::StepError;
use checkout::downstream::{OrderState, PaymentInfo, Settlement};
use mall_types::{Cents, OrderId, PaymentMethod, TransactionId, UserId};
use parking_lot::Mutex;
use tonic::Status;

/// What to inject. Cloning shares the counters, so a test keeps a handle on what it armed.
#[derive(Clone, Default, Debug)]
pub struct Faults {
    /// The next this-many `MarkOrderPaid` calls fail with `UNAVAILABLE` without being sent.
    pub fail_mark_paid: Arc<AtomicU32>,
    /// The next this-many `RemovePurchased` calls fail with `UNAVAILABLE` without being sent.
    pub fail_remove_purchased: Arc<AtomicU32>,
    /// The next this-many `MarkOrderPaid` calls are sent, but their answer is lost: the saga
    /// sees `DEADLINE_EXCEEDED` whatever the order service did.
    pub lose_mark_paid_answers: Arc<AtomicU32>,
    /// The next this-many `CancelOrder` calls fail with `UNAVAILABLE` without being sent.
    pub fail_cancel_order: Arc<AtomicU32>,
    /// When set, a checkout stops right after recording its charge, as if the process had
    /// been killed: no further writes (no `MarkOrderPaid` either), the lease is left to expire.
    pub crash_after_charge: Arc<AtomicBool>,
    /// When set, a checkout stops right after `Charge` answered OK but before the transaction
    /// id is recorded (the saga is left at step `charging`), as if the process had been killed:
    /// no further writes, the lease is left to expire.
    pub crash_before_recording_charge: Arc<AtomicBool>,
    /// When set, the next `ReserveStock` is not sent: product's answer is this status instead.
    pub refuse_reserve_stock: Arc<Mutex<Option<Status>>>,
    /// When set, the next `Charge` is held back this long and sent after the saga was told
    /// `DEADLINE_EXCEEDED` (a charge still in flight when checkout gives up); its answer lands
    /// in [`Faults::late_charge_answer`].
    pub delay_charge: Arc<Mutex<Option<Duration>>>,
    /// What the late `Charge` of [`Faults::delay_charge`] got: the transaction id or the status.
    pub late_charge_answer: Arc<Mutex<Option<Result<String, Status>>>>,
    /// When set, the next `Charge` is not sent: payment's answer is this status instead.
    pub refuse_charge: Arc<Mutex<Option<Status>>>,
}

impl Faults {
    /// The wrapper `checkout::build_with` takes: the gRPC downstream with these faults.
    pub fn wrap(&self) -> impl FnOnce(Arc<dyn Downstream>) -> Arc<dyn Downstream> + use<> {
        let faults = self.clone();
        move |inner| Arc::new(Faulty { inner, faults })
    }
}

/// Takes one injected failure from `counter`, if any are left.
fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// A call that fails before it is sent, as a down instance makes it.
fn not_sent(service: &'static str, what: &str) -> StepError {
    StepError::NotSent {
        service,
        status: Status::unavailable(format!("{what}: injected fault")),
    }
}

/// The gRPC downstream with [`Faults`] in front of it.
struct Faulty {
    inner: Arc<dyn Downstream>,
    faults: Faults,
}

#[async_trait::async_trait]
impl Downstream for Faulty {
    async fn get_cart(
        &self,
        user_id: UserId,
        timeout: Duration,
    ) -> Result<Vec<(u64, i32)>, StepError> {
        self.inner.get_cart(user_id, timeout).await
    }

    async fn prices(
        &self,
        ids: Vec<u64>,
        timeout: Duration,
    ) -> Result<HashMap<u64, i64>, StepError> {
        self.inner.prices(ids, timeout).await
    }

    async fn place_order(
        &self,
        saga_id: &str,
        user_id: UserId,
        contact: &Contact,
        lines: &[PricedLine],
        method: PaymentMethod,
        timeout: Duration,
    ) -> Result<OrderId, StepError> {
        self.inner
            .place_order(saga_id, user_id, contact, lines, method, timeout)
            .await
    }

    async fn alipay_pay_link(
        &self,
        order_id: &OrderId,
        user_id: UserId,
        amount_cents: Cents,
        return_url: &str,
        timeout: Duration,
    ) -> Result<String, StepError> {
        self.inner
            .alipay_pay_link(order_id, user_id, amount_cents, return_url, timeout)
            .await
    }

    async fn reserve_stock(
        &self,
        order_id: &OrderId,
        lines: &[PricedLine],
        timeout: Duration,
    ) -> Result<(), StepError> {
        if let Some(status) = self.faults.refuse_reserve_stock.lock().take() {
            return Err(StepError::from_status("product", status));
        }
        self.inner.reserve_stock(order_id, lines, timeout).await
    }

    async fn release_stock(&self, order_id: &OrderId, timeout: Duration) -> Result<(), StepError> {
        self.inner.release_stock(order_id, timeout).await
    }

    async fn charge(
        &self,
        order_id: &OrderId,
        user_id: UserId,
        amount_cents: Cents,
        card: &Card,
        timeout: Duration,
    ) -> Result<TransactionId, StepError> {
        if let Some(status) = self.faults.refuse_charge.lock().take() {
            return Err(StepError::from_status("payment", status));
        }
        let delay = self.faults.delay_charge.lock().take();
        if let Some(delay) = delay {
            let (inner, answer) = (self.inner.clone(), self.faults.late_charge_answer.clone());
            let (order_id, card) = (order_id.clone(), card.clone());
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let charged = inner
                    .charge(&order_id, user_id, amount_cents, &card, timeout)
                    .await
                    .map(String::from)
                    .map_err(StepError::into_status);
                *answer.lock() = Some(charged);
            });
            return Err(StepError::Unreachable {
                service: "payment",
                status: Status::deadline_exceeded("Charge: injected late charge"),
            });
        }
        let charged = self
            .inner
            .charge(order_id, user_id, amount_cents, card, timeout)
            .await?;
        if self
            .faults
            .crash_before_recording_charge
            .load(Ordering::SeqCst)
        {
            return Err(StepError::Stopped);
        }
        Ok(charged)
    }

    async fn refund(
        &self,
        transaction_id: &TransactionId,
        order_id: &OrderId,
        user_id: UserId,
        amount_cents: Cents,
        reason: &str,
        timeout: Duration,
    ) -> Result<String, StepError> {
        self.inner
            .refund(
                transaction_id,
                order_id,
                user_id,
                amount_cents,
                reason,
                timeout,
            )
            .await
    }

    async fn get_payment(
        &self,
        transaction_id: &TransactionId,
        timeout: Duration,
    ) -> Result<PaymentInfo, StepError> {
        self.inner.get_payment(transaction_id, timeout).await
    }

    async fn void_order(
        &self,
        order_id: &OrderId,
        timeout: Duration,
    ) -> Result<Settlement, StepError> {
        self.inner.void_order(order_id, timeout).await
    }

    async fn mark_paid(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        transaction_id: &TransactionId,
        timeout: Duration,
    ) -> Result<(), StepError> {
        // The call after recording the charge: a crashed instance never makes it.
        if self.faults.crash_after_charge.load(Ordering::SeqCst) {
            return Err(StepError::Stopped);
        }
        if take(&self.faults.fail_mark_paid) {
            return Err(not_sent("order", "MarkOrderPaid"));
        }
        let answer = self
            .inner
            .mark_paid(user_id, order_id, transaction_id, timeout)
            .await;
        if take(&self.faults.lose_mark_paid_answers) {
            return Err(StepError::Unreachable {
                service: "order",
                status: Status::deadline_exceeded("MarkOrderPaid: injected lost answer"),
            });
        }
        answer
    }

    async fn order_state(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        timeout: Duration,
    ) -> Result<OrderState, StepError> {
        self.inner.order_state(user_id, order_id, timeout).await
    }

    async fn cancel_order(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        reason: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        if take(&self.faults.fail_cancel_order) {
            return Err(not_sent("order", "CancelOrder"));
        }
        self.inner
            .cancel_order(user_id, order_id, reason, timeout)
            .await
    }

    async fn remove_purchased(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        lines: &[PricedLine],
        timeout: Duration,
    ) -> Result<(), StepError> {
        if take(&self.faults.fail_remove_purchased) {
            return Err(not_sent("cart", "RemovePurchased"));
        }
        self.inner
            .remove_purchased(user_id, order_id, lines, timeout)
            .await
    }
}
