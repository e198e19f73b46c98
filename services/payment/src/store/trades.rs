//! Alipay trades in the ledger: one per order with a pay link, its owner and total (what a
//! notification must match), and where polling it with `alipay.trade.query` stands.

use mall_common::store::is_unique_violation;
use mall_types::time::unix_secs;
use mall_types::{Cents, OrderId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::Ledger;
use crate::error::Error;

const TRADE_COLUMNS: &str =
    "order_id, user_id, amount_cents, state, query_attempts, next_query_at, created_at";

impl Ledger {
    /// Opens the Alipay trade of an order (when its pay link is made), or returns the one that
    /// is there already.
    pub async fn open_trade(&self, trade: &NewTrade) -> Result<Trade, Error> {
        let now = unix_secs();
        let inserted = sqlx::query(
            "INSERT INTO alipay_trades (order_id, user_id, amount_cents, state, query_attempts, \
             next_query_at, created_at, updated_at) VALUES (?, ?, ?, 'open', 0, ?, ?, ?)",
        )
        .bind(trade.order_id.as_str())
        .bind(trade.user_id.db())
        .bind(trade.amount_cents.get())
        .bind(trade.first_query_at)
        .bind(now)
        .bind(now)
        .execute(self.db.pool())
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(e.into()),
        }
        self.trade(&trade.order_id)
            .await?
            .ok_or_else(|| Error::PaymentNotFound(format!("alipay trade of {}", trade.order_id)))
    }

    /// The Alipay trade of an order.
    pub async fn trade(&self, order_id: &OrderId) -> Result<Option<Trade>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRADE_COLUMNS} FROM alipay_trades WHERE order_id = ?"
        )))
        .bind(order_id.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(trade_from_row).transpose()?)
    }

    /// Open trades due for an `alipay.trade.query` at `now`, most overdue first.
    pub async fn trades_due(&self, now: i64, limit: i64) -> Result<Vec<Trade>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRADE_COLUMNS} FROM alipay_trades WHERE state = 'open' AND next_query_at <= ? \
             ORDER BY next_query_at LIMIT ?"
        )))
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(trade_from_row).collect::<Result<_, _>>()?)
    }

    /// Asks about an open trade again at `next_query_at` (one more attempt counted).
    pub async fn reschedule_trade(&self, order_id: &str, next_query_at: i64) -> Result<(), Error> {
        sqlx::query(
            "UPDATE alipay_trades SET query_attempts = query_attempts + 1, next_query_at = ?, \
             updated_at = ? WHERE order_id = ? AND state = 'open'",
        )
        .bind(next_query_at)
        .bind(unix_secs())
        .bind(order_id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Ends polling of a trade: `paid` (its payment is recorded) or `closed`.
    pub async fn end_trade(&self, order_id: &str, state: TradeState) -> Result<(), Error> {
        sqlx::query("UPDATE alipay_trades SET state = ?, updated_at = ? WHERE order_id = ?")
            .bind(state.as_str())
            .bind(unix_secs())
            .bind(order_id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

/// An Alipay trade to open.
#[derive(Debug, Clone)]
pub struct NewTrade {
    /// The order (`out_trade_no`).
    pub order_id: OrderId,
    /// Its owner, as the order service said.
    pub user_id: UserId,
    /// Its total, as the order service said.
    pub amount_cents: Cents,
    /// When to ask `alipay.trade.query` first (unix seconds).
    pub first_query_at: i64,
}

/// Where polling of a trade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeState {
    /// Polled until paid or given up.
    Open,
    /// Its payment is recorded.
    Paid,
    /// Given up (too old, or closed at Alipay).
    Closed,
}

impl TradeState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::Open => "open",
            TradeState::Paid => "paid",
            TradeState::Closed => "closed",
        }
    }
}

/// An order's Alipay trade as recorded here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// The order.
    pub order_id: String,
    /// The order's owner.
    pub user_id: i64,
    /// The order's total, the only amount accepted for it.
    pub amount_cents: i64,
    /// `open`, `paid`, `closed`.
    pub state: String,
    /// `alipay.trade.query` calls so far.
    pub query_attempts: i64,
    /// Next query (unix seconds).
    pub next_query_at: i64,
    /// When the pay link was made.
    pub created_at: i64,
}

fn trade_from_row(row: &AnyRow) -> Result<Trade, sqlx::Error> {
    Ok(Trade {
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount_cents: row.try_get("amount_cents")?,
        state: row.try_get("state")?,
        query_attempts: row.try_get("query_attempts")?,
        next_query_at: row.try_get("next_query_at")?,
        created_at: row.try_get("created_at")?,
    })
}
