//! The shared cache on Redis (a connection manager that reconnects on its own).

use std::time::Duration;

use async_trait::async_trait;

use super::{Cache, CacheError};
use crate::config::redact_url;

/// Redis cache over one multiplexed, auto-reconnecting connection.
pub struct RedisCache {
    prefix: String,
    conn: redis::aio::ConnectionManager,
    incr_script: redis::Script,
}

/// INCR that sets the TTL only when it creates the counter, atomically.
const INCR_WITH_TTL: &str = r"
local v = redis.call('INCR', KEYS[1])
if v == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return v";

impl RedisCache {
    /// Connects to `url` (fails when Redis is unreachable).
    pub async fn connect(url: &str, prefix: String) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(Duration::from_secs(5), client.get_connection_manager())
            .await
            .map_err(|_| CacheError(format!("timed out connecting to {}", redact_url(url))))??;
        Ok(RedisCache {
            prefix,
            conn,
            incr_script: redis::Script::new(INCR_WITH_TTL),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

/// `s` matched literally in a Redis glob pattern.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CacheError> {
        let mut c = self.conn.clone();
        Ok(redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut c)
            .await?)
    }

    async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(key));
        }
        Ok(cmd.query_async(&mut c).await?)
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn set_nx(&self, key: &str, value: &[u8], ttl: Duration) -> Result<bool, CacheError> {
        let mut c = self.conn.clone();
        let reply: Option<String> = redis::cmd("SET")
            .arg(self.key(key))
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut c)
            .await?;
        Ok(reply.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.key(key))
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn incr(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let mut c = self.conn.clone();
        Ok(self
            .incr_script
            .key(self.key(key))
            .arg(millis(ttl))
            .invoke_async(&mut c)
            .await?)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let mut c = self.conn.clone();
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let mut cursor: u64 = 0;
        let mut removed = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await?;
            if !keys.is_empty() {
                removed += redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<u64>(&mut c)
                    .await?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let mut c = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut c).await?;
        Ok(())
    }
}
