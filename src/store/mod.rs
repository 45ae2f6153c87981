//! Shared state in a database: the routing configuration (groups, backends, policies) with a
//! version counter that every gateway instance polls, query history, learned coordinator ids and
//! the backends of OAuth2 logins in progress.
//!
//! One code path serves SQLite, PostgreSQL and MySQL/MariaDB through `sqlx::any`, which carries only
//! basic types: timestamps are `i64` milliseconds since the epoch and config objects are JSON text.
//! SQL is written with `?` placeholders ([`Dialect`] renumbers them for PostgreSQL) in the subset the
//! three dialects share; no dialect-specific upserts.
//!
//! Every configuration change bumps `te_config_version` in the same transaction, and bumps it
//! *first*: the update locks the version row (SQLite: writers begin `IMMEDIATE`), so concurrent
//! writers serialize and the existence checks that follow see the latest committed state. A reader
//! polling the version therefore never sees a new version without its change.
//!
//! The schema lives in `migrations/<dialect>/NNNN_name.sql`, embedded into the binary (see
//! [`Store::migrate`]).

mod dialect;
pub mod drift;
mod gateways;
mod history;
mod logins;
mod migrate;

use std::collections::HashSet;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};

use crate::config::model::{BackendConfig, GroupConfig, PolicyConfig};

pub use dialect::Dialect;
pub use history::{first_chars, HistoryFilter, HistoryPage, HistoryRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// E.g. "backend `b1` not found".
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Bad JSON in a body column, or a schema that is not migrated.
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// Unknown URL scheme.
    #[error("{0}")]
    Unsupported(String),
    /// A caller's input the database cannot hold or the store cannot read (a name longer than its
    /// column, a malformed history cursor): the caller's mistake, e.g. an HTTP 400.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// What the database holds of the routing config, in stored order (by position).
#[derive(Debug, Clone, Default)]
pub struct StoredRouting {
    pub version: i64,
    pub groups: Vec<GroupConfig>,
    pub backends: Vec<BackendConfig>,
    pub policies: Vec<PolicyConfig>,
}

/// The config structs have no `PartialEq`; they compare by their serialized form, which is exactly
/// what the database stores.
impl PartialEq for StoredRouting {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version
            && json_eq(&self.groups, &other.groups)
            && json_eq(&self.backends, &other.backends)
            && json_eq(&self.policies, &other.policies)
    }
}

fn json_eq<T: Serialize>(a: &T, b: &T) -> bool {
    match (serde_json::to_value(a), serde_json::to_value(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The three kinds of configuration object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Group,
    Backend,
    Policy,
}

impl Kind {
    /// `group`, `backend` or `policy` (as in error messages).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::Backend => "backend",
            Kind::Policy => "policy",
        }
    }

    fn table(self) -> &'static str {
        match self {
            Kind::Group => "te_groups",
            Kind::Backend => "te_backends",
            Kind::Policy => "te_policies",
        }
    }

    /// "backend `b1`": the subject of NotFound / Conflict messages.
    fn subject(self, name: &str) -> String {
        format!("{} `{name}`", self.as_str())
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest name a `te_*` name column holds (VARCHAR(64)).
pub const MAX_NAME_LEN: usize = 64;

/// A config object as stored: one row per object, the body its JSON.
trait Stored: Serialize + DeserializeOwned {
    const KIND: Kind;
    fn name(&self) -> &str;
    /// What goes in the `group_name` column (backends only; a column of its own, for queries by
    /// group).
    fn group(&self) -> Option<&str> {
        None
    }
    /// Every group name the object refers to in its body, each checked to fit a name column.
    fn group_names(&self) -> &[String] {
        &[]
    }
    /// Rewrites the object's JSON form into the one that is compared (see [`drift`]); the default
    /// compares it as stored.
    fn comparable(_json: &mut serde_json::Value) {}
}

impl Stored for GroupConfig {
    const KIND: Kind = Kind::Group;
    fn name(&self) -> &str {
        &self.name
    }
}

impl Stored for BackendConfig {
    const KIND: Kind = Kind::Backend;
    fn name(&self) -> &str {
        &self.name
    }
    /// A backend in several groups stores its first one here: `group_name` is a single
    /// `VARCHAR(64) NOT NULL` column, so the first (for single-group backends, the only) group
    /// keeps rows and queries by group as they were. The body holds every group and is the only
    /// thing read back, so the column never limits what a backend serves; to find every backend
    /// of a group, read the bodies.
    fn group(&self) -> Option<&str> {
        self.groups().first().map(String::as_str)
    }
    fn group_names(&self) -> &[String] {
        self.groups()
    }
    /// `group: a` and `groups: [a]` are the same backend; compare both as `groups`, so a
    /// difference reads `groups: file ["a"], database ["a","b"]`.
    fn comparable(json: &mut serde_json::Value) {
        if let serde_json::Value::Object(map) = json {
            if let Some(one) = map.remove("group") {
                map.insert("groups".to_string(), serde_json::Value::Array(vec![one]));
            }
        }
    }
}

impl Stored for PolicyConfig {
    const KIND: Kind = Kind::Policy;
    fn name(&self) -> &str {
        &self.name
    }
}

/// A connection pool to the configuration database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
}

