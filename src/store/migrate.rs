//! A tiny schema migrator: versioned SQL files per dialect (`migrations/<dialect>/NNNN_name.sql`),
//! embedded into the binary, applied in order, and recorded in `te_schema_migrations`.
//!
//! Several gateway instances may start at once against one database, so a migration run holds a
//! database-wide lock (PostgreSQL: a transaction-scoped advisory lock, MySQL: `GET_LOCK`, SQLite:
//! `BEGIN IMMEDIATE`). Belt and braces: every statement is idempotent (`IF NOT EXISTS`), and a
//! duplicate key when recording a version means another process applied it, so the run starts over
//! and finds it recorded.

use sqlx::AnyConnection;
use sqlx::{Connection, Row};

use super::{is_unique_violation, now_ms, Dialect, Result, Store, StoreError};

/// One schema version, in the three dialects.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
    pub mysql: &'static str,
}

impl Migration {
    fn sql(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
            Dialect::MySql => self.mysql,
        }
    }
}

/// Every migration, in version order. A new file must be listed here (a unit test checks that the
/// directory and this list agree).
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sqlite: include_str!("../../migrations/sqlite/0001_initial.sql"),
        postgres: include_str!("../../migrations/postgres/0001_initial.sql"),
        mysql: include_str!("../../migrations/mysql/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "history_statement",
        sqlite: include_str!("../../migrations/sqlite/0002_history_statement.sql"),
        postgres: include_str!("../../migrations/postgres/0002_history_statement.sql"),
        mysql: include_str!("../../migrations/mysql/0002_history_statement.sql"),
    },
    Migration {
        version: 3,
        name: "login_pins",
        sqlite: include_str!("../../migrations/sqlite/0003_login_pins.sql"),
        postgres: include_str!("../../migrations/postgres/0003_login_pins.sql"),
        mysql: include_str!("../../migrations/mysql/0003_login_pins.sql"),
    },
    Migration {
        version: 4,
        name: "history_queued",
        sqlite: include_str!("../../migrations/sqlite/0004_history_queued.sql"),
        postgres: include_str!("../../migrations/postgres/0004_history_queued.sql"),
        mysql: include_str!("../../migrations/mysql/0004_history_queued.sql"),
    },
    Migration {
        version: 5,
        name: "gateways",
        sqlite: include_str!("../../migrations/sqlite/0005_gateways.sql"),
        postgres: include_str!("../../migrations/postgres/0005_gateways.sql"),
        mysql: include_str!("../../migrations/mysql/0005_gateways.sql"),
    },
];

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS te_schema_migrations (\
     version BIGINT NOT NULL PRIMARY KEY, applied_ms BIGINT NOT NULL)";

/// Key of the PostgreSQL advisory lock (any constant; "trinoedg" in ASCII).
const PG_LOCK_KEY: i64 = 0x7472_696e_6f65_6467;
/// Name of the MySQL user lock, and how long to wait for it.
const MYSQL_LOCK: &str = "trino_edge_migrate";
const MYSQL_LOCK_WAIT_SECS: i64 = 60;

/// Splits a migration file into statements: `--` comment lines dropped, then split at `;`.
/// (The migration files contain no `;` inside literals.)
pub(crate) fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Outcome of one attempt.
enum Attempt {
    Applied(usize),
    /// Someone else recorded a version concurrently: try again.
    Raced,
}

