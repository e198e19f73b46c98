//! Outgoing gRPC: `clients.client::<ProductCatalogServiceClient<Channel>>("product")` gives a
//! ready tonic client for a named service.
//!
//! - **Discovery**: the static addresses from config, or, with `discovery.kind = "consul"`, the
//!   passing instances Consul reports, followed by a background watch and updated in place
//!   (instances of unchanged addresses keep their connection and state). A service with no known
//!   instance fails fast with `UNAVAILABLE`.
//! - **Balancing** (`balance.rs`): power of two choices over in-flight calls; an instance that
//!   fails to connect or answers `UNAVAILABLE` is ejected for a jittered backoff.
//! - **Deadlines**: the caller's `grpc-timeout`, else the per-method or client default, capped
//!   by what is left of the incoming call's deadline; sent on and enforced locally.
//! - **Retries** (`retry.rs`): idempotent RPCs only, after `UNAVAILABLE`, on another instance,
//!   within a budget.
//! - **Circuit breaking** (`breaker.rs`): per target service, with a state metric.
//!
//! Every number comes from `client.*` settings, whose defaults are the `DEFAULT_*` constants of
//! [`crate::config`].

mod balance;
mod breaker;
mod retry;

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower::{Service, ServiceExt};

use crate::auth::Tokens;
use crate::config::{ClientSettings, DiscoveryKind, DiscoverySettings};
use crate::discovery::ConsulResolver;
use balance::Instance;
use breaker::Breaker;
pub use breaker::BreakerState;
use retry::RetryBudget;
pub use retry::{IDEMPOTENT_RPCS, is_idempotent};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use crate::config::parse_authority;

/// Formats `host:port`, bracketing an IPv6 address (`[::1]:8003`).
pub fn format_authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The calling service's name and keys, for minting service tokens.
#[derive(Clone)]
pub struct ServiceIdentity {
    /// This service's name (the token's subject).
    pub name: String,
    /// The fleet's token keys.
    pub tokens: Arc<Tokens>,
}

/// What a channel sends as `authorization` when the request carries none.
#[derive(Clone)]
enum Credentials {
    None,
    /// A service token, re-minted shortly before it expires.
    Service {
        identity: ServiceIdentity,
        current: Arc<Mutex<Option<(String, i64)>>>,
    },
    /// A fixed bearer token (an end user's, or an admin's in tests and tools).
    Bearer(Arc<str>),
}

impl Credentials {
    fn header(&self) -> Result<Option<http::HeaderValue>, Status> {
        let token = match self {
            Credentials::None => return Ok(None),
            Credentials::Bearer(token) => token.to_string(),
            Credentials::Service { identity, current } => {
                let mut current = current.lock();
                let now = crate::store::unix_now();
                match current.as_ref() {
                    Some((token, exp)) if *exp - now > SERVICE_TOKEN_REFRESH_MARGIN_SECS => {
                        token.clone()
                    }
                    _ => {
                        let (token, exp) = identity.tokens.issue_service(&identity.name)?;
                        *current = Some((token.clone(), exp));
                        token
                    }
                }
            }
        };
        http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map(Some)
            .map_err(|_| Status::internal("token is not a valid header value"))
    }
}

/// A service token is replaced when it has less than this left.
pub const SERVICE_TOKEN_REFRESH_MARGIN_SECS: i64 = 15;

/// The instances of one service as the resolver last reported them.
type Instances = RwLock<Vec<Arc<Instance>>>;

/// Everything shared by the channels to one target service.
struct Pool {
    service: Arc<str>,
    instances: Instances,
    /// False until discovery first answered (Consul's first lookup); calls wait for it, so a
    /// freshly started service does not fail its first calls for want of a lookup.
    resolved: tokio::sync::watch::Receiver<bool>,
    settings: ClientSettings,
    breaker: Arc<Breaker>,
    budget: RetryBudget,
    metrics: TargetMetrics,
}

/// A channel to every known instance of one service: each call goes to the less busy of two
/// instances drawn at random, idempotent calls are retried on another instance after
/// `UNAVAILABLE` within a retry budget, and a circuit breaker fails calls fast while the service
/// is failing. Cheap to clone; clones share instances, breaker and budget.
#[derive(Clone)]
pub struct Channel {
    pool: Arc<Pool>,
    credentials: Credentials,
}

