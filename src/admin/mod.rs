//! The admin listener: health endpoints now; the REST API and `/metrics` build on this router.
//!
//! It runs as a Pingora background service on its own port, so an overloaded proxy listener never
//! starves the operator's view of the gateway.

use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use serde_json::json;
use tracing::{error, info};

use crate::proxy::Gateway;

#[derive(Clone)]
struct AdminState {
    gateway: Arc<Gateway>,
}

pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(AdminState { gateway })
}

async fn livez() -> Json<serde_json::Value> {
    Json(json!({ "status": "live" }))
}

/// Ready when the current snapshot can route a query somewhere: at least one enabled backend.
async fn readyz(State(st): State<AdminState>) -> Response {
    let snap = st.gateway.snapshots.load();
    let enabled = snap.backends.iter().filter(|b| b.enabled).count();
    let body = json!({
        "status": if enabled > 0 { "ready" } else { "not ready: no enabled backend" },
        "snapshotVersion": snap.version,
        "backends": snap.backends.len(),
        "enabledBackends": enabled,
        "knownCoordinators": st.gateway.sticky.known_coordinators(),
    });
    let code = if enabled > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
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
}

impl AdminService {
    pub fn bind(address: &str, gateway: Arc<Gateway>) -> std::io::Result<Self> {
        let listener = StdTcpListener::bind(address)?;
        listener.set_nonblocking(true)?;
        Ok(AdminService {
            listener: std::sync::Mutex::new(Some(listener)),
            gateway,
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
        let app = router(self.gateway.clone());
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
