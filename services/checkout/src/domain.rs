//! Checkout rules: what a valid checkout request is ([`CheckoutInput`]), the saga's
//! steps ([`Step`]), how lines are priced ([`price_lines`]) and how a request is fingerprinted
//! for idempotency ([`fingerprint`]). Requests are parsed into these types at the edge, so the
//! saga never sees unchecked input.

use std::collections::HashMap;
use std::fmt;
use std::ops::RangeInclusive;

use mall_types::card::{CVV_DIGITS, EXPIRY_MONTHS, NUMBER_DIGITS};
use mall_types::{
    Address, Cents, Email, IdempotencyKey, Invalid, PaymentMethod, Quantity, TextRule, UserId,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A first or last name: one line of up to 100 characters.
pub const NAME_TEXT: TextRule = TextRule::line(100);
/// Most lines one checkout may hold: one order's.
pub use mall_types::money::MAX_ORDER_LINES as MAX_LINES;

/// Where a saga is. Stored by [`Step::as_str`]; written before and after each remote call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Row written; only reads (cart, catalog) so far.
    Started,
    /// Lines priced and stored, the row's first state: the forward path writes nothing more
    /// until its answer, so anything up to a paid order may have happened (recovery finds the
    /// order by the saga id and the charge through payment's void).
    PlacingOrder,
    /// The PENDING order exists (`order_id` set).
    OrderPlaced,
    /// ReserveStock sent (a reservation may exist).
    ReservingStock,
    /// Stock reserved under the order id.
    StockReserved,
    /// Charge sent; the outcome is unknown until recorded.
    Charging,
    /// Charged (`transaction_id` set); the order is not paid yet.
    Charged,
    /// Order PAID; the cart still has to be emptied.
    CartPending,
    /// Alipay: AlipayCharge sent for the order's pay link (the link may exist).
    LinkingPayment,
    /// Alipay: done here, the pay link given to the client; the order stays PENDING until
    /// payment marks it PAID (and cleans the cart) or the sweeper cancels it.
    AwaitingPayment,
    /// Done: order PAID, cart emptied.
    Completed,
    /// Undoing: refund (when charged), release the stock, cancel the order.
    Compensating,
    /// Undone.
    Compensated,
    /// Refused before anything was written elsewhere (empty cart, missing product, ...).
    Rejected,
}

impl Step {
    /// Every step.
    pub const ALL: [Step; 14] = [
        Step::Started,
        Step::PlacingOrder,
        Step::OrderPlaced,
        Step::ReservingStock,
        Step::StockReserved,
        Step::Charging,
        Step::Charged,
        Step::CartPending,
        Step::LinkingPayment,
        Step::AwaitingPayment,
        Step::Completed,
        Step::Compensating,
        Step::Compensated,
        Step::Rejected,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Started => "started",
            Step::PlacingOrder => "placing_order",
            Step::OrderPlaced => "order_placed",
            Step::ReservingStock => "reserving_stock",
            Step::StockReserved => "stock_reserved",
            Step::Charging => "charging",
            Step::Charged => "charged",
            Step::CartPending => "cart_pending",
            Step::LinkingPayment => "linking_payment",
            Step::AwaitingPayment => "awaiting_payment",
            Step::Completed => "completed",
            Step::Compensating => "compensating",
            Step::Compensated => "compensated",
            Step::Rejected => "rejected",
        }
    }

    /// The step stored as `name`.
    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A saga's overall state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaState {
    /// Work remains (forward or compensation).
    Running,
    /// Ended with a PAID order and an empty cart.
    Succeeded,
    /// Ended with nothing charged (or fully refunded), the order cancelled and stock back.
    Failed,
}

