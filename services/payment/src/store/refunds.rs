//! Refunds in the ledger: recorded with the payment's refunded total in one transaction (the
//! conditional `UPDATE` is the check that counts), looked up by request id, and, for Alipay,
//! kept pending until Alipay answers.

use mall_common::events::{Outbox, Payload, PaymentRefunded};
use mall_types::time::unix_secs;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Ledger, PAYMENT_COLUMNS, payment_from_row};
use crate::domain::{Payment, Refund};
use crate::error::Error;
use crate::settings::NAME;

impl Ledger {
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
            // `status` first: MySQL evaluates SET left to right with the values already updated
            // (SQLite with the old ones), so this order reads the same on both.
            sqlx::query(
                "UPDATE payments SET \
                 status = CASE WHEN refunded_cents - ? <= 0 THEN 'paid' ELSE 'partially_refunded' END, \
                 refunded_cents = refunded_cents - ?, \
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
}

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
