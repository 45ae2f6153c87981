//! `hybrid.max_memory_mb` for the local phase: every byte the final SQL builds is counted in one
//! DataFusion memory pool, and what cannot be counted after the fact is checked before it is
//! built.
//!
//! DataFusion's own pool only hears from the operators that buffer (sorts, joins, aggregates,
//! repartitions, recursive queries); a projection, a filter or an unnest builds its output batch
//! without asking, and a function such as `range(1, 100000000)` or `repeat('x', 300000000)` builds
//! a single value of any size. So, per query:
//!
//! * **one pool** of `max_memory_mb` ([`runtime`]): a greedy pool, no spilling (the disk manager
//!   is disabled, so an operator that would spill fails with `ResourcesExhausted`), and the
//!   registered remote results reserved in it first (`engine`), so the limit covers everything
//!   the local phase holds;
//! * **every operator's output** ([`AccountOperators`]): each operator is wrapped so the batch it
//!   last emitted stays reserved until it emits the next one or ends — the batch in flight at each
//!   step of the pipeline is counted, on top of what buffering operators reserve themselves;
//! * **values that grow past their inputs** ([`GuardFunctions`]): the functions whose output can
//!   be far larger than their arguments — row and value generators (`range`, `generate_series`,
//!   `repeat`, `lpad`, `rpad`, `array_repeat`, `array_resize`), functions that multiply an
//!   argument (`replace`, `regexp_replace`, `array_to_string`, `array_replace*`) and the n-ary
//!   ones, where the SQL text can repeat one large argument thousands of times (`concat`,
//!   `concat_ws`, `make_array`, `array_concat`, `array_append`, `array_prepend`, the `||`
//!   operator on strings) — estimate their output from their arguments *before* building it and
//!   reserve [`HEADROOM`] times that. Inside an operator the reservations add up until the
//!   operator moves to its next input batch, so many generated columns in one row count
//!   together. Generators are also made volatile, which keeps the optimizer from building their
//!   values while planning (constant folding), outside any check;
//! * **unnest** ([`AccountOperators`] again): before an `UnnestExec` expands a batch, the largest
//!   single build it will make (one row's list times the columns repeated along it; the whole
//!   batch for recursive unnests) is estimated from the list offsets and reserved for the
//!   unnest's own work;
//! * **the result** (`engine`): the batches kept for the response are reserved too.
//!
//! A breach is DataFusion's `ResourcesExhausted`, which `engine` reports as `memory_limit`.
//!
//! What remains outside the count, and is bounded only indirectly:
//!
//! * memory an operator allocates *while* building one batch, before its output is counted:
//!   for projections and filters a small multiple of their (counted) input, since everything
//!   that multiplies is checked above;
//! * joins repeat a row's values once per matching row, up to `batch_size` (8,192) rows per
//!   output batch, before the batch is counted: a row with a large value (a big registered
//!   value, or a generated one within the checks above) joined to thousands of rows builds
//!   thousands of copies of it first;
//! * the Parquet reader's buffers for the row group it decodes, and aggregate state growth
//!   within one input batch (e.g. `string_agg` with a long separator), which the aggregate
//!   reserves right after the batch;
//! * the response itself (JSON, CSV or Arrow), built from the counted result after the pool is
//!   gone.

use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, SchemaRef, TimeUnit,
};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchema, DataFusionError, Result, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{
    GreedyMemoryPool, MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
    TrackConsumersPool,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::type_coercion::binary::BinaryTypeCoercer;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::physical_expr::expressions::{self as phys, Literal};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::unnest::{ListUnnest, UnnestExec};
use datafusion::physical_plan::{
    replace_children_if_necessary, DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties,
};
use futures::{Stream, StreamExt};

/// A checked value needs room for this many times its estimated size: the value itself and one
/// copy — the builders behind these functions grow by doubling, and the operator that takes the
/// value usually copies it once more (a projection turning a constant into a column, unnest's
/// `take`, the result's conversion).
pub const HEADROOM: usize = 2;

/// Largest single request to the pool: estimates saturate here rather than overflow its sums.
const MAX_REQUEST: usize = 1 << 60;

/// The runtime of one local query: a greedy pool of `max_memory` bytes (the three largest
/// consumers are named in its errors) and no disk manager, so nothing spills.
pub fn runtime(max_memory: usize) -> Result<Arc<RuntimeEnv>> {
    let top = std::num::NonZeroUsize::MIN.saturating_add(2);
    RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(max_memory),
            top,
        )))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc()
}

// ---------------------------------------------------------------------------------------------
// Reservations while an operator works

thread_local! {
    /// The reservation of the operator whose batch is being computed on this thread, if any:
    /// checked functions charge it, and it is freed when the operator moves to its next input
    /// batch or returns its output. Operators compute a batch synchronously inside `poll_next`,
    /// so "the innermost accounted stream being polled on this thread" is the operator whose
    /// expressions run.
    static SCRATCH: RefCell<Option<Arc<MemoryReservation>>> = const { RefCell::new(None) };
}

/// Makes `scratch` the current operator's reservation until dropped, then restores the outer one.
struct Scope {
    outer: Option<Arc<MemoryReservation>>,
}

impl Scope {
    fn enter(scratch: &Arc<MemoryReservation>) -> Scope {
        let outer = SCRATCH.with(|s| s.replace(Some(scratch.clone())));
        Scope { outer }
    }

    /// The operator that polls this one: it has finished with its previous input batch when this
    /// one hands it a new batch.
    fn outer(&self) -> Option<&Arc<MemoryReservation>> {
        self.outer.as_ref()
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let outer = self.outer.take();
        SCRATCH.with(|s| {
            *s.borrow_mut() = outer;
        });
    }
}

