//! Typed settings with four layers: built-in defaults → optional YAML file → optional Consul KV
//! (the config centre, see [`centre`]) → environment.
//!
//! - The file comes from `--config FILE` on the command line or the `MALL_CONFIG` variable.
//! - With `MALL_CONFIG_CONSUL` (the agent's URL), the YAML under `mall/config/<service>` in
//!   Consul's KV store is read at start and watched; see [`centre`].
//! - Environment variables `MALL__SECTION__KEY` override single keys, e.g.
//!   `MALL__DATABASE__URL=mysql://root@127.0.0.1:3306/mall_{service}`.
//! - `{service}` in `database.url` is replaced by the service name, so one file or one variable
//!   gives every service of a fleet its own database.
//! - Durations are written with a unit (`250ms`, `5s`, `15m`, `7d`).
//! - A key nobody knows, in the file or in a `MALL__` variable, stops the binary with the key
//!   named and the nearest known key suggested: a typo never leaves a setting silently at its
//!   default. One file serves the whole fleet, so a service accepts the sections other services
//!   own ([`SERVICE_SECTIONS`]) and leaves checking their keys to them.
//!
//! Each platform section has its own file with its type, its `DEFAULT_*` constants and its
//! [`Validate`] rules; a service's own sections live in the service's `lib.rs`.

mod auth;
mod cache;
pub mod centre;
pub mod cli;
mod client;
mod database;
mod discovery;
pub mod duration;
mod events;
pub mod features;
mod keys;
mod server;
mod telemetry;
mod tls;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use mall_types::ServiceName;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use auth::*;
pub use cache::*;
pub use client::*;
pub use database::*;
pub use discovery::*;
pub use events::*;
pub use features::{FeatureFlags, Features};
pub use server::*;
pub use telemetry::*;
pub use tls::*;

/// The environment variable naming the YAML config file (same as `--config FILE`).
pub const CONFIG_FILE_ENV: &str = "MALL_CONFIG";
/// Prefix of the per-key environment overrides (`MALL__SECTION__KEY`).
pub const ENV_PREFIX: &str = "MALL";

/// The top-level sections that belong to one service each (product's `catalog`, ...). Every
/// service accepts them in a shared file and the owning service checks their keys; a test in
/// `crates/mall` keeps this list equal to what the services declare.
pub const SERVICE_SECTIONS: &[&str] = &[
    "accounts",
    "catalog",
    "checkout",
    "notification",
    "order",
    "payment",
    "profile_cache",
];

/// The well-known gRPC port of a service, if `name` is one of the eight (admin ports are
/// gRPC + 1000).
pub fn default_port(name: &str) -> Option<u16> {
    name.parse::<ServiceName>().ok().map(ServiceName::port)
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
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A key no setting has (a typo, or a setting that was renamed).
    #[error("unknown configuration key `{key}` (from {origin}){}", suggestion_text(.suggestion))]
    UnknownKey {
        /// The dotted key as given, e.g. `databse.url`.
        key: String,
        /// Where it was given: the file, or the variable's name.
        origin: String,
        /// The nearest known key, when one is near.
        suggestion: Option<String>,
    },
}

fn suggestion_text(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(key) => format!("; did you mean `{key}`?"),
        None => String::new(),
    }
}

impl ConfigError {
    /// A broken rule of `key`.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// Rules a section's values must meet beyond their types; the error names the key.
pub trait Validate {
    /// Checks the section under `profile`.
    fn validate(&self, profile: Profile) -> Result<(), ConfigError>;
}

/// A section without rules of its own.
impl Validate for NoExtra {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        Ok(())
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
#[derive(Debug, Clone)]
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
    /// Token verification and lifetimes, the same for the whole fleet.
    pub auth: AuthSettings,
    /// Mutual TLS between the services.
    pub tls: TlsSettings,
    /// Named on/off switches, reloadable (see [`features`]).
    pub features: FeatureFlags,
    /// The event bus and the outbox relay.
    pub events: EventsSettings,
    /// Sections only this service reads (e.g. `catalog` for product).
    pub ext: E,
    /// With a config centre: how to load these settings again when its key changes.
    pub centre: Option<centre::Reloader>,
}

/// The platform sections as read from (and written to) the layered sources. The service's own
/// sections are read separately into its `E`, so neither side needs serde's buffering
/// `flatten`, which would refuse numbers and booleans given as environment strings.
#[derive(Serialize, Deserialize)]
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
    tls: TlsSettings,
    #[serde(default)]
    features: FeatureFlags,
    events: EventsSettings,
}

/// The empty service-specific extension.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NoExtra {}

impl Settings<NoExtra> {
    /// The built-in defaults of a service (no file, no environment).
    pub fn defaults(service: &str) -> Self {
        Settings::with_ext(service, NoExtra {})
    }
}

