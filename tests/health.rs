#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Health checks, load-aware balancing, draining, limits, failover and fallback.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use trino_edge::emulator::{EmulatorConfig, FailureMode};

const FAST_HEALTH: &str = "interval: 100ms, timeout: 1s, rise: 2, fall: 2";

async fn gateway_over(
    backends: &[(&str, String, &str)],
    groups: &[(&str, &str)],
    policies: &str,
    health: Option<&str>,
) -> Gateway {
    let port = free_port();
    let admin = free_port();
    let mut yaml = config_yaml(&[("main", port)], admin, groups, backends, policies);
    if let Some(h) = health {
        yaml = with_health(&yaml, h);
    }
    Gateway::start(&yaml, port, admin).await
}

async fn restart_on(
    addr: SocketAddr,
    coordinator_id: Option<&str>,
) -> trino_edge::emulator::EmulatorHandle {
    let cfg = EmulatorConfig {
        coordinator_id: coordinator_id.map(str::to_string),
        rows_per_page: 100,
        ..EmulatorConfig::default()
    };
    // The old listener's port may take a moment to be free again.
    for _ in 0..100 {
        if let Ok(h) = trino_edge::emulator::start(addr, cfg.clone()).await {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("could not restart an emulator on {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_is_avoided_without_failed_submissions_and_returns_after_rise() {
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let gw = gateway_over(
        &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
        &[("adhoc", "round_robin")],
        "",
        Some(FAST_HEALTH),
    )
    .await;
    wait_state(&gw, "b1", "HEALTHY", Duration::from_secs(5)).await;
    wait_state(&gw, "b2", "HEALTHY", Duration::from_secs(5)).await;

    // Continuous client load; every submission must succeed. Pages of queries that were running
    // on the killed backend may fail with 502 — the query died with its coordinator.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..3 {
        let client = Client::new(&gw.url);
        let (stop, seen) = (stop.clone(), seen.clone());
        let dead = b1.coordinator_id().to_string();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let resp = client
                    .submit("SELECT * FROM UNNEST(sequence(1, 300))", &[])
                    .await;
                assert_eq!(
                    resp.status(),
                    200,
                    "a submission failed: {}",
                    resp.text().await.unwrap()
                );
                let mut page: serde_json::Value = resp.json().await.unwrap();
                let id = page["id"].as_str().unwrap().to_string();
                seen.lock()
                    .unwrap()
                    .push((Instant::now(), coordinator_of(&id).to_string()));
                while let Some(next) = page["nextUri"].as_str() {
                    let r = client
                        .http
                        .get(next)
                        .header("X-Trino-User", "tester")
                        .send()
                        .await
                        .unwrap();
                    if r.status() != 200 {
                        assert_eq!(
                            coordinator_of(&id),
                            dead,
                            "a query on a live backend failed"
                        );
                        break;
                    }
                    page = r.json().await.unwrap();
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = b1.addr;
    b1.shutdown();
    let killed = Instant::now();
    wait_state(&gw, "b1", "UNHEALTHY", Duration::from_secs(3)).await;
    let detected = killed.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let b1_again = restart_on(addr, None).await;
    let restarted = Instant::now();
    wait_state(&gw, "b1", "HEALTHY", Duration::from_secs(3)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.expect("a client saw a failed submission");
    }
    let seen = seen.lock().unwrap();
    let back: Vec<_> = seen
        .iter()
        .filter(|(t, c)| *t > restarted && c == b1_again.coordinator_id())
        .collect();
    assert!(!back.is_empty(), "the restarted backend got no traffic");
    // Once detected (fall × interval plus a probe's time), nothing more went to the dead one.
    let settle = killed + detected + Duration::from_millis(50);
    assert!(!seen
        .iter()
        .any(|(t, c)| *t > settle && c == b1.coordinator_id()));
    assert!(seen.len() > 10, "too little traffic: {}", seen.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_restart_is_detected_and_its_old_queries_get_a_clean_404() {
    let b1 = backend_with(EmulatorConfig {
        coordinator_id: Some("aaaaa".into()),
        rows_per_page: 10,
        ..EmulatorConfig::default()
    })
    .await;
    let gw = gateway_over(
        &[("b1", b1.url(), "adhoc")],
        &[("adhoc", "round_robin")],
        "",
        Some(FAST_HEALTH),
    )
    .await;
    let v = wait_state(&gw, "b1", "HEALTHY", Duration::from_secs(5)).await;
    assert_eq!(v["coordinator_id"], "aaaaa");
    let client = Client::new(&gw.url);
    let first: serde_json::Value = client
        .submit("SELECT * FROM UNNEST(sequence(1, 100))", &[])
        .await
        .json()
        .await
        .unwrap();
    let next = first["nextUri"].as_str().unwrap().to_string();
    // Let the history reach the database first: its entry must not revive the query either.
    let id = first["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while reqwest::get(format!("{}/api/v1/queries/{id}", gw.admin))
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "history entry never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let addr = b1.addr;
    b1.shutdown();
    let _b1 = restart_on(addr, Some("bbbbb")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v: serde_json::Value = reqwest::get(format!("{}/api/v1/backends/b1", gw.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["coordinator_id"] == "bbbbb" {
            assert_eq!(v["coordinator_restarts"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "restart not detected: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = client.http.get(&next).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_trino_error(&r.text().await.unwrap(), "QUERY_NOT_FOUND");
    assert!(client.run("SELECT 1", &[]).await.id.ends_with("bbbbb"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backend_finishes_its_queries_and_gets_no_new_ones() {
    let b1 = backend(10).await;
    let b2 = backend(10).await;
    let port = free_port();
    let admin = free_port();
    let both = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
        "",
    );
    let gw = Gateway::start(&both, port, admin).await;
    let client = Client::new(&gw.url);
    // Start slow queries until one lands on b1.
    let (id, mut next) = loop {
        let page: serde_json::Value = client
            .submit(
                "/* emulator:page_delay_ms=20 */ SELECT * FROM UNNEST(sequence(1, 500))",
                &[],
            )
            .await
            .json()
            .await
            .unwrap();
        let id = page["id"].as_str().unwrap().to_string();
        if coordinator_of(&id) == b1.coordinator_id() {
            break (id, page["nextUri"].as_str().unwrap().to_string());
        }
    };
    gw.reload(&both.replace("{ name: b1, url", "{ name: b1, enabled: false, url"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.snapshot_version().await != 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = b1.state.stats().submissions;
    for _ in 0..6 {
        let out = client.run("SELECT 1", &[]).await;
        assert_eq!(coordinator_of(&out.id), b2.coordinator_id());
    }
    assert_eq!(
        b1.state.stats().submissions,
        before,
        "a drained backend got a new query"
    );
    // The running query on b1 pages to completion through the gateway.
    let mut rows = 0;
    loop {
        let page: serde_json::Value = client
            .http
            .get(&next)
            .header("X-Trino-User", "tester")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rows += page["data"].as_array().map_or(0, |d| d.len());
        match page["nextUri"].as_str() {
            Some(n) => next = n.to_string(),
            None => break,
        }
    }
    assert_eq!(
        rows, 500,
        "query {id} did not finish on its drained backend"
    );
    let v: serde_json::Value = reqwest::get(format!("{}/api/v1/backends/b1", gw.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v["state"] == "INACTIVE" || v["state"] == "DRAINING", "{v}");
    assert_eq!(v["enabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_load_spreads_a_burst_evenly_and_favours_the_faster_backend() {
    // A burst of 200 submissions faster than any probe: the gateway's own count keeps it even.
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let gw = gateway_over(
        &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
        &[("adhoc", "least_load")],
        "",
        Some("interval: 30s, timeout: 2s"),
    )
    .await;
    wait_state(&gw, "b1", "HEALTHY", Duration::from_secs(5)).await;
    wait_state(&gw, "b2", "HEALTHY", Duration::from_secs(5)).await;
    let probe_submissions = (b1.state.stats().submissions, b2.state.stats().submissions);
    // The probe's load query declares what it reads (timestamps with their precision).
    assert_eq!(
        b1.state.stats().last_client_capabilities.as_deref(),
        Some("PARAMETRIC_DATETIME")
    );
    let client = Client::new(&gw.url);
    let mut burst = Vec::new();
    for _ in 0..200 {
        let c = client.clone();
        burst.push(tokio::spawn(async move {
            c.submit("SELECT * FROM UNNEST(sequence(1, 1000))", &[])
                .await
                .status()
        }));
    }
    for b in burst {
        assert_eq!(b.await.unwrap(), 200);
    }
    let n1 = b1.state.stats().submissions - probe_submissions.0;
    let n2 = b2.state.stats().submissions - probe_submissions.1;
    assert_eq!(n1 + n2, 200);
    assert!(n1.abs_diff(n2) <= 2, "uneven burst: {n1} vs {n2}");

    // One slow and one fast backend under steady load: the fast one gets more queries.
    let slow = backend_with(EmulatorConfig {
        page_delay: Duration::from_millis(150),
        rows_per_page: 100,
        ..EmulatorConfig::default()
    })
    .await;
    let fast = backend(100).await;
    let gw = gateway_over(
        &[("slow", slow.url(), "adhoc"), ("fast", fast.url(), "adhoc")],
        &[("adhoc", "least_load")],
        "",
        Some("interval: 100ms, timeout: 2s"),
    )
    .await;
    wait_state(&gw, "slow", "HEALTHY", Duration::from_secs(5)).await;
    wait_state(&gw, "fast", "HEALTHY", Duration::from_secs(5)).await;
    let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut workers = Vec::new();
    for _ in 0..6 {
        let (client, counts) = (Client::new(&gw.url), counts.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let out = client
                    .run("SELECT * FROM UNNEST(sequence(1, 500))", &[])
                    .await;
                *counts
                    .lock()
                    .unwrap()
                    .entry(coordinator_of(&out.id).to_string())
                    .or_default() += 1;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let counts = counts.lock().unwrap();
    let (s, f) = (
        counts.get(slow.coordinator_id()).copied().unwrap_or(0),
        counts.get(fast.coordinator_id()).copied().unwrap_or(0),
    );
    eprintln!("least_load under steady load: fast {f}, slow {s}");
    assert!(
        f > 2 * s,
        "least_load should favour the fast backend: fast {f}, slow {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_fail_over_on_502_503_504_and_resets() {
    for mode in [
        FailureMode::Status(503),
        FailureMode::Status(502),
        FailureMode::Status(504),
        FailureMode::Reset,
    ] {
        let bad = backend(100).await;
        let good = backend(100).await;
        bad.state.set_failure_mode(mode);
        let gw = gateway_over(
            &[("bad", bad.url(), "adhoc"), ("good", good.url(), "adhoc")],
            &[("adhoc", "round_robin")],
            "",
            None,
        )
        .await;
        let client = Client::new(&gw.url);
        for _ in 0..6 {
            let out = client.run("SELECT 1", &[]).await;
            assert!(out.error.is_none());
            assert_eq!(coordinator_of(&out.id), good.coordinator_id(), "{mode:?}");
        }
        assert_eq!(good.state.stats().submissions, 6);
    }
    // With every backend refusing, the client gets the backend's answer (clients retry 503).
    let bad = backend(100).await;
    bad.state.set_failure_mode(FailureMode::Status(503));
    let gw = gateway_over(
        &[("bad", bad.url(), "adhoc")],
        &[("adhoc", "round_robin")],
        "",
        None,
    )
    .await;
    assert_eq!(
        Client::new(&gw.url).submit("SELECT 1", &[]).await.status(),
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_backends_get_no_new_queries_and_a_full_group_without_a_queue_answers_503() {
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let port = free_port();
    let admin = free_port();
    let yaml = with_health(
        &config_yaml(
            &[("main", port)],
            admin,
            &[("adhoc", "round_robin")],
            &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
            "",
        )
        .replace(
            "group: adhoc }",
            "group: adhoc, max_running_queries: 2, max_queued_queries: 2 }",
        )
        // Held at the gateway by default (tests/queue.rs); without a queue, the 503.
        .replace(
            "{ name: adhoc, strategy: round_robin }",
            "{ name: adhoc, strategy: round_robin, queue: { max_queued: 0 } }",
        ),
        "interval: 100ms, timeout: 2s",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    wait_state(&gw, "b1", "HEALTHY", Duration::from_secs(5)).await;
    wait_state(&gw, "b2", "HEALTHY", Duration::from_secs(5)).await;
    let client = Client::new(&gw.url);
    // Four queries that stay queued (nobody pages them): two per backend fills both.
    for _ in 0..4 {
        assert_eq!(
            client
                .submit("SELECT * FROM UNNEST(sequence(1, 1000))", &[])
                .await
                .status(),
            200
        );
    }
    for _ in 0..3 {
        let r = client.submit("SELECT 1", &[]).await;
        assert_eq!(r.status(), 503);
        let v = assert_trino_error(&r.text().await.unwrap(), "BACKENDS_AT_CAPACITY");
        assert!(v["error"]["message"].as_str().unwrap().contains("adhoc"));
        tokio::time::sleep(Duration::from_millis(150)).await; // across probes: still full
    }
    let v = wait_state(&gw, "b1", "HEALTHY", Duration::from_secs(1)).await;
    assert_eq!(v["full"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_group_falls_back_unless_strict() {
    let adhoc = backend(100).await;
    let etl = backend(100).await;
    etl.shutdown();
    let policies = "    - { name: etl, match: { client_tags_all: [etl] }, group: etl, fallback_group: backup }\n    - { name: strict, match: { client_tags_all: [strict] }, group: locked }\n    - { name: plain, match: { client_tags_all: [plain] }, group: etl }\n";
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[
            ("adhoc", "round_robin"),
            ("etl", "round_robin"),
            ("locked", "round_robin"),
            ("backup", "random"),
        ],
        &[
            ("a", adhoc.url(), "adhoc"),
            ("e", etl.url(), "etl"),
            ("k", etl.url(), "locked"),
            ("bk", adhoc.url(), "backup"),
        ],
        policies,
    )
    .replace(
        "{ name: locked, strategy: round_robin }",
        "{ name: locked, strategy: round_robin, strict: true }",
    );
    let gw = Gateway::start(&with_health(&yaml, FAST_HEALTH), port, admin).await;
    wait_state(&gw, "e", "UNHEALTHY", Duration::from_secs(5)).await;
    wait_state(&gw, "k", "UNHEALTHY", Duration::from_secs(5)).await;
    wait_state(&gw, "bk", "HEALTHY", Duration::from_secs(5)).await;
    let client = Client::new(&gw.url);
    // etl → its fallback_group; plain → the default group; strict → 503.
    for tag in ["etl", "plain"] {
        let out = client
            .run("SELECT 1", &[("X-Trino-Client-Tags", tag)])
            .await;
        assert_eq!(coordinator_of(&out.id), adhoc.coordinator_id());
    }
    let r = client
        .submit("SELECT 1", &[("X-Trino-Client-Tags", "strict")])
        .await;
    assert_eq!(r.status(), 503);
    assert_trino_error(&r.text().await.unwrap(), "NO_BACKEND_AVAILABLE");
    assert!(gw.log().contains("routing fallback"));
    assert!(gw.log().contains("to_group=backup"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_round_over_50_slow_backends_takes_well_under_one_interval() {
    let mut backends = Vec::new();
    for _ in 0..50 {
        // Every probe query page waits 200 ms: probed one after another this would take > 10 s.
        backends.push(
            backend_with(EmulatorConfig {
                page_delay: Duration::from_millis(200),
                ..EmulatorConfig::default()
            })
            .await,
        );
    }
    let list: Vec<(String, String)> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("b{i}"), b.url()))
        .collect();
    let list: Vec<(&str, String, &str)> = list
        .iter()
        .map(|(n, u)| (n.as_str(), u.clone(), "adhoc"))
        .collect();
    let yaml = with_health(
        &config_yaml(
            &[("main", free_port())],
            free_port(),
            &[("adhoc", "round_robin")],
            &list,
            "",
        ),
        "interval: 5s, timeout: 4s",
    );
    let config = trino_edge::config::parse_str("t", &yaml).unwrap();
    let snapshots = trino_edge::snapshot::SnapshotHandle::new(&config).unwrap();
    let gateway = Arc::new(trino_edge::gateway::Gateway::new(
        snapshots.clone(),
        trino_edge::stickiness::Stickiness::new(1000, Duration::from_secs(60)),
        None,
        None,
        "test",
    ));
    // The service puts our check on the shared registry; one pass probes every backend once.
    let _service = trino_edge::health::HealthService::new(gateway.clone());
    let snap = snapshots.load();
    tokio::time::timeout(
        Duration::from_millis(2500),
        snapshots.registry.health.run_health_check(true),
    )
    .await
    .expect("one pass over 50 backends must take well under the 5 s interval");
    assert!(snap
        .backends
        .iter()
        .all(|b| b.health() == trino_edge::health::state::Health::Healthy));
    assert_eq!(gateway.sticky.known_coordinators(), 50);
}
