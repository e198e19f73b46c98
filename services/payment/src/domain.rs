//! Payment rules: what a valid charge, refund, Alipay order or Alipay notification is. Requests
//! are parsed into these types at the edge (`api.rs`), so the store never sees unchecked
//! input.
//!
//! Card data: [`CardInput`] borrows the number and CVV from the request and has no `Debug`, so
//! it cannot end up in a log line; [`CardInput::check`] turns it into a [`CardSummary`] (brand and
//! last 4 digits, the only part ever kept) and no error message ever echoes what was sent.

use std::collections::BTreeMap;

use mall_types::card::{CVV_DIGITS, EXPIRY_MONTHS, NUMBER_DIGITS};
use mall_types::{Cents, Invalid, OrderId, Text, TextRule, TransactionId, UserId};

use crate::error::Error;

/// Highest card charge: far above any order total, far from `i64` overflow.
pub const MAX_CHARGE_CENTS: i64 = 1_000_000_000_000_000;
/// Highest Alipay amount: Alipay's own limit, 100 000 000.00.
pub const MAX_ALIPAY_CENTS: i64 = 10_000_000_000;
/// A refund reason: one line of up to 256 characters, may be empty.
pub const REASON_TEXT: TextRule = TextRule::line(256).optional();
/// Longest Alipay `return_url` (Alipay's limit).
pub const MAX_RETURN_URL_CHARS: usize = 256;
/// A card expiring further ahead than this many years is a typo, not a card.
pub const MAX_EXPIRY_YEARS_AHEAD: i64 = 50;

/// The test card that is always declined.
pub const DECLINED_CARD: &str = "4000000000000002";
/// The test card declined for insufficient funds.
pub const INSUFFICIENT_FUNDS_CARD: &str = "4000000000009995";

/// Status of a payment that has not been refunded.
pub const STATUS_PAID: &str = "paid";

/// Why a card was declined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// Declined without a reason.
    Declined,
    /// Declined for insufficient funds.
    InsufficientFunds,
}

impl std::fmt::Display for Decline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Decline::Declined => "card declined",
            Decline::InsufficientFunds => "card declined: insufficient funds",
        })
    }
}

/// How a payment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A card charged through `Charge`.
    CreditCard,
    /// An Alipay page payment confirmed by `AlipayNotify`.
    Alipay,
}

impl Method {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::CreditCard => "credit_card",
            Method::Alipay => "alipay",
        }
    }

    /// The method of a stored name.
    pub fn from_stored(name: &str) -> Option<Method> {
        match name {
            "credit_card" => Some(Method::CreditCard),
            "alipay" => Some(Method::Alipay),
            _ => None,
        }
    }
}

/// A card brand, told from the number's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBrand {
    /// 4…
    Visa,
    /// 51–55…, 2221–2720…
    Mastercard,
    /// 34…, 37…
    Amex,
    /// 6011…, 644–649…, 65…, 622126–622925…
    Discover,
    /// Anything else.
    Unknown,
}

impl CardBrand {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            CardBrand::Visa => "visa",
            CardBrand::Mastercard => "mastercard",
            CardBrand::Amex => "amex",
            CardBrand::Discover => "discover",
            CardBrand::Unknown => "unknown",
        }
    }

    /// The brand of a card number (digits only).
    fn of(digits: &str) -> CardBrand {
        let prefix = |n: usize| -> u32 {
            digits
                .get(..n)
                .and_then(|p| p.parse().ok())
                .unwrap_or_default()
        };
        if digits.starts_with('4') {
            CardBrand::Visa
        } else if (51..=55).contains(&prefix(2)) || (2221..=2720).contains(&prefix(4)) {
            CardBrand::Mastercard
        } else if matches!(prefix(2), 34 | 37) {
            CardBrand::Amex
        } else if prefix(4) == 6011
            || prefix(2) == 65
            || (644..=649).contains(&prefix(3))
            || (622_126..=622_925).contains(&prefix(6))
        {
            CardBrand::Discover
        } else {
            CardBrand::Unknown
        }
    }
}

