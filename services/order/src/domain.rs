//! Order rules: what a valid order, order id or payment is, and the state machine every status
//! change goes through ([`transition`]). Requests are parsed into these types at the edge
//! (`api.rs`), so the store never sees unchecked input.

use std::fmt;

pub use mall_types::PaymentMethod;
use mall_types::{
    Address, Cents, Email, IdempotencyKey, Invalid, ProductId, Quantity, TextRule, UserId,
};

pub use mall_types::money::MAX_ORDER_LINES;
/// A cancellation reason: one line of up to 500 characters, may be empty.
pub const REASON_TEXT: TextRule = TextRule::line(500).optional();
/// The reason recorded when a customer cancels without giving one.
pub const DEFAULT_CANCEL_REASON: &str = "cancelled by customer";
/// The reason recorded when the sweeper cancels an unpaid order.
pub const TIMEOUT_CANCEL_REASON: &str = "payment timeout";

/// Where an order is in its life. Stored as its API number (1..=5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    /// Placed, waiting for payment.
    Pending,
    /// Paid.
    Paid,
    /// Cancelled before payment (by the customer or the payment timeout).
    Cancelled,
    /// Paid and fulfilled.
    Completed,
    /// Paid and refunded.
    Refunded,
}

impl OrderStatus {
    /// Every status, in API order.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Pending,
        OrderStatus::Paid,
        OrderStatus::Cancelled,
        OrderStatus::Completed,
        OrderStatus::Refunded,
    ];

    /// The stored and API number (`ORDER_STATUS_*`).
    pub fn code(self) -> i64 {
        match self {
            OrderStatus::Pending => 1,
            OrderStatus::Paid => 2,
            OrderStatus::Cancelled => 3,
            OrderStatus::Completed => 4,
            OrderStatus::Refunded => 5,
        }
    }

    /// The status stored as `code`.
    pub fn from_code(code: i64) -> Option<OrderStatus> {
        OrderStatus::ALL.into_iter().find(|s| s.code() == code)
    }

    /// A request's status filter: 0 (unspecified) is any status.
    pub fn filter(code: i32) -> Result<Option<OrderStatus>, Invalid> {
        match code {
            0 => Ok(None),
            code => OrderStatus::from_code(i64::from(code))
                .map(Some)
                .ok_or_else(|| {
                    Invalid::new(
                        "status",
                        "must be an ORDER_STATUS_* value (ORDER_STATUS_UNSPECIFIED for any)",
                    )
                }),
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Completed => "COMPLETED",
            OrderStatus::Refunded => "REFUNDED",
        })
    }
}

/// The state machine: PENDING→PAID, PENDING→CANCELLED, PAID→COMPLETED, PAID→REFUNDED. Every
/// other pair, staying put included, is an [`IllegalTransition`]. Every status change checks
/// its move here before the conditional `UPDATE` that makes it.
pub fn transition(from: OrderStatus, to: OrderStatus) -> Result<(), IllegalTransition> {
    use OrderStatus::*;
    match (from, to) {
        (Pending, Paid) | (Pending, Cancelled) | (Paid, Completed) | (Paid, Refunded) => Ok(()),
        _ => Err(IllegalTransition { from, to }),
    }
}

/// A status change the state machine does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The status the order has.
    pub from: OrderStatus,
    /// The status asked for.
    pub to: OrderStatus,
}

/// A new, unguessable, time-ordered order id (UUIDv7).
pub fn new_order_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A cancellation reason: trimmed, up to 500 characters; empty becomes
/// [`DEFAULT_CANCEL_REASON`].
pub fn cancel_reason(reason: &str) -> Result<String, Invalid> {
    let reason = REASON_TEXT.parse(reason, "reason")?;
    Ok(if reason.is_empty() {
        DEFAULT_CANCEL_REASON.to_string()
    } else {
        reason.into_string()
    })
}

/// One order line: a product, how many, and what the line costs in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    /// Product id.
    pub product_id: ProductId,
    /// Units.
    pub quantity: Quantity,
    /// The line total (priced by checkout from the catalog).
    pub cost_cents: Cents,
}

