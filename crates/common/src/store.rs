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
use sqlx::{AnyPool, Executor, MySql, Sqlite};

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
        match backend {
            Backend::Sqlite => {
                if let Some(dir) = sqlite_parent_dir(url) {
                    std::fs::create_dir_all(dir).map_err(|e| connect_err(sqlx::Error::Io(e)))?;
                }
                if !Sqlite::database_exists(url).await.map_err(connect_err)? {
                    Sqlite::create_database(url).await.map_err(connect_err)?;
                }
            }
            Backend::MySql => {
                if !MySql::database_exists(url).await.map_err(connect_err)? {
                    // Several services or tests may race to create it; losing is fine.
                    if let Err(e) = MySql::create_database(url).await
                        && !MySql::database_exists(url).await.unwrap_or(false)
                    {
                        return Err(connect_err(e));
                    }
                }
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    match backend {
                        // WAL lets readers run beside the writer; writers wait up to 5 s.
                        Backend::Sqlite => {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                                 PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                            )
                            .await?;
                        }
                        Backend::MySql => {
                            conn.execute("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci")
                                .await?;
                        }
                    }
                    Ok(())
                })
            })
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
        Ok(Database { pool, backend })
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which SQL dialect this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so concurrent writers queue instead of failing with `SQLITE_BUSY`
    /// when they upgrade from reading.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::MySql => self.pool.begin().await,
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
pub async fn inserted_id(
    done: &sqlx::any::AnyQueryResult,
    conn: &mut sqlx::AnyConnection,
) -> Result<i64, sqlx::Error> {
    match done.last_insert_id() {
        Some(id) => Ok(id),
        None => {
            sqlx::query_scalar("SELECT last_insert_rowid()")
                .fetch_one(conn)
                .await
        }
    }
}

/// A database error as the caller sees it: pool exhaustion or a lost connection is
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

/// Pool exhaustion and lost connections: the client may retry (`UNAVAILABLE`).
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
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
