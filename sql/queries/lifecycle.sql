-- Lifecycle commands (services retire, services move, records stale --archive, federation publish):
-- set-based chunks over IHI ranges, each chunk and its progress in one transaction. A range starts
-- after the cursor (0000000000000000 before the first chunk: below every IHI), so every statement
-- is an index range scan from where the job got to.

-- name: job_start
-- Start a job, or resume it: a running job keeps its parameters and progress (a rerun after a kill
-- resumes where the last committed chunk ended); a finished one starts afresh with $3 and total $4.
INSERT INTO lifecycle_jobs AS j (job_key, kind, params, total, state)
VALUES ($1, $2, $3::jsonb, $4, 'running')
ON CONFLICT (job_key) DO UPDATE
    SET params = CASE WHEN j.state = 'done' THEN excluded.params ELSE j.params END,
        total = CASE WHEN j.state = 'done' THEN excluded.total ELSE j.total END,
        cursor_ihi = CASE WHEN j.state = 'done' THEN NULL ELSE j.cursor_ihi END,
        processed = CASE WHEN j.state = 'done' THEN 0 ELSE j.processed END,
        started_at = CASE WHEN j.state = 'done' THEN now() ELSE j.started_at END,
        finished_at = NULL, state = 'running', runs = j.runs + 1, updated_at = now()
RETURNING j.job_key, j.params::text AS params, j.cursor_ihi::text AS cursor_ihi, j.processed, j.total, j.runs;

-- name: custom_chunk_plans
-- Plan the chunk's statements for their own range, never with a generic plan (see custom_batch_plans).
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: job_progress
-- A chunk's progress, in the chunk's transaction: $2 the last IHI of the chunk, $3 records it covered.
UPDATE lifecycle_jobs SET cursor_ihi = $2::bpchar, processed = processed + $3, updated_at = now()
WHERE job_key = $1;

-- name: job_done
-- The job went through every record.
UPDATE lifecycle_jobs SET state = 'done', finished_at = now(), updated_at = now() WHERE job_key = $1;

-- name: job_get
-- One job, as the operator or a test looks at it.
SELECT job_key, kind, params::text AS params, cursor_ihi::text AS cursor_ihi, processed, total, state, runs
FROM lifecycle_jobs WHERE job_key = $1;

-- name: service_records_count
-- How many records a service has (a job's total).
SELECT count(*) FROM records WHERE service_id = $1;

-- name: service_chunk_end
-- The last IHI of the next chunk of a service's records after $2 ($3 records); no row: none are left.
SELECT max(ihi)::text AS last, count(*) AS n
FROM (SELECT ihi FROM records WHERE service_id = $1 AND ihi > $2::bpchar
      ORDER BY ihi LIMIT $3) c
HAVING count(*) > 0;

-- name: retire_chunk
-- Archive the active records of service $1 with IHIs in ($2, $3], as the operator's decision
-- (reason $4; actor $5, $6). Removed and archived records stay as they are.
UPDATE records t SET
    status = 'archived', version = t.version + 1, last_updated = now(), change = 'status-changed',
    actor_client = $5, actor_service = $6, actor_admin = true, reason = $4, held = true, previous_service = NULL
WHERE t.service_id = $1 AND t.ihi > $2::bpchar AND t.ihi <= $3::bpchar AND t.status = 'active'
RETURNING t.ihi::text AS ihi, t.record_id;

-- The lookups at NEW carry the chunk's range too: whatever plan PostgreSQL picks (its statistics
-- may still say NEW is empty while it fills), it reads NEW's records of this chunk only.

