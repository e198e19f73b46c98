//! The gRPC edge of payments: parse the request into domain types, authorize, call the use
//! cases in [`crate::payments`], map errors to statuses. Access rules are in [`ACCESS`] and are
//! enforced by the server before any handler runs.
//!
//! Nothing here logs or returns a card number or CVV: they are only read by
//! [`CardInput::check`], which keeps the brand and the last 4 digits.

use std::collections::BTreeMap;

use mall_common::auth;
use mall_common::auth::{Access, AccessTable};
use mall_proto::payment::v1 as pb;
use mall_proto::payment::v1::payment_service_server::PaymentService;
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use mall_types::{OrderId, ServiceName, TransactionId, UserId};
use tonic::{Request, Response, Status};

use crate::alipay::AlipayOrder;
use crate::card::{CardInput, Charge};
use crate::domain::{Payment, Refund};
use crate::error::Error;
use crate::payments::Payments;
use crate::store::Voided;

/// Who may call what: card charges, refunds, voids and lookups are checkout's steps (checkout
/// only; the reconciler refunds in process, not over gRPC); a user (or checkout, for an Alipay
/// checkout) asks for their own Alipay link; the order sweeper asks whether an order was paid;
/// Alipay's notifications come unauthenticated and are trusted only through their signature.
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::payment::v1::payment_service_server::SERVICE_NAME,
    rules: &[
        ("Charge", Access::Internal(&[ServiceName::Checkout])),
        ("Refund", Access::Internal(&[ServiceName::Checkout])),
        ("AlipayCharge", Access::User(&[ServiceName::Checkout])),
        ("AlipayNotify", Access::Public),
        ("VoidOrder", Access::Internal(&[ServiceName::Checkout])),
        ("GetPayment", Access::Internal(&[ServiceName::Checkout])),
        ("QueryOrderPayment", Access::Internal(&[ServiceName::Order])),
    ],
};

/// The `PaymentService` implementation.
#[derive(Clone)]
pub struct PaymentApi {
    payments: Payments,
}

fn to_pb(p: Payment) -> pb::Payment {
    pb::Payment {
        transaction_id: p.transaction_id,
        order_id: p.order_id,
        user_id: stored_to_api(p.user_id),
        amount_cents: p.amount_cents,
        refunded_cents: p.refunded_cents,
        status: p.status,
        payment_method: p.method.as_str().to_string(),
        card_brand: p.card_brand,
        card_last4: p.card_last4,
        created_at: p.created_at,
    }
}

impl PaymentApi {
    /// The gRPC edge of `payments`.
    pub fn new(payments: Payments) -> Self {
        PaymentApi { payments }
    }
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn charge(
        &self,
        request: Request<pb::ChargeReq>,
    ) -> Result<Response<pb::ChargeResp>, Status> {
        let req = request.into_inner();
        let card = req.credit_card.as_ref().map(|c| CardInput {
            number: &c.credit_card_number,
            cvv: &c.credit_card_cvv,
            year: c.credit_card_expiration_year,
            month: c.credit_card_expiration_month,
        });
        let (charge, decline) = Charge::parse(
            req.amount_cents,
            &req.payment_method,
            &req.order_id,
            req.user_id,
            card,
            unix_secs(),
        )
        .map_err(Error::from)?;
        let transaction_id = self.payments.charge(charge, decline).await?;
        Ok(Response::new(pb::ChargeResp { transaction_id }))
    }

    async fn refund(
        &self,
        request: Request<pb::RefundReq>,
    ) -> Result<Response<pb::RefundResp>, Status> {
        let req = request.into_inner();
        let refund = Refund::parse_request(
            &req.transaction_id,
            &req.order_id,
            req.amount_cents,
            &req.reason,
            req.user_id,
            &req.refund_request_id,
        )
        .map_err(Error::from)?;
        let refund_id = self.payments.refund(&refund).await?;
        Ok(Response::new(pb::RefundResp { refund_id }))
    }

    async fn alipay_charge(
        &self,
        request: Request<pb::AlipayChargeReq>,
    ) -> Result<Response<pb::AlipayChargeResp>, Status> {
        let caller = auth::caller(&request)?.clone();
        let req = request.into_inner();
        let order = AlipayOrder::parse(
            &req.order_id,
            req.user_id,
            req.amount_cents,
            &req.return_url,
        )
        .map_err(Error::from)?;
        caller.authorize(order.user_id)?;
        let pay_url = self.payments.alipay().pay_link(&order).await?;
        Ok(Response::new(pb::AlipayChargeResp { pay_url }))
    }

    async fn alipay_notify(
        &self,
        request: Request<pb::AlipayNotifyReq>,
    ) -> Result<Response<pb::AlipayNotifyResp>, Status> {
        let params: BTreeMap<String, String> = request.into_inner().params.into_iter().collect();
        let accepted = self.payments.alipay().accept_notice(&params).await?;
        Ok(Response::new(pb::AlipayNotifyResp { accepted }))
    }

    async fn void_order(
        &self,
        request: Request<pb::VoidOrderReq>,
    ) -> Result<Response<pb::VoidOrderResp>, Status> {
        let order = OrderId::parse(&request.get_ref().order_id, "order_id").map_err(Error::from)?;
        Ok(Response::new(match self.payments.void(&order).await? {
            Voided::Voided => pb::VoidOrderResp {
                voided: true,
                payment: None,
            },
            Voided::Charged(p) => pb::VoidOrderResp {
                voided: false,
                payment: Some(to_pb(p)),
            },
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentReq>,
    ) -> Result<Response<pb::Payment>, Status> {
        let req = request.into_inner();
        let payment = if req.transaction_id.is_empty() && !req.order_id.is_empty() {
            let order = OrderId::parse(&req.order_id, "order_id").map_err(Error::from)?;
            self.payments.by_order(&order).await?
        } else {
            let id =
                TransactionId::parse(&req.transaction_id, "transaction_id").map_err(Error::from)?;
            self.payments.by_transaction(id).await?
        };
        Ok(Response::new(to_pb(payment)))
    }

    async fn query_order_payment(
        &self,
        request: Request<pb::QueryOrderPaymentReq>,
    ) -> Result<Response<pb::QueryOrderPaymentResp>, Status> {
        let req = request.into_inner();
        let order = OrderId::parse(&req.order_id, "order_id").map_err(Error::from)?;
        let user = UserId::parse(req.user_id, "user_id").map_err(Error::from)?;
        Ok(Response::new(
            match self.payments.alipay().order_payment(&order, user).await? {
                Some(p) => pb::QueryOrderPaymentResp {
                    paid: true,
                    transaction_id: p.transaction_id,
                    amount_cents: p.amount_cents,
                },
                None => pb::QueryOrderPaymentResp::default(),
            },
        ))
    }
}
