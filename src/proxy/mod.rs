//! The Pingora `ProxyHttp` implementation: one trait method per phase.
//!
//! * `request_filter` classifies the request and decides the backend (policy → group → strategy for
//!   new queries, query id → owner for follow-ups), answering bad input itself;
//! * `upstream_peer` turns the decision into a peer, and picks another backend of the group when a
//!   connect failure asked for a retry;
//! * `upstream_request_filter` adds `X-Forwarded-*`;
//! * `response_filter`/`response_body_filter` learn query and transaction ownership — only the small
//!   submission response is held; result pages stream through, their head watched for the query's
//!   end and, where segments must be routed or a cluster needs `forwarding: rewrite`, their URIs
//!   rewritten on the fly ([`page_rewrite`]).

pub mod admission;
pub mod client_connection;
pub mod error;
pub mod forwarded;
pub mod held;
pub mod page_rewrite;
pub mod page_scan;
pub mod submission_body;
pub mod submitted;
pub mod target;
pub mod upstream_head;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Method};
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorSource, ErrorType};
use pingora_http::{RequestHeader, ResponseHeader};
use pingora_proxy::{FailToProxy, ProxyHttp, Session};
use tracing::{debug, info, warn};

use crate::bookkeeping::{InFlight, Started};
use crate::config::{Forwarding, Spooling};
pub use crate::gateway::Gateway;
use crate::history::HistoryEvent;
use crate::metrics::{status_label, METRICS};
use crate::oauth2::{self, Leg};
use crate::queue::running::Slot;
use crate::routing::facts::TRANSACTION_ID;
use crate::routing::query::QueryProperties;
use crate::routing::strategy;
use crate::routing::{Route, RouteReason};
use crate::snapshot::{Backend, Snapshot};
use crate::store::HistoryRecord;
use admission::Decision;
use error::GatewayError;
use page_scan::{PageScan, Verdict};
pub use submitted::Submitted;
use target::{classify, Target};
use upstream_head::UpstreamHead;

/// The submission response is small (no result rows); cap what we hold of it to learn the query id.
const MAX_SUBMISSION_RESPONSE: usize = 1 << 20;

/// The history keeps this many characters of each query's SQL.
pub(crate) const HISTORY_SQL_CHARS: usize = 1000;

/// On a request, the client asks for the spooling protocol with the encodings it reads; on a
/// statement answer, Trino names the encoding of a spooled query's pages.
const QUERY_DATA_ENCODING: HeaderName = HeaderName::from_static("x-trino-query-data-encoding");

const STARTED_TRANSACTION: HeaderName = HeaderName::from_static("x-trino-started-transaction-id");
const CLEAR_TRANSACTION: HeaderName = HeaderName::from_static("x-trino-clear-transaction-id");

/// One proxy service per listener, so policies can match the listener by name.
pub struct TrinoProxy {
    pub listener: Arc<str>,
    /// Position of this listener's settings in `proxy.listeners` (listeners cannot change live).
    pub listener_index: usize,
    /// The listener serves HTTPS (backends must build `https://` URIs back to us).
    pub tls: bool,
    pub gateway: Arc<Gateway>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Submit,
    FollowUp,
    /// A leg of an OAuth2 login (see [`crate::oauth2`]).
    Login,
    Other,
}

/// Who submitted a query, as the history records it.
struct Who {
    user: Option<String>,
    source: Option<String>,
    client_tags: Option<String>,
}

/// Buffers the submission response until the query id can be read from it.
struct Learner {
    buf: Vec<u8>,
    expected: Option<usize>,
}

pub struct RequestCtx {
    snap: Arc<Snapshot>,
    started: Instant,
    kind: Kind,
    /// Metric label: submit|page|cancel|info|ui|other.
    metric_kind: &'static str,
    /// The request-duration histogram got its sample (at the response head).
    timed: bool,
    group: Option<usize>,
    reason: Option<RouteReason>,
    /// Where the request goes. For follow-ups this is the owner recorded when the query was
    /// learned, which may no longer be in the current snapshot (removed backends drain).
    backend: Option<Arc<Backend>>,
    /// Index of `backend` in `snap.backends` when a strategy picked it (retries need it).
    picked: Option<usize>,
    /// Backends that failed to connect for this request; a retry skips them.
    tried: Vec<usize>,
    retryable: bool,
    /// The backend's response head arrived (after that, nothing is retried).
    response_started: bool,
    /// This request's count in its backend's in-flight requests.
    inflight: Option<InFlight>,
    /// Routing put the submission on hold in this group (the gateway's queue answers it).
    hold: Option<usize>,
    /// The submission's place under its user's and source's running limits.
    slot: Option<Slot>,
    /// This poll of a held query hands it over: it goes to the backend as the submission.
    handover: Option<Box<held::HandOver>>,
    /// A request for a query another gateway instance holds: it goes to that instance.
    forward: Option<Arc<HttpPeer>>,
    /// A backend answered this submission with 200: the query exists there.
    accepted: bool,
    /// A submission's count in its backend's started queries (taken back unless accepted).
    submission: Option<Started>,
    /// What a `consistent` group hashed for this submission (a retry hashes it again).
    key: Vec<u8>,
    learner: Option<Learner>,
    /// Watches a result page for the query's end.
    page_scan: Option<PageScan>,
    /// The backend has `forwarding: rewrite`.
    rewrite_mode: bool,
    /// Rewrites a statement page's URIs as it streams (segment routing, `forwarding: rewrite`).
    rewriter: Option<Box<page_rewrite::PageRewriter>>,
    /// Inflates a compressed spooled page so that its segment URIs can be rewritten.
    inflater: Option<page_rewrite::Inflater>,
    /// The backend's own path for a spooled-segment request (the query id taken out).
    upstream_path: Option<String>,
    /// The request is for a `/v1/statement/...` page (or its cancel).
    statement_page: bool,
    query_id: Option<String>,
    /// The head of a submission's SQL text, for the query history.
    sql: Option<Vec<u8>>,
    /// The whole submission body went by (a retry re-sends it; don't capture it twice).
    sql_complete: bool,
    /// Submission body bytes seen so far (checked against `max_submission_bytes`).
    body_bytes: u64,
    /// The whole submission body, read before routing because a policy reads the statement;
    /// it replaces what Pingora replays to the backend (see [`submission_body::hold`]).
    held: Option<Bytes>,
    /// What the held statement touches.
    query: Option<Box<QueryProperties>>,
    /// A submission's user, source and client tags as routing read them (for the history).
    who: Option<Who>,
    /// The OAuth2 login leg this request is (resolved to its issuing backend).
    login: Option<Leg>,
    /// A browser's request (`/ui/...`, login pages): the answer pins the browser to its backend
    /// with [`oauth2::PIN_COOKIE`], unless the request's cookie names that backend already.
    browser: bool,
    /// The request's pin cookie names the backend it goes to.
    pin_current: bool,
    failure: Option<GatewayError>,
}

