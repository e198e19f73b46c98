//! The gRPC server every service runs, built the same way for all seven:
//!
//! - `grpc.health.v1.Health`, per service name and overall (`""`);
//! - server reflection `v1` and `v1alpha` (grpcurl 1.8 speaks only `v1alpha`);
//! - one layer in front of every RPC that enforces the service's [`AccessTable`] through the
//!   [`Gate`], opens a tracing span carrying the request id (`x-request-id`, generated when
//!   absent and echoed back) and records the RED metrics;
//! - an admin HTTP port with `/metrics`, `/healthz` (process alive) and `/readyz` (every
//!   registered dependency answers);
//! - with `discovery.kind = "consul"`, registration with the Consul agent once the ports are
//!   bound (gRPC check, keep-alive; see [`crate::discovery`]);
//! - graceful shutdown: the instance deregisters from Consul (if registered), health goes NOT_SERVING, `/readyz` fails, the listener closes after
//!   `server.drain_delay`, in-flight calls finish (up to `server.shutdown_grace`), then
//!   [`BoundServer::serve`] returns.
//!
//! ```ignore
//! let server = ServerBuilder::new(&settings)
//!     .add_service(ProductCatalogServiceServer::new(svc), ACCESS)
//!     .ready_check("database", move || { let db = db.clone(); async move { db.ping().await.map_err(|e| e.to_string()) } })
//!     .bind()
//!     .await?;
//! server.serve(shutdown_signal()).await?;
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::access::AccessTable;
use crate::auth::{Caller, Tokens};
use crate::config::{ConsulSettings, DiscoveryKind, Settings};
use crate::discovery::{ConsulRegistry, Registration};
use crate::platform::Platform;
use crate::telemetry::{Metrics, RpcMetrics};

/// Metadata key carrying the request id across services and back to the client.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// What an incoming RPC hands on to the calls made while handling it.
#[derive(Clone)]
struct RequestContext {
    id: String,
    deadline: Option<Instant>,
}

tokio::task_local! {
    /// The RPC this task is handling (see [`current_request_id`], [`current_deadline`]).
    static REQUEST: RequestContext;
}

/// The request id of the RPC being handled by this task, if any. `common::client` sends it as
/// `x-request-id` on outgoing calls, so the log lines of one request share an id across the
/// fleet.
pub fn current_request_id() -> Option<String> {
    REQUEST.try_with(|r| r.id.clone()).ok()
}

/// The deadline of the RPC being handled by this task (from its `grpc-timeout`), if any.
/// `common::client` caps outgoing calls' deadlines with it, so a caller's deadline holds across
/// hops.
pub fn current_deadline() -> Option<Instant> {
    REQUEST.try_with(|r| r.deadline).ok().flatten()
}
/// How long deregistering from Consul may delay the start of a graceful shutdown.
pub const CONSUL_DEREGISTER_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one readiness check may take.
pub const READY_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Builds a server; see the module docs.
pub struct ServerBuilder {
    name: String,
    host: std::net::IpAddr,
    port: u16,
    admin_port: u16,
    drain_delay: Duration,
    grace: Duration,
    max_concurrent_rpcs: u32,
    routes: Routes,
    service_names: Vec<&'static str>,
    access: Vec<AccessTable>,
    tokens: Arc<Tokens>,
    ready_checks: Vec<(String, ReadyCheck)>,
    registry: Registry,
    consul: Option<ConsulSettings>,
}

impl ServerBuilder {
    /// A server for the service named in `settings`, listening where `settings.server` says,
    /// verifying tokens with the platform's keys; `/readyz` checks the platform's database and
    /// cache.
    pub fn new<E>(settings: &Settings<E>, platform: &Platform) -> Self {
        let builder = ServerBuilder {
            name: settings.service.clone(),
            host: settings.server.host,
            port: settings.server.port,
            admin_port: settings.server.admin_port(),
            drain_delay: settings.server.drain_delay,
            grace: settings.server.shutdown_grace,
            max_concurrent_rpcs: settings.server.max_concurrent_rpcs,
            routes: Routes::default(),
            service_names: Vec::new(),
            access: Vec::new(),
            tokens: platform.tokens.clone(),
            ready_checks: Vec::new(),
            registry: Registry::default(),
            consul: (settings.discovery.kind == DiscoveryKind::Consul)
                .then(|| settings.discovery.consul.clone()),
        };
        let mut builder = builder.ready_cache(&platform.cache);
        platform.clients.register_metrics(&mut builder.registry);
        match &platform.db {
            Some(db) => builder.ready_database(db),
            None => builder,
        }
    }

