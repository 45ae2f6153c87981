//! REST API over groups, backends and policies (`/api/v1/...`).
//!
//! Reads come from the current snapshot (no database call). Writes validate the whole resulting
//! configuration exactly like the file is validated, write to the database (the version bump is
//! in the same transaction), and reload this instance at once; the other instances follow within
//! one poll interval. Errors are `{"error": "..."}` with 400 (invalid), 404 (missing), 409
//! (conflict, or a change that would break a reference) or 503 (database unavailable).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use tracing::{info, warn};

use super::{backend_json, AdminState};
use crate::config::{BackendConfig, GroupConfig, PolicyConfig};
use crate::store::{Kind, StoreError, StoredRouting};
use crate::sync::{check, merge, ConfigSource};

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl ApiError {
    pub fn new(status: StatusCode, message: String) -> ApiError {
        ApiError(status, message)
    }
}

pub type ApiResult = Result<Response, ApiError>;

pub(super) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(what) => ApiError(StatusCode::NOT_FOUND, format!("{what} not found")),
        StoreError::Conflict(what) => {
            ApiError(StatusCode::CONFLICT, format!("{what} already exists"))
        }
        StoreError::Invalid(msg) => ApiError(StatusCode::BAD_REQUEST, msg),
        other => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unavailable: {other}"),
        ),
    }
}

fn not_found(kind: &str, name: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("{kind} `{name}` not found"))
}

/// Fields of a backend object that the API shows but never takes (so a GET result can be PUT back).
const BACKEND_STATUS_FIELDS: [&str; 14] = [
    "state",
    "health",
    "full",
    "running_queries",
    "queued_queries",
    "started_since_probe",
    "finished_since_probe",
    "estimated_running",
    "inflight_requests",
    "coordinator_id",
    "version",
    "last_check",
    "last_error",
    "coordinator_restarts",
];

/// Parse a JSON body into a config object with a clear 400 on any problem.
fn parse<T: DeserializeOwned>(body: &Bytes, strip: &[&str]) -> Result<T, ApiError> {
    from_object(body_object(body, strip)?)
}

/// A backend body: `group: a` or `groups: [a, b]`. What GET shows has both (`group` is the first
/// of `groups`), so a `group` that repeats the first of `groups` is dropped and a GET result can
/// be PUT back; a `group` that differs from it is refused like any other pair of both keys.
fn parse_backend(body: &Bytes) -> Result<BackendConfig, ApiError> {
    let mut map = body_object(body, &BACKEND_STATUS_FIELDS)?;
    let redundant = match (map.get("group"), map.get("groups")) {
        (Some(group), Some(Value::Array(groups))) => groups.first() == Some(group),
        _ => false,
    };
    if redundant {
        map.remove("group");
    }
    from_object(map)
}

/// The body as a JSON object without the keys in `strip`.
fn body_object(body: &Bytes, strip: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("request body is not valid JSON: {e}"),
        )
    })?;
    let Value::Object(mut map) = v else {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "request body must be a JSON object".into(),
        ));
    };
    for k in strip {
        map.remove(*k);
    }
    Ok(map)
}

fn from_object<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, ApiError> {
    serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid object: {e}")))
}

enum Change {
    Create,
    Replace(String),
    Delete(String),
}

/// Apply `change` to a copy of the stored routing, validate the result, then write it.
async fn mutate<T>(
    st: &AdminState,
    kind: Kind,
    change: Change,
    item: Option<T>,
) -> Result<(), ApiError>
where
    T: Named + Clone + Send + Sync + 'static,
{
    let sync = st.sync.clone();
    if sync.source != ConfigSource::Database {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "the admin API is read-only: this gateway runs with --config-source file (edit the file and send SIGHUP)".into(),
        ));
    }
    let stored = sync
        .database
        .run(|s| async move { s.load().await })
        .await
        .map_err(store_error)?;
    let mut candidate = stored.clone();
    {
        let list = T::list(&mut candidate);
        match (&change, &item) {
            (Change::Create, Some(new)) => {
                if list.iter().any(|x| x.name() == new.name()) {
                    return Err(ApiError(
                        StatusCode::CONFLICT,
                        format!("{} `{}` already exists", T::KIND, new.name()),
                    ));
                }
                list.push(new.clone());
            }
            (Change::Replace(name), Some(new)) => {
                let at = list
                    .iter()
                    .position(|x| x.name() == name)
                    .ok_or_else(|| not_found(T::KIND, name))?;
                if new.name() != name && list.iter().any(|x| x.name() == new.name()) {
                    return Err(ApiError(
                        StatusCode::CONFLICT,
                        format!("{} `{}` already exists", T::KIND, new.name()),
                    ));
                }
                list[at] = new.clone();
            }
            (Change::Delete(name), _) => {
                let at = list
                    .iter()
                    .position(|x| x.name() == name)
                    .ok_or_else(|| not_found(T::KIND, name))?;
                list.remove(at);
            }
            _ => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "missing request body".into(),
                ))
            }
        }
    }
    if let Err(e) = check(&merge(&sync.file.load(), &candidate)) {
        // A delete that breaks a reference is a conflict with the other objects; anything else
        // is an invalid object.
        let status = if matches!(change, Change::Delete(_)) {
            StatusCode::CONFLICT
        } else {
            StatusCode::BAD_REQUEST
        };
        return Err(ApiError(status, format!("change refused: {e}")));
    }
    let version = match (change, item) {
        (Change::Create, Some(new)) => {
            sync.database
                .run(move |s| async move { T::create(&s, &new).await })
                .await
        }
        (Change::Replace(name), Some(new)) => {
            sync.database
                .run(move |s| async move { T::replace(&s, &name, &new).await })
                .await
        }
        (Change::Delete(name), _) => {
            sync.database
                .run(move |s| async move { s.delete(kind, &name).await })
                .await
        }
        _ => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "missing request body".into(),
            ))
        }
    }
    .map_err(store_error)?;
    info!(
        kind = T::KIND,
        version, "admin API changed the routing config"
    );
    if let Err(e) = sync.reload(true).await {
        warn!("reload after an admin change failed (the poller retries): {e}");
    }
    Ok(())
}