impl RequestCtx {
    fn backend_name(&self) -> &str {
        self.backend.as_ref().map(|b| &*b.name).unwrap_or("-")
    }

    fn group_name(&self) -> &str {
        self.group
            .map(|g| &*self.snap.groups[g].name)
            .unwrap_or("-")
    }

    /// Sample the time to the response head, once.
    fn observe_head(&mut self) {
        if !self.timed {
            self.timed = true;
            METRICS
                .request_duration
                .with_label_values(&[self.metric_kind, self.group_name(), self.backend_name()])
                .observe(self.started.elapsed().as_secs_f64());
        }
    }

    /// Count an upstream failure of the current backend, and whether it is retried elsewhere.
    fn upstream_error(&self, kind: &str, retried: bool) {
        let backend = self.backend_name();
        METRICS
            .upstream_errors
            .with_label_values(&[backend, kind])
            .inc();
        if retried {
            METRICS.retries.with_label_values(&[backend]).inc();
        }
    }
}

/// After an early refusal, the rest of a request body is read and dropped for at most this long
/// and this much, before the connection closes (nginx's "lingering close"): closing a socket with
/// unread data makes the kernel reset the connection, and a client still sending its body would
/// see a broken pipe instead of the answer.
const LINGER_MAX_TIME: Duration = Duration::from_secs(5);
const LINGER_MAX_BYTES: u64 = 32 << 20;

/// Write a gateway error as the whole response and close the connection, after draining what is
/// left of the request body (bounded, see [`LINGER_MAX_TIME`]).
async fn respond(session: &mut Session, err: &GatewayError) -> pingora_error::Result<()> {
    let body = err.body();
    let mut resp = ResponseHeader::build(err.status, Some(3))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header(CONTENT_LENGTH, body.len().to_string())?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    linger(session).await;
    Ok(())
}

/// Read and drop the rest of the request body, bounded in time and bytes.
async fn linger(session: &mut Session) {
    if session.is_http2() || session.as_mut().is_body_done() {
        return;
    }
    let deadline = tokio::time::Instant::now() + LINGER_MAX_TIME;
    let mut read = 0u64;
    let result = loop {
        match tokio::time::timeout_at(deadline, session.as_mut().read_request_body()).await {
            Err(_) => break "timeout",
            Ok(Err(_)) => break "error",
            Ok(Ok(None)) => break "drained",
            Ok(Ok(Some(chunk))) => {
                read += chunk.len() as u64;
                if read > LINGER_MAX_BYTES {
                    break "limit";
                }
            }
        }
    };
    debug!(bytes = read, result, "lingering close");
    METRICS.lingering_closes.with_label_values(&[result]).inc();
}

fn has_body(req: &RequestHeader) -> bool {
    let declared = req
        .headers
        .get(CONTENT_LENGTH)
        .is_some_and(|v| v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok()) != Some(0));
    declared || req.headers.contains_key(TRANSFER_ENCODING)
}

/// `Content-Length`, when the request declares a valid one.
fn declared_length(req: &RequestHeader) -> Option<u64> {
    req.headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The backend a route placed a new query on; a fallback is logged and counted here, once per
/// submission.
fn placed(snap: &Snapshot, route: &Route) -> Result<(usize, usize), GatewayError> {
    match route.placement {
        Ok(p) => {
            if let Some((from, why)) = p.fell_back_from {
                let (from, to) = (&*snap.groups[from].name, &*snap.groups[p.group].name);
                warn!(from_group = %from, to_group = %to, reason = ?why, "routing fallback");
                METRICS
                    .routing_fallback
                    .with_label_values(&[from, to])
                    .inc();
            }
            Ok((p.group, p.backend))
        }
        Err((g, why)) => Err(admission::unavailable(snap, g, why)),
    }
}

/// The kind of an upstream failure: a fixed metric label, and what a client is told of it (in
/// words, never an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpstreamFailure {
    Timeout,
    Connect,
    Reset,
    Other,
}

impl UpstreamFailure {
    fn of(e: &Error) -> Self {
        match e.etype() {
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                Self::Timeout
            }
            ErrorType::ConnectRefused | ErrorType::ConnectError | ErrorType::ConnectNoRoute => {
                Self::Connect
            }
            ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => {
                Self::Reset
            }
            _ => Self::Other,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Reset => "reset",
            Self::Other => "other",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Self::Timeout => "the connection timed out",
            Self::Connect => "the connection was refused or failed",
            Self::Reset => "the connection was closed or reset",
            Self::Other => "the request to it failed",
        }
    }
}

impl TrinoProxy {
    /// Decide where the request goes; `Err` is answered to the client as is.
    fn route(&self, session: &Session, ctx: &mut RequestCtx) -> Result<(), GatewayError> {
        let req = session.req_header();
        ctx.metric_kind = target::metric_kind(&req.method, req.uri.path());
        if matches!(req.method, Method::GET | Method::HEAD | Method::DELETE) && has_body(req) {
            return Err(GatewayError::bad_request(format!(
                "{} requests must not carry a body",
                req.method
            )));
        }
        let target = classify(&req.method, req.uri.path(), req.uri.query())?;
        if !matches!(target, Target::Submit) {
            ctx.browser = oauth2::is_browser_path(req.uri.path());
        }
        match target {
            Target::Login(leg) => {
                ctx.kind = Kind::Login;
                ctx.login = Some(leg);
                // The issuing backend is resolved next, in `request_filter` (it may ask the database).
                Ok(())
            }
            Target::Query(id) | Target::Segment(id) => {
                ctx.kind = Kind::FollowUp;
                ctx.query_id = Some(id.to_string());
                if let Target::Segment(_) = target {
                    // The segment lives where its query ran; the backend gets its own path.
                    ctx.upstream_path =
                        page_rewrite::untag_segment_path(req.uri.path()).map(|(_, path)| match req
                            .uri
                            .query()
                        {
                            Some(q) => format!("{path}?{q}"),
                            None => path,
                        });
                } else {
                    ctx.statement_page = req.uri.path().starts_with("/v1/statement/");
                }
                // The owner is resolved next, in `request_filter` (it may ask the database).
                Ok(())
            }
            Target::Spooled => Err(GatewayError::segment_not_routable(req.uri.path())),
            Target::Submit | Target::Other => {
                ctx.kind = if target == Target::Submit {
                    Kind::Submit
                } else {
                    Kind::Other
                };
                // The statement's properties stay with the request (the history records them).
                let query = ctx.query.take();
                let routed = self.route_new(req, ctx, target, query.as_deref());
                ctx.query = query;
                if routed.is_ok() && ctx.browser {
                    self.follow_pin(req, ctx);
                }
                routed
            }
        }
    }

