//! The shared cache: one [`Cache`] trait, an in-process implementation (moka) for the embedded
//! default and a Redis one for fleets. Both honour TTLs and make [`Cache::set_nx`] and
//! [`Cache::incr`] atomic, so code and tests behave the same on either.
//!
//! Keys are namespaced (`cache.namespace` + `:`) by [`connect`], so fleets and tests can share one
//! Redis without seeing each other's keys.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::{CacheSettings, redact_url};

mod memory;
mod redis;
mod traced;

pub use memory::MemoryCache;
pub use redis::RedisCache;
pub use traced::Traced;

/// A cache operation failed (Redis unreachable, protocol error).
#[derive(Debug, thiserror::Error)]
#[error("cache: {0}")]
pub struct CacheError(String);

impl CacheError {
    /// An error saying `what`.
    pub fn new(what: impl Into<String>) -> Self {
        CacheError(what.into())
    }
}

impl From<::redis::RedisError> for CacheError {
    fn from(e: ::redis::RedisError) -> Self {
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
    /// Removes every key of this cache's namespace (what a Redis restart or `FLUSHALL` does to
    /// a fleet); answers how many. For tests and for operators resetting a namespace.
    async fn clear(&self) -> Result<u64, CacheError>;
    /// Checks the cache is reachable (for `/readyz`).
    async fn ping(&self) -> Result<(), CacheError>;
}

/// Keys starting with this are never evicted to make room, only expired: the in-process cache
/// keeps them apart from its bounded map; Redis must run with `maxmemory-policy noeviction`
/// (its default), which docs/security.md (Revocation) and compose require. Revocations live here.
pub const UNEVICTABLE_PREFIX: &str = "keep:";

/// The cache handle services hold.
pub type SharedCache = Arc<dyn Cache>;

/// Opens the cache named by `settings.url` (`memory://` or `redis://...`).
pub async fn connect(settings: &CacheSettings) -> Result<SharedCache, CacheError> {
    let prefix = format!("{}:", settings.namespace);
    // Spans only while traces are exported: no cost otherwise.
    let traced = crate::telemetry::trace::enabled();
    if settings.url.starts_with("memory://") {
        let memory = MemoryCache::shared(prefix, settings.memory_capacity);
        Ok(if traced {
            Arc::new(Traced::new(memory, "memory"))
        } else {
            Arc::new(memory)
        })
    } else if settings.url.starts_with("redis://") {
        let redis = RedisCache::connect(&settings.url, prefix).await?;
        Ok(if traced {
            Arc::new(Traced::new(redis, "redis"))
        } else {
            Arc::new(redis)
        })
    } else {
        Err(CacheError(format!(
            "unsupported cache url `{}`",
            redact_url(&settings.url)
        )))
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
    async fn clear_empties_only_its_own_namespace() {
        let ns = uuid::Uuid::new_v4().simple().to_string();
        let mut pairs: Vec<(&str, SharedCache, SharedCache)> = vec![(
            "memory",
            Arc::new(MemoryCache::shared(format!("a-{ns}:"), 1000)),
            Arc::new(MemoryCache::shared(format!("b-{ns}:"), 1000)),
        )];
        if let Ok(url) = std::env::var("MALL_TEST_REDIS_URL") {
            let open = |prefix: String| RedisCache::connect(&url, prefix);
            pairs.push((
                "redis",
                Arc::new(open(format!("a-{ns}:")).await.unwrap()),
                Arc::new(open(format!("b-{ns}:")).await.unwrap()),
            ));
        }
        let minute = Duration::from_secs(60);
        for (name, cache, other) in pairs {
            cache.set("a", b"1", minute).await.unwrap();
            cache.set("keep:b", b"2", minute).await.unwrap();
            other.set("a", b"x", minute).await.unwrap();
            assert_eq!(cache.clear().await.unwrap(), 2, "{name}");
            assert_eq!(cache.get("a").await.unwrap(), None, "{name}");
            assert_eq!(cache.get("keep:b").await.unwrap(), None, "{name}");
            let kept = other.get("a").await.unwrap();
            assert_eq!(kept.as_deref(), Some(&b"x"[..]), "{name}");
            other.clear().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_full_memory_cache_never_evicts_unevictable_keys() {
        let cache = MemoryCache::new("t:".into(), 10);
        let minute = Duration::from_secs(60);
        cache.set("keep:revoked", b"1", minute).await.unwrap();
        for i in 0..1_000 {
            cache.set(&format!("k{i}"), b"v", minute).await.unwrap();
        }
        let evictable = cache.settle().await;
        assert!(
            evictable <= 10,
            "the bounded map stays bounded: {evictable}"
        );
        assert!(cache.get("keep:revoked").await.unwrap().is_some());
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
