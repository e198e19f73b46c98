//! The server processes of `loadgen floor`: loadgen re-executes itself as one of these so the
//! server's CPU (read from `/proc/<pid>/stat`) is apart from the client's.
//!
//! Each prints one line `READY <json>` on stdout once it listens (addresses on loopback, port 0)
//! and serves until its stdin closes (the parent exited or dropped it), then stops and cleans up
//! (the fleet drops its databases). The product server and the fleet log as the service binaries
//! do (`RUST_LOG` or `telemetry.log_filter`, default info: one line per call), to stdout, which
//! the parent reads and discards.
//!
//! - `serve-bare --payload-hex H`: a hand-written tonic `ProductCatalogService` with no platform
//!   layers answering every `GetProduct` with the product encoded in `H`;
//! - `serve-product [--cache-url U]`: the product service as the fleet runs it (SQLite in a
//!   temporary directory, the shared cache at `U` — default in-process — with the near cache on,
//!   the default), with one product created;
//! - `serve-fleet --mysql-url U --db-prefix P [--cache-url U] [--products N] [--real-hashing]`:
//!   every service in one process ([`mall::Fleet`]) on MariaDB databases `P<service>` and Redis,
//!   with `N` products of ample stock; password hashing is cheap unless `--real-hashing`.

use std::collections::BTreeMap;

use mall_common::client::Channel;
use mall_common::config::Source;
use mall_proto::product::v1 as pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_proto::product::v1::product_catalog_service_server::{
    ProductCatalogService, ProductCatalogServiceServer,
};
use prost::Message;
use rand::Rng;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tonic::{Request, Response, Status};

/// The stock of every product a floor fleet creates: checkouts never run it out.
pub const AMPLE_STOCK: u32 = 1_000_000_000;

/// Resolves when stdin reaches end of file (or fails): the parent is gone or wants us to stop.
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

fn ready(value: &serde_json::Value) {
    println!("READY {value}");
}

/// A random hex suffix for namespaces.
fn run_id() -> String {
    format!("{:08x}", rand::rng().random::<u32>())
}

/// The environment of a floor server: loopback, port 0, no demo catalog, the `MALL__*`
/// variables of loadgen's own environment, and unless `real_hashing` cheap password hashing (users are registered for the benchmark, not for
/// security; the default Argon2 cost keeps 19 MiB of working memory per hashing thread).
fn base_env(
    database_url: String,
    cache_url: &str,
    namespace: String,
    real_hashing: bool,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for (k, v) in [
        ("MALL__SERVER__HOST", "127.0.0.1"),
        ("MALL__SERVER__PORT", "0"),
        ("MALL__SERVER__SHUTDOWN_GRACE", "5s"),
        ("MALL__CATALOG__SEED_DEMO", "false"),
    ] {
        env.insert(k.to_string(), v.to_string());
    }
    if !real_hashing {
        env.insert("MALL__ACCOUNTS__ARGON2__MEMORY_KIB".into(), "256".into());
        env.insert("MALL__ACCOUNTS__ARGON2__ITERATIONS".into(), "1".into());
    }
    // The operator's own settings (`MALL__SERVER__MIN_CONCURRENT_RPCS=8 loadgen floor …`) reach
    // the servers; where they listen and what they store in stay the benchmark's.
    env.extend(std::env::vars().filter(|(k, _)| k.starts_with("MALL__")));
    env.insert("MALL__SERVER__HOST".into(), "127.0.0.1".into());
    env.insert("MALL__SERVER__PORT".into(), "0".into());
    env.insert("MALL__DATABASE__URL".into(), database_url);
    env.insert("MALL__CACHE__URL".into(), cache_url.to_string());
    env.insert("MALL__CACHE__NAMESPACE".into(), namespace);
    env
}

/// An admin access token minted with the fleet's keys (admin checks are local to each service).
fn admin_token(fleet: &mall::Fleet) -> anyhow::Result<String> {
    let tokens = fleet
        .tokens()
        .ok_or_else(|| anyhow::anyhow!("fleet has no token keys"))?;
    let sid = format!("floor-{}", run_id());
    Ok(tokens
        .issue_access(
            mall_types::UserId::parse(4_000_000_001, "user_id")?,
            "floor-admin",
            mall_common::auth::Role::Admin,
            &sid,
        )
        .map_err(|s| anyhow::anyhow!("admin token: {}", s.message()))?
        .0)
}

