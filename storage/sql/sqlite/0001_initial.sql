-- Noctis PACS index, version 1 (SQLite).  Keep logically equal to postgresql/0001.
CREATE TABLE patients (
    id INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL DEFAULT '',
    issuer_of_patient_id TEXT NOT NULL DEFAULT '',
    patient_name TEXT NOT NULL DEFAULT '',
    patient_name_norm TEXT NOT NULL DEFAULT '',
    patient_name_words TEXT NOT NULL DEFAULT '',
    patient_birth_date TEXT NOT NULL DEFAULT '',
    patient_sex TEXT NOT NULL DEFAULT '',
    num_studies INTEGER NOT NULL DEFAULT 0,
    num_series INTEGER NOT NULL DEFAULT 0,
    num_instances INTEGER NOT NULL DEFAULT 0,
    UNIQUE (patient_id, issuer_of_patient_id)
);
CREATE INDEX ix_patients_name_norm ON patients (patient_name_norm);
CREATE INDEX ix_patients_birth_date ON patients (patient_birth_date);

CREATE TABLE studies (
    id INTEGER PRIMARY KEY,
    patient_fk INTEGER NOT NULL REFERENCES patients (id),
    study_uid TEXT NOT NULL UNIQUE,
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    accession_number TEXT NOT NULL DEFAULT '',
    study_id TEXT NOT NULL DEFAULT '',
    referring_physician_name TEXT NOT NULL DEFAULT '',
    referring_physician_name_norm TEXT NOT NULL DEFAULT '',
    study_description TEXT NOT NULL DEFAULT '',
    timezone_offset TEXT NOT NULL DEFAULT '',
    modalities TEXT NOT NULL DEFAULT '\',
    sop_classes TEXT NOT NULL DEFAULT '\',
    num_series INTEGER NOT NULL DEFAULT 0,
    num_instances INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX ix_studies_patient ON studies (patient_fk);
CREATE INDEX ix_studies_date ON studies (study_date, study_time);
CREATE INDEX ix_studies_accession ON studies (accession_number);
CREATE INDEX ix_studies_study_id ON studies (study_id);
CREATE INDEX ix_studies_updated ON studies (updated_at);

CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    study_fk INTEGER NOT NULL REFERENCES studies (id),
    series_uid TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL DEFAULT '',
    series_number INTEGER,
    series_description TEXT NOT NULL DEFAULT '',
    series_date TEXT NOT NULL DEFAULT '',
    series_time TEXT NOT NULL DEFAULT '',
    body_part_examined TEXT NOT NULL DEFAULT '',
    station_name TEXT NOT NULL DEFAULT '',
    institution_name TEXT NOT NULL DEFAULT '',
    pps_start_date TEXT NOT NULL DEFAULT '',
    pps_start_time TEXT NOT NULL DEFAULT '',
    requested_procedure_id TEXT NOT NULL DEFAULT '',
    scheduled_procedure_step_id TEXT NOT NULL DEFAULT '',
    num_instances INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ix_series_study ON series (study_fk);
CREATE INDEX ix_series_modality ON series (modality);

CREATE TABLE instances (
    id INTEGER PRIMARY KEY,
    series_fk INTEGER NOT NULL REFERENCES series (id),
    sop_uid TEXT NOT NULL UNIQUE,
    sop_class_uid TEXT NOT NULL,
    instance_number INTEGER,
    rows INTEGER,
    columns INTEGER,
    bits_allocated INTEGER,
    number_of_frames INTEGER,
    content_date TEXT NOT NULL DEFAULT '',
    content_time TEXT NOT NULL DEFAULT '',
    acquisition_number INTEGER,
    transfer_syntax_uid TEXT NOT NULL,
    specific_character_set TEXT NOT NULL DEFAULT '',
    blob_key TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    frames TEXT,
    metadata TEXT NOT NULL,
    origin_protocol TEXT NOT NULL DEFAULT '',
    origin_ae TEXT NOT NULL DEFAULT '',
    origin_host TEXT NOT NULL DEFAULT '',
    received_at TEXT NOT NULL
);
CREATE INDEX ix_instances_series ON instances (series_fk);
CREATE INDEX ix_instances_sop_class ON instances (sop_class_uid);
CREATE INDEX ix_instances_blob ON instances (blob_key);
