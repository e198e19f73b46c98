//! Payment's vocabulary, shared by every method: how a payment was made, what is kept of a card,
//! amounts and their decimal form, a recorded [`Payment`] and a valid [`Refund`]. Requests are
//! parsed into these types at the edge (`api.rs`), so the store never sees unchecked input. What
//! only one method needs lives in its room: card checks in `card.rs`, Alipay's orders and
//! notifications in `alipay/`.

pub use mall_types::PaymentMethod;
use mall_types::{Cents, Invalid, OrderId, Text, TextRule, TransactionId, UserId};

/// Highest card charge: far above any order total, far from `i64` overflow.
pub const MAX_CHARGE_CENTS: i64 = 1_000_000_000_000_000;
/// Highest Alipay amount: Alipay's own limit, 100 000 000.00.
pub const MAX_ALIPAY_CENTS: i64 = 10_000_000_000;
/// A refund reason: one line of up to 256 characters, may be empty.
pub const REASON_TEXT: TextRule = TextRule::line(256).optional();

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
    pub(crate) fn of(digits: &str) -> CardBrand {
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
pub(crate) fn amount(cents: i64, max: i64) -> Result<Cents, Invalid> {
    Cents::parse_positive(cents, max, "amount_cents")
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
    pub method: PaymentMethod,
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
    pub fn is_repeat(&self, user: UserId, amount_cents: Cents, method: PaymentMethod) -> bool {
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
    pub fn check_against(&self, payment: &Payment) -> Result<(), RefundRefusal> {
        if payment.order_id != self.order_id.as_str() || payment.user_id != self.user_id.db() {
            return Err(RefundRefusal::NotThisPayment);
        }
        if self.amount_cents.get() > payment.amount_cents - payment.refunded_cents {
            return Err(RefundRefusal::ExceedsRemaining);
        }
        Ok(())
    }
}

/// Why a refund does not fit its payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundRefusal {
    /// Another order or user than the payment's.
    NotThisPayment,
    /// More than what remains of the payment.
    ExceedsRemaining,
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

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-03-15 12:00:00 UTC.
    const NOW: i64 = 1_773_576_000;

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
}
