//! Admin API authentication and roles (`admin.auth`).
//!
//! A caller sends `Authorization: Bearer <token>`: either a static API token (the config keeps
//! only its SHA-256, compared in constant time) or an OIDC JWT verified against the issuer's JWKS
//! (asymmetric algorithms from an allow-list, issuer, audience, expiry with leeway; a groups claim
//! maps to roles). Each endpoint needs a role: viewer reads, operator also drains and activates,
//! admin does everything. Refusals are logged without the token and counted by reason.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use tracing::{debug, warn};

use super::AdminState;
use crate::config::{AdminAuthConfig, JwtConfig, Role};
use crate::metrics::METRICS;

/// Who is calling, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token name or the JWT's `sub` (or `preferred_username`).
    pub name: String,
    pub role: Role,
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Needs(Role),
}

/// The role `method` on the route `template` needs. One table for the whole API, so a new
/// endpoint is admin-only unless it is listed here.
pub fn required(method: &Method, template: &str, cfg: &AdminAuthConfig) -> Access {
    match template {
        "/livez" | "/readyz" if cfg.public_health => Access::Public,
        "/metrics" if cfg.public_metrics => Access::Public,
        "/openapi.json" => Access::Public,
        // The console's pages and files hold no data; what they show comes from calls that carry
        // the user's token. Its info says only whether a token is needed and where the proxy is.
        "/console/info" => Access::Public,
        t if super::console::is_asset(t) => Access::Public,
        _ if method == Method::GET || method == Method::HEAD => Access::Needs(Role::Viewer),
        // A dry run changes nothing.
        "/api/v1/route" => Access::Needs(Role::Viewer),
        "/api/v1/backends/{name}/activate"
        | "/api/v1/backends/{name}/deactivate"
        | "/api/v1/queue/{id}" => Access::Needs(Role::Operator),
        _ => Access::Needs(Role::Admin),
    }
}

/// `GET /api/v1/whoami`: the caller as the API sees it — the token's name or the JWT's subject,
/// and its role. Without `admin.auth` nobody is authenticated and every call is allowed (the
/// listener is on loopback), which is the admin role.
pub async fn whoami(caller: Option<axum::Extension<Principal>>) -> Json<Value> {
    Json(match caller {
        Some(axum::Extension(p)) => {
            json!({ "authenticated": true, "name": p.name, "role": p.role.as_str() })
        }
        None => json!({ "authenticated": false, "name": null, "role": Role::Admin.as_str() }),
    })
}

/// Why a call was refused; the label of `trino_edge_admin_auth_failures_total`.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            reason,
            message: message.into(),
        }
    }
}

/// Token and JWT checks built from one `admin.auth` section.
pub struct Authenticator {
    config: AdminAuthConfig,
    /// `(sha256, name, role)` of each static token.
    tokens: Vec<([u8; 32], String, Role)>,
    jwt: Option<JwtVerifier>,
}

impl Authenticator {
    pub fn new(config: &AdminAuthConfig) -> Authenticator {
        let tokens = config
            .tokens
            .iter()
            .filter_map(|t| Some((decode_hex(&t.sha256)?, t.name.clone(), t.role)))
            .collect();
        Authenticator {
            config: config.clone(),
            tokens,
            jwt: config.jwt.as_ref().map(JwtVerifier::new),
        }
    }

    pub fn config(&self) -> &AdminAuthConfig {
        &self.config
    }

    async fn authenticate(&self, bearer: &str) -> Result<Principal, Refusal> {
        let digest = openssl::sha::sha256(bearer.as_bytes());
        // Compare with every token, without stopping at a match, in constant time each: the time
        // taken says nothing about which bytes were right.
        let mut found = None;
        for (hash, name, role) in &self.tokens {
            if openssl::memcmp::eq(hash, &digest) {
                found = Some(Principal {
                    name: name.clone(),
                    role: *role,
                });
            }
        }
        if let Some(p) = found {
            return Ok(p);
        }
        match &self.jwt {
            Some(v) if bearer.bytes().filter(|&b| b == b'.').count() == 2 => v.verify(bearer).await,
            _ => Err(Refusal::unauthenticated(
                "unknown_token",
                "invalid token: not a configured API token",
            )),
        }
    }
}

