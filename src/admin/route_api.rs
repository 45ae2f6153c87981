//! `POST /api/v1/route`: a dry run of the routing decision for a submission.
//!
//! Operators ask "where would this query go, and why?" before they change a policy or when a user
//! lands on the wrong cluster. The answer runs the very code the proxy runs — transaction
//! ownership, the routing-group header, policies by priority, the default group, the group's
//! strategy and its fallback — on the current snapshot, but moves nothing: no rotation advances,
//! no metric counts.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

use super::config_api::{ApiError, ApiResult};
use super::AdminState;
use crate::config::Strategy;
use crate::proxy::admission::{self, unavailable, Decision};
use crate::proxy::error::GatewayError;
use crate::routing::facts::{RequestFacts, USER};
use crate::routing::query::QueryProperties;
use crate::routing::strategy::{self, Unavailable};
use crate::routing::RouteReason;
use crate::snapshot::Snapshot;

/// What a submission would carry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteRequest {
    /// Listener name; may be omitted when the gateway has exactly one.
    listener: Option<String>,
    /// Request headers (`X-Trino-User`, `X-Trino-Client-Tags`, `Host`, ...).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// The statement: shown as the history would record it, and analyzed as the proxy does for
    /// policies on query content (what it touches, or why it could not be analyzed).
    sql: Option<String>,
}

fn bad(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn gateway_error(e: &GatewayError) -> Value {
    json!({
        "httpStatus": e.status,
        "errorName": e.name,
        "errorType": e.error_type,
        "message": e.message,
    })
}

fn reason_text(why: Unavailable) -> &'static str {
    match why {
        Unavailable::AllFull => "every backend is at its concurrency limit",
        Unavailable::NoneHealthy => "no enabled, healthy backend",
    }
}

