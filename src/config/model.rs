//! Plain configuration structs, exactly as written in the YAML file.
//!
//! The schema is a public contract: fields may be added, never renamed. Every struct denies unknown
//! keys so that a typo is an error instead of a silently ignored setting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub routing: RoutingConfig,
    pub groups: Vec<GroupConfig>,
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub hybrid: HybridConfig,
}

/// Where shared state lives (see `src/store/`): the routing config once seeded, query history and
/// learned coordinator ids, shared by every gateway instance that points at the same database.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (embedded), `postgres://...` or `mysql://...` (MySQL 8, MariaDB).
    #[serde(default = "default_database_url")]
    pub url: String,
    /// How often each instance checks the config version for changes made through any instance.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: HumanDuration,
}

fn default_database_url() -> String {
    "sqlite://trino-edge.db".to_string()
}
fn default_poll_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: default_database_url(),
            poll_interval: default_poll_interval(),
        }
    }
}

/// Active health and load checks of every backend (see `src/health/`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// `false`: no probes; every enabled backend counts as healthy (health managed elsewhere).
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Budget of one whole probe of one backend (info + SQL + load).
    #[serde(default = "default_probe_timeout")]
    pub timeout: HumanDuration,
    /// Consecutive good probes that make an unhealthy backend healthy again.
    #[serde(default = "two")]
    pub rise: u32,
    /// Consecutive failed probes that make a healthy backend unhealthy.
    #[serde(default = "two")]
    pub fall: u32,
    /// Query run through the client protocol on every probe (`null`: none). Its query id teaches
    /// the gateway the backend's coordinator id before any client query; a new id means the
    /// coordinator restarted. With `load: query` the load query plays this part.
    #[serde(default = "default_probe_sql")]
    pub sql: Option<String>,
    /// `X-Trino-User` of probe queries.
    #[serde(default = "default_probe_user")]
    pub user: String,
    /// Where queued/running counts come from.
    #[serde(default)]
    pub load: LoadSource,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadSource {
    /// `SELECT state, count(*) FROM system.runtime.queries ...` through the client protocol.
    #[default]
    Query,
    /// The coordinator's OpenMetrics `/metrics` (`trino_execution_name_QueryManager_*Queries`).
    Metrics,
    None,
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_probe_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn two() -> u32 {
    2
}
fn default_probe_sql() -> Option<String> {
    Some("SELECT 1".to_string())
}
fn default_probe_user() -> String {
    "trino-edge".to_string()
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            enabled: true,
            interval: default_interval(),
            timeout: default_probe_timeout(),
            rise: 2,
            fall: 2,
            sql: default_probe_sql(),
            user: default_probe_user(),
            load: LoadSource::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub listeners: Vec<ListenerConfig>,
    /// Public URL of the gateway (e.g. `https://trino.example.com`). When set, the `X-Forwarded-*`
    /// headers sent to backends are derived from it, so `nextUri` always points at this URL; else
    /// they are derived from the request's `Host` header and the listener.
    #[serde(default)]
    pub external_url: Option<String>,
    /// This instance's proxy listener as the other instances reach it (e.g. `http://10.0.0.5:8080`).
    /// With a shared database, each instance announces it there, and a poll of a query another
    /// instance holds in its queue is forwarded to that instance (see [`QueueConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
    /// Keep `X-Forwarded-*` headers sent by the client (only when a trusted proxy sits in front).
    #[serde(default)]
    pub trust_forwarded_headers: bool,
    /// Capacity of the in-process query-id → backend map.
    #[serde(default = "default_sticky_capacity")]
    pub sticky_capacity: usize,
    /// How long a learned query id stays in the in-process map.
    #[serde(default = "default_sticky_ttl")]
    pub sticky_ttl: HumanDuration,
    /// Timeout for establishing a connection to a backend; a timeout counts as a connect failure.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Longest wait for a backend's answer (Trino answers a page within about a second, so a
    /// silent backend is dead, and its clients should hear so instead of hanging).
    #[serde(default = "default_read_timeout")]
    pub read_timeout: HumanDuration,
    /// Most backends one submission is tried on (connect failures, resets before an answer, and
    /// 502/503/504 answers move it to the next healthy backend of its group).
    #[serde(default = "default_submit_attempts")]
    pub max_submit_attempts: usize,
    /// Largest `POST /v1/statement` body (the SQL text) passed on; bigger ones get a 413 Trino
    /// error before any backend sees them.
    #[serde(default = "default_max_submission_bytes")]
    pub max_submission_bytes: u64,
    /// Trust and client identity for `https://` backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_tls: Option<UpstreamTlsConfig>,
    /// An idle keep-alive client connection is closed after this long (whole seconds).
    #[serde(default = "default_client_idle_timeout")]
    pub client_idle_timeout: HumanDuration,
    /// A request header must be complete this long after its first byte, and a new connection
    /// must send that byte within this long; slower clients are disconnected (slowloris).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: HumanDuration,
    /// A request body (a submission's statement above all) must be complete this long after the
    /// request head; a slower client gets 408 and holds no backend connection meanwhile
    /// (submissions are read whole before a backend is chosen).
    #[serde(default = "default_body_timeout")]
    pub body_timeout: HumanDuration,
    /// How long an OAuth2 login's legs keep reaching the backend that issued its challenge (like
    /// Trino's `http-server.authentication.oauth2.challenge-timeout`, default 15m).
    #[serde(default = "default_login_ttl")]
    pub login_ttl: HumanDuration,
}

fn default_body_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_login_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}