    /// Adds a gRPC service with its access rules.
    pub fn add_service<S>(mut self, svc: S, access: AccessTable) -> Self
    where
        S: Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        debug_assert_eq!(S::NAME, access.service, "access table of another service");
        self.service_names.push(S::NAME);
        self.access.push(access);
        self.routes = self.routes.add_service(svc);
        self
    }

    /// Adds a dependency `/readyz` checks (database, cache, ...).
    pub fn ready_check<F, Fut>(mut self, name: &str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let check: ReadyCheck = Arc::new(move || Box::pin(check()));
        self.ready_checks.push((name.to_string(), check));
        self
    }

    /// `/readyz` checks the database answers.
    pub fn ready_database(self, db: &crate::store::Database) -> Self {
        let db = db.clone();
        self.ready_check("database", move || {
            let db = db.clone();
            async move { db.ping().await.map_err(|e| e.to_string()) }
        })
    }

    /// `/readyz` checks the cache answers.
    pub fn ready_cache(self, cache: &crate::cache::SharedCache) -> Self {
        let cache = cache.clone();
        self.ready_check("cache", move || {
            let cache = cache.clone();
            async move { cache.ping().await.map_err(|e| e.to_string()) }
        })
    }

    /// The registry for the service's own business metrics, served on `/metrics`.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Binds the gRPC and admin ports (port 0 picks free ones) and marks the services SERVING.
    pub async fn bind(mut self) -> anyhow::Result<BoundServer> {
        let grpc = TcpListener::bind(SocketAddr::new(self.host, self.port))
            .await
            .map_err(|e| anyhow::anyhow!("binding gRPC port {}: {e}", self.port))?;
        let admin = TcpListener::bind(SocketAddr::new(self.host, self.admin_port))
            .await
            .map_err(|e| anyhow::anyhow!("binding admin port {}: {e}", self.admin_port))?;
        let grpc_addr = grpc.local_addr()?;
        let admin_addr = admin.local_addr()?;

        let (health, health_service) = tonic_health::server::health_reporter();
        for name in &self.service_names {
            health
                .set_service_status(*name, ServingStatus::Serving)
                .await;
        }
        health.set_service_status("", ServingStatus::Serving).await;

        let reflection_v1 = reflection_builder(&self.service_names).build_v1()?;
        let reflection_v1alpha = reflection_builder(&self.service_names).build_v1alpha()?;
        let routes = self
            .routes
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let rpc_metrics = RpcMetrics::register(&mut self.registry);
        let layer = RpcLayer {
            ctx: Arc::new(RpcContext {
                metrics: rpc_metrics,
                access: self.access,
                tokens: self.tokens,
                admission: Arc::new(tokio::sync::Semaphore::new(
                    usize::try_from(self.max_concurrent_rpcs).unwrap_or(usize::MAX),
                )),
            }),
        };
        tracing::info!(service = %self.name, %grpc_addr, %admin_addr, "listening");
        Ok(BoundServer {
            name: self.name,
            grpc,
            admin,
            grpc_addr,
            admin_addr,
            routes,
            layer,
            health,
            service_names: self.service_names,
            ready_checks: Arc::new(self.ready_checks),
            metrics: Metrics::new(self.registry),
            drain_delay: self.drain_delay,
            grace: self.grace,
            consul: self.consul,
        })
    }
}

/// Reflection over the fleet's descriptors, advertising this server's services and health.
fn reflection_builder(names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mall_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    for name in names {
        builder = builder.with_service_name(*name);
    }
    builder
}

/// A server with its ports bound, ready to [`serve`](BoundServer::serve).
pub struct BoundServer {
    name: String,
    grpc: TcpListener,
    admin: TcpListener,
    /// The gRPC address actually bound.
    pub grpc_addr: SocketAddr,
    /// The admin HTTP address actually bound.
    pub admin_addr: SocketAddr,
    routes: Routes,
    layer: RpcLayer,
    health: HealthReporter,
    service_names: Vec<&'static str>,
    ready_checks: Arc<Vec<(String, ReadyCheck)>>,
    metrics: Metrics,
    drain_delay: Duration,
    grace: Duration,
    consul: Option<ConsulSettings>,
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    ready_checks: Arc<Vec<(String, ReadyCheck)>>,
    stopping: Arc<AtomicBool>,
}

