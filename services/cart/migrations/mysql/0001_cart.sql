-- Shopping carts: one row per (user, product) line.
-- added_at_ms is unix milliseconds when the line was first added; with the autoincrement id as the
-- tie-breaker it orders GetCart. updated_at is unix seconds. A removed line is deleted, so adding
-- the product again starts a new line at the end of the cart.
CREATE TABLE cart_items (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    product_id  BIGINT NOT NULL,
    quantity    BIGINT NOT NULL,
    added_at_ms BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE KEY cart_items_line (user_id, product_id),
    KEY cart_items_by_user (user_id, added_at_ms, id),
    CONSTRAINT cart_items_quantity CHECK (quantity BETWEEN 1 AND 999)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
