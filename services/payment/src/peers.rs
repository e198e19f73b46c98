//! Payment's calls to other services, and how their answers map: order (an order as order
//! tells it, `MarkOrderPaid`) and cart (`RemovePurchased`). Calls carry this service's token.

use mall_common::client::Channel;
use mall_proto::cart::v1 as cart_pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::order::v1 as order_pb;
use mall_proto::order::v1::order_service_client::OrderServiceClient;
use mall_types::ids::stored_to_api;
use tonic::{Code, Status};

use crate::domain::Payment;
use crate::error::Error;

/// A client for order.
pub type OrderClient = OrderServiceClient<Channel>;
/// A client for cart.
pub type CartClient = CartServiceClient<Channel>;

/// The services payment settles with.
#[derive(Clone)]
pub struct Peers {
    /// Order: the order's status and total, `MarkOrderPaid`.
    pub order: OrderClient,
    /// Cart: `RemovePurchased` for Alipay orders.
    pub cart: CartClient,
}

fn order_failed(call: &str, status: &Status) -> Error {
    Error::Order(format!("{call}: {:?} {}", status.code(), status.message()))
}

impl Peers {
    /// An order as the order service tells it to this service (`None`: order does not know it,
    /// or it is another user's).
    pub async fn order(
        &self,
        user_id: u64,
        order_id: &str,
    ) -> Result<Option<order_pb::Order>, Error> {
        let req = order_pb::GetOrderReq {
            user_id,
            order_id: order_id.to_string(),
        };
        match self.order.clone().get_order(req).await {
            Ok(resp) => Ok(resp.into_inner().order),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(order_failed("GetOrder", &status)),
        }
    }

    /// Marks `payment`'s order PAID by it (a no-op when repeated).
    pub async fn mark_order_paid(&self, payment: &Payment) -> Result<(), Error> {
        let req = order_pb::MarkOrderPaidReq {
            user_id: stored_to_api(payment.user_id),
            order_id: payment.order_id.clone(),
            transaction_id: payment.transaction_id.clone(),
        };
        self.order
            .clone()
            .mark_order_paid(req)
            .await
            .map(drop)
            .map_err(|s| order_failed("MarkOrderPaid", &s))
    }

    /// Takes what `order` bought out of its buyer's cart (once per order at cart).
    pub async fn remove_purchased(
        &self,
        payment: &Payment,
        order: &order_pb::Order,
    ) -> Result<(), Status> {
        let req = cart_pb::RemovePurchasedReq {
            user_id: stored_to_api(payment.user_id),
            order_id: payment.order_id.clone(),
            items: order.order_items.iter().filter_map(|i| i.item).collect(),
        };
        self.cart.clone().remove_purchased(req).await.map(drop)
    }
}
