//! The auth service (port 8000): the identity provider. It owns accounts (Argon2id password
//! hashes, role, status), sessions (refresh-token families) and revocations (its table, copied
//! to the shared cache every service checks, see [`revocations`]); it alone signs the EdDSA
//! access tokens every service verifies locally, and keeps login lockout counters in the shared
//! cache.

pub mod api;
pub mod app;
pub mod domain;
pub mod error;
pub mod revocations;
pub mod store;

use std::time::Duration;

use mall_common::config::{self, ConfigError, Profile, Secret, Validate, ensure};
use mall_common::events::{Outbox, Relay};
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

/// Default lifetime of a refresh token (`accounts.refresh_token_ttl`): each rotation issues the
/// next one for this long, so an active session slides, up to `session_max_age`.
pub const DEFAULT_REFRESH_TOKEN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default absolute lifetime of a session (`accounts.session_max_age`), however often it is
/// refreshed.
pub const DEFAULT_SESSION_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// Password hashes computed at once (`accounts.argon2.max_concurrent`); 0 means one per core.
pub const DEFAULT_ARGON2_MAX_CONCURRENT: u32 = 0;
/// How long a login or registration waits for a hashing slot before `RESOURCE_EXHAUSTED`
/// (`accounts.argon2.queue_wait`).
pub const DEFAULT_ARGON2_QUEUE_WAIT: Duration = Duration::from_secs(1);
/// How often auth checks that the shared cache still holds the revocation epoch and rebuilds
/// it from its table when not (`accounts.revocation_sync_interval`): the longest a wiped cache
/// fails closed.
pub const DEFAULT_REVOCATION_SYNC_INTERVAL: Duration = Duration::from_secs(1);
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
    /// Absolute lifetime of a session (refresh-token family), whatever its rotations.
    #[serde(with = "mall_common::config::duration")]
    pub session_max_age: Duration,
    /// How often the revocation copy in the shared cache is checked (and rebuilt if lost).
    #[serde(with = "mall_common::config::duration")]
    pub revocation_sync_interval: Duration,
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
    /// Hashes computed at once (each holds `memory_kib`); 0 = one per core.
    pub max_concurrent: u32,
    /// How long a call waits for a hashing slot before `RESOURCE_EXHAUSTED`.
    #[serde(with = "mall_common::config::duration")]
    pub queue_wait: Duration,
}

impl Argon2Settings {
    /// The number of hashing slots: `max_concurrent`, or the number of cores when 0.
    pub fn slots(&self) -> usize {
        match self.max_concurrent {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }
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
            session_max_age: DEFAULT_SESSION_MAX_AGE,
            revocation_sync_interval: DEFAULT_REVOCATION_SYNC_INTERVAL,
            lockout: LockoutSettings {
                threshold: DEFAULT_LOCKOUT_THRESHOLD,
                window: DEFAULT_LOCKOUT_WINDOW,
                lock_for: DEFAULT_LOCK_FOR,
            },
            argon2: Argon2Settings {
                memory_kib: DEFAULT_ARGON2_MEMORY_KIB,
                iterations: DEFAULT_ARGON2_ITERATIONS,
                parallelism: DEFAULT_ARGON2_PARALLELISM,
                max_concurrent: DEFAULT_ARGON2_MAX_CONCURRENT,
                queue_wait: DEFAULT_ARGON2_QUEUE_WAIT,
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
            !a.session_max_age.is_zero() && !a.revocation_sync_interval.is_zero(),
            "accounts",
            "session_max_age and revocation_sync_interval must be positive",
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

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, the config centre, `MALL__*`).
pub async fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load_process(NAME, default_settings()).await
}

/// Opens the database and cache, creates the bootstrap admin if configured, binds the ports.
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    anyhow::ensure!(
        platform.tokens.signs_access_tokens(),
        "auth.signing_key: auth signs the access tokens; set MALL__AUTH__SIGNING_KEY to the \
         private half of auth.verify_key (`mall keys` prints a pair)"
    );
    let a = &settings.ext.accounts.argon2;
    let hashing = domain::PasswordHashing::new(a.memory_kib, a.iterations, a.parallelism)
        .map_err(|e| anyhow::anyhow!("accounts.argon2: {e}"))?;
    let db = platform.database()?.clone();
    Outbox::install(&db).await?;
    let relay = Relay::new(db.clone(), platform.events().await?, &settings.events);
    let accounts = store::Accounts::new(db);
    let revocations = revocations::Revocations::new(
        accounts.clone(),
        platform.cache.clone(),
        settings.auth.access_token_ttl,
    );
    // Restore the cache's copy before serving; a cache that is down now is retried by the
    // worker (services fail closed meanwhile).
    if let Err(e) = revocations.sync().await {
        tracing::warn!(error = %e, "revocations not copied to the cache yet");
    }
    let identity = app::Identity::new(
        accounts,
        platform.tokens.clone(),
        platform.cache.clone(),
        hashing,
        revocations.clone(),
        settings.ext.accounts.clone(),
    );
    identity.bootstrap_admin().await?;
    let mut server = platform.server(&settings).add_service(
        AuthServiceServer::new(api::AuthApi::new(identity)),
        api::ACCESS,
    );
    let relay = relay.register_metrics(server.registry_mut());
    let server = server.bind().await?;
    relay.spawn(server.shutdown_handle());
    revocations.spawn(
        settings.ext.accounts.revocation_sync_interval,
        server.shutdown_handle(),
    );
    Ok(server)
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    mall_common::server::build_and_serve(build(settings), shutdown).await
}
