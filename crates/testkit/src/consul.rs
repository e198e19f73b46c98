//! A stateful fake Consul agent for tests: an axum server on `127.0.0.1:0` (or any address, see
//! [`FakeConsul::bind`]) with in-memory state. The `fake-consul` binary runs it on its own, for a
//! fleet of separate processes (`scripts/fleet.sh`).
//!
//! # Covered API (the subset TikTokMall's `common::discovery` uses)
//!
//! - `PUT /v1/agent/service/register`: body `{ID, Name, Address, Port, Tags, Meta, Check}`; `ID`
//!   defaults to `Name`. A `Check.GRPC` check (`host:port` or `host:port/service`) or a
//!   `Check.HTTP` check (a URL, `GET`) with `Interval`, `Timeout` and
//!   `DeregisterCriticalServiceAfter` is run; other check kinds are stored but never run (stay
//!   `critical`). Re-registering an id replaces it (and its check).
//! - `PUT /v1/agent/service/deregister/<id>`: 200 (also for unknown ids, like Consul).
//! - `GET /v1/agent/service/<id>`: the stored service (`ID`, `Service`, `Address`, `Port`,
//!   `Tags`, `Meta`) or 404.
//! - `GET /v1/health/service/<name>`: `[{Node, Service, Checks}]`, `passing=true` filters on the
//!   check being `passing`; `index` + `wait` block until the index moves past `index` or `wait`
//!   expires; the answer carries `X-Consul-Index`.
//! - KV: `GET /v1/kv/<key>` → `[{Key, Value (base64), Flags, LockIndex, CreateIndex,
//!   ModifyIndex}]` or 404, `?raw` the bare value, `index` + `wait` blocking as above, always
//!   with `X-Consul-Index`; `PUT /v1/kv/<key>` (body = the value) → `true`;
//!   `DELETE /v1/kv/<key>` → `true`.
//!
//! The agent runs the checks itself like the real one, every `Interval` (first run immediately):
//! gRPC checks call `grpc.health.v1.Health/Check` on a fresh connection, `passing` on SERVING;
//! HTTP checks `GET` the URL, `passing` on any 2xx; anything else is `critical` (including
//! timeouts and refused connections; Consul's `warning` for HTTP 429 is `critical` here). A
//! service critical for longer than `DeregisterCriticalServiceAfter` is removed.
//!
//! # Differences from Consul
//!
//! - One node (`fake-node`, address `127.0.0.1`), no catalog/ACL/DNS, no `warning` state,
//!   no stale/consistent modes, no `near`/`filter`/`tag` parameters.
//! - One global index for everything (Consul keeps per-result indexes): a blocking query may
//!   return without a change to *its* service, which Consul also allows.
//! - `wait` gets no jitter and is capped at 10 minutes; durations accept Go syntax with
//!   `ns`/`us`/`ms`/`s`/`m`/`h` units.
//! - New checks start `critical` (as in Consul) but run at once instead of after a random stagger;
//!   `DeregisterCriticalServiceAfter` is honoured exactly (Consul's reaper has a one-minute floor
//!   and runs every 30 s).
//! - [`FakeConsul::stop`] / [`FakeConsul::restart`] simulate an outage of the HTTP API on the same
//!   port; the state (and the checks) survive it, as with an agent that keeps its data dir.
//!   [`FakeConsul::forget`] simulates an agent that lost its state for one service.
//! - Errors are plain-text 400s without Consul's exact wording.
//! - KV: single keys only (no `recurse`, `keys`, `separator`, `cas`, `acquire`/`release`,
//!   `flags`, transactions); a key's `ModifyIndex` is the global index of its last write.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The longest `wait` a blocking query may ask for (as Consul).
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// `wait` when a blocking query names none (Consul's default).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// A check's `Timeout` when the registration names none (Consul's default).
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The fake's node name.
pub const NODE_NAME: &str = "fake-node";
/// The fake's node address.
pub const NODE_ADDRESS: &str = "127.0.0.1";

