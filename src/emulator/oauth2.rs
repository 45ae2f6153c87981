//! OAuth2 external authentication as a Trino coordinator does it (`http-server.authentication.type
//! = oauth2`), and a minimal identity provider for it to talk to.
//!
//! The coordinator ([`Coordinator`], on with `EmulatorConfig::oauth2`):
//! - a client request without a valid `Authorization: Bearer` token gets `401` with
//!   `WWW-Authenticate: Bearer x_redirect_server="{base}/oauth2/token/initiate/{authIdHash}",
//!   x_token_server="{base}/oauth2/token/{authId}"` (`authId` a random UUID, `authIdHash` the
//!   lowercase hex SHA-256 of it; `{base}` as for `nextUri`). `/v1/info`, the login resources
//!   and spooled segments need no token;
//! - `GET /oauth2/token/initiate/{authIdHash}` answers `303` to the identity provider's
//!   `/authorize`, with a `state` JWT signed with a key random per instance whose
//!   `handler_state` claim is the hash — so, as in Trino without a shared
//!   `oauth2.state-key`, only the coordinator that started a login can finish it;
//! - `GET /oauth2/callback?code=...&state=...` checks the state's signature (else `400`),
//!   redeems the code at the identity provider's `/token`, and stores the token for the login;
//! - `GET /oauth2/token/{authId}` long-polls (up to [`POLL_WAIT`]): `{"token": ...}` once the
//!   login finished (then forgotten), `{"error": ...}` if it failed, else `{"nextUri": ...}`;
//!   `DELETE` forgets the login. Logins live only in this instance's memory;
//! - the Web UI (`/ui/...`): without a valid `Trino-OAuth2-Token` cookie, `303` to the identity
//!   provider with a state that names no login (plus a nonce cookie); its callback sets the
//!   cookie and sends the browser to `/ui/`. `/ui/api/...` answers `401` instead.
//!
//! Tokens are HS256 JWTs of the identity provider, checked with its key
//! ([`OAuth2Emulation::token_key`], standing in for its JWKS), so every coordinator configured with
//! the same provider accepts them — as real clusters sharing one Keycloak realm do.
//!
//! The identity provider ([`IdentityProvider`]) signs in one fixed user without asking:
//! `GET /authorize` answers `303` to `redirect_uri?code=...&state=...`; `POST /token` (form
//! `code`, `redirect_uri`) redeems a code once for `{"access_token", "token_type", "expires_in"}`.

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use super::query::lock;
use crate::oauth2::cookie;

/// Longest a token poll waits for its login to finish before answering `nextUri`.
pub const POLL_WAIT: Duration = Duration::from_secs(5);

/// Logins in progress kept at most (clients that never finish must not leak memory).
const MAX_LOGINS: usize = 10_000;

/// How long a state, a code or a login is good for.
const LOGIN_LIFETIME: Duration = Duration::from_secs(15 * 60);

const TOKEN_COOKIE: &str = "Trino-OAuth2-Token";
const NONCE_COOKIE: &str = "Trino-OAuth2-Nonce";

/// The coordinator's OAuth2 settings.
#[derive(Clone, Debug)]
pub struct OAuth2Emulation {
    /// Base URL of the identity provider (`IdentityProvider::url`).
    pub issuer: String,
    /// Key the identity provider signs its tokens with (stands in for its JWKS).
    pub token_key: Vec<u8>,
}

/// Counters for tests (part of `EmulatorStats`).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct OAuth2Stats {
    /// `401` challenges issued (each starts a login).
    pub challenges: u64,
    /// `GET /oauth2/token/initiate/...` answered (browser sent to the identity provider).
    pub initiated: u64,
    /// Callbacks that finished a login (client or Web UI).
    pub completed: u64,
    /// Callbacks refused (a state this instance did not sign, or a code the provider refused).
    pub refused: u64,
    /// Tokens handed to polling clients.
    pub collected: u64,
}

#[derive(Default)]
struct Counters {
    challenges: AtomicU64,
    initiated: AtomicU64,
    completed: AtomicU64,
    refused: AtomicU64,
    collected: AtomicU64,
}