fn mib(bytes: usize) -> f64 {
    (bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

/// What `pool` has left, for messages.
fn left(pool: &Arc<dyn MemoryPool>) -> usize {
    match pool.memory_limit() {
        MemoryLimit::Finite(n) => n.saturating_sub(pool.reserved()),
        MemoryLimit::Infinite | MemoryLimit::Unknown => usize::MAX,
    }
}

/// Reserve `headroom × bytes` for what `what` is about to build: on the current operator's
/// reservation when there is one (it adds up with the rest of the operator's work), otherwise
/// just a check that the pool has that much room now (planning, or an operator that is not
/// wrapped).
fn reserve(pool: &Arc<dyn MemoryPool>, what: &str, bytes: usize, headroom: usize) -> Result<()> {
    let need = bytes.saturating_mul(headroom).min(MAX_REQUEST);
    let scratch = SCRATCH.with(|s| s.borrow().clone());
    let result = match scratch {
        Some(r) => r.try_grow(need),
        None => MemoryConsumer::new(format!("hybrid check of {what}"))
            .register(pool)
            .try_grow(need),
    };
    result.map_err(|_| {
        DataFusionError::ResourcesExhausted(format!(
            "{what} would build about {} MiB (room needed: {} MiB), but only {} MiB of the pool \
             are left",
            mib(bytes),
            mib(need),
            mib(left(pool))
        ))
    })
}

// ---------------------------------------------------------------------------------------------
// Operators

/// Physical optimizer rule, run last: wraps every operator in [`AccountedExec`] (except scans of
/// the registered results, which are reserved already) and puts the unnest check in front of
/// every `UnnestExec`.
#[derive(Debug, Default)]
pub struct AccountOperators;

impl PhysicalOptimizerRule for AccountOperators {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if node.is::<AccountedExec>() || is_memory_scan(&node) {
                return Ok(Transformed::no(node));
            }
            let node = match node.downcast_ref::<UnnestExec>() {
                Some(unnest) => {
                    let check = UnnestCheck {
                        lists: unnest.list_column_indices().to_vec(),
                    };
                    let input = AccountedExec::wrap(unnest.input().clone(), Some(check));
                    replace_children_if_necessary(node.clone(), vec![input])?
                }
                None => node,
            };
            Ok(Transformed::yes(AccountedExec::wrap(node, None)))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "hybrid_account_operators"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn is_memory_scan(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.downcast_ref::<DataSourceExec>().is_some_and(|s| {
        s.data_source()
            .downcast_ref::<MemorySourceConfig>()
            .is_some()
    })
}

/// One operator with its output counted; with `unnest`, the input of an unnest whose expansion
/// is checked batch by batch.
#[derive(Debug, Clone)]
pub struct AccountedExec {
    input: Arc<dyn ExecutionPlan>,
    unnest: Option<UnnestCheck>,
}

impl AccountedExec {
    fn wrap(input: Arc<dyn ExecutionPlan>, unnest: Option<UnnestCheck>) -> Arc<dyn ExecutionPlan> {
        // The unnest check goes on the wrapper the input already has.
        let (input, unnest) = match input.downcast_ref::<AccountedExec>() {
            Some(a) => (a.input.clone(), unnest.or_else(|| a.unnest.clone())),
            None => (input, unnest),
        };
        Arc::new(AccountedExec { input, unnest })
    }
}

impl DisplayAs for AccountedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match self.unnest {
            Some(_) => write!(f, "AccountedExec: unnest check"),
            None => write!(f, "AccountedExec"),
        }
    }
}

impl ExecutionPlan for AccountedExec {
    fn name(&self) -> &str {
        "AccountedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal(format!(
                "AccountedExec takes one child, not {}",
                children.len()
            )));
        }
        Ok(Arc::new(AccountedExec {
            input: children.swap_remove(0),
            unnest: self.unnest.clone(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let pool = context.memory_pool().clone();
        let name = self.input.name().to_string();
        let batch_size = context.session_config().batch_size();
        let inner = self.input.execute(partition, context)?;
        Ok(Box::pin(AccountedStream {
            schema: inner.schema(),
            inner,
            output: MemoryConsumer::new(format!("{name}[{partition}] output")).register(&pool),
            scratch: Arc::new(
                MemoryConsumer::new(format!("{name}[{partition}] expressions")).register(&pool),
            ),
            unnest: self.unnest.clone().map(|c| (c, batch_size)),
            pool,
        }))
    }
}

struct AccountedStream {
    inner: SendableRecordBatchStream,
    schema: SchemaRef,
    /// The batch last emitted.
    output: MemoryReservation,
    /// What checked functions reserve while this operator computes one batch.
    scratch: Arc<MemoryReservation>,
    unnest: Option<(UnnestCheck, usize)>,
    pool: Arc<dyn MemoryPool>,
}

impl AccountedStream {
    fn account(&mut self, batch: &RecordBatch) -> Result<()> {
        let size = batch.get_array_memory_size();
        self.output.try_resize(size).map_err(|_| {
            DataFusionError::ResourcesExhausted(format!(
                "a batch of {} MiB from {} does not fit: only {} MiB of the pool are left",
                mib(size),
                self.output.consumer().name(),
                mib(left(&self.pool).saturating_add(self.output.size()))
            ))
        })?;
        if let Some((check, batch_size)) = &self.unnest {
            // The unnest polling this stream builds next: charged to it. The estimate is the
            // build itself (values, repeated columns and `take` indices), so no headroom.
            let bytes = check.largest_build(batch, *batch_size);
            reserve(&self.pool, "unnest", bytes, 1)?;
        }
        Ok(())
    }
}

impl Stream for AccountedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let scope = Scope::enter(&self.scratch);
        let polled = self.inner.poll_next_unpin(cx);
        if matches!(polled, Poll::Ready(Some(Ok(_)))) {
            // The operator polling this one is done with its previous input batch.
            if let Some(outer) = scope.outer() {
                outer.free();
            }
        }
        drop(scope);
        self.scratch.free();
        match polled {
            Poll::Ready(Some(Ok(batch))) => Poll::Ready(Some(self.account(&batch).map(|_| batch))),
            Poll::Ready(None) => {
                self.output.free();
                Poll::Ready(None)
            }
            other => other,
        }
    }
}

