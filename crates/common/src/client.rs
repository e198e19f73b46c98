//! Outgoing gRPC: `clients.client::<ProductCatalogServiceClient<Channel>>("product")` gives a
//! ready tonic client for a named service.
//!
//! Addresses come from discovery (static addresses from config today). Each call gets the
//! configured deadline unless the caller set one, sent as `grpc-timeout` and enforced locally, so
//! a slow or dead dependency yields `DEADLINE_EXCEEDED`/`UNAVAILABLE` instead of a hang. The
//! [`Channel`] type is ours, so balancing, retries and breakers slot in here without touching
//! services.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::Status;
use tonic::body::Body;
use tonic::transport::Endpoint;
use tower::{Service, ServiceExt};

use crate::auth::Tokens;
use crate::config::{ClientSettings, DiscoverySettings};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Parses `host:port` (host may be a name, IPv4 or `[IPv6]`).
pub fn parse_authority(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse().ok()?;
    (!host.is_empty() && !host.contains('/')).then_some((host, port))
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

/// A channel to every known instance of one service; calls are spread round-robin.
#[derive(Clone)]
pub struct Channel {
    service: Arc<str>,
    instances: Arc<Vec<tonic::transport::Channel>>,
    next: Arc<AtomicUsize>,
    default_timeout: Duration,
    credentials: Credentials,
}

impl Channel {
    fn pick(&self) -> Option<tonic::transport::Channel> {
        if self.instances.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.instances.len();
        Some(self.instances[i].clone())
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
        let timeout = match req.headers().get("grpc-timeout") {
            Some(v) => parse_grpc_timeout(v).unwrap_or(self.default_timeout),
            None => {
                if let Ok(v) = format!("{}m", self.default_timeout.as_millis()).parse() {
                    req.headers_mut().insert("grpc-timeout", v);
                }
                self.default_timeout
            }
        };
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
        let addrs = self
            .discovery
            .static_addrs
            .get(service)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Status::unavailable(format!("no address configured for {service}")))?;
        let mut instances = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|_| Status::unavailable(format!("bad address `{addr}` for {service}")))?
                .connect_timeout(Duration::from_millis(self.settings.connect_timeout_ms))
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true);
            instances.push(endpoint.connect_lazy());
        }
        let channel = Channel {
            service: Arc::from(service),
            instances: Arc::new(instances),
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
