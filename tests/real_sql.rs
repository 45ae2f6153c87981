#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The emulated coordinators answer ordinary SQL (`emulator::engine`, on DataFusion): TPC-H's
//! `tpch.tiny`, arithmetic and functions, `memory` tables, `information_schema` — through the
//! gateway, with the real Python client (default settings, spooled results), SQLAlchemy's
//! inspector, the Trino CLI jar and npm `trino-client`.

mod common;

use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// The Python client's rows and column types of each statement, in one session.
async fn python_sql(python: String, url: &str, statements: &[&str]) -> Value {
    let port = url.rsplit(':').next().unwrap().to_string();
    let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_sql.py");
    let stdout = tokio::task::spawn_blocking(move || {
        run(Command::new(python)
            .args([script, "127.0.0.1", &port])
            .args(&statements))
    })
    .await
    .unwrap();
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_and_ordinary_sql_through_the_python_client() {
    let Some(python) = tool("TRINO_EDGE_PYTHON") else {
        return;
    };
    let b1 = backend(1000).await;
    let b2 = backend(1000).await;
    let gw = simple_gateway(&[&b1, &b2], "round_robin").await;
    let out = python_sql(
        python,
        &gw.url,
        &[
            "SELECT count(*) FROM tpch.tiny.lineitem",
            "SELECT 1+1, upper('trino'), count(*) FROM UNNEST(sequence(1, 100000))",
            "SELECT name, regionkey FROM tpch.tiny.nation WHERE nationkey = 7",
            "SELECT returnflag, linestatus, count(*), sum(quantity) FROM tpch.tiny.lineitem \
             WHERE shipdate <= DATE '1998-09-02' GROUP BY 1, 2 ORDER BY 1, 2",
        ],
    )
    .await;
    assert_eq!(out[0]["rows"], json!([[60175]]), "{out}");
    assert_eq!(out[0]["types"], json!(["bigint"]));
    assert_eq!(out[1]["rows"], json!([[2, "TRINO", 100000]]), "{out}");
    assert_eq!(out[2]["rows"], json!([["GERMANY", 3]]), "{out}");
    assert_eq!(out[2]["types"], json!(["varchar", "bigint"]));
    // TPC-H query 1's reference answer at scale 0.01 (its counts and quantities).
    assert_eq!(
        out[3]["rows"],
        json!([
            ["A", "F", 14876, 380456.0],
            ["N", "F", 348, 8971.0],
            ["N", "O", 29181, 742802.0],
            ["R", "F", 14902, 381449.0]
        ]),
        "{out}"
    );
    // Both backends answered (round robin), each from its own generated copy.
    assert!(b1.state.stats().submissions >= 2 && b2.state.stats().submissions >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_tables_live_on_their_cluster() {
    let Some(python) = tool("TRINO_EDGE_PYTHON") else {
        return;
    };
    let b1 = backend(1000).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let out = python_sql(
        python,
        &gw.url,
        &[
            "CREATE TABLE memory.default.t AS SELECT 1 AS x",
            "INSERT INTO memory.default.t VALUES (2), (3)",
            "SELECT sum(x), count(*) FROM memory.default.t",
            "DROP TABLE memory.default.t",
        ],
    )
    .await;
    // Like Trino, writes answer with the rows they wrote.
    assert_eq!(out[0]["rows"], json!([[1]]), "{out}");
    assert_eq!(out[1]["rows"], json!([[2]]), "{out}");
    assert_eq!(out[2]["rows"], json!([[6, 3]]), "{out}");
    let failed = Client::new(&gw.url)
        .run("SELECT * FROM memory.default.t", &[])
        .await;
    let error = failed.error.expect("the dropped table is gone");
    assert_eq!(error["errorName"], "TABLE_NOT_FOUND", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_and_the_npm_client_count_lineitem() {
    let b1 = backend(1000).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    if let Some(jar) = tool("TRINO_CLI_JAR") {
        let stdout = trino_cli_csv(jar, &gw.url, "SELECT count(*) FROM tpch.tiny.lineitem").await;
        assert_eq!(stdout.trim(), "\"60175\"");
    }
    if let Some(modules) = tool("TRINO_EDGE_NODE_MODULES") {
        let url = gw.url.clone();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/node_sql.mjs");
        let stdout = tokio::task::spawn_blocking(move || {
            run(Command::new("node")
                .args([
                    script,
                    &url,
                    "SELECT count(*), min(orderdate) FROM tpch.tiny.orders",
                ])
                .env("TRINO_EDGE_NODE_MODULES", modules))
        })
        .await
        .unwrap();
        let v: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
        assert_eq!(v["rows"], json!([[15000, "1992-01-01"]]), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_inspector_lists_schemas_tables_and_columns() {
    let Some(python) = tool("TRINO_EDGE_PYTHON") else {
        return;
    };
    let b1 = backend(1000).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let port = gw.url.rsplit(':').next().unwrap().to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_inspector.py"
    );
    let stdout = tokio::task::spawn_blocking(move || {
        run(Command::new(python).args([script, "127.0.0.1", &port, "tpch", "tiny", "nation"]))
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(
        v["schemas"],
        json!(["information_schema", "sf1", "tiny"]),
        "{v}"
    );
    assert_eq!(
        v["tables"],
        json!([
            "customer", "lineitem", "nation", "orders", "part", "partsupp", "region", "supplier"
        ]),
        "{v}"
    );
    assert_eq!(
        v["columns"],
        json!([
            ["nationkey", "BIGINT", false],
            ["name", "VARCHAR", false],
            ["regionkey", "BIGINT", false],
            ["comment", "VARCHAR", false]
        ]),
        "{v}"
    );
}
