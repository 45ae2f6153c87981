//! What a client sees of a query the gateway holds: Trino's own `QueryResults` shape, so every
//! client shows it as any queued query — `QUEUED` with a `nextUri` back to the gateway — or, when
//! it cannot be held, as a failed query with Trino's error name (HTTP 200, as Trino answers a
//! failed query).

use bytes::Bytes;
use serde_json::json;

/// Why the gateway gives up on a query it would hold. Trino's own error codes: clients and
/// tools know them (`INSUFFICIENT_RESOURCES` errors are 0x0002_xxxx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error(
        "Too many queued queries for routing group `{group}`: the gateway holds at most {max} \
         while its clusters are full"
    )]
    Full { group: String, max: u32 },
    #[error(
        "Query exceeded the maximum queued time of routing group `{group}` ({limit}) at the \
         gateway: its clusters stayed full"
    )]
    TimeLimit { group: String, limit: String },
    #[error("Routing group `{group}` was removed while the query waited at the gateway")]
    GroupRemoved { group: String },
    #[error("The gateway is shutting down; the query was not started")]
    ShuttingDown,
    #[error("Query was canceled while the gateway held it; it was never started")]
    Canceled,
}

impl QueueError {
    /// Trino's error name, code and type for this failure.
    pub fn trino_code(&self) -> (&'static str, i32, &'static str) {
        match self {
            QueueError::Full { .. } => ("QUERY_QUEUE_FULL", 0x0002_0002, "INSUFFICIENT_RESOURCES"),
            QueueError::TimeLimit { .. } => {
                ("EXCEEDED_TIME_LIMIT", 0x0002_0003, "INSUFFICIENT_RESOURCES")
            }
            // Not a Trino condition: the gateway's own code range (see `proxy::error`).
            QueueError::GroupRemoved { .. } => {
                ("ROUTING_GROUP_REMOVED", 0x7E00_0000 + 40, "USER_ERROR")
            }
            QueueError::ShuttingDown => ("SERVER_SHUTTING_DOWN", 0x0001_0009, "INTERNAL_ERROR"),
            QueueError::Canceled => ("USER_CANCELED", 0x0000_0003, "USER_ERROR"),
        }
    }

    /// The metric label of this rejection.
    pub fn reason(&self) -> &'static str {
        match self {
            QueueError::Full { .. } => "full",
            QueueError::TimeLimit { .. } => "timeout",
            QueueError::GroupRemoved { .. } => "group_removed",
            QueueError::ShuttingDown => "shutdown",
            QueueError::Canceled => "canceled",
        }
    }
}

fn stats(state: &str, queued: bool, elapsed_ms: u64) -> serde_json::Value {
    json!({
        "state": state,
        "queued": queued,
        "scheduled": false,
        "nodes": 0,
        "totalSplits": 0,
        "queuedSplits": 0,
        "runningSplits": 0,
        "completedSplits": 0,
        "cpuTimeMillis": 0,
        "wallTimeMillis": 0,
        "queuedTimeMillis": elapsed_ms,
        "elapsedTimeMillis": elapsed_ms,
        "processedRows": 0,
        "processedBytes": 0,
        "physicalInputBytes": 0,
        "peakMemoryBytes": 0,
        "spilledBytes": 0,
    })
}

/// A held query's answer: `QUEUED`, polled at `nextUri` on the gateway (`base` is its public
/// origin, as backends are told it in `X-Forwarded-*`).
pub fn queued(base: &str, id: &str, slug: &str, token: u64, elapsed_ms: u64) -> Bytes {
    let body = json!({
        "id": id,
        "infoUri": format!("{base}/ui/query.html?{id}"),
        "nextUri": format!("{base}/v1/statement/queued/{id}/{slug}/{token}"),
        "stats": stats("QUEUED", true, elapsed_ms),
        "warnings": [],
    });
    Bytes::from(body.to_string())
}

/// A query the gateway could not hold or gave up on: `FAILED` with Trino's error, no `nextUri`.
pub fn failed(base: &str, id: &str, err: &QueueError, elapsed_ms: u64) -> Bytes {
    let (name, code, kind) = err.trino_code();
    let message = err.to_string();
    let body = json!({
        "id": id,
        "infoUri": format!("{base}/ui/query.html?{id}"),
        "stats": stats("FAILED", false, elapsed_ms),
        "error": {
            "message": message,
            "errorCode": code,
            "errorName": name,
            "errorType": kind,
            "failureInfo": {
                "type": "io.trino.spi.TrinoException",
                "message": message,
                "suppressed": [],
                "stack": [],
            },
        },
        "warnings": [],
    });
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_trinos_shape() {
        let q: serde_json::Value = serde_json::from_slice(&queued(
            "http://gw:8080",
            "20261130_101010_00001_0abcd",
            "s1",
            3,
            1500,
        ))
        .unwrap();
        assert_eq!(q["stats"]["state"], "QUEUED");
        assert_eq!(q["stats"]["queued"], true);
        assert_eq!(
            q["nextUri"],
            "http://gw:8080/v1/statement/queued/20261130_101010_00001_0abcd/s1/3"
        );
        let err = QueueError::Full {
            group: "etl".into(),
            max: 5,
        };
        let f: serde_json::Value =
            serde_json::from_slice(&failed("http://gw", "x", &err, 0)).unwrap();
        assert_eq!(f["stats"]["state"], "FAILED");
        assert_eq!(f["error"]["errorName"], "QUERY_QUEUE_FULL");
        assert_eq!(f["error"]["errorCode"], 131074);
        assert_eq!(f["error"]["errorType"], "INSUFFICIENT_RESOURCES");
        assert!(f.get("nextUri").is_none());
        let (name, code, _) = QueueError::TimeLimit {
            group: "g".into(),
            limit: "1s".into(),
        }
        .trino_code();
        assert_eq!((name, code), ("EXCEEDED_TIME_LIMIT", 131075));
    }
}
