//! The gRPC edge of orders: parse the request into domain types, check whose orders the caller
//! may see, call the store, map errors to statuses. Access rules are in [`ACCESS`] and are
//! enforced by the server before any handler runs.
//!
//! The user RPCs look orders up by (order id, user id): another user's order is `NOT_FOUND`,
//! exactly like one that does not exist, so order ids cannot be probed.

use mall_common::auth;
use mall_common::auth::{Access, AccessTable};
use mall_common::paging::Page;
use mall_proto::common::v1 as common_pb;
use mall_proto::order::v1 as pb;
use mall_proto::order::v1::order_service_server::OrderService;
use mall_types::ids::stored_to_api;
use mall_types::{Address, OrderId, ServiceName, TransactionId, UserId};
use tonic::{Request, Response, Status};

use crate::domain::{self, NewOrder, Order, OrderStatus, PaymentMethod, RawLine};
use crate::error::Error;
use crate::peers::{ProductClient, release_stock};
use crate::store::{Orders, Paid};

/// Who may call what: placing is a step of checkout (checkout only); paying is checkout's for
/// card orders and payment's for Alipay orders (payment marks one PAID once Alipay confirmed
/// it); customers read and cancel their own orders (checkout and payment also read for them,
/// checkout cancels for them).
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::order::v1::order_service_server::SERVICE_NAME,
    rules: &[
        ("PlaceOrder", Access::Internal(&[ServiceName::Checkout])),
        ("ListOrder", Access::User(&[])),
        (
            "GetOrder",
            Access::User(&[ServiceName::Checkout, ServiceName::Payment]),
        ),
        (
            "MarkOrderPaid",
            Access::Internal(&[ServiceName::Checkout, ServiceName::Payment]),
        ),
        ("CancelOrder", Access::User(&[ServiceName::Checkout])),
    ],
};

/// The `OrderService` implementation.
#[derive(Clone)]
pub struct OrderApi {
    orders: Orders,
    product: ProductClient,
    currency: String,
}

fn status_to_pb(status: OrderStatus) -> pb::OrderStatus {
    match status {
        OrderStatus::Pending => pb::OrderStatus::Pending,
        OrderStatus::Paid => pb::OrderStatus::Paid,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
        OrderStatus::Completed => pb::OrderStatus::Completed,
        OrderStatus::Refunded => pb::OrderStatus::Refunded,
    }
}

fn to_pb(order: Order) -> pb::Order {
    pb::Order {
        order_items: order
            .lines
            .iter()
            .map(|line| pb::OrderItem {
                item: Some(common_pb::CartItem {
                    product_id: line.product_id.get(),
                    quantity: line.quantity.get(),
                }),
                cost_cents: line.cost_cents.get(),
            })
            .collect(),
        order_id: order.id,
        user_id: stored_to_api(order.user_id),
        user_currency: order.currency,
        address: Some(common_pb::Address {
            street_address: order.address.street_address,
            city: order.address.city,
            state: order.address.state,
            country: order.address.country,
            zip_code: order.address.zip_code,
        }),
        email: order.email,
        created_at: order.created_at,
        status: status_to_pb(order.status).into(),
        total_cents: order.total_cents,
        transaction_id: order.transaction_id.unwrap_or_default(),
        paid_at: order.paid_at.unwrap_or_default(),
        payment_method: order.payment_method.as_str().to_string(),
    }
}

/// The user id a user RPC acts for: valid, and the caller's own (or the caller is an admin or
/// a service).
fn acting_for<T>(request: &Request<T>, user: u64) -> Result<UserId, Status> {
    let user_id = UserId::parse(user, "user_id").map_err(Error::from)?;
    auth::caller(request)?.authorize(user_id)?;
    Ok(user_id)
}

