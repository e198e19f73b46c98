//! Input rules shared by several services. Requests are parsed at the edge into checked values;
//! a broken rule is an [`Invalid`] whose message names the field, sent as `INVALID_ARGUMENT`.

use tonic::Status;

/// A rule a request broke; becomes `INVALID_ARGUMENT` with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// An [`Invalid`] with `msg`.
pub fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

impl From<Invalid> for Status {
    fn from(e: Invalid) -> Self {
        Status::invalid_argument(e.0)
    }
}

/// A stored id (`BIGINT`) from an API id: positive and within range. `what` names the kind of
/// id in the message (`user`, `product`).
pub fn positive_id(id: u64, field: &str, what: &str) -> Result<i64, Invalid> {
    if id == 0 {
        return Err(invalid(format!("{field} must be a positive {what} id")));
    }
    crate::store::id_from_api(id).ok_or_else(|| invalid(format!("{field} {id} is out of range")))
}

/// Free text from a request: trimmed, required or not, at most `max` characters, no control
/// characters. The message names `field`.
pub fn text(value: &str, field: &str, max: usize, required: bool) -> Result<String, Invalid> {
    checked_text(value, field, max, required, |_| false)
}

/// Like [`text`], but line breaks and tabs are allowed (descriptions).
pub fn multiline_text(
    value: &str,
    field: &str,
    max: usize,
    required: bool,
) -> Result<String, Invalid> {
    checked_text(value, field, max, required, |c| c == '\n' || c == '\t')
}

fn checked_text(
    value: &str,
    field: &str,
    max: usize,
    required: bool,
    allowed_control: impl Fn(char) -> bool,
) -> Result<String, Invalid> {
    let value = value.trim();
    if required && value.is_empty() {
        return Err(invalid(format!("{field} is required")));
    }
    let chars = value.chars().count();
    if chars > max {
        return Err(invalid(format!(
            "{field} is {chars} characters long; the limit is {max}"
        )));
    }
    if value.chars().any(|c| c.is_control() && !allowed_control(c)) {
        return Err(invalid(format!("{field} contains control characters")));
    }
    Ok(value.to_string())
}

/// Longest accepted email address.
pub const MAX_EMAIL_CHARS: usize = 254;

/// An email address: one `@`, a non-empty local part (≤ 64), a dotted domain, no spaces or
/// control characters, at most 254 characters; returned trimmed and lower-cased.
pub fn email(value: &str) -> Result<String, Invalid> {
    let value = value.trim();
    if value.is_empty() {
        return Err(invalid("email is required"));
    }
    let valid = value.len() <= MAX_EMAIL_CHARS
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
        && match value.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains("..")
            }
            None => false,
        };
    if valid {
        Ok(value.to_lowercase())
    } else {
        Err(invalid("email is not a valid address"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" Alice@Example.COM ").unwrap(), "alice@example.com");
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            "a@b..com",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn texts() {
        assert_eq!(text("  hi ", "name", 5, true).unwrap(), "hi");
        assert!(text(" ", "name", 5, true).is_err());
        assert_eq!(text("", "name", 5, false).unwrap(), "");
        assert!(text("toolong", "name", 5, true).is_err());
        assert!(text("a\nb", "name", 5, true).is_err());
        assert_eq!(
            multiline_text("a\nb", "description", 5, true).unwrap(),
            "a\nb"
        );
        assert!(multiline_text("a\u{0}b", "description", 5, true).is_err());
    }

    #[test]
    fn ids() {
        assert_eq!(positive_id(5, "id", "product"), Ok(5));
        assert!(positive_id(0, "id", "product").is_err());
        assert!(positive_id(u64::MAX, "id", "product").is_err());
    }
}
