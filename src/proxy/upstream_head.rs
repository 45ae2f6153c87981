//! The request head sent upstream, edited as plain `http` parts.
//!
//! Pingora hands `upstream_request_filter` a copy of the client's head that keeps every header
//! name twice — as the client spelled it, and parsed — and whose methods take names as text and
//! parse them again (allocating for each name `http` has no constant for) into both maps, which
//! the first addition makes grow. The gateway sets up to six headers on every submission, so
//! [`UpstreamHead`] takes the copy apart instead: its `HeaderMap` is edited directly with
//! constant names, and the head is put back without the spelling map. Header names are
//! case-insensitive (RFC 9110 §5.1) and Trino reads them so; upstream they are written in lower
//! case (Pingora title-cases a few, such as `Host` and `Content-Length`).

use http::request::Parts;
use http::{HeaderMap, Uri};
use pingora_http::RequestHeader;

/// The upstream head taken apart; put back when dropped.
pub struct UpstreamHead<'a> {
    target: &'a mut RequestHeader,
    parts: Parts,
    /// The request target as it goes on the wire, where the URI alone would not reproduce it
    /// (absolute-form, or bytes that are not UTF-8).
    raw_target: Option<Box<[u8]>>,
    /// HTTP/2 only: whether the head carries END_STREAM when there is no body.
    end_stream: Option<bool>,
}

/// A head with nothing in it, left in the target while its parts are edited (allocates nothing).
fn placeholder() -> RequestHeader {
    RequestHeader::from(http::Request::new(()).into_parts().0)
}

impl<'a> UpstreamHead<'a> {
    /// Take `target` apart for editing.
    pub fn open(target: &'a mut RequestHeader) -> Self {
        let from_uri = target
            .uri
            .path_and_query()
            .is_some_and(|p| p.as_str().as_bytes() == target.raw_path());
        let raw_target =
            (!from_uri || !target.raw_path_is_utf8()).then(|| target.raw_path().into());
        let end_stream = target.send_end_stream();
        let parts = Parts::from(std::mem::replace(target, placeholder()));
        UpstreamHead {
            target,
            parts,
            raw_target,
            end_stream,
        }
    }

    pub fn headers(&mut self) -> &mut HeaderMap {
        &mut self.parts.headers
    }

    pub fn parts(&self) -> &Parts {
        &self.parts
    }

    /// Make room for `n` more headers at once (one growth instead of one per addition).
    pub fn reserve(&mut self, n: usize) {
        self.parts.headers.reserve(n);
    }

    pub fn set_method(&mut self, method: http::Method) {
        self.parts.method = method;
    }

    /// Replace the request target: the URI now says it all.
    pub fn set_uri(&mut self, uri: Uri) {
        self.parts.uri = uri;
        self.raw_target = None;
    }
}

impl Drop for UpstreamHead<'_> {
    fn drop(&mut self) {
        let parts = std::mem::replace(&mut self.parts, placeholder().into());
        let mut head = RequestHeader::from(parts);
        if let Some(raw) = &self.raw_target {
            // It was a valid target when Pingora parsed it, so it is one now.
            if let Err(e) = head.set_raw_path(raw) {
                tracing::warn!("the request target could not be restored: {e}");
            }
        }
        if let Some(end_stream) = self.end_stream {
            head.set_send_end_stream(end_stream);
        }
        *self.target = head;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue, HOST};

    #[test]
    fn edits_land_and_the_rest_is_kept() {
        let mut req = RequestHeader::build("POST", b"/v1/statement?x=1", None).unwrap();
        req.insert_header("X-Trino-User", "alice").unwrap();
        req.insert_header("Host", "gw:8080").unwrap();
        {
            let mut head = UpstreamHead::open(&mut req);
            head.reserve(2);
            head.headers().insert(HOST, HeaderValue::from_static("b:1"));
            head.headers().insert(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_static("10.0.0.1"),
            );
            assert_eq!(head.parts().method, http::Method::POST);
        }
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(req.raw_path(), b"/v1/statement?x=1");
        assert_eq!(req.headers["x-trino-user"], "alice");
        assert_eq!(req.headers["host"], "b:1");
        assert_eq!(req.headers["x-forwarded-for"], "10.0.0.1");
        assert!(!req.has_case());
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(wire.contains("x-trino-user: alice\r\n"), "{wire}");
        assert!(wire.contains("Host: b:1\r\n"), "{wire}");
    }

    #[test]
    fn a_target_the_uri_does_not_reproduce_survives() {
        let mut req = RequestHeader::build("GET", b"http://gw:8080/v1/info", None).unwrap();
        let before = req.raw_path().to_vec();
        drop(UpstreamHead::open(&mut req));
        assert_eq!(req.raw_path(), &before[..]);

        let mut req = RequestHeader::build("GET", b"/ui/\xff", None).unwrap();
        drop(UpstreamHead::open(&mut req));
        assert_eq!(req.raw_path(), b"/ui/\xff");
        assert!(!req.raw_path_is_utf8());

        let mut req = RequestHeader::build("GET", b"/old", None).unwrap();
        let mut head = UpstreamHead::open(&mut req);
        head.set_uri(Uri::from_static("/new?q"));
        drop(head);
        assert_eq!(req.raw_path(), b"/new?q");
    }
}