fn default_client_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_header_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

fn default_max_submission_bytes() -> u64 {
    1024 * 1024
}

fn default_read_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_submit_attempts() -> usize {
    3
}

fn default_sticky_capacity() -> usize {
    200_000
}
fn default_sticky_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(24 * 3600))
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub address: String,
    /// Serve HTTPS with this certificate (re-read on SIGHUP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Refuse submissions without `X-Trino-User` (400) instead of letting the backend decide.
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_user: bool,
    /// A trusted front proxy (SSO, OAuth2 proxy) puts the authenticated user in this header: it
    /// becomes `X-Trino-User` on every request of this listener, whatever the client sent, and a
    /// request without it is refused (401). Only for listeners that nothing but that proxy reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_from_header: Option<String>,
    /// `inline` asks the clusters for inline results on this listener (see [`Spooling`]); unset
    /// means `pass` unless the query's group says `inline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spooling: Option<Spooling>,
}

/// What the gateway does with a client's request for the spooling protocol
/// (`X-Trino-Query-Data-Encoding`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Spooling {
    /// Passed on: the cluster may answer with spooled segments, which the gateway routes back to
    /// the cluster that wrote them.
    #[default]
    Pass,
    /// Removed from submissions, so the cluster answers inline (clients that cannot reach the
    /// spooling storage, or clusters whose segments must not leave the network).
    Inline,
}

/// How a backend learns the gateway's public address for the URIs it builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Forwarding {
    /// Send `X-Forwarded-Proto/Host/Port/For` (the cluster needs
    /// `http-server.process-forwarded=true`, else Trino refuses every request with 406).
    #[default]
    Headers,
    /// Send no `X-Forwarded-*` and `Host` as the backend's own; rewrite the absolute URIs the
    /// backend builds on its own address (`nextUri`, `infoUri`, `partialCancelUri`, segment
    /// `uri`/`ackUri`, `Location`) to the gateway's public URL as pages stream.
    Rewrite,
}

impl Forwarding {
    pub fn is_headers(&self) -> bool {
        *self == Forwarding::Headers
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A PEM certificate chain (leaf first) and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
}

/// How to reach `https://` backends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsConfig {
    /// CA certificates (PEM bundle) trusted for backends; default: the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Client certificate and key for backends that require mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub address: String,
    /// Serve the admin API over HTTPS with this certificate (re-read on SIGHUP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Who may call the admin API. Without it the admin listener must stay on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AdminAuthConfig>,
    /// A request head must be complete this long after the connection opened (over HTTPS: the
    /// TLS handshake too) or, on a kept-alive connection, after the head's first byte; slower
    /// clients are disconnected (slowloris).
    #[serde(default = "default_admin_header_timeout")]
    pub header_timeout: HumanDuration,
    /// A kept-alive connection with no request in progress is closed after this long.
    #[serde(default = "default_admin_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Connections open at once (including TLS handshakes); a connection beyond it is closed as
    /// soon as it is accepted.
    #[serde(default = "default_admin_max_connections")]
    pub max_connections: usize,
}

