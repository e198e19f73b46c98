//! The saga's remote steps behind one trait, [`Downstream`]: one method per call, each with its
//! own deadline. Production calls the fleet through [`grpc::GrpcDownstream`]; tests wrap it in
//! an implementation of their own that injects faults (see `checkout::build_with`).
//!
//! Failures come back as [`StepError`]s, already classified (not sent, unreachable, refused
//! with a reason), so the saga never reads a status.

mod error;
pub mod grpc;

pub use self::error::{BUDGET_MESSAGE, STOPPED_MESSAGE, StepError};

use std::collections::HashMap;
use std::time::Duration;

use mall_types::{Cents, OrderId, PaymentMethod, TransactionId, UserId};

use crate::domain::{Card, Contact, PricedLine};

/// The reasons of other services' refusals the saga acts on, declared with the contract.
pub use mall_proto::reason;

/// An order's status as the saga needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderState {
    /// Still PENDING.
    Pending,
    /// PAID by this transaction.
    Paid(TransactionId),
    /// CANCELLED.
    Cancelled,
    /// Anything else (COMPLETED, REFUNDED, unknown).
    Other(i32),
}

/// A recorded payment: what the saga reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInfo {
    /// The transaction id.
    pub transaction_id: TransactionId,
    /// The payer.
    pub user_id: UserId,
    /// Charged amount.
    pub amount_cents: Cents,
    /// Already refunded.
    pub refunded_cents: Cents,
    /// How it was paid.
    pub method: PaymentMethod,
}

/// What voiding an order found (`VoidOrder`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Nothing was charged, and from now on nothing can be.
    Voided,
    /// The order was charged first: its payment.
    Charged(PaymentInfo),
}

/// Cart, product, order and payment, as the saga calls them (as the checkout service).
///
/// A failure is a dependency's ([`StepError::NotSent`], [`StepError::Unreachable`],
/// [`StepError::Refused`], [`StepError::Unexpected`]), or [`StepError::Stopped`]: the saga then
/// stops where it is, writing nothing more, as a killed process would (how tests simulate
/// crashes).
#[async_trait::async_trait]
pub trait Downstream: Send + Sync {
    /// The cart's lines `(product_id, quantity)` in the order first added.
    async fn get_cart(
        &self,
        user_id: UserId,
        timeout: Duration,
    ) -> Result<Vec<(u64, i32)>, StepError>;

    /// Catalog prices of `ids` in one `BatchGetProducts`; missing or deleted ids are absent.
    async fn prices(
        &self,
        ids: Vec<u64>,
        timeout: Duration,
    ) -> Result<HashMap<u64, i64>, StepError>;

    /// Places the PENDING order, paid with `method` (`credit_card` or `alipay`); `saga_id` is
    /// its idempotency key, so a repeat names the same order.
    async fn place_order(
        &self,
        saga_id: &str,
        user_id: UserId,
        contact: &Contact,
        lines: &[PricedLine],
        method: PaymentMethod,
        timeout: Duration,
    ) -> Result<OrderId, StepError>;

    /// The signed Alipay pay link of the PENDING Alipay order (`AlipayCharge` for its total;
    /// payment checks owner, status and total with order). `return_url` may be empty.
    async fn alipay_pay_link(
        &self,
        order_id: &OrderId,
        user_id: UserId,
        amount_cents: Cents,
        return_url: &str,
        timeout: Duration,
    ) -> Result<String, StepError>;

    /// Reserves the lines' stock under the order id.
    async fn reserve_stock(
        &self,
        order_id: &OrderId,
        lines: &[PricedLine],
        timeout: Duration,
    ) -> Result<(), StepError>;

    /// Gives the order's reservation back (unknown or released: no-op).
    async fn release_stock(&self, order_id: &OrderId, timeout: Duration) -> Result<(), StepError>;

    /// Charges the card; returns the transaction id.
    async fn charge(
        &self,
        order_id: &OrderId,
        user_id: UserId,
        amount_cents: Cents,
        card: &Card,
        timeout: Duration,
    ) -> Result<TransactionId, StepError>;

    /// Refunds `amount_cents` of the transaction; returns the refund id.
    async fn refund(
        &self,
        transaction_id: &TransactionId,
        order_id: &OrderId,
        user_id: UserId,
        amount_cents: Cents,
        reason: &str,
        timeout: Duration,
    ) -> Result<String, StepError>;

    /// The payment `transaction_id`.
    async fn get_payment(
        &self,
        transaction_id: &TransactionId,
        timeout: Duration,
    ) -> Result<PaymentInfo, StepError>;

    /// Voids `order_id` at payment unless it was charged: how a saga that stopped during
    /// `Charge` (outcome unknown) settles whether the card was charged, so that a `Charge`
    /// still in flight cannot land after the saga gave up.
    async fn void_order(
        &self,
        order_id: &OrderId,
        timeout: Duration,
    ) -> Result<Settlement, StepError>;

    /// PENDING→PAID by `transaction_id`.
    async fn mark_paid(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        transaction_id: &TransactionId,
        timeout: Duration,
    ) -> Result<(), StepError>;

    /// The order's status.
    async fn order_state(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        timeout: Duration,
    ) -> Result<OrderState, StepError>;

    /// PENDING→CANCELLED (order also releases the reservation).
    async fn cancel_order(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        reason: &str,
        timeout: Duration,
    ) -> Result<(), StepError>;

    /// Takes the purchased lines out of the buyer's cart, once per order (idempotent: a
    /// repeat, however late, changes nothing, so lines added since stay).
    async fn remove_purchased(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        lines: &[PricedLine],
        timeout: Duration,
    ) -> Result<(), StepError>;
}
