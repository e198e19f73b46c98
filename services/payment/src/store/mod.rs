//! The payment ledger's SQL. One implementation for both backends (`?` placeholders, portable
//! types).
//!
//! Two rules are enforced by the database rather than by reading first, so they hold across
//! instances and under concurrency:
//! - one payment per order: `payments.order_id` is unique; a losing concurrent insert reads the
//!   winner back and the caller decides whether it was a repeat;
//! - refunds never exceed the charge: one conditional `UPDATE ... WHERE refunded_cents + ? <=
//!   amount_cents`, with the refund row inserted in the same transaction.

use mall_common::events::{Outbox, Payload, PaymentCharged, PaymentRefunded};
use mall_common::store::{Database, Migrations, is_unique_violation};
use mall_types::time::unix_secs;
use mall_types::{Cents, OrderId, TransactionId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::{CardSummary, Method, Payment, Refund, STATUS_PAID};
use crate::error::Error;

/// The ledger's migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

const PAYMENT_COLUMNS: &str = "transaction_id, order_id, user_id, amount_cents, refunded_cents, \
     status, payment_method, card_brand, card_last4, created_at";

/// A payment to record.
#[derive(Debug, Clone)]
pub struct NewPayment {
    /// Its new transaction id.
    pub transaction_id: String,
    /// The order (unique).
    pub order_id: OrderId,
    /// The paying user.
    pub user_id: UserId,
    /// Positive amount.
    pub amount_cents: Cents,
    /// How it was paid.
    pub method: Method,
    /// The card's brand and last 4 digits (card payments).
    pub card: Option<CardSummary>,
}

/// What `record` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The payment was recorded now.
    New,
    /// The order already had this payment (recorded earlier or by a concurrent request).
    Existing(Payment),
    /// The order was voided (checkout gave up on it) and this payment was refused.
    Voided,
}

/// What to do with a payment for an order that checkout voided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnVoided {
    /// Refuse it: nothing is charged (card charges happen here, so they can still be refused).
    Refuse,
    /// Record it anyway: the money has moved already (Alipay tells us afterwards); the
    /// reconciliation worker refunds it when its order ends CANCELLED.
    Record,
}

/// What `void` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Voided {
    /// The order is voided (now or before): no charge for it will be accepted.
    Voided,
    /// The order was charged before the void: this is its payment.
    Charged(Payment),
}

/// A settlement outcome as stored in `order_settlements.outcome`.
const CHARGED: &str = "charged";
const VOIDED: &str = "voided";

/// The source of the ledger's events (`payment.charged` when a payment is recorded, card or
/// Alipay; `payment.refunded` when a card refund is recorded or Alipay confirms one), appended
/// to the outbox in the transaction that records it; the aggregate is the order id (one payment
/// per order).
const NAME: &str = mall_types::ServiceName::Payment.as_str();

/// The payment ledger's repository.
#[derive(Clone, Debug)]
pub struct Ledger {
    db: Database,
}

