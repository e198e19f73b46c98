//! The payment ledger's SQL. One implementation for both backends (`?` placeholders, portable
//! types).
//!
//! Two rules are enforced by the database rather than by reading first, so they hold across
//! instances and under concurrency:
//! - one payment per order: `payments.order_id` is unique; a losing concurrent insert reads the
//!   winner back and the caller decides whether it was a repeat;
//! - refunds never exceed the charge: one conditional `UPDATE ... WHERE refunded_cents + ? <=
//!   amount_cents`, with the refund row inserted in the same transaction.

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
}

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
    /// payment (the unique key on `order_id` decides, also between concurrent requests).
    pub async fn record(&self, new: &NewPayment) -> Result<Recorded, Error> {
        let now = unix_secs();
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
        .execute(self.db.pool())
        .await;
        match inserted {
            Ok(_) => Ok(Recorded::New),
            Err(e) if is_unique_violation(&e) => match self.by_order(&new.order_id).await? {
                Some(existing) => Ok(Recorded::Existing(existing)),
                // The clash was on the transaction id, not the order.
                None => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
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

    /// Refunds part or all of a payment and records the refund as `refund_id`, atomically:
    /// concurrent refunds can never add up to more than the charge.
    pub async fn refund(&self, refund: &Refund, refund_id: &str) -> Result<(), Error> {
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
            "INSERT INTO refunds (refund_id, transaction_id, amount_cents, reason, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(refund_id)
        .bind(refund.transaction_id.as_str())
        .bind(refund.amount_cents.get())
        .bind(refund.reason.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
