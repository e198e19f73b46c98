-- Logins look an account up by its canonical name (ASCII lower case; usernames are
-- [A-Za-z0-9_]) with an exact match on a unique index, the same rule as on MySQL.
ALTER TABLE accounts ADD COLUMN username_key TEXT NOT NULL DEFAULT '';
UPDATE accounts SET username_key = LOWER(username);
CREATE UNIQUE INDEX accounts_username_key ON accounts (username_key);

-- A session (refresh-token family) ends at its absolute expiry whatever its rotations; families
-- started before this column existed end when their current token does.
ALTER TABLE refresh_tokens ADD COLUMN family_expires_at INTEGER NOT NULL DEFAULT 0;
UPDATE refresh_tokens SET family_expires_at = expires_at;

-- Every revocation, written in the transaction of the change that causes it; the shared cache
-- holds a copy that auth rebuilds from here after a cache restart. kind: token (subject = jti),
-- session (subject = family id), user (subject = user id, tokens issued at or before cutoff).
CREATE TABLE revocations (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT    NOT NULL CHECK (kind IN ('token', 'session', 'user')),
    subject    TEXT    NOT NULL,
    cutoff     INTEGER NOT NULL DEFAULT 0,
    expires_at INTEGER NOT NULL
);
CREATE INDEX revocations_by_expiry ON revocations (expires_at);
