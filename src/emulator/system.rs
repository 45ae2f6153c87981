//! The emulated coordinator's `system` catalog, as the SQL engine (`emulator::engine`) reads it:
//! - `system.runtime.nodes` (the coordinator itself) and `system.runtime.queries` (the queries
//!   the emulator knows, from its own query registry);
//! - `system.metadata.catalogs`, `system.metadata.table_comments` (every table of the other
//!   catalogs, without comments) and `system.metadata.materialized_views` (none), which dbt's
//!   Trino adapter reads.
//!
//! Tables are computed when read; the catalog is built for each statement (it holds a weak
//! reference to the coordinator's state, so a view over it cannot keep the coordinator alive).

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{MemTable, MemoryCatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;

/// The coordinator as `system.runtime.nodes` shows it.
pub(crate) struct Node {
    pub id: String,
    pub uri: String,
    pub version: &'static str,
}

/// One query as `system.runtime.queries` shows it.
pub(crate) struct RuntimeQuery {
    pub id: String,
    pub state: &'static str,
    pub user: String,
    pub source: Option<String>,
    pub query: String,
    /// Milliseconds since the epoch.
    pub created: i64,
}

/// What `system.runtime` shows of the coordinator the engine runs in.
pub(crate) trait Runtime: Send + Sync {
    fn node(&self) -> Node;
    fn queries(&self) -> Vec<RuntimeQuery>;
}

/// A coordinator without queries (the engine's unit tests).
#[cfg(test)]
pub(crate) struct Idle;

#[cfg(test)]
impl Runtime for Idle {
    fn node(&self) -> Node {
        Node {
            id: "idle".into(),
            uri: "http://127.0.0.1:0".into(),
            version: "test",
        }
    }
    fn queries(&self) -> Vec<RuntimeQuery> {
        Vec::new()
    }
}

/// A catalog's tables: `(schema, table)`, in name order.
pub(crate) type TableNames = Vec<(String, String)>;

/// The `runtime` or `metadata` schema of `system`.
#[derive(Debug)]
pub(crate) struct SystemSchema {
    kind: Kind,
    runtime: Weak<dyn Runtime>,
    /// The other catalogs, by name, and their tables (listed when `metadata` is read).
    catalogs: Vec<(String, Weak<MemoryCatalogProvider>)>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Runtime,
    Metadata,
}

/// The `system` catalog (without its `information_schema`, which the engine adds).
pub(crate) fn catalog(
    runtime: Weak<dyn Runtime>,
    catalogs: Vec<(String, Weak<MemoryCatalogProvider>)>,
) -> Arc<MemoryCatalogProvider> {
    let system = Arc::new(MemoryCatalogProvider::new());
    for (name, kind) in [("runtime", Kind::Runtime), ("metadata", Kind::Metadata)] {
        let schema = SystemSchema {
            kind,
            runtime: runtime.clone(),
            catalogs: catalogs.clone(),
        };
        // A fresh in-memory catalog: registering cannot clash.
        let _ = datafusion::catalog::CatalogProvider::register_schema(
            system.as_ref(),
            name,
            Arc::new(schema),
        );
    }
    system
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn timestamp(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        true,
    )
}

/// The columns of a `system` table of schema `kind`.
fn columns(kind: Kind, table: &str) -> Option<SchemaRef> {
    let fields = match (kind, table) {
        (Kind::Runtime, "nodes") => vec![
            text("node_id"),
            text("http_uri"),
            text("node_version"),
            Field::new("coordinator", DataType::Boolean, true),
            text("state"),
        ],
        (Kind::Runtime, "queries") => vec![
            text("query_id"),
            text("state"),
            text("user"),
            text("source"),
            text("query"),
            Field::new("queued_time_ms", DataType::Int64, true),
            Field::new("analysis_time_ms", DataType::Int64, true),
            Field::new("planning_time_ms", DataType::Int64, true),
            timestamp("created"),
            timestamp("started"),
            timestamp("last_heartbeat"),
            timestamp("end"),
            text("error_type"),
            text("error_code"),
        ],
        (Kind::Metadata, "catalogs") => vec![
            text("catalog_name"),
            text("connector_id"),
            text("connector_name"),
        ],
        (Kind::Metadata, "table_comments") => vec![
            text("catalog_name"),
            text("schema_name"),
            text("table_name"),
            text("comment"),
        ],
        (Kind::Metadata, "materialized_views") => vec![
            text("catalog_name"),
            text("schema_name"),
            text("name"),
            text("storage_catalog"),
            text("storage_schema"),
            text("storage_table"),
            text("freshness"),
            timestamp("last_fresh_time"),
            text("comment"),
            text("definition"),
        ],
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

impl SystemSchema {
    fn names(&self) -> &'static [&'static str] {
        match self.kind {
            Kind::Runtime => &["nodes", "queries"],
            Kind::Metadata => &["catalogs", "materialized_views", "table_comments"],
        }
    }

    fn rows(&self, table: &str, schema: &SchemaRef) -> Result<RecordBatch, DataFusionError> {
        let strings = |v: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        let columns: Vec<ArrayRef> = match (self.kind, table) {
            (Kind::Runtime, "nodes") => {
                let nodes: Vec<Node> = self
                    .runtime
                    .upgrade()
                    .map(|r| r.node())
                    .into_iter()
                    .collect();
                vec![
                    strings(nodes.iter().map(|n| Some(n.id.clone())).collect()),
                    strings(nodes.iter().map(|n| Some(n.uri.clone())).collect()),
                    strings(nodes.iter().map(|n| Some(n.version.to_string())).collect()),
                    Arc::new(BooleanArray::from(
                        nodes.iter().map(|_| Some(true)).collect::<Vec<_>>(),
                    )),
                    strings(nodes.iter().map(|_| Some("active".to_string())).collect()),
                ]
            }
            (Kind::Runtime, "queries") => {
                let qs = self
                    .runtime
                    .upgrade()
                    .map(|r| r.queries())
                    .unwrap_or_default();
                let none = || strings(qs.iter().map(|_| None).collect());
                let no_number = || -> ArrayRef {
                    Arc::new(Int64Array::from(
                        qs.iter().map(|_| None).collect::<Vec<Option<i64>>>(),
                    ))
                };
                let at = |v: Vec<Option<i64>>| -> ArrayRef {
                    Arc::new(TimestampMillisecondArray::from(v).with_timezone("UTC"))
                };
                vec![
                    strings(qs.iter().map(|q| Some(q.id.clone())).collect()),
                    strings(qs.iter().map(|q| Some(q.state.to_string())).collect()),
                    strings(qs.iter().map(|q| Some(q.user.clone())).collect()),
                    strings(qs.iter().map(|q| q.source.clone()).collect()),
                    strings(qs.iter().map(|q| Some(q.query.clone())).collect()),
                    no_number(),
                    no_number(),
                    no_number(),
                    at(qs.iter().map(|q| Some(q.created)).collect()),
                    at(qs.iter().map(|q| Some(q.created)).collect()),
                    at(qs.iter().map(|_| None).collect()),
                    at(qs.iter().map(|_| None).collect()),
                    none(),
                    none(),
                ]
            }
            (Kind::Metadata, "catalogs") => {
                let mut names: Vec<String> = self.catalogs.iter().map(|c| c.0.clone()).collect();
                names.push("system".into());
                names.sort();
                vec![
                    strings(names.iter().cloned().map(Some).collect()),
                    strings(names.iter().cloned().map(Some).collect()),
                    strings(names.into_iter().map(Some).collect()),
                ]
            }
            (Kind::Metadata, "table_comments") => {
                let mut rows = Vec::new();
                for (name, catalog) in &self.catalogs {
                    for (schema, table) in tables_of(catalog) {
                        rows.push((name.clone(), schema, table));
                    }
                }
                vec![
                    strings(rows.iter().map(|r| Some(r.0.clone())).collect()),
                    strings(rows.iter().map(|r| Some(r.1.clone())).collect()),
                    strings(rows.iter().map(|r| Some(r.2.clone())).collect()),
                    strings(rows.iter().map(|_| None).collect()),
                ]
            }
            _ => return Ok(RecordBatch::new_empty(schema.clone())),
        };
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// A catalog's tables, in name order (without reading any of them).
fn tables_of(catalog: &Weak<MemoryCatalogProvider>) -> TableNames {
    use datafusion::catalog::CatalogProvider;
    let Some(catalog) = catalog.upgrade() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut schemas = catalog.schema_names();
    schemas.sort();
    for s in schemas {
        if let Some(schema) = catalog.schema(&s) {
            let mut names = schema.table_names();
            names.sort();
            out.extend(names.into_iter().map(|t| (s.clone(), t)));
        }
    }
    out
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        self.names().iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some(schema) = columns(self.kind, name) else {
            return Ok(None);
        };
        let batch = self.rows(name, &schema)?;
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.names().contains(&name)
    }
}
