//! `telemetry.*`: logs and trace export.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Profile, Validate};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum LogFormat {
    /// Multi-line, human-readable; coloured only on a terminal.
    #[default]
    Pretty,
    /// One line per event, human-readable; coloured only on a terminal.
    Compact,
    /// One JSON object per line, for log shippers.
    Json,
}

impl TryFrom<String> for LogFormat {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "pretty" => Ok(LogFormat::Pretty),
            "compact" => Ok(LogFormat::Compact),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "`{other}` is not a log format (expected pretty, compact or json)"
            )),
        }
    }
}

/// Default of `telemetry.log_filter`.
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Default of `telemetry.flush_timeout`.
pub const DEFAULT_TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The standard variable naming the OTLP collector; used when `telemetry.otlp_endpoint` is unset.
pub const OTLP_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// `telemetry.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    /// `pretty`, `compact` or `json`.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,sqlx=warn`. `RUST_LOG` wins when set.
    pub log_filter: String,
    /// Where spans go over OTLP/gRPC, e.g. `http://jaeger:4317`; unset (the default) exports
    /// nothing. [`OTLP_ENDPOINT_ENV`] fills it in when unset.
    pub otlp_endpoint: Option<String>,
    /// How long a stopping server (and the process, at its end) waits for its last spans to
    /// reach the collector before it goes on without them.
    #[serde(with = "super::duration")]
    pub flush_timeout: Duration,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            log_format: LogFormat::default(),
            log_filter: DEFAULT_LOG_FILTER.into(),
            otlp_endpoint: None,
            flush_timeout: DEFAULT_TRACE_FLUSH_TIMEOUT,
        }
    }
}

impl TelemetrySettings {
    /// Takes the endpoint from the standard `OTEL_EXPORTER_OTLP_ENDPOINT` of `env` when
    /// `telemetry.otlp_endpoint` is unset (an empty value counts as unset).
    pub(super) fn fill_from_env(&mut self, env: &std::collections::BTreeMap<String, String>) {
        if self.otlp_endpoint.as_deref().is_none_or(str::is_empty) {
            self.otlp_endpoint = env
                .get(OTLP_ENDPOINT_ENV)
                .filter(|v| !v.trim().is_empty())
                .map(|v| v.trim().to_string());
        }
    }
}

impl Validate for TelemetrySettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        if self.flush_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "telemetry.flush_timeout",
                "must be positive",
            ));
        }
        let Some(endpoint) = self.otlp_endpoint.as_deref() else {
            return Ok(());
        };
        let key = "telemetry.otlp_endpoint";
        // The value is not echoed: a URL may carry credentials.
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e| ConfigError::invalid(key, format!("not a URL: {e}")))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(ConfigError::invalid(
                key,
                "credentials in the URL are not supported",
            ));
        }
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(ConfigError::invalid(
                key,
                "must be http://host:port (OTLP/gRPC without TLS, e.g. http://jaeger:4317)",
            ));
        }
        Ok(())
    }
}
