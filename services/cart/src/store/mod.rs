//! The carts' SQL. One implementation for both backends through sqlx `Any`, `?` placeholders
//! and portable types.
//!
//! Every write that adds to a cart is one transaction that first locks the cart's row in `carts`
//! (an upsert), so the writes of one cart run one at a time: what a write reads of its cart (is the line there? how
//! many lines?) still holds when it writes, and the 100-line cap cannot be passed by concurrent
//! adds. `RemovePurchased` only takes units out and skips that lock (see
//! [`Carts::remove_purchased`]). Different carts share no lock (record locks only, under READ COMMITTED), and a lock
//! conflict the database aborts anyway is run again ([`Database::retrying`]).

use mall_common::store::{Backend, Database, Migrations, Tx, TxConn, is_unique_violation};
use mall_types::money::{MAX_ORDER_LINES, MAX_QUANTITY};
use mall_types::time::{unix_millis, unix_secs};
use mall_types::{ProductId, Quantity, UserId};
use sqlx::{AssertSqlSafe, Row};

use crate::domain::{Addition, CartLine, Purchase};
use crate::error::Error;

/// The carts' migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

/// The carts' repository.
#[derive(Clone, Debug)]
pub struct Carts {
    db: Database,
}

/// What [`Carts::remove_purchased`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The purchase's units were taken out now.
    Removed,
    /// They were taken out before (a repeat): nothing changed.
    Repeat,
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

    /// A write transaction holding the lock of `user_id`'s cart.
    async fn lock_cart(&self, user_id: UserId) -> Result<Tx, sqlx::Error> {
        let mut tx = self.db.begin_write().await?;
        let upsert = match self.db.backend() {
            Backend::MySql => {
                "INSERT INTO carts (user_id, updated_at) VALUES (?, ?) \
                 ON DUPLICATE KEY UPDATE updated_at = VALUES(updated_at)"
            }
            Backend::Sqlite => {
                "INSERT INTO carts (user_id, updated_at) VALUES (?, ?) \
                 ON CONFLICT (user_id) DO UPDATE SET updated_at = excluded.updated_at"
            }
        };
        sqlx::query(upsert)
            .bind(user_id.db())
            .bind(unix_secs())
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The line's current quantity, if there is a line.
    async fn quantity(
        conn: &mut TxConn,
        user_id: UserId,
        product_id: ProductId,
    ) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar("SELECT quantity FROM cart_items WHERE user_id = ? AND product_id = ?")
            .bind(user_id.db())
            .bind(product_id.db())
            .fetch_optional(conn)
            .await
    }

    /// A new line at the end of the cart, unless the cart holds [`MAX_ORDER_LINES`] already.
    /// Lines are listed by `added_at_ms`, the order they were first added in.
    async fn insert_line(
        conn: &mut TxConn,
        user_id: UserId,
        product_id: ProductId,
        quantity: Quantity,
    ) -> Result<(), Error> {
        let lines: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cart_items WHERE user_id = ?")
            .bind(user_id.db())
            .fetch_one(&mut *conn)
            .await?;
        if usize::try_from(lines).unwrap_or(usize::MAX) >= MAX_ORDER_LINES {
            return Err(Error::CartFull);
        }
        let inserted = sqlx::query(
            "INSERT INTO cart_items (user_id, product_id, quantity, added_at_ms, updated_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(user_id.db())
        .bind(product_id.db())
        .bind(quantity.db())
        .bind(unix_millis())
        .bind(unix_secs())
        .execute(conn)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            // Only a writer that skipped the cart's lock could have created it meanwhile.
            Err(e) if is_unique_violation(&e) => Err(Error::Contended(product_id.get())),
            Err(e) => Err(e.into()),
        }
    }

    /// Adds units to a line, creating it when missing. A line that would pass 999 is
    /// [`Error::LineFull`], a new line in a full cart [`Error::CartFull`]; both leave the cart
    /// as it was.
    pub async fn add(&self, a: &Addition) -> Result<(), Error> {
        self.db.retrying("AddItem", || self.add_once(a)).await
    }

    async fn add_once(&self, a: &Addition) -> Result<(), Error> {
        let mut tx = self.lock_cart(a.user_id).await?;
        let added = sqlx::query(
            "UPDATE cart_items SET quantity = quantity + ?, updated_at = ? \
             WHERE user_id = ? AND product_id = ? AND quantity + ? <= ?",
        )
        .bind(a.quantity.db())
        .bind(unix_secs())
        .bind(a.user_id.db())
        .bind(a.product_id.db())
        .bind(a.quantity.db())
        .bind(i64::from(MAX_QUANTITY))
        .execute(&mut *tx)
        .await?;
        if added.rows_affected() == 0 {
            if Self::quantity(&mut tx, a.user_id, a.product_id)
                .await?
                .is_some()
            {
                return Err(Error::LineFull(a.product_id.get()));
            }
            Self::insert_line(&mut tx, a.user_id, a.product_id, a.quantity).await?;
        }
        Ok(tx.commit().await?)
    }

    /// Sets a line's quantity, creating the line when missing (unless the cart is full).
    pub async fn set(
        &self,
        user_id: UserId,
        product_id: ProductId,
        quantity: Quantity,
    ) -> Result<(), Error> {
        self.db
            .retrying("UpdateItem", || {
                self.set_once(user_id, product_id, quantity)
            })
            .await
    }

    async fn set_once(
        &self,
        user_id: UserId,
        product_id: ProductId,
        quantity: Quantity,
    ) -> Result<(), Error> {
        let mut tx = self.lock_cart(user_id).await?;
        let done = sqlx::query(
            "UPDATE cart_items SET quantity = ?, updated_at = ? \
             WHERE user_id = ? AND product_id = ?",
        )
        .bind(quantity.db())
        .bind(unix_secs())
        .bind(user_id.db())
        .bind(product_id.db())
        .execute(&mut *tx)
        .await?;
        // MySQL counts only rows that changed: a line already at `quantity` reads as 0.
        if done.rows_affected() == 0
            && Self::quantity(&mut tx, user_id, product_id)
                .await?
                .is_none()
        {
            Self::insert_line(&mut tx, user_id, product_id, quantity).await?;
        }
        Ok(tx.commit().await?)
    }

    /// Removes one line; a missing line is fine.
    pub async fn remove(&self, user_id: UserId, product_id: ProductId) -> Result<(), Error> {
        self.db
            .retrying("RemoveItem", || async {
                sqlx::query("DELETE FROM cart_items WHERE user_id = ? AND product_id = ?")
                    .bind(user_id.db())
                    .bind(product_id.db())
                    .execute(self.db.pool())
                    .await
            })
            .await?;
        Ok(())
    }

    /// Removes every line of a cart; an empty cart is fine.
    pub async fn empty(&self, user_id: UserId) -> Result<u64, Error> {
        let done = self
            .db
            .retrying("EmptyCart", || async {
                sqlx::query("DELETE FROM cart_items WHERE user_id = ?")
                    .bind(user_id.db())
                    .execute(self.db.pool())
                    .await
            })
            .await?;
        Ok(done.rows_affected())
    }

    /// Takes a purchase's units out of its cart, once per order: each line loses the units
    /// bought (a line left with none is removed); lines of other products, and units added
    /// beyond those bought, stay. A repeat for the same order, however late, changes nothing.
    pub async fn remove_purchased(&self, purchase: &Purchase) -> Result<Removal, Error> {
        self.db
            .retrying("RemovePurchased", || self.remove_purchased_once(purchase))
            .await
    }

    /// The claim of the order, then one `DELETE` of every line bought whole, and only when a
    /// line is left over (the shopper added units since, or removed the line) one `UPDATE`
    /// taking the units bought from the lines that hold more. No cart lock: this only takes
    /// units out, so there is no cap to guard, and each statement locks just the lines it
    /// touches.
    async fn remove_purchased_once(&self, purchase: &Purchase) -> Result<Removal, Error> {
        let user = purchase.user_id.db();
        let n = purchase.lines.len();
        let mut tx = self.db.begin_write().await?;
        let marked = sqlx::query(
            "INSERT INTO cart_purchases (order_id, user_id, created_at) VALUES (?, ?, ?)",
        )
        .bind(purchase.order_id.as_str())
        .bind(user)
        .bind(unix_secs())
        .execute(&mut *tx)
        .await;
        match marked {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(Removal::Repeat),
            Err(e) => return Err(e.into()),
        }
        if n > 0 {
            let sql = format!(
                "DELETE FROM cart_items WHERE user_id = ? AND ({})",
                vec!["(product_id = ? AND quantity <= ?)"; n].join(" OR ")
            );
            let mut delete = sqlx::query(AssertSqlSafe(sql)).bind(user);
            for (product, bought) in &purchase.lines {
                delete = delete.bind(product.db()).bind(bought.db());
            }
            let deleted = delete.execute(&mut *tx).await?;
            if usize::try_from(deleted.rows_affected()).unwrap_or(usize::MAX) < n {
                Self::take_units(&mut tx, purchase).await?;
            }
        }
        tx.commit().await?;
        Ok(Removal::Removed)
    }

    /// Takes the units bought from the purchase's lines that hold more than that.
    async fn take_units(conn: &mut TxConn, purchase: &Purchase) -> Result<(), sqlx::Error> {
        let n = purchase.lines.len();
        let sql = format!(
            "UPDATE cart_items SET quantity = quantity - CASE product_id {} END, updated_at = ? \
             WHERE user_id = ? AND ({})",
            vec!["WHEN ? THEN ?"; n].join(" "),
            vec!["(product_id = ? AND quantity > ?)"; n].join(" OR ")
        );
        let mut update = sqlx::query(AssertSqlSafe(sql));
        for (product, bought) in &purchase.lines {
            update = update.bind(product.db()).bind(bought.db());
        }
        update = update.bind(unix_secs()).bind(purchase.user_id.db());
        for (product, bought) in &purchase.lines {
            update = update.bind(product.db()).bind(bought.db());
        }
        update.execute(conn).await?;
        Ok(())
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
