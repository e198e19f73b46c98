//! Ids, parsed once at the edge, each with its one rule.
//!
//! Numeric ids ([`UserId`], [`ProductId`]) are `uint64` in the API and positive `BIGINT`
//! (`i64`) in the database; the conversion both ways lives here and nowhere else: a parsed id is
//! positive and fits a `BIGINT`, so [`UserId::get`] and [`UserId::db`] cannot fail.
//!
//! String ids ([`OrderId`], [`TransactionId`], [`ReservationId`]) are 1 to
//! `MAX_CHARS` visible ASCII characters (no spaces, no control characters, no non-ASCII), so
//! they are safe in logs, URLs and SQL parameters alike. Ours are 36-character UUIDs; the
//! limits leave room for ids chosen by others (Alipay's `trade_no`, a caller's reservation id).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

/// A stored `BIGINT` id as the API's `uint64`. Stored ids are positive by construction (they
/// were written from a parsed id or by auto-increment), so a negative one, which only a broken
/// row could hold, reads as 0, an id no request may send back.
pub fn stored_to_api(id: i64) -> u64 {
    u64::try_from(id).unwrap_or_default()
}

macro_rules! numeric_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $field:literal) => {
        $(#[$doc])*
        ///
        /// Parsed with [`Self::parse`]; serialized as its `uint64`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(i64);

        impl $name {
            /// The field name used when none is given (deserializing).
            pub const FIELD: &'static str = $field;

            /// An id from a request's `field`: positive, and small enough to be stored.
            pub fn parse(id: u64, field: &str) -> Result<Self, Invalid> {
                if id == 0 {
                    return Err(Invalid::new(
                        field,
                        concat!("must be a positive ", $what, " id"),
                    ));
                }
                match i64::try_from(id) {
                    Ok(stored) => Ok($name(stored)),
                    Err(_) => Err(Invalid::new(field, format!("{id} is out of range"))),
                }
            }

            /// An id read from the database; `None` unless positive.
            pub fn from_db(id: i64) -> Option<Self> {
                (id > 0).then_some($name(id))
            }

            /// The API's `uint64`.
            pub const fn get(self) -> u64 {
                // Positive by construction, so this is the same number.
                self.0.unsigned_abs()
            }

            /// The stored `BIGINT`.
            pub const fn db(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl TryFrom<u64> for $name {
            type Error = Invalid;

            fn try_from(id: u64) -> Result<Self, Invalid> {
                $name::parse(id, $name::FIELD)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> u64 {
                id.get()
            }
        }
    };
}

numeric_id!(
    /// An account's id, issued by auth.
    UserId,
    "user",
    "user_id"
);

numeric_id!(
    /// A catalog product's id.
    ProductId,
    "product",
    "product_id"
);

/// `value` if it is 1..=`max` visible ASCII characters; the message names `field`. The rule of
/// every string id and of idempotency keys.
pub(crate) fn visible_ascii(value: &str, field: &str, max: usize) -> Result<String, Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(field, "is required"));
    }
    if value.len() > max || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid::new(
            field,
            format!("must be 1..={max} visible ASCII characters"),
        ));
    }
    Ok(value.to_string())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $max:expr, $field:literal) => {
        $(#[$doc])*
        ///
        /// Parsed with [`Self::parse`]; reads as a `&str`; serialized as its string.
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest accepted id, in characters (all ASCII, so also in bytes).
            pub const MAX_CHARS: usize = $max;
            /// The field name used when none is given (deserializing).
            pub const FIELD: &'static str = $field;

            /// An id from a request's `field`: 1..=[`Self::MAX_CHARS`] visible ASCII
            /// characters. Whether it exists is the store's business.
            pub fn parse(value: &str, field: &str) -> Result<Self, Invalid> {
                visible_ascii(value, field, Self::MAX_CHARS).map($name)
            }

        }

        crate::macros::str_newtype!($name);

        impl TryFrom<String> for $name {
            type Error = Invalid;

            fn try_from(value: String) -> Result<Self, Invalid> {
                $name::parse(&value, $name::FIELD)
            }
        }

    };
}

