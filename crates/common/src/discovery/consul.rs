//! Discovery through Consul: a thin client of the local agent's HTTP API on `reqwest`.
//!
//! - [`ConsulRegistry::register`] puts this instance in the agent's catalog with a gRPC health
//!   check the agent runs itself (`grpc.health.v1.Health/Check`, served by every server; with
//!   mutual TLS, which the agent cannot speak, `GET /readyz` on the admin port) and a
//!   `DeregisterCriticalServiceAfter`, so an instance that dies without deregistering turns
//!   critical, leaves `passing` queries, and is eventually removed. A keep-alive task re-registers
//!   when the agent forgot the instance (agent restarted without its data dir).
//!   [`Registration::deregister`] removes it on graceful shutdown.
//! - [`ConsulResolver::watch`] follows the passing instances of a service with blocking queries
//!   (`GET /v1/health/service/<name>?passing=true&index=N&wait=Ws`), resetting the index when it
//!   goes backwards or is invalid, backing off with jitter on errors, and keeping the last good
//!   set while the agent is unreachable.
//!

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

use async_trait::async_trait;

use super::{Announcement, InstancesWatch, Register, Registered, Resolve};
use crate::backoff::backoff;
use crate::config::ConsulSettings;

/// The tag every instance is registered with.
pub const SERVICE_TAG: &str = "mall";
/// Extra time a blocking query may take over its `wait` (Consul adds up to `wait/16` jitter).
pub const BLOCKING_QUERY_MARGIN: Duration = Duration::from_secs(5);
/// Response header carrying the index of a blocking query.
pub const CONSUL_INDEX_HEADER: &str = "x-consul-index";

/// A Consul agent at `settings.address`.
#[derive(Clone, Debug)]
struct Agent {
    http: reqwest::Client,
    base: String,
    /// Timeout of the non-blocking calls (register, deregister, service lookup).
    timeout: Duration,
}

impl Agent {
    fn new(settings: &ConsulSettings) -> anyhow::Result<Self> {
        let timeout = settings.agent_timeout;
        let http = crate::http::client().connect_timeout(timeout).build()?;
        Ok(Agent {
            http,
            base: settings.address.trim_end_matches('/').to_string(),
            timeout,
        })
    }

    async fn put_json(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<()> {
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .json(body)
            .timeout(self.timeout)
            .send()
            .await?;
        check_status(resp).await
    }

    async fn put(&self, path: &str) -> anyhow::Result<()> {
        let resp = self
            .http
            .put(format!("{}{path}", self.base))
            .timeout(self.timeout)
            .send()
            .await?;
        check_status(resp).await
    }

    /// `Some(true)` when the agent knows service `id`, `Some(false)` on 404.
    async fn knows_service(&self, id: &str) -> anyhow::Result<bool> {
        let resp = self
            .http
            .get(format!("{}/v1/agent/service/{id}", self.base))
            .timeout(self.timeout)
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        check_status(resp).await?;
        Ok(true)
    }
}

async fn check_status(resp: reqwest::Response) -> anyhow::Result<()> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    anyhow::bail!("consul answered {status}: {}", body.trim())
}

/// Formats a duration the way Consul parses it (Go's `time.ParseDuration`).
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Registers instances with the local Consul agent.
#[derive(Clone, Debug)]
pub struct ConsulRegistry {
    agent: Agent,
    advertise_host: String,
    check_interval: Duration,
    check_timeout: Duration,
    deregister_after: Duration,
}

/// One registered instance; dropping it stops the keep-alive but does not deregister (the
/// agent's check then turns critical, as for a crashed process).
#[derive(Debug)]
pub struct Registration {
    agent: Agent,
    id: String,
    keepalive: JoinHandle<()>,
}

impl ConsulRegistry {
    /// A registry for the agent and check timings in `settings`.
    pub fn new(settings: &ConsulSettings) -> anyhow::Result<Self> {
        Ok(ConsulRegistry {
            agent: Agent::new(settings)?,
            advertise_host: settings.advertise_host.clone(),
            check_interval: settings.check_interval,
            check_timeout: settings.check_timeout,
            deregister_after: settings.deregister_critical_after,
        })
    }

    /// The id an instance is registered under: `<name>-<host>-<port>`.
    pub fn instance_id(service: &str, host: &str, port: u16) -> String {
        format!("{service}-{host}-{port}")
    }

