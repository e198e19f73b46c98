-- Accounts and sessions. Usernames are unique case-insensitively; a deleted account keeps its
-- row (status = 'deleted') and its username.
CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    email         TEXT    NOT NULL,
    phone         TEXT    NOT NULL DEFAULT '',
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    status        TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'banned', 'deleted')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- Refresh tokens, stored as SHA-256 hashes. A family is one login session: every rotation adds
-- a token to it; presenting a rotated token revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    family_id  TEXT    NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES accounts (id),
    status     TEXT    NOT NULL CHECK (status IN ('active', 'rotated', 'revoked')),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
