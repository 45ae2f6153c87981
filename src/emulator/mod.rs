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
//!   `http-server.process-forwarded=true` (`EmulatorConfig::process_forwarded`, the default);
//!   without it, like Airlift's `RejectForwardedRequestCustomizer`, any request carrying an
//!   `X-Forwarded-*` header (For, Proto, Host, Port, Prefix, Server, ...) is refused with
//!   `406` and the text body `Server configuration does not allow processing of the
//!   X-Forwarded-For header` (naming the first such header), and URIs come from `Host` only;
//! - session headers: `USE` → `X-Trino-Set-Catalog/Schema`, `SET SESSION`/`RESET SESSION`,
//!   `START TRANSACTION`/`COMMIT`/`ROLLBACK` with transaction ids checked like Trino;
//! - `/v1/query/{id}`, `/ui/query.html?{id}`, `/v1/info`, `/v1/info/state`, `/metrics`;
//! - `HEAD` on a statement URI (`/v1/statement/queued|executing/{id}/{slug}/{token}`): the
//!   heartbeat clients send while downloading spooled segments; 200 without a body (404 for
//!   an unknown query or slug); it neither advances the token nor changes the query;
//! - the spooling protocol (below);
//! - OAuth2 external authentication with a stand-in identity provider, when configured (see
//!   [`oauth2`]): challenges, the login resources under `/oauth2/`, and the Web UI's login.
//!
//! The spooling protocol (Trino 466+), with `EmulatorConfig::spooling` set (a spooling manager
//! is configured). A submission whose `X-Trino-Query-Data-Encoding` lists an encoding the
//! emulator supports (`json`, `json+zstd`, `json+lz4`; the first supported one wins, e.g.
//! `json+zstd` for the Python client's `json+zstd,json+lz4,json`) gets its result pages with
//! segments instead of row arrays; otherwise (no header, `arrow`, no spooling manager) the
//! direct protocol. Like Trino, every statement answer of such a query names its encoding in the
//! `X-Trino-Query-Data-Encoding` response header. Paging is unchanged; a page of at most
//! `inline_rows` rows becomes one inline segment, a larger page spooled segments of at most
//! `segment_rows` rows:
//!
//! ```json
//! "data": {"encoding": "json+zstd", "segments": [
//!   {"type": "inline", "data": "KLUv/SAFKQAAW1sxXV0=",
//!    "metadata": {"rowOffset": 0, "rowsCount": 1, "segmentSize": 14, "uncompressedSize": 5}},
//!   {"type": "spooled", "uri": "...", "ackUri": "{base}/v1/spooled/ack/{id}",
//!    "metadata": {"rowOffset": 0, "rowsCount": 5000, "segmentSize": 3774,
//!                 "uncompressedSize": 33894},
//!    "headers": {"X-Trino-Emulator-Segment-Key": ["<random per segment>"]}}]}
//! ```
//!
//! The bytes are the JSON row array (exactly the rows the direct protocol sends), as is for
//! `json`, as a zstd frame with the content size for `json+zstd`, as a raw LZ4 block for
//! `json+lz4`; `segmentSize` is their length, `uncompressedSize` (compressed encodings only)
//! the JSON's. (Trino leaves segments below its compression threshold uncompressed and without
//! `uncompressedSize` even under `json+zstd`; clients accept both, the emulator always
//! compresses.) `rowOffset` counts rows from the start of the result. Segment ids are 24
//! random bytes (base64url), known only to the instance that issued them (others answer 404);
//! the bytes are kept in memory from the page that issued them until acknowledged or until the
//! query is forgotten. `{base}` is the base of `nextUri`. Where `uri` points and what answers
//! it depends on `SpoolingConfig::mode`:
//! - `Storage`: a presigned-like URL on the emulator's storage listener
//!   (`http://127.0.0.1:{port}/spool/{id}?X-Amz-Signature=<hex>`, bound on 127.0.0.1:0 by
//!   `start`, see `EmulatorHandle::storage_url`); the coordinator's download resource answers
//!   503 in this mode, as in Trino;
//! - `CoordinatorStorageRedirect`: `{base}/v1/spooled/download/{id}`, answered with
//!   `303 See Other` to the presigned storage URL;
//! - `CoordinatorProxy`: `{base}/v1/spooled/download/{id}`, answered with the bytes;
//! - `WorkerProxy`: `{base}/v1/spooled/download/{id}`, answered with `303` to
//!   `http://127.0.0.1:{port}/v1/spooled/download/{id}` on the same extra listener (the
//!   "worker"), which streams the bytes.
//!
//! Every download that returns bytes (`200`, `application/octet-stream`, `Content-Length`)
//! requires the `X-Trino-Emulator-Segment-Key` header from the segment's `headers` (else 401),
//! so that a gateway in between is seen to pass segment headers through; the storage also
//! checks the signature (else 403). `GET ackUri` deletes the segment (200); unknown or already
//! acknowledged segments are 404 everywhere (the ack does not check the key). The extra
//! listener's requests are not counted in `requests` and never get `FailureMode::Status`, but
//! `FailureMode::Reset` and `shutdown` cut its connections too, and its worker path refuses
//! forwarded headers like the coordinator. Without `start` (only `router`) there is no extra
//! listener: storage URLs point at the coordinator, which serves `/spool/{id}` too, and
//! `WorkerProxy` streams from the coordinator.
//!
//! SQL: every ordinary statement runs on the SQL engine (`engine`, on DataFusion: the `tpch`,
//! `memory` and `system` catalogs, `SHOW ...`, `EXPLAIN`, `EXECUTE IMMEDIATE`), shaped like
//! Trino by `shape` (`_colN` names, literal types, syntax errors with locations), with the
//! test-control functions `sleep(ms)` (the query stays RUNNING that long) and `fail('msg')` and
//! Trino's `current_user`/`current_catalog`/`current_schema` as engine functions (`knobs`). A
//! query's rows are computed batch by batch as the client pages, so `SELECT * FROM
//! UNNEST(sequence(1, 10000000))` costs no memory. Answered by hand (`statement`), because they
//! are not SQL semantics: `USE`, `SET SESSION`, `RESET SESSION`, transactions, the gateways' load
//! probe (`SELECT [state,] count(*) FROM system.runtime.queries ...`), the canned tables
//! (`SELECT * FROM all_types | web.daily [LIMIT n]`, see `tables`; as in Trino, a client whose
//! `X-Trino-Client-Capabilities` lacks `PARAMETRIC_DATETIME` gets `timestamp`, `time` and their
//! zoned forms without a precision and rounded to milliseconds), and the comment
//! `/* emulator:page_delay_ms=N */`, which delays every result page of that query.
//!
//! Test hooks: `EmulatorState::stats` (also `GET /v1/emulator/stats`; spooling adds
//! `segments_issued`, `segment_downloads`, `segment_acks`, `segment_not_found` and
//! `heartbeats`, forwarded-header refusals `forwarded_refused`), `query_state`,
//! `was_canceled`, and `set_failure_mode` (also `PUT /v1/emulator/failure-mode` with `none`,
//! `reset` or a status code). Control-plane requests under `/v1/emulator/` are neither counted,
//! nor failed on purpose, nor refused for forwarded headers.

