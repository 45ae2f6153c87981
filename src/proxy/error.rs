//! Errors the gateway itself answers with, all in Trino's `{"error": {...}}` shape.
//!
//! One place maps every failure to a status code, an `errorName` and a clear message, so that Trino
//! clients show something a user can act on instead of a proxy's HTML error page.

use bytes::Bytes;
use serde::Serialize;

/// Gateway error codes live in their own range so they never collide with Trino's own codes
/// (user errors 0x0000_xxxx, internal 0x0001_xxxx, resources 0x0002_xxxx, connectors 0x01xx_xxxx).
const CODE_BASE: i32 = 0x7E00_0000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayError {
    pub status: u16,
    pub name: &'static str,
    pub error_type: &'static str,
    pub code: i32,
    pub message: String,
    pub shape: Shape,
}

/// How the error body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `{"error":{"message","errorCode","errorName","errorType"}}`, as Trino's statement API.
    Trino,
    /// `{"error":"message"}` with HTTP 200, as Trino's OAuth2 token endpoint answers a login that
    /// failed (clients show the message and stop polling).
    TokenPoll,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inner<'a> {
    message: &'a str,
    error_code: i32,
    error_name: &'a str,
    error_type: &'a str,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

impl GatewayError {
    fn new(
        status: u16,
        name: &'static str,
        error_type: &'static str,
        n: i32,
        message: String,
    ) -> Self {
        GatewayError {
            status,
            name,
            error_type,
            code: CODE_BASE + n,
            message,
            shape: Shape::Trino,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "GATEWAY_BAD_REQUEST", "USER_ERROR", 1, message.into())
    }

    pub fn invalid_query_id(id: &str) -> Self {
        let shown: String = id.chars().take(64).collect();
        Self::new(
            400,
            "INVALID_QUERY_ID",
            "USER_ERROR",
            2,
            format!("`{shown}` is not a valid Trino query id (expected lowercase letters, digits and `_`)"),
        )
    }

    pub fn query_not_found(id: &str) -> Self {
        Self::new(
            404,
            "QUERY_NOT_FOUND",
            "USER_ERROR",
            3,
            format!(
                "Query {id} is not known to this gateway: no backend that ran it was found (it may have \
                 expired, or its cluster restarted or was removed)"
            ),
        )
    }

    /// A poll of a query another gateway instance holds in its queue, where this instance knows
    /// no way to that instance (it announced no `proxy.advertise_url`, or stopped).
    pub fn held_elsewhere(id: &str) -> Self {
        Self::new(
            404,
            "QUERY_NOT_FOUND",
            "USER_ERROR",
            3,
            format!(
                "Query {id} waits in the queue of another gateway instance, which this instance \
                 cannot reach (no proxy.advertise_url announced by it, or it stopped)"
            ),
        )
    }

    /// A request other than a poll for a query the gateway still holds in its queue.
    pub fn held_without_pages(id: &str) -> Self {
        Self::new(
            404,
            "QUERY_NOT_FOUND",
            "USER_ERROR",
            3,
            format!(
                "Query {id} waits in the gateway's queue: no cluster runs it yet, so it has no \
                 Trino pages until it is handed over (its nextUri answers QUEUED meanwhile)"
            ),
        )
    }

