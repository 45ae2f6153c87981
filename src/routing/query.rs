//! What a submitted statement touches — its kind and the catalogs, schemas and tables it names —
//! for policies on query content (`match: {catalogs_any, schemas_any, tables_any, statement}`).
//!
//! The statement is parsed with `sqlparser` (the parser DataFusion uses; no regexes). Names are
//! qualified with the session's `X-Trino-Catalog`/`X-Trino-Schema` and lower-cased, as Trino
//! resolves unquoted identifiers. `EXECUTE name` is resolved through `X-Trino-Prepared-Statement`
//! (URL-encoded `name=statement` entries; a statement over Trino's compression threshold arrives
//! as `$zstd:` + base64url of its zstd frame) and `EXECUTE IMMEDIATE '…'` through its literal.
//! A statement that cannot be analyzed is not an error: content conditions then do not hold, the
//! header conditions still route it, and [`QueryProperties::error`] says why.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use base64::Engine as _;
use http::{HeaderMap, HeaderName};
use serde::Serialize;
use sqlparser::ast::{
    visit_relations, ObjectName, ObjectNamePart, Statement, Use, Value, Visit, Visitor,
};
use sqlparser::dialect::Dialect;
use sqlparser::parser::Parser;

pub const CATALOG: HeaderName = HeaderName::from_static("x-trino-catalog");
pub const SCHEMA: HeaderName = HeaderName::from_static("x-trino-schema");
pub const PREPARED_STATEMENT: HeaderName = HeaderName::from_static("x-trino-prepared-statement");

/// Largest prepared statement decompressed from a `$zstd:` header entry (a header is bounded by
/// Pingora's 1 MiB request header; its inflated form must be too).
const MAX_PREPARED: usize = 16 << 20;

pub use crate::config::StatementKind;

/// What one statement touches. Names are lower-cased; a name whose catalog (or schema) the
/// statement does not give and the session does not set is left out of the wider sets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct QueryProperties {
    /// `None` when the statement could not be analyzed ([`QueryProperties::error`] says why).
    pub statement: Option<StatementKind>,
    pub catalogs: BTreeSet<String>,
    /// `catalog.schema`.
    pub schemas: BTreeSet<String>,
    /// `catalog.schema.table`.
    pub tables: BTreeSet<String>,
    /// The prepared statement an `EXECUTE` ran (its own properties are the ones above).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepared: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl QueryProperties {
    /// Analyze a submission body with the session of its request headers.
    pub fn analyze(body: &[u8], headers: &HeaderMap) -> QueryProperties {
        let session = Session::from_headers(headers);
        let sql = match std::str::from_utf8(body) {
            Ok(s) => s,
            Err(_) => return QueryProperties::failed("the statement is not UTF-8"),
        };
        analyze_sql(sql, &session, headers, 0)
    }

    fn failed(why: impl Into<String>) -> QueryProperties {
        QueryProperties {
            error: Some(why.into()),
            ..QueryProperties::default()
        }
    }

    /// Whether the statement was analyzed (content conditions can be evaluated).
    pub fn analyzed(&self) -> bool {
        self.statement.is_some()
    }
}

/// The session's default catalog and schema, lower-cased.
struct Session {
    catalog: Option<String>,
    schema: Option<String>,
}

impl Session {
    fn from_headers(headers: &HeaderMap) -> Session {
        let get = |name: &HeaderName, presto: &str| {
            headers
                .get(name)
                .or_else(|| headers.get(presto))
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_ascii_lowercase)
        };
        Session {
            catalog: get(&CATALOG, "x-presto-catalog"),
            schema: get(&SCHEMA, "x-presto-schema"),
        }
    }
}

/// Trino's SQL as far as routing needs it: double-quoted identifiers, lambdas (`x -> x + 1`),
/// `FILTER (WHERE …)` on aggregates and `=>` named arguments of table functions.
#[derive(Debug)]
struct TrinoDialect;

impl Dialect for TrinoDialect {
    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }
    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '@' || ch == '$'
    }
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '"'
    }
    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }
    fn supports_named_fn_args_with_rarrow_operator(&self) -> bool {
        true
    }
    fn supports_lambda_functions(&self) -> bool {
        true
    }
}

