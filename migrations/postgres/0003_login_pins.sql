-- OAuth2 logins in progress: which backend issued each challenge (Trino keeps a login on the
-- coordinator that started it), so that every gateway instance routes the login's legs there.
-- Keyed by the SHA-256 of the login id (never the id itself); rows older than the login TTL are
-- deleted when new ones are written.
CREATE TABLE IF NOT EXISTS te_login_pins (
    auth_id_hash VARCHAR(64) NOT NULL PRIMARY KEY,
    backend_name VARCHAR(64) NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS te_login_pins_created ON te_login_pins (created_ms);
