-- The product catalog: products, categories and stock reservations.
-- Money is integer cents, times are unix seconds, a deleted product keeps its row (deleted_at).
CREATE TABLE products (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    description TEXT    NOT NULL,
    picture     TEXT    NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);

CREATE TABLE categories (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL COLLATE NOCASE UNIQUE
);

CREATE TABLE product_categories (
    product_id  INTEGER NOT NULL REFERENCES products (id),
    category_id INTEGER NOT NULL REFERENCES categories (id),
    PRIMARY KEY (product_id, category_id)
);
CREATE INDEX product_categories_by_category ON product_categories (category_id, product_id);

-- One row per reservation id: what makes ReserveStock idempotent and ReleaseStock happen once.
CREATE TABLE stock_reservations (
    reservation_id TEXT    NOT NULL PRIMARY KEY,
    status         TEXT    NOT NULL CHECK (status IN ('reserved', 'released')),
    created_at     INTEGER NOT NULL,
    released_at    INTEGER
);

CREATE TABLE stock_reservation_items (
    reservation_id TEXT    NOT NULL REFERENCES stock_reservations (reservation_id),
    product_id     INTEGER NOT NULL,
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, product_id)
);

-- Markers such as 'demo_seeded', so concurrent instances seed the demo catalog once.
CREATE TABLE catalog_meta (
    name       TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
);
