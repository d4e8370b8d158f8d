-- Named queries of the workflow tables (worklist, MPPS, tracking, events), both dialects.

-- name: item_insert
INSERT INTO worklist_items (item_uid, study_uid, accession_number, patient_id,
    issuer_of_patient_id, patient_name, patient_name_norm, patient_birth_date, patient_sex,
    referring_physician_name, referring_physician_name_norm, requested_procedure_id, status,
    document, created_at, updated_at)
VALUES (:item_uid, :study_uid, :accession_number, :patient_id, :issuer_of_patient_id,
    :patient_name, :patient_name_norm, :patient_birth_date, :patient_sex,
    :referring_physician_name, :referring_physician_name_norm, :requested_procedure_id, :status,
    :document, :now, :now)
RETURNING id

-- name: item_update
UPDATE worklist_items SET study_uid = :study_uid, accession_number = :accession_number,
    patient_id = :patient_id, issuer_of_patient_id = :issuer_of_patient_id,
    patient_name = :patient_name, patient_name_norm = :patient_name_norm,
    patient_birth_date = :patient_birth_date, patient_sex = :patient_sex,
    referring_physician_name = :referring_physician_name,
    referring_physician_name_norm = :referring_physician_name_norm,
    requested_procedure_id = :requested_procedure_id, status = :status, document = :document,
    updated_at = :now
WHERE id = :id

-- name: item_by_uid
SELECT id, item_uid, document, status, created_at, updated_at FROM worklist_items
WHERE item_uid = :item_uid

-- name: item_by_id
SELECT id, item_uid, document, status, created_at, updated_at FROM worklist_items WHERE id = :id

-- name: item_set_status
UPDATE worklist_items SET status = :status, updated_at = :now WHERE id = :id

-- name: item_by_study
SELECT id FROM worklist_items WHERE study_uid = :study_uid ORDER BY id DESC LIMIT 1

-- name: item_by_accession
SELECT id FROM worklist_items WHERE accession_number = :accession_number
    AND accession_number <> '' AND status <> 'DISCONTINUED' ORDER BY id DESC LIMIT 1

-- name: steps_of_item
SELECT id, step_id, status FROM worklist_steps WHERE item_fk = :item_fk ORDER BY position

-- name: step_insert
INSERT INTO worklist_steps (item_fk, position, step_id, modality, station_ae_title,
    station_name, start_date, start_time, performing_physician_name,
    performing_physician_name_norm, location, status, updated_at)
VALUES (:item_fk, :position, :step_id, :modality, :station_ae_title, :station_name,
    :start_date, :start_time, :performing_physician_name, :performing_physician_name_norm,
    :location, :status, :now)

-- name: steps_delete
DELETE FROM worklist_steps WHERE item_fk = :item_fk

-- name: step_set_status
UPDATE worklist_steps SET status = :status, updated_at = :now WHERE id = :id

-- name: step_by_study
SELECT s.id, s.item_fk, s.status FROM worklist_steps s JOIN worklist_items w ON s.item_fk = w.id
WHERE w.study_uid = :study_uid AND s.step_id = :step_id

-- name: step_by_accession
SELECT s.id, s.item_fk, s.status FROM worklist_steps s JOIN worklist_items w ON s.item_fk = w.id
WHERE w.accession_number = :accession_number AND w.accession_number <> ''
    AND s.step_id = :step_id

-- name: mpps_insert
INSERT INTO mpps (sop_uid, status, study_uid, item_fk, step_id, dataset, created_at, updated_at)
VALUES (:sop_uid, :status, :study_uid, :item_fk, :step_id, :dataset, :now, :now)

-- name: mpps_by_uid
SELECT id, sop_uid, status, study_uid, item_fk, step_id, dataset, created_at, updated_at
FROM mpps WHERE sop_uid = :sop_uid

-- name: mpps_update
UPDATE mpps SET status = :status, dataset = :dataset, updated_at = :now
WHERE id = :id AND status = :old_status

-- name: mpps_of_item
SELECT sop_uid, status, step_id, updated_at FROM mpps WHERE item_fk = :item_fk ORDER BY id

