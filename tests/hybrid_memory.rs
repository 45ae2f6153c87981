#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `hybrid.max_memory_mb` holds for the whole local phase, end to end: the red-team queries
//! (row and value generators far past the limit) fail quickly with `memory_limit`, the gateway's
//! peak RSS stays near its baseline instead of reaching gigabytes, and it keeps answering.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use datafusion::arrow::array::{Date32Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use serde_json::{json, Value};

/// `orders.parquet`: (date, orders) for 2024-01-01..03.
fn write_orders(dir: &Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("date", DataType::Date32, false),
        Field::new("orders", DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Date32Array::from(vec![19_723, 19_724, 19_725])),
            Arc::new(Int64Array::from(vec![10, 20, 30])),
        ],
    )
    .unwrap();
    let file = std::fs::File::create(dir.join("orders.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// Peak resident set of `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
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

/// A remote result joined with the Parquet table: must keep working.
async fn ordinary_query_works(gw: &Gateway) {
    let (status, v) = hybrid(
        gw,
        json!({"register": {"traffic": "SELECT * FROM web.daily"},
               "sql": "SELECT o.orders, t.views FROM orders o JOIN traffic t ON o.date = t.date \
                       ORDER BY o.date"}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // views = 1000·d + 7·d² for day d of the emulator's `web.daily`.
    assert_eq!(v["rows"], json!([[10, 1007], [20, 2028], [30, 3063]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generators_past_the_limit_fail_with_memory_limit_and_the_gateway_stays_healthy() {
    let trino = backend(1000).await;
    let data = tempfile::tempdir().unwrap();
    write_orders(data.path());
    let (port, admin) = (free_port(), free_port());
    let yaml = config_yaml(
        &[("main", port)],
        admin,
        &[("adhoc", "round_robin")],
        &[("trino-1", trino.url(), "adhoc")],
        "",
    ) + &format!(
        "hybrid:\n  max_memory_mb: 64\n  timeout_seconds: 30\n  tables:\n    orders: \"{}/orders.parquet\"\n",
        data.path().display()
    );
    let mut gw = Gateway::start(&yaml, port, admin).await;
    ordinary_query_works(&gw).await;
    let baseline = peak_rss(gw.pid());

    let local = [
        // The red-team queries as reported (against a 2 GiB limit they peaked at 3.1 GB and
        // 1.6 GB of RSS).
        "SELECT count(*) FROM unnest(range(1, 100000000))",
        "SELECT length(repeat('x', 300000000))",
        // Scaled to just past 64 MiB.
        "SELECT count(*) FROM unnest(range(1, 10000000))",
        "SELECT length(repeat('x', 40000000))",
        // A row in a subquery feeding an unnest that repeats it.
        "SELECT sum(length(s)) FROM (SELECT unnest(l) AS x, s FROM \
         (SELECT range(1, 2000000) AS l, repeat('y', 30) AS s))",
    ];
    for sql in local {
        let (status, v) = hybrid(&gw, json!({"sql": sql})).await;
        assert_eq!(
            (status, v["error"]["type"].as_str()),
            (422, Some("memory_limit")),
            "{sql}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains("hybrid.max_memory_mb"), "{message}");
    }
    // With a registration: the remote phase succeeds, the local one is refused.
    let (status, v) = hybrid(
        &gw,
        json!({"register": {"t": "SELECT * FROM web.daily"},
               "sql": "SELECT count(*) FROM t JOIN \
                       (SELECT unnest(range(1, 100000000)) AS x) u ON true"}),
    )
    .await;
    assert_eq!(
        (status, v["error"]["type"].as_str()),
        (422, Some("memory_limit")),
        "{v}"
    );

    // Nothing came near the generated sizes (hundreds of MB each), and the gateway still works.
    let peak = peak_rss(gw.pid());
    assert!(
        peak < baseline + 256 * 1024 * 1024,
        "peak RSS {} MiB, baseline {} MiB",
        peak >> 20,
        baseline >> 20
    );
    assert!(gw.exited().is_none(), "{}", gw.log());
    ordinary_query_works(&gw).await;
    let live = reqwest::get(format!("{}/livez", gw.admin)).await.unwrap();
    assert!(live.status().is_success());
}
