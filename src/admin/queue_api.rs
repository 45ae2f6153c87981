//! `GET /api/v1/queue` and `DELETE /api/v1/queue/{id}`: the queries this instance holds in its
//! queue (see [`crate::queue`]), and the running counts its limits keep.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::config_api::{ApiError, ApiResult};
use super::AdminState;

/// Held queries, each group's in the order they would leave, then those being handed over.
pub async fn list(State(st): State<AdminState>) -> ApiResult {
    let queue = &st.gateway.queue;
    let queued = queue.list();
    let running: Vec<_> = queue
        .running
        .snapshot()
        .into_iter()
        .map(|(scope, kind, name, running)| {
            json!({ "scope": scope, "kind": kind, "name": name, "running": running })
        })
        .collect();
    Ok(Json(json!({
        "instance": &*st.gateway.instance,
        "waiting": queue.waiting(),
        "queued": queued,
        "running": running,
    }))
    .into_response())
}

/// Cancel a held query: its client's next poll finds it gone (404), and nothing is submitted.
pub async fn cancel(State(st): State<AdminState>, Path(id): Path<String>) -> ApiResult {
    if st.gateway.queue.cancel_by_id(&id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no query `{id}` is held in this instance's queue"),
        ))
    }
}