    /// Decide where a request not tied to a query goes: a transaction's owner or a new route.
    fn route_new(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
        target: Target<'_>,
        query: Option<&QueryProperties>,
    ) -> Result<(), GatewayError> {
        let snap = ctx.snap.clone();
        let submission = (target == Target::Submit).then_some(admission::Submission {
            declared_length: declared_length(req),
            query,
        });
        let decision = admission::decide(
            &snap,
            self.listener_config(&snap),
            &self.listener,
            &req.headers,
            submission,
            true,
        )?;
        let route = match decision {
            // A statement inside a transaction must reach the backend that started it.
            Decision::Transaction(txn) => {
                let owner = self
                    .gateway
                    .sticky
                    .resolve_transaction(txn)
                    .ok_or_else(|| GatewayError::unknown_transaction(txn))?;
                ctx.backend = Some(owner);
                return Ok(());
            }
            Decision::Route(facts, route) => {
                // The group it goes to, or (held) the one it waits in, hashes the key.
                let keyed = route.placement.map_or(route.group, |p| p.group);
                ctx.key = snap.groups[keyed].selector.key(&facts).to_vec();
                if target == Target::Submit {
                    // The history's identity columns, read here rather than parsed again.
                    let owned = |v: Option<&str>| v.map(str::to_string);
                    ctx.who = Some(Who {
                        user: owned(facts.user),
                        source: owned(facts.source),
                        client_tags: owned(facts.client_tags),
                    });
                }
                route
            }
        };
        ctx.reason = Some(route.reason);
        ctx.retryable = true;
        if target == Target::Submit {
            let who = ctx.who.as_ref();
            let admitted = admission::admit(
                &snap,
                &self.gateway.queue,
                &route,
                who.and_then(|w| w.user.as_deref()),
                who.and_then(|w| w.source.as_deref()),
                true,
            );
            match admitted {
                admission::Admitted::Go(slot) => ctx.slot = slot,
                // Only a statement read whole before routing can be sent later. One that streams
                // (chunked, HTTP/2) is not held: a full group answers 503 (below), and otherwise
                // it goes on.
                admission::Admitted::Hold(g, why) if ctx.held.is_some() => {
                    debug!(group = %snap.groups[g].name, reason = why.text(), "submission held");
                    ctx.hold = Some(g);
                    ctx.group = Some(g);
                    return Ok(());
                }
                admission::Admitted::Hold(..) => {}
            }
        }
        let (group, bi) = placed(&snap, &route)?;
        ctx.group = Some(group);
        ctx.picked = Some(bi);
        ctx.backend = Some(snap.backends[bi].clone());
        Ok(())
    }

    /// A browser pinned to a backend (by [`oauth2::PIN_COOKIE`]) stays on it while it is a
    /// routable member of the group its request was routed to: a Web UI login started there
    /// finishes there. The cookie only chooses within that group, so policies still decide.
    fn follow_pin(&self, req: &RequestHeader, ctx: &mut RequestCtx) {
        let (Some(name), Some(g)) = (oauth2::pinned_backend(&req.headers), ctx.group) else {
            return;
        };
        let snap = &ctx.snap;
        let pinned = snap.groups[g].members.iter().copied().find(|&bi| {
            let b = &snap.backends[bi];
            &*b.name == name && strategy::is_routable(snap, b)
        });
        if let Some(bi) = pinned {
            ctx.picked = Some(bi);
            ctx.backend = Some(snap.backends[bi].clone());
            ctx.pin_current = true;
        }
    }

    /// An OAuth2 challenge from the backend: pin its login there before the client sees it, and
    /// make its URIs point at the gateway where the backend built them on its own address.
    async fn learn_challenge(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &RequestCtx,
    ) {
        let Some(backend) = &ctx.backend else {
            return;
        };
        let ttl = ctx.snap.config.proxy.login_ttl.get();
        let challenges: Vec<&str> = resp
            .headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let mut logins = Vec::new();
        for c in &challenges {
            if let Some(login) = oauth2::challenge(c) {
                logins.push(login);
            }
        }
        let rewritten: Option<Vec<String>> = ctx.rewrite_mode.then(|| {
            let rules = self.rewrite_rules(session, ctx);
            challenges
                .iter()
                .map(|c| {
                    oauth2::rewrite_challenge(c, |uri| page_rewrite::rewrite_location(&rules, uri))
                        .unwrap_or_else(|| c.to_string())
                })
                .collect()
        });
        for login in logins {
            debug!(backend = %backend.name, "OAuth2 challenge: login pinned");
            self.gateway.pin_login(login, backend, ttl).await;
        }
        if let Some(values) = rewritten {
            resp.remove_header(&http::header::WWW_AUTHENTICATE);
            for v in values {
                if let Err(e) = resp.append_header(http::header::WWW_AUTHENTICATE, v) {
                    warn!("cannot rewrite a challenge: {e}");
                }
            }
        }
    }

    /// What to rewrite in this request's answer: the backend's own origin (`forwarding: rewrite`)
    /// becomes the gateway's public base; segment URIs on either get the query id.
    fn rewrite_rules(&self, session: &Session, ctx: &RequestCtx) -> page_rewrite::Rules {
        let listener_addr = session.server_addr().and_then(|a| a.as_inet()).copied();
        let public = forwarded::public(&ctx.snap, session.req_header(), listener_addr, self.tls)
            .ok()
            .flatten();
        page_rewrite::Rules {
            backend: ctx
                .backend
                .as_ref()
                .filter(|_| ctx.rewrite_mode)
                .map(|b| page_rewrite::Origin::new(b.tls, &b.host, b.port)),
            forwarded_host: public.as_ref().map(|p| {
                p.host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_ascii_lowercase()
            }),
            public: public.map(|p| p.base()).unwrap_or_default(),
            query_id: ctx.query_id.clone(),
        }
    }

