-- Orders and their lines. Money is integer cents, times are unix seconds, status is the API's
-- ORDER_STATUS_* number (1 PENDING, 2 PAID, 3 CANCELLED, 4 COMPLETED, 5 REFUNDED).
-- Ids and keys compare byte-wise (utf8mb4_bin): "A1" and "a1" are different.
CREATE TABLE orders (
    -- Public id: a UUIDv7 string, unguessable and time-ordered.
    id                 VARCHAR(64)  COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    user_id            BIGINT       NOT NULL,
    -- The caller's retry key: one order per (user_id, idempotency_key); NULL when none was given.
    idempotency_key    VARCHAR(128) COLLATE utf8mb4_bin NULL,
    status             SMALLINT     NOT NULL,
    currency           VARCHAR(8)   NOT NULL,
    street_address     VARCHAR(200) NOT NULL,
    city               VARCHAR(200) NOT NULL,
    state              VARCHAR(200) NOT NULL,
    country            VARCHAR(200) NOT NULL,
    zip_code           VARCHAR(32)  NOT NULL,
    email              VARCHAR(254) NOT NULL,
    total_cents        BIGINT       NOT NULL,
    transaction_id     VARCHAR(128) COLLATE utf8mb4_bin NULL,
    cancel_reason      VARCHAR(500) NULL,
    created_at         BIGINT       NOT NULL,
    updated_at         BIGINT       NOT NULL,
    paid_at            BIGINT       NULL,
    cancelled_at       BIGINT       NULL,
    -- A cancelled order's stock reservation is given back once ReleaseStock succeeded (1).
    -- Until then the sweeper retries, claiming each attempt through release_attempt_at.
    stock_released     SMALLINT     NOT NULL DEFAULT 0,
    release_attempt_at BIGINT       NULL,
    release_attempts   BIGINT       NOT NULL DEFAULT 0,
    UNIQUE KEY orders_idempotency (user_id, idempotency_key),
    KEY orders_by_user (user_id, created_at, id),
    KEY orders_by_status (status, created_at),
    KEY orders_unreleased (status, stock_released, release_attempt_at),
    CONSTRAINT orders_status CHECK (status BETWEEN 1 AND 5),
    CONSTRAINT orders_total_not_negative CHECK (total_cents >= 0),
    CONSTRAINT orders_stock_released CHECK (stock_released IN (0, 1))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

CREATE TABLE order_items (
    order_id   VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    line_no    INT         NOT NULL,
    product_id BIGINT      NOT NULL,
    quantity   INT         NOT NULL,
    cost_cents BIGINT      NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT order_items_order FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT order_items_quantity CHECK (quantity > 0),
    CONSTRAINT order_items_cost_not_negative CHECK (cost_cents >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