impl Channel {
    /// The addresses currently known for this service.
    pub fn addresses(&self) -> Vec<String> {
        let instances = self.pool.instances.read();
        instances.iter().map(|i| i.addr.clone()).collect()
    }

    /// The state of this service's circuit breaker.
    pub fn breaker_state(&self) -> BreakerState {
        self.pool.breaker.state()
    }

    /// The deadline of a call to `path` that sets none: the per-method default, else the
    /// client's.
    fn default_timeout(&self, path: &str) -> Duration {
        let method = path.rsplit('/').next().unwrap_or_default();
        self.pool
            .settings
            .method_timeout
            .get(&*self.pool.service)
            .and_then(|methods| {
                methods
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(method))
                    .map(|(_, timeout)| *timeout)
            })
            .unwrap_or(self.pool.settings.request_timeout)
    }
}

impl Service<http::Request<Body>> for Channel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        let service = self.pool.service.clone();
        if !req.headers().contains_key(crate::server::REQUEST_ID_HEADER)
            && let Some(id) = crate::server::current_request_id()
            && let Ok(value) = http::HeaderValue::from_str(&id)
        {
            req.headers_mut()
                .insert(crate::server::REQUEST_ID_HEADER, value);
        }
        if !req.headers().contains_key(http::header::AUTHORIZATION) {
            match self.credentials.header() {
                Ok(Some(value)) => {
                    req.headers_mut().insert(http::header::AUTHORIZATION, value);
                }
                Ok(None) => {}
                Err(status) => return Box::pin(std::future::ready(Err(status.into()))),
            }
        }
        // The call's own deadline (or the per-method default), capped by what is left of the
        // deadline of the RPC being handled, sent on as `grpc-timeout`.
        let own = req
            .headers()
            .get("grpc-timeout")
            .and_then(parse_grpc_timeout)
            .unwrap_or_else(|| self.default_timeout(req.uri().path()));
        let remaining =
            crate::server::current_deadline().map(|d| d.saturating_duration_since(Instant::now()));
        let timeout = remaining.map_or(own, |r| r.min(own));
        if timeout.is_zero() {
            return Box::pin(std::future::ready(Err(not_sent(
                Status::deadline_exceeded(format!("deadline exceeded before calling {service}")),
            )
            .into())));
        }
        let pool = self.pool.clone();
        Box::pin(async move { pool.send(req, timeout).await })
    }
}

/// How one attempt ended, as far as balancing, retries and the breaker care.
enum Attempt {
    /// An answer that is not `UNAVAILABLE` (possibly another error status).
    Answered(http::Response<Body>),
    /// The instance could not be reached or answered `UNAVAILABLE` (kept to pass on as is).
    Unavailable(Status, Option<http::Response<Body>>),
    /// The call's deadline passed on the way (the transport enforces `grpc-timeout` too).
    TimedOut(Status),
}

/// A request body that can be sent more than once (idempotent calls are buffered) or once.
enum Payload {
    Buffered(bytes::Bytes),
    Once(Option<Body>),
}

impl Payload {
    fn next(&mut self) -> Option<Body> {
        match self {
            Payload::Buffered(bytes) => Some(Body::new(http_body_util::Full::new(bytes.clone()))),
            Payload::Once(body) => body.take(),
        }
    }
}

