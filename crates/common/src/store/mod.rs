//! The SQL pool, chosen by the URL scheme: `sqlite://` for the zero-setup default, `mysql://` for
//! MySQL 8 / MariaDB.
//!
//! Services get one [`Database`] (an `AnyPool` plus its [`Backend`]), write their statements
//! once with `?` placeholders, and switch on [`Database::backend`] only for the few that differ
//! (upserts, last-insert id). Each service embeds one migration set per backend and
//! [`Database::connect`] runs the right one at start. Money is `BIGINT` cents and times are unix
//! seconds, so the portable `Any` types (i64, String, bool) cover every column.

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::{AnyConnection, AnyPool, Executor, MySql, Sqlite};
use tracing::Instrument as _;

mod counted;
mod traced;
pub use counted::{Counters, Counts, Tx, TxConn, counters, counts_of};
pub use traced::Pool;

use crate::config::{DatabaseSettings, redact_url};

/// The SQL dialect behind a [`Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (embedded default).
    Sqlite,
    /// MySQL / MariaDB.
    MySql,
}

impl Backend {
    /// The backend named by a URL's scheme.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("mysql://") {
            Some(Backend::MySql)
        } else {
            None
        }
    }

    /// The OpenTelemetry `db.system` of this backend.
    pub fn system(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::MySql => "mysql",
        }
    }
}

/// The migration sets of a service, one per backend (`sqlx::migrate!("./migrations/sqlite")`).
pub struct Migrations {
    /// Migrations for SQLite.
    pub sqlite: Migrator,
    /// Migrations for MySQL / MariaDB.
    pub mysql: Migrator,
}

/// An open, migrated pool.
#[derive(Clone, Debug)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    counters: std::sync::Arc<Counters>,
}

/// The database could not be opened or migrated. The message never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Connecting failed.
    #[error("cannot open database {url}: {source}")]
    Connect {
        /// The redacted URL.
        url: String,
        /// The driver error.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migrating database {url}: {source}")]
    Migrate {
        /// The redacted URL.
        url: String,
        /// The migration error.
        source: sqlx::migrate::MigrateError,
    },
    /// The URL's scheme is neither sqlite nor mysql.
    #[error("unsupported database url {0}")]
    Scheme(String),
}

