//! The shared cache: one [`Cache`] trait, an in-process implementation (moka) for the embedded
//! default and a Redis one for fleets. Both honour TTLs and make [`Cache::set_nx`] and
//! [`Cache::incr`] atomic, so code and tests behave the same on either.
//!
//! Keys are namespaced (`cache.namespace` + `:`) by [`connect`], so fleets and tests can share one
//! Redis without seeing each other's keys.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{CacheSettings, redact_url};

/// A cache operation failed (Redis unreachable, protocol error).
#[derive(Debug, thiserror::Error)]
#[error("cache: {0}")]
pub struct CacheError(String);

impl From<redis::RedisError> for CacheError {
    fn from(e: redis::RedisError) -> Self {
        CacheError(e.to_string())
    }
}

/// A key-value cache with per-entry TTLs and atomic counters.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The value under `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError>;
    /// The values under several keys at once (one round trip on Redis).
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError>;
    /// Stores `value` under `key` for `ttl`, replacing any value.
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError>;
    /// Stores `value` only if `key` is absent; true when it was stored.
    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError>;
    /// Removes `key` (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), CacheError>;
    /// Adds 1 to the counter under `key` and returns the new value; a new counter starts at 1
    /// and expires after `ttl` (later increments keep that expiry).
    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError>;
    /// Checks the cache is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), CacheError>;
}

/// The cache handle services hold.
pub type SharedCache = Arc<dyn Cache>;

/// Opens the cache named by `settings.url` (`memory://` or `redis://...`).
pub async fn connect(settings: &CacheSettings) -> Result<SharedCache, CacheError> {
    let prefix = format!("{}:", settings.namespace);
    if settings.url.starts_with("memory://") {
        Ok(Arc::new(MemoryCache::shared(
            prefix,
            settings.memory_capacity,
        )))
    } else if settings.url.starts_with("redis://") {
        Ok(Arc::new(RedisCache::connect(&settings.url, prefix).await?))
    } else {
        Err(CacheError(format!(
            "unsupported cache url `{}`",
            redact_url(&settings.url)
        )))
    }
}

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

/// Redis cache over one multiplexed, auto-reconnecting connection.
pub struct RedisCache {
    prefix: String,
    conn: redis::aio::ConnectionManager,
    incr_script: redis::Script,
}

/// INCR that sets the TTL only when it creates the counter, atomically.
const INCR_WITH_TTL: &str = r"
local v = redis.call('INCR', KEYS[1])
if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v";

impl RedisCache {
    /// Connects to `url` (fails when Redis is unreachable).
    pub async fn connect(url: &str, prefix: String) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
            .await
            .map_err(|_| CacheError(format!("timed out connecting to {}", redact_url(url))))??;
        Ok(RedisCache {
            prefix,
            conn,
            incr_script: redis::Script::new(INCR_WITH_TTL),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut c)
            .await?)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(key));
        }
        Ok(cmd.query_async(&mut c).await?)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let mut c = self.conn.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut c)
            .await?;
        Ok(reply.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let mut c = self.conn.clone();
        Ok(self
            .incr_script
            .key(self.key(key))
            .arg(millis(ttl))
            .invoke_async(&mut c)
            .await?)
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await?;
        Ok(())
    }
}

/// How long an invalidation blocks re-filling a key; longer than any read of the source, so a
/// read that started before a write can never put the old value back.
pub const INVALIDATION_HOLD: Duration = Duration::from_secs(2);

/// An empty value marks a key as just invalidated (see [`invalidate`]).
const TOMBSTONE: &[u8] = b"";

/// Reads `key` through the cache: a hit is decoded; a miss calls `load` and stores its value
/// for `ttl` unless the key was invalidated meanwhile. Cache failures fall back to `load`.
pub async fn read_through<T, E, F, Fut>(
    cache: &dyn Cache,
    key: &str,
    ttl: Duration,
    load: F,
) -> Result<Option<T>, E>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let mut may_fill = true;
    match cache.get(key).await {
        Ok(Some(bytes)) if bytes.as_slice() == TOMBSTONE => may_fill = false,
        Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(value) => return Ok(Some(value)),
            Err(e) => tracing::warn!(key, error = %e, "undecodable cache entry; reloading"),
        },
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(key, error = %e, "cache read failed; reading the source");
            may_fill = false;
        }
    }
    let value = load().await?;
    if let (true, Some(v)) = (may_fill, &value) {
        match serde_json::to_vec(v) {
            // set_nx: an invalidation that landed after our read wins.
            Ok(bytes) => {
                if let Err(e) = cache.set_nx(key, &bytes, ttl).await {
                    tracing::warn!(key, error = %e, "cache fill failed");
                }
            }
            Err(e) => tracing::warn!(key, error = %e, "cannot encode cache entry"),
        }
    }
    Ok(value)
}

