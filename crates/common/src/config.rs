//! Typed settings with three layers: built-in defaults → optional YAML file → environment.
//!
//! - The file comes from `--config FILE` on the command line or the `MALL_CONFIG` variable.
//! - Environment variables `MALL__SECTION__KEY` override single keys, e.g.
//!   `MALL__DATABASE__URL=mysql://root@127.0.0.1:3306/mall_{service}`.
//! - `{service}` in `database.url` is replaced by the service name, so one file or one variable
//!   gives every service of a fleet its own database.
//!
//! Every setting has a default, so a binary runs with no file at all. [`Settings::validate`] runs
//! at start and names the offending key in its error.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The environment variable naming the YAML config file (same as `--config FILE`).
pub const CONFIG_FILE_ENV: &str = "MALL_CONFIG";
/// Prefix of the per-key environment overrides (`MALL__SECTION__KEY`).
pub const ENV_PREFIX: &str = "MALL";

/// The seven services with their well-known gRPC ports (API.md). Admin ports are gRPC + 1000.
pub const SERVICE_PORTS: [(&str, u16); 7] = [
    ("auth", 8000),
    ("user", 8001),
    ("cart", 8002),
    ("product", 8003),
    ("order", 8004),
    ("payment", 8005),
    ("checkout", 8006),
];

/// Offset between a service's gRPC port and its admin HTTP port.
pub const ADMIN_PORT_OFFSET: u16 = 1000;

/// The well-known gRPC port of a service, if `name` is one of the seven.
pub fn default_port(name: &str) -> Option<u16> {
    SERVICE_PORTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
}

/// A configuration that cannot be loaded or is invalid; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or environment could not be read or parsed into the typed settings.
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value parsed but breaks a rule.
    #[error("invalid configuration: `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `database.url`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key,
            reason: reason.into(),
        }
    }
}

/// Where the process runs; `online` refuses unsafe defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// A developer laptop: pretty logs, everything embedded.
    #[default]
    Dev,
    /// Automated tests.
    Test,
    /// Production: JSON logs, no default secrets, no open admin access.
    Online,
}

/// Settings every service shares, plus the service's own sections in `ext`.
#[derive(Debug, Clone, Serialize)]
pub struct Settings<E = NoExtra> {
    /// The service name (`product`, ...); set by the loader, not by files.
    pub service: String,
    /// Deployment profile.
    pub profile: Profile,
    /// Listening addresses and shutdown behaviour.
    pub server: ServerSettings,
    /// The service's SQL database.
    pub database: DatabaseSettings,
    /// Shared cache (memory or Redis).
    pub cache: CacheSettings,
    /// How other services are found.
    pub discovery: DiscoverySettings,
    /// Outgoing gRPC calls.
    pub client: ClientSettings,
    /// Logs and metrics.
    pub telemetry: TelemetrySettings,
    /// Token signing and lifetimes.
    pub auth: AuthSettings,
    /// Sections only this service reads (e.g. `catalog` for product).
    #[serde(flatten)]
    pub ext: E,
}

/// The platform sections as read from the layered sources (the service's own sections are
/// read separately into its `E`, so neither side needs serde's buffering `flatten`, which would
/// refuse numbers and booleans given as environment strings).
#[derive(Deserialize)]
struct PlatformSections {
    #[serde(default)]
    profile: Profile,
    server: ServerSettings,
    database: DatabaseSettings,
    cache: CacheSettings,
    discovery: DiscoverySettings,
    client: ClientSettings,
    telemetry: TelemetrySettings,
    auth: AuthSettings,
}

/// The empty service-specific extension.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NoExtra {}

/// `server.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSettings {
    /// Interface to bind, e.g. `0.0.0.0` or `127.0.0.1`.
    pub host: IpAddr,
    /// gRPC port; 0 picks a free one (tests).
    pub port: u16,
    /// Admin HTTP port (`/metrics`, `/healthz`, `/readyz`); default gRPC port + 1000, 0 if the
    /// gRPC port is 0.
    pub admin_port: Option<u16>,
    /// How long health reports NOT_SERVING before the listener closes, so balancers notice.
    pub drain_delay_ms: u64,
    /// How long in-flight calls may take to finish after shutdown starts.
    pub shutdown_grace_ms: u64,
    /// Most RPCs handled at once; beyond it calls are refused at once with
    /// `RESOURCE_EXHAUSTED` instead of queueing (health and reflection are never refused).
    pub max_concurrent_rpcs: u32,
}

