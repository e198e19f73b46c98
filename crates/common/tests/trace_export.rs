//! Trace export costs nothing until an endpoint is set: no exporter thread, no export. Its own
//! test binary, since the export is process-wide once installed.

use mall_common::config::TelemetrySettings;
use mall_common::telemetry::{self, trace};

/// Threads of this process whose name starts with `prefix` (Linux: `/proc/self/task`).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[tokio::test]
async fn export_starts_only_with_an_endpoint() {
    let off = telemetry::subscriber("cart", &TelemetrySettings::default(), std::io::sink, false);
    tracing::subscriber::with_default(off, || {
        tracing::info_span!("rpc").in_scope(|| tracing::info!("handled"));
        // Below the log filter nothing is even dispatched.
        assert!(!tracing::enabled!(tracing::Level::DEBUG));
    });
    assert!(!trace::enabled());
    assert!(trace::for_service("cart").is_none());
    assert_eq!(threads_named("OpenTelemetry"), 0);

    // An endpoint nobody listens on: export is on, its batch thread runs, requests never wait.
    let settings = TelemetrySettings {
        otlp_endpoint: Some("http://127.0.0.1:9".into()),
        ..TelemetrySettings::default()
    };
    let on = telemetry::subscriber("cart", &settings, std::io::sink, false);
    assert!(trace::enabled());
    assert!(trace::for_service("cart").is_some());
    // The batch thread names itself once it runs.
    let waited = std::time::Instant::now();
    while threads_named("OpenTelemetry") == 0 && waited.elapsed().as_secs() < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(threads_named("OpenTelemetry") >= 1);
    let started = std::time::Instant::now();
    tracing::subscriber::with_default(on, || {
        assert!(!tracing::enabled!(tracing::Level::DEBUG));
        for _ in 0..100 {
            tracing::info_span!("rpc").in_scope(|| tracing::info!("handled"));
        }
    });
    // Spans are queued, never sent inline: well under one connect attempt per span.
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    trace::shutdown().await;
}
