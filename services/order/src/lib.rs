//! The order service (port 8004): orders and their state machine (PENDING→PAID→COMPLETED or
//! REFUNDED, PENDING→CANCELLED), idempotent placement for checkout, and the sweeper that
//! cancels unpaid orders after `order.pending_timeout_secs` and gives their stock back.
//!
//! [`build`] opens the database, binds the server and starts the sweeper; [`run`] serves until
//! shutdown. Tests and the `mall` fleet call `build` with port 0.

pub mod domain;
pub mod service;
pub mod store;
pub mod sweeper;

use std::time::Duration;

use anyhow::Context as _;
use mall_common::config;
use mall_common::platform::Platform;
use mall_common::server::{BoundServer, ServerBuilder};
use mall_proto::order::v1::order_service_server::OrderServiceServer;
use serde::{Deserialize, Serialize};

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = "order";

/// Order's own settings, the `order` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// `order.*`
    pub order: OrderSettings,
}

/// `order.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderSettings {
    /// PENDING orders older than this are cancelled and their stock released.
    pub pending_timeout_secs: u64,
    /// How often the sweeper looks for them.
    pub sweep_interval_ms: u64,
    /// The store currency (ISO 4217); `PlaceOrder` refuses any other.
    pub currency: String,
}

/// Order's settings: the platform sections plus `order`.
pub type Settings = config::Settings<Extra>;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::with_ext(
        NAME,
        Extra {
            order: OrderSettings {
                pending_timeout_secs: 900,
                sweep_interval_ms: 30_000,
                currency: "USD".into(),
            },
        },
    )
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, `MALL__*`).
pub fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load(NAME, default_settings(), &config::Source::from_process())
}

/// Checks the `order` section (the platform sections are checked by the loader).
fn validate(order: &OrderSettings) -> anyhow::Result<()> {
    let currency = &order.currency;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        anyhow::bail!(
            "invalid configuration: `order.currency`: `{currency}` is not a three-letter ISO 4217 code"
        );
    }
    if order.pending_timeout_secs == 0 {
        anyhow::bail!("invalid configuration: `order.pending_timeout_secs`: must be positive");
    }
    if order.sweep_interval_ms == 0 {
        anyhow::bail!("invalid configuration: `order.sweep_interval_ms`: must be positive");
    }
    Ok(())
}

/// Stored ids are positive `BIGINT`s; the API speaks `uint64`.
pub(crate) fn api_id(id: i64) -> u64 {
    mall_common::store::id_to_api(id)
}

/// Opens the database, binds the ports and starts the sweeper (it runs while the server does).
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    validate(&settings.ext.order)?;
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    let orders = store::Orders::new(platform.database()?.clone());
    let product = platform
        .clients
        .client::<sweeper::ProductClient>("product")
        .context("a client for the product service")?;
    let service = service::OrdersService::new(
        orders.clone(),
        product.clone(),
        settings.ext.order.currency.clone(),
    );
    let alive = service.liveness();
    let bound = ServerBuilder::new(&settings, &platform)
        .add_service(OrderServiceServer::new(service), service::ACCESS)
        .bind()
        .await?;
    sweeper::Sweeper::new(
        orders,
        product,
        Duration::from_secs(settings.ext.order.pending_timeout_secs),
    )
    .spawn(
        Duration::from_millis(settings.ext.order.sweep_interval_ms),
        alive,
    );
    Ok(bound)
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(settings).await?.serve(shutdown).await
}