pub async fn dry_run(State(st): State<AdminState>, body: Bytes) -> ApiResult {
    let req: RouteRequest =
        serde_json::from_slice(&body).map_err(|e| bad(format!("invalid route request: {e}")))?;
    let snap = st.gateway.snapshots.load();
    let listener = match req.listener {
        Some(l) => snap
            .listeners
            .iter()
            .find(|x| ***x == *l)
            .cloned()
            .ok_or_else(|| {
                bad(format!(
                    "no listener named `{l}`; listeners: {}",
                    snap.listeners.join(", ")
                ))
            })?,
        None if snap.listeners.len() == 1 => snap.listeners[0].clone(),
        None => {
            return Err(bad(format!(
                "`listener` is required: this gateway has several ({})",
                snap.listeners.join(", ")
            )))
        }
    };
    let mut headers = HeaderMap::new();
    for (k, v) in &req.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| bad(format!("`{k}` is not a valid header name")))?;
        let value = HeaderValue::from_str(v).map_err(|_| {
            bad(format!(
                "the value of header `{k}` is not a valid header value"
            ))
        })?;
        headers.append(name, value);
    }
    let sql = match &req.sql {
        Some(s) if s.trim().is_empty() => {
            return Err(bad(
                "`sql` is empty; Trino rejects an empty statement".into()
            ))
        }
        Some(s) => json!({
            "bytes": s.len(),
            "recordedAs": s.chars().take(crate::proxy::HISTORY_SQL_CHARS).collect::<String>(),
        }),
        None => Value::Null,
    };
    let mut out = json!({
        "snapshotVersion": snap.version,
        "listener": &*listener,
        "sql": sql,
    });
    let Some(o) = out.as_object_mut() else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "dry run answer is not an object".into(),
        ));
    };

    // The proxy's own admission, in its order: what it would refuse, this refuses the same way.
    let listener_cfg = snap
        .config
        .proxy
        .listeners
        .iter()
        .find(|l| *l.name == *listener);
    let refused = |o: &mut serde_json::Map<String, Value>, e: GatewayError| {
        o.insert("decision".into(), json!("refused"));
        o.insert("backend".into(), Value::Null);
        o.insert("explanation".into(), json!([e.message.clone()]));
        o.insert("error".into(), gateway_error(&e));
    };
    match admission::identity(listener_cfg, &listener, &headers) {
        Ok(Some(user)) => {
            headers.remove(&USER.presto);
            headers.insert(USER.trino.clone(), user);
        }
        Ok(None) => {}
        Err(e) => {
            refused(o, e);
            return Ok(Json(out).into_response());
        }
    }
    // What the proxy would find in the statement (it reads it only while a policy needs it).
    let query = req
        .sql
        .as_ref()
        .map(|s| QueryProperties::analyze(s.as_bytes(), &headers));
    let query_json = match (&query, snap.content_routing) {
        (None, true) => {
            json!({"analyzed": false, "error": "no `sql` given: content conditions do not hold"})
        }
        (None, false) => Value::Null,
        (Some(q), _) => {
            let mut v = json!(q);
            if let Some(o) = v.as_object_mut() {
                o.insert("analyzed".into(), json!(q.analyzed()));
                if !snap.content_routing {
                    o.insert(
                        "note".into(),
                        json!("no policy reads the statement: the proxy does not hold it"),
                    );
                }
            }
            v
        }
    };
    o.insert("query".into(), query_json);
    // The proxy's own decision, made without moving any rotation.
    let decision = admission::decide(
        &snap,
        listener_cfg,
        &listener,
        &headers,
        Some(admission::Submission {
            declared_length: req.sql.as_ref().map(|s| s.len() as u64),
            query: query.as_ref().filter(|_| snap.content_routing),
        }),
        false,
    );
    let (facts, route) = match decision {
        Err(e) => {
            refused(o, e);
            return Ok(Json(out).into_response());
        }
        Ok(Decision::Route(facts, route)) => (facts, route),
        Ok(Decision::Transaction(txn)) => {
            o.insert("decision".into(), json!("transaction"));
            match st.gateway.sticky.resolve_transaction(txn) {
                Some(b) => {
                    o.insert(
                        "explanation".into(),
                        json!([format!(
                            "transaction {txn} was started on backend `{}`",
                            b.name
                        )]),
                    );
                    o.insert("backend".into(), json!({"name": &*b.name, "url": b.url}));
                    o.insert("error".into(), Value::Null);
                }
                None => {
                    o.insert(
                        "explanation".into(),
                        json!([format!(
                            "transaction {txn} is not known to this gateway instance"
                        )]),
                    );
                    o.insert("backend".into(), Value::Null);
                    o.insert(
                        "error".into(),
                        gateway_error(&GatewayError::unknown_transaction(txn)),
                    );
                }
            }
            return Ok(Json(out).into_response());
        }
    };
    let (group, reason) = (route.group, route.reason);
    let mut why = Vec::new();
    match facts.routing_group {
        _ if !snap.honor_routing_group_header => {
            why.push("the X-Trino-Routing-Group header is not honoured (routing.honor_routing_group_header: false)".to_string())
        }
        None => why.push("no X-Trino-Routing-Group header".to_string()),
        Some(g) if reason == RouteReason::Header => {
            why.push(format!("X-Trino-Routing-Group names the existing group `{}`", g.trim()))
        }
        Some(g) => why.push(format!(
            "X-Trino-Routing-Group names `{g}`, which is not a group; ignored"
        )),
    }
    if reason != RouteReason::Header {
        for (i, p) in snap.policies.iter().enumerate() {
            match p.mismatch(&facts) {
                Some(cond) => why.push(format!(
                    "policy `{}` (priority {}): `{cond}` does not match",
                    p.name, p.priority
                )),
                None => {
                    why.push(format!(
                        "policy `{}` (priority {}) matches: {} → group `{}`",
                        p.name,
                        p.priority,
                        p.describe_conditions(),
                        snap.groups[p.group].name
                    ));
                    debug_assert_eq!(reason, RouteReason::Policy(i));
                    break;
                }
            }
        }
        if reason == RouteReason::Default {
            why.push(format!(
                "no policy matches → default group `{}`",
                snap.groups[snap.default_group].name
            ));
        }
    }
    let (decision, policy) = match reason {
        RouteReason::Header => ("routing-group-header", Value::Null),
        RouteReason::Policy(i) => ("policy", json!(snap.policies[i].name)),
        RouteReason::Default => ("default", Value::Null),
    };
    o.insert("decision".into(), json!(decision));
    o.insert("policy".into(), policy);
    o.insert("chosenGroup".into(), json!(&*snap.groups[group].name));
    let admitted = admission::admit(
        &snap,
        &st.gateway.queue,
        &route,
        facts.user,
        facts.source,
        false,
    );
    if let admission::Admitted::Hold(g, hold) = admitted {
        let name = &*snap.groups[g].name;
        why.push(format!(
            "the gateway holds the query in group `{name}`'s queue: {}; the client sees QUEUED \
             until a backend can take it",
            hold.text()
        ));
        o.insert(
            "queue".into(),
            json!({"group": name, "reason": hold.text(), "waiting": st.gateway.queue.waiting()}),
        );
        o.insert("group".into(), json!(name));
        o.insert("strategy".into(), json!(snap.groups[g].strategy.as_str()));
        o.insert("selection".into(), selection_json(&snap, g, &facts, None));
        o.insert("candidates".into(), json!(eligible(&snap, g)));
        o.insert("fallback".into(), Value::Null);
        o.insert("backend".into(), Value::Null);
        o.insert("error".into(), Value::Null);
        o.insert("explanation".into(), json!(why));
        return Ok(Json(out).into_response());
    }
    o.insert("queue".into(), Value::Null);
    match route.placement {
        Ok(p) => {
            let g = &snap.groups[p.group];
            if let Some((from, reason)) = p.fell_back_from {
                why.push(format!(
                    "group `{}` has {} → falls back to group `{}`",
                    snap.groups[from].name,
                    reason_text(reason),
                    g.name
                ));
                o.insert(
                    "fallback".into(),
                    json!({"from": &*snap.groups[from].name, "to": &*g.name, "reason": reason_text(reason)}),
                );
            } else {
                o.insert("fallback".into(), Value::Null);
            }
            let b = &snap.backends[p.backend];
            let choice = strategy_choice(&snap, p.group, p.backend, &facts);
            why.push(format!(
                "strategy {} picks backend `{}`: {choice}",
                g.strategy.as_str(),
                b.name
            ));
            o.insert("group".into(), json!(&*g.name));
            o.insert("strategy".into(), json!(g.strategy.as_str()));
            o.insert(
                "selection".into(),
                selection_json(&snap, p.group, &facts, Some(choice)),
            );
            o.insert("candidates".into(), json!(eligible(&snap, p.group)));
            o.insert("backend".into(), json!({"name": &*b.name, "url": b.url}));
            o.insert("error".into(), Value::Null);
        }
        Err((g, reason)) => {
            why.push(format!(
                "group `{}` has {}, and no fallback applies",
                snap.groups[g].name,
                reason_text(reason)
            ));
            o.insert("fallback".into(), Value::Null);
            o.insert("group".into(), json!(&*snap.groups[g].name));
            o.insert("strategy".into(), json!(snap.groups[g].strategy.as_str()));
            o.insert("selection".into(), selection_json(&snap, g, &facts, None));
            o.insert("candidates".into(), json!(eligible(&snap, g)));
            o.insert("backend".into(), Value::Null);
            o.insert(
                "error".into(),
                gateway_error(&unavailable(&snap, g, reason)),
            );
        }
    }
    o.insert("explanation".into(), json!(why));
    Ok(Json(out).into_response())
}

