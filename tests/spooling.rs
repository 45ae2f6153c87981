#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The spooling protocol through the gateway: segments reach the cluster that wrote them through
//! any gateway instance, in every retrieval mode, with the real Python client at its default
//! settings; storage URLs, 303s and segment headers pass untouched; `spooling: inline` turns the
//! protocol off per listener or group.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use trino_edge::emulator::{EmulatorConfig, EmulatorHandle, RetrievalMode, SpoolingConfig};

const ENCODINGS: &str = "json+zstd,json+lz4,json";

async fn spooling_backend(mode: RetrievalMode) -> EmulatorHandle {
    backend_with(EmulatorConfig {
        rows_per_page: 5000,
        spooling: Some(SpoolingConfig {
            mode,
            segment_rows: 2000,
            inline_rows: 100,
        }),
        ..EmulatorConfig::default()
    })
    .await
}

/// Two gateway instances over the same backends, each telling the backends that the *other* one
/// is the public address: every page and segment URI a backend builds for one instance's request
/// sends the client to the other instance. Neither shares anything with the other; probes teach
/// both the coordinator ids.
async fn crossed_pair(backends: &[&EmulatorHandle], extra: &str) -> (Gateway, Gateway) {
    let (pa, pb) = (free_port(), free_port());
    let yaml = |port: u16, admin: u16, other: u16| {
        let list: Vec<(String, String, &str)> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("trino-{}", i + 1), b.url(), "adhoc"))
            .collect();
        let list: Vec<(&str, String, &str)> = list
            .iter()
            .map(|(n, u, g)| (n.as_str(), u.clone(), *g))
            .collect();
        let y = config_yaml(
            &[("main", port)],
            admin,
            &[("adhoc", "round_robin")],
            &list,
            "",
        );
        let y = y.replace(
            "admin:\n",
            &format!("  external_url: \"http://127.0.0.1:{other}\"\n{extra}admin:\n"),
        );
        with_health(&y, "interval: 200ms, rise: 1, fall: 1")
    };
    let (aa, ab) = (free_port(), free_port());
    let a = Gateway::start(&yaml(pa, aa, pb), pa, aa).await;
    let b = Gateway::start(&yaml(pb, ab, pa), pb, ab).await;
    for gw in [&a, &b] {
        for i in 1..=backends.len() {
            wait_state(
                gw,
                &format!("trino-{i}"),
                "HEALTHY",
                Duration::from_secs(10),
            )
            .await;
        }
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_default_encoding_reads_spooled_results_through_two_instances_in_every_mode()
{
    let Some(python) = tool("TRINO_EDGE_PYTHON") else {
        return;
    };
    for mode in [
        RetrievalMode::Storage,
        RetrievalMode::CoordinatorStorageRedirect,
        RetrievalMode::CoordinatorProxy,
        RetrievalMode::WorkerProxy,
    ] {
        let b1 = spooling_backend(mode).await;
        let b2 = spooling_backend(mode).await;
        let (a, b) = crossed_pair(&[&b1, &b2], "").await;
        let facts = python_spooled(python.clone(), &a.url, "1000,100000,7").await;
        assert_eq!(
            facts["encoding"],
            serde_json::json!(["json+zstd", "json+lz4", "json"])
        );
        let (s1, s2) = (b1.state.stats(), b2.state.stats());
        let spooled = s1.segments_issued + s2.segments_issued;
        assert!(
            spooled >= 50,
            "{mode:?}: the results were not spooled ({spooled} segments)"
        );
        // Every segment went to the cluster that wrote it: none was unknown where it landed, and
        // the client acknowledged them there.
        assert_eq!(s1.segment_not_found + s2.segment_not_found, 0, "{mode:?}");
        assert!(s1.segment_downloads + s2.segment_downloads > 0, "{mode:?}");
        let acks_deadline = std::time::Instant::now() + Duration::from_secs(5);
        while b1.state.stats().segment_acks + b2.state.stats().segment_acks == 0 {
            assert!(
                std::time::Instant::now() < acks_deadline,
                "{mode:?}: no ack arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Both instances carried segment requests (acks at least, in every mode).
        for (name, gw) in [("A", &a), ("B", &b)] {
            let n = metric_sum(gw, "trino_edge_requests_total", "kind=\"segment\"").await;
            assert!(
                n > 0.0,
                "{mode:?}: instance {name} routed no segment request"
            );
            let bad = metric_sum(gw, "trino_edge_requests_total", "status=\"404\"").await;
            assert_eq!(bad, 0.0, "{mode:?}: instance {name} answered 404");
        }
    }
}

/// What the gateway does to one spooled page, seen with a plain HTTP client: segment URIs on the
/// gateway carry the query id, the storage redirect and the segment headers pass untouched, the
/// heartbeat reaches the owner, and a segment URI the gateway never handed out gets a readable 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_uris_are_routed_and_everything_else_passes_untouched() {
    let b1 = spooling_backend(RetrievalMode::CoordinatorStorageRedirect).await;
    let b2 = spooling_backend(RetrievalMode::CoordinatorStorageRedirect).await;
    let gw = simple_gateway(&[&b1, &b2], "round_robin").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let headers = [
        ("X-Trino-User", "u"),
        ("X-Trino-Query-Data-Encoding", ENCODINGS),
    ];
    for _ in 0..2 {
        let mut req = http
            .post(format!("{}/v1/statement", gw.url))
            .body("SELECT * FROM UNNEST(sequence(1, 9000))");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let mut page: Value = req.send().await.unwrap().json().await.unwrap();
        let id = page["id"].as_str().unwrap().to_string();
        let owner = if coordinator_of(&id) == b1.coordinator_id() {
            &b1
        } else {
            &b2
        };
        let mut segments = Vec::new();
        let mut heartbeat_sent = false;
        while let Some(next) = page["nextUri"].as_str().map(str::to_string) {
            assert!(next.starts_with(&gw.url), "{next}");
            if !heartbeat_sent && !segments.is_empty() {
                let r = http
                    .head(&next)
                    .header("X-Trino-User", "u")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                heartbeat_sent = true;
            }
            let mut req = http.get(&next);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            page = req.send().await.unwrap().json().await.unwrap();
            if let Some(segs) = page["data"]["segments"].as_array() {
                segments.extend(segs.iter().cloned());
            }
        }
        assert!(heartbeat_sent);
        assert!(owner.state.stats().heartbeats >= 1);
        let spooled: Vec<&Value> = segments.iter().filter(|s| s["type"] == "spooled").collect();
        assert!(spooled.len() >= 4, "{segments:?}");
        for seg in spooled {
            let uri = seg["uri"].as_str().unwrap();
            let ack = seg["ackUri"].as_str().unwrap();
            assert!(
                uri.starts_with(&format!("{}/v1/spooled/{id}/download/", gw.url)),
                "{uri}"
            );
            assert!(
                ack.starts_with(&format!("{}/v1/spooled/{id}/ack/", gw.url)),
                "{ack}"
            );
            let key = seg["headers"]["X-Trino-Emulator-Segment-Key"][0]
                .as_str()
                .unwrap();
            // The coordinator's 303 to storage comes back as it is.
            let r = http
                .get(uri)
                .header("X-Trino-Emulator-Segment-Key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 303);
            let location = r.headers()["location"].to_str().unwrap().to_string();
            assert!(!location.starts_with(&gw.url), "{location}");
            let bytes = http
                .get(&location)
                .header("X-Trino-Emulator-Segment-Key", key)
                .send()
                .await
                .unwrap();
            assert_eq!(bytes.status(), 200);
            assert_eq!(
                bytes.bytes().await.unwrap().len() as u64,
                seg["metadata"]["segmentSize"].as_u64().unwrap()
            );
            let r = http.get(ack).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
        assert_eq!(owner.state.stats().segment_not_found, 0);
    }

    // A segment URI without the gateway's query id: a Trino-shaped 404 that says why.
    let r = http
        .get(format!("{}/v1/spooled/download/abcdef", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_trino_error(&r.text().await.unwrap(), "SPOOLED_SEGMENT_NOT_FOUND");
    // One naming a query nobody knows: the usual query-not-found.
    let r = http
        .get(format!(
            "{}/v1/spooled/20260101_000000_00001_zzzzz/ack/abc",
            gw.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_trino_error(&r.text().await.unwrap(), "QUERY_NOT_FOUND");
}

/// `spooling: inline` on a listener or on a group: the cluster is not asked for spooling, so the
/// rows come inline, and the real client reads them all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooling_inline_per_listener_and_group() {
    let b1 = spooling_backend(RetrievalMode::CoordinatorProxy).await;
    let (p_pass, p_inline, admin) = (free_port(), free_port(), free_port());
    let yaml = config_yaml(
        &[("pass", p_pass), ("inl", p_inline)],
        admin,
        &[("adhoc", "round_robin"), ("etl", "round_robin")],
        &[
            ("trino-1", b1.url(), "adhoc"),
            ("trino-1b", b1.url(), "etl"),
        ],
        "    - { name: etl, match: { source: \"^etl$\" }, group: etl }\n",
    )
    .replace("name: inl, address", "name: inl, spooling: inline, address")
    .replace(
        "{ name: etl, strategy: round_robin }",
        "{ name: etl, strategy: round_robin, spooling: inline }",
    );
    let _gw = Gateway::start(&yaml, p_pass, admin).await;
    let client = Client::new(&format!("http://127.0.0.1:{p_pass}"));
    let run_with = |client: &Client, source: &'static str| {
        let client = client.clone();
        async move {
            client
                .run(
                    "SELECT * FROM UNNEST(sequence(1, 3000))",
                    &[
                        ("X-Trino-Query-Data-Encoding", "json"),
                        ("X-Trino-Source", source),
                    ],
                )
                .await
        }
    };
    // Passed on: spooled.
    let before = b1.state.stats().segments_issued;
    let out = run_with(&client, "adhoc").await;
    assert!(out.error.is_none());
    assert!(
        b1.state.stats().segments_issued > before,
        "pass: not spooled"
    );
    // Inline by listener, and by group: no segment issued, every row inline.
    for (client, source) in [
        (
            Client::new(&format!("http://127.0.0.1:{p_inline}")),
            "adhoc",
        ),
        (client.clone(), "etl"),
    ] {
        let before = b1.state.stats().segments_issued;
        let out = run_with(&client, source).await;
        assert!(out.error.is_none());
        assert_eq!(out.rows.len(), 3000, "{source}");
        assert_eq!(
            b1.state.stats().segments_issued,
            before,
            "{source}: spooled"
        );
    }
    // The real Python client on the inline listener.
    if let Some(python) = tool("TRINO_EDGE_PYTHON") {
        let before = b1.state.stats().segments_issued;
        python_spooled(python, &format!("http://127.0.0.1:{p_inline}"), "2500").await;
        assert_eq!(b1.state.stats().segments_issued, before);
    }
}

const GZ_ID: &str = "20261130_000000_00002_gzipa";

/// A backend whose spooled pages come gzip-compressed (as Trino's do for clients that accept
/// gzip, e.g. JDBC's follow-ups, which do not repeat the encoding request): the gateway tells a
/// spooled page by Trino's `X-Trino-Query-Data-Encoding` answer header, inflates it, tags its
/// segment URIs, and the segment request then reaches this backend.
async fn gzip_spooling_backend() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let downloads = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = downloads.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/v1/statement",
            post(|headers: HeaderMap| async move {
                let host = headers["x-forwarded-host"].to_str().unwrap().to_string();
                let port = headers["x-forwarded-port"].to_str().unwrap().to_string();
                serde_json::json!({
                    "id": GZ_ID,
                    "nextUri": format!("http://{host}:{port}/v1/statement/executing/{GZ_ID}/y/1"),
                    "stats": {"state": "QUEUED"}
                })
                .to_string()
            }),
        )
        .route(
            "/v1/statement/executing/{id}/{slug}/{token}",
            get(|headers: HeaderMap| async move {
                let host = headers["x-forwarded-host"].to_str().unwrap().to_string();
                let port = headers["x-forwarded-port"].to_str().unwrap().to_string();
                let base = format!("http://{host}:{port}");
                let page = serde_json::json!({
                    "id": GZ_ID,
                    "columns": [{"name": "x", "type": "bigint"}],
                    "data": {"encoding": "json", "segments": [{
                        "type": "spooled",
                        "uri": format!("{base}/v1/spooled/download/c2VnMQ"),
                        "ackUri": format!("{base}/v1/spooled/ack/c2VnMQ"),
                        "metadata": {"rowOffset": 0, "rowsCount": 2, "segmentSize": 9},
                        "headers": {}
                    }]},
                    "stats": {"state": "FINISHED"}
                })
                .to_string();
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(page.as_bytes()).unwrap();
                (
                    [
                        ("content-encoding", "gzip"),
                        ("content-type", "application/json"),
                        ("x-trino-query-data-encoding", "json"),
                    ],
                    gz.finish().unwrap(),
                )
            }),
        )
        .route(
            "/v1/spooled/download/{id}",
            get(
                move |axum::extract::Path(id): axum::extract::Path<String>| {
                    let seen = seen.clone();
                    async move {
                        assert_eq!(id, "c2VnMQ");
                        seen.fetch_add(1, Ordering::SeqCst);
                        "[[1],[2]]"
                    }
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), downloads)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_spooled_pages_are_inflated_and_their_segments_routed() {
    let (url, downloads) = gzip_spooling_backend().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("gz", url, "adhoc")],
        "",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let client = Client::new(&gw.url);
    let first: Value = client.submit("SELECT 1", &[]).await.json().await.unwrap();
    let next = first["nextUri"].as_str().unwrap();
    let r = client
        .http
        .get(next)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-encoding").is_none());
    let page: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let uri = page["data"]["segments"][0]["uri"].as_str().unwrap();
    assert_eq!(
        uri,
        format!("{}/v1/spooled/{GZ_ID}/download/c2VnMQ", gw.url)
    );
    let r = client.http.get(uri).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "[[1],[2]]");
    assert_eq!(downloads.load(std::sync::atomic::Ordering::SeqCst), 1);
}
