//! Black-box tests of the user service through real gRPC on port 0, with a real auth behind it.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set (each fleet gets its own databases, dropped afterwards).

use std::time::{Duration, Instant};

use mall_common::client::Channel;
use mall_proto::user::v1 as pb;
use mall_proto::user::v1::user_service_client::UserServiceClient;
use mall_testing::{TestFleet, assert_code};
use tonic::{Code, Status};

type Client = UserServiceClient<Channel>;

const PASSWORD: &str = "correct-horse-1";

/// Auth and user, and a client of user that calls as a service: the token-taking RPCs get the
/// end user's token in their `token` field.
async fn fleet() -> (TestFleet, Client) {
    let fleet = TestFleet::start(&["auth", "user"]).await;
    let client = fleet.client::<Client>("user");
    (fleet, client)
}

/// A client that sends no `authorization` metadata at all.
async fn anonymous(fleet: &TestFleet) -> UserServiceClient<tonic::transport::Channel> {
    UserServiceClient::new(fleet.bare_channel("user").await)
}

fn email(username: &str) -> String {
    format!("{username}@example.com")
}

fn assert_success(base: Option<mall_proto::common::v1::BaseResp>) {
    let base = base.expect("base");
    assert_eq!((base.code, base.message.as_str()), (0, "success"));
}