/// Default of `server.max_concurrent_rpcs`.
pub const DEFAULT_MAX_CONCURRENT_RPCS: u32 = 1_000;
/// Default of `server.drain_delay_ms`: none on a laptop; set it to a few check intervals where
/// a balancer or Consul must notice NOT_SERVING before the listener closes.
pub const DEFAULT_DRAIN_DELAY_MS: u64 = 0;
/// Default of `server.shutdown_grace_ms`: how long in-flight calls may finish after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;

impl ServerSettings {
    /// The admin port actually used.
    pub fn admin_port(&self) -> u16 {
        match (self.admin_port, self.port) {
            (Some(p), _) => p,
            (None, 0) => 0,
            (None, p) => p.saturating_add(ADMIN_PORT_OFFSET),
        }
    }
}

/// `database.*`
#[derive(Clone, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// `sqlite://path?mode=rwc` or `mysql://user:pass@host:port/db`; `{service}` is replaced by
    /// the service name. May hold a password: never log it, use [`redact_url`].
    pub url: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long to wait for a pooled connection before the call fails `UNAVAILABLE`.
    pub acquire_timeout_ms: u64,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .finish()
    }
}

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

impl fmt::Debug for CacheSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheSettings")
            .field("url", &redact_url(&self.url))
            .field("namespace", &self.namespace)
            .field("memory_capacity", &self.memory_capacity)
            .finish()
    }
}

/// Default Consul agent address (`discovery.consul.address`).
pub const DEFAULT_CONSUL_ADDRESS: &str = "http://127.0.0.1:8500";
/// Default host registered in Consul for this instance (`discovery.consul.advertise_host`).
pub const DEFAULT_CONSUL_ADVERTISE_HOST: &str = "127.0.0.1";
/// Default interval of the agent-run gRPC health check, also the keep-alive period.
pub const DEFAULT_CONSUL_CHECK_INTERVAL_MS: u64 = 5_000;
/// Default timeout of one gRPC health check.
pub const DEFAULT_CONSUL_CHECK_TIMEOUT_MS: u64 = 2_000;
/// Default `DeregisterCriticalServiceAfter`: the agent drops an instance critical this long.
pub const DEFAULT_CONSUL_DEREGISTER_CRITICAL_AFTER_SECS: u64 = 60;
/// Default `wait` of a blocking health query.
pub const DEFAULT_CONSUL_WAIT_SECS: u64 = 30;
/// Default first delay after a failed Consul request (`discovery.consul.retry_base_ms`).
pub const DEFAULT_CONSUL_RETRY_BASE_MS: u64 = 100;
/// Default longest delay between Consul requests while it is unreachable
/// (`discovery.consul.retry_max_ms`).
pub const DEFAULT_CONSUL_RETRY_MAX_MS: u64 = 3_000;
/// Default timeout of the non-blocking agent calls (`discovery.consul.agent_timeout_ms`).
pub const DEFAULT_CONSUL_AGENT_TIMEOUT_MS: u64 = 5_000;
/// The longest `wait` Consul accepts.
pub const MAX_CONSUL_WAIT_SECS: u64 = 600;

/// The discovery kinds `discovery.kind` accepts.
pub const DISCOVERY_KINDS: [&str; 2] = ["static", "consul"];

/// `discovery.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverySettings {
    /// `static` (addresses below) or `consul` (register with the agent, watch its health API).
    pub kind: String,
    /// The Consul agent, used when `kind` is `consul`.
    #[serde(default)]
    pub consul: ConsulSettings,
    /// Static addresses per service name, `host:port`; a list in YAML, comma-separated in the
    /// environment (`MALL__DISCOVERY__STATIC__CART=10.0.0.1:8002,10.0.0.2:8002`).
    #[serde(rename = "static", deserialize_with = "address_lists")]
    pub static_addrs: BTreeMap<String, Vec<String>>,
}

/// `discovery.consul.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsulSettings {
    /// The agent's HTTP API, `http://host:port` (plain HTTP to the local agent).
    pub address: String,
    /// The host registered for this instance (and dialled by the agent's gRPC check).
    pub advertise_host: String,
    /// How often the agent runs the gRPC health check; also the keep-alive period.
    pub check_interval_ms: u64,
    /// How long one health check may take.
    pub check_timeout_ms: u64,
    /// `DeregisterCriticalServiceAfter`: the agent removes an instance critical this long.
    pub deregister_critical_after_secs: u64,
    /// `wait` of the blocking health queries.
    pub wait_secs: u64,
    /// First delay after a failed request to the agent; doubles up to `retry_max_ms`.
    pub retry_base_ms: u64,
    /// Longest delay between requests while the agent is unreachable.
    pub retry_max_ms: u64,
    /// Timeout of register, deregister and lookup calls.
    pub agent_timeout_ms: u64,
}

