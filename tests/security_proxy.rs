#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Reproductions from a red-team pass on the proxy listener, each now refused or neutralised:
//! an injected identity stripped through `Connection`, a second identity beside it, identity
//! headers smuggled past a trusted proxy, forwarding headers a client plants, an invalid `Host`,
//! backend addresses in client errors, a policy regex that costs every submission, and routing
//! loops (a backend that is the gateway itself, or another gateway leading back).
//!
//! What the backend receives is recorded by a raw tap: a backend that keeps every request head.

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A backend that records every request head and answers a minimal queued statement.
struct Tap {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
    /// Connections the backend accepted.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Tap {
    async fn start() -> Tap {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        let chunked = head
                            .to_ascii_lowercase()
                            .contains("transfer-encoding: chunked");
                        // The body: its length, or (chunked) up to the last chunk.
                        let body_end = |buf: &[u8]| {
                            if chunked {
                                buf[end..]
                                    .windows(5)
                                    .position(|w| w == b"0\r\n\r\n")
                                    .map(|p| end + p + 5)
                            } else {
                                (buf.len() >= end + 4 + len).then_some(end + 4 + len)
                            }
                        };
                        let stop = loop {
                            if let Some(stop) = body_end(&buf) {
                                break stop;
                            }
                            let Ok(n) = s.read(&mut chunk).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            buf.extend_from_slice(&chunk[..n]);
                        };
                        buf.drain(..stop);
                        seen.lock().unwrap().push(head);
                        let body =
                            r#"{"id":"20260101_000000_00001_tap22","stats":{"state":"FINISHED"}}"#;
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Tap {
            url,
            heads,
            accepted,
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.heads.lock().unwrap())
    }
}

