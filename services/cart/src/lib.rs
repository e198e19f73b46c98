//! The cart service (port 8002): each user's shopping cart — add, change, remove and list lines,
//! and empty the cart after checkout.
//!
//! [`build`] opens the database, cache, token keys and the product client, and binds the
//! server; [`run`] serves until shutdown. Tests and the `mall` fleet call `build` with port 0.

pub mod api;
pub mod domain;
pub mod error;
pub mod peers;
pub mod store;

use mall_common::config;
use mall_common::platform::Platform;
use mall_common::server::BoundServer;
use mall_proto::cart::v1::cart_service_server::CartServiceServer;
use mall_types::ServiceName;

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = ServiceName::Cart.as_str();

/// Cart's settings: the platform sections only.
pub type Settings = config::Settings;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::defaults(NAME)
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, the config centre, `MALL__*`).
pub async fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load_process(NAME, default_settings()).await
}

/// Opens the database, cache, token keys and the product client, and binds the ports.
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    let carts = store::Carts::new(platform.database()?.clone());
    let service = api::CartApi::new(carts, platform.clients.clone());
    platform
        .server(&settings)
        .add_service(CartServiceServer::new(service), api::ACCESS)
        .bind()
        .await
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    mall_common::server::build_and_serve(build(settings), shutdown).await
}