/// The health of one check, as Consul names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// The last run succeeded.
    Passing,
    /// Not yet run successfully, or the last run failed.
    Critical,
}

impl CheckStatus {
    fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Passing => "passing",
            CheckStatus::Critical => "critical",
        }
    }
}

struct Entry {
    registration: Value,
    name: String,
    status: CheckStatus,
    output: String,
    critical_since: Instant,
    checker: Option<JoinHandle<()>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(c) = self.checker.take() {
            c.abort();
        }
    }
}

#[derive(Default)]
struct Inner {
    services: BTreeMap<String, Entry>,
    kv: BTreeMap<String, KvEntry>,
}

/// One key of the KV store.
#[derive(Clone)]
struct KvEntry {
    value: Vec<u8>,
    create_index: u64,
    modify_index: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    index: watch::Sender<u64>,
    down: watch::Sender<bool>,
}

impl Shared {
    fn bump(&self) {
        self.index.send_modify(|i| *i += 1);
    }

    fn put_kv(&self, key: &str, value: Vec<u8>) {
        self.bump();
        let index = *self.index.borrow();
        let mut inner = self.lock();
        let create_index = inner.kv.get(key).map_or(index, |e| e.create_index);
        inner.kv.insert(
            key.to_string(),
            KvEntry {
                value,
                create_index,
                modify_index: index,
            },
        );
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

/// A running (or stopped) fake Consul agent.
pub struct FakeConsul {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>,
}

impl FakeConsul {
    /// Starts the fake on a free loopback port.
    pub async fn start() -> FakeConsul {
        FakeConsul::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind fake consul")
    }

    /// Starts the fake on `addr` (port 0 picks a free one); fails when the address cannot be
    /// bound, e.g. because it is in use.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<FakeConsul> {
        let (index, _) = watch::channel(1);
        let (down, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            index,
            down,
        });
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let mut fake = FakeConsul {
            shared,
            addr,
            server: None,
        };
        fake.serve(listener);
        Ok(fake)
    }

    fn serve(&mut self, listener: TcpListener) {
        self.shared.down.send_replace(false);
        let app = Router::new()
            .route("/v1/agent/service/register", put(register))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .route("/v1/agent/service/{id}", get(agent_service))
            .route("/v1/health/service/{name}", get(health_service))
            .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
            .with_state(self.shared.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        self.server = Some((stop_tx, task));
    }

    /// Writes `value` under `key` in the KV store, as `PUT /v1/kv/<key>` does (blocking queries
    /// on it return).
    pub fn put_kv(&self, key: &str, value: &str) {
        self.shared.put_kv(key, value.as_bytes().to_vec());
    }

    /// The agent's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for `discovery.consul.address`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops answering HTTP (in-flight blocking queries fail with 503, the port closes); the
    /// state and the checks survive.
    pub async fn stop(&mut self) {
        self.shared.down.send_replace(true);
        if let Some((stop, task)) = self.server.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Serves again on the same port after [`stop`](FakeConsul::stop).
    pub async fn restart(&mut self) {
        assert!(self.server.is_none(), "fake consul is running");
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => {
                    self.serve(listener);
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("cannot rebind fake consul on {}: {last:?}", self.addr);
    }

    /// Forgets service `id` without it deregistering (an agent that lost its state).
    pub fn forget(&self, id: &str) {
        let removed = self.shared.lock().services.remove(id);
        if removed.is_some() {
            self.shared.bump();
        }
    }

    /// The ids of every registered service.
    pub fn service_ids(&self) -> Vec<String> {
        self.shared.lock().services.keys().cloned().collect()
    }

    /// The registration body stored for `id`.
    pub fn registration(&self, id: &str) -> Option<Value> {
        self.shared
            .lock()
            .services
            .get(id)
            .map(|e| e.registration.clone())
    }

    /// The check status of service `id`, `None` when not registered.
    pub fn status(&self, id: &str) -> Option<CheckStatus> {
        self.shared.lock().services.get(id).map(|e| e.status)
    }

    /// The current index.
    pub fn index(&self) -> u64 {
        *self.shared.index.borrow()
    }

    /// Waits (polling) until `cond` holds, up to `timeout`; returns whether it did.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&FakeConsul) -> bool,
    ) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for FakeConsul {
    fn drop(&mut self) {
        if let Some((_, task)) = self.server.take() {
            task.abort();
        }
        self.shared.lock().services.clear();
    }
}

fn bad_request(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, msg.into()).into_response()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "agent is down").into_response()
}

/// Parses a Go duration (`1m30s`, `200ms`, `5s`, `1.5h`).
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

fn duration_field(check: &Value, key: &str) -> Result<Option<Duration>, String> {
    match check.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_go_duration(s)
            .map(Some)
            .ok_or_else(|| format!("invalid duration for {key}: {s}")),
        Some(other) => Err(format!("invalid {key}: {other}")),
    }
}

