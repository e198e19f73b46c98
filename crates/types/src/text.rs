//! Free text from requests: bounded [`Text`] (one line, or several for descriptions) checked by
//! a [`TextRule`], and [`Email`].
//!
//! A service states each of its limits once, as a rule constant (`const NAME: TextRule =
//! TextRule::line(200);`), and parses with it at the edge.

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

/// Longest accepted email address (RFC 5321's path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest local part (before the `@`) of an email address.
pub const MAX_EMAIL_LOCAL_CHARS: usize = 64;

/// How a field's text is checked: trimmed, at most `max_chars` characters, no control
/// characters (multiline text may hold line breaks and tabs), required or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRule {
    max_chars: usize,
    required: bool,
    multiline: bool,
}

impl TextRule {
    /// Required single-line text of at most `max_chars` characters.
    pub const fn line(max_chars: usize) -> Self {
        TextRule {
            max_chars,
            required: true,
            multiline: false,
        }
    }

    /// Required text of at most `max_chars` characters that may hold `\n` and `\t`.
    pub const fn multiline(max_chars: usize) -> Self {
        TextRule {
            max_chars,
            required: true,
            multiline: true,
        }
    }

    /// The same rule, but empty (after trimming) is accepted.
    pub const fn optional(self) -> Self {
        TextRule {
            required: false,
            ..self
        }
    }

    /// The same rule, but empty (after trimming) is refused.
    pub const fn required(self) -> Self {
        TextRule {
            required: true,
            ..self
        }
    }

    /// The limit, in characters.
    pub const fn max_chars(self) -> usize {
        self.max_chars
    }

    /// `value` trimmed, if it keeps the rule; the message names `field`.
    pub fn parse(self, value: &str, field: &str) -> Result<Text, Invalid> {
        let value = value.trim();
        if self.required && value.is_empty() {
            return Err(Invalid::new(field, "is required"));
        }
        let chars = value.chars().count();
        if chars > self.max_chars {
            return Err(Invalid::new(
                field,
                format!(
                    "is {chars} characters long; the limit is {}",
                    self.max_chars
                ),
            ));
        }
        let allowed = |c: char| self.multiline && (c == '\n' || c == '\t');
        if value.chars().any(|c| c.is_control() && !allowed(c)) {
            return Err(Invalid::new(field, "contains control characters"));
        }
        Ok(Text(value.to_string()))
    }
}

/// Text that kept its [`TextRule`]: trimmed, bounded, free of control characters. Reads as a
/// `&str`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Text(String);

crate::macros::str_newtype!(Text);

/// An email address: one `@`, a non-empty local part of at most 64 characters, a dotted domain
/// (no empty labels at its ends or in a row), no spaces or control characters, at most 254
/// characters; kept trimmed and lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// The field every message names.
    pub const FIELD: &'static str = "email";

    /// An address from a request.
    pub fn parse(value: &str) -> Result<Self, Invalid> {
        let value = value.trim();
        if value.is_empty() {
            return Err(Invalid::new(Self::FIELD, "is required"));
        }
        let valid = value.len() <= MAX_EMAIL_CHARS
            && !value.chars().any(|c| c.is_whitespace() || c.is_control())
            && match value.split_once('@') {
                Some((local, domain)) => {
                    !local.is_empty()
                        && local.len() <= MAX_EMAIL_LOCAL_CHARS
                        && !domain.contains('@')
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                        && !domain.contains("..")
                }
                None => false,
            };
        if valid {
            Ok(Email(value.to_lowercase()))
        } else {
            Err(Invalid::new(Self::FIELD, "is not a valid address"))
        }
    }
}

crate::macros::str_newtype!(Email);

impl TryFrom<String> for Email {
    type Error = Invalid;

    fn try_from(value: String) -> Result<Self, Invalid> {
        Email::parse(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: TextRule = TextRule::line(5);

    #[test]
    fn lines_are_trimmed_required_and_bounded() {
        assert_eq!(NAME.parse("  hi ", "name").unwrap().as_str(), "hi");
        assert_eq!(NAME.parse("abcde", "name").unwrap().as_str(), "abcde");
        // Characters, not bytes: five of them in ten bytes fit.
        assert_eq!(NAME.parse("ééééé", "name").unwrap().chars().count(), 5);
        assert_eq!(
            NAME.parse("abcdef", "name").unwrap_err().to_string(),
            "name is 6 characters long; the limit is 5"
        );
        assert_eq!(
            NAME.parse(" ", "name").unwrap_err().to_string(),
            "name is required"
        );
        assert_eq!(
            NAME.parse("a\nb", "name").unwrap_err().to_string(),
            "name contains control characters"
        );
        assert!(NAME.parse("a\tb", "name").is_err());
        assert_eq!(NAME.max_chars(), 5);
    }

    #[test]
    fn optional_text_may_be_empty() {
        let rule = NAME.optional();
        assert_eq!(rule.parse("", "state").unwrap().as_str(), "");
        assert_eq!(rule.parse("   ", "state").unwrap().as_str(), "");
        assert!(rule.parse("abcdef", "state").is_err());
        assert!(rule.required().parse("", "state").is_err());
    }

    #[test]
    fn multiline_text_allows_line_breaks_and_tabs_only() {
        let rule = TextRule::multiline(5);
        assert_eq!(rule.parse("a\nb\tc", "d").unwrap().as_str(), "a\nb\tc");
        assert_eq!(
            rule.parse("a\u{0}b", "description")
                .unwrap_err()
                .to_string(),
            "description contains control characters"
        );
        assert!(rule.parse("a\rb", "d").is_err());
        assert!(rule.parse("abcdef", "d").is_err());
        assert!(rule.parse("", "d").is_err());
        assert!(rule.optional().parse("", "d").is_ok());
    }

    #[test]
    fn emails_are_lower_cased_and_checked() {
        assert_eq!(
            Email::parse(" Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "a",
            "a@b",
            "@b.com",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            "a@b.",
            "a@b..com",
            "a\u{0}@b.com",
        ] {
            assert_eq!(
                Email::parse(bad).unwrap_err().to_string(),
                "email is not a valid address",
                "{bad}"
            );
        }
        assert_eq!(
            Email::parse("  ").unwrap_err().to_string(),
            "email is required"
        );
    }

    #[test]
    fn email_limits_hold_on_both_sides() {
        let local = "l".repeat(MAX_EMAIL_LOCAL_CHARS);
        assert!(Email::parse(&format!("{local}@b.co")).is_ok());
        assert!(Email::parse(&format!("{local}l@b.co")).is_err());
        // 254 characters in all: the local part, `@`, and a domain filling the rest.
        let domain = format!(
            "{}.co",
            "d".repeat(MAX_EMAIL_CHARS - "a@".len() - ".co".len())
        );
        let longest = format!("a@{domain}");
        assert_eq!(longest.len(), MAX_EMAIL_CHARS);
        assert!(Email::parse(&longest).is_ok());
        assert!(Email::parse(&format!("ab@{domain}")).is_err());
    }

    #[test]
    fn emails_deserialize_checked() {
        let e: Email = serde_json::from_str("\"A@B.co\"").unwrap();
        assert_eq!(e.as_str(), "a@b.co");
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
    }
}