fn decode_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Why the JWKS could not be loaded (the old keys stay in use).
#[derive(Debug, thiserror::Error)]
enum JwksError {
    #[error("JWKS {url}: {source}")]
    Fetch { url: String, source: reqwest::Error },
    #[error("JWKS {url}: HTTP {status}")]
    Status {
        url: String,
        status: reqwest::StatusCode,
    },
    #[error("JWKS file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("no JWKS configured")]
    NotConfigured,
    #[error("JWKS is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("JWKS has no `keys` array")]
    NoKeys,
}

/// One verification key of the JWKS.
struct Key {
    kid: Option<String>,
    key: DecodingKey,
}

struct KeySet {
    keys: Vec<Key>,
    fetched: Instant,
}

/// Forced JWKS reloads (on an unknown `kid`) happen at most this often, so tokens with random
/// key ids cannot make the gateway hammer the identity provider.
const FORCED_REFRESH_GAP: Duration = Duration::from_secs(5);

struct JwtVerifier {
    cfg: JwtConfig,
    algorithms: Vec<Algorithm>,
    keys: ArcSwap<KeySet>,
    /// Serialises reloads; holds the time of the last forced one.
    reload: tokio::sync::Mutex<Option<Instant>>,
    http: reqwest::Client,
}

impl JwtVerifier {
    fn new(cfg: &JwtConfig) -> JwtVerifier {
        let algorithms = cfg
            .algorithms
            .iter()
            .filter_map(|a| a.parse::<Algorithm>().ok())
            .collect();
        // `fetched` in the past: the first call loads the keys.
        let stale = Instant::now()
            .checked_sub(cfg.jwks_refresh.get() + Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        JwtVerifier {
            cfg: cfg.clone(),
            algorithms,
            keys: ArcSwap::from_pointee(KeySet {
                keys: Vec::new(),
                fetched: stale,
            }),
            reload: tokio::sync::Mutex::new(None),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn fetch(&self) -> Result<Vec<Key>, JwksError> {
        let text = match (&self.cfg.jwks_url, &self.cfg.jwks_file) {
            (Some(url), _) => {
                let fetch = |source| JwksError::Fetch {
                    url: url.clone(),
                    source,
                };
                let r = self.http.get(url).send().await.map_err(fetch)?;
                if !r.status().is_success() {
                    return Err(JwksError::Status {
                        url: url.clone(),
                        status: r.status(),
                    });
                }
                r.text().await.map_err(fetch)?
            }
            (None, Some(file)) => {
                tokio::fs::read_to_string(file)
                    .await
                    .map_err(|source| JwksError::File {
                        path: file.clone(),
                        source,
                    })?
            }
            (None, None) => return Err(JwksError::NotConfigured),
        };
        parse_jwks(&text)
    }

    /// Load the JWKS again; `forced` (unknown `kid`) is rate-limited. Failures keep the old keys.
    async fn reload(&self, forced: bool) {
        let mut last_forced = self.reload.lock().await;
        let now = Instant::now();
        if forced {
            if last_forced.is_some_and(|t| now.duration_since(t) < FORCED_REFRESH_GAP) {
                return;
            }
            *last_forced = Some(now);
        } else if self.keys.load().fetched.elapsed() < self.cfg.jwks_refresh.get() {
            return; // another caller refreshed while we waited
        }
        match self.fetch().await {
            Ok(keys) => {
                debug!(keys = keys.len(), "JWKS loaded");
                self.keys.store(Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                }));
            }
            Err(e) => warn!("admin auth: cannot load the JWKS, keeping the old keys: {e}"),
        }
    }

    fn find(&self, kid: Option<&str>) -> Option<DecodingKey> {
        let set = self.keys.load();
        match kid {
            Some(kid) => set
                .keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .map(|k| k.key.clone()),
            // No `kid`: only unambiguous with a single key.
            None if set.keys.len() == 1 => Some(set.keys[0].key.clone()),
            None => None,
        }
    }

    async fn verify(&self, token: &str) -> Result<Principal, Refusal> {
        let invalid = |m: String| Refusal::unauthenticated("invalid_jwt", m);
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            invalid(
                "invalid token: malformed JWT header, or an algorithm that is never accepted"
                    .into(),
            )
        })?;
        if !self.algorithms.contains(&header.alg) {
            return Err(invalid(format!(
                "invalid token: algorithm {:?} is not accepted",
                header.alg
            )));
        }
        if self.keys.load().fetched.elapsed() >= self.cfg.jwks_refresh.get() {
            self.reload(false).await;
        }
        let kid = header.kid.as_deref();
        let key = match self.find(kid) {
            Some(k) => k,
            None => {
                self.reload(true).await;
                self.find(kid).ok_or_else(|| {
                    invalid("invalid token: signed with a key the issuer does not publish".into())
                })?
            }
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.cfg.leeway.get().as_secs();
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| {
            let (reason, what) = match e.kind() {
                ErrorKind::ExpiredSignature => ("expired", "expired"),
                ErrorKind::ImmatureSignature => ("invalid_jwt", "not valid yet (nbf)"),
                ErrorKind::InvalidAudience => ("invalid_jwt", "wrong audience"),
                ErrorKind::InvalidIssuer => ("invalid_jwt", "wrong issuer"),
                ErrorKind::InvalidSignature => ("invalid_jwt", "bad signature"),
                ErrorKind::MissingRequiredClaim(_) => {
                    ("invalid_jwt", "a required claim (exp, iss, aud) is missing")
                }
                _ => ("invalid_jwt", "not a valid JWT for this gateway"),
            };
            Refusal::unauthenticated(reason, format!("invalid token: {what}"))
        })?;
        let claims = data.claims;
        let name = ["preferred_username", "sub"]
            .iter()
            .find_map(|c| claims.get(*c).and_then(Value::as_str))
            .unwrap_or("jwt")
            .to_string();
        let role = groups(&claims, &self.cfg.groups_claim)
            .filter_map(|g| self.cfg.roles.get(g.trim_start_matches('/')).copied())
            .max();
        match role {
            Some(role) => Ok(Principal { name, role }),
            None => Err(Refusal {
                status: StatusCode::FORBIDDEN,
                reason: "forbidden",
                message: format!(
                    "`{name}` is authenticated but none of its `{}` maps to a role",
                    self.cfg.groups_claim
                ),
            }),
        }
    }
}

