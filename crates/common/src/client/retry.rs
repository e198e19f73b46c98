//! When a failed call may be sent again: only idempotent RPCs (listed here, in one place), only
//! after `UNAVAILABLE`, only to another instance, and only within a budget, so retries can never
//! multiply the load on a struggling fleet.

use parking_lot::Mutex;
use std::time::Instant;

use crate::config::RetrySettings;

/// The RPCs that are safe to send twice: reads, and writes the API defines as idempotent by a
/// key in the request or that set rather than change state (`ReserveStock`/`ReleaseStock` per
/// reservation id, `EmptyCart`, `UpdateItem` sets a quantity, `RemoveItem`). Anything
/// not listed, above all `Charge`, `Refund`, `PlaceOrder`, `MarkOrderPaid` and `Checkout`, is
/// sent once: a call that failed in flight may still have happened.
pub const IDEMPOTENT_RPCS: &[(&str, &[&str])] = &[
    (
        "tiktokmall.auth.v1.AuthService",
        &["ValidateToken", "GetAccount"],
    ),
    ("tiktokmall.user.v1.UserService", &["Info"]),
    (
        "tiktokmall.product.v1.ProductCatalogService",
        &[
            "ListProducts",
            "GetProduct",
            "SearchProducts",
            "BatchGetProducts",
            "ReserveStock",
            "ReleaseStock",
        ],
    ),
    (
        "tiktokmall.cart.v1.CartService",
        &["GetCart", "EmptyCart", "UpdateItem", "RemoveItem"],
    ),
    (
        "tiktokmall.order.v1.OrderService",
        &["ListOrder", "GetOrder"],
    ),
    ("tiktokmall.payment.v1.PaymentService", &["GetPayment"]),
    ("grpc.health.v1.Health", &["Check"]),
];

/// Whether the RPC at `path` (`/package.Service/Method`) may be retried.
pub fn is_idempotent(path: &str) -> bool {
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return false;
    };
    IDEMPOTENT_RPCS
        .iter()
        .any(|(s, methods)| *s == service && methods.contains(&method))
}

/// Allowance for retries: every call adds `budget_percent`/100 of a retry, time adds
/// `min_per_sec` per second, savings are capped at `burst_secs` seconds of `min_per_sec`
/// (at least one retry).
pub(crate) struct RetryBudget {
    ratio: f64,
    min_per_sec: f64,
    cap: f64,
    state: Mutex<(f64, Instant)>,
}

impl RetryBudget {
    pub(crate) fn new(settings: &RetrySettings) -> Self {
        let min_per_sec = f64::from(settings.min_per_sec);
        let cap = (min_per_sec * f64::from(settings.burst_secs)).max(1.0);
        RetryBudget {
            ratio: f64::from(settings.budget_percent) / 100.0,
            min_per_sec,
            cap,
            state: Mutex::new((min_per_sec.min(cap), Instant::now())),
        }
    }

    /// A call was made.
    pub(crate) fn deposit(&self) {
        let mut state = self.state.lock();
        state.0 = (state.0 + self.ratio).min(self.cap);
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub(crate) fn withdraw(&self) -> bool {
        let mut state = self.state.lock();
        let now = Instant::now();
        let refill = now.duration_since(state.1).as_secs_f64() * self.min_per_sec;
        *state = ((state.0 + refill).min(self.cap), now);
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_rpcs_are_idempotent() {
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
