//! The admin listener: health endpoints and the backend status API; the rest of the REST API and
//! `/metrics` build on this router.
//!
//! It runs as its own Pingora listening service (own port, own threads), so an overloaded proxy
//! listener never starves the operator's view of the gateway, and an upgrade hands its socket
//! over like the proxies'; `listener` serves its connections under deadlines and a connection
//! cap.

pub mod auth;
pub mod config_api;
pub mod console;
pub mod history_api;
pub mod hybrid_api;
mod listener;
pub mod queue_api;
pub mod route_api;

use std::net::TcpListener as StdTcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use pingora_core::apps::ServerApp;
use pingora_core::protocols::Stream;
use pingora_core::server::ShutdownWatch;
use serde_json::json;

use crate::health::state::Health;
use crate::proxy::Gateway;
use crate::routing::strategy;
use crate::snapshot::{Backend, Snapshot};
use crate::sync::StateSync;
use crate::tls::ServerCert;

#[derive(Clone)]
pub struct AdminState {
    gateway: Arc<Gateway>,
    /// The database (read-only for routing objects with `--config-source file`).
    sync: Arc<StateSync>,
    auth: Arc<auth::AuthState>,
    hybrid: Arc<crate::hybrid::Hybrid>,
}

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// Every API route of the admin listener. `openapi.yaml` documents each one; a unit test keeps the
/// paths in step and `tests/openapi.rs` the methods, statuses and bodies. The console's pages and
/// files (`console::routes`) are served next to them but are no part of the API.
fn routes() -> Vec<(&'static str, MethodRouter<AdminState>)> {
    use config_api as api;
    vec![
        ("/livez", get(livez)),
        ("/readyz", get(readyz)),
        ("/metrics", get(metrics)),
        ("/openapi.json", get(openapi)),
        ("/console/info", get(console::info)),
        ("/api/v1/whoami", get(auth::whoami)),
        (
            "/api/v1/backends",
            get(list_backends).post(api::create_backend),
        ),
        (
            "/api/v1/backends/{name}",
            get(get_backend)
                .put(api::replace_backend)
                .delete(api::delete_backend),
        ),
        (
            "/api/v1/backends/{name}/activate",
            post(api::activate_backend),
        ),
        (
            "/api/v1/backends/{name}/deactivate",
            post(api::deactivate_backend),
        ),
        (
            "/api/v1/groups",
            get(api::list_groups).post(api::create_group),
        ),
        (
            "/api/v1/groups/{name}",
            get(api::get_group)
                .put(api::replace_group)
                .delete(api::delete_group),
        ),
        (
            "/api/v1/policies",
            get(api::list_policies).post(api::create_policy),
        ),
        (
            "/api/v1/policies/{name}",
            get(api::get_policy)
                .put(api::replace_policy)
                .delete(api::delete_policy),
        ),
        ("/api/v1/queries", get(history_api::list)),
        ("/api/v1/queries/{id}", get(history_api::get)),
        ("/api/v1/queue", get(queue_api::list)),
        (
            "/api/v1/queue/{id}",
            axum::routing::delete(queue_api::cancel),
        ),
        ("/api/v1/route", post(route_api::dry_run)),
        ("/api/query/hybrid", post(hybrid_api::hybrid_query)),
    ]
}

pub fn router(gateway: Arc<Gateway>, sync: Arc<StateSync>) -> Result<Router, String> {
    let snap = gateway.snapshots.load();
    let auth = Arc::new(auth::AuthState::new(snap.config.admin.auth.as_ref()));
    let hybrid = Arc::new(crate::hybrid::Hybrid::new(&snap.upstream_tls)?);
    // Load the local tables now, so a broken Parquet file shows in the log at start rather than
    // at the first query.
    if !snap.config.hybrid.tables.is_empty() {
        let (h, cfg) = (hybrid.clone(), snap.config.hybrid.clone());
        tokio::spawn(async move {
            h.tables(&cfg.tables, cfg.threads).await;
        });
    }
    let state = AdminState {
        gateway,
        sync,
        auth,
        hybrid,
    };
    Ok(routes()
        .into_iter()
        .chain(console::routes())
        .fold(Router::new(), |r, (path, methods)| r.route(path, methods))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(read_whole_body))
        // Outermost: a refused call is answered before its body is read.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .with_state(state))
}

