//! Catalog rules: what a valid product, patch, search or reservation is. Requests are parsed
//! into these types at the edge (`api.rs`), so the store never sees unchecked input.

use std::collections::BTreeMap;

use mall_types::ids::ReservationId;
use mall_types::money::MAX_ORDER_LINES;
use mall_types::{Cents, Invalid, ProductId, Quantity, Text, TextRule};
use serde::{Deserialize, Serialize};

/// A product name: one line of up to 200 characters.
pub const NAME_TEXT: TextRule = TextRule::line(200);
/// A description: up to 5,000 characters, line breaks allowed, may be empty.
pub const DESCRIPTION_TEXT: TextRule = TextRule::multiline(5_000).optional();
/// A picture URL: one line of up to 1,024 characters, may be empty.
pub const PICTURE_TEXT: TextRule = TextRule::line(1_024).optional();
/// A category name: one line of up to 64 characters.
pub const CATEGORY_TEXT: TextRule = TextRule::line(64);
/// A search query: one line of up to 200 characters.
pub const QUERY_TEXT: TextRule = TextRule::line(200);
/// Most categories on one product.
pub const MAX_CATEGORIES: usize = 20;
/// Most ids in one `BatchGetProducts`: at least an order's lines, so checkout prices a cart in
/// one call.
pub const MAX_BATCH_IDS: usize = 100;
const _: () = assert!(MAX_BATCH_IDS >= MAX_ORDER_LINES);
/// Most lines in one reservation: one order's.
pub const MAX_RESERVATION_LINES: usize = MAX_ORDER_LINES;

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

/// Category names: trimmed, non-empty, deduplicated case-insensitively, sorted.
pub fn categories(names: &[String]) -> Result<Vec<Text>, Invalid> {
    if names.len() > MAX_CATEGORIES {
        return Err(Invalid::new(
            "categories",
            format!("must hold at most {MAX_CATEGORIES} names"),
        ));
    }
    let mut by_key = BTreeMap::new();
    for name in names {
        let name = CATEGORY_TEXT.parse(name, "category")?;
        by_key.entry(name.to_lowercase()).or_insert(name);
    }
    Ok(by_key.into_values().collect())
}

/// A valid `CreateProduct`.
#[derive(Debug, Clone)]
pub struct NewProduct {
    /// Name ([`NAME_TEXT`]).
    pub name: Text,
    /// Description ([`DESCRIPTION_TEXT`]).
    pub description: Text,
    /// Picture URL ([`PICTURE_TEXT`]).
    pub picture: Text,
    /// Positive price.
    pub price: Cents,
    /// Initial stock.
    pub stock: i64,
    /// Category names (created when unknown).
    pub categories: Vec<Text>,
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
            name: NAME_TEXT.parse(name, "name")?,
            description: DESCRIPTION_TEXT.parse(description, "description")?,
            picture: PICTURE_TEXT.parse(picture, "picture")?,
            price: Cents::parse_price(price_cents, "price_cents")?,
            stock: i64::from(stock),
            categories: categories(category_names)?,
        })
    }
}

/// A valid `UpdateProduct`: `None` leaves a field unchanged.
#[derive(Debug, Clone)]
pub struct ProductPatch {
    /// The product to change.
    pub id: ProductId,
    /// New name.
    pub name: Option<Text>,
    /// New description.
    pub description: Option<Text>,
    /// New picture URL.
    pub picture: Option<Text>,
    /// New price.
    pub price: Option<Cents>,
    /// New category set (replaces the old one).
    pub categories: Option<Vec<Text>>,
}

