//! Black-box tests of auth through real gRPC: sessions, rotation, lockout, enumeration,
//! authorization and concurrency (SQLite/memory by default, MariaDB/Redis when configured).

use std::time::{Duration, Instant};

use mall_common::client::Channel;
use mall_proto::auth::v1 as pb;
use mall_proto::auth::v1::auth_service_client::AuthServiceClient;
use mall_proto::product::v1 as product_pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_testing::TestFleet;
use tonic::Code;

type Auth = AuthServiceClient<Channel>;

async fn register(
    auth: &mut Auth,
    username: &str,
    password: &str,
) -> Result<pb::RegisterData, tonic::Status> {
    auth.register(pb::RegisterRequest {
        username: username.into(),
        password: password.into(),
        email: format!("{username}@example.com"),
        phone: String::new(),
    })
    .await
    .map(|r| r.into_inner().data.expect("data"))
}

async fn login(
    auth: &mut Auth,
    username: &str,
    password: &str,
) -> Result<pb::LoginData, tonic::Status> {
    auth.login(pb::LoginRequest {
        username: username.into(),
        password: password.into(),
    })
    .await
    .map(|r| r.into_inner().data.expect("data"))
}

async fn refresh(auth: &mut Auth, token: &str) -> Result<pb::RefreshTokenData, tonic::Status> {
    auth.refresh_token(pb::RefreshTokenRequest {
        refresh_token: token.into(),
    })
    .await
    .map(|r| r.into_inner().data.expect("data"))
}

