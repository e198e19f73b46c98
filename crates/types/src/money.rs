//! Money and counts: [`Cents`] (never a float, never negative, arithmetic checked) and
//! [`Quantity`] (units on one line).
//!
//! The limits chain: the catalog's highest price times the largest quantity is the highest line
//! total, and 100 such lines (an order's most) still fit an `i64` many times over, so checked
//! arithmetic fails only on input no rule lets through.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

/// Most units on one cart, order or reservation line.
pub const MAX_QUANTITY: i32 = 999;
/// Most lines in one cart, and so on one order, in one checkout and one stock reservation.
pub const MAX_ORDER_LINES: usize = 100;
/// Highest catalog price: 100 million in the store currency, so totals stay far from overflow.
pub const MAX_PRICE_CENTS: i64 = 10_000_000_000;
/// Highest line total: the highest price times the largest quantity.
pub const MAX_LINE_CENTS: i64 = MAX_PRICE_CENTS * MAX_QUANTITY as i64;

/// Units of one product on one line: 1..=[`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct Quantity(i32);

impl Quantity {
    /// A quantity from a request's `field`.
    pub fn parse(units: i32, field: &str) -> Result<Self, Invalid> {
        Quantity::new(i64::from(units)).ok_or_else(|| {
            Invalid::new(
                field,
                format!("must be between 1 and {MAX_QUANTITY}, got {units}"),
            )
        })
    }

    /// `units` if it is 1..=[`MAX_QUANTITY`] (a stored or computed count).
    pub fn new(units: i64) -> Option<Self> {
        i32::try_from(units)
            .ok()
            .filter(|u| (1..=MAX_QUANTITY).contains(u))
            .map(Quantity)
    }

    /// The count, as the API's `int32`.
    pub const fn get(self) -> i32 {
        self.0
    }