impl Pool {
    async fn send(
        self: Arc<Self>,
        req: http::Request<Body>,
        timeout: Duration,
    ) -> Result<http::Response<Body>, BoxError> {
        let permit = self.breaker.admit().map_err(|refused| {
            self.metrics.rejected.inc();
            not_sent(refused)
        })?;
        let deadline = Instant::now() + timeout;
        let outcome =
            match tokio::time::timeout_at(deadline.into(), self.attempts(req, deadline)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "{} did not answer within {} ms",
                    self.service,
                    timeout.as_millis()
                ))),
            };
        match outcome {
            Ok(Attempt::Answered(resp)) => {
                let code = response_code(&resp);
                permit.record(code == Some(tonic::Code::DeadlineExceeded));
                Ok(resp)
            }
            Ok(Attempt::TimedOut(status)) => {
                permit.record(true);
                Err(status.into())
            }
            Ok(Attempt::Unavailable(status, resp)) => {
                permit.record(true);
                match resp {
                    Some(resp) => Ok(resp),
                    None => Err(status.into()),
                }
            }
            Err(status) => {
                let failed = matches!(
                    status.code(),
                    tonic::Code::DeadlineExceeded | tonic::Code::Unavailable
                );
                if status.code() == tonic::Code::Unavailable && self.is_empty() {
                    // Nothing was called: the breaker learns nothing from it.
                    drop(permit);
                } else {
                    permit.record(failed);
                }
                Err(status.into())
            }
        }
    }

    /// Whether an instance not in `tried` is known.
    fn has_untried(&self, tried: &[Arc<Instance>]) -> bool {
        let instances = self.instances.read();
        instances
            .iter()
            .any(|i| !tried.iter().any(|t| t.addr == i.addr))
    }

    fn is_empty(&self) -> bool {
        self.instances.read().is_empty()
    }

    /// Sends `req` to one instance, and for an idempotent RPC to others after `UNAVAILABLE`
    /// while attempts and budget last.
    async fn attempts(
        &self,
        req: http::Request<Body>,
        deadline: Instant,
    ) -> Result<Attempt, Status> {
        self.budget.deposit();
        let max_attempts = if retry::is_idempotent(req.uri().path()) {
            self.settings.retry.max_attempts
        } else {
            1
        };
        let (parts, body) = req.into_parts();
        let mut payload = if max_attempts > 1 {
            use http_body_util::BodyExt;
            Payload::Buffered(body.collect().await?.to_bytes())
        } else {
            Payload::Once(Some(body))
        };
        if !*self.resolved.borrow() {
            let mut resolved = self.resolved.clone();
            // The sender going away (the watch ended) counts as resolved too.
            let _ = resolved.wait_for(|done| *done).await;
        }
        let mut tried: Vec<Arc<Instance>> = Vec::new();
        let mut last_failure = None;
        loop {
            let picked = {
                let instances = self.instances.read();
                balance::pick(&instances, &tried)
            };
            let Some(instance) = picked else {
                // Every known instance was tried: the last one's answer stands.
                return match last_failure {
                    Some(failure) => Ok(failure),
                    None => Err(not_sent(Status::unavailable(format!(
                        "no instance of {} is known",
                        self.service
                    )))),
                };
            };
            let Some(body) = payload.next() else {
                return Err(Status::internal("request body already sent"));
            };
            let mut req = http::Request::from_parts(parts.clone(), body);
            let left = deadline.saturating_duration_since(Instant::now());
            // grpc-timeout allows at most 8 digits.
            if let Ok(v) = format!("{}m", left.as_millis().clamp(1, 99_999_999)).parse() {
                req.headers_mut().insert("grpc-timeout", v);
            }
            match self.attempt(&instance, req, max_attempts > 1).await {
                Attempt::Answered(resp) => {
                    instance.succeeded();
                    return Ok(Attempt::Answered(resp));
                }
                Attempt::Unavailable(status, resp) => {
                    let ejected_for = instance.eject(&self.settings.balance);
                    self.metrics.ejections.inc();
                    tracing::warn!(
                        target_service = %self.service,
                        instance = %instance.addr,
                        ejected_ms = ejected_for.as_millis() as u64,
                        error = %status.message(),
                        "instance unavailable; ejected"
                    );
                    tried.push(instance);
                    let retry = tried.len() < max_attempts as usize
                        && self.has_untried(&tried)
                        && self.budget.withdraw();
                    if !retry {
                        return Ok(Attempt::Unavailable(status, resp));
                    }
                    last_failure = Some(Attempt::Unavailable(status, resp));
                    self.metrics.retries.inc();
                }
                Attempt::TimedOut(status) => return Err(status),
            }
        }
    }

    /// One attempt on `instance`. With `whole`, the answer is read to its end here (the calls
    /// that may be retried are unary and small), so an instance dying between the response
    /// headers and the message, or a status `UNAVAILABLE` sent in the trailers, is seen here
    /// and retried rather than reaching the caller as a broken body.
    async fn attempt(
        &self,
        instance: &Arc<Instance>,
        req: http::Request<Body>,
        whole: bool,
    ) -> Attempt {
        let _in_flight = instance.start();
        let mut channel = instance.channel.clone();
        let answer: Result<http::Response<Body>, BoxError> = async {
            channel.ready().await?;
            let resp = channel.call(req).await?;
            if !whole || response_code(&resp).is_some() {
                return Ok(resp);
            }
            use http_body_util::BodyExt;
            let (mut parts, body) = resp.into_parts();
            let whole = body.collect().await?;
            let code = whole
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i32>().ok());
            if let Some(code) = code {
                parts
                    .extensions
                    .insert(TrailerCode(tonic::Code::from(code)));
            }
            Ok(http::Response::from_parts(parts, Body::new(whole)))
        }
        .await;
        match answer {
            Ok(resp) if trailer_code(&resp) == Some(tonic::Code::Unavailable) => {
                let status = Status::unavailable(format!("{} unavailable", self.service));
                Attempt::Unavailable(status, Some(resp))
            }
            Ok(resp) if response_code(&resp) == Some(tonic::Code::Unavailable) => {
                let status = Status::from_header_map(resp.headers()).unwrap_or_else(|| {
                    Status::unavailable(format!("{} unavailable", self.service))
                });
                Attempt::Unavailable(status, Some(resp))
            }
            Ok(resp) => Attempt::Answered(resp),
            Err(e) if timed_out(e.as_ref()) => Attempt::TimedOut(Status::deadline_exceeded(
                format!("{} did not answer in time", self.service),
            )),
            Err(e) if connect_failed(e.as_ref()) => Attempt::Unavailable(
                not_sent(Status::unavailable(format!(
                    "{} unavailable: {e}",
                    self.service
                ))),
                None,
            ),
            Err(e) => Attempt::Unavailable(
                Status::unavailable(format!("{} unavailable: {e}", self.service)),
                None,
            ),
        }
    }
}

