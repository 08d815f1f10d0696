-- Registrations update records in place, and history is indexed once per entry instead of twice.
--
-- Every accepted registration is an UPDATE of its record (migration 0009: a re-registration moves
-- the version and lastUpdated). `records` was filled to the brim (fillfactor 100), so an update
-- found no room on its row's page: the new version went to another page and every index of
-- `records` (the key, the record id, the service's) got an entry for it, each a random page of a
-- large index, and each such page, the first time it changes after a checkpoint, goes to the WAL
-- whole. With room left on every page (fillfactor 90: about two rows of a page of twenty), the
-- new version stays on its page and no index is touched (a HOT update: none of the columns a
-- registration changes is indexed); PostgreSQL prunes the old versions as it reads the page.
-- Pages already full keep no room until the table is rewritten (VACUUM FULL, or pg_repack online:
-- docs/deployment.md); a row updated once moves to a page with room and stays there.
--
-- History entries were indexed by patient (ihi, id) and by record (record_id, version): two random
-- pages per entry. One index (ihi, record_id, version) serves both readings: a patient's history
-- (its entries, sorted by id afterwards: tens per patient) and a record's versions, found through
-- the record's patient (a record id never changes patient: a move changes its service only;
-- sql/queries/records.sql, get_record_version and get_record_versions).
--
-- Measured in the database alone (python -m tests.bench.updates: 2,000,000 records, status changes
-- by put_record() at random, each round after a checkpoint; docs/benchmarks.md, "Room for updates"):
-- WAL per change 19.4–25.9 kB → 11.0–11.1 kB, every update HOT, the records' bulk insert in SQL
-- 40,275 → 52,767 records/s.

ALTER TABLE records SET (fillfactor = 90);

CREATE INDEX record_history_patient_record_idx ON record_history (ihi, record_id, version);
DROP INDEX record_history_ihi_idx;
DROP INDEX record_history_record_idx;
