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

/// In-process cache on moka: per-entry expiry, per-key atomic read-modify-write.
pub struct MemoryCache {
    prefix: String,
    inner: moka::future::Cache<String, Entry>,
}

impl MemoryCache {
    /// A cache holding at most `capacity` entries, keys prefixed with `prefix`.
    pub fn new(prefix: String, capacity: u64) -> Self {
        MemoryCache {
            prefix,
            inner: moka::future::Cache::builder()
                .max_capacity(capacity)
                .expire_after(EntryExpiry)
                .build(),
        }
    }

    /// The process-wide in-process cache (created by the first caller with its capacity), so
    /// services of one embedded fleet share revocations and counters like they would in Redis.
    pub fn shared(prefix: String, capacity: u64) -> Self {
        static SHARED: std::sync::OnceLock<moka::future::Cache<String, Entry>> =
            std::sync::OnceLock::new();
        let inner = SHARED
            .get_or_init(|| {
                moka::future::Cache::builder()
                    .max_capacity(capacity)
                    .expire_after(EntryExpiry)
                    .build()
            })
            .clone();
        MemoryCache { prefix, inner }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let now = Instant::now();
        Ok(self
            .inner
            .get(&self.key(key))
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
        self.inner.insert(self.key(key), entry).await;
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        use moka::ops::compute::{CompResult, Op};
        let value = Arc::new(value.to_vec());
        let result = self
            .inner
            .entry(self.key(key))
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
        self.inner.invalidate(&self.key(key)).await;
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        use moka::ops::compute::{CompResult, Op};
        let result = self
            .inner
            .entry(self.key(key))
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

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}
