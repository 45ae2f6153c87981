//! Trino's OAuth2 external authentication through the gateway: which coordinator each leg of a
//! login belongs to.
//!
//! A coordinator answers an unauthenticated request with `401` and
//! `WWW-Authenticate: Bearer x_redirect_server="{base}/oauth2/token/initiate/{authIdHash}",
//! x_token_server="{base}/oauth2/token/{authId}"`: `authId` is a random UUID, `authIdHash` the
//! lowercase hex SHA-256 of its canonical text. The client opens the first URI in a browser and
//! long-polls the second; the identity provider sends the browser back to
//! `/oauth2/callback?state={JWT}`, whose payload names the login in its `handler_state` claim
//! (the hash). Only the coordinator that issued the challenge holds the login, so the gateway
//! *pins* the hash to that backend when the challenge goes by (in memory and in the shared
//! database, see `Gateway::pin_login`), and every leg — poll, initiate, callback — resolves to it.
//!
//! The Web UI's login has no handler state (its state names no login): browser legs (`/ui/...`,
//! `/oauth2/...` seen by a browser) are pinned with a cookie instead, [`PIN_COOKIE`], naming the
//! backend that last answered that browser.
//!
//! The `authId` is a bearer secret (whoever knows it can collect the token): it is never logged,
//! and only its hash is stored.

use std::borrow::Cow;

use base64::Engine;
use sha2::{Digest, Sha256};

/// The cookie that keeps a browser's UI and login legs on one backend (its value is the
/// backend's name; it only chooses among the backends the request's group would use).
pub const PIN_COOKIE: &str = "trino_edge_backend";

const TOKEN_PREFIX: &str = "/oauth2/token/";
const INITIATE_PREFIX: &str = "/oauth2/token/initiate/";
const CALLBACK: &str = "/oauth2/callback";

/// The SHA-256 of a login's `authId`, as 64 lowercase hex digits: the key a login is pinned by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuthIdHash([u8; 64]);

impl AuthIdHash {
    /// Accepts exactly 64 lowercase hex digits (what Trino writes), nothing else.
    pub fn parse(s: &str) -> Option<AuthIdHash> {
        let bytes: [u8; 64] = s.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            .then_some(AuthIdHash(bytes))
    }

    /// The hash of an `authId` in canonical UUID form (lowercase, hyphenated, 36 characters);
    /// any other spelling is refused, so one login cannot be named two ways.
    pub fn of_auth_id(auth_id: &str) -> Option<AuthIdHash> {
        if !is_canonical_uuid(auth_id) {
            return None;
        }
        let digest = Sha256::digest(auth_id.as_bytes());
        let mut out = [0u8; 64];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, b) in digest.iter().enumerate() {
            out[2 * i] = HEX[usize::from(b >> 4)];
            out[2 * i + 1] = HEX[usize::from(b & 0x0f)];
        }
        Some(AuthIdHash(out))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::fmt::Debug for AuthIdHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AuthIdHash({})", self.as_str())
    }
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in lowercase hex.
fn is_canonical_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => matches!(b, b'0'..=b'9' | b'a'..=b'f'),
        })
}

/// A request of a login, as the gateway routes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leg {
    /// `GET|DELETE /oauth2/token/{authId}`: the client's token poll (or its cancel).
    Token(AuthIdHash),
    /// `GET /oauth2/token/initiate/{authIdHash}`: the browser starts the login.
    Initiate(AuthIdHash),
    /// `GET /oauth2/callback?state=...` of a client login (the state names it).
    Callback(AuthIdHash),
}

impl Leg {
    /// Short fixed label (logs and metrics).
    pub fn kind(&self) -> &'static str {
        match self {
            Leg::Token(_) => "token",
            Leg::Initiate(_) => "initiate",
            Leg::Callback(_) => "callback",
        }
    }

    pub fn hash(&self) -> AuthIdHash {
        match *self {
            Leg::Token(h) | Leg::Initiate(h) | Leg::Callback(h) => h,
        }
    }
}

/// Why a login path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    #[error("the login id in the token URI is not a canonical UUID")]
    AuthId,
    #[error("the login hash in the initiate URI is not 64 lowercase hex digits")]
    Hash,
    #[error("the callback's state names a login that is not 64 lowercase hex digits")]
    HandlerState,
}

/// The login leg a path belongs to: `None` for paths that are not one (including a callback
/// whose state names no login — the Web UI's, routed by [`PIN_COOKIE`]).
pub fn leg(path: &str, query: Option<&str>) -> Option<Result<Leg, LegError>> {
    if let Some(hash) = path.strip_prefix(INITIATE_PREFIX) {
        return Some(
            AuthIdHash::parse(hash)
                .map(Leg::Initiate)
                .ok_or(LegError::Hash),
        );
    }
    if let Some(id) = path.strip_prefix(TOKEN_PREFIX) {
        return Some(
            AuthIdHash::of_auth_id(id)
                .map(Leg::Token)
                .ok_or(LegError::AuthId),
        );
    }
    if path == CALLBACK {
        let state = query_param(query?, "state")?;
        let h = handler_state(&state)??;
        return Some(
            AuthIdHash::parse(&h)
                .map(Leg::Callback)
                .ok_or(LegError::HandlerState),
        );
    }
    None
}

