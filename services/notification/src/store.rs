//! The notification service's SQL: the orders it has heard of (`orders`, from `order.placed`)
//! and the inbox of handled events (`inbox`, keyed by event id). One implementation for both
//! backends through sqlx `Any` and `?` placeholders.

use mall_common::store::{Backend, Database, Migrations};
use mall_types::time::unix_millis;
use sqlx::Row as _;

/// The migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

/// An order as `order.placed` described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOrder {
    /// The order id.
    pub order_id: String,
    /// The buyer.
    pub user_id: u64,
    /// Where the mail goes.
    pub email: String,
    /// ISO 4217.
    pub currency: String,
    /// The order total in cents.
    pub total_cents: i64,
    /// `(product_id, quantity, line cost in cents)`.
    pub items: Vec<(u64, u32, i64)>,
}

/// Where an event stands in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboxStatus {
    /// A send was started (and may or may not have reached the server).
    Sending,
    /// The mail was accepted by the server.
    Sent,
    /// Handled without a mail (e.g. `order.placed`, which is only remembered).
    Noted,
    /// Given up and dead-lettered.
    Dead,
}

impl InboxStatus {
    fn as_str(self) -> &'static str {
        match self {
            InboxStatus::Sending => "sending",
            InboxStatus::Sent => "sent",
            InboxStatus::Noted => "noted",
            InboxStatus::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<InboxStatus> {
        [
            InboxStatus::Sending,
            InboxStatus::Sent,
            InboxStatus::Noted,
            InboxStatus::Dead,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Whether the event is settled: a redelivery is acknowledged without doing anything.
    pub fn is_final(self) -> bool {
        !matches!(self, InboxStatus::Sending)
    }
}

/// One inbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxEntry {
    /// The event id.
    pub event_id: String,
    /// `order.paid`, ….
    pub event_type: String,
    /// Its aggregate (the order id for every mail).
    pub aggregate_id: String,
    /// Where it stands.
    pub status: InboxStatus,
    /// Send attempts so far.
    pub attempts: u32,
    /// The recipient of the mail, if any.
    pub recipient: String,
    /// The subject of the mail, if any.
    pub subject: String,
    /// The Message-ID of the mail, if any.
    pub message_id: String,
    /// The last send error, if any.
    pub last_error: String,
}

/// The repository.
#[derive(Clone, Debug)]
pub struct Notifications {
    db: Database,
}

/// Item lines as stored: one `<product_id> x<quantity> <cost_cents>` per line.
fn encode_items(items: &[(u64, u32, i64)]) -> String {
    items
        .iter()
        .map(|(p, q, c)| format!("{p} x{q} {c}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode_items(text: &str) -> Vec<(u64, u32, i64)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            let product = parts.next()?.parse().ok()?;
            let quantity = parts.next()?.strip_prefix('x')?.parse().ok()?;
            let cost = parts.next()?.parse().ok()?;
            Some((product, quantity, cost))
        })
        .collect()
}

impl Notifications {
    /// A repository on an open, migrated database.
    pub fn new(db: Database) -> Self {
        Notifications { db }
    }

    /// The database (for readiness checks).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Remembers `order` (a repeat of one order id keeps the first).
    pub async fn remember_order(&self, order: &KnownOrder) -> Result<(), sqlx::Error> {
        let insert = match self.db.backend() {
            Backend::MySql => {
                "INSERT IGNORE INTO orders (order_id, user_id, email, currency, total_cents, \
                 items, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            }
            Backend::Sqlite => {
                "INSERT OR IGNORE INTO orders (order_id, user_id, email, currency, total_cents, \
                 items, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            }
        };
        sqlx::query(insert)
            .bind(order.order_id.clone())
            .bind(i64::try_from(order.user_id).unwrap_or(i64::MAX))
            .bind(order.email.clone())
            .bind(order.currency.clone())
            .bind(order.total_cents)
            .bind(encode_items(&order.items))
            .bind(unix_millis())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// The order `order_id`, if `order.placed` told of it.
    pub async fn order(&self, order_id: &str) -> Result<Option<KnownOrder>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT order_id, user_id, email, currency, total_cents, items FROM orders \
             WHERE order_id = ?",
        )
        .bind(order_id.to_string())
        .fetch_optional(self.db.pool())
        .await?;
        row.map(|row| {
            Ok(KnownOrder {
                order_id: row.try_get("order_id")?,
                user_id: u64::try_from(row.try_get::<i64, _>("user_id")?).unwrap_or_default(),
                email: row.try_get("email")?,
                currency: row.try_get("currency")?,
                total_cents: row.try_get("total_cents")?,
                items: decode_items(&row.try_get::<String, _>("items")?),
            })
        })
        .transpose()
    }

    /// The inbox row of `event_id`, if any.
    pub async fn inbox(&self, event_id: &str) -> Result<Option<InboxEntry>, sqlx::Error> {
        let rows = self
            .inbox_where(
                "SELECT event_id, event_type, aggregate_id, status, attempts, recipient, \
                 subject, message_id, last_error FROM inbox WHERE event_id = ?",
                event_id.to_string(),
            )
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The inbox rows of the events about `aggregate_id` (an order id), oldest first.
    pub async fn inbox_of(&self, aggregate_id: &str) -> Result<Vec<InboxEntry>, sqlx::Error> {
        self.inbox_where(
            "SELECT event_id, event_type, aggregate_id, status, attempts, recipient, subject, \
             message_id, last_error FROM inbox WHERE aggregate_id = ? \
             ORDER BY updated_at, event_id",
            aggregate_id.to_string(),
        )
        .await
    }

    async fn inbox_where(
        &self,
        select: &'static str,
        value: String,
    ) -> Result<Vec<InboxEntry>, sqlx::Error> {
        let rows = sqlx::query(select)
            .bind(value)
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                Ok(InboxEntry {
                    event_id: row.try_get("event_id")?,
                    event_type: row.try_get("event_type")?,
                    aggregate_id: row.try_get("aggregate_id")?,
                    status: InboxStatus::parse(&status).unwrap_or(InboxStatus::Sending),
                    attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or_default(),
                    recipient: row.try_get("recipient")?,
                    subject: row.try_get("subject")?,
                    message_id: row.try_get("message_id")?,
                    last_error: row.try_get("last_error")?,
                })
            })
            .collect()
    }

    /// Claims `entry.event_id` for one more send attempt (status `sending`, attempts + 1),
    /// creating the row on the first; returns the attempt number.
    pub async fn claim(&self, entry: &InboxEntry) -> Result<u32, sqlx::Error> {
        let upsert = match self.db.backend() {
            Backend::MySql => {
                "INSERT INTO inbox (event_id, event_type, aggregate_id, status, attempts, \
                 recipient, subject, message_id, updated_at) VALUES (?, ?, ?, 'sending', 1, ?, ?, ?, ?) \
                 ON DUPLICATE KEY UPDATE attempts = attempts + 1, status = 'sending', \
                 updated_at = VALUES(updated_at)"
            }
            Backend::Sqlite => {
                "INSERT INTO inbox (event_id, event_type, aggregate_id, status, attempts, \
                 recipient, subject, message_id, updated_at) VALUES (?, ?, ?, 'sending', 1, ?, ?, ?, ?) \
                 ON CONFLICT (event_id) DO UPDATE SET attempts = attempts + 1, \
                 status = 'sending', updated_at = excluded.updated_at"
            }
        };
        sqlx::query(upsert)
            .bind(entry.event_id.clone())
            .bind(entry.event_type.clone())
            .bind(entry.aggregate_id.clone())
            .bind(entry.recipient.clone())
            .bind(entry.subject.clone())
            .bind(entry.message_id.clone())
            .bind(unix_millis())
            .execute(self.db.pool())
            .await?;
        let attempts: i64 = sqlx::query_scalar("SELECT attempts FROM inbox WHERE event_id = ?")
            .bind(entry.event_id.clone())
            .fetch_one(self.db.pool())
            .await?;
        Ok(u32::try_from(attempts).unwrap_or(u32::MAX))
    }

    /// Settles `event_id` as `status`, noting `error` (empty for none).
    pub async fn settle(
        &self,
        event_id: &str,
        status: InboxStatus,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE inbox SET status = ?, last_error = ?, updated_at = ? WHERE event_id = ?",
        )
        .bind(status.as_str())
        .bind(truncate(error, 1000))
        .bind(unix_millis())
        .bind(event_id.to_string())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Records an event that sends no mail as `noted` (a repeat changes nothing).
    pub async fn note(
        &self,
        event_id: &str,
        event_type: &str,
        aggregate_id: &str,
    ) -> Result<(), sqlx::Error> {
        let insert = match self.db.backend() {
            Backend::MySql => {
                "INSERT IGNORE INTO inbox (event_id, event_type, aggregate_id, status, attempts, \
                 updated_at) VALUES (?, ?, ?, 'noted', 0, ?)"
            }
            Backend::Sqlite => {
                "INSERT OR IGNORE INTO inbox (event_id, event_type, aggregate_id, status, \
                 attempts, updated_at) VALUES (?, ?, ?, 'noted', 0, ?)"
            }
        };
        sqlx::query(insert)
            .bind(event_id.to_string())
            .bind(event_type.to_string())
            .bind(aggregate_id.to_string())
            .bind(unix_millis())
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_lines_round_trip() {
        let items = vec![(1, 2, 1998), (42, 1, 5)];
        assert_eq!(decode_items(&encode_items(&items)), items);
        assert_eq!(decode_items(""), vec![]);
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