impl BoundServer {
    /// Serves until `shutdown` completes, then drains (see the module docs).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let registration = match &self.consul {
            Some(consul) => Some(self.register(consul).await?),
            None => None,
        };
        let stopping = Arc::new(AtomicBool::new(false));
        let admin_state = AdminState {
            metrics: self.metrics.clone(),
            ready_checks: self.ready_checks.clone(),
            stopping: stopping.clone(),
        };
        let admin_router = axum::Router::new()
            .route("/metrics", get(metrics_handler))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(ready_handler))
            .with_state(admin_state);
        let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
        let admin = tokio::spawn(
            axum::serve(self.admin, admin_router)
                .with_graceful_shutdown(async {
                    let _ = admin_stop_rx.await;
                })
                .into_future(),
        );

        let (begun_tx, begun_rx) = tokio::sync::watch::channel(false);
        let health = self.health.clone();
        let names = self.service_names.clone();
        let drain_delay = self.drain_delay;
        let name = self.name.clone();
        let signal = async move {
            shutdown.await;
            if let Some(registration) = registration {
                match tokio::time::timeout(CONSUL_DEREGISTER_TIMEOUT, registration.deregister())
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "consul deregistration failed"),
                    Err(_) => tracing::warn!("consul deregistration timed out"),
                }
            }
            tracing::info!(service = %name, "shutting down: draining in-flight calls");
            stopping.store(true, Ordering::SeqCst);
            for n in names {
                health
                    .set_service_status(n, ServingStatus::NotServing)
                    .await;
            }
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            let _ = begun_tx.send(true);
            tokio::time::sleep(drain_delay).await;
        };
        let incoming =
            tonic::transport::server::TcpIncoming::from(self.grpc).with_nodelay(Some(true));
        let server = tonic::transport::Server::builder()
            .layer(self.layer)
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(incoming, signal);
        let grace = self.grace + self.drain_delay;
        let mut begun = begun_rx;
        let grace_expired = async move {
            let _ = begun.wait_for(|b| *b).await;
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            r = server => r.map_err(anyhow::Error::from),
            () = grace_expired => {
                tracing::warn!(service = %self.name, "shutdown grace expired with calls in flight");
                Ok(())
            }
        };
        let _ = admin_stop_tx.send(());
        if let Ok(Err(e)) = admin.await {
            tracing::warn!(error = %e, "admin server error");
        }
        tracing::info!(service = %self.name, "stopped");
        result
    }
}

impl BoundServer {
    /// Registers this instance with Consul at the advertised host and the bound ports.
    async fn register(&self, consul: &ConsulSettings) -> anyhow::Result<Registration> {
        ConsulRegistry::new(consul)?
            .register(
                &self.name,
                None,
                &consul.advertise_host,
                self.grpc_addr.port(),
                self.admin_addr.port(),
                env!("CARGO_PKG_VERSION"),
            )
            .await
    }
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

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

struct RpcContext {
    metrics: RpcMetrics,
    access: Vec<AccessTable>,
    tokens: Arc<Tokens>,
    /// One permit per RPC in progress (`server.max_concurrent_rpcs`).
    admission: Arc<tokio::sync::Semaphore>,
}

impl RpcContext {
    /// Verifies the caller against the method's access rule. Services without a table
    /// (health, reflection) are public; a method missing from its table is refused.
    async fn admit(
        &self,
        service: &str,
        method: &str,
        bearer: Option<&str>,
    ) -> Result<Option<Caller>, Status> {
        let Some(table) = self.access.iter().find(|t| t.service == service) else {
            return Ok(None);
        };
        let access = table.access(method).ok_or_else(|| {
            Status::permission_denied(format!("no access rule for {service}/{method}"))
        })?;
        self.tokens.admit(access, bearer).await
    }
}

/// The per-RPC layer: access, tracing span and RED metrics.
#[derive(Clone)]
struct RpcLayer {
    ctx: Arc<RpcContext>,
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            ctx: self.ctx.clone(),
        }
    }
}

#[derive(Clone)]
struct RpcService<S> {
    inner: S,
    ctx: Arc<RpcContext>,
}

fn split_path(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default().to_string();
    let method = parts.next().unwrap_or_default().to_string();
    (service, method)
}

