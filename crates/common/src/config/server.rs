//! `server.*`: where a service listens and how it stops.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Profile, Validate, ensure};

/// Offset between a service's gRPC port and its admin HTTP port.
pub const ADMIN_PORT_OFFSET: u16 = 1000;
/// Default of `server.max_concurrent_rpcs`.
pub const DEFAULT_MAX_CONCURRENT_RPCS: u32 = 1_000;
/// Default of `server.min_concurrent_rpcs`.
pub const DEFAULT_MIN_CONCURRENT_RPCS: u32 = 4;
/// Default of `server.internal_reserve_percent`.
pub const DEFAULT_INTERNAL_RESERVE_PERCENT: u32 = 20;
/// Default of `server.max_queued_rpcs`.
pub const DEFAULT_MAX_QUEUED_RPCS: u32 = 1_000;
/// Default of `server.queue_timeout`: long enough that a client coming straight back after a
/// refusal is refused at most ten times a second, short enough that a served call's wait stays
/// within a few checkouts' time (docs/benchmarks.md compares 50, 100 and 500 ms).
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_millis(100);
/// Default of `server.drain_delay`: none on a laptop; set it to a few check intervals where
/// a balancer or Consul must notice NOT_SERVING before the listener closes.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::ZERO;
/// Default of `server.shutdown_grace`: how long in-flight calls may finish after SIGTERM.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// `server.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerSettings {
    /// Interface to bind: `127.0.0.1` by default (nothing off this machine can call it);
    /// `0.0.0.0` or another address only where it must be reachable (compose, Kubernetes), and
    /// then never with the built-in development signing key.
    pub host: IpAddr,
    /// gRPC port; 0 picks a free one (tests).
    pub port: u16,
    /// Admin HTTP port (`/metrics`, `/healthz`, `/readyz`); default gRPC port + 1000, 0 if the
    /// gRPC port is 0.
    pub admin_port: Option<u16>,
    /// How long health reports NOT_SERVING before the listener closes, so balancers notice.
    #[serde(with = "super::duration")]
    pub drain_delay: Duration,
    /// How long in-flight calls may take to finish after shutdown starts.
    #[serde(with = "super::duration")]
    pub shutdown_grace: Duration,
    /// Most RPCs handled at once; beyond it public calls wait for a slot (see
    /// `max_queued_rpcs`) and internal ones are refused with `RESOURCE_EXHAUSTED` (health and
    /// reflection are never refused). With `adaptive_concurrency` the ceiling of the adaptive
    /// limit.
    pub max_concurrent_rpcs: u32,
    /// Whether the limit follows measured latency between `min_concurrent_rpcs` and
    /// `max_concurrent_rpcs` (see `common::server::layers::load_shed`); else it is
    /// `max_concurrent_rpcs`.
    pub adaptive_concurrency: bool,
    /// The adaptive limit's floor (and where it starts, ×16); above `max_concurrent_rpcs` it is
    /// that.
    pub min_concurrent_rpcs: u32,
    /// Share of the limit (percent, ≤ 90) only internal calls (service tokens) may use.
    pub internal_reserve_percent: u32,
    /// Public calls that may wait for a slot at once past the limit (0: refused at once).
    pub max_queued_rpcs: u32,
    /// The longest a public call waits for a slot before `RESOURCE_EXHAUSTED` (within its
    /// own deadline).
    #[serde(with = "super::duration")]
    pub queue_timeout: Duration,
    /// Serve gRPC-Web (`application/grpc-web`, `-text`; HTTP/1.1 too) beside gRPC, so a browser
    /// can call the service directly. Off by default.
    pub grpc_web: bool,
    /// Origins a browser page may call from (CORS), e.g. `https://shop.example.com`; `*` for
    /// any. Empty: no CORS headers (same origin only, behind a gateway). A list in YAML,
    /// comma-separated in the environment.
    #[serde(default, deserialize_with = "super::string_list")]
    pub cors_origins: Vec<String>,
}

impl ServerSettings {
    /// The defaults for a service whose well-known port is `port`.
    pub fn defaults(port: u16) -> Self {
        ServerSettings {
            host: IpAddr::from([127, 0, 0, 1]),
            port,
            admin_port: None,
            drain_delay: DEFAULT_DRAIN_DELAY,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_concurrent_rpcs: DEFAULT_MAX_CONCURRENT_RPCS,
            adaptive_concurrency: true,
            min_concurrent_rpcs: DEFAULT_MIN_CONCURRENT_RPCS,
            internal_reserve_percent: DEFAULT_INTERNAL_RESERVE_PERCENT,
            max_queued_rpcs: DEFAULT_MAX_QUEUED_RPCS,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            grpc_web: false,
            cors_origins: Vec::new(),
        }
    }

    /// The admin port actually used.
    pub fn admin_port(&self) -> u16 {
        match (self.admin_port, self.port) {
            (Some(p), _) => p,
            (None, 0) => 0,
            (None, p) => p.saturating_add(ADMIN_PORT_OFFSET),
        }
    }
}

impl Validate for ServerSettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        ensure(
            self.max_concurrent_rpcs > 0,
            "server.max_concurrent_rpcs",
            "must be at least 1",
        )?;
        ensure(
            self.min_concurrent_rpcs > 0,
            "server.min_concurrent_rpcs",
            "must be at least 1",
        )?;
        ensure(
            self.internal_reserve_percent <= 90,
            "server.internal_reserve_percent",
            "must be at most 90",
        )?;
        ensure(
            self.queue_timeout <= Duration::from_secs(60),
            "server.queue_timeout",
            "must be at most 60s",
        )?;
        ensure(
            self.cors_origins.is_empty() || self.grpc_web,
            "server.cors_origins",
            "needs server.grpc_web",
        )?;
        for origin in &self.cors_origins {
            ensure(
                is_origin(origin),
                "server.cors_origins",
                format!("`{origin}` is not an origin (scheme://host[:port], or *)"),
            )?;
        }
        Ok(())
    }
}

/// `*`, or `http(s)://host[:port]` with nothing after it (what browsers send as `Origin`).
fn is_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::is_origin;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for ok in [
            "*",
            "https://shop.example.com",
            "http://localhost:5173",
            "http://[::1]:8080",
        ] {
            assert!(is_origin(ok), "{ok}");
        }
        for bad in [
            "",
            "shop.example.com",
            "https://",
            "https://a.com/path",
            "ftp://a.com",
            "https://a b",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
