//! Settling a recorded payment with the rest of the fleet: every successful payment must end on
//! a PAID order or be refunded, and an Alipay order's purchased lines leave the buyer's cart.
//!
//! Card payments are checkout's: checkout marks their order paid and cleans the cart; payment
//! only refunds one whose order ended otherwise. Alipay payments arrive after checkout is done
//! (the buyer pays on Alipay's page), so payment drives them: the order still PENDING is marked
//! PAID by this payment (`MarkOrderPaid`, a no-op when repeated), then the purchased lines are
//! removed from the cart (`RemovePurchased`, once per order); an order CANCELLED meanwhile
//! gets the payment refunded in full through Alipay. Each step is idempotent, so the
//! reconciliation worker repeats [`Payments::settle`] until it says settled (a crash between
//! recording a payment and marking its order paid is caught up by the next round).

use mall_common::client::Channel;
use mall_proto::cart::v1 as cart_pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::order::v1 as order_pb;
use mall_proto::order::v1::order_service_client::OrderServiceClient;
use mall_types::ids::stored_to_api;
use tonic::Code;

use crate::app::Payments;
use crate::domain::{Method, Payment, Refund};
use crate::error::Error;

/// A client for order; calls carry this service's token.
pub type OrderClient = OrderServiceClient<Channel>;
/// A client for cart; calls carry this service's token.
pub type CartClient = CartServiceClient<Channel>;

/// The reason recorded on the refunds reconciliation makes.
pub const REFUND_REASON: &str = "order was cancelled: payment reconciled";

/// The services payment settles with.
#[derive(Clone)]
pub struct Peers {
    /// Order: the order's status and total, `MarkOrderPaid`.
    pub order: OrderClient,
    /// Cart: `RemovePurchased` for Alipay orders.
    pub cart: CartClient,
}

/// What settling a payment came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Its order is PAID by it (and, for Alipay, the cart is cleaned), or it is fully refunded.
    Settled,
    /// Its order ended without it: it was refunded now.
    Refunded,
    /// Not decided yet (order PENDING for a card payment) or a step failed: try again later.
    Later,
}

/// An order as the order service tells it to this service.
pub(crate) async fn get_order(
    order: &OrderClient,
    user_id: u64,
    order_id: &str,
) -> Result<Option<order_pb::Order>, Error> {
    let req = order_pb::GetOrderReq {
        user_id,
        order_id: order_id.to_string(),
    };
    match order.clone().get_order(req).await {
        Ok(resp) => Ok(resp.into_inner().order),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(Error::Order(format!(
            "GetOrder: {:?} {}",
            status.code(),
            status.message()
        ))),
    }
}

impl Payments {
    /// Takes `payment` one step towards settled (see the module docs).
    pub async fn settle(&self, payment: &Payment) -> Settle {
        if payment.refunded_cents >= payment.amount_cents {
            return Settle::Settled;
        }
        let user = stored_to_api(payment.user_id);
        let order = match get_order(&self.peers().order, user, &payment.order_id).await {
            Ok(Some(order)) => order,
            Ok(None) => {
                tracing::warn!(transaction = %payment.transaction_id, order = %payment.order_id, "payment for an order that order does not know");
                return Settle::Later;
            }
            Err(e) => {
                tracing::debug!(order = %payment.order_id, error = %e, "cannot ask order; will retry");
                return Settle::Later;
            }
        };
        use order_pb::OrderStatus as S;
        match S::try_from(order.status) {
            Ok(S::Pending) if payment.method == Method::Alipay => {
                if let Err(e) = self.mark_order_paid(payment).await {
                    tracing::warn!(order = %payment.order_id, transaction = %payment.transaction_id, error = %e, "MarkOrderPaid failed; will retry");
                    return Settle::Later;
                }
                tracing::info!(order = %payment.order_id, transaction = %payment.transaction_id, "alipay order paid");
                self.clean_cart(payment, &order).await
            }
            Ok(S::Pending) | Ok(S::Unspecified) | Err(_) => Settle::Later,
            Ok(S::Paid | S::Completed | S::Refunded)
                if order.transaction_id == payment.transaction_id =>
            {
                if payment.method == Method::Alipay {
                    self.clean_cart(payment, &order).await
                } else {
                    Settle::Settled
                }
            }
            Ok(S::Cancelled) => self.refund_rest(payment).await,
            Ok(S::Paid | S::Completed | S::Refunded) => {
                tracing::error!(transaction = %payment.transaction_id, order = %payment.order_id, paid_by = %order.transaction_id, "order was paid by another transaction");
                self.refund_rest(payment).await
            }
        }
    }

    async fn mark_order_paid(&self, payment: &Payment) -> Result<(), Error> {
        let req = order_pb::MarkOrderPaidReq {
            user_id: stored_to_api(payment.user_id),
            order_id: payment.order_id.clone(),
            transaction_id: payment.transaction_id.clone(),
        };
        self.peers()
            .order
            .clone()
            .mark_order_paid(req)
            .await
            .map(drop)
            .map_err(|s| Error::Order(format!("MarkOrderPaid: {:?} {}", s.code(), s.message())))
    }

    /// Takes what `order` bought out of its buyer's cart (once per order at cart).
    async fn clean_cart(&self, payment: &Payment, order: &order_pb::Order) -> Settle {
        let req = cart_pb::RemovePurchasedReq {
            user_id: stored_to_api(payment.user_id),
            order_id: payment.order_id.clone(),
            items: order.order_items.iter().filter_map(|i| i.item).collect(),
        };
        match self.peers().cart.clone().remove_purchased(req).await {
            Ok(_) => Settle::Settled,
            Err(status) => {
                tracing::warn!(order = %payment.order_id, code = ?status.code(), "RemovePurchased failed; will retry");
                Settle::Later
            }
        }
    }

    /// Refunds what is left of `payment` (through Alipay for an Alipay payment), under a
    /// request id derived from the payment, so a retry never refunds twice.
    async fn refund_rest(&self, payment: &Payment) -> Settle {
        let left = payment.amount_cents.saturating_sub(payment.refunded_cents);
        let request_id = format!("reconcile-{}", payment.transaction_id);
        let request_id: String = request_id.chars().take(64).collect();
        let refund = match Refund::parse_request(
            &payment.transaction_id,
            &payment.order_id,
            left,
            REFUND_REASON,
            stored_to_api(payment.user_id),
            &request_id,
        ) {
            Ok(refund) => refund,
            Err(e) => {
                tracing::error!(transaction = %payment.transaction_id, error = %e, "cannot refund a stored payment");
                return Settle::Later;
            }
        };
        match self.refund(&refund).await {
            Ok(_) => {
                tracing::warn!(transaction = %payment.transaction_id, order = %payment.order_id, amount_cents = left, method = payment.method.as_str(), "refunded a payment whose order was cancelled");
                Settle::Refunded
            }
            Err(e) => {
                tracing::warn!(transaction = %payment.transaction_id, order = %payment.order_id, error = %e, "reconciliation refund failed; will retry");
                Settle::Later
            }
        }
    }
}