/// The values of the (possibly dotted) groups claim: an array of strings or one string.
fn groups<'a>(claims: &'a Value, path: &str) -> impl Iterator<Item = &'a str> {
    let v = path
        .split('.')
        .try_fold(claims, |v, part| v.get(part))
        .unwrap_or(&Value::Null);
    let list: Vec<&str> = match v {
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        Value::String(s) => vec![s.as_str()],
        _ => Vec::new(),
    };
    list.into_iter()
}

/// The signing keys of a JWKS document; encryption keys and keys of unknown types are skipped.
fn parse_jwks(text: &str) -> Result<Vec<Key>, JwksError> {
    let doc: Value = serde_json::from_str(text).map_err(JwksError::NotJson)?;
    let list = doc["keys"].as_array().ok_or(JwksError::NoKeys)?;
    let keys: Vec<Key> = list
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
        .filter_map(|jwk| {
            Some(Key {
                kid: jwk.common.key_id.clone(),
                key: DecodingKey::from_jwk(&jwk).ok()?,
            })
        })
        .collect();
    Ok(keys)
}

/// The `admin.auth` of the running config, rebuilt when a reload changes it (token rotation
/// without a restart).
pub struct AuthState {
    current: ArcSwap<Option<Authenticator>>,
}

impl AuthState {
    pub fn new(config: Option<&AdminAuthConfig>) -> AuthState {
        AuthState {
            current: ArcSwap::from_pointee(config.map(Authenticator::new)),
        }
    }

