//! Where the file's routing config and the database's disagree.
//!
//! With `--config-source database` the file seeds an empty database once; from then on the
//! database's groups, backends and policies are the ones that route, and the file's are ignored.
//! [`compare`] lists every difference so that `serve` can warn about it at start and
//! `check-config` can report it; [`read_existing`] reads a database for `check-config` without
//! creating or changing anything.
//!
//! Objects are matched by name and compared by their JSON form (what the database stores), field by
//! field; a backend's `group: a` is compared as `groups: [a]`, so both spellings are equal. The
//! order of policies is compared too (among equal priorities the first one wins); the order of
//! groups and backends is not.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::{dialect, Dialect, Kind, Result, Store, StoreError, Stored, StoredRouting};
use crate::config::model::{Config, PolicyConfig};

/// The advice that goes with a list of differences (in `serve`'s warning and `check-config`'s).
pub const HOW_TO_APPLY: &str = "the database is authoritative for groups, backends and policies \
     and the file's versions of them are ignored; to apply the file's, change the database through \
     the admin API (the request is shown with each difference; every instance on the database picks \
     the change up), or run `serve --config-source file`, which routes by the file instead (the \
     admin API is then read-only and the database's copy is left as it is)";

/// How long `check-config` waits for a database before it skips the comparison.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// One field that differs between the file's and the database's version of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    /// Dotted path in the object's JSON form, e.g. `url` or `match.user`.
    pub field: String,
    /// The file's value; `None` when not set.
    pub file: Option<Value>,
    /// The database's value; `None` when not set.
    pub database: Option<Value>,
}

/// One difference between the file and the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// The file has an object of this name, the database has none.
    OnlyInFile { kind: Kind, name: String },
    /// The database has an object of this name, the file has none.
    OnlyInDatabase { kind: Kind, name: String },
    /// Both have the object, with these fields different (at least one).
    Changed {
        kind: Kind,
        name: String,
        fields: Vec<FieldDiff>,
    },
    /// The policies both sides have are in a different order (names in each side's order).
    PolicyOrder {
        file: Vec<String>,
        database: Vec<String>,
    },
}

impl Difference {
    /// The admin API request that makes the database match the file here, e.g.
    /// `PUT /api/v1/backends/trino-1`.
    pub fn admin_request(&self) -> String {
        match self {
            Difference::OnlyInFile { kind, .. } => format!("POST /api/v1/{}", collection(*kind)),
            Difference::OnlyInDatabase { kind, name } => {
                format!("DELETE /api/v1/{}/{name}", collection(*kind))
            }
            Difference::Changed { kind, name, .. } => {
                format!("PUT /api/v1/{}/{name}", collection(*kind))
            }
            Difference::PolicyOrder { .. } => {
                "DELETE the policies, then POST /api/v1/policies each in the file's order"
                    .to_string()
            }
        }
    }
}

/// The admin API's collection of a kind.
fn collection(kind: Kind) -> &'static str {
    match kind {
        Kind::Group => "groups",
        Kind::Backend => "backends",
        Kind::Policy => "policies",
    }
}

/// E.g. `backend trino-1: url: file "http://a:8080", database "http://b:8080"`.
impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Difference::OnlyInFile { kind, name } => {
                write!(f, "{kind} {name}: only in the file, not in the database")
            }
            Difference::OnlyInDatabase { kind, name } => {
                write!(f, "{kind} {name}: only in the database, not in the file")
            }
            Difference::Changed { kind, name, fields } => {
                write!(f, "{kind} {name}: ")?;
                for (i, d) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(
                        f,
                        "{}: file {}, database {}",
                        d.field,
                        Shown(d.file.as_ref()),
                        Shown(d.database.as_ref())
                    )?;
                }
                Ok(())
            }
            Difference::PolicyOrder { file, database } => write!(
                f,
                "policy order (the first of equal priority wins): file [{}], database [{}]",
                file.join(", "),
                database.join(", ")
            ),
        }
    }
}