impl Default for ConsulSettings {
    fn default() -> Self {
        ConsulSettings {
            address: DEFAULT_CONSUL_ADDRESS.into(),
            advertise_host: DEFAULT_CONSUL_ADVERTISE_HOST.into(),
            check_interval_ms: DEFAULT_CONSUL_CHECK_INTERVAL_MS,
            check_timeout_ms: DEFAULT_CONSUL_CHECK_TIMEOUT_MS,
            deregister_critical_after_secs: DEFAULT_CONSUL_DEREGISTER_CRITICAL_AFTER_SECS,
            wait_secs: DEFAULT_CONSUL_WAIT_SECS,
            retry_base_ms: DEFAULT_CONSUL_RETRY_BASE_MS,
            retry_max_ms: DEFAULT_CONSUL_RETRY_MAX_MS,
            agent_timeout_ms: DEFAULT_CONSUL_AGENT_TIMEOUT_MS,
        }
    }
}

fn address_lists<'de, D>(deserializer: D) -> Result<BTreeMap<String, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    let raw = BTreeMap::<String, OneOrMany>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(name, addrs)| {
            let addrs = match addrs {
                OneOrMany::Many(list) => list,
                OneOrMany::One(joined) => joined
                    .split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            };
            (name, addrs)
        })
        .collect())
}

/// Default TCP connect timeout of outgoing calls (`client.connect_timeout_ms`).
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Default deadline of an outgoing call that sets none (`client.request_timeout_ms`).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 5_000;
/// Default HTTP/2 keep-alive ping interval of outgoing connections, idle or not
/// (`client.keepalive_interval_ms`): dead peers are noticed without waiting for a call.
pub const DEFAULT_KEEPALIVE_INTERVAL_MS: u64 = 30_000;
/// First ejection of an instance that failed to connect or answered `UNAVAILABLE`
/// (`client.balance.eject_base_ms`); doubles per consecutive failure, jittered.
pub const DEFAULT_EJECT_BASE_MS: u64 = 1_000;
/// Longest ejection (`client.balance.eject_max_ms`).
pub const DEFAULT_EJECT_MAX_MS: u64 = 30_000;
/// Most attempts of one idempotent call, each on another instance (`client.retry.max_attempts`).
pub const DEFAULT_RETRY_MAX_ATTEMPTS: u32 = 3;
/// Retries may add this much load on top of the calls, in percent
/// (`client.retry.budget_percent`).
pub const DEFAULT_RETRY_BUDGET_PERCENT: u32 = 20;
/// Retries always allowed per second whatever the traffic, so a quiet client can fail over
/// (`client.retry.min_per_sec`).
pub const DEFAULT_RETRY_MIN_PER_SEC: u32 = 10;
/// Unused retry allowance kept for bursts, in seconds of `min_per_sec`
/// (`client.retry.burst_secs`).
pub const DEFAULT_RETRY_BURST_SECS: u32 = 10;
/// Window over which a target's failure rate is measured (`client.breaker.window_ms`).
pub const DEFAULT_BREAKER_WINDOW_MS: u64 = 10_000;
/// Fewest calls in the window before the breaker may open (`client.breaker.min_calls`).
pub const DEFAULT_BREAKER_MIN_CALLS: u32 = 20;
/// Failure rate, in percent, that opens the breaker (`client.breaker.failure_percent`).
pub const DEFAULT_BREAKER_FAILURE_PERCENT: u32 = 50;
/// How long an open breaker fails calls fast before probing (`client.breaker.open_ms`).
pub const DEFAULT_BREAKER_OPEN_MS: u64 = 5_000;
/// Probe calls let through half-open; that many successes close the breaker
/// (`client.breaker.half_open_probes`).
pub const DEFAULT_BREAKER_HALF_OPEN_PROBES: u32 = 3;

/// `client.*`: how this service calls the others.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSettings {
    /// TCP connect timeout.
    pub connect_timeout_ms: u64,
    /// Deadline of a call that sets none, sent as `grpc-timeout`.
    pub request_timeout_ms: u64,
    /// HTTP/2 keep-alive ping interval of outgoing connections.
    #[serde(default = "default_keepalive_interval_ms")]
    pub keepalive_interval_ms: u64,
    /// Per-method deadlines replacing `request_timeout_ms`: target service → method →
    /// milliseconds, e.g. `payment: { charge: 10000 }` or
    /// `MALL__CLIENT__METHOD_TIMEOUT_MS__PAYMENT__CHARGE=10000` (method names match
    /// case-insensitively).
    #[serde(default)]
    pub method_timeout_ms: BTreeMap<String, BTreeMap<String, u64>>,
    /// Instance selection and ejection.
    #[serde(default)]
    pub balance: BalanceSettings,
    /// Retries of idempotent calls.
    #[serde(default)]
    pub retry: RetrySettings,
    /// Circuit breaking per target service.
    #[serde(default)]
    pub breaker: BreakerSettings,
}