fn analyze_sql(sql: &str, session: &Session, headers: &HeaderMap, depth: u8) -> QueryProperties {
    // Trino takes one statement per request, without a trailing semicolon; be lenient about one.
    let trimmed = sql.trim().trim_end_matches(';');
    if trimmed.is_empty() {
        return QueryProperties::failed("the statement is empty");
    }
    let statements = match Parser::parse_sql(&TrinoDialect, trimmed) {
        Ok(s) => s,
        Err(e) => return QueryProperties::failed(format!("the statement does not parse: {e}")),
    };
    let [statement] = statements.as_slice() else {
        return QueryProperties::failed("more than one statement");
    };
    let mut props = QueryProperties::default();
    // EXECUTE: the prepared (or immediate) statement decides.
    if let Statement::Execute {
        name,
        parameters,
        immediate,
        ..
    } = statement
    {
        if depth > 0 {
            return QueryProperties::failed("EXECUTE of an EXECUTE");
        }
        // Dialects without `EXECUTE IMMEDIATE` read its keyword as a statement name (an unquoted
        // `immediate`, which Trino's grammar reserves for this form).
        let immediate = *immediate
            || name.as_ref().is_some_and(|n| {
                matches!(n.0.as_slice(), [ObjectNamePart::Identifier(i)]
                    if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("immediate"))
            });
        let (text, label) = if immediate {
            match parameters.first().and_then(string_literal) {
                Some(s) => (s, "IMMEDIATE".to_string()),
                None => return QueryProperties::failed("EXECUTE IMMEDIATE without a string"),
            }
        } else {
            let Some(name) = name.as_ref().and_then(single_name) else {
                return QueryProperties::failed("EXECUTE without a statement name");
            };
            match prepared_statement(headers, &name) {
                Ok(Some(text)) => (text, name),
                Ok(None) => {
                    return QueryProperties::failed(format!(
                        "prepared statement `{name}` is not in X-Trino-Prepared-Statement"
                    ))
                }
                Err(e) => return QueryProperties::failed(e),
            }
        };
        let mut inner = analyze_sql(&text, session, headers, depth + 1);
        inner.prepared = Some(label);
        return inner;
    }
    props.statement = Some(kind_of(statement));
    let mut names = Names {
        session,
        props: &mut props,
    };
    names.collect(statement);
    props
}

/// A string literal (`'…'`) expression's text.
fn string_literal(e: &sqlparser::ast::Expr) -> Option<String> {
    match e {
        sqlparser::ast::Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A one-part name, as Trino resolves it (lower-cased unless quoted).
fn single_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [part] => part.as_ident().map(ident_text),
        _ => None,
    }
}

fn ident_text(i: &sqlparser::ast::Ident) -> String {
    // Trino matches catalog, schema and table names case-insensitively (connectors lower-case them).
    i.value.to_lowercase()
}

