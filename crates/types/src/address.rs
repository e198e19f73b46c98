//! The shipping [`Address`]: one type for checkout (which stores it with the saga) and order
//! (which stores it with the order).

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;
use crate::text::TextRule;

/// Longest street, city, state or country, in characters.
pub const MAX_ADDRESS_CHARS: usize = 200;
/// Longest zip or postal code, in characters.
pub const MAX_ZIP_CHARS: usize = 32;

const PART: TextRule = TextRule::line(MAX_ADDRESS_CHARS);
const ZIP: TextRule = TextRule::line(MAX_ZIP_CHARS);

/// A shipping address whose parts kept their rules: every part trimmed, single-line and
/// bounded; all but `state` present.
///
/// The fields are public to read; the type is `non_exhaustive`, so outside this crate it can
/// only be made by [`Address::parse`] (or read back with [`Address::from_stored`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Address {
    /// Street and number.
    pub street_address: String,
    /// City.
    pub city: String,
    /// State or province; may be empty.
    pub state: String,
    /// Country.
    pub country: String,
    /// Zip or postal code.
    pub zip_code: String,
}

impl Address {
    /// Checks a request's `address` (`common.v1.Address`); messages name
    /// `address.<part>`.
    pub fn parse(
        street_address: &str,
        city: &str,
        state: &str,
        country: &str,
        zip_code: &str,
    ) -> Result<Self, Invalid> {
        Ok(Address {
            street_address: PART
                .parse(street_address, "address.street_address")?
                .into_string(),
            city: PART.parse(city, "address.city")?.into_string(),
            state: PART.optional().parse(state, "address.state")?.into_string(),
            country: PART.parse(country, "address.country")?.into_string(),
            zip_code: ZIP.parse(zip_code, "address.zip_code")?.into_string(),
        })
    }

    /// An address read back from storage, which only ever holds parsed addresses; not for
    /// request input.
    pub fn from_stored(
        street_address: String,
        city: String,
        state: String,
        country: String,
        zip_code: String,
    ) -> Self {
        Address {
            street_address,
            city,
            state,
            country,
            zip_code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(street: &str, city: &str, state: &str, country: &str, zip: &str) -> String {
        match Address::parse(street, city, state, country, zip) {
            Ok(_) => "ok".into(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_part_but_state_is_required() {
        assert_eq!(parse("s", "c", "", "US", "1"), "ok");
        assert_eq!(
            parse("", "c", "", "US", "1"),
            "address.street_address is required"
        );
        assert_eq!(parse("s", "", "", "US", "1"), "address.city is required");
        assert_eq!(parse("s", "c", "", " ", "1"), "address.country is required");
        assert_eq!(
            parse("s", "c", "", "US", ""),
            "address.zip_code is required"
        );
    }

    #[test]
    fn parts_are_bounded_on_both_sides() {
        let longest = "s".repeat(MAX_ADDRESS_CHARS);
        let too_long = "s".repeat(MAX_ADDRESS_CHARS + 1);
        assert_eq!(parse(&longest, &longest, &longest, &longest, "1"), "ok");
        assert_eq!(
            parse(&too_long, "c", "", "US", "1"),
            "address.street_address is 201 characters long; the limit is 200"
        );
        assert!(parse("s", &too_long, "", "US", "1").starts_with("address.city"));
        assert!(parse("s", "c", &too_long, "US", "1").starts_with("address.state"));
        assert!(parse("s", "c", "", &too_long, "1").starts_with("address.country"));
        assert_eq!(parse("s", "c", "", "US", &"9".repeat(MAX_ZIP_CHARS)), "ok");
        assert!(
            parse("s", "c", "", "US", &"9".repeat(MAX_ZIP_CHARS + 1))
                .starts_with("address.zip_code")
        );
        assert_eq!(
            parse("s\u{0}", "c", "", "US", "1"),
            "address.street_address contains control characters"
        );
        assert!(parse("s", "c", "a\nb", "US", "1").starts_with("address.state"));
    }

    #[test]
    fn parts_are_trimmed_and_serialize_by_name() {
        let a = Address::parse(" 1 Main St ", "Springfield", "", "US", "62701").unwrap();
        assert_eq!(a.street_address, "1 Main St");
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"street_address":"1 Main St","city":"Springfield","state":"","country":"US","zip_code":"62701"}"#
        );
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), a);
        let back = Address::from_stored(
            a.street_address.clone(),
            a.city.clone(),
            a.state.clone(),
            a.country.clone(),
            a.zip_code.clone(),
        );
        assert_eq!(back, a);
    }
}
