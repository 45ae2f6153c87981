#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The admin listener under hostile clients (red-team findings): silent, trickling and idle
//! connections are closed on their deadlines (`admin.header_timeout`, `admin.idle_timeout`),
//! connections beyond `admin.max_connections` are closed at once, over HTTP and HTTPS, and a
//! declared body over the limit gets its 413 before the gateway waits for a byte of it.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trino_edge::emulator::EmulatorHandle;

/// A gateway with these extra lines in its `admin:` section.
async fn gateway(admin_lines: &str) -> (Gateway, EmulatorHandle) {
    let b1 = backend(10).await;
    let port = free_port();
    let admin = free_port();
    let address = format!("  address: \"127.0.0.1:{admin}\"\n");
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc")],
        "",
    )
    .replace(&address, &format!("{address}{admin_lines}"));
    assert!(yaml.contains(admin_lines), "{yaml}");
    let gw = Gateway::start(&yaml, port, admin).await;
    // Let the readiness client's connections go before a test counts the admin's connections.
    tokio::time::sleep(Duration::from_millis(300)).await;
    (gw, b1)
}

/// `host:port` of the admin listener.
fn admin_addr(gw: &Gateway) -> String {
    gw.admin
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .to_string()
}

/// How long after `since` the gateway closed `s` (EOF or reset), discarding anything it sent;
/// `None` if it was still open `limit` after `since`.
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    since: Instant,
    limit: Duration,
) -> Option<Duration> {
    let mut buf = [0u8; 4096];
    loop {
        let left = limit.checked_sub(since.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Whether `s` is still open: nothing to read and no EOF within 50 ms.
async fn still_open(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf))
        .await
        .is_err()
}

/// Trickle a request head that never ends (a byte every 200 ms); how long after the first byte
/// the gateway closed the connection, `None` if it was still open after `limit`.
async fn trickle(mut s: TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let (mut rd, mut wr) = s.split();
    let writer = async {
        let _ = wr
            .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await;
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"a").await.is_err() {
                // Reset: the reader sees it too.
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        closed = closed_after(&mut rd, started, limit) => closed,
        () = writer => None,
    }
}

/// One `GET /livez` on a kept-alive connection; the status line.
async fn livez_on(s: &mut TcpStream) -> String {
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    let mut buf = vec![0u8; 4096];
    while !text.contains("\"live\"}") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("no answer to /livez in 5 s")
            .unwrap();
        assert!(n > 0, "closed while answering /livez: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    text.lines().next().unwrap_or("").to_string()
}

/// `trino_edge_admin_connections_closed_total{reason}` as the admin listener reports it.
async fn closed_count(http: &reqwest::Client, gw: &Gateway, reason: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", gw.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("trino_edge_admin_connections_closed_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The red team's first finding, scaled down: 50 silent and 50 trickling connections were held
/// for a minute. With `header_timeout: 1s` each is closed about a second after it opened; a
/// kept-alive connection may idle longer than that (`idle_timeout: 6s`), and once it sends a
/// byte its head is under the header deadline again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_trickling_and_idle_connections_are_closed_on_their_deadlines() {
    let (gw, _b1) = gateway("  header_timeout: 1s\n  idle_timeout: 6s\n").await;
    let addr = admin_addr(&gw);

    let mut tasks = Vec::new();
    for i in 0..100 {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            if i % 2 == 0 {
                closed_after(&mut s, Instant::now(), Duration::from_secs(8)).await
            } else {
                trickle(s, Duration::from_secs(8)).await
            }
        }));
    }

    // Meanwhile, kept-alive connections: one stays idle, one trickles after an idle spell.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    let mut reused = TcpStream::connect(&addr).await.unwrap();
    assert!(livez_on(&mut idle).await.starts_with("HTTP/1.1 200"));
    let idle_since = Instant::now();
    assert!(livez_on(&mut reused).await.starts_with("HTTP/1.1 200"));
    assert!(livez_on(&mut reused).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        still_open(&mut reused).await,
        "an idle kept-alive connection was closed by the header deadline"
    );
    // Cut a second after the first byte (not at the idle deadline, 4.5 s later).
    let reused_cut = trickle(reused, Duration::from_secs(8))
        .await
        .expect("a trickled head on a reused connection was held for 8 s");
    assert!(
        reused_cut >= Duration::from_millis(700) && reused_cut <= Duration::from_millis(3000),
        "reused connection cut {reused_cut:?} after the head's first byte"
    );

    for (i, t) in tasks.into_iter().enumerate() {
        let kind = if i % 2 == 0 { "silent" } else { "trickling" };
        let cut = t
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{kind} connection {i} was held for 8 s"));
        assert!(
            cut >= Duration::from_millis(700) && cut <= Duration::from_millis(4000),
            "{kind} connection {i} closed after {cut:?}, expected about 1 s"
        );
    }

    let idle_cut = closed_after(&mut idle, idle_since, Duration::from_secs(10))
        .await
        .expect("an idle kept-alive connection was held for 10 s");
    assert!(
        idle_cut >= Duration::from_millis(5500),
        "idle connection closed after {idle_cut:?}, before admin.idle_timeout (6 s)"
    );

    // The listener still serves, and counted what it closed.
    let r = reqwest::get(format!("{}/livez", gw.admin)).await.unwrap();
    assert_eq!(r.status(), 200);
    let http = reqwest::Client::new();
    assert!(closed_count(&http, &gw, "header_timeout").await >= 101.0);
    assert!(closed_count(&http, &gw, "idle_timeout").await >= 1.0);
}

