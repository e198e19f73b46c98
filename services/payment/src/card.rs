//! Card payments: what a valid card and `Charge` are, and approving and recording a charge.
//!
//! Card data: [`CardInput`] borrows the number and CVV from the request and has no `Debug`, so
//! it cannot end up in a log line; [`CardInput::check`] turns it into a [`CardSummary`] (brand and
//! last 4 digits, the only part ever kept) and no error message ever echoes what was sent. No
//! card network stands behind this service: every valid card but the decline test cards is
//! approved.

use mall_types::card::{CVV_DIGITS, EXPIRY_MONTHS, NUMBER_DIGITS};
use mall_types::{Cents, Invalid, OrderId, UserId};

use crate::domain::{
    CardBrand, CardSummary, Civil, Decline, MAX_CHARGE_CENTS, PaymentMethod, amount,
};
use crate::error::Error;
use crate::store::{Ledger, NewPayment, OnVoided, Recorded};

/// A card expiring further ahead than this many years is a typo, not a card.
pub const MAX_EXPIRY_YEARS_AHEAD: i64 = 50;

/// The test card that is always declined.
pub const DECLINED_CARD: &str = "4000000000000002";
/// The test card declined for insufficient funds.
pub const INSUFFICIENT_FUNDS_CARD: &str = "4000000000009995";

/// A card as sent, borrowed from the request. Deliberately not `Debug`: it holds the number and
/// the CVV.
pub struct CardInput<'a> {
    /// The number, possibly with spaces or dashes.
    pub number: &'a str,
    /// The CVV, 3 or 4 digits.
    pub cvv: &'a str,
    /// Expiry year, 2 or 4 digits.
    pub year: i32,
    /// Expiry month, 1–12.
    pub month: i32,
}

/// Luhn's checksum over ASCII digits.
fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 { d - 9 } else { d }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

impl CardInput<'_> {
    /// Checks the card as of `now` (unix seconds): number 13–19 digits passing Luhn (spaces and
    /// dashes ignored), CVV 3–4 digits, expiry month 1–12 with a 2- or 4-digit year, valid until
    /// the end of that month (UTC). Returns what may be kept and whether a test card declines.
    /// Error messages name the field, never its value.
    pub fn check(&self, now: i64) -> Result<(CardSummary, Option<Decline>), Invalid> {
        const NUMBER: &str = "credit_card.credit_card_number";
        if self.number.trim().is_empty() {
            return Err(Invalid::new(NUMBER, "is required"));
        }
        let digits: String = self
            .number
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .collect();
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid::new(
                NUMBER,
                "must contain only digits, spaces and dashes",
            ));
        }
        if !NUMBER_DIGITS.contains(&digits.len()) {
            return Err(Invalid::new(NUMBER, "must be 13 to 19 digits"));
        }
        if !luhn(&digits) {
            return Err(Invalid::new(NUMBER, "is not a valid card number"));
        }
        let cvv = self.cvv.as_bytes();
        if !CVV_DIGITS.contains(&cvv.len()) || !cvv.iter().all(u8::is_ascii_digit) {
            return Err(Invalid::new(
                "credit_card.credit_card_cvv",
                "must be 3 or 4 digits",
            ));
        }
        check_expiry(self.year, self.month, now)?;
        let decline = match digits.as_str() {
            DECLINED_CARD => Some(Decline::Declined),
            INSUFFICIENT_FUNDS_CARD => Some(Decline::InsufficientFunds),
            _ => None,
        };
        let last4 = digits[digits.len() - 4..].to_string();
        Ok((
            CardSummary {
                brand: CardBrand::of(&digits),
                last4,
            },
            decline,
        ))
    }
}

/// The card is valid through the end of its expiry month.
fn check_expiry(year: i32, month: i32, now: i64) -> Result<(), Invalid> {
    const MONTH: &str = "credit_card.credit_card_expiration_month";
    const YEAR: &str = "credit_card.credit_card_expiration_year";
    if !EXPIRY_MONTHS.contains(&month) {
        return Err(Invalid::new(MONTH, "must be 1 to 12"));
    }
    let year = match year {
        0..=99 => 2000 + i64::from(year),
        1000..=9999 => i64::from(year),
        _ => return Err(Invalid::new(YEAR, "must have 2 or 4 digits")),
    };
    let today = Civil::from_unix(now);
    if (year, i64::from(month)) < (today.year, i64::from(today.month)) {
        return Err(Invalid::new("credit_card", "has expired"));
    }
    if year > today.year + MAX_EXPIRY_YEARS_AHEAD {
        return Err(Invalid::new(YEAR, "is too far in the future"));
    }
    Ok(())
}