    /// Whether this request's submission is to be answered inline (`spooling: inline` on the
    /// listener or on the group the query was placed in).
    fn inline_spooling(&self, ctx: &RequestCtx) -> bool {
        let inline = |s: Option<Spooling>| s == Some(Spooling::Inline);
        inline(self.listener_config(&ctx.snap).and_then(|l| l.spooling))
            || (ctx.kind == Kind::Submit
                && ctx
                    .group
                    .is_some_and(|g| inline(ctx.snap.groups[g].spooling)))
    }

    fn listener_config<'s>(&self, snap: &'s Snapshot) -> Option<&'s crate::config::ListenerConfig> {
        snap.listener(self.listener_index)
    }

    /// With `user_from_header`, the trusted front proxy's header becomes `X-Trino-User` (and
    /// whatever identity the client claimed is dropped, see
    /// [`admission::CLIENT_IDENTITY_HEADERS`]) before anything looks at the request.
    fn apply_identity(&self, session: &mut Session, ctx: &RequestCtx) -> Result<(), GatewayError> {
        let listener = self.listener_config(&ctx.snap);
        let Some(user) =
            admission::identity(listener, &self.listener, &session.req_header().headers)?
        else {
            return Ok(());
        };
        let req = session.req_header_mut();
        for name in admission::CLIENT_IDENTITY_HEADERS {
            req.remove_header(name);
        }
        req.remove_header(&crate::routing::facts::USER.presto);
        req.insert_header(crate::routing::facts::USER.trino.clone(), user)
            .map_err(|_| GatewayError::bad_request("cannot set X-Trino-User"))?;
        Ok(())
    }

    /// Hold the submission body before routing (and analyze it when a policy reads statements).
    async fn hold_statement(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let snap = ctx.snap.clone();
        let deadline =
            tokio::time::Instant::from_std(ctx.started) + snap.config.proxy.body_timeout.get();
        match submission_body::hold(session, &snap, deadline).await? {
            submission_body::Held::Body(body, query) => {
                ctx.held = Some(body);
                if let Some(query) = query {
                    let outcome = match &query.error {
                        Some(why) => {
                            debug!("statement not analyzed; content conditions do not hold: {why}");
                            "unparsed"
                        }
                        None => "analyzed",
                    };
                    METRICS
                        .statements_analyzed
                        .with_label_values(&[outcome])
                        .inc();
                    ctx.query = Some(Box::new(query));
                }
            }
            submission_body::Held::Skipped(why) => {
                if snap.content_routing {
                    debug!("statement not held; content conditions do not hold: {why}");
                    METRICS
                        .statements_analyzed
                        .with_label_values(&["not_held"])
                        .inc();
                }
            }
        }
        Ok(())
    }

    /// Whether a failed submission attempt may move on to another backend of its group.
    fn can_retry_submission(&self, ctx: &RequestCtx) -> bool {
        ctx.kind == Kind::Submit && self.can_retry(ctx)
    }

    /// Whether a request that reached no backend yet may try another of its group.
    fn can_retry(&self, ctx: &RequestCtx) -> bool {
        ctx.retryable
            && ctx.tried.len() < ctx.snap.config.proxy.max_submit_attempts
            && ctx.group.is_some_and(|g| {
                strategy::has_candidate(&ctx.snap, &ctx.snap.groups[g], &ctx.tried)
            })
    }

    /// Count the end of a query this instance routed (once), for the least-load estimate.
    fn query_finished(&self, ctx: &RequestCtx) {
        if let (Some(id), Some(b)) = (&ctx.query_id, &ctx.backend) {
            if self.gateway.sticky.mark_finished(id) {
                b.runtime
                    .health
                    .finished_since_probe
                    .fetch_add(1, Ordering::Relaxed);
            }
            // Its room (and its place under a running limit) may go to a held query.
            self.gateway.queue.running.finished(id);
            self.gateway.queue.kick();
        }
    }

    /// The history record of a submission the backend accepted.
    fn history_record(
        &self,
        req: &RequestHeader,
        ctx: &RequestCtx,
        query_id: &str,
        sql: Option<Vec<u8>>,
        who: Option<Who>,
    ) -> HistoryRecord {
        // Routing read them (a statement inside a transaction was not routed: read them now;
        // admission already refused routing headers that are not UTF-8).
        let who = who.unwrap_or_else(|| {
            let facts = crate::routing::RequestFacts::from_headers("", &req.headers).ok();
            let header = |v: Option<&str>| v.map(str::to_string);
            Who {
                user: header(facts.as_ref().and_then(|f| f.user)),
                source: header(facts.as_ref().and_then(|f| f.source)),
                client_tags: header(facts.as_ref().and_then(|f| f.client_tags)),
            }
        });
        HistoryRecord {
            query_id: query_id.to_string(),
            submitted_ms: chrono::Utc::now().timestamp_millis(),
            user: who.user,
            source: who.source,
            client_tags: who.client_tags,
            group: ctx.group.map(|g| ctx.snap.groups[g].name.clone()),
            backend: ctx.backend.as_ref().map(|b| b.name.clone()),
            policy: ctx.reason.map(|r| r.policy_label(&ctx.snap)),
            gateway: Some(self.gateway.instance.clone()),
            sql: sql.map(|s| {
                // The captured bytes become the text without a copy when they are UTF-8.
                let mut sql = String::from_utf8(s)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                let end = crate::store::first_chars(&sql, HISTORY_SQL_CHARS).len();
                sql.truncate(end);
                sql
            }),
            statement_type: ctx
                .query
                .as_ref()
                .and_then(|q| q.statement)
                .map(|s| s.as_str().to_string()),
            catalogs: ctx
                .query
                .as_ref()
                .filter(|q| !q.catalogs.is_empty())
                .map(|q| {
                    q.catalogs
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                }),
            queued_ms: ctx
                .handover
                .as_ref()
                .map(|h| i64::try_from(h.waited.as_millis()).unwrap_or(i64::MAX)),
            queued_id: ctx.handover.as_ref().map(|h| h.held_id.to_string()),
        }
    }

    /// Hold the next piece of the submission answer; learn the query once it is whole.
    fn learn_chunk(
        &self,
        session: &Session,
        body: Option<&Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) {
        let Some(learner) = ctx.learner.as_mut() else {
            return;
        };
        if let Some(chunk) = body {
            if learner.buf.len() + chunk.len() > MAX_SUBMISSION_RESPONSE {
                warn!(backend = ctx.backend_name(), "submission response over {MAX_SUBMISSION_RESPONSE} bytes; query id not learned");
                ctx.learner = None;
                return;
            }
            learner.buf.extend_from_slice(chunk);
        }
        // Learn before the last byte goes out: a client may send the first follow-up as soon as it
        // has the whole body, possibly on another connection.
        if end_of_stream || learner.expected.is_some_and(|n| learner.buf.len() >= n) {
            self.learn_from_submission(session.req_header(), ctx);
        }
    }

    fn learn_from_submission(&self, req: &RequestHeader, ctx: &mut RequestCtx) {
        let Some(learner) = ctx.learner.take() else {
            return;
        };
        let Some(backend) = &ctx.backend else { return };
        match Submitted::parse(&learner.buf).map(|a| (a.finished(), a.id)) {
            Ok((finished, Some(id))) => {
                self.gateway.learn_query(&id, backend);
                if let Some(h) = &ctx.handover {
                    self.gateway.queue.handed_over(&h.held_id, &id);
                }
                if let Some(slot) = ctx.slot.take() {
                    let idle = ctx
                        .group
                        .map_or(crate::config::QueueConfig::DEFAULT_CLIENT_TIMEOUT, |g| {
                            ctx.snap.groups[g].queue.client_timeout()
                        });
                    slot.accepted(&id, idle);
                }
                if let Some(h) = &self.gateway.history {
                    let (sql, who) = (ctx.sql.take(), ctx.who.take());
                    h.record(HistoryEvent::Query(Box::new(
                        self.history_record(req, ctx, &id, sql, who),
                    )));
                }
                ctx.query_id = Some(id.into_owned());
                if finished {
                    self.query_finished(ctx);
                }
            }
            Ok((_, None)) => debug!("submission response without a query id"),
            Err(e) => warn!(
                backend = ctx.backend_name(),
                "submission response is not Trino JSON: {e}"
            ),
        }
    }
}