fn parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Some(ident_text(i)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

fn kind_of(s: &Statement) -> StatementKind {
    use StatementKind as K;
    match s {
        Statement::Query(_) => K::Select,
        Statement::Insert(_) => K::Insert,
        Statement::Update(_) => K::Update,
        Statement::Delete(_) => K::Delete,
        Statement::Merge(_) => K::Merge,
        Statement::CreateTable(t) if t.query.is_some() => K::CreateTableAs,
        Statement::Explain { .. } => K::Explain,
        Statement::ExplainTable { .. } => K::Describe,
        Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowObjects(_)
        | Statement::ShowCharset(_)
        | Statement::ShowCollation { .. }
        | Statement::ShowProcessList { .. } => K::Show,
        Statement::Call(_) => K::Call,
        Statement::Use(_) => K::Use,
        Statement::Set(_) => K::SetSession,
        Statement::Reset(_) => K::ResetSession,
        Statement::Prepare { .. } => K::Prepare,
        Statement::Deallocate { .. } => K::Deallocate,
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. } => K::Transaction,
        Statement::Analyze(_) => K::Analyze,
        Statement::CreateTable(_)
        | Statement::CreateView(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateRole(_)
        | Statement::CreateIndex(_)
        | Statement::CreateType { .. }
        | Statement::CreateSequence { .. }
        | Statement::AlterTable(_)
        | Statement::AlterSchema(_)
        | Statement::AlterView { .. }
        | Statement::AlterIndex { .. }
        | Statement::AlterRole { .. }
        | Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::Truncate(_)
        | Statement::Comment { .. }
        | Statement::Grant(_)
        | Statement::Deny(_)
        | Statement::Revoke(_)
        | Statement::RenameTable(_) => K::Ddl,
        _ => K::Other,
    }
}

/// Collects the names a statement touches into `props`.
struct Names<'s, 'p> {
    session: &'s Session,
    props: &'p mut QueryProperties,
}

impl Names<'_, '_> {
    fn collect(&mut self, statement: &Statement) {
        match statement {
            // Names that are not table relations in the AST: a schema, a catalog.
            Statement::ShowTables { show_options, .. }
            | Statement::ShowViews { show_options, .. } => {
                match show_options
                    .show_in
                    .as_ref()
                    .and_then(|i| i.parent_name.as_ref())
                {
                    Some(schema) => self.schema(schema),
                    None => self.session_schema(),
                }
            }
            Statement::ShowSchemas { show_options, .. } => {
                match show_options
                    .show_in
                    .as_ref()
                    .and_then(|i| i.parent_name.as_ref())
                {
                    Some(catalog) => self.catalog(catalog),
                    None => self.session_catalog(),
                }
            }
            Statement::CreateSchema { schema_name, .. } => {
                if let sqlparser::ast::SchemaName::Simple(name)
                | sqlparser::ast::SchemaName::NamedAuthorization(name, _) = schema_name
                {
                    self.schema(name);
                }
            }
            Statement::Use(u) => match u {
                Use::Catalog(name) => self.catalog(name),
                Use::Schema(name) | Use::Database(name) | Use::Object(name) => self.schema(name),
                _ => {}
            },
            _ => {
                let ctes = cte_names(statement);
                let _ = visit_relations(statement, |name| {
                    let local = single_name(name).is_some_and(|n| ctes.contains(&n));
                    if !local {
                        self.table(name);
                    }
                    ControlFlow::<()>::Continue(())
                });
            }
        }
    }

    fn add(&mut self, catalog: Option<&str>, schema: Option<&str>, table: Option<&str>) {
        let Some(c) = catalog else { return };
        self.props.catalogs.insert(c.to_string());
        let Some(s) = schema else { return };
        self.props.schemas.insert(format!("{c}.{s}"));
        if let Some(t) = table {
            self.props.tables.insert(format!("{c}.{s}.{t}"));
        }
    }

    fn table(&mut self, name: &ObjectName) {
        let Some(p) = parts(name) else { return };
        // The session is borrowed apart from `self`: its names need no copies.
        let session = self.session;
        let (sc, ss) = (session.catalog.as_deref(), session.schema.as_deref());
        match p.as_slice() {
            [t] => self.add(sc, ss, Some(t)),
            [s, t] => self.add(sc, Some(s), Some(t)),
            [c, s, t] => self.add(Some(c), Some(s), Some(t)),
            _ => {}
        }
    }

    fn schema(&mut self, name: &ObjectName) {
        let Some(p) = parts(name) else { return };
        let session = self.session;
        match p.as_slice() {
            [s] => self.add(session.catalog.as_deref(), Some(s), None),
            [c, s] => self.add(Some(c), Some(s), None),
            _ => {}
        }
    }

    fn catalog(&mut self, name: &ObjectName) {
        if let Some(c) = single_name(name) {
            self.add(Some(&c), None, None);
        }
    }

    fn session_schema(&mut self) {
        let session = self.session;
        self.add(session.catalog.as_deref(), session.schema.as_deref(), None);
    }

    fn session_catalog(&mut self) {
        let session = self.session;
        self.add(session.catalog.as_deref(), None, None);
    }
}

/// Names of the statement's common table expressions (`WITH x AS (…)`): relations by these names
/// are the statement's own, not tables.
fn cte_names(statement: &Statement) -> BTreeSet<String> {
    struct Ctes(BTreeSet<String>);
    impl Visitor for Ctes {
        type Break = ();
        fn pre_visit_query(&mut self, q: &sqlparser::ast::Query) -> ControlFlow<()> {
            if let Some(with) = &q.with {
                for cte in &with.cte_tables {
                    self.0.insert(ident_text(&cte.alias.name));
                }
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Ctes(BTreeSet::new());
    let _ = statement.visit(&mut v);
    v.0
}

/// The text of prepared statement `name` from `X-Trino-Prepared-Statement` (every header line,
/// comma-separated `name=value` entries, both URL-encoded).
fn prepared_statement(headers: &HeaderMap, name: &str) -> Result<Option<String>, String> {
    for value in headers.get_all(&PREPARED_STATEMENT) {
        let Ok(value) = value.to_str() else {
            return Err("X-Trino-Prepared-Statement is not valid UTF-8".into());
        };
        for entry in value.split(',') {
            let Some((k, v)) = entry.trim().split_once('=') else {
                continue;
            };
            if url_decode(k)?.to_lowercase() != name {
                continue;
            }
            return decode_statement(&url_decode(v)?).map(Some);
        }
    }
    Ok(None)
}

/// `application/x-www-form-urlencoded` text, as Java's `URLEncoder` writes it (`+` for a space).
fn url_decode(s: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8()
        .map(|v| v.into_owned())
        .map_err(|_| "a prepared statement entry is not UTF-8 once decoded".to_string())
}

/// A prepared statement as Trino's `PreparedStatementEncoder` writes it: as is, or `$zstd:` and
/// the base64url of its zstd frame above the compression threshold.
fn decode_statement(v: &str) -> Result<String, String> {
    let Some(encoded) = v.strip_prefix("$zstd:") else {
        return Ok(v.to_string());
    };
    let compressed = base64::engine::general_purpose::URL_SAFE
        .decode(encoded)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded))
        .map_err(|e| format!("a `$zstd:` prepared statement is not base64url: {e}"))?;
    let mut out = Vec::new();
    let decoder = zstd::stream::read::Decoder::new(compressed.as_slice())
        .map_err(|e| format!("a `$zstd:` prepared statement does not inflate: {e}"))?;
    use std::io::Read as _;
    decoder
        .take(MAX_PREPARED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("a `$zstd:` prepared statement does not inflate: {e}"))?;
    if out.len() > MAX_PREPARED {
        return Err(format!(
            "a `$zstd:` prepared statement inflates beyond {MAX_PREPARED} bytes"
        ));
    }
    String::from_utf8(out).map_err(|_| "a prepared statement is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn select_with_session_defaults_and_ctes() {
        let h = headers(&[("x-trino-catalog", "hive"), ("x-trino-schema", "Web")]);
        let p = QueryProperties::analyze(
            b"WITH recent AS (SELECT * FROM clicks) SELECT * FROM recent r JOIN iceberg.sales.Orders o ON r.id = o.id JOIN dim.users u ON u.id = r.u",
            &h,
        );
        assert_eq!(p.statement, Some(StatementKind::Select), "{p:?}");
        assert_eq!(p.catalogs, set(&["hive", "iceberg"]));
        assert_eq!(p.schemas, set(&["hive.dim", "hive.web", "iceberg.sales"]));
        assert_eq!(
            p.tables,
            set(&["hive.dim.users", "hive.web.clicks", "iceberg.sales.orders"])
        );
    }

    #[test]
    fn statement_kinds() {
        let h = headers(&[("x-trino-catalog", "hive"), ("x-trino-schema", "web")]);
        for (sql, kind) in [
            ("INSERT INTO t SELECT * FROM s", StatementKind::Insert),
            ("CREATE TABLE t AS SELECT 1 x", StatementKind::CreateTableAs),
            ("CREATE TABLE t (x bigint)", StatementKind::Ddl),
            ("DROP TABLE t", StatementKind::Ddl),
            ("EXPLAIN SELECT 1", StatementKind::Explain),
            ("SHOW TABLES", StatementKind::Show),
            ("SHOW SCHEMAS FROM hive", StatementKind::Show),
            ("SHOW CATALOGS", StatementKind::Show),
            ("DESCRIBE t", StatementKind::Describe),
            ("USE hive.web", StatementKind::Use),
            ("DELETE FROM t WHERE x = 1", StatementKind::Delete),
            (
                "SELECT transform(a, x -> x + 1) FROM t",
                StatementKind::Select,
            ),
            ("START TRANSACTION", StatementKind::Transaction),
            ("SELECT 1;", StatementKind::Select),
        ] {
            let p = QueryProperties::analyze(sql.as_bytes(), &h);
            assert_eq!(p.statement, Some(kind), "{sql}: {p:?}");
        }
        let p = QueryProperties::analyze(b"INSERT INTO ice.a.t SELECT * FROM s", &h);
        assert_eq!(p.tables, set(&["hive.web.s", "ice.a.t"]));
        let p = QueryProperties::analyze(b"SHOW TABLES FROM iceberg.sales", &h);
        assert_eq!(p.schemas, set(&["iceberg.sales"]));
    }

    #[test]
    fn unparsable_and_unqualified() {
        let p = QueryProperties::analyze(b"SELEC nonsense", &HeaderMap::new());
        assert_eq!(p.statement, None);
        assert!(
            p.error.as_deref().unwrap().contains("does not parse"),
            "{p:?}"
        );
        let p = QueryProperties::analyze(b"SELECT 1; SELECT 2", &HeaderMap::new());
        assert_eq!(p.statement, None);
        let p = QueryProperties::analyze(b"\xff", &HeaderMap::new());
        assert_eq!(p.statement, None);
        // No session catalog: a bare table name touches no known catalog.
        let p = QueryProperties::analyze(b"SELECT * FROM t", &HeaderMap::new());
        assert_eq!(p.statement, Some(StatementKind::Select));
        assert!(p.catalogs.is_empty() && p.tables.is_empty());
        // Deep nesting is refused by the parser's depth limit, not by a stack overflow.
        let deep = format!("SELECT {}1{}", "(".repeat(10_000), ")".repeat(10_000));
        let p = QueryProperties::analyze(deep.as_bytes(), &HeaderMap::new());
        assert_eq!(p.statement, None);
    }

    #[test]
    fn execute_resolves_prepared_statements() {
        let plain = "SELECT * FROM iceberg.sales.orders WHERE id = ?";
        let encoded: String = url::form_urlencoded::byte_serialize(plain.as_bytes()).collect();
        let big = format!(
            "INSERT INTO hive.etl.t SELECT * FROM hive.raw.events WHERE x IN ({})",
            vec!["1"; 2000].join(", ")
        );
        let frame = zstd::encode_all(big.as_bytes(), 3).unwrap();
        let zstd = format!(
            "$zstd:{}",
            base64::engine::general_purpose::URL_SAFE.encode(frame)
        );
        let zstd: String = url::form_urlencoded::byte_serialize(zstd.as_bytes()).collect();
        let h = headers(&[
            (
                "x-trino-prepared-statement",
                &format!("other=SELECT+1,q1={encoded}"),
            ),
            ("x-trino-prepared-statement", &format!("big={zstd}")),
        ]);
        let p = QueryProperties::analyze(b"EXECUTE q1 USING 5", &h);
        assert_eq!(p.statement, Some(StatementKind::Select), "{p:?}");
        assert_eq!(p.tables, set(&["iceberg.sales.orders"]));
        assert_eq!(p.prepared.as_deref(), Some("q1"));
        let p = QueryProperties::analyze(b"EXECUTE big", &h);
        assert_eq!(p.statement, Some(StatementKind::Insert), "{p:?}");
        assert_eq!(p.tables, set(&["hive.etl.t", "hive.raw.events"]));
        let p = QueryProperties::analyze(b"EXECUTE missing", &h);
        assert!(p.error.unwrap().contains("`missing`"));
        let p = QueryProperties::analyze(
            b"EXECUTE IMMEDIATE 'SELECT * FROM tpch.tiny.nation'",
            &HeaderMap::new(),
        );
        assert_eq!(p.tables, set(&["tpch.tiny.nation"]), "{p:?}");
    }
}
