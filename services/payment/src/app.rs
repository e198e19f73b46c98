//! Payment's use cases that need I/O: approving and recording a card charge, refunding (through
//! Alipay for Alipay payments), making (and reusing) Alipay pay links bound to their order,
//! accepting Alipay's notifications, and asking Alipay about a trade (`alipay.trade.query`).
//! The gRPC edge (`api.rs`) and the notify endpoint (`notify.rs`) parse requests into domain
//! types and call these; settling a payment with order and cart is in `settle.rs`.
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

use mall_types::{Cents, Invalid, UserId};

use crate::alipay::{Alipay, CallError, RefundOutcome, TradeStatus, Verdict};
use crate::domain::{AlipayOrder, Charge, Decline, Method, Notice, PayLinkFor, Payment, Refund};
use crate::error::Error;
use crate::settle::{Peers, Settle, get_order};
use crate::store::{
    Ledger, NewPayment, NewTrade, OnVoided, Recorded, RefundStatus, StoredRefund, Trade,
    TradeState, Voided,
};

/// The use cases' time settings (`payment.*`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long one order's pay link is reused.
    pub pay_link_ttl: Duration,
    /// First `alipay.trade.query` of a trade this long after its pay link (then doubling).
    pub query_after: Duration,
    /// Trades are queried for this long after their pay link.
    pub query_for: Duration,
}

/// The payment use cases over the ledger, the cache (pay links), Alipay, and the services
/// payments settle with.
#[derive(Clone)]
pub struct Payments {
    ledger: Ledger,
    cache: SharedCache,
    alipay: Arc<Alipay>,
    timing: Timing,
    peers: Peers,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
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
    /// Use cases over `ledger`, caching Alipay links for `timing.pay_link_ttl`.
    pub fn new(
        ledger: Ledger,
        cache: SharedCache,
        alipay: Arc<Alipay>,
        timing: Timing,
        peers: Peers,
    ) -> Self {
        Payments {
            ledger,
            cache,
            alipay,
            timing,
            peers,
        }
    }

    /// The services payments settle with.
    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// Alipay as configured.
    pub fn alipay(&self) -> &Alipay {
        &self.alipay
    }