mod engine;
mod handlers;
mod knobs;
pub mod oauth2;
mod protocol;
mod query;
mod server;
mod shape;
mod spooling;
mod state;
mod statement;
mod system;
mod tables;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;

pub use oauth2::{IdentityProvider, OAuth2Emulation, OAuth2Stats};
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
    /// Like Trino's `http-server.process-forwarded` (default true): absolute URIs follow
    /// `X-Forwarded-Proto/Host/Port`. When false, every request carrying an `X-Forwarded-*`
    /// header is refused with 406 (control plane excepted) and URIs come from `Host` only.
    pub process_forwarded: bool,
    /// The spooling protocol (a spooling manager is configured); `None` (default): results
    /// always travel inline in `data`, whatever the client asks for.
    pub spooling: Option<SpoolingConfig>,
    /// OAuth2 external authentication against an identity provider (see [`oauth2`]); `None`
    /// (default): no authentication, like Trino over plain HTTP.
    pub oauth2: Option<OAuth2Emulation>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            name: "trino-emulator".to_string(),
            coordinator_id: None,
            rows_per_page: 1000,
            page_delay: Duration::ZERO,
            process_forwarded: true,
            spooling: None,
            oauth2: None,
        }
    }
}

/// The spooling protocol's settings (Trino's `protocol.spooling.*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolingConfig {
    /// How clients fetch spooled segments (`protocol.spooling.retrieval-mode`).
    pub mode: RetrievalMode,
    /// Rows per spooled segment at most (default 10 000; 0 is treated as 1).
    pub segment_rows: usize,
    /// A result page of at most this many rows travels as one inline segment (default 100,
    /// like Trino's inlining of small results).
    pub inline_rows: usize,
}

