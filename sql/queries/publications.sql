-- Upstream publication (federation publish): the outbox of IHIs whose state at a registry this one
-- publishes to may have changed, delivered by the publisher in order, at least once.

-- name: publication_add
-- Publish to $1 from now on (again, if it was stopped).
INSERT INTO publications AS p (target) VALUES ($1)
ON CONFLICT (target) DO UPDATE SET enabled = true, attempts = 0, next_attempt_at = NULL
RETURNING p.target;

-- name: publication_claim
-- Claim one publication with IHIs waiting whose wait is over, for $1 seconds, for worker $2.
WITH due AS (
    SELECT p.target FROM publications p
    WHERE p.enabled AND (p.next_attempt_at IS NULL OR p.next_attempt_at <= now())
      AND (p.lease_until IS NULL OR p.lease_until < now())
      AND EXISTS (SELECT 1 FROM publication_outbox o WHERE o.target = p.target)
    ORDER BY p.next_attempt_at NULLS FIRST
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE publications p SET lease_until = now() + make_interval(secs => $1), lease_owner = $2
FROM due WHERE p.target = due.target
RETURNING p.target, p.attempts;

-- name: publication_next
-- The oldest outbox rows of a publication (up to $2 distinct IHIs), with each IHI's state now: `active`
-- when it has an active `record` here, else `archived`, and what was last published for it.
WITH head AS (
    SELECT o.seq, o.ihi FROM publication_outbox o WHERE o.target = $1 ORDER BY o.seq LIMIT $2
)
SELECT max(h.seq) AS last_seq, h.ihi::text AS ihi,
       CASE WHEN EXISTS (SELECT 1 FROM records r WHERE r.ihi = h.ihi AND r.status = 'active' AND r.type = 'record')
            THEN 'active' ELSE 'archived' END AS wanted,
       (SELECT p.status FROM published p WHERE p.target = $1 AND p.ihi = h.ihi) AS published
FROM head h
GROUP BY h.ihi
ORDER BY max(h.seq);

-- name: publication_delivered
-- Rows up to $2 were delivered (their IHIs now stand at the target as $3/$4): forget them, remember
-- what was published, count, end the lease.
WITH gone AS (
    DELETE FROM publication_outbox WHERE target = $1 AND seq <= $2
), kept AS (
    INSERT INTO published AS p (target, ihi, status)
    SELECT $1, u.ihi, u.status FROM unnest($3::bpchar[], $4::text[]) AS u(ihi, status)
    ON CONFLICT (target, ihi) DO UPDATE SET status = excluded.status
)
UPDATE publications SET sent = sent + cardinality($3::bpchar[]), attempts = 0, next_attempt_at = NULL,
    lease_until = NULL, lease_owner = NULL, last_success_at = now()
WHERE target = $1 AND lease_owner = $5;

-- name: publication_failed
-- A delivery failed: try again after $2 seconds; the rows stay, in order.
UPDATE publications SET attempts = attempts + 1, next_attempt_at = now() + make_interval(secs => $2),
    last_error = $3, last_error_at = now(), lease_until = NULL, lease_owner = NULL
WHERE target = $1 AND lease_owner = $4;

-- name: publication_status
-- A publication's state, for the operator and tests.
SELECT p.target, p.enabled, p.sent, p.attempts, p.last_error, p.last_success_at,
       (SELECT count(*) FROM publication_outbox o WHERE o.target = p.target) AS waiting
FROM publications p WHERE p.target = $1;
