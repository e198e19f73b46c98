//! A login flood against auth with its production Argon2 cost (19 MiB per hash): memory stays
//! bounded (hashes wait for one of a few slots, the rest are `RESOURCE_EXHAUSTED`) and other
//! RPCs keep answering. Alone in its test binary, so the process's peak memory is its own.

use std::time::{Duration, Instant};

use futures::future::join_all;
use mall_common::client::Channel;
use mall_proto::auth::v1 as pb;
use mall_proto::auth::v1::auth_service_client::AuthServiceClient;
use mall_testing::TestFleet;
use tonic::Code;

type Auth = AuthServiceClient<Channel>;

/// Concurrent logins in the flood.
const FLOOD: usize = 600;
/// The bound on the growth of the process under the flood.
const MAX_GROWTH_KIB: u64 = 256 * 1024;

/// The peak resident set of this process so far (`VmHWM`), KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_flood_is_bounded_in_memory_and_leaves_other_rpcs_answering() {
    let fleet = TestFleet::start_with(
        &["auth"],
        &[
            ("MALL__ACCOUNTS__ARGON2__MEMORY_KIB", "19456"),
            ("MALL__ACCOUNTS__ARGON2__ITERATIONS", "2"),
            ("MALL__ACCOUNTS__ARGON2__QUEUE_WAIT", "500ms"),
            // What this measures is the hasher's bound, not admission: with the adaptive
            // limit, logins waiting for a hashing slot hold admission slots, and every call to
            // auth comes from a service (one class), so ValidateToken would be shed with them.
            ("MALL__SERVER__ADAPTIVE_CONCURRENCY", "false"),
        ],
    )
    .await;
    let auth = fleet.client::<Auth>("auth");
    let probe_token = fleet.user_token(1);
    let validate = |auth: Auth| {
        let token = probe_token.clone();
        async move {
            let started = Instant::now();
            let answer = auth
                .clone()
                .validate_token(pb::ValidateTokenRequest { token })
                .await
                .map(|r| r.into_inner().data.expect("data").valid);
            (answer, started.elapsed())
        }
    };
    let (answer, baseline) = validate(auth.clone()).await;
    assert!(answer.unwrap());
    let before = peak_rss_kib();

    // Distinct unknown names: no lockout, every one is a full Argon2 verification (the decoy).
    let logins = (0..FLOOD).map(|i| {
        let mut auth = auth.clone();
        async move {
            auth.login(pb::LoginRequest {
                username: format!("flood_{i}"),
                password: "wrong-password".into(),
            })
            .await
            .unwrap_err()
            .code()
        }
    });
    let flood = tokio::spawn(join_all(logins));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut during = Vec::new();
    for _ in 0..10 {
        let (answer, took) = validate(auth.clone()).await;
        assert!(answer.unwrap(), "other RPCs answer during the flood");
        during.push(took);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let codes = flood.await.unwrap();
    let growth = peak_rss_kib().saturating_sub(before);

    let count = |code| codes.iter().filter(|c| **c == code).count();
    let evaluated = count(Code::Unauthenticated);
    let refused = count(Code::ResourceExhausted);
    during.sort();
    eprintln!(
        "flood of {FLOOD}: {evaluated} evaluated, {refused} refused; peak RSS grew {growth} KiB; \
         ValidateToken took {baseline:?} alone, median {:?} during the flood",
        during[during.len() / 2]
    );
    assert_eq!(evaluated + refused, FLOOD, "only those two answers");
    assert!(
        refused > 0,
        "a flood this size must overflow the hashing slots"
    );
    assert!(evaluated > 0, "the slots kept working");
    assert!(
        growth < MAX_GROWTH_KIB,
        "peak RSS grew by {growth} KiB under {FLOOD} logins"
    );
    fleet.stop().await;
}
