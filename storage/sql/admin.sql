-- Named queries of the admin tables (migration 0006): remotes and jobs.

-- name: remote_list
SELECT name, kind, ae_title, host, port, url, username, secret, permissions, check_host
FROM remotes ORDER BY name

-- name: remote_by_name
SELECT name, kind, ae_title, host, port, url, username, secret, permissions, check_host
FROM remotes WHERE name = :name

-- name: remote_by_ae_title
SELECT name, kind, ae_title, host, port, url, username, secret, permissions, check_host
FROM remotes WHERE ae_title = :ae_title AND kind = 'dimse' ORDER BY name

-- name: remote_insert
INSERT INTO remotes (name, kind, ae_title, host, port, url, username, secret, permissions,
    check_host, created_at, updated_at)
VALUES (:name, :kind, :ae_title, :host, :port, :url, :username, :secret, :permissions,
    :check_host, :now, :now)

-- name: remote_delete
DELETE FROM remotes WHERE name = :name

-- name: job_insert
INSERT INTO jobs (kind, state, destination, request, total, max_attempts, next_attempt_at,
    created_by, created_at, updated_at)
VALUES (:kind, 'queued', :destination, :request, :total, :max_attempts, :now, :created_by,
    :now, :now)

-- name: job_item_insert
INSERT INTO job_items (job_fk, sop_uid, state, updated_at)
VALUES (:job_fk, :sop_uid, 'pending', :now)

-- name: job_columns
SELECT id, kind, state, destination, request, total, done, failed, attempts, max_attempts,
    next_attempt_at, error, created_by, created_at, updated_at
FROM jobs

-- name: job_due
SELECT id FROM jobs
WHERE (state = 'queued' AND next_attempt_at <= :now)
    OR (state = 'running' AND lease_until < :now)
ORDER BY next_attempt_at, id LIMIT 10

-- name: job_claim
UPDATE jobs SET state = 'running', lease_owner = :owner, lease_until = :lease_until,
    attempts = attempts + 1, updated_at = :now
WHERE id = :id AND ((state = 'queued' AND next_attempt_at <= :now)
    OR (state = 'running' AND lease_until < :now))

-- name: job_renew
UPDATE jobs SET lease_until = :lease_until, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND state = 'running'

-- name: job_pending_items
SELECT sop_uid FROM job_items WHERE job_fk = :id AND state <> 'sent' ORDER BY id

-- name: job_item_outcome
UPDATE job_items SET state = :state, detail = :detail, updated_at = :now
WHERE job_fk = :id AND sop_uid = :sop_uid

-- name: job_counts
SELECT state, COUNT(*) FROM job_items WHERE job_fk = :id GROUP BY state

-- name: job_progress
UPDATE jobs SET done = :done, failed = :failed, updated_at = :now WHERE id = :id

-- name: job_finish
UPDATE jobs SET state = :state, error = :error, next_attempt_at = :next_attempt_at,
    lease_owner = '', lease_until = '', done = :done, failed = :failed, updated_at = :now
WHERE id = :id AND lease_owner = :owner AND state = 'running'

-- name: job_state
SELECT state FROM jobs WHERE id = :id

-- name: job_cancel
UPDATE jobs SET state = 'cancelled', updated_at = :now
WHERE id = :id AND state IN ('queued', 'running')

-- name: job_retry
UPDATE jobs SET state = 'queued', next_attempt_at = :now, attempts = 0, error = '',
    lease_owner = '', lease_until = '', updated_at = :now
WHERE id = :id AND state IN ('failed', 'cancelled')

-- name: job_items_of
SELECT sop_uid, state, detail, updated_at FROM job_items WHERE job_fk = :id ORDER BY id