/// Whether a browser (not a protocol client) sends this path: the Web UI and the login pages.
/// Answers to these carry [`PIN_COOKIE`].
pub fn is_browser_path(path: &str) -> bool {
    path == "/ui"
        || path.starts_with("/ui/")
        || path == CALLBACK
        || path.starts_with(INITIATE_PREFIX)
}

/// The `handler_state` claim of an OAuth2 state JWT, read without checking the signature (only
/// the coordinator that signed it can, and it does): `None` when the state is no JWT,
/// `Some(None)` when it has no such claim (a Web UI login).
fn handler_state(state: &str) -> Option<Option<String>> {
    let mut parts = state.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > 8192 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some(
        claims
            .get("handler_state")
            .and_then(|v| v.as_str())
            .map(str::to_string),
    )
}

/// One query parameter, percent-decoded (`+` as a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The login a `WWW-Authenticate` challenge starts: the hash of its `x_token_server` URI's
/// `authId`. The `x_redirect_server` URI, when present, must name the same hash (else the
/// challenge is not Trino's and nothing is pinned).
pub fn challenge(www_authenticate: &str) -> Option<AuthIdHash> {
    let token = challenge_param(www_authenticate, "x_token_server")?;
    let id = token.rsplit('/').next()?;
    let hash = AuthIdHash::of_auth_id(id)?;
    match challenge_param(www_authenticate, "x_redirect_server") {
        Some(redirect) if redirect.rsplit('/').next() != Some(hash.as_str()) => None,
        _ => Some(hash),
    }
}

/// A quoted parameter of a challenge, e.g. `x_token_server="..."`.
fn challenge_param<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = header;
    while let Some(at) = rest.find(name) {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + name.len()..];
        rest = after;
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let Some(value) = after.trim_start().strip_prefix('=') else {
            continue;
        };
        let value = value.trim_start().strip_prefix('"')?;
        return value.split('"').next();
    }
    None
}

