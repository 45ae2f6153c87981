#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The command line: `check-config` on good and bad files, and every sample config in `conf/`.

mod common;

use std::process::Command;

fn check(path: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(common::BIN)
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn every_sample_config_in_conf_is_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/conf")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml")
            && !path.to_string_lossy().contains("prometheus")
        {
            let (ok, stdout, stderr) = check(&path);
            assert!(ok, "{} is invalid: {stderr}", path.display());
            assert!(stdout.contains("routing (first match wins):"), "{stdout}");
            checked += 1;
        }
    }
    assert!(checked >= 2);
}

#[test]
fn check_config_prints_the_routing_table() {
    let (ok, stdout, _) = check(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conf/trino-edge.yaml"
    )));
    assert!(ok);
    let etl = stdout
        .find("policy etl (priority 10)")
        .expect("etl policy listed");
    let svc = stdout
        .find("policy service-accounts (priority 5)")
        .expect("svc policy listed");
    assert!(
        etl < svc,
        "policies must be listed in evaluation order:\n{stdout}"
    );
    assert!(
        stdout.contains("tags all of [etl] and source~/^airflow/ -> etl"),
        "{stdout}"
    );
    assert!(stdout.contains("otherwise -> adhoc"), "{stdout}");
    assert!(
        stdout.contains("trino-bi-2 https://trino-bi-2.internal:8443 weight 1 disabled"),
        "{stdout}"
    );
}

#[test]
fn check_config_fails_with_file_key_path_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    let good =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/conf/local.yaml")).unwrap();
    for (bad, needle) in [
        (
            good.replace("group: adhoc }", "group: missing }"),
            "backends[0].group: group `missing` is not defined",
        ),
        (
            good.replace("strategy: round_robin", "strategy: fastest"),
            "groups[0].strategy: unknown variant `fastest`",
        ),
        (
            good.replace(
                "default_group: adhoc",
                "default_group: adhoc\n  polices: []",
            ),
            "routing.polices: unknown field `polices`",
        ),
        (
            good.replace("http://127.0.0.1:18082", "not a url"),
            "backends[1].url: `not a url` is not a valid URL",
        ),
        (
            good.replace("name: trino-2", "name: trino-1"),
            "backends[1].name: duplicate backend name `trino-1`",
        ),
        (
            good.replace("127.0.0.1:8090", "localhost"),
            "admin.address: `localhost` is not an IP:port address",
        ),
    ] {
        std::fs::write(&path, bad).unwrap();
        let (ok, _, stderr) = check(&path);
        assert!(!ok);
        let want = format!("{}: {needle}", path.display());
        assert!(stderr.contains(&want), "expected `{want}` in:\n{stderr}");
    }
    let (ok, _, stderr) = check(&dir.path().join("missing.yaml"));
    assert!(!ok);
    assert!(stderr.contains("cannot read file"), "{stderr}");
}

/// The README's first command: `demo` serves queries through the gateway to its two backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_queries_over_two_emulated_backends() {
    let (port, admin, b1, b2) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let mut child = std::process::Command::new(common::BIN)
        .args([
            "demo",
            "--port",
            &port.to_string(),
            "--admin-port",
            &admin.to_string(),
        ])
        .args(["--backend-ports", &format!("{b1},{b2}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if reqwest::get(format!("http://127.0.0.1:{admin}/readyz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let client = common::Client::new(&url);
    let results = if ready {
        Some((
            client
                .run("SELECT * FROM UNNEST(sequence(1, 5))", &[])
                .await,
            client.run("SELECT 1", &[]).await,
        ))
    } else {
        None
    };
    // The banner's hybrid query: the demo's local Parquet `orders` joined with `web.daily`.
    let hybrid = std::process::Command::new(common::BIN)
        .args(["query", "--admin", &format!("http://127.0.0.1:{admin}")])
        .args(["--register", "traffic=SELECT * FROM web.daily"])
        .arg("SELECT o.date, o.orders, t.views FROM orders o JOIN traffic t ON o.date = t.date ORDER BY 1")
        .output()
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let banner = String::from_utf8_lossy(&out.stdout);
    let (first, second) = results.expect("demo did not become ready");
    assert_eq!(first.rows.len(), 5);
    // Round robin over the two demo backends: two queries, two coordinators.
    assert_ne!(
        common::coordinator_of(&first.id),
        common::coordinator_of(&second.id)
    );
    assert!(banner.contains(&url), "{banner}");
    assert!(banner.contains(&format!("--server {url}")), "{banner}");
    assert!(banner.contains("trino-edge query --admin"), "{banner}");
    let table = String::from_utf8_lossy(&hybrid.stdout);
    assert!(
        hybrid.status.success(),
        "{}",
        String::from_utf8_lossy(&hybrid.stderr)
    );
    assert!(table.contains(" 2024-01-01 |     12 |  1007\n"), "{table}");
    assert!(table.ends_with("(7 rows)\n"), "{table}");
}
