-- Noctis PACS index, version 2 (SQLite): worklist, MPPS, study tracking, events, webhooks.
-- Keep logically equal to postgresql/0002.
CREATE TABLE worklist_items (
    id INTEGER PRIMARY KEY,
    item_uid TEXT NOT NULL UNIQUE,
    study_uid TEXT NOT NULL,
    accession_number TEXT NOT NULL DEFAULT '',
    patient_id TEXT NOT NULL DEFAULT '',
    issuer_of_patient_id TEXT NOT NULL DEFAULT '',
    patient_name TEXT NOT NULL DEFAULT '',
    patient_name_norm TEXT NOT NULL DEFAULT '',
    patient_birth_date TEXT NOT NULL DEFAULT '',
    patient_sex TEXT NOT NULL DEFAULT '',
    referring_physician_name TEXT NOT NULL DEFAULT '',
    referring_physician_name_norm TEXT NOT NULL DEFAULT '',
    requested_procedure_id TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    document TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX ix_worklist_items_study ON worklist_items (study_uid);
CREATE INDEX ix_worklist_items_accession ON worklist_items (accession_number);
CREATE INDEX ix_worklist_items_patient_id ON worklist_items (patient_id);
CREATE INDEX ix_worklist_items_name_norm ON worklist_items (patient_name_norm);
CREATE INDEX ix_worklist_items_status ON worklist_items (status);

CREATE TABLE worklist_steps (
    id INTEGER PRIMARY KEY,
    item_fk INTEGER NOT NULL REFERENCES worklist_items (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    modality TEXT NOT NULL DEFAULT '',
    station_ae_title TEXT NOT NULL DEFAULT '\',
    station_name TEXT NOT NULL DEFAULT '',
    start_date TEXT NOT NULL DEFAULT '',
    start_time TEXT NOT NULL DEFAULT '',
    performing_physician_name TEXT NOT NULL DEFAULT '',
    performing_physician_name_norm TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (item_fk, step_id)
);
CREATE INDEX ix_worklist_steps_start ON worklist_steps (start_date, start_time);
CREATE INDEX ix_worklist_steps_modality ON worklist_steps (modality);
CREATE INDEX ix_worklist_steps_status ON worklist_steps (status);

CREATE TABLE mpps (
    id INTEGER PRIMARY KEY,
    sop_uid TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    study_uid TEXT NOT NULL DEFAULT '',
    item_fk INTEGER REFERENCES worklist_items (id) ON DELETE SET NULL,
    step_id TEXT NOT NULL DEFAULT '',
    dataset TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX ix_mpps_item ON mpps (item_fk);

CREATE TABLE study_tracking (
    id INTEGER PRIMARY KEY,
    study_uid TEXT NOT NULL UNIQUE,
    item_fk INTEGER REFERENCES worklist_items (id) ON DELETE SET NULL,
    num_instances INTEGER NOT NULL DEFAULT 0,
    seen_updated_at TEXT NOT NULL,
    last_change_at TEXT NOT NULL,
    stable_at TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX ix_study_tracking_item ON study_tracking (item_fk);
CREATE INDEX ix_study_tracking_unstable ON study_tracking (stable_at, last_change_at);

CREATE TABLE workflow_events (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX ix_workflow_events_created ON workflow_events (created_at);

CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY,
    delivery_id TEXT NOT NULL UNIQUE,
    event_fk INTEGER NOT NULL REFERENCES workflow_events (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    delivered_at TEXT,
    UNIQUE (event_fk, url)
);
CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