/// Creates the database (or the SQLite file and its directory) unless it exists.
async fn create_if_missing(backend: Backend, url: &str) -> Result<(), sqlx::Error> {
    match backend {
        Backend::Sqlite => {
            if let Some(dir) = sqlite_parent_dir(url) {
                std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
            }
            if !Sqlite::database_exists(url).await? {
                Sqlite::create_database(url).await?;
            }
        }
        Backend::MySql => {
            if !MySql::database_exists(url).await? {
                // Several services or tests may race to create it; losing is fine.
                if let Err(e) = MySql::create_database(url).await
                    && !MySql::database_exists(url).await.unwrap_or(false)
                {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// The settings every pooled connection starts with.
async fn set_up_session(backend: Backend, conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    match backend {
        // WAL lets readers run beside the writer; writers wait up to 5 s.
        Backend::Sqlite => {
            conn.execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
            )
            .await?;
        }
        // READ COMMITTED: no statement of ours relies on gap locks, and under REPEATABLE READ
        // the next-key locks of one user's DELETE or range UPDATE reach into the neighbouring
        // user's rows and deadlock their inserts. A store that needs a set of rows to hold
        // still locks a row for it.
        Backend::MySql => {
            conn.execute(
                "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci; \
                 SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
            )
            .await?;
        }
    }
    Ok(())
}

impl Database {
    /// Opens the database at `url`, creating it (or the SQLite file and its directory) when
    /// missing, and runs the backend's migrations.
    pub async fn connect(
        url: &str,
        settings: &DatabaseSettings,
        migrations: &Migrations,
    ) -> Result<Self, StoreError> {
        install_default_drivers();
        let redacted = redact_url(url);
        let connect_err = |source| StoreError::Connect {
            url: redacted.clone(),
            source,
        };
        let backend = Backend::of_url(url).ok_or_else(|| StoreError::Scheme(redacted.clone()))?;
        create_if_missing(backend, url).await.map_err(connect_err)?;
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _| Box::pin(set_up_session(backend, conn)))
            .connect(url)
            .await
            .map_err(connect_err)?;
        let migrator = match backend {
            Backend::Sqlite => &migrations.sqlite,
            Backend::MySql => &migrations.mysql,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: redacted.clone(),
                source,
            })?;
        Ok(Database {
            pool,
            backend,
            counters: counted::register(url),
        })
    }

    /// The pool, for queries: `query.fetch_all(db.pool())`; each statement is a span while
    /// traces are exported (see [`traced`]).
    pub fn pool(&self) -> Pool<'_> {
        Pool::new(&self.pool, self.backend.system(), &self.counters)
    }

    /// This database's statement and commit counts so far (see [`counted`]).
    pub fn counts(&self) -> Counts {
        self.counters.snapshot()
    }

    /// Which SQL dialect this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so concurrent writers queue instead of failing with `SQLITE_BUSY`
    /// when they upgrade from reading. Its statements (on `&mut *tx`) and its commit are
    /// counted (see [`counted`]).
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::MySql => self.pool.begin().await?,
        };
        Ok(Tx::new(tx, self.counters.clone()))
    }

    /// Runs `op` — one whole unit of work: its own transaction, or single statements each
    /// atomic on their own — again when the database aborted it for a lock conflict (a
    /// deadlock, a lock-wait timeout, `SQLITE_BUSY`), which it rolled back, so running it
    /// again is safe. Bounded ([`LOCK_RETRIES`] more attempts) with jittered backoff; the last
    /// failure is returned as it is (and is `UNAVAILABLE` to the client through
    /// [`error_code`]). `what` names the operation in the log.
    pub async fn retrying<T, E, F, Fut>(&self, what: &'static str, op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: AsDatabaseError,
    {
        let span = traced::unit_span(self.backend.system(), what);
        let done = self
            .retry_lock_conflicts(what, op)
            .instrument(span.clone())
            .await;
        if let Err(e) = &done
            && e.as_database_error().is_some()
        {
            span.record("otel.status_code", "ERROR");
        }
        done
    }

    async fn retry_lock_conflicts<T, E, F, Fut>(
        &self,
        what: &'static str,
        mut op: F,
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
        E: AsDatabaseError,
    {
        let mut attempt = 0;
        loop {
            match op().await {
                Err(e)
                    if attempt < LOCK_RETRIES
                        && e.as_database_error().is_some_and(is_lock_conflict) =>
                {
                    let delay = crate::backoff::backoff(attempt, LOCK_RETRY_BASE, LOCK_RETRY_CAP);
                    tracing::debug!(operation = what, attempt, ?delay, "lock conflict; retrying");
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                }
                done => return done,
            }
        }
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Drops a MySQL database or removes an SQLite file (test clean-up).
pub async fn drop_database(url: &str) -> Result<(), sqlx::Error> {
    match Backend::of_url(url) {
        Some(Backend::MySql) => MySql::drop_database(url).await,
        Some(Backend::Sqlite) => Sqlite::drop_database(url).await,
        None => Ok(()),
    }
}

fn sqlite_parent_dir(url: &str) -> Option<&std::path::Path> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    std::path::Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
}

/// The id of the row an `INSERT` just created on `conn`: the driver reports it on MySQL; on
/// SQLite (which `Any` does not report) it is read back with `last_insert_rowid()` on the same
/// connection.
pub async fn inserted_id<'c, E>(
    done: &sqlx::any::AnyQueryResult,
    conn: E,
) -> Result<i64, sqlx::Error>
where
    E: Executor<'c, Database = sqlx::Any>,
{
    match done.last_insert_id() {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar("SELECT last_insert_rowid()")
                .fetch_one(conn)
                .await
        }
    }
}

/// How many times [`Database::retrying`] runs an operation again after a lock conflict.
pub const LOCK_RETRIES: u32 = 4;
const LOCK_RETRY_BASE: std::time::Duration = std::time::Duration::from_millis(5);
const LOCK_RETRY_CAP: std::time::Duration = std::time::Duration::from_millis(200);

/// An error that may be a database failure: what [`Database::retrying`] inspects.
pub trait AsDatabaseError {
    /// The database error inside, if this is one.
    fn as_database_error(&self) -> Option<&sqlx::Error>;
}

/// Implements [`AsDatabaseError`] for a service's error enum whose `Database(sqlx::Error)`
/// variant holds its database failures: `mall_common::as_database_error!(Error);`.
#[macro_export]
macro_rules! as_database_error {
    ($error:ty) => {
        impl $crate::store::AsDatabaseError for $error {
            fn as_database_error(&self) -> Option<&sqlx::Error> {
                match self {
                    Self::Database(e) => Some(e),
                    _ => None,
                }
            }
        }
    };
}

