//! The sagas' SQL. One implementation for both backends: statements use `?` placeholders and
//! portable types.
//!
//! Ownership: a saga is driven by whoever holds its lease (`lease_owner`, `lease_until` in unix
//! milliseconds). The request that starts a saga takes the lease with the insert; the recovery
//! worker takes expired leases with one conditional `UPDATE` ([`Sagas::claim`]), so exactly one
//! instance drives a saga at a time. Every progress write is conditional on the owner too
//! ([`Sagas::update`]): an owner that lost its lease stops instead of racing the new one.

use mall_common::store::{Database, Migrations, is_unique_violation};
use mall_types::time::{unix_millis, unix_secs};
use mall_types::{Cents, OrderId, TransactionId, UserId};
use sqlx::{AssertSqlSafe, Row};

use crate::domain::{Contact, PricedLine, SagaState, Step};
use crate::error::Error;

/// The sagas' migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

const SAGA_COLUMNS: &str = "id, user_id, idempotency_key, fingerprint, state, step, order_id, \
     transaction_id, total_cents, lines_json, contact_json, outcome_code, outcome_message, \
     lease_owner, lease_until, created_at, trace_parent, pay_url";

/// Longest stored outcome message.
const MAX_OUTCOME_MESSAGE: usize = 500;

/// Now as unix milliseconds (lease times).
pub fn now_ms() -> i64 {
    unix_millis()
}

/// The answer a checkout gave its client: OK with the ids, or an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The gRPC code (`Ok` for success).
    pub code: tonic::Code,
    /// The status message (empty on success).
    pub message: String,
}

/// One stored saga.
#[derive(Debug, Clone)]
pub struct Saga {
    /// Saga id (UUIDv7); the order's idempotency key.
    pub id: String,
    /// The buyer.
    pub user_id: UserId,
    /// The stored idempotency key (`k:…` or `fp:…`).
    pub idempotency_key: String,
    /// Keyed request digest.
    pub fingerprint: String,
    /// Overall state.
    pub state: SagaState,
    /// Progress.
    pub step: Step,
    /// The order, once placed.
    pub order_id: Option<OrderId>,
    /// The payment, once charged.
    pub transaction_id: Option<TransactionId>,
    /// The total, once priced.
    pub total_cents: Option<Cents>,
    /// The priced lines (empty until priced).
    pub lines: Vec<PricedLine>,
    /// Names, email, address.
    pub contact: Contact,
    /// What the client was told, once decided.
    pub outcome: Option<Outcome>,
    /// Unix seconds.
    pub created_at: i64,
    /// The `traceparent` of the request that opened it, while traces were exported.
    pub trace_parent: Option<String>,
    /// An Alipay checkout's pay link, once made.
    pub pay_url: Option<String>,
}

/// A new saga row.
#[derive(Debug, Clone)]
pub struct NewSaga<'a> {
    /// Saga id.
    pub id: &'a str,
    /// The buyer.
    pub user_id: UserId,
    /// The stored idempotency key.
    pub idempotency_key: &'a str,
    /// Keyed request digest.
    pub fingerprint: &'a str,
    /// Names, email, address.
    pub contact: &'a Contact,
    /// The `traceparent` of the request opening it (see [`Saga::trace_parent`]).
    pub trace_parent: Option<&'a str>,
    /// Where it starts: the priced lines and their total (step `placing_order`, running), or
    /// the answer of a request refused before any other service was written to (step
    /// `rejected`, failed, the lease given up).
    pub start: Start<'a>,
}

/// How a new saga row starts (see [`NewSaga::start`]).
#[derive(Debug, Clone)]
pub enum Start<'a> {
    /// Priced: the remote steps follow, driven by the lease holder.
    Priced {
        /// The priced lines.
        lines: &'a [PricedLine],
        /// Their total.
        total: Cents,
    },
    /// Refused before any remote write: the recorded answer.
    Rejected(Outcome),
}

