//! Payment's use cases over all methods: charging (a card), refunding (recorded at once for a
//! card, handed to Alipay for an Alipay payment), voiding an abandoned order, and looking
//! payments up. The gRPC edge (`api.rs`) parses requests into domain types and calls these; the
//! method rooms (`card.rs`, `alipay/`) do what only their method needs.

use mall_types::{OrderId, TransactionId};

use crate::alipay::Alipay;
use crate::card::{Cards, Charge};
use crate::domain::{Decline, Payment, PaymentMethod, Refund};
use crate::error::Error;
use crate::store::refunds::{RefundStatus, StoredRefund};
use crate::store::{Ledger, Voided};

/// The payment use cases.
#[derive(Clone)]
pub struct Payments {
    ledger: Ledger,
    cards: Cards,
    alipay: Alipay,
}

impl Payments {
    /// Use cases over `ledger`, by card and by Alipay.
    pub fn new(ledger: Ledger, cards: Cards, alipay: Alipay) -> Self {
        Payments {
            ledger,
            cards,
            alipay,
        }
    }

    /// Alipay's use cases (pay links, notifications, trade queries).
    pub fn alipay(&self) -> &Alipay {
        &self.alipay
    }

    /// The ledger (for the reconciliation worker).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Approves and records a card charge (see [`Cards::charge`]).
    pub async fn charge(&self, charge: Charge, decline: Option<Decline>) -> Result<String, Error> {
        self.cards.charge(charge, decline).await
    }

    /// Refunds part or all of a payment; the refund's id. A card refund is recorded at once;
    /// an Alipay refund is recorded as pending (counting against the payment, so concurrent
    /// refunds can never exceed it), sent as `alipay.trade.refund` with the request id as
    /// `out_request_no`, and then marked done, or given back when Alipay refuses it. When
    /// Alipay's answer is lost the refund stays pending: a retry with the same
    /// `refund_request_id`, or the reconciliation worker, sends the same request again.
    pub async fn refund(&self, refund: &Refund) -> Result<String, Error> {
        let payment = self
            .ledger
            .get(&refund.transaction_id)
            .await?
            .ok_or_else(|| Error::PaymentNotFound(refund.transaction_id.to_string()))?;
        // The order and user must be the payment's, for a repeat too (its out_request_no is
        // only ever sent for this payment's trade).
        if payment.order_id != refund.order_id.as_str() || payment.user_id != refund.user_id.db() {
            return Err(Error::NotThisPayment);
        }
        if let Some(request) = &refund.request_id
            && let Some(earlier) = self
                .ledger
                .refund_by_request(refund.transaction_id.as_str(), request.as_str())
                .await?
        {
            return self.repeat_refund(refund, earlier).await;
        }
        let refund_id = uuid::Uuid::now_v7().to_string();
        let out_request_no = refund
            .request_id
            .as_ref()
            .map_or_else(|| refund_id.clone(), |r| r.as_str().to_string());
        let status = match payment.method {
            PaymentMethod::Alipay => RefundStatus::Pending,
            PaymentMethod::CreditCard => RefundStatus::Succeeded,
        };
        let recorded = self
            .ledger
            .refund(refund, &refund_id, &out_request_no, status)
            .await;
        match recorded {
            Ok(_) => {}
            // A concurrent request with the same request id won.
            Err(Error::Database(e)) if mall_common::store::is_unique_violation(&e) => {
                if let Some(earlier) = self
                    .ledger
                    .refund_by_request(refund.transaction_id.as_str(), &out_request_no)
                    .await?
                {
                    return self.repeat_refund(refund, earlier).await;
                }
                return Err(Error::Database(e));
            }
            Err(e) => return Err(e),
        }
        tracing::info!(
            transaction = %refund.transaction_id,
            refund = %refund_id,
            amount_cents = refund.amount_cents.get(),
            method = payment.method.as_str(),
            "refund recorded"
        );
        if payment.method == PaymentMethod::Alipay {
            let stored = StoredRefund {
                refund_id: refund_id.clone(),
                transaction_id: payment.transaction_id.clone(),
                amount_cents: refund.amount_cents.get(),
                reason: refund.reason.as_str().to_string(),
                out_request_no,
                status,
            };
            self.alipay.push_refund(&payment.order_id, &stored).await?;
        }
        Ok(refund_id)
    }

    /// A refund request seen before: the same answer (re-sending a pending Alipay refund), or
    /// a conflict when it asked for another amount.
    async fn repeat_refund(&self, refund: &Refund, earlier: StoredRefund) -> Result<String, Error> {
        if earlier.amount_cents != refund.amount_cents.get() {
            return Err(Error::RefundRequestConflict(earlier.out_request_no));
        }
        match earlier.status {
            RefundStatus::Succeeded => Ok(earlier.refund_id),
            RefundStatus::Failed => Err(Error::AlipayRefused(format!(
                "refund request {} was refused before",
                earlier.out_request_no
            ))),
            RefundStatus::Pending => {
                self.alipay
                    .push_refund(refund.order_id.as_str(), &earlier)
                    .await?;
                Ok(earlier.refund_id)
            }
        }
    }

    /// Voids an order checkout gave up on: no card charge for it is accepted from now on. If
    /// the order was charged first, its payment (the caller refunds or adopts it).
    pub async fn void(&self, order: &OrderId) -> Result<Voided, Error> {
        let voided = self.ledger.void(order).await?;
        match &voided {
            Voided::Voided => tracing::info!(order = %order, "order voided"),
            Voided::Charged(p) => {
                tracing::info!(order = %order, transaction = %p.transaction_id, "void found a charge")
            }
        }
        Ok(voided)
    }

    /// The payment of an order.
    pub async fn by_order(&self, order: &OrderId) -> Result<Payment, Error> {
        self.ledger
            .by_order(order)
            .await?
            .ok_or_else(|| Error::PaymentNotFound(format!("for order {order}")))
    }

    /// A payment by transaction id.
    pub async fn by_transaction(&self, id: TransactionId) -> Result<Payment, Error> {
        self.ledger
            .get(&id)
            .await?
            .ok_or_else(|| Error::PaymentNotFound(id.into_string()))
    }
}
