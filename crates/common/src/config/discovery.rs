//! `discovery.*`: how a service finds the others (static addresses or Consul).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use mall_types::ServiceName;

use super::{ConfigError, Profile, Validate, ensure, parse_authority};

/// Where instances come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum DiscoveryKind {
    /// The addresses in `discovery.static`.
    #[default]
    Static,
    /// Register with the Consul agent and watch its health API.
    Consul,
}

impl TryFrom<String> for DiscoveryKind {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "static" => Ok(DiscoveryKind::Static),
            "consul" => Ok(DiscoveryKind::Consul),
            other => Err(format!(
                "`{other}` is not a discovery kind (expected `static` or `consul`)"
            )),
        }
    }
}

/// Default Consul agent address (`discovery.consul.address`).
pub const DEFAULT_CONSUL_ADDRESS: &str = "http://127.0.0.1:8500";
/// Default host registered in Consul for this instance (`discovery.consul.advertise_host`).
pub const DEFAULT_CONSUL_ADVERTISE_HOST: &str = "127.0.0.1";
/// Default interval of the agent-run gRPC health check, also the keep-alive period.
pub const DEFAULT_CONSUL_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// Default timeout of one gRPC health check.
pub const DEFAULT_CONSUL_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Default `DeregisterCriticalServiceAfter`: the agent drops an instance critical this long.
pub const DEFAULT_CONSUL_DEREGISTER_CRITICAL_AFTER: Duration = Duration::from_secs(60);
/// Default `wait` of a blocking health query.
pub const DEFAULT_CONSUL_WAIT: Duration = Duration::from_secs(30);
/// Default first delay after a failed Consul request (`discovery.consul.retry_base`).
pub const DEFAULT_CONSUL_RETRY_BASE: Duration = Duration::from_millis(100);
/// Default longest delay between Consul requests while it is unreachable
/// (`discovery.consul.retry_max`).
pub const DEFAULT_CONSUL_RETRY_MAX: Duration = Duration::from_secs(3);
/// Default timeout of the non-blocking agent calls (`discovery.consul.agent_timeout`).
pub const DEFAULT_CONSUL_AGENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `wait` Consul accepts.
pub const MAX_CONSUL_WAIT: Duration = Duration::from_secs(600);

/// `discovery.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverySettings {
    /// `static` (addresses below) or `consul` (register with the agent, watch its health API).
    pub kind: DiscoveryKind,
    /// The Consul agent, used when `kind` is `consul`.
    #[serde(default)]
    pub consul: ConsulSettings,
    /// Static addresses per service name, `host:port`; a list in YAML, comma-separated in the
    /// environment (`MALL__DISCOVERY__STATIC__CART=10.0.0.1:8002,10.0.0.2:8002`).
    #[serde(rename = "static", deserialize_with = "address_lists")]
    pub static_addrs: BTreeMap<String, Vec<String>>,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        DiscoverySettings {
            kind: DiscoveryKind::Static,
            consul: ConsulSettings::default(),
            static_addrs: ServiceName::ALL
                .iter()
                .map(|s| (s.to_string(), vec![format!("127.0.0.1:{}", s.port())]))
                .collect(),
        }
    }
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
    #[serde(with = "super::duration")]
    pub check_interval: Duration,
    /// How long one health check may take.
    #[serde(with = "super::duration")]
    pub check_timeout: Duration,
    /// `DeregisterCriticalServiceAfter`: the agent removes an instance critical this long.
    #[serde(with = "super::duration")]
    pub deregister_critical_after: Duration,
    /// `wait` of the blocking health queries.
    #[serde(with = "super::duration")]
    pub wait: Duration,
    /// First delay after a failed request to the agent; doubles up to `retry_max`.
    #[serde(with = "super::duration")]
    pub retry_base: Duration,
    /// Longest delay between requests while the agent is unreachable.
    #[serde(with = "super::duration")]
    pub retry_max: Duration,
    /// Timeout of register, deregister and lookup calls.
    #[serde(with = "super::duration")]
    pub agent_timeout: Duration,
}

impl Default for ConsulSettings {
    fn default() -> Self {
        ConsulSettings {
            address: DEFAULT_CONSUL_ADDRESS.into(),
            advertise_host: DEFAULT_CONSUL_ADVERTISE_HOST.into(),
            check_interval: DEFAULT_CONSUL_CHECK_INTERVAL,
            check_timeout: DEFAULT_CONSUL_CHECK_TIMEOUT,
            deregister_critical_after: DEFAULT_CONSUL_DEREGISTER_CRITICAL_AFTER,
            wait: DEFAULT_CONSUL_WAIT,
            retry_base: DEFAULT_CONSUL_RETRY_BASE,
            retry_max: DEFAULT_CONSUL_RETRY_MAX,
            agent_timeout: DEFAULT_CONSUL_AGENT_TIMEOUT,
        }
    }
}

fn address_lists<'de, D>(deserializer: D) -> Result<BTreeMap<String, Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw = BTreeMap::<String, super::OneOrMany>::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(name, addrs)| (name, addrs.into_list()))
        .collect())
}

impl Validate for DiscoverySettings {
    fn validate(&self, profile: Profile) -> Result<(), ConfigError> {
        if self.kind == DiscoveryKind::Consul {
            self.consul.validate(profile)?;
        }
        for (name, addrs) in &self.static_addrs {
            for addr in addrs {
                ensure(
                    parse_authority(addr).is_some(),
                    "discovery.static",
                    format!("`{addr}` for `{name}` is not host:port"),
                )?;
            }
        }
        Ok(())
    }
}

impl Validate for ConsulSettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        let authority = self
            .address
            .strip_prefix("http://")
            .map(|rest| rest.trim_end_matches('/'));
        ensure(
            authority.and_then(parse_authority).is_some(),
            "discovery.consul.address",
            format!("`{}` (expected http://host:port)", self.address),
        )?;
        ensure(
            !self.advertise_host.is_empty() && !self.advertise_host.contains(['/', ' ']),
            "discovery.consul.advertise_host",
            format!("`{}` is not a host name or address", self.advertise_host),
        )?;
        ensure(
            !self.check_interval.is_zero() && !self.check_timeout.is_zero(),
            "discovery.consul",
            "check_interval and check_timeout must be positive",
        )?;
        ensure(
            self.deregister_critical_after >= Duration::from_secs(1),
            "discovery.consul.deregister_critical_after",
            "must be at least 1s",
        )?;
        ensure(
            self.wait >= Duration::from_secs(1) && self.wait <= MAX_CONSUL_WAIT,
            "discovery.consul.wait",
            format!(
                "must be between 1s and {}",
                humantime::format_duration(MAX_CONSUL_WAIT)
            ),
        )?;
        ensure(
            !self.retry_base.is_zero() && self.retry_max >= self.retry_base,
            "discovery.consul.retry_base",
            "must be positive and at most retry_max",
        )?;
        ensure(
            !self.agent_timeout.is_zero(),
            "discovery.consul.agent_timeout",
            "must be positive",
        )
    }
}
