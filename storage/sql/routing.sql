-- Named queries of the routing tables (migration 0007).

-- name: rule_list
SELECT name, on_event, matches, destinations, max_attempts, enabled FROM route_rules ORDER BY name

-- name: rule_insert
INSERT INTO route_rules (name, on_event, matches, destinations, max_attempts, enabled,
    created_at, updated_at)
VALUES (:name, :on_event, :matches, :destinations, :max_attempts, :enabled, :now, :now)

-- name: rule_delete
DELETE FROM route_rules WHERE name = :name

-- name: rule_exists
SELECT 1 FROM route_rules WHERE name = :name

-- name: any_enabled
SELECT on_event FROM route_rules WHERE enabled = 1 GROUP BY on_event

-- name: inbox_insert
INSERT INTO route_inbox (on_event, study_uid, sop_uid, calling_ae, created_at)
VALUES (:on_event, :study_uid, :sop_uid, :calling_ae, :now)

-- name: inbox_batch
SELECT id, on_event, study_uid, sop_uid, calling_ae FROM route_inbox ORDER BY id LIMIT :limit

-- name: inbox_take
DELETE FROM route_inbox WHERE id = :id

-- name: queue_insert
INSERT INTO route_queue (rule_name, destination, study_uid, sop_uid, state, max_attempts,
    next_attempt_at, created_at)
VALUES (:rule_name, :destination, :study_uid, :sop_uid, 'queued', :max_attempts, :now, :now)

-- name: queue_head
SELECT q.id, q.destination, q.study_uid FROM route_queue q
WHERE q.state = 'queued' AND q.next_attempt_at <= :now AND q.lease_until < :now
    AND q.id = (SELECT MIN(h.id) FROM route_queue h
        WHERE h.destination = q.destination AND h.study_uid = q.study_uid
            AND h.state = 'queued')
ORDER BY q.next_attempt_at, q.id LIMIT 1

-- name: queue_lease_group
UPDATE route_queue SET lease_owner = :owner, lease_until = :lease_until
WHERE destination = :destination AND study_uid = :study_uid AND state = 'queued'
    AND lease_until < :now AND id <= :last_id

-- name: queue_group_last
SELECT id FROM route_queue
WHERE destination = :destination AND study_uid = :study_uid AND state = 'queued'
ORDER BY id LIMIT 1 OFFSET :offset

-- name: queue_leased
SELECT id, rule_name, destination, study_uid, sop_uid, attempts, max_attempts
FROM route_queue WHERE lease_owner = :owner AND lease_until = :lease_until ORDER BY id

-- name: queue_done
DELETE FROM route_queue WHERE id = :id

-- name: queue_failed
UPDATE route_queue SET attempts = attempts + 1, last_error = :error,
    state = CASE WHEN attempts + 1 >= max_attempts THEN 'dead' ELSE 'queued' END,
    next_attempt_at = :next_attempt_at, lease_owner = '', lease_until = ''
WHERE id = :id

-- name: queue_release
UPDATE route_queue SET lease_owner = '', lease_until = '' WHERE id = :id

-- name: queue_summary
SELECT state, COUNT(*), MIN(created_at) FROM route_queue GROUP BY state

-- name: queue_dead
SELECT id, rule_name, destination, study_uid, sop_uid, attempts, last_error, created_at
FROM route_queue WHERE state = 'dead' ORDER BY id LIMIT :limit OFFSET :offset

-- name: dead_retry
UPDATE route_queue SET state = 'queued', attempts = 0, next_attempt_at = :now,
    lease_owner = '', lease_until = ''
WHERE state = 'dead' AND id = :id

-- name: dead_drop
DELETE FROM route_queue WHERE state = 'dead' AND id = :id

-- name: dead_ids
SELECT id FROM route_queue WHERE state = 'dead' ORDER BY id