impl SagaState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Succeeded => "succeeded",
            SagaState::Failed => "failed",
        }
    }

    /// The state stored as `name`.
    pub fn parse(name: &str) -> Option<SagaState> {
        [SagaState::Running, SagaState::Succeeded, SagaState::Failed]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// Who buys and where it ships: stored with the saga (as JSON), so a resumed saga can place
/// the order. Every part was parsed by [`Contact::parse`]; they are kept as plain strings
/// because that is what the order request and the stored JSON carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// First name ([`NAME_TEXT`]).
    pub firstname: String,
    /// Last name ([`NAME_TEXT`]).
    pub lastname: String,
    /// Lower-cased email (an [`Email`]).
    pub email: String,
    /// Shipping address.
    pub address: Address,
}

/// The card, checked for shape only (Luhn and expiry are payment's job). Never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    /// 13..=19 digits.
    pub number: String,
    /// 3..=4 digits.
    pub cvv: String,
    /// Expiry year as given (2- or 4-digit).
    pub year: i32,
    /// Expiry month 1..=12.
    pub month: i32,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the number or CVV, not even in debug output.
        f.debug_struct("Card")
            .field("year", &self.year)
            .field("month", &self.month)
            .finish_non_exhaustive()
    }
}

/// How a checkout is paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pay {
    /// Charge this card (the default).
    Card(Card),
    /// Answer with an Alipay pay link; the buyer pays on Alipay's page.
    Alipay {
        /// Where Alipay sends the browser back (empty: none).
        return_url: String,
    },
}

impl Pay {
    /// How the checkout is paid, as order and payment name it.
    pub fn method(&self) -> PaymentMethod {
        match self {
            Pay::Card(_) => PaymentMethod::CreditCard,
            Pay::Alipay { .. } => PaymentMethod::Alipay,
        }
    }

    /// How a request pays with `method`: a card needs one and no `return_url`; Alipay takes
    /// no card (an all-empty one is none) and an optional http(s) `return_url`.
    pub fn parse(
        method: PaymentMethod,
        card: Option<CardFields<'_>>,
        return_url: &str,
    ) -> Result<Pay, Invalid> {
        match method {
            PaymentMethod::Alipay => Pay::alipay(card, return_url),
            PaymentMethod::CreditCard => {
                if !return_url.trim().is_empty() {
                    return Err(Invalid::new(
                        "return_url",
                        "is only for payment_method alipay",
                    ));
                }
                let card = card.ok_or_else(|| Invalid::new("credit_card", "is required"))?;
                Ok(Pay::Card(Card::parse(card)?))
            }
        }
    }

    fn alipay(card: Option<CardFields<'_>>, return_url: &str) -> Result<Pay, Invalid> {
        if card.is_some_and(|c| !c.is_empty()) {
            return Err(Invalid::new(
                "credit_card",
                "must be empty with payment_method alipay",
            ));
        }
        let url = return_url.trim();
        if !url.is_empty()
            && (url.len() > MAX_RETURN_URL_CHARS
                || !(url.starts_with("https://") || url.starts_with("http://"))
                || url.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(Invalid::new(
                "return_url",
                format!("must be an http(s) URL of at most {MAX_RETURN_URL_CHARS} characters"),
            ));
        }
        Ok(Pay::Alipay {
            return_url: url.to_string(),
        })
    }
}

/// A card as the request sends it, borrowed. Deliberately not `Debug`: it holds the number and
/// the CVV.
#[derive(Clone, Copy)]
pub struct CardFields<'a> {
    /// The number.
    pub number: &'a str,
    /// The CVV.
    pub cvv: &'a str,
    /// Expiry year.
    pub year: i32,
    /// Expiry month.
    pub month: i32,
}

impl CardFields<'_> {
    fn is_empty(&self) -> bool {
        self.number.is_empty() && self.cvv.is_empty() && self.year == 0 && self.month == 0
    }
}

