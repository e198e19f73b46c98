//! The reconciliation worker: every successful payment must end on a PAID order or be refunded.
//!
//! A charge can outlive the checkout that asked for it (its answer lost, the saga compensated
//! and cancelled the order meanwhile), and an Alipay payment can arrive for an order that was
//! cancelled. Every `payment.reconcile_interval` the worker asks order about payments older
//! than `payment.reconcile_after` that it has not found settled yet:
//!
//! - the order is PAID (or COMPLETED, REFUNDED) by this payment: settled;
//! - the order is CANCELLED, or paid by another transaction: what is left of the payment is
//!   refunded, then settled;
//! - the order is still PENDING: asked again next round (checkout or the order sweeper decides);
//! - order cannot be asked, or does not know the order: asked again next round, with a warning.
//!
//! Several payment instances may run it at once: refunds are atomic and bounded by the charge
//! ([`crate::store::Ledger::refund`]), so the loser of a race is refused and finds the payment
//! settled on its next round.

use std::sync::Arc;
use std::time::Duration;

use mall_common::client::Channel;
use mall_common::server::Shutdown;
use mall_common::worker::spawn_periodic;
use mall_proto::order::v1 as order_pb;
use mall_proto::order::v1::order_service_client::OrderServiceClient;
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use tonic::Code;

use crate::app::Payments;
use crate::domain::{Method, Payment, Refund};
use crate::error::Error;

/// A client for order; calls carry this service's token (GetOrder on behalf of the payer).
pub type OrderClient = OrderServiceClient<Channel>;

/// Most payments one round looks at.
pub const BATCH: i64 = 100;
/// The reason recorded on the refunds the worker makes.
pub const REFUND_REASON: &str = "order was cancelled: payment reconciled";

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Payments found settled (including those refunded now).
    pub settled: Vec<String>,
    /// Payments refunded now (transaction ids).
    pub refunded: Vec<String>,
    /// Payments left for a later round.
    pub pending: usize,
}

/// The worker: payments, and order to ask.
#[derive(Clone)]
pub struct Reconciler {
    payments: Payments,
    order: OrderClient,
    after: Duration,
}

/// What order says about a payment's order.
enum OrderSays {
    /// Paid by this payment: settled.
    PaidByIt,
    /// Cancelled, or paid by another transaction: this payment must be refunded.
    NotIts,
    /// Not decided yet, or order could not tell.
    Later,
}

impl Reconciler {
    /// A worker over `payments`, asking `order` about payments older than `after`.
    pub fn new(payments: Payments, order: OrderClient, after: Duration) -> Self {
        Reconciler {
            payments,
            order,
            after,
        }
    }

    /// One round over the payments due.
    pub async fn run_once(&self) -> Result<Round, Error> {
        let after = i64::try_from(self.after.as_secs()).unwrap_or(i64::MAX);
        let due = self
            .payments
            .ledger()
            .unreconciled(unix_secs().saturating_sub(after), BATCH)
            .await?;
        let mut round = Round::default();
        for payment in due {
            let tx = payment.transaction_id.clone();
            let settled = match self.order_says(&payment).await {
                _ if payment.refunded_cents >= payment.amount_cents => true,
                OrderSays::PaidByIt => true,
                OrderSays::NotIts => match self.refund_rest(&payment).await {
                    Ok(()) => {
                        round.refunded.push(tx.clone());
                        true
                    }
                    Err(e) => {
                        tracing::warn!(transaction = %tx, order = %payment.order_id, error = %e, "reconciliation refund failed; will retry");
                        false
                    }
                },
                OrderSays::Later => false,
            };
            if settled {
                self.payments.ledger().mark_reconciled(&tx).await?;
                round.settled.push(tx);
            } else {
                round.pending += 1;
            }
        }
        Ok(round)
    }

    async fn order_says(&self, payment: &Payment) -> OrderSays {
        let req = order_pb::GetOrderReq {
            user_id: stored_to_api(payment.user_id),
            order_id: payment.order_id.clone(),
        };
        let order = match self.order.clone().get_order(req).await {
            Ok(resp) => resp.into_inner().order,
            Err(status) => {
                if status.code() == Code::NotFound {
                    tracing::warn!(transaction = %payment.transaction_id, order = %payment.order_id, "payment for an order that order does not know");
                } else {
                    tracing::debug!(order = %payment.order_id, code = ?status.code(), "cannot ask order; will retry");
                }
                return OrderSays::Later;
            }
        };
        let Some(order) = order else {
            return OrderSays::Later;
        };
        use order_pb::OrderStatus as S;
        match S::try_from(order.status) {
            Ok(S::Pending) | Ok(S::Unspecified) | Err(_) => OrderSays::Later,
            Ok(S::Cancelled) => OrderSays::NotIts,
            Ok(S::Paid | S::Completed | S::Refunded)
                if order.transaction_id == payment.transaction_id =>
            {
                OrderSays::PaidByIt
            }
            Ok(S::Paid | S::Completed | S::Refunded) => {
                tracing::error!(transaction = %payment.transaction_id, order = %payment.order_id, paid_by = %order.transaction_id, "order was paid by another transaction");
                OrderSays::NotIts
            }
        }
    }

    /// Refunds what is left of `payment`.
    async fn refund_rest(&self, payment: &Payment) -> Result<(), Error> {
        let left = payment.amount_cents.saturating_sub(payment.refunded_cents);
        if payment.method == Method::Alipay {
            // Alipay refunds go through Alipay, which this service does not call yet.
            tracing::error!(transaction = %payment.transaction_id, order = %payment.order_id, amount_cents = left, "alipay payment on a cancelled order needs a refund through Alipay");
            return Err(Error::AlipayRefund);
        }
        let refund = Refund::parse(
            &payment.transaction_id,
            &payment.order_id,
            left,
            REFUND_REASON,
            stored_to_api(payment.user_id),
        )?;
        self.payments.refund(&refund).await?;
        tracing::warn!(transaction = %payment.transaction_id, order = %payment.order_id, amount_cents = left, "refunded a payment whose order was cancelled");
        Ok(())
    }

    /// Runs a round every `interval` in a background task until the server shuts down.
    pub fn spawn(self, interval: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let worker = Arc::new(self);
        spawn_periodic("payment reconciliation", interval, shutdown, move || {
            let worker = worker.clone();
            async move {
                match worker.run_once().await {
                    Ok(round) if !round.refunded.is_empty() => {
                        tracing::warn!(
                            refunded = round.refunded.len(),
                            "reconciliation refunded payments of cancelled orders"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "payment reconciliation failed"),
                }
            }
        })
    }
}
