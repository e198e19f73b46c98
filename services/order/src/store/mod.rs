//! The orders' SQL. One implementation for both backends: statements use `?` placeholders and
//! portable types. Every status change is a conditional `UPDATE … WHERE status = <from>` after
//! [`transition`] approved the move, so two writers (a payment and the sweeper, two sweepers)
//! can never both win: exactly one `UPDATE` affects the row.
//!
//! Each change a customer or another system must learn of appends its event to the outbox in
//! the same transaction (after the `UPDATE`/`INSERT` that locks the order's row): `order.placed`
//! when `place` creates an order (not on an idempotent replay), `order.paid` on PENDING→PAID
//! only, `order.cancelled` on every PENDING→CANCELLED (`cancel`, `cancel_expired`).

use std::collections::HashMap;

use mall_common::events::{OrderCancelled, OrderLine, OrderPaid, OrderPlaced, Outbox, Payload};
use mall_common::paging::Page;
use mall_common::store::{Database, Migrations, is_unique_violation};
use mall_types::time::unix_secs;
use mall_types::{Address, OrderId, TransactionId, UserId};
use sqlx::{AssertSqlSafe, Row};

use crate::domain::{
    Line, NewOrder, Order, OrderStatus, PaymentMethod, TIMEOUT_CANCEL_REASON, new_order_id,
    transition,
};
use crate::error::Error;

/// The orders' migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

/// How often a conditional status change re-reads and retries after losing a race. A status
/// moves forward at most twice, so a few rounds always settle.
const STATUS_CHANGE_ATTEMPTS: usize = 4;

const ORDER_COLUMNS: &str = "id, user_id, status, currency, street_address, city, state, country, \
     zip_code, email, total_cents, transaction_id, created_at, paid_at, payment_method";

/// What `place` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The order's id.
    pub id: String,
    /// False when the idempotency key named an existing order.
    pub created: bool,
}

/// What `mark_paid` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paid {
    /// The order moved PENDING→PAID now.
    Now,
    /// It was already paid by this transaction; nothing changed.
    Already,
}

/// A PENDING order past the payment timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// The order.
    pub id: String,
    /// Its customer.
    pub user_id: i64,
    /// How it is paid.
    pub payment_method: PaymentMethod,
}

/// The source of the orders' events.
const NAME: &str = mall_types::ServiceName::Order.as_str();

/// `order.placed` for the new order `id`.
fn placed_event(id: &str, new: &NewOrder) -> Payload {
    Payload::OrderPlaced(OrderPlaced {
        order_id: id.to_string(),
        user_id: new.user_id.get(),
        email: new.email.as_str().to_string(),
        currency: new.currency.clone(),
        total_cents: new.total_cents.get(),
        items: new
            .lines
            .iter()
            .map(|line| OrderLine {
                product_id: line.product_id.get(),
                quantity: u32::try_from(line.quantity.get()).unwrap_or_default(),
                cost_cents: line.cost_cents.get(),
            })
            .collect(),
        payment_method: new.payment_method.as_str().to_string(),
    })
}

/// `order.cancelled` for order `id`.
fn cancelled_event(id: &str, user_id: u64, reason: &str) -> Payload {
    Payload::OrderCancelled(OrderCancelled {
        order_id: id.to_string(),
        user_id,
        reason: reason.to_string(),
    })
}

/// The orders repository.
#[derive(Clone, Debug)]
pub struct Orders {
    db: Database,
}

#[derive(sqlx::FromRow)]
struct OrderRow {
    id: String,
    user_id: i64,
    status: i64,
    currency: String,
    street_address: String,
    city: String,
    state: String,
    country: String,
    zip_code: String,
    email: String,
    total_cents: i64,
    transaction_id: Option<String>,
    created_at: i64,
    paid_at: Option<i64>,
    payment_method: String,
}

impl OrderRow {
    fn into_order(self, lines: Vec<Line>) -> Result<Order, Error> {
        let status = OrderStatus::from_code(self.status).ok_or_else(|| {
            Error::Corrupt(format!("order {} has status {}", self.id, self.status))
        })?;
        let payment_method = PaymentMethod::from_stored(&self.payment_method).ok_or_else(|| {
            Error::Corrupt(format!(
                "order {} has payment method {}",
                self.id, self.payment_method
            ))
        })?;
        Ok(Order {
            payment_method,
            id: self.id,
            user_id: self.user_id,
            status,
            currency: self.currency,
            address: Address::from_stored(
                self.street_address,
                self.city,
                self.state,
                self.country,
                self.zip_code,
            ),
            email: self.email,
            lines,
            total_cents: self.total_cents,
            transaction_id: self.transaction_id,
            created_at: self.created_at,
            paid_at: self.paid_at,
        })
    }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn status_of(code: i64, id: &str) -> Result<OrderStatus, Error> {
    OrderStatus::from_code(code)
        .ok_or_else(|| Error::Corrupt(format!("order {id} has status {code}")))
}

impl Orders {
    /// A repository on an open, migrated database.
    pub fn new(db: Database) -> Self {
        Orders { db }
    }