impl Default for ClientSettings {
    fn default() -> Self {
        ClientSettings {
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            keepalive_interval_ms: DEFAULT_KEEPALIVE_INTERVAL_MS,
            method_timeout_ms: BTreeMap::new(),
            balance: BalanceSettings::default(),
            retry: RetrySettings::default(),
            breaker: BreakerSettings::default(),
        }
    }
}

fn default_keepalive_interval_ms() -> u64 {
    DEFAULT_KEEPALIVE_INTERVAL_MS
}

/// `client.balance.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BalanceSettings {
    /// First ejection of a failing instance.
    pub eject_base_ms: u64,
    /// Longest ejection.
    pub eject_max_ms: u64,
}

impl Default for BalanceSettings {
    fn default() -> Self {
        BalanceSettings {
            eject_base_ms: DEFAULT_EJECT_BASE_MS,
            eject_max_ms: DEFAULT_EJECT_MAX_MS,
        }
    }
}

/// `client.retry.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RetrySettings {
    /// Most attempts of one idempotent call (1 turns retries off).
    pub max_attempts: u32,
    /// Extra load retries may add, in percent of the calls.
    pub budget_percent: u32,
    /// Retries allowed per second regardless of traffic.
    pub min_per_sec: u32,
    /// Seconds of `min_per_sec` that may be saved up for a burst.
    pub burst_secs: u32,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: DEFAULT_RETRY_MAX_ATTEMPTS,
            budget_percent: DEFAULT_RETRY_BUDGET_PERCENT,
            min_per_sec: DEFAULT_RETRY_MIN_PER_SEC,
            burst_secs: DEFAULT_RETRY_BURST_SECS,
        }
    }
}

/// `client.breaker.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerSettings {
    /// Window of the failure rate.
    pub window_ms: u64,
    /// Fewest calls in the window before the breaker may open.
    pub min_calls: u32,
    /// Failure rate (percent of calls ending `UNAVAILABLE` or `DEADLINE_EXCEEDED`) that opens it.
    pub failure_percent: u32,
    /// How long it stays open.
    pub open_ms: u64,
    /// Probes let through half-open; that many successes close it, one failure reopens it.
    pub half_open_probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window_ms: DEFAULT_BREAKER_WINDOW_MS,
            min_calls: DEFAULT_BREAKER_MIN_CALLS,
            failure_percent: DEFAULT_BREAKER_FAILURE_PERCENT,
            open_ms: DEFAULT_BREAKER_OPEN_MS,
            half_open_probes: DEFAULT_BREAKER_HALF_OPEN_PROBES,
        }
    }
}

/// `telemetry.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    /// `pretty`, `compact` or `json`.
    pub log_format: String,
    /// An `EnvFilter` directive, e.g. `info,sqlx=warn`. `RUST_LOG` wins when set.
    pub log_filter: String,
}

/// `auth.*`: what every service needs to verify and mint tokens.
#[derive(Clone, Serialize, Deserialize)]
pub struct AuthSettings {
    /// HS256 signing key shared by the fleet, at least 32 bytes. Set it from the environment
    /// (`MALL__AUTH__JWT_SECRET`); the `online` profile refuses the built-in development key.
    pub jwt_secret: String,
    /// Lifetime of access tokens.
    pub access_token_ttl_secs: u64,
    /// Lifetime of service-to-service tokens.
    pub service_token_ttl_secs: u64,
    /// Lifetime of refresh tokens (auth service).
    pub refresh_token_ttl_secs: u64,
    /// Failed logins for one username within the window that lock it (auth service).
    pub lockout_threshold: u32,
    /// The window failed logins are counted in.
    pub lockout_window_secs: u64,
    /// How long a locked username stays locked.
    pub lockout_secs: u64,
    /// Argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// Argon2id passes.
    pub argon2_iterations: u32,
    /// Argon2id lanes.
    pub argon2_parallelism: u32,
    /// An admin account created at start when missing (off while `username` is empty). Give
    /// the password through `MALL__AUTH__BOOTSTRAP_ADMIN__PASSWORD`.
    pub bootstrap_admin: BootstrapAdmin,
}