impl<E> Settings<E> {
    /// The built-in defaults with the service's own extension.
    pub fn with_ext(service: &str, ext: E) -> Self {
        Settings {
            service: service.to_string(),
            profile: Profile::Dev,
            server: ServerSettings::defaults(default_port(service).unwrap_or(0)),
            database: DatabaseSettings::default(),
            cache: CacheSettings::default(),
            discovery: DiscoverySettings::default(),
            client: ClientSettings::default(),
            telemetry: TelemetrySettings::default(),
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            features: FeatureFlags::new(),
            events: EventsSettings::default(),
            ext,
            centre: None,
        }
    }

    /// The database URL with `{service}` substituted.
    pub fn database_url(&self) -> String {
        self.database.url.replace("{service}", &self.service)
    }

    fn platform(&self) -> PlatformSections {
        PlatformSections {
            profile: self.profile,
            server: self.server.clone(),
            database: self.database.clone(),
            cache: self.cache.clone(),
            discovery: self.discovery.clone(),
            client: self.client.clone(),
            telemetry: self.telemetry.clone(),
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            features: self.features.clone(),
            events: self.events.clone(),
        }
    }
}

impl<E: Validate> Settings<E> {
    /// Checks every rule a value must meet; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let profile = self.profile;
        self.validate_exposure()?;
        self.database
            .validate_url(&self.database_url())
            .and_then(|()| self.server.validate(profile))
            .and_then(|()| self.database.validate(profile))
            .and_then(|()| self.cache.validate(profile))
            .and_then(|()| self.discovery.validate(profile))
            .and_then(|()| self.client.validate(profile))
            .and_then(|()| self.telemetry.validate(profile))
            .and_then(|()| self.auth.validate(profile))
            .and_then(|()| self.tls.validate(profile))
            .and_then(|()| features::validate(&self.features))
            .and_then(|()| self.events.validate(profile))
            .and_then(|()| self.ext.validate(profile))
    }
}

impl<E> Settings<E> {
    /// The rules that span sections: a server reachable from other machines never trusts the
    /// built-in development key (it is in the source, so anyone can sign tokens with it),
    /// whatever the profile; and `online` needs state every instance shares (no SQLite file, no
    /// in-process cache) and no password left at a sample's placeholder. Each refusal names the
    /// key and the fix.
    fn validate_exposure(&self) -> Result<(), ConfigError> {
        let host = self.server.host;
        ensure(
            host.is_loopback() || self.auth.jwt_secret.expose() != auth::DEFAULT_JWT_SECRET,
            "auth.jwt_secret",
            format!(
                "the built-in development key is refused on a server reachable from other \
                 machines (server.host = {host}); set MALL__AUTH__JWT_SECRET to a key of your own, \
                 or bind 127.0.0.1"
            ),
        )?;
        ensure(
            host.is_loopback() || !self.auth.access_keys()?.development,
            "auth.verify_key",
            format!(
                "the built-in development key pair is refused on a server reachable from other \
                 machines (server.host = {host}); generate a pair with `mall keys`, or bind \
                 127.0.0.1"
            ),
        )?;
        if self.profile != Profile::Online {
            return Ok(());
        }
        let database = self.database_url();
        ensure(
            !database.starts_with("sqlite:"),
            "database.url",
            "the online profile needs a database every instance shares: set \
             MALL__DATABASE__URL to mysql://…",
        )?;
        ensure(
            !self.cache.url.starts_with("memory://"),
            "cache.url",
            "the online profile needs a cache every instance shares (revocations, lockouts): set \
             MALL__CACHE__URL to redis://…",
        )?;
        for (key, url) in [
            ("database.url", database.as_str()),
            ("cache.url", &self.cache.url),
        ] {
            ensure(
                !url_password(url).is_some_and(|p| PLACEHOLDER_PASSWORDS.contains(&p)),
                key,
                "the online profile refuses a placeholder password (`change-me`, `password`, …) \
                 in the URL; set a real one",
            )?;
        }
        Ok(())
    }
}

/// Passwords that samples and compose files use as placeholders.
const PLACEHOLDER_PASSWORDS: [&str; 6] = [
    "change-me",
    "changeme",
    "password",
    "secret",
    "root",
    "mall",
];

/// The password of `scheme://user:password@host/...`, if the URL has one.
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split('/').next()?.rsplit_once('@')?.0;
    userinfo.split_once(':').map(|(_, password)| password)
}

/// Where the settings come from; [`Source::from_process`] reads the real process.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The YAML file, if any.
    pub file: Option<PathBuf>,
    /// Environment variables to apply (only `MALL__*` ones matter).
    pub env: BTreeMap<String, String>,
    /// YAML from the config centre, per service (see [`centre`]); applied over the file and
    /// under the environment.
    pub kv: BTreeMap<String, String>,
    /// The config centre `kv` came from ([`Source::read_centre`]), watched while running.
    pub centre: Option<centre::Centre>,
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
            kv: BTreeMap::new(),
            centre: None,
        }
    }

    pub(crate) fn kv_source(
        &self,
        service: &str,
    ) -> Option<config::File<config::FileSourceString, config::FileFormat>> {
        self.kv
            .get(service)
            .filter(|text| !text.trim().is_empty())
            .map(|text| config::File::from_str(text, config::FileFormat::Yaml))
    }

    fn file_source(&self) -> Option<config::File<config::FileSourceFile, config::FileFormat>> {
        self.file
            .as_ref()
            .map(|file| config::File::from(file.as_path()).format(config::FileFormat::Yaml))
    }

    fn env_source(&self) -> config::Environment {
        // Values stay strings here and are converted per field when deserialized, so an
        // all-digit app id or a secret like "1e10" is never turned into a number.
        config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .source(Some(self.env.clone().into_iter().collect()))
    }
}

