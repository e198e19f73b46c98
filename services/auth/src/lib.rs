//! The auth service (port 8000): the identity provider. It owns accounts (Argon2id password
//! hashes, role, status) and sessions (refresh-token families), issues the JWT access tokens
//! every service verifies locally, and keeps login lockout counters in the shared cache.

pub mod domain;
pub mod service;
pub mod store;

use mall_common::config;
use mall_common::platform::Platform;
use mall_common::server::{BoundServer, ServerBuilder};
use mall_proto::auth::v1::auth_service_server::AuthServiceServer;

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = "auth";

/// Auth's settings: the platform sections (its own keys live in the shared `auth` section).
pub type Settings = config::Settings;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::defaults(NAME)
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, `MALL__*`).
pub fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load(NAME, default_settings(), &config::Source::from_process())
}

/// Opens the database and cache, creates the bootstrap admin if configured, binds the ports.
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    let a = &settings.auth;
    let hashing = domain::PasswordHashing::new(
        a.argon2_memory_kib,
        a.argon2_iterations,
        a.argon2_parallelism,
    )
    .map_err(|e| anyhow::anyhow!("auth.argon2_*: {e}"))?;
    let service = service::AuthServiceImpl::new(
        store::Accounts::new(platform.database()?.clone()),
        platform.tokens.clone(),
        platform.cache.clone(),
        hashing,
        settings.auth.clone(),
    );
    service.bootstrap_admin().await?;
    ServerBuilder::new(&settings, &platform)
        .add_service(AuthServiceServer::new(service), service::ACCESS)
        .bind()
        .await
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(settings).await?.serve(shutdown).await
}