/// Creates `count` products priced 1.00 with [`AMPLE_STOCK`]; their ids.
async fn create_products(fleet: &mall::Fleet, count: usize) -> anyhow::Result<Vec<u64>> {
    let token = admin_token(fleet)?;
    let mut client: ProductCatalogServiceClient<Channel> = fleet
        .clients_as(mall::certs::TOOLS)?
        .client_as(mall_types::ServiceName::Product, &token)
        .map_err(|s| anyhow::anyhow!("product client: {}", s.message()))?;
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let product = client
            .create_product(pb::CreateProductReq {
                name: format!("floor product {i}"),
                description: "A product of the floor benchmark".into(),
                picture: "/static/image/floor.jpg".into(),
                price_cents: 100,
                stock: AMPLE_STOCK,
                categories: vec!["floor".into()],
            })
            .await
            .map_err(|s| anyhow::anyhow!("CreateProduct: {:?} {}", s.code(), s.message()))?
            .into_inner();
        ids.push(product.id);
    }
    Ok(ids)
}

/// `loadgen serve-product`'s command line.
#[derive(Debug, Clone, clap::Args)]
pub struct ProductArgs {
    /// The shared cache (`memory://` for the in-process one).
    #[arg(long, value_name = "URL", default_value = "memory://")]
    pub cache_url: String,
}

/// `loadgen serve-fleet`'s command line.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// The MySQL/MariaDB server (no database part).
    #[arg(long, value_name = "URL")]
    pub mysql_url: String,
    /// The prefix of the fleet's database names.
    #[arg(long, value_name = "P", value_parser = super::db_prefix)]
    pub db_prefix: String,
    /// The shared cache (`memory://` for the in-process one).
    #[arg(long, value_name = "URL", default_value = "memory://")]
    pub cache_url: String,
    /// Products to create, priced 1.00 with ample stock.
    #[arg(long, default_value_t = 20)]
    pub products: usize,
    /// Hash passwords at the default Argon2 cost (else cheaply).
    #[arg(long)]
    pub real_hashing: bool,
}

/// `loadgen serve-bare`'s command line.
#[derive(Debug, Clone, clap::Args)]
pub struct BareArgs {
    /// The product every GetProduct answers, protobuf-encoded, in hex.
    #[arg(long, value_name = "HEX")]
    pub payload_hex: String,
}

/// `loadgen serve-product [--cache-url U]`.
pub async fn serve_product(args: ProductArgs) -> anyhow::Result<()> {
    let cache_url = args.cache_url;
    let dir = tempfile::tempdir()?;
    let env = base_env(
        format!("sqlite://{}/product.db?mode=rwc", dir.path().display()),
        &cache_url,
        format!("floor-product-{}", run_id()),
        false,
    );
    let source = Source {
        file: None,
        env,
        ..Source::default()
    };
    // No auth runs beside this product service: an empty revocation copy is the true one.
    let settings = mall_common::config::load(
        "floor",
        mall_common::config::Settings::defaults("floor"),
        &source,
    )?;
    // Logs as the service binaries write them (`telemetry.log_filter`, default info: a line per
    // call) to stdout, which `loadgen floor` drains.
    mall_common::telemetry::init("product", &settings.telemetry);
    let cache = mall_common::cache::connect(&settings.cache).await?;
    mall_common::auth::revocation::publish_epoch(cache.as_ref(), "floor-without-auth").await?;
    let fleet = mall::Fleet::start(&["product"], source).await?;
    let ids = create_products(&fleet, 1).await?;
    let addr = fleet
        .endpoints("product")
        .ok_or_else(|| anyhow::anyhow!("product is not running"))?
        .grpc;
    ready(&json!({ "addr": addr.to_string(), "product_id": ids[0] }));
    stdin_closed().await;
    let _ = cache.clear().await;
    fleet.shutdown().await
}

