#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Faults and hostile input: dead backends, reloads under traffic, malformed requests.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_retries_another_backend_of_the_group() {
    let live = backend(1000).await;
    let dead_port = free_port(); // nothing listens here
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[
            ("dead", format!("http://127.0.0.1:{dead_port}"), "adhoc"),
            ("live", live.url(), "adhoc"),
        ],
        "",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let client = Client::new(&gw.url);
    for _ in 0..10 {
        let out = client.run("SELECT 1", &[]).await;
        assert!(out.error.is_none());
        assert_eq!(coordinator_of(&out.id), live.coordinator_id());
    }
    assert_eq!(live.state.stats().submissions, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reachable_backend_and_a_dead_owner_give_trino_shaped_5xx() {
    let b1 = backend(10).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let client = Client::new(&gw.url);
    let first: serde_json::Value = client
        .submit("SELECT * FROM UNNEST(sequence(1, 100))", &[])
        .await
        .json()
        .await
        .unwrap();
    let next = first["nextUri"].as_str().unwrap().to_string();
    b1.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The owner is gone: its follow-up fails promptly with 502, not a hang and not a reroute.
    let r = client.http.get(&next).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_trino_error(&r.text().await.unwrap(), "BACKEND_UNREACHABLE");
    // A new query has nowhere to go.
    let r = client.submit("SELECT 1", &[]).await;
    assert_eq!(r.status(), 502);
    assert_trino_error(&r.text().await.unwrap(), "BACKEND_UNREACHABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_every_backend_disabled_answers_503() {
    let b1 = backend(10).await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b", b1.url(), "adhoc")],
        "",
    )
    .replace("group: adhoc }", "group: adhoc, enabled: false }");
    let gw = Gateway::start(&yaml, port, admin).await;
    let r = Client::new(&gw.url).submit("SELECT 1", &[]).await;
    assert_eq!(r.status(), 503);
    let v = assert_trino_error(&r.text().await.unwrap(), "NO_BACKEND_AVAILABLE");
    assert!(v["error"]["message"].as_str().unwrap().contains("adhoc"));
    assert_eq!(b1.state.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_under_continuous_traffic_loses_no_request() {
    let b1 = backend(50).await;
    let b2 = backend(50).await;
    let b3 = backend(50).await;
    let port = free_port();
    let admin = free_port();
    let two = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
        "",
    );
    let three = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "least_load")],
        &[
            ("b1", b1.url(), "adhoc"),
            ("b2", b2.url(), "adhoc"),
            ("b3", b3.url(), "adhoc"),
        ],
        "",
    );
    let gw = Gateway::start(&two, port, admin).await;
    assert_eq!(gw.snapshot_version().await, 1);

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = Client::new(&gw.url);
        let stop = stop.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // `run` panics on any non-200 answer, so a lost request fails the test.
                let out = client
                    .run("SELECT * FROM UNNEST(sequence(1, 200))", &[])
                    .await;
                assert!(out.error.is_none(), "{:?}", out.error);
                assert_eq!(out.rows.len(), 200);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut expected_version = 1;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if round == 3 {
            // An invalid file is rejected and the running snapshot stays.
            gw.reload(&three.replace("strategy: least_load", "strategy: fastest"));
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert_eq!(gw.snapshot_version().await, expected_version);
            continue;
        }
        gw.reload(if round % 2 == 0 { &three } else { &two });
        expected_version += 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while gw.snapshot_version().await != expected_version {
            assert!(
                std::time::Instant::now() < deadline,
                "reload not applied:\n{}",
                gw.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("a client request failed during reloads");
    }
    assert!(
        done.load(Ordering::Relaxed) >= 8,
        "too little traffic to mean anything"
    );
    assert!(
        b3.state.stats().submissions > 0,
        "the added backend never got traffic"
    );
    assert!(gw.log().contains("configuration reload rejected"));
}

/// Send raw bytes and return (status code, body) of the answer, or `None` if the gateway closed
/// the connection without an answer.
async fn raw(port: u16, request: &[u8]) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // A huge request may be cut off by the gateway mid-write: that is an acceptable refusal.
    let _ = s.write_all(request).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_gets_4xx_and_the_gateway_keeps_serving() {
    let b1 = backend(1000).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let port: u16 = gw.url.rsplit(':').next().unwrap().parse().unwrap();

    let mut non_utf8 = b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: \xff\xfe\r\nContent-Length: 8\r\n\r\n".to_vec();
    non_utf8.extend_from_slice(b"SELECT 1");
    let (status, body) = raw(port, &non_utf8).await.expect("an answer");
    assert_eq!(status, 400);
    assert_trino_error(&body, "GATEWAY_BAD_REQUEST");

    let (status, body) = raw(
        port,
        b"GET /v1/query/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .expect("an answer");
    assert_eq!(status, 400);
    assert_trino_error(&body, "GATEWAY_BAD_REQUEST");

    let absurd = format!(
        "GET /v1/statement/queued/{}/x/1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(3000)
    );
    let (status, body) = raw(port, absurd.as_bytes()).await.expect("an answer");
    assert_eq!(status, 400);
    assert_trino_error(&body, "INVALID_QUERY_ID");

    let (status, body) = raw(
        port,
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .expect("an answer");
    assert_eq!(status, 400);
    assert_trino_error(&body, "GATEWAY_BAD_REQUEST");

    let (status, body) = raw(
        port,
        b"GET /v1/statement/executing/20260101_000000_00001_ABCDE/y/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .expect("an answer");
    assert_eq!(status, 400);
    assert_trino_error(&body, "INVALID_QUERY_ID");

    // A 10 MB header block: Pingora's HTTP parser refuses it with a bare 400 before any of our
    // code runs (or the connection is cut while we are still writing); never a crash.
    let mut huge = b"GET /v1/info HTTP/1.1\r\nHost: x\r\n".to_vec();
    let line = format!("X-Filler: {}\r\n", "y".repeat(8000));
    while huge.len() < 10 * 1024 * 1024 {
        huge.extend_from_slice(line.as_bytes());
    }
    huge.extend_from_slice(b"\r\n");
    if let Some((status, _)) = raw(port, &huge).await {
        assert!((400..500).contains(&status), "status {status}");
    }

    let (status, _) = raw(port, b"GARBAGE\r\n\r\n").await.expect("an answer");
    assert_eq!(status, 400);

    // Still serving, and nothing of the above reached the backend.
    assert_eq!(b1.state.stats().requests, 0);
    let out = Client::new(&gw.url).run("SELECT 1", &[]).await;
    assert!(out.error.is_none());
}
