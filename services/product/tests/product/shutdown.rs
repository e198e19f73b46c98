//! Graceful shutdown of the real `product` binary: a call in flight when SIGTERM arrives
//! completes, the process then exits cleanly.

use std::process::{Command, Stdio};
use std::time::Duration;

use mall_proto::common::v1::CartItem;
use mall_proto::product::v1 as pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_testing::KillOnDrop;
use sqlx::{Connection, Executor};

/// A service token signed with the binary's (default, development) key: ReserveStock is
/// checkout's.
fn service_token() -> String {
    let settings = mall_common::Settings::defaults("test");
    let cache = std::sync::Arc::new(mall_common::cache::MemoryCache::new("t:".into(), 10));
    mall_common::auth::Tokens::new(&settings.auth, cache)
        .issue_service("checkout", "product")
        .unwrap()
        .0
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_call_in_flight_when_sigterm_arrives_completes() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("product.db").display()
    );
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_product"))
        .env_remove("MALL_CONFIG")
        .env("MALL__SERVER__HOST", "127.0.0.1")
        .env("MALL__SERVER__PORT", port.to_string())
        .env("MALL__SERVER__ADMIN_PORT", free_port().to_string())
        .env("MALL__DATABASE__URL", &db_url)
        .env("MALL__CATALOG__SEED_DEMO", "true")
        .env("MALL__TELEMETRY__LOG_FORMAT", "compact")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the product binary");
    let mut child = KillOnDrop(child);

    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap();
    let mut client = None;
    for _ in 0..200 {
        if let Ok(channel) = endpoint.connect().await {
            let mut c = ProductCatalogServiceClient::new(channel);
            if c.get_product(pb::GetProductReq { id: 1 }).await.is_ok() {
                client = Some(c);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client = client.expect("product binary came up");

    // Hold SQLite's write lock so the next reservation waits inside the server.
    let mut lock = sqlx::SqliteConnection::connect(&db_url).await.unwrap();
    lock.execute("BEGIN IMMEDIATE").await.unwrap();
    let mut request = tonic::Request::new(pb::ReserveStockReq {
        reservation_id: "in-flight".into(),
        items: vec![CartItem {
            product_id: 1,
            quantity: 2,
        }],
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", service_token()).parse().unwrap(),
    );
    let in_flight = tokio::spawn(async move { client.reserve_stock(request).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !in_flight.is_finished(),
        "the call is waiting inside the server"
    );

    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!in_flight.is_finished(), "still in flight after SIGTERM");
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the process waits for the call before exiting"
    );

    lock.execute("ROLLBACK").await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the in-flight call finished")
        .unwrap();
    assert!(answer.is_ok(), "the in-flight call succeeded: {answer:?}");

    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = status.expect("the process exits after draining");
    assert!(status.success(), "clean exit: {status}");

    let stock: i64 = sqlx::query_scalar("SELECT stock FROM products WHERE id = 1")
        .fetch_one(&mut lock)
        .await
        .unwrap();
    assert_eq!(stock, 200 - 2, "the reservation was committed");
}