    /// Registers `service` at `host:port` with the agent running `check`, then keeps it
    /// registered until the returned handle is deregistered or dropped.
    pub async fn register(
        &self,
        service: &str,
        check: AgentCheck<'_>,
        host: &str,
        port: u16,
        admin_port: u16,
        version: &str,
    ) -> anyhow::Result<Registration> {
        let id = Self::instance_id(service, host, port);
        let authority = crate::config::format_authority(host, port);
        let mut check = match check {
            AgentCheck::Grpc(grpc_service) => json!({
                "Name": format!("{service} gRPC health"),
                "GRPC": match grpc_service {
                    Some(name) => format!("{authority}/{name}"),
                    None => authority,
                },
            }),
            AgentCheck::Readyz => json!({
                "Name": format!("{service} readiness"),
                "HTTP": format!(
                    "http://{}/readyz",
                    crate::config::format_authority(host, admin_port)
                ),
                "Method": "GET",
            }),
        };
        check["Interval"] = go_duration(self.check_interval).into();
        check["Timeout"] = go_duration(self.check_timeout).into();
        check["DeregisterCriticalServiceAfter"] = go_duration(self.deregister_after).into();
        let body = json!({
            "ID": id,
            "Name": service,
            "Address": host,
            "Port": port,
            "Tags": [SERVICE_TAG],
            "Meta": { "version": version, "admin_port": admin_port.to_string() },
            "Check": check,
        });
        self.agent
            .put_json("/v1/agent/service/register", &body)
            .await
            .map_err(|e| anyhow::anyhow!("registering {id} with consul: {e}"))?;
        tracing::info!(%id, "registered with consul");
        let keepalive = tokio::spawn(keep_alive(
            self.agent.clone(),
            id.clone(),
            body,
            self.check_interval,
        ));
        Ok(Registration {
            agent: self.agent.clone(),
            id,
            keepalive,
        })
    }
}

/// The health check the agent runs for an instance.
#[derive(Debug, Clone, Copy)]
pub enum AgentCheck<'a> {
    /// `grpc.health.v1.Health/Check` of this gRPC service (the whole server when `None`).
    Grpc(Option<&'a str>),
    /// `GET /readyz` on the admin port (for gRPC ports the agent cannot reach: mutual TLS).
    Readyz,
}

async fn keep_alive(agent: Agent, id: String, body: serde_json::Value, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match agent.knows_service(&id).await {
            Ok(true) => {}
            Ok(false) => match agent.put_json("/v1/agent/service/register", &body).await {
                Ok(()) => tracing::warn!(%id, "consul forgot this instance; registered again"),
                Err(e) => tracing::warn!(%id, error = %e, "re-registering with consul failed"),
            },
            Err(e) => tracing::debug!(%id, error = %e, "consul keep-alive lookup failed"),
        }
    }
}

impl Registration {
    /// The instance id in Consul.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops the keep-alive and removes the instance from the agent.
    pub async fn deregister(self) -> anyhow::Result<()> {
        self.keepalive.abort();
        let path = format!("/v1/agent/service/deregister/{}", self.id);
        self.agent
            .put(&path)
            .await
            .map_err(|e| anyhow::anyhow!("deregistering {} from consul: {e}", self.id))?;
        tracing::info!(id = %self.id, "deregistered from consul");
        Ok(())
    }
}

#[async_trait]
impl Register for ConsulRegistry {
    /// Registers at `discovery.consul.advertise_host` with a gRPC check of the whole server, or,
    /// when the gRPC port requires mutual TLS, an HTTP check of the admin port's `/readyz`.
    async fn register(&self, instance: &Announcement) -> anyhow::Result<Box<dyn Registered>> {
        let check = if instance.mutual_tls {
            AgentCheck::Readyz
        } else {
            AgentCheck::Grpc(None)
        };
        let registration = ConsulRegistry::register(
            self,
            &instance.service,
            check,
            &self.advertise_host,
            instance.grpc_port,
            instance.admin_port,
            &instance.version,
        )
        .await?;
        Ok(Box::new(registration))
    }
}

#[async_trait]
impl Registered for Registration {
    async fn deregister(self: Box<Self>) -> anyhow::Result<()> {
        Registration::deregister(*self).await
    }
}

