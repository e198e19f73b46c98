//! Every cache call as a span (`cache.<op>`, client kind) with `db.system` (`redis` or
//! `memory`) and `db.operation`; keys and values never go on it (keys name users and sessions).
//!
//! Readiness pings are left out (a probe every few seconds would be all a trace shows).
//! [`super::connect`] wraps a cache in [`Traced`] only while traces are exported.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;

use super::{Cache, CacheError};

/// A cache whose calls are spans; see the module docs.
pub struct Traced<C> {
    inner: C,
    system: &'static str,
}

impl<C: Cache> Traced<C> {
    /// `inner`, its calls reported with `db.system = system`.
    pub fn new(inner: C, system: &'static str) -> Self {
        Traced { inner, system }
    }

    fn traced<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, CacheError>>,
    ) -> impl Future<Output = Result<T, CacheError>> {
        let span = tracing::info_span!(
            "cache",
            otel.name = %format_args!("cache.{operation}"),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            db.system = self.system,
            db.operation = operation,
        );
        let recorded = span.clone();
        async move {
            let result = call.await;
            if result.is_err() {
                recorded.record("otel.status_code", "ERROR");
            }
            result
        }
        .instrument(span)
    }
}

#[async_trait]
impl<C: Cache> Cache for Traced<C> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        self.traced("get", self.inner.get(key)).await
    }
    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        self.traced("get_many", self.inner.get_many(keys)).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        self.traced("set", self.inner.set(key, value, ttl)).await
    }
    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        self.traced("set_nx", self.inner.set_nx(key, value, ttl))
            .await
    }
    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.traced("delete", self.inner.delete(key)).await
    }
    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        self.traced("incr", self.inner.incr(key, ttl)).await
    }
    async fn clear(&self) -> Result<u64, CacheError> {
        self.traced("clear", self.inner.clear()).await
    }
    async fn ping(&self) -> Result<(), CacheError> {
        self.inner.ping().await
    }
}