impl Line {
    /// Validates one raw line (`index` is for messages).
    pub fn parse(
        index: usize,
        product_id: u64,
        quantity: i32,
        cost_cents: i64,
    ) -> Result<Self, Invalid> {
        let field = |name: &str| format!("order_items[{index}].{name}");
        Ok(Line {
            product_id: ProductId::parse(product_id, &field("item.product_id"))?,
            quantity: Quantity::parse(quantity, &field("item.quantity"))?,
            cost_cents: Cents::parse_line_total(cost_cents, &field("cost_cents"))?,
        })
    }

    /// A line read back from storage; `None` when the row breaks a rule only parsed lines
    /// are written with.
    pub fn from_stored(product_id: i64, quantity: i64, cost_cents: i64) -> Option<Self> {
        Some(Line {
            product_id: ProductId::from_db(product_id)?,
            quantity: Quantity::new(quantity)?,
            cost_cents: Cents::new(cost_cents)?,
        })
    }
}

/// The sum of the line totals; `None` on overflow.
pub fn total_cents(lines: &[Line]) -> Option<Cents> {
    Cents::checked_sum(lines.iter().map(|line| line.cost_cents))
}

/// A raw order line as it arrives: `(product_id, quantity, cost_cents)`.
pub type RawLine = (u64, i32, i64);

/// A valid `PlaceOrder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The customer.
    pub user_id: UserId,
    /// The store currency.
    pub currency: String,
    /// Where it ships.
    pub address: Address,
    /// Lower-cased email.
    pub email: Email,
    /// 1..=100 lines, in the order given.
    pub lines: Vec<Line>,
    /// Sum of the line totals.
    pub total_cents: Cents,
    /// The caller's retry key; the same (user, key) always names the same order.
    pub idempotency_key: Option<IdempotencyKey>,
    /// How it is paid.
    pub payment_method: PaymentMethod,
}

impl NewOrder {
    /// Validates a `PlaceOrder`. `store_currency` is the configured currency: an empty
    /// `currency` means it, anything else is refused.
    pub fn parse(
        user: u64,
        currency: &str,
        store_currency: &str,
        address: Option<Address>,
        mail: &str,
        lines: &[RawLine],
        idempotency_key: &str,
    ) -> Result<Self, Invalid> {
        let user_id = UserId::parse(user, "user_id")?;
        let currency = currency.trim();
        if !currency.is_empty() && !currency.eq_ignore_ascii_case(store_currency) {
            return Err(Invalid::new(
                "user_currency",
                format!("{currency} is not accepted; the store sells in {store_currency}"),
            ));
        }
        let address = address.ok_or_else(|| Invalid::new("address", "is required"))?;
        let email = Email::parse(mail)?;
        if lines.is_empty() {
            return Err(Invalid::new("order_items", "must not be empty"));
        }
        if lines.len() > MAX_ORDER_LINES {
            return Err(Invalid::new(
                "order_items",
                format!("must hold at most {MAX_ORDER_LINES} lines"),
            ));
        }
        let lines = lines
            .iter()
            .enumerate()
            .map(|(i, (product, quantity, cost))| Line::parse(i, *product, *quantity, *cost))
            .collect::<Result<Vec<_>, _>>()?;
        // Unreachable within the limits (100 lines at the highest line total fit many times
        // over), but an order total must never wrap.
        let total_cents = total_cents(&lines)
            .ok_or_else(|| Invalid::new("order_items", "add up to more than an order may cost"))?;
        Ok(NewOrder {
            user_id,
            currency: store_currency.to_string(),
            address,
            email,
            lines,
            total_cents,
            idempotency_key: IdempotencyKey::optional(idempotency_key)?,
            payment_method: PaymentMethod::CreditCard,
        })
    }

    /// The same order, paid with `method`.
    pub fn paid_with(mut self, method: PaymentMethod) -> Self {
        self.payment_method = method;
        self
    }
}

/// A stored order with its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Public id (UUIDv7).
    pub id: String,
    /// The customer.
    pub user_id: i64,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// Currency of every amount.
    pub currency: String,
    /// Shipping address.
    pub address: Address,
    /// Customer email.
    pub email: String,
    /// Lines in the order placed.
    pub lines: Vec<Line>,
    /// Sum of the line totals, as stored.
    pub total_cents: i64,
    /// The payment, once paid.
    pub transaction_id: Option<String>,
    /// Placed at, unix seconds.
    pub created_at: i64,
    /// Paid at, unix seconds.
    pub paid_at: Option<i64>,
    /// How it is paid.
    pub payment_method: PaymentMethod,
}

