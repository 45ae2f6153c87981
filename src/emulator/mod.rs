//! A Trino coordinator emulator that speaks the client protocol (v1) faithfully enough for
//! real clients (Python `trino`, the Trino CLI 446, npm `trino-client`) to run queries through
//! the gateway against it. It backs the end-to-end tests, the benchmarks and `trino-edge demo`,
//! where a real Trino would be too heavy and too slow to start.
//!
//! What it imitates, and why it matters to the gateway:
//! - query ids `YYYYMMDD_HHMMSS_NNNNN_ccccc` ending in this instance's *coordinator id*, which
//!   the gateway uses to route follow-up requests back to the right backend;
//! - `POST /v1/statement` → QUEUED, then `nextUri` paging through `/v1/statement/queued/...`
//!   and `/v1/statement/executing/...` (RUNNING pages with `columns` and `data`, FINISHED last),
//!   with Trino's token rules: replaying the current token returns the same page, older tokens
//!   are gone (410), unknown tokens or slugs are not found (404);
//! - failures as HTTP 200 with `error` (on the first GET after the submission), cancellation by
//!   `DELETE nextUri` or `DELETE /v1/query/{id}` (`USER_CANCELED`);
//! - absolute URIs built from `X-Forwarded-Proto/Host/Port` like Trino with
//!   `http-server.process-forwarded=true` (or from `Host` only, with `ignore_forwarded`);
//! - session headers: `USE` → `X-Trino-Set-Catalog/Schema`, `SET SESSION`/`RESET SESSION`,
//!   `START TRANSACTION`/`COMMIT`/`ROLLBACK` with transaction ids checked like Trino;
//! - `/v1/query/{id}`, `/ui/query.html?{id}`, `/v1/info`, `/v1/info/state`, `/metrics`.
//!
//! The SQL it understands (case-insensitive; comments and a trailing `;` allowed):
//! `SELECT <literal> [AS alias], ...` (integer, bigint, decimal, double, varchar, boolean,
//! NULL), `SELECT current_user/current_catalog/current_schema`, `SELECT fail('msg')`,
//! `SELECT sleep(ms)` (stays RUNNING that long), `SELECT * FROM UNNEST(sequence(a, b))
//! [AS t(x)] [LIMIT n]` (generated page by page, so ten million rows cost no memory),
//! `SELECT * FROM all_types | web.daily [LIMIT n]` (canned tables, see `tables`),
//! `SHOW CATALOGS`, `SHOW SCHEMAS`, `USE`, `SET SESSION`, `RESET SESSION`, transactions, and
//! gateway load probes on `system.runtime.queries`. Anything else fails with `SYNTAX_ERROR`.
//! A comment `/* emulator:page_delay_ms=N */` delays every result page of that query.
//!
//! Test hooks: `EmulatorState::stats` (also `GET /v1/emulator/stats`), `query_state`,
//! `was_canceled`, and `set_failure_mode` (also `PUT /v1/emulator/failure-mode` with `none`,
//! `reset` or a status code). Control-plane requests under `/v1/emulator/` are neither counted
//! nor failed on purpose.

mod exec;
mod handlers;
mod protocol;
mod query;
mod server;
mod sql;
mod state;
mod tables;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use state::EmulatorState;

/// How an emulator instance behaves.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Instance name, e.g. `"trino-1"`: appears in logs and failure bodies (`/v1/info` keeps
    /// reporting environment `emulator`, like a cluster of identical coordinators).
    pub name: String,
    /// Coordinator id ending every query id; `None` picks five random characters of Trino's
    /// alphabet `abcdefghijkmnpqrstuvwxyz23456789`, fixed for the life of the instance.
    pub coordinator_id: Option<String>,
    /// Rows per result page (default 1000; 0 is treated as 1).
    pub rows_per_page: usize,
    /// Extra delay before every result page (default none).
    pub page_delay: Duration,
    /// Ignore `X-Forwarded-*` like a Trino without `http-server.process-forwarded` (default
    /// false).
    pub ignore_forwarded: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            name: "trino-emulator".to_string(),
            coordinator_id: None,
            rows_per_page: 1000,
            page_delay: Duration::ZERO,
            ignore_forwarded: false,
        }
    }
}

/// Runtime failure knob (see `EmulatorState::set_failure_mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Serve normally.
    #[default]
    None,
    /// Answer every request with this HTTP status and a plain-text body.
    Status(u16),
    /// Accept TCP connections and close them (with a reset) without responding; requests on
    /// already open connections are cut off the same way. Needs a server from `start`.
    Reset,
}

/// Counters for tests, as returned by `EmulatorState::stats` and `GET /v1/emulator/stats`.
/// Requests to the `/v1/emulator/` control endpoints are not counted.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct EmulatorStats {
    /// Every HTTP request received.
    pub requests: u64,
    /// `POST /v1/statement` requests accepted (a query was created).
    pub submissions: u64,
    /// GETs of `nextUri` (any statement path, valid or not).
    pub pages: u64,
    /// DELETEs that canceled a still-active query.
    pub cancels: u64,
    /// Requests that carried `X-Forwarded-Host`.
    pub forwarded_host_requests: u64,
    /// The last `X-Forwarded-Host` seen.
    pub last_forwarded_host: Option<String>,
    /// The last `X-Trino-User` (or `X-Presto-User`) seen.
    pub last_user: Option<String>,
}

/// A running emulator. Dropping the handle does not stop the server (tests often keep only
/// the URL); call `shutdown`.
pub struct EmulatorHandle {
    /// The address the server is bound to.
    pub addr: SocketAddr,
    pub state: Arc<EmulatorState>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl EmulatorHandle {
    /// `http://IP:PORT`, with a loopback IP when bound to an unspecified address.
    pub fn url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    pub fn coordinator_id(&self) -> &str {
        self.state.coordinator_id()
    }

    /// Stops accepting connections and cuts every open connection, as if the coordinator
    /// died (in-flight requests get no response). Idempotent. The listening socket is closed
    /// asynchronously; await `stopped` to be sure it is gone.
    pub fn shutdown(&self) {
        self.state.begin_shutdown();
        if let Some(task) = query::lock(&self.task).as_ref() {
            task.abort();
        }
    }

    /// Waits until the server task has ended (after `shutdown`, or if it failed).
    pub async fn stopped(&self) {
        let task = query::lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Whether `shutdown` was called.
    pub fn is_shut_down(&self) -> bool {
        self.state.is_shut_down()
    }
}

/// Binds `addr` (port 0 picks a free port) and serves the emulator on the current tokio
/// runtime.
pub async fn start(addr: SocketAddr, config: EmulatorConfig) -> std::io::Result<EmulatorHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(EmulatorState::new(config));
    state.set_local_addr(addr);
    let listener = server::EmulatorListener::new(listener, Arc::clone(&state))?;
    let app = router(Arc::clone(&state));
    let name = state.name().to_string();
    tracing::info!(emulator = %name, %addr, coordinator_id = state.coordinator_id(), "Trino emulator listening");
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(emulator = %name, error = %e, "Trino emulator stopped");
        }
    });
    Ok(EmulatorHandle {
        addr,
        state,
        task: Mutex::new(Some(task)),
    })
}

/// The emulator's routes over `state`, for serving it from another server. Without `start`,
/// `FailureMode::Reset` and `EmulatorHandle::shutdown` are not available (they act on
/// connections), and URIs fall back to `localhost` when a request has no `Host` header.
pub fn router(state: Arc<EmulatorState>) -> axum::Router {
    handlers::routes(state)
}
