//! End-to-end tests of the emulator over real HTTP (reqwest against `start` on 127.0.0.1:0).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

use super::{start, EmulatorConfig, EmulatorHandle, FailureMode, RetrievalMode, SpoolingConfig};

async fn emulator(config: EmulatorConfig) -> EmulatorHandle {
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    start(addr, config).await.expect("emulator starts")
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// One HTTP exchange of a query.
struct Exchange {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn exchange(resp: reqwest::Response) -> Exchange {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Exchange {
        status,
        headers,
        body,
    }
}

async fn submit(c: &Client, base: &str, sql: &str, headers: &[(&str, &str)]) -> Exchange {
    let mut req = c
        .post(format!("{base}/v1/statement"))
        .header("X-Trino-User", "alice")
        .body(sql.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    exchange(req.send().await.expect("POST")).await
}

async fn get(c: &Client, uri: &str) -> Exchange {
    exchange(
        c.get(uri)
            .header("X-Trino-User", "alice")
            .send()
            .await
            .expect("GET"),
    )
    .await
}

/// Submits and follows `nextUri` to the end, returning every exchange (the POST first).
async fn run(c: &Client, base: &str, sql: &str, headers: &[(&str, &str)]) -> Vec<Exchange> {
    let mut all = vec![submit(c, base, sql, headers).await];
    while let Some(next) = all
        .last()
        .and_then(|e| e.body.get("nextUri"))
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        let e = get(c, &next).await;
        assert_eq!(e.status, StatusCode::OK, "GET {next}: {:?}", e.body);
        all.push(e);
        assert!(all.len() < 10_000, "runaway paging");
    }
    all
}

fn state_of(e: &Exchange) -> &str {
    e.body["stats"]["state"].as_str().unwrap_or("?")
}

fn rows(exchanges: &[Exchange]) -> Vec<Value> {
    exchanges
        .iter()
        .filter_map(|e| e.body.get("data").and_then(Value::as_array))
        .flatten()
        .cloned()
        .collect()
}

fn header<'a>(e: &'a Exchange, name: &str) -> Option<&'a str> {
    e.headers.get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn query_ids_carry_the_coordinator_id() {
    let fixed = emulator(EmulatorConfig {
        coordinator_id: Some("ab2cd".into()),
        ..EmulatorConfig::default()
    })
    .await;
    assert_eq!(fixed.coordinator_id(), "ab2cd");
    let c = client();
    let first = submit(&c, &fixed.url(), "SELECT 1", &[]).await;
    let second = submit(&c, &fixed.url(), "SELECT 1", &[]).await;
    let ids: Vec<&str> = [&first, &second]
        .iter()
        .map(|e| e.body["id"].as_str().expect("id"))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let parts: Vec<&str> = id.split('_').collect();
        assert_eq!(parts.len(), 4, "{id}");
        assert_eq!(parts[0].len(), 8);
        assert_eq!(parts[1].len(), 6);
        assert_eq!(parts[2], format!("{i:05}"));
        assert_eq!(parts[3], "ab2cd");
        let when = chrono::NaiveDateTime::parse_from_str(&id[..15], "%Y%m%d_%H%M%S")
            .expect("UTC timestamp");
        let age = chrono::Utc::now().naive_utc() - when;
        assert!(age.num_seconds().abs() < 60, "{id} is not now (UTC)");
    }

    let random = emulator(EmulatorConfig::default()).await;
    let cid = random.coordinator_id().to_string();
    assert_eq!(cid.len(), 5);
    assert!(cid
        .bytes()
        .all(|b| b"abcdefghijkmnpqrstuvwxyz23456789".contains(&b)));
    let e = submit(&c, &random.url(), "SELECT 1", &[]).await;
    assert!(e.body["id"]
        .as_str()
        .expect("id")
        .ends_with(&format!("_{cid}")));
}