/// `auth.bootstrap_admin.*`
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct BootstrapAdmin {
    /// Username; empty disables the bootstrap.
    pub username: String,
    /// Password (secret).
    pub password: String,
    /// Email.
    pub email: String,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"***")
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("service_token_ttl_secs", &self.service_token_ttl_secs)
            .field("refresh_token_ttl_secs", &self.refresh_token_ttl_secs)
            .field("lockout_threshold", &self.lockout_threshold)
            .field("lockout_window_secs", &self.lockout_window_secs)
            .field("lockout_secs", &self.lockout_secs)
            .field("argon2_memory_kib", &self.argon2_memory_kib)
            .field("argon2_iterations", &self.argon2_iterations)
            .field("argon2_parallelism", &self.argon2_parallelism)
            .field("bootstrap_admin", &self.bootstrap_admin.username)
            .finish()
    }
}

impl Settings<NoExtra> {
    /// The built-in defaults of a service (no file, no environment).
    pub fn defaults(service: &str) -> Self {
        Settings::with_ext(service, NoExtra {})
    }
}

impl<E> Settings<E> {
    /// The built-in defaults with the service's own extension.
    pub fn with_ext(service: &str, ext: E) -> Self {
        let static_addrs = SERVICE_PORTS
            .iter()
            .map(|(name, port)| (name.to_string(), vec![format!("127.0.0.1:{port}")]))
            .collect();
        Settings {
            service: service.to_string(),
            profile: Profile::Dev,
            server: ServerSettings {
                host: IpAddr::from([0, 0, 0, 0]),
                port: default_port(service).unwrap_or(0),
                admin_port: None,
                drain_delay_ms: DEFAULT_DRAIN_DELAY_MS,
                shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
                max_concurrent_rpcs: DEFAULT_MAX_CONCURRENT_RPCS,
            },
            database: DatabaseSettings {
                url: "sqlite://data/{service}.db?mode=rwc".into(),
                max_connections: 10,
                acquire_timeout_ms: 5_000,
            },
            cache: CacheSettings {
                url: "memory://".into(),
                namespace: "mall".into(),
                memory_capacity: 100_000,
            },
            discovery: DiscoverySettings {
                kind: "static".into(),
                consul: ConsulSettings::default(),
                static_addrs,
            },
            client: ClientSettings::default(),
            telemetry: TelemetrySettings {
                log_format: "pretty".into(),
                log_filter: "info".into(),
            },
            auth: AuthSettings {
                jwt_secret: crate::auth::DEFAULT_JWT_SECRET.into(),
                access_token_ttl_secs: 900,
                service_token_ttl_secs: 60,
                refresh_token_ttl_secs: 7 * 24 * 3600,
                lockout_threshold: 5,
                lockout_window_secs: 900,
                lockout_secs: 900,
                argon2_memory_kib: 19_456,
                argon2_iterations: 2,
                argon2_parallelism: 1,
                bootstrap_admin: BootstrapAdmin::default(),
            },
            ext,
        }
    }

    /// The database URL with `{service}` substituted.
    pub fn database_url(&self) -> String {
        self.database.url.replace("{service}", &self.service)
    }

