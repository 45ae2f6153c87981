#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Hostile input: oversized and malformed requests from clients, garbage and lies from a backend.
//! None may crash the gateway, make it buffer without bound, or poison its query-id map.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Send raw bytes, return what came back before the gateway closed or went quiet.
async fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_of(response: &str) -> &str {
    response.split("\r\n\r\n").nth(1).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_malformed_requests_get_clear_errors() {
    let b1 = backend(10).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let client = Client::new(&gw.url);
    let addr = gw.url.trim_start_matches("http://").to_string();

    // A statement over 1 MiB: 413 from the gateway, declared or chunked.
    let big = "SELECT '".to_string() + &"x".repeat(1024 * 1024 + 10) + "'";
    let r = client.submit(&big, &[]).await;
    assert_eq!(r.status(), 413);
    assert_trino_error(&r.text().await.unwrap(), "QUERY_TEXT_TOO_LARGE");
    let mut chunked = b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: u\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..40 {
        chunked.extend_from_slice(format!("{:x}\r\n", 64 * 1024).as_bytes());
        chunked.extend_from_slice(&[b'x'; 64 * 1024]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(&addr, &chunked).await;
    // The gateway reads the rest of the body before closing (lingering close): the answer arrives.
    assert_eq!(status_of(&resp), 413, "{}", &resp[..200.min(resp.len())]);
    assert_trino_error(body_of(&resp), "QUERY_TEXT_TOO_LARGE");
    // Just under the limit still goes through.
    let ok = "SELECT 1 -- ".to_string() + &"y".repeat(1000 * 1024);
    assert!(client.run(&ok, &[]).await.error.is_none());

    // A non-UTF-8 routing header: 400 with a Trino error naming the header.
    let resp = raw(
        &addr,
        b"POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: \xff\xfe\r\nContent-Length: 8\r\nConnection: close\r\n\r\nSELECT 1",
    )
    .await;
    assert_eq!(status_of(&resp), 400, "{resp}");
    let v = assert_trino_error(body_of(&resp), "GATEWAY_BAD_REQUEST");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("x-trino-user"));

    // Path traversal and oversized or malformed query ids never reach a backend.
    for path in [
        "/v1/statement/executing/../../../etc/passwd/x/1",
        "/v1/statement/executing/%2e%2e/%2e%2e/x/1",
        "/v1/query/..%2f..%2fadmin",
    ] {
        let resp = raw(
            &addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        let status = status_of(&resp);
        assert!(status == 400 || status == 404, "{path}: {resp}");
        assert!(body_of(&resp).contains("errorName"), "{path}: {resp}");
    }
    let long_id = format!("20260101_000000_00001_{}", "a".repeat(300));
    let r = client
        .http
        .get(format!("{}/v1/statement/executing/{long_id}/y/1", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_trino_error(&r.text().await.unwrap(), "INVALID_QUERY_ID");

    // A header block over Pingora's limit and header injection attempts: refused, no crash.
    let huge = format!(
        "GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1_100_000)
    );
    let resp = raw(&addr, huge.as_bytes()).await;
    assert!(
        resp.is_empty() || status_of(&resp) >= 400,
        "{}",
        &resp[..100.min(resp.len())]
    );
    let resp = raw(
        &addr,
        b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Trino-User: a\rX-Injected: 1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(resp.is_empty() || status_of(&resp) >= 400, "{resp}");
    let many: String = (0..400).map(|i| format!("X-H{i}: v\r\n")).collect();
    let resp = raw(
        &addr,
        format!("GET /v1/info HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(resp.is_empty() || status_of(&resp) >= 400, "{resp}");

    // Still serving, state intact.
    let out = client
        .run("SELECT * FROM UNNEST(sequence(1, 30))", &[])
        .await;
    assert!(out.error.is_none());
    assert_eq!(out.rows.len(), 30);
}

/// A backend that answers submissions according to the statement text.
async fn malicious_backend() -> String {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/v1/statement",
        post(|body: String| async move {
            let sql = body.trim().to_string();
            let page = |id: &str, next: &str| json!({"id": id, "nextUri": next, "stats": {"state": "QUEUED"}});
            match sql.split_whitespace().next().unwrap_or("") {
                "GARBAGE" => "{\"id\": \"20260101_000000_00001_evil2\", not json".to_string(),
                "GIANT" => {
                    // Valid JSON, 8 MiB: far over what the gateway reads to learn an id.
                    let mut v = page("20260101_000000_00002_evil2", "http://127.0.0.1:1/v1/statement/queued/x/y/1");
                    v["padding"] = Value::String("p".repeat(8 << 20));
                    v.to_string()
                }
                "STEAL" => {
                    let id = sql.split_whitespace().nth(1).unwrap_or("").to_string();
                    page(&id, &format!("http://127.0.0.1:1/v1/statement/queued/{id}/y/1")).to_string()
                }
                _ => page("20260101_000000_00003_evil2", "http://evil.example.com/v1/statement/queued/x/y/1")
                    .to_string(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_backend_cannot_crash_the_gateway_or_capture_queries() {
    let good = backend(5).await;
    let evil = malicious_backend().await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("good", "round_robin"), ("evil", "round_robin")],
        &[("good1", good.url(), "good"), ("evil1", evil, "evil")],
        "",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let client = Client::new(&gw.url);
    let to_evil = [("X-Trino-Routing-Group", "evil")];

    // A real query on the good backend, left running (first page only).
    let first: Value = client
        .submit("SELECT * FROM UNNEST(sequence(1, 50))", &[])
        .await
        .json()
        .await
        .unwrap();
    let victim = first["id"].as_str().unwrap().to_string();
    let next = first["nextUri"].as_str().unwrap().to_string();

    // Garbage JSON and a giant answer pass through to the client untouched; nothing is learned.
    let r = client.submit("GARBAGE", &to_evil).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("not json"));
    let r = client.submit("GIANT", &to_evil).await;
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap().len() > 8 << 20);
    for id in ["20260101_000000_00001_evil2", "20260101_000000_00002_evil2"] {
        let r = client
            .http
            .get(format!("{}/v1/statement/executing/{id}/y/1", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{id} must not have been learned");
    }

    // The evil backend claims the good backend's running query: the claim is ignored, and the
    // victim's pages keep coming from the good backend to the end.
    let r = client.submit(&format!("STEAL {victim}"), &to_evil).await;
    assert_eq!(r.status(), 200);
    // A nextUri pointing elsewhere is the backend's business; the gateway passes it on.
    let v: Value = client
        .submit("SELECT 1", &to_evil)
        .await
        .json()
        .await
        .unwrap();
    assert!(v["nextUri"]
        .as_str()
        .unwrap()
        .starts_with("http://evil.example.com/"));
    let mut uri = Some(next);
    let mut rows = first["data"].as_array().map_or(0, Vec::len);
    while let Some(u) = uri {
        let r = client.http.get(&u).send().await.unwrap();
        assert_eq!(r.status(), 200, "the victim's page went astray");
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["id"], json!(victim));
        rows += page["data"].as_array().map_or(0, Vec::len);
        uri = page["nextUri"].as_str().map(str::to_string);
    }
    assert_eq!(rows, 50);

    // Memory stays bounded: 100 MiB of giant answers and 400 hostile requests later the
    // gateway's resident memory has grown by little (allocator slack, not retained data).
    let rss = || {
        let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    };
    let before = rss();
    for _ in 0..12 {
        let r = client.submit("GIANT", &to_evil).await;
        assert!(r.bytes().await.unwrap().len() > 8 << 20);
    }
    for i in 0..400 {
        let path = match i % 4 {
            0 => format!("/v1/statement/executing/20260101_000000_{i:05}_zzzzz/y/1"),
            1 => format!("/v1/query/{}", "q".repeat(200)),
            2 => "/v1/statement/executing/../../x".to_string(),
            _ => format!("/ui/api/query/20260101_000000_{i:05}_evil2"),
        };
        let _ = client.http.get(format!("{}{path}", gw.url)).send().await;
        if i % 10 == 0 {
            let _ = client.submit("GARBAGE", &to_evil).await;
        }
    }
    let grown = rss().saturating_sub(before);
    assert!(grown < 48 << 20, "RSS grew by {} MiB", grown >> 20);

    // And the gateway is fine.
    let out = client.run("SELECT 1", &[]).await;
    assert!(out.error.is_none());
    let ready = reqwest::get(format!("{}/livez", gw.admin)).await.unwrap();
    assert_eq!(ready.status(), 200);
}

/// Idle keep-alive connections are closed after `proxy.client_idle_timeout` (Pingora alone would
/// keep them forever), so idle or trickling clients cannot pile up connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed() {
    let b1 = backend(10).await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc")],
        "",
    )
    .replace("admin:\n", "  client_idle_timeout: 1s\nadmin:\n");
    assert!(yaml.contains("client_idle_timeout"));
    let _gw = Gateway::start(&yaml, port, admin).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // Two requests on one connection: keep-alive works...
    for _ in 0..2 {
        s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    // ...and then the idle connection is closed by the gateway.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the gateway kept an idle connection open")
        .unwrap_or(0);
    assert_eq!(n, 0, "EOF expected");
    assert!(started.elapsed() >= Duration::from_millis(500));
}

/// Slowloris: a client that trickles its request header (a byte every 300 ms, each read well
/// inside Pingora's per-read timeout) is disconnected once `proxy.header_timeout` has passed,
/// on a fresh connection and on a reused one (timed from the header's first byte); the slow
/// header is counted, and requests that take longer than the timeout after their header are not
/// cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_request_headers_are_cut_off() {
    let b1 = backend(10).await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc")],
        "",
    )
    .replace(
        "admin:\n",
        "  header_timeout: 2s\n  client_idle_timeout: 2s\nadmin:\n",
    );
    let gw = Gateway::start(&yaml, port, admin).await;

    /// Trickle a never-ending header; `Some(elapsed)` when the gateway closed the connection.
    async fn trickle(s: &mut tokio::net::TcpStream, give_up: Duration) -> Option<Duration> {
        let started = std::time::Instant::now();
        s.write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .ok()?;
        while started.elapsed() < give_up {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if s.write_all(b"a").await.is_err() {
                return Some(started.elapsed());
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
                _ => {}
            }
        }
        None
    }

    let mut fresh = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let cut = trickle(&mut fresh, Duration::from_secs(15))
        .await
        .expect("a trickled header kept its connection for 15 s");
    assert!(cut >= Duration::from_millis(1500), "cut after {cut:?}");

    // A reused connection: one good request, then a trickle.
    let mut reused = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    reused
        .write_all(b"GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let n = reused.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(
        trickle(&mut reused, Duration::from_secs(15))
            .await
            .is_some(),
        "a trickled header on a reused connection kept it for 15 s"
    );

    // Ordinary requests are unaffected, also slow-to-answer ones (the deadline ends with the
    // header): every result page takes 4.5 s, more than twice the header deadline (2 s).
    let out = Client::new(&gw.url)
        .run("/* emulator:page_delay_ms=4500 */ SELECT 1", &[])
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let metrics = reqwest::get(format!("{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let cut_count: f64 = metrics
        .lines()
        .find(|l| l.starts_with("trino_edge_slow_headers_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(cut_count >= 2.0, "{cut_count}");
}

/// Reads one HTTP/1.1 response with a `Content-Length` body off a kept-alive connection:
/// (status, body).
async fn read_response(s: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .expect("a Content-Length answer");
            if buf.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                return (status_of(&head), body);
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("no answer in 10 s")
            .unwrap();
        assert!(
            n > 0,
            "connection closed; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The gateway reads the first bytes of each request before it starts the proxy (so idle
/// connections hold no request state). Requests larger than that first read, and requests that
/// arrive in pieces, must work all the same — one after another on one kept-alive connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_split_requests_work_on_one_kept_alive_connection() {
    let b1 = backend(10).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let addr = gw.url.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();

    let info = "x".repeat(6000);
    let sql = format!("SELECT 1 /* {} */", "y".repeat(3000));
    let big_header = format!(
        "POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: alice\r\nX-Trino-Client-Info: {info}\r\nContent-Length: 8\r\n\r\nSELECT 1"
    );
    let big_body = format!(
        "POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: alice\r\nContent-Length: {}\r\n\r\n{sql}",
        sql.len()
    );
    let small = "GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n".to_string();
    for (what, request) in [
        ("header over 1 KiB", &big_header),
        ("body over 1 KiB", &big_body),
        ("small", &small),
        ("header over 1 KiB again", &big_header),
    ] {
        // In three pieces with pauses: the header's start, its rest, and the body.
        let bytes = request.as_bytes();
        let cuts = [
            0,
            10.min(bytes.len()),
            (bytes.len() - 4).max(10),
            bytes.len(),
        ];
        for w in cuts.windows(2) {
            s.write_all(&bytes[w[0]..w[1]]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        let (status, body) = read_response(&mut s).await;
        assert_eq!(status, 200, "{what}: {body}");
        if request.starts_with("POST") {
            let answer: Value = serde_json::from_str(&body).unwrap();
            assert!(answer["id"].is_string(), "{what}: {body}");
        }
    }
}

/// Send a request head, then its body piece by piece with short pauses, and only then read the
/// answer. `Err` if a write failed (the gateway reset the connection under the sender).
async fn send_at_pace(addr: &str, head: &[u8], pieces: &[Vec<u8>]) -> Result<String, String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head).await.map_err(|e| format!("head: {e}"))?;
    let mut sent = 0;
    for p in pieces {
        s.write_all(p)
            .await
            .map_err(|e| format!("write failed after {sent} body bytes: {e}"))?;
        sent += p.len();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// An early refusal reaches a client that is still sending its body: the gateway drains the rest
/// (bounded) before it closes, instead of resetting the connection under the client's feet. Every
/// try of a 2 MiB submission, declared and chunked, and a refused body on a listener that requires
/// a user, must read as a Trino-shaped error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refusals_reach_clients_that_are_still_sending() {
    let b1 = backend(10).await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("trino-1", b1.url(), "adhoc")],
        "",
    )
    .replace(
        "name: main, address",
        "name: main, require_user: true, address",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let big = "SELECT '".to_string() + &"x".repeat(2 << 20) + "'";
    let client = reqwest::Client::new();
    for attempt in 0..5 {
        // A client (reqwest, like Python's requests) that writes the whole body before it reads.
        let r = client
            .post(format!("{}/v1/statement", gw.url))
            .header("X-Trino-User", "u")
            .body(big.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("try {attempt}: the client saw {e} instead of the 413"));
        assert_eq!(r.status(), 413, "try {attempt}");
        assert_trino_error(&r.text().await.unwrap(), "QUERY_TEXT_TOO_LARGE");

        // A client that sends its body at its own pace, then reads (like Python's http.client):
        // every byte of the body is taken, no write fails, and the answer is there to read —
        // with a declared length and chunked (refused once the limit is passed).
        let addr = gw.url.trim_start_matches("http://");
        let body = big.as_bytes();
        let declared = format!(
            "POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: u\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let pieces: Vec<Vec<u8>> = body.chunks(64 * 1024).map(<[u8]>::to_vec).collect();
        let resp = send_at_pace(addr, declared.as_bytes(), &pieces)
            .await
            .unwrap_or_else(|e| panic!("declared try {attempt}: {e}"));
        assert_eq!(status_of(&resp), 413, "declared try {attempt}");
        assert_trino_error(body_of(&resp), "QUERY_TEXT_TOO_LARGE");
        let chunked_head = "POST /v1/statement HTTP/1.1\r\nHost: x\r\nX-Trino-User: u\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut pieces: Vec<Vec<u8>> = body
            .chunks(64 * 1024)
            .map(|c| [format!("{:x}\r\n", c.len()).as_bytes(), c, b"\r\n"].concat())
            .collect();
        pieces.push(b"0\r\n\r\n".to_vec());
        let resp = send_at_pace(addr, chunked_head.as_bytes(), &pieces)
            .await
            .unwrap_or_else(|e| panic!("chunked try {attempt}: {e}"));
        assert_eq!(status_of(&resp), 413, "chunked try {attempt}");
        assert_trino_error(body_of(&resp), "QUERY_TEXT_TOO_LARGE");

        // A refusal for another reason (no user on a require_user listener) with a big body.
        let r = client
            .post(format!("{}/v1/statement", gw.url))
            .body("SELECT 1 -- ".to_string() + &"y".repeat(900 * 1024))
            .send()
            .await
            .unwrap_or_else(|e| panic!("400 try {attempt}: the client saw {e}"));
        assert_eq!(r.status(), 400, "400 try {attempt}");
        assert_trino_error(&r.text().await.unwrap(), "MISSING_USER");
    }
    let metrics = reqwest::get(format!("{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("trino_edge_lingering_closes_total{result=\"drained\"}"),
        "no drained lingering close counted"
    );
    // Still serving.
    let out = Client::new(&gw.url).run("SELECT 1", &[]).await;
    assert!(out.error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_session_headers_pass_whole_and_an_oversized_header_block_gets_431() {
    let b1 = backend(10).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let client = Client::new(&gw.url);
    let addr = gw.url.trim_start_matches("http://").to_string();

    // 64 KB of session properties and prepared statements, as a long-lived session builds up,
    // and the client's capabilities: the backend gets each header exactly as sent.
    let session: Vec<String> = (0..1800)
        .map(|i| format!("catalog{i}.property_{i:04}=value-{i:06}"))
        .collect();
    let session = session.join(",");
    assert!(session.len() > 64 * 1024, "{}", session.len());
    let statement: String = url::form_urlencoded::byte_serialize(
        format!(
            "SELECT * FROM t WHERE x IN ({})",
            vec!["12345"; 11_000].join(", ")
        )
        .as_bytes(),
    )
    .collect();
    let prepared = format!("q1={statement}");
    assert!(prepared.len() > 64 * 1024, "{}", prepared.len());
    let capabilities = "PATH,PARAMETRIC_DATETIME,SESSION_AUTHORIZATION";
    let out = client
        .run(
            "SELECT 1",
            &[
                ("X-Trino-Session", &session),
                ("X-Trino-Prepared-Statement", &prepared),
                ("X-Trino-Client-Capabilities", capabilities),
            ],
        )
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let stats = b1.state.stats();
    assert_eq!(stats.last_session.as_deref(), Some(session.as_str()));
    assert_eq!(
        stats.last_prepared_statement.as_deref(),
        Some(prepared.as_str())
    );
    assert_eq!(
        stats.last_client_capabilities.as_deref(),
        Some(capabilities)
    );

    // A header block over what the gateway reads (1 MiB): a Trino-shaped 431, not a dropped
    // connection.
    let mut request =
        format!("POST /v1/statement HTTP/1.1\r\nHost: {addr}\r\nX-Trino-User: u\r\n").into_bytes();
    for i in 0..20 {
        request
            .extend_from_slice(format!("X-Trino-Extra-{i}: {}\r\n", "s".repeat(60_000)).as_bytes());
    }
    request.extend_from_slice(b"Content-Length: 8\r\nConnection: close\r\n\r\nSELECT 1");
    let resp = raw(&addr, &request).await;
    assert_eq!(status_of(&resp), 431, "{}", &resp[..300.min(resp.len())]);
    let v = assert_trino_error(body_of(&resp), "REQUEST_HEADER_TOO_LARGE");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1048575"),
        "{v}"
    );
    // Still serving, on new connections.
    assert!(client.run("SELECT 1", &[]).await.error.is_none());
}
