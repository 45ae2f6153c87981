//! Runs one remote subquery through Trino's client protocol and turns its pages into Arrow
//! record batches as they arrive.
//!
//! A small client of our own (a POST and a `nextUri` loop): the limits have to act *between*
//! pages — stop at the row or memory limit and cancel the query there — which a collect-all client
//! cannot do. Whatever ends the fetch early (a limit, an error, the request's timeout, the caller
//! going away) drops the [`Cancel`] guard, and the guard sends Trino the `DELETE`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::types::{self, TrinoType};
use super::{ErrorKind, HybridError};
use crate::trino_client::rebase;

/// Source reported to Trino for hybrid subqueries (visible in its query list and in policies).
pub const SOURCE: &str = "trino-edge-hybrid";

/// Transient HTTP statuses a Trino client retries (the coordinator is restarting or overloaded).
const RETRY_STATUSES: [u16; 3] = [502, 503, 504];
const MAX_RETRIES: u32 = 5;

/// Where and as whom a subquery runs.
pub struct Target {
    pub backend: String,
    /// `http(s)://host:port` of the chosen backend.
    pub base: String,
    pub user: String,
    pub catalog: Option<String>,
    pub schema: Option<String>,
}

pub struct Limits {
    pub max_rows: u64,
    /// Bytes, shared by all registrations of the request.
    pub max_memory: u64,
}