    /// Checks every rule a value must meet; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("mysql://")) {
            return Err(ConfigError::invalid(
                "database.url",
                format!(
                    "unsupported scheme in `{}` (expected sqlite:// or mysql://)",
                    redact_url(&url)
                ),
            ));
        }
        if self.server.max_concurrent_rpcs == 0 {
            return Err(ConfigError::invalid(
                "server.max_concurrent_rpcs",
                "must be at least 1",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if !(self.cache.url.starts_with("memory://") || self.cache.url.starts_with("redis://")) {
            return Err(ConfigError::invalid(
                "cache.url",
                format!(
                    "unsupported scheme in `{}` (expected memory:// or redis://)",
                    redact_url(&self.cache.url)
                ),
            ));
        }
        if !DISCOVERY_KINDS.contains(&self.discovery.kind.as_str()) {
            return Err(ConfigError::invalid(
                "discovery.kind",
                format!(
                    "`{}` is not supported (expected `static` or `consul`)",
                    self.discovery.kind
                ),
            ));
        }
        if self.discovery.kind == "consul" {
            self.discovery.consul.validate()?;
        }
        for (name, addrs) in &self.discovery.static_addrs {
            for addr in addrs {
                if crate::client::parse_authority(addr).is_none() {
                    return Err(ConfigError::invalid(
                        "discovery.static",
                        format!("`{addr}` for `{name}` is not host:port"),
                    ));
                }
            }
        }
        if !matches!(
            self.telemetry.log_format.as_str(),
            "pretty" | "compact" | "json"
        ) {
            return Err(ConfigError::invalid(
                "telemetry.log_format",
                format!(
                    "`{}` (expected pretty, compact or json)",
                    self.telemetry.log_format
                ),
            ));
        }
        if self.auth.jwt_secret.len() < crate::auth::MIN_SECRET_BYTES {
            return Err(ConfigError::invalid(
                "auth.jwt_secret",
                format!("must be at least {} bytes", crate::auth::MIN_SECRET_BYTES),
            ));
        }
        if self.profile == Profile::Online
            && self.auth.jwt_secret == crate::auth::DEFAULT_JWT_SECRET
        {
            return Err(ConfigError::invalid(
                "auth.jwt_secret",
                "the online profile refuses the built-in development key; set MALL__AUTH__JWT_SECRET",
            ));
        }
        if self.auth.access_token_ttl_secs == 0 || self.auth.service_token_ttl_secs == 0 {
            return Err(ConfigError::invalid(
                "auth",
                "token lifetimes must be positive",
            ));
        }
        self.client.validate()
    }
}

impl ClientSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.request_timeout_ms == 0
            || self.connect_timeout_ms == 0
            || self.keepalive_interval_ms == 0
        {
            return Err(ConfigError::invalid(
                "client",
                "connect_timeout_ms, request_timeout_ms and keepalive_interval_ms must be positive",
            ));
        }
        if self
            .method_timeout_ms
            .values()
            .flat_map(|m| m.values())
            .any(|ms| *ms == 0)
        {
            return Err(ConfigError::invalid(
                "client.method_timeout_ms",
                "every per-method deadline must be positive",
            ));
        }
        let b = &self.balance;
        if b.eject_base_ms == 0 || b.eject_max_ms < b.eject_base_ms {
            return Err(ConfigError::invalid(
                "client.balance",
                "eject_base_ms must be positive and at most eject_max_ms",
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "client.retry.max_attempts",
                "must be at least 1 (1 turns retries off)",
            ));
        }
        if self.retry.budget_percent > 100 {
            return Err(ConfigError::invalid(
                "client.retry.budget_percent",
                "must be between 0 and 100",
            ));
        }
        let k = &self.breaker;
        if k.window_ms == 0 || k.open_ms == 0 || k.min_calls == 0 || k.half_open_probes == 0 {
            return Err(ConfigError::invalid(
                "client.breaker",
                "window_ms, open_ms, min_calls and half_open_probes must be positive",
            ));
        }
        if k.failure_percent == 0 || k.failure_percent > 100 {
            return Err(ConfigError::invalid(
                "client.breaker.failure_percent",
                "must be between 1 and 100",
            ));
        }
        Ok(())
    }
}

impl ConsulSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let Some(rest) = self.address.strip_prefix("http://") else {
            return Err(ConfigError::invalid(
                "discovery.consul.address",
                format!("`{}` (expected http://host:port)", self.address),
            ));
        };
        if crate::client::parse_authority(rest.trim_end_matches('/')).is_none() {
            return Err(ConfigError::invalid(
                "discovery.consul.address",
                format!("`{}` (expected http://host:port)", self.address),
            ));
        }
        if self.advertise_host.is_empty() || self.advertise_host.contains(['/', ' ']) {
            return Err(ConfigError::invalid(
                "discovery.consul.advertise_host",
                format!("`{}` is not a host name or address", self.advertise_host),
            ));
        }
        if self.check_interval_ms == 0 || self.check_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "discovery.consul",
                "check_interval_ms and check_timeout_ms must be positive",
            ));
        }
        if self.deregister_critical_after_secs == 0 {
            return Err(ConfigError::invalid(
                "discovery.consul.deregister_critical_after_secs",
                "must be positive",
            ));
        }
        if self.wait_secs == 0 || self.wait_secs > MAX_CONSUL_WAIT_SECS {
            return Err(ConfigError::invalid(
                "discovery.consul.wait_secs",
                format!("must be between 1 and {MAX_CONSUL_WAIT_SECS}"),
            ));
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(ConfigError::invalid(
                "discovery.consul.retry_base_ms",
                "must be positive and at most retry_max_ms",
            ));
        }
        if self.agent_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "discovery.consul.agent_timeout_ms",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// Where the settings come from; [`Source::from_process`] reads the real process.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The YAML file, if any.
    pub file: Option<PathBuf>,
    /// Environment variables to apply (only `MALL__*` ones matter).
    pub env: BTreeMap<String, String>,
}