#[tokio::test]
async fn paging_follows_queued_running_finished() {
    let emu = emulator(EmulatorConfig {
        rows_per_page: 1000,
        ..EmulatorConfig::default()
    })
    .await;
    let base = emu.url();
    let c = client();
    let all = run(&c, &base, "SELECT * FROM UNNEST(sequence(1, 2500))", &[]).await;
    let states: Vec<&str> = all.iter().map(state_of).collect();
    assert_eq!(
        states,
        ["QUEUED", "QUEUED", "RUNNING", "RUNNING", "FINISHED"]
    );
    let id = all[0].body["id"].as_str().expect("id").to_string();
    assert_eq!(all[0].body["infoUri"], format!("{base}/ui/query.html?{id}"));
    let uris: Vec<String> = all
        .iter()
        .filter_map(|e| e.body["nextUri"].as_str().map(str::to_string))
        .collect();
    assert_eq!(uris.len(), 4);
    assert!(uris[0].starts_with(&format!("{base}/v1/statement/queued/{id}/")));
    assert!(uris[0].ends_with("/1"));
    for (i, uri) in uris.iter().enumerate().skip(1) {
        assert!(uri.starts_with(&format!("{base}/v1/statement/executing/{id}/")));
        assert!(uri.ends_with(&format!("/{}", i + 1)), "{uri}");
    }
    // RUNNING pages carry columns and data; the last page has no nextUri.
    for e in &all[2..] {
        assert_eq!(
            e.body["columns"],
            json!([{"name": "_col0", "type": "bigint",
                    "typeSignature": {"rawType": "bigint", "arguments": []}}])
        );
    }
    assert_eq!(all[2].body["data"].as_array().map(Vec::len), Some(1000));
    assert!(all[2].body["partialCancelUri"].is_string());
    assert!(all[4].body.get("nextUri").is_none());
    let values: Vec<i64> = rows(&all)
        .iter()
        .map(|r| r[0].as_i64().expect("bigint"))
        .collect();
    assert_eq!(values, (1..=2500).collect::<Vec<i64>>());
    assert_eq!(emu.state.query_state(&id).as_deref(), Some("FINISHED"));
    let stats = emu.state.stats();
    assert_eq!(stats.submissions, 1);
    assert_eq!(stats.pages, 4);
    assert_eq!(stats.last_user.as_deref(), Some("alice"));

    // Re-GET of the current (last) token replays the page; older tokens are gone; later
    // tokens and wrong slugs are not found.
    let last = &uris[3];
    let replay = get(&c, last).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.body, all[4].body);
    assert_eq!(get(&c, &uris[2]).await.status, StatusCode::GONE);
    let (prefix, _) = last.rsplit_once('/').expect("token");
    assert_eq!(
        get(&c, &format!("{prefix}/9")).await.status,
        StatusCode::NOT_FOUND
    );
    let wrong_slug = last.replacen(&format!("/{id}/y"), &format!("/{id}/ybad"), 1);
    let e = get(&c, &wrong_slug).await;
    assert_eq!(e.status, StatusCode::NOT_FOUND);
    assert_eq!(e.body, "Query not found");
    // the queued path only serves token 1
    let on_queued_path = last.replace("/executing/", "/queued/");
    assert_eq!(get(&c, &on_queued_path).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn retry_of_current_token_returns_same_page() {
    let emu = emulator(EmulatorConfig {
        rows_per_page: 2,
        ..EmulatorConfig::default()
    })
    .await;
    let c = client();
    let post = submit(
        &c,
        &emu.url(),
        "SELECT x FROM UNNEST(sequence(5, 1)) AS t(x)",
        &[],
    )
    .await;
    let queued = get(&c, post.body["nextUri"].as_str().expect("next")).await;
    let uri = queued.body["nextUri"].as_str().expect("next").to_string();
    let first = get(&c, &uri).await;
    let again = get(&c, &uri).await;
    assert_eq!(first.body, again.body);
    assert_eq!(first.body["data"], json!([[5], [4]]));
    assert_eq!(first.body["columns"][0]["name"], "x");
}

#[tokio::test]
async fn forwarded_headers_shape_absolute_uris() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let base = emu.url();
    let e = submit(
        &c,
        &base,
        "SELECT 1",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "gw.example:8443"),
        ],
    )
    .await;
    let id = e.body["id"].as_str().expect("id");
    assert!(e.body["nextUri"]
        .as_str()
        .expect("next")
        .starts_with("https://gw.example:8443/v1/statement/queued/"));
    assert_eq!(
        e.body["infoUri"],
        format!("https://gw.example:8443/ui/query.html?{id}")
    );
    // X-Forwarded-Port wins over the port in X-Forwarded-Host.
    let e = submit(
        &c,
        &base,
        "SELECT 1",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "gw.example:8443"),
            ("X-Forwarded-Port", "9443"),
        ],
    )
    .await;
    assert!(e.body["nextUri"]
        .as_str()
        .expect("next")
        .starts_with("https://gw.example:9443/"));
    // Only a host: proto defaults to http, no port is invented.
    let e = submit(&c, &base, "SELECT 1", &[("X-Forwarded-Host", "gw.example")]).await;
    assert!(e.body["nextUri"]
        .as_str()
        .expect("next")
        .starts_with("http://gw.example/v1/statement/"));
    // Follow-up pages use the forwarded base too.
    let next = e.body["nextUri"]
        .as_str()
        .expect("next")
        .replace("http://gw.example", &base);
    let page = exchange(
        c.get(&next)
            .header("X-Forwarded-Host", "gw2.example:81")
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert!(page.body["nextUri"]
        .as_str()
        .expect("next")
        .starts_with("http://gw2.example:81/v1/statement/executing/"));
    // Without forwarded headers: the Host header.
    let e = submit(&c, &base, "SELECT 1", &[]).await;
    assert!(e.body["nextUri"]
        .as_str()
        .expect("next")
        .starts_with(&format!("{base}/v1/statement/queued/")));
    let stats = emu.state.stats();
    assert_eq!(stats.forwarded_host_requests, 4);
    assert_eq!(stats.last_forwarded_host.as_deref(), Some("gw2.example:81"));
}

#[tokio::test]
async fn forwarded_headers_are_refused_without_process_forwarded() {
    // A Trino without http-server.process-forwarded refuses them (Airlift's
    // RejectForwardedRequestCustomizer), naming the first one.
    let plain = emulator(EmulatorConfig {
        process_forwarded: false,
        ..EmulatorConfig::default()
    })
    .await;
    let c = client();
    let base = plain.url();
    for (header, value) in [
        ("X-Forwarded-For", "10.1.2.3"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "gw.example:8443"),
        ("X-Forwarded-Port", "8443"),
        ("X-Forwarded-Prefix", "/trino"),
        ("X-Forwarded-Server", "gw"),
    ] {
        let resp = c
            .post(format!("{base}/v1/statement"))
            .header("X-Trino-User", "alice")
            .header(header, value)
            .body("SELECT 1")
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE, "{header}");
        assert!(resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/plain")));
        assert_eq!(
            resp.text().await.expect("body"),
            format!("Server configuration does not allow processing of the {header} header")
        );
    }
    // Any request, not only submissions.
    let resp = c
        .get(format!("{base}/v1/info"))
        .header("X-Forwarded-For", "10.1.2.3")
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_ACCEPTABLE);
    // Without them the request is served, with URIs from Host.
    let all = run(&c, &base, "SELECT 1", &[]).await;
    assert!(all[0].body["nextUri"]
        .as_str()
        .expect("next")
        .starts_with(&format!("{base}/v1/statement/queued/")));
    assert_eq!(state_of(all.last().expect("final")), "FINISHED");
    // The control plane is exempt.
    let resp = c
        .get(format!("{base}/v1/emulator/stats"))
        .header("X-Forwarded-For", "10.1.2.3")
        .send()
        .await
        .expect("stats");
    assert_eq!(resp.status(), StatusCode::OK);
    let stats = plain.state.stats();
    assert_eq!(stats.forwarded_refused, 7);
    assert_eq!(stats.submissions, 1);
    assert_eq!(
        emulator(EmulatorConfig::default())
            .await
            .state
            .stats()
            .forwarded_refused,
        0
    );
}