impl OrderApi {
    /// A service over `orders`, releasing stock through `product`, selling in `currency`.
    pub fn new(orders: Orders, product: ProductClient, currency: String) -> Self {
        OrderApi {
            orders,
            product,
            currency,
        }
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn place_order(
        &self,
        request: Request<pb::PlaceOrderReq>,
    ) -> Result<Response<pb::PlaceOrderResp>, Status> {
        let req = request.into_inner();
        let address = req
            .address
            .as_ref()
            .map(|a| {
                Address::parse(
                    &a.street_address,
                    &a.city,
                    &a.state,
                    &a.country,
                    &a.zip_code,
                )
            })
            .transpose()
            .map_err(Error::from)?;
        let lines: Vec<RawLine> = req
            .order_items
            .iter()
            .map(|i| {
                let (product, quantity) = i
                    .item
                    .as_ref()
                    .map_or((0, 0), |c| (c.product_id, c.quantity));
                (product, quantity, i.cost_cents)
            })
            .collect();
        let new = NewOrder::parse(
            req.user_id,
            &req.user_currency,
            &self.currency,
            address,
            &req.email,
            &lines,
            &req.idempotency_key,
        )
        .map_err(Error::from)?
        .paid_with(PaymentMethod::parse(&req.payment_method).map_err(Error::from)?);
        let placed = self.orders.place(&new).await?;
        if placed.created {
            tracing::info!(
                order = %placed.id,
                user = new.user_id.get(),
                total_cents = new.total_cents.get(),
                "order placed"
            );
        }
        Ok(Response::new(pb::PlaceOrderResp {
            order: Some(pb::OrderResult {
                order_id: placed.id,
            }),
        }))
    }

    async fn list_order(
        &self,
        request: Request<pb::ListOrderReq>,
    ) -> Result<Response<pb::ListOrderResp>, Status> {
        let user_id = acting_for(&request, request.get_ref().user_id)?;
        let req = request.into_inner();
        let page = Page::parse(req.page, req.page_size)?;
        let status = OrderStatus::filter(req.status).map_err(Error::from)?;
        let (orders, total) = self.orders.list(user_id, status, page).await?;
        Ok(Response::new(pb::ListOrderResp {
            orders: orders.into_iter().map(to_pb).collect(),
            total,
        }))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderReq>,
    ) -> Result<Response<pb::GetOrderResp>, Status> {
        let user_id = acting_for(&request, request.get_ref().user_id)?;
        let id = OrderId::parse(&request.get_ref().order_id, "order_id").map_err(Error::from)?;
        let order = self
            .orders
            .get(user_id, &id)
            .await?
            .ok_or(Error::OrderNotFound(id.into_string()))?;
        Ok(Response::new(pb::GetOrderResp {
            order: Some(to_pb(order)),
        }))
    }

    async fn mark_order_paid(
        &self,
        request: Request<pb::MarkOrderPaidReq>,
    ) -> Result<Response<pb::MarkOrderPaidResp>, Status> {
        let req = request.into_inner();
        let user_id = UserId::parse(req.user_id, "user_id").map_err(Error::from)?;
        let id = OrderId::parse(&req.order_id, "order_id").map_err(Error::from)?;
        let transaction =
            TransactionId::parse(&req.transaction_id, "transaction_id").map_err(Error::from)?;
        if self.orders.mark_paid(user_id, &id, &transaction).await? == Paid::Now {
            tracing::info!(order = %id, transaction = %transaction, "order paid");
        }
        Ok(Response::new(pb::MarkOrderPaidResp {}))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderReq>,
    ) -> Result<Response<pb::CancelOrderResp>, Status> {
        let user_id = acting_for(&request, request.get_ref().user_id)?;
        let req = request.into_inner();
        let id = OrderId::parse(&req.order_id, "order_id").map_err(Error::from)?;
        let reason = domain::cancel_reason(&req.reason).map_err(Error::from)?;
        self.orders.cancel(user_id, &id, &reason).await?;
        tracing::info!(order = %id, reason = %reason, "order cancelled");
        // The cancellation is committed either way; a failed release is retried by the sweeper
        // (`stock_released` stays 0), so the caller is not asked to retry a cancel that cannot
        // be repeated.
        let released = match release_stock(&self.product, &id).await {
            Ok(()) => self.orders.mark_released(&id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::warn!(order = %id, error = %e, "stock release failed; the sweeper will retry");
        }
        Ok(Response::new(pb::CancelOrderResp {}))
    }
}
