//! Statement and commit counters, per [`Database`](super::Database), for tests and benchmarks
//! that hold a request path to a statement budget (checkout's lean-checkout test).
//!
//! Every statement a service runs goes through one of two executors, and both count it:
//! [`Pool`](super::Pool) (`db.pool()`, each statement on its own: a write there is an
//! autocommitted transaction) and [`TxConn`] (the connection of a [`Tx`] from
//! [`Database::begin_write`](super::Database::begin_write), committed by [`Tx::commit`]). What is
//! not counted: migrations, `Database::ping`, and statements on a connection taken with
//! `db.pool().acquire()` (auth's register only; no request path of checkout uses one).
//!
//! Statements are classified by their first keyword (`SELECT` is a read, `INSERT`, `UPDATE`,
//! `DELETE`, `REPLACE` are writes); an `INSERT INTO outbox` is counted apart, as
//! [`Counts::outbox`] (the transactional outbox adds one per event, inside a transaction that
//! exists anyway). Transaction control (`BEGIN`, `COMMIT`) is not a statement here: a
//! transaction counts once, as a commit. Counting is a handful of relaxed atomic adds per
//! statement; it is always on.
//!
//! [`counters`] reads every open database's counts in this process, by URL (without its query
//! and password); [`counts_of`] one URL's.

use std::collections::BTreeMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyConnection, Either, Error, Execute, Executor, SqlStr};

/// One database's running counts (see the module docs).
#[derive(Debug, Default)]
pub struct Counters {
    reads: AtomicU64,
    writes: AtomicU64,
    other: AtomicU64,
    outbox: AtomicU64,
    transactions: AtomicU64,
    autocommits: AtomicU64,
    rollbacks: AtomicU64,
}

/// A snapshot of [`Counters`], or the difference of two.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `SELECT`s (and `WITH` queries).
    pub reads: u64,
    /// `INSERT`, `UPDATE`, `DELETE`, `REPLACE`, except outbox inserts.
    pub writes: u64,
    /// Any other statement (`SET`, `CREATE`, ...).
    pub other: u64,
    /// `INSERT INTO outbox` statements.
    pub outbox: u64,
    /// Transactions committed ([`Tx::commit`]).
    pub transactions: u64,
    /// Writes on the pool, outside any transaction (each its own commit).
    pub autocommits: u64,
    /// Transactions dropped without a commit (rolled back).
    pub rollbacks: u64,
}

impl Counts {
    /// Statements of the service's own work: reads, writes and others, without outbox inserts
    /// and without transaction control.
    pub fn statements(&self) -> u64 {
        self.reads + self.writes + self.other
    }

    /// Commits: transactions committed plus autocommitted writes.
    pub fn commits(&self) -> u64 {
        self.transactions + self.autocommits
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            reads: self.reads.saturating_sub(earlier.reads),
            writes: self.writes.saturating_sub(earlier.writes),
            other: self.other.saturating_sub(earlier.other),
            outbox: self.outbox.saturating_sub(earlier.outbox),
            transactions: self.transactions.saturating_sub(earlier.transactions),
            autocommits: self.autocommits.saturating_sub(earlier.autocommits),
            rollbacks: self.rollbacks.saturating_sub(earlier.rollbacks),
        }
    }

    fn add(&mut self, other: &Counts) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.other += other.other;
        self.outbox += other.outbox;
        self.transactions += other.transactions;
        self.autocommits += other.autocommits;
        self.rollbacks += other.rollbacks;
    }
}

/// What a statement is, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Read,
    Write,
    Outbox,
    Control,
    Other,
}

/// The class of `sql` by its first keyword (and, for an `INSERT`, its table).
fn classify(sql: &str) -> Class {
    let mut words = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or_default();
    let is = |k: &str| first.eq_ignore_ascii_case(k);
    if is("SELECT") || is("WITH") {
        Class::Read
    } else if is("INSERT") {
        let into = words.next().unwrap_or_default();
        let table = if into.eq_ignore_ascii_case("INTO") {
            words.next().unwrap_or_default()
        } else {
            into
        };
        if table.eq_ignore_ascii_case("outbox") {
            Class::Outbox
        } else {
            Class::Write
        }
    } else if is("UPDATE") || is("DELETE") || is("REPLACE") {
        Class::Write
    } else if is("BEGIN") || is("COMMIT") || is("ROLLBACK") || is("START") {
        Class::Control
    } else {
        Class::Other
    }
}