/// Most pooled connections per store.
const MAX_CONNECTIONS: u32 = 5;
/// How long an operation waits for a connection (also bounds connecting to a dead server).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

impl Store {
    /// Opens a pool on `sqlite://PATH` (the file is created if missing), `sqlite::memory:`,
    /// `postgres://`/`postgresql://` or `mysql://`/`mariadb://`, and checks that one connection
    /// works. Does not migrate.
    pub async fn connect(url: &str) -> Result<Store> {
        let parsed = dialect::parse_url(url)?;
        sqlx::any::install_default_drivers();
        let mut options = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT);
        if parsed.memory {
            // Every connection to `sqlite::memory:` is a database of its own: keep exactly one, for
            // the life of the pool.
            options = options
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = match options.connect(&parsed.url).await {
            Ok(pool) => pool,
            // The pool only says it timed out; one direct attempt tells why (refused, bad
            // password, unknown database, ...).
            Err(sqlx::Error::PoolTimedOut) => return Err(connect_failure(&parsed.url).await),
            Err(e) => return Err(e.into()),
        };
        Ok(Store {
            pool,
            dialect: parsed.dialect,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes every connection of the pool (also the clones').
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The configuration version (`te_config_version`); it changes with every mutation.
    pub async fn version(&self) -> Result<i64> {
        let mut conn = self.pool.acquire().await?;
        read_version(&mut conn).await
    }

    /// The whole routing config and its version, read in one consistent snapshot.
    pub async fn load(&self) -> Result<StoredRouting> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut tx = match self.dialect {
                Dialect::Sqlite => self.pool.begin().await?,
                Dialect::Postgres => {
                    self.pool
                        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                        .await?
                }
                Dialect::MySql => {
                    self.pool
                        .begin_with("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                        .await?
                }
            };
            let version = read_version(&mut tx).await?;
            let groups = load_table::<GroupConfig>(&mut tx).await?;
            let backends = load_table::<BackendConfig>(&mut tx).await?;
            let policies = load_table::<PolicyConfig>(&mut tx).await?;
            // Every mutation bumps the version, so an unchanged version proves that no change
            // landed in between, even on a server configured for weaker isolation.
            let after = read_version(&mut tx).await?;
            tx.commit().await?;
            if after == version || attempts >= 5 {
                return Ok(StoredRouting {
                    version: after.max(version),
                    groups,
                    backends,
                    policies,
                });
            }
        }
    }

    /// No groups, backends or policies are stored.
    pub async fn is_empty(&self) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        is_empty_in(&mut conn).await
    }

    /// Seeds the database from the file if (and only if) it holds no configuration; returns whether
    /// it seeded. Atomic; bumps the version.
    pub async fn seed(
        &self,
        groups: &[GroupConfig],
        backends: &[BackendConfig],
        policies: &[PolicyConfig],
    ) -> Result<bool> {
        check_all(groups, backends, policies)?;
        let mut tx = self.begin_write().await?;
        // The bump locks the version row first, so two instances seeding at once serialize and the
        // second one finds the database no longer empty.
        bump(&mut tx).await?;
        if !is_empty_in(&mut tx).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        self.insert_all(&mut tx, groups, backends, policies).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Replaces the whole configuration at once; atomic, bumps the version once.
    pub async fn replace_all(
        &self,
        groups: &[GroupConfig],
        backends: &[BackendConfig],
        policies: &[PolicyConfig],
    ) -> Result<i64> {
        check_all(groups, backends, policies)?;
        let mut tx = self.begin_write().await?;
        let version = bump(&mut tx).await?;
        for kind in [Kind::Group, Kind::Backend, Kind::Policy] {
            sqlx::query(&format!("DELETE FROM {}", kind.table()))
                .execute(&mut *tx)
                .await?;
        }
        self.insert_all(&mut tx, groups, backends, policies).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Adds a group after the existing ones; `Conflict` if the name exists. Returns the new version.
    pub async fn create_group(&self, g: &GroupConfig) -> Result<i64> {
        self.create(g).await
    }

    /// Adds a backend after the existing ones; `Conflict` if the name exists.
    pub async fn create_backend(&self, b: &BackendConfig) -> Result<i64> {
        self.create(b).await
    }

    /// Adds a policy after the existing ones; `Conflict` if the name exists.
    pub async fn create_policy(&self, p: &PolicyConfig) -> Result<i64> {
        self.create(p).await
    }

    /// Replaces group `name` in place (same position); `NotFound` if missing. A different name in
    /// the body renames it (`Conflict` if that name is taken). Returns the new version.
    pub async fn replace_group(&self, name: &str, g: &GroupConfig) -> Result<i64> {
        self.replace(name, g).await
    }

    /// Replaces backend `name` in place; see [`Store::replace_group`].
    pub async fn replace_backend(&self, name: &str, b: &BackendConfig) -> Result<i64> {
        self.replace(name, b).await
    }

    /// Replaces policy `name` in place; see [`Store::replace_group`].
    pub async fn replace_policy(&self, name: &str, p: &PolicyConfig) -> Result<i64> {
        self.replace(name, p).await
    }

    /// Deletes one object; `NotFound` if missing. Returns the new version.
    pub async fn delete(&self, kind: Kind, name: &str) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let version = bump(&mut tx).await?;
        let sql = self
            .dialect
            .sql(&format!("DELETE FROM {} WHERE name = ?", kind.table()));
        let done = sqlx::query(&sql).bind(name).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Err(StoreError::NotFound(kind.subject(name)));
        }
        tx.commit().await?;
        Ok(version)
    }

    async fn create<T: Stored>(&self, obj: &T) -> Result<i64> {
        check_names(obj)?;
        let kind = T::KIND;
        let mut tx = self.begin_write().await?;
        let version = bump(&mut tx).await?;
        if self.exists(&mut tx, kind, obj.name()).await? {
            tx.rollback().await?;
            return Err(StoreError::Conflict(kind.subject(obj.name())));
        }
        let last: Option<i64> = sqlx::query(&format!("SELECT MAX(position) FROM {}", kind.table()))
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        self.insert(&mut tx, obj, last.map_or(0, |p| p + 1)).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn replace<T: Stored>(&self, name: &str, obj: &T) -> Result<i64> {
        check_names(obj)?;
        let kind = T::KIND;
        let mut tx = self.begin_write().await?;
        let version = bump(&mut tx).await?;
        if !self.exists(&mut tx, kind, name).await? {
            tx.rollback().await?;
            return Err(StoreError::NotFound(kind.subject(name)));
        }
        if obj.name() != name && self.exists(&mut tx, kind, obj.name()).await? {
            tx.rollback().await?;
            return Err(StoreError::Conflict(kind.subject(obj.name())));
        }
        let body = to_json(obj)?;
        let updated = match obj.group() {
            Some(group) => {
                let sql = self.dialect.sql(&format!(
                    "UPDATE {} SET name = ?, group_name = ?, body = ? WHERE name = ?",
                    kind.table()
                ));
                sqlx::query(&sql)
                    .bind(obj.name())
                    .bind(group)
                    .bind(body)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
            }
            None => {
                let sql = self.dialect.sql(&format!(
                    "UPDATE {} SET name = ?, body = ? WHERE name = ?",
                    kind.table()
                ));
                sqlx::query(&sql)
                    .bind(obj.name())
                    .bind(body)
                    .bind(name)
                    .execute(&mut *tx)
                    .await
            }
        };
        updated.map_err(|e| conflict_or_db(e, kind, obj.name()))?;
        tx.commit().await?;
        Ok(version)
    }

    async fn exists(&self, conn: &mut AnyConnection, kind: Kind, name: &str) -> Result<bool> {
        let sql = self
            .dialect
            .sql(&format!("SELECT 1 FROM {} WHERE name = ?", kind.table()));
        Ok(sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .is_some())
    }

    async fn insert<T: Stored>(
        &self,
        conn: &mut AnyConnection,
        obj: &T,
        position: i64,
    ) -> Result<()> {
        let kind = T::KIND;
        let body = to_json(obj)?;
        let done = match obj.group() {
            Some(group) => {
                let sql = self.dialect.sql(&format!(
                    "INSERT INTO {} (name, position, group_name, body) VALUES (?, ?, ?, ?)",
                    kind.table()
                ));
                sqlx::query(&sql)
                    .bind(obj.name())
                    .bind(position)
                    .bind(group)
                    .bind(body)
                    .execute(&mut *conn)
                    .await
            }
            None => {
                let sql = self.dialect.sql(&format!(
                    "INSERT INTO {} (name, position, body) VALUES (?, ?, ?)",
                    kind.table()
                ));
                sqlx::query(&sql)
                    .bind(obj.name())
                    .bind(position)
                    .bind(body)
                    .execute(&mut *conn)
                    .await
            }
        };
        done.map_err(|e| conflict_or_db(e, kind, obj.name()))?;
        Ok(())
    }

    async fn insert_all(
        &self,
        conn: &mut AnyConnection,
        groups: &[GroupConfig],
        backends: &[BackendConfig],
        policies: &[PolicyConfig],
    ) -> Result<()> {
        for (i, g) in groups.iter().enumerate() {
            self.insert(conn, g, position(i)).await?;
        }
        for (i, b) in backends.iter().enumerate() {
            self.insert(conn, b, position(i)).await?;
        }
        for (i, p) in policies.iter().enumerate() {
            self.insert(conn, p, position(i)).await?;
        }
        Ok(())
    }

    /// A transaction that will write. On SQLite it takes the write lock up front: a deferred
    /// transaction that reads first and writes later fails with SQLITE_BUSY instead of waiting
    /// when another connection wrote in between.
    async fn begin_write(&self) -> Result<Transaction<'static, Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres | Dialect::MySql => self.pool.begin().await?,
        })
    }
}