    pub fn not_found(path: &str) -> Self {
        let shown: String = path.chars().take(200).collect();
        Self::new(
            404,
            "NOT_FOUND",
            "USER_ERROR",
            4,
            format!("No such resource: {shown}"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            405,
            "METHOD_NOT_ALLOWED",
            "USER_ERROR",
            5,
            format!("{method} is not allowed on {path}"),
        )
    }

    pub fn unknown_transaction(txn: &str) -> Self {
        let shown: String = txn.chars().take(64).collect();
        Self::new(
            404,
            "UNKNOWN_TRANSACTION",
            "USER_ERROR",
            6,
            format!("Transaction {shown} was not started through this gateway, or has expired"),
        )
    }

    pub fn missing_user(listener: &str) -> Self {
        Self::new(
            400,
            "MISSING_USER",
            "USER_ERROR",
            16,
            format!("This gateway listener (`{listener}`) requires the X-Trino-User header"),
        )
    }

    /// A request that carries this gateway's own loop marker (see [`crate::hop`]).
    pub fn loop_detected() -> Self {
        Self::new(
            508,
            "ROUTING_LOOP",
            "EXTERNAL",
            24,
            "Routing loop: this request already passed through this gateway (a backend is this \
             gateway, or leads back to it); check the backends' URLs"
                .to_string(),
        )
    }

    /// On a listener whose identity comes from a trusted proxy's header, a request that could
    /// make the backend see another identity.
    pub fn ambiguous_identity(detail: String) -> Self {
        Self::new(
            400,
            "AMBIGUOUS_IDENTITY",
            "USER_ERROR",
            23,
            format!("Refused: {detail}"),
        )
    }

    pub fn unauthenticated(listener: &str, header: &str) -> Self {
        Self::new(
            401,
            "GATEWAY_UNAUTHENTICATED",
            "USER_ERROR",
            17,
            format!(
                "Listener `{listener}` takes the user from the `{header}` header of the \
                 authenticating proxy in front, and this request has none"
            ),
        )
    }

    pub fn submission_too_large(limit: u64) -> Self {
        Self::new(
            413,
            "QUERY_TEXT_TOO_LARGE",
            "USER_ERROR",
            15,
            format!("The statement is larger than this gateway accepts ({limit} bytes; proxy.max_submission_bytes)"),
        )
    }

    pub fn no_backend(group: &str) -> Self {
        Self::new(
            503,
            "NO_BACKEND_AVAILABLE",
            "INSUFFICIENT_RESOURCES",
            7,
            format!("No available backend in routing group `{group}`: every backend is disabled, unhealthy or unreachable"),
        )
    }

    pub fn all_full(group: &str) -> Self {
        Self::new(
            503,
            "BACKENDS_AT_CAPACITY",
            "INSUFFICIENT_RESOURCES",
            13,
            format!(
                "Every backend in routing group `{group}` is at its concurrency limit; retry later"
            ),
        )
    }

    pub fn backend_unreachable(backend: &str, detail: &str) -> Self {
        Self::new(
            502,
            "BACKEND_UNREACHABLE",
            "EXTERNAL",
            8,
            format!("Trino backend `{backend}` could not be reached: {detail}"),
        )
    }

    pub fn backend_timeout(backend: &str) -> Self {
        Self::new(
            504,
            "BACKEND_TIMEOUT",
            "EXTERNAL",
            10,
            format!("Trino backend `{backend}` did not answer in time"),
        )
    }

    /// A `/v1/spooled/...` URI without the query id the gateway puts into the segment URIs it
    /// hands out: nothing tells which cluster wrote the segment.
    pub fn segment_not_routable(path: &str) -> Self {
        let shown: String = path.chars().take(96).collect();
        Self::new(
            404,
            "SPOOLED_SEGMENT_NOT_FOUND",
            "USER_ERROR",
            18,
            format!(
                "Spooled segment `{shown}` was not handed out by this gateway (its URI names no \
                 query), so the cluster that wrote it is unknown; take segment URIs from the \
                 result pages the gateway returns"
            ),
        )
    }

    /// A request header block longer than the gateway reads.
    pub fn header_too_large(limit: usize) -> Self {
        Self::new(
            431,
            "REQUEST_HEADER_TOO_LARGE",
            "USER_ERROR",
            20,
            format!(
                "The request headers are larger than this gateway reads ({limit} bytes in all): \
                 fewer or smaller session properties, prepared statements or extra credentials"
            ),
        )
    }

    /// The client did not send its request body (a statement, above all) within
    /// `proxy.body_timeout` of the request head.
    pub fn statement_timeout(waited: std::time::Duration) -> Self {
        Self::new(
            408,
            "STATEMENT_NOT_RECEIVED",
            "USER_ERROR",
            19,
            format!(
                "The request body did not arrive in time (proxy.body_timeout: {}s after the \
                 request head)",
                waited.as_secs()
            ),
        )
    }

    /// An OAuth2 login path whose id or state is malformed (never echoed: it is a secret).
    pub fn invalid_login(why: crate::oauth2::LegError) -> Self {
        Self::new(
            400,
            "INVALID_LOGIN",
            "USER_ERROR",
            21,
            format!("Invalid OAuth2 login request: {why}"),
        )
    }

    /// A leg of an OAuth2 login no gateway instance knows (expired, or never started here). The
    /// token poll gets the token endpoint's own error shape, so the client stops and says why.
    pub fn login_not_found(leg: crate::oauth2::Leg, ttl: std::time::Duration) -> Self {
        let message = format!(
            "This OAuth2 login is not known to the gateway: it was not started through it, or it \
             is older than proxy.login_ttl ({}s). Start the login again from the client.",
            ttl.as_secs()
        );
        let mut e = Self::new(404, "LOGIN_NOT_FOUND", "USER_ERROR", 22, message);
        if let crate::oauth2::Leg::Token(_) = leg {
            e.status = 200;
            e.shape = Shape::TokenPoll;
        }
        e
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "GATEWAY_INTERNAL_ERROR",
            "INTERNAL_ERROR",
            12,
            message.into(),
        )
    }

    /// The JSON body: `{"error":{"message","errorCode","errorName","errorType"}}` (see [`Shape`]).
    pub fn body(&self) -> Bytes {
        if self.shape == Shape::TokenPoll {
            let body = serde_json::json!({ "error": self.message });
            return Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        }
        let body = Body {
            error: Inner {
                message: &self.message,
                error_code: self.code,
                error_name: self.name,
                error_type: self.error_type,
            },
        };
        // Serializing plain strings and numbers cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.name, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_trino_shaped() {
        let e = GatewayError::query_not_found("20260430_121314_00042_k3f9a");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        let err = &v["error"];
        assert_eq!(err["errorName"], "QUERY_NOT_FOUND");
        assert_eq!(err["errorType"], "USER_ERROR");
        assert!(err["errorCode"].as_i64().unwrap() > 0);
        assert!(err["message"]
            .as_str()
            .unwrap()
            .contains("20260430_121314_00042_k3f9a"));
    }

    #[test]
    fn hostile_values_are_truncated_and_escaped() {
        let e = GatewayError::invalid_query_id(&format!("\"}}{}", "x".repeat(10_000)));
        assert!(e.body().len() < 400);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().starts_with("`\"}"));
    }
}
