//! The product catalog service (port 8003): browsing and search, admin writes, and the stock
//! reservations checkout relies on.
//!
//! [`build`] opens the database and cache, fills the folded text of old rows, seeds the demo
//! catalog when asked, and binds the server; [`run`] serves until shutdown. Tests and the
//! `mall` fleet call `build` with port 0.

pub mod api;
pub mod demo;
pub mod domain;
pub mod error;
pub mod near;
pub mod store;

use std::time::Duration;

use mall_common::config;
use mall_common::events::{Outbox, Relay};
use mall_common::platform::Platform;
use mall_common::server::BoundServer;
use mall_common::worker::spawn_periodic;
use mall_proto::product::v1::product_catalog_service_server::ProductCatalogServiceServer;
use mall_types::ServiceName;
use serde::{Deserialize, Serialize};

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = ServiceName::Product.as_str();

/// Product's own settings, the `catalog` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// `catalog.*`
    pub catalog: CatalogSettings,
}

/// `catalog.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogSettings {
    /// Load the demo catalog into an empty database at start.
    pub seed_demo: bool,
    /// How long `GetProduct` answers are cached.
    #[serde(with = "mall_common::config::duration")]
    pub cache_ttl: Duration,
    /// Most products the in-process near cache keeps (0: none; see [`near`]).
    pub near_cache_entries: usize,
    /// How often the near cache reads the fleet's change log.
    #[serde(with = "mall_common::config::duration")]
    pub near_cache_poll: Duration,
    /// How old a product served from the near cache may be after a change elsewhere in the
    /// fleet: past it without a complete read of the change log, nothing is served from memory.
    #[serde(with = "mall_common::config::duration")]
    pub near_cache_staleness: Duration,
}

impl config::Validate for Extra {
    fn validate(&self, _: config::Profile) -> Result<(), config::ConfigError> {
        let c = &self.catalog;
        config::ensure(
            c.near_cache_entries == 0
                || (!c.near_cache_poll.is_zero() && c.near_cache_poll < c.near_cache_staleness),
            "catalog.near_cache_poll",
            "must be above zero and below catalog.near_cache_staleness",
        )
    }
}

/// Product's settings: the platform sections plus `catalog`.
pub type Settings = config::Settings<Extra>;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::with_ext(
        NAME,
        Extra {
            catalog: CatalogSettings {
                seed_demo: true,
                cache_ttl: Duration::from_secs(300),
                near_cache_entries: 10_000,
                near_cache_poll: Duration::from_millis(200),
                near_cache_staleness: Duration::from_secs(1),
            },
        },
    )
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, the config centre, `MALL__*`).
pub async fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load_process(NAME, default_settings()).await
}

/// Opens the database and cache, seeds the demo catalog if configured, and binds the ports.
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    let db = platform.database()?.clone();
    Outbox::install(&db).await?;
    let relay = Relay::new(db.clone(), platform.events().await?, &settings.events);
    let catalog = store::Catalog::new(db);
    let filled = catalog.backfill().await?;
    if filled != store::Backfilled::default() {
        tracing::info!(
            products = filled.products,
            categories = filled.categories,
            merged = filled.merged,
            "filled the folded text of rows from before migration 0002"
        );
    }
    if settings.ext.catalog.seed_demo && catalog.seed_if_empty(&demo::products()?).await? {
        tracing::info!("loaded the demo catalog");
    }
    let c = &settings.ext.catalog;
    let near = near::NearCache::new(
        platform.cache.clone(),
        near::NearSettings {
            entries: c.near_cache_entries,
            poll: c.near_cache_poll,
            staleness: c.near_cache_staleness,
            ttl: c.cache_ttl,
        },
    );
    let service = api::CatalogApi::new(catalog, platform.cache.clone(), c.cache_ttl, near.clone());
    let mut server = platform.server(&settings);
    if let Some(near) = &near {
        near.register(server.registry_mut());
    }
    let relay = relay.register_metrics(server.registry_mut());
    let bound = server
        .add_service(ProductCatalogServiceServer::new(service), api::ACCESS)
        .bind()
        .await?;
    relay.spawn(bound.shutdown_handle());
    if let Some(near) = near {
        spawn_periodic(
            "near cache",
            c.near_cache_poll,
            bound.shutdown_handle(),
            move || {
                let near = near.clone();
                async move { near.poll().await }
            },
        );
    }
    Ok(bound)
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    mall_common::server::build_and_serve(build(settings), shutdown).await
}
