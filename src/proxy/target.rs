//! What a request is about, from its method and path: a new query, a follow-up of a known query,
//! or something not tied to a query.

use http::Method;

use super::error::GatewayError;
use crate::oauth2::Leg;
use crate::query_id::is_valid_query_id;

/// Longest path we accept; Trino's own paths are far shorter, so longer ones are hostile or broken.
const MAX_PATH: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `POST /v1/statement`: a new query, routed by policy and strategy.
    Submit,
    /// Any request of an existing query (`nextUri` pages, cancel, `/v1/query/{id}`, UI pages).
    Query(&'a str),
    /// `/v1/spooled/{queryId}/{download|ack}/{segment}`: a spooled segment of a query, at the
    /// URI the gateway handed out (see [`super::page_rewrite`]); the backend's own path follows.
    Segment(&'a str),
    /// Any other `/v1/spooled/...`: a segment URI the gateway did not hand out.
    Spooled,
    /// A leg of an OAuth2 login: goes to the backend that issued the login's challenge.
    Login(Leg),
    /// Not tied to a query (`/v1/info`, UI assets, ...): routed like a submission.
    Other,
}

impl Target<'_> {
    /// Short fixed label (for logs and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Submit => "submit",
            Target::Query(_) => "query",
            Target::Segment(_) => "segment",
            Target::Spooled => "spooled",
            Target::Login(_) => "login",
            Target::Other => "other",
        }
    }
}

/// The metric label of a request: submit|page|cancel|info|ui|login|segment|other (a fixed set).
pub fn metric_kind(method: &Method, path: &str) -> &'static str {
    if path.starts_with("/v1/spooled/") {
        return "segment";
    }
    if path.starts_with("/v1/statement") {
        return match *method {
            Method::POST => "submit",
            Method::DELETE => "cancel",
            _ => "page",
        };
    }
    if path.starts_with("/v1/query") {
        return if *method == Method::DELETE {
            "cancel"
        } else {
            "info"
        };
    }
    if path == "/v1/info" || path.starts_with("/v1/info/") {
        return "info";
    }
    if path.starts_with("/ui") {
        return "ui";
    }
    if path.starts_with("/oauth2/") {
        return "login";
    }
    "other"
}

/// No dot segment (`.`, `..`), encoded dot or slash (`%2e`, `%2f`, any case) or control
/// character — checked in one pass, as this runs for every request.
fn plain_path(p: &[u8]) -> bool {
    let mut seg_start = 0;
    for (i, &b) in p.iter().enumerate() {
        match b {
            b'/' => {
                if matches!(&p[seg_start..i], b"." | b"..") {
                    return false;
                }
                seg_start = i + 1;
            }
            b'%' if matches!(p.get(i + 1..i + 3), Some([b'2', b'e' | b'E' | b'f' | b'F'])) => {
                return false
            }
            _ if b.is_ascii_control() => return false,
            _ => {}
        }
    }
    !matches!(&p[seg_start..], b"." | b"..")
}

fn query(id: &str) -> Result<Target<'_>, GatewayError> {
    if is_valid_query_id(id) {
        Ok(Target::Query(id))
    } else {
        Err(GatewayError::invalid_query_id(id))
    }
}

