//! Hybrid queries: join the results of remote Trino subqueries with local Parquet tables.
//!
//! Two phases. First every registered subquery runs on a Trino backend chosen by the gateway's own
//! routing, as the caller, and its pages become an in-memory Arrow table (`remote`, `types`).
//! Then the final SQL runs locally in DataFusion over those tables and the configured Parquet
//! tables (`tables`, `engine`), on a runtime of its own so a heavy join never takes a thread from
//! the proxy. Limits on rows, memory, result size and time are enforced as data arrives; SQL is
//! checked before anything runs (`guard`). The HTTP endpoint is `admin::hybrid_api`, the CLI
//! `trino-edge query`.

pub mod cli;
pub mod engine;
pub mod guard;
pub mod memory;
pub mod output;
pub mod remote;
pub mod tables;
pub mod types;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};

use crate::tls::UpstreamTls;
use tables::{LocalTables, TableError};

/// What went wrong, as the API reports it in `error.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    RowLimit,
    MemoryLimit,
    RemoteError,
    QueryError,
    Timeout,
    Validation,
}

/// A failed hybrid request: `{"error": {"type", "message", "details"}}`.
#[derive(Debug, Clone)]
pub struct HybridError {
    pub kind: ErrorKind,
    pub message: String,
    pub details: Value,
    pub status: u16,
}

impl HybridError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> HybridError {
        let status = match kind {
            ErrorKind::Validation | ErrorKind::QueryError => 400,
            ErrorKind::RowLimit | ErrorKind::MemoryLimit => 422,
            ErrorKind::RemoteError => 502,
            ErrorKind::Timeout => 504,
        };
        HybridError {
            kind,
            message: message.into(),
            details: json!({}),
            status,
        }
    }

    pub fn validation(message: impl Into<String>) -> HybridError {
        HybridError::new(ErrorKind::Validation, message)
    }

    pub fn details(mut self, details: Value) -> HybridError {
        self.details = details;
        self
    }

    pub fn body(&self) -> Value {
        json!({"error": {"type": self.kind, "message": self.message, "details": self.details}})
    }
}

impl IntoResponse for HybridError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(self.body())).into_response()
    }
}

impl From<guard::GuardError> for HybridError {
    fn from(e: guard::GuardError) -> HybridError {
        HybridError::validation(e.to_string())
    }
}

impl From<guard::NotAnIdentifier> for HybridError {
    fn from(e: guard::NotAnIdentifier) -> HybridError {
        HybridError::validation(e.to_string())
    }
}

/// Why the endpoint's HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `proxy.backend_tls` cannot be applied (see [`UpstreamTls::configure`]).
    #[error("{0}")]
    Tls(String),
    #[error("cannot build the hybrid HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// For callers that still report errors as text (`admin::router`).
impl From<ClientError> for String {
    fn from(e: ClientError) -> String {
        e.to_string()
    }
}

/// Shared state of the endpoint: the HTTP client for remote subqueries and the loaded local
/// tables.
pub struct Hybrid {
    http: reqwest::Client,
    tables: ArcSwapOption<LocalTables>,
    /// One load at a time: concurrent first requests wait for it rather than load twice.
    loading: tokio::sync::Mutex<()>,
}

impl Hybrid {
    pub fn new(upstream_tls: &UpstreamTls) -> Result<Hybrid, ClientError> {
        let builder = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10));
        let http = upstream_tls
            .configure(builder)
            .map_err(ClientError::Tls)?
            .build()
            .map_err(ClientError::Build)?;
        Ok(Hybrid {
            http,
            tables: ArcSwapOption::empty(),
            loading: tokio::sync::Mutex::new(()),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The local tables of `spec`, loaded on the engine's runtime the first time and again when
    /// the setting changes (SIGHUP, config sync).
    pub async fn tables(
        &self,
        spec: &BTreeMap<String, String>,
        threads: Option<usize>,
    ) -> Arc<LocalTables> {
        if let Some(t) = self.tables.load_full().filter(|t| t.spec == *spec) {
            return t;
        }
        let _one = self.loading.lock().await;
        if let Some(t) = self.tables.load_full().filter(|t| t.spec == *spec) {
            return t;
        }
        let owned = spec.clone();
        let loaded = engine::on_engine(threads, async move { LocalTables::load(&owned).await })
            .await
            .unwrap_or_else(|e| LocalTables {
                spec: spec.clone(),
                tables: spec
                    .keys()
                    .map(|k| (k.clone(), Err(TableError::LoadFailed(e.message.clone()))))
                    .collect(),
            });
        let loaded = Arc::new(loaded);
        self.tables.store(Some(loaded.clone()));
        loaded
    }
}

/// Nice 10 for the calling thread (on Linux, priority is per thread). Separate threads keep a
/// heavy join off the proxy's workers, but on a busy machine they would still compete for the
/// cores; at a lower priority the scheduler hands the CPU to the proxy first, and the join uses
/// what is left.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority only reads its integer arguments; `who = 0` is the calling thread.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 10);
    }
}

/// The engine's own multi-threaded runtime, created on first use and kept for the life of the
/// process (a runtime cannot be dropped from async code, and one pool for all requests is the
/// point). Its size is fixed by the first successful start's `hybrid.threads`; a start that
/// fails (no threads left) fails the request, and the next request tries again.
pub fn engine_runtime(
    threads: Option<usize>,
) -> Result<&'static tokio::runtime::Runtime, HybridError> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    // One start at a time, so no runtime is ever built twice (and one dropped in async code).
    static STARTING: Mutex<()> = Mutex::new(());
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let _one = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let n = threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| (n.get() / 2).max(1))
            .unwrap_or(1)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .thread_name("hybrid-engine")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
        .map_err(|e| {
            HybridError::new(
                ErrorKind::QueryError,
                format!("cannot start the hybrid engine runtime: {e}"),
            )
        })?;
    // Under `STARTING` nobody else sets it: `rt` is the value stored, never dropped here.
    Ok(RT.get_or_init(|| rt))
}
