//! Real SQL for the emulated coordinators, on DataFusion.
//!
//! The emulator's own statements (`sql.rs`/`exec.rs`: session and transaction statements, the
//! test-control functions such as `sleep()` and `fail()`, the canned tables) come first; a
//! statement they do not know — a syntax or a function they lack, a table they do not have — is
//! run here instead, so that the demo's clusters answer ordinary SQL: arithmetic and functions,
//! aggregates, `UNNEST(sequence(..))`, and these catalogs:
//! - `tpch`, schemas `tiny` (scale 0.01) and `sf1`: TPC-H data from `tpchgen-arrow`, generated
//!   the first time a table is read and kept, with Trino's column names (`orderkey`, not
//!   `l_orderkey`) and types (prices and quantities `double`, as Trino's tpch connector has them);
//! - `memory`, schema `default`: `CREATE TABLE [AS]`, `INSERT`, `DROP TABLE` (per emulated
//!   coordinator, in memory, like Trino's memory connector);
//! - `information_schema` in each catalog, as Trino has it (`schemata`, `tables`, `columns` with
//!   Trino's type names), which `SHOW TABLES`, `SHOW COLUMNS` and `DESCRIBE` read;
//! - `EXECUTE IMMEDIATE ... USING`, how clients send a statement with parameters.
//!
//! Results are typed with Trino's type names; values are written as Trino writes them (numbers as
//! numbers, decimals and dates as strings), by the hybrid endpoint's converter.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::catalog::{MemTable, MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tokio::sync::OnceCell;

use super::protocol::{Column, ErrorCode, QueryError, SqlType};
use super::query::{Plan, Session};
use super::tables;

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
}

impl Engine {
    pub(crate) fn new() -> Engine {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema("memory", "default")
            .with_target_partitions(2);
        let ctx = SessionContext::new_with_config(config);
        let tpch = Arc::new(MemoryCatalogProvider::new());
        for (schema, scale) in [("tiny", 0.01), ("sf1", 1.0)] {
            // Registering into a fresh in-memory catalog cannot clash.
            let _ = tpch.register_schema(schema, Arc::new(TpchSchema::new(scale)));
        }
        let memory = Arc::new(MemoryCatalogProvider::new());
        let _ = memory.register_schema("default", Arc::new(MemorySchemaProvider::new()));
        for (name, catalog) in [("tpch", tpch), ("memory", memory)] {
            let info = InformationSchema {
                name: name.to_string(),
                catalog: Arc::downgrade(&catalog),
            };
            let _ = catalog.register_schema(INFORMATION_SCHEMA, Arc::new(info));
            ctx.register_catalog(name, catalog);
        }
        // Trino's `sequence(start, stop)` is DataFusion's inclusive `generate_series`.
        if let Ok(series) = ctx.udf("generate_series") {
            ctx.register_udf(series.as_ref().clone().with_aliases(["sequence"]));
        }
        Engine { ctx }
    }

