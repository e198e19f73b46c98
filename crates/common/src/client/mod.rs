//! Outgoing gRPC: `clients.client::<ProductCatalogServiceClient<Channel>>(ServiceName::Product)` gives a
//! ready tonic client for a named service. Each call goes down a stack of layers, one concern
//! per file, outermost first:
//!
//! 0. [`trace`] (while traces are exported): the call's client span, and an attempt span
//!    per attempt (made by the balancer) whose W3C trace context goes on the attempt;
//! 1. [`request_id`]: the handled RPC's request id goes on the call;
//! 2. [`credentials`]: this service's token (or a given bearer token) unless the call has one;
//! 3. [`breaker`]: fails calls fast while the target is failing, with a state metric;
//! 4. [`deadline`]: the call's deadline (own, per-method or default, capped by the handled
//!    RPC's), enforced around every attempt;
//! 5. [`retry`]: idempotent RPCs only, after `UNAVAILABLE`, on another instance, within a
//!    budget (a `tower::retry::Policy`);
//! 6. [`balance`]: power of two choices over in-flight calls, ejecting instances that fail to
//!    connect or answer `UNAVAILABLE`; the attempt itself.
//!
//! Instances come from discovery ([`crate::discovery::Resolve`]) and are updated in place as it
//! reports changes (instances of unchanged addresses keep their connection and state). Every
//! number comes from `client.*` settings ([`crate::config::ClientSettings`]).

mod balance;
mod breaker;
mod credentials;
mod deadline;
mod request_id;
mod retry;
mod trace;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use mall_types::ServiceName;
use parking_lot::{Mutex, RwLock};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::{ClientTlsConfig, Endpoint};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder};

use self::balance::{Balance, Target, update_instances};
pub use self::breaker::BreakerState;
use self::breaker::{Breaker, BreakerLayer};
use self::credentials::Credentials;
pub use self::credentials::{SERVICE_TOKEN_REFRESH_MARGIN_SECS, ServiceIdentity};
use self::deadline::DeadlineLayer;
use self::request_id::RequestIdLayer;
pub use self::retry::is_idempotent;
use self::retry::{RetryBudget, RetryLayer};
use crate::around::AroundLayer;
use crate::config::ClientSettings;
pub use crate::config::{format_authority, parse_authority};
use crate::discovery::{InstancesWatch, Resolve};
pub use crate::error::never_sent;
use crate::tls::MutualTls;

/// The error type of every client layer (a boxed [`Status`] for failures this crate makes).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The instances one call has tried (shared by the retry policy and the balancer).
#[derive(Clone, Default)]
pub(crate) struct Attempted(Arc<Mutex<Vec<String>>>);

impl Attempted {
    fn addrs(&self) -> Vec<String> {
        self.0.lock().clone()
    }

    fn push(&self, addr: &str) {
        self.0.lock().push(addr.to_string());
    }
}

/// Asks the balancer to read the answer whole (calls that may be retried).
#[derive(Clone, Copy)]
pub(crate) struct ReadWhole;

/// When the call's deadline passes (set by the deadline layer).
#[derive(Clone, Copy)]
pub(crate) struct CallDeadline(pub(crate) Instant);

/// The grpc-status found in the trailers of a response read whole (noted by the balancer as an
/// extension, since a body's trailers cannot be read without consuming it).
#[derive(Clone, Copy)]
pub(crate) struct TrailerCode(pub(crate) tonic::Code);

/// The gRPC status of a trailers-only response (how servers send errors), if any.
pub(crate) fn response_code(resp: &http::Response<Body>) -> Option<tonic::Code> {
    let value = resp.headers().get("grpc-status")?;
    let code: i32 = value.to_str().ok()?.trim().parse().ok()?;
    Some(tonic::Code::from(code))
}

/// Whether an answer is a server's refusal to admit the call (`RESOURCE_EXHAUSTED` with
/// [`SHED_HEADER`](crate::context::SHED_HEADER) `limit`, or `queue` after waiting for a slot):
/// it never ran, so another instance may take it.
pub(crate) fn answered_shed(resp: &http::Response<Body>) -> bool {
    response_code(resp) == Some(tonic::Code::ResourceExhausted)
        && resp
            .headers()
            .get(crate::context::SHED_HEADER)
            .is_some_and(|v| v == "limit" || v == "queue")
}

/// Whether an answer is `UNAVAILABLE`, in its headers or (read whole) its trailers.
pub(crate) fn answered_unavailable(resp: &http::Response<Body>) -> bool {
    let trailer = resp.extensions().get::<TrailerCode>().map(|c| c.0);
    trailer.or_else(|| response_code(resp)) == Some(tonic::Code::Unavailable)
}

