-- Versions of a record (FHIR vread and instance history) are read from record_history by record id
-- (record_history_record_idx, made by 0009 for the lifecycle's moves); type history by the services a
-- caller may see, newest first.

CREATE INDEX IF NOT EXISTS record_history_record_idx ON record_history (record_id, version);
CREATE INDEX record_history_service_idx ON record_history (service_id, id);
