//! The in-process cache (moka): per process, same TTL and atomic semantics as Redis.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Cache, CacheError};

#[derive(Clone)]
struct Entry {
    data: Arc<Vec<u8>>,
    expires_at: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at > now
    }
}

struct EntryExpiry;

impl moka::Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &String, v: &Entry, now: Instant) -> Option<Duration> {
        Some(v.expires_at.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.expires_at.saturating_duration_since(now))
    }
}

type Store = moka::future::Cache<String, Entry>;

/// At most `capacity` entries (least recently used evicted first); `None`: expiry only.
fn store(capacity: Option<u64>) -> Store {
    let builder = moka::future::Cache::builder().expire_after(EntryExpiry);
    match capacity {
        Some(capacity) => builder.max_capacity(capacity).build(),
        None => builder.build(),
    }
}

/// In-process cache on moka: per-entry expiry, per-key atomic read-modify-write. Keys under
/// [`UNEVICTABLE_PREFIX`](super::UNEVICTABLE_PREFIX) live in a second map that only expiry
/// empties, so a full cache never drops them.
pub struct MemoryCache {
    prefix: String,
    evictable: Store,
    unevictable: Store,
}

impl MemoryCache {
    /// A cache holding at most `capacity` evictable entries, keys prefixed with `prefix`.
    pub fn new(prefix: String, capacity: u64) -> Self {
        MemoryCache {
            prefix,
            evictable: store(Some(capacity)),
            unevictable: store(None),
        }
    }

    /// The process-wide in-process cache (created by the first caller with its capacity), so
    /// services of one embedded fleet share revocations and counters like they would in Redis.
    pub fn shared(prefix: String, capacity: u64) -> Self {
        static SHARED: std::sync::OnceLock<(Store, Store)> = std::sync::OnceLock::new();
        let (evictable, unevictable) = SHARED
            .get_or_init(|| (store(Some(capacity)), store(None)))
            .clone();
        MemoryCache {
            prefix,
            evictable,
            unevictable,
        }
    }

    /// Applies pending evictions; answers how many evictable entries remain.
    #[cfg(test)]
    pub(crate) async fn settle(&self) -> u64 {
        self.evictable.run_pending_tasks().await;
        self.unevictable.run_pending_tasks().await;
        self.evictable.entry_count()
    }

    /// The map `key` lives in and its full (prefixed) name.
    fn slot(&self, key: &str) -> (&Store, String) {
        let map = if key.starts_with(super::UNEVICTABLE_PREFIX) {
            &self.unevictable
        } else {
            &self.evictable
        };
        (map, format!("{}{key}", self.prefix))
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = Instant::now();
        let (map, key) = self.slot(key);
        Ok(map
            .get(&key)
            .await
            .filter(|e| e.live(now))
            .map(|e| e.data.as_ref().clone()))
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let entry = Entry {
            data: Arc::new(value.to_vec()),
            expires_at: Instant::now() + ttl,
        };
        let (map, key) = self.slot(key);
        map.insert(key, entry).await;
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        use moka::ops::compute::{CompResult, Op};
        let value = Arc::new(value.to_vec());
        let (map, key) = self.slot(key);
        let result = map
            .entry(key)
            .and_compute_with(|current| {
                let now = Instant::now();
                let op = match current {
                    Some(e) if e.value().live(now) => Op::Nop,
                    _ => Op::Put(Entry {
                        data: value,
                        expires_at: now + ttl,
                    }),
                };
                std::future::ready(op)
            })
            .await;
        Ok(matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        ))
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let (map, key) = self.slot(key);
        map.invalidate(&key).await;
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        use moka::ops::compute::{CompResult, Op};
        let (map, full_key) = self.slot(key);
        let result = map
            .entry(full_key)
            .and_compute_with(|current| {
                let now = Instant::now();
                let next = match current {
                    Some(e) if e.value().live(now) => {
                        let count = std::str::from_utf8(&e.value().data)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok())
                            .unwrap_or(0);
                        Entry {
                            data: Arc::new((count + 1).to_string().into_bytes()),
                            expires_at: e.value().expires_at,
                        }
                    }
                    _ => Entry {
                        data: Arc::new(b"1".to_vec()),
                        expires_at: now + ttl,
                    },
                };
                std::future::ready(Op::Put(next))
            })
            .await;
        let entry = match result {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) => e.into_value(),
            _ => return Err(CacheError("counter update was not applied".into())),
        };
        std::str::from_utf8(&entry.data)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| CacheError(format!("`{key}` does not hold a counter")))
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let mut removed = 0;
        for map in [&self.evictable, &self.unevictable] {
            let keys: Vec<String> = map
                .iter()
                .filter(|(k, _)| k.starts_with(&self.prefix))
                .map(|(k, _)| k.as_ref().clone())
                .collect();
            for key in keys {
                map.invalidate(&key).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}
