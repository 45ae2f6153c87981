-- trino-edge schema v1 (PostgreSQL). Applied by src/store/migrate.rs; keep every statement idempotent.
-- Timestamps are milliseconds since the Unix epoch; `body` columns hold the JSON of one config object.

CREATE TABLE IF NOT EXISTS te_groups (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS te_backends (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    group_name VARCHAR(64) NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS te_policies (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS te_config_version (
    id INTEGER NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);

INSERT INTO te_config_version (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS te_query_history (
    query_id VARCHAR(128) NOT NULL PRIMARY KEY,
    submitted_ms BIGINT NOT NULL,
    user_name VARCHAR(256),
    source VARCHAR(256),
    client_tags VARCHAR(1024),
    group_name VARCHAR(64),
    backend_name VARCHAR(64),
    policy_name VARCHAR(64),
    gateway VARCHAR(256),
    sql_text TEXT
);

-- Serves the newest-first listing (ORDER BY submitted_ms DESC, query_id DESC) and time filters.
CREATE INDEX IF NOT EXISTS te_query_history_submitted ON te_query_history (submitted_ms, query_id);

CREATE TABLE IF NOT EXISTS te_coordinators (
    coordinator_id VARCHAR(16) NOT NULL PRIMARY KEY,
    backend_name VARCHAR(64) NOT NULL,
    learned_ms BIGINT NOT NULL
);
