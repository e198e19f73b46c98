//! [`Payments`]: the charges payment recorded, read back after a purchase.

use mall_common::client::Channel;
use mall_proto::payment::v1 as pb;
use mall_proto::payment::v1::payment_service_client::PaymentServiceClient;
use tonic::Status;

use crate::TestFleet;

/// A payment service client on the fleet's client stack.
pub type PaymentClient = PaymentServiceClient<Channel>;

/// The payments of a fleet running `payment`, read as a service (`GetPayment` is internal).
#[derive(Clone)]
pub struct Payments {
    client: PaymentClient,
}

impl TestFleet {
    /// The payments of this fleet (it must run `payment`).
    pub fn payments(&self) -> Payments {
        Payments {
            client: self.client("payment"),
        }
    }
}

impl Payments {
    /// The charge of order `order_id` (`NOT_FOUND` when it was never charged).
    pub async fn of_order(&self, order_id: &str) -> Result<pb::Payment, Status> {
        self.find(pb::GetPaymentReq {
            transaction_id: String::new(),
            order_id: order_id.into(),
        })
        .await
    }

    /// The charge with transaction id `transaction_id`.
    pub async fn get(&self, transaction_id: &str) -> Result<pb::Payment, Status> {
        self.find(pb::GetPaymentReq {
            transaction_id: transaction_id.into(),
            order_id: String::new(),
        })
        .await
    }

    async fn find(&self, req: pb::GetPaymentReq) -> Result<pb::Payment, Status> {
        self.client
            .clone()
            .get_payment(req)
            .await
            .map(|r| r.into_inner())
    }
}