fn default_admin_header_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_admin_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_admin_max_connections() -> usize {
    256
}

/// Admin API authentication: static tokens and/or OIDC bearer JWTs, each mapped to a role.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAuthConfig {
    /// Static API tokens, stored only as SHA-256 hashes (`echo -n TOKEN | sha256sum`).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// `/livez` and `/readyz` answer without a token (for load balancers and kubelets).
    #[serde(default = "yes")]
    pub public_health: bool,
    /// `/metrics` answers without a token (else Prometheus sends a viewer token).
    #[serde(default)]
    pub public_metrics: bool,
    /// Viewers see the SQL text in the query history (else it is hidden from them).
    #[serde(default)]
    pub viewer_sees_sql: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds the token; shown in logs, never the token itself.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub role: Role,
}

/// What an admin API caller may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read the API, history, metrics; run routing dry runs.
    Viewer,
    /// Also drain and activate backends.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// OIDC bearer tokens (e.g. from Keycloak), verified against the issuer's JWKS.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim (one of the token's audiences).
    pub audience: String,
    /// JWKS URL (cached; fetched again on an unknown `kid` and every `jwks_refresh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// Or a JWKS file (read again on an unknown `kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    /// Accepted signature algorithms; asymmetric only (`none` and HMAC are never accepted).
    #[serde(default = "default_jwt_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_jwt_leeway")]
    pub leeway: HumanDuration,
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh: HumanDuration,
    /// Claim holding the caller's groups; a dotted path reaches nested claims
    /// (`realm_access.roles`). Keycloak's leading `/` on group paths is ignored.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Group → role; a caller gets the highest role of its groups.
    pub roles: BTreeMap<String, Role>,
    /// Sign-in to the admin console with this provider (authorization code with PKCE, run by
    /// the browser); without it, console users paste a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_login: Option<ConsoleLoginConfig>,
}

/// The admin console's OIDC sign-in: the browser sends the user to `authorization_endpoint`
/// (a public client: `client_id`, a PKCE S256 challenge, `redirect_uri` = the console's own
/// address), redeems the code at `token_endpoint` and calls the API with the `token` it got — a
/// JWT checked like any other against `issuer`, `audience` and the JWKS. The provider must allow
/// the console's origin (CORS) at its token endpoint and the console's address as a redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleLoginConfig {
    pub client_id: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// Scopes asked for (default `openid`).
    #[serde(default = "default_console_scopes")]
    pub scopes: Vec<String>,
    /// Which token of the answer the console sends: `access_token` (default) or `id_token`
    /// (whose audience is the client id).
    #[serde(default)]
    pub token: ConsoleToken,
}

fn default_console_scopes() -> Vec<String> {
    vec!["openid".into()]
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleToken {
    #[default]
    AccessToken,
    IdToken,
}

impl ConsoleToken {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleToken::AccessToken => "access_token",
            ConsoleToken::IdToken => "id_token",
        }
    }
}

fn default_jwt_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}

fn default_jwt_leeway() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

fn default_jwks_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

fn default_groups_claim() -> String {
    "groups".into()
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub default_group: String,
    #[serde(default = "yes")]
    pub honor_routing_group_header: bool,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(rename = "match", default)]
    pub match_: MatchConfig,
    pub group: String,
    /// Where to go when `group` has no available backend (default: `routing.default_group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_group: Option<String>,
    /// Admission of this policy's queries: their `priority` in the gateway's queue and per-user
    /// and per-source running limits (see [`QueueConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueConfig>,
}

/// Conditions of a policy; every condition given must hold, an empty match always holds.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Name of the listener the request arrived on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// Every one of these tags must be in `X-Trino-Client-Tags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_tags_all: Vec<String>,
    /// At least one of these tags must be in `X-Trino-Client-Tags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_tags_any: Vec<String>,
    /// Regex (unanchored unless you anchor it) on `X-Trino-Source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Regex on `X-Trino-User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `Host` header without port, compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Exact header values (header names are case-insensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Query content: some catalog the statement touches matches one of these patterns (`*`
    /// matches any characters; names compare lower-cased).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catalogs_any: Vec<String>,
    /// Every one of these patterns matches some catalog the statement touches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catalogs_all: Vec<String>,
    /// Some `catalog.schema` the statement touches matches one of these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas_any: Vec<String>,
    /// Some `catalog.schema.table` the statement touches matches one of these patterns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables_any: Vec<String>,
    /// The statement is of one of these kinds (`EXECUTE` counts as the statement it runs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statement: Vec<StatementKind>,
}