/// The URIs of a challenge with `rewrite` applied to each (a `forwarding: rewrite` backend
/// builds them on its own address); `None` when nothing changed.
pub fn rewrite_challenge(header: &str, rewrite: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(header.len() + 32);
    let mut changed = false;
    let mut rest = header;
    for name in ["x_redirect_server", "x_token_server"] {
        let Some(uri) = challenge_param(rest, name) else {
            continue;
        };
        // `uri` borrows from `rest`: copy up to it, then the rewritten URI.
        let start = uri.as_ptr() as usize - rest.as_ptr() as usize;
        out.push_str(&rest[..start]);
        match rewrite(uri) {
            Some(new) => {
                changed = true;
                out.push_str(&new);
            }
            None => out.push_str(uri),
        }
        rest = &rest[start + uri.len()..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// The path as it may be logged: a token URI's `authId` (a bearer secret) replaced.
pub fn redacted_path(path: &str) -> Cow<'_, str> {
    match path.strip_prefix(TOKEN_PREFIX) {
        Some(rest) if !path.starts_with(INITIATE_PREFIX) && !rest.is_empty() => {
            Cow::Owned(format!("{TOKEN_PREFIX}<redacted>"))
        }
        _ => Cow::Borrowed(path),
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

/// The backend a browser's [`PIN_COOKIE`] names.
pub fn pinned_backend(headers: &http::HeaderMap) -> Option<&str> {
    cookie(headers, PIN_COOKIE)
}

/// `Set-Cookie` value pinning a browser to `backend` (whose name is cookie-safe: letters, digits,
/// `-`, `_`, `.`).
pub fn pin_cookie(backend: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{PIN_COOKIE}={backend}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3e6a4b3c-8f4e-4d7a-9c35-0b1f2a7d9e10";

    fn hash(id: &str) -> String {
        AuthIdHash::of_auth_id(id).unwrap().as_str().to_string()
    }

    #[test]
    fn hash_is_sha256_hex_of_the_canonical_uuid() {
        // sha256("3e6a4b3c-8f4e-4d7a-9c35-0b1f2a7d9e10"), computed independently.
        let h = hash(ID);
        assert_eq!(h.len(), 64);
        assert_eq!(
            h,
            format!("{:x}", Sha256::digest(ID.as_bytes())),
            "lowercase hex of SHA-256"
        );
        assert!(AuthIdHash::of_auth_id(&ID.to_uppercase()).is_none());
        assert!(AuthIdHash::of_auth_id(&ID.replace('-', "")).is_none());
        assert!(AuthIdHash::of_auth_id(&format!("{{{ID}}}")).is_none());
        assert!(AuthIdHash::of_auth_id("../../etc/passwd").is_none());
        assert!(AuthIdHash::parse(&h).is_some());
        assert!(AuthIdHash::parse(&h.to_uppercase()).is_none());
        assert!(AuthIdHash::parse(&h[1..]).is_none());
    }

    fn state_with(claims: &str) -> String {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.c2ln",
            e.encode(r#"{"alg":"HS256"}"#),
            e.encode(claims)
        )
    }

    #[test]
    fn legs_are_recognised() {
        let h = hash(ID);
        let hh = AuthIdHash::parse(&h).unwrap();
        assert_eq!(
            leg(&format!("/oauth2/token/{ID}"), None),
            Some(Ok(Leg::Token(hh)))
        );
        assert_eq!(
            leg(&format!("/oauth2/token/initiate/{h}"), None),
            Some(Ok(Leg::Initiate(hh)))
        );
        let state = state_with(&format!(r#"{{"handler_state":"{h}","exp":1}}"#));
        assert_eq!(
            leg("/oauth2/callback", Some(&format!("code=abc&state={state}"))),
            Some(Ok(Leg::Callback(hh)))
        );
        // The Web UI's state names no login; a state that is no JWT is the coordinator's to refuse.
        let ui = state_with(r#"{"aud":"trino_oauth_ui","exp":1}"#);
        assert_eq!(leg("/oauth2/callback", Some(&format!("state={ui}"))), None);
        assert_eq!(leg("/oauth2/callback", Some("state=garbage")), None);
        assert_eq!(leg("/oauth2/callback", None), None);
        let bad = state_with(r#"{"handler_state":"../x"}"#);
        assert_eq!(
            leg("/oauth2/callback", Some(&format!("state={bad}"))),
            Some(Err(LegError::HandlerState))
        );
        assert_eq!(
            leg("/oauth2/token/NOT-A-UUID", None),
            Some(Err(LegError::AuthId))
        );
        assert_eq!(
            leg("/oauth2/token/initiate/xyz", None),
            Some(Err(LegError::Hash))
        );
        assert_eq!(leg("/v1/statement", None), None);
    }

    #[test]
    fn challenges_name_their_login() {
        let h = hash(ID);
        let header = format!(
            r#"Bearer x_redirect_server="http://gw:8080/oauth2/token/initiate/{h}", x_token_server="http://gw:8080/oauth2/token/{ID}""#
        );
        assert_eq!(
            challenge(&header).map(|h| h.as_str().to_string()),
            Some(h.clone())
        );
        // Only a token server is enough; a redirect naming another login is not Trino's.
        let only = format!(r#"Bearer x_token_server="http://gw/oauth2/token/{ID}""#);
        assert!(challenge(&only).is_some());
        let mismatched = format!(
            r#"Bearer x_redirect_server="http://gw/oauth2/token/initiate/{}", x_token_server="http://gw/oauth2/token/{ID}""#,
            "0".repeat(64)
        );
        assert!(challenge(&mismatched).is_none());
        assert!(challenge(r#"Basic realm="Trino""#).is_none());
        assert!(
            challenge(r#"Bearer realm="x", xx_token_server="http://gw/oauth2/token/abc""#)
                .is_none()
        );

        let rewritten = rewrite_challenge(&header, |u| {
            u.strip_prefix("http://gw:8080")
                .map(|rest| format!("https://edge.example{rest}"))
        })
        .unwrap();
        assert_eq!(
            rewritten,
            format!(
                r#"Bearer x_redirect_server="https://edge.example/oauth2/token/initiate/{h}", x_token_server="https://edge.example/oauth2/token/{ID}""#
            )
        );
        assert!(rewrite_challenge(&header, |_| None).is_none());
    }

    #[test]
    fn auth_ids_are_redacted_and_cookies_read() {
        assert_eq!(
            redacted_path(&format!("/oauth2/token/{ID}")),
            "/oauth2/token/<redacted>"
        );
        let initiate = format!("/oauth2/token/initiate/{}", hash(ID));
        assert_eq!(redacted_path(&initiate), initiate);
        assert_eq!(redacted_path("/v1/statement"), "/v1/statement");

        let mut h = http::HeaderMap::new();
        h.append(
            "cookie",
            "a=1; trino_edge_backend=trino-2; b=2".parse().unwrap(),
        );
        assert_eq!(pinned_backend(&h), Some("trino-2"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(pinned_backend(&http::HeaderMap::new()), None);
        assert_eq!(
            pin_cookie("trino-2", true),
            "trino_edge_backend=trino-2; Path=/; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(is_browser_path("/ui/"));
        assert!(is_browser_path("/oauth2/callback"));
        assert!(!is_browser_path(&format!("/oauth2/token/{ID}")));
        assert!(!is_browser_path("/v1/statement"));
    }
}