    /// The count, as stored (`BIGINT`).
    pub const fn db(self) -> i64 {
        self.0 as i64
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<i32> for Quantity {
    type Error = Invalid;

    fn try_from(units: i32) -> Result<Self, Invalid> {
        Quantity::parse(units, "quantity")
    }
}

impl From<Quantity> for i32 {
    fn from(q: Quantity) -> i32 {
        q.0
    }
}

/// An amount of money in the store currency's smallest unit. Never negative; every operation
/// that could overflow or go below zero is checked and says so with `None`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub struct Cents(i64);

impl Cents {
    /// Nothing.
    pub const ZERO: Cents = Cents(0);

    /// `cents` if it is not negative (a stored or computed amount).
    pub const fn new(cents: i64) -> Option<Self> {
        if cents >= 0 { Some(Cents(cents)) } else { None }
    }

    /// A positive amount of at most `max` from a request's `field` (a price, a charge).
    pub fn parse_positive(cents: i64, max: i64, field: &str) -> Result<Self, Invalid> {
        if cents <= 0 {
            return Err(Invalid::new(field, "must be positive"));
        }
        if cents > max {
            return Err(Invalid::new(field, format!("must be at most {max}")));
        }
        Ok(Cents(cents))
    }

    /// A catalog price: 1..=[`MAX_PRICE_CENTS`].
    pub fn parse_price(cents: i64, field: &str) -> Result<Self, Invalid> {
        Cents::parse_positive(cents, MAX_PRICE_CENTS, field)
    }

    /// A line total: 0..=[`MAX_LINE_CENTS`] (free lines are fine).
    pub fn parse_line_total(cents: i64, field: &str) -> Result<Self, Invalid> {
        if (0..=MAX_LINE_CENTS).contains(&cents) {
            Ok(Cents(cents))
        } else {
            Err(Invalid::new(field, format!("must be 0..={MAX_LINE_CENTS}")))
        }
    }

    /// The amount, as the API and the database hold it.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// `self + other`; `None` on overflow.
    pub fn checked_add(self, other: Cents) -> Option<Cents> {
        self.0.checked_add(other.0).map(Cents)
    }

    /// `self - other`; `None` when that would be negative.
    pub fn checked_sub(self, other: Cents) -> Option<Cents> {
        self.0.checked_sub(other.0).and_then(Cents::new)
    }

    /// `self × quantity` (a unit price times units); `None` on overflow.
    pub fn checked_mul(self, quantity: Quantity) -> Option<Cents> {
        self.0.checked_mul(quantity.db()).map(Cents)
    }

    /// The sum of `amounts`; `None` on overflow.
    pub fn checked_sum(amounts: impl IntoIterator<Item = Cents>) -> Option<Cents> {
        amounts
            .into_iter()
            .try_fold(Cents::ZERO, |sum, amount| sum.checked_add(amount))
    }
}

impl fmt::Display for Cents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<i64> for Cents {
    type Error = Invalid;

    fn try_from(cents: i64) -> Result<Self, Invalid> {
        Cents::new(cents).ok_or_else(|| Invalid::new("cents", "must not be negative"))
    }
}

impl From<Cents> for i64 {
    fn from(c: Cents) -> i64 {
        c.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cents(c: i64) -> Cents {
        Cents::new(c).unwrap()
    }

    #[test]
    fn quantities_are_one_to_999() {
        assert_eq!(Quantity::parse(1, "q").map(Quantity::get), Ok(1));
        assert_eq!(Quantity::parse(999, "q").map(Quantity::db), Ok(999));
        for bad in [0, -1, 1000, i32::MIN, i32::MAX] {
            let err = Quantity::parse(bad, "item.quantity").unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("item.quantity must be between 1 and 999, got {bad}")
            );
        }
        assert_eq!(Quantity::new(999).map(Quantity::get), Some(999));
        assert_eq!(Quantity::new(1000), None);
        assert_eq!(Quantity::new(0), None);
        assert_eq!(Quantity::new(i64::MAX), None);
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert_eq!(serde_json::from_str::<Quantity>("3").unwrap().get(), 3);
    }

    #[test]
    fn prices_are_positive_and_capped() {
        assert_eq!(Cents::parse_price(1, "p").map(Cents::get), Ok(1));
        assert!(Cents::parse_price(MAX_PRICE_CENTS, "p").is_ok());
        assert_eq!(
            Cents::parse_price(0, "price_cents")
                .unwrap_err()
                .to_string(),
            "price_cents must be positive"
        );
        assert!(Cents::parse_price(-5, "p").is_err());
        assert_eq!(
            Cents::parse_price(MAX_PRICE_CENTS + 1, "price_cents")
                .unwrap_err()
                .to_string(),
            format!("price_cents must be at most {MAX_PRICE_CENTS}")
        );
        assert!(Cents::parse_positive(10, 10, "a").is_ok());
        assert!(Cents::parse_positive(11, 10, "a").is_err());
    }

    #[test]
    fn line_totals_may_be_zero_up_to_price_times_quantity() {
        assert_eq!(MAX_LINE_CENTS, 9_990_000_000_000);
        assert!(Cents::parse_line_total(0, "c").is_ok());
        assert!(Cents::parse_line_total(MAX_LINE_CENTS, "c").is_ok());
        assert_eq!(
            Cents::parse_line_total(-1, "cost_cents")
                .unwrap_err()
                .to_string(),
            format!("cost_cents must be 0..={MAX_LINE_CENTS}")
        );
        assert!(Cents::parse_line_total(MAX_LINE_CENTS + 1, "c").is_err());
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Cents::new(-1), None);
        assert_eq!(cents(2).checked_add(cents(3)), Some(cents(5)));
        assert_eq!(cents(i64::MAX).checked_add(cents(1)), None);
        assert_eq!(cents(5).checked_sub(cents(5)), Some(Cents::ZERO));
        assert_eq!(cents(5).checked_sub(cents(6)), None);
        let three = Quantity::parse(3, "q").unwrap();
        assert_eq!(cents(250).checked_mul(three), Some(cents(750)));
        assert_eq!(cents(i64::MAX).checked_mul(three), None);
        assert_eq!(
            Cents::checked_sum([cents(1), cents(2), cents(3)]),
            Some(cents(6))
        );
        assert_eq!(Cents::checked_sum([]), Some(Cents::ZERO));
        assert_eq!(Cents::checked_sum([cents(i64::MAX), cents(1)]), None);
        // An order's most lines at the highest line total fit comfortably.
        assert!(Cents::checked_sum(vec![cents(MAX_LINE_CENTS); MAX_ORDER_LINES]).is_some());
    }

    #[test]
    fn cents_serialize_as_numbers() {
        assert_eq!(serde_json::to_string(&cents(1234)).unwrap(), "1234");
        assert_eq!(serde_json::from_str::<Cents>("1234").unwrap(), cents(1234));
        assert!(serde_json::from_str::<Cents>("-1").is_err());
        assert_eq!(cents(1234).to_string(), "1234");
    }
}