/// The three object types the API edits.
pub trait Named {
    const KIND: &'static str;
    fn name(&self) -> &str;
    fn list(r: &mut StoredRouting) -> &mut Vec<Self>
    where
        Self: Sized;
    fn create(
        s: &crate::store::Store,
        x: &Self,
    ) -> impl std::future::Future<Output = Result<i64, StoreError>> + Send;
    fn replace(
        s: &crate::store::Store,
        name: &str,
        x: &Self,
    ) -> impl std::future::Future<Output = Result<i64, StoreError>> + Send;
}

impl Named for GroupConfig {
    const KIND: &'static str = "group";
    fn name(&self) -> &str {
        &self.name
    }
    fn list(r: &mut StoredRouting) -> &mut Vec<Self> {
        &mut r.groups
    }
    async fn create(s: &crate::store::Store, x: &Self) -> Result<i64, StoreError> {
        s.create_group(x).await
    }
    async fn replace(s: &crate::store::Store, name: &str, x: &Self) -> Result<i64, StoreError> {
        s.replace_group(name, x).await
    }
}

impl Named for BackendConfig {
    const KIND: &'static str = "backend";
    fn name(&self) -> &str {
        &self.name
    }
    fn list(r: &mut StoredRouting) -> &mut Vec<Self> {
        &mut r.backends
    }
    async fn create(s: &crate::store::Store, x: &Self) -> Result<i64, StoreError> {
        s.create_backend(x).await
    }
    async fn replace(s: &crate::store::Store, name: &str, x: &Self) -> Result<i64, StoreError> {
        s.replace_backend(name, x).await
    }
}

impl Named for PolicyConfig {
    const KIND: &'static str = "policy";
    fn name(&self) -> &str {
        &self.name
    }
    fn list(r: &mut StoredRouting) -> &mut Vec<Self> {
        &mut r.policies
    }
    async fn create(s: &crate::store::Store, x: &Self) -> Result<i64, StoreError> {
        s.create_policy(x).await
    }
    async fn replace(s: &crate::store::Store, name: &str, x: &Self) -> Result<i64, StoreError> {
        s.replace_policy(name, x).await
    }
}

/// The backend as the API shows it after a change (from the fresh snapshot).
fn backend_response(st: &AdminState, name: &str, status: StatusCode) -> Response {
    let snap = st.gateway.snapshots.load();
    match snap.backends.iter().find(|b| *b.name == *name) {
        Some(b) => (status, Json(backend_json(&snap, b))).into_response(),
        None => status.into_response(),
    }
}

pub async fn create_backend(State(st): State<AdminState>, body: Bytes) -> ApiResult {
    let b = parse_backend(&body)?;
    let name = b.name.clone();
    mutate(&st, Kind::Backend, Change::Create, Some(b)).await?;
    Ok(backend_response(&st, &name, StatusCode::CREATED))
}

pub async fn replace_backend(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let b = parse_backend(&body)?;
    let new_name = b.name.clone();
    mutate(&st, Kind::Backend, Change::Replace(name), Some(b)).await?;
    Ok(backend_response(&st, &new_name, StatusCode::OK))
}

