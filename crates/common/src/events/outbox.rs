//! The transactional outbox: events written in the transaction of the state change they
//! report, read back and marked sent by the [`Relay`](super::Relay).
//!
//! Tables (created by [`Outbox::install`], SQLite and MySQL alike):
//!
//! - `outbox`: `id` (autoincrement: the publish order), `event_id` (unique), `event_type`,
//!   `source`, `aggregate_id`, `sequence` (unique per source and aggregate), `envelope` (the
//!   encoded [`Envelope`], its `sequence` filled in when published), `created_at` and
//!   `sent_at` (unix ms; `sent_at` NULL while unsent), `attempts` (failed publishes).
//! - `outbox_lease`: one row naming the relay instance that may publish, until when.

use std::sync::atomic::{AtomicBool, Ordering};

use prost::Message as _;
use sqlx::Row as _;

use super::{Envelope, Payload, envelope, now_unix_ms};
use crate::store::{Backend, Database};

const SQLITE_TABLES: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        event_type TEXT NOT NULL,
        source TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        envelope BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        sent_at INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        UNIQUE (source, aggregate_id, sequence)
    )",
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, id)",
    "CREATE TABLE IF NOT EXISTS outbox_lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    )",
    "INSERT OR IGNORE INTO outbox_lease (name, holder, expires_at) VALUES ('relay', '', 0)",
];

const MYSQL_TABLES: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS outbox (
        id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
        event_id CHAR(36) NOT NULL,
        event_type VARCHAR(64) NOT NULL,
        source VARCHAR(64) NOT NULL,
        aggregate_id VARCHAR(191) NOT NULL,
        sequence BIGINT NOT NULL,
        envelope MEDIUMBLOB NOT NULL,
        created_at BIGINT NOT NULL,
        sent_at BIGINT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        UNIQUE KEY outbox_event (event_id),
        UNIQUE KEY outbox_aggregate (source, aggregate_id, sequence),
        KEY outbox_unsent (sent_at, id)
    ) ENGINE = InnoDB",
    "CREATE TABLE IF NOT EXISTS outbox_lease (
        name VARCHAR(64) NOT NULL PRIMARY KEY,
        holder VARCHAR(64) NOT NULL,
        expires_at BIGINT NOT NULL
    ) ENGINE = InnoDB",
    "INSERT IGNORE INTO outbox_lease (name, holder, expires_at) VALUES ('relay', '', 0)",
];

/// One statement per event: the next sequence of (source, aggregate) is read and written by the
/// same `INSERT … SELECT`, and returned (`RETURNING`: SQLite 3.35+, MariaDB 10.5+; MySQL 8 has
/// none and gets [`APPEND_PLAIN`]).
const APPEND: &str = "INSERT INTO outbox \
    (event_id, event_type, source, aggregate_id, sequence, envelope, created_at, attempts) \
    SELECT ?, ?, ?, ?, COALESCE(MAX(sequence), 0) + 1, ?, ?, 0 \
    FROM outbox WHERE source = ? AND aggregate_id = ? \
    RETURNING sequence";

/// [`APPEND`] without `RETURNING`, for MySQL 8 (which has none), followed by [`SEQUENCE_OF`].
const APPEND_PLAIN: &str = "INSERT INTO outbox \
    (event_id, event_type, source, aggregate_id, sequence, envelope, created_at, attempts) \
    SELECT ?, ?, ?, ?, COALESCE(MAX(sequence), 0) + 1, ?, ?, 0 \
    FROM outbox WHERE source = ? AND aggregate_id = ?";
const SEQUENCE_OF: &str = "SELECT sequence FROM outbox WHERE event_id = ?";

/// Set once a server refused `RETURNING` as a syntax error (MySQL 8): from then on every append
/// is [`APPEND_PLAIN`] and [`SEQUENCE_OF`], two statements.
static WITHOUT_RETURNING: AtomicBool = AtomicBool::new(false);

/// Whether `e` is the SQL syntax error (SQLSTATE 42000) of a server without `INSERT … RETURNING`.
fn refused_returning(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42000"))
}

/// The transactional outbox of a service's database (see the [module docs](super)).
#[derive(Debug, Clone, Copy)]
pub struct Outbox;

/// An unsent row, as the relay reads it.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// The row id (publish order).
    pub id: i64,
    /// The envelope, with its `sequence` filled in.
    pub envelope: Envelope,
    /// When it was written (unix ms).
    pub created_at: i64,
    /// Failed publishes so far.
    pub attempts: i64,
}

impl Outbox {
    /// Creates the outbox tables when missing. Idempotent; every instance may run it at start.
    pub async fn install(db: &Database) -> Result<(), sqlx::Error> {
        let statements: &[&str] = match db.backend() {
            Backend::Sqlite => &SQLITE_TABLES,
            Backend::MySql => &MYSQL_TABLES,
        };
        for statement in statements {
            sqlx::query(*statement).execute(db.pool()).await?;
        }
        Ok(())
    }

