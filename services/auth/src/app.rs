//! Auth's use cases that need I/O: registering, logging in (with lockout), refreshing and ending
//! sessions, and account administration. Each takes already-parsed input (or, for login and
//! refresh, checks only its shape) and answers with [`Error`]; `api.rs` turns them into gRPC.

use std::sync::Arc;

use mall_common::auth::{Caller, Tokens};
use mall_common::cache::SharedCache;
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use mall_types::{Invalid, Role, UserId};
use sha2::{Digest, Sha256};

use crate::AccountsSettings;
use crate::domain::{self, AccountPatch, PasswordHashing, Registration};
use crate::error::Error;
use crate::store::{AccountRow, Accounts, Rotation};

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

fn lock_keys(username: &str) -> (String, String) {
    let name = username.to_lowercase();
    (
        format!("auth:login:fail:{name}"),
        format!("auth:login:lock:{name}"),
    )
}

/// A freshly issued session.
pub struct Session {
    /// The account it belongs to.
    pub user_id: u64,
    /// The signed access token.
    pub access: String,
    /// When the access token expires, unix seconds.
    pub expires_at: i64,
    /// The session's current refresh token (only its hash is stored).
    pub refresh: String,
}

/// Auth's use cases over the accounts store, the token keys and the lockout counters.
#[derive(Clone)]
pub struct Identity {
    accounts: Accounts,
    tokens: Arc<Tokens>,
    cache: SharedCache,
    hashing: Arc<PasswordHashing>,
    settings: AccountsSettings,
}

impl Identity {
    /// Use cases over `accounts`, signing with `tokens`, counting logins in `cache`.
    pub fn new(
        accounts: Accounts,
        tokens: Arc<Tokens>,
        cache: SharedCache,
        hashing: PasswordHashing,
        settings: AccountsSettings,
    ) -> Self {
        Identity {
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

    /// Creates a user account and starts its first session.
    pub async fn register(&self, reg: &Registration, password: &str) -> Result<Session, Error> {
        let id = self.create_account(reg, password, Role::User).await?;
        let account = self.active_account(id).await?;
        self.start_session(&account).await
    }

    /// Refresh tokens issued now expire at this unix second.
    fn refresh_expiry(&self) -> i64 {
        unix_secs()
            + i64::try_from(self.settings.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX / 2)
    }

    /// Starts a new session (refresh-token family) for an active account.
    async fn start_session(&self, account: &AccountRow) -> Result<Session, Error> {
        let family = uuid::Uuid::new_v4().to_string();
        let refresh = new_refresh_token();
        self.accounts
            .add_refresh_token(
                &hash_refresh_token(&refresh),
                &family,
                account.id,
                self.refresh_expiry(),
            )
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

    /// Starts a session for the active account `id` without a password (`DeliverToken`).
    pub async fn deliver_session(&self, id: UserId) -> Result<Session, Error> {
        let account = self.active_account(id.db()).await?;
        self.start_session(&account).await
    }

    /// The account `id` when it is active; banned and deleted ones are not found.
    pub async fn active_account(&self, id: i64) -> Result<AccountRow, Error> {
        match self.accounts.by_id(id).await? {
            Some(a) if a.is_active() => Ok(a),
            _ => Err(Error::AccountNotFound),
        }
    }

    /// Counts a failed login; locks the username when the threshold is reached.
    async fn record_failure(&self, username: &str) -> Result<(), Error> {
        let (fail_key, lock_key) = lock_keys(username);
        let window = self.settings.lockout.window;
        let failures = self
            .cache
            .incr(&fail_key, window)
            .await
            .map_err(Error::LoginCounter)?;
        if failures >= i64::from(self.settings.lockout.threshold) {
            let lock = self.settings.lockout.lock_for;
            self.cache
                .set(&lock_key, b"1", lock)
                .await
                .map_err(Error::LoginCounter)?;
            let _ = self.cache.delete(&fail_key).await;
            tracing::warn!(username, "login locked after repeated failures");
        }
        Ok(())
    }

    /// Checks the password of `username` and starts a session, unless the username is locked
    /// out; a wrong password counts towards the lock.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session, Error> {
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
        let (fail_key, lock_key) = lock_keys(username);
        let locked = self
            .cache
            .get(&lock_key)
            .await
            .map_err(Error::LoginCounter)?;
        if locked.is_some() {
            return Err(Error::LockedOut);
        }
        let account = self.accounts.by_username(username).await?;
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        if !self.verify(password, hash).await? {
            self.record_failure(username).await?;
            return Err(Error::BadCredentials);
        }
        let _ = self.cache.delete(&fail_key).await;
        let account = account.ok_or(Error::BadCredentials)?;
        if !account.is_active() {
            return Err(Error::AccountDisabled);
        }
        self.start_session(&account).await
    }

    /// Revokes `token` and its session, given the token itself.
    pub async fn logout(&self, token: Option<&str>) -> Result<(), Error> {
        let (_, claims) = self.tokens.verify_end_user(token).await?;
        self.tokens.revoke_token(&claims).await?;
        if !claims.sid.is_empty() {
            self.accounts.revoke_family(&claims.sid).await?;
            self.tokens.revoke_session(&claims.sid).await?;
        }
        Ok(())
    }

    /// Spends `refresh_token` for a new access token and the session's next refresh token.
    /// A token presented a second time revokes its whole session (it was likely stolen).
    /// Answers the session and its family id.
    pub async fn refresh(&self, refresh_token: &str) -> Result<(Session, String), Error> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(Error::BadRefreshToken);
        }
        let next = new_refresh_token();
        let rotation = self
            .accounts
            .rotate(
                &hash_refresh_token(refresh_token),
                &hash_refresh_token(&next),
                self.refresh_expiry(),
            )
            .await?;
        match rotation {
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

    /// Who `token` proves, or `None` when it proves nothing or only a service.
    pub async fn validate(&self, token: &str) -> Option<Caller> {
        match self.tokens.verify(token).await {
            Ok(caller @ Caller::User { .. }) => Some(caller),
            Ok(Caller::Service { .. }) | Err(_) => None,
        }
    }

    /// Applies `patch` to the active account `id` and answers the account as it is now.
    pub async fn update_account(
        &self,
        id: UserId,
        patch: &AccountPatch,
    ) -> Result<AccountRow, Error> {
        if !self.accounts.update(id, patch).await? {
            return Err(Error::AccountNotFound);
        }
        self.active_account(id.db()).await
    }

    /// Deletes the account `id` and revokes every token issued to it.
    pub async fn delete_account(&self, id: UserId) -> Result<(), Error> {
        if !self.accounts.delete(id).await? {
            return Err(Error::AccountNotFound);
        }
        self.tokens.revoke_user(id.get()).await?;
        Ok(())
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