pub async fn delete_backend(State(st): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    mutate::<BackendConfig>(&st, Kind::Backend, Change::Delete(name), None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// activate / deactivate (drain): flip `enabled`, keep everything else.
async fn set_enabled(st: AdminState, name: String, enabled: bool) -> ApiResult {
    let current = st
        .gateway
        .snapshots
        .load()
        .config
        .backends
        .iter()
        .find(|b| b.name == name)
        .cloned()
        .ok_or_else(|| not_found("backend", &name))?;
    let updated = BackendConfig { enabled, ..current };
    mutate(
        &st,
        Kind::Backend,
        Change::Replace(name.clone()),
        Some(updated),
    )
    .await?;
    Ok(backend_response(&st, &name, StatusCode::OK))
}

pub async fn activate_backend(State(st): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    set_enabled(st, name, true).await
}

pub async fn deactivate_backend(
    State(st): State<AdminState>,
    Path(name): Path<String>,
) -> ApiResult {
    set_enabled(st, name, false).await
}

pub async fn list_groups(State(st): State<AdminState>) -> Response {
    Json(st.gateway.snapshots.load().config.groups.clone()).into_response()
}

pub async fn get_group(State(st): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    let snap = st.gateway.snapshots.load();
    let g = snap
        .config
        .groups
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| not_found("group", &name))?;
    Ok(Json(g.clone()).into_response())
}

pub async fn create_group(State(st): State<AdminState>, body: Bytes) -> ApiResult {
    let g: GroupConfig = parse(&body, &[])?;
    mutate(&st, Kind::Group, Change::Create, Some(g.clone())).await?;
    Ok((StatusCode::CREATED, Json(g)).into_response())
}

pub async fn replace_group(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let g: GroupConfig = parse(&body, &[])?;
    mutate(&st, Kind::Group, Change::Replace(name), Some(g.clone())).await?;
    Ok(Json(g).into_response())
}

pub async fn delete_group(State(st): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    mutate::<GroupConfig>(&st, Kind::Group, Change::Delete(name), None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_policies(State(st): State<AdminState>) -> Response {
    Json(st.gateway.snapshots.load().config.routing.policies.clone()).into_response()
}

pub async fn get_policy(State(st): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    let snap = st.gateway.snapshots.load();
    let p = snap
        .config
        .routing
        .policies
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| not_found("policy", &name))?;
    Ok(Json(p.clone()).into_response())
}

pub async fn create_policy(State(st): State<AdminState>, body: Bytes) -> ApiResult {
    let p: PolicyConfig = parse(&body, &[])?;
    mutate(&st, Kind::Policy, Change::Create, Some(p.clone())).await?;
    Ok((StatusCode::CREATED, Json(p)).into_response())
}

pub async fn replace_policy(
    State(st): State<AdminState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let p: PolicyConfig = parse(&body, &[])?;
    mutate(&st, Kind::Policy, Change::Replace(name), Some(p.clone())).await?;
    Ok(Json(p).into_response())
}

pub async fn delete_policy(State(st): State<AdminState>, Path(name): Path<String>) -> ApiResult {
    mutate::<PolicyConfig>(&st, Kind::Policy, Change::Delete(name), None).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(body: Value) -> Result<BackendConfig, String> {
        parse_backend(&Bytes::from(body.to_string())).map_err(|e| e.1)
    }

    #[test]
    fn a_backend_body_takes_group_or_groups() {
        let one = backend(json!({"name": "b", "url": "http://h:1", "group": "a"})).unwrap();
        assert_eq!(one.groups, ["a"]);
        let two = backend(json!({"name": "b", "url": "http://h:1", "groups": ["a", "c"]})).unwrap();
        assert_eq!(two.groups, ["a", "c"]);
        assert_eq!(
            backend(json!({"name": "b", "url": "http://h:1", "groups": []})).unwrap_err(),
            "invalid object: groups must list at least one group"
        );
        assert_eq!(
            backend(json!({"name": "b", "url": "http://h:1", "group": "a", "colour": 1}))
                .unwrap_err(),
            "invalid object: unknown field `colour`, expected one of `name`, `url`, `group`, \
             `groups`, `enabled`, `weight`, `rewrite_host`, `forwarding`, `max_queued_queries`, \
             `max_running_queries`"
        );
    }

    #[test]
    fn what_get_shows_can_be_put_back() {
        // GET shows `group` (the first of `groups`) and `groups`, plus status fields.
        let shown = json!({
            "name": "b", "url": "http://h:1", "group": "a", "groups": ["a", "c"],
            "state": "HEALTHY", "inflight_requests": 0
        });
        assert_eq!(backend(shown).unwrap().groups, ["a", "c"]);
        let shown = json!({"name": "b", "url": "http://h:1", "group": "a", "groups": ["a"]});
        let b = backend(shown).unwrap();
        assert_eq!(
            serde_json::to_value(&b).unwrap()["group"],
            "a",
            "one group is written as `group`"
        );
        // A `group` that is not the first of `groups` is a contradiction, not a repetition.
        assert_eq!(
            backend(json!({"name": "b", "url": "http://h:1", "group": "c", "groups": ["a", "c"]}))
                .unwrap_err(),
            "invalid object: give either group or groups, not both"
        );
    }
}
