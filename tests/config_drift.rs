#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A file whose groups, backends or policies differ from what the database already holds: once
//! seeded, the database routes and the file's versions are ignored, so `check-config` and `serve`
//! list every difference with both values and say how to apply the file.

mod common;

use std::path::Path;
use std::process::Command;

use common::{config_yaml, free_port, Gateway, BIN};
use serde_json::{json, Value};

const OLD_URL: &str = "http://127.0.0.1:18081";
const NEW_URL: &str = "http://127.0.0.1:18083";

/// One group, backends `b1` (at `b1_url`) and `b2`, state at `database`.
fn yaml(port: u16, admin: u16, b1_url: &str, database: &str) -> String {
    config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[
            ("b1", b1_url.to_string(), "adhoc"),
            ("b2", "http://127.0.0.1:18082".to_string(), "adhoc"),
        ],
        "",
    ) + &format!("database:\n  url: \"{database}\"\n")
}

struct Checked {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `trino-edge check-config` on this YAML (written to `dir/check.yaml`).
fn check_config(dir: &Path, yaml: &str) -> Checked {
    let path = dir.join("check.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    Checked {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The line `check-config` and `serve` print for b1's changed URL.
fn url_difference() -> String {
    format!(r#"backend b1: url: file "{NEW_URL}", database "{OLD_URL}""#)
}

fn assert_drift_reported(c: &Checked) {
    assert!(c.ok, "drift is a warning, not a failure:\n{}", c.stderr);
    let want = [
        "warning: the database ".to_string(),
        format!("{} (admin API: PUT /api/v1/backends/b1)", url_difference()),
        "1 difference(s):".to_string(),
        "The database is authoritative for groups, backends and policies".to_string(),
        "run `serve --config-source file`".to_string(),
    ];
    for w in &want {
        assert!(
            c.stderr.contains(w.as_str()),
            "`{w}` missing in:\n{}",
            c.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_and_serve_warn_when_the_file_differs_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("state.db");
    let database = format!("sqlite://{}", db_path.display());

    // No database yet: nothing to compare, and check-config does not create one.
    let c = check_config(
        dir.path(),
        &yaml(free_port(), free_port(), OLD_URL, &database),
    );
    assert!(c.ok, "{}", c.stderr);
    assert!(!c.stderr.contains("warning"), "{}", c.stderr);
    assert!(c.stdout.contains("does not exist yet"), "{}", c.stdout);
    assert!(!db_path.exists(), "check-config created the database");

    // The first start seeds the database from the file: they agree.
    let (port, admin) = (free_port(), free_port());
    let gw = Gateway::start_with(
        &yaml(port, admin, OLD_URL, &database),
        port,
        admin,
        "database",
    )
    .await;
    let log = gw.log();
    assert!(
        log.contains("routing config loaded from the database (the file's agrees)"),
        "{log}"
    );
    assert!(!log.contains("WARN"), "{log}");
    drop(gw);
    let c = check_config(
        dir.path(),
        &yaml(free_port(), free_port(), OLD_URL, &database),
    );
    assert!(c.ok && !c.stderr.contains("warning"), "{}", c.stderr);
    assert!(
        c.stdout
            .contains("its groups, backends and policies match this file's"),
        "{}",
        c.stdout
    );

    // The file's b1 moves: check-config lists the difference and the advice, exit 0.
    let c = check_config(
        dir.path(),
        &yaml(free_port(), free_port(), NEW_URL, &database),
    );
    assert_drift_reported(&c);

    // serve says so too, and routes by the database's URL.
    let (port, admin) = (free_port(), free_port());
    let gw = Gateway::start_with(
        &yaml(port, admin, NEW_URL, &database),
        port,
        admin,
        "database",
    )
    .await;
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains(&url_difference()))
        .unwrap_or_else(|| panic!("no line on b1's URL in:\n{log}"));
    assert!(line.contains(" WARN "), "{line}");
    assert!(
        line.contains("admin API: PUT /api/v1/backends/b1"),
        "{line}"
    );
    let summary = log
        .lines()
        .find(|l| l.contains("1 difference(s) between the file and the database"))
        .unwrap_or_else(|| panic!("no summary in:\n{log}"));
    assert!(summary.contains(" WARN "), "{summary}");
    assert!(
        summary.contains("the database is authoritative")
            && summary.contains("--config-source file"),
        "{summary}"
    );
    assert!(!log.contains("the file's agrees"), "{log}");
    let http = reqwest::Client::new();
    let b1: Value = http
        .get(format!("{}/api/v1/backends/b1", gw.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b1["url"], OLD_URL, "the database routes: {b1}");

    // Applying the file's version through the admin API ends the warning.
    let put = http
        .put(format!("{}/api/v1/backends/b1", gw.admin))
        .json(&json!({ "name": "b1", "url": NEW_URL, "group": "adhoc" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200, "{}", put.text().await.unwrap());
    let c = check_config(
        dir.path(),
        &yaml(free_port(), free_port(), NEW_URL, &database),
    );
    assert!(c.ok && !c.stderr.contains("warning"), "{}", c.stderr);
    assert!(c.stdout.contains("match this file's"), "{}", c.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_config_compares_with_postgres_and_skips_an_unreachable_server() {
    use sqlx::Connection;

    // A database of its own on the test server, so no other test's tables are touched.
    let server = std::env::var("TRINO_EDGE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = sqlx::PgConnection::connect(&server)
        .await
        .expect("PostgreSQL must be running (see .ci/run)");
    let _ = sqlx::query("DROP DATABASE IF EXISTS te_drift WITH (FORCE)")
        .execute(&mut conn)
        .await;
    sqlx::query("CREATE DATABASE te_drift")
        .execute(&mut conn)
        .await
        .unwrap();
    let mut database = url::Url::parse(&server).unwrap();
    database.set_path("/te_drift");
    let database = database.to_string();
    let dir = tempfile::tempdir().unwrap();

    // Migrated but empty: nothing to compare yet.
    trino_edge::store::Store::connect(&database)
        .await
        .unwrap()
        .migrate()
        .await
        .unwrap();
    let c = check_config(
        dir.path(),
        &yaml(free_port(), free_port(), OLD_URL, &database),
    );
    assert!(c.ok && !c.stderr.contains("warning"), "{}", c.stderr);
    assert!(
        c.stdout.contains("no groups, backends or policies yet"),
        "{}",
        c.stdout
    );

    let (port, admin) = (free_port(), free_port());
    let gw = Gateway::start_with(
        &yaml(port, admin, OLD_URL, &database),
        port,
        admin,
        "database",
    )
    .await;
    drop(gw);
    let c = check_config(
        dir.path(),
        &yaml(free_port(), free_port(), NEW_URL, &database),
    );
    assert_drift_reported(&c);

    // A server that is not there: a note, no comparison, still exit 0.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = check_config(
        dir.path(),
        &yaml(
            free_port(),
            free_port(),
            NEW_URL,
            &format!("postgres://postgres@127.0.0.1:{closed}/te_drift"),
        ),
    );
    assert!(c.ok, "{}", c.stderr);
    assert!(
        c.stderr
            .contains("note: not compared with the database postgres://postgres@127.0.0.1:"),
        "{}",
        c.stderr
    );
    assert!(!c.stderr.contains("warning"), "{}", c.stderr);

    let _ = sqlx::query("DROP DATABASE IF EXISTS te_drift WITH (FORCE)")
        .execute(&mut conn)
        .await;
}
