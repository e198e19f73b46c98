//! Catalog rules: what a valid product, patch, search or reservation is. Requests are parsed
//! into these types at the edge (`service.rs`), so the store never sees unchecked input.

use std::collections::BTreeMap;

use mall_common::validate::{Invalid, invalid, multiline_text, positive_id, text};
use serde::{Deserialize, Serialize};

/// Longest product name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 5_000;
/// Longest picture URL, in characters.
pub const MAX_PICTURE_CHARS: usize = 1_024;
/// Longest category name, in characters.
pub const MAX_CATEGORY_CHARS: usize = 64;
/// Most categories on one product.
pub const MAX_CATEGORIES: usize = 20;
/// Highest price: 100 million in the store currency, so order totals stay far from overflow.
pub const MAX_PRICE_CENTS: i64 = 10_000_000_000;
/// Most ids in one `BatchGetProducts`.
pub const MAX_BATCH_IDS: usize = 100;
/// Longest search query, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Longest reservation id.
pub const MAX_RESERVATION_ID_CHARS: usize = 128;
/// Most lines in one reservation.
pub const MAX_RESERVATION_LINES: usize = 100;

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No such (live) product.
    #[error("product {0} not found")]
    ProductNotFound(u64),
    /// A reservation line asks for more than is in stock.
    #[error("insufficient stock for product {0}")]
    InsufficientStock(u64),
    /// The reservation id was used for different items.
    #[error("reservation {0} already exists with different items")]
    ReservationConflict(String),
    /// The reservation was released; its id cannot reserve again.
    #[error("reservation {0} was released")]
    ReservationReleased(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The machine-readable reasons the catalog's refusals carry (a `google.rpc.ErrorInfo` detail,
/// see `mall_common::error`): callers such as checkout decide on these, never on the message.
pub mod reason {
    /// The request broke a rule (the message names the field).
    pub const INVALID_REQUEST: &str = "INVALID_REQUEST";
    /// No such (live) product.
    pub const PRODUCT_NOT_FOUND: &str = "PRODUCT_NOT_FOUND";
    /// A reservation line asks for more than is in stock; nothing was reserved.
    pub const INSUFFICIENT_STOCK: &str = "INSUFFICIENT_STOCK";
    /// The reservation id was used for different items.
    pub const RESERVATION_CONFLICT: &str = "RESERVATION_CONFLICT";
    /// The reservation was released; its id cannot reserve again.
    pub const RESERVATION_RELEASED: &str = "RESERVATION_RELEASED";
}

impl mall_common::error::ServiceError for Error {
    fn code(&self) -> mall_common::error::ServiceErrorCode {
        use mall_common::error::ServiceErrorCode as Code;
        match self {
            Error::Invalid(_) => Code::InvalidArgument,
            Error::ProductNotFound(_) => Code::NotFound,
            Error::InsufficientStock(_) | Error::ReservationReleased(_) => Code::FailedPrecondition,
            Error::ReservationConflict(_) => Code::AlreadyExists,
            Error::Database(e) if mall_common::store::is_unavailable(e) => Code::Unavailable,
            Error::Database(_) => Code::Internal,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Error::Invalid(_) => Some(reason::INVALID_REQUEST),
            Error::ProductNotFound(_) => Some(reason::PRODUCT_NOT_FOUND),
            Error::InsufficientStock(_) => Some(reason::INSUFFICIENT_STOCK),
            Error::ReservationConflict(_) => Some(reason::RESERVATION_CONFLICT),
            Error::ReservationReleased(_) => Some(reason::RESERVATION_RELEASED),
            Error::Database(_) => None,
        }
    }

    fn unavailable_dependency(&self) -> &str {
        "database"
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        mall_common::error::to_status(&e)
    }
}

#[cfg(test)]
mod error_tests {
    use mall_common::error::reason_of;
    use tonic::{Code, Status};

    use super::{Error, reason};

    #[test]
    fn refusals_keep_their_code_and_message_and_carry_a_reason() {
        let too_many = vec!["tag".to_string(); super::MAX_CATEGORIES + 1];
        let invalid = super::categories(&too_many).expect_err("too many categories");
        let invalid_message = invalid.to_string();
        let cases = [
            (
                Error::Invalid(invalid),
                Code::InvalidArgument,
                invalid_message.as_str(),
                reason::INVALID_REQUEST,
            ),
            (
                Error::ProductNotFound(7),
                Code::NotFound,
                "product 7 not found",
                reason::PRODUCT_NOT_FOUND,
            ),
            (
                Error::InsufficientStock(7),
                Code::FailedPrecondition,
                "insufficient stock for product 7",
                reason::INSUFFICIENT_STOCK,
            ),
            (
                Error::ReservationConflict("r1".into()),
                Code::AlreadyExists,
                "reservation r1 already exists with different items",
                reason::RESERVATION_CONFLICT,
            ),
            (
                Error::ReservationReleased("r1".into()),
                Code::FailedPrecondition,
                "reservation r1 was released",
                reason::RESERVATION_RELEASED,
            ),
        ];
        for (error, code, message, why) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
            assert_eq!(reason_of(&status).as_deref(), Some(why), "{message}");
        }
    }

    #[test]
    fn database_failures_carry_no_reason_and_hide_the_cause() {
        let status = Status::from(Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().starts_with("database unavailable"),
            "{}",
            status.message()
        );
        assert_eq!(reason_of(&status), None);
        let status = Status::from(Error::Database(sqlx::Error::Protocol("SELECT x".into())));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"), "{}", status.message());
        assert_eq!(reason_of(&status), None);
    }
}

