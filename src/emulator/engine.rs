//! Real SQL for the emulated coordinators, on DataFusion.
//!
//! Every statement the emulator does not answer by hand (`statement`: session and transaction
//! statements, the load probe, the canned tables) runs here, shaped like Trino (`shape`), with
//! the test-control functions `sleep()` and `fail()` and the session functions (`knobs`), so that
//! the demo's clusters answer ordinary SQL: arithmetic and functions, aggregates,
//! `UNNEST(sequence(..))`, and these catalogs:
//! - `tpch`, schemas `tiny` (scale 0.01) and `sf1`: TPC-H data from `tpchgen-arrow`, generated
//!   the first time a table is read and kept, with Trino's column names (`orderkey`, not
//!   `l_orderkey`) and types (prices and quantities `double`, as Trino's tpch connector has them);
//! - `memory`: `CREATE SCHEMA`, `CREATE TABLE [AS]`, `CREATE [OR REPLACE] VIEW` (Trino's
//!   `SECURITY DEFINER|INVOKER` accepted), `INSERT`, `ALTER TABLE|VIEW ... RENAME TO`, `DROP`
//!   (per emulated coordinator, in memory, like Trino's memory connector) — what dbt's Trino
//!   adapter sends; writes answer with Trino's `rows` column, `updateType` and `updateCount`;
//! - `system` (`emulator::system`): `runtime.nodes`, `runtime.queries` (the emulator's own
//!   queries), `metadata.catalogs`, `metadata.table_comments`, `metadata.materialized_views`;
//! - `information_schema` in each catalog, as Trino has it (`schemata`, `tables` with `BASE
//!   TABLE`/`VIEW`, `columns` with Trino's type names), which `SHOW CATALOGS`, `SHOW SCHEMAS`,
//!   `SHOW TABLES`, `SHOW COLUMNS` and `DESCRIBE` read;
//! - `EXECUTE IMMEDIATE ... USING`, how clients send a statement with parameters;
//! - `EXPLAIN`, as one `Query Plan` column (DataFusion's plan).
//!
//! Results are typed with Trino's type names; values are written as Trino writes them (numbers as
//! numbers, decimals, dates and timestamps as strings), by the hybrid endpoint's converter. A
//! query's rows stream ([`RowSource`]): only the first batch is computed when it is submitted.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::timezone::Tz;
use datafusion::arrow::array::{
    Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray, UInt64Array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::catalog::{
    MemTable, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider,
};
use datafusion::common::{SchemaError, TableReference};
use datafusion::datasource::TableType;
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tokio::sync::OnceCell;

use datafusion::common::config::Dialect;
use datafusion::execution::session_state::SessionState;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;

use super::knobs::{self, Slept};
use super::protocol::{CannedType, Column, ErrorCode, QueryError, SqlType};
use super::query::{Plan, RowSource, Session};
use super::shape;
use super::system::{self, Runtime};
use super::tables;

/// What a statement run on the engine gives the query: its plan, and how long its `sleep()`
/// calls asked it to stay RUNNING.
pub(crate) struct Ran {
    pub plan: Plan,
    pub sleep_ms: u64,
}

impl From<Plan> for Ran {
    fn from(plan: Plan) -> Ran {
        Ran { plan, sleep_ms: 0 }
    }
}

/// The rest of a query's rows, computed batch by batch as the client pages.
pub(crate) struct BatchSource {
    stream: SendableRecordBatchStream,
}

impl std::fmt::Debug for BatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSource")
            .field("schema", &self.stream.schema())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RowSource for BatchSource {
    async fn next(&mut self) -> Option<Result<Vec<Vec<serde_json::Value>>, QueryError>> {
        let batch = match self.stream.next().await? {
            Ok(batch) => batch,
            Err(e) => return Some(Err(error(e))),
        };
        Some(json_rows(&batch))
    }
}

/// A batch's rows as the JSON values Trino writes.
fn json_rows(batch: &RecordBatch) -> Result<Vec<Vec<serde_json::Value>>, QueryError> {
    let batch = trino_values(batch).map_err(error)?;
    Ok(crate::hybrid::output::rows(std::slice::from_ref(&batch))
        .map_err(|e| QueryError::new(ErrorCode::GenericUserError, e.to_string()))?
        .into_iter()
        .map(|row| match row {
            serde_json::Value::Array(values) => values,
            other => vec![other],
        })
        .collect())
}

/// `TABLE_NOT_FOUND` for a query (or an insert) naming a table that is not there, as Trino
/// reports it; `None` when every table it names exists.
fn missing_table(state: &SessionState, statement: &DfStatement) -> Option<QueryError> {
    let DfStatement::Statement(s) = statement else {
        return None;
    };
    if !matches!(s.as_ref(), SqlStatement::Query(_) | SqlStatement::Insert(_)) {
        return None;
    }
    let options = state.config_options();
    let (catalog, schema) = (
        options.catalog.default_catalog.as_str(),
        options.catalog.default_schema.as_str(),
    );
    state
        .resolve_table_references(statement)
        .ok()?
        .into_iter()
        .filter(|r| !(r.schema().is_none() && state.table_functions().contains_key(r.table())))
        .map(|r| r.resolve(catalog, schema))
        .find(|t| {
            !state
                .catalog_list()
                .catalog(&t.catalog)
                .and_then(|c| c.schema(&t.schema))
                .is_some_and(|s| s.table_exist(&t.table))
        })
        .map(|t| {
            QueryError::new(
                ErrorCode::TableNotFound,
                format!(
                    "Table '{}.{}.{}' does not exist",
                    t.catalog, t.schema, t.table
                ),
            )
        })
}

/// Rows per generated batch.
const BATCH_ROWS: usize = 8192;

/// Generated TPC-H rows, as `tpchgen-arrow` produces them.
type TpchRows = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>;

/// One TPC-H table: its name as Trino's tpch connector has it, its `tpchgen-arrow` schema, and
/// its rows at a scale.
struct TpchTable {
    name: &'static str,
    schema: fn() -> SchemaRef,
    rows: fn(f64) -> TpchRows,
}

/// Every TPC-H table, in name order.
static TPCH: [TpchTable; 8] = {
    use tpchgen::generators as g;
    use tpchgen_arrow as a;
    [
        TpchTable {
            name: "customer",
            schema: a::CustomerArrow::schema_ref,
            rows: |scale| {
                let rows = g::CustomerGenerator::new(scale, 1, 1);
                Box::new(a::CustomerArrow::new(rows).with_batch_size(BATCH_ROWS))
            },
        },
        TpchTable {
            name: "lineitem",
            schema: a::LineItemArrow::schema_ref,
            rows: |scale| {
                let rows = g::LineItemGenerator::new(scale, 1, 1);
                Box::new(a::LineItemArrow::new(rows).with_batch_size(BATCH_ROWS))
            },
        },
        TpchTable {
            name: "nation",
            schema: a::NationArrow::schema_ref,
            rows: |scale| {
                let rows = g::NationGenerator::new(scale, 1, 1);
                Box::new(a::NationArrow::new(rows).with_batch_size(BATCH_ROWS))
            },
        },
        TpchTable {
            name: "orders",
            schema: a::OrderArrow::schema_ref,
            rows: |scale| {
                let rows = g::OrderGenerator::new(scale, 1, 1);
                Box::new(a::OrderArrow::new(rows).with_batch_size(BATCH_ROWS))
            },
        },
        TpchTable {
            name: "part",
            schema: a::PartArrow::schema_ref,
            rows: |scale| {
                let rows = g::PartGenerator::new(scale, 1, 1);
                Box::new(a::PartArrow::new(rows).with_batch_size(BATCH_ROWS))
            },
        },
        TpchTable {
            name: "partsupp",
            schema: a::PartSuppArrow::schema_ref,
            rows: |scale| {
                let rows = g::PartSuppGenerator::new(scale, 1, 1);
                Box::new(a::PartSuppArrow::new(rows).with_batch_size(BATCH_ROWS))
            },
        },
        TpchTable {
            name: "region",
            schema: a::RegionArrow::schema_ref,
            rows: |scale| {
                let rows = g::RegionGenerator::new(scale, 1, 1);
                Box::new(a::RegionArrow::new(rows).with_batch_size(BATCH_ROWS))
            },
        },
        TpchTable {
            name: "supplier",
            schema: a::SupplierArrow::schema_ref,
            rows: |scale| {
                let rows = g::SupplierGenerator::new(scale, 1, 1);
                Box::new(a::SupplierArrow::new(rows).with_batch_size(BATCH_ROWS))
            },
        },
    ]
};

impl TpchTable {
    fn named(name: &str) -> Option<&'static TpchTable> {
        TPCH.iter().find(|t| t.name == name)
    }

    /// The schema as Trino shows it, without generating the table.
    fn trino_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = (self.schema)()
            .fields()
            .iter()
            .map(|f| trino_field(f))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// The whole table at `scale`, with Trino's column names and types.
    fn generate(&self, scale: f64) -> Result<Vec<RecordBatch>, DataFusionError> {
        (self.rows)(scale)
            .map(|b| trino_shape(&b?))
            .collect::<Result<Vec<_>, _>>()
    }
}