/// A value as JSON (strings quoted), or `not set`.
struct Shown<'a>(Option<&'a Value>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None | Some(Value::Null) => f.write_str("not set"),
            Some(v) => write!(f, "{v}"),
        }
    }
}

/// Every difference between the file's groups, backends and policies and the database's: per kind
/// (groups, backends, policies), the file's objects in file order, then the database-only ones in
/// database order; the policy order last. Empty when they agree.
pub fn compare(file: &Config, database: &StoredRouting) -> Vec<Difference> {
    let mut out = Vec::new();
    compare_kind(&file.groups, &database.groups, &mut out);
    compare_kind(&file.backends, &database.backends, &mut out);
    compare_kind(&file.routing.policies, &database.policies, &mut out);
    let in_both = |mine: &[PolicyConfig], theirs: &[PolicyConfig]| {
        mine.iter()
            .filter(|p| theirs.iter().any(|q| q.name == p.name))
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    let file_order = in_both(&file.routing.policies, &database.policies);
    let database_order = in_both(&database.policies, &file.routing.policies);
    if file_order != database_order {
        out.push(Difference::PolicyOrder {
            file: file_order,
            database: database_order,
        });
    }
    out
}

fn compare_kind<T: Stored>(file: &[T], database: &[T], out: &mut Vec<Difference>) {
    for f in file {
        match database.iter().find(|d| d.name() == f.name()) {
            None => out.push(Difference::OnlyInFile {
                kind: T::KIND,
                name: f.name().to_string(),
            }),
            Some(d) => {
                let mut fields = Vec::new();
                let (mut f_json, mut d_json) = (json(f), json(d));
                T::comparable(&mut f_json);
                T::comparable(&mut d_json);
                diff_values("", Some(&f_json), Some(&d_json), &mut fields);
                if !fields.is_empty() {
                    out.push(Difference::Changed {
                        kind: T::KIND,
                        name: f.name().to_string(),
                        fields,
                    });
                }
            }
        }
    }
    for d in database {
        if !file.iter().any(|f| f.name() == d.name()) {
            out.push(Difference::OnlyInDatabase {
                kind: T::KIND,
                name: d.name().to_string(),
            });
        }
    }
}

/// The JSON form the database stores. The config structs always serialize; should one ever not,
/// the error stands in for its value (and so differs from the other side's).
fn json<T: Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj)
        .unwrap_or_else(|e| Value::String(format!("(cannot be serialized: {e})")))
}

/// Objects are compared key by key (the file's keys first, then the database's other keys);
/// anything else as a whole. A missing key and `null` are the same: not set.
fn diff_values(
    path: &str,
    file: Option<&Value>,
    database: Option<&Value>,
    out: &mut Vec<FieldDiff>,
) {
    match (file, database) {
        (Some(Value::Object(f)), Some(Value::Object(d))) => {
            let keys = f.keys().chain(d.keys().filter(|k| !f.contains_key(*k)));
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                diff_values(&sub, f.get(key), d.get(key), out);
            }
        }
        _ => {
            let set = |v: Option<&Value>| v.filter(|v| !v.is_null()).cloned();
            let (file, database) = (set(file), set(database));
            if file != database {
                out.push(FieldDiff {
                    field: path.to_string(),
                    file,
                    database,
                });
            }
        }
    }
}

/// What [`read_existing`] found.
#[derive(Debug, Clone)]
pub enum Existing {
    /// Nothing to compare with, and why.
    Nothing(Absence),
    /// The routing config the database holds.
    Routing(StoredRouting),
}

/// Why a database holds no routing config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absence {
    /// `sqlite::memory:`: a new database at every start.
    InMemory,
    /// The SQLite file does not exist.
    NoFile(PathBuf),
    /// The database has no trino-edge tables.
    NoTables,
    /// The tables hold no group, backend or policy.
    Empty,
}

