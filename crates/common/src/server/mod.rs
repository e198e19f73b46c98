//! The gRPC server every service runs, built the same way for all seven:
//!
//! - `grpc.health.v1.Health`, per service name and overall (`""`);
//! - server reflection `v1` and `v1alpha` (grpcurl 1.8 speaks only `v1alpha`);
//! - the [`layers`] every RPC passes through (request id, trace span, metrics, load shedding,
//!   access, deadline);
//! - with `tls.enabled`, mutual TLS on the gRPC port (see [`crate::tls`]);
//! - with `server.grpc_web`, gRPC-Web for browsers beside gRPC, with CORS (see [`web`]);
//! - an admin HTTP port ([`admin`]) with `/metrics`, `/healthz` and `/readyz`;
//! - once the ports are bound, registration through the discovery [`Register`] (a no-op for
//!   static discovery, the agent for Consul);
//! - graceful shutdown: the instance deregisters, health goes NOT_SERVING, `/readyz` fails,
//!   background workers see [`Shutdown`], the listener closes after `server.drain_delay`,
//!   in-flight calls finish (up to `server.shutdown_grace`), the service's spans are flushed to
//!   the collector (when traces are exported), then [`BoundServer::serve`] returns.
//!
//! Services get their builder from [`crate::platform::Platform::server`], which wires the
//! platform's tokens, registry and readiness checks in.

pub mod admin;
pub mod layers;
pub mod reload;
mod shutdown;
pub mod web;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Service, ServiceBuilder};

use self::admin::{ReadyCheck, ready_check};
use self::layers::access::AccessLayer;
use self::layers::deadline::Deadlines;
use self::layers::load_shed::{Admission, LoadShedLayer, Verifier};
use self::layers::metrics::MetricsLayer;
use self::layers::request_id::RequestIds;
use self::layers::trace::TraceLayer;
pub use self::shutdown::{
    DEREGISTER_TIMEOUT, Shutdown, ShutdownTrigger, shutdown_pair, shutdown_signal,
};
use self::web::GrpcWeb;
use crate::around::AroundLayer;
use crate::auth::{AccessTable, Tokens};
use crate::config::Settings;
use crate::discovery::{Announcement, Register, Registered};
use crate::telemetry::{Metrics, RpcMetrics};
use crate::tls::MutualTls;

/// Builds a server; see the module docs.
pub struct ServerBuilder {
    name: String,
    host: IpAddr,
    port: u16,
    admin_port: u16,
    drain_delay: Duration,
    grace: Duration,
    admission: Admission,
    routes: Routes,
    service_names: Vec<&'static str>,
    access: Vec<AccessTable>,
    tokens: Arc<Tokens>,
    register: Arc<dyn Register>,
    ready_checks: Vec<(String, ReadyCheck)>,
    registry: Registry,
    tls: Option<MutualTls>,
    admin_routes: axum::Router,
    grpc_web: Option<GrpcWeb>,
    centre: Option<crate::config::centre::Reloader>,
}

impl ServerBuilder {
    /// A server for the service named in `settings`, listening where `settings.server` says,
    /// verifying tokens with `tokens` and announcing itself through `register`.
    pub fn new<E>(
        settings: &Settings<E>,
        tokens: Arc<Tokens>,
        register: Arc<dyn Register>,
    ) -> Self {
        ServerBuilder {
            name: settings.service.clone(),
            host: settings.server.host,
            port: settings.server.port,
            admin_port: settings.server.admin_port(),
            drain_delay: settings.server.drain_delay,
            grace: settings.server.shutdown_grace,
            // A floor above a lowered ceiling follows it down.
            admission: reload::admission(&settings.server),
            routes: Routes::default(),
            service_names: Vec::new(),
            access: Vec::new(),
            tokens,
            register,
            ready_checks: Vec::new(),
            registry: Registry::default(),
            tls: None,
            admin_routes: axum::Router::new(),
            grpc_web: GrpcWeb::from_settings(&settings.server),
            centre: settings.centre.clone(),
        }
    }

    /// Adds a service's own HTTP routes to the admin port, beside `/metrics`, `/healthz` and
    /// `/readyz` (payment's Alipay notification endpoint). They are served without the gRPC
    /// layers: no token check, so each route authenticates its callers itself.
    pub fn admin_routes(mut self, routes: axum::Router) -> Self {
        self.admin_routes = self.admin_routes.merge(routes);
        self
    }