/// One emulated coordinator's SQL engine and its catalogs.
pub(crate) struct Engine {
    ctx: SessionContext,
    /// The catalogs besides `system` (which is built for each statement), by name.
    catalogs: Vec<(&'static str, Arc<MemoryCatalogProvider>)>,
}

impl Engine {
    pub(crate) fn new() -> Engine {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema("memory", "default")
            .with_create_default_catalog_and_schema(false)
            .with_target_partitions(2);
        // `1.50` is `decimal(3,2)`, as in Trino.
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        let ctx = SessionContext::new_with_config(config);
        let tpch = Arc::new(MemoryCatalogProvider::new());
        for (schema, scale) in [("tiny", 0.01), ("sf1", 1.0)] {
            // Registering into a fresh in-memory catalog cannot clash.
            let _ = tpch.register_schema(schema, Arc::new(TpchSchema::new(scale)));
        }
        let memory = Arc::new(MemoryCatalogProvider::new());
        let _ = memory.register_schema("default", Arc::new(MemorySchemaProvider::new()));
        let catalogs = vec![("memory", memory), ("tpch", tpch)];
        for (name, catalog) in &catalogs {
            with_information_schema(name, catalog);
            ctx.register_catalog(*name, catalog.clone());
        }
        // Trino's `sequence(start, stop)` is DataFusion's inclusive `generate_series`.
        if let Ok(series) = ctx.udf("generate_series") {
            ctx.register_udf(series.as_ref().clone().with_aliases(["sequence"]));
        }
        Engine { ctx, catalogs }
    }

    /// Run `sql` for `session` (its catalog and schema are the defaults for unqualified names)
    /// on the coordinator `runtime` (what `system.runtime` shows). A query's rows are streamed:
    /// only its first rows are computed here (so that `fail()` and `sleep()` take effect at
    /// once), the rest as the client pages ([`RowSource`]).
    pub(crate) async fn run(
        &self,
        sql: &str,
        session: &Session,
        runtime: Weak<dyn Runtime>,
    ) -> Result<Ran, QueryError> {
        let bound = immediate(sql)?;
        let sql = bound.as_deref().unwrap_or(sql);
        if let Some((query, table)) = show(sql, session)? {
            let ran = Box::pin(self.run(&query, session, runtime)).await?;
            if let Some(table) = table {
                if ran.plan.is_empty() {
                    return Err(QueryError::new(
                        ErrorCode::TableNotFound,
                        format!("Table '{table}' does not exist"),
                    ));
                }
            }
            return Ok(ran);
        }
        if let Some(rename) = rename(sql, session)? {
            return self.rename(&rename).await.map(Ran::from);
        }
        let view = without_view_security(sql)?;
        let sql = view.as_deref().unwrap_or(sql);
        let slept = Slept::default();
        let ctx = self.session(session, runtime, &slept);
        let state = ctx.state();
        let mut statement = state
            .sql_to_statement(sql, &Dialect::Generic)
            .map_err(|e| match e.find_root() {
                DataFusionError::SQL(parse, _) => shape::syntax_error(sql, parse),
                _ => error(e),
            })?;
        shape::rewrite(&mut statement);
        // Planned first: a DDL statement runs when executed and leaves an empty plan behind.
        let plan = match state.statement_to_plan(statement.clone()).await {
            Ok(plan) => plan,
            Err(e) => return Err(missing_table(&state, &statement).unwrap_or_else(|| error(e))),
        };
        enum Kind {
            Query,
            Explain,
            Ddl(&'static str),
            Insert,
            CreateAs(TableReference),
        }
        let kind = match &plan {
            // The emulator keeps its data in memory: nothing here may read or write a file of
            // the machine it runs on, nor change the engine's own settings.
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_))
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_) => return Err(QueryError::new(
                ErrorCode::NotSupported,
                "the emulator runs no statement that reads or writes files or changes its settings",
            )),
            LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(c)) if !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(e) if !e.produce_one_row) => {
                Kind::CreateAs(c.name.clone())
            }
            LogicalPlan::Ddl(d) => Kind::Ddl(ddl_update_type(d)),
            LogicalPlan::Dml(d) if matches!(d.op, WriteOp::Insert(_)) => Kind::Insert,
            LogicalPlan::Explain(_) | LogicalPlan::Analyze(_) => Kind::Explain,
            _ => Kind::Query,
        };
        let literals = shape::literal_types(&plan);
        let frame = ctx.execute_logical_plan(plan).await.map_err(error)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        if let Kind::Query = kind {
            let parametric = session.parametric_datetime;
            let columns = schema
                .fields()
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let ty = literals
                        .get(i)
                        .cloned()
                        .flatten()
                        .unwrap_or_else(|| result_type(f.data_type(), parametric));
                    Column::new(f.name().clone(), ty)
                })
                .collect();
            let stream = frame.execute_stream().await.map_err(error)?;
            let mut source = BatchSource { stream };
            let mut rows = Vec::new();
            let mut exhausted = false;
            while rows.is_empty() && !exhausted {
                match source.next().await {
                    Some(batch) => rows = batch?,
                    None => exhausted = true,
                }
            }
            return Ok(Ran {
                plan: Plan::stream(
                    columns,
                    rows,
                    (!exhausted).then(|| Box::new(source) as Box<dyn RowSource>),
                ),
                sleep_ms: slept.millis(),
            });
        }
        let batches = frame.collect().await.map_err(error)?;
        Ok(Ran::from(match kind {
            Kind::Ddl(update_type) => Plan::Update { update_type },
            Kind::CreateAs(name) => {
                let count = ctx
                    .table(name)
                    .await
                    .map_err(error)?
                    .count()
                    .await
                    .map_err(error)?;
                Plan::count("CREATE TABLE", u64::try_from(count).unwrap_or(u64::MAX))
            }
            Kind::Insert => Plan::count("INSERT", inserted(&batches)),
            Kind::Explain | Kind::Query => explain(&batches),
        }))
    }

    /// A context for one statement: the engine's catalogs, a `system` catalog of `runtime`, and
    /// the session's catalog and schema as the defaults.
    fn session(
        &self,
        session: &Session,
        runtime: Weak<dyn Runtime>,
        slept: &Slept,
    ) -> SessionContext {
        let list = Arc::new(MemoryCatalogProviderList::new());
        let weak = self
            .catalogs
            .iter()
            .map(|(name, c)| (name.to_string(), Arc::downgrade(c)))
            .collect();
        let system = system::catalog(runtime, weak);
        with_information_schema("system", &system);
        list.register_catalog("system".into(), system);
        for (name, catalog) in &self.catalogs {
            list.register_catalog(name.to_string(), catalog.clone());
        }
        let mut state = SessionStateBuilder::new_from_existing(self.ctx.state())
            .with_catalog_list(list)
            .build();
        if let Some(catalog) = &session.catalog {
            let options = state.config_mut().options_mut();
            options.catalog.default_catalog = catalog.clone();
            if let Some(schema) = &session.schema {
                options.catalog.default_schema = schema.clone();
            }
        }
        let ctx = SessionContext::new_with_state(state);
        for f in knobs::functions(
            &session.user,
            session.catalog.as_deref(),
            session.schema.as_deref(),
            slept,
        ) {
            ctx.register_udf(f);
        }
        ctx
    }

    /// `ALTER TABLE|VIEW a RENAME TO b` in the `memory` catalog.
    async fn rename(&self, r: &Rename) -> Result<Plan, QueryError> {
        let not_found = |what: &str, name: &[String; 3]| {
            QueryError::new(
                ErrorCode::TableNotFound,
                format!("{what} '{}' does not exist", name.join(".")),
            )
        };
        let what = if r.view { "View" } else { "Table" };
        let schema_of = |name: &[String; 3]| {
            self.catalogs
                .iter()
                .find(|(c, _)| *c == "memory" && *c == name[0])
                .and_then(|(_, c)| c.schema(&name[1]))
        };
        let from = schema_of(&r.from).ok_or_else(|| not_found(what, &r.from))?;
        let to = schema_of(&r.to).ok_or_else(|| {
            QueryError::new(
                ErrorCode::NotSupported,
                format!(
                    "the emulator renames only within existing schemas of the memory catalog: '{}'",
                    r.to.join(".")
                ),
            )
        })?;
        let table = from
            .table(&r.from[2])
            .await
            .map_err(error)?
            .filter(|t| (t.table_type() == TableType::View) == r.view)
            .ok_or_else(|| not_found(what, &r.from))?;
        if to.table_exist(&r.to[2]) {
            return Err(QueryError::new(
                ErrorCode::GenericUserError,
                format!("Target table '{}' already exists", r.to.join(".")),
            ));
        }
        from.deregister_table(&r.from[2]).map_err(error)?;
        to.register_table(r.to[2].clone(), table).map_err(error)?;
        Ok(Plan::Update {
            update_type: if r.view {
                "RENAME VIEW"
            } else {
                "RENAME TABLE"
            },
        })
    }
}

