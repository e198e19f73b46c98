-- Orders and their lines. Money is integer cents, times are unix seconds, status is the API's
-- ORDER_STATUS_* number (1 PENDING, 2 PAID, 3 CANCELLED, 4 COMPLETED, 5 REFUNDED).
CREATE TABLE orders (
    -- Public id: a UUIDv7 string, unguessable and time-ordered.
    id                 TEXT    NOT NULL PRIMARY KEY,
    user_id            INTEGER NOT NULL,
    -- The caller's retry key: one order per (user_id, idempotency_key); NULL when none was given.
    idempotency_key    TEXT,
    status             INTEGER NOT NULL CHECK (status BETWEEN 1 AND 5),
    currency           TEXT    NOT NULL,
    street_address     TEXT    NOT NULL,
    city               TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    country            TEXT    NOT NULL,
    zip_code           TEXT    NOT NULL,
    email              TEXT    NOT NULL,
    total_cents        INTEGER NOT NULL CHECK (total_cents >= 0),
    transaction_id     TEXT,
    cancel_reason      TEXT,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    paid_at            INTEGER,
    cancelled_at       INTEGER,
    -- A cancelled order's stock reservation is given back once ReleaseStock succeeded (1).
    -- Until then the sweeper retries, claiming each attempt through release_attempt_at.
    stock_released     INTEGER NOT NULL DEFAULT 0 CHECK (stock_released IN (0, 1)),
    release_attempt_at INTEGER,
    release_attempts   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX orders_idempotency ON orders (user_id, idempotency_key);
CREATE INDEX orders_by_user ON orders (user_id, created_at, id);
CREATE INDEX orders_by_status ON orders (status, created_at);
CREATE INDEX orders_unreleased ON orders (status, stock_released, release_attempt_at);

CREATE TABLE order_items (
    order_id   TEXT    NOT NULL REFERENCES orders (id),
    line_no    INTEGER NOT NULL,
    product_id INTEGER NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    cost_cents INTEGER NOT NULL CHECK (cost_cents >= 0),
    PRIMARY KEY (order_id, line_no)
);
