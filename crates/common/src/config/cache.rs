//! `cache.*`: the shared cache.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Profile, Validate, ensure, redact_url};

/// Default of `cache.url`: the in-process cache.
pub const DEFAULT_CACHE_URL: &str = "memory://";
/// Default of `cache.namespace`.
pub const DEFAULT_CACHE_NAMESPACE: &str = "mall";
/// Default of `cache.memory_capacity`.
pub const DEFAULT_MEMORY_CAPACITY: u64 = 100_000;

/// `cache.*`
#[derive(Clone, Serialize, Deserialize)]
pub struct CacheSettings {
    /// `memory://` (in-process) or `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of every key, so several fleets (or tests) can share one Redis.
    pub namespace: String,
    /// Entry limit of the in-process cache.
    pub memory_capacity: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            url: DEFAULT_CACHE_URL.into(),
            namespace: DEFAULT_CACHE_NAMESPACE.into(),
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
        }
    }
}

impl fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheSettings")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("memory_capacity", &self.memory_capacity)
            .finish()
    }
}

impl Validate for CacheSettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        ensure(
            self.url.starts_with("memory://") || self.url.starts_with("redis://"),
            "cache.url",
            format!(
                "unsupported scheme in `{}` (expected memory:// or redis://)",
                redact_url(&self.url)
            ),
        )
    }
}
