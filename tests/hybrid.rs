#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The hybrid-query endpoint end to end: the real binary, emulated Trino backends, and a Parquet
//! fixture written here. Checks exact rows and types, every limit (and that the backend saw the
//! cancel), SQL that must never run, remote errors, routing and impersonation, and the CLI.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use datafusion::arrow::array::{Date32Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use serde_json::{json, Value};
use trino_edge::emulator::EmulatorHandle;

/// `orders/part-0.parquet`: (date, orders, region) for 2024-01-01..05 and 2024-01-10.
fn write_orders(dir: &Path) {
    let days: Vec<i32> = [1, 2, 3, 4, 5, 10]
        .iter()
        .map(|d| 19_723 + d - 1) // 2024-01-01 is day 19723 since the epoch
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("orders", DataType::Int64, false),
        Field::new("region", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Date32Array::from(days)),
            Arc::new(Int64Array::from(vec![10, 20, 30, 40, 50, 99])),
            Arc::new(StringArray::from(vec![
                Some("eu"),
                Some("us"),
                None,
                Some("eu"),
                Some("us"),
                Some("eu"),
            ])),
        ],
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("orders")).unwrap();
    let file = std::fs::File::create(dir.join("orders/part-0.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

struct Setup {
    gw: Gateway,
    adhoc: EmulatorHandle,
    etl: EmulatorHandle,
    data: tempfile::TempDir,
}

/// Two groups (`adhoc` → trino-1, `etl` → trino-2, users `etl_*` go to `etl`), the orders
/// table, and these extra `hybrid:` lines.
async fn setup(hybrid: &str) -> Setup {
    let adhoc = backend(1000).await;
    let etl = backend(1000).await;
    let data = tempfile::tempdir().unwrap();
    write_orders(data.path());
    let port = free_port();
    let admin = free_port();
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin"), ("etl", "round_robin")],
        &[
            ("trino-1", adhoc.url(), "adhoc"),
            ("trino-2", etl.url(), "etl"),
        ],
        "    - { name: etl-users, match: { user: \"^etl_\" }, group: etl }",
    ) + &format!(
        "hybrid:\n  tables:\n    orders: \"{}/orders/*.parquet\"\n{hybrid}",
        data.path().display()
    );
    let gw = Gateway::start(&yaml, port, admin).await;
    Setup {
        gw,
        adhoc,
        etl,
        data,
    }
}

async fn hybrid(gw: &Gateway, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/query/hybrid", gw.admin))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

fn error_type(v: &Value) -> &str {
    v["error"]["type"].as_str().unwrap_or("<none>")
}

/// The emulator saw `DELETE` for this query (the gateway sends it in the background).
async fn wait_canceled(backend: &EmulatorHandle, query_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !backend.state.was_canceled(query_id) {
        assert!(
            Instant::now() < deadline,
            "{query_id} was never cancelled on the backend"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_parquet_joins_a_remote_result() {
    let s = setup("").await;
    let body = json!({
        "register": {"traffic": "SELECT * FROM web.daily"},
        "sql": "SELECT o.date, o.orders, t.views, o.region FROM orders o JOIN traffic t \
                ON o.date = t.date ORDER BY o.date",
        "group": "adhoc",
    });
    let (status, v) = hybrid(&s.gw, body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["columns"],
        json!([
            {"name": "date", "type": "Date32"},
            {"name": "orders", "type": "Int64"},
            {"name": "views", "type": "Int64"},
            {"name": "region", "type": "Utf8View"},
        ])
    );
    // views = 1000·d + 7·d² for day d of the canned `web.daily`; 2024-01-10 has no traffic.
    assert_eq!(
        v["rows"],
        json!([
            ["2024-01-01", 10, 1007, "eu"],
            ["2024-01-02", 20, 2028, "us"],
            ["2024-01-03", 30, 3063, null],
            ["2024-01-04", 40, 4112, "eu"],
            ["2024-01-05", 50, 5175, "us"],
        ])
    );
    assert_eq!(
        (v["row_count"].as_u64(), &v["truncated"]),
        (Some(5), &json!(false))
    );
    let st = &v["remote_stats"]["traffic"];
    assert_eq!(
        (st["rows"].as_u64(), st["columns"].as_u64()),
        (Some(7), Some(2))
    );
    assert_eq!(st["backend"], "trino-1");
    let qid = st["query_id"].as_str().unwrap();
    assert_eq!(coordinator_of(qid), s.adhoc.coordinator_id());
    assert!(st["elapsed_ms"].is_u64() && st["memory_mb"].as_f64().unwrap() > 0.0);
    assert_eq!(s.etl.state.stats().submissions, 0);
    // The subquery declared that it reads timestamps with their precision.
    assert_eq!(
        s.adhoc.state.stats().last_client_capabilities.as_deref(),
        Some("PARAMETRIC_DATETIME")
    );

    // The same query as CSV and as an Arrow IPC stream.
    let http = reqwest::Client::new();
    let mut csv_body = body.clone();
    csv_body["format"] = json!("csv");
    let r = http
        .post(format!("{}/api/query/hybrid", s.gw.admin))
        .json(&csv_body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-trino-edge-row-count"], "5");
    assert_eq!(r.headers()["x-trino-edge-truncated"], "false");
    let stats: Value =
        serde_json::from_str(r.headers()["x-trino-edge-remote-stats"].to_str().unwrap()).unwrap();
    assert_eq!(stats["traffic"]["rows"], 7);
    assert_eq!(
        r.text().await.unwrap(),
        "date,orders,views,region\r\n2024-01-01,10,1007,eu\r\n2024-01-02,20,2028,us\r\n\
         2024-01-03,30,3063,\r\n2024-01-04,40,4112,eu\r\n2024-01-05,50,5175,us\r\n"
    );
    let mut arrow_body = body;
    arrow_body["format"] = json!("arrow");
    let r = http
        .post(format!("{}/api/query/hybrid", s.gw.admin))
        .json(&arrow_body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.apache.arrow.stream"
    );
    let bytes = r.bytes().await.unwrap();
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None).unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let views: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let c = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
            c.values().to_vec()
        })
        .collect();
    assert_eq!(views, vec![1007, 2028, 3063, 4112, 5175]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trino_type_arrives_with_its_arrow_type_and_value() {
    let s = setup("").await;
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"t": "SELECT * FROM all_types"}, "sql": "SELECT * FROM t"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let types: Vec<(&str, &str)> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("c_boolean", "Boolean"),
            ("c_tinyint", "Int8"),
            ("c_smallint", "Int16"),
            ("c_integer", "Int32"),
            ("c_bigint", "Int64"),
            ("c_real", "Float32"),
            ("c_double", "Float64"),
            ("c_decimal", "Decimal128(12, 3)"),
            ("c_varchar", "Utf8"),
            ("c_char", "Utf8"),
            ("c_date", "Date32"),
            ("c_time", "Time64(µs)"),
            ("c_timestamp", "Timestamp(ms)"),
            ("c_timestamp6", "Timestamp(µs)"),
            ("c_timestamp_tz", "Timestamp(ms, \"UTC\")"),
            ("c_varbinary", "Binary"),
            ("c_array", "List(Int64)"),
            (
                "c_map",
                "Map(\"entries\": non-null Struct(\"key\": non-null Utf8, \"value\": Float64), \
                 unsorted)"
            ),
            ("c_row", "Struct(\"x\": Int64, \"y\": Utf8)"),
            ("c_json", "Utf8"),
        ],
        "{:#}",
        v["columns"]
    );
    assert_eq!(
        v["rows"],
        json!([
            [
                true, -7, 1234, -2_000_000, 9_007_199_254_740_993_i64, 1.5, -2.25, "12345.678",
                "héllo", "ab   ", "2024-02-29", "12:34:56.789", "2024-02-29T23:59:59.123",
                "2024-02-29T23:59:59.123456",
                // 00:30 in Berlin (UTC+1 in winter) is 23:30 UTC the day before.
                "2024-02-29T23:30:00Z",
                "AAEC/w==", [1, null, 3], {"a": 1.5, "b": null}, {"x": 7, "y": "seven"},
                "{\"k\":[1,2]}"
            ],
            [
                false, 127, -32768, 2_147_483_647, i64::MIN, "NaN", "Infinity", "-0.001", "",
                "     ", "1969-12-31", "00:00:00", "1970-01-01T00:00:00",
                "1970-01-01T00:00:00.000001", "2024-01-01T00:00:00Z", "", [],
                {"inf": "-Infinity"}, {"x": null, "y": null}, "null"
            ],
            [null, null, null, null, null, null, null, null, null, null, null, null, null, null,
             null, null, null, null, null, null]
        ]),
        "{:#}",
        v["rows"]
    );

    // The converted values compute like native ones.
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"t": "SELECT * FROM all_types"},
               "sql": "SELECT c_decimal * 2 AS d2, c_bigint + 1 AS b1, c_row['y'] AS y, \
                       extract(hour FROM c_timestamp_tz) AS h FROM t WHERE c_boolean"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([["24691.356", 9_007_199_254_740_994_i64, "seven", 23]])
    );
    // And join with the local Parquet table: tinyint -7 + 17 = 10 orders on 2024-01-01.
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"t": "SELECT * FROM all_types"},
               "sql": "SELECT o.date, o.orders, t.c_varchar, t.c_array, t.c_timestamp_tz \
                       FROM orders o JOIN t ON o.orders = t.c_tinyint + 17"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["rows"],
        json!([[
            "2024-01-01",
            10,
            "héllo",
            [1, null, 3],
            "2024-02-29T23:30:00Z"
        ]])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_and_result_limits_cancel_the_remote_query() {
    let s = setup("  max_registration_rows: 2500\n  max_result_rows: 10\n").await;
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"big": "SELECT * FROM UNNEST(sequence(1, 10000000))"},
               "sql": "SELECT count(*) FROM big"}),
    )
    .await;
    assert_eq!((status, error_type(&v)), (422, "row_limit"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("2500"));
    let qid = v["error"]["details"]["query_id"].as_str().unwrap();
    wait_canceled(&s.adhoc, qid).await;

    // A result longer than max_result_rows is cut, not refused.
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"small": "SELECT * FROM UNNEST(sequence(1, 100)) AS t(x)"},
               "sql": "SELECT x FROM small ORDER BY x"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["row_count"].as_u64(), &v["truncated"]),
        (Some(10), &json!(true))
    );
    assert_eq!(v["rows"][9], json!([10]));
    let (_, v) = hybrid(&s.gw, json!({"sql": "SELECT * FROM orders"})).await;
    assert_eq!(
        (v["row_count"].as_u64(), &v["truncated"]),
        (Some(6), &json!(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_limit_and_timeout_cancel_the_remote_query() {
    let s = setup("  max_memory_mb: 1\n  timeout_seconds: 10\n").await;
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"big": "SELECT * FROM UNNEST(sequence(1, 10000000))"},
               "sql": "SELECT count(*) FROM big"}),
    )
    .await;
    assert_eq!((status, error_type(&v)), (422, "memory_limit"), "{v}");
    let qid = v["error"]["details"]["query_id"].as_str().unwrap();
    wait_canceled(&s.adhoc, qid).await;

    let before = s.adhoc.state.stats().submissions;
    let started = Instant::now();
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"slow": "SELECT sleep(60000)"}, "sql": "SELECT * FROM slow"}),
    )
    .await;
    assert_eq!((status, error_type(&v)), (504, "timeout"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(s.adhoc.state.stats().submissions, before + 1);
    // The memory-limited query was the first cancel; the slow query is the second.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = s.adhoc.state.stats();
        if st.cancels >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed-out query not cancelled: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_sql_is_refused_and_never_runs() {
    let s = setup("").await;
    let out = s.data.path().join("leak.csv");
    let out = out.display();
    let local = [
        "CREATE TABLE x AS SELECT 1".to_string(),
        "INSERT INTO orders VALUES ('2024-01-01', 1, 'x')".into(),
        "DELETE FROM orders".into(),
        "DROP TABLE orders".into(),
        format!("COPY orders TO '{out}'"),
        format!("COPY (SELECT 1) TO '{out}' STORED AS CSV"),
        format!("CREATE EXTERNAL TABLE e STORED AS PARQUET LOCATION '{out}'"),
        "SELECT * FROM '/etc/passwd'".into(),
        "SELECT * FROM datafusion.public.orders".into(),
        "SELECT * FROM generate_series(1, 10)".into(),
        "SELECT 1; SELECT 2".into(),
        "SET datafusion.execution.target_partitions = 1".into(),
        "EXPLAIN SELECT 1".into(),
        "SELECT * FROM nothing_registered".into(),
    ];
    for sql in &local {
        let (status, v) = hybrid(&s.gw, json!({"sql": sql})).await;
        assert_eq!((status, error_type(&v)), (400, "validation"), "{sql}: {v}");
    }
    assert!(!s.data.path().join("leak.csv").exists());

    let remote = [
        "DELETE FROM hive.web.daily",
        "INSERT INTO t SELECT 1",
        "CREATE TABLE t AS SELECT 1",
        "SELECT 1; DROP TABLE t",
        "CALL system.runtime.kill_query('x')",
        "",
        // A WITH whose body is a write; SQL passed through to a connector's database.
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
        "SELECT * FROM TABLE(system.query(query => 'DELETE FROM t'))",
    ];
    for sql in remote {
        let (status, v) = hybrid(
            &s.gw,
            json!({"register": {"r": sql}, "sql": "SELECT * FROM r"}),
        )
        .await;
        assert_eq!((status, error_type(&v)), (400, "validation"), "{sql}: {v}");
    }
    for (alias, why) in [
        ("orders", "shadow"),
        ("a.b", "identifier"),
        ("1x", "identifier"),
    ] {
        let (status, v) = hybrid(
            &s.gw,
            json!({"register": {alias: "SELECT 1"}, "sql": "SELECT 1"}),
        )
        .await;
        assert_eq!((status, error_type(&v)), (400, "validation"), "{alias}");
        assert!(v["error"]["message"].as_str().unwrap().contains(why), "{v}");
    }
    // Two aliases that differ only in case would be one table.
    let (_, v) = hybrid(
        &s.gw,
        json!({"register": {"T": "SELECT 1", "t": "SELECT 2"}, "sql": "SELECT 1"}),
    )
    .await;
    assert_eq!(error_type(&v), "validation");
    for bad in [
        json!({"sql": ""}),
        json!({"sql": "SELECT 1", "extra": 1}),
        json!([1]),
        json!({"sql": "SELECT 1", "catalog": "hive\r\nX-Evil: 1"}),
        json!({"sql": "SELECT 1", "user": "bo\nb"}),
    ] {
        let (status, v) = hybrid(&s.gw, bad.clone()).await;
        assert_eq!((status, error_type(&v)), (400, "validation"), "{bad}");
    }
    // Nothing reached a backend.
    assert_eq!(s.adhoc.state.stats().submissions, 0);
    assert_eq!(s.etl.state.stats().submissions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_errors_carry_the_trino_error_name() {
    let s = setup("").await;
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"e": "SELECT fail('boom')"}, "sql": "SELECT * FROM e"}),
    )
    .await;
    assert_eq!((status, error_type(&v)), (400, "remote_error"), "{v}");
    let d = &v["error"]["details"];
    assert_eq!(d["errorName"], "GENERIC_USER_ERROR");
    assert_eq!(
        (&d["alias"], &d["backend"]),
        (&json!("e"), &json!("trino-1"))
    );
    assert!(v["error"]["message"].as_str().unwrap().contains("boom"));
    let (_, v) = hybrid(
        &s.gw,
        json!({"register": {"e": "SELECT * FROM hive.nope"}, "sql": "SELECT * FROM e"}),
    )
    .await;
    assert_eq!(v["error"]["details"]["errorName"], "TABLE_NOT_FOUND", "{v}");
    // A local error is a query_error with DataFusion's message.
    let (status, v) = hybrid(&s.gw, json!({"sql": "SELECT no_such_column FROM orders"})).await;
    assert_eq!((status, error_type(&v)), (400, "query_error"), "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no_such_column"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subqueries_are_routed_and_run_as_the_caller() {
    let s = setup("").await;
    // No group: the policies decide, on the subquery's user.
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"u": "SELECT current_user AS u"}, "sql": "SELECT u FROM u",
               "user": "etl_bob"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], json!([["etl_bob"]]));
    assert_eq!(v["remote_stats"]["u"]["backend"], "trino-2");
    // The request's X-Trino-User, then the default user.
    let r = reqwest::Client::new()
        .post(format!("{}/api/query/hybrid", s.gw.admin))
        .header("X-Trino-User", "alice")
        .json(&json!({"register": {"u": "SELECT current_user"}, "sql": "SELECT * FROM u"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rows"], json!([["alice"]]));
    assert_eq!(v["remote_stats"]["u"]["backend"], "trino-1");
    let (_, v) = hybrid(
        &s.gw,
        json!({"register": {"u": "SELECT current_user"}, "sql": "SELECT * FROM u",
               "group": "etl"}),
    )
    .await;
    assert_eq!(v["rows"], json!([["trino-edge"]]));
    assert_eq!(v["remote_stats"]["u"]["backend"], "trino-2");
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"u": "SELECT 1"}, "sql": "SELECT * FROM u", "group": "nope"}),
    )
    .await;
    assert_eq!((status, error_type(&v)), (400, "validation"), "{v}");
    // Two registrations run side by side and join.
    let (status, v) = hybrid(
        &s.gw,
        json!({"register": {"a": "SELECT * FROM web.daily", "b": "SELECT * FROM web.daily"},
               "sql": "SELECT count(*) AS n FROM a JOIN b ON a.date = b.date"}),
    )
    .await;
    assert_eq!((status, &v["rows"]), (200, &json!([[7]])), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_command_prints_tables_csv_and_errors() {
    let s = setup("").await;
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("query")
            .args(["--admin", &s.gw.admin])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[
        "--register",
        "t=SELECT * FROM web.daily",
        "SELECT t.date, views FROM t WHERE views > 6000 ORDER BY 1",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        " date       | views\n------------+-------\n 2024-01-06 |  6252\n 2024-01-07 |  7343\n(2 rows)\n"
    );
    let (ok, out, err) = run(&[
        "--format",
        "csv",
        "--sql",
        "SELECT count(*) AS n FROM orders",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out, "n\r\n6\r\n");
    let (ok, _, err) = run(&["--sql", "SELECT 1", "SELECT 2"]);
    assert!(!ok && err.contains("exactly one"), "{err}");
    let (ok, _, err) = run(&["DROP TABLE orders"]);
    assert!(!ok && err.contains("validation"), "{err}");
    // --stdin takes a whole request.
    let mut child = Command::new(BIN)
        .args([
            "query",
            "--admin",
            &s.gw.admin,
            "--stdin",
            "--format",
            "json",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"register": {"t": "SELECT * FROM web.daily"}, "sql": "SELECT max(views) AS m FROM t"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"], json!([[7343]]));
}
