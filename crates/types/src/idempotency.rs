//! [`IdempotencyKey`]: a client's name for one logical request, so a retry finds the first
//! attempt's outcome instead of doing the work twice.

use serde::{Deserialize, Serialize};

use crate::ids::visible_ascii;
use crate::invalid::Invalid;

/// A client's retry key: 1..=[`IdempotencyKey::MAX_CHARS`] visible ASCII characters, compared
/// exactly. Reads as a `&str`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Longest accepted key (room for a UUID with a prefix, or a client's own scheme).
    pub const MAX_CHARS: usize = 128;
    /// The field every message names.
    pub const FIELD: &'static str = "idempotency_key";

    /// A required key.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        visible_ascii(value, Self::FIELD, Self::MAX_CHARS).map(IdempotencyKey)
    }

    /// A key that may be left out: empty is `None` (the request is not keyed).
    pub fn optional(value: &str) -> Result<Option<Self>, Invalid> {
        if value.is_empty() {
            Ok(None)
        } else {
            IdempotencyKey::parse(value).map(Some)
        }
    }
}

crate::macros::str_newtype!(IdempotencyKey);

impl TryFrom<String> for IdempotencyKey {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Invalid> {
        IdempotencyKey::parse(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_1_to_128_visible_ascii_characters() {
        assert_eq!(IdempotencyKey::parse("k").unwrap().as_str(), "k");
        let longest = "k".repeat(IdempotencyKey::MAX_CHARS);
        assert_eq!(IdempotencyKey::parse(&longest).unwrap().len(), 128);
        assert_eq!(
            IdempotencyKey::parse(&format!("{longest}k"))
                .unwrap_err()
                .to_string(),
            "idempotency_key must be 1..=128 visible ASCII characters"
        );
        assert_eq!(
            IdempotencyKey::parse("").unwrap_err().to_string(),
            "idempotency_key is required"
        );
        for bad in ["a b", " k", "k\n", "schlüssel"] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn optional_keys_may_be_empty() {
        assert_eq!(IdempotencyKey::optional("").unwrap(), None);
        assert_eq!(
            IdempotencyKey::optional("k-1").unwrap().map(String::from),
            Some("k-1".to_string())
        );
        assert!(IdempotencyKey::optional("a b").is_err());
        assert_eq!(format!("k:{}", IdempotencyKey::parse("x").unwrap()), "k:x");
    }
}