#[async_trait]
impl ProxyHttp for TrinoProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            snap: self.gateway.snapshots.load(),
            started: Instant::now(),
            kind: Kind::Other,
            metric_kind: "other",
            timed: false,
            group: None,
            reason: None,
            backend: None,
            picked: None,
            tried: Vec::new(),
            retryable: false,
            response_started: false,
            inflight: None,
            hold: None,
            slot: None,
            handover: None,
            forward: None,
            accepted: false,
            submission: None,
            key: Vec::new(),
            learner: None,
            page_scan: None,
            rewrite_mode: false,
            rewriter: None,
            inflater: None,
            upstream_path: None,
            statement_page: false,
            query_id: None,
            sql: None,
            sql_complete: false,
            body_bytes: 0,
            held: None,
            query: None,
            who: None,
            login: None,
            browser: false,
            pin_current: false,
            failure: None,
        }
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<bool> {
        client_connection::mark_header_read();
        if crate::hop::looped(&session.req_header().headers) {
            let err = GatewayError::loop_detected();
            warn!(listener = %self.listener, "routing loop: a request came back to this gateway");
            respond(session, &err).await?;
            ctx.failure = Some(err);
            return Ok(true);
        }
        let mut routed = self.apply_identity(session, ctx);
        if routed.is_ok() && submission_body::is_submission(session) {
            routed = self.hold_statement(session, ctx).await;
        }
        let mut routed = routed.and_then(|()| self.route(session, ctx));
        if let (Ok(()), Some(leg)) = (&routed, ctx.login) {
            let ttl = ctx.snap.config.proxy.login_ttl.get();
            let owner = self.gateway.resolve_login(leg, ttl).await;
            match owner.backend() {
                Some(b) => {
                    debug!(leg = leg.kind(), backend = %b.name, source = owner.source(), "login leg resolved");
                    ctx.backend = Some(b.clone());
                }
                None => routed = Err(GatewayError::login_not_found(leg, ttl)),
            }
        }
        if let (Ok(()), Some(g)) = (&routed, ctx.hold) {
            match self.hold_submission(session, ctx, g).await {
                Ok(()) => return Ok(true),
                Err(e) => routed = Err(e),
            }
        }
        // A query some gateway holds in its queue: this instance answers its own, and forwards
        // another instance's to that instance.
        let held = ctx
            .query_id
            .as_deref()
            .filter(|_| ctx.kind == Kind::FollowUp)
            .and_then(crate::query_id::held_id);
        match (&routed, held) {
            (Ok(()), Some((key, tag))) if tag == self.gateway.queue.tag() => {
                match self.follow_held(session, ctx, key).await {
                    Ok(held::Followed::Answered) => return Ok(true),
                    Ok(held::Followed::HandOver) => {}
                    Err(e) => routed = Err(e),
                }
            }
            (Ok(()), Some((_, tag))) => match self.gateway.queue.peers.get(tag) {
                Some(peer) => {
                    METRICS.queue_forwarded.inc();
                    ctx.forward = Some(peer);
                }
                None => {
                    let id = ctx.query_id.as_deref().unwrap_or_default();
                    routed = Err(GatewayError::held_elsewhere(id));
                }
            },
            _ => {}
        }
        if routed.is_ok()
            && ctx.kind == Kind::FollowUp
            && ctx.backend.is_none()
            && ctx.forward.is_none()
        {
            if let Some(id) = &ctx.query_id {
                self.gateway.queue.running.seen(id);
                let owner = self.gateway.resolve_owner(id).await;
                match owner.backend() {
                    Some(b) => {
                        debug!(query_id = %id, backend = %b.name, source = owner.source(), "follow-up resolved");
                        ctx.backend = Some(b.clone());
                    }
                    None => routed = Err(GatewayError::query_not_found(id)),
                }
            }
        }
        match routed {
            Ok(()) => {
                // A body that streams (not held: chunked, or not a submission) is bounded by
                // `proxy.body_timeout` too: each read here, the whole in `request_body_filter`.
                let req = session.req_header();
                if ctx.held.is_none()
                    && !matches!(req.method, Method::GET | Method::HEAD | Method::DELETE)
                    && has_body(req)
                {
                    let limit = ctx.snap.config.proxy.body_timeout.get();
                    session.as_mut().set_read_timeout(Some(limit));
                }
                Ok(false)
            }
            Err(err) => {
                debug!(path = %oauth2::redacted_path(session.req_header().uri.path()), "rejected: {err}");
                respond(session, &err).await?;
                ctx.failure = Some(err);
                Ok(true)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<Box<HttpPeer>> {
        if let Some(peer) = &ctx.forward {
            // The instance holding the query answers it (one attempt: its polls are cheap to repeat).
            return Ok(Box::new(HttpPeer::clone(peer)));
        }
        if let Some(current) = ctx.picked.filter(|p| ctx.tried.contains(p)) {
            // A retry after a connect failure: another backend of the same group.
            let snap = ctx.snap.clone();
            let next = ctx.group.and_then(|g| {
                strategy::select(&snap, &snap.groups[g], &ctx.key, &ctx.tried, true).ok()
            });
            let Some(next) = next else {
                let tried: Vec<&str> = ctx.tried.iter().map(|&b| &*snap.backends[b].name).collect();
                ctx.failure = Some(GatewayError::backend_unreachable(
                    &tried.join(", "),
                    "connection failed to every backend of the group",
                ));
                return Err(Error::explain(
                    ErrorType::ConnectError,
                    "no backend left to try",
                ));
            };
            info!(from = %snap.backends[current].name, to = %snap.backends[next].name, "retrying on another backend");
            ctx.picked = Some(next);
            ctx.backend = Some(snap.backends[next].clone());
        }
        let b = ctx
            .backend
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no backend chosen"))?;

        // Built once per snapshot; a host name's address comes from the background resolver.
        let mut peer = Box::new(b.peer.clone());
        if b.ip.is_none() {
            match b.resolved_address() {
                Some(addr) => {
                    peer._address = pingora_core::protocols::l4::socket::SocketAddr::Inet(addr)
                }
                None => {
                    if let Some(p) = ctx.picked {
                        ctx.tried.push(p);
                    }
                    let retry = self.can_retry(ctx);
                    ctx.upstream_error("resolve", retry);
                    let mut e = Error::explain(
                        ErrorType::ConnectError,
                        format!("cannot resolve {}", b.address),
                    );
                    e.set_retry(retry);
                    return Err(e);
                }
            }
        }
        // Replacing a guard of an earlier attempt settles it.
        ctx.inflight = Some(InFlight::enter(&b.runtime));
        if ctx.kind == Kind::Submit {
            ctx.submission = Some(Started::send(&b.runtime));
        }
        Ok(peer)
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        let status = resp.status.as_u16();
        if ctx.kind == Kind::Submit && matches!(status, 502..=504) {
            // The backend refused the query before creating it (Trino answers 502-504 only from
            // a proxy in front of it or while it cannot take queries): try the next backend,
            // so the client sees one clean answer. If none is left, pass this answer on —
            // Trino clients retry 502/503/504 themselves.
            if let Some(p) = ctx.picked {
                ctx.tried.push(p);
            }
            let retry = self.can_retry_submission(ctx);
            ctx.upstream_error("refused_5xx", retry);
            if retry {
                ctx.submission = None;
                warn!(
                    backend = ctx.backend_name(),
                    status, "submission refused; trying another backend"
                );
                let mut e = Error::explain(
                    ErrorType::HTTPStatus(status),
                    "backend refused the submission",
                );
                e.set_retry(true);
                return Err(e);
            }
        }
        ctx.response_started = true;
        Ok(())
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        if let Some(held) = &ctx.held {
            // The body was read whole before routing; what Pingora replays is only its tail
            // (see `content`): the backend gets the whole statement, on every attempt.
            if ctx.sql.is_none() {
                let head = (HISTORY_SQL_CHARS * 4).min(held.len());
                ctx.sql = Some(held[..head].to_vec());
                ctx.sql_complete = true;
            }
            // A hand-over's request (its client's poll) has no body of its own.
            if body.is_some() || ctx.handover.is_some() {
                *body = Some(held.clone());
            }
            return Ok(());
        }
        let limit = ctx.snap.config.proxy.body_timeout.get();
        if !end_of_stream && ctx.started.elapsed() > limit {
            ctx.failure = Some(GatewayError::statement_timeout(limit));
            return Err(Error::explain(
                ErrorType::HTTPStatus(408),
                "request body not received in time",
            ));
        }
        // Keep the head of the SQL for the history; the body itself streams on unchanged.
        if ctx.kind == Kind::Submit && !ctx.sql_complete {
            // A chunked body declares no length: count it as it streams.
            ctx.body_bytes += body.as_ref().map_or(0, |b| b.len() as u64);
            if ctx.body_bytes > ctx.snap.max_submission_bytes {
                ctx.failure = Some(GatewayError::submission_too_large(
                    ctx.snap.max_submission_bytes,
                ));
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "submission body too large",
                ));
            }
            let head = ctx.sql.get_or_insert_with(Vec::new);
            if let Some(chunk) = body {
                let room = (HISTORY_SQL_CHARS * 4).saturating_sub(head.len());
                head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            ctx.sql_complete = end_of_stream;
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let listener_addr = session.server_addr().and_then(|a| a.as_inet()).copied();
        let backend = ctx.backend.clone();
        let rewrite_mode = backend
            .as_ref()
            .is_some_and(|b| b.forwarding == Forwarding::Rewrite);
        // Edited as plain parts (see `upstream_head`); put back when `head` goes. Headers are
        // removed before any is added, and room is made once for the forwarding headers.
        let mut head = UpstreamHead::open(upstream);
        if let Some(h) = &ctx.handover {
            held::rewrite_head(&mut head, h, ctx.held.as_ref().map_or(0, Bytes::len));
        }
        let statement = ctx.kind == Kind::Submit || ctx.statement_page;
        if ctx.kind == Kind::Submit || (rewrite_mode && statement) {
            // Keep the (small) submission answer uncompressed so its query id can be read, and a
            // rewriting backend's pages so their URIs can be.
            head.headers().remove(ACCEPT_ENCODING);
        }
        if ctx.kind == Kind::Submit
            && self.inline_spooling(ctx)
            && head.headers().contains_key(QUERY_DATA_ENCODING)
        {
            // The cluster answers inline when the client asks for no encoding.
            head.headers().remove(QUERY_DATA_ENCODING);
        }
        if rewrite_mode {
            forwarded::strip(&mut head);
        } else {
            if let Err(e) =
                forwarded::apply(&ctx.snap, &mut head, client_ip, listener_addr, self.tls)
            {
                let (status, failure) = match e {
                    forwarded::ForwardError::Host(h) => {
                        (400, GatewayError::bad_request(h.to_string()))
                    }
                    forwarded::ForwardError::Header(h) => (500, GatewayError::internal(h)),
                };
                ctx.failure = Some(failure);
                return Err(Error::explain(
                    ErrorType::HTTPStatus(status),
                    "forwarding headers",
                ));
            }
        }
        if let Some(b) = &backend {
            // A rewriting backend builds its URIs on its own address, which is what gets replaced.
            if b.rewrite_host || rewrite_mode {
                let host = HeaderValue::from_str(&b.authority).map_err(|e| {
                    Error::because(ErrorType::InternalError, "backend authority", e)
                })?;
                head.headers().insert(HOST, host);
            }
        }
        if let Some(path) = &ctx.upstream_path {
            let uri = http::Uri::try_from(path.as_str())
                .map_err(|e| Error::because(ErrorType::InternalError, "segment path", e))?;
            head.set_uri(uri);
        }
        // A follow-up goes where its query runs, which no loop can be (the submission that
        // would have started it got its 508), so pages skip the marker.
        // A poll forwarded to the instance holding its query carries it: two instances that
        // each think the other holds it answer 508 instead of passing it around.
        if ctx.kind != Kind::FollowUp || ctx.forward.is_some() {
            head.headers()
                .append(http::header::VIA, crate::hop::ELEMENT.clone());
        }
        ctx.rewrite_mode = rewrite_mode;
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<()> {
        if let Some(backend) = &ctx.backend {
            if let Some(txn) = resp
                .headers
                .get(STARTED_TRANSACTION)
                .and_then(|v| v.to_str().ok())
            {
                self.gateway.sticky.learn_transaction(txn, backend);
            }
            if resp.headers.contains_key(CLEAR_TRANSACTION) {
                if let Ok(Some(txn)) = TRANSACTION_ID.get(&session.req_header().headers) {
                    self.gateway.sticky.forget_transaction(txn);
                }
            }
        }
        let status = resp.status.as_u16();
        ctx.observe_head();
        if status == 401 && resp.headers.contains_key(http::header::WWW_AUTHENTICATE) {
            self.learn_challenge(session, resp, ctx).await;
        }
        if ctx.browser && !ctx.pin_current {
            if let Some(b) = &ctx.backend {
                let secure = self.tls
                    || ctx
                        .snap
                        .config
                        .proxy
                        .external_url
                        .as_deref()
                        .is_some_and(|u| u.starts_with("https:"));
                resp.append_header(
                    http::header::SET_COOKIE,
                    oauth2::pin_cookie(&b.name, secure),
                )?;
            }
        }
        if ctx.kind == Kind::Submit && status == 200 {
            let policy = ctx.reason.map(|r| r.policy_name(&ctx.snap)).unwrap_or("-");
            METRICS
                .queries_submitted
                .with_label_values(&[ctx.group_name(), ctx.backend_name(), policy])
                .inc();
        }
        if ctx.kind == Kind::FollowUp && ctx.query_id.is_some() {
            let method = &session.req_header().method;
            if *method == Method::DELETE && (200..300).contains(&status) {
                self.query_finished(ctx); // canceled
            } else if ctx.statement_page && matches!(status, 404 | 410) {
                self.query_finished(ctx); // gone on the backend
            } else if ctx.statement_page && *method == Method::GET && status == 200 {
                ctx.page_scan =
                    PageScan::new(resp.headers.get(CONTENT_ENCODING).map(|v| v.as_bytes()));
            }
        }
        if ctx.kind == Kind::Submit {
            if status == 200 {
                ctx.accepted = true;
                if let Some(s) = ctx.submission.as_mut() {
                    s.accepted();
                }
            } else {
                // Not started after all: dropping the guard takes its count back.
                ctx.submission = None;
            }
        }
        if ctx.rewrite_mode && resp.headers.contains_key(http::header::LOCATION) {
            let rules = self.rewrite_rules(session, ctx);
            let moved = resp
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| page_rewrite::rewrite_location(&rules, l));
            if let Some(l) = moved {
                resp.insert_header(http::header::LOCATION, l)?;
            }
        }
        if ctx.kind == Kind::Submit && status == 200 {
            let encoded = resp
                .headers
                .get(CONTENT_ENCODING)
                .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
            if encoded {
                warn!(
                    backend = ctx.backend_name(),
                    "compressed submission response; query id not learned"
                );
            } else {
                let expected = resp
                    .headers
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok());
                ctx.learner = Some(Learner {
                    buf: Vec::with_capacity(expected.unwrap_or(4096).min(MAX_SUBMISSION_RESPONSE)),
                    expected,
                });
            }
        }
        let statement = ctx.kind == Kind::Submit || ctx.statement_page;
        // Trino names the encoding on every answer of a spooled query: only those carry segment
        // URIs, and only those (or a rewriting backend's) are looked into.
        if statement
            && status == 200
            && (ctx.rewrite_mode || resp.headers.contains_key(QUERY_DATA_ENCODING))
            && session.req_header().method != Method::HEAD
        {
            let encoding = resp.headers.get(CONTENT_ENCODING).map(|v| v.as_bytes());
            let identity = encoding.is_none_or(|e| e.eq_ignore_ascii_case(b"identity"));
            let inflater = if identity {
                None
            } else {
                encoding.and_then(page_rewrite::Inflater::new)
            };
            if identity || inflater.is_some() {
                ctx.rewriter = Some(Box::new(page_rewrite::PageRewriter::new(
                    self.rewrite_rules(session, ctx),
                )));
                if inflater.is_some() {
                    // A compressed spooled page (small: the rows are in its segments) goes on
                    // inflated.
                    resp.remove_header(&CONTENT_ENCODING);
                    ctx.inflater = inflater;
                }
                // The length changes as URIs do: stream the page chunked instead.
                if resp.remove_header(&CONTENT_LENGTH).is_some()
                    && session.req_header().version == http::Version::HTTP_11
                    && !session.is_http2()
                {
                    resp.insert_header(TRANSFER_ENCODING, "chunked")?;
                }
            } else {
                METRICS.rewrite_skipped.inc();
                warn!(
                    backend = ctx.backend_name(),
                    "statement page in an encoding the gateway cannot read: URIs not rewritten"
                );
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> pingora_error::Result<Option<Duration>> {
        if let Some(scan) = ctx.page_scan.as_mut() {
            let mut verdict = body.as_ref().map_or(Verdict::Undecided, |b| scan.feed(b));
            if verdict == Verdict::Undecided && end_of_stream {
                verdict = scan.finish();
            }
            if verdict != Verdict::Undecided {
                ctx.page_scan = None;
                if verdict == Verdict::Finished {
                    self.query_finished(ctx);
                }
            }
        }
        if ctx.learner.is_some() {
            self.learn_chunk(session, body.as_ref(), end_of_stream, ctx);
        }
        if let Some(rw) = ctx.rewriter.as_mut() {
            let plain = match ctx.inflater.as_mut() {
                Some(inf) => Some(
                    inf.inflate(body.as_deref().unwrap_or_default(), end_of_stream)
                        .map_err(|e| {
                            Error::because(ErrorType::ReadError, "corrupt compressed page", e)
                        })?,
                ),
                None => body.clone(),
            };
            let mut out = match plain.as_ref() {
                Some(chunk) => rw.feed(chunk),
                None => Bytes::new(),
            };
            if end_of_stream {
                if let Some(rest) = rw.finish() {
                    let mut all = bytes::BytesMut::from(&out[..]);
                    all.extend_from_slice(&rest);
                    out = all.freeze();
                }
                if rw.rewritten > 0 {
                    METRICS.uris_rewritten.inc_by(u64::from(rw.rewritten));
                }
            }
            *body = (!out.is_empty() || body.is_some()).then_some(out);
        }
        Ok(None)
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        if ctx.kind == Kind::Submit && !ctx.response_started {
            if matches!(e.etype(), ErrorType::HTTPStatus(_)) && e.retry() {
                return e; // our own decision in `upstream_response_filter`
            }
            // A reset or close before any answer: the query may not exist anywhere, so move it
            // to another backend if its body can be replayed.
            if let Some(p) = ctx.picked.filter(|p| !ctx.tried.contains(p)) {
                ctx.tried.push(p);
            }
            let retry =
                !session.as_ref().retry_buffer_truncated() && self.can_retry_submission(ctx);
            ctx.upstream_error(UpstreamFailure::of(&e).label(), retry);
            e.set_retry(retry);
            return e;
        }
        // Pingora's default: only idempotent requests, and only on a reused connection.
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        if e.esource() == &ErrorSource::Upstream {
            ctx.upstream_error(UpstreamFailure::of(&e).label(), e.retry());
        }
        e
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        warn!(backend = ctx.backend_name(), peer = %peer, "connect failed: {e}");
        if let Some(p) = ctx.picked {
            ctx.tried.push(p);
        }
        // Nothing has been sent yet, so a new query can safely go to another backend of its group.
        // Follow-ups must not: their query lives on this backend only.
        let retry = self.can_retry(ctx);
        ctx.upstream_error(UpstreamFailure::of(&e).label(), retry);
        e.set_retry(retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let err = ctx.failure.clone().or_else(|| match e.esource() {
            ErrorSource::Upstream => Some(match e.etype() {
                ErrorType::ReadTimedout | ErrorType::WriteTimedout => {
                    GatewayError::backend_timeout(ctx.backend_name())
                }
                // The client learns the backend's name and what went wrong, not its address
                // (that goes to the log).
                _ => {
                    warn!(backend = ctx.backend_name(), "backend unreachable: {e}");
                    GatewayError::backend_unreachable(
                        ctx.backend_name(),
                        UpstreamFailure::of(e).reason(),
                    )
                }
            }),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => None,
                // The body stopped arriving (the read timeout is `proxy.body_timeout`).
                ErrorType::ReadTimedout => Some(GatewayError::statement_timeout(
                    ctx.snap.config.proxy.body_timeout.get(),
                )),
                _ => Some(GatewayError::bad_request(format!(
                    "malformed request: {}",
                    e.etype().as_str()
                ))),
            },
            ErrorSource::Internal | ErrorSource::Unset => match e.etype() {
                ErrorType::HTTPStatus(code) if (400..500).contains(code) => Some(
                    GatewayError::bad_request(format!("request rejected: {}", e.etype().as_str())),
                ),
                _ => Some(GatewayError::internal(format!(
                    "gateway error: {}",
                    e.etype().as_str()
                ))),
            },
        });
        let code = match &err {
            Some(err) if session.response_written().is_none() => {
                if let Err(we) = respond(session, err).await {
                    debug!("could not send error response: {we}");
                }
                err.status
            }
            Some(err) => err.status,
            None => 0,
        };
        if ctx.failure.is_none() {
            ctx.failure = err;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        // Settle this request's counts now (the context itself may live a little longer).
        ctx.inflight = None;
        ctx.submission = None;
        if let Some(h) = ctx.handover.as_ref().filter(|_| !ctx.accepted) {
            // No backend created the query: it waits in the queue again.
            self.gateway.queue.hand_over_failed(&h.held_id);
        }
        // Pingora keeps an idle HTTP/1.1 connection open forever by default; bound it, so idle
        // or trickling clients cannot pile up connections. (Kept across reuses of the connection.)
        if session.get_keepalive().is_some() {
            let idle = ctx.snap.config.proxy.client_idle_timeout.get();
            session.set_keepalive(Some(idle.as_secs().max(1)));
        }
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        ctx.observe_head(); // answers the gateway wrote itself
        METRICS
            .requests
            .with_label_values(&[
                &*self.listener,
                ctx.metric_kind,
                ctx.group_name(),
                ctx.backend_name(),
                &status_label(status),
            ])
            .inc();
        let elapsed_ms = ctx.started.elapsed().as_secs_f64() * 1000.0;
        let group = ctx.group.map(|g| &*ctx.snap.groups[g].name).unwrap_or("-");
        if ctx.kind == Kind::Submit && tracing::enabled!(tracing::Level::INFO) {
            // The line's fields are looked up only when it is written.
            let headers = &session.req_header().headers;
            let user = crate::routing::facts::USER
                .get(headers)
                .ok()
                .flatten()
                .unwrap_or("-");
            let source = crate::routing::facts::SOURCE
                .get(headers)
                .ok()
                .flatten()
                .unwrap_or("-");
            info!(
                query_id = ctx.query_id.as_deref().unwrap_or("-"),
                user,
                source,
                group,
                backend = ctx.backend_name(),
                policy = ctx.reason.map(|r| r.policy_name(&ctx.snap)).unwrap_or("-"),
                status,
                elapsed_ms,
                "query submitted"
            );
        } else if let Some(failure) = &ctx.failure {
            info!(
                path = %oauth2::redacted_path(session.req_header().uri.path()),
                backend = ctx.backend_name(),
                status,
                error = failure.name,
                "request failed: {}",
                failure.message
            );
        } else if let Some(e) = e {
            debug!(
                backend = ctx.backend_name(),
                status, "request ended with error: {e}"
            );
        }
    }
}