/// Adds Trino's `information_schema` to a catalog.
fn with_information_schema(name: &str, catalog: &Arc<MemoryCatalogProvider>) {
    let info = InformationSchema {
        name: name.to_string(),
        catalog: Arc::downgrade(catalog),
    };
    // The catalog is the emulator's own: registering cannot fail.
    let _ = catalog.register_schema(INFORMATION_SCHEMA, Arc::new(info));
}

/// The rows an `INSERT` wrote (DataFusion answers with one `count` row).
fn inserted(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
        .flat_map(|c| c.iter().flatten())
        .sum()
}

/// `EXPLAIN` as Trino answers it: one `Query Plan` varchar.
fn explain(batches: &[RecordBatch]) -> Plan {
    let mut text = String::new();
    for b in batches {
        let (Some(kind), Some(plan)) = (
            b.column(0).as_any().downcast_ref::<StringArray>(),
            b.column(b.num_columns().saturating_sub(1))
                .as_any()
                .downcast_ref::<StringArray>(),
        ) else {
            continue;
        };
        for (k, p) in kind.iter().zip(plan.iter()) {
            if b.num_columns() > 1 {
                text.push_str(k.unwrap_or_default());
                text.push_str(":\n");
            }
            text.push_str(p.unwrap_or_default());
            text.push('\n');
        }
    }
    Plan::Rows {
        columns: vec![Column::new("Query Plan", SqlType::Varchar(None))],
        rows: vec![vec![serde_json::Value::from(text)]],
    }
}

/// Trino's `updateType` of a DDL statement.
fn ddl_update_type(d: &DdlStatement) -> &'static str {
    match d {
        DdlStatement::CreateMemoryTable(_) => "CREATE TABLE",
        DdlStatement::CreateView(_) => "CREATE VIEW",
        DdlStatement::CreateCatalogSchema(_) => "CREATE SCHEMA",
        DdlStatement::DropTable(_) => "DROP TABLE",
        DdlStatement::DropView(_) => "DROP VIEW",
        DdlStatement::DropCatalogSchema(_) => "DROP SCHEMA",
        _ => "DDL",
    }
}

/// A DataFusion failure as Trino would report it (by its kind; a missing table or function is a
/// planning error without a kind of its own, so `GENERIC_USER_ERROR`).
fn error(e: DataFusionError) -> QueryError {
    if let Some(message) = knobs::failed(&e) {
        return QueryError::new(ErrorCode::GenericUserError, message);
    }
    let message = e.strip_backtrace();
    let code = match e.find_root() {
        DataFusionError::SQL(..) => ErrorCode::SyntaxError,
        DataFusionError::SchemaError(e, _) if matches!(**e, SchemaError::FieldNotFound { .. }) => {
            ErrorCode::ColumnNotFound
        }
        DataFusionError::NotImplemented(_) => ErrorCode::NotSupported,
        _ => ErrorCode::GenericUserError,
    };
    QueryError::new(code, message)
}

/// `timestamp(3)` and `timestamp(3) with time zone` (the engine's timestamps are written at
/// millisecond precision), and the same without precision for clients that did not declare
/// `PARAMETRIC_DATETIME`.
static TIMESTAMP: [CannedType; 4] = [
    CannedType {
        display: "timestamp(3)",
        signature: r#"{"rawType":"timestamp","arguments":[{"kind":"LONG","value":3}]}"#,
    },
    CannedType {
        display: "timestamp(3) with time zone",
        signature: r#"{"rawType":"timestamp with time zone","arguments":[{"kind":"LONG","value":3}]}"#,
    },
    CannedType {
        display: "timestamp",
        signature: r#"{"rawType":"timestamp","arguments":[]}"#,
    },
    CannedType {
        display: "timestamp with time zone",
        signature: r#"{"rawType":"timestamp with time zone","arguments":[]}"#,
    },
];