impl Source {
    /// `--config FILE` (or `--config=FILE`) from the arguments, else `MALL_CONFIG`; and the
    /// process environment.
    pub fn from_process() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let mut file = None;
        let mut iter = args.iter().skip(1);
        while let Some(arg) = iter.next() {
            if arg == "--config" {
                file = iter.next().map(PathBuf::from);
            } else if let Some(path) = arg.strip_prefix("--config=") {
                file = Some(PathBuf::from(path));
            }
        }
        let file = file.or_else(|| std::env::var_os(CONFIG_FILE_ENV).map(PathBuf::from));
        Source {
            file,
            env: std::env::vars().collect(),
        }
    }
}

/// Loads the settings of `service`: `defaults` → the source's file → its `MALL__*` variables,
/// then validates them.
pub fn load<E>(
    service: &str,
    defaults: Settings<E>,
    source: &Source,
) -> Result<Settings<E>, ConfigError>
where
    E: Serialize + DeserializeOwned,
{
    let mut builder = config::Config::builder().add_source(config::Config::try_from(&defaults)?);
    if let Some(file) = &source.file {
        builder =
            builder.add_source(config::File::from(file.as_path()).format(config::FileFormat::Yaml));
    }
    // Values stay strings here and are converted per field when deserialized, so an all-digit
    // app id or a secret like "1e10" is never turned into a number.
    let env = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .source(Some(source.env.clone().into_iter().collect()));
    builder = builder.add_source(env);
    let layered = builder.build()?;
    let sections: PlatformSections = layered.clone().try_deserialize()?;
    let ext: E = layered.try_deserialize()?;
    let settings = Settings {
        service: service.to_string(),
        profile: sections.profile,
        server: sections.server,
        database: sections.database,
        cache: sections.cache,
        discovery: sections.discovery,
        client: sections.client,
        telemetry: sections.telemetry,
        auth: sections.auth,
        ext,
    };
    settings.validate()?;
    Ok(settings)
}