/// What is kept of a card: the brand and the last 4 digits, never the number or the CVV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardSummary {
    /// Brand.
    pub brand: CardBrand,
    /// The last 4 digits.
    pub last4: String,
}

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

/// A calendar date and time (proleptic Gregorian, no time zone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year.
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub minute: u32,
    /// 0–59.
    pub second: u32,
}

impl Civil {
    /// The UTC calendar time of unix seconds (Howard Hinnant's `civil_from_days`).
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // Every value below is in range by construction.
        let small = |v: i64| u32::try_from(v).unwrap_or_default();
        Civil {
            year,
            month: small(month),
            day: small(day),
            hour: small(rem / 3_600),
            minute: small(rem % 3_600 / 60),
            second: small(rem % 60),
        }
    }

    /// `yyyy-MM-dd HH:mm:ss`.
    pub fn format(&self) -> String {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// A charge or refund amount from a request: 1..=`max` cents.
fn amount(cents: i64, max: i64) -> Result<Cents, Invalid> {
    Cents::parse_positive(cents, max, "amount_cents")
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

/// A recorded payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Our id (a UUIDv7, or Alipay's `trade_no`).
    pub transaction_id: String,
    /// The order paid for (one payment per order).
    pub order_id: String,
    /// The paying user.
    pub user_id: i64,
    /// What was paid.
    pub amount_cents: i64,
    /// What has been refunded so far.
    pub refunded_cents: i64,
    /// `paid`, `partially_refunded` or `refunded`.
    pub status: String,
    /// How it was paid.
    pub method: Method,
    /// Card brand (`""` for Alipay).
    pub card_brand: String,
    /// Last 4 card digits (`""` for Alipay).
    pub card_last4: String,
    /// Unix seconds.
    pub created_at: i64,
}

impl Payment {
    /// Is a request for this order by `user` for `amount_cents` with `method` a repeat of this
    /// payment (answered with the same transaction id) rather than a second payment?
    pub fn is_repeat(&self, user: UserId, amount_cents: Cents, method: Method) -> bool {
        self.user_id == user.db()
            && self.amount_cents == amount_cents.get()
            && self.method == method
    }
}

/// A valid `Refund`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The payment refunded.
    pub transaction_id: TransactionId,
    /// Must be the payment's order.
    pub order_id: OrderId,
    /// Must be the payment's user.
    pub user_id: UserId,
    /// Positive; at most what remains (checked atomically by the store).
    pub amount_cents: Cents,
    /// Free text ([`REASON_TEXT`]).
    pub reason: Text,
    /// The caller's id for this refund request (`refund_request_id`): a retry with it is
    /// answered with the first refund.
    pub request_id: Option<TransactionId>,
}

impl Refund {
    /// Validates a `Refund` request (`request_id` may be empty: none).
    pub fn parse(
        transaction: &str,
        order: &str,
        amount_cents: i64,
        reason: &str,
        user: u64,
    ) -> Result<Refund, Invalid> {
        Self::parse_request(transaction, order, amount_cents, reason, user, "")
    }

    /// [`Refund::parse`] with the caller's `refund_request_id`.
    pub fn parse_request(
        transaction: &str,
        order: &str,
        amount_cents: i64,
        reason: &str,
        user: u64,
        request_id: &str,
    ) -> Result<Refund, Invalid> {
        let reason = REASON_TEXT.parse(reason, "reason")?;
        let request_id = match request_id {
            "" => None,
            id => Some(TransactionId::parse(id, "refund_request_id")?),
        };
        Ok(Refund {
            transaction_id: TransactionId::parse(transaction, "transaction_id")?,
            order_id: OrderId::parse(order, "order_id")?,
            user_id: UserId::parse(user, "user_id")?,
            amount_cents: amount(amount_cents, MAX_CHARGE_CENTS)?,
            reason,
            request_id,
        })
    }

    /// The rules checked against the stored payment before the atomic update: same order and
    /// user, not more than what remains of the payment.
    pub fn check_against(&self, payment: &Payment) -> Result<(), Error> {
        if payment.order_id != self.order_id.as_str() || payment.user_id != self.user_id.db() {
            return Err(Error::NotThisPayment);
        }
        if self.amount_cents.get() > payment.amount_cents - payment.refunded_cents {
            return Err(Error::RefundExceedsRemaining);
        }
        Ok(())
    }
}

