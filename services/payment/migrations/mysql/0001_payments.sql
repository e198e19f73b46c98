-- Payments and refunds. Money is integer cents, times are unix seconds.
-- Of a card only the brand and the last 4 digits are kept: never the number or the CVV.
-- Ids compare byte-wise (utf8mb4_bin): "A1" and "a1" are different orders.

-- One row per successful payment. The unique order_id is what makes "one successful charge per
-- order" hold across instances and under concurrency (card charges and Alipay notifications
-- alike).
CREATE TABLE payments (
    transaction_id VARCHAR(64)  COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    order_id       VARCHAR(64)  COLLATE utf8mb4_bin NOT NULL,
    user_id        BIGINT       NOT NULL,
    amount_cents   BIGINT       NOT NULL,
    refunded_cents BIGINT       NOT NULL DEFAULT 0,
    status         VARCHAR(32)  NOT NULL,
    payment_method VARCHAR(16)  NOT NULL,
    card_brand     VARCHAR(16)  NOT NULL DEFAULT '',
    card_last4     VARCHAR(4)   NOT NULL DEFAULT '',
    created_at     BIGINT       NOT NULL,
    updated_at     BIGINT       NOT NULL,
    UNIQUE KEY payments_order (order_id),
    KEY payments_by_user (user_id, created_at),
    CONSTRAINT payments_user_positive CHECK (user_id > 0),
    CONSTRAINT payments_amount_positive CHECK (amount_cents > 0),
    -- The last line of defence behind the conditional UPDATE of Refund.
    CONSTRAINT payments_refunded_in_range CHECK (refunded_cents >= 0 AND refunded_cents <= amount_cents),
    CONSTRAINT payments_status CHECK (status IN ('paid', 'partially_refunded', 'refunded')),
    CONSTRAINT payments_method CHECK (payment_method IN ('credit_card', 'alipay'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Every refund, with its id (the original never persisted refund ids).
CREATE TABLE refunds (
    refund_id      VARCHAR(64)  COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    transaction_id VARCHAR(64)  COLLATE utf8mb4_bin NOT NULL,
    amount_cents   BIGINT       NOT NULL,
    reason         VARCHAR(256) NOT NULL,
    created_at     BIGINT       NOT NULL,
    KEY refunds_by_transaction (transaction_id, created_at),
    CONSTRAINT refunds_payment FOREIGN KEY (transaction_id) REFERENCES payments (transaction_id),
    CONSTRAINT refunds_amount_positive CHECK (amount_cents > 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
