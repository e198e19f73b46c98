//! The fleet as a shopper reaches it: plain tonic clients (no fleet client stack, no service
//! tokens) to one address per service, each call with a deadline and the shopper's bearer token.

use std::future::Future;
use std::net::SocketAddr;
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

use super::stats::CLIENT_DEADLINE_MESSAGE;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings on idle connections, so a dead server is noticed between calls.
const KEEPALIVE: Duration = Duration::from_secs(10);

/// Where each service listens (`host:port`).
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

    /// Refuses any address that is not on this machine's loopback (unless `allow_remote`): a
    /// load test never leaves the machine by accident.
    pub async fn ensure_loopback(&self, allow_remote: bool) -> anyhow::Result<()> {
        for (name, addr) in self.all() {
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

/// The shopper's bearer token as request metadata.
pub type Bearer = MetadataValue<Ascii>;

/// `authorization: Bearer <token>`.
pub fn bearer(token: &str) -> anyhow::Result<Bearer> {
    Ok(format!("Bearer {token}").parse()?)
}

/// Clients for the services a shopper calls.
#[derive(Clone)]
pub struct Api {
    user: UserServiceClient<Channel>,
    product: ProductCatalogServiceClient<Channel>,
    cart: CartServiceClient<Channel>,
    checkout: CheckoutServiceClient<Channel>,
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
/// a shopper.
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
    /// Clients to `addrs` (connected lazily); every call gets `deadline`.
    pub fn new(addrs: &Addrs, deadline: Duration) -> anyhow::Result<Api> {
        Ok(Api {
            user: UserServiceClient::new(channel(&addrs.user)?),
            product: ProductCatalogServiceClient::new(channel(&addrs.product)?),
            cart: CartServiceClient::new(channel(&addrs.cart)?),
            checkout: CheckoutServiceClient::new(channel(&addrs.checkout)?),
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
        let req = self.request(req, None);
        within(self.deadline, self.user.clone().register(req)).await
    }

    /// `UserService/Login`.
    pub async fn login(&self, req: user::LoginReq) -> Result<user::LoginResp, Status> {
        let req = self.request(req, None);
        within(self.deadline, self.user.clone().login(req)).await
    }

    /// `ProductCatalogService/ListProducts`.
    pub async fn list_products(
        &self,
        req: product::ListProductsReq,
    ) -> Result<product::ListProductsResp, Status> {
        let req = self.request(req, None);
        within(self.deadline, self.product.clone().list_products(req)).await
    }

    /// `ProductCatalogService/SearchProducts`.
    pub async fn search_products(
        &self,
        req: product::SearchProductsReq,
    ) -> Result<product::SearchProductsResp, Status> {
        let req = self.request(req, None);
        within(self.deadline, self.product.clone().search_products(req)).await
    }

    /// `ProductCatalogService/GetProduct`.
    pub async fn get_product(
        &self,
        req: product::GetProductReq,
    ) -> Result<product::GetProductResp, Status> {
        let req = self.request(req, None);
        within(self.deadline, self.product.clone().get_product(req)).await
    }

    /// `CartService/AddItem`.
    pub async fn add_item(
        &self,
        req: cart::AddItemReq,
        auth: &Bearer,
    ) -> Result<cart::AddItemResp, Status> {
        let req = self.request(req, Some(auth));
        within(self.deadline, self.cart.clone().add_item(req)).await
    }

    /// `CartService/GetCart`.
    pub async fn get_cart(
        &self,
        req: cart::GetCartReq,
        auth: &Bearer,
    ) -> Result<cart::GetCartResp, Status> {
        let req = self.request(req, Some(auth));
        within(self.deadline, self.cart.clone().get_cart(req)).await
    }

    /// `CartService/EmptyCart`.
    pub async fn empty_cart(
        &self,
        req: cart::EmptyCartReq,
        auth: &Bearer,
    ) -> Result<cart::EmptyCartResp, Status> {
        let req = self.request(req, Some(auth));
        within(self.deadline, self.cart.clone().empty_cart(req)).await
    }

    /// `CheckoutService/Checkout`.
    pub async fn checkout(
        &self,
        req: checkout::CheckoutReq,
        auth: &Bearer,
    ) -> Result<checkout::CheckoutResp, Status> {
        let req = self.request(req, Some(auth));
        within(self.deadline, self.checkout.clone().checkout(req)).await
    }
}

/// Waits up to `patience` for every service in `addrs` to report SERVING on
/// `grpc.health.v1.Health` (overall); names those that did not.
pub async fn wait_until_serving(addrs: &Addrs, patience: Duration) -> anyhow::Result<()> {
    let give_up = tokio::time::Instant::now() + patience;
    let mut waiting: Vec<(&str, &str)> = addrs.all().to_vec();
    loop {
        let mut still = Vec::new();
        for (name, addr) in waiting {
            if !serving(addr).await {
                still.push((name, addr));
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