/// A valid `AlipayCharge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlipayOrder {
    /// Alipay's `out_trade_no`.
    pub order_id: OrderId,
    /// The paying user (sent as `passback_params`, returned in the notification).
    pub user_id: UserId,
    /// Positive, at most Alipay's limit; `None`: the order's total (asked from order).
    pub amount_cents: Option<Cents>,
    /// Where Alipay sends the browser back; `None` for none.
    pub return_url: Option<String>,
}

/// An order's pay link to sign: the order as the order service gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayLinkFor {
    /// `out_trade_no`.
    pub order_id: OrderId,
    /// The order's owner.
    pub user_id: UserId,
    /// The order's total.
    pub amount_cents: Cents,
    /// Where Alipay sends the browser back.
    pub return_url: Option<String>,
}

impl AlipayOrder {
    /// Validates an `AlipayCharge` request (`amount_cents` 0: the order's total).
    pub fn parse(
        order: &str,
        user: u64,
        amount_cents: i64,
        return_url: &str,
    ) -> Result<AlipayOrder, Invalid> {
        let return_url = match return_url.trim() {
            "" => None,
            url => {
                if url.len() > MAX_RETURN_URL_CHARS
                    || !(url.starts_with("https://") || url.starts_with("http://"))
                    || url.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(Invalid::new(
                        "return_url",
                        format!(
                            "must be an http(s) URL of at most {MAX_RETURN_URL_CHARS} characters"
                        ),
                    ));
                }
                Some(url.to_string())
            }
        };
        Ok(AlipayOrder {
            order_id: OrderId::parse(order, "order_id")?,
            user_id: UserId::parse(user, "user_id")?,
            amount_cents: match amount_cents {
                0 => None,
                cents => Some(amount(cents, MAX_ALIPAY_CENTS)?),
            },
            return_url,
        })
    }
}

/// Cents as Alipay's `total_amount`: `"12.34"`, integer arithmetic only.
pub fn yuan(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Alipay's `total_amount` back into cents, exactly: `12`, `12.3` or `12.34`; no sign, no
/// exponent, positive, at most [`MAX_ALIPAY_CENTS`]. `None` for anything else.
pub fn cents_from_yuan(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || whole.len() > 12 {
        return None;
    }
    if text.contains('.') && !(digits(fraction) && fraction.len() <= 2) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<i64>().ok()? * 10,
        _ => fraction.parse().ok()?,
    };
    let cents = whole.checked_mul(100)?.checked_add(fraction)?;
    (1..=MAX_ALIPAY_CENTS).contains(&cents).then_some(cents)
}

/// A payment confirmed by an Alipay notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlipayPayment {
    /// `out_trade_no`.
    pub order_id: OrderId,
    /// `total_amount` in cents.
    pub amount_cents: Cents,
    /// Alipay's `trade_no`, used as the transaction id when it is a valid one.
    pub trade_no: Option<TransactionId>,
    /// `seller_id` (empty when absent).
    pub seller_id: String,
}

/// What a (verified) Alipay notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `TRADE_SUCCESS` or `TRADE_FINISHED`: record the payment.
    Paid(AlipayPayment),
    /// Any other status (`WAIT_BUYER_PAY`, `TRADE_CLOSED`): nothing to record.
    Other,
}