impl Store {
    /// Applies every migration the database has not recorded yet; returns how many this call
    /// applied (0 when the schema is current, also when a concurrent process applied them).
    pub async fn migrate(&self) -> Result<usize> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.migrate_once().await? {
                Attempt::Applied(n) => {
                    if n > 0 {
                        tracing::info!(
                            dialect = %self.dialect,
                            applied = n,
                            "database schema migrated"
                        );
                    }
                    return Ok(n);
                }
                Attempt::Raced if attempts < 5 => {
                    tracing::debug!("concurrent schema migration detected; re-checking");
                }
                Attempt::Raced => {
                    return Err(StoreError::Corrupt(
                        "schema migration kept racing with another process".to_string(),
                    ))
                }
            }
        }
    }

    async fn migrate_once(&self) -> Result<Attempt> {
        let mut conn = self.pool.acquire().await?;
        match self.dialect {
            Dialect::Postgres => {
                // Transactional DDL: the lock, the changes and their record commit together.
                let mut tx = Connection::begin(&mut *conn).await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(PG_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                let outcome = apply_pending(&mut tx, self.dialect).await?;
                if let Attempt::Applied(_) = outcome {
                    tx.commit().await?;
                }
                Ok(outcome)
            }
            Dialect::Sqlite => {
                // IMMEDIATE takes the write lock up front (waiting up to the busy timeout), so two
                // migrators serialize instead of failing with SQLITE_BUSY.
                let mut tx = Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
                let outcome = apply_pending(&mut tx, self.dialect).await?;
                if let Attempt::Applied(_) = outcome {
                    tx.commit().await?;
                }
                Ok(outcome)
            }
            Dialect::MySql => {
                // DDL commits implicitly in MySQL, so a session lock serializes migrators. Should
                // this future be dropped half-way, closing the connection releases the lock.
                conn.close_on_drop();
                let got: Option<i64> = sqlx::query("SELECT GET_LOCK(?, ?)")
                    .bind(MYSQL_LOCK)
                    .bind(MYSQL_LOCK_WAIT_SECS)
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get(0)?;
                if got != Some(1) {
                    return Err(StoreError::Corrupt(format!(
                        "could not take the migration lock `{MYSQL_LOCK}` within \
                         {MYSQL_LOCK_WAIT_SECS} s (another process is migrating?)"
                    )));
                }
                let outcome = apply_pending(&mut conn, self.dialect).await;
                let released = sqlx::query("SELECT RELEASE_LOCK(?)")
                    .bind(MYSQL_LOCK)
                    .execute(&mut *conn)
                    .await;
                if let Err(e) = released {
                    tracing::warn!(error = %e, "releasing the MySQL migration lock failed");
                }
                outcome
            }
        }
    }

    /// Every migration version this binary knows, in order.
    pub fn migration_count() -> usize {
        MIGRATIONS.len()
    }

    /// Drops every `te_*` table (tests start from a clean database with it).
    #[doc(hidden)]
    pub async fn drop_all_for_tests(&self) -> Result<()> {
        for table in [
            "te_groups",
            "te_backends",
            "te_policies",
            "te_config_version",
            "te_query_history",
            "te_coordinators",
            "te_login_pins",
            "te_schema_migrations",
        ] {
            sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

async fn apply_pending(conn: &mut AnyConnection, dialect: Dialect) -> Result<Attempt> {
    sqlx::query(CREATE_MIGRATIONS_TABLE)
        .execute(&mut *conn)
        .await?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM te_schema_migrations")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.try_get::<i64, _>(0))
        .collect::<std::result::Result<_, _>>()?;
    let mut count = 0;
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tracing::info!(version = m.version, name = m.name, %dialect, "applying migration");
        for stmt in statements(m.sql(dialect)) {
            sqlx::query(&stmt).execute(&mut *conn).await?;
        }
        let recorded = sqlx::query(
            &dialect.sql("INSERT INTO te_schema_migrations (version, applied_ms) VALUES (?, ?)"),
        )
        .bind(m.version)
        .bind(now_ms())
        .execute(&mut *conn)
        .await;
        match recorded {
            Ok(_) => count += 1,
            Err(e) if is_unique_violation(&e) => return Ok(Attempt::Raced),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Attempt::Applied(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_files_match_the_embedded_list() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        for dialect in ["sqlite", "postgres", "mysql"] {
            let mut files: Vec<String> = std::fs::read_dir(root.join(dialect))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            files.sort();
            let listed: Vec<String> = MIGRATIONS
                .iter()
                .map(|m| format!("{:04}_{}.sql", m.version, m.name))
                .collect();
            assert_eq!(files, listed, "migrations/{dialect}");
        }
        let versions: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(versions, sorted, "versions must be unique and ascending");
    }

    #[test]
    fn statements_split() {
        let s =
            statements("-- a; comment\nCREATE TABLE a (x INT);\n\n  INSERT INTO a VALUES (1);\n");
        assert_eq!(
            s,
            vec!["CREATE TABLE a (x INT)", "INSERT INTO a VALUES (1)"]
        );
        for m in MIGRATIONS {
            // The initial schema has at least seven statements (tables, indexes, seed rows).
            let least = if m.version == 1 { 7 } else { 1 };
            for d in [Dialect::Sqlite, Dialect::Postgres, Dialect::MySql] {
                assert!(statements(m.sql(d)).len() >= least, "{} {d}", m.name);
            }
        }
    }
}
