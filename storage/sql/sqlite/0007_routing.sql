-- Noctis PACS index, version 7 (SQLite): routing rules, their inbox and the durable
-- delivery queue with its dead letters. Keep logically equal to postgresql/0007.
CREATE TABLE route_rules (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    on_event TEXT NOT NULL,
    matches TEXT NOT NULL,
    destinations TEXT NOT NULL,
    max_attempts INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE route_inbox (
    id INTEGER PRIMARY KEY,
    on_event TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL DEFAULT '',
    calling_ae TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

CREATE TABLE route_queue (
    id INTEGER PRIMARY KEY,
    rule_name TEXT NOT NULL,
    destination TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    next_attempt_at TEXT NOT NULL,
    lease_owner TEXT NOT NULL DEFAULT '',
    lease_until TEXT NOT NULL DEFAULT '',
    last_error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX ix_route_queue_due ON route_queue (state, next_attempt_at);
CREATE INDEX ix_route_queue_group ON route_queue (destination, study_uid, id);
