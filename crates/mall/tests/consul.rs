//! A fleet with `discovery.kind = consul` against the fake agent of `mall-testkit`: services
//! register with a passing gRPC check, clients find them through Consul, and a graceful stop
//! deregisters them. Loopback only, every wait bounded.

use std::time::{Duration, Instant};

use mall::testing::TestFleet;
use mall_common::client::Channel;
use mall_common::discovery::ConsulRegistry;
use mall_testkit::consul::{CheckStatus, FakeConsul};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn fleet_registers_in_consul_is_reached_through_it_and_deregisters_on_stop() {
    let fake = FakeConsul::start().await;
    let url = fake.url();
    let fleet = TestFleet::start_with(
        &["product"],
        &[
            ("MALL__DISCOVERY__KIND", "consul"),
            ("MALL__DISCOVERY__CONSUL__ADDRESS", &url),
            ("MALL__DISCOVERY__CONSUL__CHECK_INTERVAL_MS", "200"),
            ("MALL__DISCOVERY__CONSUL__CHECK_TIMEOUT_MS", "1000"),
            ("MALL__DISCOVERY__CONSUL__WAIT_SECS", "2"),
        ],
    )
    .await;
    let port = fleet.endpoints("product").grpc.port();
    let id = ConsulRegistry::instance_id("product", "127.0.0.1", port);
    assert!(
        fake.wait_until(WAIT, |f| f.status(&id) == Some(CheckStatus::Passing))
            .await,
        "product never passing in consul: {:?}",
        fake.service_ids()
    );

    // The fleet's clients resolve product through Consul (static addresses are not used).
    let mut client: HealthClient<Channel> = fleet.client("product");
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
            Err(e) => panic!("product never reachable through consul: {e:?}"),
        }
    }

    fleet.stop().await;
    assert_eq!(
        fake.status(&id),
        None,
        "still registered after a graceful stop"
    );
}
