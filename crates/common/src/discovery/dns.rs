//! `discovery.kind = dns`: the instances of a service are every A/AAAA record of a DNS name
//! (on Kubernetes a headless Service, whose name resolves to the addresses of its ready pods),
//! looked up again every `discovery.dns.interval`.
//!
//! - The name is `discovery.dns.name` with `{service}` (and `{namespace}`) filled in, the port
//!   `discovery.dns.ports.<service>` (the well-known port by default).
//! - Lookups go through the system resolver (`getaddrinfo`, tokio's `lookup_host`), so
//!   /etc/hosts and the search domains of /etc/resolv.conf apply.
//! - A lookup that fails, times out or finds no address keeps the last good set (an empty set
//!   if none was ever found), is logged and counted in `discovery_dns_lookup_failures_total`; the
//!   next one comes sooner (backoff from 100 ms up to the interval) until one succeeds.
//! - Registering announces nothing: the platform (the Service's selector and the pods'
//!   readiness probes) decides which addresses the name has.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tonic::Status;

use super::{Announcement, InstancesWatch, Register, Registered, Resolve};
use crate::backoff::backoff;
use crate::config::{DnsSettings, format_authority};
use crate::error::{NotSent, not_sent};

/// First delay after a failed lookup; doubles up to `discovery.dns.interval`.
pub const RETRY_BASE: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

/// The lookup metrics, by target service.
#[derive(Clone, Default)]
struct DnsMetrics {
    failures: Family<TargetLabels, Counter>,
    instances: Family<TargetLabels, Gauge>,
}

/// How a name is looked up: `(name, port, timeout)` to sorted `host:port` addresses. [`lookup`]
/// unless a test puts another in ([`DnsResolver::with_lookup`]).
pub type LookupFn = Arc<
    dyn Fn(String, u16, Duration) -> BoxFuture<'static, anyhow::Result<Vec<String>>> + Send + Sync,
>;

/// Follows the addresses of services in DNS.
#[derive(Clone)]
pub struct DnsResolver {
    settings: DnsSettings,
    metrics: DnsMetrics,
    lookup: LookupFn,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsResolver")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// One lookup: every address of `name` with `port`, sorted and deduplicated; an error when
/// the name does not resolve, resolves to nothing, or takes longer than `timeout`.
pub async fn lookup(name: &str, port: u16, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((name, port)))
        .await
        .map_err(|_| anyhow::anyhow!("looking up {name} took longer than {timeout:?}"))?
        .map_err(|e| anyhow::anyhow!("looking up {name}: {e}"))?;
    let mut addrs: Vec<String> = found
        .map(|a| format_authority(&a.ip().to_string(), a.port()))
        .collect();
    addrs.sort();
    addrs.dedup();
    anyhow::ensure!(!addrs.is_empty(), "{name} has no address");
    Ok(addrs)
}

impl DnsResolver {
    /// A resolver for the names, ports and timings in `settings`.
    pub fn new(settings: &DnsSettings) -> Self {
        Self::with_lookup(
            settings,
            Arc::new(|name: String, port, timeout| {
                Box::pin(async move { lookup(&name, port, timeout).await })
            }),
        )
    }

    /// A resolver that looks names up with `lookup` (tests: a name that stops resolving).
    pub fn with_lookup(settings: &DnsSettings, lookup: LookupFn) -> Self {
        DnsResolver {
            settings: settings.clone(),
            metrics: DnsMetrics::default(),
            lookup,
        }
    }