impl RecordBatchStream for AccountedStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Which columns an unnest expands, and how deep.
#[derive(Debug, Clone)]
struct UnnestCheck {
    lists: Vec<ListUnnest>,
}

impl UnnestCheck {
    /// Bytes of the largest single build the unnest will make from `batch`. DataFusion unnests a
    /// batch in chunks: input rows are taken while their output stays within `batch_size` rows
    /// (at least one row, however long its list), except that a recursive unnest takes the whole
    /// batch at once. Each output row repeats the row's other columns, so a chunk of 8,000 output
    /// rows from one row with a 1 MB string builds 8 GB. Rows that do not expand (one output row
    /// or none) cost what they already cost and are not counted.
    fn largest_build(&self, batch: &RecordBatch, batch_size: usize) -> usize {
        let recursive = self.lists.iter().any(|l| l.depth > 1);
        let unnested: Vec<usize> = self.lists.iter().map(|l| l.index_in_input_schema).collect();
        let (mut chunk_rows, mut chunk_bytes, mut largest) = (0usize, 0usize, 0usize);
        for row in 0..batch.num_rows() {
            let mut rows_out = 1usize;
            let mut elements = 0usize;
            for l in &self.lists {
                let col = batch.column(l.index_in_input_schema);
                rows_out = rows_out.max(leaves(col.as_ref(), row, row + 1, l.depth));
                elements = elements.saturating_add(range_bytes(col.as_ref(), row, row + 1));
            }
            let bytes = if rows_out > 1 {
                let repeated: usize = batch
                    .columns()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !unnested.contains(i))
                    .map(|(_, c)| range_bytes(c.as_ref(), row, row + 1))
                    .fold(0usize, usize::saturating_add);
                // One `take` index per output row and column, plus the repeated values.
                let per_row = repeated.saturating_add(8 * (batch.num_columns() + 1));
                rows_out.saturating_mul(per_row).saturating_add(elements)
            } else {
                0
            };
            if !recursive && chunk_rows > 0 && chunk_rows.saturating_add(rows_out) > batch_size {
                largest = largest.max(chunk_bytes);
                (chunk_rows, chunk_bytes) = (0, 0);
            }
            chunk_rows = chunk_rows.saturating_add(rows_out);
            chunk_bytes = chunk_bytes.saturating_add(bytes);
        }
        largest.max(chunk_bytes)
    }
}

/// Number of elements `depth` levels down in rows `start..end` of a list column (1 level: the
/// list lengths).
fn leaves(a: &dyn Array, start: usize, end: usize, depth: usize) -> usize {
    if depth == 0 {
        return end.saturating_sub(start);
    }
    match child_range(a, start, end) {
        Some((child, s, e)) => leaves(child.as_ref(), s, e, depth - 1),
        None => end.saturating_sub(start),
    }
}

/// The child values and their range behind rows `start..end` of a list-like array.
fn child_range(a: &dyn Array, start: usize, end: usize) -> Option<(ArrayRef, usize, usize)> {
    if let Some(l) = a.as_list_opt::<i32>() {
        let o = l.value_offsets();
        let (s, e) = (o.get(start)?, o.get(end)?);
        return Some((l.values().clone(), *s as usize, *e as usize));
    }
    if let Some(l) = a.as_list_opt::<i64>() {
        let o = l.value_offsets();
        let (s, e) = (o.get(start)?, o.get(end)?);
        return Some((l.values().clone(), *s as usize, *e as usize));
    }
    if let Some(l) = a.as_fixed_size_list_opt() {
        let n = l.value_length() as usize;
        let base = l.offset() * n;
        return Some((l.values().clone(), base + start * n, base + end * n));
    }
    if let Some(m) = a.as_map_opt() {
        let o = m.value_offsets();
        let (s, e) = (o.get(start)?, o.get(end)?);
        let entries: ArrayRef = Arc::new(m.entries().clone());
        return Some((entries, *s as usize, *e as usize));
    }
    None
}