-- name: move_chunk_merge
-- Of service $1's records with IHIs in ($3, $4], those whose IHI service $2 already holds a record for
-- stay with $1, archived (reason: moved, NEW's record stands); actor $5, $6.
UPDATE records t SET
    status = 'archived', version = t.version + 1, last_updated = now(), change = 'status-changed',
    actor_client = $5, actor_service = $6, actor_admin = true, reason = 'moved to ' || $2, held = true,
    previous_service = NULL
WHERE t.service_id = $1 AND t.ihi > $3::bpchar AND t.ihi <= $4::bpchar
  AND t.status <> 'archived'
  AND EXISTS (SELECT 1 FROM records n WHERE n.service_id = $2 AND n.ihi = t.ihi AND n.ihi > $3::bpchar
              AND n.ihi <= $4::bpchar)
RETURNING t.ihi::text AS ihi, t.record_id;

-- name: move_chunk
-- Re-point service $1's records with IHIs in ($3, $4] to service $2 (the record id, status and history
-- go with them; change `moved`, previous service $1); actor $5, $6.
UPDATE records t SET
    service_id = $2, version = t.version + 1, last_updated = now(), change = 'moved',
    actor_client = $5, actor_service = $6, actor_admin = true, reason = NULL, previous_service = $1
WHERE t.service_id = $1 AND t.ihi > $3::bpchar AND t.ihi <= $4::bpchar
  AND NOT EXISTS (SELECT 1 FROM records n WHERE n.service_id = $2 AND n.ihi = t.ihi AND n.ihi > $3::bpchar
                  AND n.ihi <= $4::bpchar)
RETURNING t.ihi::text AS ihi, t.record_id;

-- name: stale_report
-- Active records not registered since $1, per service.
SELECT s.service_id, s.name, s.status, count(*) AS records, min(r.last_updated) AS oldest
FROM records r JOIN services s ON s.service_id = r.service_id
WHERE r.status = 'active' AND r.last_updated < $1
GROUP BY s.service_id, s.name, s.status
ORDER BY count(*) DESC, s.service_id;

-- name: stale_chunk_end
-- The last IHI of the next chunk of stale records (active, not registered since $2) after $1 ($3 records).
SELECT max(ihi)::text AS last, count(*) AS n
FROM (SELECT ihi FROM records WHERE status = 'active' AND last_updated < $2 AND ihi > $1::bpchar
      ORDER BY ihi LIMIT $3) c
HAVING count(*) > 0;

-- name: stale_chunk
-- Archive the active records with IHIs in ($1, $2] not registered since $3 (reason $4; actor $5, $6).
-- Not an operator's hold: a later registration by the gateway makes the record active again.
UPDATE records t SET
    status = 'archived', version = t.version + 1, last_updated = now(), change = 'status-changed',
    actor_client = $5, actor_service = $6, actor_admin = true, reason = $4, held = false, previous_service = NULL
WHERE t.ihi > $1::bpchar AND t.ihi <= $2::bpchar AND t.status = 'active'
  AND t.last_updated < $3
RETURNING t.ihi::text AS ihi, t.record_id;

-- name: publish_chunk_end
-- The last IHI of the next chunk of IHIs with an active `record` here after $1 ($2 IHIs).
SELECT max(ihi)::text AS last, count(*) AS n
FROM (SELECT DISTINCT ihi FROM records WHERE status = 'active' AND type = 'record'
        AND ihi > $1::bpchar
      ORDER BY ihi LIMIT $2) c
HAVING count(*) > 0;

-- name: publish_chunk
-- Queue the IHIs with an active `record` here in ($2, $3] for the publication to $1 (the backfill).
INSERT INTO publication_outbox (target, ihi)
SELECT $1, d.ihi
FROM (SELECT DISTINCT ihi FROM records WHERE status = 'active' AND type = 'record'
        AND ihi > $2::bpchar AND ihi <= $3::bpchar) d
ORDER BY d.ihi
RETURNING ihi::text AS ihi, NULL::uuid AS record_id;

-- name: publishing_ihis_count
-- How many IHIs have an active `record` here (the backfill's total).
SELECT count(DISTINCT ihi) FROM records WHERE status = 'active' AND type = 'record';
