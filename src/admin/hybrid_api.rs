//! `POST /api/query/hybrid`: run remote subqueries on Trino, register their results, and answer
//! the final SQL locally (see `crate::hybrid`). Admin-only (the auth table's default).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Principal;
use super::AdminState;
use crate::hybrid::engine::{on_engine, LocalQuery};
use crate::hybrid::guard::{self, NameKind, MAX_SQL_BYTES};
use crate::hybrid::remote::{self, Limits, Target};
use crate::hybrid::{output, ErrorKind, HybridError};
use crate::routing::facts::{RequestFacts, USER};
use crate::routing::{choose_group, place, RouteReason};
use crate::snapshot::Snapshot;

/// Registrations one request may make.
const MAX_REGISTRATIONS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HybridRequest {
    /// alias → Trino SQL.
    #[serde(default)]
    register: BTreeMap<String, String>,
    sql: String,
    /// Routing group for the subqueries; without it the routing policies decide.
    group: Option<String>,
    #[serde(default)]
    format: Format,
    /// Identity for the subqueries when the admin API has no authentication.
    user: Option<String>,
    catalog: Option<String>,
    schema: Option<String>,
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    #[default]
    Json,
    Csv,
    Arrow,
}

pub async fn hybrid_query(State(st): State<AdminState>, req: Request) -> Response {
    match run(st, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(kind = ?e.kind, message = %e.message, "hybrid query refused or failed");
            e.into_response()
        }
    }
}

async fn run(st: AdminState, req: Request) -> Result<Response, HybridError> {
    let started = Instant::now();
    let principal = req.extensions().get::<Principal>().cloned();
    let headers = req.headers().clone();
    // The body is already in memory (`read_whole_body`), within the admin API's limit.
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .map_err(|e| HybridError::validation(format!("cannot read the request body: {e}")))?;
    let r: HybridRequest = serde_json::from_slice(&body)
        .map_err(|e| HybridError::validation(format!("invalid hybrid request: {e}")))?;

    let snap = st.gateway.snapshots.load();
    let cfg = snap.config.hybrid.clone();
    let user = caller(&snap, principal.as_ref(), r.user.as_deref(), &headers)?;

    // Everything is checked before anything runs.
    if r.sql.trim().is_empty() {
        return Err(HybridError::validation("`sql` is empty"));
    }
    if r.sql.len() > MAX_SQL_BYTES {
        return Err(HybridError::validation(format!(
            "`sql` is longer than {MAX_SQL_BYTES} bytes"
        )));
    }
    if r.register.len() > MAX_REGISTRATIONS {
        return Err(HybridError::validation(format!(
            "at most {MAX_REGISTRATIONS} registrations per request"
        )));
    }
    let mut seen = HashSet::new();
    for (alias, sql) in &r.register {
        guard::check_identifier(NameKind::Alias, alias)?;
        let lower = alias.to_ascii_lowercase();
        if cfg.tables.contains_key(&lower) {
            return Err(HybridError::validation(format!(
                "alias `{alias}` would shadow the local table `{lower}`"
            )));
        }
        if !seen.insert(lower) {
            return Err(HybridError::validation(format!(
                "alias `{alias}` is registered twice (aliases are case-insensitive)"
            )));
        }
        guard::check_remote(sql)
            .map_err(|e| HybridError::validation(format!("registration `{alias}`: {e}")))?;
    }
    for (field, value) in [("catalog", &r.catalog), ("schema", &r.schema)] {
        if value
            .as_deref()
            .is_some_and(|v| v.trim().is_empty() || HeaderValue::from_str(v).is_err())
        {
            return Err(HybridError::validation(format!(
                "`{field}` must be a non-empty header value (visible ASCII)"
            )));
        }
    }
    let mut targets = Vec::with_capacity(r.register.len());
    for alias in r.register.keys() {
        targets.push(route(&snap, r.group.as_deref(), &user, alias, &r)?);
    }

    let limits = Limits {
        max_rows: cfg.max_registration_rows,
        max_memory: cfg.max_memory_mb.saturating_mul(1 << 20),
    };
    let timeout = Duration::from_secs(cfg.timeout_seconds);
    let tables = st.hybrid.tables(&cfg.tables, cfg.threads).await;
    let http = snap.upstream_client().clone();
    let (register, sql, threads) = (r.register.clone(), r.sql.clone(), cfg.threads);
    let max_result_rows = usize::try_from(cfg.max_result_rows).unwrap_or(usize::MAX);
    // Fetching runs on the engine's runtime too: parsing pages and building Arrow arrays is CPU
    // work that belongs with the join, at the engine's lower priority.
    let work = on_engine(threads, async move {
        let memory = Arc::new(AtomicU64::new(0));
        let fetches = register.iter().zip(&targets).map(|((alias, sql), target)| {
            let (http, limits, memory) = (&http, &limits, &memory);
            async move {
                remote::fetch(http, alias, sql, target, limits, memory)
                    .await
                    .map(|reg| (alias.to_ascii_lowercase(), reg))
            }
        });
        // The first failure drops the other fetches, which cancels their remote queries.
        let registrations = futures::future::try_join_all(fetches).await?;
        let stats: serde_json::Map<String, Value> = registrations
            .iter()
            .map(|(a, reg)| (a.clone(), reg.stats.clone()))
            .collect();
        let out = LocalQuery {
            sql,
            tables,
            registrations,
            max_result_rows,
            max_memory: usize::try_from(limits.max_memory).unwrap_or(usize::MAX),
            threads,
        }
        .run()
        .await?;
        Ok::<_, HybridError>((out, stats))
    });
    let (out, stats) = tokio::time::timeout(timeout, work).await.map_err(|_| {
        HybridError::new(
            ErrorKind::Timeout,
            format!(
                "the hybrid query took longer than {}s (hybrid.timeout_seconds); remote queries \
                 were cancelled",
                cfg.timeout_seconds
            ),
        )
    })???;

    tracing::info!(
        %user,
        registrations = stats.len(),
        rows = out.rows,
        truncated = out.truncated,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "hybrid query"
    );
    let stats = Value::Object(stats);
    let internal = |e: output::OutputError| HybridError::new(ErrorKind::QueryError, e.to_string());
    Ok(match r.format {
        Format::Json => Json(json!({
            "columns": output::columns(&out.schema),
            "rows": output::rows(&out.batches).map_err(internal)?,
            "row_count": out.rows,
            "truncated": out.truncated,
            "remote_stats": stats,
        }))
        .into_response(),
        Format::Csv => with_meta(
            "text/csv; charset=utf-8",
            output::csv(&out.schema, &out.batches)
                .map_err(internal)?
                .into(),
            out.rows,
            out.truncated,
            &stats,
        ),
        Format::Arrow => with_meta(
            "application/vnd.apache.arrow.stream",
            output::arrow_ipc(&out.schema, &out.batches).map_err(internal)?,
            out.rows,
            out.truncated,
            &stats,
        ),
    })
}

