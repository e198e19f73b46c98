//! Order's calls to other services, and how their answers map: product (`ReleaseStock`, when an
//! order is cancelled) and payment (`QueryOrderPayment`, before an expired Alipay order is
//! cancelled). Calls carry this service's token; both RPCs are internal.

use mall_common::client::Channel;
use mall_proto::payment::v1::QueryOrderPaymentReq;
use mall_proto::payment::v1::payment_service_client::PaymentServiceClient;
use mall_proto::product::v1::ReleaseStockReq;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_types::ids::stored_to_api;

use crate::error::Error;

/// A client for product.
pub type ProductClient = ProductCatalogServiceClient<Channel>;
/// A client for payment.
pub type PaymentClient = PaymentServiceClient<Channel>;

/// Gives a cancelled order's reserved stock back (the reservation id is the order id;
/// product's `ReleaseStock` is idempotent).
pub async fn release_stock(product: &ProductClient, order_id: &str) -> Result<(), Error> {
    product
        .clone()
        .release_stock(ReleaseStockReq {
            reservation_id: order_id.to_string(),
        })
        .await
        .map(drop)
        .map_err(Error::Product)
}

/// Payment's answer about an order: the transaction that paid it, or `None`.
pub async fn order_payment(
    payment: &PaymentClient,
    order_id: &str,
    user_id: i64,
) -> Result<Option<String>, Error> {
    let answer = payment
        .clone()
        .query_order_payment(QueryOrderPaymentReq {
            order_id: order_id.to_string(),
            user_id: stored_to_api(user_id),
        })
        .await
        .map_err(Error::Payment)?
        .into_inner();
    Ok(answer.paid.then_some(answer.transaction_id))
}