/// `loadgen serve-fleet --mysql-url U --db-prefix P [--cache-url U] [--products N]
/// [--real-hashing]`.
pub async fn serve_fleet(args: FleetArgs) -> anyhow::Result<()> {
    let real_hashing = args.real_hashing;
    let mysql = args.mysql_url.trim_end_matches('/').to_string();
    let prefix = args.db_prefix;
    let cache_url = args.cache_url;
    let products = args.products.max(1);
    let template = format!("{mysql}/{prefix}{{service}}");
    let env = base_env(
        template.clone(),
        &cache_url,
        format!("floor-{prefix}"),
        real_hashing,
    );
    let source = Source {
        file: None,
        env,
        ..Source::default()
    };
    // Logs as the `mall` binary writes them (see `serve_product`).
    let settings = mall_common::config::load(
        "mall",
        mall_common::config::Settings::defaults("mall"),
        &source,
    )?;
    mall_common::telemetry::init(&settings.service, &settings.telemetry);
    let fleet = mall::Fleet::start(mall::SERVICES, source).await?;
    let ids = create_products(&fleet, products).await?;
    let addrs: BTreeMap<&str, String> = fleet
        .all_endpoints()
        .iter()
        .map(|(name, ep)| (*name, ep.grpc.to_string()))
        .collect();
    ready(&json!({ "addrs": addrs, "products": ids, "allocator": crate::ALLOCATOR }));
    stdin_closed().await;
    let result = fleet.shutdown().await;
    if let Ok(settings) = mall_common::config::load(
        "floor",
        mall_common::config::Settings::defaults("floor"),
        &Source {
            file: None,
            env: base_env(
                template.clone(),
                &cache_url,
                format!("floor-{prefix}"),
                real_hashing,
            ),
            ..Source::default()
        },
    ) && let Ok(cache) = mall_common::cache::connect(&settings.cache).await
    {
        let _ = cache.clear().await;
    }
    for service in mall::SERVICES {
        let _ = mall_common::store::drop_database(&template.replace("{service}", service)).await;
    }
    result
}

/// A `ProductCatalogService` with nothing but tonic: `GetProduct` answers a fixed product.
struct Bare {
    product: pb::Product,
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented(
        "the bare server answers GetProduct only",
    ))
}

#[tonic::async_trait]
impl ProductCatalogService for Bare {
    async fn list_products(
        &self,
        _: Request<pb::ListProductsReq>,
    ) -> Result<Response<pb::ListProductsResp>, Status> {
        unimplemented()
    }

    async fn get_product(
        &self,
        _: Request<pb::GetProductReq>,
    ) -> Result<Response<pb::GetProductResp>, Status> {
        Ok(Response::new(pb::GetProductResp {
            product: Some(self.product.clone()),
        }))
    }

    async fn search_products(
        &self,
        _: Request<pb::SearchProductsReq>,
    ) -> Result<Response<pb::SearchProductsResp>, Status> {
        unimplemented()
    }

    async fn batch_get_products(
        &self,
        _: Request<pb::BatchGetProductsReq>,
    ) -> Result<Response<pb::BatchGetProductsResp>, Status> {
        unimplemented()
    }

    async fn create_product(
        &self,
        _: Request<pb::CreateProductReq>,
    ) -> Result<Response<pb::Product>, Status> {
        unimplemented()
    }

    async fn update_product(
        &self,
        _: Request<pb::UpdateProductReq>,
    ) -> Result<Response<pb::Product>, Status> {
        unimplemented()
    }

    async fn delete_product(
        &self,
        _: Request<pb::DeleteProductReq>,
    ) -> Result<Response<pb::DeleteProductResp>, Status> {
        unimplemented()
    }

    async fn reserve_stock(
        &self,
        _: Request<pb::ReserveStockReq>,
    ) -> Result<Response<pb::ReserveStockResp>, Status> {
        unimplemented()
    }

    async fn release_stock(
        &self,
        _: Request<pb::ReleaseStockReq>,
    ) -> Result<Response<pb::ReleaseStockResp>, Status> {
        unimplemented()
    }

    async fn list_categories(
        &self,
        _: Request<pb::ListCategoriesReq>,
    ) -> Result<Response<pb::ListCategoriesResp>, Status> {
        unimplemented()
    }
}

/// `loadgen serve-bare --payload-hex H`.
pub async fn serve_bare(args: BareArgs) -> anyhow::Result<()> {
    let payload = hex::decode(&args.payload_hex)?;
    let product = pb::Product::decode(payload.as_slice())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    ready(&json!({ "addr": addr.to_string() }));
    tonic::transport::Server::builder()
        .add_service(ProductCatalogServiceServer::new(Bare { product }))
        .serve_with_incoming_shutdown(incoming, stdin_closed())
        .await?;
    Ok(())
}
