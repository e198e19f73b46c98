//! Consul KV as the config centre (配置中心): YAML under `mall/config/<service>` (prefix
//! `MALL_CONFIG_CONSUL_PREFIX`), layered between the file and the environment, read at start
//! and watched with blocking queries while the service runs.
//!
//! On: `MALL_CONFIG_CONSUL=http://127.0.0.1:8500` (the agent). At start the key is read (a
//! missing key is an empty layer; an agent that does not answer within [`START_WAIT`] stops the
//! start: the operator asked for its settings). While running, every change of the key is
//! loaded as a whole, through the same layering and validation as at start:
//!
//! - a bad value (unknown key, malformed, invalid) is refused, the last good settings stay, and
//!   `config_reloads_total{result="rejected"}` counts it, with the error (naming the key) in
//!   the log;
//! - reloadable settings take effect at once ([`RELOADABLE`]: the log filter, the admission
//!   limits, the clients' deadlines, retries, breakers and ejection, the feature flags, and
//!   whatever a service adds with `ServerBuilder::on_reload`); any other changed key is logged as needing a restart
//!   (`config_reloads_total{result="restart_needed"}`), and keeps its running value.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use super::{ConfigError, Source};

/// The agent's URL; unset, there is no config centre.
pub const CONSUL_ENV: &str = "MALL_CONFIG_CONSUL";
/// The key prefix (default [`DEFAULT_PREFIX`]).
pub const PREFIX_ENV: &str = "MALL_CONFIG_CONSUL_PREFIX";
/// Keys live under `mall/config/<service>`.
pub const DEFAULT_PREFIX: &str = "mall/config";
/// How long a start waits for the agent.
pub const START_WAIT: Duration = Duration::from_secs(10);
/// The `wait` of each blocking query.
pub const WATCH_WAIT: Duration = Duration::from_secs(300);

/// The settings that change without a restart (dotted keys or section prefixes).
pub const RELOADABLE: &[&str] = &[
    "telemetry.log_filter",
    "server.adaptive_concurrency",
    "server.min_concurrent_rpcs",
    "server.max_concurrent_rpcs",
    "server.internal_reserve_percent",
    "server.max_queued_rpcs",
    "server.queue_timeout",
    "client.request_timeout",
    "client.method_timeout",
    "client.retry",
    "client.breaker",
    "client.balance",
    "features",
];

/// Where the config centre is.
#[derive(Debug, Clone)]
pub struct Centre {
    agent: String,
    prefix: String,
    http: reqwest::Client,
}

/// What names a centre key in errors.
pub(crate) fn origin(service: &str) -> String {
    format!("the config centre's key for {service}")
}

impl Centre {
    /// The centre `env` names ([`CONSUL_ENV`], [`PREFIX_ENV`]); `None` without one.
    pub fn from_env(env: &BTreeMap<String, String>) -> Option<Centre> {
        let agent = env
            .get(CONSUL_ENV)?
            .trim()
            .trim_end_matches('/')
            .to_string();
        if agent.is_empty() {
            return None;
        }
        let prefix = env
            .get(PREFIX_ENV)
            .map_or(DEFAULT_PREFIX, String::as_str)
            .trim_matches('/')
            .to_string();
        let http = crate::http::client()
            .timeout(WATCH_WAIT + Duration::from_secs(30))
            .build()
            .ok()?;
        Some(Centre {
            agent,
            prefix,
            http,
        })
    }

    /// The key of `service`.
    pub fn key(&self, service: &str) -> String {
        format!("{}/{service}", self.prefix)
    }

    /// The YAML of `service` (`None`: no key) and the index to block on next; with `index`,
    /// waits up to `wait` for a change past it.
    pub async fn read(
        &self,
        service: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> anyhow::Result<(Option<String>, u64)> {
        let mut url = format!("{}/v1/kv/{}", self.agent, self.key(service));
        if let Some(index) = index {
            url.push_str(&format!("?index={index}&wait={}s", wait.as_secs().max(1)));
        }
        let resp = self.http.get(&url).send().await?;
        let index = resp
            .headers()
            .get("X-Consul-Index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok((None, index));
        }
        let resp = resp.error_for_status()?;
        let entries: Vec<Value> = resp.json().await?;
        let value = entries
            .first()
            .and_then(|e| e.get("Value"))
            .and_then(Value::as_str)
            .map(|b64| base64::engine::general_purpose::STANDARD.decode(b64))
            .transpose()?
            .map(String::from_utf8)
            .transpose()?;
        Ok((Some(value.unwrap_or_default()), index))
    }
}

impl Source {
    /// Reads the config centre's YAML of each of `services` into [`Source::kv`], when the
    /// environment names a centre (else unchanged). Fails when the agent does not answer within
    /// [`START_WAIT`].
    pub async fn read_centre(mut self, services: &[&str]) -> Result<Source, ConfigError> {
        let Some(centre) = Centre::from_env(&self.env) else {
            return Ok(self);
        };
        let deadline = tokio::time::Instant::now() + START_WAIT;
        for service in services {
            loop {
                match centre.read(service, None, WATCH_WAIT).await {
                    Ok((text, _)) => {
                        if let Some(text) = text {
                            self.kv.insert((*service).to_string(), text);
                        }
                        break;
                    }
                    Err(e) if tokio::time::Instant::now() < deadline => {
                        tracing::warn!(error = %e, key = %centre.key(service), "config centre unreachable; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => {
                        return Err(ConfigError::invalid(
                            CONSUL_ENV,
                            format!("the config centre did not answer: {e}"),
                        ));
                    }
                }
            }
        }
        self.centre = Some(centre);
        Ok(self)
    }
}

/// What a reload found: the whole new settings (for the diff) and the reloadable values.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Every setting, as the layers give it (dotted leaves are compared).
    pub tree: Value,
    /// `telemetry.log_filter`.
    pub log_filter: String,
    /// `server.*` admission limits.
    pub server: super::ServerSettings,
    /// `client.*` (deadlines, retries, breakers, ejection).
    pub client: super::ClientSettings,
    /// `features.*`.
    pub features: super::FeatureFlags,
}

type LoadFn = dyn Fn(&Source) -> Result<Loaded, ConfigError> + Send + Sync;

/// Loads a service's settings again from a source whose centre layer changed (made by
/// [`super::load`] when a centre is configured; the server watches with it).
#[derive(Clone)]
pub struct Reloader {
    /// The service.
    pub service: String,
    /// The centre.
    pub centre: Centre,
    /// The source the running settings came from.
    pub source: Source,
    /// The running settings, as loaded.
    pub current: Loaded,
    pub(crate) load: Arc<LoadFn>,
    /// What the service added: keys it applies itself and the hooks that apply them.
    pub(crate) extra: Vec<(&'static [&'static str], Arc<ReloadHook>)>,
}

