//! HTTP surface of the emulator: Trino's statement, query, info and spooled-segment
//! resources, plus a small control plane under `/v1/emulator/` for tests that run the emulator
//! in another process; and the routes of the storage/worker listener of the spooling protocol.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};

use super::protocol::Protocol;
use super::query::{NewQuery, PageOutcome, PathKind, Plan, QueryEntry, RenderContext, Session};
use super::spooling::{Access, DownloadError, SIGNATURE_PARAM};
use super::state::{random_slug, Counters, EmulatorState};
use super::statement;
use super::system::Runtime;
use super::{FailureMode, RetrievalMode};

/// Prefix of the emulator's own control endpoints. Requests to it are not counted in
/// `EmulatorStats` and not subject to `FailureMode::Status`, so a test can read the counters
/// (and clear the failure) while the emulator plays dead.
const CONTROL_PREFIX: &str = "/v1/emulator/";

pub(crate) fn routes(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/v1/statement", post(post_statement))
        // An explicit HEAD (the client's heartbeat) keeps axum from answering HEAD with the
        // GET handler, which would advance the token.
        .route(
            "/v1/statement/queued/{query_id}/{slug}/{token}",
            get(get_queued).head(heartbeat).delete(delete_statement),
        )
        .route(
            "/v1/statement/executing/{query_id}/{slug}/{token}",
            get(get_executing).head(heartbeat).delete(delete_statement),
        )
        .route(
            "/v1/statement/executing/partialCancel/{query_id}/{stage}/{slug}/{token}",
            delete(partial_cancel),
        )
        .route(
            "/v1/statement/{query_id}/{slug}/{token}",
            get(get_legacy).head(heartbeat).delete(delete_statement),
        )
        .route(
            "/v1/spooled/download/{segment_id}",
            get(coordinator_download),
        )
        .route("/v1/spooled/ack/{segment_id}", get(ack_segment))
        // Storage URLs point here when there is no storage listener (`router` without `start`).
        .route("/spool/{segment_id}", get(storage_download))
        .route("/v1/query/{query_id}", get(query_info).delete(cancel_query))
        .route("/ui/query.html", get(query_page))
        .route("/ui/", get(ui_home))
        .route(
            "/oauth2/token/initiate/{auth_id_hash}",
            get(oauth2_initiate),
        )
        .route(
            "/oauth2/token/{auth_id}",
            get(oauth2_token).delete(oauth2_forget),
        )
        .route("/oauth2/callback", get(oauth2_callback))
        .route("/v1/info", get(info))
        .route("/v1/info/state", get(info_state))
        .route("/metrics", get(metrics))
        .route("/v1/emulator/stats", get(emulator_stats))
        .route("/v1/emulator/failure-mode", put(put_failure_mode))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track))
        .with_state(state)
}

/// Routes of the extra listener that spooling modes other than COORDINATOR_PROXY need: the
/// object storage (presigned `/spool/{id}` URLs) and a worker (`/v1/spooled/download/{id}`).
pub(crate) fn side_routes(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .route("/v1/spooled/download/{segment_id}", get(worker_download))
        // Workers run the same HTTP server as the coordinator, forwarded-header policy included.
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            refuse_forwarded_layer,
        ))
        .route("/spool/{segment_id}", get(storage_download))
        .fallback(fallback)
        .with_state(state)
}

/// Counts every request, records what tests want to know about it, and plays
/// `FailureMode::Status` and the refusal of forwarded headers. (`FailureMode::Reset` acts on
/// the connection, see `server`.)
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
        for (name, slot) in [
            ("x-trino-session", &c.last_session),
            ("x-trino-prepared-statement", &c.last_prepared_statement),
            ("x-trino-client-capabilities", &c.last_client_capabilities),
        ] {
            if let Some(v) = headers.get(name) {
                Counters::remember(slot, &String::from_utf8_lossy(v.as_bytes()));
            }
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
        if let Some(refused) = refuse_forwarded(&st, req.headers()) {
            return refused;
        }
        if let Some(o) = &st.oauth2 {
            let base = base_uri(req.headers(), &st);
            if let super::oauth2::Gate::Answer(resp) =
                o.gate(req.uri().path(), req.headers(), &base)
            {
                return resp;
            }
        }
    }
    next.run(req).await
}

async fn refuse_forwarded_layer(
    State(st): State<Arc<EmulatorState>>,
    req: Request,
    next: Next,
) -> Response {
    match refuse_forwarded(&st, req.headers()) {
        Some(refused) => refused,
        None => next.run(req).await,
    }
}

/// Like Airlift's `RejectForwardedRequestCustomizer` (Trino without
/// `http-server.process-forwarded`): the first `X-Forwarded-*` header of a request gets it
/// refused with 406.
fn refuse_forwarded(st: &EmulatorState, headers: &HeaderMap) -> Option<Response> {
    if st.config.process_forwarded {
        return None;
    }
    let name = headers
        .keys()
        .find(|name| name.as_str().starts_with("x-forwarded-"))?;
    Counters::bump(&st.counters.forwarded_refused);
    Some(plain(
        StatusCode::NOT_ACCEPTABLE,
        format!(
            "Server configuration does not allow processing of the {} header",
            display_header_name(name)
        ),
    ))
}