/// A progress write: every `Some` field is set.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// New state.
    pub state: Option<SagaState>,
    /// New step.
    pub step: Option<Step>,
    /// The order id.
    pub order_id: Option<OrderId>,
    /// The transaction id.
    pub transaction_id: Option<TransactionId>,
    /// An Alipay checkout's pay link.
    pub pay_url: Option<String>,
    /// Priced lines and their total.
    pub priced: Option<(Vec<PricedLine>, Cents)>,
    /// The client's answer.
    pub outcome: Option<Outcome>,
    /// Give the lease up: others may claim the saga from this time (unix ms).
    pub release_lease_at: Option<i64>,
}

impl Change {
    /// Just a new step.
    pub fn step(step: Step) -> Self {
        Change {
            step: Some(step),
            ..Change::default()
        }
    }
}

/// The columns a [`Start`] sets in the new row.
struct StartColumns<'a> {
    state: SagaState,
    step: Step,
    lines_json: Option<String>,
    total: Option<i64>,
    outcome_code: Option<i64>,
    outcome_message: Option<String>,
    lease_owner: Option<&'a str>,
    lease_until: i64,
}

impl<'a> StartColumns<'a> {
    fn of(start: &Start<'_>, owner: &'a str, lease_until: i64) -> Result<Self, Error> {
        Ok(match start {
            Start::Priced { lines, total } => StartColumns {
                state: SagaState::Running,
                step: Step::PlacingOrder,
                lines_json: Some(
                    serde_json::to_string(lines)
                        .map_err(|e| Error::Corrupt(format!("lines do not serialize: {e}")))?,
                ),
                total: Some(total.get()),
                outcome_code: None,
                outcome_message: None,
                lease_owner: Some(owner),
                lease_until,
            },
            Start::Rejected(outcome) => StartColumns {
                state: SagaState::Failed,
                step: Step::Rejected,
                lines_json: None,
                total: None,
                outcome_code: Some(i64::from(i32::from(outcome.code))),
                outcome_message: Some(truncate(&outcome.message)),
                lease_owner: None,
                lease_until: now_ms(),
            },
        })
    }
}

/// What [`Sagas::insert`] did.
#[derive(Debug)]
pub enum Inserted {
    /// The row is new; the caller holds its lease.
    New,
    /// Another saga already holds this (user, key).
    Existing(Box<Saga>),
}

/// The sagas repository.
#[derive(Clone, Debug)]
pub struct Sagas {
    db: Database,
}

fn code_of(code: i64) -> tonic::Code {
    tonic::Code::from_i32(i32::try_from(code).unwrap_or(2))
}

fn saga_of(row: &sqlx::any::AnyRow) -> Result<Saga, Error> {
    let id: String = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let step: String = row.try_get("step")?;
    let lines: Option<String> = row.try_get("lines_json")?;
    let contact: String = row.try_get("contact_json")?;
    let code: Option<i64> = row.try_get("outcome_code")?;
    let message: Option<String> = row.try_get("outcome_message")?;
    let corrupt = |what: &str| Error::Corrupt(format!("saga {id}: {what}"));
    Ok(Saga {
        user_id: UserId::from_db(row.try_get("user_id")?).ok_or_else(|| corrupt("user_id"))?,
        idempotency_key: row.try_get("idempotency_key")?,
        fingerprint: row.try_get("fingerprint")?,
        state: SagaState::parse(&state).ok_or_else(|| corrupt("state"))?,
        step: Step::parse(&step).ok_or_else(|| corrupt("step"))?,
        order_id: row
            .try_get::<Option<String>, _>("order_id")?
            .map(|id| OrderId::parse(&id, "order_id").map_err(|_| corrupt("order_id")))
            .transpose()?,
        transaction_id: row
            .try_get::<Option<String>, _>("transaction_id")?
            .map(|id| {
                TransactionId::parse(&id, "transaction_id").map_err(|_| corrupt("transaction_id"))
            })
            .transpose()?,
        total_cents: row
            .try_get::<Option<i64>, _>("total_cents")?
            .map(|c| Cents::new(c).ok_or_else(|| corrupt("total_cents")))
            .transpose()?,
        lines: match lines {
            Some(json) => serde_json::from_str(&json).map_err(|_| corrupt("lines_json"))?,
            None => Vec::new(),
        },
        contact: serde_json::from_str(&contact).map_err(|_| corrupt("contact_json"))?,
        outcome: code.map(|code| Outcome {
            code: code_of(code),
            message: message.unwrap_or_default(),
        }),
        created_at: row.try_get("created_at")?,
        trace_parent: row.try_get("trace_parent")?,
        pay_url: row.try_get("pay_url")?,
        id,
    })
}

