-- Payments and refunds. Money is integer cents, times are unix seconds.
-- Of a card only the brand and the last 4 digits are kept: never the number or the CVV.

-- One row per successful payment. The unique order_id is what makes "one successful charge per
-- order" hold across instances and under concurrency (card charges and Alipay notifications
-- alike).
CREATE TABLE payments (
    transaction_id TEXT    NOT NULL PRIMARY KEY,
    order_id       TEXT    NOT NULL UNIQUE,
    user_id        INTEGER NOT NULL CHECK (user_id > 0),
    amount_cents   INTEGER NOT NULL CHECK (amount_cents > 0),
    refunded_cents INTEGER NOT NULL DEFAULT 0,
    status         TEXT    NOT NULL CHECK (status IN ('paid', 'partially_refunded', 'refunded')),
    payment_method TEXT    NOT NULL CHECK (payment_method IN ('credit_card', 'alipay')),
    card_brand     TEXT    NOT NULL DEFAULT '',
    card_last4     TEXT    NOT NULL DEFAULT '' CHECK (length(card_last4) <= 4),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- The last line of defence behind the conditional UPDATE of Refund.
    CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents)
);
CREATE INDEX payments_by_user ON payments (user_id, created_at);

-- Every refund, with its id (the original never persisted refund ids).
CREATE TABLE refunds (
    refund_id      TEXT    NOT NULL PRIMARY KEY,
    transaction_id TEXT    NOT NULL REFERENCES payments (transaction_id),
    amount_cents   INTEGER NOT NULL CHECK (amount_cents > 0),
    reason         TEXT    NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX refunds_by_transaction ON refunds (transaction_id, created_at);
