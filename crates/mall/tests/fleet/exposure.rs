//! A server reachable from other machines trusts none of the public development keys: it does
//! not start with them, and with keys of its own a token forged with them is refused.

use std::net::SocketAddr;
use std::sync::Arc;

use mall_common::auth::{Role, Tokens};
use mall_common::cache::MemoryCache;
use mall_common::config::{AccessKeys, Settings, Source};
use mall_proto::product::v1 as pb;
use mall_testing::{ProductClient, TestFleet, client_at};
use tonic::Code;

#[tokio::test]
async fn off_loopback_the_development_keys_neither_start_a_server_nor_forge_a_token() {
    // With the development keys, a server bound to every interface does not start.
    let source = Source {
        file: None,
        env: [
            ("MALL__PROFILE", "test"),
            ("MALL__SERVER__HOST", "0.0.0.0"),
            ("MALL__SERVER__PORT", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        ..Source::default()
    };
    let refused = mall::Fleet::start(&["product"], source).await.err();
    let refused = format!("{:#}", refused.expect("refused to start"));
    assert!(refused.contains("auth.jwt_secret"), "{refused}");

    // With keys of its own it starts, and the development keys prove nothing to it.
    let (_, verify_key) = AccessKeys::generate();
    let fleet = TestFleet::start_with(
        &["product"],
        &[
            ("MALL__SERVER__HOST", "0.0.0.0"),
            (
                "MALL__AUTH__JWT_SECRET",
                "this-fleet-has-a-service-key-of-its-own",
            ),
            ("MALL__AUTH__VERIFY_KEY", &verify_key),
        ],
    )
    .await;
    let port = fleet.endpoints("product").grpc.port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dev = Tokens::new(
        &Settings::defaults("attacker").auth,
        Arc::new(MemoryCache::new("x:".into(), 10)),
    );
    let (admin, _) = dev
        .issue_access(
            mall_types::UserId::parse(1, "user_id").unwrap(),
            "mallory",
            Role::Admin,
            "s",
        )
        .unwrap();
    let (service, _) = dev.issue_service("checkout", "product").unwrap();
    let create = pb::CreateProductReq {
        name: "Forged".into(),
        price_cents: 1,
        ..Default::default()
    };
    let err = client_at::<ProductClient>("product", addr, &admin)
        .create_product(create)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "forged admin: {err:?}");
    let err = client_at::<ProductClient>("product", addr, &service)
        .release_stock(pb::ReleaseStockReq {
            reservation_id: "r-1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "forged service: {err:?}");
    fleet.stop().await;
}
