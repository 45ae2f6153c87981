#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Metrics: exact counters after a scripted mix, bounded cardinality, the Grafana dashboard's
//! metrics all exist; W3C trace context passes through.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(gw: &Gateway) -> String {
    let r = reqwest::get(format!("{}/metrics", gw.admin)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    r.text().await.unwrap()
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("valid Prometheus text")
}

/// Sum of the samples of `metric` whose labels include all of `labels`.
fn sum(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn scripted_gateway() -> (Gateway, Vec<trino_edge::emulator::EmulatorHandle>) {
    let mut bs = Vec::new();
    for _ in 0..4 {
        bs.push(backend(100).await);
    }
    let port = free_port();
    let admin = free_port();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let policies = "    - { name: etl, priority: 5, match: { client_tags_all: [etl] }, group: etl }\n    - { name: off, priority: 4, match: { client_tags_all: [off] }, group: off }\n";
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[
            ("adhoc", "round_robin"),
            ("etl", "round_robin"),
            ("broken", "round_robin"),
            ("off", "round_robin"),
            ("flaky", "round_robin"),
        ],
        &[
            ("b1", bs[0].url(), "adhoc"),
            ("b2", bs[1].url(), "adhoc"),
            ("b3", bs[2].url(), "etl"),
            ("b4", dead.clone(), "broken"),
            ("b5", bs[3].url(), "off"),
            ("b6", dead, "flaky"),
            ("b7", bs[3].url(), "flaky"),
        ],
        policies,
    )
    .replace("{ name: b5, url", "{ name: b5, enabled: false, url");
    (Gateway::start(&yaml, port, admin).await, bs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_a_scripted_mix_of_traffic_and_the_dashboard_metrics_exist() {
    let (gw, _bs) = scripted_gateway().await;
    let client = Client::new(&gw.url);
    let mut pages = 0;
    // 4 adhoc queries (multi-page), 2 etl queries.
    for _ in 0..4 {
        pages += client
            .run("SELECT * FROM UNNEST(sequence(1, 250))", &[])
            .await
            .next_uris
            .len();
    }
    for _ in 0..2 {
        pages += client
            .run("SELECT 1", &[("X-Trino-Client-Tags", "etl")])
            .await
            .next_uris
            .len();
    }
    // A fallback: group `off` has only a disabled backend → the default group (adhoc).
    pages += client
        .run("SELECT 1", &[("X-Trino-Client-Tags", "off")])
        .await
        .next_uris
        .len();
    // A retry: group `flaky` rotates over the dead b6 and b7, so within two submissions one tries
    // b6 first and moves to b7 (which one depends on the rotation's start).
    let mut flaky = 0;
    loop {
        pages += client
            .run("SELECT 1", &[("X-Trino-Routing-Group", "flaky")])
            .await
            .next_uris
            .len();
        flaky += 1;
        let tried_b6 = metric_sum(&gw, "trino_edge_upstream_errors_total", "backend=\"b6\"").await;
        if tried_b6 > 0.0 || flaky == 2 {
            break;
        }
    }
    // A cancel of a running adhoc query.
    let first: serde_json::Value = client
        .submit(
            "/* emulator:page_delay_ms=20 */ SELECT * FROM UNNEST(sequence(1, 100000))",
            &[],
        )
        .await
        .json()
        .await
        .unwrap();
    let page: serde_json::Value = client
        .http
        .get(first["nextUri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    pages += 1;
    let del = client
        .http
        .delete(page["nextUri"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    // An unknown query id, and a submission to the dead backend.
    let r = client
        .http
        .get(format!(
            "{}/v1/statement/executing/20260101_000000_00001_zzzzz/y/1",
            gw.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .submit("SELECT 1", &[("X-Trino-Routing-Group", "broken")])
        .await;
    assert_eq!(r.status(), 502);
    // A config reload (same file): counted and versioned.
    gw.reload(&std::fs::read_to_string(&gw.config_path).unwrap());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gw.snapshot_version().await != 2 {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await; // the last request's logging phase

    let text = scrape(&gw).await;
    let m = parse(&text);
    let req = "trino_edge_requests_total";
    let ok = ("status", "200");
    assert_eq!(
        sum(&m, req, &[("kind", "submit"), ("group", "adhoc"), ok]),
        6.0,
        "4 + fallback + cancel query"
    );
    assert_eq!(
        sum(
            &m,
            req,
            &[("kind", "submit"), ("group", "etl"), ("backend", "b3"), ok]
        ),
        2.0
    );
    assert_eq!(
        sum(
            &m,
            req,
            &[
                ("kind", "submit"),
                ("group", "flaky"),
                ("backend", "b7"),
                ok
            ]
        ),
        flaky as f64
    );
    assert_eq!(
        sum(
            &m,
            req,
            &[
                ("kind", "submit"),
                ("group", "broken"),
                ("backend", "b4"),
                ("status", "502")
            ]
        ),
        1.0
    );
    assert_eq!(sum(&m, req, &[("kind", "page"), ok]), pages as f64);
    assert_eq!(sum(&m, req, &[("kind", "cancel"), ("status", "204")]), 1.0);
    assert_eq!(
        sum(
            &m,
            req,
            &[
                ("kind", "page"),
                ("group", "-"),
                ("backend", "-"),
                ("status", "404")
            ]
        ),
        1.0
    );
    assert_eq!(
        sum(&m, req, &[("listener", "main")]),
        (6 + 2 + 1 + flaky + pages + 1 + 1) as f64
    );
    // Every request got one latency sample.
    assert_eq!(
        sum(&m, "trino_edge_request_duration_seconds_count", &[]),
        sum(&m, req, &[])
    );

    let sub = "trino_edge_queries_submitted_total";
    assert_eq!(
        sum(&m, sub, &[("group", "adhoc"), ("policy", "default")]),
        5.0
    );
    assert_eq!(sum(&m, sub, &[("group", "adhoc"), ("policy", "off")]), 1.0);
    assert_eq!(sum(&m, sub, &[("group", "etl"), ("policy", "etl")]), 2.0);
    assert_eq!(
        sum(
            &m,
            sub,
            &[("group", "flaky"), ("policy", "routing-group-header")]
        ),
        flaky as f64
    );
    assert_eq!(
        sum(
            &m,
            "trino_edge_routing_fallback_total",
            &[("from_group", "off"), ("to_group", "adhoc")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &m,
            "trino_edge_sticky_resolution_total",
            &[("source", "memory")]
        ),
        (pages + 1) as f64
    );
    assert_eq!(
        sum(
            &m,
            "trino_edge_sticky_resolution_total",
            &[("source", "miss")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &m,
            "trino_edge_upstream_errors_total",
            &[("backend", "b6"), ("kind", "connect")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &m,
            "trino_edge_upstream_errors_total",
            &[("backend", "b4"), ("kind", "connect")]
        ),
        1.0
    );
    assert_eq!(
        sum(&m, "trino_edge_retries_total", &[("backend", "b6")]),
        1.0
    );
    assert_eq!(
        sum(&m, "trino_edge_retries_total", &[("backend", "b4")]),
        0.0,
        "nothing left to retry on"
    );
    assert_eq!(
        sum(
            &m,
            "trino_edge_backend_up",
            &[("backend", "b1"), ("group", "adhoc")]
        ),
        1.0
    );
    assert_eq!(sum(&m, "trino_edge_backend_up", &[("backend", "b5")]), 0.0);
    assert_eq!(sum(&m, "trino_edge_snapshot_version", &[]), 2.0);
    assert_eq!(
        sum(
            &m,
            "trino_edge_config_reload_total",
            &[("result", "success")]
        ),
        1.0
    );
    assert!(sum(&m, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(sum(&m, "process_open_fds", &[]) > 0.0);

    // The dashboard is valid Grafana JSON and queries only metrics that exist.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conf/grafana/trino-edge.json"
        ))
        .unwrap(),
    )
    .expect("dashboard is JSON");
    assert!(dash["title"].is_string() && dash["uid"].is_string() && dash["schemaVersion"].is_i64());
    let mut exprs = Vec::new();
    collect_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 10, "dashboard has too few queries");
    // Backend load gauges exist once health probes report load: scrape a probing gateway too.
    let port = free_port();
    let admin = free_port();
    let probing = Gateway::start(
        &with_health(
            &config_yaml(
                &[("main", port)],
                admin,
                &[("adhoc", "round_robin")],
                &[("b1", _bs[0].url(), "adhoc")],
                "",
            ),
            "interval: 100ms",
        ),
        port,
        admin,
    )
    .await;
    wait_state(&probing, "b1", "HEALTHY", Duration::from_secs(5)).await;
    let probed = scrape(&probing).await;
    let names: BTreeSet<&str> = text
        .lines()
        .chain(probed.lines())
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    assert!(
        names.contains("trino_edge_backend_running_queries"),
        "{probed}"
    );
    let ident = regex::Regex::new(r"\b(trino_edge_[a-z_]+|process_[a-z_]+)\b").unwrap();
    let mut used = BTreeSet::new();
    for e in &exprs {
        for c in ident.captures_iter(e) {
            used.insert(c[1].to_string());
        }
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|n| !names.contains(n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard queries metrics that do not exist: {missing:?}"
    );
    assert!(
        used.len() >= 12,
        "dashboard covers too few metrics: {used:?}"
    );
}

/// Before any reload, retry, upstream error or fallback, the counters of those dashboard panels
/// already have their series, at zero, for every configured backend and fallback path: the
/// panels show 0, not "No data".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_counters_exist_at_zero_from_the_start() {
    let (gw, _bs) = scripted_gateway().await;
    let m = parse(&scrape(&gw).await);
    let samples = |metric: &str, labels: &[(&str, &str)]| -> Vec<f64> {
        m.samples
            .iter()
            .filter(|s| s.metric == metric)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .collect()
    };
    for (metric, labels) in [
        (
            "trino_edge_config_reload_total",
            &[("result", "success")][..],
        ),
        (
            "trino_edge_config_reload_total",
            &[("result", "failure")][..],
        ),
        ("trino_edge_retries_total", &[("backend", "b6")][..]),
        (
            "trino_edge_upstream_errors_total",
            &[("backend", "b4"), ("kind", "connect")][..],
        ),
        (
            "trino_edge_upstream_errors_total",
            &[("backend", "b1"), ("kind", "timeout")][..],
        ),
        (
            "trino_edge_routing_fallback_total",
            &[("from_group", "off"), ("to_group", "adhoc")][..],
        ),
        (
            "trino_edge_sticky_resolution_total",
            &[("source", "miss")][..],
        ),
    ] {
        assert_eq!(samples(metric, labels), vec![0.0], "{metric} {labels:?}");
    }
}

fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                if k == "expr" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_exprs(v, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_submissions_do_not_grow_the_series_count() {
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let gw = simple_gateway(&[&b1, &b2], "round_robin").await;
    let client = Client::new(&gw.url);
    let random = || {
        (0..12)
            .map(|_| fastrand::alphanumeric())
            .collect::<String>()
    };
    let burst = |n: usize| {
        let client = client.clone();
        async move {
            let mut tasks = Vec::new();
            for chunk in 0..16 {
                let client = client.clone();
                tasks.push(tokio::spawn(async move {
                    for _ in (chunk..n).step_by(16) {
                        let (u, s, t, g, h) = (random(), random(), random(), random(), random());
                        let r = client
                            .http
                            .post(format!("{}/v1/statement", client.base))
                            .header("X-Trino-User", &u)
                            .header("X-Trino-Source", &s)
                            .header("X-Trino-Client-Tags", format!("{t},{h}"))
                            .header("X-Trino-Routing-Group", &g)
                            .header(format!("X-Random-{h}"), &u)
                            .body("SELECT 1")
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        // And an unknown query id of random shape.
                        let id = format!(
                            "20260101_000000_{}_{}",
                            fastrand::u32(10000..99999),
                            "zzzzz"
                        );
                        let r = client
                            .http
                            .get(format!("{}/v1/query/{id}", client.base))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 404);
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    let series = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty() && !l.starts_with("process_"))
            // Database errors are labelled by a fixed set of operations; a lookup timing out
            // under this flood is not what this test is about.
            .filter(|l| !l.starts_with("trino_edge_db_errors_total"))
            .count()
    };
    burst(64).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = series(&scrape(&gw).await);
    burst(10_000).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = scrape(&gw).await;
    assert_eq!(
        series(&text),
        before,
        "series grew with random client input"
    );
    let m = parse(&text);
    assert_eq!(sum(&m, "trino_edge_queries_submitted_total", &[]), 10_064.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_traceparent_reaches_the_backend_unchanged() {
    // A one-shot fake coordinator that records the request it gets.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let captured = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = 0;
        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            n += sock.read(&mut buf[n..]).await.unwrap();
        }
        let body = br#"{"id":"20260101_000000_00001_abcde","stats":{"state":"FINISHED"}}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(body).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).to_string()
    });
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("fake", format!("http://{addr}"), "adhoc")],
        "",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = Client::new(&gw.url)
        .submit(
            "SELECT 1",
            &[("traceparent", tp), ("tracestate", "vendor=x")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let request = captured.await.unwrap().to_ascii_lowercase();
    assert!(request.contains(&format!("traceparent: {tp}")), "{request}");
    assert!(request.contains("tracestate: vendor=x"), "{request}");
}
