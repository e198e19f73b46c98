-- One row per cart that has been written to: the row each write locks first, so the writes of
-- one cart run one at a time (the line cap is counted under it) while different carts never
-- touch each other's locks.
CREATE TABLE carts (
    user_id    BIGINT NOT NULL PRIMARY KEY,
    updated_at BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- One row per purchase whose lines were taken out of a cart (RemovePurchased), keyed by the
-- order: a repeat of the removal, however late, changes nothing.
CREATE TABLE cart_purchases (
    order_id   VARCHAR(128) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    user_id    BIGINT       NOT NULL,
    created_at BIGINT       NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