/// Bytes of the values in rows `start..end` of `a` (what copying them costs), nested types
/// included.
fn range_bytes(a: &dyn Array, start: usize, end: usize) -> usize {
    let n = end.saturating_sub(start);
    if n == 0 {
        return 0;
    }
    fn span<O: Copy + Into<i64>>(o: &[O], start: usize, end: usize) -> usize {
        match (o.get(start), o.get(end)) {
            (Some(&s), Some(&e)) => usize::try_from(e.into() - s.into()).unwrap_or(0),
            _ => 0,
        }
    }
    let dt = a.data_type();
    match dt {
        DataType::Utf8 => n * 4 + span(a.as_string::<i32>().value_offsets(), start, end),
        DataType::LargeUtf8 => n * 8 + span(a.as_string::<i64>().value_offsets(), start, end),
        DataType::Binary => n * 4 + span(a.as_binary::<i32>().value_offsets(), start, end),
        DataType::LargeBinary => n * 8 + span(a.as_binary::<i64>().value_offsets(), start, end),
        DataType::Utf8View => {
            let v = a.as_string_view();
            (start..end.min(v.len()))
                .map(|i| 16 + v.value(i).len())
                .fold(0, usize::saturating_add)
        }
        DataType::BinaryView => {
            let v = a.as_binary_view();
            (start..end.min(v.len()))
                .map(|i| 16 + v.value(i).len())
                .fold(0, usize::saturating_add)
        }
        DataType::Struct(_) => a
            .as_struct()
            .columns()
            .iter()
            .map(|c| range_bytes(c.as_ref(), start, end))
            .fold(0, usize::saturating_add),
        _ => {
            if let Some((child, s, e)) = child_range(a, start, end) {
                return (n * 8).saturating_add(range_bytes(child.as_ref(), s, e));
            }
            match dt.primitive_width() {
                Some(w) => n * w,
                // Anything else (dictionaries, unions, ...): the array's average row.
                None => a.get_array_memory_size() / a.len().max(1) * n,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Functions

/// The checked functions and how each one's output is estimated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// `range`, `generate_series`: one list element per step.
    Range,
    /// `repeat(s, n)`: `len(s) × n`.
    Repeat,
    /// `lpad`, `rpad(s, n [, fill])`: `n` characters of up to 4 bytes.
    Pad,
    /// `array_repeat(v, n)`: `n` copies of `v`.
    ArrayRepeat,
    /// `array_resize(a, n [, fill])`: `n` elements.
    ArrayResize,
    /// `replace(s, from, to)`: every occurrence of `from` grows by `len(to) - len(from)`.
    Replace,
    /// `regexp_replace(s, re, with [, flags])`: at most one match per character with `g`, each
    /// replaced by `with`, whose references (`$1`, `\1`) add at most `len(s)` each in total.
    RegexpReplace,
    /// `array_to_string(a, sep [, null])`: every element as text plus a separator.
    ArrayToString,
    /// `array_replace*(a, from, to [, n])`: every element may become `to`.
    ArrayReplace,
    /// `concat_ws(sep, ...)`: the arguments plus a separator between each.
    ConcatWs,
    /// `concat`, `make_array`, `array_concat`, ... and `||`: the sum of the arguments.
    Sum,
}

impl Kind {
    fn of(name: &str) -> Option<Kind> {
        Some(match name {
            "range" | "generate_series" => Kind::Range,
            "repeat" => Kind::Repeat,
            "lpad" | "rpad" => Kind::Pad,
            "array_repeat" => Kind::ArrayRepeat,
            "array_resize" => Kind::ArrayResize,
            "replace" => Kind::Replace,
            "regexp_replace" => Kind::RegexpReplace,
            "array_to_string" => Kind::ArrayToString,
            "array_replace" | "array_replace_n" | "array_replace_all" => Kind::ArrayReplace,
            "concat_ws" => Kind::ConcatWs,
            "concat" | "make_array" | "array_concat" | "array_append" | "array_prepend"
            | "make_map" | "map" | STRING_CONCAT => Kind::Sum,
            _ => return None,
        })
    }

    /// Generators build values from small arguments: made volatile so the optimizer never
    /// evaluates them while planning.
    fn generates(self) -> bool {
        matches!(
            self,
            Kind::Range | Kind::Repeat | Kind::Pad | Kind::ArrayRepeat | Kind::ArrayResize
        )
    }

    /// Estimated output bytes of one call over `rows` rows (a constant argument counts for every
    /// row: the operator turns a constant result into a column).
    fn estimate(self, args: &[ColumnarValue], rows: usize) -> usize {
        let arg = |i: usize| args.get(i).map(Arg::new);
        let per_row = |f: &dyn Fn(usize) -> usize| -> usize {
            if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
                f(0).saturating_mul(rows)
            } else {
                (0..rows).map(f).fold(0usize, usize::saturating_add)
            }
        };
        let sum = |from: usize| -> usize {
            args.iter()
                .skip(from)
                .map(|a| Arg::new(a).total(rows))
                .fold(0usize, usize::saturating_add)
        };
        let offsets = rows.saturating_mul(8);
        let count = |i: usize, row: usize| -> usize {
            arg(i)
                .and_then(|a| a.int(row))
                .map_or(0, |n| usize::try_from(n).unwrap_or(0))
        };
        match self {
            Kind::Range => {
                let plan = RangeArgs::new(args);
                per_row(&|r| plan.elements(r).saturating_mul(8)).saturating_add(offsets)
            }
            Kind::Repeat => {
                let s = arg(0);
                per_row(&|r| {
                    let len = s.as_ref().map_or(0, |s| s.bytes(r));
                    len.saturating_mul(count(1, r))
                })
            }
            Kind::Pad => per_row(&|r| count(1, r).saturating_mul(4)).saturating_add(offsets),
            Kind::ArrayRepeat => {
                let v = arg(0);
                per_row(&|r| {
                    let each = v.as_ref().map_or(0, |v| v.bytes(r)).saturating_add(8);
                    each.saturating_mul(count(1, r))
                })
            }
            Kind::ArrayResize => {
                let (a, fill) = (arg(0), arg(2));
                per_row(&|r| {
                    let current = a.as_ref().map_or(0, |a| a.bytes(r));
                    let each = fill.as_ref().map_or(0, |f| f.bytes(r)).saturating_add(8);
                    current.saturating_add(each.saturating_mul(count(1, r)))
                })
            }
            Kind::Replace => {
                let (s, from, to) = (arg(0), arg(1), arg(2));
                per_row(&|r| match (&s, &from, &to) {
                    (Some(s), Some(from), Some(to)) => replace_bytes(s, from, to, r),
                    _ => 0,
                })
            }
            Kind::RegexpReplace => {
                let (s, with, flags) = (arg(0), arg(2), arg(3));
                per_row(&|r| {
                    let len = s.as_ref().map_or(0, |s| s.bytes(r));
                    let with = with.as_ref().and_then(|w| w.text(r)).unwrap_or("");
                    let global = flags
                        .as_ref()
                        .and_then(|f| f.text(r))
                        .is_some_and(|f| f.contains('g'));
                    let matches = if global { len.saturating_add(1) } else { 1 };
                    let refs = with.bytes().filter(|b| *b == b'$' || *b == b'\\').count();
                    len.saturating_mul(refs + 1)
                        .saturating_add(matches.saturating_mul(with.len()))
                })
            }
            Kind::ArrayToString => {
                let (a, sep, null) = (arg(0), arg(1), arg(2));
                per_row(&|r| {
                    let Some(a) = &a else { return 0 };
                    let n = a.leaves(r);
                    // A number or date as text is at most about 40 characters.
                    let each = 40usize
                        .saturating_add(sep.as_ref().map_or(0, |s| s.bytes(r)))
                        .saturating_add(null.as_ref().map_or(0, |s| s.bytes(r)));
                    a.bytes(r).saturating_add(n.saturating_mul(each))
                })
            }
            Kind::ArrayReplace => {
                let (a, to) = (arg(0), arg(2));
                per_row(&|r| {
                    let Some(a) = &a else { return 0 };
                    let each = to.as_ref().map_or(0, |t| t.bytes(r));
                    a.bytes(r)
                        .saturating_add(a.len(r).saturating_mul(each.saturating_add(8)))
                })
            }
            Kind::ConcatWs => {
                let seps = args.len().saturating_sub(2);
                let sep = arg(0).map_or(0, |s| s.total(rows));
                sum(1)
                    .saturating_add(sep.saturating_mul(seps))
                    .saturating_add(offsets)
            }
            Kind::Sum => sum(0).saturating_add(offsets.saturating_mul(args.len().max(1))),
        }
    }
}

fn replace_bytes(s: &Arg, from: &Arg, to: &Arg, r: usize) -> usize {
    let (Some(from), Some(to)) = (from.text(r), to.text(r)) else {
        return 0;
    };
    let Some(text) = s.text(r) else {
        // Not text we can read: every byte could be an occurrence.
        return s.bytes(r).saturating_mul(to.len().saturating_add(1));
    };
    if to.len() <= from.len() {
        return text.len();
    }
    let occurrences = if from.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(from).count()
    };
    text.len()
        .saturating_add(occurrences.saturating_mul(to.len() - from.len()))
}

/// One argument of a call, row by row; a constant stands for every row.
struct Arg<'a> {
    value: &'a ColumnarValue,
    /// The argument as Int64 when it is an integer (counts).
    ints: Option<Ints>,
}