/// A product as stored and cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Database id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Longer text.
    pub description: String,
    /// Picture URL.
    pub picture: String,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Units available.
    pub stock: i64,
    /// Category names, sorted.
    pub categories: Vec<String>,
}

/// A product id from a request: positive and storable.
pub fn product_id(id: u64, field: &str) -> Result<i64, Invalid> {
    positive_id(id, field, "product")
}

fn price(cents: i64) -> Result<i64, Invalid> {
    if cents <= 0 {
        return Err(invalid("price_cents must be positive"));
    }
    if cents > MAX_PRICE_CENTS {
        return Err(invalid(format!(
            "price_cents must be at most {MAX_PRICE_CENTS}"
        )));
    }
    Ok(cents)
}

/// Category names: trimmed, non-empty, deduplicated case-insensitively, sorted.
pub fn categories(names: &[String]) -> Result<Vec<String>, Invalid> {
    if names.len() > MAX_CATEGORIES {
        return Err(invalid(format!(
            "at most {MAX_CATEGORIES} categories per product"
        )));
    }
    let mut by_key = BTreeMap::new();
    for name in names {
        let name = text(name, "category", MAX_CATEGORY_CHARS, true)?;
        by_key.entry(name.to_lowercase()).or_insert(name);
    }
    Ok(by_key.into_values().collect())
}

/// A valid `CreateProduct`.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Name, 1..=200 characters.
    pub name: String,
    /// Description, up to 5000 characters.
    pub description: String,
    /// Picture URL.
    pub picture: String,
    /// Positive price.
    pub price_cents: i64,
    /// Initial stock.
    pub stock: i64,
    /// Category names (created when unknown).
    pub categories: Vec<String>,
}

impl NewProduct {
    /// Validates the request fields.
    pub fn parse(
        name: &str,
        description: &str,
        picture: &str,
        price_cents: i64,
        stock: u32,
        category_names: &[String],
    ) -> Result<Self, Invalid> {
        Ok(NewProduct {
            name: text(name, "name", MAX_NAME_CHARS, true)?,
            description: multiline_text(description, "description", MAX_DESCRIPTION_CHARS, false)?,
            picture: text(picture, "picture", MAX_PICTURE_CHARS, false)?,
            price_cents: price(price_cents)?,
            stock: i64::from(stock),
            categories: categories(category_names)?,
        })
    }
}

/// A valid `UpdateProduct`: `None` leaves a field unchanged.
#[derive(Debug, Clone)]
pub struct ProductPatch {
    /// The product to change.
    pub id: i64,
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New picture URL.
    pub picture: Option<String>,
    /// New price.
    pub price_cents: Option<i64>,
    /// New category set (replaces the old one).
    pub categories: Option<Vec<String>>,
}

impl ProductPatch {
    /// Validates the request fields; empty strings, 0 and an empty list mean "unchanged".
    pub fn parse(
        id: u64,
        name: &str,
        description: &str,
        picture: &str,
        price_cents: i64,
        category_names: &[String],
    ) -> Result<Self, Invalid> {
        let optional = |v: &str, field, max| -> Result<Option<String>, Invalid> {
            if v.is_empty() {
                Ok(None)
            } else {
                text(v, field, max, true).map(Some)
            }
        };
        Ok(ProductPatch {
            id: product_id(id, "id")?,
            name: optional(name, "name", MAX_NAME_CHARS)?,
            description: (!description.is_empty())
                .then(|| multiline_text(description, "description", MAX_DESCRIPTION_CHARS, true))
                .transpose()?,
            picture: optional(picture, "picture", MAX_PICTURE_CHARS)?,
            price_cents: match price_cents {
                0 => None,
                p => Some(price(p)?),
            },
            categories: if category_names.is_empty() {
                None
            } else {
                Some(categories(category_names)?)
            },
        })
    }
}

