//! Catalog rules: what a valid product, patch, search or reservation is. Requests are parsed
//! into these types at the edge (`api.rs`), so the store never sees unchecked input.
//!
//! Text is matched in its [`fold`]ed form, computed here in Rust and stored beside the text, so
//! both databases compare the same bytes (binary collation) and neither's collation rules
//! decide what is "the same" category or a search hit.

use std::collections::BTreeMap;

use mall_types::ids::ReservationId;
use mall_types::money::MAX_ORDER_LINES;
use mall_types::{Cents, Invalid, ProductId, Quantity, Text, TextRule};
use serde::{Deserialize, Serialize};
use unicase::UniCase;
use unicode_normalization::UnicodeNormalization;

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
/// Most characters one character becomes in [`fold`] (`ᾂ` decomposes to four, each folding to
/// one; a test checks every code point). Folding can lengthen text, never beyond this.
pub const MAX_FOLD_GROWTH: usize = 4;
/// Longest category match key, in characters: the stored key column is this wide, so every
/// valid name's key fits.
pub const MAX_CATEGORY_KEY_CHARS: usize = MAX_FOLD_GROWTH * CATEGORY_TEXT.max_chars();
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

/// The form text is matched in: canonical caseless matching (Unicode full case folding between
/// decomposition and recomposition), kept NFC. Case-insensitive for all of Unicode (`ÄRGER`,
/// `Ärger` and `ärger` fold alike, so do `STRASSE` and `Straße`) but accent-sensitive (`Cafe`
/// and `Café` stay different); precomposed and decomposed spellings of one letter fold alike.
/// The folding is Unicode's default, not a locale's (no Turkish dotless-i rule).
pub fn fold(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let decomposed: String = text.nfd().collect();
    UniCase::unicode(decomposed)
        .to_folded_case()
        .nfc()
        .collect()
}

/// A category of a new product or patch: its display name and the key it is matched by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    /// The name as sent, trimmed and NFC-normalised ([`CATEGORY_TEXT`]). The first spelling
    /// stored for a key is the one every product shows.
    pub name: Text,
    /// [`fold`] of the name: what makes two names the same category.
    pub key: String,
}

impl Category {
    /// Validates one category name (the message names `field`).
    pub fn parse(name: &str, field: &str) -> Result<Self, Invalid> {
        let name: String = name.nfc().collect();
        let name = CATEGORY_TEXT.parse(&name, field)?;
        let key = fold(name.as_str());
        Ok(Category { name, key })
    }
}

/// Category names: trimmed, non-empty, deduplicated by [`fold`], sorted by key.
pub fn categories(names: &[String]) -> Result<Vec<Category>, Invalid> {
    if names.len() > MAX_CATEGORIES {
        return Err(Invalid::new(
            "categories",
            format!("must hold at most {MAX_CATEGORIES} names"),
        ));
    }
    let mut by_key = BTreeMap::new();
    for name in names {
        let category = Category::parse(name, "category")?;
        by_key.entry(category.key.clone()).or_insert(category);
    }
    Ok(by_key.into_values().collect())
}

/// The `category_name` filter of `ListProducts`: `None` when empty (no filter), else the key of
/// the category asked for.
pub fn category_filter(name: &str) -> Result<Option<String>, Invalid> {
    if name.trim().is_empty() {
        return Ok(None);
    }
    Category::parse(name, "category_name").map(|c| Some(c.key))
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
    /// Categories (created when unknown).
    pub categories: Vec<Category>,
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
    pub categories: Option<Vec<Category>>,
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

/// A search: the [`fold`]ed text as a `LIKE` pattern with `%`, `_` and `!` escaped by `!`, for
/// the folded name and description columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// `%text%` with wildcards escaped, for `LIKE ? ESCAPE '!'`.
    pub pattern: String,
}

impl Search {
    /// Validates the query; `%` and `_` match themselves.
    pub fn parse(query: &str) -> Result<Self, Invalid> {
        let query = QUERY_TEXT.parse(query, "query")?;
        let folded = fold(query.as_str());
        let mut pattern = String::with_capacity(folded.len() + 2);
        pattern.push('%');
        for c in folded.chars() {
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
    fn folding_ignores_case_everywhere_but_keeps_accents() {
        assert_eq!(fold("ÄRGER"), "ärger");
        assert_eq!(fold("Ärger"), fold("ärger"));
        // A decomposed Ä (A + combining diaeresis) is the same letter.
        assert_eq!(fold("A\u{308}rger"), "ärger");
        assert_eq!(fold("Straße"), fold("STRASSE"));
        assert_eq!(fold("ΣΊΣΥΦΟΣ"), fold("σίσυφος"));
        assert_eq!(fold("Cafe"), "cafe");
        assert_ne!(fold("Café"), fold("Cafe"), "accents are kept");
        assert_eq!(fold("CAFÉ"), fold("cafe\u{301}"));
    }

    #[test]
    fn search_folds_the_query() {
        for query in ["ärger", "ÄRGER", "A\u{308}rger"] {
            assert_eq!(Search::parse(query).unwrap().pattern, "%ärger%", "{query}");
        }
    }

    #[test]
    fn categories_are_nfc_and_deduplicated_by_their_folded_key() {
        let c = categories(&["Books".into(), " books ".into(), "Art".into()]).unwrap();
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["Art", "Books"]);
        let c = categories(&["Cafe".into(), "Café".into(), "CAFE\u{301}".into()]).unwrap();
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["Cafe", "Café"], "one per key; stored NFC");
        assert_eq!(category_filter(" ").unwrap(), None);
        assert_eq!(category_filter("ÄRGER").unwrap().as_deref(), Some("ärger"));
        assert!(category_filter(&"x".repeat(65)).is_err());
        let longest = categories(&["\u{FB03}".repeat(64)]).unwrap();
        assert_eq!(longest[0].key, "ffi".repeat(64));
    }

    #[test]
    fn no_character_folds_to_more_than_max_fold_growth() {
        // Bound per character: its decomposition's characters, each folded and decomposed
        // again (recomposing only shortens). Additive over a string, so a key of an n-character
        // name is at most MAX_FOLD_GROWTH * n characters.
        let growth = |c: char| -> usize {
            c.to_string()
                .nfd()
                .map(|d| {
                    UniCase::unicode(d.to_string())
                        .to_folded_case()
                        .nfd()
                        .count()
                })
                .sum()
        };
        let most = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .map(growth)
            .max();
        assert_eq!(most, Some(MAX_FOLD_GROWTH));
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