enum Ints {
    Scalar(Option<i64>),
    Array(Int64Array),
}

impl<'a> Arg<'a> {
    fn new(value: &'a ColumnarValue) -> Arg<'a> {
        let ints = match value {
            ColumnarValue::Scalar(s) if s.data_type().is_integer() => {
                Some(Ints::Scalar(match s.cast_to(&DataType::Int64) {
                    Ok(ScalarValue::Int64(v)) => v,
                    _ => None,
                }))
            }
            ColumnarValue::Array(a) if a.data_type().is_integer() => cast(a, &DataType::Int64)
                .ok()
                .and_then(|c| c.as_primitive_opt::<Int64Type>().cloned())
                .map(Ints::Array),
            _ => None,
        };
        Arg { value, ints }
    }

    fn int(&self, row: usize) -> Option<i64> {
        match self.ints.as_ref()? {
            Ints::Scalar(v) => *v,
            Ints::Array(a) => (row < a.len() && a.is_valid(row)).then(|| a.value(row)),
        }
    }

    fn text(&self, row: usize) -> Option<&'a str> {
        match self.value {
            ColumnarValue::Scalar(s) => s.try_as_str().flatten(),
            ColumnarValue::Array(a) => {
                if row >= a.len() || a.is_null(row) {
                    return None;
                }
                if let Some(s) = a.as_string_opt::<i32>() {
                    Some(s.value(row))
                } else if let Some(s) = a.as_string_opt::<i64>() {
                    Some(s.value(row))
                } else {
                    a.as_string_view_opt().map(|s| s.value(row))
                }
            }
        }
    }

    /// Bytes of the value in `row`.
    fn bytes(&self, row: usize) -> usize {
        match self.value {
            ColumnarValue::Scalar(s) => match s.try_as_str() {
                Some(t) => t.map_or(0, str::len),
                None => s.size(),
            },
            ColumnarValue::Array(a) => range_bytes(a.as_ref(), row, row + 1),
        }
    }

    /// Elements of the list in `row`.
    fn len(&self, row: usize) -> usize {
        self.leaves_at(row, 1)
    }

    /// Leaf elements of the (nested) list in `row`.
    fn leaves(&self, row: usize) -> usize {
        self.leaves_at(row, usize::MAX)
    }

    fn leaves_at(&self, row: usize, depth: usize) -> usize {
        fn down(a: &dyn Array, s: usize, e: usize, depth: usize) -> usize {
            match child_range(a, s, e) {
                Some((child, cs, ce)) if depth > 0 => down(child.as_ref(), cs, ce, depth - 1),
                _ => e.saturating_sub(s),
            }
        }
        match self.value {
            ColumnarValue::Scalar(s) => match s.to_array() {
                Ok(a) => down(a.as_ref(), 0, 1, depth),
                Err(_) => 1,
            },
            ColumnarValue::Array(a) => down(a.as_ref(), row, row + 1, depth),
        }
    }

    /// Bytes of the whole argument over `rows` rows.
    fn total(&self, rows: usize) -> usize {
        match self.value {
            ColumnarValue::Scalar(_) => self.bytes(0).saturating_mul(rows),
            ColumnarValue::Array(a) => a.get_array_memory_size(),
        }
    }
}

/// `range` / `generate_series` arguments as numbers: integers as they are, dates and timestamps
/// in nanoseconds, an interval step as the least it can advance.
struct RangeArgs {
    start: Ints,
    stop: Ints,
    step: Ints,
}

impl RangeArgs {
    fn new(args: &[ColumnarValue]) -> RangeArgs {
        let one = || Ints::Scalar(Some(1));
        match args {
            [stop] => RangeArgs {
                start: Ints::Scalar(Some(0)),
                stop: nanos(stop),
                step: one(),
            },
            [start, stop] => RangeArgs {
                start: nanos(start),
                stop: nanos(stop),
                step: one(),
            },
            [start, stop, step, ..] => RangeArgs {
                start: nanos(start),
                stop: nanos(stop),
                step: match step.data_type() {
                    DataType::Interval(_) => least_step(step),
                    _ => nanos(step),
                },
            },
            [] => RangeArgs {
                start: Ints::Scalar(None),
                stop: Ints::Scalar(None),
                step: one(),
            },
        }
    }

