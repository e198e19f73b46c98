//! Logs, metrics and traces.
//!
//! - [`init`] installs the process-wide tracing subscriber (pretty for dev, JSON for online),
//!   filtered by `telemetry.log_filter` or `RUST_LOG`, and with `telemetry.otlp_endpoint` the
//!   trace export ([`trace`]).
//! - [`Metrics`] is a per-server Prometheus registry holding the RED metrics of every RPC
//!   (`grpc_server_handled_total`, `grpc_server_handling_seconds` by service, method and code).
//!   Registries are per server, not global, so several services (and tests) share a process.

mod lines;
mod logging;
mod metrics;
pub mod trace;

pub use lines::flush as flush_logs;
pub use logging::{init, set_log_filter, subscriber};
pub use metrics::*;
