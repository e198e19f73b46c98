//! The retry layer. When a failed call may be sent again: only idempotent RPCs (as the protos
//! mark them), only after `UNAVAILABLE` or a server's refusal to admit it (`RESOURCE_EXHAUSTED`
//! marked shed: it never ran), only to another instance, and only within a budget, so retries
//! can never multiply the load on a struggling fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tonic::Status;
use tonic::body::Body;
use tower::{Service, ServiceExt};

use super::balance::Target;
use super::{Attempted, BoxError, ReadWhole, answered_shed, answered_unavailable};
use crate::around::Around;
use crate::config::RetrySettings;
use crate::error::{NotSent, not_sent_reason};

/// Whether the RPC at `path` (`/package.Service/Method`) may be sent again: the protos mark
/// it `idempotency_level = IDEMPOTENT` (writes the API defines as idempotent by a key in the
/// request, or that set rather than change state) or `NO_SIDE_EFFECTS` (reads); and the standard
/// health check, a read we cannot annotate. Anything else, above all `Charge`, `Refund`,
/// `PlaceOrder`, `MarkOrderPaid` and `Checkout`, is sent once: a call that failed in flight may
/// still have happened.
pub fn is_idempotent(path: &str) -> bool {
    mall_proto::rpcs::is_idempotent(path) || is_health_check(path)
}

fn is_health_check(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .is_some_and(|(service, method)| {
            service == tonic_health::pb::health_server::SERVICE_NAME && method == "Check"
        })
}

/// Allowance for retries: every call adds `budget_percent`/100 of a retry, time adds
/// `min_per_sec` per second, savings are capped at `burst_secs` seconds of `min_per_sec`
/// (at least one retry).
pub(crate) struct RetryBudget {
    state: Mutex<BudgetState>,
}

struct BudgetState {
    ratio: f64,
    min_per_sec: f64,
    cap: f64,
    balance: f64,
    at: Instant,
}

impl BudgetState {
    fn set(&mut self, settings: &RetrySettings) {
        self.min_per_sec = f64::from(settings.min_per_sec);
        self.cap = (self.min_per_sec * f64::from(settings.burst_secs)).max(1.0);
        self.ratio = f64::from(settings.budget_percent) / 100.0;
        self.balance = self.balance.min(self.cap);
    }
}

impl RetryBudget {
    pub(crate) fn new(settings: &RetrySettings) -> Self {
        let mut state = BudgetState {
            ratio: 0.0,
            min_per_sec: 0.0,
            cap: 0.0,
            balance: f64::MAX,
            at: Instant::now(),
        };
        state.set(settings);
        state.balance = state.min_per_sec.min(state.cap);
        RetryBudget {
            state: Mutex::new(state),
        }
    }

    /// Takes new settings (a config-centre reload); savings above the new cap are dropped.
    pub(crate) fn reconfigure(&self, settings: &RetrySettings) {
        self.state.lock().set(settings);
    }