#[cfg(test)]
mod tests {
    use mall_common::error::{ServiceError, ServiceErrorCode};
    use mall_types::address::MAX_ADDRESS_CHARS;
    use mall_types::money::MAX_LINE_CENTS;
    use mall_types::{OrderId, TransactionId};

    use super::*;
    use crate::error::Error;

    fn address() -> Address {
        Address::parse("1 Main St", "Springfield", "", "US", "12345").unwrap()
    }

    fn parse(lines: &[RawLine]) -> Result<NewOrder, Invalid> {
        NewOrder::parse(7, "", "USD", Some(address()), "A@Example.com", lines, "")
    }

    #[test]
    fn the_state_machine_allows_exactly_four_moves() {
        use OrderStatus::*;
        let legal = [
            (Pending, Paid),
            (Pending, Cancelled),
            (Paid, Completed),
            (Paid, Refunded),
        ];
        let mut checked = 0;
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let result = transition(from, to);
                checked += 1;
                if legal.contains(&(from, to)) {
                    assert!(result.is_ok(), "{from} -> {to} must be legal");
                } else {
                    let err = Error::from(result.expect_err("illegal move accepted"));
                    assert!(
                        matches!(err, Error::IllegalTransition { from: f, to: t } if f == from && t == to),
                        "{from} -> {to}: {err:?}"
                    );
                    // The client sees this code and this message (`error::to_status` keeps the
                    // message of every refusal, as `error_tests` checks).
                    assert_eq!(
                        err.code(),
                        ServiceErrorCode::FailedPrecondition,
                        "{from} -> {to}"
                    );
                    assert!(
                        err.to_string().starts_with(&format!("order is {from}")),
                        "{err}"
                    );
                }
            }
        }
        assert_eq!(checked, 25);
    }

    #[test]
    fn statuses_round_trip_through_their_codes() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::from_code(s.code()), Some(s));
        }
        assert_eq!(OrderStatus::from_code(0), None);
        assert_eq!(OrderStatus::from_code(6), None);
    }

    #[test]
    fn orders_total_their_lines_and_use_the_store_currency() {
        let order = parse(&[(1, 2, 500), (2, 1, 250), (1, 1, 0)]).unwrap();
        assert_eq!(order.total_cents.get(), 750);
        assert_eq!(order.currency, "USD");
        assert_eq!(order.email.as_str(), "a@example.com");
        assert_eq!(order.lines.len(), 3);
        assert_eq!(order.idempotency_key, None);
        let usd = NewOrder::parse(
            7,
            "usd",
            "USD",
            Some(address()),
            "a@b.co",
            &[(1, 1, 1)],
            "k",
        );
        assert_eq!(usd.unwrap().idempotency_key.as_deref(), Some("k"));
        assert!(
            NewOrder::parse(7, "EUR", "USD", Some(address()), "a@b.co", &[(1, 1, 1)], "").is_err()
        );
    }

    #[test]
    fn bad_orders_are_refused() {
        let message = |lines: &[RawLine]| parse(lines).unwrap_err().to_string();
        assert_eq!(message(&[]), "order_items must not be empty");
        assert_eq!(
            message(&[(1, 1, 1), (0, 1, 1)]),
            "order_items[1].item.product_id must be a positive product id"
        );
        assert_eq!(
            message(&[(1, 1000, 1)]),
            "order_items[0].item.quantity must be between 1 and 999, got 1000"
        );
        assert_eq!(
            message(&[(1, 1, -1)]),
            format!("order_items[0].cost_cents must be 0..={MAX_LINE_CENTS}")
        );
        assert_eq!(
            message(&vec![(1, 1, 1); MAX_ORDER_LINES + 1]),
            "order_items must hold at most 100 lines"
        );
        assert!(parse(&[(0, 1, 1)]).is_err());
        assert!(parse(&[(1, 0, 1)]).is_err());
        assert!(parse(&[(1, 1000, 1)]).is_err());
        assert!(parse(&[(1, 1, -1)]).is_err());
        assert!(parse(&[(1, 1, MAX_LINE_CENTS + 1)]).is_err());
        assert!(parse(&vec![(1, 1, 1); MAX_ORDER_LINES + 1]).is_err());
        assert!(parse(&vec![(1, 1, MAX_LINE_CENTS); MAX_ORDER_LINES]).is_ok());
        let no_user = NewOrder::parse(0, "", "USD", Some(address()), "a@b.co", &[(1, 1, 1)], "");
        assert!(no_user.is_err());
        let no_address = NewOrder::parse(7, "", "USD", None, "a@b.co", &[(1, 1, 1)], "");
        assert_eq!(no_address.unwrap_err().to_string(), "address is required");
        for mail in ["", "no-at", "a@b", "a b@c.de", "a@@b.de"] {
            let bad = NewOrder::parse(7, "", "USD", Some(address()), mail, &[(1, 1, 1)], "");
            assert!(bad.is_err(), "{mail}");
        }
        let long_key = "k".repeat(IdempotencyKey::MAX_CHARS + 1);
        let bad = NewOrder::parse(
            7,
            "",
            "USD",
            Some(address()),
            "a@b.co",
            &[(1, 1, 1)],
            &long_key,
        );
        assert_eq!(
            bad.unwrap_err().to_string(),
            "idempotency_key must be 1..=128 visible ASCII characters"
        );
        let bad = NewOrder::parse(7, "EUR", "USD", Some(address()), "a@b.co", &[(1, 1, 1)], "");
        assert_eq!(
            bad.unwrap_err().to_string(),
            "user_currency EUR is not accepted; the store sells in USD"
        );
    }

    #[test]
    fn totals_are_checked_for_overflow() {
        let line = Line::from_stored(1, 1, i64::MAX).unwrap();
        assert_eq!(total_cents(&[line]).map(Cents::get), Some(i64::MAX));
        assert_eq!(total_cents(&[line, line]), None);
    }

    #[test]
    fn stored_lines_must_keep_the_rules() {
        assert!(Line::from_stored(1, 999, 0).is_some());
        assert_eq!(Line::from_stored(0, 1, 1), None);
        assert_eq!(Line::from_stored(1, 0, 1), None);
        assert_eq!(Line::from_stored(1, 1000, 1), None);
        assert_eq!(Line::from_stored(1, 1, -1), None);
    }

    #[test]
    fn addresses_need_street_city_country_and_zip() {
        assert!(Address::parse("", "c", "", "US", "1").is_err());
        assert!(Address::parse("s", "", "", "US", "1").is_err());
        assert!(Address::parse("s", "c", "", "", "1").is_err());
        assert!(Address::parse("s", "c", "", "US", "").is_err());
        assert!(Address::parse(&"s".repeat(MAX_ADDRESS_CHARS + 1), "c", "", "US", "1").is_err());
        assert!(Address::parse("s\u{0}", "c", "", "US", "1").is_err());
        assert_eq!(
            Address::parse(" s ", "c", "", "US", "1")
                .unwrap()
                .street_address,
            "s"
        );
    }

    #[test]
    fn ids_and_reasons_are_checked() {
        let order_id = |id: &str| OrderId::parse(id, "order_id");
        assert!(order_id("").is_err());
        assert!(order_id(&"x".repeat(OrderId::MAX_CHARS + 1)).is_err());
        assert!(order_id("has space").is_err());
        assert!(order_id(&new_order_id()).is_ok());
        assert_ne!(new_order_id(), new_order_id());
        assert!(TransactionId::parse("", "transaction_id").is_err());
        // Payment issues at most 64 characters; order accepts exactly what payment can issue.
        assert!(TransactionId::parse(&"t".repeat(64), "transaction_id").is_ok());
        assert!(TransactionId::parse(&"t".repeat(65), "transaction_id").is_err());
        assert_eq!(cancel_reason("  ").unwrap(), DEFAULT_CANCEL_REASON);
        assert_eq!(
            cancel_reason(" changed my mind ").unwrap(),
            "changed my mind"
        );
        assert!(cancel_reason(&"r".repeat(REASON_TEXT.max_chars())).is_ok());
        assert_eq!(
            cancel_reason(&"r".repeat(501)).unwrap_err().to_string(),
            "reason is 501 characters long; the limit is 500"
        );
    }
}
