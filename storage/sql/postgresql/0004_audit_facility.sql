-- Noctis PACS index, version 4 (PostgreSQL): the audit trail and each study's facility.
-- Keep logically equal to sqlite/0004.

-- One row per audited operation, hash chained: ``hash`` covers the record's fields and
-- ``prev_hash``, the hash of the record before it (storage/audit_log.py).
CREATE TABLE audit_records (
    seq BIGINT PRIMARY KEY,
    event_time TEXT NOT NULL,
    principal TEXT NOT NULL DEFAULT '',
    principal_kind TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT '',
    action TEXT NOT NULL,
    study_uids TEXT NOT NULL DEFAULT '',
    series_uids TEXT NOT NULL DEFAULT '',
    sop_uids TEXT NOT NULL DEFAULT '',
    query_keys TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX ix_audit_records_time ON audit_records (event_time);
CREATE INDEX ix_audit_records_principal ON audit_records (principal);

-- Which records name a study (``audit --study``), covered by the hashed study_uids.
CREATE TABLE audit_studies (
    seq BIGINT NOT NULL REFERENCES audit_records (seq) ON DELETE CASCADE,
    study_uid TEXT NOT NULL,
    PRIMARY KEY (seq, study_uid)
);
CREATE INDEX ix_audit_studies_study ON audit_studies (study_uid);

-- The chain head, one row: appenders from every process take it in turn (its update
-- serialises them), so the chain has one order. ``base_*`` is where retention pruned.
CREATE TABLE audit_chain (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT NOT NULL,
    last_hash TEXT NOT NULL,
    base_seq BIGINT NOT NULL,
    base_hash TEXT NOT NULL
);
INSERT INTO audit_chain (id, last_seq, last_hash, base_seq, base_hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000',
        0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The facility a study belongs to (issue 13 point 4), set at ingest.
ALTER TABLE studies ADD COLUMN facility TEXT NOT NULL DEFAULT 'default';
CREATE INDEX ix_studies_facility ON studies (facility);

-- Worklist items and workflow events carry the facility of their study too, so MWL,
-- the workflow API and the event stream scope a principal as queries do.
ALTER TABLE worklist_items ADD COLUMN facility TEXT NOT NULL DEFAULT 'default';
CREATE INDEX ix_worklist_items_facility ON worklist_items (facility);
ALTER TABLE workflow_events ADD COLUMN facility TEXT NOT NULL DEFAULT 'default';
