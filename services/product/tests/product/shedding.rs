//! Load shedding: past the concurrency limit, public calls wait in a bounded room for a slot
//! and are refused with `RESOURCE_EXHAUSTED` when it is full or their wait runs out (at once
//! without a room); the admitted ones still finish; internal calls (service tokens) keep a
//! share of the limit that public ones cannot take.

use std::time::{Duration, Instant};

use mall_proto::common::v1::CartItem;
use mall_proto::product::v1 as pb;
use mall_testing::{ProductClient as Client, TestFleet, http_get, new_product};
use sqlx::{Connection, Executor};
use tonic::Code;

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_shed_at_once() {
    let fleet = TestFleet::start_with(
        &["product"],
        &[
            ("MALL__SERVER__MAX_CONCURRENT_RPCS", "2"),
            ("MALL__SERVER__MAX_QUEUED_RPCS", "0"),
        ],
    )
    .await;
    let catalog = fleet.catalog();
    let product = catalog.create_product("busy", 100, 50).await;

    // Hold the product row so admitted reservations wait inside the server.
    let mut lock = hold_products(&fleet, Some(product)).await;

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
    release(&mut lock).await;

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
                let pushback: u64 = e
                    .metadata()
                    .get("grpc-retry-pushback-ms")
                    .expect("a limit refusal carries gRPC's retry pushback")
                    .to_str()
                    .unwrap()
                    .parse()
                    .expect("whole milliseconds");
                assert!((1..=2_000).contains(&pushback), "pushback {pushback} ms");
                shed += 1;
            }
        }
    }
    assert_eq!((served, shed), (2, 6));
    assert_eq!(catalog.stock_of(product).await, 48);
    fleet.stop().await;
}

/// Blocks the product service's writes: every write on SQLite (`BEGIN IMMEDIATE`); on MySQL
/// the row of `product`, or with `None` the whole table (`LOCK TABLES`).
async fn hold_products(fleet: &TestFleet, product: Option<u64>) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    let url = fleet.database_url("product");
    let mut lock = sqlx::AnyConnection::connect(&url).await.unwrap();
    if url.starts_with("sqlite:") {
        lock.execute("BEGIN IMMEDIATE").await.unwrap();
    } else if let Some(product) = product {
        lock.execute("BEGIN").await.unwrap();
        lock.execute(sqlx::AssertSqlSafe(format!(
            "UPDATE products SET updated_at = updated_at WHERE id = {product}"
        )))
        .await
        .unwrap();
    } else {
        lock.execute("LOCK TABLES products WRITE").await.unwrap();
    }
    lock
}

async fn release(lock: &mut sqlx::AnyConnection) {
    // ROLLBACK ends SQLite's transaction and MySQL's; UNLOCK TABLES MySQL's table lock.
    lock.execute("ROLLBACK").await.unwrap();
    if !fleet_is_sqlite(lock) {
        lock.execute("UNLOCK TABLES").await.unwrap();
    }
}