/// A valid `Charge`: what is recorded when the card is approved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The order paid for.
    pub order_id: OrderId,
    /// The paying user.
    pub user_id: UserId,
    /// Positive amount.
    pub amount_cents: Cents,
    /// Brand and last 4 digits.
    pub card: CardSummary,
}

impl Charge {
    /// Validates a `Charge` request as of `now`; the second value says whether a test card
    /// declines. `payment_method` is `credit_card` or empty (Alipay has its own RPCs).
    pub fn parse(
        amount_cents: i64,
        payment_method: &str,
        order: &str,
        user: u64,
        card: Option<CardInput<'_>>,
        now: i64,
    ) -> Result<(Charge, Option<Decline>), Invalid> {
        const METHOD: &str = "payment_method";
        match payment_method {
            "" | "credit_card" => {}
            "alipay" => {
                return Err(Invalid::new(
                    METHOD,
                    "alipay is paid through AlipayCharge, not Charge",
                ));
            }
            _ => {
                return Err(Invalid::new(
                    METHOD,
                    "must be credit_card (or alipay through AlipayCharge)",
                ));
            }
        }
        let amount_cents = amount(amount_cents, MAX_CHARGE_CENTS)?;
        let order_id = OrderId::parse(order, "order_id")?;
        let user_id = UserId::parse(user, "user_id")?;
        let card = card.ok_or_else(|| Invalid::new("credit_card", "is required"))?;
        let (card, decline) = card.check(now)?;
        Ok((
            Charge {
                order_id,
                user_id,
                amount_cents,
                card,
            },
            decline,
        ))
    }
}

/// Card payments over the ledger.
#[derive(Clone)]
pub struct Cards {
    ledger: Ledger,
}

impl Cards {
    /// Card payments recorded in `ledger`.
    pub fn new(ledger: Ledger) -> Self {
        Cards { ledger }
    }

