//! The production [`Downstream`]: the fleet's gRPC services through the platform's clients,
//! every call with its own deadline (`tonic::Request::set_timeout`, enforced by
//! `common::client` as well).

use std::collections::HashMap;
use std::time::Duration;

use mall_common::client::{Channel, Clients, FromChannel};
use mall_proto::cart::v1 as cart_pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::common::v1 as common_pb;
use mall_proto::order::v1 as order_pb;
use mall_proto::order::v1::order_service_client::OrderServiceClient;
use mall_proto::payment::v1 as payment_pb;
use mall_proto::payment::v1::payment_service_client::PaymentServiceClient;
use mall_proto::product::v1 as product_pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use tonic::{Request, Status};

use mall_types::{Cents, OrderId, PaymentMethod, ServiceName, TransactionId, UserId};

use super::{Downstream, OrderState, PaymentInfo, Settlement, StepError};
use crate::domain::{Card, Contact, PricedLine};

const CART: ServiceName = ServiceName::Cart;
const PRODUCT: ServiceName = ServiceName::Product;
const ORDER: ServiceName = ServiceName::Order;
const PAYMENT: ServiceName = ServiceName::Payment;

/// Calls cart, product, order and payment through `clients`, as the checkout service.
#[derive(Clone)]
pub struct GrpcDownstream {
    clients: Clients,
}

impl GrpcDownstream {
    /// Calls through `clients`.
    pub fn new(clients: Clients) -> Self {
        GrpcDownstream { clients }
    }

    fn client<T: FromChannel>(&self, service: ServiceName) -> Result<T, StepError> {
        self.clients.client(service).map_err(failed(service))
    }
}

/// Classifies a failed call to `service` (see [`StepError::from_status`]).
fn failed(service: ServiceName) -> impl Fn(Status) -> StepError {
    move |status| StepError::from_status(service.as_str(), status)
}

fn with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

fn common_address(contact: &Contact) -> common_pb::Address {
    let a = &contact.address;
    common_pb::Address {
        street_address: a.street_address.clone(),
        city: a.city.clone(),
        state: a.state.clone(),
        country: a.country.clone(),
        zip_code: a.zip_code.clone(),
    }
}

fn cart_items(lines: &[PricedLine]) -> Vec<common_pb::CartItem> {
    lines
        .iter()
        .map(|l| common_pb::CartItem {
            product_id: l.product_id,
            quantity: l.quantity,
        })
        .collect()
}

fn payment_info(p: payment_pb::Payment) -> Result<PaymentInfo, StepError> {
    let unexpected = |what: String| StepError::Unexpected {
        service: PAYMENT.as_str(),
        what,
    };
    Ok(PaymentInfo {
        user_id: UserId::parse(p.user_id, "user_id").map_err(|e| unexpected(e.to_string()))?,
        method: PaymentMethod::from_stored(&p.payment_method)
            .ok_or_else(|| unexpected(format!("payment method {:?}", p.payment_method)))?,
        transaction_id: TransactionId::parse(&p.transaction_id, "transaction_id")
            .map_err(|e| unexpected(e.to_string()))?,
        amount_cents: Cents::new(p.amount_cents)
            .ok_or_else(|| unexpected(format!("amount {}", p.amount_cents)))?,
        refunded_cents: Cents::new(p.refunded_cents)
            .ok_or_else(|| unexpected(format!("refunded {}", p.refunded_cents)))?,
    })
}

fn place_order_req(
    saga_id: &str,
    user_id: UserId,
    contact: &Contact,
    lines: &[PricedLine],
    method: PaymentMethod,
) -> order_pb::PlaceOrderReq {
    order_pb::PlaceOrderReq {
        user_id: user_id.get(),
        user_currency: String::new(),
        address: Some(common_address(contact)),
        email: contact.email.clone(),
        order_items: lines
            .iter()
            .map(|l| order_pb::OrderItem {
                item: Some(common_pb::CartItem {
                    product_id: l.product_id,
                    quantity: l.quantity,
                }),
                cost_cents: l.cost_cents,
            })
            .collect(),
        idempotency_key: saga_id.to_string(),
        payment_method: method.as_str().to_string(),
    }
}