    /// Writes the event `payload` about `aggregate_id` from `source` in the caller's
    /// transaction (one statement): a fresh event id, the aggregate's next sequence, the time
    /// and the current span's trace context. Returns the envelope as it will be published.
    pub async fn append(
        tx: &mut crate::store::Tx,
        source: &str,
        aggregate_id: &str,
        payload: Payload,
    ) -> Result<Envelope, sqlx::Error> {
        let mut envelope = envelope(source, aggregate_id, payload);
        let encoded = envelope.encode_to_vec();
        let insert = |sql: &'static str| {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(envelope.event_id.clone())
                .bind(envelope.r#type.clone())
                .bind(source.to_string())
                .bind(aggregate_id.to_string())
                .bind(encoded.clone())
                .bind(envelope.occurred_at_unix_ms)
                .bind(source.to_string())
                .bind(aggregate_id.to_string())
        };
        let returned = if WITHOUT_RETURNING.load(Ordering::Relaxed) {
            None
        } else {
            match insert(APPEND).fetch_one(&mut **tx).await {
                Ok(sequence) => Some(sequence),
                // A statement refused at parse time changed nothing, and MySQL keeps the
                // transaction open after it.
                Err(e) if refused_returning(&e) => {
                    tracing::info!(
                        "the database has no INSERT … RETURNING; outbox appends take two statements"
                    );
                    WITHOUT_RETURNING.store(true, Ordering::Relaxed);
                    None
                }
                Err(e) => return Err(e),
            }
        };
        let sequence = match returned {
            Some(sequence) => sequence,
            None => {
                insert(APPEND_PLAIN).fetch_optional(&mut **tx).await?;
                sqlx::query_scalar(SEQUENCE_OF)
                    .bind(envelope.event_id.clone())
                    .fetch_one(&mut **tx)
                    .await?
            }
        };
        envelope.sequence = u64::try_from(sequence).unwrap_or_default();
        Ok(envelope)
    }

    /// Makes every append take the two statements MySQL 8 needs (no `RETURNING`), as after a
    /// server refused it: for tests of that path on servers that have `RETURNING`.
    #[doc(hidden)]
    pub fn append_without_returning() {
        WITHOUT_RETURNING.store(true, Ordering::Relaxed);
    }

    /// [`Outbox::append`] in a transaction of its own, for a caller with none (the event then
    /// reports a change that is already committed, or none).
    pub async fn append_now(
        db: &Database,
        source: &str,
        aggregate_id: &str,
        payload: Payload,
    ) -> Result<Envelope, sqlx::Error> {
        let mut tx = db.begin_write().await?;
        let envelope = Outbox::append(&mut tx, source, aggregate_id, payload).await?;
        tx.commit().await?;
        Ok(envelope)
    }

    /// Up to `limit` unsent rows in publish order.
    pub async fn unsent(db: &Database, limit: u32) -> Result<Vec<OutboxRow>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, sequence, envelope, created_at, attempts FROM outbox \
             WHERE sent_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let bytes: Vec<u8> = row.try_get("envelope")?;
                let mut envelope =
                    Envelope::decode(bytes.as_slice()).map_err(|e| sqlx::Error::ColumnDecode {
                        index: "envelope".into(),
                        source: Box::new(e),
                    })?;
                let sequence: i64 = row.try_get("sequence")?;
                envelope.sequence = u64::try_from(sequence).unwrap_or_default();
                Ok(OutboxRow {
                    id: row.try_get("id")?,
                    envelope,
                    created_at: row.try_get("created_at")?,
                    attempts: row.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// Marks the rows `ids` sent at `at` (unix ms), one statement per 500 ids.
    pub async fn mark_sent(db: &Database, ids: &[i64], at: i64) -> Result<(), sqlx::Error> {
        for chunk in ids.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!("UPDATE outbox SET sent_at = ? WHERE id IN ({marks})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at);
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(db.pool()).await?;
        }
        Ok(())
    }

    /// Counts a failed publish of row `id`.
    pub async fn note_failure(db: &Database, id: i64) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?")
            .bind(id)
            .execute(db.pool())
            .await
            .map(|_| ())
    }

    /// Deletes rows sent before `before` (unix ms), except the last row of each aggregate,
    /// which holds its sequence (the next event continues from it). Returns how many.
    pub async fn prune(db: &Database, before: i64) -> Result<u64, sqlx::Error> {
        let sql = match db.backend() {
            Backend::Sqlite => {
                "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ? AND EXISTS \
                 (SELECT 1 FROM outbox later WHERE later.source = outbox.source \
                  AND later.aggregate_id = outbox.aggregate_id \
                  AND later.sequence > outbox.sequence)"
            }
            Backend::MySql => {
                "DELETE o FROM outbox o JOIN outbox later ON later.source = o.source \
                 AND later.aggregate_id = o.aggregate_id AND later.sequence > o.sequence \
                 WHERE o.sent_at IS NOT NULL AND o.sent_at < ?"
            }
        };
        let done = sqlx::query(sql).bind(before).execute(db.pool()).await?;
        Ok(done.rows_affected())
    }

    /// Unsent rows and the `created_at` (unix ms) of the oldest.
    pub async fn backlog(db: &Database) -> Result<(i64, Option<i64>), sqlx::Error> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending, MIN(created_at) AS oldest FROM outbox \
             WHERE sent_at IS NULL",
        )
        .fetch_one(db.pool())
        .await?;
        Ok((row.try_get("pending")?, row.try_get("oldest")?))
    }

    /// Takes or renews the publishing lease for `holder` until `until` (unix ms) when it is
    /// free, expired or already `holder`'s. Whether `holder` has it.
    pub async fn lease(db: &Database, holder: &str, until: i64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE outbox_lease SET holder = ?, expires_at = ? \
             WHERE name = 'relay' AND (holder = ? OR expires_at < ?)",
        )
        .bind(holder.to_string())
        .bind(until)
        .bind(holder.to_string())
        .bind(now_unix_ms())
        .execute(db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up (a relay stopping), so another instance takes over at once.
    pub async fn release(db: &Database, holder: &str) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE outbox_lease SET expires_at = 0 WHERE name = 'relay' AND holder = ?")
            .bind(holder.to_string())
            .execute(db.pool())
            .await
            .map(|_| ())
    }
}
