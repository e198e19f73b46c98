//! The gRPC edge of auth: parse, call the domain and store, map errors. Access rules in
//! [`ACCESS`]; `Logout` takes its token from the body or metadata, so it verifies in the handler.

use std::sync::Arc;

use mall_common::auth::{Access, AccessTable};
use mall_common::auth::{Caller, Tokens, token_from_field_or_metadata};
use mall_common::cache::SharedCache;
use mall_common::reply::success as ok;
use mall_proto::auth::v1 as pb;
use mall_proto::auth::v1::auth_service_server::AuthService;
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use mall_types::{Invalid, Role, UserId};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::AccountsSettings;
use crate::domain::{self, AccountPatch, Error, PasswordHashing, Registration};
use crate::store::{AccountRow, Accounts, Rotation};

/// Who may call what. Account administration is for other services (user) only.
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::auth::v1::auth_service_server::SERVICE_NAME,
    rules: &[
        ("Register", Access::Public),
        ("Login", Access::Public),
        ("RefreshToken", Access::Public),
        // The token to revoke may come in the body only; the handler verifies it.
        ("Logout", Access::Public),
        ("ValidateToken", Access::Internal),
        ("DeliverToken", Access::Internal),
        ("GetAccount", Access::Internal),
        ("UpdateAccount", Access::Internal),
        ("DeleteAccount", Access::Internal),
    ],
};

/// Longest password accepted at login before hashing (bounds the work a caller can cause).
const MAX_LOGIN_INPUT_BYTES: usize = 1024;

fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_refresh_token() -> String {
    // 244 random bits from the OS generator.
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn account_id(user_id: u64) -> Result<UserId, Error> {
    Ok(UserId::parse(user_id, "user_id")?)
}

/// A freshly issued session.
struct Session {
    user_id: u64,
    access: String,
    expires_at: i64,
    refresh: String,
}

/// The `AuthService` implementation.
#[derive(Clone)]
pub struct AuthServiceImpl {
    accounts: Accounts,
    tokens: Arc<Tokens>,
    cache: SharedCache,
    hashing: Arc<PasswordHashing>,
    settings: AccountsSettings,
}

impl AuthServiceImpl {
    /// A service over `accounts`, signing with `tokens`, counting logins in `cache`.
    pub fn new(
        accounts: Accounts,
        tokens: Arc<Tokens>,
        cache: SharedCache,
        hashing: PasswordHashing,
        settings: AccountsSettings,
    ) -> Self {
        AuthServiceImpl {
            accounts,
            tokens,
            cache,
            hashing: Arc::new(hashing),
            settings,
        }
    }

    async fn hash(&self, password: &str) -> Result<String, Error> {
        let hashing = self.hashing.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hashing.hash(&password))
            .await
            .map_err(|e| Error::Hashing(e.to_string()))?
    }

    async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, Error> {
        let hashing = self.hashing.clone();
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hashing.verify(&password, hash.as_deref()))
            .await
            .map_err(|e| Error::Hashing(e.to_string()))
    }

    /// Creates an account and returns its id.
    pub async fn create_account(
        &self,
        reg: &Registration,
        password: &str,
        role: Role,
    ) -> Result<i64, Error> {
        let hash = self.hash(domain::password(password)?).await?;
        self.accounts.create(reg, &hash, role).await
    }

    /// Starts a new session (refresh-token family) for an active account.
    async fn start_session(&self, account: &AccountRow) -> Result<Session, Error> {
        let family = uuid::Uuid::new_v4().to_string();
        let refresh = new_refresh_token();
        let expires = unix_secs()
            + i64::try_from(self.settings.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        self.accounts
            .add_refresh_token(&hash_refresh_token(&refresh), &family, account.id, expires)
            .await?;
        let user_id = stored_to_api(account.id);
        let (access, claims) =
            self.tokens
                .issue_access(user_id, &account.username, &account.role, &family)?;
        Ok(Session {
            user_id,
            access,
            expires_at: claims.exp,
            refresh,
        })
    }

    async fn active_account(&self, id: i64) -> Result<AccountRow, Error> {
        match self.accounts.by_id(id).await? {
            Some(a) if a.is_active() => Ok(a),
            _ => Err(Error::AccountNotFound),
        }
    }

    fn lock_keys(username: &str) -> (String, String) {
        let name = username.to_lowercase();
        (
            format!("auth:login:fail:{name}"),
            format!("auth:login:lock:{name}"),
        )
    }

    /// Counts a failed login; locks the username when the threshold is reached.
    async fn record_failure(&self, username: &str) -> Result<(), Error> {
        let (fail_key, lock_key) = Self::lock_keys(username);
        let window = self.settings.lockout.window;
        let failures = self
            .cache
            .incr(&fail_key, window)
            .await
            .map_err(|e| mall_common::error::unavailable("login counter", &e))?;
        if failures >= i64::from(self.settings.lockout.threshold) {
            let lock = self.settings.lockout.lock_for;
            self.cache
                .set(&lock_key, b"1", lock)
                .await
                .map_err(|e| mall_common::error::unavailable("login counter", &e))?;
            let _ = self.cache.delete(&fail_key).await;
            tracing::warn!(username, "login locked after repeated failures");
        }
        Ok(())
    }

    async fn login(&self, username: &str, password: &str) -> Result<Session, Error> {
        // Only the shape is checked here: the username rule is registration's, and a login
        // must answer a name that breaks it exactly like an unknown one.
        for (field, value) in [("username", username), ("password", password)] {
            if value.is_empty() {
                return Err(Invalid::new(field, "is required").into());
            }
            if value.len() > MAX_LOGIN_INPUT_BYTES {
                return Err(Invalid::new(
                    field,
                    format!("is longer than {MAX_LOGIN_INPUT_BYTES} bytes"),
                )
                .into());
            }
        }
        let (_, lock_key) = Self::lock_keys(username);
        let locked = self
            .cache
            .get(&lock_key)
            .await
            .map_err(|e| mall_common::error::unavailable("login counter", &e))?;
        if locked.is_some() {
            return Err(Error::LockedOut);
        }
        let account = self.accounts.by_username(username).await?;
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        if !self.verify(password, hash).await? {
            self.record_failure(username).await?;
            return Err(Error::BadCredentials);
        }
        let (fail_key, _) = Self::lock_keys(username);
        let _ = self.cache.delete(&fail_key).await;
        let account = account.ok_or(Error::BadCredentials)?;
        if !account.is_active() {
            return Err(Error::AccountDisabled);
        }
        self.start_session(&account).await
    }

    /// Revokes `token` and its session, given the token itself.
    async fn logout(&self, token: Option<&str>) -> Result<(), Error> {
        let (_, claims) = self.tokens.verify_end_user(token).await?;
        self.tokens.revoke_token(&claims).await?;
        if !claims.sid.is_empty() {
            self.accounts.revoke_family(&claims.sid).await?;
            self.tokens.revoke_session(&claims.sid).await?;
        }
        Ok(())
    }

    async fn refresh(&self, refresh_token: &str) -> Result<(Session, String), Error> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(Error::BadRefreshToken);
        }
        let next = new_refresh_token();
        let expires = unix_secs()
            + i64::try_from(self.settings.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        match self
            .accounts
            .rotate(
                &hash_refresh_token(refresh_token),
                &hash_refresh_token(&next),
                expires,
            )
            .await?
        {
            Rotation::Rotated { user_id, family } => {
                let account = self
                    .active_account(user_id)
                    .await
                    .map_err(|_| Error::BadRefreshToken)?;
                let (access, claims) = self.tokens.issue_access(
                    stored_to_api(account.id),
                    &account.username,
                    &account.role,
                    &family,
                )?;
                Ok((
                    Session {
                        user_id: stored_to_api(account.id),
                        access,
                        expires_at: claims.exp,
                        refresh: next,
                    },
                    family,
                ))
            }
            Rotation::Reused { family } => {
                self.tokens.revoke_session(&family).await?;
                tracing::warn!(session = %family, "refresh token reuse: session revoked");
                Err(Error::RefreshTokenReused)
            }
            Rotation::Invalid => Err(Error::BadRefreshToken),
        }
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

    /// Creates the configured bootstrap admin when it does not exist yet.
    pub async fn bootstrap_admin(&self) -> anyhow::Result<()> {
        let admin = &self.settings.bootstrap_admin;
        if admin.username.is_empty() {
            return Ok(());
        }
        if self
            .accounts
            .by_username(&admin.username)
            .await
            .map_err(anyhow_err)?
            .is_some()
        {
            return Ok(());
        }
        let reg = Registration::parse(&admin.username, &admin.email, "")
            .map_err(|e| anyhow::anyhow!("accounts.bootstrap_admin: {e}"))?;
        match self
            .create_account(&reg, admin.password.expose(), Role::Admin)
            .await
        {
            Ok(id) => {
                tracing::info!(user_id = id, username = %admin.username, "bootstrap admin created");
                Ok(())
            }
            Err(Error::UsernameTaken) => Ok(()),
            Err(e) => Err(anyhow::anyhow!("accounts.bootstrap_admin: {e}")),
        }
    }
}

