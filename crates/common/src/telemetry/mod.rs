//! Logs and metrics.
//!
//! - [`init_logging`] installs the process-wide tracing subscriber (pretty for dev, JSON for
//!   online), filtered by `telemetry.log_filter` or `RUST_LOG`.
//! - [`Metrics`] is a per-server Prometheus registry holding the RED metrics of every RPC
//!   (`grpc_server_handled_total`, `grpc_server_handling_seconds` by service, method and code).
//!   Registries are per server, not global, so several services (and tests) share a process.

mod logging;
mod metrics;

pub use logging::init_logging;
pub use metrics::*;
