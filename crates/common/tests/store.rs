//! `common::store` against a real MariaDB (`MALL_TEST_MYSQL_URL`): lock conflicts are retried,
//! and transient failures are `UNAVAILABLE`, never `INTERNAL`. Without the variable the MariaDB
//! cases are skipped (they need a server that detects deadlocks and can kill connections);
//! the SQLite cases always run. The statement and commit counters are checked on both.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use mall_common::config::DatabaseSettings;
use mall_common::error::ServiceErrorCode;
use mall_common::store::{
    Database, Migrations, drop_database, error_code, is_lock_conflict, is_unavailable,
};
use tokio::sync::Barrier;

static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("tests/migrations/sqlite"),
    mysql: sqlx::migrate!("tests/migrations/mysql"),
};

/// A fresh database on the test server (dropped by the caller), or `None` without one.
async fn mariadb() -> Option<(Database, String)> {
    let Ok(base) = std::env::var("MALL_TEST_MYSQL_URL") else {
        eprintln!("MALL_TEST_MYSQL_URL is not set: skipping the MariaDB case");
        return None;
    };
    let url = format!(
        "{}/mall_store_test_{}",
        base.trim_end_matches('/'),
        rand::random::<u32>()
    );
    let db = Database::connect(&url, &DatabaseSettings::default(), &MIGRATIONS)
        .await
        .expect("connect to the test database");
    Some((db, url))
}