    /// Adds `discovery_dns_lookup_failures` and `discovery_dns_instances` (per target) to
    /// `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "discovery_dns_lookup_failures",
            "DNS lookups of a target service that failed, timed out or found no address (the last good instances were kept)",
            self.metrics.failures.clone(),
        );
        registry.register(
            "discovery_dns_instances",
            "Addresses the last good DNS lookup found per target service",
            self.metrics.instances.clone(),
        );
    }

    /// Lookup failures of `service` so far.
    pub fn failures(&self, service: &str) -> u64 {
        self.metrics
            .failures
            .get_or_create(&TargetLabels {
                target: service.to_string(),
            })
            .get()
    }

    /// The addresses of `service`, kept up to date by a background task until every receiver
    /// is dropped. `None` until the first lookup ended (an empty set if it failed).
    pub fn watch(&self, service: &str) -> Result<InstancesWatch, Status> {
        let port = self.settings.port_of(service).ok_or_else(|| {
            not_sent(
                NotSent::NoInstance,
                Status::unavailable(format!(
                    "no port for {service}: set discovery.dns.ports.{service}"
                )),
            )
        })?;
        let (tx, rx) = watch::channel(None);
        let name = self.settings.name_of(service);
        let labels = TargetLabels {
            target: service.to_string(),
        };
        let task = Lookups {
            service: service.to_string(),
            name,
            port,
            interval: self.settings.interval,
            timeout: self.settings.timeout,
            failures: self.metrics.failures.get_or_create(&labels).clone(),
            instances: self.metrics.instances.get_or_create(&labels).clone(),
            lookup: self.lookup.clone(),
        };
        tokio::spawn(async move {
            tokio::select! {
                () = task.run(&tx) => {}
                () = tx.closed() => {}
            }
        });
        Ok(rx)
    }
}

/// The lookups of one name.
struct Lookups {
    service: String,
    name: String,
    port: u16,
    interval: Duration,
    timeout: Duration,
    failures: Counter,
    instances: Gauge,
    lookup: LookupFn,
}

impl Lookups {
    async fn run(&self, tx: &watch::Sender<Option<Vec<String>>>) {
        let mut failed = 0u32;
        loop {
            match (self.lookup)(self.name.clone(), self.port, self.timeout).await {
                Ok(addrs) => {
                    if failed > 0 {
                        tracing::info!(service = %self.service, name = %self.name, "dns lookup works again");
                    }
                    failed = 0;
                    self.instances.set(addrs.len() as i64);
                    tx.send_if_modified(|current| {
                        let changed = current.as_ref() != Some(&addrs);
                        if changed {
                            tracing::info!(service = %self.service, name = %self.name, instances = ?addrs, "dns instances changed");
                            *current = Some(addrs);
                        }
                        changed
                    });
                    tokio::time::sleep(self.interval).await;
                }
                Err(e) => {
                    self.failures.inc();
                    // A first lookup that fails still answers: nothing is known.
                    tx.send_if_modified(|current| {
                        let first = current.is_none();
                        if first {
                            *current = Some(Vec::new());
                        }
                        first
                    });
                    let delay = backoff(failed, RETRY_BASE, self.interval);
                    failed = failed.saturating_add(1);
                    let kept = tx.borrow().as_ref().map_or(0, Vec::len);
                    tracing::warn!(service = %self.service, error = %e, kept, ?delay, "dns lookup failed; keeping the last instances");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

impl Resolve for DnsResolver {
    fn resolve(&self, service: &str) -> Result<InstancesWatch, Status> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Status::unavailable("dns discovery needs a tokio runtime"));
        }
        self.watch(service)
    }

    fn register_metrics(&self, registry: &mut Registry) {
        DnsResolver::register_metrics(self, registry);
    }
}

#[async_trait]
impl Register for DnsResolver {
    /// Announces nothing: the DNS records are the platform's (a headless Service lists the
    /// pods whose readiness probe passes).
    async fn register(&self, _: &Announcement) -> anyhow::Result<Box<dyn Registered>> {
        Ok(Box::new(super::fixed::Unannounced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addresses_are_host_port_with_ipv6_in_brackets() {
        let timeout = Duration::from_secs(2);
        assert_eq!(
            lookup("127.0.0.1", 8003, timeout).await.expect("v4"),
            vec!["127.0.0.1:8003".to_string()]
        );
        assert_eq!(
            lookup("::1", 8003, timeout).await.expect("v6"),
            vec!["[::1]:8003".to_string()]
        );
        let err = lookup("no-such-service.invalid", 8003, timeout)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no-such-service.invalid"), "{err}");
    }
}