    fn get(&self, config: Option<&AdminAuthConfig>) -> Arc<Option<Authenticator>> {
        let cur = self.current.load_full();
        if cur.as_ref().as_ref().map(Authenticator::config) != config {
            let fresh = Arc::new(config.map(Authenticator::new));
            self.current.store(fresh.clone());
            return fresh;
        }
        cur
    }
}

fn refuse(r: Refusal, method: &Method, path: &str) -> Response {
    METRICS
        .admin_auth_failures
        .with_label_values(&[r.reason])
        .inc();
    warn!(%method, path, reason = r.reason, status = r.status.as_u16(), "admin API call refused");
    let mut resp = (r.status, Json(json!({ "error": r.message }))).into_response();
    if r.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"trino-edge\""),
        );
    }
    resp
}

/// Middleware: authenticate the caller and check the endpoint's role before anything else runs
/// (the body is not even read for a refused call).
pub async fn authorize(State(st): State<AdminState>, mut req: Request, next: Next) -> Response {
    let snap = st.gateway.snapshots.load();
    let auth = st.auth.get(snap.config.admin.auth.as_ref());
    let Some(auth) = auth.as_ref() else {
        // No auth configured: validation keeps the listener on loopback.
        return next.run(req).await;
    };
    let template = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let need = match &template {
        Some(t) => required(&method, t, auth.config()),
        // Unknown path: answer 404 only to someone allowed to read the API.
        None => Access::Needs(Role::Viewer),
    };
    let Access::Needs(role) = need else {
        return next.run(req).await;
    };
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let Some(bearer) = bearer else {
        return refuse(
            Refusal::unauthenticated(
                "missing",
                "authentication required: send Authorization: Bearer <token>",
            ),
            &method,
            &path,
        );
    };
    let principal = match auth.authenticate(bearer).await {
        Ok(p) => p,
        Err(r) => return refuse(r, &method, &path),
    };
    if principal.role < role {
        return refuse(
            Refusal {
                status: StatusCode::FORBIDDEN,
                reason: "forbidden",
                message: format!(
                    "`{}` has role {}; {method} {} needs {}",
                    principal.name,
                    principal.role.as_str(),
                    template.as_deref().unwrap_or(&path),
                    role.as_str()
                ),
            },
            &method,
            &path,
        );
    }
    debug!(caller = %principal.name, role = principal.role.as_str(), %method, path, "admin API call");
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdminAuthConfig {
        serde_yaml_ng::from_str("tokens: []\npublic_metrics: false\n").unwrap()
    }

    #[test]
    fn every_write_needs_admin_unless_listed() {
        let c = cfg();
        assert_eq!(required(&Method::GET, "/livez", &c), Access::Public);
        assert_eq!(
            required(&Method::GET, "/metrics", &c),
            Access::Needs(Role::Viewer)
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/backends/{name}/deactivate", &c),
            Access::Needs(Role::Operator)
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/route", &c),
            Access::Needs(Role::Viewer)
        );
        assert_eq!(
            required(&Method::DELETE, "/api/v1/groups/{name}", &c),
            Access::Needs(Role::Admin)
        );
        assert_eq!(
            required(&Method::POST, "/api/v1/anything-new", &c),
            Access::Needs(Role::Admin)
        );
        // The console's pages and files are public, what they call is not.
        for page in ["/", "/docs", "/console/app.js", "/console/info"] {
            assert_eq!(required(&Method::GET, page, &c), Access::Public, "{page}");
        }
        assert_eq!(
            required(&Method::GET, "/api/v1/whoami", &c),
            Access::Needs(Role::Viewer)
        );
        assert_eq!(
            required(&Method::GET, "/console/not-a-file.js", &c),
            Access::Needs(Role::Viewer)
        );
    }

    #[test]
    fn hex_and_groups() {
        assert_eq!(decode_hex(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(decode_hex("xy"), None);
        let claims = json!({"realm_access": {"roles": ["a", "b"]}, "groups": "/admins"});
        assert_eq!(
            groups(&claims, "realm_access.roles").collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(groups(&claims, "groups").collect::<Vec<_>>(), ["/admins"]);
        assert_eq!(groups(&claims, "nope").count(), 0);
    }
}
