//! The admin listener: health endpoints and the backend status API; the rest of the REST API and
//! `/metrics` build on this router.
//!
//! It runs as a Pingora background service on its own port, so an overloaded proxy listener never
//! starves the operator's view of the gateway.

pub mod config_api;
pub mod history_api;

use std::net::TcpListener as StdTcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::json;
use tracing::{error, info};

use crate::health::state::Health;
use crate::proxy::Gateway;
use crate::routing::strategy;
use crate::snapshot::{Backend, Snapshot};
use crate::sync::StateSync;

#[derive(Clone)]
pub struct AdminState {
    gateway: Arc<Gateway>,
    /// The database (read-only for routing objects with `--config-source file`).
    sync: Arc<StateSync>,
}

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

pub fn router(gateway: Arc<Gateway>, sync: Arc<StateSync>) -> Router {
    use config_api as api;
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/backends",
            get(list_backends).post(api::create_backend),
        )
        .route(
            "/api/v1/backends/{name}",
            get(get_backend)
                .put(api::replace_backend)
                .delete(api::delete_backend),
        )
        .route(
            "/api/v1/backends/{name}/activate",
            post(api::activate_backend),
        )
        .route(
            "/api/v1/backends/{name}/deactivate",
            post(api::deactivate_backend),
        )
        .route(
            "/api/v1/groups",
            get(api::list_groups).post(api::create_group),
        )
        .route(
            "/api/v1/groups/{name}",
            get(api::get_group)
                .put(api::replace_group)
                .delete(api::delete_group),
        )
        .route(
            "/api/v1/policies",
            get(api::list_policies).post(api::create_policy),
        )
        .route(
            "/api/v1/policies/{name}",
            get(api::get_policy)
                .put(api::replace_policy)
                .delete(api::delete_policy),
        )
        .route("/api/v1/queries", get(history_api::list))
        .route("/api/v1/queries/{id}", get(history_api::get))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AdminState { gateway, sync })
}

async fn livez() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// Ready when the current snapshot can route a query: some backend is enabled and (when health
/// checks run) the first probe round is done and found one healthy.
async fn readyz(State(st): State<AdminState>) -> Response {
    let snap = st.gateway.snapshots.load();
    let enabled = snap.backends.iter().filter(|b| b.enabled).count();
    let routable = snap
        .backends
        .iter()
        .filter(|b| strategy::is_routable(&snap, b))
        .count();
    let rounds = st.gateway.health_rounds.load(Ordering::Relaxed);
    let status = if enabled == 0 {
        "not ready: no enabled backend"
    } else if snap.health.enabled && rounds == 0 {
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
        "healthRounds": rounds,
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

/// A backend as the API shows it: its configuration plus read-only status fields.
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
    json!({
        "name": &*b.name,
        "url": b.url,
        "group": &*snap.groups[b.group].name,
        "enabled": b.enabled,
        "weight": b.weight,
        "maxQueuedQueries": b.max_queued_queries,
        "maxRunningQueries": b.max_running_queries,
        "state": state,
        "health": health,
        "full": b.is_full(),
        "runningQueries": load_known.then(|| h.reported_running.load(Ordering::Relaxed)),
        "queuedQueries": load_known.then(|| h.reported_queued.load(Ordering::Relaxed)),
        "startedSinceProbe": h.started_since_probe.load(Ordering::Relaxed),
        "inflightRequests": inflight,
        "coordinatorId": report.coordinator_id,
        "version": report.version,
        "lastCheck": report.last_check.map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339()),
        "lastError": report.last_error,
        "coordinatorRestarts": report.restarts,
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

/// Serves [`router`] on a listener bound before the server starts (so a taken port is reported at
/// startup, not lost in a background task).
pub struct AdminService {
    listener: std::sync::Mutex<Option<StdTcpListener>>,
    gateway: Arc<Gateway>,
    sync: Arc<StateSync>,
}

impl AdminService {
    pub fn bind(
        address: &str,
        gateway: Arc<Gateway>,
        sync: Arc<StateSync>,
    ) -> std::io::Result<Self> {
        let listener = StdTcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        Ok(AdminService {
            listener: std::sync::Mutex::new(Some(listener)),
            gateway,
            sync,
        })
    }
}

#[async_trait]
impl BackgroundService for AdminService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(std_listener) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                error!("admin listener unusable: {e}");
                return;
            }
        };
        if let Ok(addr) = listener.local_addr() {
            info!("admin listener on http://{addr}");
        }
        let app = router(self.gateway.clone(), self.sync.clone());
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            error!("admin listener failed: {e}");
        }
    }
}