    /// The database (for readiness checks).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The order `user_id` placed with `key`, if any.
    async fn find_by_key(&self, user_id: UserId, key: &str) -> Result<Option<String>, Error> {
        Ok(
            sqlx::query_scalar("SELECT id FROM orders WHERE user_id = ? AND idempotency_key = ?")
                .bind(user_id.db())
                .bind(key)
                .fetch_optional(self.db.pool())
                .await?,
        )
    }

    /// Writes a PENDING order and its lines in one transaction. With an idempotency key, the
    /// same (user, key) always gives the same order, also when two requests race: the unique
    /// key lets one insert win and the other reads the winner back.
    pub async fn place(&self, new: &NewOrder) -> Result<Placed, Error> {
        self.db.retrying("place", || self.place_once(new)).await
    }

    /// The order row first (no lookup before: a repeated key fails on the unique key and reads
    /// the winner back), then every line in one multi-row `INSERT`.
    async fn place_once(&self, new: &NewOrder) -> Result<Placed, Error> {
        let id = new_order_id();
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO orders (id, user_id, idempotency_key, status, currency, street_address, \
             city, state, country, zip_code, email, total_cents, created_at, updated_at, \
             payment_method) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(new.user_id.db())
        .bind(new.idempotency_key.clone().map(String::from))
        .bind(OrderStatus::Pending.code())
        .bind(&new.currency)
        .bind(&new.address.street_address)
        .bind(&new.address.city)
        .bind(&new.address.state)
        .bind(&new.address.country)
        .bind(&new.address.zip_code)
        .bind(new.email.as_str())
        .bind(new.total_cents.get())
        .bind(now)
        .bind(now)
        .bind(new.payment_method.as_str())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                if let Some(key) = &new.idempotency_key
                    && let Some(existing) = self.find_by_key(new.user_id, key).await?
                {
                    return Ok(Placed {
                        id: existing,
                        created: false,
                    });
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
        if !new.lines.is_empty() {
            let sql = format!(
                "INSERT INTO order_items (order_id, line_no, product_id, quantity, cost_cents) \
                 VALUES {}",
                vec!["(?, ?, ?, ?, ?)"; new.lines.len()].join(", ")
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (line_no, line) in new.lines.iter().enumerate() {
                query = query
                    .bind(&id)
                    .bind(i64::try_from(line_no).unwrap_or(i64::MAX))
                    .bind(line.product_id.db())
                    .bind(line.quantity.db())
                    .bind(line.cost_cents.get());
            }
            query.execute(&mut *tx).await?;
        }
        Outbox::append(&mut tx, NAME, &id, placed_event(&id, new)).await?;
        tx.commit().await?;
        Ok(Placed { id, created: true })
    }

    /// The lines of `ids`, by order id, each in the order placed.
    async fn lines_of(&self, ids: &[&str]) -> Result<HashMap<String, Vec<Line>>, Error> {
        let mut by_order: HashMap<String, Vec<Line>> = HashMap::new();
        if ids.is_empty() {
            return Ok(by_order);
        }
        let sql = format!(
            "SELECT order_id, product_id, quantity, cost_cents FROM order_items \
             WHERE order_id IN ({}) ORDER BY order_id, line_no",
            placeholders(ids.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(*id);
        }
        for row in query.fetch_all(self.db.pool()).await? {
            let order: String = row.try_get(0)?;
            let (product, quantity, cost): (i64, i64, i64) =
                (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            let line = Line::from_stored(product, quantity, cost).ok_or_else(|| {
                Error::Corrupt(format!(
                    "order {order} has a line of {quantity} x product {product} for {cost}"
                ))
            })?;
            by_order.entry(order).or_default().push(line);
        }
        Ok(by_order)
    }

    async fn with_lines(&self, rows: Vec<OrderRow>) -> Result<Vec<Order>, Error> {
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let mut lines = self.lines_of(&ids).await?;
        rows.into_iter()
            .map(|row| {
                let own = lines.remove(&row.id).unwrap_or_default();
                row.into_order(own)
            })
            .collect()
    }

    /// `user_id`'s order `id`; `None` when there is none or it belongs to someone else.
    pub async fn get(&self, user_id: UserId, id: &OrderId) -> Result<Option<Order>, Error> {
        let row = sqlx::query_as::<_, OrderRow>(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE id = ? AND user_id = ?"
        )))
        .bind(id.as_str())
        .bind(user_id.db())
        .fetch_optional(self.db.pool())
        .await?;
        match row {
            Some(row) => Ok(self.with_lines(vec![row]).await?.pop()),
            None => Ok(None),
        }
    }

    /// `user_id`'s orders, newest first, with the total count.
    pub async fn list(
        &self,
        user_id: UserId,
        status: Option<OrderStatus>,
        page: Page,
    ) -> Result<(Vec<Order>, u64), Error> {
        // `status = ?` or, for any status, a condition every row meets (`? = 0`, bound 0).
        let (filter, code) = match status {
            Some(s) => ("status = ?", s.code()),
            None => ("? = 0", 0),
        };
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM orders WHERE user_id = ? AND {filter}"
        )))
        .bind(user_id.db())
        .bind(code)
        .fetch_one(self.db.pool())
        .await?;
        let rows = sqlx::query_as::<_, OrderRow>(AssertSqlSafe(format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE user_id = ? AND {filter} \
             ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        )))
        .bind(user_id.db())
        .bind(code)
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(self.db.pool())
        .await?;
        Ok((
            self.with_lines(rows).await?,
            u64::try_from(total).unwrap_or(0),
        ))
    }

    /// The status and payment of `user_id`'s order `id`.
    async fn state(
        &self,
        user_id: UserId,
        id: &OrderId,
    ) -> Result<Option<(OrderStatus, Option<String>)>, Error> {
        let row =
            sqlx::query("SELECT status, transaction_id FROM orders WHERE id = ? AND user_id = ?")
                .bind(id.as_str())
                .bind(user_id.db())
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            Some(row) => Ok(Some((status_of(row.try_get(0)?, id)?, row.try_get(1)?))),
            None => Ok(None),
        }
    }

    /// PENDING→PAID by `transaction_id`. Repeating it with the same transaction is a no-op;
    /// another transaction, or any other status, is refused.
    pub async fn mark_paid(
        &self,
        user_id: UserId,
        id: &OrderId,
        transaction_id: &TransactionId,
    ) -> Result<Paid, Error> {
        self.db
            .retrying("mark_paid", || {
                self.mark_paid_once(user_id, id, transaction_id)
            })
            .await
    }

    /// One conditional `UPDATE` PENDING→PAID; only when it changes nothing is the order read,
    /// to tell a repeat (already PAID by this transaction) from a refusal.
    async fn mark_paid_once(
        &self,
        user_id: UserId,
        id: &OrderId,
        transaction_id: &TransactionId,
    ) -> Result<Paid, Error> {
        transition(OrderStatus::Pending, OrderStatus::Paid)?;
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query(
            "UPDATE orders SET status = ?, transaction_id = ?, paid_at = ?, updated_at = ? \
             WHERE id = ? AND user_id = ? AND status = ?",
        )
        .bind(OrderStatus::Paid.code())
        .bind(transaction_id.as_str())
        .bind(now)
        .bind(now)
        .bind(id.as_str())
        .bind(user_id.db())
        .bind(OrderStatus::Pending.code())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() > 0 {
            let paid = Payload::OrderPaid(OrderPaid {
                order_id: id.to_string(),
                user_id: user_id.get(),
                transaction_id: transaction_id.to_string(),
                email: None,
            });
            Outbox::append(&mut tx, NAME, id.as_str(), paid).await?;
            tx.commit().await?;
            return Ok(Paid::Now);
        }
        tx.rollback().await?;
        // Not PENDING (a status only moves forward, so this read is final for PENDING→PAID).
        let (status, paid_by) = self
            .state(user_id, id)
            .await?
            .ok_or_else(|| Error::OrderNotFound(id.to_string()))?;
        if status == OrderStatus::Paid {
            return match paid_by.as_deref() {
                Some(t) if t == transaction_id.as_str() => Ok(Paid::Already),
                _ => Err(Error::PaidByAnotherTransaction(id.to_string())),
            };
        }
        transition(status, OrderStatus::Paid)?;
        Err(Error::Contended(id.to_string()))
    }

    /// The customer's PENDING→CANCELLED. The caller then releases the stock reservation (see
    /// `sweeper::release_stock`); until that succeeds `stock_released` stays 0 and the sweeper
    /// retries it.
    pub async fn cancel(&self, user_id: UserId, id: &OrderId, reason: &str) -> Result<(), Error> {
        self.db
            .retrying("cancel", || self.cancel_once(user_id, id, reason))
            .await
    }

    async fn cancel_once(&self, user_id: UserId, id: &OrderId, reason: &str) -> Result<(), Error> {
        for _ in 0..STATUS_CHANGE_ATTEMPTS {
            let (status, _) = self
                .state(user_id, id)
                .await?
                .ok_or_else(|| Error::OrderNotFound(id.to_string()))?;
            transition(status, OrderStatus::Cancelled)?;
            let now = unix_secs();
            let mut tx = self.db.begin_write().await?;
            let done = sqlx::query(
                "UPDATE orders SET status = ?, cancel_reason = ?, cancelled_at = ?, updated_at = ?, \
                 release_attempt_at = ?, release_attempts = release_attempts + 1 \
                 WHERE id = ? AND user_id = ? AND status = ?",
            )
            .bind(OrderStatus::Cancelled.code())
            .bind(reason)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(id.as_str())
            .bind(user_id.db())
            .bind(status.code())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                let cancelled = cancelled_event(id.as_str(), user_id.get(), reason);
                Outbox::append(&mut tx, NAME, id.as_str(), cancelled).await?;
                tx.commit().await?;
                return Ok(());
            }
        }
        Err(Error::Contended(id.to_string()))
    }

    /// Up to `limit` PENDING orders placed before `cutoff`, oldest first.
    pub async fn expired_pending(&self, cutoff: i64, limit: i64) -> Result<Vec<Expired>, Error> {
        let rows = sqlx::query(
            "SELECT id, user_id, payment_method FROM orders WHERE status = ? AND created_at < ? \
             ORDER BY created_at, id LIMIT ?",
        )
        .bind(OrderStatus::Pending.code())
        .bind(cutoff)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get(0)?;
                let method: String = row.try_get(2)?;
                let payment_method = PaymentMethod::from_stored(&method).ok_or_else(|| {
                    Error::Corrupt(format!("order {id} has payment method {method}"))
                })?;
                Ok(Expired {
                    user_id: row.try_get(1)?,
                    id,
                    payment_method,
                })
            })
            .collect()
    }

    /// The sweeper's claim on an expired order: PENDING→CANCELLED ("payment timeout") if it is
    /// still PENDING and older than `cutoff`. True for exactly one of several concurrent
    /// sweepers; only that one releases the stock.
    pub async fn cancel_expired(
        &self,
        expired: &Expired,
        cutoff: i64,
        now: i64,
    ) -> Result<bool, Error> {
        transition(OrderStatus::Pending, OrderStatus::Cancelled)?;
        let id = expired.id.as_str();
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query(
            "UPDATE orders SET status = ?, cancel_reason = ?, cancelled_at = ?, updated_at = ?, \
             release_attempt_at = ?, release_attempts = release_attempts + 1 \
             WHERE id = ? AND status = ? AND created_at < ?",
        )
        .bind(OrderStatus::Cancelled.code())
        .bind(TIMEOUT_CANCEL_REASON)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(OrderStatus::Pending.code())
        .bind(cutoff)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let user_id = u64::try_from(expired.user_id).unwrap_or_default();
        let cancelled = cancelled_event(id, user_id, TIMEOUT_CANCEL_REASON);
        Outbox::append(&mut tx, NAME, id, cancelled).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Up to `limit` CANCELLED orders whose stock is not back yet and whose last release attempt
    /// was at or before `cutoff`.
    pub async fn releases_due(&self, cutoff: i64, limit: i64) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM orders WHERE status = ? AND stock_released = 0 \
             AND (release_attempt_at IS NULL OR release_attempt_at <= ?) \
             ORDER BY release_attempt_at, id LIMIT ?",
        )
        .bind(OrderStatus::Cancelled.code())
        .bind(cutoff)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Claims one release retry, so concurrent sweepers do not all call product for the same
    /// order: true when this caller's `UPDATE` moved the attempt time.
    pub async fn claim_release(&self, id: &str, cutoff: i64, now: i64) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE orders SET release_attempt_at = ?, release_attempts = release_attempts + 1 \
             WHERE id = ? AND status = ? AND stock_released = 0 \
             AND (release_attempt_at IS NULL OR release_attempt_at <= ?)",
        )
        .bind(now)
        .bind(id)
        .bind(OrderStatus::Cancelled.code())
        .bind(cutoff)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that product gave the order's reserved stock back.
    pub async fn mark_released(&self, id: &str) -> Result<(), Error> {
        sqlx::query("UPDATE orders SET stock_released = 1, updated_at = ? WHERE id = ?")
            .bind(unix_secs())
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Whether order `id`'s stock has been given back (tests and diagnostics).
    pub async fn stock_released(&self, id: &str) -> Result<Option<bool>, Error> {
        let flag: Option<i64> =
            sqlx::query_scalar("SELECT stock_released FROM orders WHERE id = ?")
                .bind(id)
                .fetch_optional(self.db.pool())
                .await?;
        Ok(flag.map(|f| f != 0))
    }
}