    /// Applies `keys` (dotted keys or section prefixes) of a config-centre reload with `hook`
    /// (see [`crate::config::centre::Reloader::on_reload`]); a no-op without a config centre.
    pub fn on_reload(
        mut self,
        keys: &'static [&'static str],
        hook: impl Fn(&crate::config::centre::Loaded) + Send + Sync + 'static,
    ) -> Self {
        if let Some(reloader) = &mut self.centre {
            reloader.on_reload(keys, Arc::new(hook));
        }
        self
    }

    /// Serves over mutual TLS with `tls` (see [`crate::tls`]); plain TCP with `None`.
    pub fn tls(mut self, tls: Option<MutualTls>) -> Self {
        self.tls = tls;
        self
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
        self.ready_checks
            .push((name.to_string(), ready_check(check)));
        self
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
        let routes = self
            .routes
            .add_service(health_service)
            .add_service(reflection_builder(&self.service_names).build_v1()?)
            .add_service(reflection_builder(&self.service_names).build_v1alpha()?);

        // Every method the server answers: the rest share one bucket and one label set.
        let methods: Vec<String> = self
            .access
            .iter()
            .flat_map(|t| t.rules.iter().map(|(m, _)| format!("/{}/{m}", t.service)))
            .collect();
        let rpc_metrics = RpcMetrics::register(
            &mut self.registry,
            methods
                .iter()
                .cloned()
                .chain(PLATFORM_METHODS.iter().map(|p| p.to_string())),
        );
        let centre = self
            .centre
            .take()
            .map(|r| (r, reload::ReloadMetrics::register(&mut self.registry)));
        let stack = Stack {
            trace: TraceLayer::new(&self.name, grpc_addr.to_string()),
            metrics: MetricsLayer::new(rpc_metrics),
            load_shed: LoadShedLayer::new(
                self.admission,
                self.service_names.clone(),
                methods,
                Verifier {
                    tokens: self.tokens.clone(),
                    audience: self.name.clone(),
                    mutual_tls: self.tls.is_some(),
                },
                &mut self.registry,
            ),
            access: AccessLayer::new(self.access, self.tokens, &self.name, self.tls.is_some()),
        };
        let (trigger, _) = shutdown_pair();
        tracing::info!(service = %self.name, %grpc_addr, %admin_addr, "listening");
        Ok(BoundServer {
            name: self.name,
            grpc,
            admin,
            grpc_addr,
            admin_addr,
            routes,
            stack,
            health,
            service_names: self.service_names,
            ready_checks: Arc::new(self.ready_checks),
            metrics: Metrics::new(self.registry),
            drain_delay: self.drain_delay,
            grace: self.grace,
            register: self.register,
            trigger,
            tls: self.tls.as_ref().map(MutualTls::server),
            admin_routes: self.admin_routes,
            grpc_web: self.grpc_web,
            centre,
        })
    }
}

/// The layers of [`layers`] that carry state, stacked in [`BoundServer::serve`].
struct Stack {
    trace: TraceLayer,
    metrics: MetricsLayer,
    load_shed: LoadShedLayer,
    access: AccessLayer,
}

/// The RPCs every server answers beside its own services' (health and reflection).
const PLATFORM_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

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
    stack: Stack,
    health: HealthReporter,
    service_names: Vec<&'static str>,
    ready_checks: Arc<Vec<(String, ReadyCheck)>>,
    metrics: Metrics,
    drain_delay: Duration,
    grace: Duration,
    register: Arc<dyn Register>,
    trigger: ShutdownTrigger,
    tls: Option<tonic::transport::ServerTlsConfig>,
    admin_routes: axum::Router,
    grpc_web: Option<GrpcWeb>,
    centre: Option<(crate::config::centre::Reloader, reload::ReloadMetrics)>,
}

/// Serves the admin port in a task until the returned sender fires (or is dropped).
fn spawn_admin(
    listener: TcpListener,
    router: axum::Router,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop_rx.await;
            })
            .into_future(),
    );
    (stop_tx, task)
}

/// Builds a server with `build`, then serves it until `shutdown` completes. A `shutdown` that
/// completes while the build still runs (a stop during migrations, or while a dependency is
/// slow to answer) ends it there, logged, instead of after a start that is no longer wanted.
pub async fn build_and_serve(
    build: impl Future<Output = anyhow::Result<BoundServer>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let mut shutdown = Box::pin(shutdown);
    tokio::select! {
        built = build => built?.serve(shutdown).await,
        () = &mut shutdown => {
            tracing::warn!("stopped while starting: the server never served");
            Ok(())
        }
    }
}

