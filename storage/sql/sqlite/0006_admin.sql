-- Noctis PACS index, version 6 (SQLite): remote AEs managed at run time, jobs.
-- Keep logically equal to postgresql/0006.
CREATE TABLE remotes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    ae_title TEXT NOT NULL DEFAULT '',
    host TEXT NOT NULL DEFAULT '',
    port INTEGER NOT NULL DEFAULT 0,
    url TEXT NOT NULL DEFAULT '',
    username TEXT NOT NULL DEFAULT '',
    secret TEXT NOT NULL DEFAULT '',
    permissions TEXT NOT NULL DEFAULT '',
    check_host INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX ix_remotes_ae_title ON remotes (ae_title);

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    destination TEXT NOT NULL DEFAULT '',
    request TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    done INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    next_attempt_at TEXT NOT NULL,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX ix_jobs_due ON jobs (state, next_attempt_at);

CREATE TABLE job_items (
    id INTEGER PRIMARY KEY,
    job_fk INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    sop_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL,
    UNIQUE (job_fk, sop_uid)
);
CREATE INDEX ix_job_items_state ON job_items (job_fk, state);
