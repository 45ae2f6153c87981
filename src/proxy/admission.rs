//! What a request not tied to a query must pass before it is routed, in the order the proxy
//! applies it: the trusted identity header, the statement size, a transaction's owner, a required
//! user. One place for both the proxy and the routing dry run (`POST /api/v1/route`), so that the
//! dry run can never say "group adhoc, backend b1" where the proxy answers 400 or 413.

use http::{HeaderMap, HeaderValue};

use super::error::GatewayError;
use crate::config::ListenerConfig;
use crate::queue::running::{limits_of, Slot};
use crate::queue::Queue;
use crate::routing::facts::RequestFacts;
use crate::routing::query::QueryProperties;
use crate::routing::strategy::Unavailable;
use crate::routing::{route, Route};
use crate::snapshot::Snapshot;

/// The one decision for a request not tied to a query, made by the proxy and by the dry run
/// (`POST /api/v1/route`) alike: refused (`Err`), inside a transaction, or routed.
pub enum Decision<'h> {
    /// A statement inside this transaction: it goes where the transaction started.
    Transaction(&'h str),
    /// Routed by policies and the group's strategy on these facts.
    Route(RequestFacts<'h>, Route),
}

/// What `decide` knows of a submission's body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Submission<'h> {
    /// `Content-Length`, when the request declares one.
    pub declared_length: Option<u64>,
    /// What the statement touches, when a policy on query content made the proxy read it.
    pub query: Option<&'h QueryProperties>,
}

/// The checks after the identity — a submission's declared size, the transaction header, a
/// required user on submissions — then the route, on the headers and (when a policy reads it)
/// what the statement touches. With `advance` false nothing moves (no rotation turns): the dry
/// run.
pub fn decide<'h>(
    snap: &Snapshot,
    listener: Option<&ListenerConfig>,
    listener_name: &'h str,
    headers: &'h HeaderMap,
    submission: Option<Submission<'h>>,
    advance: bool,
) -> Result<Decision<'h>, GatewayError> {
    let declared_length = submission.and_then(|s| s.declared_length);
    if declared_length.is_some_and(|n| n > snap.max_submission_bytes) {
        return Err(GatewayError::submission_too_large(
            snap.max_submission_bytes,
        ));
    }
    let not_utf8 = |h| GatewayError::bad_request(format!("header {h} is not valid UTF-8"));
    let mut facts = RequestFacts::from_headers(listener_name, headers).map_err(not_utf8)?;
    facts.query = submission.and_then(|s| s.query);
    let txn = facts
        .transaction
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("none"));
    if let Some(txn) = txn {
        return Ok(Decision::Transaction(txn));
    }
    if submission.is_some()
        && facts.user.is_none_or(str::is_empty)
        && listener.is_some_and(|l| l.require_user)
    {
        return Err(GatewayError::missing_user(listener_name));
    }
    let r = route(snap, &facts, advance);
    Ok(Decision::Route(facts, r))
}

/// Why a routed submission waits in the gateway's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// Every backend of the group (and of its fallback) is at its concurrency limit.
    AllFull,
    /// Queries of the group already wait: it waits behind them.
    Behind,
    /// Its user or source is at a running limit.
    AtLimit,
}

impl HoldReason {
    pub fn text(self) -> &'static str {
        match self {
            HoldReason::AllFull => "every backend of the group is at its concurrency limit",
            HoldReason::Behind => "queries of the group already wait: it waits behind them",
            HoldReason::AtLimit => "its user or source is at a running limit",
        }
    }
}

/// After routing, whether a submission goes on or waits in the gateway's queue.
pub enum Admitted {
    /// It goes to the backend routing placed it on, holding its place under any running limit.
    Go(Option<Slot>),
    /// It waits in this group's queue.
    Hold(usize, HoldReason),
}

