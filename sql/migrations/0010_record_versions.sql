-- Versions of a record (FHIR vread and instance history) are read from record_history by record id;
-- type history by the services a caller may see, newest first.

CREATE INDEX record_history_record_idx ON record_history (record_id, version);
CREATE INDEX record_history_service_idx ON record_history (service_id, id);
