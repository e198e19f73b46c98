//! The saga's remote steps, one method each, every call with its own deadline
//! (`tonic::Request::set_timeout`, enforced by `common::client` as well). Production uses the
//! platform's clients; tests add faults through [`Hooks`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use mall_common::client::{Channel, Clients};
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

use crate::domain::{Card, Contact, PricedLine};

/// Test-only fault injection. Production builds use `Hooks::default()`, which injects nothing.
#[derive(Clone, Default, Debug)]
pub struct Hooks {
    /// The next this-many `MarkOrderPaid` calls fail with `UNAVAILABLE` without being sent.
    pub fail_mark_paid: Arc<AtomicU32>,
    /// The next this-many `EmptyCart` calls fail with `UNAVAILABLE` without being sent.
    pub fail_empty_cart: Arc<AtomicU32>,
    /// The next this-many `MarkOrderPaid` calls are sent, but their answer is lost: the saga
    /// sees `DEADLINE_EXCEEDED` whatever the order service did.
    pub lose_mark_paid_answers: Arc<AtomicU32>,
    /// The next this-many `CancelOrder` calls fail with `UNAVAILABLE` without being sent.
    pub fail_cancel_order: Arc<AtomicU32>,
    /// When set, a checkout stops right after recording its charge, as if the process had
    /// been killed: no further writes, the lease is left to expire.
    pub crash_after_charge: Arc<AtomicBool>,
    /// When set, a checkout stops right after `Charge` answered OK but before the transaction
    /// id is recorded (the saga is left at step `charging`), as if the process had been killed:
    /// no further writes, the lease is left to expire.
    pub crash_before_recording_charge: Arc<AtomicBool>,
}

/// Takes one injected failure from `counter`, if any are left.
fn inject(counter: &AtomicU32, what: &str) -> Result<(), Status> {
    let took = counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if took {
        Err(Status::unavailable(format!("{what}: injected fault")))
    } else {
        Ok(())
    }
}

impl Hooks {
    /// Whether the simulated crash after the charge is armed.
    pub fn crash_after_charge(&self) -> bool {
        self.crash_after_charge.load(Ordering::SeqCst)
    }

    /// Whether the simulated crash between the charge and recording it is armed.
    pub fn crash_before_recording_charge(&self) -> bool {
        self.crash_before_recording_charge.load(Ordering::SeqCst)
    }
}

/// An order's status as the saga needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderState {
    /// Still PENDING.
    Pending,
    /// PAID by this transaction.
    Paid(String),
    /// CANCELLED.
    Cancelled,
    /// Anything else (COMPLETED, REFUNDED, unknown).
    Other(i32),
}

/// A recorded payment: what the saga reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentInfo {
    /// The transaction id.
    pub transaction_id: String,
    /// Charged amount.
    pub amount_cents: i64,
    /// Already refunded.
    pub refunded_cents: i64,
}

/// Clients for cart, product, order and payment, calling as the checkout service.
#[derive(Clone)]
pub struct Downstream {
    clients: Clients,
    hooks: Hooks,
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

impl Downstream {
    /// Calls through `clients`, with `hooks` (default: none).
    pub fn new(clients: Clients, hooks: Hooks) -> Self {
        Downstream { clients, hooks }
    }

    /// The fault-injection hooks.
    pub fn hooks(&self) -> &Hooks {
        &self.hooks
    }

    fn cart(&self) -> Result<CartServiceClient<Channel>, Status> {
        self.clients.client("cart")
    }
    fn product(&self) -> Result<ProductCatalogServiceClient<Channel>, Status> {
        self.clients.client("product")
    }
    fn order(&self) -> Result<OrderServiceClient<Channel>, Status> {
        self.clients.client("order")
    }
    fn payment(&self) -> Result<PaymentServiceClient<Channel>, Status> {
        self.clients.client("payment")
    }