/// Invalidates `key` after a write: replaces it with a short-lived tombstone, so concurrent
/// [`read_through`]s neither serve nor re-fill the old value.
pub async fn invalidate(cache: &dyn Cache, key: &str) -> Result<(), CacheError> {
    cache.set(key, TOMBSTONE, INVALIDATION_HOLD).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn caches() -> Vec<(&'static str, SharedCache)> {
        let ns = format!("test-{}", uuid::Uuid::new_v4().simple());
        let mut out: Vec<(&'static str, SharedCache)> =
            vec![("memory", Arc::new(MemoryCache::new(format!("{ns}:"), 1000)))];
        if let Ok(url) = std::env::var("MALL_TEST_REDIS_URL") {
            let redis = RedisCache::connect(&url, format!("{ns}:"))
                .await
                .expect("MALL_TEST_REDIS_URL is set but Redis is unreachable");
            out.push(("redis", Arc::new(redis)));
        }
        out
    }

    #[tokio::test]
    async fn values_expire_after_their_ttl() {
        for (name, cache) in caches().await {
            cache
                .set("k", b"v", Duration::from_millis(150))
                .await
                .unwrap();
            assert_eq!(cache.get("k").await.unwrap(), Some(b"v".to_vec()), "{name}");
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(cache.get("k").await.unwrap(), None, "{name}");
        }
    }

    #[tokio::test]
    async fn set_nx_stores_only_once() {
        for (name, cache) in caches().await {
            let ttl = Duration::from_secs(5);
            assert!(cache.set_nx("once", b"a", ttl).await.unwrap(), "{name}");
            assert!(!cache.set_nx("once", b"b", ttl).await.unwrap(), "{name}");
            assert_eq!(cache.get("once").await.unwrap(), Some(b"a".to_vec()));
            cache.delete("once").await.unwrap();
            assert!(cache.set_nx("once", b"c", ttl).await.unwrap(), "{name}");
        }
    }

    #[tokio::test]
    async fn concurrent_increments_are_never_lost_and_keep_the_first_ttl() {
        for (name, cache) in caches().await {
            let tasks: Vec<_> = (0..50)
                .map(|_| {
                    let c = cache.clone();
                    tokio::spawn(async move { c.incr("n", Duration::from_millis(400)).await })
                })
                .collect();
            let mut seen: Vec<i64> = Vec::new();
            for t in tasks {
                seen.push(t.await.unwrap().unwrap());
            }
            seen.sort();
            assert_eq!(seen, (1..=50).collect::<Vec<_>>(), "{name}");
            tokio::time::sleep(Duration::from_millis(600)).await;
            assert_eq!(
                cache.incr("n", Duration::from_secs(5)).await.unwrap(),
                1,
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn invalidation_blocks_a_stale_refill() {
        for (name, cache) in caches().await {
            let ttl = Duration::from_secs(60);
            let v: Option<i64> =
                read_through(cache.as_ref(), "p", ttl, || async { Ok::<_, ()>(Some(1)) })
                    .await
                    .unwrap();
            assert_eq!(v, Some(1));
            // A slow reader loaded the old value, then a writer invalidated: the reader's fill
            // must not land.
            invalidate(cache.as_ref(), "p").await.unwrap();
            let stale: Option<i64> =
                read_through(cache.as_ref(), "p", ttl, || async { Ok::<_, ()>(Some(1)) })
                    .await
                    .unwrap();
            assert_eq!(stale, Some(1));
            let fresh: Option<i64> =
                read_through(cache.as_ref(), "p", ttl, || async { Ok::<_, ()>(Some(2)) })
                    .await
                    .unwrap();
            assert_eq!(
                fresh,
                Some(2),
                "{name}: tombstone must not be served or overwritten"
            );
        }
    }
}
