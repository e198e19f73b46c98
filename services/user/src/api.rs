//! The gRPC edge of the profile API: authenticate the caller, call auth, map its answers to the
//! original TikTokMall responses, and keep `Info` profiles in the shared cache. Access rules are
//! in [`ACCESS`]; see [`ProfileApi::authenticate`] for why four of them are checked here.

use std::sync::Arc;
use std::time::Duration;

use mall_common::auth::{self, Tokens};
use mall_common::auth::{Access, AccessTable};
use mall_common::cache::{self, SharedCache};
use mall_common::platform::Platform;
use mall_common::reply::success;
use mall_proto::auth::v1 as auth_pb;
use mall_proto::user::v1 as pb;
use mall_proto::user::v1::user_service_server::UserService;
use tonic::{Request, Response, Status};

use crate::domain::{Profile, profile_cache_key};
use crate::error::Error;
use crate::peers::Auth;

/// Who may call what. Register and Login need no token. Logout, Delete, Update and Info act on
/// the caller's own account, yet are `Public` here: their token may arrive in the request's
/// `token` field, which the server's gate cannot read, so their handlers authenticate the
/// caller themselves ([`ProfileApi::authenticate`]); Logout leaves that to auth, which also
/// ends a session whose access token expired.
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::user::v1::user_service_server::SERVICE_NAME,
    rules: &[
        ("Register", Access::Public),
        ("Login", Access::Public),
        ("Logout", Access::Public),
        ("Delete", Access::Public),
        ("Update", Access::Public),
        ("Info", Access::Public),
    ],
};

/// The `UserService` implementation.
#[derive(Clone)]
pub struct ProfileApi {
    tokens: Arc<Tokens>,
    cache: SharedCache,
    auth: Auth,
    profile_ttl: Duration,
}

/// An end user proven by an access token.
struct EndUser {
    user_id: u64,
}

impl ProfileApi {
    /// A service calling auth through `platform`'s clients and caching profiles for
    /// `profile_ttl`.
    pub fn new(platform: &Platform, profile_ttl: Duration) -> Self {
        ProfileApi {
            tokens: platform.tokens.clone(),
            cache: platform.cache.clone(),
            auth: Auth::new(platform.clients.clone()),
            profile_ttl,
        }
    }

    /// The end user behind a token-taking RPC: the token is the request's `token` field when
    /// set, else the `authorization: Bearer` metadata.
    ///
    /// These RPCs are `Public` in [`ACCESS`] because the server's gate only sees metadata, so
    /// this is where they are authenticated: signature, expiry and revocation, like the gate
    /// would. No token, or a bad one, is `UNAUTHENTICATED`; a service token is
    /// `PERMISSION_DENIED`, since each of these RPCs acts on the caller's own account.
    async fn authenticate<T>(&self, request: &Request<T>, field: &str) -> Result<EndUser, Error> {
        let token = auth::token_from_field_or_metadata(field, request.metadata());
        let (user_id, _) = self.tokens.verify_end_user(token).await?;
        Ok(EndUser {
            user_id: user_id.get(),
        })
    }

    /// The profile of `user_id`, from the cache or from auth's `GetAccount`.
    async fn profile(&self, user_id: u64) -> Result<Profile, Error> {
        let auth = self.auth.clone();
        let load = || async move { auth.profile(user_id).await };
        cache::read_through(
            self.cache.as_ref(),
            &profile_cache_key(user_id),
            self.profile_ttl,
            load,
        )
        .await?
        .ok_or(Error::AccountNotFound(user_id))
    }

    /// Drops the cached profile after a change. A failure is logged, not returned: the change
    /// is made and the entry expires after `profile_cache.ttl` anyway.
    async fn forget_profile(&self, user_id: u64) {
        if let Err(e) = cache::invalidate(self.cache.as_ref(), &profile_cache_key(user_id)).await {
            tracing::error!(user = user_id, error = %e, "profile cache invalidation failed");
        }
    }
}

#[tonic::async_trait]
impl UserService for ProfileApi {
    async fn register(
        &self,
        request: Request<pb::RegisterReq>,
    ) -> Result<Response<pb::RegisterResp>, Status> {
        let req = request.into_inner();
        let data = self
            .auth
            .register(auth_pb::RegisterRequest {
                username: req.username,
                password: req.password,
                email: req.email,
                phone: req.phone,
            })
            .await?;
        tracing::info!(user = data.user_id, "user registered");
        Ok(Response::new(pb::RegisterResp {
            base: success(),
            user_id: data.user_id,
            token: data.token,
        }))
    }

    async fn login(
        &self,
        request: Request<pb::LoginReq>,
    ) -> Result<Response<pb::LoginResp>, Status> {
        let req = request.into_inner();
        let data = self
            .auth
            .login(auth_pb::LoginRequest {
                username: req.username,
                password: req.password,
            })
            .await?;
        Ok(Response::new(pb::LoginResp {
            base: success(),
            token: data.token,
            refresh_token: data.refresh_token,
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutReq>,
    ) -> Result<Response<pb::LogoutResp>, Status> {
        // Auth verifies: the token may be expired (its session still ends) or a refresh token;
        // the bearer token counts only when the body names no session at all.
        let req = request.get_ref();
        let token = if req.refresh_token.is_empty() {
            auth::token_from_field_or_metadata(&req.token, request.metadata())
        } else {
            Some(req.token.as_str())
        };
        let token = token.unwrap_or_default().to_string();
        let refresh_token = request.into_inner().refresh_token;
        if token.is_empty() && refresh_token.is_empty() {
            // Sent on empty, auth would read this service's own credentials instead.
            return Err(Status::unauthenticated("missing access or refresh token"));
        }
        self.auth
            .logout(auth_pb::LogoutRequest {
                token,
                refresh_token,
            })
            .await?;
        tracing::info!("session ended");
        Ok(Response::new(pb::LogoutResp { base: success() }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteReq>,
    ) -> Result<Response<pb::DeleteResp>, Status> {
        let user = self
            .authenticate(&request, &request.get_ref().token)
            .await?;
        let deleted = self.auth.delete_account(user.user_id).await;
        // Forget the profile even when the call failed: auth may have deleted the account
        // before the answer was lost, and a stale entry is worse than a miss.
        self.forget_profile(user.user_id).await;
        deleted?;
        tracing::info!(user = user.user_id, "account deleted");
        Ok(Response::new(pb::DeleteResp { base: success() }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateReq>,
    ) -> Result<Response<pb::UpdateResp>, Status> {
        let user = self
            .authenticate(&request, &request.get_ref().token)
            .await?;
        let req = request.into_inner();
        let updated = self
            .auth
            .update_account(auth_pb::UpdateAccountReq {
                user_id: user.user_id,
                new_username: req.new_username,
                new_email: req.new_email,
                new_phone: req.new_phone,
            })
            .await;
        self.forget_profile(user.user_id).await;
        updated?;
        tracing::info!(user = user.user_id, "profile updated");
        Ok(Response::new(pb::UpdateResp { base: success() }))
    }

    async fn info(&self, request: Request<pb::InfoReq>) -> Result<Response<pb::InfoResp>, Status> {
        let user = self
            .authenticate(&request, &request.get_ref().token)
            .await?;
        let profile = self.profile(user.user_id).await?;
        Ok(Response::new(pb::InfoResp {
            base: success(),
            user_id: profile.user_id,
            username: profile.username,
            email: profile.email,
            phone: profile.phone,
        }))
    }
}