enum Login {
    Pending,
    Done(String),
    Failed(String),
}

/// Logins by hash, with their insertion order (the oldest go first when full).
#[derive(Default)]
struct Logins {
    map: HashMap<String, (Login, Instant)>,
    order: VecDeque<String>,
}

/// The claims of the `state` a coordinator sends through the identity provider.
#[derive(Serialize, Deserialize)]
struct StateClaims {
    exp: u64,
    /// The login's hash; absent for a Web UI login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handler_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
}

/// The claims of the identity provider's tokens.
#[derive(Serialize, Deserialize)]
struct TokenClaims {
    iss: String,
    sub: String,
    exp: u64,
}

/// One emulated coordinator's OAuth2 side.
pub(crate) struct Coordinator {
    config: OAuth2Emulation,
    /// Signs this instance's states (random: other instances cannot finish its logins).
    state_key: [u8; 32],
    logins: Mutex<Logins>,
    changed: tokio::sync::Notify,
    http: reqwest::Client,
    counters: Counters,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for b in &mut out {
        *b = fastrand::u8(..);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random (version 4) UUID in canonical form.
fn random_uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Trino's `authIdHash` (the lowercase hex SHA-256 of the canonical UUID text), as the gateway
/// computes it; an id that is no canonical UUID names no login.
fn hash_auth_id(auth_id: &str) -> Option<String> {
    crate::oauth2::AuthIdHash::of_auth_id(auth_id).map(|h| h.as_str().to_string())
}

fn sign<T: Serialize>(claims: &T, key: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(key),
    )
    .unwrap_or_default()
}

fn verify<T: serde::de::DeserializeOwned>(token: &str, key: &[u8]) -> Option<T> {
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_aud = false;
    v.set_required_spec_claims(&["exp"]);
    jsonwebtoken::decode::<T>(token, &DecodingKey::from_secret(key), &v)
        .ok()
        .map(|d| d.claims)
}

fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

fn html(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        format!("<!DOCTYPE html><html><body><p>{text}</p></body></html>"),
    )
        .into_response()
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// What the request needs before a handler may answer it.
pub(crate) enum Gate {
    /// Authenticated, or a resource that needs no token.
    Pass,
    /// Answer this instead (a challenge, a redirect to the identity provider).
    Answer(Response),
}

impl Coordinator {
    pub(crate) fn new(config: OAuth2Emulation) -> Coordinator {
        Coordinator {
            config,
            state_key: random_bytes(),
            logins: Mutex::new(Logins::default()),
            changed: tokio::sync::Notify::new(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            counters: Counters::default(),
        }
    }

    pub(crate) fn stats(&self) -> OAuth2Stats {
        let c = &self.counters;
        OAuth2Stats {
            challenges: c.challenges.load(Ordering::Relaxed),
            initiated: c.initiated.load(Ordering::Relaxed),
            completed: c.completed.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            collected: c.collected.load(Ordering::Relaxed),
        }
    }

    fn user_of(&self, token: &str) -> Option<String> {
        verify::<TokenClaims>(token, &self.config.token_key)
            .filter(|c| c.iss == self.config.issuer)
            .map(|c| c.sub)
    }

    /// Whether `path` may be answered, or what to answer instead.
    pub(crate) fn gate(&self, path: &str, headers: &HeaderMap, base: &str) -> Gate {
        let public = path == "/v1/info"
            || path.starts_with("/v1/info/")
            || path.starts_with("/oauth2/")
            || path.starts_with("/v1/spooled/")
            || path.starts_with("/spool/");
        if public {
            return Gate::Pass;
        }
        if path == "/ui" || path.starts_with("/ui/") {
            if cookie(headers, TOKEN_COOKIE)
                .and_then(|t| self.user_of(t))
                .is_some()
            {
                return Gate::Pass;
            }
            if path.starts_with("/ui/api/") {
                return Gate::Answer(StatusCode::UNAUTHORIZED.into_response());
            }
            return Gate::Answer(self.ui_login(base));
        }
        let bearer = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if bearer.and_then(|t| self.user_of(t)).is_some() {
            return Gate::Pass;
        }
        Gate::Answer(self.challenge(base))
    }

    /// A `401` that starts a client login.
    fn challenge(&self, base: &str) -> Response {
        let auth_id = random_uuid();
        // `random_uuid` is canonical, so there is always a hash.
        let hash = hash_auth_id(&auth_id).unwrap_or_default();
        {
            let mut guard = lock(&self.logins);
            let Logins { map, order } = &mut *guard;
            while map.len() >= MAX_LOGINS {
                match order.pop_front() {
                    Some(old) => {
                        map.remove(&old);
                    }
                    None => break,
                }
            }
            map.insert(hash.clone(), (Login::Pending, Instant::now()));
            order.push_back(hash.clone());
        }
        self.counters.challenges.fetch_add(1, Ordering::Relaxed);
        let value = format!(
            "Bearer x_redirect_server=\"{base}/oauth2/token/initiate/{hash}\", \
             x_token_server=\"{base}/oauth2/token/{auth_id}\""
        );
        let mut resp = (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
        if let Ok(v) = HeaderValue::from_str(&value) {
            resp.headers_mut().insert(WWW_AUTHENTICATE, v);
        }
        resp
    }

    /// The identity provider's authorization URL for a login coming back to `base`.
    fn authorize_url(&self, base: &str, state: &StateClaims) -> String {
        format!(
            "{}/authorize?response_type=code&client_id=trino&redirect_uri={}&state={}",
            self.config.issuer,
            encode(&format!("{base}/oauth2/callback")),
            encode(&sign(state, &self.state_key)),
        )
    }

    /// A Web UI visitor without a token: off to the identity provider, with a nonce cookie.
    fn ui_login(&self, base: &str) -> Response {
        let nonce = hex(&random_bytes::<16>());
        let state = StateClaims {
            exp: now_secs() + LOGIN_LIFETIME.as_secs(),
            handler_state: None,
            nonce: Some(nonce.clone()),
        };
        let mut resp = see_other(&self.authorize_url(base, &state));
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{NONCE_COOKIE}={nonce}; Path=/oauth2/callback; HttpOnly"
        )) {
            resp.headers_mut().append(SET_COOKIE, v);
        }
        resp
    }

