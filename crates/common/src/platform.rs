//! What every service opens at start, in one call: its database (created and migrated), the
//! shared cache, the token keys, and clients for the services it calls (carrying this service's
//! credentials).

use std::sync::Arc;

use crate::auth::Tokens;
use crate::cache::{self, SharedCache};
use crate::client::{Clients, ServiceIdentity};
use crate::config::Settings;
use crate::store::{Database, Migrations};

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
        let clients = Clients::new(
            &settings.discovery,
            &settings.client,
            Some(ServiceIdentity {
                name: settings.service.clone(),
                tokens: tokens.clone(),
            }),
        );
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
        })
    }

    /// The database of a service that opened one.
    pub fn database(&self) -> anyhow::Result<&Database> {
        self.db
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("this service was opened without a database"))
    }
}
