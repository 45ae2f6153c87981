#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The process lifecycle under load, at small scale: real Python clients (default settings)
//! through a SIGQUIT upgrade and through a SIGTERM of one of two instances behind a load
//! balancer, and shutdowns with history still queued — with the database up and with it gone.
//! Every test asserts zero failed queries and zero history rows unaccounted for: each accepted
//! query is in the history table or counted as dropped.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use sqlx::Connection;
use tokio::task::AbortHandle;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn database_yaml(server: &url::Url, port: u16, name: &str) -> String {
    format!(
        "database:\n  url: \"postgres://{}@127.0.0.1:{port}/{name}\"\n  poll_interval: 200ms\n",
        server.username()
    )
}

/// The query ids in the history table.
async fn history_ids(server: &url::Url, name: &str) -> HashSet<String> {
    let mut url = server.clone();
    url.set_path(&format!("/{name}"));
    let mut conn = sqlx::PgConnection::connect(url.as_str()).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT query_id FROM te_query_history")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    rows.into_iter().map(|(id,)| id).collect()
}

/// `server:` settings for a lifecycle test: its own pid file and upgrade socket.
fn server_yaml(dir: &Path, grace: &str, timeout: &str) -> String {
    format!(
        "server:\n  grace_period: {grace}\n  graceful_shutdown_timeout: {timeout}\n  pid_file: \"{0}/gw.pid\"\n  upgrade_sock: \"{0}/gw.sock\"\n",
        dir.display()
    )
}

/// `config_yaml` with its `server:` section replaced.
fn with_server(yaml: &str, server: &str) -> String {
    let from = "server:\n  grace_period: 0s\n  graceful_shutdown_timeout: 1s\n";
    assert!(yaml.contains(from));
    yaml.replacen(from, server, 1)
}

