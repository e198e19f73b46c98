//! Auth's use cases that need I/O: registering, logging in (with lockout), refreshing and ending
//! sessions, and account administration. Each takes already-parsed input (or, for login and
//! refresh, checks only its shape) and answers with [`Error`]; `api.rs` turns them into gRPC.

use std::sync::Arc;
use std::time::Duration;

use mall_common::auth::{Caller, Tokens};
use mall_common::cache::SharedCache;
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use mall_types::{Invalid, Role, UserId};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::AccountsSettings;
use crate::domain::{self, AccountPatch, PasswordHashing, Registration, Scratch};
use crate::error::Error;
use crate::revocations::Revocations;
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

/// The attempt counter and lock of a canonical username.
fn lock_keys(name: &str) -> (String, String) {
    (
        format!("auth:login:attempts:{name}"),
        format!("auth:login:lock:{name}"),
    )
}

/// A job for the hashing threads: the hashing and the thread's Argon2 memory.
type HashJob = Box<dyn FnOnce(&PasswordHashing, &mut Scratch) + Send>;

/// Argon2 on a fixed set of `slots` threads of its own behind a semaphore: at most `slots`
/// hashes at once (each holds its memory cost), a caller waits at most `queue_wait` for a slot,
/// then gets `RESOURCE_EXHAUSTED`. Own threads rather than the blocking pool: each thread's
/// allocator keeps the memory of its last hash, so a flood spread over hundreds of pool threads
/// would keep hundreds of buffers. A login flood costs a bounded amount of memory and leaves
/// the other cores to the rest of the fleet.
struct Hasher {
    jobs: std::sync::mpsc::SyncSender<HashJob>,
    slots: Arc<Semaphore>,
    queue_wait: Duration,
}

impl Hasher {
    fn new(hashing: PasswordHashing, slots: usize, queue_wait: Duration) -> Self {
        let slots = slots.max(1);
        let (jobs, queue) = std::sync::mpsc::sync_channel::<HashJob>(slots);
        let queue = Arc::new(parking_lot::Mutex::new(queue));
        let hashing = Arc::new(hashing);
        for n in 0..slots {
            let (queue, hashing) = (queue.clone(), hashing.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || {
                    let mut scratch = Scratch::new();
                    // Ends when the hasher (the only sender) is dropped.
                    while let Ok(job) = queue.lock().recv() {
                        job(&hashing, &mut scratch);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "password hashing thread not started");
            }
        }
        Hasher {
            jobs,
            slots: Arc::new(Semaphore::new(slots)),
            queue_wait,
        }
    }

    async fn run<T, F>(&self, work: F) -> Result<T, Error>
    where
        F: FnOnce(&PasswordHashing, &mut Scratch) -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = tokio::time::timeout(self.queue_wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Error::HashingBusy)?
            .map_err(|_| Error::HashingBusy)?;
        let (answer, result) = tokio::sync::oneshot::channel();
        let job: HashJob = Box::new(move |hashing, scratch| {
            let _slot = permit;
            let _ = answer.send(work(hashing, scratch));
        });
        // A slot is held, so one of the `slots` places in the queue is free.
        self.jobs
            .try_send(job)
            .map_err(|e| Error::Hashing(format!("hashing queue: {e}")))?;
        result
            .await
            .map_err(|_| Error::Hashing("hashing thread stopped".into()))
    }
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
    hasher: Arc<Hasher>,
    revocations: Revocations,
    settings: AccountsSettings,
}

impl Identity {
    /// Use cases over `accounts`, signing with `tokens`, counting logins in `cache` and
    /// recording revocations with `revocations`.
    pub fn new(
        accounts: Accounts,
        tokens: Arc<Tokens>,
        cache: SharedCache,
        hashing: PasswordHashing,
        revocations: Revocations,
        settings: AccountsSettings,
    ) -> Self {
        let hasher = Hasher::new(hashing, settings.argon2.slots(), settings.argon2.queue_wait);
        Identity {
            accounts,
            tokens,
            cache,
            hasher: Arc::new(hasher),
            revocations,
            settings,
        }
    }

    async fn hash(&self, password: &str) -> Result<String, Error> {
        let password = password.to_string();
        self.hasher.run(move |h, m| h.hash(&password, m)).await?
    }

