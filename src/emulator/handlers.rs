//! HTTP surface of the emulator: Trino's statement, query and info resources, plus a small
//! control plane under `/v1/emulator/` for tests that run the emulator in another process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

use super::exec;
use super::protocol::Protocol;
use super::query::{PageOutcome, PathKind, QueryEntry, RenderContext, Session};
use super::state::{random_slug, Counters, EmulatorState};
use super::FailureMode;

/// Version `/v1/info` reports.
const VERSION: &str = "446-emulator";

/// Prefix of the emulator's own control endpoints. Requests to it are not counted in
/// `EmulatorStats` and not subject to `FailureMode::Status`, so a test can read the counters
/// (and clear the failure) while the emulator plays dead.
const CONTROL_PREFIX: &str = "/v1/emulator/";

pub(crate) fn routes(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/v1/statement", post(post_statement))
        .route(
            "/v1/statement/queued/{query_id}/{slug}/{token}",
            get(get_queued).delete(delete_statement),
        )
        .route(
            "/v1/statement/executing/{query_id}/{slug}/{token}",
            get(get_executing).delete(delete_statement),
        )
        .route(
            "/v1/statement/executing/partialCancel/{query_id}/{stage}/{slug}/{token}",
            delete(partial_cancel),
        )
        .route(
            "/v1/statement/{query_id}/{slug}/{token}",
            get(get_legacy).delete(delete_statement),
        )
        .route("/v1/query/{query_id}", get(query_info).delete(cancel_query))
        .route("/ui/query.html", get(query_page))
        .route("/v1/info", get(info))
        .route("/v1/info/state", get(info_state))
        .route("/metrics", get(metrics))
        .route("/v1/emulator/stats", get(emulator_stats))
        .route("/v1/emulator/failure-mode", put(put_failure_mode))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

/// Counts every request, records what tests want to know about it, and plays
/// `FailureMode::Status`. (`FailureMode::Reset` acts on the connection, see `server`.)
async fn track(State(st): State<Arc<EmulatorState>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with(CONTROL_PREFIX) {
        let c = &st.counters;
        Counters::bump(&c.requests);
        let headers = req.headers();
        if let Some(host) = headers.get("x-forwarded-host") {
            Counters::bump(&c.forwarded_host_requests);
            Counters::remember(
                &c.last_forwarded_host,
                &String::from_utf8_lossy(host.as_bytes()),
            );
        }
        if let Some(user) = request_header(headers, USER) {
            Counters::remember(&c.last_user, &user);
        }
        if let FailureMode::Status(code) = st.failure_mode() {
            let status = StatusCode::from_u16(code)
                .ok()
                .filter(|s| !s.is_informational())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return plain(
                status,
                format!(
                    "Trino emulator '{}' is failing on purpose with HTTP {code}",
                    st.name()
                ),
            );
        }
    }
    next.run(req).await
}

/// A request header that clients send with the `X-Trino-` or the legacy `X-Presto-` prefix.
#[derive(Clone, Copy)]
struct RequestHeader {
    trino: &'static str,
    presto: &'static str,
}

const USER: RequestHeader = RequestHeader {
    trino: "x-trino-user",
    presto: "x-presto-user",
};
const SOURCE: RequestHeader = RequestHeader {
    trino: "x-trino-source",
    presto: "x-presto-source",
};
const CATALOG: RequestHeader = RequestHeader {
    trino: "x-trino-catalog",
    presto: "x-presto-catalog",
};
const SCHEMA: RequestHeader = RequestHeader {
    trino: "x-trino-schema",
    presto: "x-presto-schema",
};
const TRANSACTION: RequestHeader = RequestHeader {
    trino: "x-trino-transaction-id",
    presto: "x-presto-transaction-id",
};

/// The header's trimmed value; `None` when absent or empty.
fn request_header(headers: &HeaderMap, name: RequestHeader) -> Option<String> {
    let value = headers
        .get(name.trino)
        .or_else(|| headers.get(name.presto))?;
    let value = String::from_utf8_lossy(value.as_bytes());
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// Clients that speak only `X-Presto-*` get `X-Presto-*` response headers back, as from a
/// Trino with `protocol.v1.alternate-header-name=Presto`.
fn detect_protocol(headers: &HeaderMap) -> Protocol {
    let mut presto = false;
    for name in headers.keys() {
        let name = name.as_str();
        if name.starts_with("x-trino-") {
            return Protocol::Trino;
        }
        presto |= name.starts_with("x-presto-");
    }
    if presto {
        Protocol::Presto
    } else {
        Protocol::Trino
    }
}

/// `scheme://authority` for the absolute URIs of a response (`nextUri`, `infoUri`, ...).
///
/// Like Trino with `http-server.process-forwarded=true` (Jetty's forwarded-request handling):
/// `X-Forwarded-Proto/Host/Port` win over `Host`; `X-Forwarded-Host` may carry a port, and
/// `X-Forwarded-Port` overrides it. With `ignore_forwarded` the emulator behaves like a Trino
/// without that setting and uses `Host` (or its own address) only, so that a gateway's URI
/// rewriting can be tested.
pub(crate) fn base_uri(headers: &HeaderMap, st: &EmulatorState) -> String {
    let host_header = first_value(headers, HOST.as_str()).filter(|h| valid_authority(h));
    let own = || {
        st.local_addr()
            .map_or_else(|| "localhost".to_string(), |a| a.to_string())
    };
    if !st.config.ignore_forwarded {
        let proto = first_value(headers, "x-forwarded-proto");
        let host = first_value(headers, "x-forwarded-host").filter(|h| valid_authority(h));
        let port = first_value(headers, "x-forwarded-port").and_then(|p| p.parse::<u16>().ok());
        if proto.is_some() || host.is_some() || port.is_some() {
            let scheme = match proto {
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                _ => "http",
            };
            let authority = host.or(host_header).map_or_else(own, str::to_string);
            let (hostname, authority_port) = split_host_port(&authority);
            return match port.or(authority_port) {
                Some(port) => format!("{scheme}://{hostname}:{port}"),
                None => format!("{scheme}://{hostname}"),
            };
        }
    }
    match host_header {
        Some(host) => format!("http://{host}"),
        None => format!("http://{}", own()),
    }
}

/// First element of a possibly comma-separated header (proxies append to the list; the
/// left-most value is the client-facing one).
fn first_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let value = headers.get(name)?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    (!first.is_empty()).then_some(first)
}

/// Whether a request-supplied authority can go into a URI verbatim (no path, query, space or
/// quote characters smuggled into `nextUri`).
fn valid_authority(authority: &str) -> bool {
    !authority.is_empty()
        && authority.len() <= 255
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_~:[]%".contains(&b))
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if authority.starts_with('[') {
        if let Some(end) = authority.find(']') {
            let (host, rest) = authority.split_at(end + 1);
            let port = rest.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host, port);
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (host, None),
        },
        _ => (authority, None),
    }
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        message.into(),
    )
        .into_response()
}

