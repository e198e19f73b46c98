//! The whole fleet with `discovery.kind = consul` against the fake agent of `mall-testkit`:
//! every service registers with a passing gRPC check, the services find each other only through
//! Consul (a purchase crosses cart, product, order, payment and checkout), and a graceful stop
//! deregisters them all. Loopback only, every wait bounded.

use std::time::{Duration, Instant};

use mall::testing::{GOOD_CARD, TestFleet, checkout_request};
use mall_common::client::Channel;
use mall_common::discovery::consul::ConsulRegistry;
use mall_proto::cart::v1 as cart_pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::checkout::v1::checkout_service_client::CheckoutServiceClient;
use mall_proto::common::v1::CartItem;
use mall_proto::order::v1 as order_pb;
use mall_proto::order::v1::order_service_client::OrderServiceClient;
use mall_proto::product::v1 as product_pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_testkit::consul::{CheckStatus, FakeConsul};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_fleet_registers_in_consul_buys_through_it_and_deregisters_on_stop() {
    let fake = FakeConsul::start().await;
    let url = fake.url();
    let fleet = TestFleet::start_with(
        mall::SERVICES,
        &[
            ("MALL__DISCOVERY__KIND", "consul"),
            ("MALL__DISCOVERY__CONSUL__ADDRESS", &url),
            ("MALL__DISCOVERY__CONSUL__CHECK_INTERVAL", "200ms"),
            ("MALL__DISCOVERY__CONSUL__CHECK_TIMEOUT", "1s"),
            ("MALL__DISCOVERY__CONSUL__WAIT", "2s"),
        ],
    )
    .await;
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
    let user = 21;
    let mut admin =
        fleet.client_as::<ProductCatalogServiceClient<Channel>>("product", &fleet.admin_token());
    let product = admin
        .create_product(product_pb::CreateProductReq {
            name: "consul lamp".into(),
            price_cents: 2_500,
            stock: 3,
            ..Default::default()
        })
        .await
        .expect("create product")
        .into_inner();
    let token = fleet.user_token(user);
    fleet
        .client_as::<CartServiceClient<Channel>>("cart", &token)
        .add_item(cart_pb::AddItemReq {
            user_id: user,
            item: Some(CartItem {
                product_id: product.id,
                quantity: 2,
            }),
        })
        .await
        .expect("add to cart");
    let bought = fleet
        .client_as::<CheckoutServiceClient<Channel>>("checkout", &token)
        .checkout(checkout_request(user, GOOD_CARD, "through-consul"))
        .await
        .expect("checkout")
        .into_inner();
    let order = fleet
        .client_as::<OrderServiceClient<Channel>>("order", &token)
        .get_order(order_pb::GetOrderReq {
            user_id: user,
            order_id: bought.order_id.clone(),
        })
        .await
        .expect("get order")
        .into_inner()
        .order
        .expect("order");
    assert_eq!(order.status, order_pb::OrderStatus::Paid as i32);

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
