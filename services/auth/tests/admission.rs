//! Admission at auth under a flood of public logins: calls from the fleet's services (user's
//! ValidateToken, with a verified service token) keep answering, and a forged token that only
//! claims to be a service token (`alg: HS256`, signed by nobody) buys a login no priority.

use std::time::Duration;

use futures::future::join_all;
use mall_common::client::Channel;
use mall_proto::auth::v1 as pb;
use mall_proto::auth::v1::auth_service_client::AuthServiceClient;
use mall_testing::TestFleet;
use tonic::Code;

type Auth = AuthServiceClient<Channel>;

/// Concurrent logins in the flood.
const FLOOD: usize = 200;
/// A JWT whose header says HS256 and whose signature is nothing.
const FORGED: &str = "eyJhbGciOiJIUzI1NiJ9.e30.AAAA";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_public_login_flood_neither_starves_service_calls_nor_takes_their_priority() {
    let fleet = TestFleet::start_with(
        &["auth"],
        &[
            ("MALL__ACCOUNTS__ARGON2__MEMORY_KIB", "19456"),
            ("MALL__ACCOUNTS__ARGON2__ITERATIONS", "2"),
            ("MALL__SERVER__ADAPTIVE_CONCURRENCY", "false"),
            ("MALL__SERVER__MAX_CONCURRENT_RPCS", "8"),
            ("MALL__SERVER__INTERNAL_RESERVE_PERCENT", "25"),
            ("MALL__SERVER__MAX_QUEUED_RPCS", "16"),
            ("MALL__SERVER__QUEUE_TIMEOUT", "200ms"),
        ],
    )
    .await;
    // Logins as a gateway or a browser sends them, carrying the forged "service" token.
    let forged = fleet.client_as::<Auth>("auth", FORGED);
    let logins = (0..FLOOD).map(|i| {
        let mut auth = forged.clone();
        async move {
            auth.login(pb::LoginRequest {
                username: format!("flood_{i}"),
                password: "wrong-password".into(),
            })
            .await
            .unwrap_err()
        }
    });
    let flood = tokio::spawn(join_all(logins));
    tokio::time::sleep(Duration::from_millis(50)).await;

    // user's calls (a real service token) answer throughout.
    let user = fleet.client_from::<Auth>("user", "auth");
    let probe = fleet.user_token(1);
    for _ in 0..10 {
        let valid = user
            .clone()
            .validate_token(pb::ValidateTokenRequest {
                token: probe.clone(),
            })
            .await
            .expect("ValidateToken answers during the flood")
            .into_inner()
            .data
            .expect("data")
            .valid;
        assert!(valid);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let answers = flood.await.unwrap();
    let refused: Vec<_> = answers
        .iter()
        .filter(|s| s.code() == Code::ResourceExhausted)
        .collect();
    let evaluated = answers
        .iter()
        .filter(|s| s.code() == Code::Unauthenticated)
        .count();
    assert_eq!(refused.len() + evaluated, FLOOD, "only those two answers");
    assert!(evaluated > 0, "admitted logins are evaluated");
    // The forged token did not make them internal: public calls are refused past 6 + 16.
    let shed_by_admission = refused
        .iter()
        .filter(|s| s.metadata().get("x-mall-shed").is_some())
        .count();
    assert!(
        shed_by_admission > FLOOD / 2,
        "{shed_by_admission} of {FLOOD} forged-token logins refused by admission"
    );
    let (_, metrics) = mall_testing::http_get(fleet.endpoints("auth").admin, "/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(r#"grpc_server_shed_total{reason="limit",class="public"}"#)),
        "{metrics}"
    );
    assert!(
        !metrics.contains(r#"class="internal""#),
        "no service call was refused:\n{metrics}"
    );
    fleet.stop().await;
}