impl Resolve for ConsulResolver {
    fn resolve(&self, service: &str) -> Result<InstancesWatch, Status> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Status::unavailable(
                "consul discovery needs a tokio runtime",
            ));
        }
        Ok(self.watch(service))
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Follows the passing instances of services through blocking health queries.
#[derive(Clone, Debug)]
pub struct ConsulResolver {
    agent: Agent,
    wait: Duration,
    retry_base: Duration,
    retry_max: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HealthEntry {
    node: NodeEntry,
    service: ServiceEntry,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeEntry {
    #[serde(default)]
    address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceEntry {
    #[serde(default)]
    address: String,
    port: u16,
}

/// The next index of a blocking query: `None` when the answer's index is missing, zero or went
/// backwards (the caller restarts from 0).
pub fn next_index(previous: u64, header: Option<&str>) -> Option<u64> {
    let index = header?.trim().parse::<u64>().ok()?;
    (index > 0 && index >= previous).then_some(index)
}

impl ConsulResolver {
    /// A resolver for the agent and `wait` in `settings`.
    pub fn new(settings: &ConsulSettings) -> anyhow::Result<Self> {
        Ok(ConsulResolver {
            agent: Agent::new(settings)?,
            wait: settings.wait,
            retry_base: settings.retry_base,
            retry_max: settings.retry_max,
        })
    }

    /// The passing instances of `name` as sorted `host:port` strings, updated by a background
    /// task until every receiver is dropped. `None` until the agent first answered (an empty
    /// set if that first query failed), so callers can tell "not looked up yet" from "none";
    /// keeps the last good set while the agent is unreachable.
    pub fn watch(&self, name: &str) -> watch::Receiver<Option<Vec<String>>> {
        let (tx, rx) = watch::channel(None);
        let this = self.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::select! {
                () = this.run(&name, &tx) => {}
                () = tx.closed() => {}
            }
        });
        rx
    }

    async fn run(&self, name: &str, tx: &watch::Sender<Option<Vec<String>>>) {
        let mut index = 0u64;
        let mut failures = 0u32;
        loop {
            match self.query(name, index).await {
                Ok((header, addrs)) => {
                    failures = 0;
                    tx.send_if_modified(|current| {
                        let changed = current.as_ref() != Some(&addrs);
                        if changed {
                            tracing::info!(service = %name, instances = ?addrs, "consul instances changed");
                            *current = Some(addrs);
                        }
                        changed
                    });
                    match next_index(index, header.as_deref()) {
                        Some(i) => index = i,
                        None => {
                            // Without a usable index the next query would not block: pause.
                            index = 0;
                            tokio::time::sleep(self.retry_base).await;
                        }
                    }
                }
                Err(e) => {
                    // A first lookup that fails still answers: nothing is known.
                    tx.send_if_modified(|current| {
                        let first = current.is_none();
                        if first {
                            *current = Some(Vec::new());
                        }
                        first
                    });
                    let delay = backoff(failures, self.retry_base, self.retry_max);
                    failures = failures.saturating_add(1);
                    tracing::warn!(service = %name, error = %e, ?delay, "consul health query failed; keeping the last instances");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn query(&self, name: &str, index: u64) -> anyhow::Result<(Option<String>, Vec<String>)> {
        let url = format!(
            "{}/v1/health/service/{name}?passing=true&index={index}&wait={}s",
            self.agent.base,
            self.wait.as_secs()
        );
        let resp = self
            .agent
            .http
            .get(url)
            .timeout(self.wait + self.wait / 16 + BLOCKING_QUERY_MARGIN)
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!("consul answered {status}");
        }
        let header = resp
            .headers()
            .get(CONSUL_INDEX_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let entries: Vec<HealthEntry> = resp.json().await?;
        let mut addrs: Vec<String> = entries
            .into_iter()
            .map(|e| {
                let host = if e.service.address.is_empty() {
                    e.node.address
                } else {
                    e.service.address
                };
                crate::config::format_authority(&host, e.service.port)
            })
            .collect();
        addrs.sort();
        addrs.dedup();
        Ok((header, addrs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_resets_when_backwards_missing_or_zero() {
        assert_eq!(next_index(0, Some("7")), Some(7));
        assert_eq!(next_index(7, Some("7")), Some(7));
        assert_eq!(next_index(7, Some("9")), Some(9));
        assert_eq!(next_index(9, Some("3")), None);
        assert_eq!(next_index(9, Some("0")), None);
        assert_eq!(next_index(9, Some("x")), None);
        assert_eq!(next_index(9, None), None);
    }

    #[test]
    fn durations_are_go_style() {
        assert_eq!(go_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(go_duration(Duration::from_secs(60)), "60000ms");
    }
}