    /// The cart's lines `(product_id, quantity)` in the order first added.
    pub async fn get_cart(
        &self,
        user_id: u64,
        timeout: Duration,
    ) -> Result<Vec<(u64, i32)>, Status> {
        let resp = self
            .cart()?
            .get_cart(with_timeout(cart_pb::GetCartReq { user_id }, timeout))
            .await?
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

    /// Catalog prices of `ids` in one `BatchGetProducts`; missing or deleted ids are absent.
    pub async fn prices(
        &self,
        ids: Vec<u64>,
        timeout: Duration,
    ) -> Result<HashMap<u64, i64>, Status> {
        let resp = self
            .product()?
            .batch_get_products(with_timeout(
                product_pb::BatchGetProductsReq { ids },
                timeout,
            ))
            .await?
            .into_inner();
        Ok(resp
            .products
            .into_iter()
            .map(|p| (p.id, p.price_cents))
            .collect())
    }

    /// Places the PENDING order; `saga_id` is its idempotency key, so a repeat names the same
    /// order.
    pub async fn place_order(
        &self,
        saga_id: &str,
        user_id: u64,
        contact: &Contact,
        lines: &[PricedLine],
        timeout: Duration,
    ) -> Result<String, Status> {
        let req = order_pb::PlaceOrderReq {
            user_id,
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
        };
        let resp = self
            .order()?
            .place_order(with_timeout(req, timeout))
            .await?
            .into_inner();
        resp.order
            .map(|o| o.order_id)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Status::internal("order service returned no order id"))
    }

    /// Reserves the lines' stock under the order id.
    pub async fn reserve_stock(
        &self,
        order_id: &str,
        lines: &[PricedLine],
        timeout: Duration,
    ) -> Result<(), Status> {
        let req = product_pb::ReserveStockReq {
            reservation_id: order_id.to_string(),
            items: cart_items(lines),
        };
        self.product()?
            .reserve_stock(with_timeout(req, timeout))
            .await?;
        Ok(())
    }

    /// Gives the order's reservation back (unknown or released: no-op).
    pub async fn release_stock(&self, order_id: &str, timeout: Duration) -> Result<(), Status> {
        let req = product_pb::ReleaseStockReq {
            reservation_id: order_id.to_string(),
        };
        self.product()?
            .release_stock(with_timeout(req, timeout))
            .await?;
        Ok(())
    }

    /// Charges the card; returns the transaction id.
    pub async fn charge(
        &self,
        order_id: &str,
        user_id: u64,
        amount_cents: i64,
        card: &Card,
        timeout: Duration,
    ) -> Result<String, Status> {
        let req = payment_pb::ChargeReq {
            amount_cents,
            credit_card: Some(common_pb::CreditCardInfo {
                credit_card_number: card.number.clone(),
                credit_card_cvv: card.cvv.clone(),
                credit_card_expiration_year: card.year,
                credit_card_expiration_month: card.month,
            }),
            payment_method: "credit_card".into(),
            order_id: order_id.to_string(),
            user_id,
        };
        Ok(self
            .payment()?
            .charge(with_timeout(req, timeout))
            .await?
            .into_inner()
            .transaction_id)
    }

    /// Refunds `amount_cents` of the transaction.
    pub async fn refund(
        &self,
        transaction_id: &str,
        order_id: &str,
        user_id: u64,
        amount_cents: i64,
        reason: &str,
        timeout: Duration,
    ) -> Result<String, Status> {
        let req = payment_pb::RefundReq {
            transaction_id: transaction_id.to_string(),
            order_id: order_id.to_string(),
            amount_cents,
            reason: reason.to_string(),
            user_id,
        };
        Ok(self
            .payment()?
            .refund(with_timeout(req, timeout))
            .await?
            .into_inner()
            .refund_id)
    }