/// A finished registration.
pub struct Registration {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub stats: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    id: Option<String>,
    next_uri: Option<String>,
    columns: Option<Vec<ColumnJson>>,
    data: Option<Vec<Vec<Value>>>,
    error: Option<TrinoError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ColumnJson {
    name: String,
    #[serde(rename = "type")]
    type_name: Option<String>,
    type_signature: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrinoError {
    message: Option<String>,
    error_name: Option<String>,
    error_type: Option<ErrorType>,
}

/// Trino's `errorType`: whose fault a failed query is. Serialises back to Trino's text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum ErrorType {
    UserError,
    InternalError,
    InsufficientResources,
    External,
    /// A type this gateway does not know, kept as Trino sent it.
    #[serde(untagged)]
    Other(String),
}

/// Cancels the remote query when dropped before it finished.
struct Cancel {
    http: reqwest::Client,
    user: String,
    /// The current `nextUri`, which `DELETE` cancels.
    next: Option<String>,
    done: bool,
}

impl Drop for Cancel {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let (Some(url), Ok(rt)) = (self.next.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let (http, user) = (self.http.clone(), std::mem::take(&mut self.user));
        rt.spawn(async move {
            let r = http
                .delete(&url)
                .header("X-Trino-User", user)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            match r {
                Ok(_) => tracing::debug!(%url, "hybrid: remote query cancelled"),
                Err(e) => tracing::warn!(%url, error = %e, "hybrid: could not cancel remote query"),
            }
        });
    }
}

fn remote(message: String, details: Value) -> HybridError {
    HybridError::new(ErrorKind::RemoteError, message).details(details)
}

/// Run `sql` on `target` and collect it as Arrow, within `limits`. `memory` counts the Arrow
/// bytes of every registration of the request.
pub async fn fetch(
    http: &reqwest::Client,
    alias: &str,
    sql: &str,
    target: &Target,
    limits: &Limits,
    memory: &Arc<AtomicU64>,
) -> Result<Registration, HybridError> {
    let started = Instant::now();
    let mut cancel = Cancel {
        http: http.clone(),
        user: target.user.clone(),
        next: None,
        done: false,
    };
    let where_ = |query_id: &Option<String>| json!({"alias": alias, "backend": target.backend, "query_id": query_id});

    let submit = || {
        let mut r = http
            .post(format!("{}/v1/statement", target.base))
            .header("X-Trino-User", &target.user)
            .header("X-Trino-Source", SOURCE)
            .header(
                crate::trino_client::CLIENT_CAPABILITIES,
                crate::trino_client::CAPABILITIES,
            )
            .body(sql.to_string());
        if let Some(c) = &target.catalog {
            r = r.header("X-Trino-Catalog", c);
        }
        if let Some(s) = &target.schema {
            r = r.header("X-Trino-Schema", s);
        }
        r
    };
    let mut page = read_page(submit, alias, target).await?;

    let mut query_id: Option<String> = None;
    let mut columns: Option<(SchemaRef, Vec<TrinoType>)> = None;
    let mut batches = Vec::new();
    let mut rows: u64 = 0;
    let mut bytes: u64 = 0;
    loop {
        if query_id.is_none() {
            query_id = page.id.take();
        }
        cancel.next = page.next_uri.take().map(|u| rebase(&target.base, &u));
        if let Some(e) = page.error.take() {
            // The query already failed on Trino: nothing left to cancel.
            cancel.done = true;
            let name = e.error_name.unwrap_or_else(|| "UNKNOWN".into());
            let user_error = e.error_type == Some(ErrorType::UserError);
            let mut d = where_(&query_id);
            d["errorName"] = json!(name);
            d["errorType"] = json!(e.error_type);
            let mut err = remote(
                format!(
                    "remote query `{alias}` failed: {name}: {}",
                    e.message.unwrap_or_default()
                ),
                d,
            );
            if user_error {
                err.status = 400;
            }
            return Err(err);
        }
        if columns.is_none() {
            if let Some(cols) = page.columns.take() {
                columns = Some(schema_of(cols));
            }
        }
        if let Some(data) = page.data.take().filter(|d| !d.is_empty()) {
            let Some((schema, tys)) = &columns else {
                return Err(remote(
                    format!("remote query `{alias}` sent data before its columns"),
                    where_(&query_id),
                ));
            };
            let batch = to_batch(schema, tys, &data).map_err(|e| {
                remote(
                    format!("remote query `{alias}`: {}", e.0),
                    where_(&query_id),
                )
            })?;
            rows += data.len() as u64;
            if rows > limits.max_rows {
                let mut d = where_(&query_id);
                d["max_registration_rows"] = json!(limits.max_rows);
                return Err(HybridError::new(
                    ErrorKind::RowLimit,
                    format!(
                        "remote query `{alias}` returned more than {} rows \
                         (hybrid.max_registration_rows); it was cancelled — aggregate or filter \
                         it on Trino",
                        limits.max_rows
                    ),
                )
                .details(d));
            }
            let size = batch.get_array_memory_size() as u64;
            bytes += size;
            let total = memory.fetch_add(size, Ordering::Relaxed) + size;
            if total > limits.max_memory {
                let mut d = where_(&query_id);
                d["max_memory_mb"] = json!(limits.max_memory >> 20);
                d["registered_bytes"] = json!(total);
                return Err(HybridError::new(
                    ErrorKind::MemoryLimit,
                    format!(
                        "registered results exceed {} MiB (hybrid.max_memory_mb) while reading \
                         `{alias}`; it was cancelled",
                        limits.max_memory >> 20
                    ),
                )
                .details(d));
            }
            batches.push(batch);
        }
        let Some(next) = cancel.next.clone() else {
            cancel.done = true;
            break;
        };
        page = read_page(
            || http.get(&next).header("X-Trino-User", &target.user),
            alias,
            target,
        )
        .await?;
    }
    let Some((schema, _)) = columns else {
        return Err(remote(
            format!("remote statement `{alias}` returned no columns (is it a query?)"),
            where_(&query_id),
        ));
    };
    let stats = json!({
        "rows": rows,
        "columns": schema.fields().len(),
        "memory_mb": (bytes as f64 / (1024.0 * 1024.0) * 1e6).round() / 1e6,
        "backend": target.backend,
        "query_id": query_id,
        "elapsed_ms": started.elapsed().as_millis() as u64,
    });
    Ok(Registration {
        schema,
        batches,
        stats,
    })
}

/// Send the request `req` builds (again for each retry of what Trino clients retry) and parse
/// the page.
async fn read_page(
    req: impl Fn() -> reqwest::RequestBuilder,
    alias: &str,
    target: &Target,
) -> Result<Page, HybridError> {
    let mut attempt = 0;
    loop {
        let r = req().send().await.map_err(|e| {
            remote(
                format!(
                    "remote query `{alias}`: backend `{}` unreachable: {e}",
                    target.backend
                ),
                json!({"alias": alias, "backend": target.backend}),
            )
        })?;
        let status = r.status().as_u16();
        if RETRY_STATUSES.contains(&status) && attempt < MAX_RETRIES {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            continue;
        }
        let body = r.bytes().await.map_err(|e| {
            remote(
                format!("remote query `{alias}`: reading a page failed: {e}"),
                json!({"alias": alias, "backend": target.backend}),
            )
        })?;
        if status != 200 {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(remote(
                format!("remote query `{alias}`: backend answered HTTP {status}: {text}"),
                json!({"alias": alias, "backend": target.backend, "httpStatus": status}),
            ));
        }
        return serde_json::from_slice(&body).map_err(|e| {
            remote(
                format!("remote query `{alias}`: not a Trino result page: {e}"),
                json!({"alias": alias, "backend": target.backend}),
            )
        });
    }
}

/// Arrow schema for Trino's columns; a duplicate name gets a `_2`, `_3`, ... suffix (Trino allows
/// `SELECT 1 a, 2 a`, a table cannot).
fn schema_of(cols: Vec<ColumnJson>) -> (SchemaRef, Vec<TrinoType>) {
    let mut seen = std::collections::HashSet::new();
    let mut fields = Vec::with_capacity(cols.len());
    let mut tys = Vec::with_capacity(cols.len());
    for c in cols {
        let ty = match (&c.type_signature, &c.type_name) {
            (Some(sig), _) => TrinoType::from_signature(sig),
            (None, Some(name)) => {
                TrinoType::from_signature(&json!({"rawType": name, "arguments": []}))
            }
            (None, None) => TrinoType::Other("unknown".into()),
        };
        let mut name = c.name.clone();
        let mut n = 2;
        while !seen.insert(name.to_ascii_lowercase()) {
            name = format!("{}_{n}", c.name);
            n += 1;
        }
        fields.push(Field::new(name, ty.arrow(), true));
        tys.push(ty);
    }
    (Arc::new(Schema::new(fields)), tys)
}

fn to_batch(
    schema: &SchemaRef,
    tys: &[TrinoType],
    data: &[Vec<Value>],
) -> Result<RecordBatch, types::ConvertError> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(tys.len());
    let mut column: Vec<&Value> = Vec::with_capacity(data.len());
    for (i, ty) in tys.iter().enumerate() {
        column.clear();
        for row in data {
            column.push(row.get(i).ok_or_else(|| {
                types::ConvertError(format!(
                    "a row has {} values for {} columns",
                    row.len(),
                    tys.len()
                ))
            })?);
        }
        arrays.push(types::to_array(ty, &column).map_err(|e| {
            types::ConvertError(format!("column `{}`: {}", schema.field(i).name(), e.0))
        })?);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| types::ConvertError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_read_and_write_as_trino_sends_them() {
        let e: TrinoError = serde_json::from_value(json!({
            "message": "line 1:8: Column 'x' cannot be resolved",
            "errorName": "COLUMN_NOT_FOUND",
            "errorType": "USER_ERROR"
        }))
        .unwrap();
        assert_eq!(e.error_type, Some(ErrorType::UserError));
        assert_eq!(json!(e.error_type), json!("USER_ERROR"));
        let other: ErrorType = serde_json::from_value(json!("SOMETHING_NEW")).unwrap();
        assert_eq!(other, ErrorType::Other("SOMETHING_NEW".into()));
        assert_eq!(json!(other), json!("SOMETHING_NEW"));
        let internal: ErrorType = serde_json::from_value(json!("INTERNAL_ERROR")).unwrap();
        assert_eq!(internal, ErrorType::InternalError);
    }
}