fn payment_from_row(row: &AnyRow) -> Result<Payment, sqlx::Error> {
    let method: String = row.try_get("payment_method")?;
    Ok(Payment {
        transaction_id: row.try_get("transaction_id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount_cents: row.try_get("amount_cents")?,
        refunded_cents: row.try_get("refunded_cents")?,
        status: row.try_get("status")?,
        method: Method::from_stored(&method).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "payment_method".into(),
            source: format!("unknown payment method `{method}`").into(),
        })?,
        card_brand: row.try_get("card_brand")?,
        card_last4: row.try_get("card_last4")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Ledger {
    /// A repository on an open, migrated database.
    pub fn new(db: Database) -> Self {
        Ledger { db }
    }

    /// Records a payment, or returns the order's existing one when the order already has a
    /// payment (the unique keys on the order decide, also between concurrent requests). The
    /// order's settlement row is claimed in the same transaction, so a payment and a void of
    /// one order exclude each other; `on_voided` says what a voided order gets.
    pub async fn record(&self, new: &NewPayment, on_voided: OnVoided) -> Result<Recorded, Error> {
        self.db
            .retrying("record payment", || self.record_once(new, on_voided))
            .await
    }

    async fn record_once(&self, new: &NewPayment, on_voided: OnVoided) -> Result<Recorded, Error> {
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        let claimed = sqlx::query(
            "INSERT INTO order_settlements (order_id, outcome, created_at) VALUES (?, ?, ?)",
        )
        .bind(new.order_id.as_str())
        .bind(CHARGED)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match claimed {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                let outcome: String =
                    sqlx::query_scalar("SELECT outcome FROM order_settlements WHERE order_id = ?")
                        .bind(new.order_id.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                if outcome != VOIDED {
                    drop(tx);
                    return self.existing(&new.order_id, e).await;
                }
                if on_voided == OnVoided::Refuse {
                    return Ok(Recorded::Voided);
                }
            }
            Err(e) => return Err(e.into()),
        }
        let (brand, last4) = match &new.card {
            Some(card) => (card.brand.as_str(), card.last4.as_str()),
            None => ("", ""),
        };
        let inserted = sqlx::query(
            "INSERT INTO payments (transaction_id, order_id, user_id, amount_cents, refunded_cents, \
             status, payment_method, card_brand, card_last4, created_at, updated_at) \
             VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&new.transaction_id)
        .bind(new.order_id.as_str())
        .bind(new.user_id.db())
        .bind(new.amount_cents.get())
        .bind(STATUS_PAID)
        .bind(new.method.as_str())
        .bind(brand)
        .bind(last4)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {
                let charged = Payload::PaymentCharged(PaymentCharged {
                    transaction_id: new.transaction_id.clone(),
                    order_id: new.order_id.to_string(),
                    user_id: new.user_id.get(),
                    amount_cents: new.amount_cents.get(),
                    // Payment does not know the shop currency; the order's event carries it.
                    currency: String::new(),
                    method: new.method.as_str().to_string(),
                });
                Outbox::append(&mut tx, NAME, new.order_id.as_str(), charged).await?;
                tx.commit().await?;
                Ok(Recorded::New)
            }
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                self.existing(&new.order_id, e).await
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The order's payment after an insert lost to it on a unique key (`clash`).
    async fn existing(&self, order_id: &OrderId, clash: sqlx::Error) -> Result<Recorded, Error> {
        match self.by_order(order_id).await? {
            Some(existing) => Ok(Recorded::Existing(existing)),
            // The clash was on the transaction id, not the order.
            None => Err(clash.into()),
        }
    }

    /// Voids an order that checkout gave up on without knowing whether its charge happened:
    /// from now on no card charge for it is accepted. If it was charged first, nothing is
    /// voided and its payment is returned (the caller refunds it).
    pub async fn void(&self, order_id: &OrderId) -> Result<Voided, Error> {
        self.db
            .retrying("void order", || self.void_once(order_id))
            .await
    }

    async fn void_once(&self, order_id: &OrderId) -> Result<Voided, Error> {
        let voided = sqlx::query(
            "INSERT INTO order_settlements (order_id, outcome, created_at) VALUES (?, ?, ?)",
        )
        .bind(order_id.as_str())
        .bind(VOIDED)
        .bind(unix_secs())
        .execute(self.db.pool())
        .await;
        match voided {
            Ok(_) => Ok(Voided::Voided),
            Err(e) if is_unique_violation(&e) => {
                let outcome: String =
                    sqlx::query_scalar("SELECT outcome FROM order_settlements WHERE order_id = ?")
                        .bind(order_id.as_str())
                        .fetch_one(self.db.pool())
                        .await?;
                if outcome == VOIDED {
                    return Ok(Voided::Voided);
                }
                // Written in the charge's transaction: the payment is there.
                self.by_order(order_id)
                    .await?
                    .map(Voided::Charged)
                    .ok_or_else(|| Error::PaymentNotFound(format!("for order {order_id}")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Payments whose order the reconciliation worker has not found settled yet, oldest
    /// first: card payments older than `created_before` (younger ones are still in their
    /// checkout), Alipay payments at any age (nobody else marks their order paid).
    pub async fn unreconciled(
        &self,
        created_before: i64,
        limit: i64,
    ) -> Result<Vec<Payment>, Error> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments \
             WHERE reconciled_at IS NULL AND (created_at <= ? OR payment_method = 'alipay') \
             ORDER BY created_at LIMIT ?"
        )))
        .bind(created_before)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows
            .iter()
            .map(payment_from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Records that the payment's order is settled: the worker stops looking at it.
    pub async fn mark_reconciled(&self, transaction_id: &str) -> Result<(), Error> {
        sqlx::query("UPDATE payments SET reconciled_at = ? WHERE transaction_id = ?")
            .bind(unix_secs())
            .bind(transaction_id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// A payment by transaction id.
    pub async fn get(&self, transaction_id: &TransactionId) -> Result<Option<Payment>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE transaction_id = ?"
        )))
        .bind(transaction_id.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(payment_from_row).transpose()?)
    }

    /// The payment of an order.
    pub async fn by_order(&self, order_id: &OrderId) -> Result<Option<Payment>, Error> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = ?"
        )))
        .bind(order_id.as_str())
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(payment_from_row).transpose()?)
    }

    /// Refunds part or all of a payment and records the refund as `refund_id` (request
    /// `out_request_no`, in `status`), atomically: concurrent refunds can never add up to more
    /// than the charge. Returns the payment as it was before.
    pub async fn refund(
        &self,
        refund: &Refund,
        refund_id: &str,
        out_request_no: &str,
        status: RefundStatus,
    ) -> Result<Payment, Error> {
        self.db
            .retrying("refund", || {
                self.refund_once(refund, refund_id, out_request_no, status)
            })
            .await
    }

    async fn refund_once(
        &self,
        refund: &Refund,
        refund_id: &str,
        out_request_no: &str,
        status: RefundStatus,
    ) -> Result<Payment, Error> {
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE transaction_id = ?"
        )))
        .bind(refund.transaction_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let payment = row
            .as_ref()
            .map(payment_from_row)
            .transpose()?
            .ok_or_else(|| Error::PaymentNotFound(refund.transaction_id.to_string()))?;
        refund.check_against(&payment)?;
        // The read above may be stale (MySQL reads a snapshot); this statement is the check that
        // counts. `status` comes first: MySQL evaluates SET left to right with updated values.
        let updated = sqlx::query(
            "UPDATE payments SET \
             status = CASE WHEN refunded_cents + ? >= amount_cents THEN 'refunded' ELSE 'partially_refunded' END, \
             refunded_cents = refunded_cents + ?, updated_at = ? \
             WHERE transaction_id = ? AND order_id = ? AND user_id = ? AND refunded_cents + ? <= amount_cents",
        )
        .bind(refund.amount_cents.get())
        .bind(refund.amount_cents.get())
        .bind(now)
        .bind(refund.transaction_id.as_str())
        .bind(refund.order_id.as_str())
        .bind(refund.user_id.db())
        .bind(refund.amount_cents.get())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::RefundExceedsRemaining);
        }
        sqlx::query(
            "INSERT INTO refunds (refund_id, transaction_id, amount_cents, reason, created_at, \
             out_request_no, status) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(refund_id)
        .bind(refund.transaction_id.as_str())
        .bind(refund.amount_cents.get())
        .bind(refund.reason.as_str())
        .bind(now)
        .bind(out_request_no)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        // A pending (Alipay) refund is told when Alipay confirms it (`finish_refund`).
        if status == RefundStatus::Succeeded {
            let refunded = Payload::PaymentRefunded(PaymentRefunded {
                refund_id: refund_id.to_string(),
                transaction_id: refund.transaction_id.to_string(),
                order_id: refund.order_id.to_string(),
                user_id: refund.user_id.get(),
                amount_cents: refund.amount_cents.get(),
            });
            Outbox::append(&mut tx, NAME, refund.order_id.as_str(), refunded).await?;
        }
        tx.commit().await?;
        Ok(payment)
    }

    /// The refund of payment `transaction_id` made for request `out_request_no`, if any.
    pub async fn refund_by_request(
        &self,
        transaction_id: &str,
        out_request_no: &str,
    ) -> Result<Option<StoredRefund>, Error> {
        let row = sqlx::query(
            "SELECT refund_id, transaction_id, amount_cents, reason, out_request_no, status \
             FROM refunds WHERE transaction_id = ? AND out_request_no = ?",
        )
        .bind(transaction_id)
        .bind(out_request_no)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(row.as_ref().map(refund_from_row).transpose()?)
    }

    /// Alipay refunds whose outcome is still unknown, oldest first.
    pub async fn pending_refunds(&self, limit: i64) -> Result<Vec<StoredRefund>, Error> {
        let rows = sqlx::query(
            "SELECT refund_id, transaction_id, amount_cents, reason, out_request_no, status \
             FROM refunds WHERE status = 'pending' ORDER BY created_at LIMIT ?",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.iter().map(refund_from_row).collect::<Result<_, _>>()?)
    }

    /// Alipay confirmed refund `refund_id`.
    /// Once only (the status guard), with its `payment.refunded` in the same transaction.
    pub async fn finish_refund(&self, refund_id: &str) -> Result<(), Error> {
        let mut tx = self.db.begin_write().await?;
        let finished = sqlx::query(
            "UPDATE refunds SET status = 'succeeded' WHERE refund_id = ? AND status = 'pending'",
        )
        .bind(refund_id)
        .execute(&mut *tx)
        .await?;
        if finished.rows_affected() == 1 {
            let row = sqlx::query(
                "SELECT r.transaction_id, r.amount_cents, p.order_id, p.user_id FROM refunds r \
                 JOIN payments p ON p.transaction_id = r.transaction_id WHERE r.refund_id = ?",
            )
            .bind(refund_id)
            .fetch_one(&mut *tx)
            .await?;
            let order_id: String = row.try_get(2)?;
            let refunded = Payload::PaymentRefunded(PaymentRefunded {
                refund_id: refund_id.to_string(),
                transaction_id: row.try_get(0)?,
                amount_cents: row.try_get(1)?,
                order_id: order_id.clone(),
                user_id: u64::try_from(row.try_get::<i64, _>(3)?).unwrap_or_default(),
            });
            Outbox::append(&mut tx, NAME, &order_id, refunded).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Alipay refused pending refund `refund_id`: its amount no longer counts against the
    /// payment. Once only (the status guard), in one transaction.
    pub async fn fail_refund(&self, refund: &StoredRefund) -> Result<(), Error> {
        let mut tx = self.db.begin_write().await?;
        let failed = sqlx::query(
            "UPDATE refunds SET status = 'failed' WHERE refund_id = ? AND status = 'pending'",
        )
        .bind(&refund.refund_id)
        .execute(&mut *tx)
        .await?;
        if failed.rows_affected() == 1 {
            sqlx::query(
                "UPDATE payments SET refunded_cents = refunded_cents - ?, \
                 status = CASE WHEN refunded_cents - ? <= 0 THEN 'paid' ELSE 'partially_refunded' END, \
                 updated_at = ? WHERE transaction_id = ? AND refunded_cents >= ?",
            )
            .bind(refund.amount_cents)
            .bind(refund.amount_cents)
            .bind(unix_secs())
            .bind(&refund.transaction_id)
            .bind(refund.amount_cents)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

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

const TRADE_COLUMNS: &str =
    "order_id, user_id, amount_cents, state, query_attempts, next_query_at, created_at";

/// Where a refund is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundStatus {
    /// Sent to Alipay, outcome unknown; its amount counts against the payment.
    Pending,
    /// Done.
    Succeeded,
    /// Refused by Alipay; its amount was given back to the payment.
    Failed,
}

impl RefundStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundStatus::Pending => "pending",
            RefundStatus::Succeeded => "succeeded",
            RefundStatus::Failed => "failed",
        }
    }

    fn from_stored(s: &str) -> Option<Self> {
        [
            RefundStatus::Pending,
            RefundStatus::Succeeded,
            RefundStatus::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A recorded refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRefund {
    /// Its id.
    pub refund_id: String,
    /// The payment refunded.
    pub transaction_id: String,
    /// Amount.
    pub amount_cents: i64,
    /// Why.
    pub reason: String,
    /// The request id (Alipay's `out_request_no`).
    pub out_request_no: String,
    /// Where it is.
    pub status: RefundStatus,
}

fn refund_from_row(row: &AnyRow) -> Result<StoredRefund, sqlx::Error> {
    let status: String = row.try_get("status")?;
    Ok(StoredRefund {
        refund_id: row.try_get("refund_id")?,
        transaction_id: row.try_get("transaction_id")?,
        amount_cents: row.try_get("amount_cents")?,
        reason: row.try_get("reason")?,
        out_request_no: row
            .try_get::<Option<String>, _>("out_request_no")?
            .unwrap_or_default(),
        status: RefundStatus::from_stored(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: format!("unknown refund status `{status}`").into(),
        })?,
    })
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
