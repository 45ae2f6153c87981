#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The admin REST API over the shared database: CRUD, validation, draining, and two instances on
//! one PostgreSQL staying in step.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

fn error_of(v: &Value) -> &str {
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not an API error: {v}"))
}

async fn coordinators_of(client: &Client, n: usize, headers: &[(&str, &str)]) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(coordinator_of(&client.run("SELECT 1", headers).await.id).to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_validation_and_draining_through_the_api_on_sqlite() {
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let b3 = backend(100).await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc")],
        "",
    );
    // The database outlives the first gateway process (the restart below reads it again).
    let db_dir = tempfile::tempdir().unwrap();
    let yaml = yaml
        + &format!(
            "database:\n  url: \"sqlite://{}/state.db\"\n",
            db_dir.path().display()
        );
    let gw = Gateway::start_with(&yaml, port, admin, "database").await;
    let api = Api::new(&gw);
    let client = Client::new(&gw.url);

    let (s, groups) = api.get("/api/v1/groups").await;
    assert_eq!(s, 200);
    assert_eq!(groups[0]["name"], "adhoc");

    // Add a backend: it takes traffic at once on this instance.
    let (s, v) = api
        .post(
            "/api/v1/backends",
            json!({"name": "b2", "url": b2.url(), "group": "adhoc"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["name"], "b2");
    assert_eq!(v["enabled"], true);
    let mut seen = coordinators_of(&client, 4, &[]).await;
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 2, "both backends serve after the POST");

    // Misuse: duplicate, missing group, bad JSON, unknown field, huge body, unknown name.
    let (s, v) = api
        .post(
            "/api/v1/backends",
            json!({"name": "b2", "url": b2.url(), "group": "adhoc"}),
        )
        .await;
    assert_eq!(s, 409);
    assert!(error_of(&v).contains("b2"));
    let (s, v) = api
        .post(
            "/api/v1/backends",
            json!({"name": "b9", "url": b2.url(), "group": "ghost"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("ghost"), "{v}");
    let r = api
        .http
        .post(format!("{}/api/v1/backends", api.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("JSON"));
    let (s, v) = api
        .post(
            "/api/v1/backends",
            json!({"name": "b9", "url": b2.url(), "group": "adhoc", "colour": "red"}),
        )
        .await;
    assert_eq!(s, 400);
    assert!(error_of(&v).contains("colour"));
    let huge = "x".repeat(200 * 1024);
    let r = api
        .http
        .post(format!("{}/api/v1/backends", api.base))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The unread body stays on the connection, so the answer must close it; otherwise a pooling
    // client reuses a dead connection for its next request.
    assert_eq!(r.headers()["connection"], "close");
    assert!(error_of(&r.json::<Value>().await.unwrap()).contains("larger than"));
    let (s, v) = api.get("/api/v1/backends/nope").await;
    assert_eq!(s, 404);
    error_of(&v);
    let (s, _) = api
        .put(
            "/api/v1/backends/nope",
            json!({"name": "nope", "url": b2.url(), "group": "adhoc"}),
        )
        .await;
    assert_eq!(s, 404);
    // None of that changed anything.
    let (_, list) = api.get("/api/v1/backends").await;
    assert_eq!(list.as_array().unwrap().len(), 2);

    // Drain b1: new queries all go to b2; activate: both again.
    let (s, v) = api.post("/api/v1/backends/b1/deactivate", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["enabled"], false);
    assert!(coordinators_of(&client, 4, &[])
        .await
        .iter()
        .all(|c| c == b2.coordinator_id()));
    let (s, _) = api.post("/api/v1/backends/b1/activate", json!({})).await;
    assert_eq!(s, 200);
    assert!(coordinators_of(&client, 4, &[])
        .await
        .iter()
        .any(|c| c == b1.coordinator_id()));

    // A GET result can be PUT back (status fields are ignored); a PUT can change the weight.
    let (_, mut v) = api.get("/api/v1/backends/b2").await;
    // One casing in the whole object, the config file's.
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert!(
        keys.contains(&&"started_since_probe".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.iter()
            .all(|k| !k.chars().any(|c| c.is_ascii_uppercase())),
        "{keys:?}"
    );
    v["weight"] = json!(5);
    let (s, v) = api.put("/api/v1/backends/b2", v).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["weight"], 5);

    // A group, a policy and a backend for it: tagged queries go there.
    let (s, v) = api
        .post(
            "/api/v1/groups",
            json!({"name": "etl", "strategy": "least_load"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api.post("/api/v1/policies", json!({"name": "etl", "priority": 10, "match": {"client_tags_all": ["etl"]}, "group": "etl"})).await;
    assert_eq!(s, 201, "{v}");
    let (s, _) = api
        .post(
            "/api/v1/backends",
            json!({"name": "b3", "url": b3.url(), "group": "etl"}),
        )
        .await;
    assert_eq!(s, 201);
    assert!(
        coordinators_of(&client, 3, &[("X-Trino-Client-Tags", "etl")])
            .await
            .iter()
            .all(|c| c == b3.coordinator_id())
    );
    let (s, p) = api.get("/api/v1/policies/etl").await;
    assert_eq!(s, 200);
    assert_eq!(p["match"]["client_tags_all"], json!(["etl"]));

    // Deleting a group still in use is refused; in the right order it works.
    let (s, v) = api.delete("/api/v1/groups/etl").await;
    assert_eq!(s, 409);
    assert!(error_of(&v).contains("etl"), "{v}");
    for path in [
        "/api/v1/policies/etl",
        "/api/v1/backends/b3",
        "/api/v1/groups/etl",
    ] {
        let (s, v) = api.delete(path).await;
        assert_eq!(s, 204, "{path}: {v}");
    }
    let (s, _) = api.get("/api/v1/groups/etl").await;
    assert_eq!(s, 404);
    let (s, v) = api.delete("/api/v1/groups/adhoc").await;
    assert_eq!(s, 409, "the default group cannot go: {v}");

    // The database, not the file, is the truth after a restart.
    let config_path = gw.config_path.clone();
    let saved = std::fs::read_to_string(&config_path).unwrap();
    drop(gw);
    let port2 = free_port();
    let admin2 = free_port();
    let yaml = saved
        .replace(
            &format!("127.0.0.1:{admin}"),
            &format!("127.0.0.1:{admin2}"),
        )
        .replace(&format!("127.0.0.1:{port}"), &format!("127.0.0.1:{port2}"));
    let gw = Gateway::start_with(&yaml, port2, admin2, "database").await;
    let (_, list) = Api::new(&gw).get("/api/v1/backends").await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["b1", "b2"]);
    assert_eq!(list[1]["weight"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_config_source_file_the_api_is_read_only() {
    let b1 = backend(100).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let api = Api::new(&gw);
    let (s, v) = api.post("/api/v1/groups", json!({"name": "etl"})).await;
    assert_eq!(s, 403);
    assert!(error_of(&v).contains("read-only"));
    let (s, _) = api
        .post("/api/v1/backends/trino-1/deactivate", json!({}))
        .await;
    assert_eq!(s, 403);
    let (s, groups) = api.get("/api/v1/groups").await;
    assert_eq!(s, 200);
    assert_eq!(groups.as_array().unwrap().len(), 1);
}

/// Two gateway processes on one PostgreSQL: a change through A reaches B within 2 s, and a query
/// submitted through A pages to completion through B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_stay_in_step() {
    let url = std::env::var("TRINO_EDGE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let store = trino_edge::store::Store::connect(&url)
        .await
        .expect("PostgreSQL must be running (see .ci/run)");
    store.drop_all_for_tests().await.unwrap();
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let mut gws = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let admin = free_port();
        let yaml = with_health(
            &config_yaml(
                &[("main", port)],
                admin,
                &[("adhoc", "round_robin")],
                &[("b1", b1.url(), "adhoc")],
                "",
            ),
            "interval: 200ms",
        ) + &format!("database:\n  url: \"{url}\"\n  poll_interval: 200ms\n");
        gws.push(Gateway::start_with(&yaml, port, admin, "database").await);
    }
    let (a, b) = (&gws[0], &gws[1]);
    let (api_a, api_b) = (Api::new(a), Api::new(b));

    let (s, v) = api_a
        .post(
            "/api/v1/backends",
            json!({"name": "b2", "url": b2.url(), "group": "adhoc"}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let changed = Instant::now();
    loop {
        let (_, list) = api_b.get("/api/v1/backends").await;
        if list.as_array().unwrap().len() == 2 && list[1]["state"] == "HEALTHY" {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "B did not see A's new backend in 2 s: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Drain b1 through A: B stops sending it new queries within 2 s.
    let (s, _) = api_a
        .post("/api/v1/backends/b1/deactivate", json!({}))
        .await;
    assert_eq!(s, 200);
    let changed = Instant::now();
    loop {
        let (_, v) = api_b.get("/api/v1/backends/b1").await;
        if v["enabled"] == false {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(2),
            "B did not see the drain in 2 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let via_b = Client::new(&b.url);
    assert!(coordinators_of(&via_b, 4, &[])
        .await
        .iter()
        .all(|c| c == b2.coordinator_id()));

    // A query submitted through A continues through B (B's probes taught it the coordinator).
    let out = Client::new(&a.url)
        .rebased(&b.url)
        .run("SELECT * FROM UNNEST(sequence(1, 1000))", &[])
        .await;
    assert_eq!(out.rows.len(), 1000);
    assert!(out.next_uris.len() >= 10);
    store.drop_all_for_tests().await.unwrap();
}

/// Query history is written off the request path and served by the API; an instance that never
/// saw a query's coordinator finds its owner through the shared database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_recorded_served_and_used_to_route_unknown_follow_ups() {
    let b1 = backend(100).await;
    let db_dir = tempfile::tempdir().unwrap();
    let db = format!(
        "database:\n  url: \"sqlite://{}/state.db\"\n  poll_interval: 200ms\n",
        db_dir.path().display()
    );
    let mut gws = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let admin = free_port();
        let yaml = config_yaml(
            &[("main", port)],
            admin,
            &[("adhoc", "round_robin")],
            &[("b1", b1.url(), "adhoc")],
            "",
        ) + &db;
        gws.push(Gateway::start_with(&yaml, port, admin, "database").await);
    }
    let (a, b) = (&gws[0], &gws[1]);
    let mut client = Client::new(&a.url);
    client.user = "history-user".into();
    let sql = format!(
        "SELECT * FROM UNNEST(sequence(1, 500)) /* {} */",
        "x".repeat(1500)
    );
    let first: Value = client
        .submit(
            &sql,
            &[
                ("X-Trino-Source", "hist-test"),
                ("X-Trino-Client-Tags", "a,b"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_string();

    let api = Api::new(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    let entry = loop {
        let (s, v) = api.get(&format!("/api/v1/queries/{id}")).await;
        if s == 200 {
            break v;
        }
        assert_eq!(s, 404);
        assert!(Instant::now() < deadline, "history entry never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(entry["user"], "history-user");
    assert_eq!(entry["source"], "hist-test");
    assert_eq!(entry["clientTags"], "a,b");
    assert_eq!(entry["group"], "adhoc");
    assert_eq!(entry["backend"], "b1");
    assert_eq!(entry["policy"], "default");
    assert_eq!(
        entry["sql"].as_str().unwrap().chars().count(),
        1000,
        "first 1,000 characters"
    );
    assert!(entry["gateway"]
        .as_str()
        .unwrap()
        .ends_with(&a.admin.rsplit(':').next().unwrap().to_string()));
    let (s, page) = api
        .get("/api/v1/queries?user=history-user&source=hist-test&limit=10")
        .await;
    assert_eq!(s, 200);
    assert_eq!(page["queries"].as_array().unwrap().len(), 1);
    let (s, page) = api.get("/api/v1/queries?user=nobody").await;
    assert_eq!(s, 200);
    assert!(page["queries"].as_array().unwrap().is_empty());
    let (s, v) = api.get("/api/v1/queries?since=yesterday").await;
    assert_eq!(s, 400, "{v}");
    error_of(&v);
    let (s, _) = api.get("/api/v1/queries/20260101_000000_00001_zzzzz").await;
    assert_eq!(s, 404);

    // B has never seen this coordinator (no health probes, no traffic): the database tells it.
    let out_pages = {
        let mut page = first.clone();
        let mut rows = 0;
        while let Some(next) = page["nextUri"].as_str() {
            let url = Client::new(&a.url).rebased(&b.url).follow_url(next);
            let r = client
                .http
                .get(url)
                .header("X-Trino-User", "history-user")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "B could not route the follow-up");
            page = r.json().await.unwrap();
            rows += page["data"].as_array().map_or(0, |d| d.len());
        }
        rows
    };
    assert_eq!(out_pages, 500);
    let metrics = reqwest::get(format!("{}/metrics", b.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("trino_edge_sticky_resolution_total{source=\"database\"} 1"),
        "{metrics}"
    );
}