    /// The time settings.
    pub fn timing(&self) -> Timing {
        self.timing
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

    /// Refunds part or all of a payment; the refund's id. A card refund is recorded at once;
    /// an Alipay refund is recorded as pending (counting against the payment, so concurrent
    /// refunds can never exceed it), sent as `alipay.trade.refund` with the request id as
    /// `out_request_no`, and then marked done, or given back when Alipay refuses it. When
    /// Alipay's answer is lost the refund stays pending: a retry with the same
    /// `refund_request_id`, or the reconciliation worker, sends the same request again.
    pub async fn refund(&self, refund: &Refund) -> Result<String, Error> {
        let payment = self
            .ledger
            .get(&refund.transaction_id)
            .await?
            .ok_or_else(|| Error::PaymentNotFound(refund.transaction_id.to_string()))?;
        // The order and user must be the payment's, for a repeat too (its out_request_no is
        // only ever sent for this payment's trade).
        if payment.order_id != refund.order_id.as_str() || payment.user_id != refund.user_id.db() {
            return Err(Error::NotThisPayment);
        }
        if let Some(request) = &refund.request_id
            && let Some(earlier) = self
                .ledger
                .refund_by_request(refund.transaction_id.as_str(), request.as_str())
                .await?
        {
            return self.repeat_refund(refund, earlier).await;
        }
        let refund_id = uuid::Uuid::now_v7().to_string();
        let out_request_no = refund
            .request_id
            .as_ref()
            .map_or_else(|| refund_id.clone(), |r| r.as_str().to_string());
        let status = match payment.method {
            Method::Alipay => RefundStatus::Pending,
            Method::CreditCard => RefundStatus::Succeeded,
        };
        let recorded = self
            .ledger
            .refund(refund, &refund_id, &out_request_no, status)
            .await;
        match recorded {
            Ok(_) => {}
            // A concurrent request with the same request id won.
            Err(Error::Database(e)) if mall_common::store::is_unique_violation(&e) => {
                if let Some(earlier) = self
                    .ledger
                    .refund_by_request(refund.transaction_id.as_str(), &out_request_no)
                    .await?
                {
                    return self.repeat_refund(refund, earlier).await;
                }
                return Err(Error::Database(e));
            }
            Err(e) => return Err(e),
        }
        tracing::info!(
            transaction = %refund.transaction_id,
            refund = %refund_id,
            amount_cents = refund.amount_cents.get(),
            method = payment.method.as_str(),
            "refund recorded"
        );
        if payment.method == Method::Alipay {
            let stored = StoredRefund {
                refund_id: refund_id.clone(),
                transaction_id: payment.transaction_id.clone(),
                amount_cents: refund.amount_cents.get(),
                reason: refund.reason.as_str().to_string(),
                out_request_no,
                status,
            };
            self.push_alipay_refund(&payment.order_id, &stored).await?;
        }
        Ok(refund_id)
    }

    /// A refund request seen before: the same answer (re-sending a pending Alipay refund), or
    /// a conflict when it asked for another amount.
    async fn repeat_refund(&self, refund: &Refund, earlier: StoredRefund) -> Result<String, Error> {
        if earlier.amount_cents != refund.amount_cents.get() {
            return Err(Error::RefundRequestConflict(earlier.out_request_no));
        }
        match earlier.status {
            RefundStatus::Succeeded => Ok(earlier.refund_id),
            RefundStatus::Failed => Err(Error::AlipayRefused(format!(
                "refund request {} was refused before",
                earlier.out_request_no
            ))),
            RefundStatus::Pending => {
                self.push_alipay_refund(refund.order_id.as_str(), &earlier)
                    .await?;
                Ok(earlier.refund_id)
            }
        }
    }

    /// Sends a pending Alipay refund to Alipay and records what came of it.
    pub async fn push_alipay_refund(
        &self,
        order_id: &str,
        refund: &StoredRefund,
    ) -> Result<(), Error> {
        let outcome = self
            .alipay
            .refund_trade(
                order_id,
                refund.amount_cents,
                &refund.out_request_no,
                &refund.reason,
            )
            .await;
        match outcome {
            Ok(RefundOutcome::Refunded) => {
                self.ledger.finish_refund(&refund.refund_id).await?;
                tracing::info!(order = %order_id, refund = %refund.refund_id, amount_cents = refund.amount_cents, "alipay refund done");
                Ok(())
            }
            Ok(RefundOutcome::Refused(code)) => {
                self.ledger.fail_refund(refund).await?;
                tracing::warn!(order = %order_id, refund = %refund.refund_id, sub_code = %code, "alipay refused the refund");
                Err(Error::AlipayRefused(code))
            }
            Err(e) => {
                tracing::warn!(order = %order_id, refund = %refund.refund_id, error = %e, "alipay refund outcome unknown; stays pending");
                Err(e.into())
            }
        }
    }

    /// Re-sends Alipay refunds whose outcome is unknown (for the reconciliation worker).
    pub async fn retry_pending_refunds(&self, limit: i64) -> Result<usize, Error> {
        let mut done = 0;
        for refund in self.ledger.pending_refunds(limit).await? {
            let Some(payment) = self
                .ledger
                .get(&mall_types::TransactionId::parse(
                    &refund.transaction_id,
                    "transaction_id",
                )?)
                .await?
            else {
                continue;
            };
            if self
                .push_alipay_refund(&payment.order_id, &refund)
                .await
                .is_ok()
            {
                done += 1;
            }
        }
        Ok(done)
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

    /// The Alipay page-pay link of an unpaid order, bound to the order as the order service
    /// tells it: only its owner (another user's order is [`Error::OrderNotFound`], like an
    /// unknown one), only while PENDING, only an Alipay order, only for its total (`None`:
    /// the total). The trade is recorded (owner and total: what a notification must match);
    /// the cached link is reused for its lifetime, else a freshly signed one is made.
    pub async fn pay_link(&self, req: &AlipayOrder) -> Result<String, Error> {
        if !self.alipay.can_sign() {
            return Err(Error::AlipayNotConfigured);
        }
        let order_id = req.order_id.to_string();
        let order = get_order(&self.peers.order, req.user_id.get(), &order_id)
            .await?
            .ok_or_else(|| Error::OrderNotFound(order_id.clone()))?;
        use mall_proto::order::v1::OrderStatus as S;
        let status = S::try_from(order.status).unwrap_or(S::Unspecified);
        if status != S::Pending {
            if let Some(paid) = self.ledger.by_order(&req.order_id).await?
                && paid.user_id == req.user_id.db()
            {
                return Err(Error::OrderAlreadyPaid(order_id));
            }
            return Err(Error::OrderNotPending {
                order: order_id,
                status: status
                    .as_str_name()
                    .trim_start_matches("ORDER_STATUS_")
                    .to_string(),
            });
        }
        if order.payment_method != Method::Alipay.as_str() {
            return Err(Error::NotAlipayOrder(order_id));
        }
        let total = Cents::new(order.total_cents)
            .filter(|c| c.get() > 0 && c.get() <= crate::domain::MAX_ALIPAY_CENTS)
            .ok_or_else(|| {
                Error::Invalid(Invalid::new(
                    "order_id",
                    "the order's total cannot be paid with alipay",
                ))
            })?;
        if let Some(asked) = req.amount_cents
            && asked != total
        {
            return Err(Error::Invalid(Invalid::new(
                "amount_cents",
                format!(
                    "must be the order's total, {} (or 0 for the total)",
                    total.get()
                ),
            )));
        }
        if let Some(paid) = self.ledger.by_order(&req.order_id).await? {
            return Err(if paid.user_id == req.user_id.db() {
                Error::OrderAlreadyPaid(order_id)
            } else {
                Error::OtherUsersOrder(order_id)
            });
        }
        let link_for = PayLinkFor {
            order_id: req.order_id.clone(),
            user_id: req.user_id,
            amount_cents: total,
            return_url: req.return_url.clone(),
        };
        let now = unix_secs();
        self.ledger
            .open_trade(&NewTrade {
                order_id: req.order_id.clone(),
                user_id: req.user_id,
                amount_cents: total,
                first_query_at: now.saturating_add(secs(self.timing.query_after)),
            })
            .await?;
        let key = pay_link_key(&req.order_id);
        if let Some(link) = self.cached_link(&key).await {
            return Self::reuse(link, &link_for);
        }
        let link = PayLink {
            user_id: req.user_id.db(),
            amount_cents: total.get(),
            url: self.alipay.page_pay_url(&link_for, now)?,
        };
        let bytes = match serde_json::to_vec(&link) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the pay link");
                return Ok(link.url);
            }
        };
        // set_nx: of concurrent requests for one order, the first link stored is everyone's.
        match self
            .cache
            .set_nx(&key, &bytes, self.timing.pay_link_ttl)
            .await
        {
            Ok(true) => {
                tracing::info!(order = %req.order_id, amount_cents = total.get(), "alipay pay link created");
                Ok(link.url)
            }
            Ok(false) => match self.cached_link(&key).await {
                Some(winner) => Self::reuse(winner, &link_for),
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
    fn reuse(link: PayLink, order: &PayLinkFor) -> Result<String, Error> {
        if link.user_id != order.user_id.db() {
            return Err(Error::OtherUsersOrder(order.order_id.to_string()));
        }
        if link.amount_cents != order.amount_cents.get() {
            return Err(Error::PayLinkConflict(order.order_id.to_string()));
        }
        Ok(link.url)
    }

    /// Handles an Alipay notification: verifies its signature (and app id), checks it against
    /// the order's trade, and records the payment it confirms; true ("success") only once the
    /// payment is committed (or was already), or when there is nothing to record. Anything
    /// unverifiable or not matching is refused (false), never an error: the caller is Alipay,
    /// which only retries. A database failure is an error (the endpoint answers `fail`).
    pub async fn accept_notice(&self, params: &BTreeMap<String, String>) -> Result<bool, Error> {
        match self.alipay.verify_notification(params) {
            Verdict::Verified => self.record_notice(params).await,
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
    async fn record_notice(&self, params: &BTreeMap<String, String>) -> Result<bool, Error> {
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
        let seller = self.alipay.seller_id();
        if !seller.is_empty() && paid.seller_id != seller {
            tracing::warn!(order = %paid.order_id, "alipay notification refused: another seller_id");
            return Ok(false);
        }
        let Some(trade) = self.ledger.trade(&paid.order_id).await? else {
            tracing::warn!(order = %paid.order_id, "alipay notification refused: no pay link was made for this order");
            return Ok(false);
        };
        let trade_no = paid.trade_no.as_ref().map(|t| t.as_str().to_string());
        Ok(self
            .record_trade_payment(&trade, trade_no, paid.amount_cents.get())
            .await?
            .is_some())
    }

    /// Records the payment Alipay reports (by notification or query) for `trade`, when its
    /// amount is the trade's; the recorded payment (also when it was recorded before), or
    /// `None` when it must not be accepted. Then tries to settle it at once (the
    /// reconciliation worker retries what fails).
    pub async fn record_trade_payment(
        &self,
        trade: &Trade,
        trade_no: Option<String>,
        amount_cents: i64,
    ) -> Result<Option<Payment>, Error> {
        if amount_cents != trade.amount_cents {
            tracing::warn!(order = %trade.order_id, amount_cents, expected = trade.amount_cents, "alipay payment refused: not the order's total");
            return Ok(None);
        }
        let order_id = mall_types::OrderId::parse(&trade.order_id, "out_trade_no")?;
        let (Some(user_id), Some(amount)) = (
            UserId::from_db(trade.user_id),
            Cents::new(trade.amount_cents),
        ) else {
            return Err(Error::Corrupt(format!(
                "alipay trade {} has no valid user or amount",
                trade.order_id
            )));
        };
        let new = NewPayment {
            transaction_id: trade_no
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            order_id,
            user_id,
            amount_cents: amount,
            method: Method::Alipay,
            card: None,
        };
        let payment = match self.ledger.record(&new, OnVoided::Record).await? {
            // Recorded beside a void too: the money has moved; settling refunds it when the
            // order ends cancelled.
            Recorded::New | Recorded::Voided => {
                tracing::info!(
                    order = %new.order_id,
                    transaction = %new.transaction_id,
                    amount_cents = new.amount_cents.get(),
                    "alipay payment recorded"
                );
                self.ledger
                    .get(&mall_types::TransactionId::parse(
                        &new.transaction_id,
                        "trade_no",
                    )?)
                    .await?
            }
            // The same trade again (a duplicate notification, or the poller and a notification
            // both): the payment already recorded.
            Recorded::Existing(p)
                if p.is_repeat(user_id, amount, Method::Alipay)
                    && p.transaction_id == new.transaction_id =>
            {
                Some(p)
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
                return Ok(None);
            }
        };
        self.ledger
            .end_trade(&trade.order_id, TradeState::Paid)
            .await?;
        if let Some(p) = payment.clone().filter(|p| p.refunded_cents == 0) {
            // Settling calls order and cart: in the background, so Alipay (or the sweeper
            // asking) gets its answer as soon as the payment is committed.
            let payments = self.clone();
            tokio::spawn(async move {
                if payments.settle(&p).await != Settle::Later
                    && let Err(e) = payments.ledger.mark_reconciled(&p.transaction_id).await
                {
                    tracing::warn!(transaction = %p.transaction_id, error = %e, "cannot record the settlement; the worker will look again");
                }
            });
        }
        Ok(payment)
    }

    /// Has `order_id` (of `user_id`) been paid? The recorded payment, else what Alipay's
    /// `alipay.trade.query` says about its trade (a payment it reports is recorded first);
    /// `None` when neither knows one.
    pub async fn order_payment(
        &self,
        order_id: &mall_types::OrderId,
        user_id: UserId,
    ) -> Result<Option<Payment>, Error> {
        if let Some(p) = self.ledger.by_order(order_id).await? {
            return Ok((p.user_id == user_id.db()).then_some(p));
        }
        let Some(trade) = self.ledger.trade(order_id).await? else {
            return Ok(None);
        };
        if trade.user_id != user_id.db() || !self.alipay.can_call() {
            return Ok(None);
        }
        self.query_trade(&trade).await
    }

    /// Asks Alipay about `trade` and records a payment it reports.
    pub async fn query_trade(&self, trade: &Trade) -> Result<Option<Payment>, Error> {
        match self.alipay.query_trade(&trade.order_id).await {
            Ok(TradeStatus::Paid {
                trade_no,
                amount_cents,
            }) => {
                self.record_trade_payment(trade, Some(trade_no), amount_cents)
                    .await
            }
            Ok(TradeStatus::Unpaid) => Ok(None),
            Ok(TradeStatus::Closed) => {
                self.ledger
                    .end_trade(&trade.order_id, TradeState::Closed)
                    .await?;
                Ok(None)
            }
            Err(CallError::Local(e)) => Err(e),
            Err(CallError::Gateway(e)) => Err(Error::Gateway(e.0)),
        }
    }

    /// One round of the `alipay.trade.query` poller: every open trade due is asked about;
    /// an unpaid one is asked again later, each wait twice the last (at most
    /// [`crate::MAX_QUERY_BACKOFF`]), until `payment.alipay_query_for` after its pay link.
    /// Returns how many payments it found.
    pub async fn poll_trades(&self, now: i64, limit: i64) -> Result<usize, Error> {
        let mut found = 0;
        for trade in self.ledger.trades_due(now, limit).await? {
            if now.saturating_sub(trade.created_at) > secs(self.timing.query_for) {
                self.ledger
                    .end_trade(&trade.order_id, TradeState::Closed)
                    .await?;
                continue;
            }
            match self.query_trade(&trade).await {
                Ok(Some(_)) => found += 1,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(order = %trade.order_id, error = %e, "alipay.trade.query failed; will retry")
                }
            }
            let shift = u32::try_from(trade.query_attempts.clamp(0, 16)).unwrap_or(16);
            let wait = secs(self.timing.query_after)
                .saturating_mul(1_i64 << shift)
                .min(secs(crate::MAX_QUERY_BACKOFF));
            self.ledger
                .reschedule_trade(&trade.order_id, now.saturating_add(wait))
                .await?;
        }
        Ok(found)
    }
}
