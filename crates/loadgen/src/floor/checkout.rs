//! `loadgen floor checkout`: checkouts against the database's own floor, in one run.
//!
//! Shoppers (AddItem + Checkout each iteration) load the child fleet for a while; MariaDB's
//! `SHOW GLOBAL STATUS` counters (`Questions`, `Com_commit`, `Handler_commit`) and the CPU of the
//! fleet process, `mariadbd` and `redis-server` are read before and after. Then the same number
//! of connections make single-row autocommit INSERTs into a scratch table for as long: the
//! database's durable commit rate on this machine, in the same run.

use std::time::{Duration, Instant};

use sqlx::AssertSqlSafe;
use sqlx::mysql::{MySqlPool, MySqlPoolOptions};

use super::fleet::{FloorFleet, Outcome, Until, drive};
use super::procs::{CpuMeter, pids_named};
use super::{FloorOptions, Latencies, ms, ratio};

/// The counters read before and after a load.
pub const COUNTERS: [&str; 3] = ["Questions", "Com_commit", "Handler_commit"];

/// `SHOW GLOBAL STATUS` values of [`COUNTERS`].
pub async fn global_status(pool: &MySqlPool) -> anyhow::Result<[u64; 3]> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
         WHERE VARIABLE_NAME IN ('QUESTIONS', 'COM_COMMIT', 'HANDLER_COMMIT')",
    )
    .fetch_all(pool)
    .await?;
    let mut out = [0u64; 3];
    for (name, value) in rows {
        if let Some(i) = COUNTERS.iter().position(|c| c.eq_ignore_ascii_case(&name)) {
            out[i] = value.parse().unwrap_or(0);
        }
    }
    Ok(out)
}

/// Pool of up to `size` connections to the server (no database).
pub async fn server_pool(url: &str, size: u32) -> anyhow::Result<MySqlPool> {
    MySqlPoolOptions::new()
        .max_connections(size)
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {url}: {e}"))
}

/// The CPU of the fleet process, `mariadbd` and `redis-server`.
pub fn meter(fleet_pid: u32) -> CpuMeter {
    CpuMeter {
        groups: vec![
            ("fleet".into(), vec![fleet_pid]),
            ("mariadbd".into(), pids_named("mariadbd")),
            ("redis-server".into(), pids_named("redis-server")),
        ],
    }
}

/// A load's counters and CPU.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    /// Deltas of [`COUNTERS`].
    pub counters: [u64; 3],
    /// CPU of each of [`meter`]'s groups.
    pub cpu: Vec<Duration>,
}

/// Runs `load`, reading counters and CPU around it.
pub async fn costed<F: Future>(
    pool: &MySqlPool,
    meter: &CpuMeter,
    load: F,
) -> anyhow::Result<(F::Output, Cost)> {
    let before = global_status(pool).await?;
    let cpu_before = meter.read();
    let output = load.await;
    let cpu_after = meter.read();
    let after = global_status(pool).await?;
    let mut counters = [0; 3];
    for i in 0..3 {
        counters[i] = after[i].saturating_sub(before[i]);
    }
    let cpu = cpu_after
        .iter()
        .zip(&cpu_before)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    Ok((output, Cost { counters, cpu }))
}

/// What the scratch-table INSERTs did.
#[derive(Debug, Default)]
pub struct Inserts {
    /// Wall time.
    pub elapsed: Duration,
    /// Latencies of successful INSERTs.
    pub latencies: Latencies,
    /// Failed INSERTs.
    pub failed: u64,
}

