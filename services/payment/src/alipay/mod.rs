//! Alipay page payments: signed pay links bound to their order ([`Alipay::pay_link`]),
//! Alipay's notifications ([`Alipay::accept_notice`]), asking Alipay about a trade
//! (`alipay.trade.query`, and the poller over open trades), and Alipay refunds.
//!
//! The rooms inside: `gateway.rs` speaks Alipay's open API (signing, verifying, calling),
//! `link.rs` is the pay-link request and its cache, `notice.rs` reads a notification. A payment
//! recorded here is handed to settlement through a queue ([`SettleQueue`]), so nothing here
//! depends on how it is settled.

mod gateway;
mod link;
mod notice;
mod query;
mod refund;
mod sign;

pub use gateway::{
    CallError, Gateway, GatewayError, METHOD_PAGE_PAY, METHOD_QUERY, METHOD_REFUND, RefundOutcome,
    TradeStatus, Verdict,
};
pub use link::{AlipayOrder, PayLinkFor, PayLinks};
pub use notice::{AlipayPayment, Notice};
pub use sign::{notification_sign_content, request_sign_content};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mall_proto::order::v1 as order_pb;
use mall_types::time::unix_secs;
use mall_types::{Cents, Invalid, OrderId, TransactionId, UserId};
use tokio::sync::mpsc;

use crate::domain::{MAX_ALIPAY_CENTS, Payment, PaymentMethod};
use crate::error::Error;
use crate::peers::Peers;
use crate::store::trades::{NewTrade, Trade, TradeState};
use crate::store::{Ledger, NewPayment, OnVoided, Recorded};

/// The longest wait between two `alipay.trade.query` calls about one trade.
pub const MAX_QUERY_BACKOFF: Duration = Duration::from_secs(300);

/// Where recorded payments go to be settled at once (the reconciliation worker settles any
/// the queue drops).
pub type SettleQueue = mpsc::Sender<Payment>;

/// Alipay's time settings (`payment.*`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// First `alipay.trade.query` of a trade this long after its pay link (then doubling).
    pub query_after: Duration,
    /// Trades are queried for this long after their pay link.
    pub query_for: Duration,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The Alipay use cases over the ledger, the pay-link cache, Alipay's gateway and order.
#[derive(Clone)]
pub struct Alipay {
    ledger: Ledger,
    links: PayLinks,
    gateway: Arc<Gateway>,
    timing: Timing,
    peers: Peers,
    settle: SettleQueue,
}

impl Alipay {
    /// The use cases; recorded payments are sent to `settle`.
    pub fn new(
        ledger: Ledger,
        links: PayLinks,
        gateway: Arc<Gateway>,
        timing: Timing,
        peers: Peers,
        settle: SettleQueue,
    ) -> Self {
        Alipay {
            ledger,
            links,
            gateway,
            timing,
            peers,
            settle,
        }
    }

    /// Alipay's gateway as configured.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The Alipay page-pay link of an unpaid order, bound to the order as the order service
    /// tells it: only its owner (another user's order is [`Error::OrderNotFound`], like an
    /// unknown one), only while PENDING, only an Alipay order, only for its total (`None`:
    /// the total). The trade is recorded (owner and total: what a notification must match);
    /// the cached link is reused for its lifetime, else a freshly signed one is made.
    pub async fn pay_link(&self, req: &AlipayOrder) -> Result<String, Error> {
        if !self.gateway.can_sign() {
            return Err(Error::AlipayNotConfigured);
        }
        let order = self.pending_alipay_order(req).await?;
        let total = payable_total(&order, req)?;
        self.refuse_if_paid(req).await?;
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
        self.links
            .reuse_or_sign(&link_for, || self.gateway.page_pay_url(&link_for, now))
            .await
    }

    /// The order of `req` as order tells it, when it is the caller's, PENDING and to be paid
    /// with Alipay.
    async fn pending_alipay_order(&self, req: &AlipayOrder) -> Result<order_pb::Order, Error> {
        let order_id = req.order_id.to_string();
        let order = self
            .peers
            .order(req.user_id.get(), &order_id)
            .await?
            .ok_or_else(|| Error::OrderNotFound(order_id.clone()))?;
        use order_pb::OrderStatus as S;
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
        if order.payment_method != PaymentMethod::Alipay.as_str() {
            return Err(Error::NotAlipayOrder(order_id));
        }
        Ok(order)
    }

    /// A payment already recorded for the order: paid (by this user) or someone else's.
    async fn refuse_if_paid(&self, req: &AlipayOrder) -> Result<(), Error> {
        match self.ledger.by_order(&req.order_id).await? {
            None => Ok(()),
            Some(paid) if paid.user_id == req.user_id.db() => {
                Err(Error::OrderAlreadyPaid(req.order_id.to_string()))
            }
            Some(_) => Err(Error::OtherUsersOrder(req.order_id.to_string())),
        }
    }