impl MatchConfig {
    /// Whether a condition reads the statement (the proxy then holds the submission body).
    pub fn reads_content(&self) -> bool {
        !(self.catalogs_any.is_empty()
            && self.catalogs_all.is_empty()
            && self.schemas_any.is_empty()
            && self.tables_any.is_empty()
            && self.statement.is_empty())
    }
}

/// The kinds of statement a policy can name (`match.statement`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    CreateTableAs,
    /// Any other statement that creates, changes or drops an object (tables, views, schemas,
    /// roles, grants, comments, ...).
    Ddl,
    Explain,
    Show,
    Describe,
    Call,
    Use,
    SetSession,
    ResetSession,
    Prepare,
    Deallocate,
    /// `START TRANSACTION`, `COMMIT`, `ROLLBACK`.
    Transaction,
    Analyze,
    Other,
}

impl StatementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::CreateTableAs => "create_table_as",
            StatementKind::Ddl => "ddl",
            StatementKind::Explain => "explain",
            StatementKind::Show => "show",
            StatementKind::Describe => "describe",
            StatementKind::Call => "call",
            StatementKind::Use => "use",
            StatementKind::SetSession => "set_session",
            StatementKind::ResetSession => "reset_session",
            StatementKind::Prepare => "prepare",
            StatementKind::Deallocate => "deallocate",
            StatementKind::Transaction => "transaction",
            StatementKind::Analyze => "analyze",
            StatementKind::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    #[serde(default)]
    pub strategy: Strategy,
    /// Never fall back to another group: no available backend means a 503.
    #[serde(default)]
    pub strict: bool,
    /// `inline`: queries placed in this group are asked for inline results (see [`Spooling`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spooling: Option<Spooling>,
    /// What `strategy: consistent` hashes (default `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash_key: Option<HashKey>,
    /// The gateway's queue for this group: how many queries it holds while every backend is full
    /// and for how long, and per-user and per-source running limits (see [`QueueConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueConfig>,
}

/// Admission control at the gateway (`queue:` on a group or a policy). When no backend of a
/// query's group (nor of its fallback) can take it, or its user or source is at a running limit,
/// the gateway holds the query itself and hands it to a backend when one can take it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Group only: queries held at once (default 1000); beyond it a submission fails with
    /// `QUERY_QUEUE_FULL`. `0` holds nothing: a full group answers 503, as without a queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
    /// Group only: longest wait in the queue (default 1h); then the query fails with
    /// `EXCEEDED_TIME_LIMIT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_time: Option<HumanDuration>,
    /// Group only: a queued query whose client has not polled for this long is dropped, and
    /// nothing is submitted for it (default 5m, as Trino's `query.client.timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_timeout: Option<HumanDuration>,
    /// Queries of one user running at once through this gateway, in the group (or for the
    /// policy's queries); more wait in the queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running_per_user: Option<u32>,
    /// The same for one `X-Trino-Source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running_per_source: Option<u32>,
    /// Policy only: queries of a higher priority leave the queue first (default 0); within one
    /// priority, users take turns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

impl QueueConfig {
    pub const DEFAULT_MAX_QUEUED: u32 = 1000;
    pub const DEFAULT_MAX_QUEUE_TIME: Duration = Duration::from_secs(3600);
    pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(300);

    pub fn max_queued(&self) -> u32 {
        self.max_queued.unwrap_or(Self::DEFAULT_MAX_QUEUED)
    }

    pub fn max_queue_time(&self) -> Duration {
        self.max_queue_time
            .map_or(Self::DEFAULT_MAX_QUEUE_TIME, HumanDuration::get)
    }

    pub fn client_timeout(&self) -> Duration {
        self.client_timeout
            .map_or(Self::DEFAULT_CLIENT_TIMEOUT, HumanDuration::get)
    }