string_id!(
    /// An order's id (order issues UUIDv7s; 64 leaves room without inviting abuse).
    OrderId,
    64,
    "order_id"
);

string_id!(
    /// A payment's transaction id. Payment is the only issuer: its own ids are UUIDv7s (36
    /// characters) and it adopts Alipay's `trade_no` (at most 64 by Alipay's rules) only when it
    /// passes this rule, so no valid transaction id is longer than 64.
    TransactionId,
    64,
    "transaction_id"
);

string_id!(
    /// The caller's id for a stock reservation (checkout uses the order id).
    ReservationId,
    128,
    "reservation_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_are_positive_and_storable() {
        assert_eq!(UserId::parse(1, "user_id").map(UserId::get), Ok(1));
        let max = u64::try_from(i64::MAX).unwrap();
        let top = ProductId::parse(max, "id").unwrap();
        assert_eq!((top.get(), top.db()), (max, i64::MAX));
        assert_eq!(
            UserId::parse(0, "user_id").unwrap_err().to_string(),
            "user_id must be a positive user id"
        );
        assert_eq!(
            ProductId::parse(0, "items.product_id")
                .unwrap_err()
                .to_string(),
            "items.product_id must be a positive product id"
        );
        assert_eq!(
            ProductId::parse(max + 1, "id").unwrap_err().to_string(),
            format!("id {} is out of range", max + 1)
        );
        assert!(UserId::parse(u64::MAX, "user_id").is_err());
    }

    #[test]
    fn stored_ids_convert_back() {
        assert_eq!(UserId::from_db(7).map(UserId::get), Some(7));
        assert_eq!(UserId::from_db(0), None);
        assert_eq!(UserId::from_db(-1), None);
        assert_eq!(stored_to_api(42), 42);
        assert_eq!(stored_to_api(-1), 0);
        assert_eq!(
            ProductId::from_db(i64::MAX).map(ProductId::db),
            Some(i64::MAX)
        );
    }

    #[test]
    fn numeric_ids_serialize_as_numbers_and_deserialize_checked() {
        let id = UserId::parse(7, "user_id").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "7");
        assert_eq!(serde_json::from_str::<UserId>("7").unwrap(), id);
        assert!(serde_json::from_str::<UserId>("0").is_err());
        assert_eq!(id.to_string(), "7");
    }

    #[test]
    fn string_ids_have_one_limit_each() {
        for (max, parse) in [
            (
                64,
                (|s| OrderId::parse(s, "f").map(|_| ())) as fn(&str) -> Result<(), Invalid>,
            ),
            (64, |s| TransactionId::parse(s, "f").map(|_| ())),
            (128, |s| ReservationId::parse(s, "f").map(|_| ())),
        ] {
            assert!(parse("a").is_ok());
            assert!(parse(&"x".repeat(max)).is_ok(), "{max}");
            let err = parse(&"x".repeat(max + 1)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("f must be 1..={max} visible ASCII characters")
            );
            assert_eq!(parse("").unwrap_err().to_string(), "f is required");
            for bad in ["has space", "tab\t", "caf\u{e9}", "nul\u{0}"] {
                assert!(parse(bad).is_err(), "{bad:?}");
            }
        }
        assert_eq!(OrderId::MAX_CHARS, 64);
        assert_eq!(TransactionId::MAX_CHARS, 64);
        assert_eq!(ReservationId::MAX_CHARS, 128);
    }

    #[test]
    fn string_ids_read_as_str_and_deserialize_checked() {
        let id = OrderId::parse("0190-abc", "order_id").unwrap();
        assert_eq!((id.as_str(), &*id), ("0190-abc", "0190-abc"));
        assert_eq!(id.to_string(), "0190-abc");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"0190-abc\"");
        assert_eq!(serde_json::from_str::<OrderId>("\"0190-abc\"").unwrap(), id);
        let err = serde_json::from_str::<OrderId>("\"a b\"").unwrap_err();
        assert!(err.to_string().contains("order_id"), "{err}");
        assert_eq!(String::from(id), "0190-abc");
    }
}
