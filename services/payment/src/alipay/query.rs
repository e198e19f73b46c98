//! Asking Alipay about trades (`alipay.trade.query`): for one order when order's sweeper asks
//! whether it was paid, and for every open trade in the poller's rounds. A payment Alipay
//! reports is recorded like a notified one.

use mall_types::{OrderId, UserId};

use super::{Alipay, CallError, MAX_QUERY_BACKOFF, TradeStatus, secs};
use crate::domain::Payment;
use crate::error::Error;
use crate::store::trades::{Trade, TradeState};

impl Alipay {
    /// Has `order_id` (of `user_id`) been paid? The recorded payment, else what Alipay's
    /// `alipay.trade.query` says about its trade (a payment it reports is recorded first);
    /// `None` when neither knows one.
    pub async fn order_payment(
        &self,
        order_id: &OrderId,
        user_id: UserId,
    ) -> Result<Option<Payment>, Error> {
        if let Some(p) = self.ledger.by_order(order_id).await? {
            return Ok((p.user_id == user_id.db()).then_some(p));
        }
        let Some(trade) = self.ledger.trade(order_id).await? else {
            return Ok(None);
        };
        if trade.user_id != user_id.db() || !self.gateway.can_call() {
            return Ok(None);
        }
        self.query_trade(&trade).await
    }

    /// Asks Alipay about `trade` and records a payment it reports.
    pub async fn query_trade(&self, trade: &Trade) -> Result<Option<Payment>, Error> {
        match self.gateway.query_trade(&trade.order_id).await {
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
    /// [`MAX_QUERY_BACKOFF`]), until `payment.alipay_query_for` after its pay link.
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
                .min(secs(MAX_QUERY_BACKOFF));
            self.ledger
                .reschedule_trade(&trade.order_id, now.saturating_add(wait))
                .await?;
        }
        Ok(found)
    }
}
