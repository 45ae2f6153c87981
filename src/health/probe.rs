//! One probe of one backend: `/v1/info`, then the SQL/load query or the metrics endpoint.

use serde::Deserialize;

use crate::config::{HealthConfig, LoadSource};
use crate::snapshot::Backend;
use crate::trino_client;

/// The load query; its own row counts itself as running, which the probe subtracts.
pub const LOAD_SQL: &str =
    "SELECT state, count(*) FROM system.runtime.queries WHERE state NOT IN ('FINISHED', 'FAILED') GROUP BY state";
const SOURCE: &str = "trino-edge-health";
/// Trino states before execution starts; everything else not finished counts as running.
const QUEUED_STATES: [&str; 3] = ["QUEUED", "WAITING_FOR_RESOURCES", "DISPATCHING"];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    pub version: Option<String>,
    /// Id of the probe's own query: its last five characters are the coordinator id.
    pub query_id: Option<String>,
    /// (running, queued)
    pub load: Option<(i64, i64)>,
}

/// Why a backend failed its probe (kept as `last_error` in the admin API).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("GET /v1/info failed: {0}")]
    InfoUnreachable(String),
    #[error("GET /v1/info answered HTTP {0}")]
    InfoStatus(u16),
    #[error("routing loop: the backend is this gateway, or leads back to it (GET /v1/info answered 508)")]
    Loop,
    #[error("GET /v1/info: not Trino's answer: {0}")]
    InfoNotTrino(String),
    #[error("not a coordinator (`coordinator: false` in /v1/info)")]
    NotCoordinator,
    #[error("coordinator is still starting")]
    Starting,
    #[error("probe query: {0}")]
    Query(String),
    #[error("probe query failed: {0}")]
    QueryFailed(String),
    #[error("GET /metrics failed: {0}")]
    Metrics(String),
    #[error("GET /metrics: no QueryManager query counts")]
    NoQueryCounts,
    #[error("no answer within {0}")]
    Timeout(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    node_version: Option<NodeVersion>,
    #[serde(default)]
    coordinator: bool,
    #[serde(default)]
    starting: bool,
}

#[derive(Deserialize)]
struct NodeVersion {
    version: Option<String>,
}

/// Probe `b`. `Err` says why the backend is not healthy.
pub async fn probe(
    http: &reqwest::Client,
    b: &Backend,
    cfg: &HealthConfig,
) -> Result<ProbeResult, ProbeError> {
    let resp = http
        .get(format!("{}/v1/info", b.url))
        .send()
        .await
        .map_err(|e| ProbeError::InfoUnreachable(without_url(&e)))?;
    if resp.status() == http::StatusCode::LOOP_DETECTED {
        return Err(ProbeError::Loop);
    }
    if !resp.status().is_success() {
        return Err(ProbeError::InfoStatus(resp.status().as_u16()));
    }
    let info: Info = resp
        .json()
        .await
        .map_err(|e| ProbeError::InfoNotTrino(e.to_string()))?;
    if !info.coordinator {
        return Err(ProbeError::NotCoordinator);
    }
    if info.starting {
        return Err(ProbeError::Starting);
    }
    let mut result = ProbeResult {
        version: info.node_version.and_then(|v| v.version),
        ..ProbeResult::default()
    };

    let sql = match cfg.load {
        LoadSource::Query => Some(LOAD_SQL),
        LoadSource::Metrics | LoadSource::None => cfg.sql.as_deref(),
    };
    if let Some(sql) = sql {
        let out = trino_client::execute(http, &b.url, &cfg.user, SOURCE, sql, 50)
            .await
            .map_err(|e| ProbeError::Query(e.to_string()))?;
        if let Some(err) = out.error {
            return Err(ProbeError::QueryFailed(err.to_string()));
        }
        result.query_id = out.id;
        if cfg.load == LoadSource::Query {
            result.load = Some(load_from_rows(&out.rows));
        }
    }
    if cfg.load == LoadSource::Metrics {
        let text = http
            .get(format!("{}/metrics", b.url))
            .header("Accept", "text/plain")
            .send()
            .await
            .map_err(|e| ProbeError::Metrics(without_url(&e)))?
            .text()
            .await
            .map_err(|e| ProbeError::Metrics(e.to_string()))?;
        result.load = Some(load_from_metrics(&text).ok_or(ProbeError::NoQueryCounts)?);
    }
    Ok(result)
}

fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(src) = std::error::Error::source(e) {
        msg = format!("{msg}: {src}");
    }
    msg
}

/// `(running, queued)` from `state, count` rows, minus the probe query itself.
pub fn load_from_rows(rows: &[Vec<serde_json::Value>]) -> (i64, i64) {
    let (mut running, mut queued) = (0i64, 0i64);
    for row in rows {
        let state = row.first().and_then(|v| v.as_str()).unwrap_or("");
        let n = row.get(1).and_then(|v| v.as_i64()).unwrap_or(0);
        if QUEUED_STATES.contains(&state) {
            queued += n;
        } else {
            running += n;
        }
    }
    ((running - 1).max(0), queued)
}

/// `(running, queued)` from Trino's OpenMetrics text.
pub fn load_from_metrics(text: &str) -> Option<(i64, i64)> {
    let value = |name: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|v| v as i64)
    };
    Some((
        value("trino_execution_name_QueryManager_RunningQueries")?,
        value("trino_execution_name_QueryManager_QueuedQueries")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn counts_states_and_drops_the_probe_itself() {
        let rows = vec![
            vec![json!("RUNNING"), json!(4)],
            vec![json!("QUEUED"), json!(3)],
            vec![json!("PLANNING"), json!(1)],
            vec![json!("WAITING_FOR_RESOURCES"), json!(2)],
        ];
        assert_eq!(load_from_rows(&rows), (4, 5));
        assert_eq!(load_from_rows(&[]), (0, 0));
    }

    #[test]
    fn parses_openmetrics() {
        let text = "# TYPE trino_execution_name_QueryManager_RunningQueries gauge\n\
                    trino_execution_name_QueryManager_RunningQueries 7.0\n\
                    trino_execution_name_QueryManager_RunningQueriesX 99\n\
                    trino_execution_name_QueryManager_QueuedQueries{a=\"b\"} 2\n";
        assert_eq!(load_from_metrics(text), Some((7, 2)));
        assert_eq!(load_from_metrics("nothing 1"), None);
    }
}
