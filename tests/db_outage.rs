#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The shared database going away while clients run: no client request fails, the admin API says
//! clearly what it cannot do, and history and config writes resume on their own afterwards.
//!
//! The gateway reaches PostgreSQL through a TCP relay owned by the test; "stopping the database"
//! closes the relay's port and cuts every open connection, which is what a stopped server looks
//! like from the gateway — without disturbing the other tests that share the server.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use sqlx::Connection;

async fn metric(gw: &Gateway, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn in_history(gw: &Gateway, id: &str) -> bool {
    reqwest::get(format!("{}/api/v1/queries/{id}", gw.admin))
        .await
        .unwrap()
        .status()
        == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_fails_no_client_request_and_history_resumes() {
    // A database of its own on the test server, so no other test's tables are touched.
    let (server_url, target) = fresh_database("te_outage").await;
    let link = DbLink::new(target);
    link.up().await;

    let b1 = backend(5).await;
    let b2 = backend(5).await;
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "adhoc")],
        "",
    ) + &format!(
        "database:\n  url: \"postgres://{}@127.0.0.1:{}/te_outage\"\n  poll_interval: 200ms\n",
        server_url.username(),
        link.port
    );
    let gw = Gateway::start_with(&yaml, port, admin, "database").await;
    let client = Client::new(&gw.url);
    let before = client.run("SELECT 1", &[]).await.id;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !in_history(&gw, &before).await {
        assert!(Instant::now() < deadline, "history never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The database goes away. Clients keep running multi-page queries for three seconds.
    link.down();
    let outage = Instant::now();
    let mut workers = Vec::new();
    for w in 0..4 {
        let client = Client::new(&gw.url);
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            while outage.elapsed() < Duration::from_secs(3) {
                let out = client
                    .run(
                        "SELECT * FROM UNNEST(sequence(1, 20))",
                        &[("X-Trino-Source", "outage")],
                    )
                    .await;
                assert!(out.error.is_none(), "worker {w}: {:?}", out.error);
                assert_eq!(out.rows.len(), 20);
                assert!(out.pages > 1);
                ids.push(out.id);
            }
            ids
        }));
    }

    // Meanwhile the admin API reads from the snapshot and refuses writes clearly.
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/api/v1/backends", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http
            .post(format!("{}/api/v1/groups", gw.admin))
            .json(&json!({"name": "etl"}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if status == 503 {
            assert!(
                body["error"]
                    .as_str()
                    .unwrap()
                    .contains("database unavailable"),
                "{body}"
            );
            break;
        }
        // A write racing the cut may still have gone through; it must not be anything else.
        assert_eq!(status, 201, "{body}");
        assert!(
            Instant::now() < deadline,
            "writes kept succeeding without a database"
        );
        let _ = http
            .delete(format!("{}/api/v1/groups/etl", gw.admin))
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http
        .get(format!("{}/api/v1/queries", gw.admin))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let mut during = Vec::new();
    for w in workers {
        during.extend(w.await.unwrap());
    }
    assert!(during.len() >= 8, "{} queries ran", during.len());
    assert!(
        metric(&gw, "trino_edge_db_errors_total").await > 0.0,
        "the outage is visible in the metrics"
    );

    // The database returns: queued history is written, new queries are recorded, writes work.
    link.up().await;
    let after = client.run("SELECT 2", &[]).await.id;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !in_history(&gw, &after).await {
        assert!(Instant::now() < deadline, "history did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing was lost: every query of the outage waited in the queue and is recorded now.
    let mut missing: HashSet<String> = during.iter().cloned().collect();
    while !missing.is_empty() {
        // Every page of the history (a fast machine runs thousands of queries in the outage).
        let mut cursor = String::new();
        loop {
            let page: Value = reqwest::get(format!(
                "{}/api/v1/queries?source=outage&limit=1000{cursor}",
                gw.admin
            ))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
            for q in page["queries"].as_array().unwrap() {
                missing.remove(q["queryId"].as_str().unwrap());
            }
            match page["nextCursor"].as_str() {
                Some(next) => cursor = format!("&cursor={}", urlencode(next)),
                None => break,
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} queries of the outage never reached the history",
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&gw, "trino_edge_history_dropped_total").await, 0.0);
    let r = http
        .post(format!("{}/api/v1/groups", gw.admin))
        .json(&json!({"name": "etl2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    drop(gw);
    link.down();
    let mut conn = sqlx::PgConnection::connect(&postgres_server())
        .await
        .unwrap();
    let _ = sqlx::query("DROP DATABASE IF EXISTS te_outage WITH (FORCE)")
        .execute(&mut conn)
        .await;
}

/// A history cursor (`<ms>:<query id>`) as a query-string value.
fn urlencode(s: &str) -> String {
    s.replace(':', "%3A")
}
