#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Admission control at the gateway (`queue:` on groups and policies), with the real clients:
//! queries held while the cluster is full and handed over when it has room, fairly between
//! users; cancel while held; a full queue and the queue's time limit; two instances in front of
//! one full group. `tests/run` installs the clients; without them these tests fail under
//! `CI=true` and skip otherwise.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::Value;
use trino_edge::emulator::EmulatorHandle;

/// One probe when the gateway starts (the backends' load is known from then on), none during the
/// test: between probes the gateway's own count of what it started and saw end is exact.
const ONE_PROBE: &str = "interval: 60s, timeout: 2s";

const PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_queue.py");

/// A gateway over `backends`, all in group `adhoc` with this `queue:` body, each backend with
/// these limits (`max_running_queries: 2`, ...).
async fn gateway(backends: &[&EmulatorHandle], limits: &str, queue: &str) -> Gateway {
    let port = free_port();
    let admin = free_port();
    let names: Vec<String> = (0..backends.len()).map(|i| format!("b{i}")).collect();
    let list: Vec<(&str, String, &str)> = backends
        .iter()
        .zip(&names)
        .map(|(b, n)| (n.as_str(), b.url(), "adhoc"))
        .collect();
    let mut yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &list,
        "",
    )
    .replace(
        "{ name: adhoc, strategy: round_robin }",
        &format!("{{ name: adhoc, strategy: round_robin, queue: {{ {queue} }} }}"),
    );
    for b in backends {
        yaml = yaml.replace(
            &format!("url: \"{}\", group: adhoc }}", b.url()),
            &format!("url: \"{}\", group: adhoc, {limits} }}", b.url()),
        );
    }
    let gw = Gateway::start(&with_health(&yaml, ONE_PROBE), port, admin).await;
    for n in &names {
        wait_state(&gw, n, "HEALTHY", Duration::from_secs(10)).await;
    }
    gw
}

async fn waiting(gw: &Gateway) -> u64 {
    let (_, v) = Api::new(gw).get("/api/v1/queue").await;
    v["waiting"].as_u64().unwrap()
}

async fn wait_held(gw: &Gateway, n: u64) {
    for _ in 0..600 {
        if waiting(gw).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the gateway never held {n} queries");
}

/// A query the backend created and nobody pages: it fills one slot until canceled.
struct Blocker {
    next: String,
}

impl Blocker {
    async fn start(client: &Client) -> Blocker {
        let r = client
            .submit("SELECT * FROM UNNEST(sequence(1, 10))", &[])
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert!(!Queue::held(v["id"].as_str().unwrap()), "{v}");
        Blocker {
            next: client.follow_url(v["nextUri"].as_str().unwrap()),
        }
    }

    async fn release(self) {
        let r = reqwest::Client::new()
            .delete(&self.next)
            .header("X-Trino-User", "blocker")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
    }
}

/// What a held query's id looks like: Trino's form, its coordinator part starting with `0`.
struct Queue;

impl Queue {
    fn held(id: &str) -> bool {
        id.len() >= 27 && id.as_bytes()[id.len() - 5] == b'0'
    }
}

fn python(args: &[&str]) -> Value {
    let py = tool("TRINO_EDGE_PYTHON").unwrap();
    let out = run(Command::new(py).arg(PY).args(args));
    serde_json::from_str(out.trim().lines().last().unwrap()).unwrap()
}

async fn python_async(args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python(&args)
    })
    .await
    .unwrap()
}