/// Applies reloaded settings (see [`Reloader::on_reload`]).
pub type ReloadHook = dyn Fn(&Loaded) + Send + Sync;

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("service", &self.service)
            .field("key", &self.centre.key(&self.service))
            .finish_non_exhaustive()
    }
}

/// How one change of the key was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Refused (the error names the key); the running settings stay.
    Rejected(String),
    /// Loaded: the reloadable keys that changed (applied) and the others (need a restart).
    Loaded {
        /// Changed and applied.
        applied: Vec<String>,
        /// Changed, not applied until a restart.
        restart: Vec<String>,
    },
}

impl Reloader {
    /// Makes `keys` (dotted keys or section prefixes, e.g. `checkout.step_timeout`) reloadable:
    /// `hook` runs with every change that loaded, after the platform's own settings applied.
    /// The hook reads what it needs from [`Loaded::tree`] (or the typed platform fields).
    pub fn on_reload(&mut self, keys: &'static [&'static str], hook: Arc<ReloadHook>) {
        self.extra.push((keys, hook));
    }

    /// Runs the hooks of [`Reloader::on_reload`] with `loaded`.
    pub fn run_hooks(&self, loaded: &Loaded) {
        for (_, hook) in &self.extra {
            hook(loaded);
        }
    }

    fn reloadable(&self, key: &str) -> bool {
        reloadable(RELOADABLE, key) || self.extra.iter().any(|(keys, _)| reloadable(keys, key))
    }

    /// Loads `text` (the key's new YAML; `None` when the key was deleted) over the running
    /// source; on success the new settings become the ones the next change is compared with (a
    /// key that needs a restart is reported once).
    pub fn take(&mut self, text: Option<String>) -> (Outcome, Option<Loaded>) {
        let mut source = self.source.clone();
        match text {
            Some(text) => source.kv.insert(self.service.clone(), text),
            None => source.kv.remove(&self.service),
        };
        let loaded = match (self.load)(&source) {
            Ok(loaded) => loaded,
            Err(e) => return (Outcome::Rejected(e.to_string()), None),
        };
        let mut changed = Vec::new();
        diff(
            &self.current.tree,
            &loaded.tree,
            String::new(),
            &mut changed,
        );
        let (applied, restart): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|k| self.reloadable(k));
        self.source = source;
        self.current = loaded.clone();
        (Outcome::Loaded { applied, restart }, Some(loaded))
    }
}

fn reloadable(keys: &[&str], key: &str) -> bool {
    keys.iter()
        .any(|r| key == *r || key.starts_with(&format!("{r}.")))
}

/// The dotted keys whose values differ between `old` and `new`.
fn diff(old: &Value, new: &Value, path: String, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff(
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    child,
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(path),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_diff_names_changed_leaves() {
        let mut out = Vec::new();
        diff(
            &json!({"a": {"b": 1, "c": "x"}, "d": true}),
            &json!({"a": {"b": 2, "c": "x"}, "e": 1}),
            String::new(),
            &mut out,
        );
        assert_eq!(out, ["a.b", "d", "e"]);
        assert!(reloadable(RELOADABLE, "telemetry.log_filter"));
        assert!(reloadable(RELOADABLE, "server.max_concurrent_rpcs"));
        assert!(reloadable(RELOADABLE, "client.retry.max_attempts"));
        assert!(reloadable(RELOADABLE, "features.alipay"));
        assert!(!reloadable(RELOADABLE, "server.port"));
        assert!(!reloadable(RELOADABLE, "client.connect_timeout"));
        assert!(!reloadable(RELOADABLE, "database.url"));
    }
}
