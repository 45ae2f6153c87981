//! Turns a submitted statement into a `Plan` (the result, or the failure, the query will
//! report) plus the session-changing response headers, the way Trino's analyzer and
//! data-definition tasks would.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use serde_json::Value;

use super::protocol::{
    java_url_encode, Column, ErrorCode, ErrorLocation, QueryError, ResponseHeaders, SqlType,
};
use super::query::{NewQuery, Plan, Session};
use super::sql::{self, Expr, Literal, Select, Statement, MAX_DELAY_MS};
use super::state::EmulatorState;

/// Plans `sql` submitted with `session`. `transaction` is the request's transaction id
/// (`X-Trino-Transaction-Id`, already without the `NONE` placeholder).
pub(crate) fn plan(
    state: &EmulatorState,
    session: Session,
    transaction: Option<&str>,
    sql: String,
) -> NewQuery {
    let mut effects = Effects::default();
    let mut page_delay = state.config.page_delay;
    let plan = match sql::parse(&sql) {
        Err(e) => Plan::Fail(e),
        Ok(parsed) => {
            if let Some(ms) = parsed.page_delay_ms {
                page_delay = page_delay.saturating_add(Duration::from_millis(ms));
            }
            plan_statement(state, &session, transaction, parsed.statement, &mut effects)
                .unwrap_or_else(|e| {
                    effects.headers.clear();
                    Plan::Fail(e)
                })
        }
    };
    NewQuery {
        sql,
        session,
        plan,
        headers: effects.headers,
        page_delay,
        sleep: Duration::from_millis(effects.sleep_ms.min(MAX_DELAY_MS)),
    }
}

/// Side effects of a statement besides its result: session headers and `sleep()` time.
#[derive(Default)]
struct Effects {
    headers: Vec<(HeaderName, HeaderValue)>,
    sleep_ms: u64,
}

impl Effects {
    fn header(&mut self, name: &HeaderName, value: &str) -> Result<(), QueryError> {
        let value = HeaderValue::from_str(value).map_err(|_| {
            QueryError::new(
                ErrorCode::NotSupported,
                format!(
                    "the emulator cannot send '{value}' in the {name} response header \
                     (not visible ASCII)"
                ),
            )
        })?;
        self.headers.push((name.clone(), value));
        Ok(())
    }
}

fn plan_statement(
    state: &EmulatorState,
    session: &Session,
    transaction: Option<&str>,
    statement: Statement,
    out: &mut Effects,
) -> Result<Plan, QueryError> {
    if let Some(id) = transaction {
        if !state.has_transaction(id) {
            return Err(QueryError::new(
                ErrorCode::UnknownTransaction,
                format!(
                    "Unknown transaction ID: {id}. Possibly expired? \
                     Commands ignored until end of transaction block"
                ),
            ));
        }
    }
    let names = session.protocol.headers();
    Ok(match statement {
        Statement::Select(select) => plan_select(session, select, out)?,
        Statement::Use { catalog, schema } => {
            if catalog.is_none() && session.catalog.is_none() {
                return Err(QueryError::new(
                    ErrorCode::MissingCatalogName,
                    "Catalog must be specified when session catalog is not set",
                ));
            }
            if let Some(catalog) = &catalog {
                out.header(&names.set_catalog, catalog)?;
            }
            out.header(&names.set_schema, &schema)?;
            Plan::Update { update_type: "USE" }
        }
        Statement::SetSession { name, value } => {
            out.header(
                &names.set_session,
                &format!("{name}={}", java_url_encode(&value)),
            )?;
            Plan::Update {
                update_type: "SET SESSION",
            }
        }
        Statement::ResetSession { name } => {
            out.header(&names.clear_session, &name)?;
            Plan::Update {
                update_type: "RESET SESSION",
            }
        }
        Statement::StartTransaction => {
            if transaction.is_some() {
                return Err(QueryError::new(
                    ErrorCode::NotSupported,
                    "Nested transactions not supported",
                ));
            }
            let id = state.begin_transaction();
            out.header(&names.started_transaction_id, &id)?;
            Plan::Update {
                update_type: "START TRANSACTION",
            }
        }
        Statement::Commit => end_transaction(state, transaction, "COMMIT", names, out)?,
        Statement::Rollback => end_transaction(state, transaction, "ROLLBACK", names, out)?,
        Statement::RuntimeQueries { grouped } => {
            let (queued, running) = state.active_counts();
            // The probe itself is running while it is answered (it is not registered yet).
            let running = running + 1;
            if grouped {
                let rows = [("QUEUED", queued), ("RUNNING", running)]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(s, n)| vec![Value::from(s), Value::from(n)])
                    .collect();
                Plan::Rows {
                    columns: vec![
                        Column::new("state", SqlType::Varchar(None)),
                        Column::new("_col1", SqlType::Bigint),
                    ],
                    rows,
                }
            } else {
                Plan::Rows {
                    columns: vec![Column::new("_col0", SqlType::Bigint)],
                    rows: vec![vec![Value::from(queued + running)]],
                }
            }
        }
    })
}

/// `COMMIT` / `ROLLBACK`: both end the transaction the request names.
fn end_transaction(
    state: &EmulatorState,
    transaction: Option<&str>,
    update_type: &'static str,
    names: &ResponseHeaders,
    out: &mut Effects,
) -> Result<Plan, QueryError> {
    let Some(id) = transaction else {
        return Err(QueryError::new(
            ErrorCode::NotInTransaction,
            "No transaction in progress",
        ));
    };
    state.end_transaction(id);
    out.header(&names.clear_transaction_id, "true")?;
    Ok(Plan::Update { update_type })
}