/// Classify a request. Errors are answered to the client as they are.
pub fn classify<'a>(
    method: &Method,
    path: &'a str,
    query_string: Option<&'a str>,
) -> Result<Target<'a>, GatewayError> {
    if path.len() > MAX_PATH {
        return Err(GatewayError::bad_request(format!(
            "request path is longer than {MAX_PATH} bytes"
        )));
    }
    if !path.starts_with('/') || !plain_path(path.as_bytes()) {
        return Err(GatewayError::bad_request(
            "request path contains dot segments, encoded separators or control characters",
        ));
    }

    if path == "/v1/statement" || path == "/v1/statement/" {
        return if method == Method::POST {
            Ok(Target::Submit)
        } else {
            Err(GatewayError::method_not_allowed(
                method.as_str(),
                "/v1/statement",
            ))
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/statement/") {
        let mut segs = rest.split('/');
        let first = segs.next().unwrap_or("");
        let id = match first {
            "queued" | "executing" => match segs.next() {
                Some("partialCancel") => segs.next().unwrap_or(""),
                Some(id) => id,
                None => "",
            },
            // Older servers: /v1/statement/{queryId}/{slug}/{token}
            id => id,
        };
        return query(id);
    }
    if let Some(rest) = path.strip_prefix("/v1/query/") {
        return query(rest.split('/').next().unwrap_or(""));
    }
    if let Some(rest) = path.strip_prefix("/ui/api/query/") {
        return query(rest.split('/').next().unwrap_or(""));
    }
    if path == "/ui/query.html" || path == "/ui/query" {
        // The UI links `query.html?{queryId}`; tolerate `?queryId={id}` too.
        let q = query_string.unwrap_or("");
        let id = q.strip_prefix("queryId=").unwrap_or(q);
        let id = id.split('&').next().unwrap_or("");
        return if id.is_empty() {
            Ok(Target::Other)
        } else {
            query(id)
        };
    }
    if path.starts_with("/v1/spooled/") {
        return match super::page_rewrite::untag_segment_path(path) {
            Some((id, _)) if is_valid_query_id(id) => Ok(Target::Segment(id)),
            Some((id, _)) => Err(GatewayError::invalid_query_id(id)),
            None => Ok(Target::Spooled),
        };
    }
    if path.starts_with("/oauth2/") {
        if let Some(leg) = crate::oauth2::leg(path, query_string) {
            return leg.map(Target::Login).map_err(GatewayError::invalid_login);
        }
    }
    Ok(Target::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "20260430_121314_00042_k3f9a";

    fn c(method: Method, path: &str, q: Option<&str>) -> Result<Target<'static>, u16> {
        let path: &'static str = Box::leak(path.to_string().into_boxed_str());
        let q: Option<&'static str> = q.map(|q| &*Box::leak(q.to_string().into_boxed_str()));
        classify(&method, path, q).map_err(|e| e.status)
    }

    #[test]
    fn statement_paths() {
        assert_eq!(c(Method::POST, "/v1/statement", None), Ok(Target::Submit));
        assert_eq!(c(Method::GET, "/v1/statement", None), Err(405));
        for p in [
            format!("/v1/statement/queued/{ID}/y1a2b/1"),
            format!("/v1/statement/executing/{ID}/y1a2b/2"),
            format!("/v1/statement/executing/partialCancel/{ID}/0/y1a2b/2"),
            format!("/v1/statement/{ID}/y1a2b/3"),
            format!("/v1/query/{ID}"),
            format!("/v1/query/{ID}/killed"),
            format!("/ui/api/query/{ID}"),
        ] {
            assert_eq!(c(Method::GET, &p, None), Ok(Target::Query(ID)), "{p}");
        }
        assert_eq!(
            c(Method::GET, "/ui/query.html", Some(ID)),
            Ok(Target::Query(ID))
        );
        assert_eq!(
            c(
                Method::GET,
                "/ui/query.html",
                Some(&format!("queryId={ID}"))
            ),
            Ok(Target::Query(ID))
        );
    }

    #[test]
    fn login_paths() {
        let id = "3e6a4b3c-8f4e-4d7a-9c35-0b1f2a7d9e10";
        assert!(matches!(
            c(Method::GET, &format!("/oauth2/token/{id}"), None),
            Ok(Target::Login(Leg::Token(_)))
        ));
        assert!(matches!(
            c(Method::DELETE, &format!("/oauth2/token/{id}"), None),
            Ok(Target::Login(Leg::Token(_)))
        ));
        assert!(matches!(
            c(
                Method::GET,
                &format!("/oauth2/token/initiate/{}", "a".repeat(64)),
                None
            ),
            Ok(Target::Login(Leg::Initiate(_)))
        ));
        assert_eq!(c(Method::GET, "/oauth2/token/NOT-A-UUID", None), Err(400));
        assert_eq!(
            c(
                Method::GET,
                &format!("/oauth2/token/{}", id.to_uppercase()),
                None
            ),
            Err(400)
        );
        assert_eq!(c(Method::GET, "/oauth2/token/initiate/abc", None), Err(400));
        // The Web UI's callback names no login: routed like other browser requests.
        assert_eq!(
            c(Method::GET, "/oauth2/callback", Some("state=x.y.z")),
            Ok(Target::Other)
        );
        assert_eq!(metric_kind(&Method::GET, "/oauth2/callback"), "login");
    }

    #[test]
    fn other_and_hostile_paths() {
        assert_eq!(c(Method::GET, "/v1/info", None), Ok(Target::Other));
        assert_eq!(c(Method::GET, "/ui/", None), Ok(Target::Other));
        assert_eq!(
            c(Method::GET, "/v1/spooled/download/abc", None),
            Ok(Target::Spooled)
        );
        assert_eq!(
            c(
                Method::GET,
                &format!("/v1/spooled/{ID}/download/abc="),
                None
            ),
            Ok(Target::Segment(ID))
        );
        assert_eq!(
            c(Method::GET, &format!("/v1/spooled/{ID}/ack/abc="), None),
            Ok(Target::Segment(ID))
        );
        assert_eq!(
            c(Method::GET, "/v1/spooled/NOT-AN-ID/ack/abc", None),
            Err(400)
        );
        assert_eq!(
            c(Method::GET, "/v1/statement/queued/NOT-AN-ID/x/1", None),
            Err(400)
        );
        assert_eq!(c(Method::GET, "/v1/statement/queued/", None), Err(400));
        assert_eq!(c(Method::GET, "/v1/query/../../etc/passwd", None), Err(400));
        assert_eq!(c(Method::GET, "/v1/query/%2e%2e/x", None), Err(400));
        assert_eq!(
            c(
                Method::GET,
                &format!("/v1/query/{}", "a".repeat(5000)),
                None
            ),
            Err(400)
        );
        assert_eq!(
            c(Method::GET, &format!("/v1/query/{}", "a".repeat(200)), None),
            Err(400)
        );
    }
}
