//! Shared harness for end-to-end tests: the real `trino-edge` binary on ephemeral loopback ports,
//! emulated Trino backends in-process, and a small Trino protocol client.
#![allow(dead_code)]

pub mod certs;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use trino_edge::emulator::{self, EmulatorConfig, EmulatorHandle};

pub const BIN: &str = env!("CARGO_BIN_EXE_trino-edge");

/// A free port for a gateway listener, below the kernel's ephemeral range (32768+): a port from
/// that range could be handed to an emulator binding port 0 between our check and the gateway's
/// bind. A per-process counter keeps the parallel tests of one binary apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % 600) * 20;
    let _ = NEXT.compare_exchange(0, start + 1, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let p = (20_000 + NEXT.fetch_add(1, Ordering::SeqCst) % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub async fn backend(rows_per_page: usize) -> EmulatorHandle {
    backend_with(EmulatorConfig {
        rows_per_page,
        ..EmulatorConfig::default()
    })
    .await
}

pub async fn backend_with(cfg: EmulatorConfig) -> EmulatorHandle {
    emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), cfg)
        .await
        .expect("start emulator")
}

/// A running gateway process; killed on drop.
pub struct Gateway {
    child: Child,
    pub url: String,
    pub admin: String,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// The `database:` section added to a config without one (kept on reloads: the database
    /// cannot change without a restart).
    database: String,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Start `trino-edge serve --config-source file` with this YAML and wait until its admin
    /// listener answers.
    pub async fn start(yaml: &str, proxy_port: u16, admin_port: u16) -> Gateway {
        Self::start_with(yaml, proxy_port, admin_port, "file").await
    }

    /// Start with `--config-source SOURCE`. Without a `database:` section, the state goes to a
    /// fresh SQLite file in the gateway's temp dir.
    pub async fn start_with(yaml: &str, proxy_port: u16, admin_port: u16, source: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.yaml");
        let database = format!(
            "database:\n  url: \"sqlite://{}/state.db\"\n",
            dir.path().display()
        );
        let yaml = if yaml.contains("\ndatabase:") {
            yaml.to_string()
        } else {
            format!("{yaml}{database}")
        };
        std::fs::write(&config_path, yaml).unwrap();
        let log_path = dir.path().join("gateway.log");
        let child = spawn_serve(&config_path, source, &[], &log_path);
        let mut gw = Gateway {
            child,
            url: format!("http://127.0.0.1:{proxy_port}"),
            admin: format!("http://127.0.0.1:{admin_port}"),
            config_path,
            log_path,
            database,
            _dir: dir,
        };
        gw.wait_ready(proxy_port).await;
        gw
    }