/// The Trino type of an Arrow column (as `trino_values` writes it), as `information_schema`
/// shows it.
fn trino_type(t: &DataType) -> SqlType {
    result_type(t, true)
}

/// The Trino type of a result column, for a client that declared `PARAMETRIC_DATETIME` or not.
fn result_type(t: &DataType, parametric_datetime: bool) -> SqlType {
    match t {
        DataType::Boolean => SqlType::Boolean,
        DataType::Int8 => tables::TINYINT_TYPE,
        DataType::Int16 | DataType::UInt8 => tables::SMALLINT_TYPE,
        DataType::Int32 | DataType::UInt16 => SqlType::Integer,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => SqlType::Bigint,
        DataType::Float16 | DataType::Float32 => tables::REAL_TYPE,
        DataType::Float64 => SqlType::Double,
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => SqlType::Decimal {
            precision: u32::from(*p),
            scale: u32::try_from(*s).unwrap_or(0),
        },
        DataType::Date32 | DataType::Date64 => tables::DATE_TYPE,
        DataType::Timestamp(_, tz) => {
            let i = usize::from(tz.is_some()) + if parametric_datetime { 0 } else { 2 };
            SqlType::Canned(&TIMESTAMP[i])
        }
        DataType::Null => SqlType::Unknown,
        _ => SqlType::Varchar(None),
    }
}