/// The largest number of unfinished queries the backend ever had while `sampling` was on, as
/// the gateway's own load query sees it (sent straight to the backend; its own row subtracted).
fn sample_peak(b: &EmulatorHandle, sampling: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    let client = Client::new(&b.url());
    tokio::spawn(async move {
        let peak = AtomicU64::new(0);
        while sampling.load(Ordering::Relaxed) {
            let out = client
                .run(
                    "SELECT state, count(*) FROM system.runtime.queries \
                     WHERE state NOT IN ('FINISHED', 'FAILED') GROUP BY state",
                    &[],
                )
                .await;
            let active: u64 = out.rows.iter().map(|r| r[1].as_u64().unwrap()).sum();
            peak.fetch_max(active.saturating_sub(1), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        peak.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_queries_through_a_group_of_two_complete_fairly_and_none_fails() {
    if tool("TRINO_EDGE_PYTHON").is_none() {
        return;
    }
    let b = backend(1).await;
    let gw = gateway(&[&b], "max_running_queries: 2", "").await;
    // The cluster starts full, so every query goes through the queue: from then on only the
    // queue's dispatcher starts queries, counting each at once. (Submissions routed at the same
    // instant to a group with room are counted as they are sent, a moment after the decision: a
    // burst into an idle group can pass a limit by the concurrent decisions.)
    let client = Client::new(&gw.url);
    let blockers = [Blocker::start(&client).await, Blocker::start(&client).await];
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = sample_peak(&b, sampling.clone());
    let run = tokio::spawn(python_async(vec![
        "fair".into(),
        gw.url.clone(),
        gw.admin.clone(),
        "40".into(),
        "10".into(),
    ]));
    wait_held(&gw, 50).await;
    for blocker in blockers {
        blocker.release().await;
    }
    let facts = run.await.unwrap();
    sampling.store(false, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    assert_eq!(facts["failures"], serde_json::json!([]), "{facts}");
    let order: Vec<&str> = facts["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(order.len(), 50, "{facts}");
    // Users take turns: when solo's last query is done, most of burst's are still to come
    // (first come, first served would have finished every one of burst's first).
    let last_solo = order.iter().rposition(|u| *u == "solo").unwrap();
    let burst_after = order[last_solo..].iter().filter(|u| **u == "burst").count();
    assert!(burst_after >= 15, "solo was not served fairly: {order:?}");
    // Never more than the group's two at once on the backend.
    assert!(
        (1..=2).contains(&peak),
        "peak of {peak} queries on the backend"
    );
    // Held queries went to the backend once each (plus the probe and the sampler's own).
    let held = metric_sum(&gw, "trino_edge_queue_held_total", "group=\"adhoc\"").await;
    assert_eq!(held, 50.0);
    assert_eq!(
        metric_sum(&gw, "trino_edge_queries_submitted_total", "group=\"adhoc\"").await,
        52.0,
        "the 50 and the two blockers, each once"
    );
    assert_eq!(waiting(&gw).await, 0);
    let wait_count = metric_sum(&gw, "trino_edge_queue_wait_seconds_count", "adhoc").await;
    assert_eq!(wait_count, held);
    // The Python client keeps the id of its first answer: the held id, which the history
    // records beside the query's own.
    let first = facts["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["first"].as_str().unwrap().to_string())
        .find(|id| Queue::held(id))
        .expect("some query was held");
    let api = Api::new(&gw);
    let mut found = Value::Null;
    for _ in 0..100 {
        let (_, page) = api.get("/api/v1/queries?limit=100").await;
        if let Some(r) = page["queries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["queuedId"] == first.as_str())
        {
            found = r.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!found.is_null(), "the history has no query held as {first}");
    assert!(!Queue::held(found["queryId"].as_str().unwrap()), "{found}");
    assert!(found["queuedMs"].as_i64().unwrap() >= 0, "{found}");
    assert_eq!(found["backend"], "b0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_cli_and_npm_clients_wait_while_held_and_continue_on_the_real_query() {
    let (Some(_), Some(jar), Some(modules)) = (
        tool("TRINO_EDGE_PYTHON"),
        tool("TRINO_CLI_JAR"),
        tool("TRINO_EDGE_NODE_MODULES"),
    ) else {
        return;
    };
    let b = backend(2).await;
    let gw = gateway(&[&b], "max_running_queries: 1, max_queued_queries: 1", "").await;
    let client = Client::new(&gw.url);
    let sql = "SELECT * FROM UNNEST(sequence(1, 5))";
    let before = b.state.stats().submissions;

    // Python: held (its first answer is the gateway's QUEUED), then handed over.
    let blocker = Blocker::start(&client).await;
    let py = tokio::spawn(python_async(vec!["one".into(), gw.url.clone(), sql.into()]));
    wait_held(&gw, 1).await;
    blocker.release().await;
    let py = py.await.unwrap();
    assert_eq!(
        py["rows"],
        serde_json::json!([[1], [2], [3], [4], [5]]),
        "{py}"
    );
    assert!(Queue::held(py["query_id"].as_str().unwrap()), "{py}");
    assert_eq!(py["state"], "FINISHED");

    // The CLI: same, its output the query's rows.
    let blocker = Blocker::start(&client).await;
    let url = gw.url.clone();
    let cli = tokio::spawn(async move { trino_cli_csv(jar, &url, sql).await });
    wait_held(&gw, 1).await;
    blocker.release().await;
    let csv = cli.await.unwrap();
    assert_eq!(
        csv.lines().collect::<Vec<_>>(),
        ["\"1\"", "\"2\"", "\"3\"", "\"4\"", "\"5\""],
        "{csv}"
    );

    // npm `trino-client`: it keeps its first answer (the held id) to itself and yields the pages
    // after it; every one it yields carries the query's own id.
    let blocker = Blocker::start(&client).await;
    let url = gw.url.clone();
    let node = tokio::task::spawn_blocking(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/node_queue.mjs");
        run(Command::new("node")
            .args([script, &url, sql])
            .env("TRINO_EDGE_NODE_MODULES", modules))
    });
    wait_held(&gw, 1).await;
    blocker.release().await;
    let node: Value =
        serde_json::from_str(node.await.unwrap().trim().lines().last().unwrap()).unwrap();
    assert_eq!(
        node["rows"],
        serde_json::json!([[1], [2], [3], [4], [5]]),
        "{node}"
    );
    let pages = node["pages"].as_array().unwrap();
    assert_eq!(pages.last().unwrap()["state"], "FINISHED", "{node}");
    for p in pages {
        let id = p["id"].as_str().unwrap();
        assert!(!Queue::held(id), "{node}");
        assert_eq!(coordinator_of(id), b.coordinator_id());
    }
    // Three blockers and three handed-over queries reached the backend, nothing twice.
    assert_eq!(b.state.stats().submissions, before + 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_canceled_while_held_is_never_submitted() {
    if tool("TRINO_EDGE_PYTHON").is_none() {
        return;
    }
    let b = backend(100).await;
    let gw = gateway(&[&b], "max_running_queries: 1, max_queued_queries: 1", "").await;
    let client = Client::new(&gw.url);
    let blocker = Blocker::start(&client).await;
    let before = b.state.stats().submissions;
    let facts = python_async(vec!["cancel".into(), gw.url.clone(), gw.admin.clone()]).await;
    assert_eq!(facts["cancelled"], true, "{facts}");
    assert_eq!(facts["left"], 0, "{facts}");
    assert!(Queue::held(facts["held_id"].as_str().unwrap()), "{facts}");
    assert!(facts.get("rows").is_none(), "{facts}");
    // Room again: the canceled query is not what takes it; the next query is.
    blocker.release().await;
    let out = client.run("SELECT 42", &[]).await;
    assert_eq!(out.rows, vec![serde_json::json!([42])]);
    assert_eq!(b.state.stats().submissions, before + 1);
    let (_, q) = Api::new(&gw).get("/api/v1/queue").await;
    assert_eq!(q["queued"], serde_json::json!([]), "{q}");
    assert_eq!(
        metric_sum(
            &gw,
            "trino_edge_queue_rejections_total",
            "reason=\"canceled\""
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_and_the_time_limit_fail_with_trinos_errors() {
    if tool("TRINO_EDGE_PYTHON").is_none() {
        return;
    }
    let b = backend(100).await;
    let gw = gateway(
        &[&b],
        "max_running_queries: 1, max_queued_queries: 1",
        "max_queued: 1, max_queue_time: 2s",
    )
    .await;
    let client = Client::new(&gw.url);
    let blocker = Blocker::start(&client).await;
    let before = b.state.stats().submissions;
    // The first waits (and then runs out of time); the second finds the queue full.
    let waits = tokio::spawn(python_async(vec![
        "error".into(),
        gw.url.clone(),
        "SELECT 1".into(),
    ]));
    wait_held(&gw, 1).await;
    let full = python_async(vec!["error".into(), gw.url.clone(), "SELECT 2".into()]).await;
    assert_eq!(full["error"], "QUERY_QUEUE_FULL", "{full}");
    assert_eq!(full["type"], "INSUFFICIENT_RESOURCES", "{full}");
    assert!(
        full["message"].as_str().unwrap().contains("adhoc"),
        "{full}"
    );
    let waited = waits.await.unwrap();
    assert_eq!(waited["error"], "EXCEEDED_TIME_LIMIT", "{waited}");
    assert!(
        Queue::held(waited["query_id"].as_str().unwrap()),
        "{waited}"
    );
    blocker.release().await;
    assert_eq!(
        b.state.stats().submissions,
        before,
        "neither reached the backend"
    );
    for reason in ["full", "timeout"] {
        let filter = format!("reason=\"{reason}\"");
        assert_eq!(
            metric_sum(&gw, "trino_edge_queue_rejections_total", &filter).await,
            1.0,
            "{reason}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_front_of_one_full_group_hold_and_finish_everything() {
    if tool("TRINO_EDGE_PYTHON").is_none() {
        return;
    }
    let b = backend(1).await;
    let limits = "max_running_queries: 2";
    let (a, c) = (
        gateway(&[&b], limits, "").await,
        gateway(&[&b], limits, "").await,
    );
    let sampling = Arc::new(AtomicBool::new(true));
    let peak = sample_peak(&b, sampling.clone());
    let runs: Vec<_> = [&a, &c]
        .iter()
        .map(|gw| {
            tokio::spawn(python_async(vec![
                "fair".into(),
                gw.url.clone(),
                gw.admin.clone(),
                "16".into(),
                "4".into(),
            ]))
        })
        .collect();
    for r in runs {
        let facts = r.await.unwrap();
        assert_eq!(facts["failures"], serde_json::json!([]), "{facts}");
        assert_eq!(facts["order"].as_array().unwrap().len(), 20, "{facts}");
    }
    sampling.store(false, Ordering::Relaxed);
    let peak = peak.await.unwrap();
    // Each instance keeps to the limit on its own count; between two probes neither sees the
    // other's queries, so together they may reach the instances × limit (README, "Admission
    // control"): the bound for two instances and a limit of two is four.
    assert!(
        (1..=4).contains(&peak),
        "peak of {peak} queries on the backend"
    );
    for gw in [&a, &c] {
        assert!(metric_sum(gw, "trino_edge_queue_held_total", "adhoc").await >= 8.0);
        assert_eq!(waiting(gw).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_never_takes_the_hand_over_and_a_stranger_cannot_poll() {
    let b = backend(100).await;
    let gw = gateway(&[&b], "max_running_queries: 1, max_queued_queries: 1", "").await;
    let client = Client::new(&gw.url);
    let blocker = Blocker::start(&client).await;
    let held: Value = client.submit("SELECT 7", &[]).await.json().await.unwrap();
    assert_eq!(held["stats"]["state"], "QUEUED", "{held}");
    let id = held["id"].as_str().unwrap().to_string();
    assert!(Queue::held(&id));
    let next = held["nextUri"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    // Another slug (a guessed URI) finds nothing.
    let parts: Vec<&str> = next.rsplitn(3, '/').collect();
    let forged = format!("{}/yforged/{}", parts[2], parts[0]);
    let r = http.get(&forged).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_trino_error(&r.text().await.unwrap(), "QUERY_NOT_FOUND");
    blocker.release().await;
    // While held, its other pages say why there is nothing yet.
    let r = http
        .get(format!("{}/v1/query/{id}", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v = assert_trino_error(&r.text().await.unwrap(), "QUERY_NOT_FOUND");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("waits in the gateway's queue"),
        "{v}"
    );
    // Room now, but a HEAD (a client's heartbeat) has no body to carry the query's first page.
    for _ in 0..3 {
        let r = http.head(&next).send().await.unwrap();
        assert_eq!(r.status(), 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let before = b.state.stats().submissions;
    // The GET takes it: the answer is the backend's page, with the query's own id.
    let page: Value = http.get(&next).send().await.unwrap().json().await.unwrap();
    let real = page["id"].as_str().unwrap();
    assert!(!Queue::held(real), "{page}");
    assert_eq!(coordinator_of(real), b.coordinator_id());
    assert_eq!(b.state.stats().submissions, before + 1);
    // The held id (the Python client's `query_id`) now leads to the query: a redirect to its own
    // id, for its info and its UI page alike.
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (path, moved) in [
        (format!("/v1/query/{id}"), format!("/v1/query/{real}")),
        (
            format!("/ui/query.html?{id}"),
            format!("/ui/query.html?{real}"),
        ),
    ] {
        let r = no_follow
            .get(format!("{}{path}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 307, "{path}");
        assert_eq!(r.headers()["location"], moved.as_str());
    }
    let info: Value = http
        .get(format!("{}/v1/query/{id}", gw.url))
        .header("X-Trino-User", "tester")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["queryId"], real, "{info}");
    // Its history names the held id it came from.
    let api = Api::new(&gw);
    for _ in 0..100 {
        let (s, r) = api.get(&format!("/api/v1/queries/{real}")).await;
        if s == 200 {
            assert_eq!(r["queuedId"], id.as_str(), "{r}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no history entry for {real}");
}

/// An instance with routing from its file and state in the shared database `db`, announcing its
/// proxy listener as `proxy.advertise_url`.
async fn instance_on(db: &str, b: &EmulatorHandle) -> Gateway {
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b0", b.url(), "adhoc")],
        "",
    )
    .replace(
        &format!("url: \"{}\", group: adhoc }}", b.url()),
        &format!(
            "url: \"{}\", group: adhoc, max_running_queries: 1, max_queued_queries: 1 }}",
            b.url()
        ),
    )
    .replace(
        "proxy:\n  listeners:\n",
        &format!("proxy:\n  advertise_url: \"http://127.0.0.1:{port}\"\n  listeners:\n"),
    ) + &format!("database:\n  url: \"{db}\"\n  poll_interval: 100ms\n");
    let gw = Gateway::start_with(&with_health(&yaml, ONE_PROBE), port, admin, "file").await;
    wait_state(&gw, "b0", "HEALTHY", Duration::from_secs(10)).await;
    gw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_query_polled_through_another_instance_is_answered_by_its_own() {
    let (server, _) = fresh_database("te_queue_peers").await;
    let mut db = server.clone();
    db.set_path("/te_queue_peers");
    let b = backend(2).await;
    let (a, c) = (
        instance_on(db.as_str(), &b).await,
        instance_on(db.as_str(), &b).await,
    );
    let via_a = Client::new(&a.url);
    let blocker = Blocker::start(&via_a).await;
    let held: Value = via_a
        .submit("SELECT * FROM UNNEST(sequence(1, 5))", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(held["stats"]["state"], "QUEUED", "{held}");
    let id = held["id"].as_str().unwrap().to_string();
    // The client's next poll reaches the other instance (a balancer in front of both).
    let via_c = via_a.rebased(&c.url);
    let next = via_c.follow_url(held["nextUri"].as_str().unwrap());
    let http = reqwest::Client::new();
    let mut answer = Value::Null;
    for _ in 0..100 {
        let r = http.get(&next).send().await.unwrap();
        if r.status() == 200 {
            answer = r.json().await.unwrap();
            break;
        }
        // Until the instances have read each other from the database.
        assert_eq!(r.status(), 404);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer["id"], id.as_str(), "{answer}");
    assert_eq!(answer["stats"]["state"], "QUEUED", "{answer}");
    blocker.release().await;
    // Room: the poll through the other instance takes the hand-over, and the query runs to its
    // end through that instance.
    let mut rows = Vec::new();
    let mut next = Some(via_c.follow_url(answer["nextUri"].as_str().unwrap()));
    let mut ids = Vec::new();
    while let Some(uri) = next {
        let page: Value = http
            .get(&uri)
            .header("X-Trino-User", "tester")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(page["id"].as_str().unwrap().to_string());
        if let Some(data) = page["data"].as_array() {
            rows.extend(data.iter().cloned());
        }
        next = page["nextUri"].as_str().map(|u| via_c.follow_url(u));
    }
    assert_eq!(
        rows,
        (1..=5).map(|i| serde_json::json!([i])).collect::<Vec<_>>()
    );
    let real = ids.last().unwrap();
    assert!(!Queue::held(real), "{ids:?}");
    assert_eq!(coordinator_of(real), b.coordinator_id());
    assert!(metric_sum(&c, "trino_edge_queue_polls_forwarded_total", "").await >= 2.0);
    // A held id of an instance nobody knows: a clear 404.
    let stray = format!(
        "{}/v1/statement/queued/20261130_000000_00001_0zzzz/yslug/1",
        c.url
    );
    let r = http.get(&stray).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v = assert_trino_error(&r.text().await.unwrap(), "QUERY_NOT_FOUND");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another gateway instance"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hand_over_waits_again_and_is_not_lost() {
    use trino_edge::emulator::FailureMode;
    let b = backend(100).await;
    let gw = gateway(&[&b], "max_running_queries: 1, max_queued_queries: 1", "").await;
    let client = Client::new(&gw.url);
    let blocker = Blocker::start(&client).await;
    let held: Value = client.submit("SELECT 11", &[]).await.json().await.unwrap();
    let next = held["nextUri"].as_str().unwrap().to_string();
    // Room, but the cluster refuses the hand-over's submission (and every retry of it).
    blocker.release().await;
    b.state.set_failure_mode(FailureMode::Status(503));
    let http = reqwest::Client::new();
    let r = http.get(&next).send().await.unwrap();
    assert_eq!(r.status(), 503, "the poll carries the cluster's refusal");
    // The query waits again: listed, and the client's retry of the same poll finds it.
    let (_, q) = Api::new(&gw).get("/api/v1/queue").await;
    assert_eq!(q["queued"][0]["queryId"], held["id"], "{q}");
    b.state.set_failure_mode(FailureMode::None);
    let mut page = Value::Null;
    for _ in 0..50 {
        page = http.get(&next).send().await.unwrap().json().await.unwrap();
        if page["id"].as_str().is_some_and(|id| !Queue::held(id)) {
            break;
        }
    }
    let real = page["id"].as_str().unwrap_or_else(|| panic!("{page}"));
    assert!(!Queue::held(real), "{page}");
    assert_eq!(coordinator_of(real), b.coordinator_id());
    let mut rows = Vec::new();
    let mut body = page;
    loop {
        if let Some(d) = body["data"].as_array() {
            rows.extend(d.iter().cloned());
        }
        let Some(n) = body["nextUri"].as_str() else {
            break;
        };
        body = http.get(n).send().await.unwrap().json().await.unwrap();
    }
    assert_eq!(rows, vec![serde_json::json!([11])]);
    assert_eq!(waiting(&gw).await, 0);
}
