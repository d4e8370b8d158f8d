-- Noctis PACS index, version 5 (SQLite): API tokens.
-- Keep logically equal to postgresql/0005.
-- Only the SHA-256 digest of each secret is kept (noctis_pacs/core/tokens.py says why).
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_digest TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    facilities TEXT NOT NULL DEFAULT '[]',
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
