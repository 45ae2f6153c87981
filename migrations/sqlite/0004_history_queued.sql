-- Queries the gateway held in its queue before handing them to a backend: how long they waited
-- (ms) and the id their client saw while they waited.
ALTER TABLE te_query_history ADD COLUMN queued_ms BIGINT;
ALTER TABLE te_query_history ADD COLUMN queued_id VARCHAR(128);
