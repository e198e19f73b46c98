-- Accounts and sessions. Usernames are unique case-insensitively; a deleted account keeps its
-- row (status = 'deleted') and its username.
CREATE TABLE accounts (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    username      VARCHAR(31)  NOT NULL,
    email         VARCHAR(254) NOT NULL,
    phone         VARCHAR(20)  NOT NULL DEFAULT '',
    password_hash VARCHAR(255) NOT NULL,
    role          VARCHAR(16)  NOT NULL DEFAULT 'user',
    status        VARCHAR(16)  NOT NULL DEFAULT 'active',
    created_at    BIGINT       NOT NULL,
    updated_at    BIGINT       NOT NULL,
    UNIQUE KEY accounts_username (username),
    CONSTRAINT accounts_role CHECK (role IN ('user', 'admin')),
    CONSTRAINT accounts_status CHECK (status IN ('active', 'banned', 'deleted'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;

-- Refresh tokens, stored as SHA-256 hashes. A family is one login session: every rotation adds
-- a token to it; presenting a rotated token revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash CHAR(64)    COLLATE utf8mb4_bin NOT NULL PRIMARY KEY,
    family_id  VARCHAR(36) COLLATE utf8mb4_bin NOT NULL,
    user_id    BIGINT      NOT NULL,
    status     VARCHAR(16) NOT NULL,
    created_at BIGINT      NOT NULL,
    expires_at BIGINT      NOT NULL,
    KEY refresh_tokens_by_family (family_id),
    KEY refresh_tokens_by_user (user_id),
    CONSTRAINT refresh_tokens_account FOREIGN KEY (user_id) REFERENCES accounts (id),
    CONSTRAINT refresh_tokens_status CHECK (status IN ('active', 'rotated', 'revoked'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