/// `value` checked by `rule` (as a required field), or `None` when it is empty: "unchanged".
fn changed(rule: TextRule, value: &str, field: &str) -> Result<Option<Text>, Invalid> {
    if value.is_empty() {
        Ok(None)
    } else {
        rule.required().parse(value, field).map(Some)
    }
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
        Ok(ProductPatch {
            id: ProductId::parse(id, "id")?,
            name: changed(NAME_TEXT, name, "name")?,
            description: changed(DESCRIPTION_TEXT, description, "description")?,
            picture: changed(PICTURE_TEXT, picture, "picture")?,
            price: match price_cents {
                0 => None,
                p => Some(Cents::parse_price(p, "price_cents")?),
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
        let query = QUERY_TEXT.parse(query, "query")?;
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
pub fn batch_ids(ids: &[u64]) -> Result<Vec<ProductId>, Invalid> {
    if ids.len() > MAX_BATCH_IDS {
        return Err(Invalid::new(
            "ids",
            format!("must hold at most {MAX_BATCH_IDS} ids"),
        ));
    }
    let mut out: Vec<ProductId> = Vec::with_capacity(ids.len());
    for id in ids {
        let id = ProductId::parse(*id, "ids")?;
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
    pub id: ReservationId,
    /// `(product, units)`, product ids ascending and unique. Each request line holds at most
    /// [`MAX_QUANTITY`](mall_types::money::MAX_QUANTITY) units; a product named on several lines holds their sum.
    pub lines: Vec<(ProductId, i64)>,
}

impl Reservation {
    /// Validates the request; quantities of repeated products are added up.
    pub fn parse(id: &str, items: &[(u64, i32)]) -> Result<Self, Invalid> {
        let id = ReservationId::parse(id, "reservation_id")?;
        if items.is_empty() {
            return Err(Invalid::new("items", "must not be empty"));
        }
        if items.len() > MAX_RESERVATION_LINES {
            return Err(Invalid::new(
                "items",
                format!("must hold at most {MAX_RESERVATION_LINES} lines"),
            ));
        }
        let mut lines: BTreeMap<ProductId, i64> = BTreeMap::new();
        for (index, (product, quantity)) in items.iter().enumerate() {
            let product = ProductId::parse(*product, &format!("items[{index}].product_id"))?;
            let quantity = Quantity::parse(*quantity, &format!("items[{index}].quantity"))?;
            *lines.entry(product).or_default() += quantity.db();
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
        let lines: Vec<(u64, i64)> = r.lines.iter().map(|(p, q)| (p.get(), *q)).collect();
        assert_eq!(lines, vec![(3, 2), (7, 5)]);
        // Each line holds 1..=999 units; the same product on two lines may add up to more.
        let r = Reservation::parse("order-1", &[(7, 999), (7, 999)]).unwrap();
        assert_eq!(r.lines[0].1, 1_998);
        let message =
            |id: &str, items: &[(u64, i32)]| Reservation::parse(id, items).unwrap_err().to_string();
        assert_eq!(
            message("order-1", &[(7, 1), (7, 0)]),
            "items[1].quantity must be between 1 and 999, got 0"
        );
        assert_eq!(
            message("order-1", &[(7, 1000)]),
            "items[0].quantity must be between 1 and 999, got 1000"
        );
        assert_eq!(
            message("order-1", &[(0, 1)]),
            "items[0].product_id must be a positive product id"
        );
        assert_eq!(message("", &[(7, 1)]), "reservation_id is required");
        assert!(message("has space", &[(7, 1)]).starts_with("reservation_id must be"));
        assert!(Reservation::parse(&"r".repeat(128), &[(7, 1)]).is_ok());
        assert!(Reservation::parse(&"r".repeat(129), &[(7, 1)]).is_err());
        assert_eq!(message("order-1", &[]), "items must not be empty");
        let most = vec![(7, 1); MAX_RESERVATION_LINES];
        assert!(Reservation::parse("order-1", &most).is_ok());
        let too_many = vec![(7, 1); MAX_RESERVATION_LINES + 1];
        assert_eq!(
            message("order-1", &too_many),
            "items must hold at most 100 lines"
        );
    }

    #[test]
    fn categories_are_deduplicated_case_insensitively() {
        let c = categories(&["Books".into(), " books ".into(), "Art".into()]).unwrap();
        let names: Vec<&str> = c.iter().map(Text::as_str).collect();
        assert_eq!(names, vec!["Art", "Books"]);
        assert!(categories(&["".into()]).is_err());
        assert!(categories(&vec!["x".to_string(); MAX_CATEGORIES]).is_ok());
        let err = categories(&vec!["x".to_string(); MAX_CATEGORIES + 1]).unwrap_err();
        assert_eq!(err.to_string(), "categories must hold at most 20 names");
    }

    #[test]
    fn new_products_name_the_broken_field() {
        let parse = |name: &str, price: i64| NewProduct::parse(name, "", "", price, 1, &[]);
        assert_eq!(parse(" Tea ", 1).unwrap().name.as_str(), "Tea");
        assert!(parse(&"n".repeat(NAME_TEXT.max_chars()), 1).is_ok());
        assert_eq!(
            parse(&"n".repeat(201), 1).unwrap_err().to_string(),
            "name is 201 characters long; the limit is 200"
        );
        assert_eq!(
            parse("Tea", 0).unwrap_err().to_string(),
            "price_cents must be positive"
        );
        assert!(parse("Tea", mall_types::money::MAX_PRICE_CENTS).is_ok());
        assert!(parse("Tea", mall_types::money::MAX_PRICE_CENTS + 1).is_err());
    }

    #[test]
    fn batches_hold_up_to_100_distinct_positive_ids() {
        let ids = batch_ids(&[3, 1, 3]).unwrap();
        assert_eq!(ids.iter().map(|i| i.get()).collect::<Vec<_>>(), vec![3, 1]);
        assert!(batch_ids(&vec![1; MAX_BATCH_IDS]).is_ok());
        assert_eq!(
            batch_ids(&vec![1; MAX_BATCH_IDS + 1])
                .unwrap_err()
                .to_string(),
            "ids must hold at most 100 ids"
        );
        assert!(batch_ids(&[1, 0]).is_err());
    }

    #[test]
    fn patches_leave_empty_fields_unchanged() {
        let p = ProductPatch::parse(5, "", "", "", 0, &[]).unwrap();
        assert!(p.name.is_none() && p.price.is_none() && p.categories.is_none());
        assert!(p.description.is_none() && p.picture.is_none());
        assert!(ProductPatch::parse(5, "", "", "", -1, &[]).is_err());
        assert!(ProductPatch::parse(0, "x", "", "", 0, &[]).is_err());
        // A field that is sent must keep its rule: blanks are not a new name.
        assert_eq!(
            ProductPatch::parse(5, " ", "", "", 0, &[])
                .unwrap_err()
                .to_string(),
            "name is required"
        );
    }
}
