//! Runs any set of TikTokMall services in one process.
//!
//! The `mall` binary uses [`Fleet::start`] to run the whole fleet on the well-known ports with the
//! embedded defaults; black-box tests run the services they need on port 0 with a fresh database
//! each through `mall-testing`'s `TestFleet`, which starts a `Fleet` too. Services are started in
//! dependency order and each one is told where the ones before it listen, through the same
//! `MALL__*` keys an operator would set.

pub mod certs;
pub mod demo;
pub mod events_tail;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use mall_common::auth::Tokens;
use mall_common::client::{Clients, ServiceIdentity};
use mall_common::config::{self, Source};
use mall_common::server::BoundServer;
use mall_common::tls::MutualTls;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The services the fleet can run (every one of [`mall_types::ServiceName::ALL`], a test checks)
/// in start order, not port order: a service only calls ones listed before it, except order's
/// sweeper asking payment about Alipay orders (on port 0 that client has only payment's
/// configured address, see `docs/ARCHITECTURE.md`).
pub const SERVICES: &[&str] = &[
    "auth",
    "product",
    "user",
    "cart",
    "order",
    "payment",
    "checkout",
    "notification",
];

/// Where one running service listens.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    /// gRPC.
    pub grpc: SocketAddr,
    /// Admin HTTP (`/metrics`, `/healthz`, `/readyz`).
    pub admin: SocketAddr,
}

/// A set of services running in this process.
pub struct Fleet {
    endpoints: BTreeMap<&'static str, Endpoints>,
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<anyhow::Result<()>>)>,
    /// The settings of the fleet's own clients (`mall`), once every service listens.
    settings: Option<config::Settings>,
    tokens: Option<Arc<Tokens>>,
    /// Clients by the service they call as.
    clients: Mutex<BTreeMap<String, Clients>>,
}

async fn build(name: &str, source: &Source) -> anyhow::Result<BoundServer> {
    match name {
        auth::NAME => {
            let settings = config::load(name, auth::default_settings(), source)?;
            auth::build(settings).await
        }
        product::NAME => {
            let settings = config::load(name, product::default_settings(), source)?;
            product::build(settings).await
        }
        user::NAME => {
            let settings = config::load(name, user::default_settings(), source)?;
            user::build(settings).await
        }
        payment::NAME => {
            let settings = config::load(name, payment::default_settings(), source)?;
            payment::build(settings).await
        }
        cart::NAME => {
            let settings = config::load(name, cart::default_settings(), source)?;
            cart::build(settings).await
        }
        order::NAME => {
            let settings = config::load(name, order::default_settings(), source)?;
            order::build(settings).await
        }
        checkout::NAME => {
            let settings = config::load(name, checkout::default_settings(), source)?;
            checkout::build(settings).await
        }
        notification::NAME => {
            let settings = config::load(name, notification::default_settings(), source)?;
            notification::build(settings).await
        }
        other => anyhow::bail!("unknown service `{other}` (known: {})", SERVICES.join(", ")),
    }
}

impl Fleet {
    /// Starts `names` (a subset of [`SERVICES`]) with settings from `source`.
    pub async fn start(names: &[&str], source: Source) -> anyhow::Result<Fleet> {
        if let Some(unknown) = names.iter().find(|n| !SERVICES.contains(n)) {
            anyhow::bail!(
                "unknown service `{unknown}` (known: {})",
                SERVICES.join(", ")
            );
        }
        let mut source = source;
        let (stop, stopped) = watch::channel(false);
        let mut fleet = Fleet {
            endpoints: BTreeMap::new(),
            stop,
            tasks: Vec::new(),
            settings: None,
            tokens: None,
            clients: Mutex::default(),
        };
        for name in SERVICES.iter().copied().filter(|s| names.contains(s)) {
            let bound = build(name, &source)
                .await
                .with_context(|| format!("starting {name}"))?;
            let endpoints = Endpoints {
                grpc: bound.grpc_addr,
                admin: bound.admin_addr,
            };
            // Later services find this one where it actually listens (port 0 in tests).
            source.env.insert(
                format!("MALL__DISCOVERY__STATIC__{}", name.to_uppercase()),
                format!("127.0.0.1:{}", endpoints.grpc.port()),
            );
            let mut stopped = stopped.clone();
            let task = tokio::spawn(bound.serve(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
            fleet.endpoints.insert(name, endpoints);
            fleet.tasks.push((name, task));
        }
        let settings = config::load("mall", config::Settings::defaults("mall"), &source)?;
        let cache = mall_common::cache::connect(&settings.cache).await?;
        fleet.tokens = Some(Arc::new(Tokens::new(&settings.auth, cache)));
        fleet.settings = Some(settings);
        Ok(fleet)
    }

    /// Where `name` listens.
    pub fn endpoints(&self, name: &str) -> Option<Endpoints> {
        self.endpoints.get(name).copied()
    }

    /// Every running service and where it listens.
    pub fn all_endpoints(&self) -> &BTreeMap<&'static str, Endpoints> {
        &self.endpoints
    }

    /// Clients that reach this fleet's services calling as the service `caller` (its service
    /// tokens, and with `tls.enabled` its certificate), as tools and tests do; built once per
    /// caller.
    pub fn clients_as(&self, caller: &str) -> anyhow::Result<Clients> {
        let mut clients = self.clients.lock();
        if let Some(existing) = clients.get(caller) {
            return Ok(existing.clone());
        }
        let (Some(settings), Some(tokens)) = (&self.settings, &self.tokens) else {
            anyhow::bail!("the fleet has not started");
        };
        let tls = MutualTls::load(&settings.tls, caller)?;
        let built = Clients::discover(
            &settings.discovery,
            &settings.client,
            Some(ServiceIdentity {
                name: caller.into(),
                tokens: tokens.clone(),
            }),
        )?
        .with_tls(tls);
        clients.insert(caller.to_string(), built.clone());
        Ok(built)
    }

    /// The fleet's token keys (to mint tokens for tools and tests).
    pub fn tokens(&self) -> Option<&Arc<Tokens>> {
        self.tokens.as_ref()
    }

    /// Starts graceful shutdown of every service and waits for all to finish draining.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut first_error = None;
        for (name, task) in self.tasks {
            let result = match task.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("{name} task failed: {e}")),
            };
            if let Err(e) = result {
                tracing::error!(service = name, error = %e, "service stopped with an error");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use mall_types::ServiceName;

    /// [`super::SERVICES`] is a start order, not a second list: it names every service of
    /// [`ServiceName::ALL`] (port order) exactly once.
    #[test]
    fn the_start_order_names_every_service_once() {
        let mut started: Vec<&str> = super::SERVICES.to_vec();
        let mut all: Vec<&str> = ServiceName::ALL.iter().map(|s| s.as_str()).collect();
        started.sort_unstable();
        all.sort_unstable();
        assert_eq!(started, all);
    }
}