/// Names of the backends of `group` that may take a new query now.
fn eligible(snap: &Snapshot, group: usize) -> Vec<&str> {
    snap.groups[group]
        .members
        .iter()
        .map(|&bi| &snap.backends[bi])
        .filter(|b| strategy::available(snap, b))
        .map(|b| &*b.name)
        .collect()
}

/// Why the group's strategy picked `backend`, in words.
fn strategy_choice(
    snap: &Snapshot,
    group: usize,
    backend: usize,
    facts: &RequestFacts<'_>,
) -> String {
    let g = &snap.groups[group];
    let b = &snap.backends[backend];
    match g.strategy {
        Strategy::RoundRobin => "the next eligible backend in the rotation".into(),
        Strategy::Weighted => format!(
            "the next eligible backend in the rotation over the weights (weight {} of {})",
            b.weight,
            g.members
                .iter()
                .map(|&i| snap.backends[i].weight)
                .sum::<u32>()
        ),
        Strategy::Random => {
            "one random draw among the eligible backends (the proxy draws again)".into()
        }
        Strategy::LeastLoad => format!(
            "the lowest estimated load ({} running + {} queued); loads now: {}",
            b.running_estimate(),
            b.queued_reported(),
            g.members
                .iter()
                .map(|&i| {
                    let m = &snap.backends[i];
                    format!("{} {}", m.name, m.running_estimate() + m.queued_reported())
                })
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Strategy::Consistent => {
            let key = g.selector.key(facts);
            let hash_key = g
                .selector
                .hash_key()
                .map(|k| k.to_string())
                .unwrap_or_default();
            if key.is_empty() {
                format!("the request has no {hash_key}: the empty key's place on the hash ring")
            } else {
                format!(
                    "{hash_key} `{}` hashes to this backend on the ring (the same key always does while it is eligible)",
                    String::from_utf8_lossy(key)
                )
            }
        }
    }
}

/// The strategy's inputs and choice, for the dry-run answer.
fn selection_json(
    snap: &Snapshot,
    group: usize,
    facts: &RequestFacts<'_>,
    choice: Option<String>,
) -> Value {
    let g = &snap.groups[group];
    let key = g.selector.hash_key().map(|k| {
        json!({
            "hash_key": k.to_string(),
            "value": String::from_utf8_lossy(g.selector.key(facts)),
        })
    });
    json!({
        "strategy": g.strategy.as_str(),
        "key": key,
        "why": choice,
    })
}
