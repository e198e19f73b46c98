//! The carts' SQL. One implementation for both backends through sqlx `Any`, `?` placeholders
//! and portable types.
//!
//! Quantities change only through single conditional statements (`SET quantity = quantity + ?
//! ... AND quantity + ? <= 999`), never read-then-write, so concurrent `AddItem`s on one line
//! never lose an increment. A missing line is inserted; when a concurrent insert wins the unique
//! key, the statement is retried against the line it created.

use mall_common::store::{Backend, Database, Migrations, is_unique_violation};
use mall_types::money::MAX_QUANTITY;
use mall_types::time::{unix_millis, unix_secs};
use mall_types::{ProductId, Quantity, UserId};
use sqlx::any::AnyQueryResult;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::domain::{Addition, CartLine};
use crate::error::Error;

/// The carts' migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

/// How many times an upsert goes round (update → insert → update) before giving up on a line
/// that other writers keep inserting and deleting.
const MAX_UPSERT_ROUNDS: usize = 3;

/// The carts' repository.
#[derive(Clone, Debug)]
pub struct Carts {
    db: Database,
}

/// The connection one upsert runs on.
///
/// SQLite: a write transaction (`BEGIN IMMEDIATE`), so the update and the insert run under one
/// write lock and no other writer slips between them. MySQL: plain autocommit statements, each
/// atomic on its own; in a transaction the update of a missing row would take a gap lock, and
/// two concurrent first adds would deadlock on each other's insert.
enum Writer {
    Sqlite(Transaction<'static, Any>),
    MySql(PoolConnection<Any>),
}

impl Writer {
    fn conn(&mut self) -> &mut AnyConnection {
        match self {
            Writer::Sqlite(tx) => tx,
            Writer::MySql(conn) => conn,
        }
    }

    async fn finish(self) -> Result<(), sqlx::Error> {
        match self {
            Writer::Sqlite(tx) => tx.commit().await,
            Writer::MySql(_) => Ok(()),
        }
    }
}

impl Carts {
    /// A repository on an open, migrated database.
    pub fn new(db: Database) -> Self {
        Carts { db }
    }

    /// The database (for readiness checks).
    pub fn database(&self) -> &Database {
        &self.db
    }

    async fn writer(&self) -> Result<Writer, sqlx::Error> {
        Ok(match self.db.backend() {
            Backend::Sqlite => Writer::Sqlite(self.db.begin_write().await?),
            Backend::MySql => Writer::MySql(self.db.pool().acquire().await?),
        })
    }

    /// A new line; a unique violation means a concurrent writer created it first. Lines are
    /// listed by `added_at_ms`, the order they were first added in.
    async fn insert_line(
        conn: &mut AnyConnection,
        user_id: UserId,
        product_id: ProductId,
        quantity: Quantity,
    ) -> Result<AnyQueryResult, sqlx::Error> {
        sqlx::query(
            "INSERT INTO cart_items (user_id, product_id, quantity, added_at_ms, updated_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(user_id.db())
        .bind(product_id.db())
        .bind(quantity.db())
        .bind(unix_millis())
        .bind(unix_secs())
        .execute(conn)
        .await
    }

    /// Adds to the line's quantity if the line exists and stays within the limit; true if it did.
    async fn increment(conn: &mut AnyConnection, a: &Addition) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE cart_items SET quantity = quantity + ?, updated_at = ? \
             WHERE user_id = ? AND product_id = ? AND quantity + ? <= ?",
        )
        .bind(a.quantity.db())
        .bind(unix_secs())
        .bind(a.user_id.db())
        .bind(a.product_id.db())
        .bind(a.quantity.db())
        .bind(i64::from(MAX_QUANTITY))
        .execute(conn)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The line's current quantity, if there is a line.
    async fn quantity(
        conn: &mut AnyConnection,
        user_id: UserId,
        product_id: ProductId,
    ) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT quantity FROM cart_items WHERE user_id = ? AND product_id = ?")
            .bind(user_id.db())
            .bind(product_id.db())
            .fetch_optional(conn)
            .await
    }

    /// Adds units to a line, creating it when missing. A line that would pass 999 is
    /// [`Error::LineFull`] and stays as it was.
    pub async fn add(&self, a: &Addition) -> Result<(), Error> {
        let mut writer = self.writer().await?;
        for _ in 0..MAX_UPSERT_ROUNDS {
            let conn = writer.conn();
            if Self::increment(conn, a).await? {
                return Ok(writer.finish().await?);
            }
            match Self::insert_line(conn, a.user_id, a.product_id, a.quantity).await {
                Ok(_) => return Ok(writer.finish().await?),
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
            // A concurrent add created the line between our update and insert: add to it.
            if Self::increment(conn, a).await? {
                return Ok(writer.finish().await?);
            }
            match Self::quantity(conn, a.user_id, a.product_id).await? {
                Some(q) if q + a.quantity.db() > i64::from(MAX_QUANTITY) => {
                    return Err(Error::LineFull(a.product_id.get()));
                }
                // Removed or lowered meanwhile: go round again.
                _ => {}
            }
        }
        Err(Error::Contended(a.product_id.get()))
    }

    /// Sets a line's quantity, creating the line when missing.
    pub async fn set(
        &self,
        user_id: UserId,
        product_id: ProductId,
        quantity: Quantity,
    ) -> Result<(), Error> {
        let mut writer = self.writer().await?;
        for _ in 0..MAX_UPSERT_ROUNDS {
            let conn = writer.conn();
            let done = sqlx::query(
                "UPDATE cart_items SET quantity = ?, updated_at = ? \
                 WHERE user_id = ? AND product_id = ?",
            )
            .bind(quantity.db())
            .bind(unix_secs())
            .bind(user_id.db())
            .bind(product_id.db())
            .execute(&mut *conn)
            .await?;
            // MySQL counts only rows that changed; a line already at `quantity` reads as 0 and
            // falls through to the insert, whose unique violation brings us back here.
            if done.rows_affected() > 0 {
                return Ok(writer.finish().await?);
            }
            match Self::insert_line(conn, user_id, product_id, quantity).await {
                Ok(_) => return Ok(writer.finish().await?),
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
            if Self::quantity(conn, user_id, product_id).await? == Some(quantity.db()) {
                return Ok(writer.finish().await?);
            }
        }
        Err(Error::Contended(product_id.get()))
    }

    /// Removes one line; a missing line is fine.
    pub async fn remove(&self, user_id: UserId, product_id: ProductId) -> Result<(), Error> {
        sqlx::query("DELETE FROM cart_items WHERE user_id = ? AND product_id = ?")
            .bind(user_id.db())
            .bind(product_id.db())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Removes every line of a cart; an empty cart is fine.
    pub async fn empty(&self, user_id: UserId) -> Result<u64, Error> {
        let done = sqlx::query("DELETE FROM cart_items WHERE user_id = ?")
            .bind(user_id.db())
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// A cart's lines in the order they were first added.
    pub async fn lines(&self, user_id: UserId) -> Result<Vec<CartLine>, Error> {
        let rows = sqlx::query(
            "SELECT product_id, quantity FROM cart_items WHERE user_id = ? \
             ORDER BY added_at_ms, id",
        )
        .bind(user_id.db())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(CartLine {
                    product_id: row.try_get(0)?,
                    quantity: row.try_get(1)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Error::from)
    }
}
