//! Cart rules: what a valid owner, line and quantity are.
//! Requests are parsed into these types at the edge (`api.rs`), so the store never sees
//! unchecked input.

use mall_types::money::{MAX_ORDER_LINES, MAX_QUANTITY};
use mall_types::{Invalid, OrderId, ProductId, Quantity, UserId};

/// The owner of a cart from a request's `user_id`.
pub fn user_id(id: u64) -> Result<UserId, Invalid> {
    UserId::parse(id, "user_id")
}

/// The `(product, units)` of a request's `item`, `None` when the item is missing: the product
/// checked, the units as sent (each RPC has its own rule for them).
fn item(item: Option<(u64, i32)>) -> Result<(ProductId, i32), Invalid> {
    let (product, units) = item.ok_or_else(|| Invalid::new("item", "is required"))?;
    Ok((ProductId::parse(product, "item.product_id")?, units))
}

/// A valid `AddItem`: add `quantity` (1..=999) units of `product_id` to `user_id`'s cart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addition {
    /// The cart's owner.
    pub user_id: UserId,
    /// The product to add.
    pub product_id: ProductId,
    /// Units to add.
    pub quantity: Quantity,
}

impl Addition {
    /// Validates the request fields; `item` is `(product_id, quantity)`, `None` when missing.
    pub fn parse(user_id: u64, item: Option<(u64, i32)>) -> Result<Self, Invalid> {
        let user_id = self::user_id(user_id)?;
        let (product_id, units) = self::item(item)?;
        Ok(Addition {
            user_id,
            product_id,
            quantity: Quantity::parse(units, "item.quantity")?,
        })
    }
}

/// A valid `UpdateItem`: set a line's quantity, or remove it (quantity 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineUpdate {
    /// Set the line of `product_id` to `quantity`, creating it when missing.
    Set {
        /// The cart's owner.
        user_id: UserId,
        /// The product of the line.
        product_id: ProductId,
        /// The new quantity.
        quantity: Quantity,
    },
    /// Remove the line of `product_id` (a missing line is fine).
    Remove {
        /// The cart's owner.
        user_id: UserId,
        /// The product of the line.
        product_id: ProductId,
    },
}

impl LineUpdate {
    /// Validates the request fields; `item` is `(product_id, quantity)`, `None` when missing.
    pub fn parse(user_id: u64, item: Option<(u64, i32)>) -> Result<Self, Invalid> {
        let user_id = self::user_id(user_id)?;
        let (product_id, units) = self::item(item)?;
        if units == 0 {
            return Ok(LineUpdate::Remove {
                user_id,
                product_id,
            });
        }
        // Same range as AddItem, but the message owns up to 0 being allowed here.
        let quantity = Quantity::parse(units, "item.quantity").map_err(|_| {
            Invalid::new(
                "item.quantity",
                format!("must be between 0 and {MAX_QUANTITY} (0 removes the line), got {units}"),
            )
        })?;
        Ok(LineUpdate::Set {
            user_id,
            product_id,
            quantity,
        })
    }

    /// The cart's owner.
    pub fn user_id(&self) -> UserId {
        match self {
            LineUpdate::Set { user_id, .. } | LineUpdate::Remove { user_id, .. } => *user_id,
        }
    }
}

/// A valid `RemovePurchased`: the units of each product an order bought, to take out of its
/// buyer's cart once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    /// The buyer, whose cart it is.
    pub user_id: UserId,
    /// The order: a removal happens once per order.
    pub order_id: OrderId,
    /// `(product, units bought)`, 1..=100 distinct products.
    pub lines: Vec<(ProductId, Quantity)>,
}

