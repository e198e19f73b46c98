//! The context of the RPC being handled: its request id and deadline (later, its trace), kept
//! in a task-local by the server's layers and read by the client's when this task calls
//! another service. This is the one module both sides depend on, with the `grpc-timeout` wire
//! format they share.

use std::future::Future;
use std::time::{Duration, Instant};

/// Metadata key carrying the request id across services and back to the client.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Metadata key of a call's deadline (gRPC over HTTP/2).
pub const GRPC_TIMEOUT_HEADER: &str = "grpc-timeout";

/// The header on a call a server refused before any work (its admission layer): `limit` (past
/// its concurrency limit, with `RESOURCE_EXHAUSTED`) or `deadline` (a deadline shorter than its
/// calls take, with `DEADLINE_EXCEEDED`). Such a call never ran.
pub const SHED_HEADER: &str = "x-mall-shed";
/// With a refusal (`limit` or `queue`): when to try this server again, in whole milliseconds
/// (gRPC's retry pushback, gRFC A6). About one call's latency here, longer the more calls were
/// refused lately.
pub const PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// The retry pushback ([`PUSHBACK_HEADER`]) a refusal carries, if any and well-formed.
pub fn retry_pushback(status: &tonic::Status) -> Option<Duration> {
    let ms = status
        .metadata()
        .get(PUSHBACK_HEADER)?
        .to_str()
        .ok()?
        .parse::<u64>()
        .ok()?;
    Some(Duration::from_millis(ms))
}
/// Longest request id kept from a caller; longer ones are replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// What an incoming RPC hands on to the calls made while handling it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id (the caller's, or one made up at the edge).
    pub id: String,
    /// When the caller stops waiting, if it said.
    pub deadline: Option<Instant>,
}

tokio::task_local! {
    static REQUEST: RequestContext;
}

impl RequestContext {
    /// Runs `fut` with this context as the task's current one.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        REQUEST.scope(self, fut).await
    }
}

/// The request id of the RPC being handled by this task, if any. The client sends it as
/// `x-request-id` on outgoing calls, so the log lines of one request share an id across the
/// fleet.
pub fn current_request_id() -> Option<String> {
    REQUEST.try_with(|r| r.id.clone()).ok()
}

/// The deadline of the RPC being handled by this task (from its `grpc-timeout`), if any. The
/// client caps outgoing calls' deadlines with it, so a caller's deadline holds across hops.
pub fn current_deadline() -> Option<Instant> {
    REQUEST.try_with(|r| r.deadline).ok().flatten()
}

/// The `(service, method)` of a gRPC path `/package.Service/Method`.
pub fn split_path(path: &str) -> (&str, &str) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    (service, method)
}

/// Parses a `grpc-timeout` header value (`<digits><unit>`).
pub fn parse_grpc_timeout(v: &http::HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?;
    if s.len() < 2 || s.len() > 9 {
        return None;
    }
    let (digits, unit) = s.split_at(s.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `timeout` as a `grpc-timeout` value in whole milliseconds (at least 1; the format allows at
/// most 8 digits).
pub fn format_grpc_timeout(timeout: Duration) -> http::HeaderValue {
    let ms = timeout.as_millis().clamp(1, 99_999_999);
    http::HeaderValue::from_str(&format!("{ms}m")).unwrap_or(http::HeaderValue::from_static("1m"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_and_format() {
        let v = http::HeaderValue::from_static("200m");
        assert_eq!(parse_grpc_timeout(&v), Some(Duration::from_millis(200)));
        assert_eq!(
            parse_grpc_timeout(&http::HeaderValue::from_static("1x")),
            None
        );
        assert_eq!(
            parse_grpc_timeout(&http::HeaderValue::from_static("2S")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(format_grpc_timeout(Duration::from_micros(10)), "1m");
        assert_eq!(format_grpc_timeout(Duration::from_secs(3)), "3000m");
        assert_eq!(
            format_grpc_timeout(Duration::from_secs(10_000_000)),
            "99999999m"
        );
    }

    #[tokio::test]
    async fn the_context_is_seen_only_inside_its_scope() {
        assert_eq!(current_request_id(), None);
        let ctx = RequestContext {
            id: "r-1".into(),
            deadline: None,
        };
        let seen = ctx.scope(async { current_request_id() }).await;
        assert_eq!(seen.as_deref(), Some("r-1"));
        assert_eq!(current_deadline(), None);
    }
}
