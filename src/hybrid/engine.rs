//! The local phase: the final SQL in DataFusion over the registered results and the local tables.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::Dialect;
use datafusion::common::{DataFusionError, TableReference};
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::FunctionRegistry;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::StreamExt;
use serde_json::json;

use super::memory::{self, AccountOperators, GuardFunctions};
use super::remote::Registration;
use super::tables::LocalTables;
use super::{engine_runtime, ErrorKind, HybridError};

/// The final result, cut at the row limit.
pub struct Output {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    pub truncated: bool,
}

/// What the local phase needs; owned, because it moves to the engine's runtime.
pub struct LocalQuery {
    pub sql: String,
    pub tables: Arc<LocalTables>,
    pub registrations: Vec<(String, Registration)>,
    pub max_result_rows: usize,
    pub max_memory: usize,
    pub threads: Option<usize>,
}

/// Run `fut` on the engine's runtime. Dropping the returned future (the request's timeout, a
/// client gone) aborts the work there too.
pub async fn on_engine<T: Send + 'static>(
    threads: Option<usize>,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, HybridError> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut task = AbortOnDrop(engine_runtime(threads)?.spawn(fut));
    (&mut task.0).await.map_err(|e| {
        HybridError::new(
            ErrorKind::QueryError,
            format!("the local query stopped unexpectedly: {e}"),
        )
    })
}

fn query_error(e: DataFusionError) -> HybridError {
    if matches!(e.find_root(), DataFusionError::ResourcesExhausted(_)) {
        return HybridError::new(
            ErrorKind::MemoryLimit,
            format!("the local query needs more memory than hybrid.max_memory_mb allows: {e}"),
        );
    }
    HybridError::new(ErrorKind::QueryError, e.to_string())
}

/// Bytes a kept result batch holds on its own (a slice of a larger batch shares the rest).
fn kept_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

impl LocalQuery {
    /// Runs where it is awaited: the endpoint awaits it on the engine's runtime (`on_engine`).
    pub async fn run(self) -> Result<Output, HybridError> {
        let partitions = engine_runtime(self.threads)?.metrics().num_workers().max(1);
        // One pool for everything the local phase holds, nothing spilled (`memory`).
        let runtime = memory::runtime(self.max_memory).map_err(query_error)?;
        let pool = runtime.memory_pool.clone();
        let config = SessionConfig::new()
            .with_target_partitions(partitions)
            .with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(AccountOperators))
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        let guard = Arc::new(GuardFunctions::new(pool.clone()));
        ctx.register_function_rewrite(guard.clone())
            .map_err(query_error)?;

        // The registered results are in memory for the whole local phase: they come first.
        let registered: usize = self
            .registrations
            .iter()
            .flat_map(|(_, r)| &r.batches)
            .map(RecordBatch::get_array_memory_size)
            .sum();
        let registered_reservation =
            MemoryConsumer::new("hybrid registered results").register(&pool);
        registered_reservation
            .try_grow(registered)
            .map_err(query_error)?;

        let mut allowed = BTreeSet::new();
        for (name, table) in &self.tables.tables {
            if let Ok(t) = table {
                ctx.register_table(name.as_str(), t.clone())
                    .map_err(query_error)?;
                allowed.insert(name.clone());
            }
        }
        for (alias, reg) in self.registrations {
            // Spread the batches over the partitions so scans of a big registration run in
            // parallel.
            let mut parts = vec![Vec::new(); partitions];
            for (i, b) in reg.batches.into_iter().enumerate() {
                parts[i % partitions].push(b);
            }
            let table = MemTable::try_new(reg.schema, parts).map_err(query_error)?;
            ctx.register_table(alias.as_str(), Arc::new(table))
                .map_err(query_error)?;
            allowed.insert(alias);
        }

        let state = ctx.state();
        let statement = state
            .sql_to_statement(&self.sql, &Dialect::Generic)
            .map_err(|e| HybridError::validation(format!("final SQL: {e}")))?;
        let is_query = matches!(&statement, DfStatement::Statement(s)
            if matches!(s.as_ref(), SqlStatement::Query(_)));
        if !is_query {
            return Err(HybridError::validation(
                "final SQL must be a single read-only query (SELECT, WITH or VALUES)",
            ));
        }
        // Only registered aliases and configured tables: no catalogs, no schemas, no file paths,
        // no table functions.
        let refs = state
            .resolve_table_references(&statement)
            .map_err(|e| HybridError::validation(format!("final SQL: {e}")))?;
        for r in refs {
            let ok =
                matches!(&r, TableReference::Bare { table } if allowed.contains(table.as_ref()));
            if ok {
                continue;
            }
            if let Some(Err(e)) = self.tables.tables.get(r.table()) {
                return Err(HybridError::validation(format!(
                    "local table `{}` is not available: {e}",
                    r.table()
                )));
            }
            return Err(HybridError::validation(format!(
                "final SQL may read only registered aliases and local tables, not `{r}`"
            ))
            .details(json!({"allowed": allowed})));
        }
        let plan = state
            .statement_to_plan(statement)
            .await
            .map_err(query_error)?;
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| HybridError::validation(e.to_string()))?;

        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        // Planned by hand rather than through a DataFrame, so the optimized plan gets one more
        // pass of the function guards before it becomes physical.
        let state = ctx.state();
        let plan = state.optimize(&plan).map_err(query_error)?;
        let plan = guard.guard_plan(plan).map_err(query_error)?;
        let physical = state
            .query_planner()
            .create_physical_plan(&plan, &state)
            .await
            .map_err(query_error)?;
        let mut stream = execute_stream(physical, ctx.task_ctx()).map_err(query_error)?;
        // The batches kept for the response count too.
        let kept = MemoryConsumer::new("hybrid result").register(&pool);
        let mut batches = Vec::new();
        let mut rows = 0usize;
        let mut truncated = false;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(query_error)?;
            kept.try_grow(kept_bytes(&batch)).map_err(query_error)?;
            let room = self.max_result_rows - rows;
            if batch.num_rows() > room {
                batches.push(batch.slice(0, room));
                rows += room;
                truncated = true;
                break;
            }
            rows += batch.num_rows();
            batches.push(batch);
            if rows == self.max_result_rows {
                // One more row decides whether anything was cut.
                truncated = loop {
                    match stream.next().await {
                        Some(Ok(b)) if b.num_rows() == 0 => continue,
                        Some(Ok(_)) => break true,
                        Some(Err(e)) => return Err(query_error(e)),
                        None => break false,
                    }
                };
                break;
            }
        }
        Ok(Output {
            schema,
            batches,
            rows,
            truncated,
        })
    }
}