    /// Handles an Alipay notification: verifies its signature (and app id), checks it against
    /// the order's trade, and records the payment it confirms; true ("success") only once the
    /// payment is committed (or was already), or when there is nothing to record. Anything
    /// unverifiable or not matching is refused (false), never an error: the caller is Alipay,
    /// which only retries. A database failure is an error (the endpoint answers `fail`).
    pub async fn accept_notice(&self, params: &BTreeMap<String, String>) -> Result<bool, Error> {
        match self.gateway.verify_notification(params) {
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
        let paid = match Notice::parse(params) {
            Ok(Notice::Paid(paid)) => paid,
            Ok(Notice::Other) => {
                tracing::info!(
                    trade_status = params
                        .get("trade_status")
                        .map(String::as_str)
                        .unwrap_or_default(),
                    "alipay notification: nothing to record"
                );
                return Ok(true);
            }
            Err(e) => {
                tracing::warn!(error = %e, "signed alipay notification is unusable");
                return Ok(false);
            }
        };
        if !paid.is_for_seller(self.gateway.seller_id()) {
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
    /// `None` when it must not be accepted. Then hands it to settlement (the reconciliation
    /// worker retries what fails).
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
        let new = payment_of(trade, trade_no)?;
        let Some(payment) = self.record(&new).await? else {
            return Ok(None);
        };
        self.ledger
            .end_trade(&trade.order_id, TradeState::Paid)
            .await?;
        if payment.refunded_cents == 0
            && let Err(e) = self.settle.try_send(payment.clone())
        {
            tracing::debug!(error = %e, "settle queue full; the reconciliation worker settles it");
        }
        Ok(Some(payment))
    }

    /// Records `new`: the payment now stored for its order, or `None` when another payment
    /// holds the order.
    async fn record(&self, new: &NewPayment) -> Result<Option<Payment>, Error> {
        match self.ledger.record(new, OnVoided::Record).await? {
            // Recorded beside a void too: the money has moved; settling refunds it when the
            // order ends cancelled.
            Recorded::New | Recorded::Voided => {
                tracing::info!(
                    order = %new.order_id,
                    transaction = %new.transaction_id,
                    amount_cents = new.amount_cents.get(),
                    "alipay payment recorded"
                );
                let id = TransactionId::parse(&new.transaction_id, "trade_no")?;
                let stored = self.ledger.get(&id).await?.ok_or_else(|| {
                    Error::Corrupt(format!("payment {id} was recorded but cannot be read"))
                })?;
                Ok(Some(stored))
            }
            // The same trade again (a duplicate notification, or the poller and a notification
            // both): the payment already recorded.
            Recorded::Existing(p)
                if p.is_repeat(new.user_id, new.amount_cents, PaymentMethod::Alipay)
                    && p.transaction_id == new.transaction_id =>
            {
                Ok(Some(p))
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
                Ok(None)
            }
        }
    }
}

/// The order's total, which a pay link is for: within Alipay's limit, and what the request
/// asked for, if it asked.
fn payable_total(order: &order_pb::Order, req: &AlipayOrder) -> Result<Cents, Error> {
    let total = Cents::new(order.total_cents)
        .filter(|c| c.get() > 0 && c.get() <= MAX_ALIPAY_CENTS)
        .ok_or_else(|| {
            Error::Invalid(Invalid::new(
                "order_id",
                "the order's total cannot be paid with alipay",
            ))
        })?;
    match req.amount_cents {
        Some(asked) if asked != total => Err(Error::Invalid(Invalid::new(
            "amount_cents",
            format!(
                "must be the order's total, {} (or 0 for the total)",
                total.get()
            ),
        ))),
        _ => Ok(total),
    }
}

/// The payment a trade's reported payment is recorded as (Alipay's `trade_no` as its
/// transaction id when there is one).
fn payment_of(trade: &Trade, trade_no: Option<String>) -> Result<NewPayment, Error> {
    let order_id = OrderId::parse(&trade.order_id, "out_trade_no")?;
    let (Some(user_id), Some(amount)) = (
        UserId::from_db(trade.user_id),
        Cents::new(trade.amount_cents),
    ) else {
        return Err(Error::Corrupt(format!(
            "alipay trade {} has no valid user or amount",
            trade.order_id
        )));
    };
    Ok(NewPayment {
        transaction_id: trade_no
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        order_id,
        user_id,
        amount_cents: amount,
        method: PaymentMethod::Alipay,
        card: None,
    })
}