/// Columns whose Arrow type has no Trino counterpart the emulator writes are sent as text;
/// timestamps as Trino writes them (`2024-01-15 10:30:00.000`, with the zone after a space).
fn trino_values(batch: &RecordBatch) -> Result<RecordBatch, DataFusionError> {
    let as_text = |t: &DataType| {
        matches!(t, DataType::Timestamp(..))
            || (matches!(trino_type(t), SqlType::Varchar(_)) && !is_text(t))
    };
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| as_text(f.data_type()))
    {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if let DataType::Timestamp(_, tz) = f.data_type() {
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(timestamp_text(c, tz.as_deref())?);
        } else if as_text(f.data_type()) {
            fields.push(Field::new(f.name(), DataType::Utf8, true));
            columns.push(cast(c, &DataType::Utf8)?);
        } else {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Timestamps as Trino's text at millisecond precision (in their zone, named after them).
fn timestamp_text(c: &ArrayRef, tz: Option<&str>) -> Result<ArrayRef, DataFusionError> {
    let ms = cast(
        c,
        &DataType::Timestamp(TimeUnit::Millisecond, tz.map(Arc::from)),
    )?;
    let Some(ms) = ms.as_any().downcast_ref::<TimestampMillisecondArray>() else {
        return Ok(cast(c, &DataType::Utf8)?);
    };
    const FORMAT: &str = "%Y-%m-%d %H:%M:%S%.3f";
    let zone: Option<Tz> = tz.map(str::parse).transpose()?;
    let text: StringArray = (0..ms.len())
        .map(|i| {
            if ms.is_null(i) {
                return None;
            }
            match (zone, tz) {
                (Some(zone), Some(name)) => ms
                    .value_as_datetime_with_tz(i, zone)
                    .map(|t| format!("{} {name}", t.format(FORMAT))),
                _ => ms
                    .value_as_datetime(i)
                    .map(|t| t.format(FORMAT).to_string()),
            }
        })
        .collect();
    Ok(Arc::new(text))
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// One TPC-H schema: its tables are generated when first read, then kept (one cell per table
/// of [`TPCH`], in its order).
#[derive(Debug)]
struct TpchSchema {
    scale: f64,
    tables: Vec<OnceCell<Arc<dyn TableProvider>>>,
}

impl TpchSchema {
    fn new(scale: f64) -> TpchSchema {
        TpchSchema {
            scale,
            tables: TPCH.iter().map(|_| OnceCell::new()).collect(),
        }
    }
}

#[async_trait]
impl SchemaProvider for TpchSchema {
    fn table_names(&self) -> Vec<String> {
        TPCH.iter().map(|t| t.name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some((table, cell)) = TPCH.iter().zip(&self.tables).find(|(t, _)| t.name == name)
        else {
            return Ok(None);
        };
        let scale = self.scale;
        let provider = cell
            .get_or_try_init(|| async move {
                let batches = tokio::task::spawn_blocking(move || table.generate(scale))
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))??;
                let mem = MemTable::try_new(table.trino_schema(), vec![batches])?;
                Ok::<Arc<dyn TableProvider>, DataFusionError>(Arc::new(mem))
            })
            .await?;
        Ok(Some(provider.clone()))
    }

    fn table_exist(&self, name: &str) -> bool {
        TpchTable::named(name).is_some()
    }
}

/// `l_orderkey decimal` → `orderkey double`: the prefix dropped and decimals as `double`, as
/// Trino's tpch connector shows the tables.
fn trino_field(f: &Field) -> Field {
    let name = f
        .name()
        .split_once('_')
        .map_or(f.name().as_str(), |(_, n)| n);
    let ty = match f.data_type() {
        DataType::Decimal128(..) => DataType::Float64,
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        t => t.clone(),
    };
    Field::new(name, ty, f.is_nullable())
}

fn trino_shape(batch: &RecordBatch) -> Result<RecordBatch, DataFusionError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let field = trino_field(f);
        columns.push(if field.data_type() == c.data_type() {
            c.clone()
        } else {
            cast(c, field.data_type())?
        });
        fields.push(field);
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// The tables of Trino's `information_schema`, in each catalog.
const INFORMATION_SCHEMA: &str = "information_schema";
const INFO_TABLES: [&str; 3] = ["columns", "schemata", "tables"];

/// A catalog's `information_schema` as Trino has it: `schemata (catalog_name, schema_name)`,
/// `tables (table_catalog, table_schema, table_name, table_type)` and `columns (table_catalog,
/// table_schema, table_name, column_name, ordinal_position, column_default, is_nullable,
/// data_type, comment, extra_info)`, with Trino's type names in `data_type`; computed when read.
#[derive(Debug)]
struct InformationSchema {
    name: String,
    catalog: std::sync::Weak<MemoryCatalogProvider>,
}

/// A catalog's schemas and its tables' `(schema, table, columns, table type)`, in name order.
type Contents = (Vec<String>, Vec<(String, String, SchemaRef, &'static str)>);

impl InformationSchema {
    /// What the catalog holds now (its schemas, those without tables too).
    async fn contents(&self) -> Result<Contents, DataFusionError> {
        let Some(catalog) = self.catalog.upgrade() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut out = Vec::new();
        let mut schemas = catalog.schema_names();
        schemas.sort();
        for schema_name in &schemas {
            let Some(schema) = catalog.schema(schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for table in names {
                let columns = if schema.is::<TpchSchema>() {
                    TpchTable::named(&table).map(|t| (t.trino_schema(), TableType::Base))
                } else if schema.is::<InformationSchema>() {
                    info_schema(&table).map(|t| (t, TableType::Base))
                } else {
                    schema
                        .table(&table)
                        .await?
                        .map(|t| (t.schema(), t.table_type()))
                };
                if let Some((columns, kind)) = columns {
                    let kind = if kind == TableType::View {
                        "VIEW"
                    } else {
                        "BASE TABLE"
                    };
                    out.push((schema_name.clone(), table, columns, kind));
                }
            }
        }
        Ok((schemas, out))
    }
}

/// The columns of one `information_schema` table.
fn info_schema(table: &str) -> Option<SchemaRef> {
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let fields = match table {
        "schemata" => vec![text("catalog_name"), text("schema_name")],
        "tables" => vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("table_type"),
        ],
        "columns" => vec![
            text("table_catalog"),
            text("table_schema"),
            text("table_name"),
            text("column_name"),
            Field::new("ordinal_position", DataType::Int64, true),
            text("column_default"),
            text("is_nullable"),
            text("data_type"),
            text("comment"),
            text("extra_info"),
        ],
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        INFO_TABLES.iter().map(|t| t.to_string()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let Some(schema) = info_schema(name) else {
            return Ok(None);
        };
        let catalog = self.name.as_str();
        let text = |v: Vec<Option<String>>| -> ArrayRef { Arc::new(StringArray::from(v)) };
        let (schemas, tables) = self.contents().await?;
        let columns: Vec<ArrayRef> = match name {
            "schemata" => vec![
                text(schemas.iter().map(|_| Some(catalog.to_string())).collect()),
                text(schemas.into_iter().map(Some).collect()),
            ],
            "tables" => vec![
                text(tables.iter().map(|_| Some(catalog.to_string())).collect()),
                text(tables.iter().map(|t| Some(t.0.clone())).collect()),
                text(tables.iter().map(|t| Some(t.1.clone())).collect()),
                text(tables.iter().map(|t| Some(t.3.to_string())).collect()),
            ],
            _ => {
                let rows: Vec<(&str, &str, usize, &Field)> = tables
                    .iter()
                    .flat_map(|(s, t, cols, _)| {
                        cols.fields()
                            .iter()
                            .enumerate()
                            .map(move |(i, f)| (s.as_str(), t.as_str(), i + 1, f.as_ref()))
                    })
                    .collect();
                let nullable = |f: &Field| if f.is_nullable() { "YES" } else { "NO" };
                vec![
                    text(rows.iter().map(|_| Some(catalog.to_string())).collect()),
                    text(rows.iter().map(|r| Some(r.0.to_string())).collect()),
                    text(rows.iter().map(|r| Some(r.1.to_string())).collect()),
                    text(rows.iter().map(|r| Some(r.3.name().clone())).collect()),
                    Arc::new(Int64Array::from(
                        rows.iter()
                            .map(|r| i64::try_from(r.2).unwrap_or(i64::MAX))
                            .collect::<Vec<_>>(),
                    )),
                    text(rows.iter().map(|_| None).collect()),
                    text(
                        rows.iter()
                            .map(|r| Some(nullable(r.3).to_string()))
                            .collect(),
                    ),
                    text(
                        rows.iter()
                            .map(|r| Some(trino_type(r.3.data_type()).display()))
                            .collect(),
                    ),
                    text(rows.iter().map(|_| None).collect()),
                    text(rows.iter().map(|_| None).collect()),
                ]
            }
        };
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        INFO_TABLES.contains(&name)
    }
}

/// `EXECUTE IMMEDIATE 'statement' [USING value, ...]` — how Trino's clients send a statement
/// with parameters — as the statement with each `?` replaced by its value; `None` when `sql` is
/// something else.
fn immediate(sql: &str) -> Result<Option<String>, QueryError> {
    let dialect = GenericDialect {};
    let syntax = |m: String| QueryError::new(ErrorCode::SyntaxError, m);
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?;
    let mut words = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t, Token::Whitespace(_)));
    let is = |t: Option<(usize, &Token)>, k: Keyword| matches!(t, Some((_, Token::Word(w))) if w.keyword == k);
    if !is(words.next(), Keyword::EXECUTE) || !is(words.next(), Keyword::IMMEDIATE) {
        return Ok(None);
    }
    let Some((_, Token::SingleQuotedString(statement))) = words.next() else {
        return Err(syntax(
            "EXECUTE IMMEDIATE takes the statement as a string".into(),
        ));
    };
    // The values after USING, split at the commas outside parentheses.
    let mut values: Vec<Vec<&Token>> = Vec::new();
    match words.next() {
        None | Some((_, Token::SemiColon)) => {}
        Some((i, Token::Word(w))) if w.keyword == Keyword::USING => {
            let mut depth = 0usize;
            let mut value: Vec<&Token> = Vec::new();
            for t in &tokens[i + 1..] {
                match t {
                    Token::LParen => depth += 1,
                    Token::RParen => depth = depth.saturating_sub(1),
                    Token::Comma if depth == 0 => {
                        values.push(std::mem::take(&mut value));
                        continue;
                    }
                    Token::SemiColon if depth == 0 => break,
                    _ => {}
                }
                value.push(t);
            }
            values.push(value);
        }
        Some((_, t)) => return Err(syntax(format!("unexpected {t} after the statement"))),
    }
    let inner = Tokenizer::new(&dialect, statement)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?;
    let mut values = values.into_iter();
    let mut out = String::with_capacity(statement.len());
    for t in &inner {
        match t {
            Token::Placeholder(p) if p == "?" => {
                let value = values.next().ok_or_else(|| {
                    syntax("the statement has more parameters than values given".into())
                })?;
                for v in value {
                    out.push_str(&sql_text(v));
                }
            }
            other => out.push_str(&sql_text(other)),
        }
    }
    if values.next().is_some() {
        return Err(syntax(
            "more values given than the statement has parameters".into(),
        ));
    }
    Ok(Some(out))
}

/// `SHOW TABLES [FROM|IN [catalog.]schema]`, `SHOW COLUMNS FROM|IN table` and `DESCRIBE table`
/// as the query on `information_schema` that answers them the way Trino does (`Table`; `Column`,
/// `Type`, `Extra`, `Comment`); `None` for any other statement. For a table's columns, also the
/// table's full name: an empty answer means it does not exist.
fn show(sql: &str, session: &Session) -> Result<Option<(String, Option<String>)>, QueryError> {
    let dialect = GenericDialect {};
    let syntax = |m: String| QueryError::new(ErrorCode::SyntaxError, m);
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?;
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    let keyword = |i: usize| match words.get(i) {
        Some(Token::Word(w)) => Some(w.keyword),
        _ => None,
    };
    // A dotted name from `words[from..]`: its parts, unquoted.
    let name = |from: usize| -> Result<Vec<String>, QueryError> {
        let mut parts = Vec::new();
        for (i, t) in words[from.min(words.len())..].iter().enumerate() {
            match (i % 2, t) {
                (0, Token::Word(w)) => parts.push(w.value.clone()),
                (1, Token::Period) => {}
                _ => return Err(syntax(format!("unexpected {t} in a name"))),
            }
        }
        if parts.is_empty() {
            return Err(syntax("a name is missing".into()));
        }
        Ok(parts)
    };
    let default_catalog = session.catalog.clone().unwrap_or_else(|| "memory".into());
    let default_schema = session.schema.clone().unwrap_or_else(|| "default".into());
    match (keyword(0), keyword(1)) {
        (Some(Keyword::SHOW), Some(Keyword::CATALOGS)) if words.len() == 2 => Ok(Some((
            "SELECT catalog_name AS \"Catalog\" FROM system.metadata.catalogs ORDER BY 1".into(),
            None,
        ))),
        (Some(Keyword::SHOW), Some(Keyword::SCHEMAS)) => {
            let catalog = match keyword(2) {
                None => session.catalog.clone().ok_or_else(|| {
                    QueryError::new(
                        ErrorCode::MissingCatalogName,
                        "Catalog must be specified when session catalog is not set",
                    )
                })?,
                Some(Keyword::FROM | Keyword::IN) => match name(3)?.as_slice() {
                    [c] => c.clone(),
                    _ => return Err(syntax("SHOW SCHEMAS FROM takes a catalog".into())),
                },
                _ => return Ok(None),
            };
            Ok(Some((
                format!(
                    "SELECT schema_name AS \"Schema\" FROM {}.information_schema.schemata \
                     ORDER BY 1",
                    sql_ident(&catalog)
                ),
                None,
            )))
        }
        (Some(Keyword::SHOW), Some(Keyword::TABLES)) => {
            let (catalog, schema) = match keyword(2) {
                None => (default_catalog, default_schema),
                Some(Keyword::FROM | Keyword::IN) => match name(3)?.as_slice() {
                    [s] => (default_catalog, s.clone()),
                    [c, s] => (c.clone(), s.clone()),
                    _ => return Err(syntax("SHOW TABLES FROM takes [catalog.]schema".into())),
                },
                _ => return Ok(None),
            };
            Ok(Some((
                format!(
                    "SELECT table_name AS \"Table\" FROM {}.information_schema.tables \
                     WHERE table_schema = {} ORDER BY 1",
                    sql_ident(&catalog),
                    sql_string(&schema)
                ),
                None,
            )))
        }
        (Some(Keyword::SHOW), Some(Keyword::COLUMNS))
            if matches!(keyword(2), Some(Keyword::FROM | Keyword::IN)) =>
        {
            columns_of(&name(3)?, &default_catalog, &default_schema).map(Some)
        }
        (Some(Keyword::DESCRIBE | Keyword::DESC), _) => {
            columns_of(&name(1)?, &default_catalog, &default_schema).map(Some)
        }
        _ => Ok(None),
    }
}

/// `ALTER TABLE|VIEW [IF EXISTS] a RENAME TO b`, with both names in full.
#[derive(Debug, PartialEq)]
struct Rename {
    view: bool,
    from: [String; 3],
    to: [String; 3],
}

/// The rename `sql` asks for (`None` for any other statement).
fn rename(sql: &str, session: &Session) -> Result<Option<Rename>, QueryError> {
    let dialect = GenericDialect {};
    let syntax = |m: String| QueryError::new(ErrorCode::SyntaxError, m);
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?;
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::SemiColon))
        .collect();
    let keyword = |i: usize| match words.get(i) {
        Some(Token::Word(w)) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    let view = match (keyword(0), keyword(1)) {
        (Some(Keyword::ALTER), Some(Keyword::TABLE)) => false,
        (Some(Keyword::ALTER), Some(Keyword::VIEW)) => true,
        _ => return Ok(None),
    };
    let mut i = 2;
    if keyword(i) == Some(Keyword::IF) && keyword(i + 1) == Some(Keyword::EXISTS) {
        i += 2;
    }
    // A dotted name from `words[i..]`, unquoted, and the index after it.
    let name = |mut i: usize| -> (Vec<String>, usize) {
        let mut parts = Vec::new();
        while let Some(Token::Word(w)) = words.get(i) {
            parts.push(if w.quote_style.is_some() {
                w.value.clone()
            } else {
                w.value.to_lowercase()
            });
            i += 1;
            if !matches!(words.get(i), Some(Token::Period)) {
                break;
            }
            i += 1;
        }
        (parts, i)
    };
    let (from, i) = name(i);
    if keyword(i) != Some(Keyword::RENAME) {
        return Ok(None);
    }
    if keyword(i + 1) != Some(Keyword::TO) {
        return Err(syntax("expected RENAME TO <name>".into()));
    }
    let (to, end) = name(i + 2);
    if end != words.len() {
        return Err(syntax(
            "unexpected text after ALTER ... RENAME TO <name>".into(),
        ));
    }
    let catalog = session.catalog.as_deref().unwrap_or("memory");
    let schema = session.schema.as_deref().unwrap_or("default");
    let full =
        |parts: Vec<String>, default_schema: &str, default_catalog: &str| match parts.as_slice() {
            [t] => Ok([default_catalog.into(), default_schema.into(), t.clone()]),
            [s, t] => Ok([default_catalog.into(), s.clone(), t.clone()]),
            [c, s, t] => Ok([c.clone(), s.clone(), t.clone()]),
            _ => Err(syntax("a table name has one to three parts".into())),
        };
    let from = full(from, schema, catalog)?;
    // Trino resolves a one-part target in the source's schema.
    let to = full(to, &from[1], &from[0])?;
    Ok(Some(Rename { view, from, to }))
}

/// `CREATE [OR REPLACE] VIEW ... SECURITY DEFINER|INVOKER AS ...` without the security clause
/// (DataFusion's views have none); `None` when there is nothing to take out.
fn without_view_security(sql: &str) -> Result<Option<String>, QueryError> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| QueryError::new(ErrorCode::SyntaxError, e.to_string()))?;
    let significant: Vec<(usize, &Token)> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t, Token::Whitespace(_)))
        .collect();
    let keyword = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    let mut words = significant.iter().map(|(_, t)| keyword(t));
    if words.next() != Some(Some(Keyword::CREATE)) {
        return Ok(None);
    }
    // The clause stands between the view's name and its `AS`.
    let head = significant
        .iter()
        .position(|(_, t)| keyword(t) == Some(Keyword::AS))
        .map_or(&significant[..], |end| &significant[..end]);
    if !head.iter().any(|(_, t)| keyword(t) == Some(Keyword::VIEW)) {
        return Ok(None);
    }
    let Some(at) = head.windows(2).find_map(|w| {
        (keyword(w[0].1) == Some(Keyword::SECURITY)
            && matches!(keyword(w[1].1), Some(Keyword::DEFINER | Keyword::INVOKER)))
        .then_some((w[0].0, w[1].0))
    }) else {
        return Ok(None);
    };
    let mut out = String::with_capacity(sql.len());
    for (i, t) in tokens.iter().enumerate() {
        if i < at.0 || i > at.1 {
            out.push_str(&sql_text(t));
        }
    }
    Ok(Some(out))
}