    /// A call was made.
    pub(crate) fn deposit(&self) {
        let mut state = self.state.lock();
        state.balance = (state.balance + state.ratio).min(state.cap);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub(crate) fn withdraw(&self) -> bool {
        let mut state = self.state.lock();
        let now = Instant::now();
        let refill = now.duration_since(state.at).as_secs_f64() * state.min_per_sec;
        state.balance = (state.balance + refill).min(state.cap);
        state.at = now;
        if state.balance >= 1.0 {
            state.balance -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Retries idempotent calls after `UNAVAILABLE` on an instance not yet tried, within the
/// budget; buffers their bodies so they can be sent again and asks the balancer to read their
/// answers whole.
#[derive(Clone)]
pub(crate) struct RetryLayer {
    /// `client.retry.max_attempts`, reloadable.
    pub(crate) max_attempts: Arc<AtomicU32>,
    pub(crate) budget: Arc<RetryBudget>,
    pub(crate) target: Arc<Target>,
    pub(crate) retries: Counter,
}

impl Around<http::Request<Body>, http::Response<Body>, BoxError> for RetryLayer {
    fn around<S>(
        &self,
        inner: S,
        req: http::Request<Body>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, BoxError>>
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = BoxError>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
    {
        self.budget.deposit();
        if self.max_attempts.load(Ordering::Relaxed) <= 1 || !is_idempotent(req.uri().path()) {
            return Box::pin(inner.oneshot(req));
        }
        let layer = self.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let body = body.collect().await?.to_bytes();
            parts.extensions.insert(Attempted::default());
            parts.extensions.insert(ReadWhole);
            let policy = RetryPolicy {
                attempts: 1,
                layer,
                body: body.clone(),
            };
            let req = http::Request::from_parts(parts, full(body));
            tower::retry::Retry::new(policy, inner).oneshot(req).await
        })
    }
}

fn full(body: Bytes) -> Body {
    Body::new(http_body_util::Full::new(body))
}

/// The [`tower::retry::Policy`] of one idempotent call.
#[derive(Clone)]
struct RetryPolicy {
    /// Attempts made so far.
    attempts: u32,
    layer: RetryLayer,
    body: Bytes,
}

impl tower::retry::Policy<http::Request<Body>, http::Response<Body>, BoxError> for RetryPolicy {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        req: &mut http::Request<Body>,
        result: &mut Result<http::Response<Body>, BoxError>,
    ) -> Option<Self::Future> {
        let unavailable = match result {
            Ok(resp) => answered_unavailable(resp) || answered_shed(resp),
            Err(e) => e.downcast_ref::<Status>().is_some_and(|s| {
                s.code() == tonic::Code::Unavailable
                    && not_sent_reason(s) != Some(NotSent::NoInstance)
            }),
        };
        let tried = req
            .extensions()
            .get::<Attempted>()
            .map(Attempted::addrs)
            .unwrap_or_default();
        let retry = unavailable
            && self.attempts < self.layer.max_attempts.load(Ordering::Relaxed)
            && self.layer.target.has_untried(&tried)
            && self.layer.budget.withdraw();
        if !retry {
            return None;
        }
        self.attempts += 1;
        self.layer.retries.inc();
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, req: &http::Request<Body>) -> Option<http::Request<Body>> {
        let mut clone = http::Request::new(full(self.body.clone()));
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rpcs_the_protos_mark_are_idempotent() {
        assert!(is_idempotent(
            "/tiktokmall.product.v1.ProductCatalogService/GetProduct"
        ));
        assert!(is_idempotent("/grpc.health.v1.Health/Check"));
        assert!(!is_idempotent(
            "/tiktokmall.payment.v1.PaymentService/Charge"
        ));
        assert!(!is_idempotent(
            "/tiktokmall.checkout.v1.CheckoutService/Checkout"
        ));
        assert!(!is_idempotent(
            "/tiktokmall.order.v1.OrderService/PlaceOrder"
        ));
        assert!(!is_idempotent("GetProduct"));
        assert!(!is_idempotent("/grpc.health.v1.Health/Watch"));
        // Exactly the RPCs the protos mark, and they are the ones that are safe to repeat.
        let marked: Vec<&str> = mall_proto::rpcs::all()
            .iter()
            .filter(|(_, rpc)| rpc.idempotent)
            .map(|(path, _)| path.as_str())
            .collect();
        assert_eq!(
            marked,
            [
                "/tiktokmall.auth.v1.AuthService/GetAccount",
                "/tiktokmall.auth.v1.AuthService/ValidateToken",
                "/tiktokmall.cart.v1.CartService/EmptyCart",
                "/tiktokmall.cart.v1.CartService/GetCart",
                "/tiktokmall.cart.v1.CartService/RemoveItem",
                "/tiktokmall.cart.v1.CartService/RemovePurchased",
                "/tiktokmall.cart.v1.CartService/UpdateItem",
                "/tiktokmall.order.v1.OrderService/GetOrder",
                "/tiktokmall.order.v1.OrderService/ListOrder",
                "/tiktokmall.payment.v1.PaymentService/GetPayment",
                "/tiktokmall.payment.v1.PaymentService/QueryOrderPayment",
                "/tiktokmall.payment.v1.PaymentService/VoidOrder",
                "/tiktokmall.product.v1.ProductCatalogService/BatchGetProducts",
                "/tiktokmall.product.v1.ProductCatalogService/GetProduct",
                "/tiktokmall.product.v1.ProductCatalogService/ListCategories",
                "/tiktokmall.product.v1.ProductCatalogService/ListProducts",
                "/tiktokmall.product.v1.ProductCatalogService/ReleaseStock",
                "/tiktokmall.product.v1.ProductCatalogService/ReserveStock",
                "/tiktokmall.product.v1.ProductCatalogService/SearchProducts",
                "/tiktokmall.user.v1.UserService/Info",
            ]
        );
        assert!(!is_idempotent(
            "/tiktokmall.product.v1.ProductCatalogService/"
        ));
    }

    #[test]
    fn the_budget_allows_a_share_of_the_calls_on_top_of_a_floor() {
        // No floor: 20% of 100 calls is 20 retries, then none.
        let budget = RetryBudget::new(&RetrySettings {
            max_attempts: 3,
            budget_percent: 20,
            min_per_sec: 0,
            burst_secs: 10,
        });
        // The cap (at least one retry) bounds the savings: 100 calls buy one retry at most.
        for _ in 0..100 {
            budget.deposit();
        }
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        // Spent as it is earned: five calls per retry.
        let mut granted = 0;
        for _ in 0..100 {
            budget.deposit();
            if budget.withdraw() {
                granted += 1;
            }
        }
        assert!((19..=20).contains(&granted), "{granted}");

        // A floor lets a quiet client retry a few times at once.
        let budget = RetryBudget::new(&RetrySettings {
            max_attempts: 3,
            budget_percent: 0,
            min_per_sec: 5,
            burst_secs: 10,
        });
        let granted = (0..20).filter(|_| budget.withdraw()).count();
        assert_eq!(granted, 5);
    }
}