#[async_trait::async_trait]
impl Downstream for GrpcDownstream {
    async fn get_cart(
        &self,
        user_id: UserId,
        timeout: Duration,
    ) -> Result<Vec<(u64, i32)>, StepError> {
        let resp = self
            .client::<CartServiceClient<Channel>>(CART)?
            .get_cart(with_timeout(
                cart_pb::GetCartReq {
                    user_id: user_id.get(),
                },
                timeout,
            ))
            .await
            .map_err(failed(CART))?
            .into_inner();
        Ok(resp
            .cart
            .map(|c| {
                c.items
                    .into_iter()
                    .map(|i| (i.product_id, i.quantity))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn prices(
        &self,
        ids: Vec<u64>,
        timeout: Duration,
    ) -> Result<HashMap<u64, i64>, StepError> {
        let req = product_pb::BatchGetProductsReq { ids };
        let resp = self
            .client::<ProductCatalogServiceClient<Channel>>(PRODUCT)?
            .batch_get_products(with_timeout(req, timeout))
            .await
            .map_err(failed(PRODUCT))?
            .into_inner();
        Ok(resp
            .products
            .into_iter()
            .map(|p| (p.id, p.price_cents))
            .collect())
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
        let req = place_order_req(saga_id, user_id, contact, lines, method);
        let resp = self
            .client::<OrderServiceClient<Channel>>(ORDER)?
            .place_order(with_timeout(req, timeout))
            .await
            .map_err(failed(ORDER))?
            .into_inner();
        let id = resp.order.map(|o| o.order_id).unwrap_or_default();
        OrderId::parse(&id, "order_id").map_err(|e| StepError::Unexpected {
            service: ORDER.as_str(),
            what: format!("PlaceOrder returned no usable order id: {e}"),
        })
    }

    async fn alipay_pay_link(
        &self,
        order_id: &OrderId,
        user_id: UserId,
        amount_cents: Cents,
        return_url: &str,
        timeout: Duration,
    ) -> Result<String, StepError> {
        let req = payment_pb::AlipayChargeReq {
            order_id: order_id.to_string(),
            user_id: user_id.get(),
            amount_cents: amount_cents.get(),
            return_url: return_url.to_string(),
        };
        let url = self
            .client::<PaymentServiceClient<Channel>>(PAYMENT)?
            .alipay_charge(with_timeout(req, timeout))
            .await
            .map_err(failed(PAYMENT))?
            .into_inner()
            .pay_url;
        if url.is_empty() {
            return Err(StepError::Unexpected {
                service: PAYMENT.as_str(),
                what: "AlipayCharge returned no pay_url".into(),
            });
        }
        Ok(url)
    }

    async fn reserve_stock(
        &self,
        order_id: &OrderId,
        lines: &[PricedLine],
        timeout: Duration,
    ) -> Result<(), StepError> {
        let req = product_pb::ReserveStockReq {
            reservation_id: order_id.to_string(),
            items: cart_items(lines),
        };
        self.client::<ProductCatalogServiceClient<Channel>>(PRODUCT)?
            .reserve_stock(with_timeout(req, timeout))
            .await
            .map_err(failed(PRODUCT))?;
        Ok(())
    }

    async fn release_stock(&self, order_id: &OrderId, timeout: Duration) -> Result<(), StepError> {
        let req = product_pb::ReleaseStockReq {
            reservation_id: order_id.to_string(),
        };
        self.client::<ProductCatalogServiceClient<Channel>>(PRODUCT)?
            .release_stock(with_timeout(req, timeout))
            .await
            .map_err(failed(PRODUCT))?;
        Ok(())
    }

    async fn charge(
        &self,
        order_id: &OrderId,
        user_id: UserId,
        amount_cents: Cents,
        card: &Card,
        timeout: Duration,
    ) -> Result<TransactionId, StepError> {
        let req = payment_pb::ChargeReq {
            amount_cents: amount_cents.get(),
            credit_card: Some(common_pb::CreditCardInfo {
                credit_card_number: card.number.clone(),
                credit_card_cvv: card.cvv.clone(),
                credit_card_expiration_year: card.year,
                credit_card_expiration_month: card.month,
            }),
            payment_method: PaymentMethod::CreditCard.as_str().into(),
            order_id: order_id.to_string(),
            user_id: user_id.get(),
        };
        let id = self
            .client::<PaymentServiceClient<Channel>>(PAYMENT)?
            .charge(with_timeout(req, timeout))
            .await
            .map_err(failed(PAYMENT))?
            .into_inner()
            .transaction_id;
        TransactionId::parse(&id, "transaction_id").map_err(|e| StepError::Unexpected {
            service: PAYMENT.as_str(),
            what: format!("Charge returned no usable transaction id: {e}"),
        })
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
        let req = payment_pb::RefundReq {
            transaction_id: transaction_id.to_string(),
            order_id: order_id.to_string(),
            amount_cents: amount_cents.get(),
            reason: reason.to_string(),
            user_id: user_id.get(),
            refund_request_id: String::new(),
        };
        Ok(self
            .client::<PaymentServiceClient<Channel>>(PAYMENT)?
            .refund(with_timeout(req, timeout))
            .await
            .map_err(failed(PAYMENT))?
            .into_inner()
            .refund_id)
    }

    async fn get_payment(
        &self,
        transaction_id: &TransactionId,
        timeout: Duration,
    ) -> Result<PaymentInfo, StepError> {
        let req = payment_pb::GetPaymentReq {
            transaction_id: transaction_id.to_string(),
            order_id: String::new(),
        };
        let payment = self
            .client::<PaymentServiceClient<Channel>>(PAYMENT)?
            .get_payment(with_timeout(req, timeout))
            .await
            .map_err(failed(PAYMENT))?
            .into_inner();
        payment_info(payment)
    }

    async fn void_order(
        &self,
        order_id: &OrderId,
        timeout: Duration,
    ) -> Result<Settlement, StepError> {
        let req = payment_pb::VoidOrderReq {
            order_id: order_id.to_string(),
        };
        let answer = self
            .client::<PaymentServiceClient<Channel>>(PAYMENT)?
            .void_order(with_timeout(req, timeout))
            .await
            .map_err(failed(PAYMENT))?
            .into_inner();
        match (answer.voided, answer.payment) {
            (true, _) => Ok(Settlement::Voided),
            (false, Some(payment)) => Ok(Settlement::Charged(payment_info(payment)?)),
            (false, None) => Err(StepError::Unexpected {
                service: PAYMENT.as_str(),
                what: "VoidOrder answered neither voided nor a payment".into(),
            }),
        }
    }

    async fn mark_paid(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        transaction_id: &TransactionId,
        timeout: Duration,
    ) -> Result<(), StepError> {
        let req = order_pb::MarkOrderPaidReq {
            user_id: user_id.get(),
            order_id: order_id.to_string(),
            transaction_id: transaction_id.to_string(),
        };
        self.client::<OrderServiceClient<Channel>>(ORDER)?
            .mark_order_paid(with_timeout(req, timeout))
            .await
            .map_err(failed(ORDER))?;
        Ok(())
    }

    async fn order_state(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        timeout: Duration,
    ) -> Result<OrderState, StepError> {
        let req = order_pb::GetOrderReq {
            user_id: user_id.get(),
            order_id: order_id.to_string(),
        };
        let order = self
            .client::<OrderServiceClient<Channel>>(ORDER)?
            .get_order(with_timeout(req, timeout))
            .await
            .map_err(failed(ORDER))?
            .into_inner()
            .order
            .ok_or_else(|| StepError::Unexpected {
                service: ORDER.as_str(),
                what: "GetOrder returned no order".into(),
            })?;
        Ok(match order_pb::OrderStatus::try_from(order.status) {
            Ok(order_pb::OrderStatus::Pending) => OrderState::Pending,
            Ok(order_pb::OrderStatus::Paid) => OrderState::Paid(
                TransactionId::parse(&order.transaction_id, "transaction_id").map_err(|e| {
                    StepError::Unexpected {
                        service: ORDER.as_str(),
                        what: format!("a PAID order without a usable transaction id: {e}"),
                    }
                })?,
            ),
            Ok(order_pb::OrderStatus::Cancelled) => OrderState::Cancelled,
            _ => OrderState::Other(order.status),
        })
    }

    async fn cancel_order(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        reason: &str,
        timeout: Duration,
    ) -> Result<(), StepError> {
        let req = order_pb::CancelOrderReq {
            user_id: user_id.get(),
            order_id: order_id.to_string(),
            reason: reason.to_string(),
        };
        self.client::<OrderServiceClient<Channel>>(ORDER)?
            .cancel_order(with_timeout(req, timeout))
            .await
            .map_err(failed(ORDER))?;
        Ok(())
    }

    async fn remove_purchased(
        &self,
        user_id: UserId,
        order_id: &OrderId,
        lines: &[PricedLine],
        timeout: Duration,
    ) -> Result<(), StepError> {
        let req = cart_pb::RemovePurchasedReq {
            user_id: user_id.get(),
            order_id: order_id.to_string(),
            items: cart_items(lines),
        };
        self.client::<CartServiceClient<Channel>>(CART)?
            .remove_purchased(with_timeout(req, timeout))
            .await
            .map_err(failed(CART))?;
        Ok(())
    }
}
