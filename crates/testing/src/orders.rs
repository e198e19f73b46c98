//! [`Orders`]: one user's orders, read back after a purchase.

use mall_common::client::Channel;
use mall_proto::order::v1 as pb;
use mall_proto::order::v1::order_service_client::OrderServiceClient;

use crate::TestFleet;

/// An order service client on the fleet's client stack.
pub type OrderClient = OrderServiceClient<Channel>;

/// The orders of `user_id`, read with that user's own token.
#[derive(Clone)]
pub struct Orders {
    client: OrderClient,
    user_id: u64,
}

impl TestFleet {
    /// The orders of `user_id`, read as that user.
    pub fn orders(&self, user_id: u64) -> Orders {
        Orders {
            client: self.client_as("order", &self.user_token(user_id)),
            user_id,
        }
    }
}

/// The status of `order`; panics on a value the API does not define.
pub fn order_status(order: &pb::Order) -> pb::OrderStatus {
    pb::OrderStatus::try_from(order.status).expect("known status")
}

impl Orders {
    /// Every order of the user, newest first; panics if they do not fit one page of 100.
    pub async fn list(&self) -> Vec<pb::Order> {
        let user_id = self.user_id;
        let resp = self
            .client
            .clone()
            .list_order(pb::ListOrderReq {
                user_id,
                page: 1,
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("list orders of {user_id}: {e}"))
            .into_inner();
        assert_eq!(
            resp.total,
            resp.orders.len() as u64,
            "user {user_id}: all orders fit one page"
        );
        resp.orders
    }

    /// Order `order_id` of the user; panics if it cannot be read.
    pub async fn get(&self, order_id: &str) -> pb::Order {
        self.client
            .clone()
            .get_order(pb::GetOrderReq {
                user_id: self.user_id,
                order_id: order_id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("get order {order_id}: {e}"))
            .into_inner()
            .order
            .expect("GetOrder answers with an order")
    }
}
