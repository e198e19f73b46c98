-- Logins look an account up by its canonical name (ASCII lower case; usernames are
-- [A-Za-z0-9_]) with an exact, binary match on a unique key: no LOWER() scan, and no collation
-- rule (PAD SPACE, accent folding) can make two spellings one account or one account two.
ALTER TABLE accounts ADD COLUMN username_key VARCHAR(31) COLLATE utf8mb4_bin NULL;
UPDATE accounts SET username_key = LOWER(username);
ALTER TABLE accounts MODIFY username_key VARCHAR(31) COLLATE utf8mb4_bin NOT NULL;
ALTER TABLE accounts ADD UNIQUE KEY accounts_username_key (username_key);

-- A session (refresh-token family) ends at its absolute expiry whatever its rotations; families
-- started before this column existed end when their current token does.
ALTER TABLE refresh_tokens ADD COLUMN family_expires_at BIGINT NOT NULL DEFAULT 0;
UPDATE refresh_tokens SET family_expires_at = expires_at;

-- Every revocation, written in the transaction of the change that causes it; the shared cache
-- holds a copy that auth rebuilds from here after a cache restart. kind: token (subject = jti),
-- session (subject = family id), user (subject = user id, tokens issued at or before cutoff).
CREATE TABLE revocations (
    id         BIGINT      NOT NULL AUTO_INCREMENT PRIMARY KEY,
    kind       VARCHAR(8)  NOT NULL,
    subject    VARCHAR(64) COLLATE utf8mb4_bin NOT NULL,
    cutoff     BIGINT      NOT NULL DEFAULT 0,
    expires_at BIGINT      NOT NULL,
    KEY revocations_by_expiry (expires_at),
    CONSTRAINT revocations_kind CHECK (kind IN ('token', 'session', 'user'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