    pub(crate) fn initiate(&self, hash: &str, base: &str) -> Response {
        self.counters.initiated.fetch_add(1, Ordering::Relaxed);
        let state = StateClaims {
            exp: now_secs() + LOGIN_LIFETIME.as_secs(),
            handler_state: Some(hash.to_string()),
            nonce: None,
        };
        see_other(&self.authorize_url(base, &state))
    }

    pub(crate) async fn callback(
        &self,
        q: CallbackQuery,
        headers: &HeaderMap,
        base: &str,
    ) -> Response {
        let Some(state) = q
            .state
            .as_deref()
            .and_then(|s| verify::<StateClaims>(s, &self.state_key))
        else {
            self.counters.refused.fetch_add(1, Ordering::Relaxed);
            return html(
                StatusCode::BAD_REQUEST,
                "OAuth2 login failed: invalid or expired state (this coordinator did not start the login)",
            );
        };
        let token = match (q.code, q.error) {
            (Some(code), _) => self.redeem(&code, base).await,
            (None, Some(e)) => Err(format!("identity provider error: {e}")),
            (None, None) => Err("no code in the callback".to_string()),
        };
        match (state.handler_state, token) {
            (Some(hash), token) => {
                let ok = token.is_ok();
                let login = match token {
                    Ok(t) => Login::Done(t),
                    Err(e) => Login::Failed(e),
                };
                {
                    let mut guard = lock(&self.logins);
                    let Logins { map, order } = &mut *guard;
                    if !map.contains_key(&hash) {
                        order.push_back(hash.clone());
                    }
                    map.insert(hash, (login, Instant::now()));
                }
                self.changed.notify_waiters();
                if ok {
                    self.counters.completed.fetch_add(1, Ordering::Relaxed);
                    html(
                        StatusCode::OK,
                        "OAuth2 authentication succeeded; you may close this window.",
                    )
                } else {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    html(StatusCode::BAD_REQUEST, "OAuth2 authentication failed.")
                }
            }
            (None, Ok(token)) => {
                if state.nonce.as_deref() != cookie(headers, NONCE_COOKIE) {
                    self.counters.refused.fetch_add(1, Ordering::Relaxed);
                    return html(
                        StatusCode::BAD_REQUEST,
                        "OAuth2 login failed: the nonce cookie does not match",
                    );
                }
                self.counters.completed.fetch_add(1, Ordering::Relaxed);
                let mut resp = see_other("/ui/");
                if let Ok(v) =
                    HeaderValue::from_str(&format!("{TOKEN_COOKIE}={token}; Path=/ui; HttpOnly"))
                {
                    resp.headers_mut().append(SET_COOKIE, v);
                }
                resp
            }
            (None, Err(e)) => {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                html(
                    StatusCode::BAD_REQUEST,
                    &format!("OAuth2 login failed: {e}"),
                )
            }
        }
    }

