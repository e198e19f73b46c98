//! Attacks on sessions through real gRPC: concurrent password guessing, spellings of one
//! username, a wiped cache after logout and deletion, sessions whose access token expired, and
//! the absolute session lifetime (SQLite/memory by default, MariaDB/Redis when configured).

use std::time::Duration;

use futures::future::join_all;
use mall_common::client::Channel;
use mall_proto::auth::v1 as pb;
use mall_proto::auth::v1::auth_service_client::AuthServiceClient;
use mall_proto::cart::v1 as cart_pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::user::v1 as user_pb;
use mall_proto::user::v1::user_service_client::UserServiceClient;
use mall_testing::{TestFleet, eventually};
use tonic::Code;

type Auth = AuthServiceClient<Channel>;

async fn register(auth: &mut Auth, username: &str, password: &str) -> pb::RegisterData {
    auth.register(pb::RegisterRequest {
        username: username.into(),
        password: password.into(),
        email: format!("{}@example.com", username.to_lowercase()),
        phone: String::new(),
    })
    .await
    .expect("register")
    .into_inner()
    .data
    .expect("data")
}

async fn login(auth: &Auth, username: &str, password: &str) -> Result<pb::LoginData, Code> {
    auth.clone()
        .login(pb::LoginRequest {
            username: username.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner().data.expect("data"))
        .map_err(|s| s.code())
}

async fn logout(auth: &mut Auth, token: &str, refresh_token: &str) -> Result<(), Code> {
    auth.logout(pb::LogoutRequest {
        token: token.into(),
        refresh_token: refresh_token.into(),
    })
    .await
    .map(|_| ())
    .map_err(|s| s.code())
}

async fn refresh(auth: &mut Auth, token: &str) -> Result<pb::RefreshTokenData, Code> {
    auth.refresh_token(pb::RefreshTokenRequest {
        refresh_token: token.into(),
    })
    .await
    .map(|r| r.into_inner().data.expect("data"))
    .map_err(|s| s.code())
}

/// What auth's ValidateToken says of `token`: `Ok`, or the code it would get.
async fn validity(fleet: &TestFleet, token: &str) -> Result<(), Code> {
    let data = fleet
        .client::<Auth>("auth")
        .validate_token(pb::ValidateTokenRequest {
            token: token.into(),
        })
        .await
        .map_err(|s| s.code())?
        .into_inner()
        .data
        .expect("data");
    if data.valid {
        Ok(())
    } else {
        Err(Code::Unauthenticated)
    }
}

/// What `token` gets at auth (ValidateToken), user (Info) and cart (GetCart): `Ok` or the code.
async fn at_every_service(fleet: &TestFleet, token: &str) -> [Result<(), Code>; 3] {
    let valid = validity(fleet, token).await;
    let user_id = fleet
        .tokens()
        .decode_expired_access(token)
        .ok()
        .and_then(|c| c.sub.parse().ok())
        .unwrap_or(0);
    let info = fleet
        .client::<UserServiceClient<Channel>>("user")
        .info(user_pb::InfoReq {
            token: token.into(),
        })
        .await
        .map(|_| ())
        .map_err(|s| s.code());
    let cart = fleet
        .client_as::<CartServiceClient<Channel>>("cart", token)
        .get_cart(cart_pb::GetCartReq { user_id })
        .await
        .map(|_| ())
        .map_err(|s| s.code());
    [valid, info, cart]
}

#[tokio::test]
async fn forty_concurrent_guesses_evaluate_at_most_five() {
    let fleet =
        TestFleet::start_with(&["auth"], &[("MALL__ACCOUNTS__LOCKOUT__LOCK_FOR", "60s")]).await;
    let mut auth = fleet.client::<Auth>("auth");
    register(&mut auth, "Victim_1", "right-password").await;
    // Every spelling of one account is one account and one counter: trailing spaces and case
    // (on MariaDB a PAD SPACE collation used to give each its own counter).
    let spellings = [
        "Victim_1",
        "victim_1 ",
        " VICTIM_1",
        "victim_1  ",
        "vIcTiM_1",
    ];
    let guesses = (0..40).map(|i| login(&auth, spellings[i % spellings.len()], "wrong-guess"));
    let answers = join_all(guesses).await;
    let evaluated = answers
        .iter()
        .filter(|a| **a == Err(Code::Unauthenticated))
        .count();
    let refused = answers
        .iter()
        .filter(|a| **a == Err(Code::ResourceExhausted))
        .count();
    assert!(evaluated <= 5, "{evaluated} of 40 guesses were evaluated");
    assert_eq!(evaluated + refused, 40, "every answer is one or the other");
    for spelling in spellings {
        assert_eq!(
            login(&auth, spelling, "right-password").await.unwrap_err(),
            Code::ResourceExhausted,
            "`{spelling}` is locked too, even with the right password"
        );
    }
    fleet.stop().await;
}

#[tokio::test]
async fn spellings_of_a_username_log_into_one_account_and_bad_ones_are_invalid() {
    let fleet = TestFleet::start(&["auth"]).await;
    let mut auth = fleet.client::<Auth>("auth");
    let alice = register(&mut auth, "Alice_7", "right-password").await;
    for spelling in ["Alice_7", "alice_7", " ALICE_7 ", "alice_7\t"] {
        let session = login(&auth, spelling, "right-password").await.unwrap();
        let claims = fleet.tokens().decode(&session.token).unwrap();
        assert_eq!(claims.sub, alice.user_id.to_string(), "{spelling:?}");
        assert_eq!(
            claims.name, "Alice_7",
            "the name keeps its registered spelling"
        );
    }
    let taken = auth
        .register(pb::RegisterRequest {
            username: "ALICE_7".into(),
            password: "another-password".into(),
            email: "other@example.com".into(),
            phone: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    for bad in ["ali ce", "al", "alïce_7", "alice_7%"] {
        let err = auth
            .login(pb::LoginRequest {
                username: bad.into(),
                password: "right-password".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
        assert!(err.message().starts_with("username"), "{}", err.message());
    }
    fleet.stop().await;
}

#[tokio::test]
async fn revocations_survive_a_wiped_cache_at_every_service() {
    let fleet = TestFleet::start_with(
        &["auth", "user", "cart"],
        &[("MALL__ACCOUNTS__REVOCATION_SYNC_INTERVAL", "200ms")],
    )
    .await;
    let mut auth = fleet.client::<Auth>("auth");
    let bob = register(&mut auth, "bob_wipe", "right-password").await;
    let carol = register(&mut auth, "carol_wipe", "right-password").await;
    let dave = register(&mut auth, "dave_wipe", "right-password").await;
    let other_bob = login(&auth, "bob_wipe", "right-password").await.unwrap();
    logout(&mut auth, &bob.token, "").await.unwrap();
    auth.delete_account(pb::DeleteAccountReq {
        user_id: carol.user_id,
    })
    .await
    .unwrap();
    assert_eq!(at_every_service(&fleet, &dave.token).await, [Ok(()); 3]);

    assert!(
        fleet.wipe_cache().await > 0,
        "the cache held the revocations"
    );
    // Until auth has restored its copy, nothing reads as "not revoked".
    for token in [&bob.token, &carol.token] {
        for answer in at_every_service(&fleet, token).await {
            assert!(
                matches!(answer, Err(Code::Unauthenticated | Code::Unavailable)),
                "{answer:?}"
            );
        }
    }
    eventually(Duration::from_secs(10), "the copy is restored", || async {
        at_every_service(&fleet, &dave.token).await == [Ok(()); 3]
    })
    .await;
    let revoked = [Err(Code::Unauthenticated); 3];
    assert_eq!(
        at_every_service(&fleet, &bob.token).await,
        revoked,
        "logged out"
    );
    assert_eq!(
        at_every_service(&fleet, &carol.token).await,
        revoked,
        "deleted"
    );
    assert_eq!(
        at_every_service(&fleet, &other_bob.token).await,
        [Ok(()); 3],
        "bob's other session lives on"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_session_ends_by_its_refresh_token_or_its_expired_access_token() {
    // Access tokens live 1 s (+ the 5 s clock leeway, in whole seconds).
    let fleet = TestFleet::start_with(&["auth"], &[("MALL__AUTH__ACCESS_TOKEN_TTL", "1s")]).await;
    let mut auth = fleet.client::<Auth>("auth");
    register(&mut auth, "erin_exp", "right-password").await;
    let by_refresh = login(&auth, "erin_exp", "right-password").await.unwrap();
    let by_expired = login(&auth, "erin_exp", "right-password").await.unwrap();
    let kept = login(&auth, "erin_exp", "right-password").await.unwrap();
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    assert_eq!(
        validity(&fleet, &by_expired.token).await,
        Err(Code::Unauthenticated),
        "expired"
    );

    logout(&mut auth, "", &by_refresh.refresh_token)
        .await
        .unwrap();
    assert_eq!(
        refresh(&mut auth, &by_refresh.refresh_token)
            .await
            .unwrap_err(),
        Code::Unauthenticated,
        "the refresh token is revoked"
    );
    logout(&mut auth, &by_expired.token, "").await.unwrap();
    assert_eq!(
        refresh(&mut auth, &by_expired.refresh_token)
            .await
            .unwrap_err(),
        Code::Unauthenticated,
        "the expired token's session is ended"
    );
    // A refresh token in the token field works the same; ending an ended session is fine.
    logout(&mut auth, &by_refresh.refresh_token, "")
        .await
        .unwrap();
    assert_eq!(
        logout(&mut auth, "not-a-refresh-token", "")
            .await
            .unwrap_err(),
        Code::Unauthenticated
    );
    assert_eq!(
        logout(&mut auth, "", "").await.unwrap_err(),
        Code::PermissionDenied,
        "the fleet client's bearer token is a service's, not a session"
    );
    let next = refresh(&mut auth, &kept.refresh_token).await.unwrap();
    assert_eq!(
        validity(&fleet, &next.token).await,
        Ok(()),
        "other sessions live on"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_however_often_it_is_refreshed() {
    let fleet = TestFleet::start_with(
        &["auth"],
        &[
            ("MALL__ACCOUNTS__SESSION_MAX_AGE", "3s"),
            ("MALL__ACCOUNTS__REFRESH_TOKEN_TTL", "1h"),
        ],
    )
    .await;
    let mut auth = fleet.client::<Auth>("auth");
    let first = register(&mut auth, "frank_abs", "right-password").await;
    let mut current = first.refresh_token;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        current = refresh(&mut auth, &current).await.unwrap().refresh_token;
    }
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(
        refresh(&mut auth, &current).await.unwrap_err(),
        Code::Unauthenticated,
        "the session ended 3 s after it started, although it slid"
    );
    fleet.stop().await;
}
