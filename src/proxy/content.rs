//! The submission body, held for policies on query content.
//!
//! A policy on what a statement touches (`match.statement`, `catalogs_any`, ...) needs the
//! statement before a backend is chosen, so the proxy reads the body whole in `request_filter` —
//! only while some policy needs it ([`Snapshot::content_routing`]), and bounded by
//! `proxy.max_submission_bytes` — analyzes it, and sends it on unchanged.
//!
//! Pingora sends a body it has already read only from its retry buffer (64 KiB), and nothing at
//! all once that buffer overflowed. So the retry buffer is switched on for the body's last
//! ≤ 64 KiB only (Pingora reads a body in chunks of at most 64 KiB, so it never overflows, and
//! this is checked); Pingora then replays that tail to the backend, and the proxy's
//! `request_body_filter` sends the whole held body in its place — on the first attempt and on
//! each retry on another backend alike.

use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING};
use pingora_proxy::Session;

use super::error::GatewayError;
use crate::routing::query::QueryProperties;
use crate::snapshot::Snapshot;

/// Pingora's retry buffer (`BODY_BUF_LIMIT` in pingora-core).
const RETRY_BUFFER: usize = 64 * 1024;

/// What became of a submission body.
pub enum Held {
    /// Read whole and analyzed.
    Body(Bytes, QueryProperties),
    /// Not read: content conditions are not evaluated for this request, for this reason.
    Skipped(&'static str),
}

/// Read and analyze the body of a submission (`POST /v1/statement`).
pub async fn hold(session: &mut Session, snap: &Snapshot) -> Result<Held, GatewayError> {
    if session.is_http2() {
        return Ok(Held::Skipped("an HTTP/2 request body is not held"));
    }
    let req = session.req_header();
    if req.headers.contains_key(TRANSFER_ENCODING) {
        return Ok(Held::Skipped(
            "a chunked request body (no Content-Length) is not held",
        ));
    }
    let declared = req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let len = match declared {
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
    let wait = snap.config.proxy.read_timeout.get();
    let mut body = BytesMut::with_capacity(len);
    loop {
        if len - body.len() <= RETRY_BUFFER {
            session.as_mut().enable_retry_buffering();
        }
        let chunk = match tokio::time::timeout(wait, session.as_mut().read_request_body()).await {
            Err(_) => return Err(GatewayError::statement_timeout(wait)),
            Ok(Err(e)) => {
                return Err(GatewayError::bad_request(format!(
                    "the statement could not be read: {}",
                    e.etype().as_str()
                )))
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        if body.len() + chunk.len() > len {
            return Err(GatewayError::bad_request(
                "the request body is longer than its Content-Length",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    if body.len() != len {
        return Err(GatewayError::bad_request(format!(
            "the request body ended after {} of {len} bytes",
            body.len()
        )));
    }
    if session.as_ref().get_retry_buffer().is_none() {
        // Pingora would have nothing to replay: the body could not be sent on.
        return Err(GatewayError::internal(
            "the held statement cannot be forwarded (the retry buffer overflowed)",
        ));
    }
    let body = body.freeze();
    let query = QueryProperties::analyze(&body, &session.req_header().headers);
    Ok(Held::Body(body, query))
}

/// A new query (`POST /v1/statement`), as the proxy classifies it.
pub fn is_submission(session: &Session) -> bool {
    let req = session.req_header();
    matches!(
        super::target::classify(&req.method, req.uri.path(), req.uri.query()),
        Ok(super::target::Target::Submit)
    )
}
