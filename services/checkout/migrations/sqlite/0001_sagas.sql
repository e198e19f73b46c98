-- Checkout sagas: one row per checkout, its progress written before and after every remote call
-- so a restarted instance can drive it to an end state. Money is integer cents, times are unix
-- seconds except lease_until (unix milliseconds). The card number and CVV are never stored.
CREATE TABLE sagas (
    -- A UUIDv7; also the idempotency key of the order this saga places.
    id               TEXT    NOT NULL PRIMARY KEY,
    user_id          INTEGER NOT NULL,
    -- "k:<client key>" or "fp:<request fingerprint>" (retired fingerprints get a "~<id>" suffix).
    idempotency_key  TEXT    NOT NULL,
    -- Keyed SHA-256 over the request (hex); a client key reused for another request is refused.
    fingerprint      TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
    step             TEXT    NOT NULL,
    order_id         TEXT,
    transaction_id   TEXT,
    total_cents      INTEGER,
    lines_json       TEXT,
    contact_json     TEXT    NOT NULL,
    outcome_code     INTEGER,
    outcome_message  TEXT,
    lease_owner      TEXT,
    lease_until      INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX sagas_idempotency ON sagas (user_id, idempotency_key);
CREATE INDEX sagas_open ON sagas (state, lease_until);
