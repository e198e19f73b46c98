//! `discovery.*`: how a service finds the others (static addresses, DNS or Consul).

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
    /// Resolve every A/AAAA record of a DNS name per service (a Kubernetes headless Service)
    /// and resolve it again every `discovery.dns.interval`; registering announces nothing.
    Dns,
}

impl TryFrom<String> for DiscoveryKind {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "static" => Ok(DiscoveryKind::Static),
            "consul" => Ok(DiscoveryKind::Consul),
            "dns" => Ok(DiscoveryKind::Dns),
            other => Err(format!(
                "`{other}` is not a discovery kind (expected `static`, `dns` or `consul`)"
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

/// Default DNS name looked up per service (`discovery.dns.name`).
pub const DEFAULT_DNS_NAME: &str = "{service}";
/// Default period between two lookups of a name (`discovery.dns.interval`).
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(5);
/// Default timeout of one lookup (`discovery.dns.timeout`).
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// `discovery.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DiscoverySettings {
    /// `static` (addresses below), `dns` (every A/AAAA record of a name per service, looked up
    /// again on a timer) or `consul` (register with the agent, watch its health API).
    pub kind: DiscoveryKind,
    /// The Consul agent, used when `kind` is `consul`.
    #[serde(default)]
    pub consul: ConsulSettings,
    /// The names and ports looked up, used when `kind` is `dns`.
    #[serde(default)]
    pub dns: DnsSettings,
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
            dns: DnsSettings::default(),
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

/// `discovery.dns.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsSettings {
    /// The name looked up for a service: `{service}` is replaced by the service name and
    /// `{namespace}` by `namespace`, e.g. `{service}` (the default, the search domains of
    /// /etc/resolv.conf complete it) or `{service}.{namespace}.svc.cluster.local`. A name
    /// without `{service}` is the same for every service (only useful with distinct ports).
    pub name: String,
    /// What `{namespace}` in `name` stands for (on Kubernetes, the pod's namespace).
    pub namespace: String,
    /// The gRPC port dialled on every address of a service; the well-known ports by default.
    pub ports: BTreeMap<String, u16>,
    /// Time between two lookups of a name.
    #[serde(with = "super::duration")]
    pub interval: Duration,
    /// How long one lookup may take before it counts as failed.
    #[serde(with = "super::duration")]
    pub timeout: Duration,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            name: DEFAULT_DNS_NAME.into(),
            namespace: String::new(),
            ports: ServiceName::ALL
                .iter()
                .map(|s| (s.to_string(), s.port()))
                .collect(),
            interval: DEFAULT_DNS_INTERVAL,
            timeout: DEFAULT_DNS_TIMEOUT,
        }
    }
}

impl DnsSettings {
    /// The DNS name looked up for `service`.
    pub fn name_of(&self, service: &str) -> String {
        self.name
            .replace("{service}", service)
            .replace("{namespace}", &self.namespace)
    }

    /// The port dialled on the addresses of `service`: the configured one, else its well-known
    /// port; `None` for a service with neither.
    pub fn port_of(&self, service: &str) -> Option<u16> {
        self.ports
            .get(service)
            .copied()
            .or_else(|| super::default_port(service))
    }
}

impl Validate for DnsSettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        ensure(
            !self.name.contains("{namespace}") || !self.namespace.is_empty(),
            "discovery.dns.namespace",
            format!("`{}` uses `{{namespace}}`, which is not set", self.name),
        )?;
        let sample = self.name_of("product");
        ensure(
            sample.len() <= 253
                && sample.trim_end_matches('.').split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }),
            "discovery.dns.name",
            format!("`{sample}` (from `{}`) is not a DNS name", self.name),
        )?;
        for (service, port) in &self.ports {
            ensure(
                *port != 0,
                "discovery.dns.ports",
                format!("the port of `{service}` must not be 0"),
            )?;
        }
        ensure(
            self.interval >= Duration::from_millis(100),
            "discovery.dns.interval",
            "must be at least 100ms",
        )?;
        ensure(
            !self.timeout.is_zero(),
            "discovery.dns.timeout",
            "must be positive",
        )
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
        match self.kind {
            DiscoveryKind::Consul => self.consul.validate(profile)?,
            DiscoveryKind::Dns => self.dns.validate(profile)?,
            DiscoveryKind::Static => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(name: &str, namespace: &str) -> DnsSettings {
        DnsSettings {
            name: name.into(),
            namespace: namespace.into(),
            ..DnsSettings::default()
        }
    }

    #[test]
    fn dns_names_fill_the_template_and_ports_default_to_the_well_known_ones() {
        let d = dns("{service}.{namespace}.svc.cluster.local", "shop");
        assert_eq!(d.name_of("cart"), "cart.shop.svc.cluster.local");
        assert_eq!(DnsSettings::default().name_of("cart"), "cart");
        assert_eq!(d.port_of("cart"), Some(8002));
        let mut custom = DnsSettings::default();
        custom.ports.insert("cart".into(), 9443);
        assert_eq!(custom.port_of("cart"), Some(9443));
        assert_eq!(custom.port_of("unknown"), None);
        assert!(d.validate(Profile::Dev).is_ok());
    }

    #[test]
    fn bad_dns_settings_name_their_key() {
        let key = |d: &DnsSettings| match d.validate(Profile::Dev) {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        };
        assert_eq!(
            key(&dns("{service}.{namespace}", "")),
            "discovery.dns.namespace"
        );
        assert_eq!(key(&dns("{service}_x", "")), "discovery.dns.name");
        assert_eq!(key(&dns("{service}..svc", "")), "discovery.dns.name");
        let mut zero = DnsSettings::default();
        zero.ports.insert("cart".into(), 0);
        assert_eq!(key(&zero), "discovery.dns.ports");
        let fast = DnsSettings {
            interval: Duration::from_millis(10),
            ..DnsSettings::default()
        };
        assert_eq!(key(&fast), "discovery.dns.interval");
        let instant = DnsSettings {
            timeout: Duration::ZERO,
            ..DnsSettings::default()
        };
        assert_eq!(key(&instant), "discovery.dns.timeout");
    }

    #[test]
    fn dns_is_a_discovery_kind() {
        assert_eq!(
            DiscoveryKind::try_from("dns".to_string()),
            Ok(DiscoveryKind::Dns)
        );
        let err = DiscoveryKind::try_from("mdns".to_string()).unwrap_err();
        assert!(err.contains("`static`, `dns` or `consul`"), "{err}");
    }
}
