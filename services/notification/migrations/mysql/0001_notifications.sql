-- What the notification service knows of an order (from order.placed), so the later events of
-- the order (paid, cancelled, refunded) can be mailed without calling order back.
CREATE TABLE orders (
    order_id VARCHAR(64) NOT NULL PRIMARY KEY,
    user_id BIGINT UNSIGNED NOT NULL,
    email VARCHAR(320) NOT NULL,
    currency CHAR(3) NOT NULL,
    total_cents BIGINT NOT NULL,
    -- one line per item: `<product_id> x<quantity> <cost_cents>`
    items TEXT NOT NULL,
    created_at BIGINT NOT NULL
) ENGINE = InnoDB;

-- The inbox: one row per handled event id (see the SQLite twin for `status`).
CREATE TABLE inbox (
    event_id CHAR(36) NOT NULL PRIMARY KEY,
    event_type VARCHAR(64) NOT NULL,
    aggregate_id VARCHAR(191) NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INT NOT NULL,
    recipient VARCHAR(320) NOT NULL DEFAULT '',
    subject VARCHAR(255) NOT NULL DEFAULT '',
    message_id VARCHAR(255) NOT NULL DEFAULT '',
    last_error VARCHAR(1024) NOT NULL DEFAULT '',
    updated_at BIGINT NOT NULL,
    KEY inbox_aggregate (aggregate_id)
) ENGINE = InnoDB;