impl Default for SpoolingConfig {
    fn default() -> Self {
        Self {
            mode: RetrievalMode::default(),
            segment_rows: 10_000,
            inline_rows: 100,
        }
    }
}

/// Trino's `SegmentRetrievalMode`: where a client goes for a spooled segment's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum RetrievalMode {
    /// `uri` is a presigned URL of the object storage (one round trip). Trino's default.
    #[default]
    Storage,
    /// `uri` points at the coordinator, which redirects (303) to a presigned storage URL.
    CoordinatorStorageRedirect,
    /// `uri` points at the coordinator, which streams the bytes itself.
    CoordinatorProxy,
    /// `uri` points at the coordinator, which redirects (303) to a worker that streams them.
    WorkerProxy,
}

impl RetrievalMode {
    /// Whether the mode needs the extra storage/worker listener.
    pub(crate) fn needs_side_listener(self) -> bool {
        !matches!(self, Self::CoordinatorProxy)
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
    /// The last `X-Trino-Session`, `X-Trino-Prepared-Statement` and `X-Trino-Client-Capabilities`
    /// seen (whole, so that tests can tell a header arrived intact).
    pub last_session: Option<String>,
    pub last_prepared_statement: Option<String>,
    pub last_client_capabilities: Option<String>,
    /// Requests refused with 406 for an `X-Forwarded-*` header (`process_forwarded` false).
    pub forwarded_refused: u64,
    /// Segments issued by the spooling protocol (inline and spooled).
    pub segments_issued: u64,
    /// Spooled segments served (by the coordinator, the storage or the worker listener).
    pub segment_downloads: u64,
    /// Spooled segments acknowledged (and deleted).
    pub segment_acks: u64,
    /// Downloads and acknowledgements of unknown (never issued here, or acked) segments.
    pub segment_not_found: u64,
    /// `HEAD` requests on statement URIs (the client's heartbeat while it downloads).
    pub heartbeats: u64,
    /// OAuth2 logins (all zero without `EmulatorConfig::oauth2`).
    pub oauth2: OAuth2Stats,
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

    /// `http://127.0.0.1:PORT` of the spooling protocol's storage/worker listener, when the
    /// retrieval mode needs one.
    pub fn storage_url(&self) -> Option<String> {
        self.state
            .spooler
            .side_addr()
            .map(|a| format!("http://{a}"))
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
    let needs_side = config
        .spooling
        .as_ref()
        .is_some_and(|s| s.mode.needs_side_listener());
    let state = Arc::new(EmulatorState::new(config));
    state.set_local_addr(addr);
    let side = if needs_side {
        let side = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let side_addr = side.local_addr()?;
        state.spooler.set_side_addr(side_addr);
        tracing::info!(emulator = state.name(), addr = %side_addr, "spooling storage/worker listener");
        Some(server::EmulatorListener::new(side, Arc::clone(&state))?)
    } else {
        None
    };
    let listener = server::EmulatorListener::new(listener, Arc::clone(&state))?;
    let app = router(Arc::clone(&state));
    let side_app = handlers::side_routes(Arc::clone(&state));
    let name = state.name().to_string();
    tracing::info!(emulator = %name, %addr, coordinator_id = state.coordinator_id(), "Trino emulator listening");
    // One task serves both listeners, so that `shutdown` (which aborts it) stops both.
    let task = tokio::spawn(async move {
        let coordinator = async {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(emulator = %name, error = %e, "Trino emulator stopped");
            }
        };
        match side {
            Some(side) => {
                let storage = async {
                    if let Err(e) = axum::serve(side, side_app).await {
                        tracing::warn!(emulator = %name, error = %e, "storage/worker listener stopped");
                    }
                };
                tokio::join!(coordinator, storage);
            }
            None => coordinator.await,
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
