//! `discovery.kind = static`: the addresses from `discovery.static`, which never change;
//! registering announces nothing (whoever configured the addresses knows where we are).

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::watch;
use tonic::Status;

use super::{Announcement, InstancesWatch, Register, Registered, Resolve};
use crate::error::{NotSent, not_sent};

/// Fixed addresses per service name.
#[derive(Debug, Clone, Default)]
pub struct Fixed {
    addrs: BTreeMap<String, Vec<String>>,
}

impl Fixed {
    /// Serves `addrs` (service name → `host:port` list).
    pub fn new(addrs: BTreeMap<String, Vec<String>>) -> Self {
        Fixed { addrs }
    }
}

impl Resolve for Fixed {
    fn resolve(&self, service: &str) -> Result<InstancesWatch, Status> {
        let addrs = self
            .addrs
            .get(service)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                not_sent(
                    NotSent::NoInstance,
                    Status::unavailable(format!("no address configured for {service}")),
                )
            })?;
        let (_tx, rx) = watch::channel(Some(addrs.clone()));
        Ok(rx)
    }
}

#[async_trait]
impl Register for Fixed {
    async fn register(&self, _: &Announcement) -> anyhow::Result<Box<dyn Registered>> {
        Ok(Box::new(Unannounced))
    }
}

/// The handle of an instance nobody was told about.
pub(super) struct Unannounced;

#[async_trait]
impl Registered for Unannounced {
    async fn deregister(self: Box<Self>) -> anyhow::Result<()> {
        Ok(())
    }
}
