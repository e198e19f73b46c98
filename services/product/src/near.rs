//! The near cache: `GetProduct` answers kept in this process, in front of the shared cache
//! (Redis in production), so a hit costs neither a network round trip nor a decode.
//!
//! **Fleet-wide invalidation through a change log in the shared cache.** Every write of a
//! product (update, delete, stock reserved or released) appends the changed ids to a ring of
//! [`RING`] slots: `INCR product:changes:seq` gives the write its number `n`, and slot
//! `n % RING` gets `"n:id,id,..."`. Every instance polls the sequence every
//! `catalog.near_cache_poll` (200 ms) and drops the ids of the slots it has not seen (one
//! `GET` and, after writes, one `MGET`); a gap it cannot read (the ring wrapped, the log was
//! wiped, a slot not yet written after two polls) drops everything.
//!
//! **Bounded staleness.** An entry is served only while the last successful poll is younger
//! than `catalog.near_cache_staleness` (1 s) and the poll left no slot unread: a write is seen
//! by every instance within that bound, or the instance stops serving from memory (Redis down
//! included) and reads through the shared cache and the database as before. A fill is kept
//! only if no change was applied between the start of its read and its end, so a read that
//! raced a write cannot put the old product back.
//!
//! Checkout never reads prices here: `BatchGetProducts` (its only caller) reads the database.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mall_common::cache::SharedCache;
use mall_types::ProductId;
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::domain::Product;

/// Slots in the change log.
pub const RING: u64 = 1024;
/// The change log's sequence key (in the service's cache namespace).
const SEQ_KEY: &str = "product:changes:seq";
/// How long the log's keys live: far longer than any poll interval (a lost sequence only
/// makes every instance drop its entries once).
const LOG_TTL: Duration = Duration::from_secs(7 * 24 * 3_600);

fn slot_key(n: u64) -> String {
    format!("product:changes:{}", n % RING)
}

/// `catalog.near_cache_*` settings.
#[derive(Debug, Clone, Copy)]
pub struct NearSettings {
    /// Most products kept (0: no near cache).
    pub entries: usize,
    /// How often the change log is read.
    pub poll: Duration,
    /// Longest time since the last complete read of the log during which entries are served.
    pub staleness: Duration,
    /// Longest time an entry is kept at all.
    pub ttl: Duration,
}

struct Entry {
    product: Product,
    filled: Instant,
}

#[derive(Default)]
struct Log {
    /// The last change applied.
    seen: u64,
    /// Until when entries may be served (the last complete poll + `staleness`).
    fresh_until: Option<Instant>,
    /// A slot found missing at the previous poll (a write between its INCR and its SET).
    waiting_for: Option<u64>,
    /// Changes made by this instance (dropped here before the log has them).
    local: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// See the module docs.
pub struct NearCache {
    shared: SharedCache,
    settings: NearSettings,
    entries: RwLock<HashMap<i64, Entry>>,
    log: Mutex<Log>,
    lookups: Family<ResultLabels, Counter>,
    hits: OnceLock<Counter>,
    misses: OnceLock<Counter>,
    resets: Counter,
}

/// A read in progress: what the log had applied, and this instance changed, when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(u64, u64);

impl NearCache {
    /// A near cache over `shared`; `None` when `settings.entries` is 0.
    pub fn new(shared: SharedCache, settings: NearSettings) -> Option<Arc<Self>> {
        (settings.entries > 0).then(|| {
            Arc::new(NearCache {
                shared,
                settings,
                entries: RwLock::new(HashMap::new()),
                log: Mutex::new(Log::default()),
                lookups: Family::default(),
                hits: OnceLock::new(),
                misses: OnceLock::new(),
                resets: Counter::default(),
            })
        })
    }