impl Notice {
    /// Reads a notification's parameters (after its signature was verified).
    pub fn parse(params: &BTreeMap<String, String>) -> Result<Notice, Invalid> {
        let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
        if !matches!(get("trade_status"), "TRADE_SUCCESS" | "TRADE_FINISHED") {
            return Ok(Notice::Other);
        }
        let order_id = OrderId::parse(get("out_trade_no"), "out_trade_no")?;
        let amount_cents = cents_from_yuan(get("total_amount"))
            .and_then(Cents::new)
            .ok_or_else(|| Invalid::new("total_amount", "is not an amount"))?;
        // The payer is the order's owner recorded with its pay link, not `passback_params`.
        let trade_no = TransactionId::parse(get("trade_no"), "trade_no").ok();
        Ok(Notice::Paid(AlipayPayment {
            order_id,
            amount_cents,
            trade_no,
            seller_id: get("seller_id").to_string(),
        }))
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
    fn civil_time_matches_known_dates() {
        assert_eq!(Civil::from_unix(0).format(), "1970-01-01 00:00:00");
        assert_eq!(Civil::from_unix(NOW).format(), "2026-03-15 12:00:00");
        assert_eq!(
            Civil::from_unix(951_782_400).format(),
            "2000-02-29 00:00:00"
        );
        assert_eq!(Civil::from_unix(-1).format(), "1969-12-31 23:59:59");
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
    fn amounts_convert_exactly() {
        assert_eq!(yuan(1234), "12.34");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(yuan(100), "1.00");
        assert_eq!(cents_from_yuan("12.34"), Some(1234));
        assert_eq!(cents_from_yuan("12.3"), Some(1230));
        assert_eq!(cents_from_yuan("12"), Some(1200));
        assert_eq!(cents_from_yuan("0.01"), Some(1));
        for bad in [
            "",
            "0",
            "0.00",
            "-1.00",
            "+1",
            "1.234",
            "1.",
            ".5",
            "1e3",
            "12,34",
            " 1",
            "abc",
            "100000000.01",
        ] {
            assert_eq!(cents_from_yuan(bad), None, "{bad}");
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

    #[test]
    fn refunds_check_ids_amount_and_reason() {
        let parse = |txn: &str, reason: &str| Refund::parse(txn, "o1", 100, reason, 7);
        let refund = parse("t1", "  changed my mind ").unwrap();
        assert_eq!(refund.reason.as_str(), "changed my mind");
        assert_eq!(refund.amount_cents.get(), 100);
        assert!(parse("t1", "").is_ok());
        assert!(parse("t1", &"r".repeat(256)).is_ok());
        assert_eq!(
            parse("t1", &"r".repeat(257)).unwrap_err().to_string(),
            "reason is 257 characters long; the limit is 256"
        );
        assert_eq!(
            parse("t1", "a\u{7}b").unwrap_err().to_string(),
            "reason contains control characters"
        );
        assert!(parse(&"t".repeat(64), "").is_ok());
        assert_eq!(
            parse(&"t".repeat(65), "").unwrap_err().to_string(),
            "transaction_id must be 1..=64 visible ASCII characters"
        );
        assert_eq!(
            Refund::parse("t1", "o1", 0, "", 7).unwrap_err().to_string(),
            "amount_cents must be positive"
        );
        assert_eq!(
            Refund::parse("t1", "o1", 1, "", 0).unwrap_err().to_string(),
            "user_id must be a positive user id"
        );
    }

    #[test]
    fn notices_need_status_order_and_amount() {
        let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let paid = Notice::parse(&params(&[
            ("trade_status", "TRADE_SUCCESS"),
            ("out_trade_no", "o1"),
            ("total_amount", "12.34"),
            ("seller_id", "2088"),
            ("trade_no", "2026031522001"),
        ]))
        .unwrap();
        assert_eq!(
            paid,
            Notice::Paid(AlipayPayment {
                order_id: OrderId::parse("o1", "out_trade_no").unwrap(),
                amount_cents: Cents::new(1234).unwrap(),
                trade_no: Some(TransactionId::parse("2026031522001", "trade_no").unwrap()),
                seller_id: "2088".into(),
            })
        );
        assert_eq!(
            Notice::parse(&params(&[("trade_status", "WAIT_BUYER_PAY")])).unwrap(),
            Notice::Other
        );
        for missing in ["out_trade_no", "total_amount"] {
            let mut p = params(&[
                ("trade_status", "TRADE_FINISHED"),
                ("out_trade_no", "o1"),
                ("total_amount", "12.34"),
            ]);
            p.remove(missing);
            assert!(Notice::parse(&p).is_err(), "{missing}");
        }
    }
}