/// Why connecting failed, found with one direct connection attempt.
async fn connect_failure(url: &str) -> StoreError {
    use sqlx::Connection;
    match tokio::time::timeout(ACQUIRE_TIMEOUT, AnyConnection::connect(url)).await {
        Ok(Err(e)) => StoreError::Db(e),
        Ok(Ok(conn)) => {
            // It works now; the pool was just too slow.
            let _ = conn.close().await;
            StoreError::Db(sqlx::Error::PoolTimedOut)
        }
        Err(_) => StoreError::Db(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "no connection to the database within {} s",
                ACQUIRE_TIMEOUT.as_secs()
            ),
        ))),
    }
}

fn position(index: usize) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

async fn read_version(conn: &mut AnyConnection) -> Result<i64> {
    let row = sqlx::query("SELECT version FROM te_config_version WHERE id = 1")
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(row) => Ok(row.try_get(0)?),
        None => Err(missing_version_row()),
    }
}

/// Increments the config version and returns the new one. Locks the version row until the
/// transaction ends.
async fn bump(conn: &mut AnyConnection) -> Result<i64> {
    let done = sqlx::query("UPDATE te_config_version SET version = version + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(missing_version_row());
    }
    read_version(conn).await
}

fn missing_version_row() -> StoreError {
    StoreError::Corrupt("te_config_version has no row (is the schema migrated?)".to_string())
}

