//! The gRPC edge of payments: parse the request into domain types, call the ledger (and Alipay),
//! map errors to statuses. Access rules are in [`ACCESS`] and are enforced by the server before
//! any handler runs.
//!
//! Nothing here logs or returns a card number or CVV: they are only read by
//! [`CardInput::check`], which keeps the brand and the last 4 digits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mall_common::auth;
use mall_common::auth::{Access, AccessTable};
use mall_common::cache::SharedCache;
use mall_proto::payment::v1 as pb;
use mall_proto::payment::v1::payment_service_server::PaymentService;
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use mall_types::{OrderId, TransactionId};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::alipay::{Alipay, Verdict};
use crate::domain::{AlipayOrder, CardInput, Charge, Error, Method, Notice, Payment, Refund};
use crate::store::{Ledger, NewPayment, Recorded};

/// Who may call what: card charges, refunds and lookups are for other services (checkout,
/// order); a user asks for their own Alipay link; Alipay's notifications come unauthenticated
/// and are trusted only through their signature.
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::payment::v1::payment_service_server::SERVICE_NAME,
    rules: &[
        ("Charge", Access::Internal),
        ("Refund", Access::Internal),
        ("AlipayCharge", Access::User),
        ("AlipayNotify", Access::Public),
        ("GetPayment", Access::Internal),
    ],
};

/// The `PaymentService` implementation.
#[derive(Clone)]
pub struct PaymentApi {
    ledger: Ledger,
    cache: SharedCache,
    alipay: Arc<Alipay>,
    pay_link_ttl: Duration,
}

/// A cached Alipay page-pay link: who it is for and how much, so a repeat can be checked. The
/// cache holds it as JSON, so its fields keep their plain stored types.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PayLink {
    user_id: i64,
    amount_cents: i64,
    url: String,
}