/// The `DESCRIBE` query for a `[[catalog.]schema.]table` name.
fn columns_of(
    parts: &[String],
    catalog: &str,
    schema: &str,
) -> Result<(String, Option<String>), QueryError> {
    let (c, s, t) = match parts {
        [t] => (catalog, schema, t.as_str()),
        [s, t] => (catalog, s.as_str(), t.as_str()),
        [c, s, t] => (c.as_str(), s.as_str(), t.as_str()),
        _ => {
            return Err(QueryError::new(
                ErrorCode::SyntaxError,
                "a table name has at most three parts",
            ))
        }
    };
    Ok((
        format!(
            "SELECT column_name AS \"Column\", data_type AS \"Type\", '' AS \"Extra\", \
             '' AS \"Comment\" FROM {}.information_schema.columns \
             WHERE table_schema = {} AND table_name = {} ORDER BY ordinal_position",
            sql_ident(c),
            sql_string(s),
            sql_string(t)
        ),
        Some(format!("{c}.{s}.{t}")),
    ))
}

/// A token as SQL text (a string literal with its quotes doubled again).
fn sql_text(t: &Token) -> String {
    match t {
        Token::SingleQuotedString(s) => sql_string(s),
        other => other.to_string(),
    }
}

/// `s` as an SQL string literal.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `s` as a quoted SQL identifier.
fn sql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emulator::query::Session;

    fn session(catalog: Option<&str>, schema: Option<&str>) -> Session {
        Session {
            user: "t".into(),
            source: None,
            catalog: catalog.map(String::from),
            schema: schema.map(String::from),
            protocol: crate::emulator::protocol::Protocol::Trino,
            parametric_datetime: false,
        }
    }

    /// `Engine::run` on a coordinator without queries, with a query's rows all computed.
    async fn run(e: &Engine, sql: &str, s: &Session) -> Result<Plan, QueryError> {
        let idle: Arc<dyn Runtime> = Arc::new(crate::emulator::system::Idle);
        let ran = e.run(sql, s, Arc::downgrade(&idle)).await?;
        Ok(match ran.plan {
            Plan::Stream {
                columns,
                mut rows,
                source,
            } => {
                if let Some(source) = source {
                    let mut source = source.lock().await;
                    while let Some(batch) = source.next().await {
                        rows.extend(batch?);
                    }
                }
                Plan::Rows { columns, rows }
            }
            plan => plan,
        })
    }

    fn rows(plan: Plan) -> (Vec<String>, Vec<Vec<serde_json::Value>>) {
        match plan {
            Plan::Rows { columns, rows } => {
                (columns.iter().map(|c| c.ty.display()).collect(), rows)
            }
            _ => panic!("not rows"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ordinary_sql_runs() {
        let e = Engine::new();
        let s = session(None, None);
        let (types, data) = rows(run(&e, "SELECT 1+1 AS two, upper('x')", &s).await.unwrap());
        assert_eq!(types, ["bigint", "varchar"]);
        assert_eq!(data, [[serde_json::json!(2), serde_json::json!("X")]]);
        let (_, data) = rows(
            run(
                &e,
                "SELECT count(*), sum(x) FROM UNNEST(sequence(1, 100000)) AS t(x)",
                &s,
            )
            .await
            .unwrap(),
        );
        assert_eq!(
            data,
            [[serde_json::json!(100000), serde_json::json!(5000050000i64)]]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_are_shaped_like_trinos() {
        let e = Engine::new();
        let s = session(Some("tpch"), Some("tiny"));
        let Plan::Rows { columns, rows } = run(
            &e,
            "SELECT regionkey, regionkey + 1, 'ab' AS s, 7, current_schema FROM region \
             ORDER BY 1 LIMIT 1",
            &s,
        )
        .await
        .unwrap() else {
            panic!("rows")
        };
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["regionkey", "_col1", "s", "_col3", "_col4"]);
        let types: Vec<String> = columns.iter().map(|c| c.ty.display()).collect();
        assert_eq!(
            types,
            ["bigint", "bigint", "varchar(2)", "integer", "varchar"]
        );
        assert_eq!(
            serde_json::json!(rows),
            serde_json::json!([[0, 1, "ab", 7, "tiny"]])
        );
        let (_, data) = rows_of(run(&e, "SELECT * FROM UNNEST(sequence(3, 1)) AS t(x)", &s).await);
        assert_eq!(serde_json::json!(data), serde_json::json!([[3], [2], [1]]));

        let idle: Arc<dyn Runtime> = Arc::new(crate::emulator::system::Idle);
        let ran = e
            .run("SELECT sleep(250), sleep(50)", &s, Arc::downgrade(&idle))
            .await
            .unwrap();
        assert_eq!(ran.sleep_ms, 300);
        let failed = run(&e, "SELECT 1, fail('it''s broken')", &s)
            .await
            .err()
            .unwrap();
        assert!(matches!(failed.code, ErrorCode::GenericUserError));
        assert_eq!(failed.message, "it's broken");
        let missing = run(&e, "SELECT * FROM nope", &s).await.err().unwrap();
        assert!(matches!(missing.code, ErrorCode::TableNotFound));
        assert_eq!(missing.message, "Table 'tpch.tiny.nope' does not exist");
        let syntax = run(&e, "SELECT 1,\n  ) FROM region", &s)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(syntax.code, ErrorCode::SyntaxError),
            "{}",
            syntax.message
        );
        assert!(
            syntax.message.starts_with("line 2:3: mismatched input ')'"),
            "{}",
            syntax.message
        );
    }

    fn rows_of(plan: Result<Plan, QueryError>) -> (Vec<String>, Vec<Vec<serde_json::Value>>) {
        rows(plan.map_err(|e| e.message).unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tpch_has_trino_names_and_counts() {
        let e = Engine::new();
        let s = session(None, None);
        let (_, data) = rows(
            run(&e, "SELECT count(*) FROM tpch.tiny.lineitem", &s)
                .await
                .unwrap(),
        );
        assert_eq!(data, [[serde_json::json!(60175)]]);
        let (types, data) = rows(
            run(&e,
                "SELECT orderkey, quantity, shipdate FROM lineitem ORDER BY orderkey, linenumber LIMIT 1",
                &session(Some("tpch"), Some("tiny")),
            )
            .await
            .unwrap(),
        );
        assert_eq!(types, ["bigint", "double", "date"]);
        assert_eq!(
            data,
            [[
                serde_json::json!(1),
                serde_json::json!(17.0),
                serde_json::json!("1996-03-13")
            ]]
        );
        let (_, data) = rows(
            run(&e, "SELECT count(*) FROM tpch.tiny.nation", &s)
                .await
                .unwrap(),
        );
        assert_eq!(data, [[serde_json::json!(25)]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn information_schema_has_trino_shape_and_parameters_bind() {
        let e = Engine::new();
        let s = session(Some("tpch"), Some("tiny"));
        let (_, data) = rows(
            run(
                &e,
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns \
                 WHERE table_schema = 'tiny' AND table_name = 'nation' ORDER BY ordinal_position",
                &s,
            )
            .await
            .unwrap(),
        );
        let want = serde_json::json!([
            ["nationkey", "bigint", "NO"],
            ["name", "varchar", "NO"],
            ["regionkey", "bigint", "NO"],
            ["comment", "varchar", "NO"]
        ]);
        assert_eq!(serde_json::json!(data), want);
        let (_, data) = rows(
            run(
                &e,
                "SELECT schema_name FROM information_schema.schemata ORDER BY 1",
                &s,
            )
            .await
            .unwrap(),
        );
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([["information_schema"], ["sf1"], ["tiny"]])
        );
        let (_, data) = rows(
            run(
                &e,
                "EXECUTE IMMEDIATE 'SELECT name FROM nation WHERE nationkey = ? AND name <> ?' \
                 USING 7, 'it''s'",
                &s,
            )
            .await
            .unwrap(),
        );
        assert_eq!(serde_json::json!(data), serde_json::json!([["GERMANY"]]));
        let (_, data) = rows(run(&e, "SHOW TABLES FROM tpch.tiny", &s).await.unwrap());
        assert_eq!(data.len(), 8);
        assert_eq!(data[0], [serde_json::json!("customer")]);
        let (_, data) = rows(run(&e, "DESCRIBE region", &s).await.unwrap());
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([
                ["regionkey", "bigint", "", ""],
                ["name", "varchar", "", ""],
                ["comment", "varchar", "", ""]
            ])
        );
        let (_, same) = rows(
            run(&e, "SHOW COLUMNS FROM tpch.tiny.region", &s)
                .await
                .unwrap(),
        );
        assert_eq!(same, data);
        let missing = run(&e, "DESCRIBE tiny.nope", &s).await.err().unwrap();
        assert!(
            matches!(missing.code, ErrorCode::TableNotFound),
            "{}",
            missing.message
        );
        let short = run(&e, "EXECUTE IMMEDIATE 'SELECT ?, ?' USING 1", &s)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(short.code, ErrorCode::SyntaxError),
            "{}",
            short.message
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_tables_are_created_filled_and_dropped() {
        let e = Engine::new();
        let s = session(None, None);
        // A schema without tables is a schema all the same.
        let (_, data) = rows(
            run(
                &e,
                "SELECT schema_name FROM memory.information_schema.schemata ORDER BY 1",
                &s,
            )
            .await
            .unwrap(),
        );
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([["default"], ["information_schema"]])
        );
        let created = run(&e, "CREATE TABLE memory.default.t AS SELECT 1 AS x", &s)
            .await
            .unwrap();
        assert!(matches!(
            created,
            Plan::Count {
                update_type: "CREATE TABLE",
                count: 1,
                ..
            }
        ));
        assert!(matches!(
            run(&e, "INSERT INTO memory.default.t VALUES (2)", &s)
                .await
                .unwrap(),
            Plan::Count {
                update_type: "INSERT",
                count: 1,
                ..
            }
        ));
        let (_, data) = rows(
            run(&e, "SELECT sum(x) FROM memory.default.t", &s)
                .await
                .unwrap(),
        );
        assert_eq!(data, [[serde_json::json!(3)]]);
        let (_, data) = rows(
            run(&e,
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'memory' AND table_schema = 'default'",
                &s,
            )
            .await
            .unwrap(),
        );
        assert_eq!(data, [[serde_json::json!("t")]]);
        assert!(matches!(
            run(&e, "DROP TABLE memory.default.t", &s).await.unwrap(),
            Plan::Update {
                update_type: "DROP TABLE"
            }
        ));
        assert!(run(&e, "SELECT * FROM memory.default.t", &s).await.is_err());
        let missing = run(&e, "SELECT nope FROM tpch.tiny.region", &s)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(missing.code, ErrorCode::ColumnNotFound),
            "{}",
            missing.message
        );
        for files in [
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/hostname'",
            "COPY (SELECT 1) TO '/tmp/trino-edge-emulator-copy.csv'",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let refused = run(&e, files, &s).await.err().unwrap();
            assert!(matches!(refused.code, ErrorCode::NotSupported), "{files}");
        }
        assert!(!std::path::Path::new("/tmp/trino-edge-emulator-copy.csv").exists());
        let unparsed = run(&e, "SELEC 1", &s).await.err().unwrap();
        assert!(
            matches!(unparsed.code, ErrorCode::SyntaxError),
            "{}",
            unparsed.message
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn views_renames_timestamps_and_explain() {
        let e = Engine::new();
        let s = session(Some("memory"), Some("default"));
        let ok = |p: Result<Plan, QueryError>| p.map_err(|e| e.message).unwrap();
        ok(run(&e, "CREATE SCHEMA memory.dbt", &s).await);
        ok(run(
            &e,
            "create table \"memory\".\"dbt\".\"t__dbt_tmp\" as (select 1 as x, TIMESTAMP '2024-01-15 10:30:00.123456' as at)",
            &s,
        )
        .await);
        ok(run(
            &e,
            "ALTER TABLE memory.dbt.t__dbt_tmp RENAME TO memory.dbt.t",
            &s,
        )
        .await);
        ok(run(
            &e,
            "create or replace view memory.dbt.v security definer as select x + 1 as y from memory.dbt.t",
            &s,
        )
        .await);
        let (_, data) = rows(ok(run(
            &e,
            "SELECT table_name, table_type FROM memory.information_schema.tables \
             WHERE table_schema = 'dbt' ORDER BY 1",
            &s,
        )
        .await));
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([["t", "BASE TABLE"], ["v", "VIEW"]])
        );
        let (_, data) = rows(ok(run(&e, "SELECT y FROM dbt.v", &s).await));
        assert_eq!(serde_json::json!(data), serde_json::json!([[2]]));
        // A view is renamed as a view only.
        let wrong = run(&e, "ALTER TABLE dbt.v RENAME TO w", &s)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(wrong.code, ErrorCode::TableNotFound),
            "{}",
            wrong.message
        );
        ok(run(&e, "ALTER VIEW dbt.v RENAME TO w", &s).await);
        let (_, data) = rows(ok(run(&e, "SELECT y FROM dbt.w", &s).await));
        assert_eq!(serde_json::json!(data), serde_json::json!([[2]]));

        // Timestamps as Trino types and writes them, with and without PARAMETRIC_DATETIME.
        let (types, data) = rows(ok(run(&e, "SELECT at FROM dbt.t", &s).await));
        assert_eq!(types, ["timestamp"]);
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([["2024-01-15 10:30:00.123"]])
        );
        let mut parametric = s.clone();
        parametric.parametric_datetime = true;
        let (types, _) = rows(ok(run(&e, "SELECT at FROM dbt.t", &parametric).await));
        assert_eq!(types, ["timestamp(3)"]);
        let (_, data) = rows(ok(run(
            &e,
            "SELECT data_type FROM information_schema.columns WHERE table_name = 't' ORDER BY ordinal_position",
            &s,
        )
        .await));
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([["bigint"], ["timestamp(3)"]])
        );

        let plan = ok(run(&e, "EXPLAIN SELECT x FROM dbt.t", &s).await);
        let Plan::Rows {
            columns,
            rows: lines,
        } = plan
        else {
            panic!("EXPLAIN has rows")
        };
        assert_eq!(columns.len(), 1);
        assert_eq!(columns[0].name, "Query Plan");
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0][0].as_str().unwrap().contains("TableScan"),
            "{lines:?}"
        );

        let (_, data) = rows(ok(run(&e, "SHOW CATALOGS", &s).await));
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([["memory"], ["system"], ["tpch"]])
        );
        let (_, data) = rows(ok(run(&e, "SHOW SCHEMAS FROM memory", &s).await));
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([["dbt"], ["default"], ["information_schema"]])
        );
        let (_, data) = rows(ok(run(&e, "SHOW SCHEMAS FROM system", &s).await));
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([["information_schema"], ["metadata"], ["runtime"]])
        );
        let (_, data) = rows(ok(run(
            &e,
            "SELECT table_name FROM system.metadata.table_comments \
             WHERE catalog_name = 'memory' AND schema_name = 'dbt' ORDER BY 1",
            &s,
        )
        .await));
        assert_eq!(serde_json::json!(data), serde_json::json!([["t"], ["w"]]));
    }
}