/// The OpenAPI document, written as YAML for people and served as JSON for tools. A unit test
/// checks that it parses; should it ever not, the endpoint answers 500 with the reason.
static OPENAPI: std::sync::LazyLock<Result<String, String>> = std::sync::LazyLock::new(|| {
    serde_yaml_ng::from_str::<serde_json::Value>(include_str!("openapi.yaml"))
        .map(|doc| doc.to_string())
        .map_err(|e| format!("src/admin/openapi.yaml is not valid YAML: {e}"))
});

async fn openapi() -> Response {
    match &*OPENAPI {
        Ok(doc) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            doc.as_str(),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": e })),
        )
            .into_response(),
    }
}

/// Reads every request body completely (up to [`MAX_BODY`]) before any handler runs.
///
/// Why: a handler that answers without reading the whole body (an oversized upload, a POST to an
/// unknown path) leaves bytes on the connection. Hyper then closes it, but only after the response
/// went out marked keep-alive, so a pooling client reuses a dead connection and its *next* request
/// fails. Reading here makes every answer safe to keep alive; the one answer that cannot read the
/// body — 413 — says `Connection: close`. A declared `Content-Length` over the limit gets its 413
/// at once, before a byte of the body is read (a client announcing 10 GB and sending nothing
/// must not hold the connection).
async fn read_whole_body(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (parts, body) = req.into_parts();
    // For a declared length hyper's size hint is exact; for a chunked body its lower bound is 0.
    if axum::body::HttpBody::size_hint(&body).lower() > MAX_BODY as u64 {
        return too_large();
    }
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(parts, bytes.into()))
                .await
        }
        Err(e) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_big {
                too_large()
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    [(axum::http::header::CONNECTION, "close")],
                    Json(json!({ "error": format!("could not read the request body: {e}") })),
                )
                    .into_response()
            }
        }
    }
}

/// 413 for a body over [`MAX_BODY`], closing the connection: the rest of the body is never read
/// as a request (the listener only discards what still arrives while it closes).
fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(axum::http::header::CONNECTION, "close")],
        Json(json!({
            "error": format!("request body larger than {MAX_BODY} bytes")
        })),
    )
        .into_response()
}

async fn livez() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// Ready when the current snapshot can route a query: some backend is enabled and (when health
/// checks run) the first probe pass is done — the proxy listeners open then — and found one
/// healthy; and the process is not shutting down (from SIGTERM on, see [`crate::lifecycle`]).
async fn readyz(State(st): State<AdminState>) -> Response {
    let snap = st.gateway.snapshots.load();
    let enabled = snap.backends.iter().filter(|b| b.enabled).count();
    let routable = snap
        .backends
        .iter()
        .filter(|b| strategy::is_routable(&snap, b))
        .count();
    let warm = st.gateway.is_warm();
    let draining = st.gateway.lifecycle.is_draining();
    let status = if draining {
        "not ready: shutting down"
    } else if enabled == 0 {
        "not ready: no enabled backend"
    } else if snap.health.enabled && !warm {
        "not ready: first health check still running"
    } else if routable == 0 {
        "not ready: no healthy backend"
    } else {
        "ready"
    };
    let body = json!({
        "status": status,
        "snapshotVersion": snap.version,
        "backends": snap.backends.len(),
        "enabledBackends": enabled,
        "healthyBackends": routable,
        "firstHealthPassDone": warm,
        "draining": draining,
        "knownCoordinators": st.gateway.sticky.known_coordinators(),
    });
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn metrics(State(st): State<AdminState>) -> Response {
    let body = crate::metrics::render(&st.gateway.snapshots.load());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}

/// A backend as the API shows it: its configuration, named exactly as in the config file (so a GET
/// result can be PUT back), plus read-only status fields in camelCase like Trino's own JSON.
pub(crate) fn backend_json(snap: &Snapshot, b: &Backend) -> serde_json::Value {
    let h = &b.runtime.health;
    let report = h.report();
    let inflight = b.runtime.inflight.load(Ordering::Relaxed);
    let health = if snap.health.enabled {
        h.state()
    } else {
        Health::Healthy
    };
    // DRAINING: deactivated while requests are still in flight; they finish, nothing new comes.
    let state = match (b.enabled, inflight > 0) {
        (false, true) => "DRAINING",
        (false, false) => "INACTIVE",
        (true, _) => match health {
            Health::Pending => "PENDING",
            Health::Healthy => "HEALTHY",
            Health::Unhealthy => "UNHEALTHY",
        },
    };
    let load_known = h.load_known.load(Ordering::Relaxed);
    // Every group the backend serves, as configured; `group` (the first) stays for clients that
    // predate `groups`. A PUT of this object is accepted: `config_api` drops a `group` that
    // repeats the first of `groups`.
    let groups: &[String] = snap
        .config
        .backends
        .iter()
        .find(|c| *c.name == *b.name)
        .map_or(&[], |c| c.groups());
    json!({
        "name": &*b.name,
        "url": b.url,
        "group": groups.first(),
        "groups": groups,
        "enabled": b.enabled,
        "weight": b.weight,
        "rewrite_host": b.rewrite_host,
        "forwarding": b.forwarding,
        "max_queued_queries": b.max_queued_queries,
        "max_running_queries": b.max_running_queries,
        "state": state,
        "health": health,
        "full": b.is_full(),
        "running_queries": load_known.then(|| h.reported_running.load(Ordering::Relaxed)),
        "queued_queries": load_known.then(|| h.reported_queued.load(Ordering::Relaxed)),
        "started_since_probe": h.started_since_probe.load(Ordering::Relaxed),
        "finished_since_probe": h.finished_since_probe.load(Ordering::Relaxed),
        // What least_load and the limits use: the last report plus queries started since
        // minus those seen finishing (before any report: the requests in flight).
        "estimated_running": b.running_estimate(),
        "inflight_requests": inflight,
        "coordinator_id": report.coordinator_id,
        "version": report.version,
        "last_check": report.last_check.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339()),
        "last_error": report.last_error,
        "coordinator_restarts": report.restarts,
    })
}