    /// Sets a per-user or per-source running limit.
    pub fn limits_running(&self) -> bool {
        self.max_running_per_user.is_some() || self.max_running_per_source.is_some()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    Random,
    Weighted,
    LeastLoad,
    /// Ketama consistent hashing of the group's `hash_key`: the same key keeps landing on the
    /// same backend, and adding or removing a backend moves only its share of keys.
    Consistent,
}

/// The request value `strategy: consistent` hashes: `user`, `source`, `client_tags` or
/// `header:<Name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    User,
    Source,
    ClientTags,
    Header(String),
}

impl HashKey {
    pub fn parse(s: &str) -> Result<HashKey, String> {
        match s.trim() {
            "user" => Ok(HashKey::User),
            "source" => Ok(HashKey::Source),
            "client_tags" => Ok(HashKey::ClientTags),
            other => match other.strip_prefix("header:").map(str::trim) {
                Some(name) if http::HeaderName::from_bytes(name.as_bytes()).is_ok() => {
                    Ok(HashKey::Header(name.to_ascii_lowercase()))
                }
                Some(name) => Err(format!("`{name}` is not a valid header name")),
                None => Err(format!(
                    "unknown hash_key `{other}`: use user, source, client_tags or header:<Name>"
                )),
            },
        }
    }
}

impl std::fmt::Display for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashKey::User => f.write_str("user"),
            HashKey::Source => f.write_str("source"),
            HashKey::ClientTags => f.write_str("client_tags"),
            HashKey::Header(h) => write!(f, "header:{h}"),
        }
    }
}

impl Serialize for HashKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HashKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HashKey::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
            Strategy::Weighted => "weighted",
            Strategy::LeastLoad => "least_load",
            Strategy::Consistent => "consistent",
        }
    }
}

/// One Trino cluster. It serves one group or several (`group: a` or `groups: [a, b]`): a backend
/// listed in several groups is probed once, counted once against its limits, and drained once.
///
/// Written and read through `BackendConfigRepr`, which takes either key and writes `group` when
/// there is exactly one group (so single-group backends look as they always did in the admin API
/// and the database).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "BackendConfigRepr", into = "BackendConfigRepr")]
pub struct BackendConfig {
    pub name: String,
    pub url: String,
    /// The groups this backend serves, in the order given; at least one, no duplicates.
    pub groups: Vec<String>,
    pub enabled: bool,
    pub weight: u32,
    /// Send the backend's own `host:port` as `Host` instead of the client's (for backends behind a
    /// virtual-host ingress). Off by default: a Trino without `process-forwarded` then still builds
    /// `nextUri` from the client's `Host`, i.e. pointing back at the gateway.
    pub rewrite_host: bool,
    /// `headers` (default) or `rewrite`, for clusters without `http-server.process-forwarded`.
    pub forwarding: Forwarding,
    /// The backend gets no new queries while it reports this many queued queries.
    pub max_queued_queries: Option<u32>,
    /// The backend gets no new queries while it runs this many (reported + started since).
    pub max_running_queries: Option<u32>,
}

impl BackendConfig {
    /// The groups this backend serves (at least one in a validated config).
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The first group listed (`""` only for a backend built by hand with no group, which
    /// validation rejects).
    pub fn first_group(&self) -> &str {
        self.groups.first().map_or("", String::as_str)
    }
}

/// Why a backend's group keys cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendGroupsError {
    #[error("give either group or groups, not both")]
    Both,
    #[error("give either group or groups (missing field `group`)")]
    Neither,
    #[error("groups must list at least one group")]
    Empty,
}

/// [`BackendConfig`] exactly as written in YAML/JSON: `group` and `groups` side by side, one of
/// them set. Field order is the serialized order.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct BackendConfigRepr {
    name: String,
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<String>>,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    rewrite_host: bool,
    #[serde(default, skip_serializing_if = "Forwarding::is_headers")]
    forwarding: Forwarding,
    #[serde(default)]
    max_queued_queries: Option<u32>,
    #[serde(default)]
    max_running_queries: Option<u32>,
}

impl TryFrom<BackendConfigRepr> for BackendConfig {
    type Error = BackendGroupsError;