#[tokio::test]
async fn failures_are_http_200_with_trino_error() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let all = run(&c, &emu.url(), "SELEC 1", &[]).await;
    assert_eq!(all.len(), 2);
    assert_eq!(state_of(&all[0]), "QUEUED");
    assert!(all[0].body["nextUri"].is_string());
    let failed = &all[1].body;
    assert_eq!(all[1].status, StatusCode::OK);
    assert_eq!(failed["stats"]["state"], "FAILED");
    assert!(failed.get("nextUri").is_none());
    let error = &failed["error"];
    assert_eq!(error["errorName"], "SYNTAX_ERROR");
    assert_eq!(error["errorCode"], 1);
    assert_eq!(error["errorType"], "USER_ERROR");
    assert_eq!(
        error["errorLocation"],
        json!({"lineNumber": 1, "columnNumber": 1})
    );
    assert!(error["message"]
        .as_str()
        .expect("message")
        .starts_with("line 1:1: mismatched input 'SELEC'"));
    assert_eq!(error["failureInfo"]["message"], error["message"]);
    assert_eq!(error["failureInfo"]["suppressed"], json!([]));
    assert_eq!(error["failureInfo"]["stack"], json!([]));
    assert!(error["failureInfo"]["type"].is_string());
    let id = failed["id"].as_str().expect("id");
    assert_eq!(emu.state.query_state(id).as_deref(), Some("FAILED"));

    let all = run(&c, &emu.url(), "select fail('boom')", &[]).await;
    let error = &all[1].body["error"];
    assert_eq!(error["errorName"], "GENERIC_USER_ERROR");
    assert_eq!(error["errorCode"], 0);
    assert_eq!(error["errorType"], "USER_ERROR");
    assert_eq!(error["message"], "boom");
}

#[tokio::test]
async fn cancel_by_delete_of_next_uri() {
    let emu = emulator(EmulatorConfig {
        rows_per_page: 10,
        ..EmulatorConfig::default()
    })
    .await;
    let c = client();
    let post = submit(
        &c,
        &emu.url(),
        "SELECT * FROM UNNEST(sequence(1, 1000))",
        &[],
    )
    .await;
    let id = post.body["id"].as_str().expect("id").to_string();
    let queued = get(&c, post.body["nextUri"].as_str().expect("next")).await;
    let first_uri = queued.body["nextUri"].as_str().expect("next").to_string();
    let running = get(&c, &first_uri).await;
    assert_eq!(state_of(&running), "RUNNING");
    assert_eq!(emu.state.query_state(&id).as_deref(), Some("RUNNING"));
    let next = running.body["nextUri"].as_str().expect("next").to_string();

    let del = c.delete(&next).send().await.expect("DELETE");
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert!(emu.state.was_canceled(&id));
    assert_eq!(emu.state.query_state(&id).as_deref(), Some("FAILED"));
    assert_eq!(emu.state.stats().cancels, 1);

    let after = get(&c, &next).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(state_of(&after), "FAILED");
    assert!(after.body.get("nextUri").is_none());
    assert_eq!(after.body["error"]["errorName"], "USER_CANCELED");
    assert_eq!(after.body["error"]["errorCode"], 3);
    assert_eq!(after.body["error"]["errorType"], "USER_ERROR");
    assert_eq!(after.body["error"]["message"], "Query was canceled");
    assert_eq!(get(&c, &first_uri).await.status, StatusCode::GONE);

    // Canceling again is accepted but changes nothing.
    let del = c.delete(&next).send().await.expect("DELETE");
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    assert_eq!(emu.state.stats().cancels, 1);

    let info: Value = c
        .get(format!("{}/v1/query/{id}", emu.url()))
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["state"], "FAILED");
    assert_eq!(info["errorCode"]["name"], "USER_CANCELED");
}

#[tokio::test]
async fn cancel_reaches_a_delayed_page() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let post = submit(
        &c,
        &emu.url(),
        "/* emulator:page_delay_ms=600 */ SELECT 1",
        &[],
    )
    .await;
    let id = post.body["id"].as_str().expect("id").to_string();
    let next = post.body["nextUri"].as_str().expect("next").to_string();
    let started = Instant::now();
    let pending = tokio::spawn({
        let c = c.clone();
        async move { get(&c, &next).await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let del = c
        .delete(format!("{}/v1/query/{id}", emu.url()))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
    let page = pending.await.expect("join");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "page was delayed"
    );
    assert_eq!(state_of(&page), "FAILED");
    assert_eq!(page.body["error"]["errorName"], "USER_CANCELED");
    assert!(emu.state.was_canceled(&id));
}

#[tokio::test]
async fn sleep_keeps_the_query_running() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let started = Instant::now();
    let all = run(&c, &emu.url(), "SELECT sleep(1300)", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(1300));
    let states: Vec<&str> = all.iter().map(state_of).collect();
    assert_eq!(states, ["QUEUED", "QUEUED", "RUNNING", "FINISHED"]);
    assert!(all[2].body.get("data").is_none());
    assert_eq!(rows(&all), vec![json!([1300])]);
}

#[tokio::test]
async fn use_and_session_statements_set_headers() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let all = run(&c, &emu.url(), "USE tpch.tiny", &[]).await;
    for e in [&all[0], all.last().expect("final")] {
        assert_eq!(header(e, "x-trino-set-catalog"), Some("tpch"));
        assert_eq!(header(e, "x-trino-set-schema"), Some("tiny"));
    }
    let last = &all.last().expect("final").body;
    assert_eq!(last["stats"]["state"], "FINISHED");
    assert_eq!(last["updateType"], "USE");
    assert_eq!(last["columns"], json!([]));
    assert!(last.get("data").is_none());

    let all = run(&c, &emu.url(), "use sf1", &[("X-Trino-Catalog", "tpch")]).await;
    let last = all.last().expect("final");
    assert_eq!(header(last, "x-trino-set-schema"), Some("sf1"));
    assert_eq!(header(last, "x-trino-set-catalog"), None);

    let all = run(&c, &emu.url(), "USE sf1", &[]).await;
    assert_eq!(
        all.last().expect("final").body["error"]["errorName"],
        "MISSING_CATALOG_NAME"
    );

    let all = run(
        &c,
        &emu.url(),
        "SET SESSION query_max_run_time = '1 h'",
        &[],
    )
    .await;
    let last = all.last().expect("final");
    assert_eq!(
        header(last, "x-trino-set-session"),
        Some("query_max_run_time=1+h")
    );
    assert_eq!(last.body["updateType"], "SET SESSION");
    let all = run(&c, &emu.url(), "SET SESSION a = b", &[]).await;
    assert_eq!(header(&all[0], "x-trino-set-session"), Some("a=b"));

    let all = run(&c, &emu.url(), "RESET SESSION a", &[]).await;
    assert_eq!(header(&all[0], "x-trino-clear-session"), Some("a"));

    // A legacy client that only speaks X-Presto-* gets X-Presto-* back.
    let resp = c
        .post(format!("{}/v1/statement", emu.url()))
        .header("X-Presto-User", "old")
        .body("USE hive.web")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()
            .get("x-presto-set-catalog")
            .and_then(|v| v.to_str().ok()),
        Some("hive")
    );
    assert_eq!(emu.state.stats().last_user.as_deref(), Some("old"));
}