/// What a check probes.
enum Probe {
    /// `grpc.health.v1.Health/Check` of `service` at `target` (`host:port`).
    Grpc { target: String, service: String },
    /// `GET url`.
    Http { url: String },
}

struct AgentCheck {
    probe: Probe,
    interval: Duration,
    timeout: Duration,
    deregister_after: Option<Duration>,
}

async fn register(State(shared): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    if *shared.down.borrow() {
        return unavailable();
    }
    let Some(name) = body
        .get("Name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    else {
        return bad_request("missing service Name");
    };
    let name = name.to_string();
    let id = body
        .get("ID")
        .and_then(Value::as_str)
        .filter(|i| !i.is_empty())
        .unwrap_or(&name)
        .to_string();
    let mut check = None;
    if let Some(c) = body.get("Check").filter(|c| !c.is_null())
        && let Some(probe) = probe_of(c)
    {
        let interval = match duration_field(c, "Interval") {
            Ok(Some(d)) if !d.is_zero() => d,
            Ok(_) => return bad_request("a GRPC or HTTP check needs an Interval"),
            Err(r) => return bad_request(r),
        };
        let timeout = match duration_field(c, "Timeout") {
            Ok(d) => d.unwrap_or(DEFAULT_CHECK_TIMEOUT),
            Err(r) => return bad_request(r),
        };
        let deregister_after = match duration_field(c, "DeregisterCriticalServiceAfter") {
            Ok(d) => d,
            Err(r) => return bad_request(r),
        };
        check = Some(AgentCheck {
            probe,
            interval,
            timeout,
            deregister_after,
        });
    }
    let checker = check.map(|c| tokio::spawn(run_check(Arc::downgrade(&shared), id.clone(), c)));
    let entry = Entry {
        registration: body,
        name,
        status: CheckStatus::Critical,
        output: String::new(),
        critical_since: Instant::now(),
        checker,
    };
    shared.lock().services.insert(id, entry);
    shared.bump();
    StatusCode::OK.into_response()
}

/// The probe of a registration's `Check`: `GRPC` (`host:port[/service]`) or `HTTP` (a URL).
fn probe_of(check: &Value) -> Option<Probe> {
    if let Some(grpc) = check.get("GRPC").and_then(Value::as_str) {
        let (target, service) = match grpc.split_once('/') {
            Some((t, s)) => (t.to_string(), s.to_string()),
            None => (grpc.to_string(), String::new()),
        };
        return Some(Probe::Grpc { target, service });
    }
    let url = check.get("HTTP").and_then(Value::as_str)?;
    Some(Probe::Http {
        url: url.to_string(),
    })
}