/// Hides the password (and anything after `?` that could hold one) of a URL for logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        None => rest.to_string(),
    };
    format!("{scheme}://{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Source {
        Source {
            file: None,
            env: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn defaults_give_the_well_known_ports() {
        let s = load("product", Settings::defaults("product"), &Source::default()).unwrap();
        assert_eq!(s.server.port, 8003);
        assert_eq!(s.server.admin_port(), 9003);
        assert_eq!(s.database_url(), "sqlite://data/product.db?mode=rwc");
        assert_eq!(s.discovery.static_addrs["auth"], vec!["127.0.0.1:8000"]);
    }

    #[test]
    fn resilience_settings_have_named_defaults_and_are_configurable() {
        let d = Settings::defaults("checkout").client;
        assert_eq!(d.retry.budget_percent, DEFAULT_RETRY_BUDGET_PERCENT);
        assert_eq!(d.breaker.open_ms, DEFAULT_BREAKER_OPEN_MS);
        assert_eq!(d.balance.eject_base_ms, DEFAULT_EJECT_BASE_MS);
        let s = load(
            "checkout",
            Settings::defaults("checkout"),
            &env(&[
                ("MALL__CLIENT__METHOD_TIMEOUT_MS__PAYMENT__CHARGE", "10000"),
                ("MALL__CLIENT__BREAKER__OPEN_MS", "750"),
                ("MALL__CLIENT__RETRY__MAX_ATTEMPTS", "2"),
                ("MALL__CLIENT__BALANCE__EJECT_MAX_MS", "9000"),
                ("MALL__DISCOVERY__CONSUL__RETRY_MAX_MS", "800"),
            ]),
        )
        .unwrap();
        assert_eq!(s.client.method_timeout_ms["payment"]["charge"], 10_000);
        assert_eq!(s.client.breaker.open_ms, 750);
        assert_eq!(s.client.breaker.min_calls, DEFAULT_BREAKER_MIN_CALLS);
        assert_eq!(s.client.retry.max_attempts, 2);
        assert_eq!(s.client.balance.eject_max_ms, 9_000);
        assert_eq!(s.discovery.consul.retry_max_ms, 800);
        for (key, value, named) in [
            (
                "MALL__CLIENT__BREAKER__FAILURE_PERCENT",
                "0",
                "client.breaker.failure_percent",
            ),
            (
                "MALL__CLIENT__RETRY__MAX_ATTEMPTS",
                "0",
                "client.retry.max_attempts",
            ),
            (
                "MALL__CLIENT__RETRY__BUDGET_PERCENT",
                "101",
                "client.retry.budget_percent",
            ),
            (
                "MALL__CLIENT__BALANCE__EJECT_BASE_MS",
                "60000",
                "client.balance",
            ),
            (
                "MALL__CLIENT__METHOD_TIMEOUT_MS__PAYMENT__CHARGE",
                "0",
                "client.method_timeout_ms",
            ),
        ] {
            let err = load(
                "checkout",
                Settings::defaults("checkout"),
                &env(&[(key, value)]),
            )
            .unwrap_err();
            assert!(err.to_string().contains(named), "{key}: {err}");
        }
    }

    #[test]
    fn environment_overrides_single_keys() {
        let s = load(
            "product",
            Settings::defaults("product"),
            &env(&[
                ("MALL__SERVER__PORT", "7003"),
                (
                    "MALL__DATABASE__URL",
                    "mysql://root:pw@db:3306/mall_{service}",
                ),
                (
                    "MALL__DISCOVERY__STATIC__CART",
                    "10.0.0.1:8002,10.0.0.2:8002",
                ),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 7003);
        assert_eq!(s.server.admin_port(), 8003);
        assert_eq!(s.database_url(), "mysql://root:pw@db:3306/mall_product");
        assert_eq!(
            s.discovery.static_addrs["cart"],
            vec!["10.0.0.1:8002", "10.0.0.2:8002"]
        );
    }

    #[test]
    fn yaml_file_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("mall-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.yaml");
        std::fs::write(
            &file,
            "server:\n  port: 7100\n  drain_delay_ms: 5\ncache:\n  namespace: shop\n",
        )
        .unwrap();
        let mut source = env(&[("MALL__SERVER__PORT", "7200")]);
        source.file = Some(file);
        let s = load("product", Settings::defaults("product"), &source).unwrap();
        assert_eq!(s.server.port, 7200, "env wins over file");
        assert_eq!(s.server.drain_delay_ms, 5, "file wins over defaults");
        assert_eq!(s.cache.namespace, "shop");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = load(
            "product",
            Settings::defaults("product"),
            &env(&[("MALL__DATABASE__URL", "postgres://u:secret@h/db")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`database.url`"), "{err}");
        assert!(!err.contains("secret"), "password leaked: {err}");

        let err = load(
            "product",
            Settings::defaults("product"),
            &env(&[("MALL__SERVER__PORT", "not-a-port")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("server.port"), "{err}");

        let err = load(
            "product",
            Settings::defaults("product"),
            &env(&[("MALL__TELEMETRY__LOG_FORMAT", "xml")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`telemetry.log_format`"), "{err}");
    }

    #[test]
    fn online_profile_refuses_the_development_signing_key() {
        let err = load(
            "product",
            Settings::defaults("product"),
            &env(&[("MALL__PROFILE", "online")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`auth.jwt_secret`"), "{err}");
        let ok = load(
            "product",
            Settings::defaults("product"),
            &env(&[
                ("MALL__PROFILE", "online"),
                (
                    "MALL__AUTH__JWT_SECRET",
                    "a-production-key-of-more-than-32-bytes",
                ),
            ]),
        )
        .unwrap();
        assert!(
            !format!("{ok:?}").contains("production-key"),
            "secret in Debug output"
        );
    }

    #[test]
    fn environment_strings_keep_their_text_and_convert_per_field() {
        #[derive(Debug, Clone, Serialize, Deserialize)]
        struct Extra {
            shop: Shop,
        }
        #[derive(Debug, Clone, Serialize, Deserialize)]
        struct Shop {
            app_id: String,
            open: bool,
            limit: u32,
        }
        let defaults = Settings::with_ext(
            "product",
            Extra {
                shop: Shop {
                    app_id: String::new(),
                    open: false,
                    limit: 1,
                },
            },
        );
        let s = load(
            "product",
            defaults,
            &env(&[
                ("MALL__SHOP__APP_ID", "2021000000000000"),
                ("MALL__SHOP__OPEN", "true"),
                ("MALL__SHOP__LIMIT", "42"),
                (
                    "MALL__AUTH__JWT_SECRET",
                    "1e100000000000000000000000000000000",
                ),
                ("MALL__SERVER__DRAIN_DELAY_MS", "250"),
            ]),
        )
        .unwrap();
        assert_eq!(s.ext.shop.app_id, "2021000000000000");
        assert!(s.ext.shop.open);
        assert_eq!(s.ext.shop.limit, 42);
        assert_eq!(s.auth.jwt_secret, "1e100000000000000000000000000000000");
        assert_eq!(s.server.drain_delay_ms, 250);
    }

    #[test]
    fn redaction_hides_passwords() {
        assert_eq!(
            redact_url("mysql://root:hunter2@db:3306/x"),
            "mysql://root:***@db:3306/x"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        let s = Settings::defaults("product");
        let mut s2 = s.clone();
        s2.database.url = "mysql://a:topsecret@h/d".into();
        assert!(!format!("{:?}", s2.database).contains("topsecret"));
    }
}