/// With `max_connections: 5` (set by a reload: the limits are live) held by silent clients,
/// further connections are closed at once (no file descriptor held, no client left hanging);
/// once the holders are cut at `header_timeout`, `/livez` answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_are_closed_at_once() {
    let (gw, _b1) = gateway("  header_timeout: 3s\n").await;
    let addr = admin_addr(&gw);
    let before = gw.snapshot_version().await;
    let yaml = std::fs::read_to_string(&gw.config_path).unwrap().replace(
        "  header_timeout: 3s\n",
        "  header_timeout: 3s\n  max_connections: 5\n",
    );
    assert!(yaml.contains("max_connections: 5"));
    gw.reload(&yaml);
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.snapshot_version().await == before {
        assert!(
            Instant::now() < deadline,
            "reload not applied:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut holders = Vec::new();
    for _ in 0..5 {
        holders.push(TcpStream::connect(&addr).await.unwrap());
    }
    let held_since = Instant::now();
    // Let the gateway accept them.
    tokio::time::sleep(Duration::from_millis(200)).await;

    for i in 0..20 {
        let mut extra = TcpStream::connect(&addr).await.unwrap();
        let cut = closed_after(&mut extra, Instant::now(), Duration::from_millis(1500))
            .await
            .unwrap_or_else(|| panic!("connection {i} beyond max_connections held for 1.5 s"));
        assert!(cut < Duration::from_secs(1), "{i}: {cut:?}");
    }
    // A client that tries now fails at once instead of waiting.
    let started = Instant::now();
    let refused = reqwest::Client::new()
        .get(format!("{}/livez", gw.admin))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(2));

    for (i, mut h) in holders.into_iter().enumerate() {
        let cut = closed_after(&mut h, held_since, Duration::from_secs(7))
            .await
            .unwrap_or_else(|| panic!("holder {i} kept for 7 s"));
        assert!(
            cut >= Duration::from_millis(2500),
            "holder {i} cut after {cut:?}"
        );
    }
    let r = reqwest::get(format!("{}/livez", gw.admin)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(closed_count(&reqwest::Client::new(), &gw, "max_connections").await >= 21.0);
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Status, lower-cased head and JSON body of a whole response read until the gateway closed.
fn parse(response: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status_of(head), head.to_ascii_lowercase(), json)
}

/// The red team's second finding: `Content-Length: 10000000000` and no body was held for 5 s+.
/// The 413 (the API's JSON error) now comes at once and the connection closes; a client that is
/// still uploading a body over the limit gets it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_body_over_the_limit_gets_413_at_once() {
    let (gw, _b1) = gateway("").await;
    let addr = admin_addr(&gw);

    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(
        b"POST /api/v1/backends HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10000000000\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), s.read_to_end(&mut out))
        .await
        .expect("no 413 and close within 1 s")
        .unwrap();
    let (status, head, body) = parse(&out);
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than 65536 bytes")),
        "{body}"
    );

    // Uploading 200 KiB: the answer arrives before the body is read, and the gateway reads the
    // rest before it closes, so no reset destroys the answer.
    for attempt in 0..5 {
        let s = TcpStream::connect(&addr).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let upload = tokio::spawn(async move {
            let _ = wr
                .write_all(
                    b"POST /api/v1/backends HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 204800\r\n\r\n",
                )
                .await;
            let _ = wr.write_all(&[b' '; 204_800]).await;
            wr
        });
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out))
            .await
            .unwrap_or_else(|_| panic!("attempt {attempt}: no close in 5 s"))
            .unwrap_or_else(|e| panic!("attempt {attempt}: {e}"));
        let (status, _, body) = parse(&out);
        assert_eq!(status, 413, "attempt {attempt}: {body}");
        drop(upload.await.unwrap());
    }

    // Nothing changed, and a body within the limit is still read and judged.
    let (s, list) = Api::new(&gw).get("/api/v1/backends").await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"POST /api/v1/backends HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 8\r\nConnection: close\r\n\r\nnot json")
        .await
        .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse(&out).0, 400);
}

/// Over HTTPS the handshake is under the header deadline too: a client that never says hello,
/// and one that completes the handshake but sends no request, are both closed; HTTPS requests
/// still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_admin_connections_are_under_the_same_deadlines() {
    use common::certs::{ca, leaf, write};
    let dir = tempfile::tempdir().unwrap();
    let ca_pair = ca("test CA");
    let (cert, key) = write(dir.path(), "admin", &leaf(&ca_pair, "gateway", false));
    let (gw, _b1) = gateway(&format!(
        "  tls: {{ cert: \"{}\", key: \"{}\" }}\n  header_timeout: 1s\n",
        cert.display(),
        key.display()
    ))
    .await;
    assert!(gw.admin.starts_with("https://"), "{}", gw.admin);
    let addr = admin_addr(&gw);

    // No ClientHello.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let cut = closed_after(&mut silent, Instant::now(), Duration::from_secs(5))
        .await
        .expect("a connection without a TLS handshake held for 5 s");
    assert!(cut >= Duration::from_millis(700), "{cut:?}");

    // A handshake, then silence: cut a second after the connection opened.
    let opened = Instant::now();
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).unwrap();
    b.cert_store_mut().add_cert(ca_pair.0.clone()).unwrap();
    let ssl = b
        .build()
        .configure()
        .unwrap()
        .into_ssl("localhost")
        .unwrap();
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
    std::pin::Pin::new(&mut tls).connect().await.unwrap();
    let cut = closed_after(&mut tls, opened, Duration::from_secs(5))
        .await
        .expect("a TLS connection without a request held for 5 s");
    assert!(
        cut >= Duration::from_millis(700) && cut <= Duration::from_millis(3000),
        "{cut:?}"
    );

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca_pair.0.to_pem().unwrap()).unwrap())
        .build()
        .unwrap();
    for _ in 0..2 {
        let r = http
            .get(format!("{}/livez", gw.admin))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert!(closed_count(&http, &gw, "header_timeout").await >= 2.0);
}