-- name: event_insert
INSERT INTO workflow_events (kind, subject, payload, created_at)
VALUES (:kind, :subject, :payload, :now)
RETURNING id

-- name: delivery_insert
INSERT INTO webhook_deliveries (delivery_id, event_fk, url, status, attempts, next_attempt_at)
VALUES (:delivery_id, :event_fk, :url, 'pending', 0, :now)
ON CONFLICT (event_fk, url) DO NOTHING

-- name: events_after
SELECT id, kind, subject, payload, created_at FROM workflow_events
WHERE id > :after ORDER BY id LIMIT :limit

-- name: events_last_id
SELECT COALESCE(MAX(id), 0) FROM workflow_events

-- name: deliveries_due
SELECT d.id, d.delivery_id, d.url, d.attempts, d.next_attempt_at, e.id, e.kind, e.subject,
    e.payload, e.created_at
FROM webhook_deliveries d JOIN workflow_events e ON d.event_fk = e.id
WHERE d.status = 'pending' AND d.next_attempt_at <= :now
ORDER BY d.next_attempt_at, d.id LIMIT :limit

-- name: delivery_claim
UPDATE webhook_deliveries SET next_attempt_at = :lease_until, attempts = attempts + 1
WHERE id = :id AND status = 'pending' AND next_attempt_at = :expected

-- name: delivery_done
UPDATE webhook_deliveries SET status = 'delivered', delivered_at = :now, last_error = ''
WHERE id = :id

-- name: delivery_retry
UPDATE webhook_deliveries SET status = :status, next_attempt_at = :next_attempt_at,
    last_error = :error
WHERE id = :id AND status = 'pending'

-- name: deliveries_summary
SELECT status, COUNT(*) FROM webhook_deliveries GROUP BY status

-- name: tracking_changes
SELECT st.study_uid, st.accession_number, st.num_instances, st.updated_at, t.id,
    t.seen_updated_at, t.item_fk, t.stable_at
FROM studies st LEFT JOIN study_tracking t ON t.study_uid = st.study_uid
WHERE st.updated_at >= :since AND (t.id IS NULL OR t.seen_updated_at <> st.updated_at)
ORDER BY st.updated_at

-- name: tracking_insert
INSERT INTO study_tracking (study_uid, item_fk, num_instances, seen_updated_at, last_change_at,
    created_at)
VALUES (:study_uid, :item_fk, :num_instances, :seen, :seen, :now)
ON CONFLICT (study_uid) DO NOTHING

-- name: tracking_update
UPDATE study_tracking SET item_fk = :item_fk, num_instances = :num_instances,
    seen_updated_at = :seen, last_change_at = :seen, stable_at = NULL
WHERE id = :id AND seen_updated_at = :old_seen

-- name: tracking_unstable
SELECT id, study_uid, item_fk, num_instances, last_change_at FROM study_tracking
WHERE stable_at IS NULL AND last_change_at <= :cutoff ORDER BY last_change_at

-- name: tracking_mark_stable
UPDATE study_tracking SET stable_at = :now
WHERE id = :id AND stable_at IS NULL AND last_change_at = :last_change_at

-- name: tracking_by_study
SELECT t.study_uid, t.item_fk, t.num_instances, t.last_change_at, t.stable_at, t.created_at
FROM study_tracking t WHERE t.study_uid = :study_uid AND EXISTS (SELECT 1 FROM studies st WHERE st.study_uid = t.study_uid)

-- name: tracking_recent
SELECT t.study_uid, t.item_fk, t.num_instances, t.last_change_at, t.stable_at, t.created_at
FROM study_tracking t WHERE EXISTS (SELECT 1 FROM studies st WHERE st.study_uid = t.study_uid)
ORDER BY t.last_change_at DESC, t.id DESC LIMIT :limit OFFSET :offset

-- name: tracking_of_item
SELECT t.study_uid, t.item_fk, t.num_instances, t.last_change_at, t.stable_at, t.created_at
FROM study_tracking t WHERE t.item_fk = :item_fk AND EXISTS (SELECT 1 FROM studies st WHERE st.study_uid = t.study_uid) ORDER BY t.id