    fn elements(&self, row: usize) -> usize {
        let at = |i: &Ints| match i {
            Ints::Scalar(v) => *v,
            Ints::Array(a) => (row < a.len() && a.is_valid(row)).then(|| a.value(row)),
        };
        let (Some(start), Some(stop), Some(step)) =
            (at(&self.start), at(&self.stop), at(&self.step))
        else {
            return 0;
        };
        if step == 0 {
            return 0;
        }
        let span = (i128::from(stop) - i128::from(start)).unsigned_abs();
        let n = span / i128::from(step).unsigned_abs() + 1;
        usize::try_from(n).unwrap_or(usize::MAX)
    }
}

/// An integer, date or timestamp argument as Int64 (dates and timestamps in nanoseconds).
fn nanos(v: &ColumnarValue) -> Ints {
    let factor: i64 = match v.data_type() {
        DataType::Date32 => 86_400_000_000_000,
        DataType::Date64 => 1_000_000,
        DataType::Timestamp(TimeUnit::Second, _) => 1_000_000_000,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 1_000,
        _ => 1,
    };
    let scale = |x: i64| x.saturating_mul(factor);
    match v {
        ColumnarValue::Scalar(s) => Ints::Scalar(match s.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(x)) => x.map(scale),
            _ => None,
        }),
        ColumnarValue::Array(a) => match cast(a, &DataType::Int64) {
            Ok(c) => Ints::Array(
                c.as_primitive::<Int64Type>()
                    .iter()
                    .map(|x| x.map(scale))
                    .collect(),
            ),
            Err(_) => Ints::Scalar(None),
        },
    }
}

/// The least an interval step advances, in nanoseconds: a month is at least 28 days, a day at
/// least 23 hours (a DST change). Mixed signs (`1 month - 30 days`) may advance by almost
/// nothing, so they count as one nanosecond.
fn least_step(v: &ColumnarValue) -> Ints {
    const DAY: i128 = 23 * 3_600_000_000_000;
    let least = |m: i32, d: i32, ns: i64| -> i64 {
        let parts = [
            i128::from(m) * 28 * DAY,
            i128::from(d) * DAY,
            i128::from(ns),
        ];
        let all_up = parts.iter().all(|p| *p >= 0);
        let all_down = parts.iter().all(|p| *p <= 0);
        if all_up || all_down {
            let total: i128 = parts.iter().sum();
            i64::try_from(total).unwrap_or(if all_up { i64::MAX } else { i64::MIN })
        } else {
            1
        }
    };
    match v {
        ColumnarValue::Scalar(ScalarValue::IntervalMonthDayNano(x)) => {
            Ints::Scalar(x.map(|x| least(x.months, x.days, x.nanoseconds)))
        }
        ColumnarValue::Array(a) => match a.as_primitive_opt::<IntervalMonthDayNanoType>() {
            Some(p) => Ints::Array(
                p.iter()
                    .map(|x| x.map(|x| least(x.months, x.days, x.nanoseconds)))
                    .collect(),
            ),
            None => Ints::Scalar(Some(1)),
        },
        // Other interval types are coerced to month-day-nano before the call.
        ColumnarValue::Scalar(_) => Ints::Scalar(Some(1)),
    }
}

/// Name of the function that stands in for the `||` operator on strings.
const STRING_CONCAT: &str = "string_concat_operator";

/// A function whose output is estimated and reserved before it runs.
#[derive(Debug)]
struct Guarded {
    inner: Arc<ScalarUDF>,
    kind: Kind,
    signature: Signature,
    pool: Arc<dyn MemoryPool>,
}

impl PartialEq for Guarded {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.inner == other.inner && Arc::ptr_eq(&self.pool, &other.pool)
    }
}

impl Eq for Guarded {}

impl Hash for Guarded {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        self.inner.hash(state);
    }
}

impl Guarded {
    fn wrap(inner: Arc<ScalarUDF>, kind: Kind, pool: &Arc<dyn MemoryPool>) -> Arc<ScalarUDF> {
        let mut signature = inner.signature().clone();
        if kind.generates() {
            signature.volatility = Volatility::Volatile;
        }
        Arc::new(ScalarUDF::new_from_impl(Guarded {
            inner,
            kind,
            signature,
            pool: pool.clone(),
        }))
    }
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let bytes = self.kind.estimate(&args.args, args.number_rows);
        reserve(
            &self.pool,
            &format!("`{}`", self.inner.name()),
            bytes,
            HEADROOM,
        )?;
        self.inner.invoke_with_args(args)
    }

    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        // A simplification rebuilds the call with the plain function: guard it again.
        Ok(match self.inner.simplify(args, info)? {
            ExprSimplifyResult::Simplified(e) => {
                ExprSimplifyResult::Simplified(guard_expr(e, &self.pool)?)
            }
            ExprSimplifyResult::Original(args) => ExprSimplifyResult::Original(args),
        })
    }

    fn short_circuits(&self) -> bool {
        self.inner.short_circuits()
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// `a || b` on strings, as a function so it can be checked: coerced and evaluated exactly as
/// DataFusion's operator (`BinaryExpr`), with the sum of both sides reserved first.
#[derive(Debug, PartialEq, Eq, Hash)]
struct StringConcat {
    signature: Signature,
}

impl StringConcat {
    fn udf() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(StringConcat {
            signature: Signature::user_defined(Volatility::Immutable),
        }))
    }
}