#[tokio::test]
async fn transactions_are_tracked() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let base = emu.url();
    let all = run(
        &c,
        &base,
        "START TRANSACTION",
        &[("X-Trino-Transaction-Id", "NONE")],
    )
    .await;
    let txn = header(&all[0], "x-trino-started-transaction-id")
        .expect("started")
        .to_string();
    assert_eq!(txn.len(), 36);
    assert_eq!(
        header(all.last().expect("final"), "x-trino-started-transaction-id"),
        Some(txn.as_str())
    );
    assert_eq!(
        all.last().expect("final").body["updateType"],
        "START TRANSACTION"
    );

    let in_txn = [("X-Trino-Transaction-Id", txn.as_str())];
    let all = run(&c, &base, "SELECT 1", &in_txn).await;
    assert_eq!(state_of(all.last().expect("final")), "FINISHED");
    let nested = run(&c, &base, "START TRANSACTION", &in_txn).await;
    assert_eq!(
        nested.last().expect("final").body["error"]["errorName"],
        "NOT_SUPPORTED"
    );

    let all = run(&c, &base, "COMMIT", &in_txn).await;
    assert_eq!(
        header(all.last().expect("final"), "x-trino-clear-transaction-id"),
        Some("true")
    );
    assert_eq!(all.last().expect("final").body["updateType"], "COMMIT");

    // The committed id is no longer known, nor is one this emulator never issued.
    for id in [txn.as_str(), "1b4e28ba-2fa1-11d2-883f-0016d3cca427"] {
        let all = run(&c, &base, "SELECT 1", &[("X-Trino-Transaction-Id", id)]).await;
        let error = &all.last().expect("final").body["error"];
        assert_eq!(error["errorName"], "UNKNOWN_TRANSACTION");
        assert_eq!(error["errorCode"], 20);
    }
    let all = run(&c, &base, "ROLLBACK", &[]).await;
    assert_eq!(
        all.last().expect("final").body["error"]["errorName"],
        "NOT_IN_TRANSACTION"
    );
    let all = run(&c, &base, "START TRANSACTION", &[]).await;
    let txn = header(&all[0], "x-trino-started-transaction-id")
        .expect("started")
        .to_string();
    let all = run(
        &c,
        &base,
        "ROLLBACK",
        &[("X-Trino-Transaction-Id", txn.as_str())],
    )
    .await;
    assert_eq!(all.last().expect("final").body["updateType"], "ROLLBACK");
}

#[tokio::test]
async fn literals_session_functions_and_show() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let base = emu.url();
    let all = run(
        &c,
        &base,
        "SELECT 1, 2147483648, 1.50, 'abc', true, NULL AS n, 2.5e1;",
        &[],
    )
    .await;
    let last = &all.last().expect("final").body;
    let types: Vec<&str> = last["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "integer",
            "bigint",
            "decimal(3,2)",
            "varchar(3)",
            "boolean",
            "unknown",
            "double"
        ]
    );
    let names: Vec<&str> = last["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["_col0", "_col1", "_col2", "_col3", "_col4", "n", "_col6"]
    );
    assert_eq!(
        last["data"],
        json!([[1, 2147483648_i64, "1.50", "abc", true, null, 25.0]])
    );

    let all = run(
        &c,
        &base,
        "SELECT current_user, current_catalog, current_schema",
        &[("X-Trino-Catalog", "tpch")],
    )
    .await;
    assert_eq!(rows(&all), vec![json!(["alice", "tpch", null])]);

    let all = run(&c, &base, "show catalogs", &[]).await;
    assert_eq!(
        rows(&all),
        vec![json!(["memory"]), json!(["system"]), json!(["tpch"])]
    );
    let all = run(&c, &base, "SHOW SCHEMAS FROM tpch", &[]).await;
    assert_eq!(
        rows(&all),
        vec![
            json!(["information_schema"]),
            json!(["sf1"]),
            json!(["tiny"])
        ]
    );
    let all = run(&c, &base, "SHOW SCHEMAS", &[("X-Trino-Catalog", "memory")]).await;
    assert_eq!(
        rows(&all),
        vec![json!(["default"]), json!(["information_schema"])]
    );
    let all = run(&c, &base, "SHOW SCHEMAS", &[]).await;
    assert_eq!(
        all.last().expect("final").body["error"]["errorName"],
        "MISSING_CATALOG_NAME"
    );
    let all = run(
        &c,
        &base,
        "SELECT node_id, coordinator, state FROM system.runtime.nodes",
        &[],
    )
    .await;
    assert_eq!(
        rows(&all),
        vec![json!([emu.state.coordinator_id(), true, "active"])]
    );
    // The query just run is in system.runtime.queries, finished.
    let all = run(
        &c,
        &base,
        "SELECT state, \"user\", query FROM system.runtime.queries WHERE query LIKE '%runtime.nodes%'",
        &[],
    )
    .await;
    assert_eq!(
        rows(&all),
        vec![json!([
            "FINISHED",
            "alice",
            "SELECT node_id, coordinator, state FROM system.runtime.nodes"
        ])]
    );

    let all = run(
        &c,
        &base,
        "SELECT state, count(*) FROM system.runtime.queries \
         WHERE state NOT IN ('FINISHED', 'FAILED') GROUP BY state",
        &[],
    )
    .await;
    // The probe itself is running while it is being answered.
    assert_eq!(rows(&all), vec![json!(["RUNNING", 1])]);
}