/// A search: the lowercase text and its `LIKE` pattern with `%`, `_` and `!` escaped by `!`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// `%text%` with wildcards escaped, for `LIKE ? ESCAPE '!'`.
    pub pattern: String,
}

impl Search {
    /// Validates the query; `%` and `_` match themselves.
    pub fn parse(query: &str) -> Result<Self, Invalid> {
        let query = text(query, "query", MAX_QUERY_CHARS, true)?;
        let mut pattern = String::with_capacity(query.len() + 2);
        pattern.push('%');
        for c in query.to_lowercase().chars() {
            if matches!(c, '%' | '_' | '!') {
                pattern.push('!');
            }
            pattern.push(c);
        }
        pattern.push('%');
        Ok(Search { pattern })
    }
}

/// Ids for `BatchGetProducts`: 1..=100 positive ids, duplicates removed, order kept.
pub fn batch_ids(ids: &[u64]) -> Result<Vec<i64>, Invalid> {
    if ids.len() > MAX_BATCH_IDS {
        return Err(invalid(format!("at most {MAX_BATCH_IDS} ids per batch")));
    }
    let mut out: Vec<i64> = Vec::with_capacity(ids.len());
    for id in ids {
        let id = product_id(*id, "ids")?;
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// A valid reservation: an id and lines merged per product, sorted by product id (the order
/// rows are locked in, so concurrent reservations cannot deadlock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The caller's id for this reservation (checkout uses the order id).
    pub id: String,
    /// `(product id, quantity)`, product ids ascending and unique.
    pub lines: Vec<(i64, i64)>,
}

/// A reservation id: 1..=128 visible ASCII characters.
pub fn reservation_id(id: &str) -> Result<String, Invalid> {
    if id.is_empty() {
        return Err(invalid("reservation_id is required"));
    }
    if id.len() > MAX_RESERVATION_ID_CHARS || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(format!(
            "reservation_id must be 1..={MAX_RESERVATION_ID_CHARS} visible ASCII characters"
        )));
    }
    Ok(id.to_string())
}

impl Reservation {
    /// Validates the request; quantities of repeated products are added up.
    pub fn parse(id: &str, items: &[(u64, i32)]) -> Result<Self, Invalid> {
        let id = reservation_id(id)?;
        if items.is_empty() {
            return Err(invalid("items must not be empty"));
        }
        if items.len() > MAX_RESERVATION_LINES {
            return Err(invalid(format!(
                "at most {MAX_RESERVATION_LINES} items per reservation"
            )));
        }
        let mut lines: BTreeMap<i64, i64> = BTreeMap::new();
        for (product, quantity) in items {
            let product = product_id(*product, "items.product_id")?;
            if *quantity < 1 {
                return Err(invalid(format!(
                    "items.quantity for product {product} must be at least 1"
                )));
            }
            *lines.entry(product).or_default() += i64::from(*quantity);
        }
        Ok(Reservation {
            id,
            lines: lines.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_treats_wildcards_literally() {
        assert_eq!(Search::parse("50%_Off!").unwrap().pattern, "%50!%!_off!!%");
        assert!(Search::parse("  ").is_err());
    }

    #[test]
    fn reservations_merge_lines_and_reject_bad_quantities() {
        let r = Reservation::parse("order-1", &[(7, 1), (3, 2), (7, 4)]).unwrap();
        assert_eq!(r.lines, vec![(3, 2), (7, 5)]);
        assert!(Reservation::parse("order-1", &[(7, 0)]).is_err());
        assert!(Reservation::parse("order-1", &[(0, 1)]).is_err());
        assert!(Reservation::parse("", &[(7, 1)]).is_err());
        assert!(Reservation::parse("has space", &[(7, 1)]).is_err());
        assert!(Reservation::parse("order-1", &[]).is_err());
    }

    #[test]
    fn categories_are_deduplicated_case_insensitively() {
        let c = categories(&["Books".into(), " books ".into(), "Art".into()]).unwrap();
        assert_eq!(c, vec!["Art", "Books"]);
        assert!(categories(&["".into()]).is_err());
    }

    #[test]
    fn patches_leave_empty_fields_unchanged() {
        let p = ProductPatch::parse(5, "", "", "", 0, &[]).unwrap();
        assert!(p.name.is_none() && p.price_cents.is_none() && p.categories.is_none());
        assert!(ProductPatch::parse(5, "", "", "", -1, &[]).is_err());
        assert!(ProductPatch::parse(0, "x", "", "", 0, &[]).is_err());
    }
}
