#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Health checks and backend selection on pingora-load-balancing: consistent hashing, backends in
//! several groups, retry bookkeeping, startup without 503s, probing of new backends, live reload
//! of every setting (and refusal of restart-only ones). The SIGQUIT upgrade is in `lifecycle.rs`.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use trino_edge::emulator::{EmulatorConfig, EmulatorHandle};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `yaml` with `from` replaced by `to`; panics if `from` is not there (a silent no-op edit would
/// make a test pass for the wrong reason).
fn edit(yaml: &str, from: &str, to: &str) -> String {
    assert!(yaml.contains(from), "edit: `{from}` not found in\n{yaml}");
    yaml.replacen(from, to, 1)
}

/// Add `lines` (each indented by two spaces, newline-terminated) to the `proxy:` section.
fn with_proxy_keys(yaml: &str, lines: &str) -> String {
    edit(yaml, "admin:\n", &format!("{lines}admin:\n"))
}

async fn backend_view(gw: &Gateway, name: &str) -> Value {
    let (s, v) = Api::new(gw).get(&format!("/api/v1/backends/{name}")).await;
    assert_eq!(s, 200, "{v}");
    v
}

/// The routing dry run for a submission on listener `main` with these headers.
async fn dry_run(gw: &Gateway, headers: &[(&str, &str)]) -> Value {
    let headers: BTreeMap<&str, &str> = headers.iter().copied().collect();
    let (s, v) = Api::new(gw)
        .post(
            "/api/v1/route",
            json!({"listener": "main", "headers": headers}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    v
}

/// The same client as `base` (shared connection pool), as another user.
fn as_user(base: &Client, user: &str) -> Client {
    Client {
        user: user.to_string(),
        ..base.clone()
    }
}

/// Submit and return the query id; panics on anything but a 200 with an id.
async fn submit_id(client: &Client, sql: &str, headers: &[(&str, &str)]) -> String {
    let r = client.submit(sql, headers).await;
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "submission failed: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no query id: {text}"))
        .to_string()
}