impl Card {
    /// Checks the card's shape (Luhn and expiry are payment's job): number and CVV digits,
    /// month 1..=12, a positive year.
    pub fn parse(card: CardFields<'_>) -> Result<Card, Invalid> {
        let number = digits(card.number, "credit_card.credit_card_number", NUMBER_DIGITS)?;
        let cvv = digits(card.cvv, "credit_card.credit_card_cvv", CVV_DIGITS)?;
        if !EXPIRY_MONTHS.contains(&card.month) {
            return Err(Invalid::new(
                "credit_card.credit_card_expiration_month",
                "must be 1..=12",
            ));
        }
        if card.year <= 0 {
            return Err(Invalid::new(
                "credit_card.credit_card_expiration_year",
                "must be a positive year",
            ));
        }
        Ok(Card {
            number,
            cvv,
            year: card.year,
            month: card.month,
        })
    }
}

/// Longest Alipay `return_url` (Alipay's limit).
pub const MAX_RETURN_URL_CHARS: usize = 256;

/// A valid `Checkout` request (parsed from the wire by `TryFrom<&CheckoutReq>` in `api.rs`).
#[derive(Debug, Clone)]
pub struct CheckoutInput {
    /// The buyer.
    pub user_id: UserId,
    /// Names, email and address.
    pub contact: Contact,
    /// The card to charge, or Alipay.
    pub pay: Pay,
    /// The client's retry key, if any.
    pub idempotency_key: Option<IdempotencyKey>,
}

impl Contact {
    /// Checks the names, the email (kept lower-cased) and the address, in that order.
    pub fn parse(
        firstname: &str,
        lastname: &str,
        email: &str,
        address: impl FnOnce() -> Result<Address, Invalid>,
    ) -> Result<Contact, Invalid> {
        Ok(Contact {
            firstname: NAME_TEXT.parse(firstname, "firstname")?.into_string(),
            lastname: NAME_TEXT.parse(lastname, "lastname")?.into_string(),
            email: Email::parse(email)?.into_string(),
            address: address()?,
        })
    }
}

fn digits(value: &str, field: &str, count: RangeInclusive<usize>) -> Result<String, Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(field, "is required"));
    }
    if !count.contains(&value.len()) || !value.bytes().all(|b| b.is_ascii_digit()) {
        let (min, max) = count.into_inner();
        return Err(Invalid::new(
            field,
            format!("must be {min} to {max} digits"),
        ));
    }
    Ok(value.to_string())
}

/// A keyed SHA-256 over everything the request says (card number and CVV included), hex. The
/// `pepper` (a deployment secret) keeps the stored digest from being brute-forced back to a
/// card number.
pub fn fingerprint(pepper: &str, input: &CheckoutInput) -> String {
    let c = &input.contact;
    let a = &c.address;
    let (number, cvv, year, month, return_url) = match &input.pay {
        Pay::Card(card) => (
            card.number.as_str(),
            card.cvv.as_str(),
            card.year.to_string(),
            card.month.to_string(),
            "",
        ),
        Pay::Alipay { return_url } => ("", "", String::new(), String::new(), return_url.as_str()),
    };
    let user = input.user_id.to_string();
    let fields: [&str; 14] = [
        &user,
        &c.firstname,
        &c.lastname,
        &c.email,
        &a.street_address,
        &a.city,
        &a.state,
        &a.country,
        &a.zip_code,
        number,
        cvv,
        &year,
        &month,
        input.idempotency_key.as_deref().unwrap_or(""),
    ];
    // Card requests hash exactly as before Alipay existed (stored fingerprints stay valid);
    // an Alipay request also covers its method and return URL.
    let alipay: Vec<&str> = match input.pay {
        Pay::Card(_) => Vec::new(),
        Pay::Alipay { .. } => vec![input.pay.method().as_str(), return_url],
    };
    let mut hash = Sha256::new();
    hash.update(pepper.as_bytes());
    for field in fields.iter().chain(alipay.iter()) {
        hash.update([0x1f]);
        hash.update(field.as_bytes());
    }
    hex::encode(hash.finalize())
}

