//! The order service (port 8004): orders and their state machine (PENDING→PAID→COMPLETED or
//! REFUNDED, PENDING→CANCELLED), idempotent placement for checkout, and the sweeper that
//! cancels unpaid orders after `order.pending_timeout` and gives their stock back (asking
//! payment first about Alipay orders, which may have been paid on Alipay's page).
//!
//! Its events (`order.placed`, `order.paid`, `order.cancelled`) go through the outbox in its
//! database; the relay publishes them to `events.url`.
//!
//! [`build`] opens the database, binds the server and starts the sweeper and the relay;
//! [`run`] serves until shutdown. Tests and the `mall` fleet call `build` with port 0.

pub mod api;
pub mod domain;
pub mod error;
pub mod peers;
pub mod store;
pub mod sweeper;

use std::time::Duration;

use anyhow::Context as _;
use mall_common::config;
use mall_common::events::{Outbox, Relay};
use mall_common::platform::Platform;
use mall_common::server::BoundServer;
use mall_proto::order::v1::order_service_server::OrderServiceServer;
use mall_types::ServiceName;
use serde::{Deserialize, Serialize};

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = ServiceName::Order.as_str();

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
    #[serde(with = "mall_common::config::duration")]
    pub pending_timeout: Duration,
    /// How often the sweeper looks for them.
    #[serde(with = "mall_common::config::duration")]
    pub sweep_interval: Duration,
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
                pending_timeout: Duration::from_secs(900),
                sweep_interval: Duration::from_secs(30),
                currency: "USD".into(),
            },
        },
    )
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, the config centre, `MALL__*`).
pub async fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load_process(NAME, default_settings()).await
}

impl config::Validate for Extra {
    fn validate(&self, _: config::Profile) -> Result<(), config::ConfigError> {
        let order = &self.order;
        let currency = &order.currency;
        config::ensure(
            currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase()),
            "order.currency",
            format!("`{currency}` is not a three-letter ISO 4217 code"),
        )?;
        config::ensure(
            !order.pending_timeout.is_zero(),
            "order.pending_timeout",
            "must be positive",
        )?;
        config::ensure(
            !order.sweep_interval.is_zero(),
            "order.sweep_interval",
            "must be positive",
        )
    }
}

/// Opens the database, binds the ports and starts the sweeper and the outbox relay (they run
/// while the server does).
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    config::Validate::validate(&settings.ext, settings.profile)?;
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    let db = platform.database()?.clone();
    Outbox::install(&db).await?;
    let relay = Relay::new(db.clone(), platform.events().await?, &settings.events);
    let orders = store::Orders::new(db);
    let product = platform
        .clients
        .client::<peers::ProductClient>(ServiceName::Product)
        .context("a client for the product service")?;
    let service = api::OrderApi::new(
        orders.clone(),
        product.clone(),
        settings.ext.order.currency.clone(),
    );
    let mut server = platform
        .server(&settings)
        .add_service(OrderServiceServer::new(service), api::ACCESS);
    let relay = relay.register_metrics(server.registry_mut());
    let bound = server.bind().await?;
    relay.spawn(bound.shutdown_handle());
    // Payment also calls order (it marks Alipay orders paid), so the two call each other: the
    // client is lazy (no connection until the sweeper's first question) and finds payment
    // where discovery says, even when payment starts after order. While it cannot be asked,
    // Alipay orders are left PENDING, never cancelled blind.
    let payment = platform
        .clients
        .client::<peers::PaymentClient>(ServiceName::Payment)
        .context("a client for the payment service")?;
    sweeper::Sweeper::new(orders, product, settings.ext.order.pending_timeout)
        .with_payment(payment)
        .spawn(settings.ext.order.sweep_interval, bound.shutdown_handle());
    Ok(bound)
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    mall_common::server::build_and_serve(build(settings), shutdown).await
}