async fn valid(auth: &mut Auth, token: &str) -> bool {
    auth.validate_token(pb::ValidateTokenRequest {
        token: token.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .data
    .unwrap()
    .valid
}

#[tokio::test]
async fn register_login_validate_and_logout() {
    let fleet = TestFleet::start(&["auth"]).await;
    let mut auth = fleet.client::<Auth>("auth");
    let reg = register(&mut auth, "alice_1", "s3cret-pass").await.unwrap();
    assert!(reg.user_id > 0 && !reg.token.is_empty() && !reg.refresh_token.is_empty());
    let session = login(&mut auth, "ALICE_1", "s3cret-pass").await.unwrap();
    assert!(session.expires_at > 0);
    assert!(valid(&mut auth, &session.token).await);
    let account = auth
        .get_account(pb::GetAccountReq {
            user_id: reg.user_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (account.username.as_str(), account.role.as_str()),
        ("alice_1", "user")
    );
    assert_eq!(account.email, "alice_1@example.com");

    auth.logout(pb::LogoutRequest {
        token: session.token.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    assert!(!valid(&mut auth, &session.token).await, "revoked at once");
    let err = refresh(&mut auth, &session.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Code::Unauthenticated,
        "logout ends the refresh family too"
    );
    assert!(
        valid(&mut auth, &reg.token).await,
        "other sessions are untouched"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn logout_is_seen_by_another_service_within_a_second() {
    let fleet = TestFleet::start_with(
        &["auth", "product"],
        &[
            ("MALL__ACCOUNTS__BOOTSTRAP_ADMIN__USERNAME", "root_admin"),
            (
                "MALL__ACCOUNTS__BOOTSTRAP_ADMIN__PASSWORD",
                "bootstrap-pass-1",
            ),
            ("MALL__ACCOUNTS__BOOTSTRAP_ADMIN__EMAIL", "root@example.com"),
        ],
    )
    .await;
    let mut auth = fleet.client::<Auth>("auth");
    let admin = login(&mut auth, "root_admin", "bootstrap-pass-1")
        .await
        .unwrap();
    let mut product =
        fleet.client_as::<ProductCatalogServiceClient<Channel>>("product", &admin.token);
    let create = || product_pb::CreateProductReq {
        name: "lamp".into(),
        price_cents: 100,
        stock: 1,
        ..Default::default()
    };
    product.create_product(create()).await.unwrap();
    auth.logout(pb::LogoutRequest {
        token: admin.token.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match product.create_product(create()).await {
            Err(e) if e.code() == Code::Unauthenticated => break,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("still accepted after 1 s: {other:?}"),
        }
    }
    fleet.stop().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let fleet = TestFleet::start(&["auth"]).await;
    let mut auth = fleet.client::<Auth>("auth");
    register(&mut auth, "bob_22", "password-22").await.unwrap();
    let first = login(&mut auth, "bob_22", "password-22").await.unwrap();
    let second = refresh(&mut auth, &first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(valid(&mut auth, &second.token).await);
    let third = refresh(&mut auth, &second.refresh_token).await.unwrap();
    // Presenting an already-rotated token: theft. It fails and kills the newest one too.
    let err = refresh(&mut auth, &second.refresh_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = refresh(&mut auth, &third.refresh_token).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(
        !valid(&mut auth, &third.token).await,
        "the session's access tokens die too"
    );
    for garbage in ["", "not-a-token"] {
        assert_eq!(
            refresh(&mut auth, garbage).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    fleet.stop().await;
}

#[tokio::test]
async fn five_failures_lock_the_username_even_for_the_right_password() {
    let fleet = TestFleet::start_with(
        &["auth"],
        &[
            ("MALL__ACCOUNTS__LOCKOUT__LOCK_FOR", "1s"),
            ("MALL__ACCOUNTS__LOCKOUT__WINDOW", "60s"),
        ],
    )
    .await;
    let mut auth = fleet.client::<Auth>("auth");
    register(&mut auth, "carol_3", "right-password")
        .await
        .unwrap();
    for _ in 0..5 {
        let err = login(&mut auth, "carol_3", "wrong-password")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let err = login(&mut auth, "carol_3", "right-password")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    login(&mut auth, "carol_3", "right-password").await.unwrap();
    fleet.stop().await;
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_the_same() {
    let fleet = TestFleet::start(&["auth"]).await;
    let mut auth = fleet.client::<Auth>("auth");
    register(&mut auth, "dave_44", "right-password")
        .await
        .unwrap();
    let wrong = login(&mut auth, "dave_44", "wrong-password")
        .await
        .unwrap_err();
    let unknown = login(&mut auth, "nobody_44", "wrong-password")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), unknown.code());
    assert_eq!(wrong.message(), unknown.message());
    assert_eq!(wrong.message(), "invalid username or password");
    fleet.stop().await;
}

#[tokio::test]
async fn registration_validates_every_field() {
    let fleet = TestFleet::start(&["auth"]).await;
    let mut auth = fleet.client::<Auth>("auth");
    let req = |u: &str, p: &str, e: &str, ph: &str| pb::RegisterRequest {
        username: u.into(),
        password: p.into(),
        email: e.into(),
        phone: ph.into(),
    };
    for (what, bad) in [
        ("short username", req("abc", "password-1", "a@b.co", "")),
        (
            "bad characters",
            req("bad name", "password-1", "a@b.co", ""),
        ),
        ("short password", req("erin_5", "short", "a@b.co", "")),
        (
            "long password",
            req("erin_5", &"p".repeat(129), "a@b.co", ""),
        ),
        ("missing email", req("erin_5", "password-1", "", "")),
        ("bad email", req("erin_5", "password-1", "not-an-email", "")),
        ("bad phone", req("erin_5", "password-1", "a@b.co", "12345")),
    ] {
        let err = auth.register(bad).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err}");
    }
    auth.register(req("erin_5", "password-1", "e@x.io", "+4915112345678"))
        .await
        .unwrap();
    auth.register(req("erin_6", "password-1", "e@x.io", "13800138000"))
        .await
        .unwrap();
    let err = auth
        .register(req("ERIN_5", "password-1", "e@x.io", ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    fleet.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_registrations_of_one_username_admit_exactly_one() {
    let fleet = TestFleet::start(&["auth"]).await;
    let auth = fleet.client::<Auth>("auth");
    let attempts = (0..20).map(|i| {
        let mut auth = auth.clone();
        async move { register(&mut auth, "popular_name", &format!("password-{i:02}")).await }
    });
    let results = futures::future::join_all(attempts).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    }
    fleet.stop().await;
}

#[tokio::test]
async fn internal_rpcs_need_service_credentials() {
    let fleet = TestFleet::start(&["auth"]).await;
    let mut auth = fleet.client::<Auth>("auth");
    let a = register(&mut auth, "frank_7", "password-7").await.unwrap();
    let b = register(&mut auth, "grace_8", "password-8").await.unwrap();
    let mut as_a = fleet.client_as::<Auth>("auth", &a.token);
    let mut anonymous = fleet.client_as::<Auth>("auth", "");
    let mut forged = fleet.client_as::<Auth>("auth", "eyJhbGciOiJub25lIn0.e30.");
    // User A cannot read, update or delete user B (nor themselves) through internal RPCs.
    let err = as_a
        .get_account(pb::GetAccountReq { user_id: b.user_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = as_a
        .update_account(pb::UpdateAccountReq {
            user_id: b.user_id,
            new_email: "x@y.zz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = as_a
        .delete_account(pb::DeleteAccountReq { user_id: b.user_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = anonymous
        .get_account(pb::GetAccountReq { user_id: b.user_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = forged
        .get_account(pb::GetAccountReq { user_id: b.user_id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // B is untouched.
    let account = auth
        .get_account(pb::GetAccountReq { user_id: b.user_id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(account.email, "grace_8@example.com");
    fleet.stop().await;
}

#[tokio::test]
async fn deleted_accounts_lose_their_sessions_and_cannot_log_in() {
    let fleet = TestFleet::start(&["auth"]).await;
    let mut auth = fleet.client::<Auth>("auth");
    let reg = register(&mut auth, "henry_9", "password-9").await.unwrap();
    let session = login(&mut auth, "henry_9", "password-9").await.unwrap();
    auth.delete_account(pb::DeleteAccountReq {
        user_id: reg.user_id,
    })
    .await
    .unwrap();
    assert!(!valid(&mut auth, &session.token).await);
    assert!(!valid(&mut auth, &reg.token).await);
    assert_eq!(
        refresh(&mut auth, &session.refresh_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    // Disabled is reported only after the right password.
    assert_eq!(
        login(&mut auth, "henry_9", "password-9")
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        login(&mut auth, "henry_9", "wrong-pass")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    for err in [
        auth.get_account(pb::GetAccountReq {
            user_id: reg.user_id,
        })
        .await
        .unwrap_err(),
        auth.delete_account(pb::DeleteAccountReq {
            user_id: reg.user_id,
        })
        .await
        .unwrap_err(),
        auth.deliver_token(pb::DeliverTokenReq {
            user_id: reg.user_id,
        })
        .await
        .unwrap_err(),
    ] {
        assert_eq!(err.code(), Code::NotFound);
    }
    fleet.stop().await;
}

#[tokio::test]
async fn accounts_can_be_updated_and_sessions_delivered() {
    let fleet = TestFleet::start(&["auth"]).await;
    let mut auth = fleet.client::<Auth>("auth");
    let ivy = register(&mut auth, "ivy_10", "password-10").await.unwrap();
    register(&mut auth, "jack_11", "password-11").await.unwrap();
    let updated = auth
        .update_account(pb::UpdateAccountReq {
            user_id: ivy.user_id,
            new_username: "ivy_ten".into(),
            new_email: String::new(),
            new_phone: "13900139000".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.username, "ivy_ten");
    assert_eq!(updated.email, "ivy_10@example.com", "empty = unchanged");
    assert_eq!(updated.phone, "13900139000");
    let taken = auth
        .update_account(pb::UpdateAccountReq {
            user_id: ivy.user_id,
            new_username: "JACK_11".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);
    let bad = auth
        .update_account(pb::UpdateAccountReq {
            user_id: ivy.user_id,
            new_email: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    login(&mut auth, "ivy_ten", "password-10").await.unwrap();
    let delivered = auth
        .deliver_token(pb::DeliverTokenReq {
            user_id: ivy.user_id,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(valid(&mut auth, &delivered.token).await);
    refresh(&mut auth, &delivered.refresh_token).await.unwrap();
    let err = auth
        .get_account(pb::GetAccountReq { user_id: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    fleet.stop().await;
}

/// `auth --help` (and `-h`, `--version`) answer and exit 0 without binding a port or opening
/// a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(env!("CARGO_BIN_EXE_auth"), "auth", &[]);
}
