//! Revoked tokens as every service sees them: entries in the shared cache, plus an **epoch**
//! marker that says the entries are complete.
//!
//! Auth is the only writer. Its database holds every revocation (written in the transaction of
//! the change that causes it); the cache holds a copy for the hot path. A cache that lost its
//! contents (restart, `FLUSHALL`, a fresh in-process cache) has lost the epoch with them, and a
//! cache without an epoch answers "revocation state unknown" — services fail closed
//! (`UNAVAILABLE`) until auth has copied its table back and set a new epoch. So a wiped cache can
//! never read as "nothing revoked". All keys are under
//! [`UNEVICTABLE_PREFIX`](crate::cache::UNEVICTABLE_PREFIX): eviction never drops one.

use std::time::Duration;

use tonic::Status;

use super::claims::Claims;
use crate::cache::{Cache, CacheError};

/// The epoch marker. Its value is the id of the copy auth made; only its presence matters.
pub const EPOCH_KEY: &str = "keep:auth:revoked:epoch";
/// How long an epoch lives without being re-published (auth re-publishes it on every copy).
pub const EPOCH_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// One revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// One access token (`jti`).
    Token(String),
    /// Every access token of a session (`sid`, a refresh-token family).
    Session(String),
    /// Every access token of a user issued at or before `cutoff` (unix seconds).
    User {
        /// Account id.
        user_id: u64,
        /// Tokens with `iat <= cutoff` are revoked.
        cutoff: i64,
    },
}

impl Revoked {
    /// The cache key of this revocation.
    pub fn key(&self) -> String {
        match self {
            Revoked::Token(jti) => token_key(jti),
            Revoked::Session(sid) => session_key(sid),
            Revoked::User { user_id, .. } => user_key(*user_id),
        }
    }

    fn value(&self) -> Vec<u8> {
        match self {
            Revoked::User { cutoff, .. } => cutoff.to_string().into_bytes(),
            _ => b"1".to_vec(),
        }
    }

    /// Stores this revocation in `cache` for `ttl`.
    pub async fn publish(&self, cache: &dyn Cache, ttl: Duration) -> Result<(), CacheError> {
        cache.set(&self.key(), &self.value(), ttl).await
    }
}

fn token_key(jti: &str) -> String {
    format!("keep:auth:revoked:jti:{jti}")
}
fn session_key(sid: &str) -> String {
    format!("keep:auth:revoked:sid:{sid}")
}
fn user_key(user_id: u64) -> String {
    format!("keep:auth:revoked:user:{user_id}")
}

fn unknown(e: &CacheError) -> Status {
    crate::error::unavailable("revocation list", e)
}

/// `Ok` when the access token with `claims` (of `user_id`) is not revoked; `UNAUTHENTICATED`
/// when it is; `UNAVAILABLE` when the cache cannot say (unreachable, or no epoch: its entries
/// may be incomplete). One round trip.
pub async fn check(cache: &dyn Cache, claims: &Claims, user_id: u64) -> Result<(), Status> {
    let keys = [
        token_key(&claims.jti),
        session_key(&claims.sid),
        user_key(user_id),
        EPOCH_KEY.to_string(),
    ];
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = cache.get_many(&keys).await.map_err(|e| unknown(&e))?;
    if values[3].is_none() {
        return Err(unknown(&CacheError::new(
            "the cache holds no revocation epoch (auth restores it after a cache restart)",
        )));
    }
    if values[0].is_some() || (!claims.sid.is_empty() && values[1].is_some()) {
        return Err(Status::unauthenticated("token has been revoked"));
    }
    if let Some(cutoff) = values[2]
        .as_deref()
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse::<i64>().ok())
        && claims.iat <= cutoff
    {
        return Err(Status::unauthenticated("token has been revoked"));
    }
    Ok(())
}

/// Marks the cache's revocation entries complete (auth, after copying its table).
pub async fn publish_epoch(cache: &dyn Cache, epoch: &str) -> Result<(), CacheError> {
    cache.set(EPOCH_KEY, epoch.as_bytes(), EPOCH_TTL).await
}

/// True when the cache has an epoch.
pub async fn has_epoch(cache: &dyn Cache) -> Result<bool, CacheError> {
    Ok(cache.get(EPOCH_KEY).await?.is_some())
}

/// Withdraws the epoch (auth, when a revocation could not be copied): services fail closed
/// until the next complete copy.
pub async fn withdraw_epoch(cache: &dyn Cache) -> Result<(), CacheError> {
    cache.delete(EPOCH_KEY).await
}