fn plan_select(session: &Session, select: Select, out: &mut Effects) -> Result<Plan, QueryError> {
    let limit = select.limit.unwrap_or(u64::MAX);
    if let Some(name) = &select.table {
        let only_star = matches!(select.items.as_slice(), [item] if item.expr == Expr::Star);
        if !only_star {
            return Err(QueryError::new(
                ErrorCode::NotSupported,
                "the emulator supports only SELECT * FROM <canned table> [LIMIT n]",
            ));
        }
        let (columns, mut rows) = super::tables::lookup(name, session.parametric_datetime)
            .ok_or_else(|| {
                QueryError::new(
                    ErrorCode::TableNotFound,
                    format!(
                        "Table '{}' does not exist (the emulator has: {})",
                        name.join("."),
                        super::tables::NAMES
                    ),
                )
            })?;
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        return Ok(Plan::Rows { columns, rows });
    }
    if let Some(unnest) = select.from {
        let [item] = <[_; 1]>::try_from(select.items).map_err(|_| {
            QueryError::new(
                ErrorCode::NotSupported,
                "the emulator supports a single column (* or the UNNEST column) in SELECT ... \
                 FROM UNNEST",
            )
        })?;
        let name =
            match item.expr {
                Expr::Star => unnest.column.clone().unwrap_or_else(|| "_col0".into()),
                Expr::Column(c) if unnest.column.as_deref() == Some(c.as_str()) => {
                    item.alias.unwrap_or(c)
                }
                Expr::Column(c) => return Err(column_not_found(&c, item.location)),
                _ => return Err(QueryError::new(
                    ErrorCode::NotSupported,
                    "the emulator supports only * or the UNNEST column in SELECT ... FROM UNNEST",
                )),
            };
        let step: i64 = if unnest.start <= unnest.stop { 1 } else { -1 };
        let span = (i128::from(unnest.stop) - i128::from(unnest.start)).unsigned_abs() + 1;
        let count = u64::try_from(span)
            .ok()
            .filter(|n| *n <= i64::MAX as u64)
            .ok_or_else(|| {
                QueryError::new(
                    ErrorCode::InvalidFunctionArgument,
                    "result of sequence function must not have more than 9223372036854775807 \
                     entries",
                )
            })?;
        return Ok(Plan::Sequence {
            columns: vec![Column::new(name, SqlType::Bigint)],
            start: unnest.start,
            step,
            count: count.min(limit),
        });
    }

    let mut columns = Vec::with_capacity(select.items.len());
    let mut row = Vec::with_capacity(select.items.len());
    for (i, item) in select.items.into_iter().enumerate() {
        let (ty, value) = match item.expr {
            Expr::Literal(literal) => literal_value(literal),
            Expr::CurrentCatalog => session_value(session.catalog.as_deref()),
            Expr::CurrentSchema => session_value(session.schema.as_deref()),
            Expr::CurrentUser => session_value(Some(&session.user)),
            Expr::Fail(message) => {
                return Err(QueryError::new(ErrorCode::GenericUserError, message));
            }
            Expr::Sleep(ms) => {
                out.sleep_ms = out.sleep_ms.saturating_add(ms);
                literal_value(Literal::Integer(i64::try_from(ms).unwrap_or(i64::MAX)))
            }
            Expr::Star => {
                return Err(QueryError::new(
                    ErrorCode::NotSupported,
                    "SELECT * not allowed in queries without FROM clause",
                )
                .at(Some(item.location)));
            }
            Expr::Column(c) => return Err(column_not_found(&c, item.location)),
        };
        let name = item.alias.unwrap_or_else(|| format!("_col{i}"));
        columns.push(Column::new(name, ty));
        row.push(value);
    }
    let rows = if limit == 0 { Vec::new() } else { vec![row] };
    Ok(Plan::Rows { columns, rows })
}

fn column_not_found(column: &str, at: ErrorLocation) -> QueryError {
    QueryError::new(
        ErrorCode::ColumnNotFound,
        format!(
            "line {}:{}: Column '{column}' cannot be resolved",
            at.line_number, at.column_number
        ),
    )
    .at(Some(at))
}

fn session_value(value: Option<&str>) -> (SqlType, Value) {
    (
        SqlType::Varchar(None),
        value.map_or(Value::Null, Value::from),
    )
}

/// Type and JSON encoding of a literal, as Trino types and encodes it (integers that fit
/// 32 bits are `integer`, decimals travel as strings, a bare NULL is of type `unknown`).
fn literal_value(literal: Literal) -> (SqlType, Value) {
    match literal {
        Literal::Integer(v) => {
            let ty = if i32::try_from(v).is_ok() {
                SqlType::Integer
            } else {
                SqlType::Bigint
            };
            (ty, Value::from(v))
        }
        Literal::Decimal {
            text,
            precision,
            scale,
        } => (SqlType::Decimal { precision, scale }, Value::from(text)),
        Literal::Double(v) => (SqlType::Double, Value::from(v)),
        Literal::Varchar(s) => {
            let len = u32::try_from(s.chars().count()).unwrap_or(u32::MAX);
            (SqlType::Varchar(Some(len)), Value::from(s))
        }
        Literal::Boolean(b) => (SqlType::Boolean, Value::from(b)),
        Literal::Null => (SqlType::Unknown, Value::Null),
    }
}
