//! The fleet as a shopper reaches it: plain tonic clients (no fleet client stack, no service
//! tokens), each call with a deadline and the shopper's bearer token, balanced as a gateway
//! would over the addresses given for a service (round robin, one channel per address).
//!
//! A call that could not even connect (connection refused, connect timeout: tonic's
//! [`ConnectError`](tonic::ConnectError) in the status's source chain) never reached a server,
//! so it is sent again at once to the service's next address, at most once per address. A call
//! that failed once sent (a broken stream, any answer) is not: whether to retry it is the
//! caller's decision (a checkout retries under its idempotency key).

use std::error::Error as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mall_proto::cart::v1 as cart;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::checkout::v1 as checkout;
use mall_proto::checkout::v1::checkout_service_client::CheckoutServiceClient;
use mall_proto::product::v1 as product;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_proto::user::v1 as user;
use mall_proto::user::v1::user_service_client::UserServiceClient;
use mall_types::ServiceName;
use tonic::Status;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings on idle connections, so a dead server is noticed between calls.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Where each service listens: `host:port`, or several separated by commas (the instances of
/// the service, balanced round robin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addrs {
    /// auth (only its health is checked: user calls it).
    pub auth: String,
    /// user: Register, Login.
    pub user: String,
    /// product: ListProducts, SearchProducts, GetProduct.
    pub product: String,
    /// cart: AddItem, GetCart, EmptyCart.
    pub cart: String,
    /// order (only its health is checked: checkout calls it).
    pub order: String,
    /// checkout: Checkout.
    pub checkout: String,
}

impl Default for Addrs {
    fn default() -> Self {
        let at = |s: ServiceName| format!("127.0.0.1:{}", s.port());
        Addrs {
            auth: at(ServiceName::Auth),
            user: at(ServiceName::User),
            product: at(ServiceName::Product),
            cart: at(ServiceName::Cart),
            order: at(ServiceName::Order),
            checkout: at(ServiceName::Checkout),
        }
    }
}

impl Addrs {
    /// Every address with its service's name.
    pub fn all(&self) -> [(&'static str, &str); 6] {
        [
            ("auth", &self.auth),
            ("user", &self.user),
            ("product", &self.product),
            ("cart", &self.cart),
            ("order", &self.order),
            ("checkout", &self.checkout),
        ]
    }

    /// Every single address with its service's name (a list split at its commas).
    pub fn each(&self) -> Vec<(&'static str, &str)> {
        self.all()
            .into_iter()
            .flat_map(|(name, list)| split_list(list).into_iter().map(move |a| (name, a)))
            .collect()
    }

    /// Refuses any address that is not on this machine's loopback (unless `allow_remote`): a
    /// load test never leaves the machine by accident. Every address of a list is checked; an
    /// empty list is refused.
    pub async fn ensure_loopback(&self, allow_remote: bool) -> anyhow::Result<()> {
        for (name, list) in self.all() {
            anyhow::ensure!(
                !split_list(list).is_empty(),
                "--{name}-addr `{list}`: no address"
            );
        }
        for (name, addr) in self.each() {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
                .await
                .map_err(|e| anyhow::anyhow!("--{name}-addr {addr}: {e}"))?
                .collect();
            anyhow::ensure!(!resolved.is_empty(), "--{name}-addr {addr}: no address");
            if !allow_remote && let Some(remote) = resolved.iter().find(|a| !a.ip().is_loopback()) {
                anyhow::bail!(
                    "--{name}-addr {addr} resolves to {remote}, not loopback; pass \
                     --allow-remote to load another machine"
                );
            }
        }
        Ok(())
    }
}

/// The addresses of a comma-separated list, trimmed, empty items left out.
pub fn split_list(list: &str) -> Vec<&str> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect()
}

/// The message of the status loadgen makes when its own deadline passes.
pub const CLIENT_DEADLINE_MESSAGE: &str = "loadgen: no answer within the call's deadline";

/// Whether `status` says the call never reached a server: the connection could not be made
/// (tonic's [`ConnectError`](tonic::ConnectError) somewhere in its source chain).
pub fn connect_failed(status: &Status) -> bool {
    let mut source = status.source();
    while let Some(err) = source {
        if err.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = err.source();
    }
    false
}

/// One client per address of a service, taken in turn.
#[derive(Clone)]
struct Balanced<C> {
    clients: Arc<[C]>,
    next: Arc<AtomicUsize>,
}