#[tokio::test]
async fn info_query_resources_and_not_found() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let base = emu.url();
    let info: Value = c
        .get(format!("{base}/v1/info"))
        .send()
        .await
        .expect("info")
        .json()
        .await
        .expect("json");
    assert_eq!(info["nodeVersion"]["version"], "446-emulator");
    assert_eq!(info["environment"], "emulator");
    assert_eq!(info["coordinator"], true);
    assert_eq!(info["starting"], false);
    assert!(info["uptime"].as_str().expect("uptime").ends_with('s'));

    let post = submit(
        &c,
        &base,
        "SELECT 1",
        &[("X-Trino-Source", "tests"), ("X-Trino-Schema", "tiny")],
    )
    .await;
    let id = post.body["id"].as_str().expect("id");
    let q: Value = c
        .get(format!("{base}/v1/query/{id}"))
        .send()
        .await
        .expect("query")
        .json()
        .await
        .expect("json");
    assert_eq!(q["queryId"], id);
    assert_eq!(q["state"], "QUEUED");
    assert_eq!(q["query"], "SELECT 1");
    assert_eq!(
        q["session"],
        json!({"user": "alice", "source": "tests", "catalog": null, "schema": "tiny"})
    );
    assert_eq!(q["self"], format!("{base}/v1/query/{id}"));

    let html = c
        .get(post.body["infoUri"].as_str().expect("infoUri"))
        .send()
        .await
        .expect("ui");
    assert_eq!(html.status(), StatusCode::OK);
    assert!(html.text().await.expect("html").contains(id));

    let unknown = "20240101_000000_00000_zzzzz";
    for resp in [
        c.get(format!("{base}/v1/query/{unknown}")).send().await,
        c.get(format!("{base}/ui/query.html?{unknown}"))
            .send()
            .await,
        c.delete(format!("{base}/v1/query/{unknown}")).send().await,
        c.get(format!("{base}/v1/statement/executing/{unknown}/yx/2"))
            .send()
            .await,
        c.delete(format!("{base}/v1/statement/queued/{unknown}/yx/1"))
            .send()
            .await,
    ] {
        let resp = resp.expect("request");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        assert_eq!(resp.text().await.expect("body"), "Query not found");
    }

    // Missing user: 400 with a plain message, and no query is created.
    let resp = c
        .post(format!("{base}/v1/statement"))
        .body("SELECT 1")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.text().await.expect("body"), "User must be set");
    assert_eq!(emu.state.stats().submissions, 1);
}

#[tokio::test]
async fn legacy_statement_path_is_served() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let post = submit(&c, &emu.url(), "SELECT 7", &[]).await;
    let legacy = post.body["nextUri"]
        .as_str()
        .expect("next")
        .replace("/v1/statement/queued/", "/v1/statement/");
    let e = get(&c, &legacy).await;
    assert_eq!(e.status, StatusCode::OK);
    assert_eq!(state_of(&e), "QUEUED");
}

