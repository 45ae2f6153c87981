//! The proxy's side of the gateway's queue ([`crate::queue`]): holding a submission and
//! answering `QUEUED`; the polls of a held query, answered here until its hand-over, when the
//! poll itself goes to the granted backend as the submission (the client's original headers and
//! statement; the backend's first page is the poll's answer); and its cancel.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use http::{HeaderValue, Method};
use pingora_http::ResponseHeader;
use pingora_proxy::Session;
use tracing::debug;

use super::error::GatewayError;
use super::upstream_head::UpstreamHead;
use super::{forwarded, Kind, RequestCtx, TrinoProxy, Who};
use crate::queue::running::limits_of;
use crate::queue::{page, Hold, Polled, Queue, StoredHeaders, Ticket, POLL_WAIT};
use crate::routing::{self, RouteReason};

/// A held query being handed over: this request (its client's poll) goes to the backend as the
/// query's submission.
pub struct HandOver {
    /// The submission's headers, sent instead of the poll's.
    pub headers: StoredHeaders,
    /// The id the client saw while the query was held.
    pub held_id: Arc<str>,
    pub waited: Duration,
}

/// What became of a request for a held query.
pub enum Followed {
    /// Answered here (a `QUEUED` or failed page, a cancel).
    Answered,
    /// Handed over: the request continues to the backend as the submission.
    HandOver,
}

/// `/v1/statement/queued/{id}/{slug}/{token}` → the slug.
fn poll_slug(path: &str) -> Option<&str> {
    let mut parts = path.strip_prefix("/v1/statement/queued/")?.split('/');
    let (_id, slug, _token) = (parts.next()?, parts.next()?, parts.next()?);
    parts.next().is_none().then_some(slug)
}

/// The gateway's own answer to a request for a held query: `body` (JSON, or nothing), and a
/// `Location` for a redirect.
async fn write_page(
    session: &mut Session,
    status: u16,
    location: Option<String>,
    body: Bytes,
) -> Result<(), GatewayError> {
    let io =
        |e: Box<pingora_error::Error>| GatewayError::internal(format!("writing an answer: {e}"));
    let mut resp = ResponseHeader::build(status, Some(3)).map_err(io)?;
    if let Some(to) = location {
        resp.insert_header(http::header::LOCATION, to).map_err(io)?;
    }
    if !body.is_empty() {
        resp.insert_header("content-type", "application/json")
            .map_err(io)?;
    }
    resp.insert_header(CONTENT_LENGTH, body.len().to_string())
        .map_err(io)?;
    let head_only = session.req_header().method == Method::HEAD || body.is_empty();
    session
        .write_response_header(Box::new(resp), head_only)
        .await
        .map_err(io)?;
    if !head_only {
        session
            .write_response_body(Some(body), true)
            .await
            .map_err(io)?;
    }
    Ok(())
}

impl TrinoProxy {
    /// The gateway's public origin for URIs it builds itself, as backends are told it.
    fn public_base(&self, session: &Session, ctx: &RequestCtx) -> Result<String, GatewayError> {
        let listener_addr = session.server_addr().and_then(|a| a.as_inet()).copied();
        match forwarded::public(&ctx.snap, session.req_header(), listener_addr, self.tls) {
            Ok(Some(p)) => Ok(p.base()),
            Ok(None) => Err(GatewayError::bad_request(
                "the request names no host (Host header) to build the gateway's URIs on",
            )),
            Err(e) => Err(GatewayError::bad_request(e.to_string())),
        }
    }

    /// Hold the submission that routing put on hold in `group`, and answer `QUEUED` — or
    /// `QUERY_QUEUE_FULL` when the group's queue is full.
    pub(super) async fn hold_submission(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        group: usize,
    ) -> Result<(), GatewayError> {
        let snap = ctx.snap.clone();
        let Some(body) = ctx.held.clone() else {
            // Not reached: routing holds only statements read whole (see `route_new`).
            return Err(GatewayError::all_full(&snap.groups[group].name));
        };
        let base = self.public_base(session, ctx)?;
        let who = ctx.who.take().unwrap_or(Who {
            user: None,
            source: None,
            client_tags: None,
        });
        let reason = ctx.reason.unwrap_or(RouteReason::Default);
        let (priority, policy) = match reason {
            RouteReason::Policy(i) => {
                let p = &snap.policies[i];
                (p.queue.priority.unwrap_or(0), Some(p.name.clone()))
            }
            _ => (0, None),
        };
        let limits = limits_of(
            &snap,
            group,
            reason,
            who.user.as_deref(),
            who.source.as_deref(),
        );
        let headers = StoredHeaders::keep(
            &session.req_header().headers,
            &[CONTENT_LENGTH, TRANSFER_ENCODING, EXPECT, CONNECTION],
        );
        // Its own copy: the statement may be a slice of the connection's read buffer.
        let body = Bytes::copy_from_slice(&body);
        let hold = Hold {
            group,
            fallback: routing::fallback_of(&snap, group, reason),
            priority,
            limits,
            ticket: Box::new(Ticket {
                headers,
                body,
                query: ctx.query.take(),
                user: who.user,
                source: who.source,
                client_tags: who.client_tags,
                reason,
                policy,
                key: std::mem::take(&mut ctx.key),
            }),
        };
        let queue = &self.gateway.queue;
        let page = match queue.hold(&snap, hold) {
            Ok(held) => {
                ctx.query_id = Some(held.id.to_string());
                page::queued(&base, &held.id, &held.slug, held.token, 0)
            }
            Err(err) => {
                let id = queue.failed_id();
                ctx.query_id = Some(id.to_string());
                page::failed(&base, &id, &err, 0)
            }
        };
        // The statement was read whole: the connection stays open for the polls.
        write_page(session, 200, None, page).await
    }

