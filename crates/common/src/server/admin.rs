//! The admin HTTP port: `/metrics` (Prometheus text), `/healthz` (the process answers) and
//! `/readyz` (every registered dependency answers, and the server is not shutting down).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use futures::future::BoxFuture;

use crate::telemetry::Metrics;

/// How long one readiness check may take.
pub const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A dependency `/readyz` checks.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// `check` as a [`ReadyCheck`].
pub fn ready_check<F, Fut>(check: F) -> ReadyCheck
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    Arc::new(move || Box::pin(check()))
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    ready_checks: Arc<Vec<(String, ReadyCheck)>>,
    stopping: Arc<AtomicBool>,
}

/// The admin routes; `/readyz` fails once `stopping` is set.
pub fn router(
    metrics: Metrics,
    ready_checks: Arc<Vec<(String, ReadyCheck)>>,
    stopping: Arc<AtomicBool>,
) -> axum::Router {
    axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready_handler))
        .with_state(AdminState {
            metrics,
            ready_checks,
            stopping,
        })
}

async fn metrics_handler(State(state): State<AdminState>) -> impl axum::response::IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

async fn ready_handler(State(state): State<AdminState>) -> (StatusCode, String) {
    if state.stopping.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into());
    }
    let mut failed = Vec::new();
    for (name, check) in state.ready_checks.iter() {
        match tokio::time::timeout(READY_CHECK_TIMEOUT, check()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(dependency = %name, error = %e, "readiness check failed");
                failed.push(name.clone());
            }
            Err(_) => {
                tracing::warn!(dependency = %name, "readiness check timed out");
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", failed.join(", ")),
        )
    }
}