impl ScalarUDFImpl for StringConcat {
    fn name(&self) -> &str {
        STRING_CONCAT
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        match args {
            [l, r] => Ok(format!("{} || {}", l.schema_name(), r.schema_name())),
            _ => Ok(STRING_CONCAT.to_string()),
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let [l, r] = two(arg_types)?;
        let (l, r) = BinaryTypeCoercer::new(l, &Operator::StringConcat, r).get_input_types()?;
        Ok(vec![l, r])
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let [l, r] = two(arg_types)?;
        BinaryTypeCoercer::new(l, &Operator::StringConcat, r).get_result_type()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // Unguarded: only ever called through a `Guarded` wrapper.
        let rows = args.number_rows;
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        let mut sides: Vec<Arc<dyn PhysicalExpr>> = Vec::new();
        for (value, field) in args.args.into_iter().zip(&args.arg_fields) {
            match value {
                ColumnarValue::Scalar(s) => sides.push(Arc::new(Literal::new(s))),
                ColumnarValue::Array(a) => {
                    let name = format!("c{}", columns.len());
                    sides.push(Arc::new(phys::Column::new(&name, columns.len())));
                    fields.push(field.as_ref().clone().with_name(name).with_nullable(true));
                    columns.push(a);
                }
            }
        }
        let [l, r] = <[Arc<dyn PhysicalExpr>; 2]>::try_from(sides).map_err(|_| {
            DataFusionError::Internal(format!("{STRING_CONCAT} takes two arguments"))
        })?;
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(fields));
        let batch = RecordBatch::try_new_with_options(
            schema,
            columns,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        phys::BinaryExpr::new(l, Operator::StringConcat, r).evaluate(&batch)
    }
}

fn two(types: &[DataType]) -> Result<[&DataType; 2]> {
    match types {
        [l, r] => Ok([l, r]),
        _ => Err(DataFusionError::Plan(format!(
            "{STRING_CONCAT} takes two arguments, not {}",
            types.len()
        ))),
    }
}

/// Guards one expression node: a checked function gets its [`Guarded`] wrapper, `||` on
/// strings becomes the guarded [`StringConcat`].
fn guard_node(expr: Expr, pool: &Arc<dyn MemoryPool>) -> Result<Transformed<Expr>> {
    match expr {
        Expr::ScalarFunction(f) if !f.func.inner().is::<Guarded>() => {
            match Kind::of(f.func.name()) {
                Some(kind) => Ok(Transformed::yes(Expr::ScalarFunction(
                    ScalarFunction::new_udf(Guarded::wrap(f.func, kind, pool), f.args),
                ))),
                None => Ok(Transformed::no(Expr::ScalarFunction(f))),
            }
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::StringConcat,
            right,
        }) => Ok(Transformed::yes(Expr::ScalarFunction(
            ScalarFunction::new_udf(
                Guarded::wrap(StringConcat::udf(), Kind::Sum, pool),
                vec![*left, *right],
            ),
        ))),
        other => Ok(Transformed::no(other)),
    }
}

fn guard_expr(expr: Expr, pool: &Arc<dyn MemoryPool>) -> Result<Expr> {
    expr.transform_up(|e| guard_node(e, pool)).map(|t| t.data)
}

/// Analyzer step (DataFusion's function rewrites run first, before type coercion and the
/// optimizer): guards every checked function and `||` in the plan and its subqueries.
#[derive(Debug)]
pub struct GuardFunctions {
    pool: Arc<dyn MemoryPool>,
}

impl GuardFunctions {
    pub fn new(pool: Arc<dyn MemoryPool>) -> GuardFunctions {
        GuardFunctions { pool }
    }

    /// The same on a finished plan, in case an optimizer rule built a call of its own.
    pub fn guard_plan(&self, plan: LogicalPlan) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            p.map_expressions(|e| e.transform_up(|e| guard_node(e, &self.pool)))
        })
        .map(|t| t.data)
    }
}

impl FunctionRewrite for GuardFunctions {
    fn name(&self) -> &str {
        "hybrid_guard_functions"
    }