type Stack = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, BoxError>;

/// The shared state of the channels to one target service.
struct Pool {
    target: Arc<Target>,
    breaker: Arc<Breaker>,
    budget: Arc<RetryBudget>,
    /// The clients' settings, shared and reloadable ([`Clients::reconfigure`]).
    settings: Arc<RwLock<ClientSettings>>,
    max_attempts: Arc<AtomicU32>,
    metrics: TargetMetrics,
}

impl Pool {
    /// The layer stack of a channel calling with `credentials`.
    fn stack(&self, credentials: Credentials) -> Stack {
        let spans = crate::telemetry::trace::enabled().then(|| {
            AroundLayer(trace::CallSpans {
                target: self.target.service.clone(),
            })
        });
        let stack = ServiceBuilder::new()
            .option_layer(spans)
            .layer(RequestIdLayer)
            .layer(AroundLayer(credentials))
            .layer(AroundLayer(BreakerLayer {
                breaker: self.breaker.clone(),
                rejected: self.metrics.rejected.clone(),
            }))
            .layer(AroundLayer(DeadlineLayer {
                service: self.target.service.clone(),
                settings: self.settings.clone(),
            }))
            .layer(AroundLayer(RetryLayer {
                max_attempts: self.max_attempts.clone(),
                budget: self.budget.clone(),
                target: self.target.clone(),
                retries: self.metrics.retries.clone(),
            }))
            .service(Balance {
                target: self.target.clone(),
            });
        BoxCloneSyncService::new(stack)
    }
}

/// A channel to every known instance of one service, through the layers of the module docs.
/// Cheap to clone; clones share instances, breaker and budget.
#[derive(Clone)]
pub struct Channel {
    pool: Arc<Pool>,
    stack: Stack,
}

impl Channel {
    /// The addresses currently known for this service.
    pub fn addresses(&self) -> Vec<String> {
        self.pool.target.addresses()
    }

    /// The state of this service's circuit breaker.
    pub fn breaker_state(&self) -> BreakerState {
        self.pool.breaker.state()
    }
}