async fn try_register(
    client: &mut Client,
    username: &str,
    password: &str,
    email: &str,
    phone: &str,
) -> Result<pb::RegisterResp, Status> {
    client
        .register(pb::RegisterReq {
            username: username.into(),
            password: password.into(),
            email: email.into(),
            phone: phone.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn register(client: &mut Client, username: &str) -> pb::RegisterResp {
    try_register(client, username, PASSWORD, &email(username), "")
        .await
        .unwrap_or_else(|e| panic!("register {username}: {e:?}"))
}

async fn try_login(
    client: &mut Client,
    username: &str,
    password: &str,
) -> Result<pb::LoginResp, Status> {
    client
        .login(pb::LoginReq {
            username: username.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn login(client: &mut Client, username: &str) -> String {
    try_login(client, username, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("login {username}: {e:?}"))
        .token
}

async fn info(client: &mut Client, token: &str) -> Result<pb::InfoResp, Status> {
    client
        .info(pb::InfoReq {
            token: token.into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// A profile change; empty strings leave a field unchanged.
#[derive(Default)]
struct Change<'a> {
    username: &'a str,
    email: &'a str,
    phone: &'a str,
}

async fn update(client: &mut Client, token: &str, change: Change<'_>) -> Result<(), Status> {
    let resp = client
        .update(pb::UpdateReq {
            token: token.into(),
            new_username: change.username.into(),
            new_email: change.email.into(),
            new_phone: change.phone.into(),
        })
        .await?
        .into_inner();
    assert_success(resp.base);
    Ok(())
}

async fn logout(client: &mut Client, token: &str) -> Result<(), Status> {
    let resp = client
        .logout(pb::LogoutReq {
            token: token.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    assert_success(resp.base);
    Ok(())
}

async fn delete(client: &mut Client, token: &str) -> Result<(), Status> {
    let resp = client
        .delete(pb::DeleteReq {
            token: token.into(),
        })
        .await?
        .into_inner();
    assert_success(resp.base);
    Ok(())
}

/// API.md: every service rejects a revoked token within 1 s. Polls Info for at most that long.
async fn assert_rejected_within_a_second(client: &mut Client, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match info(client, token).await {
            Err(status) if status.code() == Code::Unauthenticated => return,
            other if Instant::now() >= deadline => {
                panic!("token still not rejected after 1 s: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Logout, Delete, Update and Info each with the same `token` field, through `client`.
async fn all_token_rpcs(client: &mut Client, token: &str) -> Vec<(&'static str, Code)> {
    let code = |r: Result<(), Status>| r.err().map_or(Code::Ok, |s| s.code());
    vec![
        ("Info", code(info(client, token).await.map(|_| ()))),
        (
            "Update",
            code(
                update(
                    client,
                    token,
                    Change {
                        email: "x@example.com",
                        ..Change::default()
                    },
                )
                .await,
            ),
        ),
        ("Logout", code(logout(client, token).await)),
        ("Delete", code(delete(client, token).await)),
    ]
}

#[tokio::test]
async fn register_login_update_and_logout_walk_through_the_profile() {
    let (fleet, mut client) = fleet().await;

    let registered = try_register(
        &mut client,
        "alice_1",
        PASSWORD,
        &email("alice_1"),
        "13800138000",
    )
    .await
    .unwrap();
    assert_success(registered.base);
    assert!(registered.user_id > 0);
    assert!(!registered.token.is_empty());

    let logged_in = try_login(&mut client, "alice_1", PASSWORD).await.unwrap();
    assert_success(logged_in.base);
    assert!(!logged_in.refresh_token.is_empty());
    let token = logged_in.token;

    let profile = info(&mut client, &token).await.unwrap();
    assert_success(profile.base);
    assert_eq!(profile.user_id, registered.user_id);
    assert_eq!(profile.username, "alice_1");
    assert_eq!(profile.email, "alice_1@example.com");
    assert_eq!(profile.phone, "13800138000");

    update(
        &mut client,
        &token,
        Change {
            username: "alice_2",
            email: "alice.two@example.com",
            ..Change::default()
        },
    )
    .await
    .unwrap();
    let profile = info(&mut client, &token).await.unwrap();
    assert_eq!(profile.user_id, registered.user_id);
    assert_eq!(profile.username, "alice_2");
    assert_eq!(profile.email, "alice.two@example.com");
    assert_eq!(profile.phone, "13800138000", "empty field = unchanged");

    logout(&mut client, &token).await.unwrap();
    assert_rejected_within_a_second(&mut client, &token).await;

    // Logout ends one session: the one Register opened still works, and so does the new name.
    let profile = info(&mut client, &registered.token).await.unwrap();
    assert_eq!(profile.username, "alice_2");
    let again = login(&mut client, "alice_2").await;
    assert_eq!(
        info(&mut client, &again).await.unwrap().user_id,
        registered.user_id
    );

    fleet.stop().await;
}

#[tokio::test]
async fn token_in_metadata_works_like_the_field_and_the_field_wins() {
    let (fleet, mut client) = fleet().await;
    let alice = register(&mut client, "alice_1").await;
    let bob = register(&mut client, "bob_1").await;
    let mut as_alice = fleet.client_as::<Client>("user", &alice.token);

    let profile = info(&mut as_alice, "").await.unwrap();
    assert_eq!(
        (profile.user_id, profile.username.as_str()),
        (alice.user_id, "alice_1")
    );

    let profile = info(&mut as_alice, &bob.token).await.unwrap();
    assert_eq!(
        (profile.user_id, profile.username.as_str()),
        (bob.user_id, "bob_1"),
        "the field wins over metadata"
    );
    assert_code!(
        info(&mut as_alice, "not-a-token").await,
        Code::Unauthenticated,
        "a bad field is not rescued by good metadata"
    );

    update(
        &mut as_alice,
        "",
        Change {
            email: "alice@shop.example",
            ..Change::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        info(&mut client, &alice.token).await.unwrap().email,
        "alice@shop.example"
    );
    assert_eq!(
        info(&mut client, &bob.token).await.unwrap().email,
        "bob_1@example.com"
    );

    logout(&mut as_alice, "").await.unwrap();
    assert_rejected_within_a_second(&mut client, &alice.token).await;
    assert_code!(
        info(&mut as_alice, "").await,
        Code::Unauthenticated,
        "revoked token in metadata"
    );
    assert!(info(&mut client, &bob.token).await.is_ok());

    fleet.stop().await;
}

#[tokio::test]
async fn token_rpcs_without_a_valid_token_are_unauthenticated() {
    let (fleet, mut client) = fleet().await;
    let alice = register(&mut client, "alice_1").await;

    let mut nobody = anonymous(&fleet).await;
    let missing = [
        nobody.info(pb::InfoReq::default()).await.map(|_| ()).err(),
        nobody
            .update(pb::UpdateReq {
                new_email: "x@example.com".into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .err(),
        nobody
            .logout(pb::LogoutReq::default())
            .await
            .map(|_| ())
            .err(),
        nobody
            .delete(pb::DeleteReq::default())
            .await
            .map(|_| ())
            .err(),
    ];
    for status in missing {
        assert_eq!(
            status.map(|s| s.code()),
            Some(Code::Unauthenticated),
            "no token at all"
        );
    }

    // A JWT signed with someone else's key pair, for alice's id.
    let mut foreign = mall_common::Settings::defaults("test").auth;
    let (signing, verify) = mall_common::config::AccessKeys::generate();
    (foreign.signing_key, foreign.verify_key) = (signing.as_str().into(), verify);
    let cache = std::sync::Arc::new(mall_common::cache::MemoryCache::new("t:".into(), 10));
    let (forged, _) = mall_common::auth::Tokens::new(&foreign, cache)
        .issue_access(
            mall_types::UserId::parse(alice.user_id, "user_id").unwrap(),
            "alice_1",
            mall_common::auth::Role::User,
            "sid",
        )
        .unwrap();

    for bad in ["not-a-token", forged.as_str()] {
        for (rpc, code) in all_token_rpcs(&mut client, bad).await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with a bad token field");
        }
        let mut bad_metadata = fleet.client_as::<Client>("user", bad);
        for (rpc, code) in all_token_rpcs(&mut bad_metadata, "").await {
            assert_eq!(code, Code::Unauthenticated, "{rpc} with bad metadata");
        }
    }

    // None of that touched alice's account.
    let profile = info(&mut client, &alice.token).await.unwrap();
    assert_eq!(profile.email, "alice_1@example.com");

    fleet.stop().await;
}

#[tokio::test]
async fn a_service_token_is_not_an_end_user() {
    let (fleet, mut as_service) = fleet().await;
    let alice = register(&mut as_service, "alice_1").await;

    // The fleet's client sends a service token as metadata; with an empty field that is the
    // token these RPCs see.
    for (rpc, code) in all_token_rpcs(&mut as_service, "").await {
        assert_eq!(code, Code::PermissionDenied, "{rpc} as a service");
    }
    let service_token = fleet.tokens().issue_service("cart", "user").unwrap().0;
    for (rpc, code) in all_token_rpcs(&mut as_service, &service_token).await {
        assert_eq!(
            code,
            Code::PermissionDenied,
            "{rpc} with a service token field"
        );
    }
    assert!(info(&mut as_service, &alice.token).await.is_ok());

    fleet.stop().await;
}

#[tokio::test]
async fn a_valid_token_without_an_account_is_not_found() {
    let (fleet, mut client) = fleet().await;
    let token = fleet.user_token(987_654);
    assert_code!(
        info(&mut client, &token).await,
        Code::NotFound,
        "Info of an account auth never had"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn deleting_the_account_revokes_its_tokens_and_blocks_login() {
    let (fleet, mut client) = fleet().await;
    let carol = register(&mut client, "carol_1").await;
    let token = login(&mut client, "carol_1").await;
    assert_eq!(
        info(&mut client, &token).await.unwrap().user_id,
        carol.user_id
    );

    delete(&mut client, &token).await.unwrap();
    assert_rejected_within_a_second(&mut client, &token).await;
    assert_rejected_within_a_second(&mut client, &carol.token).await;
    assert_code!(
        delete(&mut client, &token).await,
        Code::Unauthenticated,
        "deleting twice"
    );

    assert_code!(
        try_login(&mut client, "carol_1", PASSWORD).await,
        Code::PermissionDenied,
        "login to a deleted account with the right password"
    );
    assert_code!(
        try_login(&mut client, "carol_1", "wrong-password-1").await,
        Code::Unauthenticated,
        "login to a deleted account with a wrong password"
    );

    fleet.stop().await;
}

#[tokio::test]
async fn registration_and_update_rules_come_from_auth() {
    let (fleet, mut client) = fleet().await;

    let bad = [
        ("bad email", "dave_1", PASSWORD, "not-an-email", ""),
        ("short password", "dave_1", "short", "dave@example.com", ""),
        ("short username", "abc", PASSWORD, "dave@example.com", ""),
        ("bad phone", "dave_1", PASSWORD, "dave@example.com", "12345"),
        ("missing email", "dave_1", PASSWORD, "", ""),
    ];
    for (what, username, password, email, phone) in bad {
        assert_code!(
            try_register(&mut client, username, password, email, phone).await,
            Code::InvalidArgument,
            "{what}"
        );
    }

    let dave = register(&mut client, "dave_1").await;
    assert_code!(
        try_register(&mut client, "dave_1", PASSWORD, "other@example.com", "").await,
        Code::AlreadyExists,
        "taken username"
    );

    let wrong = try_login(&mut client, "dave_1", "wrong-password-1").await;
    let unknown = try_login(&mut client, "nobody_1", PASSWORD).await;
    assert_code!(wrong.clone(), Code::Unauthenticated, "wrong password");
    assert_code!(unknown.clone(), Code::Unauthenticated, "unknown user");
    assert_eq!(
        wrong.unwrap_err().message(),
        unknown.unwrap_err().message(),
        "wrong password and unknown user look the same"
    );

    register(&mut client, "erin_1").await;
    assert_code!(
        update(
            &mut client,
            &dave.token,
            Change {
                email: "not-an-email",
                ..Change::default()
            },
        )
        .await,
        Code::InvalidArgument,
        "update to a bad email"
    );
    assert_code!(
        update(
            &mut client,
            &dave.token,
            Change {
                username: "erin_1",
                ..Change::default()
            },
        )
        .await,
        Code::AlreadyExists,
        "update to a taken username"
    );
    let profile = info(&mut client, &dave.token).await.unwrap();
    assert_eq!(
        (profile.username.as_str(), profile.email.as_str()),
        ("dave_1", "dave_1@example.com"),
        "failed updates change nothing"
    );

    fleet.stop().await;
}

#[tokio::test]
async fn info_shows_an_update_at_once_despite_the_cache() {
    let (fleet, mut client) = fleet().await;
    let frank = register(&mut client, "frank_1").await;

    // The default profile TTL is minutes, so only invalidation can make these pass.
    for round in 1..=2 {
        let before = info(&mut client, &frank.token).await.unwrap();
        let new_email = format!("frank{round}@example.com");
        let new_phone = format!("+4930123456{round}");
        update(
            &mut client,
            &frank.token,
            Change {
                email: &new_email,
                phone: &new_phone,
                ..Change::default()
            },
        )
        .await
        .unwrap();
        let after = info(&mut client, &frank.token).await.unwrap();
        assert_ne!(before.email, after.email, "round {round}");
        assert_eq!(after.email, new_email, "round {round}");
        assert_eq!(after.phone, new_phone, "round {round}");
        // Read again once the invalidation hold is over: the refilled entry is the new one.
        tokio::time::sleep(mall_common::cache::INVALIDATION_HOLD).await;
        assert_eq!(
            info(&mut client, &frank.token).await.unwrap().email,
            new_email
        );
        assert_eq!(
            info(&mut client, &frank.token).await.unwrap().email,
            new_email
        );
    }

    fleet.stop().await;
}

/// `user --help` (and `-h`, `--version`) answer and exit 0 without binding a port or opening
/// a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(env!("CARGO_BIN_EXE_user"), "user", &[]);
}