async fn list_backends(State(st): State<AdminState>) -> Json<serde_json::Value> {
    let snap = st.gateway.snapshots.load();
    Json(serde_json::Value::Array(
        snap.backends
            .iter()
            .map(|b| backend_json(&snap, b))
            .collect(),
    ))
}

async fn get_backend(State(st): State<AdminState>, Path(name): Path<String>) -> Response {
    let snap = st.gateway.snapshots.load();
    match snap.backends.iter().find(|b| *b.name == *name) {
        Some(b) => Json(backend_json(&snap, b)).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": format!("no backend named `{name}`") })),
        )
            .into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": format!("no such admin endpoint: {}", uri.path()) })),
    )
        .into_response()
}

/// Serves [`router`] on the admin listener: a Pingora listening service like the proxies, so a
/// SIGQUIT upgrade hands its socket to the new process with theirs, and it stops accepting with
/// them on shutdown. [`listener`] serves each connection under deadlines and a cap.
pub struct AdminService {
    app: Router,
    snapshots: Arc<crate::snapshot::SnapshotHandle>,
    /// HTTPS certificate (`admin.tls`); the handshake is done per connection, under the header
    /// deadline.
    tls: Option<Arc<ServerCert>>,
    /// Connections open now (capped by `admin.max_connections`).
    open: Arc<std::sync::atomic::AtomicUsize>,
    lifecycle: Arc<crate::lifecycle::Lifecycle>,
}

impl AdminService {
    pub fn new(
        gateway: Arc<Gateway>,
        sync: Arc<StateSync>,
        tls: Option<Arc<ServerCert>>,
    ) -> Result<Self, String> {
        let snapshots = gateway.snapshots.clone();
        let lifecycle = gateway.lifecycle.clone();
        let app = router(gateway, sync).map_err(|e| format!("admin listener: {e}"))?;
        Ok(AdminService {
            app,
            snapshots,
            tls,
            open: Arc::default(),
            lifecycle,
        })
    }
}

#[async_trait]
impl ServerApp for AdminService {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        listener::accepted(
            stream,
            &self.open,
            self.app.clone(),
            self.tls.clone(),
            &self.snapshots,
            shutdown.clone(),
            &self.lifecycle,
        )
        .await;
        None
    }
}

/// Whether nothing listens on `address` yet (checked before Pingora binds it, which would only
/// panic in a thread).
pub fn port_is_free(address: &str) -> std::io::Result<()> {
    StdTcpListener::bind(address).map(drop)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn the_openapi_document_lists_exactly_the_routes() {
        let doc: serde_json::Value =
            serde_json::from_str(super::OPENAPI.as_ref().unwrap()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let documented: BTreeSet<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let routed: BTreeSet<&str> = super::routes().into_iter().map(|(p, _)| p).collect();
        assert_eq!(documented, routed);
    }
}