    /// The payment `transaction_id`.
    pub async fn get_payment(
        &self,
        transaction_id: &str,
        timeout: Duration,
    ) -> Result<PaymentInfo, Status> {
        let req = payment_pb::GetPaymentReq {
            transaction_id: transaction_id.to_string(),
            order_id: String::new(),
        };
        let p = self
            .payment()?
            .get_payment(with_timeout(req, timeout))
            .await?
            .into_inner();
        Ok(PaymentInfo {
            transaction_id: p.transaction_id,
            amount_cents: p.amount_cents,
            refunded_cents: p.refunded_cents,
        })
    }

    /// The successful payment of `order_id`, if there is one (`GetPaymentReq.order_id`): how
    /// a saga that stopped during `Charge` (outcome unknown) learns whether the card was
    /// charged. `NOT_FOUND` means it was not.
    pub async fn payment_of_order(
        &self,
        order_id: &str,
        timeout: Duration,
    ) -> Result<Option<PaymentInfo>, Status> {
        let req = payment_pb::GetPaymentReq {
            transaction_id: String::new(),
            order_id: order_id.to_string(),
        };
        match self
            .payment()?
            .get_payment(with_timeout(req, timeout))
            .await
        {
            Ok(p) => {
                let p = p.into_inner();
                Ok(Some(PaymentInfo {
                    transaction_id: p.transaction_id,
                    amount_cents: p.amount_cents,
                    refunded_cents: p.refunded_cents,
                }))
            }
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(s),
        }
    }

    /// PENDING→PAID by `transaction_id`.
    pub async fn mark_paid(
        &self,
        user_id: u64,
        order_id: &str,
        transaction_id: &str,
        timeout: Duration,
    ) -> Result<(), Status> {
        inject(&self.hooks.fail_mark_paid, "MarkOrderPaid")?;
        let req = order_pb::MarkOrderPaidReq {
            user_id,
            order_id: order_id.to_string(),
            transaction_id: transaction_id.to_string(),
        };
        let answer = self
            .order()?
            .mark_order_paid(with_timeout(req, timeout))
            .await;
        if inject(&self.hooks.lose_mark_paid_answers, "MarkOrderPaid").is_err() {
            return Err(Status::deadline_exceeded(
                "MarkOrderPaid: injected lost answer",
            ));
        }
        answer?;
        Ok(())
    }

    /// The order's status.
    pub async fn order_state(
        &self,
        user_id: u64,
        order_id: &str,
        timeout: Duration,
    ) -> Result<OrderState, Status> {
        let req = order_pb::GetOrderReq {
            user_id,
            order_id: order_id.to_string(),
        };
        let order = self
            .order()?
            .get_order(with_timeout(req, timeout))
            .await?
            .into_inner()
            .order
            .ok_or_else(|| Status::internal("order service returned no order"))?;
        Ok(match order_pb::OrderStatus::try_from(order.status) {
            Ok(order_pb::OrderStatus::Pending) => OrderState::Pending,
            Ok(order_pb::OrderStatus::Paid) => OrderState::Paid(order.transaction_id),
            Ok(order_pb::OrderStatus::Cancelled) => OrderState::Cancelled,
            _ => OrderState::Other(order.status),
        })
    }

    /// PENDING→CANCELLED (order also releases the reservation).
    pub async fn cancel_order(
        &self,
        user_id: u64,
        order_id: &str,
        reason: &str,
        timeout: Duration,
    ) -> Result<(), Status> {
        inject(&self.hooks.fail_cancel_order, "CancelOrder")?;
        let req = order_pb::CancelOrderReq {
            user_id,
            order_id: order_id.to_string(),
            reason: reason.to_string(),
        };
        self.order()?
            .cancel_order(with_timeout(req, timeout))
            .await?;
        Ok(())
    }

    /// Empties the cart (idempotent).
    pub async fn empty_cart(&self, user_id: u64, timeout: Duration) -> Result<(), Status> {
        inject(&self.hooks.fail_empty_cart, "EmptyCart")?;
        self.cart()?
            .empty_cart(with_timeout(cart_pb::EmptyCartReq { user_id }, timeout))
            .await?;
        Ok(())
    }
}
