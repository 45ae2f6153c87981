#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: policies on query content (`match.statement`, `catalogs_any`, `tables_any`, ...)
//! route by what the statement touches; the statement reaches the backend whole (also above
//! Pingora's 64 KiB retry buffer, and again on a retry); what cannot be analyzed falls back to the
//! header conditions; the dry run shows the same.

mod common;

use common::*;
use serde_json::json;
use std::process::Command;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use trino_edge::emulator::EmulatorHandle;

const POLICIES: &str = "    - { name: etl-writes, priority: 30, group: etl, match: { statement: [insert, create_table_as] } }
    - { name: hive, priority: 20, group: hive, match: { catalogs_any: [\"hive\"] } }
    - { name: sales-tables, priority: 10, group: etl, match: { tables_any: [\"*.sales.*\"], user: \"^svc\" } }
";

struct Setup {
    gw: Gateway,
    adhoc: EmulatorHandle,
    hive: EmulatorHandle,
    etl: EmulatorHandle,
}

/// Groups `adhoc` (default), `hive` and `etl`, one emulator each; `hive` also has a backend
/// that refuses connections, so that a statement is sent again on a retry.
async fn setup() -> Setup {
    let (adhoc, hive, etl) = (
        backend(1000).await,
        backend(1000).await,
        backend(1000).await,
    );
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[
            ("adhoc", "round_robin"),
            ("hive", "round_robin"),
            ("etl", "round_robin"),
        ],
        &[
            ("adhoc-1", adhoc.url(), "adhoc"),
            ("hive-dead", dead, "hive"),
            ("hive-1", hive.url(), "hive"),
            ("etl-1", etl.url(), "etl"),
        ],
        POLICIES,
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    Setup {
        gw,
        adhoc,
        hive,
        etl,
    }
}

fn ran_on<'a>(id: &str, backends: &[(&'a str, &EmulatorHandle)]) -> &'a str {
    backends
        .iter()
        .find(|(_, b)| coordinator_of(id) == b.coordinator_id())
        .map(|(n, _)| *n)
        .unwrap_or("?")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_are_routed_by_what_they_touch() {
    let s = setup().await;
    let all = [("adhoc", &s.adhoc), ("hive", &s.hive), ("etl", &s.etl)];
    let client = Client::new(&s.gw.url);

    // The real Python client at its default settings (spooling asked for).
    if let Some(python) = tool("TRINO_EDGE_PYTHON") {
        let port = s.gw.url.rsplit(':').next().unwrap().to_string();
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/clients/python_content.py"
        );
        let stdout = tokio::task::spawn_blocking(move || {
            run(Command::new(python).args([script, "127.0.0.1", &port]))
        })
        .await
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
        for (label, want, rows) in [
            ("hive_qualified", "hive", 7),
            ("iceberg_qualified", "adhoc", 7),
            ("no_table", "adhoc", 1),
            ("hive_session", "hive", 7),
        ] {
            let id = v[label]["id"].as_str().unwrap();
            assert_eq!(ran_on(id, &all), want, "{label}: {v}");
            assert_eq!(v[label]["rows"], rows, "{label}: {v}");
        }
    }

    // Statement kinds and table patterns, through the protocol.
    for (sql, user, want) in [
        ("SELECT * FROM hive.web.daily", "tester", "hive"),
        // `USE` touches the catalog it switches to.
        ("USE hive.web", "tester", "hive"),
        ("SELECT * FROM iceberg.sales.daily", "tester", "adhoc"),
        ("SELECT * FROM iceberg.sales.daily", "svc_etl", "etl"),
        // A statement that does not parse: only the header conditions route it.
        ("SELEC * FROM hive.web.daily", "tester", "adhoc"),
    ] {
        let mut c = client.clone();
        c.user = user.into();
        let out = c.run(sql, &[]).await;
        assert_eq!(ran_on(&out.id, &all), want, "{sql} as {user}: {out:?}");
    }
    // The unparsable one reached its backend unchanged: Trino's own syntax error came back.
    let out = client.run("SELEC * FROM hive.web.daily", &[]).await;
    assert_eq!(out.error.as_ref().unwrap()["errorName"], "SYNTAX_ERROR");

    // An INSERT goes to the ETL group even though it names a hive table (higher priority).
    let resp = client
        .submit(
            "INSERT INTO hive.web.daily SELECT * FROM hive.web.daily",
            &[],
        )
        .await;
    let body: serde_json::Value = resp.json().await.unwrap();
    let insert_id = body["id"].as_str().unwrap().to_string();
    assert_eq!(ran_on(&insert_id, &all), "etl", "{body}");
    // The history records what the statement touched.
    let api = Api::new(&s.gw);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let entry = loop {
        let (status, v) = api.get(&format!("/api/v1/queries/{insert_id}")).await;
        if status == 200 {
            break v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{insert_id} not in the history: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(entry["statementType"], "insert", "{entry}");
    assert_eq!(entry["catalogs"], "hive", "{entry}");
    assert_eq!(entry["policy"], "etl-writes", "{entry}");
    assert!(metric_sum(&s.gw, "trino_edge_statements_analyzed_total", "unparsed").await >= 2.0);
    assert!(metric_sum(&s.gw, "trino_edge_statements_analyzed_total", "analyzed").await >= 6.0);

    // The session catalog and schema qualify names (the Java gateway's trinoQueryProperties).
    let out = client
        .run(
            "SELECT * FROM daily",
            &[("X-Trino-Catalog", "hive"), ("X-Trino-Schema", "web")],
        )
        .await;
    assert_eq!(ran_on(&out.id, &all), "hive");
    assert_eq!(out.rows.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_statements_reach_the_backend_whole_also_large_and_on_retry() {
    let s = setup().await;
    let client = Client::new(&s.gw.url);
    // 1 KB, 100 KB and 900 KB statements: the padding is a comment the backend must see to
    // answer the query at all (a cut statement is a syntax error). `hive` sends about every
    // other submission to a dead backend first, so several of these are sent twice.
    for size in [1_000usize, 100_000, 900_000] {
        for _ in 0..2 {
            let sql = format!("SELECT * FROM hive.web.daily /* {} */", "x".repeat(size));
            let out = client.run(&sql, &[]).await;
            assert!(out.error.is_none(), "{size} bytes: {:?}", out.error);
            assert_eq!(out.rows.len(), 7, "{size} bytes");
            assert_eq!(coordinator_of(&out.id), s.hive.coordinator_id());
        }
    }
    assert!(
        metric_sum(&s.gw, "trino_edge_retries_total", "hive-dead").await >= 1.0,
        "no submission was retried on the live backend"
    );
    assert_eq!(s.hive.state.stats().submissions, 6);

    // A client that waits for `100 Continue` (curl does above 1 KiB) gets it from the gateway,
    // and the backend does not send a second one.
    let addr = s.gw.url.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let sql = "SELECT * FROM hive.web.daily";
    let head = format!(
        "POST /v1/statement HTTP/1.1\r\nHost: {addr}\r\nX-Trino-User: curl\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        sql.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("no 100 Continue")
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue\r\n\r\n"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    tcp.write_all(sql.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tcp.read_to_end(&mut answer),
    )
    .await
    .expect("answer not complete")
    .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    assert!(text.contains(s.hive.coordinator_id()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_shows_what_the_statement_touches() {
    let s = setup().await;
    let api = Api::new(&s.gw);
    let (status, v) = api
        .post(
            "/api/v1/route",
            json!({
                "headers": {"X-Trino-User": "ana", "X-Trino-Catalog": "hive", "X-Trino-Schema": "web"},
                "sql": "WITH d AS (SELECT * FROM daily) SELECT * FROM d JOIN iceberg.sales.orders o ON true",
            }),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["decision"], "policy", "{v}");
    assert_eq!(v["policy"], "hive", "{v}");
    assert_eq!(v["query"]["analyzed"], true, "{v}");
    assert_eq!(v["query"]["statement"], "select", "{v}");
    assert_eq!(v["query"]["catalogs"], json!(["hive", "iceberg"]), "{v}");
    assert_eq!(
        v["query"]["tables"],
        json!(["hive.web.daily", "iceberg.sales.orders"]),
        "{v}"
    );
    // The matching policy's patterns are shown as written.
    let why = v["explanation"].to_string();
    assert!(why.contains("catalogs any of [hive]"), "{why}");
    let (_, v) = api
        .post(
            "/api/v1/route",
            json!({"headers": {"X-Trino-User": "svc_etl"}, "sql": "SELECT * FROM iceberg.sales.orders"}),
        )
        .await;
    assert_eq!(v["policy"], "sales-tables", "{v}");
    let why = v["explanation"].to_string();
    assert!(why.contains("tables any of [*.sales.*]"), "{why}");
    // Not analyzed: said so, and the content conditions do not hold.
    let (_, v) = api
        .post(
            "/api/v1/route",
            json!({"headers": {"X-Trino-User": "ana"}, "sql": "SELEC 1"}),
        )
        .await;
    assert_eq!(v["query"]["analyzed"], false, "{v}");
    assert!(
        v["query"]["error"]
            .as_str()
            .unwrap()
            .contains("does not parse"),
        "{v}"
    );
    assert_eq!(v["decision"], "default", "{v}");
    let why = v["explanation"].to_string();
    assert!(why.contains("the statement was not analyzed"), "{why}");
}