/// Loads the settings of `service`: `defaults` → the source's file → its config-centre YAML
/// for `service` → its `MALL__*` variables, refuses unknown keys, then validates them. With a
/// config centre, the settings carry the [`centre::Reloader`] the server watches with.
pub fn load<E>(
    service: &str,
    defaults: Settings<E>,
    source: &Source,
) -> Result<Settings<E>, ConfigError>
where
    E: Serialize + DeserializeOwned + Validate + 'static,
{
    let default_tree = keys::merge(
        serde_json::to_value(defaults.platform()).map_err(keys::serialize_error)?,
        serde_json::to_value(&defaults.ext).map_err(keys::serialize_error)?,
    );
    let mut settings: Settings<E> = layered(service, &default_tree, source)?;
    if let Some(centre) = source.centre.clone() {
        let owned = service.to_string();
        let load = move |source: &Source| {
            layered::<E>(&owned, &default_tree, source).and_then(|s| s.loaded())
        };
        settings.centre = Some(centre::Reloader {
            service: service.to_string(),
            centre,
            source: source.clone(),
            current: settings.loaded()?,
            load: std::sync::Arc::new(load),
            extra: Vec::new(),
        });
    }
    Ok(settings)
}

/// Loads `service`'s settings from the process: `--config`/`MALL_CONFIG`, the config centre
/// when `MALL_CONFIG_CONSUL` names one ([`Source::read_centre`]), and `MALL__*` variables.
pub async fn load_process<E>(
    service: &str,
    defaults: Settings<E>,
) -> Result<Settings<E>, ConfigError>
where
    E: Serialize + DeserializeOwned + Validate + 'static,
{
    let source = Source::from_process().read_centre(&[service]).await?;
    load(service, defaults, &source)
}

/// The layers of [`load`] over `default_tree`, checked and validated.
fn layered<E>(
    service: &str,
    default_tree: &serde_json::Value,
    source: &Source,
) -> Result<Settings<E>, ConfigError>
where
    E: DeserializeOwned + Validate,
{
    keys::check(default_tree, source)?;
    keys::check_kv(default_tree, source, service)?;
    let mut builder = config::Config::builder().add_source(config::Config::try_from(default_tree)?);
    if let Some(file) = source.file_source() {
        builder = builder.add_source(file);
    }
    if let Some(kv) = source.kv_source(service) {
        builder = builder.add_source(kv);
    }
    let layered = builder.add_source(source.env_source()).build()?;
    let mut sections: PlatformSections = layered.clone().try_deserialize()?;
    sections.telemetry.fill_from_env(&source.env);
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
        tls: sections.tls,
        features: sections.features,
        events: sections.events,
        ext,
        centre: None,
    };
    settings.validate()?;
    Ok(settings)
}

impl<E: Serialize> Settings<E> {
    /// What a reload compares and applies.
    fn loaded(&self) -> Result<centre::Loaded, ConfigError> {
        Ok(centre::Loaded {
            tree: keys::merge(
                serde_json::to_value(self.platform()).map_err(keys::serialize_error)?,
                serde_json::to_value(&self.ext).map_err(keys::serialize_error)?,
            ),
            log_filter: self.telemetry.log_filter.clone(),
            server: self.server.clone(),
            client: self.client.clone(),
            features: self.features.clone(),
        })
    }
}

/// A secret setting (a signing key, a password): its `Debug` shows `***`, so printing the
/// settings never leaks it. Read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
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

/// `Err(invalid(key, reason))` unless `ok`.
pub fn ensure(ok: bool, key: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, reason))
    }
}

/// Parses `host:port` (host may be a name, IPv4 or `[IPv6]`).
pub fn parse_authority(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty() && !host.contains('/')).then_some((host, port))
}

/// Formats `host:port`, bracketing an IPv6 address (`[::1]:8003`).
pub fn format_authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests;

/// A list setting: a list in YAML, or one comma-separated string (as the environment gives it).
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    Many(Vec<String>),
    One(String),
}

impl OneOrMany {
    pub(crate) fn into_list(self) -> Vec<String> {
        match self {
            OneOrMany::Many(list) => list,
            OneOrMany::One(joined) => joined
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// Deserializes a [`OneOrMany`] list (`#[serde(deserialize_with = "super::string_list")]`).
pub(crate) fn string_list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    OneOrMany::deserialize(deserializer).map(OneOrMany::into_list)
}
