//! Client-side balancing across three real product instances sharing one database: calls spread
//! evenly, and an instance made 50 ms slower (behind `mall_testkit::proxy::LatencyProxy`) gets
//! few of them. Loopback only, bounded in count.

use mall_types::ServiceName;
use std::net::SocketAddr;
use std::sync::Arc;

use mall_common::client::Clients;
use mall_common::config::Settings;
use mall_proto::product::v1 as pb;
use mall_testing::{ProductClient as Client, TestFleet, http_get};
use mall_testkit::proxy::LatencyProxy;

const CALLS: usize = 3_000;
const CALLERS: usize = 8;

/// Three product instances on one database, and one product in it.
async fn three_instances() -> (Vec<TestFleet>, u64) {
    let first = TestFleet::start(&["product"]).await;
    let second = first.replica(&["product"], &[]).await;
    let third = first.replica(&["product"], &[]).await;
    let id = first.catalog().create_product("balanced", 100, 1).await;
    (vec![first, second, third], id)
}

/// GetProduct calls an instance has answered OK, from its own metrics.
async fn served(admin: SocketAddr) -> usize {
    let (_, body) = http_get(admin, "/metrics").await;
    body.lines()
        .find(|l| {
            l.starts_with("grpc_server_handled_total{")
                && l.contains(r#"grpc_method="GetProduct",grpc_code="OK""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// `CALLS` GetProduct calls from `CALLERS` concurrent callers through one balanced client.
async fn call_many(addrs: Vec<String>, id: u64) {
    let mut settings = Settings::defaults("loadtest");
    settings
        .discovery
        .static_addrs
        .insert("product".into(), addrs);
    let clients = Clients::discover(&settings.discovery, &settings.client, None).expect("clients");
    let client: Client = clients.client(ServiceName::Product).expect("client");
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(CALLS));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let mut client = client.clone();
            let left = left.clone();
            tokio::spawn(async move {
                use std::sync::atomic::Ordering;
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    client
                        .get_product(pb::GetProductReq { id })
                        .await
                        .expect("every call succeeds");
                }
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller");
    }
}

async fn stop(fleets: Vec<TestFleet>) {
    // Replicas first: the first fleet owns the database.
    for fleet in fleets.into_iter().rev() {
        fleet.stop().await;
    }
}

#[tokio::test]
async fn calls_spread_evenly_over_three_instances() {
    let (fleets, id) = three_instances().await;
    let admins: Vec<SocketAddr> = fleets
        .iter()
        .map(|f| f.endpoints("product").admin)
        .collect();
    let addrs = fleets
        .iter()
        .map(|f| f.endpoints("product").grpc.to_string())
        .collect();
    call_many(addrs, id).await;
    let mut counts = Vec::new();
    for admin in &admins {
        counts.push(served(*admin).await);
    }
    assert_eq!(counts.iter().sum::<usize>(), CALLS, "{counts:?}");
    let third = CALLS / 3;
    for n in &counts {
        assert!(
            n.abs_diff(third) * 100 <= third * 15,
            "each instance should get a third ±15%: {counts:?}"
        );
    }
    stop(fleets).await;
}

#[tokio::test]
async fn an_instance_slowed_by_50ms_gets_under_a_fifth_of_the_calls() {
    let (fleets, id) = three_instances().await;
    let admins: Vec<SocketAddr> = fleets
        .iter()
        .map(|f| f.endpoints("product").admin)
        .collect();
    let slow = LatencyProxy::start(
        fleets[2].endpoints("product").grpc,
        std::time::Duration::from_millis(50),
    )
    .await;
    let addrs = vec![
        fleets[0].endpoints("product").grpc.to_string(),
        fleets[1].endpoints("product").grpc.to_string(),
        slow.addr(),
    ];
    call_many(addrs, id).await;
    let mut counts = Vec::new();
    for admin in &admins {
        counts.push(served(*admin).await);
    }
    assert_eq!(counts.iter().sum::<usize>(), CALLS, "{counts:?}");
    assert!(
        counts[2] * 5 < CALLS,
        "the slow instance got {} of {CALLS}: {counts:?}",
        counts[2]
    );
    eprintln!("calls per instance (the last one 50 ms slower): {counts:?}");
    stop(fleets).await;
}
