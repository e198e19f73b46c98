//! The payment service (port 8005): card charges (one per order), partial refunds that can never
//! exceed the charge, and Alipay page payments (signed `alipay.trade.page.pay` links and verified
//! notifications).
//!
//! [`build`] reads the Alipay keys, opens the database and cache and binds the server; [`run`]
//! serves until shutdown. Tests and the `mall` fleet call `build` with port 0.

//! Rooms, from the edges down: `api.rs` (gRPC) and `notify.rs` (Alipay's HTTP notifications)
//! parse requests; `payments.rs` holds the use cases over all methods, `card.rs` and `alipay/`
//! what only one method needs; `settle.rs` settles recorded payments with order and cart
//! (through `peers.rs`, the outgoing calls) and runs the reconciliation worker; `store/` is the
//! ledger; `domain.rs` and `error.rs` are the vocabulary; `settings.rs` the `payment` section.

pub mod alipay;
pub mod api;
pub mod card;
pub mod domain;
pub mod error;
pub mod notify;
pub mod payments;
pub mod peers;
pub mod settings;
pub mod settle;
pub mod store;

use std::sync::Arc;

use mall_common::events::{Outbox, Relay};
use mall_common::platform::Platform;
use mall_common::server::BoundServer;
use mall_proto::payment::v1::payment_service_server::PaymentServiceServer;
use mall_types::ServiceName;

pub use settings::{
    ALIPAY_SANDBOX_GATEWAY, DEFAULT_NOTIFY_PATH, Extra, NAME, PaymentSettings, Settings,
    default_settings, load_settings,
};

/// Reads the Alipay keys, opens the database and cache, and binds the ports.
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    let p = &settings.ext.payment;
    p.check()?;
    // Keys first: a bad one fails start-up before any port is bound.
    let gateway = Arc::new(alipay::Gateway::from_settings(p)?);
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    tracing::info!(alipay = ?gateway, "payment ready");
    let peers = peers::Peers {
        order: platform.clients.client(ServiceName::Order)?,
        cart: platform.clients.client(ServiceName::Cart)?,
    };
    let db = platform.database()?.clone();
    Outbox::install(&db).await?;
    let relay = Relay::new(db.clone(), platform.events().await?, &settings.events);
    let ledger = store::Ledger::new(db);
    let (settle_queue, settle_arrivals) = settle::queue();
    let alipay = alipay::Alipay::new(
        ledger.clone(),
        alipay::PayLinks::new(platform.cache.clone(), p.pay_url_cache),
        gateway,
        alipay::Timing {
            query_after: p.alipay_query_after,
            query_for: p.alipay_query_for,
        },
        peers.clone(),
        settle_queue,
    );
    let payments = payments::Payments::new(ledger.clone(), card::Cards::new(ledger), alipay);
    let settler = settle::Settler::new(payments.clone(), peers, p.reconcile_after);
    let mut server = platform
        .server(&settings)
        .add_service(
            PaymentServiceServer::new(api::PaymentApi::new(payments.clone())),
            api::ACCESS,
        )
        .admin_routes(notify::routes(
            &p.alipay_notify_path,
            payments.alipay().clone(),
        ));
    let relay = relay.register_metrics(server.registry_mut());
    let server = server.bind().await?;
    relay.spawn(server.shutdown_handle());
    settler.spawn(
        p.reconcile_interval,
        settle_arrivals,
        server.shutdown_handle(),
    );
    Ok(server)
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    mall_common::server::build_and_serve(build(settings), shutdown).await
}