impl fmt::Display for Absence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Absence::InMemory => f.write_str("an in-memory database, new at every start"),
            Absence::NoFile(path) => write!(f, "{} does not exist yet", path.display()),
            Absence::NoTables => f.write_str("no trino-edge tables yet"),
            Absence::Empty => f.write_str("no groups, backends or policies yet"),
        }
    }
}

/// Why [`read_existing`] could not read the database.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no answer from the database within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The routing config a database already holds, read without creating or changing anything: a
/// SQLite file that does not exist is not created (and an existing one is opened read-only),
/// nothing is migrated, and the whole read gives up after `timeout`.
pub async fn read_existing(
    url: &str,
    timeout: Duration,
) -> std::result::Result<Existing, ReadError> {
    let parsed = dialect::parse_url(url)?;
    let url = match parsed.dialect {
        Dialect::Sqlite => match dialect::sqlite_read_only(url) {
            None => return Ok(Existing::Nothing(Absence::InMemory)),
            Some((path, _)) if !path.exists() => {
                return Ok(Existing::Nothing(Absence::NoFile(path)))
            }
            Some((_, read_only)) => read_only,
        },
        Dialect::Postgres | Dialect::MySql => url.to_string(),
    };
    match tokio::time::timeout(timeout, read(&url)).await {
        Ok(read) => Ok(read?),
        Err(_) => Err(ReadError::Timeout(timeout)),
    }
}

async fn read(url: &str) -> Result<Existing> {
    let store = Store::connect(url).await?;
    let found = async {
        if !store.has_routing_tables().await? {
            return Ok(Existing::Nothing(Absence::NoTables));
        }
        if store.is_empty().await? {
            return Ok(Existing::Nothing(Absence::Empty));
        }
        Ok(Existing::Routing(store.load().await?))
    }
    .await;
    store.close().await;
    found
}

/// The tables of the routing config.
const ROUTING_TABLES: [&str; 4] = [
    "te_config_version",
    "te_groups",
    "te_backends",
    "te_policies",
];