    /// Approves and records a card charge; the transaction id. A declined test card charges
    /// nothing; a repeat of the order's charge (same user, amount and method) answers the same
    /// transaction id; any other payment for the order is [`Error::OrderAlreadyPaid`].
    pub async fn charge(&self, charge: Charge, decline: Option<Decline>) -> Result<String, Error> {
        if let Some(decline) = decline {
            tracing::info!(order = %charge.order_id, brand = charge.card.brand.as_str(), %decline, "card declined");
            return Err(Error::Declined(decline));
        }
        let new = NewPayment {
            transaction_id: uuid::Uuid::now_v7().to_string(),
            order_id: charge.order_id.clone(),
            user_id: charge.user_id,
            amount_cents: charge.amount_cents,
            method: PaymentMethod::CreditCard,
            card: Some(charge.card.clone()),
        };
        match self.ledger.record(&new, OnVoided::Refuse).await? {
            Recorded::New => {
                tracing::info!(
                    order = %new.order_id,
                    transaction = %new.transaction_id,
                    amount_cents = new.amount_cents.get(),
                    brand = charge.card.brand.as_str(),
                    "card charged"
                );
                Ok(new.transaction_id)
            }
            Recorded::Voided => {
                tracing::warn!(order = %new.order_id, "charge refused: checkout abandoned the order");
                Err(Error::OrderVoided(charge.order_id.into_string()))
            }
            Recorded::Existing(p)
                if p.is_repeat(
                    charge.user_id,
                    charge.amount_cents,
                    PaymentMethod::CreditCard,
                ) =>
            {
                Ok(p.transaction_id)
            }
            Recorded::Existing(_) => Err(Error::OrderAlreadyPaid(charge.order_id.into_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-03-15 12:00:00 UTC.
    const NOW: i64 = 1_773_576_000;

    fn card(number: &str, cvv: &str, year: i32, month: i32) -> CardInput<'static> {
        CardInput {
            number: Box::leak(number.to_string().into_boxed_str()),
            cvv: Box::leak(cvv.to_string().into_boxed_str()),
            year,
            month,
        }
    }

    #[test]
    fn cards_are_checked_and_summarised() {
        let (summary, decline) = card("4242 4242-4242 4242", "123", 2030, 12)
            .check(NOW)
            .unwrap();
        assert_eq!(summary.brand, CardBrand::Visa);
        assert_eq!(summary.last4, "4242");
        assert_eq!(decline, None);
        assert_eq!(
            card(DECLINED_CARD, "123", 30, 1).check(NOW).unwrap().1,
            Some(Decline::Declined)
        );
        assert_eq!(
            card(INSUFFICIENT_FUNDS_CARD, "0123", 30, 1)
                .check(NOW)
                .unwrap()
                .1,
            Some(Decline::InsufficientFunds)
        );
        for bad in [
            card("4242424242424241", "123", 30, 1),
            card("424242424242", "123", 30, 1),
            card("42424242424242424242", "123", 30, 1),
            card("4242x24242424242", "123", 30, 1),
            card("", "123", 30, 1),
            card("4242424242424242", "12", 30, 1),
            card("4242424242424242", "12a", 30, 1),
            card("4242424242424242", "12345", 30, 1),
            card("4242424242424242", "123", 30, 13),
            card("4242424242424242", "123", 30, 0),
            card("4242424242424242", "123", 2026, 2),
            card("4242424242424242", "123", 25, 12),
            card("4242424242424242", "123", 123, 1),
            card("4242424242424242", "123", -1, 1),
            card("4242424242424242", "123", 2200, 1),
        ] {
            let err = bad.check(NOW).unwrap_err();
            assert!(!err.to_string().contains("4242424242"), "{err}");
            assert!(err.field().starts_with("credit_card"), "{err}");
        }
        // Valid through the end of the expiry month.
        assert!(card("4242424242424242", "123", 26, 3).check(NOW).is_ok());
    }

    #[test]
    fn brands_follow_the_prefixes() {
        for (number, brand) in [
            ("4111111111111111", CardBrand::Visa),
            ("5555555555554444", CardBrand::Mastercard),
            ("2223003122003222", CardBrand::Mastercard),
            ("378282246310005", CardBrand::Amex),
            ("6011111111111117", CardBrand::Discover),
            ("3530111333300000", CardBrand::Unknown),
        ] {
            let (summary, _) = card(number, "123", 30, 1).check(NOW).unwrap();
            assert_eq!(summary.brand, brand, "{number}");
        }
    }

    #[test]
    fn charges_check_method_amount_order_and_user() {
        fn ok(m: &str, a: i64, o: &str, u: u64) -> Result<(Charge, Option<Decline>), Invalid> {
            Charge::parse(
                a,
                m,
                o,
                u,
                Some(card("4242424242424242", "123", 30, 1)),
                NOW,
            )
        }
        assert!(ok("", 100, "o1", 7).is_ok());
        assert!(ok("credit_card", 100, "o1", 7).is_ok());
        assert!(
            ok("alipay", 100, "o1", 7)
                .unwrap_err()
                .to_string()
                .contains("AlipayCharge")
        );
        assert!(ok("paypal", 100, "o1", 7).is_err());
        assert!(ok("", 0, "o1", 7).is_err());
        assert!(ok("", -5, "o1", 7).is_err());
        assert!(ok("", MAX_CHARGE_CENTS + 1, "o1", 7).is_err());
        assert!(ok("", 100, "", 7).is_err());
        assert!(ok("", 100, &"x".repeat(64), 7).is_ok());
        assert!(ok("", 100, &"x".repeat(65), 7).is_err());
        assert_eq!(
            ok("", MAX_CHARGE_CENTS + 1, "o1", 7)
                .unwrap_err()
                .to_string(),
            format!("amount_cents must be at most {MAX_CHARGE_CENTS}")
        );
        assert!(ok("", MAX_CHARGE_CENTS, "o1", 7).is_ok());
        assert!(ok("", 100, "o1", 0).is_err());
        assert!(Charge::parse(100, "", "o1", 7, None, NOW).is_err());
    }
}
