//! Consul KV as the config centre, against the fake Consul: the service's key is a layer at
//! start; a change reaches the running service within one watch round (the blocking query
//! returns at once) — reloadable settings applied, a bad value refused with the running
//! settings kept, a key that needs a restart reported as such; feature flags and the clients'
//! settings change without one.

use std::time::Duration;

use mall_common::error::reason_of;
use mall_testing::{GOOD_CARD, TestFleet, alipay_checkout_request, eventually, http_get};
use mall_testkit::consul::FakeConsul;

const KEY: &str = "mall/config/product";

async fn metrics(fleet: &TestFleet) -> String {
    http_get(fleet.endpoints("product").admin, "/metrics")
        .await
        .1
}

async fn shows(fleet: &TestFleet, line: &str) -> bool {
    metrics(fleet).await.lines().any(|l| l == line)
}

#[tokio::test]
async fn a_change_in_consul_kv_reaches_the_running_service() {
    let consul = FakeConsul::start().await;
    consul.put_kv(KEY, "server:\n  max_concurrent_rpcs: 50\n");
    let fleet = TestFleet::start_with(&["product"], &[("MALL_CONFIG_CONSUL", &consul.url())]).await;
    // The key is a layer at start (over the defaults, under the environment).
    assert!(
        shows(&fleet, "grpc_server_concurrency_limit 50").await,
        "{}",
        metrics(&fleet).await
    );

    // A reloadable change applies without a restart, within one watch round.
    consul.put_kv(
        KEY,
        "server:\n  max_concurrent_rpcs: 7\n  adaptive_concurrency: false\n",
    );
    eventually(Duration::from_secs(3), "the new limit applies", || async {
        shows(&fleet, "grpc_server_concurrency_limit 7").await
            && shows(&fleet, r#"config_reloads_total{result="applied"} 1"#).await
    })
    .await;

    // A bad value and an unknown key are refused; the running settings stay.
    consul.put_kv(KEY, "server:\n  max_concurrent_rpcs: 0\n");
    eventually(
        Duration::from_secs(3),
        "the bad value is refused",
        || async { shows(&fleet, r#"config_reloads_total{result="rejected"} 1"#).await },
    )
    .await;
    consul.put_kv(KEY, "server:\n  max_concurent_rpcs: 3\n");
    eventually(
        Duration::from_secs(3),
        "the unknown key is refused",
        || async { shows(&fleet, r#"config_reloads_total{result="rejected"} 2"#).await },
    )
    .await;
    assert!(shows(&fleet, "grpc_server_concurrency_limit 7").await);

    // A key that is not reloadable is reported as needing a restart (and not applied).
    consul.put_kv(
        KEY,
        "server:\n  max_concurrent_rpcs: 7\n  adaptive_concurrency: false\ndatabase:\n  max_connections: 3\n",
    );
    eventually(
        Duration::from_secs(3),
        "the restart is asked for",
        || async { shows(&fleet, r#"config_reloads_total{result="restart_needed"} 1"#).await },
    )
    .await;
    assert!(shows(&fleet, "grpc_server_concurrency_limit 7").await);
    fleet.stop().await;
}

#[tokio::test]
async fn a_configured_centre_that_does_not_answer_stops_the_start() {
    let source = mall_common::config::Source {
        env: [(
            "MALL_CONFIG_CONSUL".to_string(),
            "http://127.0.0.1:1".to_string(),
        )]
        .into(),
        ..Default::default()
    };
    // (It retries for `centre::START_WAIT`, 10 s, before giving up.)
    let refused = source.read_centre(&["product"]).await.unwrap_err();
    assert!(
        refused.to_string().contains("MALL_CONFIG_CONSUL"),
        "{refused}"
    );
}

/// The fleet a checkout needs.
const CHECKOUT_FLEET: [&str; 5] = ["product", "cart", "order", "payment", "checkout"];

#[tokio::test]
async fn a_feature_flag_switched_off_in_consul_kv_stops_alipay_at_checkout_and_not_cards() {
    const CHECKOUT_KEY: &str = "mall/config/checkout";
    let consul = FakeConsul::start().await;
    consul.put_kv(CHECKOUT_KEY, "features:\n  alipay: false\n");
    let fleet =
        TestFleet::start_with(&CHECKOUT_FLEET, &[("MALL_CONFIG_CONSUL", &consul.url())]).await;
    let user = 31;
    let product = fleet.catalog().create_product("flag lamp", 1_500, 10).await;
    fleet.cart(user).add(product, 1).await.expect("add to cart");
    let refused_alipay = || async {
        fleet
            .checkout(user)
            .send(alipay_checkout_request(user, "flag-alipay"))
            .await
            .err()
            .and_then(|status| reason_of(&status))
            .as_deref()
            == Some("PAYMENT_METHOD_DISABLED")
    };
    // Off at start: refused before anything is written, with a reason to act on.
    let status = fleet
        .checkout(user)
        .send(alipay_checkout_request(user, "flag-alipay"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(refused_alipay().await);
    let metrics = || async {
        http_get(fleet.endpoints("checkout").admin, "/metrics")
            .await
            .1
    };

    // Switched on by the centre, within one watch round; client settings and the saga's step
    // timeout change beside it, and none asks for a restart.
    consul.put_kv(
        CHECKOUT_KEY,
        "features:\n  alipay: true\nclient:\n  retry:\n    max_attempts: 2\n  \
         method_timeout:\n    payment:\n      charge: 8s\ncheckout:\n  step_timeout: 2s\n",
    );
    eventually(
        Duration::from_secs(3),
        "alipay is offered again",
        || async { !refused_alipay().await },
    )
    .await;
    let text = metrics().await;
    assert!(
        text.contains(r#"config_reloads_total{result="applied"} 1"#)
            && !text.contains(r#"result="restart_needed""#),
        "{text}"
    );

    // A saga timing that cannot work (a step longer than the whole budget) is refused.
    consul.put_kv(
        CHECKOUT_KEY,
        "features:\n  alipay: true\ncheckout:\n  step_timeout: 20s\n",
    );
    eventually(
        Duration::from_secs(3),
        "the bad timing is refused",
        || async {
            metrics()
                .await
                .contains(r#"config_reloads_total{result="rejected"} 1"#)
        },
    )
    .await;

    // Off again: Alipay is refused, a card checkout still goes through (with the reloaded
    // 2 s steps).
    consul.put_kv(CHECKOUT_KEY, "features:\n  alipay: false\n");
    eventually(
        Duration::from_secs(3),
        "alipay is switched off",
        refused_alipay,
    )
    .await;
    fleet
        .checkout(user)
        .pay(GOOD_CARD, "flag-card")
        .await
        .expect("a card checkout is not affected");
    fleet.stop().await;
}
