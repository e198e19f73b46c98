//! The payment ledger's SQL. One implementation for both backends (`?` placeholders, portable
//! types).
//!
//! Two rules are enforced by the database rather than by reading first, so they hold across
//! instances and under concurrency:
//! - one payment per order: `payments.order_id` is unique; a losing concurrent insert reads the
//!   winner back and the caller decides whether it was a repeat;
//! - refunds never exceed the charge: one conditional `UPDATE ... WHERE refunded_cents + ? <=
//!   amount_cents`, with the refund row inserted in the same transaction.

use mall_common::events::{Outbox, Payload, PaymentCharged};
use mall_common::store::{Database, Migrations, is_unique_violation};
use mall_types::time::unix_secs;
use mall_types::{Cents, OrderId, TransactionId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::domain::{CardSummary, Payment, PaymentMethod, STATUS_PAID};
use crate::error::Error;
use crate::settings::NAME;

pub mod refunds;
pub mod trades;

/// The ledger's migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

pub(crate) const PAYMENT_COLUMNS: &str = "transaction_id, order_id, user_id, amount_cents, refunded_cents, \
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
    pub method: PaymentMethod,
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

/// The payment ledger's repository. It is the source of payment's events (`payment.charged`
/// when a payment is recorded, card or Alipay; `payment.refunded` when a card refund is
/// recorded or Alipay confirms one), appended to the outbox in the transaction that records
/// it; the aggregate is the order id (one payment per order).
#[derive(Clone, Debug)]
pub struct Ledger {
    pub(crate) db: Database,
}

pub(crate) fn payment_from_row(row: &AnyRow) -> Result<Payment, sqlx::Error> {
    let method: String = row.try_get("payment_method")?;
    Ok(Payment {
        transaction_id: row.try_get("transaction_id")?,
        order_id: row.try_get("order_id")?,
        user_id: row.try_get("user_id")?,
        amount_cents: row.try_get("amount_cents")?,
        refunded_cents: row.try_get("refunded_cents")?,
        status: row.try_get("status")?,
        method: PaymentMethod::from_stored(&method).ok_or_else(|| sqlx::Error::ColumnDecode {
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
}