/// Wait until the gateway runs snapshot `version`.
async fn wait_version(gw: &Gateway, version: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let v = gw.snapshot_version().await;
        if v == version {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "snapshot version {v}, expected {version} within {within:?}:\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which backend (by name) ran each of `n` runs of `SELECT 1` with these headers.
async fn backends_serving(
    client: &Client,
    names: &HashMap<String, &'static str>,
    n: usize,
    headers: &[(&str, &str)],
) -> Vec<&'static str> {
    let mut out = Vec::new();
    for _ in 0..n {
        let o = client.run("SELECT 1", headers).await;
        assert!(o.error.is_none(), "{:?}", o.error);
        let coord = coordinator_of(&o.id);
        out.push(
            *names
                .get(coord)
                .unwrap_or_else(|| panic!("unknown coordinator {coord}")),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 1. Consistent hashing
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_keeps_each_user_on_one_backend_and_removing_one_of_four_moves_about_a_quarter(
) {
    const USERS: usize = 100;
    const PER_USER: usize = 10;
    let names: [&'static str; 4] = ["b0", "b1", "b2", "b3"];
    let mut emus: Vec<EmulatorHandle> = Vec::new();
    for _ in 0..4 {
        emus.push(backend(100).await);
    }
    let by_coord: HashMap<String, &'static str> = emus
        .iter()
        .zip(names)
        .map(|(e, n)| (e.coordinator_id().to_string(), n))
        .collect();
    assert_eq!(by_coord.len(), 4, "coordinator ids must differ");

    let port = free_port();
    let admin = free_port();
    let yaml_of = |members: &[usize]| {
        let list: Vec<(&str, String, &str)> = members
            .iter()
            .map(|&i| (names[i], emus[i].url(), "g"))
            .collect();
        edit(
            &config_yaml(&[("main", port)], admin, &[("g", "consistent")], &list, ""),
            "{ name: g, strategy: consistent }",
            "{ name: g, strategy: consistent, hash_key: user }",
        )
    };
    let gw = Gateway::start(&yaml_of(&[0, 1, 2, 3]), port, admin).await;
    let base = Client::new(&gw.url);

    // 1,000 submissions, the users interleaved so each user's queries are spread over the run.
    let placements = |rounds: usize| {
        let base = base.clone();
        let by_coord = by_coord.clone();
        async move {
            let jobs: Vec<usize> = (0..rounds * USERS).map(|k| k % USERS).collect();
            futures::stream::iter(jobs)
                .map(|u| {
                    let c = as_user(&base, &format!("user{u}"));
                    let by_coord = by_coord.clone();
                    async move {
                        let id = submit_id(&c, "SELECT 1", &[]).await;
                        let b = *by_coord
                            .get(coordinator_of(&id))
                            .unwrap_or_else(|| panic!("unknown coordinator in {id}"));
                        (u, b)
                    }
                })
                .buffer_unordered(8)
                .collect::<Vec<(usize, &'static str)>>()
                .await
        }
    };
    let first = placements(PER_USER).await;
    assert_eq!(first.len(), USERS * PER_USER);
    let mut seen: HashMap<usize, HashSet<&'static str>> = HashMap::new();
    for (u, b) in &first {
        seen.entry(*u).or_default().insert(b);
    }
    let mut home: HashMap<usize, &'static str> = HashMap::new();
    for u in 0..USERS {
        let set = &seen[&u];
        assert_eq!(set.len(), 1, "user{u} landed on several backends: {set:?}");
        home.insert(u, *set.iter().next().unwrap());
    }
    // Every backend owns a fair share of the ring, and each ran exactly its users' queries.
    for (i, n) in names.iter().enumerate() {
        let users = home.values().filter(|b| *b == n).count();
        assert!(
            (5..=50).contains(&users),
            "backend {n} got {users} of {USERS} users: {home:?}"
        );
        assert_eq!(
            emus[i].state.stats().submissions as usize,
            users * PER_USER,
            "backend {n}"
        );
    }

    // The dry run names the backend the proxy used, with the key it hashed.
    for u in [0usize, 1, 2, 3, 17, 42, 99] {
        let user = format!("user{u}");
        let v = dry_run(&gw, &[("X-Trino-User", &user)]).await;
        assert_eq!(v["backend"]["name"], home[&u], "{v}");
        assert_eq!(v["strategy"], "consistent", "{v}");
        assert_eq!(v["selection"]["strategy"], "consistent", "{v}");
        assert_eq!(v["selection"]["key"]["hash_key"], "user", "{v}");
        assert_eq!(v["selection"]["key"]["value"], user.as_str(), "{v}");
    }

    // Remove b2: only its users move.
    let removed = "b2";
    gw.reload(&yaml_of(&[0, 1, 3]));
    wait_version(&gw, 2, Duration::from_secs(5)).await;
    let second = placements(1).await;
    let mut moved = 0usize;
    for (u, now) in &second {
        let before = home[u];
        assert_ne!(*now, removed, "user{u} still on the removed backend");
        if before == removed {
            moved += 1;
        } else {
            assert_eq!(
                *now, before,
                "user{u} was on {before}, which stayed, but moved to {now}"
            );
        }
    }
    let fraction = moved as f64 / USERS as f64;
    assert!(
        (0.10..=0.45).contains(&fraction),
        "removing one of four backends moved {moved} of {USERS} users"
    );
    let now: HashMap<usize, &'static str> = second.into_iter().collect();
    // The dry run follows the new ring too, for moved and unmoved users alike.
    let moved_users: Vec<usize> = (0..USERS).filter(|u| home[u] == removed).take(3).collect();
    for u in moved_users.into_iter().chain([5, 50]) {
        let user = format!("user{u}");
        let v = dry_run(&gw, &[("X-Trino-User", &user)]).await;
        assert_eq!(v["backend"]["name"], now[&u], "user{u}: {v}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. One backend in two groups
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_in_two_groups_is_probed_once_and_serves_both() {
    let a = backend(100).await;
    let b = backend(100).await;
    let c = backend(100).await;
    let names: HashMap<String, &'static str> = [
        (a.coordinator_id().to_string(), "a"),
        (b.coordinator_id().to_string(), "b"),
        (c.coordinator_id().to_string(), "c"),
    ]
    .into_iter()
    .collect();
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("g1", "round_robin"), ("g2", "round_robin")],
        &[
            ("a", a.url(), "g1"),
            ("b", b.url(), "g1"),
            ("c", c.url(), "g2"),
        ],
        "",
    );
    let yaml = edit(
        &yaml,
        &format!("{{ name: a, url: \"{}\", group: g1 }}", a.url()),
        &format!("{{ name: a, url: \"{}\", groups: [g1, g2] }}", a.url()),
    );
    let yaml = with_health(&yaml, "interval: 200ms, timeout: 1s");
    // Database mode: the admin API may drain backends.
    let gw = Gateway::start_with(&yaml, port, admin, "database").await;
    for n in ["a", "b", "c"] {
        wait_state(&gw, n, "HEALTHY", Duration::from_secs(5)).await;
    }
    let view = backend_view(&gw, "a").await;
    assert_eq!(view["groups"], json!(["g1", "g2"]), "{view}");
    assert_eq!(view["group"], "g1", "{view}");

    // `a` serves both groups, each with its own partner.
    let client = Client::new(&gw.url);
    let g1: HashSet<_> = backends_serving(&client, &names, 4, &[("X-Trino-Routing-Group", "g1")])
        .await
        .into_iter()
        .collect();
    let g2: HashSet<_> = backends_serving(&client, &names, 4, &[("X-Trino-Routing-Group", "g2")])
        .await
        .into_iter()
        .collect();
    assert_eq!(g1, HashSet::from(["a", "b"]));
    assert_eq!(g2, HashSet::from(["a", "c"]));

    // Probe traffic only (no client requests in the window): `a` is probed once per round like
    // `b` and `c`, not once per group. Each probe submits one load query.
    let before = (a.state.stats(), b.state.stats(), c.state.stats());
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let after = (a.state.stats(), b.state.stats(), c.state.stats());
    let subs = (
        after.0.submissions - before.0.submissions,
        after.1.submissions - before.1.submissions,
        after.2.submissions - before.2.submissions,
    );
    let reqs = (
        after.0.requests - before.0.requests,
        after.1.requests - before.1.requests,
        after.2.requests - before.2.requests,
    );
    eprintln!("in 1.6 s of probes only (a, b, c): submissions {subs:?}, requests {reqs:?}");
    assert!(subs.1 >= 3, "b was hardly probed in 1.6 s: {subs:?}");
    assert!(subs.2 >= 3, "c was hardly probed in 1.6 s: {subs:?}");
    assert!(
        subs.0 + 2 >= subs.1 && subs.0 <= subs.1 + 2 && subs.0 <= subs.2 + 2,
        "probe submissions (a, b, c) in 1.6 s: {subs:?}"
    );
    assert!(
        reqs.0 <= reqs.1 + reqs.1 / 2 + 3,
        "probe requests (a, b, c) in 1.6 s: {reqs:?}"
    );

    // Draining `a` takes it out of both groups at once.
    let (s, v) = Api::new(&gw)
        .post("/api/v1/backends/a/deactivate", json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false, "{v}");
    assert_eq!(v["groups"], json!(["g1", "g2"]), "{v}");
    let view = backend_view(&gw, "a").await;
    assert!(
        view["state"] == "INACTIVE" || view["state"] == "DRAINING",
        "{view}"
    );
    let dr1 = dry_run(&gw, &[("X-Trino-Routing-Group", "g1")]).await;
    assert_eq!(dr1["candidates"], json!(["b"]), "{dr1}");
    let dr2 = dry_run(&gw, &[("X-Trino-Routing-Group", "g2")]).await;
    assert_eq!(dr2["candidates"], json!(["c"]), "{dr2}");
    let g1 = backends_serving(&client, &names, 4, &[("X-Trino-Routing-Group", "g1")]).await;
    let g2 = backends_serving(&client, &names, 4, &[("X-Trino-Routing-Group", "g2")]).await;
    assert_eq!(g1, vec!["b"; 4]);
    assert_eq!(g2, vec!["c"; 4]);

    // And activating it brings it back to both.
    let (s, v) = Api::new(&gw)
        .post("/api/v1/backends/a/activate", json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    wait_state(&gw, "a", "HEALTHY", Duration::from_secs(3)).await;
    let g1: HashSet<_> = backends_serving(&client, &names, 4, &[("X-Trino-Routing-Group", "g1")])
        .await
        .into_iter()
        .collect();
    let g2: HashSet<_> = backends_serving(&client, &names, 4, &[("X-Trino-Routing-Group", "g2")])
        .await
        .into_iter()
        .collect();
    assert!(g1.contains("a") && g2.contains("a"), "{g1:?} {g2:?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Retry bookkeeping
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_leave_no_phantom_running_queries() {
    let live = backend(100).await;
    let dead_port = free_port(); // nothing listens here (yet)
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "least_load")],
        &[
            ("dead", format!("http://127.0.0.1:{dead_port}"), "adhoc"),
            ("live", live.url(), "adhoc"),
        ],
        "",
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    let client = Client::new(&gw.url);
    for _ in 0..20 {
        let o = client.run("SELECT 1", &[]).await;
        assert!(o.error.is_none(), "{:?}", o.error);
        assert_eq!(coordinator_of(&o.id), live.coordinator_id());
    }
    assert_eq!(live.state.stats().submissions, 20);

    // The counts settle after the last answer is written (the request's logging phase).
    let net = |v: &Value| {
        v["started_since_probe"].as_i64().unwrap() - v["finished_since_probe"].as_i64().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let (dead, alive) = loop {
        let dead = backend_view(&gw, "dead").await;
        let alive = backend_view(&gw, "live").await;
        if (net(&dead) == 0 && net(&alive) == 0) || Instant::now() > deadline {
            break (dead, alive);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(net(&dead), 0, "phantom queries on the dead backend: {dead}");
    assert_eq!(dead["estimated_running"], 0, "{dead}");
    assert_eq!(dead["inflight_requests"], 0, "{dead}");
    assert_eq!(net(&alive), 0, "finished queries still counted: {alive}");
    assert_eq!(alive["estimated_running"], 0, "{alive}");
    let attempts = dead["started_since_probe"].as_i64().unwrap();
    assert!(
        attempts >= 1,
        "least_load never tried the dead backend, so nothing was tested: {dead}"
    );

    // Each failed attempt is one connect error, and one retry moved off the dead backend.
    let connect = metric_sum(
        &gw,
        "trino_edge_upstream_errors_total",
        "backend=\"dead\",kind=\"connect\"",
    )
    .await;
    assert_eq!(connect as i64, attempts, "connect errors vs attempts");
    let retries = metric_sum(&gw, "trino_edge_retries_total", "backend=\"dead\"").await;
    assert_eq!(retries as i64, attempts, "retries vs attempts");

    // Once the dead backend comes up, least_load shares with it: the failed attempts left no
    // load on it. (Without load reports — health off — least_load reads in-flight requests, so
    // this checks that those were given back too.)
    let revived = trino_edge::emulator::start(
        SocketAddr::from(([127, 0, 0, 1], dead_port)),
        EmulatorConfig {
            rows_per_page: 100,
            ..EmulatorConfig::default()
        },
    )
    .await
    .expect("bind the dead backend's port");
    let mut on_revived = 0;
    for _ in 0..10 {
        let o = client.run("SELECT 1", &[]).await;
        if coordinator_of(&o.id) == revived.coordinator_id() {
            on_revived += 1;
        }
    }
    assert!(
        on_revived >= 3,
        "the revived backend got {on_revived} of 10 queries: {}",
        backend_view(&gw, "dead").await
    );
}

// ---------------------------------------------------------------------------------------------
// 4. No 503 while starting
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_answers_no_503_while_starting() {
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let port = free_port();
    let admin = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = with_health(
        &config_yaml(
            &[("main", port)],
            admin,
            &[("adhoc", "round_robin")],
            &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
            "",
        ),
        "interval: 5s, timeout: 2s",
    ) + &format!(
        "database:\n  url: \"sqlite://{}/state.db\"\n",
        dir.path().display()
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).unwrap();

    struct Seen {
        first_ok: Mutex<Option<Instant>>,
        answers: Mutex<Vec<(Instant, u16, String)>>,
        connect_errors: AtomicUsize,
    }
    let seen = Arc::new(Seen {
        first_ok: Mutex::new(None),
        answers: Mutex::new(Vec::new()),
        connect_errors: AtomicUsize::new(0),
    });
    let gw = Proc::spawn(&config, &[], dir.path().join("gateway.log"));
    let spawned = Instant::now();
    let url = format!("http://127.0.0.1:{port}/v1/statement");
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (seen, url) = (seen.clone(), url.clone());
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            loop {
                let now = Instant::now();
                let first = *seen.first_ok.lock().unwrap();
                if first.is_some_and(|f| now > f + Duration::from_secs(3))
                    || now > spawned + Duration::from_secs(15)
                {
                    return;
                }
                match http
                    .post(&url)
                    .header("X-Trino-User", "tester")
                    .body("SELECT 1")
                    .send()
                    .await
                {
                    Err(_) => {
                        // Not listening yet: retried, counted apart from answers.
                        seen.connect_errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body = r.text().await.unwrap_or_default();
                        let at = Instant::now();
                        if status == 200 {
                            seen.first_ok.lock().unwrap().get_or_insert(at);
                        }
                        seen.answers.lock().unwrap().push((at, status, body));
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let answers = seen.answers.lock().unwrap();
    let first = seen
        .first_ok
        .lock()
        .unwrap()
        .unwrap_or_else(|| panic!("no submission succeeded in 15 s:\n{}", gw.log()));
    let bad: Vec<_> = answers
        .iter()
        .filter(|(_, s, _)| *s != 200)
        .map(|(t, s, b)| (t.duration_since(spawned), s, b))
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} answers were not 200 while starting: {bad:?}\n{}",
        bad.len(),
        answers.len(),
        gw.log()
    );
    let early = answers
        .iter()
        .filter(|(t, _, _)| *t <= first + Duration::from_secs(3))
        .count();
    assert!(
        early >= 30,
        "only {early} submissions answered in the first 3 s after the first success"
    );
    eprintln!(
        "first success {:?} after spawn; {} connection errors before; {} answers",
        first.duration_since(spawned),
        seen.connect_errors.load(Ordering::Relaxed),
        answers.len()
    );
    assert!(
        gw.log().contains("first health-check pass done"),
        "{}",
        gw.log()
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A backend added through another instance is probed at once
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_added_on_one_instance_is_routable_on_the_other_within_two_seconds() {
    let b1 = backend(100).await;
    let fresh = backend(100).await;
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/shared.db", db_dir.path().display());
    let yaml_for = |port: u16, admin: u16| {
        with_health(
            &config_yaml(
                &[("main", port)],
                admin,
                &[("adhoc", "round_robin")],
                &[("b1", b1.url(), "adhoc")],
                "",
            ),
            "interval: 5s, timeout: 2s",
        ) + &format!("database:\n  url: \"{db}\"\n  poll_interval: 200ms\n")
    };
    let (pa, aa) = (free_port(), free_port());
    let a = Gateway::start_with(&yaml_for(pa, aa), pa, aa, "database").await;
    let (pb, ab) = (free_port(), free_port());
    let b = Gateway::start_with(&yaml_for(pb, ab), pb, ab, "database").await;

    // An empty group first, and B knows it, so the clock below measures the backend alone.
    let (s, v) = Api::new(&a)
        .post(
            "/api/v1/groups",
            json!({"name": "fresh", "strategy": "round_robin"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Api::new(&b).get("/api/v1/groups/fresh").await.0 != 200 {
        assert!(Instant::now() < deadline, "B never saw group fresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (s, v) = Api::new(&a)
        .post(
            "/api/v1/backends",
            json!({"name": "fresh-1", "url": fresh.url(), "group": "fresh"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let added = Instant::now();
    let via_b = Client::new(&b.url);
    let mut last = String::new();
    loop {
        let r = via_b
            .submit("SELECT 1", &[("X-Trino-Routing-Group", "fresh")])
            .await;
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        if status == 200 {
            let v: Value = serde_json::from_str(&text).unwrap();
            if coordinator_of(v["id"].as_str().unwrap()) == fresh.coordinator_id() {
                break;
            }
        }
        last = format!("{status} {}", &text[..text.len().min(200)]);
        if added.elapsed() > Duration::from_secs(2) {
            let (_, view) = Api::new(&b).get("/api/v1/backends/fresh-1").await;
            panic!(
                "instance B did not route to the new backend within 2 s; last answer: {last}; \
                 B's view of it: {view}\nB's log:\n{}",
                b.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "routable on B after {:?} (last other answer: {last})",
        added.elapsed()
    );
    assert!(fresh.state.stats().submissions >= 1);
}

// ---------------------------------------------------------------------------------------------
// 6. SIGHUP: every live setting applies, restart-only ones refuse the whole reload by name
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_each_live_setting_and_refuses_restart_only_ones_by_name() {
    let b1 = backend(100).await;
    let port = free_port();
    let admin = free_port();
    let base = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc")],
        "",
    );
    let gw = Gateway::start(&base, port, admin).await;
    let client = Client::new(&gw.url);
    let slow = "/* emulator:page_delay_ms=3000 */ SELECT 1";
    let big = format!("SELECT 1 /* {} */", "x".repeat(2000));
    let no_user = || async {
        let r = reqwest::Client::new()
            .post(format!("{}/v1/statement", gw.url))
            .body("SELECT 1")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    let first_page = |sql: &'static str| {
        let client = client.clone();
        async move {
            let v: Value = client.submit(sql, &[]).await.json().await.unwrap();
            let next = v["nextUri"].as_str().unwrap().to_string();
            let t = Instant::now();
            let r = client
                .http
                .get(&next)
                .header("X-Trino-User", "tester")
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap(), t.elapsed())
        }
    };

    // Before: a 3 s page is waited for, a 2 kB statement passes, a user-less one is not refused
    // by the gateway.
    let (s, body, took) = first_page(slow).await;
    assert_eq!(s, 200, "{body}");
    assert!(took >= Duration::from_millis(2900), "{took:?}");
    assert_eq!(client.submit(&big, &[]).await.status(), 200);
    let (_, body) = no_user().await;
    assert!(!body.contains("MISSING_USER"), "{body}");

    // Live: read_timeout, max_submission_bytes and a listener's require_user, in one reload.
    let live = with_proxy_keys(&base, "  read_timeout: 1s\n  max_submission_bytes: 1000\n");
    let live = edit(
        &live,
        &format!("{{ name: main, address: \"127.0.0.1:{port}\" }}"),
        &format!("{{ name: main, address: \"127.0.0.1:{port}\", require_user: true }}"),
    );
    let ok_before = metric_sum(&gw, "trino_edge_config_reload_total", "result=\"success\"").await;
    gw.reload(&live);
    wait_version(&gw, 2, Duration::from_secs(5)).await;
    assert_eq!(
        metric_sum(&gw, "trino_edge_config_reload_total", "result=\"success\"").await,
        ok_before + 1.0
    );
    // (a) read_timeout
    let (s, body, took) = first_page(slow).await;
    assert_eq!(s, 504, "a 3 s page with read_timeout 1s: {body}");
    assert_trino_error(&body, "BACKEND_TIMEOUT");
    assert!(took < Duration::from_millis(2900), "{took:?}");
    // (b) max_submission_bytes
    let r = client.submit(&big, &[]).await;
    assert_eq!(r.status(), 413);
    assert_trino_error(&r.text().await.unwrap(), "QUERY_TEXT_TOO_LARGE");
    // (c) require_user
    let (s, body) = no_user().await;
    assert_eq!(s, 400, "{body}");
    assert_trino_error(&body, "MISSING_USER");
    // Ordinary traffic is unaffected.
    assert!(client.run("SELECT 1", &[]).await.error.is_none());

    // Restart-only keys: each alone refuses the whole reload — also the live change that comes
    // with it (max_submission_bytes back to its default) — and names itself.
    let other_admin = free_port();
    let other_port = free_port();
    let cases: Vec<(&str, String)> = vec![
        (
            "admin.address",
            edit(
                &live,
                &format!("address: \"127.0.0.1:{admin}\""),
                &format!("address: \"127.0.0.1:{other_admin}\""),
            ),
        ),
        (
            "proxy.sticky_ttl",
            with_proxy_keys(&live, "  sticky_ttl: 1h\n"),
        ),
        (
            "proxy.sticky_capacity",
            with_proxy_keys(&live, "  sticky_capacity: 1000\n"),
        ),
        (
            "health.interval",
            edit(
                &live,
                "health: { enabled: false }",
                "health: { enabled: false, interval: 7s }",
            ),
        ),
        (
            "server",
            edit(&live, "server:\n", "server:\n  threads: 3\n"),
        ),
        (
            "proxy.listeners (names, addresses, tls)",
            edit(
                &live,
                &format!("address: \"127.0.0.1:{port}\""),
                &format!("address: \"127.0.0.1:{other_port}\""),
            ),
        ),
    ];
    for (key, yaml) in cases {
        let yaml = edit(&yaml, "  max_submission_bytes: 1000\n", "");
        let needle = format!("{key}: needs a restart");
        let log_before = gw.log().len();
        let failed_before =
            metric_sum(&gw, "trino_edge_config_reload_total", "result=\"failure\"").await;
        gw.reload(&yaml);
        let deadline = Instant::now() + Duration::from_secs(5);
        let new_lines = loop {
            let log = gw.log();
            let new = log[log_before.min(log.len())..].to_string();
            if new.contains("configuration reload rejected") {
                break new;
            }
            assert!(
                Instant::now() < deadline,
                "no rejection logged for a change of {key}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(new_lines.contains(&needle), "{key}: {new_lines}");
        assert_eq!(
            new_lines.matches("needs a restart").count(),
            1,
            "only {key} changed: {new_lines}"
        );
        assert_eq!(
            metric_sum(&gw, "trino_edge_config_reload_total", "result=\"failure\"").await,
            failed_before + 1.0,
            "{key}"
        );
        assert_eq!(gw.snapshot_version().await, 2, "{key}");
        // The old snapshot still routes, with its settings (not the refused file's).
        let o = client.run("SELECT 1", &[]).await;
        assert!(o.error.is_none(), "{key}: {:?}", o.error);
        let r = client.submit(&big, &[]).await;
        assert_eq!(
            r.status(),
            413,
            "{key}: the refused reload was partly applied"
        );
    }
    // The admin listener did not move.
    assert_eq!(Api::new(&gw).get("/livez").await.0, 200);
}
