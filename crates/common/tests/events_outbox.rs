//! The transactional outbox and its relay, on SQLite always and on MariaDB with
//! `MALL_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306` (each case gets a database of its own).
//! Buses are in-process, wrapped to record every publish (so a duplicate publish shows even
//! though the bus dedupes) or to fail on purpose.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use mall_common::config::{DatabaseSettings, EventsSettings};
use mall_common::events::{
    self, BusError, Envelope, EventBus, MemoryBus, Outbox, Payload, Relay, RelayRound,
    StockChanged, SubscribeOptions, Subscription,
};
use mall_common::server::shutdown_pair;
use mall_common::store::{Database, Migrations, drop_database};
use parking_lot::Mutex;

static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("tests/migrations/sqlite"),
    mysql: sqlx::migrate!("tests/migrations/mysql"),
};

/// A test database with the outbox installed; dropped by [`TestDb::drop`].
struct TestDb {
    db: Database,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn drop(self) {
        self.db.close().await;
        let _ = drop_database(&self.url).await;
    }
}

/// SQLite always; MariaDB too when `MALL_TEST_MYSQL_URL` is set.
async fn databases() -> Vec<TestDb> {
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}/outbox.db?mode=rwc", dir.path().display());
    let mut urls = vec![(sqlite, Some(dir))];
    match std::env::var("MALL_TEST_MYSQL_URL") {
        Ok(base) => urls.push((
            format!(
                "{}/mall_outbox_test_{}",
                base.trim_end_matches('/'),
                rand::random::<u32>()
            ),
            None,
        )),
        Err(_) => eprintln!("MALL_TEST_MYSQL_URL is not set: SQLite only"),
    }
    let mut out = Vec::new();
    for (url, dir) in urls {
        let settings = DatabaseSettings {
            max_connections: 20,
            ..DatabaseSettings::default()
        };
        let db = Database::connect(&url, &settings, &MIGRATIONS)
            .await
            .expect("open the test database");
        Outbox::install(&db).await.expect("install the outbox");
        // Installing twice (a second instance starting) is fine.
        Outbox::install(&db)
            .await
            .expect("install the outbox again");
        out.push(TestDb { db, url, _dir: dir });
    }
    out
}

fn settings() -> EventsSettings {
    EventsSettings {
        relay_interval: Duration::from_millis(20),
        lease_ttl: Duration::from_secs(1),
        publish_timeout: Duration::from_millis(300),
        publish_attempts: 2,
        ..EventsSettings::default()
    }
}

fn stock(product: u64, stock: i64) -> Payload {
    Payload::StockChanged(StockChanged {
        product_id: product,
        stock,
        delta: -1,
        reservation_id: None,
    })
}

/// A state change and its event in one transaction.
async fn change_and_emit(
    db: &Database,
    aggregate: &str,
    commit: bool,
) -> Result<Envelope, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    sqlx::query("UPDATE counters SET v = v + 1 WHERE id = 1")
        .execute(&mut *tx)
        .await?;
    let e = Outbox::append(&mut tx, "product", aggregate, stock(1, 5)).await?;
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(e)
}

/// Records every publish and forwards it; fails while `down` is set, or hangs while `hang`.
#[derive(Clone)]
struct TestBus {
    inner: Arc<dyn EventBus>,
    published: Arc<Mutex<Vec<Envelope>>>,
    down: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    refused: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl EventBus for TestBus {
    fn kind(&self) -> &'static str {
        "test"
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BusError> {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(BusError::Unavailable("injected outage".into()));
        }
        self.published.lock().push(envelope.clone());
        self.inner.publish(envelope).await
    }

    async fn dead_letter(&self, group: &str, e: &Envelope, reason: &str) -> Result<(), BusError> {
        self.inner.dead_letter(group, e, reason).await
    }

    async fn subscribe(&self, options: SubscribeOptions) -> Result<Subscription, BusError> {
        self.inner.subscribe(options).await
    }
}

impl Default for TestBus {
    fn default() -> Self {
        TestBus::over(Arc::new(MemoryBus::new()))
    }
}

