-- Alipay trades: one row per order that got a pay link, with the owner and total the order
-- service gave for it. A notification (or alipay.trade.query) is believed only for an order
-- listed here and only for this amount. `state`: 'open' (polled with alipay.trade.query until
-- paid or `payment.alipay_query_for` is over), 'paid' (its payment is recorded), 'closed'.
CREATE TABLE alipay_trades (
    order_id       VARCHAR(64) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    user_id        BIGINT      NOT NULL,
    amount_cents   BIGINT      NOT NULL,
    state          VARCHAR(16) NOT NULL,
    query_attempts BIGINT      NOT NULL DEFAULT 0,
    next_query_at  BIGINT      NOT NULL,
    created_at     BIGINT      NOT NULL,
    updated_at     BIGINT      NOT NULL,
    KEY alipay_trades_due (state, next_query_at),
    CONSTRAINT alipay_trades_user_positive CHECK (user_id > 0),
    CONSTRAINT alipay_trades_amount_positive CHECK (amount_cents > 0),
    CONSTRAINT alipay_trades_state CHECK (state IN ('open', 'paid', 'closed'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Refund requests: the caller's (or a generated) request id, sent to Alipay as out_request_no;
-- one refund per (payment, request id). 'pending' while an Alipay refund's outcome is unknown
-- (its amount already counts against the payment, so concurrent refunds cannot exceed it).
ALTER TABLE refunds ADD COLUMN out_request_no VARCHAR(64) COLLATE utf8mb4_bin NULL;
ALTER TABLE refunds ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'succeeded';
ALTER TABLE refunds ADD CONSTRAINT refunds_status CHECK (status IN ('pending', 'succeeded', 'failed'));
CREATE UNIQUE INDEX refunds_request ON refunds (transaction_id, out_request_no);
CREATE INDEX refunds_pending ON refunds (status, created_at);