    async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, Error> {
        let password = password.to_string();
        self.hasher
            .run(move |h, m| h.verify(&password, hash.as_deref(), m))
            .await
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
        let session_end = unix_secs()
            + i64::try_from(self.settings.session_max_age.as_secs()).unwrap_or(i64::MAX / 2);
        self.accounts
            .add_refresh_token(
                &hash_refresh_token(&refresh),
                &family,
                account.id,
                self.refresh_expiry(),
                session_end,
            )
            .await?;
        let (user_id, role) = account.identity()?;
        let (access, claims) =
            self.tokens
                .issue_access(user_id, &account.username, role, &family)?;
        Ok(Session {
            user_id: user_id.get(),
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

    /// Counts a login attempt for the canonical username `name` before its password is
    /// checked; `LockedOut` when the name is locked or this attempt is over the threshold (which
    /// locks it). Counting first makes the threshold hold under concurrency: of any number of
    /// simultaneous guesses at most `threshold` are evaluated.
    async fn admit_attempt(&self, name: &str) -> Result<(), Error> {
        let (attempts_key, lock_key) = lock_keys(name);
        let lockout = &self.settings.lockout;
        let attempts = self
            .cache
            .incr(&attempts_key, lockout.window)
            .await
            .map_err(Error::LoginCounter)?;
        // Read after counting: whoever locks sets the lock before resetting the counter, so a
        // fresh counter always sees the lock.
        if self
            .cache
            .get(&lock_key)
            .await
            .map_err(Error::LoginCounter)?
            .is_some()
        {
            return Err(Error::LockedOut);
        }
        if attempts > i64::from(lockout.threshold) {
            self.cache
                .set(&lock_key, b"1", lockout.lock_for)
                .await
                .map_err(Error::LoginCounter)?;
            let _ = self.cache.delete(&attempts_key).await;
            tracing::warn!(username = name, "login locked after repeated failures");
            return Err(Error::LockedOut);
        }
        Ok(())
    }

    /// Checks the password of `username` and starts a session, unless the username is locked
    /// out. The username is canonicalised first (trimmed, the registration rule, lower case),
    /// every attempt counts towards the lock, and a success clears the count.
    pub async fn login(&self, username: &str, password: &str) -> Result<Session, Error> {
        if password.is_empty() {
            return Err(Invalid::new("password", "is required").into());
        }
        if password.len() > MAX_LOGIN_INPUT_BYTES {
            return Err(Invalid::new(
                "password",
                format!("is longer than {MAX_LOGIN_INPUT_BYTES} bytes"),
            )
            .into());
        }
        let name = domain::login_username(username)?;
        self.admit_attempt(&name).await?;
        let account = self.accounts.by_username_key(&name).await?;
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        if !self.verify(password, hash).await? {
            return Err(Error::BadCredentials);
        }
        let _ = self.cache.delete(&lock_keys(&name).0).await;
        let account = account.ok_or(Error::BadCredentials)?;
        if !account.is_active() {
            return Err(Error::AccountDisabled);
        }
        self.start_session(&account).await
    }

    /// Ends a session. `token` is an access token — valid, or expired but correctly signed —
    /// or a refresh token of the session; `refresh_token` a refresh token. Every session named
    /// ends: its refresh tokens are revoked and its access tokens too, durably. Ending an ended
    /// session is fine; a token that proves nothing is `UNAUTHENTICATED`.
    pub async fn logout(&self, token: Option<&str>, refresh_token: &str) -> Result<(), Error> {
        let token = token.filter(|t| !t.is_empty());
        let (access, refresh) = match token {
            Some(t) if t.contains('.') => (Some(t), refresh_token),
            Some(t) if refresh_token.is_empty() => (None, t),
            Some(_) => return Err(Error::BadRefreshToken),
            None => (None, refresh_token),
        };
        if access.is_none() && refresh.is_empty() {
            return Err(Error::Status(tonic::Status::unauthenticated(
                "missing access or refresh token",
            )));
        }
        if let Some(access) = access {
            let claims = self.tokens.decode_expired_access(access)?;
            let mut revoked = vec![self.revocations.token(&claims)];
            if claims.sid.is_empty() {
                self.accounts.record_revocations(&revoked).await?;
            } else {
                revoked.push(self.revocations.session(&claims.sid));
                self.accounts.end_session(&claims.sid, &revoked).await?;
            }
            self.revocations.publish(&revoked).await;
        }
        if !refresh.is_empty() {
            if refresh.len() > 256 {
                return Err(Error::BadRefreshToken);
            }
            let (family, _) = self
                .accounts
                .family_of(&hash_refresh_token(refresh))
                .await?
                .ok_or(Error::BadRefreshToken)?;
            let revoked = [self.revocations.session(&family)];
            self.accounts.end_session(&family, &revoked).await?;
            self.revocations.publish(&revoked).await;
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
                &|family| self.revocations.session(family),
            )
            .await?;
        match rotation {
            Rotation::Rotated { user_id, family } => {
                let account = self
                    .active_account(user_id)
                    .await
                    .map_err(|_| Error::BadRefreshToken)?;
                let (user_id, role) = account.identity()?;
                let (access, claims) =
                    self.tokens
                        .issue_access(user_id, &account.username, role, &family)?;
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
                self.revocations
                    .publish(&[self.revocations.session(&family)])
                    .await;
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

    /// Deletes the account `id` and revokes every token issued to it (in one transaction).
    pub async fn delete_account(&self, id: UserId) -> Result<(), Error> {
        let revoked = self.revocations.user(id.get());
        if !self.accounts.delete(id, &revoked).await? {
            return Err(Error::AccountNotFound);
        }
        self.revocations.publish(&[revoked]).await;
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
            .by_username_key(&domain::canonical_username(&admin.username))
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