/// The source of a failure that happened before the request left this process.
#[derive(Debug)]
struct NotSent;

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request was not sent")
    }
}

impl std::error::Error for NotSent {}

/// Marks `status` as a failure before sending (the mark stays in this process: a status's
/// source is never sent over the wire).
fn not_sent(mut status: Status) -> Status {
    status.set_source(Arc::new(NotSent));
    status
}

/// Whether a failed call is known never to have reached the service: no instance was known,
/// the circuit was open, no connection could be made, or the deadline was gone before the call.
/// Any other failure (a connection lost mid-call, a timeout, the service's own error) may have
/// been acted on, which is what a non-idempotent call like `Charge` must assume.
pub fn never_sent(status: &Status) -> bool {
    std::error::Error::source(status).is_some_and(|s| s.is::<NotSent>())
}

/// Whether a transport error is a connection that could not be made (nothing was sent).
fn connect_failed(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// Whether a transport error is the channel enforcing the call's `grpc-timeout`.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// The gRPC status in the trailers of a response read whole (noted by `Pool::attempt` as an
/// extension, since a body's trailers cannot be read without consuming it).
fn trailer_code(resp: &http::Response<Body>) -> Option<tonic::Code> {
    resp.extensions().get::<TrailerCode>().map(|c| c.0)
}

/// The grpc-status found in the trailers of a response read whole.
#[derive(Clone, Copy)]
struct TrailerCode(tonic::Code);

/// The gRPC status of a trailers-only response (how servers send errors), if any.
fn response_code(resp: &http::Response<Body>) -> Option<tonic::Code> {
    let value = resp.headers().get("grpc-status")?;
    let code: i32 = value.to_str().ok()?.trim().parse().ok()?;
    Some(tonic::Code::from(code))
}

/// Parses a `grpc-timeout` header value (`<digits><unit>`).
pub fn parse_grpc_timeout(v: &http::HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?;
    if s.len() < 2 || s.len() > 9 {
        return None;
    }
    let (digits, unit) = s.split_at(s.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A generated tonic client that can be built on a [`Channel`].
pub trait FromChannel {
    /// Wraps the channel.
    fn from_channel(channel: Channel) -> Self;
}

macro_rules! from_channel {
    ($($client:ty),* $(,)?) => {
        $(impl FromChannel for $client {
            fn from_channel(channel: Channel) -> Self {
                <$client>::new(channel)
            }
        })*
    };
}

from_channel!(
    mall_proto::auth::v1::auth_service_client::AuthServiceClient<Channel>,
    mall_proto::user::v1::user_service_client::UserServiceClient<Channel>,
    mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient<Channel>,
    mall_proto::cart::v1::cart_service_client::CartServiceClient<Channel>,
    mall_proto::order::v1::order_service_client::OrderServiceClient<Channel>,
    mall_proto::payment::v1::payment_service_client::PaymentServiceClient<Channel>,
    mall_proto::checkout::v1::checkout_service_client::CheckoutServiceClient<Channel>,
    tonic_health::pb::health_client::HealthClient<Channel>,
);

/// Clients for the other services of the fleet; cheap to clone, channels are shared.
#[derive(Clone)]
pub struct Clients {
    discovery: Arc<DiscoverySettings>,
    settings: ClientSettings,
    identity: Option<ServiceIdentity>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    metrics: ClientMetrics,
}

/// Labels of the client metrics: the service called.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target: String,
}

/// The client metrics of one process-side service, by target service.
#[derive(Clone, Default)]
struct ClientMetrics {
    breaker_state: Family<TargetLabels, Gauge>,
    rejected: Family<TargetLabels, Counter>,
    retries: Family<TargetLabels, Counter>,
    ejections: Family<TargetLabels, Counter>,
}

/// The metrics of one target, resolved once.
struct TargetMetrics {
    rejected: Counter,
    retries: Counter,
    ejections: Counter,
}

impl ClientMetrics {
    fn target(&self, service: &str) -> (Gauge, TargetMetrics) {
        let labels = TargetLabels {
            target: service.to_string(),
        };
        (
            self.breaker_state.get_or_create(&labels).clone(),
            TargetMetrics {
                rejected: self.rejected.get_or_create(&labels).clone(),
                retries: self.retries.get_or_create(&labels).clone(),
                ejections: self.ejections.get_or_create(&labels).clone(),
            },
        )
    }
}

impl Clients {
    /// Clients resolving names through `discovery`; with an `identity`, every call carries a
    /// service token unless the request sets `authorization` itself.
    pub fn new(
        discovery: &DiscoverySettings,
        settings: &ClientSettings,
        identity: Option<ServiceIdentity>,
    ) -> Self {
        Clients {
            discovery: Arc::new(discovery.clone()),
            settings: settings.clone(),
            identity,
            channels: Arc::default(),
            metrics: ClientMetrics::default(),
        }
    }

    /// Adds the client metrics (breaker state, fast failures, retries, ejections per target
    /// service) to `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let m = &self.metrics;
        registry.register(
            "grpc_client_circuit_state",
            "Circuit breaker state per target service: 0 closed, 1 open, 2 half-open",
            m.breaker_state.clone(),
        );
        registry.register(
            "grpc_client_circuit_rejected",
            "Calls failed fast by an open circuit breaker",
            m.rejected.clone(),
        );
        registry.register(
            "grpc_client_retries",
            "Idempotent calls sent again to another instance after UNAVAILABLE",
            m.retries.clone(),
        );
        registry.register(
            "grpc_client_ejections",
            "Instances taken out of rotation after failing to connect or answering UNAVAILABLE",
            m.ejections.clone(),
        );
    }

    /// A typed client for `service` (e.g. `"product"`), calling as this service.
    pub fn client<T: FromChannel>(&self, service: &str) -> Result<T, Status> {
        Ok(T::from_channel(self.channel(service)?))
    }

    /// A typed client for `service` that sends `bearer` (an end user's or admin's access
    /// token) instead of the service token.
    pub fn client_as<T: FromChannel>(&self, service: &str, bearer: &str) -> Result<T, Status> {
        let mut channel = self.channel(service)?;
        channel.credentials = Credentials::Bearer(Arc::from(bearer));
        Ok(T::from_channel(channel))
    }

    /// The shared channel to `service`; `UNAVAILABLE` when no address is configured.
    pub fn channel(&self, service: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock();
        if let Some(ch) = channels.get(service) {
            return Ok(ch.clone());
        }
        let consul = self.discovery.kind == DiscoveryKind::Consul;
        let mut instances = Vec::new();
        if !consul {
            let addrs = self
                .discovery
                .static_addrs
                .get(service)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    not_sent(Status::unavailable(format!(
                        "no address configured for {service}"
                    )))
                })?;
            for addr in addrs {
                let channel = connect_lazy(addr, &self.settings).map_err(|_| {
                    Status::unavailable(format!("bad address `{addr}` for {service}"))
                })?;
                instances.push(Instance::new(addr.clone(), channel));
            }
        }
        let name: Arc<str> = Arc::from(service);
        let (state, metrics) = self.metrics.target(service);
        let (resolved_tx, resolved) = tokio::sync::watch::channel(!consul);
        let pool = Arc::new(Pool {
            service: name.clone(),
            instances: RwLock::new(instances),
            resolved,
            settings: self.settings.clone(),
            breaker: Breaker::new(name, &self.settings.breaker, state),
            budget: RetryBudget::new(&self.settings.retry),
            metrics,
        });
        if consul {
            self.follow_consul(service, &pool, resolved_tx)?;
        }
        let channel = Channel {
            pool,
            credentials: match &self.identity {
                Some(identity) => Credentials::Service {
                    identity: identity.clone(),
                    current: Arc::default(),
                },
                None => Credentials::None,
            },
        };
        channels.insert(service.to_string(), channel.clone());
        Ok(channel)
    }
}