fn anyhow_err(e: Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

#[tonic::async_trait]
impl AuthService for AuthServiceImpl {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = request.into_inner();
        let reg =
            Registration::parse(&req.username, &req.email, &req.phone).map_err(Error::from)?;
        let id = self.create_account(&reg, &req.password, Role::User).await?;
        let account = self.active_account(id).await?;
        let session = self.start_session(&account).await?;
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
        let session = AuthServiceImpl::login(self, &req.username, &req.password).await?;
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
        let (session, _) = self.refresh(&request.into_inner().refresh_token).await?;
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
        let token = token_from_field_or_metadata(&request.get_ref().token, request.metadata());
        AuthServiceImpl::logout(self, token).await?;
        Ok(Response::new(pb::LogoutResponse { base: ok() }))
    }

    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let token = request.into_inner().token;
        let data = match self.tokens.verify(&token).await {
            Ok(Caller::User {
                user_id,
                username,
                role,
                ..
            }) => pb::ValidateTokenData {
                valid: true,
                user_id,
                username,
                role,
            },
            Ok(Caller::Service { .. }) | Err(_) => pb::ValidateTokenData::default(),
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
        let account = self.active_account(id.db()).await?;
        let session = self.start_session(&account).await?;
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
        let account = self.active_account(id.db()).await?;
        Ok(Response::new(Self::to_account(account)))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountReq>,
    ) -> Result<Response<pb::Account>, Status> {
        let req = request.into_inner();
        let id = account_id(req.user_id)?;
        let patch = AccountPatch::parse(&req.new_username, &req.new_email, &req.new_phone)
            .map_err(Error::from)?;
        if !self.accounts.update(id, &patch).await? {
            return Err(Error::AccountNotFound.into());
        }
        Ok(Response::new(Self::to_account(
            self.active_account(id.db()).await?,
        )))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountReq>,
    ) -> Result<Response<pb::DeleteAccountResp>, Status> {
        let user_id = request.into_inner().user_id;
        let id = account_id(user_id)?;
        if !self.accounts.delete(id).await? {
            return Err(Error::AccountNotFound.into());
        }
        self.tokens.revoke_user(user_id).await?;
        tracing::info!(user_id, "account deleted");
        Ok(Response::new(pb::DeleteAccountResp {}))
    }
}