fn pay_link_key(order_id: &OrderId) -> String {
    format!("payment:v1:alipay_url:{order_id}")
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

fn notify_answer(accepted: bool) -> Result<Response<pb::AlipayNotifyResp>, Status> {
    Ok(Response::new(pb::AlipayNotifyResp { accepted }))
}

impl PaymentApi {
    /// A service over `ledger`, caching Alipay links for `pay_link_ttl`.
    pub fn new(
        ledger: Ledger,
        cache: SharedCache,
        alipay: Arc<Alipay>,
        pay_link_ttl: Duration,
    ) -> Self {
        PaymentApi {
            ledger,
            cache,
            alipay,
            pay_link_ttl,
        }
    }

    /// The cached link of an order. Cache trouble is logged and treated as a miss: a fresh link
    /// is as good, only not the same string.
    async fn cached_link(&self, key: &str) -> Option<PayLink> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(link) => Some(link),
                Err(e) => {
                    tracing::warn!(key, error = %e, "undecodable pay link in the cache");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(key, error = %e, "cache read failed; making a new pay link");
                None
            }
        }
    }

    /// A cached link answers a request for the same user and amount only.
    fn reuse(link: PayLink, order: &AlipayOrder) -> Result<String, Error> {
        if link.user_id != order.user_id.db() {
            return Err(Error::OtherUsersOrder(order.order_id.to_string()));
        }
        if link.amount_cents != order.amount_cents.get() {
            return Err(Error::PayLinkConflict(order.order_id.to_string()));
        }
        Ok(link.url)
    }

    async fn pay_link(&self, order: &AlipayOrder) -> Result<String, Error> {
        if let Some(paid) = self.ledger.by_order(&order.order_id).await? {
            return Err(if paid.user_id == order.user_id.db() {
                Error::OrderAlreadyPaid(order.order_id.to_string())
            } else {
                Error::OtherUsersOrder(order.order_id.to_string())
            });
        }
        let key = pay_link_key(&order.order_id);
        if let Some(link) = self.cached_link(&key).await {
            return Self::reuse(link, order);
        }
        let link = PayLink {
            user_id: order.user_id.db(),
            amount_cents: order.amount_cents.get(),
            url: self.alipay.page_pay_url(order, unix_secs())?,
        };
        let bytes = match serde_json::to_vec(&link) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the pay link");
                return Ok(link.url);
            }
        };
        // set_nx: of concurrent requests for one order, the first link stored is everyone's.
        match self.cache.set_nx(&key, &bytes, self.pay_link_ttl).await {
            Ok(true) => {
                tracing::info!(order = %order.order_id, "alipay pay link created");
                Ok(link.url)
            }
            Ok(false) => match self.cached_link(&key).await {
                Some(winner) => Self::reuse(winner, order),
                None => Ok(link.url),
            },
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot cache the pay link");
                Ok(link.url)
            }
        }
    }

    /// Records a verified notification's payment; true when Alipay may stop notifying.
    async fn record_alipay(&self, params: &BTreeMap<String, String>) -> Result<bool, Error> {
        let notice = match Notice::parse(params) {
            Ok(notice) => notice,
            Err(e) => {
                tracing::warn!(error = %e, "signed alipay notification is unusable");
                return Ok(false);
            }
        };
        let Notice::Paid(paid) = notice else {
            tracing::info!(
                trade_status = params
                    .get("trade_status")
                    .map(String::as_str)
                    .unwrap_or_default(),
                "alipay notification: nothing to record"
            );
            return Ok(true);
        };
        let new = NewPayment {
            transaction_id: paid
                .trade_no
                .clone()
                .map_or_else(|| uuid::Uuid::now_v7().to_string(), String::from),
            order_id: paid.order_id.clone(),
            user_id: paid.user_id,
            amount_cents: paid.amount_cents,
            method: Method::Alipay,
            card: None,
        };
        match self.ledger.record(&new).await? {
            Recorded::New => {
                tracing::info!(
                    order = %new.order_id,
                    transaction = %new.transaction_id,
                    amount_cents = new.amount_cents.get(),
                    "alipay payment recorded"
                );
                Ok(true)
            }
            Recorded::Existing(p)
                if p.is_repeat(paid.user_id, paid.amount_cents, Method::Alipay) =>
            {
                Ok(true)
            }
            Recorded::Existing(p) => {
                // Money arrived for an order that was already paid otherwise: a person has to
                // refund it through Alipay. Not accepting keeps Alipay (and this log) repeating.
                tracing::error!(
                    order = %new.order_id,
                    trade_no = %new.transaction_id,
                    existing = %p.transaction_id,
                    "alipay payment for an order that already has another payment"
                );
                Ok(false)
            }
        }
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
        if let Some(decline) = decline {
            tracing::info!(order = %charge.order_id, brand = charge.card.brand.as_str(), %decline, "card declined");
            return Err(Error::Declined(decline).into());
        }
        // No card network behind this service: every valid card but the decline test cards is
        // approved.
        let new = NewPayment {
            transaction_id: uuid::Uuid::now_v7().to_string(),
            order_id: charge.order_id.clone(),
            user_id: charge.user_id,
            amount_cents: charge.amount_cents,
            method: Method::CreditCard,
            card: Some(charge.card.clone()),
        };
        let transaction_id = match self.ledger.record(&new).await? {
            Recorded::New => {
                tracing::info!(
                    order = %new.order_id,
                    transaction = %new.transaction_id,
                    amount_cents = new.amount_cents.get(),
                    brand = charge.card.brand.as_str(),
                    "card charged"
                );
                new.transaction_id
            }
            Recorded::Existing(p)
                if p.is_repeat(charge.user_id, charge.amount_cents, Method::CreditCard) =>
            {
                p.transaction_id
            }
            Recorded::Existing(_) => {
                return Err(Error::OrderAlreadyPaid(charge.order_id.into_string()).into());
            }
        };
        Ok(Response::new(pb::ChargeResp { transaction_id }))
    }

    async fn refund(
        &self,
        request: Request<pb::RefundReq>,
    ) -> Result<Response<pb::RefundResp>, Status> {
        let req = request.into_inner();
        let refund = Refund::parse(
            &req.transaction_id,
            &req.order_id,
            req.amount_cents,
            &req.reason,
            req.user_id,
        )
        .map_err(Error::from)?;
        let refund_id = uuid::Uuid::now_v7().to_string();
        self.ledger.refund(&refund, &refund_id).await?;
        tracing::info!(
            transaction = %refund.transaction_id,
            refund = %refund_id,
            amount_cents = refund.amount_cents.get(),
            "payment refunded"
        );
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
        caller.authorize(req.user_id)?;
        if !self.alipay.can_sign() {
            return Err(Error::AlipayNotConfigured.into());
        }
        let pay_url = self.pay_link(&order).await?;
        Ok(Response::new(pb::AlipayChargeResp { pay_url }))
    }

    async fn alipay_notify(
        &self,
        request: Request<pb::AlipayNotifyReq>,
    ) -> Result<Response<pb::AlipayNotifyResp>, Status> {
        let params: BTreeMap<String, String> = request.into_inner().params.into_iter().collect();
        match self.alipay.verify_notification(&params) {
            Verdict::Verified => {}
            Verdict::NotConfigured => {
                tracing::warn!("alipay notification refused: no alipay public key configured");
                return notify_answer(false);
            }
            Verdict::BadSignature => {
                tracing::warn!("alipay notification refused: bad signature");
                return notify_answer(false);
            }
            Verdict::OtherApp => {
                tracing::warn!("alipay notification refused: signed for another app id");
                return notify_answer(false);
            }
        }
        notify_answer(self.record_alipay(&params).await?)
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentReq>,
    ) -> Result<Response<pb::Payment>, Status> {
        let req = request.into_inner();
        let payment = if req.transaction_id.is_empty() && !req.order_id.is_empty() {
            let order = OrderId::parse(&req.order_id, "order_id").map_err(Error::from)?;
            self.ledger
                .by_order(&order)
                .await?
                .ok_or_else(|| Error::PaymentNotFound(format!("for order {order}")))?
        } else {
            let id =
                TransactionId::parse(&req.transaction_id, "transaction_id").map_err(Error::from)?;
            self.ledger
                .get(&id)
                .await?
                .ok_or_else(|| Error::PaymentNotFound(id.into_string()))?
        };
        Ok(Response::new(to_pb(payment)))
    }
}