/// `x-forwarded-for` → `X-Forwarded-For`: HTTP/1.1 clients send header names capitalised
/// that way, and the HTTP stack hands them over lower-cased.
fn display_header_name(name: &HeaderName) -> String {
    name.as_str()
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
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
/// `X-Forwarded-Port` overrides it. Without `process_forwarded` the emulator behaves like a
/// Trino without that setting: requests with forwarded headers never get here (406), and URIs
/// come from `Host` (or the emulator's own address) only.
pub(crate) fn base_uri(headers: &HeaderMap, st: &EmulatorState) -> String {
    let host_header = first_value(headers, HOST.as_str()).filter(|h| valid_authority(h));
    let own = || {
        st.local_addr()
            .map_or_else(|| "localhost".to_string(), |a| a.to_string())
    };
    if st.config.process_forwarded {
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
    if let Some(encoding) = page.encoding {
        headers.insert(
            HeaderName::from_static("x-trino-query-data-encoding"),
            HeaderValue::from_static(encoding),
        );
    }
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
        parametric_datetime: headers
            .get_all("x-trino-client-capabilities")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|c| c.trim() == "PARAMETRIC_DATETIME"),
    };
    // The Python client sends `NONE` when it is not in a transaction.
    let transaction =
        request_header(&headers, TRANSACTION).filter(|t| !t.eq_ignore_ascii_case("none"));
    let new = plan(&st, session, transaction.as_deref(), sql).await;
    let now = Instant::now();
    let encoding = st.spooler.select(&headers);
    let entry = Arc::new(
        QueryEntry::new(st.next_query_id(), random_slug(), new, now).with_encoding(encoding),
    );
    st.insert_query(Arc::clone(&entry));
    tracing::debug!(emulator = st.name(), query_id = %entry.id, "query submitted");
    let base = base_uri(&headers, &st);
    page_response(entry.submission_page(&RenderContext {
        base: &base,
        now,
        rows_per_page: st.config.rows_per_page,
        spool: Some(&st.spooler),
    }))
}

