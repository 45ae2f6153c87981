#![allow(clippy::unwrap_used, clippy::expect_used)]
//! dbt through the gateway: the example project `examples/dbt` (a seed, a table over
//! `tpch.tiny`, a view joining both, generic and singular data tests) runs with the real
//! `dbt-trino` adapter (PyPI, installed by tests/run) against an emulated coordinator's `memory`
//! catalog: `dbt seed`, `dbt run` (twice: the second replaces what the first built), `dbt test`;
//! then the tables' contents are read back through the gateway, and a broken seed makes
//! `dbt test` fail.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::json;

/// `dbt <args>` on the example project with the profile in `dir`; its exit status and output.
async fn dbt(dbt: &str, dir: &Path, args: &[&str]) -> (bool, String) {
    let project = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/dbt");
    let mut cmd = Command::new(dbt);
    cmd.args(args)
        .args(["--project-dir", project])
        .arg("--profiles-dir")
        .arg(dir)
        .arg("--target-path")
        .arg(dir.join("target"))
        .arg("--log-path")
        .arg(dir.join("logs"))
        .env("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env("DBT_USE_COLORS", "false");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("start dbt"))
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbt_seeds_runs_and_tests_the_example_project() {
    let Some(dbt_bin) = tool("TRINO_EDGE_DBT") else {
        return;
    };
    let b1 = backend(1000).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let port = gw.url.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("profiles.yml"),
        format!(
            "trino_edge:\n  target: gateway\n  outputs:\n    gateway:\n      type: trino\n      \
             method: none\n      user: dbt\n      host: 127.0.0.1\n      port: {port}\n      \
             http_scheme: http\n      database: memory\n      schema: dbt_demo\n      threads: 1\n"
        ),
    )
    .unwrap();
    let log = |out: &str| {
        let file = std::fs::read_to_string(dir.path().join("logs/dbt.log")).unwrap_or_default();
        format!("{out}\n--- dbt.log (end) ---\n{}", tail(&file, 80))
    };
    for args in [&["seed"][..], &["run"], &["run"], &["seed"], &["test"]] {
        let (ok, out) = dbt(&dbt_bin, dir.path(), args).await;
        assert!(ok, "dbt {args:?} failed:\n{}", log(&out));
        if args == ["test"] {
            // 8 generic tests of schema.yml and the singular one, each run for real.
            assert!(out.contains("PASS=9 WARN=0 ERROR=0 SKIP=0"), "{out}");
        }
    }

    let client = Client::new(&gw.url);
    let people = client
        .run(
            "SELECT id, name, nation, region, joined FROM memory.dbt_demo.people_by_nation \
             ORDER BY id",
            &[],
        )
        .await;
    assert!(people.error.is_none(), "{:?}", people.error);
    assert_eq!(
        people.rows,
        vec![
            json!([1, "Ada", "GERMANY", "EUROPE", "2024-01-15"]),
            json!([2, "Grace", "UNITED STATES", "AMERICA", "2024-02-03"]),
            json!([3, "Linus", "GERMANY", "EUROPE", "2024-03-21"]),
            json!([4, "Margaret", "ARGENTINA", "AMERICA", "2024-04-30"]),
            json!([5, "Edsger", "PERU", "AMERICA", "2024-05-12"]),
        ]
    );
    let nations = client
        .run(
            "SELECT count(*), count(DISTINCT region) FROM memory.dbt_demo.nations",
            &[],
        )
        .await;
    assert_eq!(nations.rows, vec![json!([25, 5])], "{:?}", nations.error);
    // What dbt built is what it was asked to build: two tables and a view, no leftovers of
    // the second run's renames.
    let tables = client
        .run(
            "SELECT table_name, table_type FROM memory.information_schema.tables \
             WHERE table_schema = 'dbt_demo' ORDER BY 1",
            &[],
        )
        .await;
    assert_eq!(
        tables.rows,
        vec![
            json!(["nations", "BASE TABLE"]),
            json!(["people", "BASE TABLE"]),
            json!(["people_by_nation", "VIEW"]),
        ]
    );

    // A duplicate id in the seed: `dbt test` finds it.
    let insert = client
        .run(
            "INSERT INTO memory.dbt_demo.people VALUES (1, 'Ada again', 7, DATE '2024-06-01')",
            &[],
        )
        .await;
    assert!(insert.error.is_none(), "{:?}", insert.error);
    let (ok, out) = dbt(&dbt_bin, dir.path(), &["test", "--select", "people"]).await;
    assert!(!ok, "dbt test passed with a duplicate id:\n{out}");
    assert!(out.contains("FAIL 1 unique_people_id"), "{}", log(&out));
}
