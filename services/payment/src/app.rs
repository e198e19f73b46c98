//! Payment's use cases that need I/O: approving and recording a card charge, refunding,
//! making (and reusing) Alipay pay links, and accepting Alipay's notifications. The gRPC edge
//! (`api.rs`) parses requests into domain types and calls these; nothing here sees a request.
//!
//! Nothing here logs or keeps a card number or CVV: a [`Charge`] holds only the brand and the
//! last 4 digits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mall_common::cache::SharedCache;
use mall_types::time::unix_secs;
use mall_types::{OrderId, TransactionId};
use serde::{Deserialize, Serialize};

use crate::alipay::{Alipay, Verdict};
use crate::domain::{AlipayOrder, Charge, Decline, Method, Notice, Payment, Refund};
use crate::error::Error;
use crate::store::{Ledger, NewPayment, OnVoided, Recorded, Voided};

/// The payment use cases over the ledger, the cache (pay links) and Alipay.
#[derive(Clone)]
pub struct Payments {
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

impl Payments {
    /// Use cases over `ledger`, caching Alipay links for `pay_link_ttl`.
    pub fn new(
        ledger: Ledger,
        cache: SharedCache,
        alipay: Arc<Alipay>,
        pay_link_ttl: Duration,
    ) -> Self {
        Payments {
            ledger,
            cache,
            alipay,
            pay_link_ttl,
        }
    }

    /// Approves and records a card charge; the transaction id. A declined test card charges
    /// nothing; a repeat of the order's charge (same user, amount and method) answers the same
    /// transaction id; any other payment for the order is [`Error::OrderAlreadyPaid`].
    pub async fn charge(&self, charge: Charge, decline: Option<Decline>) -> Result<String, Error> {
        if let Some(decline) = decline {
            tracing::info!(order = %charge.order_id, brand = charge.card.brand.as_str(), %decline, "card declined");
            return Err(Error::Declined(decline));
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
        match self.ledger.record(&new, OnVoided::Refuse).await? {
            Recorded::New => {
                tracing::info!(
                    order = %new.order_id,
                    transaction = %new.transaction_id,
                    amount_cents = new.amount_cents.get(),
                    brand = charge.card.brand.as_str(),
                    "card charged"
                );
                Ok(new.transaction_id)
            }
            Recorded::Voided => {
                tracing::warn!(order = %new.order_id, "charge refused: checkout abandoned the order");
                Err(Error::OrderVoided(charge.order_id.into_string()))
            }
            Recorded::Existing(p)
                if p.is_repeat(charge.user_id, charge.amount_cents, Method::CreditCard) =>
            {
                Ok(p.transaction_id)
            }
            Recorded::Existing(_) => Err(Error::OrderAlreadyPaid(charge.order_id.into_string())),
        }
    }

    /// Refunds part or all of a card payment; the new refund's id.
    pub async fn refund(&self, refund: &Refund) -> Result<String, Error> {
        let refund_id = uuid::Uuid::now_v7().to_string();
        self.ledger.refund(refund, &refund_id).await?;
        tracing::info!(
            transaction = %refund.transaction_id,
            refund = %refund_id,
            amount_cents = refund.amount_cents.get(),
            "payment refunded"
        );
        Ok(refund_id)
    }

    /// Voids an order checkout gave up on: no card charge for it is accepted from now on. If
    /// the order was charged first, its payment (the caller refunds or adopts it).
    pub async fn void(&self, order: &OrderId) -> Result<Voided, Error> {
        let voided = self.ledger.void(order).await?;
        match &voided {
            Voided::Voided => tracing::info!(order = %order, "order voided"),
            Voided::Charged(p) => {
                tracing::info!(order = %order, transaction = %p.transaction_id, "void found a charge")
            }
        }
        Ok(voided)
    }

    /// The ledger (for the reconciliation worker).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The payment of an order.
    pub async fn by_order(&self, order: &OrderId) -> Result<Payment, Error> {
        self.ledger
            .by_order(order)
            .await?
            .ok_or_else(|| Error::PaymentNotFound(format!("for order {order}")))
    }

    /// A payment by transaction id.
    pub async fn by_transaction(&self, id: TransactionId) -> Result<Payment, Error> {
        self.ledger
            .get(&id)
            .await?
            .ok_or_else(|| Error::PaymentNotFound(id.into_string()))
    }

    /// The Alipay page-pay link of an unpaid order: the cached one when this user asked for the
    /// same amount before, else a freshly signed one.
    pub async fn pay_link(&self, order: &AlipayOrder) -> Result<String, Error> {
        if !self.alipay.can_sign() {
            return Err(Error::AlipayNotConfigured);
        }
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

    /// Handles an Alipay notification: verifies its signature and records the payment it
    /// confirms; true when Alipay may stop notifying. Unverifiable notifications are refused
    /// (false), never an error: the caller is Alipay, which only retries.
    pub async fn accept_notice(&self, params: &BTreeMap<String, String>) -> Result<bool, Error> {
        match self.alipay.verify_notification(params) {
            Verdict::Verified => self.record_alipay(params).await,
            Verdict::NotConfigured => {
                tracing::warn!("alipay notification refused: no alipay public key configured");
                Ok(false)
            }
            Verdict::BadSignature => {
                tracing::warn!("alipay notification refused: bad signature");
                Ok(false)
            }
            Verdict::OtherApp => {
                tracing::warn!("alipay notification refused: signed for another app id");
                Ok(false)
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
        match self.ledger.record(&new, OnVoided::Record).await? {
            // Recorded beside a void too: the money has moved; reconciliation refunds it when
            // the order ends cancelled.
            Recorded::New | Recorded::Voided => {
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
