-- One row per cart that has been written to: the row each write locks first, so the writes of
-- one cart run one at a time (the line cap is counted under it).
CREATE TABLE carts (
    user_id    INTEGER NOT NULL PRIMARY KEY,
    updated_at INTEGER NOT NULL
);

-- One row per purchase whose lines were taken out of a cart (RemovePurchased), keyed by the
-- order: a repeat of the removal, however late, changes nothing.
CREATE TABLE cart_purchases (
    order_id   TEXT    NOT NULL PRIMARY KEY,
    user_id    INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