#[tokio::test]
async fn stats_endpoint_and_failure_modes() {
    let emu = emulator(EmulatorConfig {
        name: "trino-9".into(),
        ..EmulatorConfig::default()
    })
    .await;
    let base = emu.url();
    let c = client();
    assert_eq!(
        c.get(format!("{base}/v1/info"))
            .send()
            .await
            .expect("info")
            .status(),
        StatusCode::OK
    );

    emu.state.set_failure_mode(FailureMode::Status(503));
    let resp = c.get(format!("{base}/v1/info")).send().await.expect("info");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.text().await.expect("body").contains("trino-9"));
    let resp = c
        .post(format!("{base}/v1/statement"))
        .header("X-Trino-User", "u")
        .body("SELECT 1")
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The control plane keeps working, uncounted.
    let stats: Value = c
        .get(format!("{base}/v1/emulator/stats"))
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    assert_eq!(stats["requests"], 3);
    assert_eq!(stats["submissions"], 0);
    assert_eq!(stats["last_user"], "u");
    let resp = c
        .put(format!("{base}/v1/emulator/failure-mode"))
        .body("none")
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(emu.state.failure_mode(), FailureMode::None);
    assert_eq!(
        c.get(format!("{base}/v1/info"))
            .send()
            .await
            .expect("info")
            .status(),
        StatusCode::OK
    );

    // Reset: new connections and the kept-alive one are cut without a response.
    emu.state.set_failure_mode(FailureMode::Reset);
    assert!(c.get(format!("{base}/v1/info")).send().await.is_err());
    assert!(client()
        .get(format!("{base}/v1/info"))
        .send()
        .await
        .is_err());
    emu.state.set_failure_mode(FailureMode::None);
    assert_eq!(
        client()
            .get(format!("{base}/v1/info"))
            .send()
            .await
            .expect("info")
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn shutdown_closes_listener_and_connections() {
    let emu = emulator(EmulatorConfig::default()).await;
    let base = emu.url();
    let c = client();
    // A slow page in flight when the emulator dies gets no response.
    let post = submit(&c, &base, "/* emulator:page_delay_ms=5000 */ SELECT 1", &[]).await;
    let next = post.body["nextUri"].as_str().expect("next").to_string();
    let in_flight = tokio::spawn({
        let c = c.clone();
        async move { c.get(&next).send().await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    emu.shutdown();
    emu.shutdown();
    emu.stopped().await;
    assert!(emu.is_shut_down());
    let result = in_flight.await.expect("join");
    assert!(result.is_err(), "in-flight request must fail");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(client()
        .get(format!("{base}/v1/info"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn ten_million_rows_are_generated_lazily() {
    let emu = emulator(EmulatorConfig::default()).await;
    let c = client();
    let started = Instant::now();
    let post = submit(
        &c,
        &emu.url(),
        "SELECT * FROM UNNEST(sequence(1, 10000000))",
        &[],
    )
    .await;
    let queued = get(&c, post.body["nextUri"].as_str().expect("next")).await;
    let first = get(&c, queued.body["nextUri"].as_str().expect("next")).await;
    assert_eq!(first.body["data"].as_array().map(Vec::len), Some(1000));
    assert_eq!(first.body["data"][999], json!([1000]));
    // Like Trino, the size of a result is not known before it has been computed.
    assert_eq!(first.body["stats"]["state"], "RUNNING");
    assert_eq!(first.body["stats"]["processedRows"], 1000);
    assert!(started.elapsed() < Duration::from_secs(2));
    let second = get(&c, first.body["nextUri"].as_str().expect("next")).await;
    assert_eq!(second.body["data"][0], json!([1001]));
    let del = c
        .delete(second.body["nextUri"].as_str().expect("next"))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(del.status(), StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_queries_do_not_interfere() {
    let emu = emulator(EmulatorConfig {
        rows_per_page: 100,
        ..EmulatorConfig::default()
    })
    .await;
    let base = emu.url();
    let mut tasks = Vec::new();
    for i in 1..=16_i64 {
        let base = base.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            let all = run(
                &c,
                &base,
                &format!("SELECT * FROM UNNEST(sequence({i}, {}))", i * 300),
                &[],
            )
            .await;
            let values: Vec<i64> = rows(&all)
                .iter()
                .map(|r| r[0].as_i64().expect("bigint"))
                .collect();
            assert_eq!(values, (i..=i * 300).collect::<Vec<i64>>());
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(emu.state.stats().submissions, 16);
}

// ---- The spooling protocol ----

/// What the Python client 0.340 sends when asked for spooling (`encoding=` on `connect`).
const ENCODINGS: &str = "json+zstd,json+lz4,json";
const KEY_HEADER: &str = "X-Trino-Emulator-Segment-Key";

fn spooling(mode: RetrievalMode, rows_per_page: usize) -> EmulatorConfig {
    EmulatorConfig {
        rows_per_page,
        spooling: Some(SpoolingConfig {
            mode,
            segment_rows: 5_000,
            inline_rows: 100,
        }),
        ..EmulatorConfig::default()
    }
}

/// A client that shows redirects instead of following them.
fn manual_redirects() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

fn segment_key(segment: &Value) -> &str {
    segment["headers"][KEY_HEADER][0]
        .as_str()
        .expect("key header")
}

fn segment_id(segment: &Value) -> String {
    let ack = segment["ackUri"].as_str().expect("ackUri");
    ack.rsplit('/').next().expect("id").to_string()
}

/// GET of a segment URI with or without its key, following 303s by hand and checking that
/// they lead where the retrieval mode says. Returns the final response.
async fn fetch_segment(
    c: &Client,
    emu: &EmulatorHandle,
    mode: RetrievalMode,
    segment: &Value,
    with_key: bool,
) -> reqwest::Response {
    let base = emu.url();
    let storage = emu.storage_url();
    let id = segment_id(segment);
    let uri = segment["uri"].as_str().expect("uri").to_string();
    let send = |uri: String| {
        let mut req = c.get(uri);
        if with_key {
            req = req.header(KEY_HEADER, segment_key(segment));
        }
        req.send()
    };
    match mode {
        RetrievalMode::Storage => {
            let storage = storage.expect("storage listener");
            assert!(
                uri.starts_with(&format!("{storage}/spool/{id}?X-Amz-Signature=")),
                "{uri}"
            );
            send(uri).await.expect("GET storage")
        }
        RetrievalMode::CoordinatorProxy => {
            assert!(storage.is_none());
            assert_eq!(uri, format!("{base}/v1/spooled/download/{id}"));
            send(uri).await.expect("GET coordinator")
        }
        RetrievalMode::CoordinatorStorageRedirect | RetrievalMode::WorkerProxy => {
            let storage = storage.expect("side listener");
            assert_eq!(uri, format!("{base}/v1/spooled/download/{id}"));
            let first = send(uri).await.expect("GET coordinator");
            if first.status() != StatusCode::SEE_OTHER {
                return first;
            }
            let location = first
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .expect("Location")
                .to_string();
            if mode == RetrievalMode::WorkerProxy {
                assert_eq!(location, format!("{storage}/v1/spooled/download/{id}"));
            } else {
                assert!(
                    location.starts_with(&format!("{storage}/spool/{id}?X-Amz-Signature=")),
                    "{location}"
                );
            }
            send(location).await.expect("GET after redirect")
        }
    }
}

/// Decodes a segment's bytes into rows, as the Python client does.
fn decode_segment(encoding: &str, bytes: &[u8], metadata: &Value) -> Vec<Value> {
    assert_eq!(
        metadata["segmentSize"].as_u64(),
        Some(bytes.len() as u64),
        "segmentSize"
    );
    let json = match (encoding, metadata["uncompressedSize"].as_u64()) {
        ("json", None) => bytes.to_vec(),
        ("json+zstd", Some(size)) => {
            let out = zstd::stream::decode_all(bytes).expect("zstd");
            assert_eq!(out.len() as u64, size);
            out
        }
        ("json+lz4", Some(size)) => {
            lz4_flex::block::decompress(bytes, usize::try_from(size).expect("size")).expect("lz4")
        }
        other => panic!("unexpected encoding/metadata {other:?}"),
    };
    serde_json::from_slice(&json).expect("rows")
}

/// Rows of an inline segment.
fn inline_rows(encoding: &str, segment: &Value) -> Vec<Value> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(segment["data"].as_str().expect("data"))
        .expect("base64");
    decode_segment(encoding, &bytes, &segment["metadata"])
}

/// What a spooled query run observed.
#[derive(Default)]
struct Spooled {
    rows: Vec<Value>,
    inline: usize,
    spooled: usize,
    pages: usize,
}

/// Runs `sql` with `encodings`, sending a heartbeat (HEAD) before every GET of `nextUri`, and
/// collects every row by decoding inline segments and downloading, decoding and acking spooled
/// ones.
async fn run_spooled(
    emu: &EmulatorHandle,
    mode: RetrievalMode,
    sql: &str,
    encodings: &str,
    expected_encoding: &str,
) -> Spooled {
    let c = manual_redirects();
    let mut out = Spooled::default();
    let mut page = submit(
        &c,
        &emu.url(),
        sql,
        &[("X-Trino-Query-Data-Encoding", encodings)],
    )
    .await;
    loop {
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        // Every answer of a spooled query names its encoding, as Trino's do.
        assert_eq!(
            page.headers
                .get("x-trino-query-data-encoding")
                .and_then(|v| v.to_str().ok()),
            Some(expected_encoding)
        );
        if let Some(data) = page.body.get("data") {
            assert_eq!(data["encoding"], expected_encoding, "{data}");
            let segments = data["segments"].as_array().expect("segments");
            assert!(!segments.is_empty());
            for segment in segments {
                let metadata = &segment["metadata"];
                assert_eq!(metadata["rowOffset"].as_u64(), Some(out.rows.len() as u64));
                let rows = match segment["type"].as_str() {
                    Some("inline") => {
                        out.inline += 1;
                        inline_rows(expected_encoding, segment)
                    }
                    Some("spooled") => {
                        out.spooled += 1;
                        let resp = fetch_segment(&c, emu, mode, segment, true).await;
                        assert_eq!(resp.status(), StatusCode::OK);
                        assert_eq!(
                            resp.headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok()),
                            Some("application/octet-stream")
                        );
                        let bytes = resp.bytes().await.expect("segment");
                        let rows = decode_segment(expected_encoding, &bytes, metadata);
                        let ack = c
                            .get(segment["ackUri"].as_str().expect("ackUri"))
                            .header(KEY_HEADER, segment_key(segment))
                            .send()
                            .await
                            .expect("ack");
                        assert_eq!(ack.status(), StatusCode::OK);
                        rows
                    }
                    other => panic!("segment type {other:?}"),
                };
                assert_eq!(metadata["rowsCount"].as_u64(), Some(rows.len() as u64));
                out.rows.extend(rows);
            }
        }
        let Some(next) = page.body["nextUri"].as_str().map(str::to_string) else {
            break;
        };
        // The heartbeat neither advances the token nor returns a body.
        let head = c
            .head(&next)
            .header("X-Trino-User", "alice")
            .header("X-Trino-Query-Data-Encoding", encodings)
            .send()
            .await
            .expect("HEAD");
        assert_eq!(head.status(), StatusCode::OK);
        assert!(head.bytes().await.expect("body").is_empty());
        page = exchange(
            c.get(&next)
                .header("X-Trino-User", "alice")
                .header("X-Trino-Query-Data-Encoding", encodings)
                .send()
                .await
                .expect("GET"),
        )
        .await;
        out.pages += 1;
        assert!(out.pages < 1_000, "runaway paging");
    }
    assert_eq!(state_of(&page), "FINISHED", "{:?}", page.body);
    out
}

fn bigints(rows: &[Value]) -> Vec<i64> {
    rows.iter()
        .map(|r| r[0].as_i64().expect("bigint"))
        .collect()
}

/// The whole spooling round trip in one retrieval mode.
async fn spooled_round_trip(mode: RetrievalMode) {
    // Pages of 12 000 rows in segments of at most 5 000: 5000+5000+2000, twice, then 1000.
    let emu = emulator(spooling(mode, 12_000)).await;
    assert_eq!(
        emu.storage_url().is_some(),
        mode != RetrievalMode::CoordinatorProxy
    );
    let sql = "SELECT * FROM UNNEST(sequence(1, 25000))";
    let expected: Vec<i64> = (1..=25_000).collect();
    for (encodings, encoding) in [
        (ENCODINGS, "json+zstd"),
        ("json+lz4,json", "json+lz4"),
        ("arrow, json", "json"),
    ] {
        let got = run_spooled(&emu, mode, sql, encodings, encoding).await;
        assert_eq!(bigints(&got.rows), expected, "{mode:?} {encoding}");
        assert_eq!((got.inline, got.spooled), (0, 7), "{mode:?} {encoding}");
    }
    let stats = emu.state.stats();
    assert_eq!(stats.segments_issued, 21);
    assert_eq!(stats.segment_downloads, 21);
    assert_eq!(stats.segment_acks, 21);
    assert_eq!(stats.segment_not_found, 0);
    // Three queries of QUEUED, QUEUED → RUNNING ×2 → FINISHED: four heartbeats each.
    assert_eq!(stats.heartbeats, 12);
    assert_eq!(emu.state.spooler.stored(), 0, "acked segments are deleted");

    // One segment, looked at closely.
    let c = manual_redirects();
    let all = run(
        &c,
        &emu.url(),
        "SELECT * FROM UNNEST(sequence(1, 250))",
        &[("X-Trino-Query-Data-Encoding", ENCODINGS)],
    )
    .await;
    let data = &all.last().expect("final").body["data"];
    assert_eq!(data["encoding"], "json+zstd");
    let segment = &data["segments"][0];
    assert_eq!(segment["type"], "spooled");
    let metadata = &segment["metadata"];
    assert_eq!(metadata["rowOffset"], 0);
    assert_eq!(metadata["rowsCount"], 250);
    assert!(metadata["uncompressedSize"].as_u64().expect("uncompressed") > 0);
    assert_eq!(
        segment["headers"]
            .as_object()
            .map(|h| h.keys().cloned().collect::<Vec<_>>()),
        Some(vec![KEY_HEADER.to_string()])
    );
    let id = segment_id(segment);
    assert_eq!(id.len(), 32, "24 random bytes, base64url");
    assert_eq!(
        segment["ackUri"],
        format!("{}/v1/spooled/ack/{id}", emu.url())
    );
    // Without the key: 401 (after the redirect, in the redirecting modes).
    let resp = fetch_segment(&c, &emu, mode, segment, false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let wrong_key = c
        .get(segment["uri"].as_str().expect("uri"))
        .header(KEY_HEADER, "not-the-key")
        .send()
        .await
        .expect("GET");
    if mode == RetrievalMode::Storage || mode == RetrievalMode::CoordinatorProxy {
        assert_eq!(wrong_key.status(), StatusCode::UNAUTHORIZED);
    }
    if mode == RetrievalMode::Storage {
        // A presigned URL with a wrong signature is refused by the storage.
        let uri = segment["uri"].as_str().expect("uri");
        let (unsigned, _) = uri.split_once('?').expect("query");
        for bad in [
            unsigned.to_string(),
            format!("{unsigned}?X-Amz-Signature=00"),
        ] {
            let resp = c
                .get(bad)
                .header(KEY_HEADER, segment_key(segment))
                .send()
                .await
                .expect("GET");
            assert_eq!(resp.status(), StatusCode::FORBIDDEN);
        }
        // The coordinator's segment resource is not for this mode.
        let resp = c
            .get(format!("{}/v1/spooled/download/{id}", emu.url()))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // Another instance never issued it.
    let other = emulator(spooling(mode, 12_000)).await;
    for path in ["download", "ack"] {
        let resp = c
            .get(format!("{}/v1/spooled/{path}/{id}", other.url()))
            .header(KEY_HEADER, segment_key(segment))
            .send()
            .await
            .expect("GET");
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "{path} on another instance"
        );
    }
    assert_eq!(other.state.stats().segment_not_found, 2);
    // Downloaded and acked: gone.
    let resp = fetch_segment(&c, &emu, mode, segment, true).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let rows = decode_segment("json+zstd", &resp.bytes().await.expect("bytes"), metadata);
    assert_eq!(bigints(&rows), (1..=250).collect::<Vec<i64>>());
    let ack = c
        .get(segment["ackUri"].as_str().expect("ackUri"))
        .send()
        .await
        .expect("ack");
    assert_eq!(ack.status(), StatusCode::OK);
    let resp = fetch_segment(&c, &emu, mode, segment, true).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "download after ack");
    let ack = c
        .get(segment["ackUri"].as_str().expect("ackUri"))
        .send()
        .await
        .expect("ack");
    assert_eq!(ack.status(), StatusCode::NOT_FOUND, "second ack");
    let stats = emu.state.stats();
    assert_eq!(stats.segment_acks, 22);
    assert_eq!(stats.segment_downloads, 22);
    assert_eq!(stats.segment_not_found, 2);
}

#[tokio::test]
async fn spooling_storage() {
    spooled_round_trip(RetrievalMode::Storage).await;
}

#[tokio::test]
async fn spooling_coordinator_storage_redirect() {
    spooled_round_trip(RetrievalMode::CoordinatorStorageRedirect).await;
}

#[tokio::test]
async fn spooling_coordinator_proxy() {
    spooled_round_trip(RetrievalMode::CoordinatorProxy).await;
}

#[tokio::test]
async fn spooling_worker_proxy() {
    spooled_round_trip(RetrievalMode::WorkerProxy).await;
}

#[tokio::test]
async fn small_results_are_one_inline_segment() {
    let emu = emulator(spooling(RetrievalMode::CoordinatorProxy, 1000)).await;
    let c = client();
    let all = run(
        &c,
        &emu.url(),
        "SELECT 1, 'abc' AS s",
        &[("X-Trino-Query-Data-Encoding", ENCODINGS)],
    )
    .await;
    let last = &all.last().expect("final").body;
    assert_eq!(last["stats"]["state"], "FINISHED");
    let data = &last["data"];
    assert_eq!(data["encoding"], "json+zstd");
    let segments = data["segments"].as_array().expect("segments");
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0]["type"], "inline");
    assert!(segments[0].get("uri").is_none());
    assert_eq!(
        inline_rows("json+zstd", &segments[0]),
        vec![json!([1, "abc"])]
    );
    assert_eq!(segments[0]["metadata"]["rowsCount"], 1);

    // inline_rows (100) is the limit: 100 rows inline, 101 spooled.
    for (n, kind) in [(100, "inline"), (101, "spooled")] {
        let got = run_spooled(
            &emu,
            RetrievalMode::CoordinatorProxy,
            &format!("SELECT * FROM UNNEST(sequence(1, {n}))"),
            "json+lz4",
            "json+lz4",
        )
        .await;
        assert_eq!(bigints(&got.rows), (1..=n).collect::<Vec<i64>>());
        let counts = if kind == "inline" { (1, 0) } else { (0, 1) };
        assert_eq!((got.inline, got.spooled), counts, "{n} rows");
    }
    // Statements without rows carry no data.
    let all = run(
        &c,
        &emu.url(),
        "USE tpch.tiny",
        &[("X-Trino-Query-Data-Encoding", ENCODINGS)],
    )
    .await;
    assert!(all.iter().all(|e| e.body.get("data").is_none()));
    assert_eq!(emu.state.stats().segments_issued, 3);
}

#[tokio::test]
async fn spooled_rows_equal_direct_rows() {
    // Every row its own spooled segment: the canned table's varied types survive slicing.
    let emu = emulator(EmulatorConfig {
        spooling: Some(SpoolingConfig {
            mode: RetrievalMode::CoordinatorProxy,
            segment_rows: 1,
            inline_rows: 0,
        }),
        ..EmulatorConfig::default()
    })
    .await;
    let c = client();
    let direct = rows(&run(&c, &emu.url(), "SELECT * FROM all_types", &[]).await);
    assert!(!direct.is_empty());
    let got = run_spooled(
        &emu,
        RetrievalMode::CoordinatorProxy,
        "SELECT * FROM all_types",
        "json",
        "json",
    )
    .await;
    assert_eq!(got.rows, direct);
    assert_eq!(got.spooled, direct.len());
}

#[tokio::test]
async fn unsupported_or_absent_encodings_get_the_direct_protocol() {
    let emu = emulator(spooling(RetrievalMode::Storage, 1000)).await;
    let c = client();
    let sql = "SELECT * FROM UNNEST(sequence(1, 2500))";
    let expected: Vec<i64> = (1..=2500).collect();
    for headers in [
        &[("X-Trino-Query-Data-Encoding", "arrow")][..],
        &[("X-Trino-Query-Data-Encoding", "")][..],
        &[][..],
    ] {
        let all = run(&c, &emu.url(), sql, headers).await;
        assert!(all[2].body["data"].is_array(), "{headers:?}");
        assert!(all
            .iter()
            .all(|e| !e.headers.contains_key("x-trino-query-data-encoding")));
        assert_eq!(bigints(&rows(&all)), expected);
    }
    // No spooling manager: the header is ignored.
    let plain = emulator(EmulatorConfig::default()).await;
    let all = run(
        &c,
        &plain.url(),
        sql,
        &[("X-Trino-Query-Data-Encoding", ENCODINGS)],
    )
    .await;
    assert_eq!(bigints(&rows(&all)), expected);
    assert!(plain.storage_url().is_none());
    assert_eq!(emu.state.stats().segments_issued, 0);
    // Nothing was issued, so there is nothing to download.
    let resp = c
        .get(format!("{}/v1/spooled/download/abc", plain.url()))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(plain.state.stats().segment_not_found, 1);
}

#[tokio::test]
async fn heartbeat_keeps_the_token_and_knows_the_query() {
    let emu = emulator(EmulatorConfig {
        rows_per_page: 10,
        ..EmulatorConfig::default()
    })
    .await;
    let c = client();
    let post = submit(&c, &emu.url(), "SELECT * FROM UNNEST(sequence(1, 30))", &[]).await;
    let next = post.body["nextUri"].as_str().expect("next").to_string();
    for _ in 0..3 {
        let head = c.head(&next).send().await.expect("HEAD");
        assert_eq!(head.status(), StatusCode::OK);
    }
    let queued = get(&c, &next).await;
    assert_eq!(state_of(&queued), "QUEUED");
    let executing = queued.body["nextUri"].as_str().expect("next").to_string();
    assert_eq!(
        c.head(&executing).send().await.expect("HEAD").status(),
        StatusCode::OK
    );
    let first = get(&c, &executing).await;
    assert_eq!(
        first.body["data"][0],
        json!([1]),
        "HEAD did not consume a page"
    );
    let unknown = executing.replace(&post.body["id"].as_str().expect("id")[..8], "19990101");
    assert_eq!(
        c.head(&unknown).send().await.expect("HEAD").status(),
        StatusCode::NOT_FOUND
    );
    let stats = emu.state.stats();
    assert_eq!(stats.heartbeats, 5);
    assert_eq!(stats.pages, 2);
}
