//! Database calls as spans while traces are exported (client kind, `db.system` = `sqlite` or
//! `mysql`), never with a parameter value or the statement text:
//!
//! - every statement run on the pool ([`Database::pool`](super::Database::pool)) is a
//!   `db.<kind>` span with `db.operation` = its kind (`SELECT`, `INSERT`, `UPDATE`, ...; the
//!   first keyword of the SQL);
//! - every unit of work run by [`Database::retrying`](super::Database::retrying) (a
//!   transaction, with its lock-conflict retries) is a `db.<what>` span with `db.operation` =
//!   `what`; its statements run on the transaction's connection, under it.
//!
//! While export is off no span is made. Either way each statement is counted in the database's
//! [`Counters`] (see [`counted`](super::counted)).

use std::fmt;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt as _, StreamExt as _};
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyPool, Either, Error, Execute, Executor, SqlStr};
use tracing::Instrument as _;

use super::counted::{Counters, Statement};
use crate::telemetry::trace;

/// The pool of a [`Database`](super::Database) as an executor: `query.fetch_all(db.pool())`.
/// See the module docs.
#[derive(Clone, Copy)]
pub struct Pool<'p> {
    pool: &'p AnyPool,
    system: &'static str,
    counters: &'p Counters,
}

impl fmt::Debug for Pool<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("system", &self.system)
            .finish()
    }
}

impl<'p> Pool<'p> {
    pub(super) fn new(pool: &'p AnyPool, system: &'static str, counters: &'p Counters) -> Self {
        Pool {
            pool,
            system,
            counters,
        }
    }

    /// A connection of its own (statements on it are neither spans nor counted).
    pub async fn acquire(self) -> Result<sqlx::pool::PoolConnection<Any>, Error> {
        self.pool.acquire().await
    }

    /// The statement, counted, and its span; `None` while export is off.
    fn statement<'q, E: Execute<'q, Any>>(self, query: E) -> (Option<tracing::Span>, Statement) {
        let statement = Statement::of(query);
        let sql = statement.sql.as_str();
        self.counters.statement(sql, true);
        let span = trace::enabled().then(|| {
            let kind = statement_kind(sql);
            tracing::info_span!(
                "db",
                otel.name = %format_args!("db.{}", kind.to_ascii_lowercase()),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                db.system = self.system,
                db.operation = kind,
            )
        });
        (span, statement)
    }
}

/// The span of a unit of work named `what` (see the module docs); disabled while export is off.
pub(super) fn unit_span(system: &'static str, what: &'static str) -> tracing::Span {
    if !trace::enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "db",
        otel.name = %format_args!("db.{what}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system = system,
        db.operation = what,
    )
}

/// Marks `span` failed when `result` is an error.
fn mark<T>(span: &tracing::Span, result: &Result<T, Error>) {
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
}

/// The first keyword of `sql`, upper-cased, when it is a statement kind; else `OTHER` (never
/// any other part of the text).
fn statement_kind(sql: &str) -> &'static str {
    const KINDS: [&str; 12] = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "CREATE", "ALTER", "DROP",
        "BEGIN", "COMMIT", "SET",
    ];
    let word = sql
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default();
    KINDS
        .into_iter()
        .find(|k| k.eq_ignore_ascii_case(word))
        .unwrap_or("OTHER")
}

impl<'p> Executor<'p> for Pool<'p> {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<AnyQueryResult, AnyRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let (span, statement) = self.statement(query);
        let Some(span) = span else {
            return self.pool.fetch_many(statement);
        };
        let stream = {
            let _entered = span.enter();
            self.pool.fetch_many(statement)
        };
        // The span lives as long as the stream (it ends when the caller drops it).
        stream
            .map(move |item| {
                if item.is_err() {
                    span.record("otel.status_code", "ERROR");
                }
                item
            })
            .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<AnyRow>, Error>>
    where
        'p: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let (span, statement) = self.statement(query);
        let Some(span) = span else {
            return self.pool.fetch_optional(statement);
        };
        let recorded = span.clone();
        let pool = self.pool;
        async move {
            let result = pool.fetch_optional(statement).await;
            mark(&recorded, &result);
            result
        }
        .instrument(span)
        .boxed()
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, Result<AnyStatement, Error>>
    where
        'p: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Any>, Error>>
    where
        'p: 'e,
    {
        self.pool.describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::statement_kind;

    #[test]
    fn the_kind_is_the_first_keyword_and_nothing_else() {
        assert_eq!(statement_kind("SELECT id FROM t WHERE x = ?"), "SELECT");
        assert_eq!(statement_kind("\n  insert into t values (?)"), "INSERT");
        assert_eq!(statement_kind("UPDATE t SET a = 1"), "UPDATE");
        assert_eq!(statement_kind("(SELECT 1)"), "OTHER");
        assert_eq!(statement_kind("secret_value"), "OTHER");
        assert_eq!(statement_kind(""), "OTHER");
    }
}
