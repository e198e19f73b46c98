//! The auth service (port 8000): the identity provider. It owns accounts (Argon2id password
//! hashes, role, status) and sessions (refresh-token families), issues the JWT access tokens
//! every service verifies locally, and keeps login lockout counters in the shared cache.

pub mod api;
pub mod app;
pub mod domain;
pub mod error;
pub mod store;

use std::time::Duration;

use mall_common::config::{self, ConfigError, Profile, Secret, Validate, ensure};
use mall_common::platform::Platform;
use mall_common::server::BoundServer;
use mall_proto::auth::v1::auth_service_server::AuthServiceServer;
use mall_types::ServiceName;
use serde::{Deserialize, Serialize};

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = ServiceName::Auth.as_str();

/// Auth's own sections.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// `accounts.*`
    pub accounts: AccountsSettings,
}

/// Default lifetime of refresh tokens (`accounts.refresh_token_ttl`); it does not slide.
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Failed logins for one username within the window that lock it (`accounts.lockout.threshold`).
pub const DEFAULT_LOCKOUT_THRESHOLD: u32 = 5;
/// The window failed logins are counted in (`accounts.lockout.window`).
pub const DEFAULT_LOCKOUT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// How long a locked username stays locked (`accounts.lockout.lock_for`).
pub const DEFAULT_LOCK_FOR: Duration = Duration::from_secs(15 * 60);
/// Argon2id memory cost in KiB (OWASP's minimum for Argon2id).
pub const DEFAULT_ARGON2_MEMORY_KIB: u32 = 19_456;
/// Argon2id passes.
pub const DEFAULT_ARGON2_ITERATIONS: u32 = 2;
/// Argon2id lanes.
pub const DEFAULT_ARGON2_PARALLELISM: u32 = 1;

/// `accounts.*`: accounts, sessions and logins (only auth reads these).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountsSettings {
    /// Lifetime of a session's refresh tokens.
    #[serde(with = "mall_common::config::duration")]
    pub refresh_token_ttl: Duration,
    /// Locking a username after repeated failed logins.
    pub lockout: LockoutSettings,
    /// Password hashing cost.
    pub argon2: Argon2Settings,
    /// An admin account created at start when missing (off while `username` is empty). Give
    /// the password through `MALL__ACCOUNTS__BOOTSTRAP_ADMIN__PASSWORD`.
    pub bootstrap_admin: BootstrapAdmin,
}

/// `accounts.lockout.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockoutSettings {
    /// Failed logins within `window` that lock the username.
    pub threshold: u32,
    /// The window failed logins are counted in.
    #[serde(with = "mall_common::config::duration")]
    pub window: Duration,
    /// How long the username then stays locked.
    #[serde(with = "mall_common::config::duration")]
    pub lock_for: Duration,
}

/// `accounts.argon2.*`: Argon2id cost parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Argon2Settings {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// `accounts.bootstrap_admin.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BootstrapAdmin {
    /// Username; empty disables the bootstrap.
    pub username: String,
    /// Password.
    pub password: Secret,
    /// Email.
    pub email: String,
}

impl Default for AccountsSettings {
    fn default() -> Self {
        AccountsSettings {
            refresh_token_ttl: DEFAULT_REFRESH_TOKEN_TTL,
            lockout: LockoutSettings {
                threshold: DEFAULT_LOCKOUT_THRESHOLD,
                window: DEFAULT_LOCKOUT_WINDOW,
                lock_for: DEFAULT_LOCK_FOR,
            },
            argon2: Argon2Settings {
                memory_kib: DEFAULT_ARGON2_MEMORY_KIB,
                iterations: DEFAULT_ARGON2_ITERATIONS,
                parallelism: DEFAULT_ARGON2_PARALLELISM,
            },
            bootstrap_admin: BootstrapAdmin::default(),
        }
    }
}

impl Validate for Extra {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        let a = &self.accounts;
        ensure(
            !a.refresh_token_ttl.is_zero(),
            "accounts.refresh_token_ttl",
            "must be positive",
        )?;
        ensure(
            a.lockout.threshold > 0 && !a.lockout.window.is_zero() && !a.lockout.lock_for.is_zero(),
            "accounts.lockout",
            "threshold, window and lock_for must be positive",
        )
    }
}

/// Auth's settings: the platform sections plus `accounts`.
pub type Settings = config::Settings<Extra>;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::with_ext(
        NAME,
        Extra {
            accounts: AccountsSettings::default(),
        },
    )
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, `MALL__*`).
pub fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load(NAME, default_settings(), &config::Source::from_process())
}

/// Opens the database and cache, creates the bootstrap admin if configured, binds the ports.
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    let a = &settings.ext.accounts.argon2;
    let hashing = domain::PasswordHashing::new(a.memory_kib, a.iterations, a.parallelism)
        .map_err(|e| anyhow::anyhow!("accounts.argon2: {e}"))?;
    let identity = app::Identity::new(
        store::Accounts::new(platform.database()?.clone()),
        platform.tokens.clone(),
        platform.cache.clone(),
        hashing,
        settings.ext.accounts.clone(),
    );
    identity.bootstrap_admin().await?;
    platform
        .server(&settings)
        .add_service(
            AuthServiceServer::new(api::AuthApi::new(identity)),
            api::ACCESS,
        )
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