/// Adds 1 to counter `first`, then — once both transactions hold their first lock — to
/// `second`, in one transaction: two of these in opposite order deadlock.
async fn cross_update(
    db: &Database,
    barrier: &Barrier,
    attempts: &AtomicU32,
    first: i64,
    second: i64,
) -> Result<(), sqlx::Error> {
    let attempt = attempts.fetch_add(1, Ordering::SeqCst);
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE counters SET v = v + 1 WHERE id = ?")
        .bind(first)
        .execute(&mut *tx)
        .await?;
    if attempt == 0 {
        barrier.wait().await;
    }
    sqlx::query("UPDATE counters SET v = v + 1 WHERE id = ?")
        .bind(second)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

async fn counters(db: &Database) -> Vec<i64> {
    sqlx::query_scalar("SELECT v FROM counters ORDER BY id")
        .fetch_all(db.pool())
        .await
        .expect("read counters")
}

#[tokio::test]
async fn a_deadlock_is_a_lock_conflict_and_unavailable_and_retrying_gets_both_through() {
    let Some((db, url)) = mariadb().await else {
        return;
    };
    // Unretried: one of the two is chosen as the deadlock victim (1213) and rolled back.
    let barrier = Barrier::new(2);
    let (a, b) = (AtomicU32::new(0), AtomicU32::new(0));
    let (left, right) = tokio::join!(
        cross_update(&db, &barrier, &a, 1, 2),
        cross_update(&db, &barrier, &b, 2, 1)
    );
    let failed: Vec<sqlx::Error> = [left, right].into_iter().filter_map(Result::err).collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(is_lock_conflict(&failed[0]), "{:?}", failed[0]);
    assert!(is_unavailable(&failed[0]));
    assert_eq!(error_code(&failed[0]), ServiceErrorCode::Unavailable);
    assert_eq!(
        counters(&db).await,
        vec![1, 1],
        "the victim left nothing behind"
    );

    // Retried: the victim runs again after the winner commits, and both get through.
    let barrier = Arc::new(Barrier::new(2));
    let (a, b) = (AtomicU32::new(0), AtomicU32::new(0));
    let (left, right) = tokio::join!(
        db.retrying("test", || cross_update(&db, &barrier, &a, 1, 2)),
        db.retrying("test", || cross_update(&db, &barrier, &b, 2, 1))
    );
    left.expect("left gets through");
    right.expect("right gets through");
    assert_eq!(
        a.load(Ordering::SeqCst) + b.load(Ordering::SeqCst),
        3,
        "exactly one transaction ran twice"
    );
    assert_eq!(counters(&db).await, vec![3, 3]);
    db.close().await;
    drop_database(&url).await.expect("drop the test database");
}

#[tokio::test]
async fn a_killed_connection_and_a_lock_wait_timeout_are_unavailable() {
    let Some((db, url)) = mariadb().await else {
        return;
    };
    // A statement whose connection is killed under it.
    let mut victim = db.pool().acquire().await.expect("a connection");
    let id: i64 = sqlx::query_scalar("SELECT CONNECTION_ID()")
        .fetch_one(&mut *victim)
        .await
        .expect("connection id");
    let sleeping = tokio::spawn(async move {
        sqlx::query("SELECT SLEEP(5)")
            .execute(&mut *victim)
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("KILL {id}")))
        .execute(db.pool())
        .await
        .expect("KILL");
    let err = sleeping
        .await
        .expect("join")
        .expect_err("the killed statement fails");
    assert!(is_unavailable(&err), "{err:?}");
    assert_eq!(error_code(&err), ServiceErrorCode::Unavailable, "{err:?}");

    // A row lock held longer than the session's lock wait.
    let mut holder = db.begin_write().await.expect("begin");
    sqlx::query("UPDATE counters SET v = v + 1 WHERE id = 1")
        .execute(&mut *holder)
        .await
        .expect("lock row 1");
    let mut waiter = db.pool().acquire().await.expect("a connection");
    sqlx::query("SET SESSION innodb_lock_wait_timeout = 1")
        .execute(&mut *waiter)
        .await
        .expect("short lock wait");
    let err = sqlx::query("UPDATE counters SET v = v + 1 WHERE id = 1")
        .execute(&mut *waiter)
        .await
        .expect_err("the lock wait times out");
    assert!(is_lock_conflict(&err), "{err:?}");
    assert_eq!(error_code(&err), ServiceErrorCode::Unavailable);
    drop(waiter);
    holder.rollback().await.expect("rollback");
    db.close().await;
    drop_database(&url).await.expect("drop the test database");
}

#[tokio::test]
async fn sessions_run_read_committed_on_mariadb_and_sqlite_answers_as_before() {
    if let Some((db, url)) = mariadb().await {
        let level: String = sqlx::query_scalar("SELECT @@SESSION.tx_isolation")
            .fetch_one(db.pool())
            .await
            .expect("isolation level");
        assert_eq!(level, "READ-COMMITTED");
        db.close().await;
        drop_database(&url).await.expect("drop the test database");
    }
    let dir = std::env::temp_dir().join(format!("mall-store-{}", rand::random::<u32>()));
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
    let db = Database::connect(&url, &DatabaseSettings::default(), &MIGRATIONS)
        .await
        .expect("sqlite");
    let calls = AtomicU32::new(0);
    let done: Result<(), sqlx::Error> = db
        .retrying("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await;
    done.expect("ok");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "success is not retried");
    let other = db
        .retrying("test", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(sqlx::Error::RowNotFound)
        })
        .await;
    assert!(other.is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "other errors are not retried"
    );
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Counts `db` keeps of one unit of work of each kind: statements on the pool (a write there is
/// its own commit), a committed transaction, a dropped one; outbox inserts apart.
async fn count_each_kind(db: &Database, url: &str) {
    let before = db.counts();
    assert_eq!(
        mall_common::store::counts_of(url),
        before,
        "by URL as by pool"
    );
    let _: Vec<i64> = sqlx::query_scalar("SELECT v FROM counters")
        .fetch_all(db.pool())
        .await
        .expect("read");
    sqlx::query("UPDATE counters SET v = v + 1 WHERE id = 1")
        .execute(db.pool())
        .await
        .expect("autocommit write");
    let mut tx = db.begin_write().await.expect("begin");
    sqlx::query("UPDATE counters SET v = v + 1 WHERE id = 2")
        .execute(&mut *tx)
        .await
        .expect("write in a transaction");
    // Not a table of this database: the insert fails, but it was sent, so it counts.
    let _ = sqlx::query("INSERT INTO outbox (id) VALUES (1)")
        .execute(&mut *tx)
        .await;
    drop(tx);
    let mut tx = db.begin_write().await.expect("begin");
    sqlx::query("UPDATE counters SET v = v + 1 WHERE id = 2")
        .execute(&mut *tx)
        .await
        .expect("write in a transaction");
    tx.commit().await.expect("commit");
    let c = db.counts().since(&before);
    assert_eq!(
        (c.reads, c.writes, c.other, c.outbox),
        (1, 3, 0, 1),
        "{c:?}"
    );
    assert_eq!(
        (c.autocommits, c.transactions, c.rollbacks),
        (1, 1, 1),
        "{c:?}"
    );
    assert_eq!((c.statements(), c.commits()), (4, 2), "{c:?}");
}

#[tokio::test]
async fn every_statement_and_commit_is_counted_on_both_backends() {
    if let Some((db, url)) = mariadb().await {
        count_each_kind(&db, &url).await;
        db.close().await;
        drop_database(&url).await.expect("drop the test database");
    }
    let dir = std::env::temp_dir().join(format!("mall-store-{}", rand::random::<u32>()));
    let url = format!("sqlite://{}/t.db?mode=rwc", dir.display());
    let db = Database::connect(&url, &DatabaseSettings::default(), &MIGRATIONS)
        .await
        .expect("sqlite");
    count_each_kind(&db, &url).await;
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