impl<C: Clone> Balanced<C> {
    /// A client (made by `client`) over a lazily connected channel to every address of `list`.
    fn new(list: &str, client: impl Fn(Channel) -> C) -> anyhow::Result<Balanced<C>> {
        let clients = split_list(list)
            .into_iter()
            .map(|addr| channel(addr).map(&client))
            .collect::<anyhow::Result<Vec<C>>>()?;
        anyhow::ensure!(!clients.is_empty(), "`{list}`: no address");
        Ok(Balanced {
            clients: clients.into(),
            next: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// `attempt` on the next client in turn; while it fails without reaching a server
    /// ([`connect_failed`]), on the following ones (each at most once).
    async fn call<T, F>(
        &self,
        mut attempt: impl FnMut(C) -> F,
    ) -> Result<tonic::Response<T>, Status>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let n = self.clients.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = Status::unavailable("loadgen: no address");
        for i in 0..n {
            let client = self.clients[(first + i) % n].clone();
            match attempt(client).await {
                Err(status) if connect_failed(&status) => last = status,
                answer => return answer,
            }
        }
        Err(last)
    }
}

/// The shopper's bearer token as request metadata.
pub type Bearer = MetadataValue<Ascii>;

/// `authorization: Bearer <token>`.
pub fn bearer(token: &str) -> anyhow::Result<Bearer> {
    Ok(format!("Bearer {token}").parse()?)
}

/// Clients for the services a shopper calls (see the module docs for the balancing).
#[derive(Clone)]
pub struct Api {
    user: Balanced<UserServiceClient<Channel>>,
    product: Balanced<ProductCatalogServiceClient<Channel>>,
    cart: Balanced<CartServiceClient<Channel>>,
    checkout: Balanced<CheckoutServiceClient<Channel>>,
    deadline: Duration,
}

fn channel(addr: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// Runs `call` within `deadline`: the deadline goes to the service as `grpc-timeout` (set on the
/// request by the caller) and is enforced here too, so a server that never answers cannot hold
/// a shopper. The balancer's resends happen within the same deadline.
async fn within<T>(
    deadline: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(deadline, call).await {
        Ok(answer) => answer.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(CLIENT_DEADLINE_MESSAGE)),
    }
}

impl Api {
    /// Clients to `addrs` (connected lazily, one channel per address); every call gets
    /// `deadline`.
    pub fn new(addrs: &Addrs, deadline: Duration) -> anyhow::Result<Api> {
        let named = |name: &str, e: anyhow::Error| anyhow::anyhow!("--{name}-addr: {e}");
        Ok(Api {
            user: Balanced::new(&addrs.user, UserServiceClient::new)
                .map_err(|e| named("user", e))?,
            product: Balanced::new(&addrs.product, ProductCatalogServiceClient::new)
                .map_err(|e| named("product", e))?,
            cart: Balanced::new(&addrs.cart, CartServiceClient::new)
                .map_err(|e| named("cart", e))?,
            checkout: Balanced::new(&addrs.checkout, CheckoutServiceClient::new)
                .map_err(|e| named("checkout", e))?,
            deadline,
        })
    }

    fn request<M>(&self, message: M, auth: Option<&Bearer>) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.deadline);
        if let Some(auth) = auth {
            request.metadata_mut().insert("authorization", auth.clone());
        }
        request
    }

    /// `UserService/Register`.
    pub async fn register(&self, req: user::RegisterReq) -> Result<user::RegisterResp, Status> {
        let call = self.user.call(|mut client| {
            let req = self.request(req.clone(), None);
            async move { client.register(req).await }
        });
        within(self.deadline, call).await
    }

    /// `UserService/Login`.
    pub async fn login(&self, req: user::LoginReq) -> Result<user::LoginResp, Status> {
        let call = self.user.call(|mut client| {
            let req = self.request(req.clone(), None);
            async move { client.login(req).await }
        });
        within(self.deadline, call).await
    }

    /// `ProductCatalogService/ListProducts`.
    pub async fn list_products(
        &self,
        req: product::ListProductsReq,
    ) -> Result<product::ListProductsResp, Status> {
        let call = self.product.call(|mut client| {
            let req = self.request(req.clone(), None);
            async move { client.list_products(req).await }
        });
        within(self.deadline, call).await
    }

    /// `ProductCatalogService/SearchProducts`.
    pub async fn search_products(
        &self,
        req: product::SearchProductsReq,
    ) -> Result<product::SearchProductsResp, Status> {
        let call = self.product.call(|mut client| {
            let req = self.request(req.clone(), None);
            async move { client.search_products(req).await }
        });
        within(self.deadline, call).await
    }

    /// `ProductCatalogService/GetProduct`.
    pub async fn get_product(
        &self,
        req: product::GetProductReq,
    ) -> Result<product::GetProductResp, Status> {
        let call = self.product.call(|mut client| {
            let req = self.request(req, None);
            async move { client.get_product(req).await }
        });
        within(self.deadline, call).await
    }

    /// `CartService/AddItem`.
    pub async fn add_item(
        &self,
        req: cart::AddItemReq,
        auth: &Bearer,
    ) -> Result<cart::AddItemResp, Status> {
        let call = self.cart.call(|mut client| {
            let req = self.request(req, Some(auth));
            async move { client.add_item(req).await }
        });
        within(self.deadline, call).await
    }

    /// `CartService/GetCart`.
    pub async fn get_cart(
        &self,
        req: cart::GetCartReq,
        auth: &Bearer,
    ) -> Result<cart::GetCartResp, Status> {
        let call = self.cart.call(|mut client| {
            let req = self.request(req, Some(auth));
            async move { client.get_cart(req).await }
        });
        within(self.deadline, call).await
    }

