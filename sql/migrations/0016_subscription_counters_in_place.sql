-- A registration that a subscription matches bumps the subscription's event counter in place.
--
-- Every event a registration makes for a subscription updates that subscription's row
-- (events_since_start + 1). The delivery index (subscriptions_due_idx) named events_since_start in
-- its predicate (delivered_through < events_since_start: something is left to send), so no such
-- update could be HOT: each wrote a new version of the row elsewhere and an entry in every one of
-- the table's eight indexes, for a row whose indexed values had not changed. The predicate now
-- names `undelivered`, a stored generated column with the same meaning, which PostgreSQL itself
-- keeps equal to `delivered_through < events_since_start` in every write (no statement can make
-- them disagree). It changes when a subscription goes from nothing to send to something (or back),
-- not on its later events, so those updates stay on the row's page and touch no index (HOT), given
-- room on the page: the table keeps a fifth of every page free (rewritten with it by this
-- migration, as adding a stored column rewrites the table).
--
-- The worker's claim (sql/queries/subscriptions.sql, claim_due) names the column too, so that its
-- plan still uses the index. Measured (docs/benchmarks.md, "Registrations as events", run 7): a
-- tenth less WAL per subscribed re-registration; its rate within the benchmark's noise.

ALTER TABLE subscriptions SET (fillfactor = 80);
ALTER TABLE subscriptions
    ADD COLUMN undelivered boolean GENERATED ALWAYS AS (delivered_through < events_since_start) STORED;

DROP INDEX subscriptions_due_idx;
CREATE INDEX subscriptions_due_idx ON subscriptions (next_attempt_at NULLS FIRST)
    WHERE deleted_at IS NULL
      AND ((status = 'requested' AND handshake_pending)
           OR (status = 'active' AND (inflight_kind IS NOT NULL OR undelivered)));