async fn is_empty_in(conn: &mut AnyConnection) -> Result<bool> {
    for kind in [Kind::Group, Kind::Backend, Kind::Policy] {
        let row = sqlx::query(&format!("SELECT 1 FROM {} LIMIT 1", kind.table()))
            .fetch_optional(&mut *conn)
            .await?;
        if row.is_some() {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn load_table<T: Stored>(conn: &mut AnyConnection) -> Result<Vec<T>> {
    let kind = T::KIND;
    let rows = sqlx::query(&format!(
        "SELECT name, body FROM {} ORDER BY position, name",
        kind.table()
    ))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let name = required_text(row, 0, "name")?;
        let body = required_text(row, 1, "body")?;
        let obj: T = serde_json::from_str(&body).map_err(|e| {
            StoreError::Corrupt(format!("{} in {}: {e}", kind.subject(&name), kind.table()))
        })?;
        if obj.name() != name {
            return Err(StoreError::Corrupt(format!(
                "{} in {} has the body of `{}`",
                kind.subject(&name),
                kind.table(),
                obj.name()
            )));
        }
        out.push(obj);
    }
    Ok(out)
}

fn to_json<T: Stored>(obj: &T) -> Result<String> {
    serde_json::to_string(obj).map_err(|e| {
        StoreError::Invalid(format!(
            "{} cannot be serialized: {e}",
            T::KIND.subject(obj.name())
        ))
    })
}

fn check_names<T: Stored>(obj: &T) -> Result<()> {
    check_len(T::KIND.as_str(), "name", obj.name())?;
    if T::KIND == Kind::Backend && obj.group().is_none() {
        return Err(StoreError::Invalid(format!(
            "{} names no group",
            T::KIND.subject(obj.name())
        )));
    }
    for group in obj.group_names() {
        check_len(T::KIND.as_str(), "group", group)?;
    }
    Ok(())
}

fn check_len(what: &str, field: &str, value: &str) -> Result<()> {
    if value.chars().count() > MAX_NAME_LEN {
        return Err(StoreError::Invalid(format!(
            "{what} {field} `{value}` is longer than {MAX_NAME_LEN} characters"
        )));
    }
    Ok(())
}

/// Names must be storable and unique per kind.
fn check_all(
    groups: &[GroupConfig],
    backends: &[BackendConfig],
    policies: &[PolicyConfig],
) -> Result<()> {
    fn unique<T: Stored>(objs: &[T]) -> Result<()> {
        let mut seen = HashSet::new();
        for obj in objs {
            check_names(obj)?;
            if !seen.insert(obj.name()) {
                return Err(StoreError::Conflict(T::KIND.subject(obj.name())));
            }
        }
        Ok(())
    }
    unique(groups)?;
    unique(backends)?;
    unique(policies)
}

/// A unique-key violation (another writer got there first) as `Conflict`, anything else as `Db`.
fn conflict_or_db(e: sqlx::Error, kind: Kind, name: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(kind.subject(name))
    } else {
        StoreError::Db(e)
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A text column. MySQL reports TEXT columns as BLOBs, which `sqlx::any` hands over as bytes.
pub(crate) fn text(row: &AnyRow, index: usize) -> Result<Option<String>> {
    match row.try_get::<Option<String>, _>(index) {
        Ok(v) => Ok(v),
        Err(text_err) => match row.try_get::<Option<Vec<u8>>, _>(index) {
            Ok(Some(bytes)) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("column {index} is not UTF-8: {e}"))),
            Ok(None) => Ok(None),
            Err(_) => Err(StoreError::Db(text_err)),
        },
    }
}

pub(crate) fn required_text(row: &AnyRow, index: usize, column: &str) -> Result<String> {
    text(row, index)?.ok_or_else(|| StoreError::Corrupt(format!("column `{column}` is NULL")))
}

#[cfg(test)]
mod tests;