impl AsDatabaseError for sqlx::Error {
    fn as_database_error(&self) -> Option<&sqlx::Error> {
        Some(self)
    }
}

/// MySQL / MariaDB error numbers that mean "aborted for a lock conflict, rolled back":
/// `ER_LOCK_WAIT_TIMEOUT` (1205) and `ER_LOCK_DEADLOCK` (1213).
const MYSQL_LOCK_CONFLICTS: [u16; 2] = [1205, 1213];
/// MySQL / MariaDB error numbers of a server going away or a connection ended under the
/// statement: `ER_CON_COUNT_ERROR` (1040), `ER_SERVER_SHUTDOWN` (1053), `ER_NET_READ_ERROR` …
/// (1158–1161), `ER_QUERY_INTERRUPTED` (1317, `KILL QUERY`), MariaDB's `ER_CONNECTION_KILLED`
/// (1927), and the client's `CR_SERVER_GONE_ERROR` (2006) / `CR_SERVER_LOST` (2013).
const MYSQL_GONE: [u16; 10] = [1040, 1053, 1158, 1159, 1160, 1161, 1317, 1927, 2006, 2013];
/// SQLite primary result codes of a lock held elsewhere: `SQLITE_BUSY` (5), `SQLITE_LOCKED` (6).
const SQLITE_LOCK_CONFLICTS: [i64; 2] = [5, 6];

/// The MySQL error number of a database error.
fn mysql_number(e: &sqlx::Error) -> Option<u16> {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .map(|e| e.number()),
        _ => None,
    }
}

/// The SQLite primary result code of a database error (the low byte of the extended one).
fn sqlite_code(e: &sqlx::Error) -> Option<i64> {
    match e {
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
        {
            db.code()?.parse::<i64>().ok().map(|code| code & 0xff)
        }
        _ => None,
    }
}

/// The database aborted the statement (and its transaction) for a lock conflict: a deadlock,
/// a lock-wait timeout, `SQLITE_BUSY`. Nothing of the transaction was kept; running the whole
/// unit of work again is safe (see [`Database::retrying`]).
pub fn is_lock_conflict(e: &sqlx::Error) -> bool {
    if let Some(n) = mysql_number(e) {
        return MYSQL_LOCK_CONFLICTS.contains(&n);
    }
    if let Some(code) = sqlite_code(e) {
        return SQLITE_LOCK_CONFLICTS.contains(&code);
    }
    // SQLSTATE 40001 (serialization failure) from any backend.
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("40001"))
}

/// A database error as the caller sees it: a transient failure ([`is_unavailable`]) is
/// `UNAVAILABLE "database unavailable"`, the rest `INTERNAL`; the cause is logged once, never
/// sent (see [`crate::error`]).
pub fn database_status(err: &sqlx::Error) -> tonic::Status {
    if is_unavailable(err) {
        crate::error::unavailable("database", err)
    } else {
        crate::error::internal(err)
    }
}

/// The [`ServiceErrorCode`](crate::error::ServiceErrorCode) of a database error, for a
/// service's `ServiceError` impl: `Unavailable` (with
/// [`unavailable_dependency`](crate::error::ServiceError::unavailable_dependency) `"database"`)
/// or `Internal`.
pub fn error_code(err: &sqlx::Error) -> crate::error::ServiceErrorCode {
    if is_unavailable(err) {
        crate::error::ServiceErrorCode::Unavailable
    } else {
        crate::error::ServiceErrorCode::Internal
    }
}

/// Transient failures the client may retry (`UNAVAILABLE`): pool exhaustion, a lost or
/// killed connection, a server shutting down, and lock conflicts that outlasted
/// [`Database::retrying`]. Never a bug of the service.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    if matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    ) {
        return true;
    }
    if is_lock_conflict(e) {
        return true;
    }
    mysql_number(e).is_some_and(|n| MYSQL_GONE.contains(&n))
}

/// A unique-key violation (a concurrent or repeated insert).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_failures_hide_their_cause() {
        let err = sqlx::Error::Protocol("SELECT secret_column FROM t".into());
        let status = database_status(&err);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("SELECT"), "{}", status.message());
        let status = database_status(&sqlx::Error::PoolTimedOut);
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert_eq!(
            error_code(&sqlx::Error::PoolTimedOut),
            crate::error::ServiceErrorCode::Unavailable
        );
        assert_eq!(error_code(&err), crate::error::ServiceErrorCode::Internal);
    }
}