/// One priced order line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    /// Product id.
    pub product_id: u64,
    /// Units.
    pub quantity: i32,
    /// Catalog price × quantity, in cents.
    pub cost_cents: i64,
}

/// Why a cart could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// The cart has no lines.
    #[error("cart is empty")]
    EmptyCart,
    /// More lines than one order takes.
    #[error("cart has more than {MAX_LINES} lines")]
    TooManyLines,
    /// A product is missing or deleted.
    #[error("product {0} is no longer available")]
    Unavailable(u64),
    /// A line quantity the cart should never hold.
    #[error("cart line for product {0} has an invalid quantity")]
    BadQuantity(u64),
    /// Price × quantity or the total does not fit.
    #[error("the order total is too large")]
    Overflow,
}

/// Prices `cart` (`(product_id, quantity)`, in cart order) with `prices` from the catalog;
/// returns the lines and their total. Client prices never enter here.
pub fn price_lines(
    cart: &[(u64, i32)],
    prices: &HashMap<u64, i64>,
) -> Result<(Vec<PricedLine>, Cents), PricingError> {
    if cart.is_empty() {
        return Err(PricingError::EmptyCart);
    }
    if cart.len() > MAX_LINES {
        return Err(PricingError::TooManyLines);
    }
    let mut total = Cents::ZERO;
    let mut lines = Vec::with_capacity(cart.len());
    for &(product_id, quantity) in cart {
        let units =
            Quantity::new(i64::from(quantity)).ok_or(PricingError::BadQuantity(product_id))?;
        // The catalog only holds positive prices; a product without one cannot be sold.
        let price = prices
            .get(&product_id)
            .and_then(|p| Cents::new(*p))
            .ok_or(PricingError::Unavailable(product_id))?;
        let cost = price.checked_mul(units).ok_or(PricingError::Overflow)?;
        total = total.checked_add(cost).ok_or(PricingError::Overflow)?;
        lines.push(PricedLine {
            product_id,
            quantity: units.get(),
            cost_cents: cost.get(),
        });
    }
    Ok((lines, total))
}

/// A new, unguessable, time-ordered saga id (UUIDv7).
pub fn new_saga_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_priced_from_the_catalog() {
        let prices = HashMap::from([(1, 250), (2, 1_000)]);
        let (lines, total) = price_lines(&[(1, 2), (2, 3)], &prices).unwrap();
        assert_eq!(total.get(), 3_500);
        assert_eq!(lines[1].cost_cents, 3_000);
        assert_eq!(price_lines(&[], &prices), Err(PricingError::EmptyCart));
        assert_eq!(
            price_lines(&[(3, 1)], &prices),
            Err(PricingError::Unavailable(3))
        );
        let huge = HashMap::from([(1, i64::MAX)]);
        assert_eq!(price_lines(&[(1, 2)], &huge), Err(PricingError::Overflow));
        assert_eq!(
            price_lines(&[(1, 0)], &prices),
            Err(PricingError::BadQuantity(1))
        );
        assert_eq!(
            price_lines(&[(1, 1000)], &prices),
            Err(PricingError::BadQuantity(1))
        );
        assert!(price_lines(&[(1, 999)], &prices).is_ok());
        let broken = HashMap::from([(1, -5)]);
        assert_eq!(
            price_lines(&[(1, 1)], &broken),
            Err(PricingError::Unavailable(1))
        );
        let too_many: Vec<(u64, i32)> = (1..=101).map(|id| (id, 1)).collect();
        assert_eq!(
            price_lines(&too_many, &prices),
            Err(PricingError::TooManyLines)
        );
    }

    #[test]
    fn steps_round_trip() {
        for s in Step::ALL {
            assert_eq!(Step::parse(s.as_str()), Some(s));
        }
        assert_eq!(SagaState::parse("running"), Some(SagaState::Running));
        assert_eq!(Step::parse("nope"), None);
    }
}
