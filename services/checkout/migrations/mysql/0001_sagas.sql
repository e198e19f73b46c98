-- Checkout sagas: one row per checkout, its progress written before and after every remote call
-- so a restarted instance can drive it to an end state. Money is integer cents, times are unix
-- seconds except lease_until (unix milliseconds). The card number and CVV are never stored.
CREATE TABLE sagas (
    -- A UUIDv7; also the idempotency key of the order this saga places.
    id               VARCHAR(64)  COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    user_id          BIGINT       NOT NULL,
    -- "k:<client key>" or "fp:<request fingerprint>" (retired fingerprints get a "~<id>" suffix).
    idempotency_key  VARCHAR(200) COLLATE utf8mb4_bin NOT NULL,
    -- Keyed SHA-256 over the request (hex); a client key reused for another request is refused.
    fingerprint      VARCHAR(64)  COLLATE utf8mb4_bin NOT NULL,
    -- running | succeeded | failed
    state            VARCHAR(16)  COLLATE utf8mb4_bin NOT NULL,
    step             VARCHAR(32)  COLLATE utf8mb4_bin NOT NULL,
    order_id         VARCHAR(64)  COLLATE utf8mb4_bin NULL,
    transaction_id   VARCHAR(128) COLLATE utf8mb4_bin NULL,
    total_cents      BIGINT       NULL,
    -- [{"product_id":..,"quantity":..,"cost_cents":..}]
    lines_json       TEXT         NULL,
    -- {"email":..,"firstname":..,"lastname":..,"address":{..}}: what a resumed saga needs.
    contact_json     TEXT         NOT NULL,
    -- The answer the client got (gRPC code, 0 = OK); NULL while undecided.
    outcome_code     INT          NULL,
    outcome_message  VARCHAR(500) NULL,
    lease_owner      VARCHAR(64)  COLLATE utf8mb4_bin NULL,
    lease_until      BIGINT       NOT NULL DEFAULT 0,
    attempts         BIGINT       NOT NULL DEFAULT 0,
    created_at       BIGINT       NOT NULL,
    updated_at       BIGINT       NOT NULL,
    UNIQUE KEY sagas_idempotency (user_id, idempotency_key),
    KEY sagas_open (state, lease_until),
    CONSTRAINT sagas_state CHECK (state IN ('running', 'succeeded', 'failed'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