impl Store {
    /// Every table of the routing config exists (in the connection's schema).
    async fn has_routing_tables(&self) -> Result<bool> {
        let names = ROUTING_TABLES
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = match self.dialect {
            Dialect::Sqlite => format!(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ({names})"
            ),
            Dialect::Postgres => format!(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name IN ({names})"
            ),
            Dialect::MySql => format!(
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name IN ({names})"
            ),
        };
        let count: i64 = sqlx::Row::try_get(&sqlx::query(&sql).fetch_one(&self.pool).await?, 0)?;
        Ok(usize::try_from(count).unwrap_or(0) == ROUTING_TABLES.len())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const FILE: &str = r#"
proxy:
  listeners:
    - { name: main, address: "127.0.0.1:8080" }
admin:
  address: "127.0.0.1:8090"
routing:
  default_group: adhoc
  policies:
    - { name: etl, priority: 10, match: { client_tags_all: [etl], user: "^svc_" }, group: etl }
    - { name: bi, priority: 10, match: { source: "^superset" }, group: adhoc }
groups:
  - { name: adhoc, strategy: round_robin }
  - { name: etl, strategy: random }
backends:
  - { name: trino-1, url: "http://a:8080", group: adhoc }
  - { name: trino-2, url: "http://c:8080", group: etl, max_queued_queries: 50 }
"#;

    fn file() -> Config {
        crate::config::parse_str("test.yaml", FILE).unwrap()
    }

    /// What the database holds after being seeded with the file.
    fn seeded(file: &Config) -> StoredRouting {
        StoredRouting {
            version: 1,
            groups: file.groups.clone(),
            backends: file.backends.clone(),
            policies: file.routing.policies.clone(),
        }
    }

    fn lines(diffs: &[Difference]) -> Vec<String> {
        diffs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn equal_when_the_database_was_seeded_from_the_file() {
        let file = file();
        assert_eq!(compare(&file, &seeded(&file)), vec![]);
    }

    #[test]
    fn a_changed_url_names_the_field_and_both_values() {
        let file = file();
        let mut db = seeded(&file);
        db.backends[0].url = "http://b:8080".into();
        let diffs = compare(&file, &db);
        assert_eq!(
            diffs,
            vec![Difference::Changed {
                kind: Kind::Backend,
                name: "trino-1".into(),
                fields: vec![FieldDiff {
                    field: "url".into(),
                    file: Some(json!("http://a:8080")),
                    database: Some(json!("http://b:8080")),
                }],
            }]
        );
        assert_eq!(
            lines(&diffs),
            [r#"backend trino-1: url: file "http://a:8080", database "http://b:8080""#]
        );
        assert_eq!(diffs[0].admin_request(), "PUT /api/v1/backends/trino-1");
    }

    #[test]
    fn several_fields_of_one_backend_and_unset_values() {
        let file = file();
        let mut db = seeded(&file);
        db.backends[1].weight = 3;
        db.backends[1].enabled = false;
        db.backends[1].max_queued_queries = None;
        assert_eq!(
            lines(&compare(&file, &db)),
            ["backend trino-2: enabled: file true, database false; max_queued_queries: file 50, \
              database not set; weight: file 1, database 3"]
        );
    }

    #[test]
    fn objects_only_in_the_file_then_only_in_the_database() {
        let file = file();
        let mut db = seeded(&file);
        db.backends.remove(0);
        let mut extra = db.backends[0].clone();
        extra.name = "trino-9".into();
        db.backends.push(extra);
        let diffs = compare(&file, &db);
        assert_eq!(
            lines(&diffs),
            [
                "backend trino-1: only in the file, not in the database",
                "backend trino-9: only in the database, not in the file",
            ]
        );
        assert_eq!(diffs[0].admin_request(), "POST /api/v1/backends");
        assert_eq!(diffs[1].admin_request(), "DELETE /api/v1/backends/trino-9");
    }

    #[test]
    fn a_changed_policy_names_nested_match_fields() {
        let file = file();
        let mut db = seeded(&file);
        let p = &mut db.policies[0];
        p.priority = 5;
        p.match_.user = None;
        p.match_.client_tags_all = vec!["etl".into(), "nightly".into()];
        p.match_.headers.insert("X-Team".into(), "data".into());
        p.fallback_group = Some("adhoc".into());
        let diffs = compare(&file, &db);
        assert_eq!(
            lines(&diffs),
            [
                r#"policy etl: match.client_tags_all: file ["etl"], database ["etl","nightly"]; match.user: file "^svc_", database not set; match.headers: file not set, database {"X-Team":"data"}; priority: file 10, database 5; fallback_group: file not set, database "adhoc""#
            ]
        );
        assert_eq!(diffs[0].admin_request(), "PUT /api/v1/policies/etl");
    }

    #[test]
    fn the_policy_order_counts() {
        let file = file();
        let mut db = seeded(&file);
        db.policies.reverse();
        let diffs = compare(&file, &db);
        assert_eq!(
            diffs,
            vec![Difference::PolicyOrder {
                file: vec!["etl".into(), "bi".into()],
                database: vec!["bi".into(), "etl".into()],
            }]
        );
        assert_eq!(
            lines(&diffs),
            ["policy order (the first of equal priority wins): file [etl, bi], database [bi, etl]"]
        );
        // Only the relative order of the policies both sides have.
        let mut db = seeded(&file);
        db.policies.remove(0);
        assert_eq!(
            lines(&compare(&file, &db)),
            ["policy etl: only in the file, not in the database"]
        );
    }

    #[test]
    fn groups_and_the_kind_order_of_the_list() {
        let file = file();
        let mut db = seeded(&file);
        db.groups[1].strict = true;
        db.groups
            .push(serde_json::from_value(json!({ "name": "bi" })).unwrap());
        db.groups.swap(0, 2); // the order of groups is not compared
        db.backends[0].url = "http://b:8080".into();
        db.policies.remove(1);
        assert_eq!(
            lines(&compare(&file, &db)),
            [
                "group etl: strict: file false, database true",
                "group bi: only in the database, not in the file",
                r#"backend trino-1: url: file "http://a:8080", database "http://b:8080""#,
                "policy bi: only in the file, not in the database",
            ]
        );
    }

    #[test]
    fn group_and_a_groups_list_of_one_are_the_same_backend() {
        let file = file();
        let mut db = seeded(&file);
        db.backends[0] = serde_json::from_value(json!({
            "name": "trino-1", "url": "http://a:8080", "groups": ["adhoc"]
        }))
        .unwrap();
        assert_eq!(compare(&file, &db), vec![]);
        // And the other way round: the file lists one group, the database row says `group`.
        let text = FILE.replace(
            r#"url: "http://a:8080", group: adhoc }"#,
            r#"url: "http://a:8080", groups: [adhoc] }"#,
        );
        assert!(text.contains("groups: [adhoc]"));
        let listed = crate::config::parse_str("test.yaml", &text).unwrap();
        assert_eq!(compare(&listed, &seeded(&file)), vec![]);
    }

    #[test]
    fn a_backend_with_more_groups_in_the_database_shows_both_lists() {
        let file = file();
        let mut db = seeded(&file);
        db.backends[0].groups.push("etl".into());
        let diffs = compare(&file, &db);
        assert_eq!(
            lines(&diffs),
            [r#"backend trino-1: groups: file ["adhoc"], database ["adhoc","etl"]"#]
        );
        assert_eq!(diffs[0].admin_request(), "PUT /api/v1/backends/trino-1");
    }

    #[tokio::test]
    async fn read_existing_creates_no_sqlite_file_and_reads_a_seeded_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let url = format!("sqlite://{}", path.display());
        match read_existing(&url, CHECK_TIMEOUT).await.unwrap() {
            Existing::Nothing(Absence::NoFile(p)) => assert_eq!(p, path),
            other => panic!("{other:?}"),
        }
        assert!(!path.exists(), "reading must not create the database");
        assert!(matches!(
            read_existing("sqlite::memory:", CHECK_TIMEOUT)
                .await
                .unwrap(),
            Existing::Nothing(Absence::InMemory)
        ));

        // A file that is not a trino-edge database; then migrated but empty; then seeded.
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            read_existing(&url, CHECK_TIMEOUT).await.unwrap(),
            Existing::Nothing(Absence::NoTables)
        ));
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        assert!(matches!(
            read_existing(&url, CHECK_TIMEOUT).await.unwrap(),
            Existing::Nothing(Absence::Empty)
        ));
        let file = file();
        store
            .seed(&file.groups, &file.backends, &file.routing.policies)
            .await
            .unwrap();
        let version = store.version().await.unwrap();
        match read_existing(&url, CHECK_TIMEOUT).await.unwrap() {
            Existing::Routing(db) => {
                assert_eq!(db.version, version);
                assert_eq!(compare(&file, &db), vec![]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(store.version().await.unwrap(), version, "nothing written");
        store.close().await;
    }

    #[tokio::test]
    async fn read_existing_reports_an_unreachable_or_silent_server() {
        // A port nobody listens on: refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://postgres@127.0.0.1:{port}/test");
        let err = read_existing(&url, CHECK_TIMEOUT).await.unwrap_err();
        assert!(
            matches!(err, ReadError::Store(StoreError::Db(_))),
            "{err:?}"
        );
        // A server that accepts connections and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/test",
            silent.local_addr().unwrap().port()
        );
        let err = read_existing(&url, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::Timeout(_)), "{err:?}");
        assert_eq!(err.to_string(), "no answer from the database within 300ms");
    }
}
