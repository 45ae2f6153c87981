-- trino-edge schema v1 (MySQL 8 / MariaDB 10.5+). Applied by src/store/migrate.rs; keep every
-- statement idempotent (MySQL commits DDL implicitly, so a half-applied migration is re-run).
-- Timestamps are milliseconds since the Unix epoch; `body` columns hold the JSON of one config object.
-- utf8mb4_bin: names compare exactly (case-sensitive), as on SQLite and PostgreSQL.

CREATE TABLE IF NOT EXISTS te_groups (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    body TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS te_backends (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    group_name VARCHAR(64) NOT NULL,
    body TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS te_policies (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    body TEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS te_config_version (
    id INTEGER NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

INSERT IGNORE INTO te_config_version (id, version) VALUES (1, 0);

-- sql_text is MEDIUMTEXT (16 MiB) rather than TEXT (64 KiB): Trino accepts statements up to
-- 1,000,000 characters by default, and the store truncates to that.
-- The index on submitted_ms serves the newest-first listing (InnoDB appends the primary key).
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
    sql_text MEDIUMTEXT,
    INDEX te_query_history_submitted (submitted_ms)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS te_coordinators (
    coordinator_id VARCHAR(16) NOT NULL PRIMARY KEY,
    backend_name VARCHAR(64) NOT NULL,
    learned_ms BIGINT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
