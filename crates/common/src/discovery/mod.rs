//! How services find each other, behind two traits so no other module asks which kind is
//! configured:
//!
//! - [`Resolve`]: the instances of a service by name, as a watch that later answers update;
//! - [`Register`]: announcing this instance once its ports are bound, and withdrawing it on
//!   graceful shutdown.
//!
//! [`fixed::Fixed`] serves `discovery.kind = static` (the configured addresses; registering is a
//! no-op), [`dns::DnsResolver`] serves `discovery.kind = dns` (every A/AAAA record of a name per
//! service, looked up again on a timer; registering is a no-op), [`consul`] serves
//! `discovery.kind = consul` (the agent's catalog and health checks).
//! [`from_settings`] picks one.

pub mod consul;
pub mod dns;
pub mod fixed;

use std::sync::Arc;

use async_trait::async_trait;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tonic::Status;

use crate::config::{DiscoveryKind, DiscoverySettings};

/// The instances of one service as sorted `host:port` strings; `None` until the first answer
/// (so callers can tell "not looked up yet" from "none").
pub type InstancesWatch = watch::Receiver<Option<Vec<String>>>;

/// Finds the instances of services.
pub trait Resolve: Send + Sync {
    /// The instances of `service`, kept up to date while the receiver lives. A resolver whose
    /// answer never changes drops its sender at once.
    fn resolve(&self, service: &str) -> Result<InstancesWatch, Status>;

    /// Adds the resolver's own metrics to `registry` (none by default).
    fn register_metrics(&self, _registry: &mut Registry) {}
}

/// This instance, as announced to the registry.
#[derive(Debug, Clone)]
pub struct Announcement {
    /// The service name (`product`).
    pub service: String,
    /// The gRPC port actually bound.
    pub grpc_port: u16,
    /// The admin HTTP port actually bound.
    pub admin_port: u16,
    /// The build's version.
    pub version: String,
    /// The gRPC port requires mutual TLS, which a discovery agent's own health check cannot
    /// speak (it has no client certificate): the check goes to the admin port's `/readyz`.
    pub mutual_tls: bool,
}

/// Announces instances.
#[async_trait]
pub trait Register: Send + Sync {
    /// Announces `instance` and keeps it announced until the handle is withdrawn or dropped.
    async fn register(&self, instance: &Announcement) -> anyhow::Result<Box<dyn Registered>>;
}

/// An announced instance.
#[async_trait]
pub trait Registered: Send {
    /// Withdraws the announcement (graceful shutdown).
    async fn deregister(self: Box<Self>) -> anyhow::Result<()>;
}

/// The resolver and registry `settings` name.
pub fn from_settings(
    settings: &DiscoverySettings,
) -> anyhow::Result<(Arc<dyn Resolve>, Arc<dyn Register>)> {
    Ok(match settings.kind {
        DiscoveryKind::Static => {
            let fixed = Arc::new(fixed::Fixed::new(settings.static_addrs.clone()));
            (fixed.clone(), fixed)
        }
        DiscoveryKind::Dns => {
            let dns = Arc::new(dns::DnsResolver::new(&settings.dns));
            (dns.clone(), dns)
        }
        DiscoveryKind::Consul => (
            Arc::new(consul::ConsulResolver::new(&settings.consul)?),
            Arc::new(consul::ConsulRegistry::new(&settings.consul)?),
        ),
    })
}
