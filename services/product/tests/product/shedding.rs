//! Load shedding: past `server.max_concurrent_rpcs`, calls are refused at once with
//! `RESOURCE_EXHAUSTED` instead of queueing, and the admitted ones still finish.

use std::time::{Duration, Instant};

use mall_proto::common::v1::CartItem;
use mall_proto::product::v1 as pb;
use mall_testing::{ProductClient as Client, TestFleet};
use sqlx::{Connection, Executor};
use tonic::Code;

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_shed_at_once() {
    let fleet =
        TestFleet::start_with(&["product"], &[("MALL__SERVER__MAX_CONCURRENT_RPCS", "2")]).await;
    let catalog = fleet.catalog();
    let product = catalog.create_product("busy", 100, 50).await;

    // Hold the product row so admitted reservations wait inside the server.
    sqlx::any::install_default_drivers();
    let url = fleet.database_url("product");
    let mut lock = sqlx::AnyConnection::connect(&url).await.unwrap();
    if url.starts_with("sqlite:") {
        lock.execute("BEGIN IMMEDIATE").await.unwrap();
    } else {
        lock.execute("BEGIN").await.unwrap();
        lock.execute(sqlx::AssertSqlSafe(format!(
            "UPDATE products SET updated_at = updated_at WHERE id = {product}"
        )))
        .await
        .unwrap();
    }

    let svc = fleet.client::<Client>("product");
    let started = Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let mut svc = svc.clone();
            tokio::spawn(async move {
                let result = svc
                    .reserve_stock(pb::ReserveStockReq {
                        reservation_id: format!("busy-{i}"),
                        items: vec![CartItem {
                            product_id: product,
                            quantity: 1,
                        }],
                    })
                    .await;
                (result.map(|_| ()), started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let finished_early = calls.iter().filter(|c| c.is_finished()).count();
    assert_eq!(
        finished_early, 6,
        "the excess answers while the admitted two wait"
    );
    lock.execute("ROLLBACK").await.unwrap();

    let mut shed = 0;
    let mut served = 0;
    for call in calls {
        let (result, elapsed) = call.await.unwrap();
        match result {
            Ok(()) => served += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e}");
                assert!(
                    elapsed < Duration::from_millis(500),
                    "shed promptly, took {elapsed:?}"
                );
                shed += 1;
            }
        }
    }
    assert_eq!((served, shed), (2, 6));
    assert_eq!(catalog.stock_of(product).await, 48);
    fleet.stop().await;
}
