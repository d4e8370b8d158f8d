-- Named queries of the API token table, both dialects.

-- name: token_insert
INSERT INTO api_tokens (name, token_digest, role, facilities, created_at, expires_at)
VALUES (:name, :token_digest, :role, :facilities, :created_at, :expires_at)

-- name: token_delete_revoked
DELETE FROM api_tokens WHERE name = :name AND revoked_at IS NOT NULL

-- name: token_by_digest
SELECT name, role, facilities, token_digest, created_at, expires_at, revoked_at
FROM api_tokens WHERE token_digest = :token_digest

-- name: token_by_name
SELECT name, role, facilities, token_digest, created_at, expires_at, revoked_at
FROM api_tokens WHERE name = :name

-- name: token_list
SELECT name, role, facilities, token_digest, created_at, expires_at, revoked_at
FROM api_tokens ORDER BY name

-- name: token_revoke
UPDATE api_tokens SET revoked_at = :revoked_at WHERE name = :name AND revoked_at IS NULL