/// `concurrency` connections making single-row autocommit INSERTs into `<db>.floor_scratch`
/// for `secs`. `db` is one of ours (a `--db-prefix` is letters, digits and underscores only), so
/// naming it in the SQL text is safe.
pub async fn insert_floor(
    url: &str,
    db: &str,
    concurrency: usize,
    secs: Duration,
) -> anyhow::Result<Inserts> {
    let pool = server_pool(url, concurrency as u32 + 1).await?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE IF NOT EXISTS `{db}`"
    )))
    .execute(&pool)
    .await?;
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS `{db}`.floor_scratch \
         (id BIGINT AUTO_INCREMENT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB"
    )))
    .execute(&pool)
    .await?;
    let insert = format!("INSERT INTO `{db}`.floor_scratch (v) VALUES (?)");
    let started = Instant::now();
    let stop_at = started + secs;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let pool = pool.clone();
        let insert = insert.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut failed = 0u64;
            let Ok(mut conn) = pool.acquire().await else {
                return (latencies, 1);
            };
            while Instant::now() < stop_at {
                let t = Instant::now();
                match sqlx::query(AssertSqlSafe(insert.clone()))
                    .bind(worker as i64)
                    .execute(&mut *conn)
                    .await
                {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => failed += 1,
                }
            }
            (latencies, failed)
        });
    }
    let mut all = Vec::new();
    let mut failed = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Ok((l, f)) = joined {
            all.extend(l);
            failed += f;
        }
    }
    let elapsed = started.elapsed();
    let _ = sqlx::query(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{db}`")))
        .execute(&pool)
        .await;
    pool.close().await;
    Ok(Inserts {
        elapsed,
        latencies: Latencies::of(all),
        failed,
    })
}

/// The checkout benchmark's results.
#[derive(Debug)]
pub struct CheckoutReport {
    /// Concurrent shoppers (and INSERT connections).
    pub concurrency: usize,
    /// The checkouts.
    pub checkouts: Outcome,
    /// Their counters and CPU.
    pub checkout_cost: Cost,
    /// The INSERTs.
    pub inserts: Inserts,
    /// Their counters and CPU.
    pub insert_cost: Cost,
    /// `innodb_flush_log_at_trx_commit`, `sync_binlog`, `log_bin`.
    pub durability: String,
}

fn per(n: u64, of: usize) -> f64 {
    if of == 0 {
        f64::NAN
    } else {
        n as f64 / of as f64
    }
}

fn cpu_ms_per(cpu: Duration, of: usize) -> f64 {
    if of == 0 {
        f64::NAN
    } else {
        cpu.as_secs_f64() * 1e3 / of as f64
    }
}

impl CheckoutReport {
    /// The report as Markdown.
    pub fn to_markdown(&self) -> String {
        let c = &self.checkouts;
        let n = c.admitted.len();
        let cc = &self.checkout_cost;
        let total_cpu: Duration = cc.cpu.iter().sum();
        let mut out = format!(
            "### Checkout against the database's floor, {} concurrent shoppers / connections \
             ({})\n\n\
             | load | done | per s | p50 | p99 | statements (Questions) each | Com_commit each | \
             Handler_commit each | CPU each: fleet / mariadbd / redis / total |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.concurrency, self.durability
        );
        let cpu = |i: usize, of: usize| cpu_ms_per(cc.cpu.get(i).copied().unwrap_or_default(), of);
        out.push_str(&format!(
            "| AddItem + Checkout | {n} | {:.0} | {:.2} ms | {:.2} ms | {:.1} | {:.1} | {:.1} | \
             {:.2} / {:.2} / {:.2} / {:.2} ms |\n",
            c.goodput(),
            ms(c.admitted.at(0.5)),
            ms(c.admitted.at(0.99)),
            per(cc.counters[0], n),
            per(cc.counters[1], n),
            per(cc.counters[2], n),
            cpu(0, n),
            cpu(1, n),
            cpu(2, n),
            cpu_ms_per(total_cpu, n),
        ));
        let i = &self.inserts;
        let m = i.latencies.len();
        let ic = &self.insert_cost;
        let insert_rate = m as f64 / i.elapsed.as_secs_f64().max(f64::EPSILON);
        out.push_str(&format!(
            "| autocommit INSERT (floor) | {m} | {insert_rate:.0} | {:.2} ms | {:.2} ms | {:.1} | \
             {:.1} | {:.1} | - / {:.2} / - / {:.2} ms |\n",
            ms(i.latencies.at(0.5)),
            ms(i.latencies.at(0.99)),
            per(ic.counters[0], m),
            per(ic.counters[1], m),
            per(ic.counters[2], m),
            cpu_ms_per(ic.cpu.get(1).copied().unwrap_or_default(), m),
            cpu_ms_per(ic.cpu.iter().sum(), m),
        ));
        let commits_each = per(cc.counters[2], n);
        let commit_rate = c.goodput() * commits_each;
        out.push_str(&format!(
            "\nCheckouts made {commit_rate:.0} InnoDB commits/s ({:.0}% of the {insert_rate:.0} \
             single-row commits/s the database sustains at this concurrency); if commits were \
             the only cost, {:.0} checkouts/s would be the floor's limit ({:.2}× the measured \
             rate). Other failures: {}; shed: {}.\n",
            100.0 * ratio(commit_rate, insert_rate),
            insert_rate / commits_each,
            ratio(insert_rate / commits_each, c.goodput()),
            c.failures_text(),
            c.shed.len(),
        ));
        out
    }
}

/// Runs the checkout benchmark on a fleet already started (and warms it up).
pub async fn run(options: &FloorOptions, fleet: &mut FloorFleet) -> anyhow::Result<CheckoutReport> {
    let concurrency = options.shoppers;
    anyhow::ensure!(concurrency > 0, "--shoppers must be positive");
    let users = fleet.users(concurrency).await?;
    let pool = server_pool(&options.mysql_url, 2).await?;
    let durability: (i64, i64, i64) = sqlx::query_as(
        "SELECT CAST(@@innodb_flush_log_at_trx_commit AS SIGNED), CAST(@@sync_binlog AS SIGNED), \
         CAST(@@log_bin AS SIGNED)",
    )
    .fetch_one(&pool)
    .await?;
    let durability = format!(
        "innodb_flush_log_at_trx_commit={}, sync_binlog={}, log_bin={}",
        durability.0, durability.1, durability.2
    );
    let warm = (options.secs / 5).max(Duration::from_secs(1));
    let _ = drive(fleet, users.clone(), Until::Elapsed(warm)).await;
    let meter = meter(fleet.child.pid);
    let (checkouts, checkout_cost) = costed(
        &pool,
        &meter,
        drive(fleet, users, Until::Elapsed(options.secs)),
    )
    .await?;
    let scratch = format!("{}scratch", options.db_prefix);
    let (inserts, insert_cost) = costed(
        &pool,
        &meter,
        insert_floor(&options.mysql_url, &scratch, concurrency, options.secs),
    )
    .await?;
    pool.close().await;
    Ok(CheckoutReport {
        concurrency,
        checkouts,
        checkout_cost,
        inserts: inserts?,
        insert_cost,
        durability,
    })
}
