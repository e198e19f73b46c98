//! The user service (port 8001): the original TikTokMall profile API — register, log in and
//! out, view, change and delete one's own account.
//!
//! Accounts and sessions belong to auth; this service owns no tables. It calls auth's RPCs over
//! gRPC (never the other way round) and keeps read-through copies of profiles in the shared
//! cache. [`build`] opens the cache, token keys and clients, and binds the server; [`run`] serves
//! until shutdown. Tests and the `mall` fleet call `build` with port 0.

pub mod api;
pub mod domain;
pub mod error;
pub mod peers;

use std::time::Duration;

use mall_common::config;
use mall_common::platform::Platform;
use mall_common::server::BoundServer;
use mall_proto::user::v1::user_service_server::UserServiceServer;
use mall_types::ServiceName;
use serde::{Deserialize, Serialize};

/// The service name used in config and discovery.
pub const NAME: &str = ServiceName::User.as_str();

/// User's own settings, the `profile_cache` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// `profile_cache.*`
    pub profile_cache: ProfileCacheSettings,
}

/// `profile_cache.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileCacheSettings {
    /// How long an `Info` profile is cached; writes through this service invalidate it sooner.
    #[serde(with = "mall_common::config::duration")]
    pub ttl: Duration,
}

impl config::Validate for Extra {
    fn validate(&self, _: config::Profile) -> Result<(), config::ConfigError> {
        Ok(())
    }
}

/// User's settings: the platform sections plus `profile_cache`.
pub type Settings = config::Settings<Extra>;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::with_ext(
        NAME,
        Extra {
            profile_cache: ProfileCacheSettings {
                ttl: Duration::from_secs(300),
            },
        },
    )
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, the config centre, `MALL__*`).
pub async fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load_process(NAME, default_settings()).await
}

/// Opens the cache, token keys and the auth client (no database: user owns no tables), and
/// binds the ports.
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    let platform = Platform::open(&settings, None).await?;
    let service = api::ProfileApi::new(&platform, settings.ext.profile_cache.ttl);
    platform
        .server(&settings)
        .add_service(UserServiceServer::new(service), api::ACCESS)
        .bind()
        .await
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    mall_common::server::build_and_serve(build(settings), shutdown).await
}