impl Service<http::Request<Body>> for Channel {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = <Stack as Service<http::Request<Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.stack.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        self.stack.call(req)
    }
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
    resolver: Arc<dyn Resolve>,
    settings: Arc<RwLock<ClientSettings>>,
    identity: Option<ServiceIdentity>,
    tls: Option<MutualTls>,
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
    /// Clients finding services through `resolver`; with an `identity`, every call carries a
    /// service token unless the request sets `authorization` itself.
    pub fn new(
        resolver: Arc<dyn Resolve>,
        settings: &ClientSettings,
        identity: Option<ServiceIdentity>,
    ) -> Self {
        Clients {
            resolver,
            settings: Arc::new(RwLock::new(settings.clone())),
            identity,
            tls: None,
            channels: Arc::default(),
            metrics: ClientMetrics::default(),
        }
    }

    /// The same clients calling over mutual TLS with `tls` (see [`crate::tls`]): every
    /// connection presents this service's certificate and checks that the server's names the
    /// service called. Set it before the first call: channels already made keep their transport.
    pub fn with_tls(mut self, tls: Option<MutualTls>) -> Self {
        self.tls = tls;
        self
    }

    /// Clients finding services the way `discovery` says (see
    /// [`crate::discovery::from_settings`]).
    pub fn discover(
        discovery: &crate::config::DiscoverySettings,
        settings: &ClientSettings,
        identity: Option<ServiceIdentity>,
    ) -> anyhow::Result<Self> {
        let (resolver, _) = crate::discovery::from_settings(discovery)?;
        Ok(Clients::new(resolver, settings, identity))
    }

    /// Adds the client metrics (breaker state, fast failures, retries, ejections per target
    /// service) and the resolver's (DNS lookup failures) to `registry`.
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
            "Idempotent calls sent again to another instance after UNAVAILABLE or a shed",
            m.retries.clone(),
        );
        registry.register(
            "grpc_client_ejections",
            "Instances taken out of rotation after failing to connect or answering UNAVAILABLE",
            m.ejections.clone(),
        );
        self.resolver.register_metrics(registry);
    }

    /// Takes new `client.*` settings (a config-centre reload): deadlines, retries, the retry
    /// budget, the breakers and ejection apply to the next call of every channel, made or not.
    /// The connect timeout and keep-alive (not reloadable) stay as the channels were made.
    pub fn reconfigure(&self, settings: &ClientSettings) {
        *self.settings.write() = settings.clone();
        for channel in self.channels.lock().values() {
            let pool = &channel.pool;
            pool.max_attempts
                .store(settings.retry.max_attempts, Ordering::Relaxed);
            pool.budget.reconfigure(&settings.retry);
            pool.breaker.reconfigure(&settings.breaker);
            *pool.target.settings.write() = settings.balance.clone();
        }
    }

    /// A typed client for `service`, calling as this service.
    pub fn client<T: FromChannel>(&self, service: ServiceName) -> Result<T, Status> {
        Ok(T::from_channel(self.channel(service.as_str())?))
    }

    /// A typed client for `service` that sends `bearer` (an end user's or admin's access
    /// token) instead of the service token.
    pub fn client_as<T: FromChannel>(
        &self,
        service: ServiceName,
        bearer: &str,
    ) -> Result<T, Status> {
        let shared = self.channel(service.as_str())?;
        let stack = shared.pool.stack(Credentials::Bearer(Arc::from(bearer)));
        Ok(T::from_channel(Channel {
            pool: shared.pool,
            stack,
        }))
    }

    /// The shared channel to `service`; `UNAVAILABLE` when discovery knows no way to find it.
    pub fn channel(&self, service: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock();
        if let Some(ch) = channels.get(service) {
            return Ok(ch.clone());
        }
        let watch = self.resolver.resolve(service)?;
        let pool = self.pool(service, &watch)?;
        let channel = Channel {
            stack: pool.stack(Credentials::service(
                self.identity.as_ref(),
                pool.target.service.clone(),
            )),
            pool,
        };
        channels.insert(service.to_string(), channel.clone());
        Ok(channel)
    }

    /// The pool of `service`, with the instances `watch` knows now and, while it may change, a
    /// task that keeps them up to date.
    fn pool(&self, service: &str, watch: &InstancesWatch) -> Result<Arc<Pool>, Status> {
        let name: Arc<str> = Arc::from(service);
        let settings = self.settings.read().clone();
        let (state, metrics) = self.metrics.target(service);
        let current = watch.borrow().clone();
        let (resolved_tx, resolved) = tokio::sync::watch::channel(current.is_some());
        let target = Arc::new(Target {
            service: name.clone(),
            instances: RwLock::new(Vec::new()),
            resolved,
            settings: RwLock::new(settings.balance.clone()),
            ejections: metrics.ejections.clone(),
        });
        let connect = Connect {
            settings: settings.clone(),
            tls: self.tls.as_ref().map(|tls| tls.client(service)),
        };
        if let Some(addrs) = &current {
            for addr in addrs {
                let channel = connect.lazy(addr).map_err(|_| {
                    Status::unavailable(format!("bad address `{addr}` for {service}"))
                })?;
                target
                    .instances
                    .write()
                    .push(balance::Instance::new(addr.clone(), channel));
            }
        }
        if watch.has_changed().is_ok() {
            follow(&target, watch.clone(), resolved_tx, connect);
        }
        Ok(Arc::new(Pool {
            breaker: Breaker::new(name, &settings.breaker, state),
            budget: Arc::new(RetryBudget::new(&settings.retry)),
            max_attempts: Arc::new(AtomicU32::new(settings.retry.max_attempts)),
            target,
            settings: self.settings.clone(),
            metrics,
        }))
    }
}

/// Keeps `target`'s instances equal to what `watch` reports, until the last [`Channel`] sharing
/// them is dropped.
fn follow(
    target: &Arc<Target>,
    mut watch: InstancesWatch,
    resolved: tokio::sync::watch::Sender<bool>,
    connect: Connect,
) {
    let weak: Weak<Target> = Arc::downgrade(target);
    tokio::spawn(async move {
        loop {
            let answer = watch.borrow_and_update().clone();
            let Some(target) = weak.upgrade() else {
                return;
            };
            if let Some(addrs) = answer {
                update_instances(&target, &addrs, |addr| connect.lazy(addr));
                resolved.send_replace(true);
            }
            drop(target);
            if watch.changed().await.is_err() {
                return;
            }
        }
    });
}

/// How the channels to one target service connect.
struct Connect {
    settings: ClientSettings,
    /// Mutual TLS towards this target, when on.
    tls: Option<ClientTlsConfig>,
}

impl Connect {
    /// A lazily connecting channel to `addr` (`host:port`).
    fn lazy(&self, addr: &str) -> Result<tonic::transport::Channel, tonic::transport::Error> {
        let settings = &self.settings;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(settings.keepalive_interval)
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone())?;
        }
        Ok(endpoint.connect_lazy())
    }
}
