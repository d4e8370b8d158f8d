-- Named queries shared by both dialects (``:name`` parameters).

-- name: patient_insert
INSERT INTO patients (patient_id, issuer_of_patient_id, patient_name, patient_name_norm,
    patient_name_words, patient_birth_date, patient_sex)
VALUES (:patient_id, :issuer_of_patient_id, :patient_name, :patient_name_norm,
    :patient_name_words, :patient_birth_date, :patient_sex)
ON CONFLICT (patient_id, issuer_of_patient_id) DO UPDATE SET
    patient_name = excluded.patient_name, patient_name_norm = excluded.patient_name_norm,
    patient_name_words = excluded.patient_name_words,
    patient_birth_date = excluded.patient_birth_date, patient_sex = excluded.patient_sex
RETURNING id

-- name: patient_count_instance
-- An existing patient's row read and an instance counted in it (as study_count_instance).
UPDATE patients SET num_instances = num_instances + 1
WHERE patient_id = :patient_id AND issuer_of_patient_id = :issuer_of_patient_id
RETURNING id

-- name: study_insert
INSERT INTO studies (patient_fk, study_uid, study_date, study_time, accession_number, study_id,
    referring_physician_name, referring_physician_name_norm, study_description, timezone_offset,
    facility, created_at, updated_at)
VALUES (:patient_fk, :study_uid, :study_date, :study_time, :accession_number, :study_id,
    :referring_physician_name, :referring_physician_name_norm, :study_description,
    :timezone_offset, :facility, :now, :now)
ON CONFLICT (study_uid) DO UPDATE SET
    study_date = excluded.study_date, study_time = excluded.study_time,
    accession_number = excluded.accession_number, study_id = excluded.study_id,
    referring_physician_name = excluded.referring_physician_name,
    referring_physician_name_norm = excluded.referring_physician_name_norm,
    study_description = excluded.study_description, timezone_offset = excluded.timezone_offset,
    updated_at = excluded.updated_at
RETURNING id, patient_fk, modalities, sop_classes, num_instances

-- name: study_count_instance
-- An existing study's row read and its instance counted at once (SQLite's upsert leaves an
-- unchanged row alone: storage/index.py); RETURNING the count before this instance.
UPDATE studies SET num_instances = num_instances + 1, updated_at = :now
WHERE study_uid = :study_uid
RETURNING id, patient_fk, modalities, sop_classes, num_instances - 1

-- name: series_insert
INSERT INTO series (study_fk, series_uid, modality, series_number, series_description,
    series_date, series_time, body_part_examined, station_name, institution_name,
    pps_start_date, pps_start_time, requested_procedure_id, scheduled_procedure_step_id)
VALUES (:study_fk, :series_uid, :modality, :series_number, :series_description, :series_date,
    :series_time, :body_part_examined, :station_name, :institution_name, :pps_start_date,
    :pps_start_time, :requested_procedure_id, :scheduled_procedure_step_id)
ON CONFLICT (series_uid) DO UPDATE SET
    modality = excluded.modality, series_number = excluded.series_number,
    series_description = excluded.series_description, series_date = excluded.series_date,
    series_time = excluded.series_time, body_part_examined = excluded.body_part_examined,
    station_name = excluded.station_name, institution_name = excluded.institution_name,
    pps_start_date = excluded.pps_start_date, pps_start_time = excluded.pps_start_time,
    requested_procedure_id = excluded.requested_procedure_id,
    scheduled_procedure_step_id = excluded.scheduled_procedure_step_id
RETURNING id, study_fk, num_instances

-- name: series_count_instance
UPDATE series SET num_instances = num_instances + 1 WHERE series_uid = :series_uid
RETURNING id, study_fk, num_instances - 1

-- name: instance_insert
INSERT INTO instances (series_fk, sop_uid, sop_class_uid, instance_number, rows, columns,
    bits_allocated, number_of_frames, content_date, content_time, acquisition_number,
    transfer_syntax_uid, specific_character_set, blob_key, blob_size, sha256, frames, metadata,
    origin_protocol, origin_ae, origin_host, received_at)
VALUES (:series_fk, :sop_uid, :sop_class_uid, :instance_number, :rows, :columns,
    :bits_allocated, :number_of_frames, :content_date, :content_time, :acquisition_number,
    :transfer_syntax_uid, :specific_character_set, :blob_key, :blob_size, :sha256, :frames,
    :metadata, :origin_protocol, :origin_ae, :origin_host, :received_at)

-- name: instance_by_sop
SELECT i.id, i.blob_key, i.sha256, i.series_fk, s.series_uid, st.study_uid
FROM instances i JOIN series s ON s.id = i.series_fk JOIN studies st ON st.id = s.study_fk
WHERE i.sop_uid = :sop_uid

-- name: study_uid_by_id
SELECT study_uid FROM studies WHERE id = :id

-- name: instance_delete
DELETE FROM instances WHERE id = :id

-- name: series_add_instances
UPDATE series SET num_instances = num_instances + :n WHERE id = :id

-- name: study_add
UPDATE studies SET num_instances = num_instances + :n, num_series = num_series + :s,
    updated_at = :now WHERE id = :id

-- name: patient_add
UPDATE patients SET num_instances = num_instances + :n, num_series = num_series + :s,
    num_studies = num_studies + :st WHERE id = :id

-- name: study_modalities
SELECT DISTINCT modality FROM series WHERE study_fk = :id AND num_instances > 0 ORDER BY modality

-- name: study_sop_classes
SELECT DISTINCT i.sop_class_uid FROM instances i JOIN series s ON i.series_fk = s.id
WHERE s.study_fk = :id ORDER BY i.sop_class_uid

-- name: study_set_lists
UPDATE studies SET modalities = :modalities, sop_classes = :sop_classes WHERE id = :id

-- name: series_delete_if_empty
DELETE FROM series WHERE id = :id AND num_instances <= 0

-- name: study_delete_if_empty
DELETE FROM studies WHERE id = :id AND num_instances <= 0

-- name: patient_delete_if_empty
DELETE FROM patients WHERE id = :id AND num_instances <= 0

-- name: series_parents
SELECT s.study_fk, st.patient_fk FROM series s JOIN studies st ON s.study_fk = st.id
WHERE s.id = :id

-- name: instance_locator
SELECT i.sop_uid, i.sop_class_uid, i.transfer_syntax_uid, i.blob_key, i.blob_size, i.frames,
    s.series_uid, st.study_uid, i.number_of_frames
FROM instances i JOIN series s ON i.series_fk = s.id JOIN studies st ON s.study_fk = st.id

-- name: stats
SELECT (SELECT COUNT(*) FROM patients), (SELECT COUNT(*) FROM studies),
    (SELECT COUNT(*) FROM series), (SELECT COUNT(*) FROM instances),
    (SELECT COALESCE(SUM(blob_size), 0) FROM instances)