    /// Run `sql` for `session` (its catalog and schema are the defaults for unqualified names).
    pub(crate) async fn run(&self, sql: &str, session: &Session) -> Result<Plan, QueryError> {
        let bound = immediate(sql)?;
        let sql = bound.as_deref().unwrap_or(sql);
        if let Some((query, table)) = show(sql, session)? {
            let plan = Box::pin(self.run(&query, session)).await?;
            if let Some(table) = table {
                if matches!(&plan, Plan::Rows { rows, .. } if rows.is_empty()) {
                    return Err(QueryError::new(
                        ErrorCode::TableNotFound,
                        format!("Table '{table}' does not exist"),
                    ));
                }
            }
            return Ok(plan);
        }
        let mut state = self.ctx.state();
        if let Some(catalog) = &session.catalog {
            let options = state.config_mut().options_mut();
            options.catalog.default_catalog = catalog.clone();
            if let Some(schema) = &session.schema {
                options.catalog.default_schema = schema.clone();
            }
        }
        let ctx = SessionContext::new_with_state(state);
        // Planned first: a DDL statement runs when executed and leaves an empty plan behind.
        let plan = ctx
            .state()
            .create_logical_plan(sql.trim().trim_end_matches(';'))
            .await
            .map_err(error)?;
        let ddl = match &plan {
            // The emulator keeps its data in memory: nothing here may read or write a file of
            // the machine it runs on, nor change the engine's own settings.
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_))
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_) => return Err(QueryError::new(
                ErrorCode::NotSupported,
                "the emulator runs no statement that reads or writes files or changes its settings",
            )),
            LogicalPlan::Ddl(d) => Some(ddl_update_type(d)),
            _ => None,
        };
        let frame = ctx.execute_logical_plan(plan).await.map_err(error)?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(error)?;
        if let Some(update_type) = ddl {
            return Ok(Plan::Update { update_type });
        }
        let columns = schema
            .fields()
            .iter()
            .map(|f| Column::new(f.name().clone(), trino_type(f.data_type())))
            .collect();
        let batches = batches
            .iter()
            .map(trino_values)
            .collect::<Result<Vec<_>, _>>()
            .map_err(error)?;
        let rows = crate::hybrid::output::rows(&batches)
            .map_err(|e| QueryError::new(ErrorCode::GenericUserError, e.to_string()))?
            .into_iter()
            .map(|row| match row {
                serde_json::Value::Array(values) => values,
                other => vec![other],
            })
            .collect();
        Ok(Plan::Rows { columns, rows })
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

/// The Trino type of an Arrow column (as `trino_values` writes it).
fn trino_type(t: &DataType) -> SqlType {
    match t {
        DataType::Boolean => tables::BOOLEAN_TYPE,
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
        DataType::Null => SqlType::Unknown,
        _ => SqlType::Varchar(None),
    }
}

