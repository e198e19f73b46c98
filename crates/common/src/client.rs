//! Outgoing gRPC: `clients.client::<ProductCatalogServiceClient<Channel>>("product")` gives a
//! ready tonic client for a named service.
//!
//! Addresses come from discovery: the static addresses from config, or, with
//! `discovery.kind = "consul"`, the passing instances Consul reports, followed by a background
//! watch and updated in place (channels of unchanged addresses are kept). A service with no known
//! instance fails fast with `UNAVAILABLE`. Each call gets the
//! configured deadline unless the caller set one, sent as `grpc-timeout` and enforced locally, so
//! a slow or dead dependency yields `DEADLINE_EXCEEDED`/`UNAVAILABLE` instead of a hang. The
//! [`Channel`] type is ours, so balancing, retries and breakers slot in here without touching
//! services.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower::{Service, ServiceExt};

use crate::auth::Tokens;
use crate::config::{ClientSettings, DiscoverySettings};
use crate::discovery::ConsulResolver;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Parses `host:port` (host may be a name, IPv4 or `[IPv6]`).
pub fn parse_authority(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty() && !host.contains('/')).then_some((host, port))
}

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
                let mut current = current
                    .lock()
                    .map_err(|_| Status::internal("token cache poisoned"))?;
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

/// The instances of one service: address and its (lazily connecting) channel.
type Instances = Arc<RwLock<Vec<(String, tonic::transport::Channel)>>>;

/// A channel to every known instance of one service; calls are spread round-robin.
#[derive(Clone)]
pub struct Channel {
    service: Arc<str>,
    instances: Instances,
    next: Arc<AtomicUsize>,
    default_timeout: Duration,
    credentials: Credentials,
}

impl Channel {
    fn pick(&self) -> Option<tonic::transport::Channel> {
        let instances = self.instances.read().unwrap_or_else(|e| e.into_inner());
        if instances.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % instances.len();
        Some(instances[i].1.clone())
    }

    /// The addresses currently known for this service.
    pub fn addresses(&self) -> Vec<String> {
        let instances = self.instances.read().unwrap_or_else(|e| e.into_inner());
        instances.iter().map(|(a, _)| a.clone()).collect()
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
        let picked = self.pick();
        let service = self.service.clone();
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
        // The call's own deadline (or the default), capped by what is left of the deadline of
        // the RPC being handled, sent on as `grpc-timeout`.
        let own = req
            .headers()
            .get("grpc-timeout")
            .and_then(parse_grpc_timeout)
            .unwrap_or(self.default_timeout);
        let remaining = crate::server::current_deadline()
            .map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let timeout = remaining.map_or(own, |r| r.min(own));
        if timeout.is_zero() {
            return Box::pin(std::future::ready(Err(Status::deadline_exceeded(format!(
                "deadline exceeded before calling {service}"
            ))
            .into())));
        }
        // grpc-timeout allows at most 8 digits.
        if let Ok(v) = format!("{}m", timeout.as_millis().clamp(1, 99_999_999)).parse() {
            req.headers_mut().insert("grpc-timeout", v);
        }
        Box::pin(async move {
            let Some(mut channel) = picked else {
                return Err(
                    Status::unavailable(format!("no instance of {service} is known")).into(),
                );
            };
            let call = async {
                channel.ready().await?;
                channel.call(req).await
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(resp)) => Ok(resp),
                Ok(Err(e)) => {
                    Err(Status::unavailable(format!("{service} unavailable: {e}")).into())
                }
                Err(_) => Err(Status::deadline_exceeded(format!(
                    "{service} did not answer within {} ms",
                    timeout.as_millis()
                ))
                .into()),
            }
        })
    }
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
        }
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
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| Status::internal("client registry poisoned"))?;
        if let Some(ch) = channels.get(service) {
            return Ok(ch.clone());
        }
        let instances: Instances = if self.discovery.kind == "consul" {
            let instances = Instances::default();
            self.follow_consul(service, &instances)?;
            instances
        } else {
            let addrs = self
                .discovery
                .static_addrs
                .get(service)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    Status::unavailable(format!("no address configured for {service}"))
                })?;
            let mut instances = Vec::with_capacity(addrs.len());
            for addr in addrs {
                let channel = connect_lazy(addr, &self.settings).map_err(|_| {
                    Status::unavailable(format!("bad address `{addr}` for {service}"))
                })?;
                instances.push((addr.clone(), channel));
            }
            Arc::new(RwLock::new(instances))
        };
        let channel = Channel {
            service: Arc::from(service),
            instances,
            next: Arc::default(),
            default_timeout: Duration::from_millis(self.settings.request_timeout_ms),
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
    /// Keeps `instances` equal to the passing instances Consul reports for `service`, until the
    /// last [`Channel`] sharing them is dropped.
    fn follow_consul(&self, service: &str, instances: &Instances) -> Result<(), Status> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            Status::unavailable("consul discovery needs a tokio runtime".to_string())
        })?;
        let resolver = ConsulResolver::new(&self.discovery.consul)
            .map_err(|e| Status::unavailable(format!("consul client: {e}")))?;
        let weak: Weak<RwLock<Vec<(String, tonic::transport::Channel)>>> =
            Arc::downgrade(instances);
        let settings = self.settings.clone();
        let service = service.to_string();
        runtime.spawn(async move {
            let mut rx = resolver.watch(&service);
            loop {
                let addrs = rx.borrow_and_update().clone();
                let Some(instances) = weak.upgrade() else {
                    return;
                };
                update_instances(&instances, &addrs, &settings, &service);
                drop(instances);
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// Replaces the instance list with `addrs`, reusing the channels of addresses already known.
fn update_instances(
    instances: &Instances,
    addrs: &[String],
    settings: &ClientSettings,
    service: &str,
) {
    let mut current = instances.write().unwrap_or_else(|e| e.into_inner());
    let mut next = Vec::with_capacity(addrs.len());
    for addr in addrs {
        if let Some((_, ch)) = current.iter().find(|(a, _)| a == addr) {
            next.push((addr.clone(), ch.clone()));
            continue;
        }
        match connect_lazy(addr, settings) {
            Ok(ch) => next.push((addr.clone(), ch)),
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
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
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
