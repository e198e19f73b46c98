-- What the notification service knows of an order (from order.placed), so the later events of
-- the order (paid, cancelled, refunded) can be mailed without calling order back.
CREATE TABLE orders (
    order_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    email TEXT NOT NULL,
    currency TEXT NOT NULL,
    total_cents INTEGER NOT NULL,
    -- one line per item: `<product_id> x<quantity> <cost_cents>`
    items TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- The inbox: one row per handled event id. `status` is `sending` while a mail is out (a crash
-- then leaves it so, and the redelivery sends again with the same Message-ID), `sent`, `noted`
-- (an event that sends no mail), or `dead` (dead-lettered).
CREATE TABLE inbox (
    event_id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    recipient TEXT NOT NULL DEFAULT '',
    subject TEXT NOT NULL DEFAULT '',
    message_id TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT '',
    updated_at INTEGER NOT NULL
);
CREATE INDEX inbox_aggregate ON inbox (aggregate_id);
