//! Revocations: written to auth's database in the transaction of the change that causes them
//! (logout, refresh-token reuse, account deletion), then copied to the shared cache every
//! service checks (see `mall_common::auth::revocation`).
//!
//! The copy is kept complete by an **epoch**: [`Revocations::sync`] runs at start and every
//! `accounts.revocation_sync_interval`; when the cache has no epoch (restarted, flushed, a new
//! in-process cache) or a copy failed since the last sync, it writes every live revocation from
//! the table, then a new epoch. A failed copy also withdraws the epoch at once, so services
//! fail closed instead of trusting an incomplete list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use mall_common::auth::revocation::{self, Revoked};
use mall_common::auth::{CLOCK_LEEWAY_SECS, Claims};
use mall_common::cache::{CacheError, SharedCache};
use mall_common::server::Shutdown;
use mall_types::time::unix_secs;

use crate::error::Error;
use crate::store::{Accounts, Revocation};

/// Cache writes in flight while rebuilding the copy.
const REBUILD_CONCURRENCY: usize = 32;
/// Expired rows are deleted every this many syncs.
const PRUNE_EVERY: u64 = 300;

/// Writes and copies revocations; see the module docs.
#[derive(Clone)]
pub struct Revocations {
    accounts: Accounts,
    cache: SharedCache,
    /// Covers every access token issued up to now: their lifetime plus the clock leeway.
    horizon: i64,
    state: Arc<SyncState>,
}

#[derive(Default)]
struct SyncState {
    /// Copies to the cache that failed, ever.
    failed: AtomicU64,
    /// `failed` as it was when the last complete copy started.
    covered: AtomicU64,
    /// Syncs run (for pruning).
    syncs: AtomicU64,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)
}

impl Revocations {
    /// Revocations in `accounts`' database, copied to `cache`, for access tokens living
    /// `access_ttl`.
    pub fn new(accounts: Accounts, cache: SharedCache, access_ttl: Duration) -> Self {
        Revocations {
            accounts,
            cache,
            horizon: secs(access_ttl) + secs(Duration::from_secs(CLOCK_LEEWAY_SECS)) + 1,
            state: Arc::default(),
        }
    }

    /// One access token, until it would have expired anyway.
    pub fn token(&self, claims: &Claims) -> Revocation {
        Revocation {
            revoked: Revoked::Token(claims.jti.clone()),
            expires_at: claims.exp + secs(Duration::from_secs(CLOCK_LEEWAY_SECS)) + 1,
        }
    }

    /// Every access token of session `sid` issued so far.
    pub fn session(&self, sid: &str) -> Revocation {
        Revocation {
            revoked: Revoked::Session(sid.to_string()),
            expires_at: unix_secs() + self.horizon,
        }
    }

    /// Every access token of `user_id` issued so far.
    pub fn user(&self, user_id: u64) -> Revocation {
        let now = unix_secs();
        Revocation {
            revoked: Revoked::User {
                user_id,
                cutoff: now,
            },
            expires_at: now + self.horizon,
        }
    }