impl Clients {
    /// Keeps the pool's instances equal to the passing instances Consul reports for `service`,
    /// until the last [`Channel`] sharing them is dropped.
    fn follow_consul(
        &self,
        service: &str,
        pool: &Arc<Pool>,
        resolved: tokio::sync::watch::Sender<bool>,
    ) -> Result<(), Status> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Status::unavailable("consul discovery needs a tokio runtime".to_string())
        })?;
        let resolver = ConsulResolver::new(&self.discovery.consul)
            .map_err(|e| Status::unavailable(format!("consul client: {e}")))?;
        let weak: Weak<Pool> = Arc::downgrade(pool);
        let settings = self.settings.clone();
        let service = service.to_string();
        runtime.spawn(async move {
            let mut rx = resolver.watch(&service);
            loop {
                let answer = rx.borrow_and_update().clone();
                let Some(pool) = weak.upgrade() else {
                    return;
                };
                if let Some(addrs) = answer {
                    update_instances(&pool.instances, &addrs, &settings, &service);
                    resolved.send_replace(true);
                }
                drop(pool);
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// Replaces the instance list with `addrs`, keeping the instances (channel, in-flight count,
/// ejection) of addresses already known.
fn update_instances(
    instances: &Instances,
    addrs: &[String],
    settings: &ClientSettings,
    service: &str,
) {
    let mut current = instances.write();
    let mut next = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if let Some(known) = current.iter().find(|i| &i.addr == addr) {
            next.push(known.clone());
            continue;
        }
        match connect_lazy(addr, settings) {
            Ok(ch) => next.push(Instance::new(addr.clone(), ch)),
            Err(e) => {
                tracing::warn!(%service, %addr, error = %e, "ignoring a bad instance address")
            }
        }
    }
    *current = next;
}

/// A lazily connecting channel to `addr` (`host:port`).
fn connect_lazy(
    addr: &str,
    settings: &ClientSettings,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(settings.keepalive_interval)
        .keep_alive_while_idle(true)
        .connect_lazy())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_and_timeouts_parse() {
        assert_eq!(parse_authority("127.0.0.1:8003"), Some(("127.0.0.1", 8003)));
        assert_eq!(parse_authority("[::1]:80"), Some(("[::1]", 80)));
        assert_eq!(parse_authority("product"), None);
        assert_eq!(parse_authority("h:99999"), None);
        let v = http::HeaderValue::from_static("200m");
        assert_eq!(parse_grpc_timeout(&v), Some(Duration::from_millis(200)));
        let v = http::HeaderValue::from_static("1x");
        assert_eq!(parse_grpc_timeout(&v), None);
    }
}
