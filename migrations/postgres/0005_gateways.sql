-- Gateway instances that hold queries in their queue, and where other instances reach their proxy
-- listener (`proxy.advertise_url`): an instance forwards the poll of a query another instance
-- holds to that instance. Keyed by the instance's tag in held query ids (new at every start);
-- rows not refreshed for a day are deleted when rows are written.
CREATE TABLE IF NOT EXISTS te_gateways (
    tag VARCHAR(16) NOT NULL PRIMARY KEY,
    url VARCHAR(512) NOT NULL,
    seen_ms BIGINT NOT NULL
);