    fn rewrite(
        &self,
        expr: Expr,
        _schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        guard_node(expr, &self.pool)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::hybrid::engine::{on_engine, LocalQuery, Output};
    use crate::hybrid::tables::LocalTables;
    use crate::hybrid::{ErrorKind, HybridError};

    const MB: usize = 1 << 20;

    async fn local(sql: &str, max_memory: usize) -> Result<Output, HybridError> {
        let q = LocalQuery {
            sql: sql.to_string(),
            tables: Arc::new(LocalTables {
                spec: BTreeMap::new(),
                tables: BTreeMap::new(),
            }),
            registrations: Vec::new(),
            max_result_rows: 1000,
            max_memory,
            threads: Some(2),
        };
        on_engine(Some(2), q.run()).await?
    }

    /// `sql` fails with `memory_limit` under a 64 MiB pool (how fast is a bench's business, not a
    /// test's: a loaded CI machine takes many times longer).
    async fn refused(sql: &str) -> HybridError {
        let e = match local(sql, 64 * MB).await {
            Ok(out) => panic!("{sql}: ran, {} rows", out.rows),
            Err(e) => e,
        };
        assert_eq!(e.kind, ErrorKind::MemoryLimit, "{sql}: {}", e.message);
        assert!(
            e.message.contains("hybrid.max_memory_mb"),
            "{sql}: {}",
            e.message
        );
        e
    }

    fn text(out: &Output) -> String {
        pretty_format_batches(&out.batches).unwrap().to_string()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_red_team_queries_are_refused_before_they_allocate() {
        // 800 MB of list and its unnested copy; 300 MB of string.
        let e = refused("SELECT count(*) FROM unnest(range(1, 100000000))").await;
        assert!(e.message.contains("`range` would build"), "{}", e.message);
        let e = refused("SELECT length(repeat('x', 300000000))").await;
        assert!(e.message.contains("`repeat` would build"), "{}", e.message);
        // Scaled to just past 64 MiB.
        refused("SELECT count(*) FROM unnest(range(1, 10000000))").await;
        refused("SELECT count(*) FROM unnest(generate_series(1, 10000000))").await;
        refused("SELECT length(repeat('x', 40000000))").await;
        refused("SELECT length(lpad('x', 20000000))").await;
        refused("SELECT cardinality(array_repeat(1, 10000000))").await;
        refused(
            "SELECT count(*) FROM unnest(generate_series(TIMESTAMP '2000-01-01', \
             TIMESTAMP '2100-01-01', INTERVAL '1 second'))",
        )
        .await;
        // Not constant: the count comes from a column.
        refused("SELECT sum(length(repeat('x', n))) FROM (VALUES (40000000)) AS t(n)").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn values_that_multiply_an_argument_are_refused() {
        let s = "(SELECT repeat('x', 2000000) AS s) t";
        let forty = |sep: &str| vec!["s"; 40].join(sep);
        // Each generated value is small; 40 copies of one in a single row are not.
        refused(&format!("SELECT length(concat({})) FROM {s}", forty(", "))).await;
        refused(&format!("SELECT length({}) FROM {s}", forty(" || "))).await;
        refused(&format!("SELECT cardinality([{}]) FROM {s}", forty(", "))).await;
        refused(&format!(
            "SELECT length(concat_ws({})) FROM {s}",
            forty(", ")
        ))
        .await;
        refused(&format!(
            "SELECT length(replace(s, 'x', '{}')) FROM {s}",
            "y".repeat(40)
        ))
        .await;
        refused(&format!(
            "SELECT length(regexp_replace(s, 'x', '{}', 'g')) FROM {s}",
            "y".repeat(40)
        ))
        .await;
        // Many generated columns in one row count together.
        let cols: Vec<String> = (0..10)
            .map(|i| format!("length(repeat('x', 4000000)) AS c{i}"))
            .collect();
        refused(&format!("SELECT {}", cols.join(", "))).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unnest_expansions_and_buffering_operators_are_counted() {
        // A 2-million-element list is allowed; repeating a 30-byte string along it is not.
        let e = refused(
            "SELECT sum(length(s)) FROM (SELECT unnest(l) AS x, s FROM \
             (SELECT range(1, 2000000) AS l, repeat('y', 30) AS s))",
        )
        .await;
        assert!(e.message.contains("unnest would build"), "{}", e.message);
        // Fewer elements than a batch, but each output row repeats a 100 kB string.
        let e = refused(
            "SELECT sum(length(s)) FROM (SELECT unnest(l) AS x, s FROM \
             (SELECT range(1, 8000) AS l, repeat('y', 100000) AS s))",
        )
        .await;
        assert!(e.message.contains("unnest would build"), "{}", e.message);
        // Many short lists in one batch are unnested chunk by chunk: fine.
        let out = local(
            "SELECT sum(length(s)) AS n FROM (SELECT unnest(range(1, 4)) AS x, s FROM \
             (SELECT repeat('y', 100) AS s FROM unnest(range(1, 100000))))",
            64 * MB,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
        assert!(text(&out).contains("29999700"), "{}", text(&out));
        // 4 million groups do not fit in 64 MiB, and nothing spills.
        refused(
            "SELECT count(*) FROM (SELECT a.x * 10000 + b.y AS k, count(*) AS n FROM \
             (SELECT unnest(range(1, 2000)) AS x) a CROSS JOIN \
             (SELECT unnest(range(1, 2000)) AS y) b GROUP BY 1)",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn guarded_functions_answer_exactly_like_datafusion() {
        let plain = SessionContext::new();
        for sql in [
            "SELECT count(*) AS n, sum(x) AS s FROM unnest(range(1, 100000)) AS t(x)",
            "SELECT * FROM unnest(generate_series(1, 10, 3))",
            "SELECT range(5), range(2, 5), generate_series(5, 1, -2)",
            "SELECT generate_series(DATE '2024-01-30', DATE '2024-05-01', INTERVAL '1 month')",
            "SELECT repeat('ab', 3), lpad('7', 3, '0'), rpad('x', 2), repeat('x', -1)",
            "SELECT 'a' || 'b', 'a' || NULL, 'n' || 1, concat('a', NULL, 'b')",
            "SELECT concat_ws('-', 'a', 'b', NULL, 'c'), [1, 2] || [3], [1] || 2, 0 || [1]",
            "SELECT s || '!' AS loud, upper(s || s) FROM (VALUES ('a'), (NULL), ('bc')) AS t(s)",
            "SELECT replace('banana', 'a', 'oo'), replace('abc', '', '-'), \
             regexp_replace('banana', '(a)', '<$1>', 'g'), regexp_replace('aa', 'a', 'b')",
            "SELECT array_to_string([[1, 2], [3]], ','), array_repeat('x', 3), \
             array_resize([1], 3, 0), array_replace_all([1, 2, 1], 1, 9), make_array(1, 2)",
            "SELECT repeat(s, n) FROM (VALUES ('x', 2), ('yz', 0), (NULL, 1)) AS t(s, n)",
        ] {
            let ours = local(sql, 64 * MB)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", e.message));
            let theirs = plain.sql(sql).await.unwrap().collect().await.unwrap();
            assert_eq!(
                text(&ours),
                pretty_format_batches(&theirs).unwrap().to_string(),
                "{sql}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn room_is_given_back_between_queries_and_batches() {
        // Far more than 64 MiB generated in total, a little at a time: each batch's values are
        // released once the next batch starts.
        let out = local(
            "SELECT sum(length(repeat('x', 1000))) FROM unnest(range(1, 200000))",
            64 * MB,
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.message));
        assert!(text(&out).contains("199999000"), "{}", text(&out));
        // A refused query leaves the next one the whole pool.
        refused("SELECT length(repeat('x', 40000000))").await;
        let out = local("SELECT length(repeat('x', 10000000)) AS n", 64 * MB)
            .await
            .unwrap_or_else(|e| panic!("{}", e.message));
        assert!(text(&out).contains("10000000"), "{}", text(&out));
    }
}
