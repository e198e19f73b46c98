//! What every service opens at start, in one call: its database (created and migrated), the
//! shared cache, the token keys, discovery, its TLS certificate when `tls.enabled`, and clients
//! for the services it calls (carrying this service's credentials); then the server, wired to all
//! of them.

use std::sync::Arc;

use crate::auth::Tokens;
use crate::cache::{self, SharedCache};
use crate::client::{Clients, ServiceIdentity};
use crate::config::{Features, Settings};
use crate::discovery::{self, Register};
use crate::server::ServerBuilder;
use crate::store::{Database, Migrations};
use crate::tls::MutualTls;

/// The opened platform of one service.
#[derive(Clone)]
pub struct Platform {
    /// The service's own database (`None` for a service that owns no tables, like user).
    pub db: Option<Database>,
    /// The shared cache (revocations, counters, read-through entries).
    pub cache: SharedCache,
    /// Token signing, verification and revocation.
    pub tokens: Arc<Tokens>,
    /// Clients for the other services, calling as this one.
    pub clients: Clients,
    /// Where this instance announces itself.
    pub register: Arc<dyn Register>,
    /// Mutual TLS for the listener and the clients, when `tls.enabled`.
    pub tls: Option<MutualTls>,
    /// The feature flags (`features.*`), as the last reload left them.
    pub features: Features,
    /// The event bus `events.url` names, connected on first use ([`Platform::events`]): a
    /// service that neither publishes nor consumes never connects (and may be built without
    /// the `nats` and `kafka` features).
    events: crate::config::EventsSettings,
    bus: Arc<tokio::sync::OnceCell<Arc<dyn crate::events::EventBus>>>,
}

impl Platform {
    /// Opens everything `settings` names, migrating the database with `migrations` (`None` for a
    /// service without tables); fails with a clear error when a backend is missing.
    pub async fn open<E>(
        settings: &Settings<E>,
        migrations: Option<&Migrations>,
    ) -> anyhow::Result<Platform> {
        let db = match migrations {
            Some(m) => {
                Some(Database::connect(&settings.database_url(), &settings.database, m).await?)
            }
            None => None,
        };
        let cache = cache::connect(&settings.cache).await?;
        let tokens = Arc::new(Tokens::new(&settings.auth, cache.clone()));
        let (resolver, register) = discovery::from_settings(&settings.discovery)?;
        let tls = MutualTls::load(&settings.tls, &settings.service)?;
        let clients = Clients::new(
            resolver,
            &settings.client,
            Some(ServiceIdentity {
                name: settings.service.clone(),
                tokens: tokens.clone(),
            }),
        )
        .with_tls(tls.clone());
        tracing::info!(
            service = %settings.service,
            backend = ?db.as_ref().map(Database::backend),
            "platform ready"
        );
        Ok(Platform {
            db,
            cache,
            tokens,
            clients,
            register,
            tls,
            features: Features::new(&settings.features),
            events: settings.events.clone(),
            bus: Arc::default(),
        })
    }

    /// The event bus `events.url` names (the process-wide in-process bus by default), connected
    /// the first time a service asks for it.
    pub async fn events(&self) -> anyhow::Result<Arc<dyn crate::events::EventBus>> {
        let bus = self
            .bus
            .get_or_try_init(|| crate::events::connect(&self.events))
            .await?;
        Ok(bus.clone())
    }

    /// The database of a service that opened one.
    pub fn database(&self) -> anyhow::Result<&Database> {
        self.db
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this service was opened without a database"))
    }

    /// The server of this service: its tokens verify callers, it announces itself through the
    /// platform's registry, `/readyz` checks the database and cache, `/metrics` has the client
    /// metrics too; a config-centre reload reaches the clients' settings and the feature flags.
    pub fn server<E>(&self, settings: &Settings<E>) -> ServerBuilder {
        let cache = self.cache.clone();
        let (clients, features) = (self.clients.clone(), self.features.clone());
        let mut server = ServerBuilder::new(settings, self.tokens.clone(), self.register.clone())
            .tls(self.tls.clone())
            .on_reload(&[], move |loaded| {
                clients.reconfigure(&loaded.client);
                features.set(&loaded.features);
            })
            .ready_check("cache", move || {
                let cache = cache.clone();
                async move { cache.ping().await.map_err(|e| e.to_string()) }
            });
        self.clients.register_metrics(server.registry_mut());
        match &self.db {
            Some(db) => {
                let db = db.clone();
                server.ready_check("database", move || {
                    let db = db.clone();
                    async move { db.ping().await.map_err(|e| e.to_string()) }
                })
            }
            None => server,
        }
    }
}