    /// Redeem a code at the identity provider.
    async fn redeem(&self, code: &str, base: &str) -> Result<String, String> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &format!("{base}/oauth2/callback")),
            ("client_id", "trino"),
        ];
        let resp = self
            .http
            .post(format!("{}/token", self.config.issuer))
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("identity provider unreachable: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "identity provider refused the code ({})",
                resp.status()
            ));
        }
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("identity provider answer: {e}"))?;
        body["access_token"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "identity provider answer has no access_token".to_string())
    }

    pub(crate) async fn poll(&self, auth_id: &str, base: &str) -> Response {
        let Some(hash) = hash_auth_id(auth_id) else {
            return (StatusCode::NOT_FOUND, "not a login id").into_response();
        };
        let deadline = tokio::time::Instant::now() + POLL_WAIT;
        loop {
            let changed = self.changed.notified();
            {
                let mut guard = lock(&self.logins);
                let map = &mut guard.map;
                let done = match map.get(&hash) {
                    Some((Login::Done(_) | Login::Failed(_), _)) => map.remove(&hash),
                    Some((Login::Pending, since)) if since.elapsed() > LOGIN_LIFETIME => {
                        map.remove(&hash);
                        return Json(serde_json::json!({"error": "login expired"})).into_response();
                    }
                    _ => None,
                };
                match done {
                    Some((Login::Done(token), _)) => {
                        self.counters.collected.fetch_add(1, Ordering::Relaxed);
                        return Json(serde_json::json!({ "token": token })).into_response();
                    }
                    Some((Login::Failed(e), _)) => {
                        return Json(serde_json::json!({ "error": e })).into_response()
                    }
                    _ => {}
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Json(serde_json::json!({
                    "nextUri": format!("{base}/oauth2/token/{auth_id}")
                }))
                .into_response();
            }
        }
    }

    pub(crate) fn forget(&self, auth_id: &str) {
        if let Some(hash) = hash_auth_id(auth_id) {
            lock(&self.logins).map.remove(&hash);
        }
    }

    /// The Web UI's home page, for a signed-in visitor.
    pub(crate) fn ui_user(&self, headers: &HeaderMap) -> Option<String> {
        cookie(headers, TOKEN_COOKIE).and_then(|t| self.user_of(t))
    }
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

// --- The identity provider -------------------------------------------------------------------

struct Grant {
    redirect_uri: String,
    issued: Instant,
}

struct Provider {
    url: String,
    key: Vec<u8>,
    user: String,
    codes: Mutex<HashMap<String, Grant>>,
    authorizations: AtomicU64,
}

/// A running identity provider stand-in (see the module docs). Stops when dropped.
pub struct IdentityProvider {
    pub url: String,
    provider: Arc<Provider>,
    task: JoinHandle<()>,
}

impl IdentityProvider {
    /// Serve on 127.0.0.1 (a free port), signing in `user`.
    pub async fn start(user: &str) -> std::io::Result<IdentityProvider> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let provider = Arc::new(Provider {
            url: url.clone(),
            key: random_bytes::<32>().to_vec(),
            user: user.to_string(),
            codes: Mutex::new(HashMap::new()),
            authorizations: AtomicU64::new(0),
        });
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(redeem))
            .with_state(Arc::clone(&provider));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "identity provider stopped");
            }
        });
        Ok(IdentityProvider {
            url,
            provider,
            task,
        })
    }

    /// What a coordinator needs to trust this provider.
    pub fn emulation(&self) -> OAuth2Emulation {
        OAuth2Emulation {
            issuer: self.url.clone(),
            token_key: self.provider.key.clone(),
        }
    }

    /// Logins the provider has granted (authorization requests answered).
    pub fn authorizations(&self) -> u64 {
        self.provider.authorizations.load(Ordering::Relaxed)
    }
}