impl<S> Service<http::Request<Body>> for RpcService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let started = Instant::now();
        let (service, method) = split_path(req.uri().path());
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128)
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Ok(v) = http::HeaderValue::from_str(&request_id) {
            req.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(crate::client::parse_grpc_timeout);
        let deadline = timeout.map(|t| started + t);
        let timeout_ms = timeout.map_or(-1, |t| i64::try_from(t.as_millis()).unwrap_or(i64::MAX));
        let span = tracing::info_span!(
            "rpc",
            rpc.service = %service,
            rpc.method = %method,
            request_id = %request_id,
            grpc.timeout_ms = timeout_ms
        );
        let ctx = self.ctx.clone();
        ctx.metrics.started(&service);
        let completion = Completion {
            ctx: ctx.clone(),
            service,
            method,
            started,
            span: span.clone(),
            done: false,
        };

        let bearer = crate::auth::bearer(req.headers()).map(str::to_string);

        // Load shedding: past the limit, refuse at once rather than queue. Health and
        // reflection (services without an access table) are always served.
        let governed = ctx.access.iter().any(|t| t.service == completion.service);
        let permit = if governed {
            match ctx.admission.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let status = Status::resource_exhausted("server overloaded; retry later");
                    let code = status.code();
                    let mut resp = status.into_http::<Body>();
                    set_request_id(&mut resp, &request_id);
                    completion.finish(code);
                    return Box::pin(std::future::ready(Ok(resp)));
                }
            }
        } else {
            None
        };

        // The clone that was driven to readiness serves this call; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let admitted = ctx
                    .admit(&completion.service, &completion.method, bearer.as_deref())
                    .await;
                match admitted {
                    Ok(Some(caller)) => {
                        req.extensions_mut().insert(caller);
                    }
                    Ok(None) => {}
                    Err(status) => {
                        let code = status.code();
                        let mut resp = status.into_http::<Body>();
                        set_request_id(&mut resp, &request_id);
                        completion.finish(code);
                        return Ok(resp);
                    }
                }
                let context = RequestContext {
                    id: request_id.clone(),
                    deadline,
                };
                let Ok(resp) = REQUEST.scope(context, inner.call(req)).await;
                drop(permit);
                let (mut parts, body) = resp.into_parts();
                if let Ok(v) = http::HeaderValue::from_str(&request_id) {
                    parts.headers.insert(REQUEST_ID_HEADER, v);
                }
                // Errors are usually trailers-only: the status is in the headers already.
                if let Some(code) = grpc_status(&parts.headers) {
                    completion.finish(code);
                    return Ok(http::Response::from_parts(parts, body));
                }
                let body = Body::new(CompletionBody {
                    inner: body,
                    completion: Some(completion),
                });
                Ok(http::Response::from_parts(parts, body))
            }
            .instrument(span),
        )
    }
}

fn set_request_id(resp: &mut http::Response<Body>, request_id: &str) {
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let v = headers.get("grpc-status")?.to_str().ok()?;
    v.parse::<i32>().ok().map(tonic::Code::from)
}

/// Records the end of one RPC exactly once: when its status is known, or as `Canceled` when the
/// response is dropped before (client went away).
struct Completion {
    ctx: Arc<RpcContext>,
    service: String,
    method: String,
    started: Instant,
    span: tracing::Span,
    done: bool,
}

impl Completion {
    fn finish(mut self, code: tonic::Code) {
        self.done = true;
        let elapsed = self.started.elapsed();
        self.ctx
            .metrics
            .finished(&self.service, &self.method, code, elapsed);
        let ms = elapsed.as_secs_f64() * 1000.0;
        self.span.in_scope(|| match code {
            tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
                tracing::error!(code = ?code, elapsed_ms = ms, "rpc failed")
            }
            _ => tracing::info!(code = ?code, elapsed_ms = ms, "rpc finished"),
        });
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.ctx.metrics.finished(
            &self.service,
            &self.method,
            tonic::Code::Cancelled,
            self.started.elapsed(),
        );
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports the RPC's status when the trailers go by.
    struct CompletionBody {
        #[pin]
        inner: Body,
        completion: Option<Completion>,
    }
}

impl HttpBody for CompletionBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(c) = this.completion.take()
                {
                    c.finish(grpc_status(trailers).unwrap_or(tonic::Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(c) = this.completion.take() {
                    c.finish(tonic::Code::Internal);
                }
            }
            Poll::Ready(None) => {
                if let Some(c) = this.completion.take() {
                    c.finish(tonic::Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
