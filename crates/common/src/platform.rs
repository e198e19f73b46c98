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
    /// The service's own database.
    pub db: Database,
    /// The shared cache (revocations, counters, read-through entries).
    pub cache: SharedCache,
    /// Token signing, verification and revocation.
    pub tokens: Arc<Tokens>,
    /// Clients for the other services, calling as this one.
    pub clients: Clients,
}

impl Platform {
    /// Opens everything `settings` names; fails with a clear error when a backend is missing.
    pub async fn open<E>(
        settings: &Settings<E>,
        migrations: &Migrations,
    ) -> anyhow::Result<Platform> {
        let db =
            Database::connect(&settings.database_url(), &settings.database, migrations).await?;
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
        tracing::info!(service = %settings.service, backend = ?db.backend(), "platform ready");
        Ok(Platform {
            db,
            cache,
            tokens,
            clients,
        })
    }
}
