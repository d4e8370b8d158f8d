-- Named queries of the retention tables (migration 0008).

-- name: policy_list
SELECT name, max_age_days, basis, quota_bytes, facility, modality, enabled
FROM retention_policies ORDER BY name

-- name: policy_exists
SELECT 1 FROM retention_policies WHERE name = :name

-- name: policy_insert
INSERT INTO retention_policies (name, max_age_days, basis, quota_bytes, facility, modality,
    enabled, created_at)
VALUES (:name, :max_age_days, :basis, :quota_bytes, :facility, :modality, :enabled, :now)

-- name: policy_delete
DELETE FROM retention_policies WHERE name = :name

-- name: protect
INSERT INTO protected_studies (study_uid, reason, created_at) VALUES (:study_uid, :reason, :now)

-- name: is_protected
SELECT reason FROM protected_studies WHERE study_uid = :study_uid

-- name: unprotect
DELETE FROM protected_studies WHERE study_uid = :study_uid

-- name: protected_list
SELECT study_uid, reason, created_at FROM protected_studies ORDER BY study_uid

-- name: candidates
SELECT st.study_uid, st.study_date, st.created_at, COALESCE(SUM(i.blob_size), 0), st.facility,
    st.modalities, MAX(p.study_uid)
FROM studies st
    LEFT JOIN series s ON s.study_fk = st.id
    LEFT JOIN instances i ON i.series_fk = s.id
    LEFT JOIN protected_studies p ON p.study_uid = st.study_uid
GROUP BY st.id, st.study_uid, st.study_date, st.created_at, st.facility, st.modalities