/// Header values of `name` in a recorded head (lower-cased names).
fn values(head: &str, name: &str) -> Vec<String> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// Send one raw request, return (status, body).
async fn raw(port: u16, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

fn submission(extra_headers: &str) -> String {
    format!(
        "POST /v1/statement HTTP/1.1\r\nHost: gw.example:8080\r\n{extra_headers}Content-Length: 8\r\nConnection: close\r\n\r\nSELECT 1"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_identity_cannot_be_stripped_doubled_or_bypassed() {
    let tap = Tap::start().await;
    let (port, sso, admin) = (free_port(), free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port), ("sso", sso)],
        admin,
        &[("adhoc", "round_robin")],
        &[("tap", tap.url.clone(), "adhoc")],
        "",
    )
    .replace(
        &format!("address: \"127.0.0.1:{sso}\" }}"),
        &format!("address: \"127.0.0.1:{sso}\", user_from_header: X-Auth-Request-User }}"),
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let _ = &gw;

    // The reproduction: `Connection` nominating the injected header. Refused, nothing sent on.
    for connection in [
        "X-Trino-User",
        "keep-alive, x-trino-original-user",
        "X-Auth-Request-User",
        "Authorization",
        "x-presto-user",
    ] {
        let (status, body) = raw(
            sso,
            &submission(&format!(
                "X-Auth-Request-User: alice\r\nConnection: {connection}\r\n"
            )),
        )
        .await;
        assert_eq!(status, 400, "{connection}: {body}");
        assert_trino_error(&body, "AMBIGUOUS_IDENTITY");
    }
    // Two values of the trusted header: refused (the first no longer wins).
    for twice in [
        "X-Auth-Request-User: mallory\r\nX-Auth-Request-User: alice\r\n",
        "X-Auth-Request-User: alice, mallory\r\n",
    ] {
        let (status, body) = raw(sso, &submission(twice)).await;
        assert_eq!(status, 400, "{twice}: {body}");
        assert_trino_error(&body, "AMBIGUOUS_IDENTITY");
    }
    assert!(
        tap.take().is_empty(),
        "a refused request reached the backend"
    );

    // Identity headers the client adds are removed; the proxy's user is the only one.
    let (status, body) = raw(
        sso,
        &submission(
            "X-Auth-Request-User: alice\r\nX-Trino-User: mallory\r\nX-Presto-User: mallory\r\n\
             Authorization: Basic YWRtaW46YWRtaW4=\r\nX-Trino-Original-User: admin\r\n\
             X-Trino-Authorization-User: admin\r\nX-Trino-Role: system=ROLE{admin}\r\n\
             X-Trino-Original-Roles: system=ROLE{admin}\r\n",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let heads = tap.take();
    assert_eq!(heads.len(), 1);
    let head = &heads[0];
    assert_eq!(values(head, "x-trino-user"), ["alice"], "{head}");
    for gone in [
        "x-presto-user",
        "authorization",
        "x-trino-original-user",
        "x-trino-authorization-user",
        "x-trino-role",
        "x-trino-original-roles",
    ] {
        assert!(
            values(head, gone).is_empty(),
            "{gone} reached the backend:\n{head}"
        );
    }

    // On a listener without a trusted proxy nothing changes: the client's headers are Trino's
    // to judge.
    let (status, _) = raw(
        port,
        &submission("X-Trino-User: bob\r\nAuthorization: Basic Ym9iOnNlY3JldA==\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    let head = &tap.take()[0];
    assert_eq!(values(head, "x-trino-user"), ["bob"]);
    assert_eq!(values(head, "authorization"), ["Basic Ym9iOnNlY3JldA=="]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_a_client_plants_are_removed_and_a_bad_host_is_refused() {
    let tap = Tap::start().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("tap", tap.url.clone(), "adhoc")],
        "",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let _ = &gw;
    let planted = "Forwarded: for=1.2.3.4;host=evil.example;proto=https\r\n\
                   X-Forwarded-Server: evil.example\r\nX-Forwarded-Prefix: /evil\r\n\
                   X-Proxied-Https: on\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Host: evil.example\r\n\
                   X-Forwarded-For: 1.2.3.4\r\nX-Trino-User: t\r\n";
    let (status, body) = raw(port, &submission(planted)).await;
    assert_eq!(status, 200, "{body}");
    let head = &tap.take()[0];
    for gone in [
        "forwarded",
        "x-forwarded-server",
        "x-forwarded-prefix",
        "x-proxied-https",
        "x-real-ip",
    ] {
        assert!(
            values(head, gone).is_empty(),
            "{gone} reached the backend:\n{head}"
        );
    }
    // The gateway's own four say where the gateway is and who the client is.
    assert_eq!(values(head, "x-forwarded-host"), ["gw.example"], "{head}");
    assert_eq!(values(head, "x-forwarded-port"), ["8080"], "{head}");
    assert_eq!(values(head, "x-forwarded-proto"), ["http"], "{head}");
    assert_eq!(values(head, "x-forwarded-for"), ["127.0.0.1"], "{head}");

    // A Host that is no authority would become the backend's idea of where it is: refused.
    for host in ["", "evil.example@gw", "gw:notaport", "gw/../x"] {
        let (status, body) = raw(
            port,
            &format!("GET /v1/info HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert_eq!(status, 400, "Host `{host}`: {body}");
        // Pingora's parser refuses userinfo in Host itself, with a bare 400.
        if !host.contains('@') {
            assert_trino_error(&body, "GATEWAY_BAD_REQUEST");
        }
    }
    assert!(tap.take().is_empty(), "a bad Host reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_learn_the_backend_name_not_its_address() {
    // A backend that refuses connections.
    let dead = free_port();
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("dead-1", format!("http://127.0.0.1:{dead}"), "adhoc")],
        "",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let (status, body) = raw(port, &submission("X-Trino-User: t\r\n")).await;
    assert_eq!(status, 502, "{body}");
    let v = assert_trino_error(&body, "BACKEND_UNREACHABLE");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("dead-1"), "{message}");
    assert!(!message.contains(&dead.to_string()), "{message}");
    assert!(!message.contains("127.0.0.1"), "{message}");
    // The operator still finds the address in the log.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        gw.log().contains(&format!("127.0.0.1:{dead}")),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_patterns_and_the_values_they_read_are_bounded() {
    // A pattern that would cost every submission time in proportion to its size: refused.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    let yaml = config_yaml(
        &[("main", free_port())],
        free_port(),
        &[("adhoc", "round_robin"), ("etl", "round_robin")],
        &[("b", "http://127.0.0.1:9".into(), "adhoc")],
        "    - { name: slow, group: etl, match: { user: \"(a{100}){100}\" } }\n",
    );
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("routing.policies[0].match.user"), "{text}");
    assert!(text.contains("size limit"), "{text}");

    // Values longer than 1024 bytes are not matched: a 60 KB user goes to the default group.
    let (adhoc, etl) = (backend(10).await, backend(10).await);
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin"), ("etl", "round_robin")],
        &[
            ("adhoc-1", adhoc.url(), "adhoc"),
            ("etl-1", etl.url(), "etl"),
        ],
        "    - { name: a-users, group: etl, match: { user: \"^a+$\" } }\n",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    for (user, want) in [("a".repeat(1024), "etl"), ("a".repeat(60_000), "adhoc")] {
        let mut c = Client::new(&gw.url);
        c.user = user.clone();
        let out = c.run("SELECT 1", &[]).await;
        let on = if coordinator_of(&out.id) == etl.coordinator_id() {
            "etl"
        } else {
            "adhoc"
        };
        assert_eq!(on, want, "user of {} bytes", user.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_loops_are_refused_at_load_and_stopped_at_run_time() {
    // A backend that is the gateway's own listener: refused when the config is checked.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    let (port, admin) = (free_port(), free_port());
    for url in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{admin}"),
    ] {
        let yaml = config_yaml(
            &[("main", port)],
            admin,
            &[("adhoc", "round_robin")],
            &[("self", url.clone(), "adhoc")],
            "",
        );
        std::fs::write(&file, yaml).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{url}: {text}");
        assert!(text.contains("backends[0].url"), "{text}");
        assert!(text.contains("loop back into the gateway"), "{text}");
    }

    // Two gateways whose backends are each other: a loop no config check can see. Requests
    // come back with the first gateway's own mark and are answered 508 at once; probes see the
    // same and never call such a backend healthy.
    let (port_a, admin_a, port_b, admin_b) = (free_port(), free_port(), free_port(), free_port());
    let yaml_a = config_yaml(
        &[("main", port_a)],
        admin_a,
        &[("adhoc", "round_robin")],
        &[("to-b", format!("http://127.0.0.1:{port_b}"), "adhoc")],
        "",
    );
    let yaml_b = config_yaml(
        &[("main", port_b)],
        admin_b,
        &[("adhoc", "round_robin")],
        &[("to-a", format!("http://127.0.0.1:{port_a}"), "adhoc")],
        "",
    );
    let a = Gateway::start(&yaml_a, port_a, admin_a).await;
    let b = Gateway::start(&yaml_b, port_b, admin_b).await;
    for _ in 0..20 {
        let (status, body) = raw(port_a, &submission("X-Trino-User: t\r\n")).await;
        assert_eq!(status, 508, "{body}");
        assert_trino_error(&body, "ROUTING_LOOP");
    }
    let requests = |gw: &Gateway| {
        let gw_admin = gw.admin.clone();
        async move {
            let text = reqwest::get(format!("{gw_admin}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .filter(|l| l.starts_with("trino_edge_requests_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        }
    };
    // Each client request went round once: A, B, A (refused) — not thousands of times.
    assert_eq!(requests(&a).await, 40.0);
    assert_eq!(requests(&b).await, 20.0);

    // With health checks on, the loop is found by the probes: a third gateway whose backend is
    // B sees its probe come back 508 (B → A → B, where B finds its own mark).
    let (port_c, admin_c) = (free_port(), free_port());
    let yaml_c = with_health(
        &config_yaml(
            &[("main", port_c)],
            admin_c,
            &[("adhoc", "round_robin")],
            &[("to-b", format!("http://127.0.0.1:{port_b}"), "adhoc")],
            "",
        ),
        "interval: 200ms, rise: 1, fall: 1",
    );
    let c = Gateway::start(&yaml_c, port_c, admin_c).await;
    let v: Value = wait_state(&c, "to-b", "UNHEALTHY", Duration::from_secs(10)).await;
    assert!(v.to_string().contains("routing loop"), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_statements_hold_no_backend_connection_and_end_in_time() {
    let tap = Tap::start().await;
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("tap", tap.url.clone(), "adhoc")],
        "",
    )
    .replace("admin:\n", "  body_timeout: 2s\nadmin:\n");
    assert!(yaml.contains("body_timeout: 2s"), "{yaml}");
    let gw = Gateway::start(&yaml, port, admin).await;
    let _ = &gw;

    // 40 clients send a submission head and then its statement a byte per 300 ms.
    let sql = "SELECT 1 FROM t WHERE x = 1";
    let mut clients = Vec::new();
    for _ in 0..40 {
        clients.push(tokio::spawn(async move {
            let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let (mut rd, mut wr) = s.into_split();
            let head = format!(
                "POST /v1/statement HTTP/1.1\r\nHost: gw\r\nX-Trino-User: t\r\nContent-Length: {}\r\n\r\n",
                sql.len()
            );
            wr.write_all(head.as_bytes()).await.unwrap();
            let started = std::time::Instant::now();
            let answered = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop = answered.clone();
            let writer = tokio::spawn(async move {
                for b in sql.bytes() {
                    if stop.load(std::sync::atomic::Ordering::SeqCst)
                        || wr.write_all(&[b]).await.is_err()
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
            // The time of the answer's first bytes.
            let mut out = vec![0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(8), rd.read(&mut out))
                .await
                .unwrap_or(Ok(0))
                .unwrap_or(0);
            let took = started.elapsed();
            answered.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = writer.await;
            (took, String::from_utf8_lossy(&out[..n]).to_string())
        }));
    }
    // While they trickle, no backend connection is open for them.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        tap.accepted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a trickling client made the gateway connect to the backend"
    );
    for c in clients {
        let (took, response) = c.await.unwrap();
        assert!(response.starts_with("HTTP/1.1 408"), "{response}");
        assert!(response.contains("STATEMENT_NOT_RECEIVED"), "{response}");
        assert!(took < Duration::from_secs(7), "answered after {took:?}");
    }
    assert_eq!(tap.accepted.load(std::sync::atomic::Ordering::SeqCst), 0);

    // A statement that arrives in time, even in pieces, goes through whole.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/statement HTTP/1.1\r\nHost: gw\r\nX-Trino-User: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        sql.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    for piece in sql.as_bytes().chunks(10) {
        s.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert_eq!(tap.take().len(), 1);

    // A chunked statement streams (it has no length to hold by), still bounded in time.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        b"POST /v1/statement HTTP/1.1\r\nHost: gw\r\nX-Trino-User: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nS\r\n",
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(8), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "{:?}",
        started.elapsed()
    );
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(out.contains("STATEMENT_NOT_RECEIVED"), "{out}");
}