async fn run_check(shared: std::sync::Weak<Shared>, id: String, check: AgentCheck) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (status, output) = match &check.probe {
            Probe::Grpc { target, service } => grpc_check(target, service, check.timeout).await,
            Probe::Http { url } => http_check(url, check.timeout).await,
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut changed = false;
        let mut remove = false;
        {
            let mut inner = shared.lock();
            let Some(entry) = inner.services.get_mut(&id) else {
                return;
            };
            if entry.status != status {
                changed = true;
                if status == CheckStatus::Critical {
                    entry.critical_since = Instant::now();
                }
                entry.status = status;
            }
            entry.output = output;
            if status == CheckStatus::Critical
                && let Some(after) = check.deregister_after
                && entry.critical_since.elapsed() >= after
            {
                remove = true;
            }
            if remove {
                // Dropping the entry aborts this very task: take the handle out first.
                if let Some(e) = inner.services.get_mut(&id) {
                    e.checker.take();
                }
                inner.services.remove(&id);
            }
        }
        if changed || remove {
            shared.bump();
        }
        if remove {
            return;
        }
    }
}

async fn http_check(url: &str, timeout: Duration) -> (CheckStatus, String) {
    let client = match crate::http_client().timeout(timeout).build() {
        Ok(client) => client,
        Err(e) => return (CheckStatus::Critical, format!("HTTP check: {e}")),
    };
    match client.get(url).send().await {
        Ok(resp) if resp.status().is_success() => (
            CheckStatus::Passing,
            format!("HTTP GET {url}: {}", resp.status()),
        ),
        Ok(resp) => (
            CheckStatus::Critical,
            format!("HTTP GET {url}: {}", resp.status()),
        ),
        Err(e) => (CheckStatus::Critical, format!("HTTP GET {url}: {e}")),
    }
}

async fn grpc_check(target: &str, service: &str, timeout: Duration) -> (CheckStatus, String) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let run = async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{target}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout);
        let channel = endpoint.connect().await.map_err(|e| e.to_string())?;
        let resp = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(resp.into_inner().status)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(s)) if s == ServingStatus::Serving as i32 => {
            (CheckStatus::Passing, "gRPC check: SERVING".into())
        }
        Ok(Ok(s)) => (CheckStatus::Critical, format!("gRPC check: status {s}")),
        Ok(Err(e)) => (CheckStatus::Critical, format!("gRPC check failed: {e}")),
        Err(_) => (CheckStatus::Critical, "gRPC check timed out".into()),
    }
}

async fn deregister(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if *shared.down.borrow() {
        return unavailable();
    }
    let removed = shared.lock().services.remove(&id);
    if removed.is_some() {
        shared.bump();
    }
    StatusCode::OK.into_response()
}

fn service_json(id: &str, e: &Entry) -> Value {
    let r = &e.registration;
    json!({
        "ID": id,
        "Service": e.name,
        "Address": r.get("Address").cloned().unwrap_or(json!("")),
        "Port": r.get("Port").cloned().unwrap_or(json!(0)),
        "Tags": r.get("Tags").cloned().unwrap_or(json!([])),
        "Meta": r.get("Meta").cloned().unwrap_or(json!({})),
    })
}

async fn agent_service(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    if *shared.down.borrow() {
        return unavailable();
    }
    let inner = shared.lock();
    match inner.services.get(&id) {
        Some(e) => Json(service_json(&id, e)).into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown service ID: {id}")).into_response(),
    }
}

#[derive(Deserialize)]
struct KvQuery {
    index: Option<u64>,
    wait: Option<String>,
    raw: Option<String>,
}

/// Blocks while the index is at most `index` (a blocking query), up to `wait`; `Err` with the
/// answer to give when the agent went down meanwhile or `wait` is malformed.
async fn block(shared: &Shared, index: Option<u64>, wait: Option<&str>) -> Result<(), Response> {
    let Some(index) = index.filter(|i| *i > 0) else {
        return Ok(());
    };
    let wait = match wait {
        Some(w) => match parse_go_duration(w) {
            Some(d) => d.min(MAX_WAIT),
            None => return Err(bad_request(format!("invalid wait: {w}"))),
        },
        None => DEFAULT_WAIT,
    };
    let mut index_rx = shared.index.subscribe();
    let mut down_rx = shared.down.subscribe();
    let moved = async { index_rx.wait_for(|i| *i > index).await.map(|_| ()) };
    let went_down = async { down_rx.wait_for(|d| *d).await.map(|_| ()) };
    tokio::select! {
        _ = moved => Ok(()),
        _ = tokio::time::sleep(wait) => Ok(()),
        _ = went_down => Err(unavailable()),
    }
}

