//! The near cache across two product instances sharing one database and one shared cache: a
//! product changed through one instance is served changed by the other within
//! `catalog.near_cache_staleness` (1 s), for an update (price) as for a reservation (stock), and
//! the other instance really answers from memory in between (a row changed behind the
//! service's back is not seen until the change log says so).

use std::time::{Duration, Instant};

use mall_proto::product::v1 as pb;
use mall_testing::{ProductClient, TestFleet, http_get};
use sqlx::{Connection, Executor};

/// How stale the other instance may be (the default `catalog.near_cache_staleness`).
const BOUND: Duration = Duration::from_secs(1);

/// Waits (at most [`BOUND`]) until `seen` holds for the product as `fleet` serves it; answers
/// how long that took.
async fn within_bound(fleet: &TestFleet, id: u64, seen: impl Fn(&pb::Product) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let product = fleet.catalog().get(id).await.expect("get product");
        if seen(&product) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() <= BOUND,
            "still {product:?} after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn near_hits(fleet: &TestFleet) -> u64 {
    let (_, body) = http_get(fleet.endpoints("product").admin, "/metrics").await;
    body.lines()
        .find(|l| l.starts_with(r#"product_near_cache_lookups_total{result="hit"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_change_through_one_instance_reaches_the_other_within_a_second() {
    let first = TestFleet::start(&["product"]).await;
    let second = first.replica(&["product"], &[]).await;
    let id = first.catalog().create_product("near", 100, 10).await;
    // Both read it (and keep it).
    for fleet in [&first, &second] {
        let _ = within_bound(fleet, id, |p| p.price_cents == 100).await;
    }

    // The second answers from memory: a row changed behind the services' back (no change
    // logged) is not seen there, however long one waits for its poll.
    let hits = near_hits(&second).await;
    let url = first.database_url("product");
    sqlx::any::install_default_drivers();
    let mut sneaky = sqlx::AnyConnection::connect(&url).await.unwrap();
    sneaky
        .execute(sqlx::AssertSqlSafe(format!(
            "UPDATE products SET description = 'behind its back' WHERE id = {id}"
        )))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let kept = second.catalog().get(id).await.unwrap();
    assert_eq!(kept.description, "near, described");
    assert!(
        near_hits(&second).await > hits,
        "served from the near cache"
    );

    // A price change through the first instance: the first serves it at once, the second
    // within the bound.
    first
        .client_as::<ProductClient>("product", &first.admin_token())
        .update_product(pb::UpdateProductReq {
            id,
            price_cents: 250,
            ..Default::default()
        })
        .await
        .expect("update");
    assert_eq!(first.catalog().get(id).await.unwrap().price_cents, 250);
    let took = within_bound(&second, id, |p| p.price_cents == 250).await;
    println!("the other instance served the new price after {took:?}");

    // Stock reserved through the second: the first sees it within the bound too.
    second
        .catalog()
        .reserve("near-order", &[(id, 3)])
        .await
        .unwrap();
    let took = within_bound(&first, id, |p| p.stock == 7).await;
    println!("the other instance served the new stock after {took:?}");

    second.stop().await;
    first.stop().await;
}
