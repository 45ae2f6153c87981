-- Queries the gateway held in its queue before handing them to a backend: how long they waited
-- (ms) and the id their client saw while they waited.
-- One statement: MySQL commits each ALTER on its own, and both columns come or neither does.
ALTER TABLE te_query_history ADD COLUMN queued_ms BIGINT, ADD COLUMN queued_id VARCHAR(128);
