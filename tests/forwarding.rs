#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `forwarding: rewrite`, for clusters without `http-server.process-forwarded`: such a Trino refuses
//! every request that carries an `X-Forwarded-*` header (406), so the gateway sends none and
//! rewrites the absolute URIs the cluster builds on its own address, as the pages stream.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use trino_edge::emulator::{EmulatorConfig, RetrievalMode, SpoolingConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_works_against_clusters_that_refuse_forwarded_headers() {
    let strict = |spooling| EmulatorConfig {
        process_forwarded: false,
        spooling,
        ..EmulatorConfig::default()
    };
    let b1 = backend_with(strict(Some(SpoolingConfig {
        mode: RetrievalMode::CoordinatorProxy,
        segment_rows: 1000,
        inline_rows: 10,
    })))
    .await;
    let b2 = backend_with(strict(None)).await;
    let legacy = backend_with(strict(None)).await;
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin"), ("legacy", "round_robin")],
        &[
            ("trino-1", b1.url(), "adhoc"),
            ("trino-2", b2.url(), "adhoc"),
            ("legacy-1", legacy.url(), "legacy"),
        ],
        "",
    )
    .replace("group: adhoc }", "group: adhoc, forwarding: rewrite }");
    let gw = Gateway::start(&yaml, port, admin).await;

    // Without `rewrite`, such a cluster refuses the gateway's requests, and says so.
    let r = Client::new(&gw.url)
        .submit("SELECT 1", &[("X-Trino-Routing-Group", "legacy")])
        .await;
    assert_eq!(r.status(), 406);
    assert!(r.text().await.unwrap().contains("X-Forwarded"));
    assert!(legacy.state.stats().forwarded_refused >= 1);

    // With it: pages come back pointing at the gateway, on both backends; a client's own
    // forwarding headers are dropped too.
    let client = Client::new(&gw.url);
    for _ in 0..2 {
        let out = client
            .run(
                "SELECT * FROM UNNEST(sequence(1, 2500))",
                &[
                    ("X-Forwarded-For", "10.9.9.9"),
                    ("X-Forwarded-Host", "evil"),
                ],
            )
            .await;
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.rows.len(), 2500);
        assert!(!out.next_uris.is_empty());
        for u in &out.next_uris {
            assert!(u.starts_with(&gw.url), "{u}");
        }
    }

    // The real clients: Python at its default (spooled) settings, the CLI and npm.
    if let Some(python) = tool("TRINO_EDGE_PYTHON") {
        python_spooled(python, &gw.url, "5,20000,3000,1").await;
        assert!(b1.state.stats().segments_issued > 0, "no spooled result");
        assert_eq!(b1.state.stats().segment_not_found, 0);
    }
    if let Some(jar) = tool("TRINO_CLI_JAR") {
        let sql =
            "SELECT * FROM UNNEST(sequence(1, 3000)); SELECT * FROM UNNEST(sequence(1, 3000))";
        let stdout = trino_cli_csv(jar, &gw.url, sql).await;
        assert_eq!(stdout.lines().count(), 6000, "{stdout}");
    }
    if let Some(modules) = tool("TRINO_EDGE_NODE_MODULES") {
        let facts = node_client(modules, &gw.url).await;
        assert_eq!(facts["rows"], 2500);
    }
    for b in [&b1, &b2] {
        let s = b.state.stats();
        assert_eq!(
            s.forwarded_refused, 0,
            "a rewrite backend saw a forwarded header"
        );
        assert!(s.submissions > 0);
    }
}

const BIG_ID: &str = "20261130_000000_00001_bigaa";

/// A backend that answers a submission with one page whose `nextUri` leads to a 1 GiB page, all
/// URIs on its own address (like a Trino without process-forwarded).
async fn giant_page_backend() -> String {
    use axum::routing::{get, post};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let first = serde_json::json!({
        "id": BIG_ID,
        "infoUri": format!("{base}/ui/query.html?{BIG_ID}"),
        "nextUri": format!("{base}/v1/statement/executing/{BIG_ID}/y/1"),
        "stats": {"state": "QUEUED"}
    })
    .to_string();
    let head = format!(
        r#"{{"id":"{BIG_ID}","infoUri":"{base}/ui/query.html?{BIG_ID}","partialCancelUri":"{base}/v1/statement/executing/partialCancel/{BIG_ID}/0/y/2","columns":[{{"name":"s","type":"varchar"}}],"data":["#
    );
    let mut row_block = String::with_capacity(1 << 20);
    while row_block.len() + 1010 < 1 << 20 {
        row_block.push_str(&format!("[\"{}\"],", "x".repeat(1000)));
    }
    let block = bytes::Bytes::from(row_block);
    let app = axum::Router::new()
        .route("/v1/statement", post(move || async move { first }))
        .route(
            "/v1/statement/executing/{id}/{slug}/{token}",
            get(move || {
                let head = bytes::Bytes::from(head.clone());
                let block = block.clone();
                async move {
                    let chunks = std::iter::once(head)
                        .chain(std::iter::repeat_n(block, 1030))
                        .chain(std::iter::once(bytes::Bytes::from_static(
                            br#"["end"]],"stats":{"state":"FINISHED"}}"#,
                        )))
                        .map(Ok::<_, std::convert::Infallible>);
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// A 1 GiB page streams through a rewriting backend with flat memory: only the URIs at its head
/// are rewritten, the rows pass as they come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_page_streams_through_rewrite_with_flat_rss() {
    let backend = giant_page_backend().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("big", backend.clone(), "adhoc")],
        "",
    )
    .replace("group: adhoc }", "group: adhoc, forwarding: rewrite }");
    let gw = Gateway::start(&yaml, port, admin).await;
    let client = Client::new(&gw.url);
    let first: Value = client.submit("SELECT big", &[]).await.json().await.unwrap();
    let next = first["nextUri"].as_str().unwrap();
    assert_eq!(
        next,
        format!("{}/v1/statement/executing/{BIG_ID}/y/1", gw.url)
    );
    assert!(first["infoUri"].as_str().unwrap().starts_with(&gw.url));

    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024
    };
    let before = rss();
    let mut resp = client.http.get(next).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut total = 0u64;
    let mut head = Vec::new();
    let mut peak = before;
    let mut chunks = 0u64;
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), resp.chunk())
        .await
        .expect("the page stalled")
        .unwrap()
    {
        if head.len() < 600 {
            head.extend_from_slice(&chunk[..chunk.len().min(600 - head.len())]);
        }
        total += chunk.len() as u64;
        chunks += 1;
        if chunks.is_multiple_of(256) {
            peak = peak.max(rss());
        }
    }
    assert!(total > 1 << 30, "{total} bytes");
    let head = String::from_utf8_lossy(&head);
    assert!(
        head.contains(&format!("\"partialCancelUri\":\"{}/v1/statement/", gw.url)),
        "{head}"
    );
    assert!(
        !head.contains(backend.trim_start_matches("http://")),
        "{head}"
    );
    let grown = peak.saturating_sub(before);
    assert!(grown < 48 << 20, "RSS grew by {} MiB", grown >> 20);
}