    /// Copies committed `revocations` to the cache. Never fails the caller (the table is the
    /// truth): a failed copy withdraws the epoch, so services fail closed, and the next sync
    /// rebuilds the whole copy.
    pub async fn publish(&self, revocations: &[Revocation]) {
        for r in revocations {
            if let Err(e) = self.copy(r).await {
                self.state.failed.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "revocation not copied to the cache; rebuilding it");
                if let Err(e) = revocation::withdraw_epoch(self.cache.as_ref()).await {
                    tracing::warn!(error = %e, "revocation epoch could not be withdrawn");
                }
                return;
            }
        }
    }

    async fn copy(&self, r: &Revocation) -> Result<(), CacheError> {
        copy_to(self.cache.clone(), r.clone()).await
    }

    /// Makes sure the cache holds a complete copy; rebuilds it when not. Answers whether it
    /// rebuilt.
    pub async fn sync(&self) -> Result<bool, Error> {
        let failed = self.state.failed.load(Ordering::SeqCst);
        if self.state.syncs.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            let pruned = self.accounts.prune_revocations(unix_secs()).await?;
            tracing::debug!(pruned, "expired revocations deleted");
        }
        let complete = failed == self.state.covered.load(Ordering::SeqCst)
            && revocation::has_epoch(self.cache.as_ref())
                .await
                .map_err(Error::RevocationCopy)?;
        if complete {
            return Ok(false);
        }
        let live = latest_cutoffs(self.accounts.live_revocations(unix_secs()).await?);
        let entries = live.len();
        let cache = self.cache.clone();
        let mut copies = futures::stream::iter(live)
            .map(move |r| copy_to(cache.clone(), r))
            .buffer_unordered(REBUILD_CONCURRENCY);
        while let Some(done) = copies.next().await {
            done.map_err(Error::RevocationCopy)?;
        }
        let epoch = uuid::Uuid::new_v4().to_string();
        revocation::publish_epoch(self.cache.as_ref(), &epoch)
            .await
            .map_err(Error::RevocationCopy)?;
        self.state.covered.store(failed, Ordering::SeqCst);
        tracing::info!(entries, %epoch, "revocations copied to the cache");
        Ok(true)
    }

    /// Runs [`Revocations::sync`] every `interval` until `shutdown`.
    pub fn spawn(self, interval: Duration, shutdown: Shutdown) {
        mall_common::worker::spawn_periodic("revocation sync", interval, shutdown, move || {
            let this = self.clone();
            async move {
                if let Err(e) = this.sync().await {
                    tracing::warn!(error = %e, "revocation sync failed; retrying");
                }
            }
        });
    }
}

/// Writes `r` to `cache` until it expires.
async fn copy_to(cache: SharedCache, r: Revocation) -> Result<(), CacheError> {
    let ttl = u64::try_from(r.expires_at - unix_secs())
        .unwrap_or(0)
        .max(1);
    r.revoked
        .publish(cache.as_ref(), Duration::from_secs(ttl))
        .await
}