    async fn wait_ready(&mut self, proxy_port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Readiness only: the TLS tests check certificates themselves.
        let http = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .unwrap();
        let https_admin = self.admin.replace("http://", "https://");
        loop {
            let mut admin_ok = false;
            for base in [self.admin.clone(), https_admin.clone()] {
                if http
                    .get(format!("{base}/livez"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
                {
                    self.admin = base;
                    admin_ok = true;
                    break;
                }
            }
            let proxy_ok = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port))
                .await
                .is_ok();
            if admin_ok && proxy_ok {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gateway exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status if the process has ended (reaps it), else `None`.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Replace the config file and send SIGHUP.
    pub fn reload(&self, yaml: &str) {
        let tmp = self.config_path.with_extension("tmp");
        let yaml = if yaml.contains("\ndatabase:") {
            yaml.to_string()
        } else {
            format!("{yaml}{}", self.database)
        };
        std::fs::File::create(&tmp)
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        std::fs::rename(&tmp, &self.config_path).unwrap();
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn snapshot_version(&self) -> u64 {
        let v: Value = reqwest::get(format!("{}/readyz", self.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["snapshotVersion"].as_u64().unwrap()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `trino-edge serve --config-source SOURCE --config CONFIG EXTRA...`, logging at `info` to
/// `log_path`; no readiness wait.
pub fn spawn_serve(
    config: &std::path::Path,
    source: &str,
    extra: &[&str],
    log_path: &std::path::Path,
) -> Child {
    let log = std::fs::File::create(log_path).unwrap();
    Command::new(BIN)
        .args(["serve", "--config-source", source, "--config"])
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn trino-edge")
}

/// YAML for one listener, an admin port, groups and backends (`(name, url, group)`), plus extra
/// `routing:` lines (policies).
pub fn config_yaml(
    listeners: &[(&str, u16)],
    admin_port: u16,
    groups: &[(&str, &str)],
    backends: &[(&str, String, &str)],
    policies: &str,
) -> String {
    let mut y = String::from("proxy:\n  listeners:\n");
    for (name, port) in listeners {
        y += &format!("    - {{ name: {name}, address: \"127.0.0.1:{port}\" }}\n");
    }
    y += &format!("admin:\n  address: \"127.0.0.1:{admin_port}\"\n");
    y += &format!("routing:\n  default_group: {}\n", groups[0].0);
    if policies.trim().is_empty() {
        y += "  policies: []\n";
    } else {
        y += "  policies:\n";
        y += policies;
        if !policies.ends_with('\n') {
            y += "\n";
        }
    }
    y += "groups:\n";
    for (name, strategy) in groups {
        y += &format!("  - {{ name: {name}, strategy: {strategy} }}\n");
    }
    y += "backends:\n";
    for (name, url, group) in backends {
        y += &format!("  - {{ name: {name}, url: \"{url}\", group: {group} }}\n");
    }
    y += "server:\n  grace_period: 0s\n  graceful_shutdown_timeout: 1s\n";
    // Routing tests count every request a backend sees, so probes are off unless a test turns
    // them on with `with_health`.
    y += "health: { enabled: false }\n";
    y
}

/// Turn health checks on with these settings (YAML flow-map body, e.g. `interval: 200ms`).
pub fn with_health(yaml: &str, settings: &str) -> String {
    yaml.replace(
        "health: { enabled: false }",
        &format!("health: {{ enabled: true, {settings} }}"),
    )
}

/// Wait until the admin API shows backend `name` in `state`.
pub async fn wait_state(gw: &Gateway, name: &str, state: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let v: Value = reqwest::get(format!("{}/api/v1/backends/{name}", gw.admin))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] == state {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "backend {name} not {state} in {within:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gateway with one listener named `main` over the given backends, all in group `adhoc`.
pub async fn simple_gateway(backends: &[&EmulatorHandle], strategy: &str) -> Gateway {
    let port = free_port();
    let admin = free_port();
    let list: Vec<(String, String, &str)> = backends
        .iter()
        .enumerate()
        .map(|(i, b)| (format!("trino-{}", i + 1), b.url(), "adhoc"))
        .collect();
    let list: Vec<(&str, String, &str)> = list
        .iter()
        .map(|(n, u, g)| (n.as_str(), u.clone(), *g))
        .collect();
    let yaml = config_yaml(&[("main", port)], admin, &[("adhoc", strategy)], &list, "");
    Gateway::start(&yaml, port, admin).await
}

/// Everything a test may want to know about one query run through the protocol.
#[derive(Debug, Default)]
pub struct Outcome {
    pub id: String,
    pub rows: Vec<Value>,
    pub error: Option<Value>,
    pub pages: usize,
    pub next_uris: Vec<String>,
    pub headers: Vec<(String, String)>,
}

impl Outcome {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub user: String,
    /// Follow `nextUri` through this base URL instead of the one in the URI (another instance).
    pub rebase: Option<String>,
}

impl Client {
    pub fn new(base: &str) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_string(),
            user: "tester".into(),
            rebase: None,
        }
    }

    pub fn rebased(&self, base: &str) -> Client {
        Client {
            rebase: Some(base.to_string()),
            ..self.clone()
        }
    }

    pub fn follow_url(&self, uri: &str) -> String {
        match &self.rebase {
            None => uri.to_string(),
            Some(base) => {
                let after_scheme = uri.split_once("://").map(|(_, r)| r).unwrap_or(uri);
                let path = after_scheme
                    .find('/')
                    .map(|i| &after_scheme[i..])
                    .unwrap_or("/");
                format!("{base}{path}")
            }
        }
    }

    pub async fn submit(&self, sql: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}/v1/statement", self.base))
            .header("X-Trino-User", &self.user)
            .body(sql.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("submit")
    }

    /// Submit and follow `nextUri` to the end; panics on any non-200 HTTP answer.
    pub async fn run(&self, sql: &str, headers: &[(&str, &str)]) -> Outcome {
        let resp = self.submit(sql, headers).await;
        let mut out = Outcome::default();
        let mut body = Self::page(resp, &mut out).await;
        out.id = body["id"].as_str().unwrap_or_default().to_string();
        loop {
            if let Some(rows) = body["data"].as_array() {
                out.rows.extend(rows.iter().cloned());
            }
            if !body["error"].is_null() {
                out.error = Some(body["error"].clone());
            }
            let Some(next) = body["nextUri"].as_str() else {
                break;
            };
            out.next_uris.push(next.to_string());
            let mut req = self
                .http
                .get(self.follow_url(next))
                .header("X-Trino-User", &self.user);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            body = Self::page(req.send().await.expect("page"), &mut out).await;
        }
        out
    }

    async fn page(resp: reqwest::Response, out: &mut Outcome) -> Value {
        let status = resp.status();
        for (k, v) in resp.headers() {
            out.headers
                .push((k.to_string(), v.to_str().unwrap_or("").to_string()));
        }
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "unexpected HTTP status; body: {text}");
        out.pages += 1;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("page is not JSON ({e}): {text}"))
    }
}

/// Assert a gateway error body: `{"error":{"message","errorCode","errorName","errorType"}}`.
pub fn assert_trino_error(body: &str, name: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let err = &v["error"];
    assert_eq!(err["errorName"], name, "{body}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(err["errorCode"].is_i64(), "{body}");
    assert!(err["errorType"].is_string(), "{body}");
    v
}

/// The coordinator id a query id belongs to (its last five characters).
pub fn coordinator_of(query_id: &str) -> &str {
    &query_id[query_id.len() - 5..]
}

/// The installed real client at `var` (set by `tests/run`), or `None` to skip — never silently
/// in CI.
pub fn tool(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{var} is not set: run the tests through tests/run, which installs the real clients")
        }
        _ => {
            eprintln!("SKIPPED: {var} not set (tests/run installs the real clients)");
            None
        }
    }
}

/// Run a client to completion; its stdout, or a panic with both outputs.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("start client");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "client failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

/// The value of one metric series (exact name with labels) on the gateway's `/metrics`, 0 if absent.
pub async fn metric_sum(gw: &Gateway, name: &str, label_filter: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label_filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The Trino CLI jar's CSV output of `sql` through the gateway at `url`, as `cli-user`.
pub async fn trino_cli_csv(jar: String, url: &str, sql: &str) -> String {
    let (url, sql) = (url.to_string(), sql.to_string());
    tokio::task::spawn_blocking(move || {
        run(Command::new("java").args([
            "-jar",
            &jar,
            "--server",
            &url,
            "--user",
            "cli-user",
            "--output-format",
            "CSV",
            "--execute",
            &sql,
        ]))
    })
    .await
    .unwrap()
}

/// The real Python client at its default settings (which ask for spooling) through the gateway at
/// `url`: `SELECT * FROM UNNEST(sequence(1, n))` for each count, every row checked; the facts the
/// script prints (the encodings asked for, the query ids).
pub async fn python_spooled(python: String, url: &str, counts: &str) -> Value {
    let (port, counts) = (
        url.rsplit(':').next().unwrap().to_string(),
        counts.to_string(),
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/python_spooled.py"
    );
    let stdout = tokio::task::spawn_blocking(move || {
        run(Command::new(python).args([script, "127.0.0.1", &port, &counts]))
    })
    .await
    .unwrap();
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

/// npm `trino-client` through the gateway at `url` (tests/clients/node_client.mjs: 2,500 rows and
/// a failing query); the facts it prints.
pub async fn node_client(modules: String, url: &str) -> Value {
    let url = url.to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/node_client.mjs");
    let stdout = tokio::task::spawn_blocking(move || {
        run(Command::new("node")
            .arg(script)
            .arg(&url)
            .env("TRINO_EDGE_NODE_MODULES", modules))
    })
    .await
    .unwrap();
    serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap()
}

/// The admin REST API of a gateway: `(status, JSON body or the text as a JSON string)`.
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(gw: &Gateway) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: gw.admin.clone(),
        }
    }
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// A gateway process spawned by the test itself (no readiness wait); killed on drop.
pub struct Proc {
    pub child: Child,
    pub log_path: PathBuf,
}

impl Proc {
    pub fn spawn(config: &std::path::Path, extra: &[&str], log_path: PathBuf) -> Proc {
        let child = spawn_serve(config, "file", extra, &log_path);
        Proc { child, log_path }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The exit status if the process has ended (reaps it), else `None`.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `n` lines of a log.
pub fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn signal(pid: i32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

/// The test PostgreSQL server (`TRINO_EDGE_TEST_POSTGRES`, else the CI one).
pub fn postgres_server() -> String {
    std::env::var("TRINO_EDGE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh database of this name on the test server (no other test's tables are touched): the
/// server's URL and its address (for a [`DbLink`] in front of it).
pub async fn fresh_database(name: &str) -> (url::Url, std::net::SocketAddr) {
    use sqlx::Connection;
    let server = postgres_server();
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .expect("PostgreSQL must be running (see .ci/run)");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = url::Url::parse(&server).unwrap();
    let addr = std::net::SocketAddr::new(
        url.host_str().unwrap().parse().unwrap(),
        url.port().unwrap_or(5432),
    );
    (url, addr)
}

/// A switchable TCP relay in front of the database.
pub struct DbLink {
    pub port: u16,
    target: std::net::SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl DbLink {
    pub fn new(target: std::net::SocketAddr) -> DbLink {
        DbLink {
            port: free_port(),
            target,
            tasks: std::sync::Arc::default(),
        }
    }

    /// Open the port and relay every connection to the database.
    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("relay port");
        let (target, tasks) = (self.target, self.tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }

    /// Close the port (connection refused) and cut every open connection.
    pub fn down(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}
