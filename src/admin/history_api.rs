//! `GET /api/v1/queries` and `GET /api/v1/queries/{id}`: the query history in the database.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::Deserialize;

use super::auth::Principal;
use super::config_api::{ApiError, ApiResult};
use super::AdminState;
use crate::config::Role;
use crate::store::HistoryFilter;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    user: Option<String>,
    source: Option<String>,
    group: Option<String>,
    backend: Option<String>,
    /// RFC 3339 time or milliseconds since the epoch; inclusive.
    since: Option<String>,
    /// Same; exclusive.
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn time_ms(key: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "`{key}` must be an RFC 3339 time (2026-11-23T12:00:00Z) or epoch milliseconds"
                ),
            )
        })
}

/// Whether the caller may see SQL text: always without admin auth; viewers only when
/// `admin.auth.viewer_sees_sql` says so.
fn shows_sql(st: &AdminState, caller: &Option<Extension<Principal>>) -> bool {
    let snap = st.gateway.snapshots.load();
    match (&snap.config.admin.auth, caller) {
        (Some(auth), Some(Extension(p))) => p.role > Role::Viewer || auth.viewer_sees_sql,
        _ => true,
    }
}

pub async fn list(
    State(st): State<AdminState>,
    caller: Option<Extension<Principal>>,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(p) = params.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let sync = st.sync.clone();
    let filter = HistoryFilter {
        user: p.user,
        source: p.source,
        group: p.group,
        backend: p.backend,
        since_ms: p
            .since
            .as_deref()
            .map(|v| time_ms("since", v))
            .transpose()?,
        until_ms: p
            .until
            .as_deref()
            .map(|v| time_ms("until", v))
            .transpose()?,
        limit: p.limit.unwrap_or(100),
        cursor: p.cursor,
    };
    let mut page = sync
        .database
        .run(move |s| async move { s.history(&filter).await })
        .await
        .map_err(super::config_api::store_error)?;
    if !shows_sql(&st, &caller) {
        for q in &mut page.queries {
            q.sql = None;
        }
    }
    Ok(Json(page).into_response())
}

pub async fn get(
    State(st): State<AdminState>,
    caller: Option<Extension<Principal>>,
    Path(id): Path<String>,
) -> ApiResult {
    let sync = st.sync.clone();
    let wanted = id.clone();
    match sync
        .database
        .run(move |s| async move { s.history_entry(&wanted).await })
        .await
        .map_err(super::config_api::store_error)?
    {
        Some(mut r) => {
            if !shows_sql(&st, &caller) {
                r.sql = None;
            }
            Ok(Json(r).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("query `{id}` not found in the history"),
        )),
    }
}
