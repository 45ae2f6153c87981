//! The submission body, held at the gateway before a backend is chosen or connected to.
//!
//! The proxy reads a submission's body whole in `request_filter` — bounded by
//! `proxy.max_submission_bytes`, and in time by `proxy.body_timeout` counted from the request's
//! head — and sends it on unchanged. So a client that trickles its statement holds no backend
//! connection (it holds only its own, until the deadline), and a policy on what a statement
//! touches (`match.statement`, `catalogs_any`, ...) can read it before the route is decided
//! (analyzed only while some policy needs it, [`Snapshot::content_routing`]).
//!
//! Pingora sends a body it has already read only from its retry buffer (64 KiB), and nothing at
//! all once that buffer overflowed. So the retry buffer is switched on for the body's last
//! ≤ 64 KiB only (Pingora reads a body in chunks of at most 64 KiB, so it never overflows, and
//! this is checked); Pingora then replays that tail to the backend, and the proxy's
//! `request_body_filter` sends the whole held body in its place — on the first attempt and on
//! each retry on another backend alike.

use bytes::{Bytes, BytesMut};
use http::header::{EXPECT, TRANSFER_ENCODING};
use pingora_proxy::Session;

use super::error::GatewayError;
use crate::routing::query::QueryProperties;
use crate::snapshot::Snapshot;

/// Pingora's retry buffer (`BODY_BUF_LIMIT` in pingora-core).
const RETRY_BUFFER: usize = 64 * 1024;

/// What became of a submission body.
pub enum Held {
    /// Read whole (and analyzed when a policy reads statements).
    Body(Bytes, Option<QueryProperties>),
    /// Not read here (it streams, bounded in time by the proxy); content conditions are not
    /// evaluated for this request, for this reason.
    Skipped(&'static str),
}

/// Read the body of a submission (`POST /v1/statement`) by `deadline`, and analyze it when a
/// policy reads statements.
pub async fn hold(
    session: &mut Session,
    snap: &Snapshot,
    deadline: tokio::time::Instant,
) -> Result<Held, GatewayError> {
    if session.is_http2() {
        return Ok(Held::Skipped("an HTTP/2 request body is not held"));
    }
    let req = session.req_header();
    if req.headers.contains_key(TRANSFER_ENCODING) {
        return Ok(Held::Skipped(
            "a chunked request body (no Content-Length) is not held",
        ));
    }
    let len = match super::declared_length(req) {
        None | Some(0) => return Ok(Held::Skipped("the request has no statement body")),
        // Refused with 413 by the admission that follows.
        Some(n) if n > snap.max_submission_bytes => {
            return Ok(Held::Skipped(
                "the statement is over proxy.max_submission_bytes",
            ))
        }
        Some(n) => usize::try_from(n).map_err(|_| GatewayError::submission_too_large(n))?,
    };
    let expects_continue = req
        .headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        // The client waits for this before it sends the body; the backend must not send it again.
        session.req_header_mut().remove_header(&EXPECT);
        session
            .as_mut()
            .write_continue_response()
            .await
            .map_err(|e| GatewayError::bad_request(format!("cannot answer 100-continue: {e}")))?;
    }
    let wait = snap.config.proxy.body_timeout.get();
    // The common case — the whole statement in one read — keeps that chunk as it is.
    let mut first: Option<Bytes> = None;
    let mut body = BytesMut::new();
    let mut read = 0usize;
    // Pingora marks the body complete with its last byte, so the loop stops there without
    // another read (and another timer) just to be told so.
    while read < len {
        if len - read <= RETRY_BUFFER {
            session.as_mut().enable_retry_buffering();
        }
        // Pingora bounds each read by the session's read timeout (it keeps a timer for that
        // anyway): set it to what is left of the deadline instead of adding a timer of our own.
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(GatewayError::statement_timeout(wait));
        }
        session.as_mut().set_read_timeout(Some(left));
        let chunk = match session.as_mut().read_request_body().await {
            Err(e) if matches!(e.etype(), pingora_error::ErrorType::ReadTimedout) => {
                return Err(GatewayError::statement_timeout(wait))
            }
            Err(e) => {
                return Err(GatewayError::bad_request(format!(
                    "the statement could not be read: {}",
                    e.etype().as_str()
                )))
            }
            Ok(None) => break,
            Ok(Some(chunk)) => chunk,
        };
        if read + chunk.len() > len {
            return Err(GatewayError::bad_request(
                "the request body is longer than its Content-Length",
            ));
        }
        read += chunk.len();
        match first.take() {
            None if body.is_empty() => first = Some(chunk),
            earlier => {
                if body.is_empty() {
                    body.reserve(len);
                }
                if let Some(earlier) = earlier {
                    body.extend_from_slice(&earlier);
                }
                body.extend_from_slice(&chunk);
            }
        }
    }
    if read != len {
        return Err(GatewayError::bad_request(format!(
            "the request body ended after {read} of {len} bytes"
        )));
    }
    if session.as_ref().retry_buffer_truncated() {
        // Pingora would have nothing to replay: the body could not be sent on.
        return Err(GatewayError::internal(
            "the held statement cannot be forwarded (the retry buffer overflowed)",
        ));
    }
    let body = first.unwrap_or_else(|| body.freeze());
    let query = snap
        .content_routing
        .then(|| QueryProperties::analyze(&body, &session.req_header().headers));
    Ok(Held::Body(body, query))
}

/// A new query (`POST /v1/statement`), as [`super::target::classify`] names it, checked without
/// classifying the whole path.
pub fn is_submission(session: &Session) -> bool {
    let req = session.req_header();
    req.method == http::Method::POST && matches!(req.uri.path(), "/v1/statement" | "/v1/statement/")
}