    /// A request for held query `id` of this instance: a poll (answered here, or handed over),
    /// a cancel, or anything else (not found: a held query has no Trino pages yet).
    pub(super) async fn follow_held(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        key: u64,
    ) -> Result<Followed, GatewayError> {
        let id = ctx.query_id.clone().unwrap_or_default();
        let path = session.req_header().uri.path().to_string();
        let method = session.req_header().method.clone();
        let queue: &Queue = &self.gateway.queue;
        let slug = poll_slug(&path);
        if slug.is_none() {
            if let Some(real) = queue.real_id(key) {
                // Handed over: the held id (the Python client's `query_id`) leads to the query's
                // own pages — `/v1/query/{id}`, `/ui/query.html?{id}` — by a redirect that keeps
                // the method.
                let req = session.req_header();
                let target = match req.uri.query() {
                    Some(q) => format!("{}?{}", req.uri.path(), q),
                    None => req.uri.path().to_string(),
                };
                let location = target.replace(id.as_str(), &real);
                write_page(session, 307, Some(location), Bytes::new()).await?;
                return Ok(Followed::Answered);
            }
        }
        if method == Method::DELETE {
            // `DELETE nextUri` (or `/v1/query/{id}`): nothing was sent anywhere yet.
            if queue.cancel(key, slug) {
                write_page(session, 204, None, Bytes::new()).await?;
                return Ok(Followed::Answered);
            }
            return Err(GatewayError::query_not_found(&id));
        }
        let Some(slug) = slug.filter(|_| matches!(method, Method::GET | Method::HEAD)) else {
            if queue.holds(key) {
                return Err(GatewayError::held_without_pages(&id));
            }
            return Err(GatewayError::query_not_found(&id));
        };
        if method == Method::HEAD {
            // A heartbeat: it keeps the query alive, and never takes the hand-over (the answer to
            // a HEAD has no body, so the client would never see the query's first page).
            if !queue.touch(key, slug) {
                return Err(GatewayError::query_not_found(&id));
            }
            write_page(session, 200, None, Bytes::new()).await?;
            return Ok(Followed::Answered);
        }
        let base = self.public_base(session, ctx)?;
        match queue.poll(key, slug, POLL_WAIT).await {
            Polled::Waiting { held, elapsed } => {
                let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                let body = page::queued(&base, &held.id, &held.slug, held.token, ms);
                write_page(session, 200, None, body).await?;
                Ok(Followed::Answered)
            }
            Polled::Failed { err, elapsed } => {
                let ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                write_page(session, 200, None, page::failed(&base, &id, &err, ms)).await?;
                Ok(Followed::Answered)
            }
            Polled::Unknown => Err(GatewayError::query_not_found(&id)),
            Polled::Claimed(claim) => {
                let claim = *claim;
                let snap = ctx.snap.clone();
                let grant = *claim.grant;
                let ticket = *claim.ticket;
                let group = snap.group_by_name(&grant.group);
                let picked = snap
                    .backends
                    .iter()
                    .position(|b| b.name == grant.backend.name);
                debug!(query_id = %claim.id, backend = %grant.backend.name, waited_ms = claim.waited.as_millis(), "held query handed over");
                ctx.kind = Kind::Submit;
                ctx.metric_kind = "submit";
                ctx.statement_page = false;
                ctx.query_id = None;
                ctx.group = group;
                ctx.reason = Some(ticket.reason_in(&snap));
                // Retries on another backend of the group need the group and the index.
                ctx.retryable = group.is_some() && picked.is_some();
                ctx.picked = picked;
                ctx.backend = Some(grant.backend);
                ctx.submission = Some(grant.started);
                ctx.slot = grant.slot;
                ctx.key = ticket.key;
                ctx.held = Some(ticket.body);
                ctx.query = ticket.query;
                ctx.who = Some(Who {
                    user: ticket.user,
                    source: ticket.source,
                    client_tags: ticket.client_tags,
                });
                ctx.handover = Some(Box::new(HandOver {
                    headers: ticket.headers,
                    held_id: claim.id,
                    waited: claim.waited,
                }));
                Ok(Followed::HandOver)
            }
        }
    }
}

/// The poll becomes the submission: `POST /v1/statement` with the submission's headers and a
/// body of the statement's length (sent by `request_body_filter`).
pub(super) fn rewrite_head(head: &mut UpstreamHead<'_>, handover: &HandOver, body_len: usize) {
    head.set_method(Method::POST);
    head.set_uri(http::Uri::from_static("/v1/statement"));
    *head.headers() = handover.headers.to_map();
    head.headers()
        .insert(CONTENT_LENGTH, HeaderValue::from(body_len));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_paths() {
        assert_eq!(
            poll_slug("/v1/statement/queued/20261130_101010_00001_0abcd/yslug/3"),
            Some("yslug")
        );
        assert_eq!(poll_slug("/v1/statement/queued/x/y"), None);
        assert_eq!(poll_slug("/v1/statement/executing/x/y/1"), None);
        assert_eq!(poll_slug("/v1/statement/queued/x/y/1/2"), None);
    }
}