/// What a submitted statement does: the emulator's own statements (`statement`) are answered
/// by hand, everything else runs on the SQL engine.
async fn plan(
    st: &Arc<EmulatorState>,
    session: Session,
    transaction: Option<&str>,
    sql: &str,
) -> NewQuery {
    let mut page_delay = st.config.page_delay;
    if let Some(ms) = statement::page_delay_ms(sql) {
        page_delay = page_delay.saturating_add(Duration::from_millis(ms));
    }
    let mut headers = Vec::new();
    let mut sleep_ms = 0;
    let planned = match statement::check_transaction(st, transaction)
        .and_then(|()| statement::recognize(sql))
    {
        Err(e) => Plan::Fail(e),
        Ok(Some(own)) => match statement::plan(st, &session, transaction, own) {
            Ok((plan, h)) => {
                headers = h;
                plan
            }
            Err(e) => Plan::Fail(e),
        },
        Ok(None) => {
            let runtime: Weak<EmulatorState> = Arc::downgrade(st);
            match st
                .engine
                .run(sql, &session, runtime as Weak<dyn Runtime>)
                .await
            {
                Ok(ran) => {
                    sleep_ms = ran.sleep_ms;
                    ran.plan
                }
                Err(e) => Plan::Fail(e),
            }
        }
    };
    NewQuery {
        sql: sql.to_string(),
        session,
        plan: planned,
        headers,
        page_delay,
        sleep: Duration::from_millis(sleep_ms),
    }
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
    // An engine query's rows for this page are computed now, without any lock held.
    entry.fill(token, st.config.rows_per_page.max(1)).await;
    let base = base_uri(headers, st);
    let ctx = RenderContext {
        base: &base,
        now: Instant::now(),
        rows_per_page: st.config.rows_per_page,
        spool: Some(&st.spooler),
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

/// `HEAD` of a statement URI: the heartbeat clients send while they download spooled segments,
/// so that the coordinator does not abandon the query. Changes nothing.
async fn heartbeat(
    State(st): State<Arc<EmulatorState>>,
    Path((id, slug, token)): StatementPath,
) -> Response {
    Counters::bump(&st.counters.heartbeats);
    match st.query(&id) {
        Some(entry) if entry.slug_matches(&slug) && token.parse::<u64>().is_ok() => {
            StatusCode::OK.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `GET /v1/spooled/download/{id}` on the coordinator: streams the segment
/// (COORDINATOR_PROXY) or redirects to the storage (COORDINATOR_STORAGE_REDIRECT) or to a
/// worker (WORKER_PROXY).
async fn coordinator_download(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let spooler = &st.spooler;
    let redirect = match spooler.mode() {
        // No spooling manager: nothing was ever issued (counted as not found).
        None => spooler.find(&id).and(Err(DownloadError::NotFound)),
        Some(RetrievalMode::Storage) => {
            if let Err(e) = spooler.find(&id) {
                return download_error(e);
            }
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "Retrieval mode is STORAGE but segment resource was called",
            );
        }
        Some(RetrievalMode::CoordinatorStorageRedirect) => {
            spooler.presigned(&base_uri(&headers, &st), &id)
        }
        Some(RetrievalMode::WorkerProxy) => match spooler.side_addr() {
            Some(worker) => spooler
                .find(&id)
                .map(|_| format!("http://{worker}/v1/spooled/download/{id}")),
            // No worker listener (`router` without `start`): the coordinator serves it.
            None => return segment_response(spooler.download(&id, &headers, Access::Proxied)),
        },
        Some(RetrievalMode::CoordinatorProxy) => {
            return segment_response(spooler.download(&id, &headers, Access::Proxied))
        }
    };
    match redirect {
        Ok(location) => see_other(&location),
        Err(e) => download_error(e),
    }
}

/// `GET /v1/spooled/download/{id}` on a worker (the extra listener).
async fn worker_download(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    segment_response(st.spooler.download(&id, &headers, Access::Proxied))
}

/// `GET /spool/{id}?X-Amz-Signature=...`: the object storage behind presigned URLs.
async fn storage_download(
    State(st): State<Arc<EmulatorState>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let signature = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == SIGNATURE_PARAM)
            .map(|(_, value)| value.into_owned())
    });
    segment_response(
        st.spooler
            .download(&id, &headers, Access::Presigned(signature.as_deref())),
    )
}

/// `GET /v1/spooled/ack/{id}`: the client is done with the segment, which is deleted.
async fn ack_segment(State(st): State<Arc<EmulatorState>>, Path(id): Path<String>) -> Response {
    if st.spooler.ack(&id) {
        StatusCode::OK.into_response()
    } else {
        download_error(DownloadError::NotFound)
    }
}

fn segment_response(result: Result<Bytes, DownloadError>) -> Response {
    match result {
        Ok(bytes) => {
            let len = HeaderValue::from(bytes.len());
            (
                [
                    (
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (CONTENT_LENGTH, len),
                ],
                bytes,
            )
                .into_response()
        }
        Err(e) => download_error(e),
    }
}

fn download_error(e: DownloadError) -> Response {
    match e {
        DownloadError::NotFound => plain(StatusCode::NOT_FOUND, "Segment not found"),
        DownloadError::BadKey => plain(
            StatusCode::UNAUTHORIZED,
            "Missing or wrong X-Trino-Emulator-Segment-Key header",
        ),
        DownloadError::BadSignature => plain(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch: the presigned URL's signature is missing or wrong",
        ),
    }
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response(),
        // Unreachable: the location is built from a validated authority and base64url ids.
        Err(_) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid redirect location",
        ),
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

// The login resources of OAuth2 mode (see `oauth2`); 404 without it.

fn no_oauth2() -> Response {
    plain(
        StatusCode::NOT_FOUND,
        "OAuth2 authentication is not configured",
    )
}

async fn oauth2_initiate(
    State(st): State<Arc<EmulatorState>>,
    Path(hash): Path<String>,
    headers: HeaderMap,
) -> Response {
    match &st.oauth2 {
        Some(o) => o.initiate(&hash, &base_uri(&headers, &st)),
        None => no_oauth2(),
    }
}

async fn oauth2_callback(
    State(st): State<Arc<EmulatorState>>,
    axum::extract::Query(q): axum::extract::Query<super::oauth2::CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    match &st.oauth2 {
        Some(o) => o.callback(q, &headers, &base_uri(&headers, &st)).await,
        None => no_oauth2(),
    }
}

async fn oauth2_token(
    State(st): State<Arc<EmulatorState>>,
    Path(auth_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match &st.oauth2 {
        Some(o) => o.poll(&auth_id, &base_uri(&headers, &st)).await,
        None => no_oauth2(),
    }
}

async fn oauth2_forget(
    State(st): State<Arc<EmulatorState>>,
    Path(auth_id): Path<String>,
) -> Response {
    match &st.oauth2 {
        Some(o) => {
            o.forget(&auth_id);
            StatusCode::NO_CONTENT.into_response()
        }
        None => no_oauth2(),
    }
}

/// The Web UI's home page: who is signed in (with OAuth2), on which instance.
async fn ui_home(State(st): State<Arc<EmulatorState>>, headers: HeaderMap) -> Response {
    let user = st
        .oauth2
        .as_ref()
        .and_then(|o| o.ui_user(&headers))
        .unwrap_or_else(|| "anonymous".to_string());
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!DOCTYPE html><html><body><h1>Trino emulator {}</h1><p>Signed in as {}</p></body></html>",
            html_escape(st.name()),
            html_escape(&user)
        ),
    )
        .into_response()
}

async fn info(State(st): State<Arc<EmulatorState>>) -> Response {
    Json(serde_json::json!({
        "nodeVersion": { "version": super::state::VERSION },
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
    fn header_names_are_displayed_capitalised() {
        assert_eq!(
            display_header_name(&HeaderName::from_static("x-forwarded-for")),
            "X-Forwarded-For"
        );
        assert_eq!(
            display_header_name(&HeaderName::from_static("x-forwarded--x")),
            "X-Forwarded--X"
        );
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
