#![allow(clippy::unwrap_used, clippy::expect_used)]
//! End-to-end: submissions routed by strategy and policy, follow-ups kept on their backend.

mod common;

use common::*;
use std::collections::HashMap;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_30_submissions_exactly_evenly_over_two_and_three_backends() {
    for n in [2usize, 3] {
        let mut backends = Vec::new();
        for _ in 0..n {
            backends.push(backend(1000).await);
        }
        let refs: Vec<_> = backends.iter().collect();
        let gw = simple_gateway(&refs, "round_robin").await;
        let client = Client::new(&gw.url);
        let mut by_coordinator: HashMap<String, usize> = HashMap::new();
        for _ in 0..30 {
            let out = client.run("SELECT 1", &[]).await;
            assert!(out.error.is_none(), "{:?}", out.error);
            assert_eq!(out.rows, vec![serde_json::json!([1])]);
            *by_coordinator
                .entry(coordinator_of(&out.id).to_string())
                .or_default() += 1;
        }
        for b in &backends {
            assert_eq!(
                b.state.stats().submissions,
                (30 / n) as u64,
                "backend {} with {n} backends",
                b.url()
            );
            assert_eq!(by_coordinator.get(b.coordinator_id()), Some(&(30 / n)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_of_a_5000_row_result_flows_through_the_gateway() {
    let b1 = backend(500).await;
    let b2 = backend(500).await;
    let gw = simple_gateway(&[&b1, &b2], "round_robin").await;
    let client = Client::new(&gw.url);
    let out = client
        .run("SELECT * FROM UNNEST(sequence(1, 5000))", &[])
        .await;
    assert!(out.error.is_none(), "{:?}", out.error);
    let values: Vec<i64> = out.rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
    assert_eq!(values, (1..=5000).collect::<Vec<i64>>());
    assert!(
        out.next_uris.len() >= 10,
        "expected ≥10 pages of 500 rows, got {}",
        out.next_uris.len()
    );
    for uri in &out.next_uris {
        assert!(
            uri.starts_with(&gw.url),
            "nextUri {uri} does not point at the gateway {}",
            gw.url
        );
    }
    // The owning backend saw X-Forwarded-Host on every request (submission and pages); the other none.
    let (owner, other) = if coordinator_of(&out.id) == b1.coordinator_id() {
        (&b1, &b2)
    } else {
        (&b2, &b1)
    };
    let s = owner.state.stats();
    assert_eq!(s.requests, 1 + out.next_uris.len() as u64);
    assert_eq!(s.forwarded_host_requests, s.requests);
    assert_eq!(s.last_forwarded_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(other.state.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cancels_the_query_on_its_own_backend() {
    let b1 = backend(10).await;
    let b2 = backend(10).await;
    let gw = simple_gateway(&[&b1, &b2], "round_robin").await;
    let client = Client::new(&gw.url);
    for _ in 0..2 {
        // Two queries so that both backends own one; cancel each.
        let resp = client
            .submit(
                "/* emulator:page_delay_ms=50 */ SELECT * FROM UNNEST(sequence(1, 100000))",
                &[],
            )
            .await;
        let first: serde_json::Value = resp.json().await.unwrap();
        let id = first["id"].as_str().unwrap().to_string();
        let next = first["nextUri"].as_str().unwrap().to_string();
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
        let next = page["nextUri"]
            .as_str()
            .expect("query still running")
            .to_string();
        let del = client
            .http
            .delete(&next)
            .header("X-Trino-User", "tester")
            .send()
            .await
            .unwrap();
        assert_eq!(del.status(), 204);
        let (owner, other) = if coordinator_of(&id) == b1.coordinator_id() {
            (&b1, &b2)
        } else {
            (&b2, &b1)
        };
        assert!(
            owner.state.was_canceled(&id),
            "owner did not see the cancel of {id}"
        );
        assert!(!other.state.was_canceled(&id));
        assert_eq!(other.state.query_state(&id), None);
        // /v1/query/{id} and the UI link reach the owner too.
        let info = client
            .http
            .get(format!("{}/v1/query/{id}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(info.status(), 200);
        let ui = client
            .http
            .get(format!("{}/ui/query.html?{id}", gw.url))
            .send()
            .await
            .unwrap();
        assert_eq!(ui.status(), 200);
        assert!(ui.text().await.unwrap().contains(&id));
    }
    assert_eq!(b1.state.stats().cancels, 1);
    assert_eq!(b2.state.stats().cancels, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_route_by_tags_source_user_listener_and_header() {
    let adhoc = backend(1000).await;
    let etl = backend(1000).await;
    let bi = backend(1000).await;
    let team = backend(1000).await;
    let main_port = free_port();
    let bi_port = free_port();
    let admin = free_port();
    let policies = r#"
    - { name: etl-tags, priority: 10, match: { client_tags_all: [etl, nightly] }, group: etl }
    - { name: airflow, priority: 9, match: { source: "^airflow" }, group: etl }
    - { name: svc, priority: 8, match: { user: "^svc_" }, group: etl }
    - { name: bi-listener, priority: 7, match: { listener: bi }, group: bi }
    - { name: team-header, priority: 6, match: { headers: { X-Team: data } }, group: team }
"#;
    let yaml = config_yaml(
        &[("main", main_port), ("bi", bi_port)],
        admin,
        &[
            ("adhoc", "round_robin"),
            ("etl", "random"),
            ("bi", "least_load"),
            ("team", "weighted"),
        ],
        &[
            ("a", adhoc.url(), "adhoc"),
            ("e", etl.url(), "etl"),
            ("b", bi.url(), "bi"),
            ("t", team.url(), "team"),
        ],
        policies,
    );
    let gw = Gateway::start(&yaml, main_port, admin).await;
    let main = Client::new(&gw.url);
    let bi_client = Client::new(&format!("http://127.0.0.1:{bi_port}"));
    type Case<'a> = (&'a Client, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (&main, vec![], adhoc.coordinator_id()),
        (
            &main,
            vec![("X-Trino-Client-Tags", "nightly,etl")],
            etl.coordinator_id(),
        ),
        (
            &main,
            vec![("X-Trino-Client-Tags", "etl")],
            adhoc.coordinator_id(),
        ),
        (
            &main,
            vec![("X-Trino-Source", "airflow-prod")],
            etl.coordinator_id(),
        ),
        (
            &main,
            vec![("X-Presto-Source", "airflow-legacy")],
            etl.coordinator_id(),
        ),
        (
            &main,
            vec![("X-Trino-Source", "dbt")],
            adhoc.coordinator_id(),
        ),
        (&bi_client, vec![], bi.coordinator_id()),
        (&main, vec![("X-Team", "data")], team.coordinator_id()),
        (&main, vec![("X-Team", "other")], adhoc.coordinator_id()),
        (
            &main,
            vec![("X-Trino-Routing-Group", "bi")],
            bi.coordinator_id(),
        ),
        (
            &main,
            vec![("X-Trino-Routing-Group", "no-such-group")],
            adhoc.coordinator_id(),
        ),
    ];
    for (client, headers, want) in cases {
        let out = client.run("SELECT 1", &headers).await;
        assert!(out.error.is_none());
        assert_eq!(
            coordinator_of(&out.id),
            want,
            "headers {headers:?} via {}",
            client.base
        );
    }
    let mut svc = Client::new(&gw.url);
    svc.user = "svc_loader".into();
    assert_eq!(
        coordinator_of(&svc.run("SELECT 1", &[]).await.id),
        etl.coordinator_id()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_invalid_query_ids_get_trino_shaped_errors() {
    let b1 = backend(1000).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let http = reqwest::Client::new();
    let unknown = "20260101_000000_00001_zzzzz";
    for path in [
        format!("/v1/statement/executing/{unknown}/y123/1"),
        format!("/v1/query/{unknown}"),
        format!("/ui/query.html?{unknown}"),
    ] {
        let r = http.get(format!("{}{path}", gw.url)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let v = assert_trino_error(&r.text().await.unwrap(), "QUERY_NOT_FOUND");
        assert!(v["error"]["message"].as_str().unwrap().contains(unknown));
    }
    let r = http
        .delete(format!("{}/v1/statement/queued/{unknown}/y/1", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{}/v1/statement/executing/Not_An-ID/y/1", gw.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_trino_error(&r.text().await.unwrap(), "INVALID_QUERY_ID");
    // Nothing reached the backend: no silent reroute.
    assert_eq!(b1.state.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn use_and_session_headers_pass_through_and_transactions_stay_on_their_backend() {
    let b1 = backend(1000).await;
    let b2 = backend(1000).await;
    let gw = simple_gateway(&[&b1, &b2], "round_robin").await;
    let client = Client::new(&gw.url);
    let out = client.run("USE tpch.tiny", &[]).await;
    assert_eq!(out.header("x-trino-set-catalog"), Some("tpch"));
    assert_eq!(out.header("x-trino-set-schema"), Some("tiny"));
    let out = client
        .run(
            "SELECT current_catalog, current_schema",
            &[("X-Trino-Catalog", "tpch"), ("X-Trino-Schema", "tiny")],
        )
        .await;
    assert_eq!(out.rows, vec![serde_json::json!(["tpch", "tiny"])]);

    let start = client.run("START TRANSACTION", &[]).await;
    let txn = start
        .header("x-trino-started-transaction-id")
        .expect("transaction id")
        .to_string();
    let owner = coordinator_of(&start.id).to_string();
    // Round robin would alternate; the transaction header pins every statement to its backend.
    for _ in 0..4 {
        let out = client
            .run("SELECT 1", &[("X-Trino-Transaction-Id", &txn)])
            .await;
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(coordinator_of(&out.id), owner);
    }
    let commit = client
        .run("COMMIT", &[("X-Trino-Transaction-Id", &txn)])
        .await;
    assert_eq!(coordinator_of(&commit.id), owner);
    assert!(commit.header("x-trino-clear-transaction-id").is_some());
    // After COMMIT the gateway forgets the transaction.
    let r = client
        .submit("SELECT 1", &[("X-Trino-Transaction-Id", &txn)])
        .await;
    assert_eq!(r.status(), 404);
    assert_trino_error(&r.text().await.unwrap(), "UNKNOWN_TRANSACTION");
    // "NONE" means no transaction.
    assert!(client
        .run("SELECT 1", &[("X-Trino-Transaction-Id", "NONE")])
        .await
        .error
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_reach_the_client_as_trino_sends_them() {
    let b1 = backend(1000).await;
    let gw = simple_gateway(&[&b1], "round_robin").await;
    let out = Client::new(&gw.url).run("SELECT fail('boom')", &[]).await;
    let err = out.error.expect("query failed");
    assert_eq!(err["message"], "boom");
    assert_eq!(err["errorName"], "GENERIC_USER_ERROR");
}

/// `require_user` refuses anonymous submissions; `user_from_header` makes a trusted front proxy's
/// header the user — for routing and for the backend — whatever the client claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_rules_require_a_user_or_take_it_from_a_trusted_proxy() {
    let b1 = backend(10).await;
    let b2 = backend(10).await;
    let (open, sso, admin) = (free_port(), free_port(), free_port());
    let yaml = config_yaml(
        &[("open", open), ("sso", sso)],
        admin,
        &[("adhoc", "round_robin"), ("etl", "round_robin")],
        &[("b1", b1.url(), "adhoc"), ("b2", b2.url(), "etl")],
        "    - { name: services, priority: 1, match: { user: \"^svc_\" }, group: etl }",
    )
    .replace(
        &format!("address: \"127.0.0.1:{open}\" }}"),
        &format!("address: \"127.0.0.1:{open}\", require_user: true }}"),
    )
    .replace(
        &format!("address: \"127.0.0.1:{sso}\" }}"),
        &format!("address: \"127.0.0.1:{sso}\", user_from_header: X-Auth-User }}"),
    );
    assert!(yaml.contains("require_user") && yaml.contains("user_from_header"));
    let gw = Gateway::start(&yaml, open, admin).await;
    let http = reqwest::Client::new();

    // `open`: no user, no query; with a user, business as usual.
    let r = http
        .post(format!("http://127.0.0.1:{open}/v1/statement"))
        .body("SELECT 1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_trino_error(&r.text().await.unwrap(), "MISSING_USER");
    let out = Client::new(&gw.url).run("SELECT current_user", &[]).await;
    assert!(out.error.is_none());

    // `sso`: the proxy's header is the user; the client's own X-Trino-User is ignored.
    let sso_client = Client::new(&format!("http://127.0.0.1:{sso}"));
    let out = sso_client
        .run("SELECT current_user", &[("X-Auth-User", "alice")])
        .await;
    assert_eq!(out.rows, vec![serde_json::json!(["alice"])]);
    let mut pretender = Client::new(&format!("http://127.0.0.1:{sso}"));
    pretender.user = "svc_admin".into();
    let out = pretender
        .run("SELECT current_user", &[("X-Auth-User", "alice")])
        .await;
    assert_eq!(out.rows, vec![serde_json::json!(["alice"])]);
    assert_eq!(
        b2.state.stats().submissions,
        0,
        "policies saw alice, not the claimed svc_admin"
    );
    let out = sso_client
        .run("SELECT current_user", &[("X-Auth-User", "svc_loader")])
        .await;
    assert_eq!(out.rows, vec![serde_json::json!(["svc_loader"])]);
    assert_eq!(b2.state.stats().submissions, 1, "svc_loader routes to etl");
    // Without the proxy's header nothing passes, follow-ups included.
    let r = sso_client.submit("SELECT 1", &[]).await;
    assert_eq!(r.status(), 401);
    assert_trino_error(&r.text().await.unwrap(), "GATEWAY_UNAUTHENTICATED");
    let r = http
        .get(format!("http://127.0.0.1:{sso}/v1/info"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// The routing dry run and the proxy decide alike, refusals included: the same table of requests
/// goes through both, and the answer (status and error, or the backend) must be the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_answers_what_the_proxy_does_for_a_table_of_requests() {
    let adhoc = backend(100).await;
    let etl = backend(100).await;
    let (main, sso, admin) = (free_port(), free_port(), free_port());
    let yaml = config_yaml(
        &[("main", main), ("sso", sso)],
        admin,
        &[("adhoc", "round_robin"), ("etl", "round_robin")],
        &[("a1", adhoc.url(), "adhoc"), ("e1", etl.url(), "etl")],
        "    - { name: etl, match: { client_tags_all: [etl] }, group: etl }\n    - { name: svc, match: { user: \"^svc_\" }, group: etl }\n",
    )
    .replace("name: main, address", "name: main, require_user: true, address")
    .replace("name: sso, address", "name: sso, user_from_header: X-Auth-User, address")
    .replace("admin:\n", "  max_submission_bytes: 1000\nadmin:\n");
    let gw = Gateway::start(&yaml, main, admin).await;
    let http = reqwest::Client::new();
    let backend_of = |id: &str| -> &'static str {
        if coordinator_of(id) == adhoc.coordinator_id() {
            "a1"
        } else if coordinator_of(id) == etl.coordinator_id() {
            "e1"
        } else {
            "?"
        }
    };
    let long = format!("SELECT 1 -- {}", "x".repeat(2000));
    // (listener, its port, headers, statement)
    type Row<'a> = (&'a str, u16, Vec<(&'a str, &'a str)>, &'a str);
    let table: Vec<Row> = vec![
        ("main", main, vec![], "SELECT 1"),
        ("main", main, vec![("X-Trino-User", "")], "SELECT 1"),
        ("main", main, vec![("X-Trino-User", "alice")], "SELECT 1"),
        (
            "main",
            main,
            vec![("X-Trino-User", "alice"), ("X-Trino-Client-Tags", "etl")],
            "SELECT 1",
        ),
        ("main", main, vec![("X-Trino-User", "svc_load")], "SELECT 1"),
        ("main", main, vec![("X-Trino-User", "alice")], &long),
        (
            "main",
            main,
            vec![
                ("X-Trino-User", "alice"),
                ("X-Trino-Transaction-Id", "nope"),
            ],
            "SELECT 1",
        ),
        (
            "main",
            main,
            vec![("X-Trino-User", "alice"), ("X-Trino-Routing-Group", "etl")],
            "SELECT 1",
        ),
        (
            "sso",
            sso,
            vec![("X-Trino-User", "svc_claimed")],
            "SELECT 1",
        ),
        (
            "sso",
            sso,
            vec![("X-Auth-User", "svc_real"), ("X-Trino-User", "alice")],
            "SELECT 1",
        ),
        ("sso", sso, vec![("X-Auth-User", "bob")], "SELECT 1"),
    ];
    for (listener, port, headers, sql) in table {
        // The proxy.
        let mut req = http
            .post(format!("http://127.0.0.1:{port}/v1/statement"))
            .body(sql.to_string());
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        let proxy = if status == 200 {
            format!("200 {}", backend_of(body["id"].as_str().unwrap()))
        } else {
            format!("{status} {}", body["error"]["errorName"].as_str().unwrap())
        };
        // The dry run.
        let hdrs: serde_json::Map<String, serde_json::Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect();
        let d: serde_json::Value = http
            .post(format!("{}/api/v1/route", gw.admin))
            .json(&serde_json::json!({"listener": listener, "headers": hdrs, "sql": sql}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let dry = if d["error"].is_null() {
            format!("200 {}", d["backend"]["name"].as_str().unwrap())
        } else {
            format!(
                "{} {}",
                d["error"]["httpStatus"],
                d["error"]["errorName"].as_str().unwrap()
            )
        };
        assert_eq!(dry, proxy, "{listener} {headers:?}: dry run {d}");
        if status != 200 {
            assert_eq!(d["decision"] == "refused", status != 404, "{d}");
        }
    }
}