/// `live` with one entry per user, the latest cutoff (the copies are written concurrently, so
/// two entries of one user could land in either order).
fn latest_cutoffs(live: Vec<Revocation>) -> Vec<Revocation> {
    let mut users: std::collections::HashMap<u64, Revocation> = Default::default();
    let mut out = Vec::with_capacity(live.len());
    for r in live {
        match r.revoked {
            Revoked::User { user_id, cutoff } => {
                let keep = users.get(&user_id).is_none_or(|seen| match seen.revoked {
                    Revoked::User { cutoff: c, .. } => cutoff >= c,
                    _ => true,
                });
                if keep {
                    users.insert(user_id, r);
                }
            }
            _ => out.push(r),
        }
    }
    out.extend(users.into_values());
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use async_trait::async_trait;
    use mall_common::cache::{Cache, MemoryCache};
    use mall_common::config::DatabaseSettings;
    use mall_common::store::Database;

    use super::*;

    /// The in-process cache, whose writes fail while `writes_down` is set and whose deletes
    /// fail while `deletes_down` is.
    struct Flaky {
        inner: MemoryCache,
        writes_down: AtomicBool,
        deletes_down: AtomicBool,
    }

    fn fails(flag: &AtomicBool) -> Result<(), CacheError> {
        if flag.load(Ordering::SeqCst) {
            Err(CacheError::new("injected: cache down"))
        } else {
            Ok(())
        }
    }

    impl Flaky {
        fn check(&self) -> Result<(), CacheError> {
            fails(&self.writes_down)
        }
    }

    #[async_trait]
    impl Cache for Flaky {
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
            self.inner.get(key).await
        }
        async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
            self.inner.get_many(keys).await
        }
        async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
            self.check()?;
            self.inner.set(key, value, ttl).await
        }
        async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
            self.check()?;
            self.inner.set_nx(key, value, ttl).await
        }
        async fn delete(&self, key: &str) -> Result<(), CacheError> {
            fails(&self.deletes_down)?;
            self.inner.delete(key).await
        }
        async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
            self.check()?;
            self.inner.incr(key, ttl).await
        }
        async fn clear(&self) -> Result<u64, CacheError> {
            self.inner.clear().await
        }
        async fn ping(&self) -> Result<(), CacheError> {
            self.check()
        }
    }

    /// Revocations on a fresh SQLite database, copied to a [`Flaky`] cache.
    struct Setup {
        _dir: tempfile::TempDir,
        accounts: Accounts,
        flaky: Arc<Flaky>,
        cache: SharedCache,
        revocations: Revocations,
    }

    impl Setup {
        async fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/auth.db?mode=rwc", dir.path().display());
            let settings = DatabaseSettings::default();
            let db = Database::connect(&url, &settings, &crate::store::MIGRATIONS)
                .await
                .unwrap();
            let accounts = Accounts::new(db);
            let flaky = Arc::new(Flaky {
                inner: MemoryCache::new("t:".into(), 100),
                writes_down: AtomicBool::new(false),
                deletes_down: AtomicBool::new(false),
            });
            let cache: SharedCache = flaky.clone();
            let ttl = Duration::from_secs(60);
            let revocations = Revocations::new(accounts.clone(), cache.clone(), ttl);
            Setup {
                _dir: dir,
                accounts,
                flaky,
                cache,
                revocations,
            }
        }

        /// Commits `r` and copies it, as a use case does.
        async fn revoke(&self, r: &Revocation) {
            let one = std::slice::from_ref(r);
            self.accounts.record_revocations(one).await.unwrap();
            self.revocations.publish(one).await;
        }

        async fn holds(&self, r: &Revocation) -> bool {
            self.cache.get(&r.revoked.key()).await.unwrap().is_some()
        }

        async fn has_epoch(&self) -> bool {
            revocation::has_epoch(self.cache.as_ref()).await.unwrap()
        }

        fn cache_down(&self, writes: bool, deletes: bool) {
            self.flaky.writes_down.store(writes, Ordering::SeqCst);
            self.flaky.deletes_down.store(deletes, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_copy_that_failed_is_rebuilt_and_meanwhile_the_cache_fails_closed() {
        let t = Setup::new().await;
        assert!(
            t.revocations.sync().await.unwrap(),
            "a new cache gets a copy"
        );
        assert!(
            !t.revocations.sync().await.unwrap(),
            "a complete copy stays"
        );

        // The cache refuses the copy but takes the withdrawal: services fail closed at once,
        // and the next sync restores everything.
        let first = t.revocations.session("s-1");
        t.cache_down(true, false);
        t.revoke(&first).await;
        assert!(!t.has_epoch().await, "withdrawn");
        t.cache_down(false, false);
        assert!(
            t.revocations.sync().await.unwrap(),
            "the failed copy is redone"
        );
        assert!(t.holds(&first).await, "restored from the table");
        assert!(t.has_epoch().await);

        // It refuses the withdrawal too: the epoch stays, yet the next sync still rebuilds.
        let second = t.revocations.session("s-2");
        t.cache_down(true, true);
        t.revoke(&second).await;
        t.cache_down(false, false);
        assert!(!t.holds(&second).await);
        assert!(
            t.revocations.sync().await.unwrap(),
            "rebuilt with the epoch there"
        );
        assert!(t.holds(&second).await);

        // A wiped cache (no epoch) is rebuilt from the table, every row of it.
        let third = t.revocations.user(7);
        t.revoke(&third).await;
        t.cache.clear().await.unwrap();
        assert!(t.revocations.sync().await.unwrap());
        for r in [&first, &second, &third] {
            assert!(t.holds(r).await, "{r:?}");
        }
    }

    #[test]
    fn one_copy_per_user_with_the_latest_cutoff() {
        let user = |cutoff| Revocation {
            revoked: Revoked::User { user_id: 7, cutoff },
            expires_at: cutoff + 100,
        };
        let token = Revocation {
            revoked: Revoked::Token("j".into()),
            expires_at: 5,
        };
        let out = latest_cutoffs(vec![user(30), token.clone(), user(10), user(20)]);
        assert_eq!(out, vec![token, user(30)]);
    }
}
