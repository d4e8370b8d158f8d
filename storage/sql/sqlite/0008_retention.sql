-- Noctis PACS index, version 8 (SQLite): retention policies and protected studies.
-- Keep logically equal to postgresql/0008.
CREATE TABLE retention_policies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    max_age_days INTEGER NOT NULL DEFAULT 0,
    basis TEXT NOT NULL,
    quota_bytes BIGINT NOT NULL DEFAULT 0,
    facility TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
);

CREATE TABLE protected_studies (
    id INTEGER PRIMARY KEY,
    study_uid TEXT NOT NULL UNIQUE,
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
