-- Shopping carts: one row per (user, product) line.
-- added_at_ms is unix milliseconds when the line was first added; with the autoincrement id as the
-- tie-breaker it orders GetCart. updated_at is unix seconds. A removed line is deleted, so adding
-- the product again starts a new line at the end of the cart.
CREATE TABLE cart_items (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     INTEGER NOT NULL,
    product_id  INTEGER NOT NULL,
    quantity    INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 999),
    added_at_ms INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (user_id, product_id)
);
CREATE INDEX cart_items_by_user ON cart_items (user_id, added_at_ms, id);