impl TestBus {
    fn over(inner: Arc<dyn EventBus>) -> Self {
        TestBus {
            inner,
            published: Arc::default(),
            down: Arc::default(),
            hang: Arc::default(),
            refused: Arc::default(),
        }
    }

    fn published(&self) -> Vec<Envelope> {
        self.published.lock().clone()
    }
}

async fn count(db: &Database, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db.pool()).await.unwrap()
}

#[tokio::test]
async fn a_rolled_back_change_emits_nothing_and_a_committed_one_is_relayed_once() {
    for t in databases().await {
        let bus = TestBus::default();
        let relay = Relay::new(t.db.clone(), Arc::new(bus.clone()), &settings());
        change_and_emit(&t.db, "p-1", false).await.unwrap();
        assert_eq!(count(&t.db, "SELECT COUNT(*) FROM outbox").await, 0);
        assert_eq!(
            relay.round().await.unwrap(),
            RelayRound::Published {
                sent: 0,
                blocked: false
            }
        );
        assert!(bus.published().is_empty());

        let e = change_and_emit(&t.db, "p-1", true).await.unwrap();
        assert_eq!(e.sequence, 1, "the first event of an aggregate is 1");
        relay.round().await.unwrap();
        relay.round().await.unwrap();
        let published = bus.published();
        assert_eq!(published.len(), 1, "published once");
        assert_eq!(published[0].event_id, e.event_id);
        assert_eq!(published[0].sequence, 1);
        assert_eq!(published[0].r#type, "product.stock_changed");
        assert_eq!(
            count(&t.db, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").await,
            0
        );
        assert_eq!(relay.metrics().published(), 1);
        assert_eq!(relay.metrics().pending(), 0);
        t.drop().await;
    }
}

#[tokio::test]
async fn sequences_count_per_aggregate_without_gaps_and_survive_pruning() {
    for t in databases().await {
        for _ in 0..3 {
            change_and_emit(&t.db, "p-1", true).await.unwrap();
        }
        let other = change_and_emit(&t.db, "p-2", true).await.unwrap();
        assert_eq!(other.sequence, 1);
        let bus = TestBus::default();
        let relay = Relay::new(t.db.clone(), Arc::new(bus.clone()), &settings());
        relay.round().await.unwrap();
        let seqs: Vec<(String, u64)> = bus
            .published()
            .iter()
            .map(|e| (e.aggregate_id.clone(), e.sequence))
            .collect();
        assert_eq!(
            seqs,
            vec![
                ("p-1".into(), 1),
                ("p-1".into(), 2),
                ("p-1".into(), 3),
                ("p-2".into(), 1)
            ]
        );
        // Prune everything sent before "the future": the last row of each aggregate stays.
        let pruned = Outbox::prune(&t.db, events::now_unix_ms() + 1_000)
            .await
            .unwrap();
        assert_eq!(pruned, 2);
        let next = change_and_emit(&t.db, "p-1", true).await.unwrap();
        assert_eq!(next.sequence, 4, "the sequence continues after pruning");
        t.drop().await;
    }
}

#[tokio::test]
async fn events_committed_before_a_relay_dies_are_published_by_the_next_one() {
    for t in databases().await {
        let bus = TestBus::default();
        let ids: Vec<String> = {
            let mut ids = Vec::new();
            for i in 0..5 {
                ids.push(
                    change_and_emit(&t.db, &format!("p-{i}"), true)
                        .await
                        .unwrap()
                        .event_id,
                );
            }
            ids
        };
        // The first relay takes the lease and hangs in its first publish; then it is killed.
        bus.hang.store(true, Ordering::SeqCst);
        let (_trigger, shutdown) = shutdown_pair();
        let first = Relay::new(t.db.clone(), Arc::new(bus.clone()), &settings()).spawn(shutdown);
        tokio::time::sleep(Duration::from_millis(200)).await;
        first.abort();
        let _ = first.await;
        assert!(bus.published().is_empty());
        assert_eq!(
            count(&t.db, "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL").await,
            5
        );
        // A restarted instance (new holder) takes over once the dead one's lease lapses.
        bus.hang.store(false, Ordering::SeqCst);
        let second = Relay::new(t.db.clone(), Arc::new(bus.clone()), &settings());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while bus.published().len() < 5 {
            assert!(tokio::time::Instant::now() < deadline, "not republished");
            second.round().await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let got: Vec<String> = bus.published().iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(got, ids);
        t.drop().await;
    }
}

#[tokio::test]
async fn a_broker_outage_delays_events_and_loses_or_reorders_none() {
    for t in databases().await {
        let bus = TestBus::default();
        bus.down.store(true, Ordering::SeqCst);
        let relay = Relay::new(t.db.clone(), Arc::new(bus.clone()), &settings());
        let mut sent = Vec::new();
        for i in 0..10 {
            sent.push(
                change_and_emit(&t.db, &format!("p-{}", i % 3), true)
                    .await
                    .unwrap(),
            );
        }
        let round = relay.round().await.unwrap();
        assert_eq!(
            round,
            RelayRound::Published {
                sent: 0,
                blocked: true
            }
        );
        assert_eq!(relay.round().await.unwrap(), RelayRound::BackingOff);
        assert!(relay.metrics().failures() >= 2, "each attempt counts");
        assert_eq!(relay.metrics().pending(), 10);
        let attempts = count(&t.db, "SELECT MAX(attempts) FROM outbox").await;
        assert_eq!(attempts, 1, "the failed row counts its failed round");
        // The broker comes back: everything goes out, in order.
        bus.down.store(false, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while bus.published().len() < 10 {
            assert!(tokio::time::Instant::now() < deadline, "not recovered");
            relay.round().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got: Vec<String> = bus.published().iter().map(|e| e.event_id.clone()).collect();
        let want: Vec<String> = sent.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(got, want);
        assert_eq!(relay.metrics().pending(), 0);
        assert!(relay.metrics().lag_seconds() < 1e-9);
        t.drop().await;
    }
}

/// Appends `per_aggregate` events to each of `aggregates` aggregates, concurrently across
/// aggregates; each append locks its aggregate's row first (as a real service's change does).
async fn produce(db: &Database, aggregates: usize, per_aggregate: usize) {
    let mut tasks = Vec::new();
    for a in 0..aggregates {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_aggregate {
                db.retrying("append", || async {
                    let mut tx = db.begin_write().await?;
                    Outbox::append(&mut tx, "order", &format!("o-{a}"), stock(a as u64, 1)).await?;
                    tx.commit().await
                })
                .await
                .expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn two_relays_publish_1000_events_of_50_aggregates_once_each_in_sequence() {
    for t in databases().await {
        two_relays_publish_in_sequence(&t, TestBus::default()).await;
        t.drop().await;
    }
}

#[tokio::test]
async fn two_relays_publish_1000_events_of_50_aggregates_to_each_broker_once_each_in_sequence() {
    for var in ["MALL_TEST_NATS_URL", "MALL_TEST_KAFKA_URL"] {
        let Ok(url) = std::env::var(var) else {
            eprintln!("{var} is not set: skipping that broker");
            continue;
        };
        for t in databases().await {
            // A namespace per database: the second run's events are new events of the same
            // aggregates, and must not meet the first run's on the broker.
            let settings = EventsSettings {
                namespace: format!("t{}", uuid::Uuid::new_v4().simple()),
                ..EventsSettings::for_url(&url)
            };
            let bus = events::connect(&settings).await.unwrap();
            eprintln!("relaying to {} for {}", bus.kind(), t.db.backend().system());
            two_relays_publish_in_sequence(&t, TestBus::over(bus)).await;
            t.drop().await;
            if url.starts_with("nats://") {
                let nats = events::NatsBus::connect(&settings).await.unwrap();
                nats.delete_stream().await.unwrap();
            }
        }
    }
}

/// 1,000 events of 50 aggregates, produced concurrently, relayed by two relays: each published
/// once, in sequence per aggregate, and a consumer gets each once in the same order.
async fn two_relays_publish_in_sequence(t: &TestDb, bus: TestBus) {
    {
        let mut sub = bus.subscribe(SubscribeOptions::new("check")).await.unwrap();
        let (trigger, shutdown) = shutdown_pair();
        let relays: Vec<_> = (0..2)
            .map(|_| {
                Relay::new(t.db.clone(), Arc::new(bus.clone()), &settings()).spawn(shutdown.clone())
            })
            .collect();
        produce(&t.db, 50, 20).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while bus.published().len() < 1000 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of 1000 published",
                bus.published().len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.fire();
        for r in relays {
            r.await.unwrap();
        }
        let published = bus.published();
        assert_eq!(published.len(), 1000, "no event published twice");
        let mut last: HashMap<String, u64> = HashMap::new();
        for e in &published {
            let prev = last.insert(e.aggregate_id.clone(), e.sequence).unwrap_or(0);
            assert_eq!(e.sequence, prev + 1, "{} out of order", e.aggregate_id);
        }
        assert_eq!(last.len(), 50);
        assert!(last.values().all(|&n| n == 20));
        // A consumer sees the same.
        let mut ids = std::collections::HashSet::new();
        let mut seen: HashMap<String, u64> = HashMap::new();
        for _ in 0..1000 {
            let d = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("delivery")
                .unwrap();
            assert!(ids.insert(d.envelope.event_id.clone()), "delivered twice");
            let prev = seen.insert(d.envelope.aggregate_id.clone(), d.envelope.sequence);
            assert_eq!(
                d.envelope.sequence,
                prev.unwrap_or(0) + 1,
                "delivered out of order"
            );
            d.ack().await.unwrap();
        }
    }
}

#[tokio::test]
async fn only_the_lease_holder_publishes() {
    for t in databases().await {
        let bus = TestBus::default();
        let a = Relay::new(t.db.clone(), Arc::new(bus.clone()), &settings());
        let b = Relay::new(t.db.clone(), Arc::new(bus.clone()), &settings());
        change_and_emit(&t.db, "p-1", true).await.unwrap();
        assert!(matches!(
            a.round().await.unwrap(),
            RelayRound::Published { sent: 1, .. }
        ));
        change_and_emit(&t.db, "p-1", true).await.unwrap();
        assert_eq!(b.round().await.unwrap(), RelayRound::Standby);
        assert_eq!(
            b.metrics().pending(),
            1,
            "a standby still reports the backlog"
        );
        assert!(matches!(
            a.round().await.unwrap(),
            RelayRound::Published { sent: 1, .. }
        ));
        // a stops (gives the lease up): b takes over at once.
        Outbox::release(&t.db, a.holder()).await.unwrap();
        change_and_emit(&t.db, "p-1", true).await.unwrap();
        assert!(matches!(
            b.round().await.unwrap(),
            RelayRound::Published { sent: 1, .. }
        ));
        assert_eq!(bus.published().len(), 3);
        t.drop().await;
    }
}

/// MySQL 8 (compose runs 8.4) has no `INSERT … RETURNING`: an append there takes two statements
/// with the same sequences. MySQL 8 cannot be installed here, so the path is forced, which is
/// process-wide (under `cargo test` the other tests of this binary may then take it too, and
/// pass the same).
#[tokio::test]
async fn without_returning_an_append_takes_two_statements_and_keeps_the_sequences() {
    Outbox::append_without_returning();
    for t in databases().await {
        let before = t.db.counts();
        for (aggregate, want) in [("p-1", 1), ("p-1", 2), ("p-2", 1)] {
            let e = change_and_emit(&t.db, aggregate, true).await.unwrap();
            assert_eq!(e.sequence, want, "{aggregate}");
        }
        let spent = t.db.counts().since(&before);
        assert_eq!(spent.outbox, 3, "{spent:?}");
        assert_eq!(
            spent.reads, 3,
            "one read of the sequence per append: {spent:?}"
        );
        t.drop().await;
    }
}