impl Drop for IdentityProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    redirect_uri: String,
    state: String,
}

async fn authorize(State(p): State<Arc<Provider>>, Query(q): Query<AuthorizeQuery>) -> Response {
    let code = hex(&random_bytes::<16>());
    {
        let mut codes = lock(&p.codes);
        codes.retain(|_, g| g.issued.elapsed() < LOGIN_LIFETIME);
        if codes.len() >= MAX_LOGINS {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "too many logins in progress",
            )
                .into_response();
        }
        codes.insert(
            code.clone(),
            Grant {
                redirect_uri: q.redirect_uri.clone(),
                issued: Instant::now(),
            },
        );
    }
    p.authorizations.fetch_add(1, Ordering::Relaxed);
    let sep = if q.redirect_uri.contains('?') {
        '&'
    } else {
        '?'
    };
    see_other(&format!(
        "{}{sep}code={code}&state={}",
        q.redirect_uri,
        encode(&q.state)
    ))
}

async fn redeem(State(p): State<Arc<Provider>>, body: Bytes) -> Response {
    let (mut code, mut redirect_uri) = (String::new(), String::new());
    for (k, v) in url::form_urlencoded::parse(&body) {
        match &*k {
            "code" => code = v.into_owned(),
            "redirect_uri" => redirect_uri = v.into_owned(),
            _ => {}
        }
    }
    let grant = lock(&p.codes).remove(&code);
    match grant {
        Some(g) if g.redirect_uri == redirect_uri && g.issued.elapsed() < LOGIN_LIFETIME => {
            let claims = TokenClaims {
                iss: p.url.clone(),
                sub: p.user.clone(),
                exp: now_secs() + 3600,
            };
            Json(serde_json::json!({
                "access_token": sign(&claims, &p.key),
                "token_type": "Bearer",
                "expires_in": 3600,
            }))
            .into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": "invalid_grant"})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn uuids_and_hashes_are_trinos() {
        let id = random_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        // Trino's hash: lowercase hex SHA-256 of the text, computed here independently.
        let want: String = Sha256::digest(id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hash_auth_id(&id), Some(want));
        assert_eq!(hash_auth_id(&id.to_uppercase()), None);
    }

    #[test]
    fn states_verify_only_with_their_key() {
        let c = Coordinator::new(OAuth2Emulation {
            issuer: "http://idp".into(),
            token_key: vec![1; 32],
        });
        let other = Coordinator::new(OAuth2Emulation {
            issuer: "http://idp".into(),
            token_key: vec![1; 32],
        });
        let claims = StateClaims {
            exp: now_secs() + 60,
            handler_state: Some("ab".into()),
            nonce: None,
        };
        let s = sign(&claims, &c.state_key);
        assert!(verify::<StateClaims>(&s, &c.state_key).is_some());
        assert!(verify::<StateClaims>(&s, &other.state_key).is_none());
        let t = sign(
            &TokenClaims {
                iss: "http://idp".into(),
                sub: "alice".into(),
                exp: now_secs() + 60,
            },
            &[1; 32],
        );
        assert_eq!(other.user_of(&t).as_deref(), Some("alice"));
        assert_eq!(c.user_of("garbage"), None);
    }
}