    fn try_from(r: BackendConfigRepr) -> Result<Self, Self::Error> {
        let groups = match (r.group, r.groups) {
            (Some(_), Some(_)) => return Err(BackendGroupsError::Both),
            (None, None) => return Err(BackendGroupsError::Neither),
            (None, Some(groups)) if groups.is_empty() => return Err(BackendGroupsError::Empty),
            (None, Some(groups)) => groups,
            (Some(group), None) => vec![group],
        };
        Ok(BackendConfig {
            name: r.name,
            url: r.url,
            groups,
            enabled: r.enabled,
            weight: r.weight,
            rewrite_host: r.rewrite_host,
            forwarding: r.forwarding,
            max_queued_queries: r.max_queued_queries,
            max_running_queries: r.max_running_queries,
        })
    }
}

impl From<BackendConfig> for BackendConfigRepr {
    fn from(b: BackendConfig) -> Self {
        let (group, groups) = match <[String; 1]>::try_from(b.groups) {
            Ok([one]) => (Some(one), None),
            Err(groups) => (None, Some(groups)),
        };
        BackendConfigRepr {
            name: b.name,
            url: b.url,
            group,
            groups,
            enabled: b.enabled,
            weight: b.weight,
            rewrite_host: b.rewrite_host,
            forwarding: b.forwarding,
            max_queued_queries: b.max_queued_queries,
            max_running_queries: b.max_running_queries,
        }
    }
}

fn one() -> u32 {
    1
}

/// Process-level settings handed to Pingora.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Worker threads per listener; default: number of CPUs.
    #[serde(default)]
    pub threads: Option<usize>,
    /// On SIGTERM, keep serving this long before shutting down (Pingora's grace period).
    #[serde(default = "default_grace")]
    pub grace_period: HumanDuration,
    /// After the grace period, wait at most this long for in-flight requests.
    #[serde(default = "default_shutdown_timeout")]
    pub graceful_shutdown_timeout: HumanDuration,
    /// Absolute paths; default derived from the admin port so several instances can share a host.
    #[serde(default)]
    pub pid_file: Option<String>,
    #[serde(default)]
    pub upgrade_sock: Option<String>,
}

fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            threads: None,
            grace_period: default_grace(),
            graceful_shutdown_timeout: default_shutdown_timeout(),
            pid_file: None,
            upgrade_sock: None,
        }
    }
}

/// The hybrid-query endpoint (`POST /api/query/hybrid`): remote subqueries registered as Arrow
/// tables, joined locally with DataFusion over the Parquet tables listed here.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HybridConfig {
    /// Local tables: name → Parquet file, directory or glob (`data/orders/*.parquet`; relative
    /// paths from the working directory). Nothing else on the filesystem is reachable.
    #[serde(default)]
    pub tables: BTreeMap<String, String>,
    /// Rows one registration may bring back; past it paging stops and the remote query is
    /// cancelled.
    #[serde(default = "default_hybrid_rows")]
    pub max_registration_rows: u64,
    /// Arrow bytes of all registrations of one request together, in MiB; also the memory pool of
    /// the local query.
    #[serde(default = "default_hybrid_memory")]
    pub max_memory_mb: u64,
    /// Rows of the final result; more are cut off with `truncated: true`.
    #[serde(default = "default_hybrid_result_rows")]
    pub max_result_rows: u64,
    /// Whole request, remote and local; on expiry remote queries are cancelled.
    #[serde(default = "default_hybrid_timeout")]
    pub timeout_seconds: u64,
    /// Threads of the local query engine's own runtime (default: half the CPUs), so a heavy join
    /// never takes the proxy's threads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    /// `X-Trino-User` of remote subqueries when the admin API runs without authentication and the
    /// request names no user.
    #[serde(default = "default_hybrid_user")]
    pub default_user: String,
}

fn default_hybrid_rows() -> u64 {
    500_000
}
fn default_hybrid_memory() -> u64 {
    2_048
}
fn default_hybrid_result_rows() -> u64 {
    100_000
}
fn default_hybrid_timeout() -> u64 {
    300
}
fn default_hybrid_user() -> String {
    "trino-edge".to_string()
}

impl Default for HybridConfig {
    fn default() -> Self {
        HybridConfig {
            tables: BTreeMap::new(),
            max_registration_rows: default_hybrid_rows(),
            max_memory_mb: default_hybrid_memory(),
            max_result_rows: default_hybrid_result_rows(),
            timeout_seconds: default_hybrid_timeout(),
            threads: None,
            default_user: default_hybrid_user(),
        }
    }
}
