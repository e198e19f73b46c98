//! Accounts and refresh-token families in SQL (SQLite or MySQL through one implementation).
//! Username uniqueness is a unique key, so concurrent registrations cannot both win; a refresh
//! token is rotated by one conditional `UPDATE`, so it can be used once.

use mall_common::store::{Database, Migrations, inserted_id, is_unique_violation};
use mall_types::time::unix_secs;
use mall_types::{Role, UserId};
use sqlx::Row;

use crate::domain::{AccountPatch, Registration};
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
    /// True unless banned or deleted.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
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
            "INSERT INTO accounts (username, email, phone, password_hash, role, status, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 'active', ?, ?)",
        )
        .bind(&reg.username)
        .bind(reg.email.as_str())
        .bind(&reg.phone)
        .bind(password_hash)
        .bind(role.as_str())
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(|e| if is_unique_violation(&e) { Error::UsernameTaken } else { e.into() })?;
        Ok(inserted_id(&done, &mut conn).await?)
    }

    /// The account with this username (any status), case-insensitively.
    pub async fn by_username(&self, username: &str) -> Result<Option<AccountRow>, Error> {
        Ok(sqlx::query_as::<_, AccountRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE LOWER(username) = LOWER(?)"
        )))
        .bind(username)
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
            "UPDATE accounts SET username = COALESCE(?, username), email = COALESCE(?, email), \
             phone = COALESCE(?, phone), updated_at = ? WHERE id = ? AND status = 'active'",
        )
        .bind(patch.username.clone())
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

    /// Soft-deletes an active account and revokes its refresh tokens; `false` when there is
    /// none.
    pub async fn delete(&self, id: UserId) -> Result<bool, Error> {
        self.db.retrying("delete", || self.delete_once(id)).await
    }

    async fn delete_once(&self, id: UserId) -> Result<bool, Error> {
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
        tx.commit().await?;
        Ok(true)
    }

    /// Stores a new refresh token (its hash) in `family`.
    pub async fn add_refresh_token(
        &self,
        token_hash: &str,
        family: &str,
        user_id: i64,
        expires_at: i64,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, family_id, user_id, status, created_at, expires_at) \
             VALUES (?, ?, ?, 'active', ?, ?)",
        )
        .bind(token_hash)
        .bind(family)
        .bind(user_id)
        .bind(unix_secs())
        .bind(expires_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Spends `old_hash` and stores `new_hash` in its family, or detects reuse.
    pub async fn rotate(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: i64,
    ) -> Result<Rotation, Error> {
        self.db
            .retrying("rotate", || {
                self.rotate_once(old_hash, new_hash, expires_at)
            })
            .await
    }

    async fn rotate_once(
        &self,
        old_hash: &str,
        new_hash: &str,
        expires_at: i64,
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
            "SELECT family_id, user_id, status FROM refresh_tokens WHERE token_hash = ?",
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
        if spent.rows_affected() == 1 {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, status, created_at, expires_at) \
                 VALUES (?, ?, ?, 'active', ?, ?)",
            )
            .bind(new_hash)
            .bind(&family)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Rotation::Rotated { user_id, family });
        }
        if status == "rotated" {
            sqlx::query("UPDATE refresh_tokens SET status = 'revoked' WHERE family_id = ? AND status = 'active'")
                .bind(&family)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Ok(Rotation::Reused { family });
        }
        Ok(Rotation::Invalid)
    }

    /// Revokes every refresh token of a session.
    pub async fn revoke_family(&self, family: &str) -> Result<(), Error> {
        sqlx::query("UPDATE refresh_tokens SET status = 'revoked' WHERE family_id = ? AND status = 'active'")
            .bind(family)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