    /// `CartService/EmptyCart`.
    pub async fn empty_cart(
        &self,
        req: cart::EmptyCartReq,
        auth: &Bearer,
    ) -> Result<cart::EmptyCartResp, Status> {
        let call = self.cart.call(|mut client| {
            let req = self.request(req, Some(auth));
            async move { client.empty_cart(req).await }
        });
        within(self.deadline, call).await
    }

    /// `CheckoutService/Checkout`.
    pub async fn checkout(
        &self,
        req: checkout::CheckoutReq,
        auth: &Bearer,
    ) -> Result<checkout::CheckoutResp, Status> {
        let call = self.checkout.call(|mut client| {
            let req = self.request(req.clone(), Some(auth));
            async move { client.checkout(req).await }
        });
        within(self.deadline, call).await
    }
}

/// Waits up to `patience` for every service in `addrs` to report SERVING on
/// `grpc.health.v1.Health` (overall) at one of its addresses at least (a gateway starts with
/// the instances that are up); names those that did not.
pub async fn wait_until_serving(addrs: &Addrs, patience: Duration) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + patience;
    let mut waiting: Vec<(&str, &str)> = addrs.all().to_vec();
    loop {
        let mut still = Vec::new();
        for (name, list) in waiting {
            if !any_serving(list).await {
                still.push((name, list));
            }
        }
        if still.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= give_up {
            let names: Vec<String> = still.iter().map(|(n, a)| format!("{n} at {a}")).collect();
            anyhow::bail!(
                "not serving after {patience:?}: {} (is the fleet running?)",
                names.join(", ")
            );
        }
        waiting = still;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn any_serving(list: &str) -> bool {
    for addr in split_list(list) {
        if serving(addr).await {
            return true;
        }
    }
    false
}

async fn serving(addr: &str) -> bool {
    let Ok(channel) = channel(addr) else {
        return false;
    };
    let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    request.set_timeout(Duration::from_secs(1));
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        HealthClient::new(channel).check(request),
    )
    .await;
    matches!(answer, Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// A loopback port nothing listens on (bound, then let go).
    fn dead_port() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        addr.to_string()
    }

    #[test]
    fn lists_split_at_commas() {
        assert_eq!(split_list("127.0.0.1:1"), ["127.0.0.1:1"]);
        assert_eq!(
            split_list(" 127.0.0.1:1, 127.0.0.1:2,,"),
            ["127.0.0.1:1", "127.0.0.1:2"]
        );
        assert!(split_list(" , ").is_empty());
        let addrs = Addrs {
            product: "127.0.0.1:3,127.0.0.1:103".into(),
            ..Addrs::default()
        };
        let products: Vec<&str> = addrs
            .each()
            .into_iter()
            .filter(|(n, _)| *n == "product")
            .map(|(_, a)| a)
            .collect();
        assert_eq!(products, ["127.0.0.1:3", "127.0.0.1:103"]);
        assert_eq!(addrs.each().len(), 7);
    }

    #[tokio::test]
    async fn every_address_of_a_list_must_be_on_loopback() {
        let remote = Addrs {
            cart: "127.0.0.1:8002,192.0.2.10:8102".into(),
            ..Addrs::default()
        };
        let err = remote.ensure_loopback(false).await.unwrap_err();
        assert!(err.to_string().contains("192.0.2.10"), "{err}");
        assert!(remote.ensure_loopback(true).await.is_ok());
        let empty = Addrs {
            cart: ",".into(),
            ..Addrs::default()
        };
        assert!(empty.ensure_loopback(true).await.is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_is_tried_on_every_address_once() {
        let list = format!("{},{}", dead_port(), dead_port());
        let balanced = Balanced::new(&list, HealthClient::new).unwrap();
        let tries = AtomicU32::new(0);
        let answer = balanced
            .call(|mut client| {
                tries.fetch_add(1, Ordering::Relaxed);
                async move {
                    client
                        .check(tonic_health::pb::HealthCheckRequest::default())
                        .await
                }
            })
            .await;
        let status = answer.unwrap_err();
        assert!(connect_failed(&status), "{status:?}");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert_eq!(tries.load(Ordering::Relaxed), 2);
        // An answer (even a failure) is not sent again.
        tries.store(0, Ordering::Relaxed);
        let answer: Result<tonic::Response<()>, Status> = balanced
            .call(|_client| {
                tries.fetch_add(1, Ordering::Relaxed);
                async { Err(Status::unavailable("down")) }
            })
            .await;
        assert!(!connect_failed(&answer.unwrap_err()));
        assert_eq!(tries.load(Ordering::Relaxed), 1);
        // Mid-flight transport failures are not connection failures either.
        let broken = Status::from_error(Box::new(std::io::Error::other("connection reset")));
        assert!(!connect_failed(&broken));
    }
}
