//! The whole fleet with `discovery.kind = consul` against the fake agent of `mall-testkit`:
//! every service registers with a passing gRPC check, the services find each other only through
//! Consul (a purchase crosses cart, product, order, payment and checkout), and a graceful stop
//! deregisters them all. Loopback only, every wait bounded.

use std::time::{Duration, Instant};

use mall_common::client::Channel;
use mall_common::discovery::consul::ConsulRegistry;
use mall_proto::order::v1 as order_pb;
use mall_testing::{GOOD_CARD, TestFleet};
use mall_testkit::consul::{CheckStatus, FakeConsul};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const WAIT: Duration = Duration::from_secs(10);

/// Settings of a fleet discovering through `fake`.
fn on_consul(url: &str) -> [(&'static str, String); 5] {
    [
        ("MALL__DISCOVERY__KIND", "consul".into()),
        ("MALL__DISCOVERY__CONSUL__ADDRESS", url.into()),
        ("MALL__DISCOVERY__CONSUL__CHECK_INTERVAL", "200ms".into()),
        ("MALL__DISCOVERY__CONSUL__CHECK_TIMEOUT", "1s".into()),
        ("MALL__DISCOVERY__CONSUL__WAIT", "2s".into()),
    ]
}

/// A purchase through `fleet`: checkout drives cart, product, order and payment.
async fn buy(fleet: &TestFleet, user: u64, key: &str) {
    let product = fleet
        .catalog()
        .create_product("consul lamp", 2_500, 3)
        .await;
    fleet.cart(user).add(product, 2).await.expect("add to cart");
    let bought = fleet
        .checkout(user)
        .pay(GOOD_CARD, key)
        .await
        .expect("checkout");
    let order = fleet.orders(user).get(&bought.order_id).await;
    assert_eq!(order.status, order_pb::OrderStatus::Paid as i32);
}

#[tokio::test]
async fn with_mutual_tls_consul_checks_readiness_over_http_and_the_purchase_works() {
    let fake = FakeConsul::start().await;
    let settings = on_consul(&fake.url());
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fleet = TestFleet::start_tls_with(mall::SERVICES, &settings).await;
    for name in mall::SERVICES {
        let endpoints = fleet.endpoints(name);
        let id = ConsulRegistry::instance_id(name, "127.0.0.1", endpoints.grpc.port());
        assert!(
            fake.wait_until(WAIT, |f| f.status(&id) == Some(CheckStatus::Passing))
                .await,
            "{name} never passing in consul: {:?}",
            fake.service_ids()
        );
        // The agent has no client certificate: it asks the plain admin port instead.
        let check = &fake.registration(&id).expect("registered")["Check"];
        assert_eq!(check.get("GRPC"), None, "{name}: {check}");
        let readyz = format!("http://127.0.0.1:{}/readyz", endpoints.admin.port());
        assert_eq!(check["HTTP"], readyz.as_str(), "{name}");
    }
    buy(&fleet, 22, "through-consul-over-tls").await;
    fleet.stop().await;
    assert!(fake.service_ids().is_empty(), "{:?}", fake.service_ids());
}

#[tokio::test]
async fn the_fleet_registers_in_consul_buys_through_it_and_deregisters_on_stop() {
    let fake = FakeConsul::start().await;
    let settings = on_consul(&fake.url());
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let fleet = TestFleet::start_with(mall::SERVICES, &settings).await;
    let ids: Vec<(&str, String)> = mall::SERVICES
        .iter()
        .map(|name| {
            let port = fleet.endpoints(name).grpc.port();
            (*name, ConsulRegistry::instance_id(name, "127.0.0.1", port))
        })
        .collect();
    for (name, id) in &ids {
        assert!(
            fake.wait_until(WAIT, |f| f.status(id) == Some(CheckStatus::Passing))
                .await,
            "{name} never passing in consul: {:?}",
            fake.service_ids()
        );
        assert_eq!(fake.registration(id).expect("registered")["Name"], *name);
    }

    // The fleet's clients resolve every service through Consul (static addresses are unused).
    for name in mall::SERVICES {
        let mut client: HealthClient<Channel> = fleet.client(name);
        let deadline = Instant::now() + WAIT;
        loop {
            let req = HealthCheckRequest {
                service: String::new(),
            };
            match client.check(req).await {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{name} never reachable through consul: {e:?}"),
            }
        }
    }

    // A purchase: cart asks product, checkout drives cart, product, order and payment, each
    // found through Consul.
    buy(&fleet, 21, "through-consul").await;

    fleet.stop().await;
    for (name, id) in &ids {
        assert_eq!(
            fake.status(id),
            None,
            "{name} still registered after a graceful stop"
        );
    }
    assert!(fake.service_ids().is_empty(), "{:?}", fake.service_ids());
}
