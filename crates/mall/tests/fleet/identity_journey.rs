//! The identity journey across the fleet: register, log in, read and update the profile through
//! both AuthService and UserService, log out, and see the token refused by other services
//! within a second.

use std::time::Duration;

use mall_common::client::Channel;
use mall_proto::auth::v1 as auth_pb;
use mall_proto::auth::v1::auth_service_client::AuthServiceClient;
use mall_proto::product::v1 as product_pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_proto::user::v1 as user_pb;
use mall_proto::user::v1::user_service_client::UserServiceClient;
use mall_testing::{TestFleet, eventually};
use tonic::Code;

/// API.md: every service rejects a revoked token within a second.
const REVOCATION: Duration = Duration::from_secs(1);

#[tokio::test]
async fn register_login_profile_logout_across_auth_user_and_product() {
    let fleet = TestFleet::start(&["auth", "product", "user"]).await;
    let mut users = fleet.client_as::<UserServiceClient<Channel>>("user", "");
    let mut auth = fleet.client_as::<AuthServiceClient<Channel>>("auth", "");

    let reg = users
        .register(user_pb::RegisterReq {
            username: "journey_1".into(),
            password: "journey-pass-1".into(),
            email: "journey@example.com".into(),
            phone: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reg.base.as_ref().map(|b| b.code), Some(0));
    let via_user = users
        .login(user_pb::LoginReq {
            username: "journey_1".into(),
            password: "journey-pass-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let via_auth = auth
        .login(auth_pb::LoginRequest {
            username: "journey_1".into(),
            password: "journey-pass-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .data
        .unwrap();

    let reader = users.clone();
    let info = |token: String| {
        let mut users = reader.clone();
        async move { users.info(user_pb::InfoReq { token }).await }
    };
    let before = info(via_user.token.clone()).await.unwrap().into_inner();
    assert_eq!(
        (before.user_id, before.username.as_str()),
        (reg.user_id, "journey_1")
    );
    users
        .update(user_pb::UpdateReq {
            token: via_auth.token.clone(),
            new_email: "journey@example.org".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = info(via_auth.token.clone()).await.unwrap().into_inner();
    assert_eq!(after.email, "journey@example.org");

    // A user token reaches product's admin RPC but is not an admin's.
    let mut product =
        fleet.client_as::<ProductCatalogServiceClient<Channel>>("product", &via_user.token);
    let create = || product_pb::CreateProductReq {
        name: "x".into(),
        price_cents: 1,
        ..Default::default()
    };
    let err = product.create_product(create()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    users
        .logout(user_pb::LogoutReq {
            token: via_user.token.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    eventually(REVOCATION, "logout at product", || {
        let mut product = product.clone();
        async move {
            product
                .create_product(create())
                .await
                .err()
                .map(|e| e.code())
                == Some(Code::Unauthenticated)
        }
    })
    .await;
    eventually(REVOCATION, "logout at user", || {
        let info = info(via_user.token.clone());
        async move { info.await.map_err(|e| e.code()).err() == Some(Code::Unauthenticated) }
    })
    .await;
    // The other session is still alive.
    assert!(info(via_auth.token.clone()).await.is_ok());
    fleet.stop().await;
}