fn query_not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "Query not found")
}

fn page_response(page: super::query::Page) -> Response {
    let mut response = Response::new(Body::from(page.body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(extra) = page.headers {
        for (name, value) in extra.iter() {
            headers.append(name.clone(), value.clone());
        }
    }
    response
}

async fn post_statement(
    State(st): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(user) = request_header(&headers, USER) else {
        return plain(StatusCode::BAD_REQUEST, "User must be set");
    };
    let Ok(sql) = std::str::from_utf8(&body) else {
        return plain(StatusCode::BAD_REQUEST, "SQL statement is not valid UTF-8");
    };
    if sql.trim().is_empty() {
        return plain(StatusCode::BAD_REQUEST, "SQL statement is empty");
    }
    Counters::bump(&st.counters.submissions);
    let session = Session {
        user,
        source: request_header(&headers, SOURCE),
        catalog: request_header(&headers, CATALOG),
        schema: request_header(&headers, SCHEMA),
        protocol: detect_protocol(&headers),
    };
    // The Python client sends `NONE` when it is not in a transaction.
    let transaction =
        request_header(&headers, TRANSACTION).filter(|t| !t.eq_ignore_ascii_case("none"));
    let new = exec::plan(&st, session, transaction.as_deref(), sql.to_string());
    let now = Instant::now();
    let entry = Arc::new(QueryEntry::new(st.next_query_id(), random_slug(), new, now));
    st.insert_query(Arc::clone(&entry));
    tracing::debug!(emulator = st.name(), query_id = %entry.id, "query submitted");
    let base = base_uri(&headers, &st);
    page_response(entry.submission_page(&RenderContext {
        base: &base,
        now,
        rows_per_page: st.config.rows_per_page,
    }))
}

type StatementPath = Path<(String, String, String)>;

async fn get_queued(
    State(st): State<Arc<EmulatorState>>,
    Path((id, slug, token)): StatementPath,
    headers: HeaderMap,
) -> Response {
    serve_page(&st, PathKind::Queued, &id, &slug, &token, &headers).await
}

async fn get_executing(
    State(st): State<Arc<EmulatorState>>,
    Path((id, slug, token)): StatementPath,
    headers: HeaderMap,
) -> Response {
    serve_page(&st, PathKind::Executing, &id, &slug, &token, &headers).await
}

async fn get_legacy(
    State(st): State<Arc<EmulatorState>>,
    Path((id, slug, token)): StatementPath,
    headers: HeaderMap,
) -> Response {
    serve_page(&st, PathKind::Legacy, &id, &slug, &token, &headers).await
}

async fn serve_page(
    st: &EmulatorState,
    kind: PathKind,
    id: &str,
    slug: &str,
    token: &str,
    headers: &HeaderMap,
) -> Response {
    Counters::bump(&st.counters.pages);
    let (Ok(token), Some(entry)) = (token.parse::<u64>(), st.query(id)) else {
        return query_not_found();
    };
    if !entry.slug_matches(slug) {
        return query_not_found();
    }
    // Delays happen before the page is built and without any lock held, so a DELETE can
    // cancel the query meanwhile and this GET then reports the cancellation.
    let delay = entry
        .page_delay
        .saturating_add(entry.long_poll(token, Instant::now()));
    st.sleep(delay).await;
    let base = base_uri(headers, st);
    let ctx = RenderContext {
        base: &base,
        now: Instant::now(),
        rows_per_page: st.config.rows_per_page,
    };
    match entry.page(kind, slug, token, &ctx) {
        PageOutcome::Page(page) => page_response(page),
        PageOutcome::Gone => plain(
            StatusCode::GONE,
            format!("Results for token {token} of query {id} are gone"),
        ),
        PageOutcome::NotFound => query_not_found(),
    }
}

async fn delete_statement(
    State(st): State<Arc<EmulatorState>>,
    Path((id, slug, token)): StatementPath,
) -> Response {
    match st.query(&id) {
        Some(entry) if entry.slug_matches(&slug) && token.parse::<u64>().is_ok() => {
            cancel(&st, &entry)
        }
        _ => query_not_found(),
    }
}

fn cancel(st: &EmulatorState, entry: &QueryEntry) -> Response {
    if entry.cancel() {
        Counters::bump(&st.counters.cancels);
        tracing::debug!(emulator = st.name(), query_id = %entry.id, "query canceled");
    }
    StatusCode::NO_CONTENT.into_response()
}

/// Trino cancels one stage; the emulator's queries have a single stage that it leaves alone.
async fn partial_cancel(
    State(st): State<Arc<EmulatorState>>,
    Path((id, _stage, slug, _token)): Path<(String, String, String, String)>,
) -> Response {
    match st.query(&id) {
        Some(entry) if entry.slug_matches(&slug) => StatusCode::NO_CONTENT.into_response(),
        _ => query_not_found(),
    }
}

async fn query_info(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(entry) = st.query(&id) else {
        return query_not_found();
    };
    let base = base_uri(&headers, &st);
    let session = &entry.session;
    let mut info = serde_json::json!({
        "queryId": entry.id,
        "state": entry.state().as_str(),
        "query": entry.sql,
        "session": {
            "user": session.user,
            "source": session.source,
            "catalog": session.catalog,
            "schema": session.schema,
        },
        "self": format!("{base}/v1/query/{}", entry.id),
    });
    if let Some(error) = entry.error() {
        info["errorType"] = error.code.error_type().into();
        info["errorCode"] = serde_json::json!({
            "code": error.code.code(),
            "name": error.code.name(),
            "type": error.code.error_type(),
        });
        info["failureInfo"] = serde_json::json!({ "message": error.message });
    }
    Json(info).into_response()
}

async fn cancel_query(State(st): State<Arc<EmulatorState>>, Path(id): Path<String>) -> Response {
    match st.query(&id) {
        Some(entry) => cancel(&st, &entry),
        None => query_not_found(),
    }
}

/// `/ui/query.html?{queryId}`: the page `infoUri` points at.
async fn query_page(State(st): State<Arc<EmulatorState>>, RawQuery(query): RawQuery) -> Response {
    let id = query.unwrap_or_default();
    let id = id.strip_prefix("queryId=").unwrap_or(&id);
    let Some(entry) = st.query(id) else {
        return query_not_found();
    };
    // The id comes from the registry (alphabet [0-9a-z_]), so it needs no HTML escaping.
    let html = format!(
        "<!DOCTYPE html><html><head><title>Query {id}</title></head><body>\
         <h1>Query {id}</h1><p>State: {state}</p><p>Emulator: {name}</p></body></html>",
        id = entry.id,
        state = entry.state().as_str(),
        name = html_escape(st.name()),
    );
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        html,
    )
        .into_response()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn info(State(st): State<Arc<EmulatorState>>) -> Response {
    Json(serde_json::json!({
        "nodeVersion": { "version": VERSION },
        "environment": "emulator",
        "coordinator": true,
        "starting": false,
        "uptime": format_duration(st.uptime()),
    }))
    .into_response()
}

async fn info_state() -> Response {
    Json("ACTIVE").into_response()
}

/// A minimal OpenMetrics page with the two gauges gateways use for load-based routing.
async fn metrics(State(st): State<Arc<EmulatorState>>) -> Response {
    let (queued, running) = st.active_counts();
    let body = format!(
        "# TYPE trino_execution_name_QueryManager_RunningQueries gauge\n\
         trino_execution_name_QueryManager_RunningQueries {running}\n\
         # TYPE trino_execution_name_QueryManager_QueuedQueries gauge\n\
         trino_execution_name_QueryManager_QueuedQueries {queued}\n\
         # EOF\n"
    );
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

async fn emulator_stats(State(st): State<Arc<EmulatorState>>) -> Response {
    Json(st.stats()).into_response()
}

/// `PUT /v1/emulator/failure-mode` with body `none`, `reset` or an HTTP status code.
async fn put_failure_mode(State(st): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    let mode = match text.to_ascii_lowercase().as_str() {
        "none" => FailureMode::None,
        "reset" => FailureMode::Reset,
        other => match other.parse::<u16>() {
            Ok(code) if (200..=599).contains(&code) => FailureMode::Status(code),
            _ => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "expected 'none', 'reset' or an HTTP status code (200-599)",
                )
            }
        },
    };
    st.set_failure_mode(mode);
    tracing::info!(emulator = st.name(), ?mode, "failure mode changed");
    StatusCode::NO_CONTENT.into_response()
}

async fn fallback() -> Response {
    plain(StatusCode::NOT_FOUND, "Not Found")
}

/// Airlift's `Duration.toString()` after `convertToMostSuccinctTimeUnit()`, as Trino prints
/// `uptime` (`"1.00m"`, `"3.52s"`, `"2.00h"`).
pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    let (value, unit) = if secs >= 86_400.0 {
        (secs / 86_400.0, "d")
    } else if secs >= 3_600.0 {
        (secs / 3_600.0, "h")
    } else if secs >= 60.0 {
        (secs / 60.0, "m")
    } else if secs >= 1.0 {
        (secs, "s")
    } else {
        (secs * 1_000.0, "ms")
    };
    format!("{value:.2}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_parsing() {
        assert_eq!(split_host_port("gw:8443"), ("gw", Some(8443)));
        assert_eq!(split_host_port("gw"), ("gw", None));
        assert_eq!(split_host_port("[::1]:80"), ("[::1]", Some(80)));
        assert_eq!(split_host_port("[::1]"), ("[::1]", None));
        assert_eq!(split_host_port("gw:notaport"), ("gw", None));
        assert!(valid_authority("a.b-c:1"));
        assert!(!valid_authority("evil/path"));
        assert!(!valid_authority("a b"));
        assert!(!valid_authority(""));
    }

    #[test]
    fn durations_like_airlift() {
        assert_eq!(format_duration(Duration::from_secs(60)), "1.00m");
        assert_eq!(format_duration(Duration::from_millis(3_520)), "3.52s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250.00ms");
        assert_eq!(format_duration(Duration::from_secs(7_200)), "2.00h");
    }

    #[test]
    fn protocol_detection() {
        let mut h = HeaderMap::new();
        assert_eq!(detect_protocol(&h), Protocol::Trino);
        h.insert("x-presto-user", HeaderValue::from_static("u"));
        assert_eq!(detect_protocol(&h), Protocol::Presto);
        h.insert("x-trino-routing-group", HeaderValue::from_static("g"));
        assert_eq!(detect_protocol(&h), Protocol::Trino);
    }
}