impl Counters {
    /// Counts one statement; `autocommit` when it runs on the pool (outside a transaction).
    pub(super) fn statement(&self, sql: &str, autocommit: bool) {
        let class = classify(sql);
        let counter = match class {
            Class::Read => &self.reads,
            Class::Write => &self.writes,
            Class::Outbox => &self.outbox,
            Class::Control => return,
            Class::Other => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if autocommit && matches!(class, Class::Write | Class::Outbox) {
            self.autocommits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A snapshot.
    pub fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            reads: get(&self.reads),
            writes: get(&self.writes),
            other: get(&self.other),
            outbox: get(&self.outbox),
            transactions: get(&self.transactions),
            autocommits: get(&self.autocommits),
            rollbacks: get(&self.rollbacks),
        }
    }
}

/// The databases opened in this process, by name.
static REGISTRY: parking_lot::Mutex<Vec<(String, Weak<Counters>)>> =
    parking_lot::Mutex::new(Vec::new());

/// New counters for a database at `url`, registered under its name (see [`counters`]).
pub(super) fn register(url: &str) -> Arc<Counters> {
    let counters = Arc::new(Counters::default());
    let mut registry = REGISTRY.lock();
    registry.retain(|(_, c)| c.strong_count() > 0);
    registry.push((database_name(url), Arc::downgrade(&counters)));
    counters
}

/// The name [`counters`] files a database under: its URL without the query, password redacted.
fn database_name(url: &str) -> String {
    let url = crate::config::redact_url(url);
    url.split('?').next().unwrap_or_default().to_string()
}

/// The counts of the database at `url` (summed over every pool open on it in this process, such
/// as two instances of one service); zero when none is open.
pub fn counts_of(url: &str) -> Counts {
    counters().remove(&database_name(url)).unwrap_or_default()
}

/// The counts of every open database of this process, by URL (see the module docs; pools on
/// one database are summed).
pub fn counters() -> BTreeMap<String, Counts> {
    let mut by_name: BTreeMap<String, Counts> = BTreeMap::new();
    for (name, counters) in REGISTRY.lock().iter() {
        if let Some(counters) = counters.upgrade() {
            by_name
                .entry(name.clone())
                .or_default()
                .add(&counters.snapshot());
        }
    }
    by_name
}

/// A write transaction of a [`Database`](super::Database) (from `begin_write`): run statements
/// on `&mut *tx` as on sqlx's transaction, then [`Tx::commit`]; dropped uncommitted it rolls
/// back. Its statements and its commit are counted (see the module docs).
pub struct Tx {
    conn: TxConn,
    committed: bool,
}

/// The connection of a [`Tx`], as an executor: `query.execute(&mut *tx)`.
pub struct TxConn {
    tx: Option<sqlx::Transaction<'static, Any>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for TxConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxConn").finish_non_exhaustive()
    }
}

impl Tx {
    pub(super) fn new(tx: sqlx::Transaction<'static, Any>, counters: Arc<Counters>) -> Self {
        Tx {
            conn: TxConn {
                tx: Some(tx),
                counters,
            },
            committed: false,
        }
    }

    /// Commits the transaction.
    pub async fn commit(mut self) -> Result<(), Error> {
        let tx = self.conn.tx.take().ok_or(Error::PoolClosed)?;
        self.committed = true;
        tx.commit().await?;
        self.conn
            .counters
            .transactions
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Tx {
    /// Rolls the transaction back (as dropping it does, but waiting for the database).
    pub async fn rollback(mut self) -> Result<(), Error> {
        let tx = self.conn.tx.take().ok_or(Error::PoolClosed)?;
        tx.rollback().await
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.counters.rollbacks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Deref for Tx {
    type Target = TxConn;

    fn deref(&self) -> &TxConn {
        &self.conn
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut TxConn {
        &mut self.conn
    }
}

impl TxConn {
    fn connection(&mut self) -> &mut AnyConnection {
        // Only `Tx::commit` takes the transaction, and it consumes the `Tx`.
        self.tx.as_deref_mut().expect("transaction is open")
    }
}

/// A query taken apart, so its text can be read and it still be run.
pub(super) struct Statement {
    pub(super) sql: SqlStr,
    pub(super) arguments: Option<Result<Option<sqlx::any::AnyArguments>, sqlx::error::BoxDynError>>,
    pub(super) persistent: bool,
}

impl Statement {
    /// `query` taken apart.
    pub(super) fn of<'q, E: Execute<'q, Any>>(mut query: E) -> Statement {
        let arguments = query.take_arguments();
        let persistent = query.persistent();
        Statement {
            sql: query.sql(),
            arguments: Some(arguments),
            persistent,
        }
    }
}

impl<'q> Execute<'q, Any> for Statement {
    fn sql(self) -> SqlStr {
        self.sql
    }

    fn statement(&self) -> Option<&AnyStatement> {
        None
    }

    fn take_arguments(
        &mut self,
    ) -> Result<Option<sqlx::any::AnyArguments>, sqlx::error::BoxDynError> {
        self.arguments.take().unwrap_or(Ok(None))
    }

    fn persistent(&self) -> bool {
        self.persistent
    }
}

impl<'c> Executor<'c> for &'c mut TxConn {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let statement = Statement::of(query);
        self.counters.statement(statement.sql.as_str(), false);
        self.connection().fetch_many(statement)
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<AnyRow>, Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let statement = Statement::of(query);
        self.counters.statement(statement.sql.as_str(), false);
        self.connection().fetch_optional(statement)
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, Error>>
    where
        'c: 'e,
    {
        self.connection().prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Any>, Error>>
    where
        'c: 'e,
    {
        self.connection().describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::{Class, classify, database_name};

    #[test]
    fn statements_are_classified_by_keyword_and_outbox_table() {
        assert_eq!(classify("SELECT 1"), Class::Read);
        assert_eq!(
            classify("\n insert into orders (id) values (?)"),
            Class::Write
        );
        assert_eq!(
            classify("INSERT INTO outbox (id) VALUES (?)"),
            Class::Outbox
        );
        assert_eq!(
            classify("INSERT INTO outbox_seen (id) VALUES (?)"),
            Class::Write
        );
        assert_eq!(classify("UPDATE t SET a = 1"), Class::Write);
        assert_eq!(classify("DELETE FROM t"), Class::Write);
        assert_eq!(classify("COMMIT"), Class::Control);
        assert_eq!(classify("PRAGMA x"), Class::Other);
    }

    #[test]
    fn databases_are_named_by_their_url_without_query() {
        assert_eq!(
            database_name("mysql://root@h:3306/t_ab_order"),
            "mysql://root:***@h:3306/t_ab_order"
        );
        assert_eq!(
            database_name("sqlite:///tmp/x/order.db?mode=rwc"),
            "sqlite:///tmp/x/order.db"
        );
    }
}
