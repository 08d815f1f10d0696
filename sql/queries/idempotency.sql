-- name: idempotency_try_lock
-- One request per (client, key) at a time: a transaction-scoped lock, so a concurrent duplicate is
-- told (409) rather than made to wait, and nothing outlives the transaction (safe behind PgBouncer).
SELECT pg_try_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 20960014));

-- name: idempotency_claim
-- Claim keys of one client for this transaction: new keys, and keys whose first answer is older
-- than 24 hours (forgotten). $2 keys and $3 fingerprints are parallel arrays. Returns the keys
-- claimed; a key another transaction is claiming waits for it, and is then not returned.
INSERT INTO idempotency_keys AS k (client_id, key, fingerprint, status, body)
SELECT $1, c.key, c.fingerprint, 0, ''::bytea
FROM unnest($2::text[], $3::bytea[]) AS c(key, fingerprint)
ORDER BY c.key
ON CONFLICT (client_id, key) DO UPDATE
    SET fingerprint = excluded.fingerprint, status = 0, body = ''::bytea, created_at = now()
    WHERE k.created_at < now() - interval '24 hours'
RETURNING k.key;

-- name: idempotency_answers
-- The first answers kept for keys of one client (those accepted within 24 hours).
SELECT key, fingerprint, status, body
FROM idempotency_keys
WHERE client_id = $1 AND key = ANY($2::text[]) AND created_at >= now() - interval '24 hours';

-- name: idempotency_answer
-- Keep the answers of the keys this transaction claimed. $2 keys, $3 statuses, $4 bodies.
UPDATE idempotency_keys k SET status = a.status, body = a.body
FROM unnest($2::text[], $3::smallint[], $4::bytea[]) AS a(key, status, body)
WHERE k.client_id = $1 AND k.key = a.key;

-- name: idempotency_purge
-- Forget first answers older than 24 hours (at most $1 at a time).
DELETE FROM idempotency_keys
WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE created_at < now() - interval '24 hours' LIMIT $1);