fn truncate(message: &str) -> String {
    message.chars().take(MAX_OUTCOME_MESSAGE).collect()
}

impl Sagas {
    /// A repository on an open, migrated database.
    pub fn new(db: Database) -> Self {
        Sagas { db }
    }

    /// The saga `id`.
    pub async fn get(&self, id: &str) -> Result<Option<Saga>, Error> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(saga_of).transpose()
    }

    /// The saga `user_id` started with `key`.
    pub async fn find_by_key(&self, user_id: UserId, key: &str) -> Result<Option<Saga>, Error> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {SAGA_COLUMNS} FROM sagas WHERE user_id = ? AND idempotency_key = ?"
        )))
        .bind(user_id.db())
        .bind(key)
        .fetch_optional(self.db.pool())
        .await?;
        row.as_ref().map(saga_of).transpose()
    }

    /// Writes a new saga: a priced one running, leased to `owner` until `lease_until` (unix ms),
    /// or a rejected one with its answer (see [`Start`]). When the (user, key) is taken — also
    /// by a concurrent insert — returns the saga holding it.
    pub async fn insert(
        &self,
        new: &NewSaga<'_>,
        owner: &str,
        lease_until: i64,
    ) -> Result<Inserted, Error> {
        let contact = serde_json::to_string(new.contact)
            .map_err(|e| Error::Corrupt(format!("contact does not serialize: {e}")))?;
        let now = unix_secs();
        let start = StartColumns::of(&new.start, owner, lease_until)?;
        let inserted = sqlx::query(
            "INSERT INTO sagas (id, user_id, idempotency_key, fingerprint, state, step, \
             contact_json, lease_owner, lease_until, created_at, updated_at, trace_parent, \
             lines_json, total_cents, outcome_code, outcome_message) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.id)
        .bind(new.user_id.db())
        .bind(new.idempotency_key)
        .bind(new.fingerprint)
        .bind(start.state.as_str())
        .bind(start.step.as_str())
        .bind(contact)
        .bind(start.lease_owner)
        .bind(start.lease_until)
        .bind(now)
        .bind(now)
        .bind(new.trace_parent)
        .bind(start.lines_json)
        .bind(start.total)
        .bind(start.outcome_code)
        .bind(start.outcome_message)
        .execute(self.db.pool())
        .await;
        match inserted {
            Ok(_) => Ok(Inserted::New),
            Err(e) if is_unique_violation(&e) => {
                match self.find_by_key(new.user_id, new.idempotency_key).await? {
                    Some(saga) => Ok(Inserted::Existing(Box::new(saga))),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Frees an expired fingerprint key so a new saga can use it: the old row keeps its
    /// history under `<key>~<id>`. False when someone else retired it first.
    pub async fn retire_key(&self, saga: &Saga) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE sagas SET idempotency_key = ?, updated_at = ? \
             WHERE id = ? AND idempotency_key = ?",
        )
        .bind(format!("{}~{}", saga.idempotency_key, saga.id))
        .bind(unix_secs())
        .bind(&saga.id)
        .bind(&saga.idempotency_key)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Applies `change` to saga `id` if `owner` still holds it. False when the lease was lost.
    pub async fn update(&self, id: &str, owner: &str, change: &Change) -> Result<bool, Error> {
        self.db
            .retrying("update", || self.update_once(id, owner, change))
            .await
    }

    async fn update_once(&self, id: &str, owner: &str, change: &Change) -> Result<bool, Error> {
        let mut sets: Vec<&str> = vec!["updated_at = ?"];
        if change.state.is_some() {
            sets.push("state = ?");
        }
        if change.step.is_some() {
            sets.push("step = ?");
        }
        if change.order_id.is_some() {
            sets.push("order_id = ?");
        }
        if change.transaction_id.is_some() {
            sets.push("transaction_id = ?");
        }
        if change.pay_url.is_some() {
            sets.push("pay_url = ?");
        }
        if change.priced.is_some() {
            sets.push("lines_json = ?");
            sets.push("total_cents = ?");
        }
        if change.outcome.is_some() {
            sets.push("outcome_code = ?");
            sets.push("outcome_message = ?");
        }
        if change.release_lease_at.is_some() {
            sets.push("lease_owner = NULL");
            sets.push("lease_until = ?");
        }
        let sql = format!(
            "UPDATE sagas SET {} WHERE id = ? AND lease_owner = ?",
            sets.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(unix_secs());
        if let Some(state) = change.state {
            query = query.bind(state.as_str());
        }
        if let Some(step) = change.step {
            query = query.bind(step.as_str());
        }
        if let Some(order_id) = &change.order_id {
            query = query.bind(order_id.to_string());
        }
        if let Some(transaction_id) = &change.transaction_id {
            query = query.bind(transaction_id.to_string());
        }
        if let Some(pay_url) = &change.pay_url {
            query = query.bind(pay_url.clone());
        }
        if let Some((lines, total)) = &change.priced {
            let json = serde_json::to_string(lines)
                .map_err(|e| Error::Corrupt(format!("lines do not serialize: {e}")))?;
            query = query.bind(json).bind(total.get());
        }
        if let Some(outcome) = &change.outcome {
            query = query
                .bind(i64::from(i32::from(outcome.code)))
                .bind(truncate(&outcome.message));
        }
        if let Some(at) = change.release_lease_at {
            query = query.bind(at);
        }
        let done = query.bind(id).bind(owner).execute(self.db.pool()).await?;
        Ok(done.rows_affected() > 0)
    }

    /// Claims up to `limit` running sagas whose lease expired before `now` (unix ms) for
    /// `owner` until `lease_until`; returns the ones this caller won.
    pub async fn claim(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Saga>, Error> {
        self.db
            .retrying("claim", || self.claim_once(owner, now, lease_until, limit))
            .await
    }

    async fn claim_once(
        &self,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<Saga>, Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM sagas WHERE state = ? AND lease_until < ? \
             ORDER BY lease_until, id LIMIT ?",
        )
        .bind(SagaState::Running.as_str())
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        let mut won = Vec::new();
        for id in ids {
            let done = sqlx::query(
                "UPDATE sagas SET lease_owner = ?, lease_until = ?, attempts = attempts + 1, \
                 updated_at = ? WHERE id = ? AND state = ? AND lease_until < ?",
            )
            .bind(owner)
            .bind(lease_until)
            .bind(unix_secs())
            .bind(&id)
            .bind(SagaState::Running.as_str())
            .bind(now)
            .execute(self.db.pool())
            .await?;
            if done.rows_affected() > 0
                && let Some(saga) = self.get(&id).await?
            {
                won.push(saga);
            }
        }
        Ok(won)
    }

    /// How many sagas are still running.
    pub async fn count_open(&self) -> Result<i64, Error> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM sagas WHERE state = ?")
                .bind(SagaState::Running.as_str())
                .fetch_one(self.db.pool())
                .await?,
        )
    }
}
