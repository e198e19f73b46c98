//! The gRPC edge of auth: parse the request, call the use case in [`Identity`], map the answer
//! and errors. Access rules in [`ACCESS`]; `Logout` takes its token from the body or metadata,
//! so it verifies in the handler.

use mall_common::auth::{Access, AccessTable};
use mall_common::auth::{Caller, token_from_field_or_metadata};
use mall_common::reply::success as ok;
use mall_proto::auth::v1 as pb;
use mall_proto::auth::v1::auth_service_server::AuthService;
use mall_types::ids::stored_to_api;
use mall_types::{ServiceName, UserId};
use tonic::{Request, Response, Status};

use crate::app::Identity;
use crate::domain::{AccountPatch, Registration};
use crate::error::Error;
use crate::store::AccountRow;

/// Who may call what. Account administration and token delivery are for the user service (the
/// account front door) only; nothing in the fleet calls ValidateToken or DeliverToken today, so
/// they admit user alone too.
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::auth::v1::auth_service_server::SERVICE_NAME,
    rules: &[
        ("Register", Access::Public),
        ("Login", Access::Public),
        ("RefreshToken", Access::Public),
        // The token to revoke may come in the body only; the handler verifies it.
        ("Logout", Access::Public),
        ("ValidateToken", Access::Internal(&[ServiceName::User])),
        ("DeliverToken", Access::Internal(&[ServiceName::User])),
        ("GetAccount", Access::Internal(&[ServiceName::User])),
        ("UpdateAccount", Access::Internal(&[ServiceName::User])),
        ("DeleteAccount", Access::Internal(&[ServiceName::User])),
    ],
};

fn account_id(user_id: u64) -> Result<UserId, Error> {
    Ok(UserId::parse(user_id, "user_id")?)
}

fn to_account(a: AccountRow) -> pb::Account {
    pb::Account {
        user_id: stored_to_api(a.id),
        username: a.username,
        email: a.email,
        phone: a.phone,
        role: a.role,
        created_at: a.created_at,
    }
}

/// The `AuthService` implementation.
#[derive(Clone)]
pub struct AuthApi {
    identity: Identity,
}

impl AuthApi {
    /// The gRPC edge of `identity`'s use cases.
    pub fn new(identity: Identity) -> Self {
        AuthApi { identity }
    }
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = request.into_inner();
        let reg =
            Registration::parse(&req.username, &req.email, &req.phone).map_err(Error::from)?;
        let session = self.identity.register(&reg, &req.password).await?;
        tracing::info!(user_id = session.user_id, "account registered");
        Ok(Response::new(pb::RegisterResponse {
            base: ok(),
            data: Some(pb::RegisterData {
                user_id: session.user_id,
                token: session.access,
                refresh_token: session.refresh,
            }),
        }))
    }

    async fn login(
        &self,
        request: Request<pb::LoginRequest>,
    ) -> Result<Response<pb::LoginResponse>, Status> {
        let req = request.into_inner();
        let session = self.identity.login(&req.username, &req.password).await?;
        Ok(Response::new(pb::LoginResponse {
            base: ok(),
            data: Some(pb::LoginData {
                token: session.access,
                refresh_token: session.refresh,
                expires_at: session.expires_at,
            }),
        }))
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let (session, _) = self
            .identity
            .refresh(&request.into_inner().refresh_token)
            .await?;
        Ok(Response::new(pb::RefreshTokenResponse {
            base: ok(),
            data: Some(pb::RefreshTokenData {
                token: session.access,
                refresh_token: session.refresh,
                expires_at: session.expires_at,
            }),
        }))
    }

    async fn logout(
        &self,
        request: Request<pb::LogoutRequest>,
    ) -> Result<Response<pb::LogoutResponse>, Status> {
        let req = request.get_ref();
        // The bearer token counts only when the body names no session at all.
        let token = if req.refresh_token.is_empty() {
            token_from_field_or_metadata(&req.token, request.metadata())
        } else {
            Some(req.token.as_str())
        };
        self.identity.logout(token, &req.refresh_token).await?;
        Ok(Response::new(pb::LogoutResponse { base: ok() }))
    }

    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let token = request.into_inner().token;
        let data = match self.identity.validate(&token).await {
            Some(Caller::User {
                user_id,
                username,
                role,
                ..
            }) => pb::ValidateTokenData {
                valid: true,
                user_id: user_id.get(),
                username,
                role: role.as_str().to_string(),
            },
            Some(Caller::Service { .. }) | None => pb::ValidateTokenData::default(),
        };
        Ok(Response::new(pb::ValidateTokenResponse {
            base: ok(),
            data: Some(data),
        }))
    }

    async fn deliver_token(
        &self,
        request: Request<pb::DeliverTokenReq>,
    ) -> Result<Response<pb::DeliveryResp>, Status> {
        let id = account_id(request.into_inner().user_id)?;
        let session = self.identity.deliver_session(id).await?;
        Ok(Response::new(pb::DeliveryResp {
            base: ok(),
            token: session.access,
            refresh_token: session.refresh,
        }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountReq>,
    ) -> Result<Response<pb::Account>, Status> {
        let id = account_id(request.into_inner().user_id)?;
        let account = self.identity.active_account(id.db()).await?;
        Ok(Response::new(to_account(account)))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountReq>,
    ) -> Result<Response<pb::Account>, Status> {
        let req = request.into_inner();
        let id = account_id(req.user_id)?;
        let patch = AccountPatch::parse(&req.new_username, &req.new_email, &req.new_phone)
            .map_err(Error::from)?;
        let account = self.identity.update_account(id, &patch).await?;
        Ok(Response::new(to_account(account)))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountReq>,
    ) -> Result<Response<pb::DeleteAccountResp>, Status> {
        let user_id = request.into_inner().user_id;
        let id = account_id(user_id)?;
        self.identity.delete_account(id).await?;
        tracing::info!(user_id, "account deleted");
        Ok(Response::new(pb::DeleteAccountResp {}))
    }
}