impl Purchase {
    /// Validates the request fields; `items` are `(product_id, quantity)` as sent.
    pub fn parse(user_id: u64, order_id: &str, items: &[(u64, i32)]) -> Result<Self, Invalid> {
        let user_id = self::user_id(user_id)?;
        let order_id = OrderId::parse(order_id, "order_id")?;
        if items.is_empty() {
            return Err(Invalid::new("items", "must hold at least one line"));
        }
        if items.len() > MAX_ORDER_LINES {
            return Err(Invalid::new(
                "items",
                format!("must hold at most {MAX_ORDER_LINES} lines"),
            ));
        }
        let mut lines: Vec<(ProductId, Quantity)> = Vec::with_capacity(items.len());
        for (i, (product, units)) in items.iter().enumerate() {
            let product = ProductId::parse(*product, &format!("items[{i}].product_id"))?;
            if lines.iter().any(|(p, _)| *p == product) {
                return Err(Invalid::new(
                    format!("items[{i}].product_id"),
                    format!("repeats product {}", product.get()),
                ));
            }
            lines.push((
                product,
                Quantity::parse(*units, &format!("items[{i}].quantity"))?,
            ));
        }
        Ok(Purchase {
            user_id,
            order_id,
            lines,
        })
    }
}

/// One line of a cart as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CartLine {
    /// The product.
    pub product_id: i64,
    /// Units, 1..=999.
    pub quantity: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additions_take_one_to_999_units_of_a_real_id() {
        let a = Addition::parse(7, Some((3, 2))).unwrap();
        assert_eq!(
            (a.user_id.get(), a.product_id.get(), a.quantity.get()),
            (7, 3, 2)
        );
        assert!(Addition::parse(7, Some((3, 999))).is_ok());
        for (user, item) in [
            (7, Some((3, 0))),
            (7, Some((3, -1))),
            (7, Some((3, 1000))),
            (7, Some((0, 1))),
            (7, Some((u64::MAX, 1))),
            (0, Some((3, 1))),
            (u64::MAX, Some((3, 1))),
            (7, None),
        ] {
            assert!(Addition::parse(user, item).is_err(), "{user} {item:?}");
        }
        let err = Addition::parse(7, Some((3, 1000))).unwrap_err();
        assert_eq!(err.field(), "item.quantity", "{err}");
        assert_eq!(
            err.to_string(),
            "item.quantity must be between 1 and 999, got 1000"
        );
        let err = Addition::parse(0, Some((3, 1))).unwrap_err();
        assert_eq!(err.field(), "user_id", "{err}");
        let err = Addition::parse(7, None).unwrap_err();
        assert_eq!(err.to_string(), "item is required");
    }

    #[test]
    fn purchases_name_an_order_and_distinct_lines() {
        let p = Purchase::parse(7, "order-1", &[(3, 2), (4, 1)]).unwrap();
        assert_eq!(p.order_id.as_str(), "order-1");
        assert_eq!(p.lines.len(), 2);
        for (user, order, items, field) in [
            (0, "order-1", vec![(3, 1)], "user_id"),
            (7, "", vec![(3, 1)], "order_id"),
            (7, "order-1", vec![], "items"),
            (7, "order-1", vec![(3, 1), (3, 2)], "items[1].product_id"),
            (7, "order-1", vec![(3, 0)], "items[0].quantity"),
            (7, "order-1", vec![(0, 1)], "items[0].product_id"),
            (7, "order-1", vec![(1, 1); 101], "items"),
        ] {
            let err = Purchase::parse(user, order, &items).unwrap_err();
            assert_eq!(err.field(), field, "{err}");
        }
    }

    #[test]
    fn updates_to_zero_remove_the_line() {
        let user = UserId::parse(7, "user_id").unwrap();
        let product = ProductId::parse(3, "product_id").unwrap();
        assert_eq!(
            LineUpdate::parse(7, Some((3, 0))).unwrap(),
            LineUpdate::Remove {
                user_id: user,
                product_id: product
            }
        );
        assert_eq!(
            LineUpdate::parse(7, Some((3, 999))).unwrap(),
            LineUpdate::Set {
                user_id: user,
                product_id: product,
                quantity: Quantity::parse(999, "q").unwrap()
            }
        );
        assert_eq!(
            LineUpdate::parse(7, Some((3, -1))).unwrap_err().to_string(),
            "item.quantity must be between 0 and 999 (0 removes the line), got -1"
        );
        assert!(LineUpdate::parse(7, Some((3, -1))).is_err());
        assert!(LineUpdate::parse(7, Some((3, 1000))).is_err());
        assert!(LineUpdate::parse(7, Some((0, 0))).is_err());
        assert!(LineUpdate::parse(7, None).is_err());
    }
}
