//! The operations a shopper performs and the mix they are drawn from, after Online Boutique's
//! load generator: browse/search 10, view a product 10, add to cart 2, view the cart 3,
//! check out 1.

use rand::Rng;

/// One operation of the workload (a row of the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `ListProducts`: a page of the catalog, sometimes of one category.
    ListProducts,
    /// `SearchProducts`: a word of a product name.
    SearchProducts,
    /// `GetProduct`.
    GetProduct,
    /// `AddItem`: a listed product, quantity 1 to 3.
    AddItem,
    /// `GetCart`.
    GetCart,
    /// `Checkout` (each attempt).
    Checkout,
    /// One checkout as the shopper saw it: every attempt under one idempotency key.
    CheckoutEndToEnd,
    /// `EmptyCart` after a refused checkout, so the next purchase starts afresh.
    EmptyCart,
    /// `Login` again after `UNAUTHENTICATED` (an expired access token).
    Login,
    /// `Register`, before the load.
    Register,
}

impl Op {
    /// The report's name.
    pub fn name(self) -> &'static str {
        match self {
            Op::ListProducts => "ListProducts",
            Op::SearchProducts => "SearchProducts",
            Op::GetProduct => "GetProduct",
            Op::AddItem => "AddItem",
            Op::GetCart => "GetCart",
            Op::Checkout => "Checkout",
            Op::CheckoutEndToEnd => "Checkout (end to end)",
            Op::EmptyCart => "EmptyCart",
            Op::Login => "Login",
            Op::Register => "Register",
        }
    }
}

/// The calls of the mix in report order (every one counts in the `all` row).
pub const MIX_CALLS: [Op; 8] = [
    Op::ListProducts,
    Op::SearchProducts,
    Op::GetProduct,
    Op::AddItem,
    Op::GetCart,
    Op::Checkout,
    Op::EmptyCart,
    Op::Login,
];

/// What a shopper draws, with weights: browse/search 10 (half each), view product 10, add to
/// cart 2, view cart 3, checkout 1.
pub const WEIGHTS: [(Op, u32); 6] = [
    (Op::ListProducts, 5),
    (Op::SearchProducts, 5),
    (Op::GetProduct, 10),
    (Op::AddItem, 2),
    (Op::GetCart, 3),
    (Op::Checkout, 1),
];

/// The next operation, drawn by weight.
pub fn draw(rng: &mut impl Rng) -> Op {
    let total: u32 = WEIGHTS.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    for (op, weight) in WEIGHTS {
        if pick < weight {
            return op;
        }
        pick -= weight;
    }
    Op::GetProduct
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn draws_follow_the_weights() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut seen: BTreeMap<Op, u32> = BTreeMap::new();
        let n = 31_000;
        for _ in 0..n {
            *seen.entry(draw(&mut rng)).or_default() += 1;
        }
        for (op, weight) in WEIGHTS {
            let expected = f64::from(n) * f64::from(weight) / 26.0;
            let got = f64::from(seen[&op]);
            assert!(
                (got - expected).abs() < expected * 0.1,
                "{op:?}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_operations() {
        let a: Vec<Op> = {
            let mut rng = StdRng::seed_from_u64(42);
            (0..50).map(|_| draw(&mut rng)).collect()
        };
        let b: Vec<Op> = {
            let mut rng = StdRng::seed_from_u64(42);
            (0..50).map(|_| draw(&mut rng)).collect()
        };
        assert_eq!(a, b);
    }
}