/// Columns whose Arrow type has no Trino counterpart the emulator writes are sent as text.
fn trino_values(batch: &RecordBatch) -> Result<RecordBatch, DataFusionError> {
    let as_text = |t: &DataType| matches!(trino_type(t), SqlType::Varchar(_)) && !is_text(t);
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
        if as_text(f.data_type()) {
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

/// A catalog's schemas and its tables' `(schema, table, columns)`, in name order.
type Contents = (Vec<String>, Vec<(String, String, SchemaRef)>);

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
                    TpchTable::named(&table).map(TpchTable::trino_schema)
                } else if schema.is::<InformationSchema>() {
                    info_schema(&table)
                } else {
                    schema.table(&table).await?.map(|t| t.schema())
                };
                if let Some(columns) = columns {
                    out.push((schema_name.clone(), table, columns));
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
                text(
                    tables
                        .iter()
                        .map(|_| Some("BASE TABLE".to_string()))
                        .collect(),
                ),
            ],
            _ => {
                let rows: Vec<(&str, &str, usize, &Field)> = tables
                    .iter()
                    .flat_map(|(s, t, cols)| {
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

/// Whether a failure of the emulator's own statements should be tried on the engine: the
/// statement is one the emulator does not know, not one it refused on purpose (`fail()`, a
/// transaction that is not there, a bad literal).
pub(crate) fn falls_through(e: &QueryError) -> bool {
    matches!(
        e.code,
        ErrorCode::SyntaxError
            | ErrorCode::NotSupported
            | ErrorCode::TableNotFound
            | ErrorCode::ColumnNotFound
            | ErrorCode::MissingCatalogName
    )
}

/// When both failed, which error the client sees: the engine's, where the emulator only said it
/// does not know the statement (a syntax or a feature it lacks) and the engine got further than
/// parsing it; otherwise the emulator's own (its syntax errors carry Trino's locations, and its
/// missing tables list what it has).
pub(crate) fn better_error(emulator: &QueryError, engine: &QueryError) -> bool {
    matches!(
        emulator.code,
        ErrorCode::SyntaxError | ErrorCode::NotSupported
    ) && !matches!(engine.code, ErrorCode::SyntaxError)
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
        let (types, data) = rows(e.run("SELECT 1+1 AS two, upper('x')", &s).await.unwrap());
        assert_eq!(types, ["bigint", "varchar"]);
        assert_eq!(data, [[serde_json::json!(2), serde_json::json!("X")]]);
        let (_, data) = rows(
            e.run(
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
    async fn tpch_has_trino_names_and_counts() {
        let e = Engine::new();
        let s = session(None, None);
        let (_, data) = rows(
            e.run("SELECT count(*) FROM tpch.tiny.lineitem", &s)
                .await
                .unwrap(),
        );
        assert_eq!(data, [[serde_json::json!(60175)]]);
        let (types, data) = rows(
            e.run(
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
            e.run("SELECT count(*) FROM tpch.tiny.nation", &s)
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
            e.run(
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
            e.run(
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
            e.run(
                "EXECUTE IMMEDIATE 'SELECT name FROM nation WHERE nationkey = ? AND name <> ?' \
                 USING 7, 'it''s'",
                &s,
            )
            .await
            .unwrap(),
        );
        assert_eq!(serde_json::json!(data), serde_json::json!([["GERMANY"]]));
        let (_, data) = rows(e.run("SHOW TABLES FROM tpch.tiny", &s).await.unwrap());
        assert_eq!(data.len(), 8);
        assert_eq!(data[0], [serde_json::json!("customer")]);
        let (_, data) = rows(e.run("DESCRIBE region", &s).await.unwrap());
        assert_eq!(
            serde_json::json!(data),
            serde_json::json!([
                ["regionkey", "bigint", "", ""],
                ["name", "varchar", "", ""],
                ["comment", "varchar", "", ""]
            ])
        );
        let (_, same) = rows(
            e.run("SHOW COLUMNS FROM tpch.tiny.region", &s)
                .await
                .unwrap(),
        );
        assert_eq!(same, data);
        let missing = e.run("DESCRIBE tiny.nope", &s).await.err().unwrap();
        assert!(
            matches!(missing.code, ErrorCode::TableNotFound),
            "{}",
            missing.message
        );
        let short = e
            .run("EXECUTE IMMEDIATE 'SELECT ?, ?' USING 1", &s)
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
            e.run(
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
        let created = e
            .run("CREATE TABLE memory.default.t AS SELECT 1 AS x", &s)
            .await
            .unwrap();
        assert!(matches!(
            created,
            Plan::Update {
                update_type: "CREATE TABLE"
            }
        ));
        let _ = rows(
            e.run("INSERT INTO memory.default.t VALUES (2)", &s)
                .await
                .unwrap(),
        );
        let (_, data) = rows(
            e.run("SELECT sum(x) FROM memory.default.t", &s)
                .await
                .unwrap(),
        );
        assert_eq!(data, [[serde_json::json!(3)]]);
        let (_, data) = rows(
            e.run(
                "SELECT table_name FROM information_schema.tables WHERE table_catalog = 'memory' AND table_schema = 'default'",
                &s,
            )
            .await
            .unwrap(),
        );
        assert_eq!(data, [[serde_json::json!("t")]]);
        assert!(matches!(
            e.run("DROP TABLE memory.default.t", &s).await.unwrap(),
            Plan::Update {
                update_type: "DROP TABLE"
            }
        ));
        assert!(e.run("SELECT * FROM memory.default.t", &s).await.is_err());
        let missing = e
            .run("SELECT nope FROM tpch.tiny.region", &s)
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
            let refused = e.run(files, &s).await.err().unwrap();
            assert!(matches!(refused.code, ErrorCode::NotSupported), "{files}");
        }
        assert!(!std::path::Path::new("/tmp/trino-edge-emulator-copy.csv").exists());
        let unparsed = e.run("SELEC 1", &s).await.err().unwrap();
        assert!(
            matches!(unparsed.code, ErrorCode::SyntaxError),
            "{}",
            unparsed.message
        );
    }
}