fn fleet_is_sqlite(conn: &sqlx::AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

#[tokio::test]
async fn a_public_flood_cannot_take_the_share_kept_for_internal_calls() {
    let fleet = TestFleet::start_with(
        &["product"],
        &[
            ("MALL__SERVER__MAX_CONCURRENT_RPCS", "4"),
            ("MALL__SERVER__ADAPTIVE_CONCURRENCY", "false"),
            ("MALL__SERVER__INTERNAL_RESERVE_PERCENT", "50"),
            ("MALL__SERVER__MAX_QUEUED_RPCS", "0"),
        ],
    )
    .await;
    let product = fleet.catalog().create_product("contended", 100, 50).await;
    let mut lock = hold_products(&fleet, None).await;

    // Public calls (an admin's access token) that wait inside the server: two fill the public
    // share (half of 4), a third is refused at once.
    let admin = fleet.client_as::<Client>("product", &fleet.admin_token());
    let public: Vec<_> = (0..2)
        .map(|i| {
            let mut admin = admin.clone();
            tokio::spawn(async move {
                admin
                    .create_product(new_product(&format!("flood-{i}"), 100, 1))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        public.iter().all(|c| !c.is_finished()),
        "both admitted, both waiting"
    );
    let started = Instant::now();
    let refused = admin
        .clone()
        .create_product(new_product("flood-extra", 100, 1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "shed at once"
    );

    // Internal calls (checkout's service token) still get the reserved half.
    let internal = fleet.client::<Client>("product");
    let reservations: Vec<_> = (0..2)
        .map(|i| {
            let mut internal = internal.clone();
            tokio::spawn(async move {
                internal
                    .reserve_stock(pb::ReserveStockReq {
                        reservation_id: format!("in-flight-{i}"),
                        items: vec![CartItem {
                            product_id: product,
                            quantity: 1,
                        }],
                    })
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        reservations.iter().all(|c| !c.is_finished()),
        "both admitted past the public flood, both waiting"
    );
    let full = internal
        .clone()
        .reserve_stock(pb::ReserveStockReq {
            reservation_id: "one-too-many".into(),
            items: vec![CartItem {
                product_id: product,
                quantity: 1,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{full}");

    release(&mut lock).await;
    for call in public.into_iter().chain(reservations) {
        call.await.unwrap().expect("an admitted call completes");
    }
    assert_eq!(fleet.catalog().stock_of(product).await, 48);
    let (_, metrics) = http_get(fleet.endpoints("product").admin, "/metrics").await;
    for line in [
        r#"grpc_server_shed_total{reason="limit",class="public"} 1"#,
        r#"grpc_server_shed_total{reason="limit",class="internal"} 1"#,
        "grpc_server_concurrency_limit 4",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
    fleet.stop().await;
}

#[tokio::test]
async fn past_the_limit_public_calls_wait_for_a_slot_within_a_bounded_room() {
    let fleet = TestFleet::start_with(
        &["product"],
        &[
            ("MALL__SERVER__MAX_CONCURRENT_RPCS", "2"),
            ("MALL__SERVER__ADAPTIVE_CONCURRENCY", "false"),
            ("MALL__SERVER__INTERNAL_RESERVE_PERCENT", "0"),
            ("MALL__SERVER__MAX_QUEUED_RPCS", "2"),
            ("MALL__SERVER__QUEUE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let admin = fleet.client_as::<Client>("product", &fleet.admin_token());
    let create = |name: String| {
        let mut admin = admin.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = admin.create_product(new_product(&name, 100, 1)).await;
            (answer.map(|_| ()), started.elapsed())
        })
    };

    // Two admitted calls wait inside on the lock; two more wait for their slots; a fifth finds
    // the room full and is refused at once.
    let mut lock = hold_products(&fleet, None).await;
    let mut calls: Vec<_> = (0..2).map(|i| create(format!("held-{i}"))).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    calls.extend((0..2).map(|i| create(format!("waiting-{i}"))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (full, took) = create("room-full".into()).await.unwrap();
    let full = full.unwrap_err();
    assert_eq!(full.code(), Code::ResourceExhausted, "{full}");
    assert!(
        took < Duration::from_millis(500),
        "refused at once: {took:?}"
    );
    assert_eq!(full.metadata().get("x-mall-shed").unwrap(), "limit");
    assert!(calls.iter().all(|c| !c.is_finished()), "all four wait");
    // The lock goes: the admitted two finish and hand their slots to the waiting two.
    release(&mut lock).await;
    for call in calls {
        let (answer, _) = call.await.unwrap();
        answer.expect("admitted, or admitted after waiting");
    }

    // A call that waits longer than server.queue_timeout is refused, with the pushback.
    let mut lock = hold_products(&fleet, None).await;
    let held: Vec<_> = (0..2).map(|i| create(format!("held-again-{i}"))).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (late, waited) = create("too-late".into()).await.unwrap();
    let late = late.unwrap_err();
    assert_eq!(late.code(), Code::ResourceExhausted, "{late}");
    assert!(waited >= Duration::from_millis(900), "waited {waited:?}");
    assert_eq!(late.metadata().get("x-mall-shed").unwrap(), "queue");
    assert!(late.metadata().get("grpc-retry-pushback-ms").is_some());
    release(&mut lock).await;
    for call in held {
        call.await.unwrap().0.expect("the admitted calls complete");
    }
    let (_, metrics) = http_get(fleet.endpoints("product").admin, "/metrics").await;
    for line in [
        r#"grpc_server_shed_total{reason="limit",class="public"} 1"#,
        r#"grpc_server_shed_total{reason="queue",class="public"} 1"#,
        "grpc_server_queued 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in\n{metrics}"
        );
    }
    fleet.stop().await;
}
