//! Accounts and refresh-token families in SQL (SQLite or MySQL through one implementation).
//! Username uniqueness is a unique key, so concurrent registrations cannot both win; a refresh
//! token is rotated by one conditional `UPDATE`, so it can be used once.

use mall_common::auth::revocation::Revoked;
use mall_common::events::{AccountDeleted, Outbox, Payload};
use mall_common::store::{Database, Migrations, Tx, inserted_id, is_unique_violation};
use mall_types::time::unix_secs;
use mall_types::{Role, UserId};
use sqlx::Row;

use crate::domain::{AccountPatch, Registration, canonical_username};
use crate::error::Error;

/// Auth's migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

/// An account as stored (the hash stays inside this service).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRow {
    /// Id.
    pub id: i64,
    /// Username.
    pub username: String,
    /// Email.
    pub email: String,
    /// Phone or empty.
    pub phone: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// `user` or `admin`.
    pub role: String,
    /// `active`, `banned` or `deleted`.
    pub status: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl AccountRow {
    /// The account's id and role as its tokens carry them; a stored value outside both is a
    /// corrupt row.
    pub fn identity(&self) -> Result<(UserId, Role), Error> {
        let corrupt = |what: &str| {
            Error::Database(sqlx::Error::Decode(
                format!("account {} has an invalid {what}", self.id).into(),
            ))
        };
        let id = UserId::from_db(self.id).ok_or_else(|| corrupt("id"))?;
        let role = self.role.parse::<Role>().map_err(|_| corrupt("role"))?;
        Ok((id, role))
    }

    /// True unless banned or deleted.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// A revocation and when it can be forgotten (every token it covers has expired by then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// What is revoked.
    pub revoked: Revoked,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Revocation {
    fn columns(&self) -> (&'static str, String, i64) {
        match &self.revoked {
            Revoked::Token(jti) => ("token", jti.clone(), 0),
            Revoked::Session(sid) => ("session", sid.clone(), 0),
            Revoked::User { user_id, cutoff } => ("user", user_id.to_string(), *cutoff),
        }
    }

    fn from_columns(kind: &str, subject: String, cutoff: i64, expires_at: i64) -> Option<Self> {
        let revoked = match kind {
            "token" => Revoked::Token(subject),
            "session" => Revoked::Session(subject),
            "user" => Revoked::User {
                user_id: subject.parse().ok()?,
                cutoff,
            },
            _ => return None,
        };
        Some(Revocation {
            revoked,
            expires_at,
        })
    }
}

async fn insert_revocations(tx: &mut Tx, revocations: &[Revocation]) -> Result<(), Error> {
    for r in revocations {
        let (kind, subject, cutoff) = r.columns();
        sqlx::query(
            "INSERT INTO revocations (kind, subject, cutoff, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(kind)
        .bind(subject)
        .bind(cutoff)
        .bind(r.expires_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn revoke_family_in(tx: &mut Tx, family: &str) -> Result<(), Error> {
    sqlx::query(
        "UPDATE refresh_tokens SET status = 'revoked' WHERE family_id = ? AND status = 'active'",
    )
    .bind(family)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What presenting a refresh token did.
#[derive(Debug)]
pub enum Rotation {
    /// It was current: it is now spent and `new_hash` replaces it in the same family.
    Rotated {
        /// Owner.
        user_id: i64,
        /// Session.
        family: String,
    },
    /// It had been rotated before: theft suspected, the whole family is now revoked.
    Reused {
        /// The revoked session.
        family: String,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// The source of the accounts' events.
const EVENTS_SOURCE: &str = mall_types::ServiceName::Auth.as_str();

const ACCOUNT_COLUMNS: &str = "id, username, email, phone, password_hash, role, status, created_at";

/// The accounts and sessions repository.
#[derive(Clone, Debug)]
pub struct Accounts {
    db: Database,
}

impl Accounts {
    /// A repository on an open, migrated database.
    pub fn new(db: Database) -> Self {
        Accounts { db }
    }

    /// Creates an account; `UsernameTaken` when the name exists (in any case).
    pub async fn create(
        &self,
        reg: &Registration,
        password_hash: &str,
        role: Role,
    ) -> Result<i64, Error> {
        let now = unix_secs();
        let mut conn = self.db.pool().acquire().await?;
        let done = sqlx::query(
            "INSERT INTO accounts (username, username_key, email, phone, password_hash, role, status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)",
        )
        .bind(&reg.username)
        .bind(canonical_username(&reg.username))
        .bind(reg.email.as_str())
        .bind(&reg.phone)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::UsernameTaken } else { e.into() })?;
        Ok(inserted_id(&done, &mut *conn).await?)
    }

    /// The account (any status) whose canonical username is `key` (see
    /// [`canonical_username`]): an exact match on a unique index.
    pub async fn by_username_key(&self, key: &str) -> Result<Option<AccountRow>, Error> {
        Ok(sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE username_key = ?"
        )))
        .bind(key)
        .fetch_optional(self.db.pool())
        .await?)
    }

    /// The account with this id (any status).
    pub async fn by_id(&self, id: i64) -> Result<Option<AccountRow>, Error> {
        Ok(sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(self.db.pool())
        .await?)
    }

    /// Applies a patch to an active account; `false` when there is none.
    pub async fn update(&self, id: UserId, patch: &AccountPatch) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE accounts SET username = COALESCE(?, username), \
             username_key = COALESCE(?, username_key), email = COALESCE(?, email), \
             phone = COALESCE(?, phone), updated_at = ? WHERE id = ? AND status = 'active'",
        )
        .bind(patch.username.clone())
        .bind(patch.username.as_deref().map(canonical_username))
        .bind(patch.email.clone().map(String::from))
        .bind(patch.phone.clone())
        .bind(unix_secs())
        .bind(id.db())
        .execute(self.db.pool())
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::UsernameTaken
            } else {
                e.into()
            }
        })?;
        Ok(done.rows_affected() > 0)
    }

    /// Soft-deletes an active account, revokes its refresh tokens, records `revocation` (its
    /// access tokens) and appends `account.deleted` to the outbox, all in one transaction; `false` when there is no such account.
    pub async fn delete(&self, id: UserId, revocation: &Revocation) -> Result<bool, Error> {
        self.db
            .retrying("delete", || self.delete_once(id, revocation))
            .await
    }

    async fn delete_once(&self, id: UserId, revocation: &Revocation) -> Result<bool, Error> {
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query(
            "UPDATE accounts SET status = 'deleted', updated_at = ? WHERE id = ? AND status <> 'deleted'",
        )
        .bind(now)
        .bind(id.db())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE refresh_tokens SET status = 'revoked' WHERE user_id = ? AND status = 'active'",
        )
        .bind(id.db())
        .execute(&mut *tx)
        .await?;
        insert_revocations(&mut tx, std::slice::from_ref(revocation)).await?;
        let deleted = Payload::AccountDeleted(AccountDeleted { user_id: id.get() });
        Outbox::append(&mut tx, EVENTS_SOURCE, &id.get().to_string(), deleted).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Stores the first refresh token (its hash) of a new session `family` ending at
    /// `family_expires_at` at the latest.
    pub async fn add_refresh_token(
        &self,
        token_hash: &str,
        family: &str,
        user_id: i64,
        expires_at: i64,
        family_expires_at: i64,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, status, created_at, expires_at, family_expires_at) \
             VALUES (?, ?, ?, 'active', ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(family)
        .bind(user_id)
        .bind(unix_secs())
        .bind(expires_at.min(family_expires_at))
        .bind(family_expires_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Spends `old_hash` and stores `new_hash` in its family (expiring at `expires_at`, or at
    /// the family's end if sooner), or detects reuse: then the family is revoked and
    /// `on_reuse(family)` recorded in the same transaction.
    pub async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: i64,
        on_reuse: &(dyn Fn(&str) -> Revocation + Sync),
    ) -> Result<Rotation, Error> {
        self.db
            .retrying("rotate", || {
                self.rotate_once(old_hash, new_hash, expires_at, on_reuse)
            })
            .await
    }

    async fn rotate_once(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: i64,
        on_reuse: &(dyn Fn(&str) -> Revocation + Sync),
    ) -> Result<Rotation, Error> {
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        let spent = sqlx::query(
            "UPDATE refresh_tokens SET status = 'rotated' \
             WHERE token_hash = ? AND status = 'active' AND expires_at > ?",
        )
        .bind(old_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT family_id, user_id, status, family_expires_at FROM refresh_tokens WHERE token_hash = ?",
        )
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Rotation::Invalid);
        };
        let family: String = row.try_get(0)?;
        let user_id: i64 = row.try_get(1)?;
        let status: String = row.try_get(2)?;
        let family_expires_at: i64 = row.try_get(3)?;
        if spent.rows_affected() == 1 {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, status, created_at, expires_at, family_expires_at) \
                 VALUES (?, ?, ?, 'active', ?, ?, ?)",
            )
            .bind(new_hash)
            .bind(&family)
            .bind(user_id)
            .bind(now)
            .bind(expires_at.min(family_expires_at))
            .bind(family_expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { user_id, family });
        }
        if status == "rotated" {
            revoke_family_in(&mut tx, &family).await?;
            insert_revocations(&mut tx, &[on_reuse(&family)]).await?;
            tx.commit().await?;
            return Ok(Rotation::Reused { family });
        }
        Ok(Rotation::Invalid)
    }

    /// The session (family id) and owner of a refresh token in any status, if it exists.
    pub async fn family_of(&self, token_hash: &str) -> Result<Option<(String, i64)>, Error> {
        let row = sqlx::query("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(match row {
            Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
            None => None,
        })
    }

    /// Ends the session `family`: revokes its refresh tokens and records `revocations` (its
    /// access tokens) in one transaction.
    pub async fn end_session(&self, family: &str, revocations: &[Revocation]) -> Result<(), Error> {
        self.db
            .retrying("end session", || async {
                let mut tx = self.db.begin_write().await?;
                revoke_family_in(&mut tx, family).await?;
                insert_revocations(&mut tx, revocations).await?;
                tx.commit().await?;
                Ok::<(), Error>(())
            })
            .await
    }

    /// Records `revocations` on their own (a token without a session).
    pub async fn record_revocations(&self, revocations: &[Revocation]) -> Result<(), Error> {
        self.db
            .retrying("revoke", || async {
                let mut tx = self.db.begin_write().await?;
                insert_revocations(&mut tx, revocations).await?;
                tx.commit().await?;
                Ok::<(), Error>(())
            })
            .await
    }

    /// Every revocation still in force at `now`, users' in increasing cutoff order (so a copy
    /// written in this order leaves each user's latest cutoff).
    pub async fn live_revocations(&self, now: i64) -> Result<Vec<Revocation>, Error> {
        let rows = sqlx::query(
            "SELECT kind, subject, cutoff, expires_at FROM revocations WHERE expires_at > ? \
             ORDER BY cutoff, id",
        )
        .bind(now)
        .fetch_all(self.db.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let kind: String = row.try_get(0)?;
            let stored =
                Revocation::from_columns(&kind, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
            // Skipping a row would un-revoke it: an unreadable one fails the whole copy.
            out.push(stored.ok_or_else(|| {
                sqlx::Error::Protocol(format!("unreadable revocation row of kind `{kind}`"))
            })?);
        }
        Ok(out)
    }

    /// Forgets revocations that expired before `now`; answers how many.
    pub async fn prune_revocations(&self, now: i64) -> Result<u64, Error> {
        let done = sqlx::query("DELETE FROM revocations WHERE expires_at <= ?")
            .bind(now)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected())
    }
}