fn index_header(shared: &Shared) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("X-Consul-Index", HeaderValue::from(*shared.index.borrow()));
    headers
}

async fn kv_get(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    Query(q): Query<KvQuery>,
) -> Response {
    if *shared.down.borrow() {
        return unavailable();
    }
    if let Err(answer) = block(&shared, q.index, q.wait.as_deref()).await {
        return answer;
    }
    let headers = index_header(&shared);
    let Some(entry) = shared.lock().kv.get(&key).cloned() else {
        return (StatusCode::NOT_FOUND, headers).into_response();
    };
    if q.raw.is_some() {
        return (headers, entry.value).into_response();
    }
    use base64::Engine as _;
    let body = json!([{
        "Key": key,
        "Value": base64::engine::general_purpose::STANDARD.encode(&entry.value),
        "Flags": 0,
        "LockIndex": 0,
        "CreateIndex": entry.create_index,
        "ModifyIndex": entry.modify_index,
    }]);
    (headers, Json(body)).into_response()
}

async fn kv_put(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if *shared.down.borrow() {
        return unavailable();
    }
    shared.put_kv(&key, body.to_vec());
    Json(true).into_response()
}

async fn kv_delete(State(shared): State<Arc<Shared>>, Path(key): Path<String>) -> Response {
    if *shared.down.borrow() {
        return unavailable();
    }
    let removed = shared.lock().kv.remove(&key).is_some();
    if removed {
        shared.bump();
    }
    Json(true).into_response()
}

#[derive(Deserialize)]
struct HealthQuery {
    passing: Option<String>,
    index: Option<u64>,
    wait: Option<String>,
}

async fn health_service(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(q): Query<HealthQuery>,
) -> Response {
    if *shared.down.borrow() {
        return unavailable();
    }
    let passing_only = matches!(q.passing.as_deref(), Some("" | "true" | "1"));
    if let Err(answer) = block(&shared, q.index, q.wait.as_deref()).await {
        return answer;
    }
    let body: Vec<Value> = {
        let inner = shared.lock();
        inner
            .services
            .iter()
            .filter(|(_, e)| e.name == name)
            .filter(|(_, e)| !passing_only || e.status == CheckStatus::Passing)
            .map(|(id, e)| {
                json!({
                    "Node": { "Node": NODE_NAME, "Address": NODE_ADDRESS },
                    "Service": service_json(id, e),
                    "Checks": [{
                        "Node": NODE_NAME,
                        "CheckID": format!("service:{id}"),
                        "Name": format!("Service '{}' check", e.name),
                        "Status": e.status.as_str(),
                        "Output": e.output,
                        "ServiceID": id,
                        "ServiceName": e.name,
                        "Type": "grpc",
                    }],
                })
            })
            .collect()
    };
    (index_header(&shared), Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("200ms"), Some(Duration::from_millis(200)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration(""), None);
    }

    #[tokio::test]
    async fn binds_the_address_it_is_given_and_refuses_one_in_use() {
        let first = FakeConsul::start().await;
        let addr = first.addr();
        let taken = FakeConsul::bind(addr).await;
        assert!(taken.is_err(), "a second agent bound {addr}");
        drop(first);
        let mut again = None;
        for _ in 0..50 {
            if let Ok(fake) = FakeConsul::bind(addr).await {
                again = Some(fake);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let again = again.expect("rebind the freed address");
        assert_eq!(again.addr(), addr);
    }
}