/// The one admission decision for a routed submission, made by the proxy and (with `advance`
/// false: no running slot is taken) the dry run alike. Nothing waiting and no running limit
/// configured anywhere: one atomic load and a flag of the snapshot, nothing else.
pub fn admit(
    snap: &Snapshot,
    queue: &Queue,
    route: &Route,
    user: Option<&str>,
    source: Option<&str>,
    advance: bool,
) -> Admitted {
    match route.placement {
        Ok(_) if queue.waiting() == 0 && !snap.running_limits => Admitted::Go(None),
        // A draining gateway holds nothing more: clients retry the 503 elsewhere.
        _ if queue.is_closed() => Admitted::Go(None),
        Err((g, Unavailable::AllFull)) if snap.groups[g].queue.max_queued() > 0 => {
            Admitted::Hold(g, HoldReason::AllFull)
        }
        Err(_) => Admitted::Go(None),
        Ok(_) => {
            let g = route.group;
            if snap.groups[g].queue.max_queued() > 0 && queue.group_waiting(&snap.groups[g].name) {
                return Admitted::Hold(g, HoldReason::Behind);
            }
            if !snap.running_limits {
                return Admitted::Go(None);
            }
            let limits = limits_of(snap, g, route.reason, user, source);
            if limits.is_empty() {
                return Admitted::Go(None);
            }
            if !advance {
                return match queue.running.may_start(&limits) {
                    true => Admitted::Go(None),
                    false => Admitted::Hold(g, HoldReason::AtLimit),
                };
            }
            match queue.running.try_start(limits) {
                Some(slot) => Admitted::Go(Some(slot)),
                // At a limit: it waits (with `max_queued: 0` the queue refuses it as full).
                None => Admitted::Hold(g, HoldReason::AtLimit),
            }
        }
    }
}

/// The answer when group `group` cannot take a new query.
pub fn unavailable(snap: &Snapshot, group: usize, why: Unavailable) -> GatewayError {
    let name = &snap.groups[group].name;
    match why {
        Unavailable::AllFull => GatewayError::all_full(name),
        Unavailable::NoneHealthy => GatewayError::no_backend(name),
    }
}

/// Request headers that claim an identity beside the one a trusted proxy vouches for. On a
/// listener with `user_from_header` the client's own are removed before anything reads the
/// request (`Authorization` included: that proxy authenticated the user; the backend trusts the
/// gateway), and a `Connection` header may not nominate them (see [`identity`]).
pub const CLIENT_IDENTITY_HEADERS: [&str; 9] = [
    "authorization",
    "x-trino-original-user",
    "x-presto-original-user",
    "x-trino-authorization-user",
    "x-presto-authorization-user",
    "x-trino-original-roles",
    "x-presto-original-roles",
    "x-trino-role",
    "x-presto-role",
];

/// With `user_from_header` on the listener, the value that becomes `X-Trino-User` (whatever user
/// the client claimed is dropped); `None` when the listener has no such header. A request without
/// it is refused (401); one with two values of it (two header lines, or a comma list a proxy
/// merged), or whose `Connection` header nominates an `X-Trino-*`/`X-Presto-*` or identity header
/// (which would remove it on the way to the backend), is refused (400).
pub fn identity(
    listener: Option<&ListenerConfig>,
    listener_name: &str,
    headers: &HeaderMap,
) -> Result<Option<HeaderValue>, GatewayError> {
    let Some(header) = listener.and_then(|l| l.user_from_header.as_deref()) else {
        return Ok(None);
    };
    let mut values = headers.get_all(header).iter();
    let value = values
        .next()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| GatewayError::unauthenticated(listener_name, header))?;
    if values.next().is_some() || value.as_bytes().contains(&b',') {
        return Err(GatewayError::ambiguous_identity(format!(
            "the request carries more than one value of {header}"
        )));
    }
    for v in headers.get_all(http::header::CONNECTION) {
        let v = v
            .to_str()
            .map_err(|_| GatewayError::bad_request("header Connection is not valid UTF-8"))?;
        for token in v.split(',').map(str::trim) {
            let lower = token.to_ascii_lowercase();
            let identity = lower.starts_with("x-trino-")
                || lower.starts_with("x-presto-")
                || lower.eq_ignore_ascii_case(header)
                || CLIENT_IDENTITY_HEADERS.contains(&lower.as_str());
            if identity {
                let shown: String = token.chars().take(64).collect();
                return Err(GatewayError::ambiguous_identity(format!(
                    "the Connection header nominates {shown}, which this listener sets itself"
                )));
            }
        }
    }
    Ok(Some(value.clone()))
}