/// CSV and Arrow bodies carry the result only; row count, truncation and remote stats go in
/// headers.
fn with_meta(
    content_type: &'static str,
    body: Vec<u8>,
    rows: usize,
    truncated: bool,
    stats: &Value,
) -> Response {
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        HeaderName::from_static("x-trino-edge-row-count"),
        HeaderValue::from(rows),
    );
    h.insert(
        HeaderName::from_static("x-trino-edge-truncated"),
        HeaderValue::from_static(if truncated { "true" } else { "false" }),
    );
    // serde_json leaves non-ASCII as is, which a header cannot carry; such stats stay out.
    if let Ok(v) = HeaderValue::from_str(&stats.to_string()) {
        h.insert(HeaderName::from_static("x-trino-edge-remote-stats"), v);
    }
    resp
}

/// Who the subqueries run as: the authenticated caller; without admin auth, the request's `user`,
/// its `X-Trino-User` header, or `hybrid.default_user`.
fn caller(
    snap: &Snapshot,
    principal: Option<&Principal>,
    requested: Option<&str>,
    headers: &HeaderMap,
) -> Result<String, HybridError> {
    if snap.config.admin.auth.is_some() {
        let p = principal.ok_or_else(|| HybridError::validation("no authenticated caller"))?;
        if requested.is_some_and(|u| u != p.name) {
            return Err(HybridError::validation(
                "`user` cannot differ from the authenticated caller: subqueries run as the caller",
            ));
        }
        return Ok(p.name.clone());
    }
    let header_user = USER
        .get(headers)
        .map_err(|h| HybridError::validation(format!("header {h} is not valid UTF-8")))?;
    let user = requested
        .or(header_user)
        .unwrap_or(&snap.config.hybrid.default_user)
        .trim();
    if user.is_empty() || HeaderValue::from_str(user).is_err() {
        return Err(HybridError::validation(
            "the user must be a non-empty header value",
        ));
    }
    Ok(user.to_string())
}

/// Choose the backend of one subquery like a submission: the request's `group`, else the routing
/// policies (on the first listener's name, with the subquery's user and source).
fn route(
    snap: &Snapshot,
    group: Option<&str>,
    user: &str,
    alias: &str,
    r: &HybridRequest,
) -> Result<Target, HybridError> {
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static("x-trino-user"),
        HeaderValue::from_str(user).map_err(|_| {
            HybridError::validation(format!("user `{user}` is not a valid header value"))
        })?,
    );
    h.insert(
        HeaderName::from_static("x-trino-source"),
        HeaderValue::from_static(remote::SOURCE),
    );
    let listener = snap.listeners.first().map_or("", |l| l.as_ref());
    let facts = RequestFacts::from_headers(listener, &h)
        .map_err(|e| HybridError::validation(format!("header {e} is not valid UTF-8")))?;
    let (g, reason) = match group {
        Some(name) => match snap.group_by_name(name) {
            Some(g) => (g, RouteReason::Header),
            None => {
                return Err(HybridError::validation(format!(
                    "no group named `{name}`; groups: {}",
                    snap.groups
                        .iter()
                        .map(|g| &*g.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        },
        None => choose_group(snap, &facts),
    };
    let placed = place(snap, g, reason, &facts, true).map_err(|(g, why)| {
        let mut e = HybridError::new(
            ErrorKind::RemoteError,
            format!(
                "registration `{alias}`: no backend of group `{}` can take a query ({why:?})",
                snap.groups[g].name
            ),
        )
        .details(json!({"alias": alias, "group": snap.groups[g].name}));
        e.status = 503;
        e
    })?;
    let b = &snap.backends[placed.backend];
    Ok(Target {
        backend: b.name.to_string(),
        base: b.url.trim_end_matches('/').to_string(),
        user: user.to_string(),
        catalog: r.catalog.clone(),
        schema: r.schema.clone(),
    })
}