impl BoundServer {
    /// Fires when this server starts shutting down (or is dropped): background workers of the
    /// service watch it.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.trigger.subscribe()
    }

    /// Serves until `shutdown` completes, then drains (see the module docs).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let registration = self.register.register(&self.announcement()).await?;
        if let Some((reloader, metrics)) = self.centre {
            reload::spawn(reloader, &self.stack.load_shed, metrics, &self.trigger);
        }
        let stopping = Arc::new(AtomicBool::new(false));
        let admin_router = admin::router(
            self.metrics.clone(),
            self.ready_checks.clone(),
            stopping.clone(),
        )
        .merge(self.admin_routes);
        let (admin_stop_tx, admin) = spawn_admin(self.admin, admin_router);
        let drain = Drain {
            name: self.name.clone(),
            health: self.health.clone(),
            names: self.service_names.clone(),
            stopping,
            trigger: self.trigger,
            delay: self.drain_delay,
        };
        let mut begun = drain.trigger.subscribe();
        let signal = drain.run(shutdown, registration);
        let trace = self.stack.trace.service_trace().cloned();
        let cors = self.grpc_web.as_ref().and_then(GrpcWeb::cors);
        let web = self
            .grpc_web
            .as_ref()
            .map(|_| tonic_web::GrpcWebLayer::new());
        let stack = ServiceBuilder::new()
            .option_layer(cors)
            .option_layer(web)
            .layer(AroundLayer(RequestIds))
            .layer(AroundLayer(self.stack.trace))
            .layer(AroundLayer(self.stack.metrics))
            .layer(AroundLayer(self.stack.load_shed))
            .layer(AroundLayer(self.stack.access))
            .layer(AroundLayer(Deadlines));
        let incoming =
            tonic::transport::server::TcpIncoming::from(self.grpc).with_nodelay(Some(true));
        // gRPC-Web from a browser may come over HTTP/1.1.
        let mut builder = tonic::transport::Server::builder().accept_http1(self.grpc_web.is_some());
        if let Some(tls) = self.tls {
            builder = builder.tls_config(tls)?;
        }
        let server = builder
            .layer(stack)
            .add_routes(self.routes)
            .serve_with_incoming_shutdown(incoming, signal);
        let grace = self.grace + self.drain_delay;
        let grace_expired = async move {
            begun.wait().await;
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
        if let Some(trace) = trace {
            trace.flush().await;
        }
        result
    }

    fn announcement(&self) -> Announcement {
        Announcement {
            service: self.name.clone(),
            grpc_port: self.grpc_addr.port(),
            admin_port: self.admin_addr.port(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            mutual_tls: self.tls.is_some(),
        }
    }
}

/// The steps from the shutdown signal to closing the listener.
struct Drain {
    name: String,
    health: HealthReporter,
    names: Vec<&'static str>,
    stopping: Arc<AtomicBool>,
    trigger: ShutdownTrigger,
    delay: Duration,
}

impl Drain {
    /// Waits for `shutdown`, withdraws the instance, reports NOT_SERVING, tells the workers,
    /// then waits out the drain delay (the listener closes when this completes).
    async fn run(self, shutdown: impl Future<Output = ()>, registration: Box<dyn Registered>) {
        shutdown.await;
        match tokio::time::timeout(DEREGISTER_TIMEOUT, registration.deregister()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "deregistration failed"),
            Err(_) => tracing::warn!("deregistration timed out"),
        }
        tracing::info!(service = %self.name, "shutting down: draining in-flight calls");
        self.stopping.store(true, Ordering::SeqCst);
        for n in self.names {
            self.health
                .set_service_status(n, ServingStatus::NotServing)
                .await;
        }
        self.health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.trigger.fire();
        tokio::time::sleep(self.delay).await;
        // Keep the trigger alive until the listener closes, so workers stop on the signal,
        // not on the trigger being dropped mid-drain.
        drop(self.trigger);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_stop_during_the_build_ends_it_without_serving() {
        let build = std::future::pending::<anyhow::Result<BoundServer>>();
        tokio::time::timeout(Duration::from_secs(5), build_and_serve(build, async {}))
            .await
            .expect("the stop ends a build that never finishes")
            .expect("a stop is not an error");
    }

    #[tokio::test]
    async fn a_failed_build_is_the_error() {
        let build = async { Err::<BoundServer, _>(anyhow::anyhow!("no database")) };
        let err = build_and_serve(build, std::future::pending())
            .await
            .expect_err("the build's error");
        assert!(err.to_string().contains("no database"), "{err}");
    }
}
