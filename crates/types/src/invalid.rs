//! [`Invalid`]: the one error for a request that breaks a rule. Every service maps it to
//! `INVALID_ARGUMENT` with its message, which always starts with the field it is about.

use std::fmt;

/// A request field broke a rule. The message is `"{field} {reason}"`, e.g.
/// `user_id must be a positive user id`, so a client always learns which field to fix; the
/// value itself is never echoed unless the rule says so (card numbers must not be).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    field: String,
    reason: String,
}

impl Invalid {
    /// `field` broke a rule; `reason` completes the sentence (`"is required"`).
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The field, as the request names it (`address.city`, `order_items[2].item.quantity`).
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with it.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The same error for a field nested in `parent`: `city` within `address` is
    /// `address.city`. Lets a rule written for a part be reused inside a larger message.
    #[must_use]
    pub fn within(self, parent: &str) -> Self {
        Invalid {
            field: format!("{parent}.{}", self.field),
            reason: self.reason,
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_starts_with_the_field() {
        let e = Invalid::new("user_id", "must be a positive user id");
        assert_eq!(e.to_string(), "user_id must be a positive user id");
        assert_eq!(
            (e.field(), e.reason()),
            ("user_id", "must be a positive user id")
        );
    }

    #[test]
    fn nested_fields_are_dotted() {
        let e = Invalid::new("city", "is required").within("address");
        assert_eq!(e.field(), "address.city");
        assert_eq!(e.to_string(), "address.city is required");
        let e = e.within("order");
        assert_eq!(e.field(), "order.address.city");
    }
}
