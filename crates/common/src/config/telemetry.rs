//! `telemetry.*`: logs (and, later, trace export).

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

/// `telemetry.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TelemetrySettings {
    /// `pretty`, `compact` or `json`.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,sqlx=warn`. `RUST_LOG` wins when set.
    pub log_filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        TelemetrySettings {
            log_format: LogFormat::default(),
            log_filter: DEFAULT_LOG_FILTER.into(),
        }
    }
}

impl Validate for TelemetrySettings {
    fn validate(&self, _: Profile) -> Result<(), ConfigError> {
        Ok(())
    }
}
