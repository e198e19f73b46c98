//! The shape of a payment card as requests carry it. Checkout checks the shape before it starts
//! a saga (so a typo fails at once, before stock is held); payment checks it again with Luhn
//! and the expiry date, because it is the one that charges. Both read these limits.

use std::ops::RangeInclusive;

/// Digits in a card number (spaces and dashes between them not counted).
pub const NUMBER_DIGITS: RangeInclusive<usize> = 13..=19;
/// Digits in a CVV.
pub const CVV_DIGITS: RangeInclusive<usize> = 3..=4;
/// Expiry months.
pub const EXPIRY_MONTHS: RangeInclusive<i32> = 1..=12;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_limits_are_the_networks() {
        assert_eq!((NUMBER_DIGITS.start(), NUMBER_DIGITS.end()), (&13, &19));
        assert_eq!((CVV_DIGITS.start(), CVV_DIGITS.end()), (&3, &4));
        assert!(EXPIRY_MONTHS.contains(&1) && EXPIRY_MONTHS.contains(&12));
        assert!(!EXPIRY_MONTHS.contains(&0) && !EXPIRY_MONTHS.contains(&13));
    }
}
