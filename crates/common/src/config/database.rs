//! `database.*`: the service's SQL database.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Profile, Validate, ensure, redact_url};

/// Default of `database.url`: one SQLite file per service under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/{service}.db?mode=rwc";
/// Default of `database.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// Default of `database.acquire_timeout`.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// `database.*`
#[derive(Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `mysql://user:pass@host:port/db`; `{service}` is replaced by
    /// the service name. May hold a password: never log it, use [`redact_url`].
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection before the call fails `UNAVAILABLE`.
    #[serde(with = "super::duration")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: DEFAULT_DATABASE_URL.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl DatabaseSettings {
    /// Checks the URL once `{service}` is substituted.
    pub fn validate_url(&self, url: &str) -> Result<(), ConfigError> {
        ensure(
            url.starts_with("sqlite:") || url.starts_with("mysql://"),
            "database.url",
            format!(
                "unsupported scheme in `{}` (expected sqlite:// or mysql://)",
                redact_url(url)
            ),
        )
    }
}

impl Validate for DatabaseSettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        ensure(
            self.max_connections > 0,
            "database.max_connections",
            "must be at least 1",
        )?;
        ensure(
            !self.acquire_timeout.is_zero(),
            "database.acquire_timeout",
            "must be positive",
        )
    }
}