/// The real Python client keeping `url` busy until stopped (see `clients/python_load.py`).
struct Load {
    child: Child,
    stop_file: PathBuf,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

/// What the clients did.
#[derive(Debug)]
struct LoadResult {
    ids: Vec<String>,
    failures: Vec<Value>,
}

impl Load {
    fn start(python: &str, url: &str, workers: usize, rows: usize, delay_ms: u64) -> Load {
        let dir = tempfile::tempdir().unwrap();
        let stop_file = dir.path().join("stop");
        let out = dir.path().join("out.json");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/python_load.py");
        let child = Command::new(python)
            .args([
                script,
                url,
                &workers.to_string(),
                stop_file.to_str().unwrap(),
                &rows.to_string(),
                &delay_ms.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the Python client");
        Load {
            child,
            stop_file,
            out,
            _dir: dir,
        }
    }

    async fn stop(mut self) -> LoadResult {
        std::fs::write(&self.stop_file, b"").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "the Python client failed");
                break;
            }
            assert!(Instant::now() < deadline, "the Python client did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let text = std::fs::read_to_string(&self.out).unwrap();
        let v: Value = serde_json::from_str(text.trim().lines().last().unwrap()).unwrap();
        LoadResult {
            ids: v["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_str().unwrap().to_string())
                .collect(),
            failures: v["failures"].as_array().unwrap().clone(),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP load balancer in front of several gateway instances, as in Kubernetes: a new
/// connection goes (round robin) to an instance whose `/readyz` said ready at its last check
/// (every 100 ms); open connections stay where they are.
struct Balancer {
    port: u16,
    tasks: Vec<AbortHandle>,
}

impl Balancer {
    async fn start(instances: &[(u16, String)]) -> Balancer {
        let port = free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let ready: Arc<Vec<(u16, AtomicBool)>> = Arc::new(
            instances
                .iter()
                .map(|(p, _)| (*p, AtomicBool::new(true)))
                .collect(),
        );
        let mut tasks = Vec::new();
        let admins: Vec<String> = instances.iter().map(|(_, a)| a.clone()).collect();
        let checks = ready.clone();
        tasks.push(
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_millis(500))
                    .build()
                    .unwrap();
                loop {
                    for (i, admin) in admins.iter().enumerate() {
                        let ok = http
                            .get(format!("{admin}/readyz"))
                            .send()
                            .await
                            .is_ok_and(|r| r.status().is_success());
                        checks[i].1.store(ok, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .abort_handle(),
        );
        let next = AtomicUsize::new(0);
        tasks.push(
            tokio::spawn(async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        return;
                    };
                    let n = ready.len();
                    let start = next.fetch_add(1, Ordering::Relaxed);
                    let Some(port) = (0..n)
                        .map(|k| &ready[(start + k) % n])
                        .find(|(_, r)| r.load(Ordering::Relaxed))
                        .map(|(p, _)| *p)
                    else {
                        continue; // nothing ready: the connection is closed
                    };
                    tokio::spawn(async move {
                        if let Ok(mut outbound) =
                            tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                        {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            })
            .abort_handle(),
        );
        Balancer { port, tasks }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Wait until the process has exited, at most `within`; its exit status.
async fn exit_of(p: &mut Proc, within: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = p.exited() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not exit within {within:?}:\n{}",
            tail(&p.log(), 60)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `url` answers `/livez`.
async fn wait_live(admin: &str, within: Duration, log: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    while !reqwest::get(format!("{admin}/livez"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "not live:\n{}", tail(&log(), 60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The numbers of the `shutdown complete` line.
fn shutdown_line(log: &str) -> (u64, u64) {
    let line = log
        .lines()
        .find(|l| l.contains("shutdown complete") && l.contains("history_written="))
        .unwrap_or_else(|| panic!("no `shutdown complete` line:\n{}", tail(log, 40)));
    let field = |name: &str| -> u64 {
        let rest = line
            .split(&format!("{name}="))
            .nth(1)
            .unwrap_or_else(|| panic!("{name} missing in {line}"));
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    (field("history_written"), field("history_dropped"))
}

fn assert_no_failures(result: &LoadResult, logs: &[(&str, String)]) {
    if result.failures.is_empty() {
        return;
    }
    let logs: String = logs
        .iter()
        .map(|(name, log)| format!("\n--- {name}:\n{}", tail(log, 60)))
        .collect();
    panic!(
        "{} of {} queries failed: {:#?}{logs}",
        result.failures.len(),
        result.failures.len() + result.ids.len(),
        &result.failures[..result.failures.len().min(10)]
    );
}

// ---------------------------------------------------------------------------------------------
// 1. SIGQUIT upgrade under load
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_under_load_hands_over_every_listener_and_loses_no_query() {
    let Some(python) = tool("TRINO_EDGE_PYTHON") else {
        return;
    };
    let (server, pg) = fresh_database("te_life_upgrade").await;
    let b1 = backend(5).await;
    let b2 = backend(5).await;
    let (port, tls_port, admin) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    // A TLS listener too: every listener moves.
    let ca = certs::ca("lifecycle test CA");
    let leaf = certs::leaf(&ca, "localhost", false);
    let (cert, key) = certs::write(dir.path(), "gw", &leaf);
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
        "",
    )
    .replacen(
        "  listeners:\n",
        &format!(
            "  listeners:\n    - {{ name: secure, address: \"127.0.0.1:{tls_port}\", tls: {{ cert: \"{}\", key: \"{}\" }} }}\n",
            cert.display(),
            key.display()
        ),
        1,
    );
    let yaml = with_server(&yaml, &server_yaml(dir.path(), "1s", "10s"))
        + &database_yaml(&server, pg.port(), "te_life_upgrade");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, &yaml).unwrap();
    let mut a = Proc::spawn(&config, &[], dir.path().join("a.log"));
    let admin_url = format!("http://127.0.0.1:{admin}");
    wait_live(&admin_url, Duration::from_secs(30), || a.log()).await;

    let load = Load::start(&python, &format!("http://127.0.0.1:{port}"), 6, 15, 50);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The operator's order from the issue: SIGQUIT first, then the new process.
    signal(a.pid(), "-QUIT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.exited().is_none(), "A exited before a successor came");
    let mut b = Proc::spawn(&config, &["--upgrade"], dir.path().join("b.log"));
    let status = exit_of(&mut a, Duration::from_secs(30), "A").await;
    assert!(status.success(), "A: {status}\n{}", tail(&a.log(), 40));
    assert!(b.exited().is_none(), "B exited:\n{}", tail(&b.log(), 60));

    // B alone now, on every port A had: the proxy (load keeps running), TLS and admin.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let readyz = reqwest::get(format!("{admin_url}/readyz")).await.unwrap();
    assert_eq!(readyz.status(), 200);
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca.0.to_pem().unwrap()).unwrap())
        .build()
        .unwrap();
    let r = https
        .post(format!("https://localhost:{tls_port}/v1/statement"))
        .header("X-Trino-User", "tls-user")
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let result = load.stop().await;
    assert_no_failures(&result, &[("A", a.log()), ("B", b.log())]);
    assert!(
        result.ids.len() >= 20,
        "only {} queries ran",
        result.ids.len()
    );
    assert!(b.log().contains("query submitted"), "B served nothing");
    // A handed over (it did not just stop), and says so.
    assert!(
        a.log().contains("handing the listening sockets"),
        "{}",
        a.log()
    );

    // Every query A or B accepted is in the history (nothing was dropped: the database stayed).
    let (_, dropped) = shutdown_line(&a.log());
    assert_eq!(dropped, 0);
    signal(b.pid(), "-TERM");
    let status = exit_of(&mut b, Duration::from_secs(30), "B").await;
    assert!(status.success());
    let (_, dropped) = shutdown_line(&b.log());
    assert_eq!(dropped, 0);
    let history = history_ids(&server, "te_life_upgrade").await;
    let missing: Vec<_> = result
        .ids
        .iter()
        .filter(|id| !history.contains(*id))
        .collect();
    assert!(missing.is_empty(), "not in the history: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigquit_without_a_successor_keeps_serving() {
    let b1 = backend(5).await;
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc")],
        "",
    );
    // A stale socket file, as a crashed successor leaves behind, must not count.
    let sock = dir.path().join("gw.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let gw = Gateway::start(
        &with_server(&yaml, &server_yaml(dir.path(), "0s", "1s")),
        port,
        admin,
    )
    .await;
    signal(gw.pid(), "-QUIT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let o = Client::new(&gw.url).run("SELECT 1", &[]).await;
    assert!(o.error.is_none(), "{:?}", o.error);
    assert_eq!(
        reqwest::get(format!("{}/readyz", gw.admin))
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        gw.log().contains("SIGQUIT: waiting up to"),
        "{}",
        tail(&gw.log(), 20)
    );
}

// ---------------------------------------------------------------------------------------------
// 2. SIGTERM behind a load balancer
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_one_of_two_instances_behind_a_balancer_and_loses_no_query() {
    let Some(python) = tool("TRINO_EDGE_PYTHON") else {
        return;
    };
    let (server, pg) = fresh_database("te_life_term").await;
    let b1 = backend(4).await;
    let b2 = backend(4).await;
    let (pa, aa, pb, ab) = (free_port(), free_port(), free_port(), free_port());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let lb = Balancer::start(&[
        (pa, format!("http://127.0.0.1:{aa}")),
        (pb, format!("http://127.0.0.1:{ab}")),
    ])
    .await;
    let instance = |port: u16, admin: u16, dir: &Path| {
        let yaml = config_yaml(
            &[("main", port)],
            admin,
            &[("adhoc", "round_robin")],
            &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
            "",
        )
        .replacen(
            "proxy:\n",
            &format!("proxy:\n  external_url: \"{}\"\n", lb.url()),
            1,
        );
        with_server(&yaml, &server_yaml(dir, "2s", "15s"))
            + &database_yaml(&server, pg.port(), "te_life_term")
    };
    let mut procs = Vec::new();
    for (port, admin, dir, name) in [(pa, aa, &dir_a, "a"), (pb, ab, &dir_b, "b")] {
        let config = dir.path().join("config.yaml");
        std::fs::write(&config, instance(port, admin, dir.path())).unwrap();
        let p = Proc::spawn(&config, &[], dir.path().join(format!("{name}.log")));
        wait_live(
            &format!("http://127.0.0.1:{admin}"),
            Duration::from_secs(30),
            || p.log(),
        )
        .await;
        procs.push(p);
    }
    let (mut a, b) = {
        let b = procs.pop().unwrap();
        (procs.pop().unwrap(), b)
    };

    // Queries of four pages, each page 150 ms on the coordinator: always some in flight, and
    // their pages go through the balancer to either instance.
    let load = Load::start(&python, &lb.url(), 6, 16, 150);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        a.log().contains("query submitted"),
        "A got no queries before the signal"
    );

    signal(a.pid(), "-TERM");
    let term = Instant::now();
    // Not ready at once...
    let admin_a = format!("http://127.0.0.1:{aa}");
    let r = reqwest::get(format!("{admin_a}/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["draining"], true, "{body}");
    // ...and still accepting and serving during the grace period (the balancer may not have
    // noticed yet).
    let o = Client::new(&format!("http://127.0.0.1:{pa}"))
        .run("SELECT 1", &[])
        .await;
    assert!(
        o.error.is_none(),
        "A refused during its grace period: {:?}",
        o.error
    );
    assert!(term.elapsed() < Duration::from_secs(2));

    let status = exit_of(&mut a, Duration::from_secs(30), "A").await;
    assert!(status.success(), "A: {status}");
    assert!(
        term.elapsed() >= Duration::from_secs(2),
        "A stopped before its grace period ended"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let result = load.stop().await;
    assert_no_failures(&result, &[("A", a.log()), ("B", b.log())]);
    assert!(
        result.ids.len() >= 20,
        "only {} queries ran",
        result.ids.len()
    );
    let (_, dropped) = shutdown_line(&a.log());
    assert_eq!(dropped, 0);
    // B's history writer has had time (it writes within a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let history = history_ids(&server, "te_life_term").await;
        let missing: Vec<_> = result
            .ids
            .iter()
            .filter(|id| !history.contains(*id))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not in the history: {missing:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Shutdown with history queued
// ---------------------------------------------------------------------------------------------

/// Submit `SELECT 1` through `url` again and again until the gateway stops accepting; the ids of
/// the submissions it accepted (the history records a query when its submission is answered).
async fn submit_until_refused(url: String) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    loop {
        let sent = http
            .post(format!("{url}/v1/statement"))
            .header("X-Trino-User", "submitter")
            .body("SELECT 1")
            .send()
            .await;
        let Ok(resp) = sent else {
            return ids;
        };
        assert_eq!(resp.status(), 200);
        let Ok(body) = resp.json::<Value>().await else {
            return ids;
        };
        ids.push(body["id"].as_str().unwrap().to_string());
    }
}

/// Submit `n` queries through `url`, each to completion; their ids.
async fn run_queries(url: &str, n: usize) -> Vec<String> {
    let client = Client::new(url);
    let mut ids = Vec::new();
    for _ in 0..n {
        let o = client.run("SELECT 1", &[]).await;
        assert!(o.error.is_none(), "{:?}", o.error);
        ids.push(o.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_writes_the_queued_history_or_counts_what_it_cannot() {
    let (server, pg) = fresh_database("te_life_history").await;
    let link = DbLink::new(pg);
    link.up().await;
    let b1 = backend(5).await;
    let b2 = backend(5).await;
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let yaml = with_server(
        &config_yaml(
            &[("main", port)],
            admin,
            &[("adhoc", "round_robin")],
            &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
            "",
        ),
        &server_yaml(dir.path(), "1s", "5s"),
    );

    // Database up: clients keep submitting through the signal and its grace period, so queries
    // are still queued (and some still being answered) when the listeners close; every one the
    // gateway accepted reaches the table.
    let config = dir.path().join("up.yaml");
    std::fs::write(
        &config,
        yaml.clone() + &database_yaml(&server, link.port, "te_life_history"),
    )
    .unwrap();
    let mut gw = Proc::spawn(&config, &[], dir.path().join("up.log"));
    wait_live(
        &format!("http://127.0.0.1:{admin}"),
        Duration::from_secs(30),
        || gw.log(),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}");
    let submitters: Vec<_> = (0..3)
        .map(|_| tokio::spawn(submit_until_refused(url.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(gw.pid(), "-TERM");
    let status = exit_of(&mut gw, Duration::from_secs(20), "the gateway").await;
    assert!(status.success());
    let mut first = Vec::new();
    for s in submitters {
        first.extend(s.await.unwrap());
    }
    assert!(first.len() >= 10, "only {} submissions", first.len());
    let (written, dropped) = shutdown_line(&gw.log());
    assert_eq!(dropped, 0, "{}", tail(&gw.log(), 20));
    assert!(
        written > 0,
        "nothing was left to flush: the test did not test the flush\n{}",
        tail(&gw.log(), 20)
    );
    let history = history_ids(&server, "te_life_history").await;
    let missing: Vec<_> = first.iter().filter(|id| !history.contains(*id)).collect();
    assert!(missing.is_empty(), "not in the history: {missing:?}");

    // Database gone before the shutdown: what is queued cannot be written; it is counted, and
    // together with the table it accounts for every query.
    let mut gw = Proc::spawn(&config, &[], dir.path().join("down.log"));
    wait_live(
        &format!("http://127.0.0.1:{admin}"),
        Duration::from_secs(30),
        || gw.log(),
    )
    .await;
    let before = run_queries(&url, 4).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let history = history_ids(&server, "te_life_history").await;
        if before.iter().all(|id| history.contains(id)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "history not written before the outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    link.down();
    let during = run_queries(&url, 12).await;
    signal(gw.pid(), "-TERM");
    let status = exit_of(&mut gw, Duration::from_secs(30), "the gateway").await;
    assert!(status.success());
    let (_, dropped) = shutdown_line(&gw.log());
    let history = history_ids(&server, "te_life_history").await;
    let written_during = during.iter().filter(|id| history.contains(*id)).count();
    assert_eq!(
        written_during as u64 + dropped,
        during.len() as u64,
        "accepted during the outage: {}, in the history: {written_during}, counted as dropped: {dropped}\n{}",
        during.len(),
        tail(&gw.log(), 30)
    );
    assert!(
        dropped > 0,
        "the outage dropped nothing: the test did not test the count"
    );
}
