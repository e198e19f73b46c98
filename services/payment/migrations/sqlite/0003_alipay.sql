-- Alipay trades: one row per order that got a pay link, with the owner and total the order
-- service gave for it. A notification (or alipay.trade.query) is believed only for an order
-- listed here and only for this amount. `state`: 'open' (polled with alipay.trade.query until
-- paid or `payment.alipay_query_for` is over), 'paid' (its payment is recorded), 'closed'.
CREATE TABLE alipay_trades (
    order_id       TEXT    NOT NULL PRIMARY KEY,
    user_id        INTEGER NOT NULL CHECK (user_id > 0),
    amount_cents   INTEGER NOT NULL CHECK (amount_cents > 0),
    state          TEXT    NOT NULL CHECK (state IN ('open', 'paid', 'closed')),
    query_attempts INTEGER NOT NULL DEFAULT 0,
    next_query_at  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX alipay_trades_due ON alipay_trades (state, next_query_at);

-- Refund requests: the caller's (or a generated) request id, sent to Alipay as out_request_no;
-- one refund per (payment, request id). 'pending' while an Alipay refund's outcome is unknown
-- (its amount already counts against the payment, so concurrent refunds cannot exceed it).
ALTER TABLE refunds ADD COLUMN out_request_no TEXT NULL;
ALTER TABLE refunds ADD COLUMN status TEXT NOT NULL DEFAULT 'succeeded'
    CHECK (status IN ('pending', 'succeeded', 'failed'));
CREATE UNIQUE INDEX refunds_request ON refunds (transaction_id, out_request_no);
CREATE INDEX refunds_pending ON refunds (status, created_at);