    /// Registers `product_near_cache_lookups_total{result="hit"|"miss"}` and
    /// `product_near_cache_resets_total` (everything dropped at once) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "product_near_cache_lookups",
            "GetProduct lookups in the in-process near cache, by result",
            self.lookups.clone(),
        );
        registry.register(
            "product_near_cache_resets",
            "Times the near cache dropped everything (change log lost, wrapped or behind)",
            self.resets.clone(),
        );
    }

    fn count(&self, hit: bool) {
        let (slot, result) = if hit {
            (&self.hits, "hit")
        } else {
            (&self.misses, "miss")
        };
        // Resolved once (on the first lookup of its kind, so /metrics lists only results seen).
        slot.get_or_init(|| self.lookups.get_or_create(&ResultLabels { result }).clone())
            .inc();
    }

    fn servable(log: &Log, now: Instant) -> bool {
        log.fresh_until.is_some_and(|until| now < until)
    }

    fn fresh(&self, now: Instant) -> bool {
        Self::servable(&self.log.lock(), now)
    }

    /// The product under `id`, when kept and servable.
    pub fn get(&self, id: ProductId) -> Option<Product> {
        let found = self.lookup(id);
        self.count(found.is_some());
        found
    }

    fn lookup(&self, id: ProductId) -> Option<Product> {
        let now = Instant::now();
        if !self.fresh(now) {
            return None;
        }
        let entries = self.entries.read();
        let entry = entries.get(&id.db())?;
        (now.duration_since(entry.filled) < self.settings.ttl).then(|| entry.product.clone())
    }

    /// Taken before reading a product from elsewhere, for [`NearCache::fill`].
    pub fn stamp(&self) -> Stamp {
        let log = self.log.lock();
        Stamp(log.seen, log.local)
    }

    /// Keeps `product`, read since `stamp`, unless a change was applied meanwhile.
    pub fn fill(&self, stamp: Stamp, product: &Product) {
        let log = self.log.lock();
        if Stamp(log.seen, log.local) != stamp || !Self::servable(&log, Instant::now()) {
            return;
        }
        let mut entries = self.entries.write();
        if entries.len() >= self.settings.entries {
            // Bounded by count; a full cache starts over (products are small and hot ones come
            // back at once).
            entries.clear();
        }
        entries.insert(
            product.id,
            Entry {
                product: product.clone(),
                filled: Instant::now(),
            },
        );
        drop(log);
    }

    /// Records that the products `ids` changed (after the write committed): dropped here at
    /// once, and logged for the other instances. A failure to log is returned (the caller logs
    /// it); the other instances then serve the old product until their entries' ttl, so the
    /// log write is retried once.
    pub async fn changed(&self, ids: &[ProductId]) -> Result<(), mall_common::cache::CacheError> {
        {
            let mut log = self.log.lock();
            log.local += 1;
            let mut entries = self.entries.write();
            for id in ids {
                entries.remove(&id.db());
            }
        }
        let list = ids
            .iter()
            .map(|id| id.db().to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut last = None;
        for _ in 0..2 {
            match self.append(&list).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("two attempts"))
    }

    async fn append(&self, list: &str) -> Result<(), mall_common::cache::CacheError> {
        let n = self.shared.incr(SEQ_KEY, LOG_TTL).await?;
        let n = u64::try_from(n).unwrap_or(0);
        self.shared
            .set(&slot_key(n), format!("{n}:{list}").as_bytes(), LOG_TTL)
            .await
    }

    /// Reads the change log once (see the module docs).
    pub async fn poll(&self) {
        let started = Instant::now();
        let seq = match self.shared.get(SEQ_KEY).await {
            Ok(bytes) => bytes
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(0),
            Err(e) => {
                tracing::debug!(error = %e, "near cache: change log unreadable");
                return;
            }
        };
        let seen = self.log.lock().seen;
        if seq == seen {
            self.caught_up(&mut self.log.lock(), seq, started);
            return;
        }
        if seq < seen || seq - seen > RING {
            // The log was lost or wrapped past us: nothing kept can be trusted.
            self.forget(&mut self.log.lock(), seq, started);
            return;
        }
        let keys: Vec<String> = (seen + 1..=seq).map(slot_key).collect();
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let slots = match self.shared.get_many(&refs).await {
            Ok(slots) => slots,
            Err(e) => {
                tracing::debug!(error = %e, "near cache: change log unreadable");
                return;
            }
        };
        let mut applied = seen;
        let mut dropped = Vec::new();
        for (n, slot) in (seen + 1..=seq).zip(slots) {
            match slot.as_deref().and_then(|s| parse_slot(s, n)) {
                Some(ids) => {
                    dropped.extend(ids);
                    applied = n;
                }
                None => break,
            }
        }
        // Under the log's lock, so no fill stamped before these changes lands after them.
        let mut log = self.log.lock();
        if log.seen != seen {
            // Another poll got here first (polls never overlap in the worker; tests may).
            return;
        }
        {
            let mut entries = self.entries.write();
            for id in &dropped {
                entries.remove(id);
            }
        }
        log.seen = applied;
        if applied == seq {
            self.caught_up(&mut log, seq, started);
            return;
        }
        // Slot `applied + 1` is not there: a write between its INCR and its SET, or a slot
        // overwritten. Wait one poll for it (serving nothing meanwhile), then start over.
        log.fresh_until = None;
        let missing = applied + 1;
        if log.waiting_for == Some(missing) {
            self.forget(&mut log, seq, started);
        } else {
            log.waiting_for = Some(missing);
        }
    }

    fn caught_up(&self, log: &mut Log, seq: u64, polled_at: Instant) {
        log.seen = seq;
        log.waiting_for = None;
        log.fresh_until = Some(polled_at + self.settings.staleness);
    }

    fn forget(&self, log: &mut Log, seq: u64, polled_at: Instant) {
        self.entries.write().clear();
        self.resets.inc();
        self.caught_up(log, seq, polled_at);
    }

    /// How many products are kept (for tests).
    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The ids of slot `n` (`"n:id,id"`), or `None` when the slot holds another write.
fn parse_slot(slot: &[u8], n: u64) -> Option<Vec<i64>> {
    let text = std::str::from_utf8(slot).ok()?;
    let (seq, ids) = text.split_once(':')?;
    if seq.parse::<u64>().ok()? != n {
        return None;
    }
    ids.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mall_common::cache::MemoryCache;

    fn product(id: i64, price_cents: i64) -> Product {
        Product {
            id,
            name: format!("p{id}"),
            description: String::new(),
            picture: String::new(),
            price_cents,
            stock: 1,
            categories: vec![],
        }
    }

    fn pair() -> (Arc<NearCache>, Arc<NearCache>, SharedCache) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let shared: SharedCache = Arc::new(MemoryCache::new(format!("near-{n}:"), 1000));
        let settings = NearSettings {
            entries: 100,
            poll: Duration::from_millis(200),
            staleness: Duration::from_secs(1),
            ttl: Duration::from_secs(60),
        };
        let a = NearCache::new(shared.clone(), settings).unwrap();
        let b = NearCache::new(shared.clone(), settings).unwrap();
        (a, b, shared)
    }

    fn id(n: u64) -> ProductId {
        ProductId::parse(n, "id").unwrap()
    }

    #[tokio::test]
    async fn nothing_is_served_before_the_first_poll() {
        let (a, _, _) = pair();
        a.fill(a.stamp(), &product(1, 100));
        assert!(a.get(id(1)).is_none());
        a.poll().await;
        a.fill(a.stamp(), &product(1, 100));
        assert_eq!(a.get(id(1)).unwrap().price_cents, 100);
    }

    #[tokio::test]
    async fn a_change_on_one_instance_drops_the_entry_on_the_other_at_its_next_poll() {
        let (a, b, _) = pair();
        a.poll().await;
        b.poll().await;
        a.fill(a.stamp(), &product(1, 100));
        b.fill(b.stamp(), &product(1, 100));
        b.fill(b.stamp(), &product(2, 200));
        a.changed(&[id(1)]).await.unwrap();
        assert!(
            a.get(id(1)).is_none(),
            "the writer drops its own copy at once"
        );
        assert!(b.get(id(1)).is_some(), "the other until it polls");
        b.poll().await;
        assert!(b.get(id(1)).is_none());
        assert_eq!(b.get(id(2)).unwrap().price_cents, 200, "others are kept");
    }

    #[tokio::test]
    async fn a_read_that_raced_a_change_is_not_kept() {
        let (a, b, _) = pair();
        a.poll().await;
        b.poll().await;
        let stamp = b.stamp();
        // b reads the old product; meanwhile a writes and b learns of it.
        a.changed(&[id(1)]).await.unwrap();
        b.poll().await;
        b.fill(stamp, &product(1, 100));
        assert!(b.get(id(1)).is_none());
        // The same on the writer itself, before any poll.
        let stamp = a.stamp();
        a.changed(&[id(1)]).await.unwrap();
        a.fill(stamp, &product(1, 100));
        assert!(a.get(id(1)).is_none());
    }

    #[tokio::test]
    async fn a_lost_or_wrapped_log_drops_everything() {
        let (a, b, shared) = pair();
        a.poll().await;
        b.poll().await;
        b.fill(b.stamp(), &product(1, 100));
        for _ in 0..=RING {
            a.changed(&[id(7)]).await.unwrap();
        }
        b.poll().await;
        assert!(b.is_empty(), "wrapped");
        b.fill(b.stamp(), &product(1, 100));
        shared.clear().await.unwrap();
        b.poll().await;
        assert!(b.is_empty(), "the log was wiped");
    }

    #[tokio::test]
    async fn a_slot_not_yet_written_stops_serving_until_it_is() {
        let (a, b, shared) = pair();
        a.poll().await;
        b.poll().await;
        b.fill(b.stamp(), &product(1, 100));
        // A writer between its INCR and its SET.
        shared.incr(SEQ_KEY, LOG_TTL).await.unwrap();
        b.poll().await;
        assert!(b.get(id(1)).is_none(), "behind: nothing served");
        assert_eq!(b.len(), 1);
        b.poll().await;
        assert!(b.is_empty(), "still missing at the next poll: start over");
        b.fill(b.stamp(), &product(1, 100));
        assert!(b.get(id(1)).is_some());
        drop(a);
    }

    #[tokio::test]
    async fn entries_stop_being_served_when_the_log_cannot_be_read() {
        let (a, _, _) = pair();
        let settings = NearSettings {
            staleness: Duration::from_millis(50),
            ..a.settings
        };
        let c = NearCache::new(a.shared.clone(), settings).unwrap();
        c.poll().await;
        c.fill(c.stamp(), &product(1, 100));
        assert!(c.get(id(1)).is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(c.get(id(1)).is_none(), "no poll within the staleness bound");
    }
}
