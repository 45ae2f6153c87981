#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Micro-benchmarks of the per-request work (`cargo bench --bench micro`): policy matching with
//! 1, 20 and 200 policies, path and query-id parsing, the snapshot load, the query-id map at one
//! million entries, and reading the query id out of realistic submission answers.
//!
//! The query-id map benchmark also prints the resident memory that one million remembered ids
//! cost (the target is at most 128 MiB).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use trino_edge::config::parse_str;
use trino_edge::proxy::target::classify;
use trino_edge::proxy::Submitted;
use trino_edge::query_id::coordinator_id;
use trino_edge::routing::{choose_group, RequestFacts};
use trino_edge::snapshot::SnapshotHandle;
use trino_edge::stickiness::Stickiness;

/// A config with `n` policies of realistic shape; only the last one matches the benchmark request.
fn config(n: usize) -> String {
    let mut y = String::from(
        "proxy: { listeners: [{ name: main, address: \"127.0.0.1:1\" }] }\nadmin: { address: \"127.0.0.1:2\" }\nrouting:\n  default_group: adhoc\n  policies:\n",
    );
    for i in 0..n {
        let last = i + 1 == n;
        let user = if last {
            "^svc_".to_string()
        } else {
            format!("^team{i}_")
        };
        y += &format!(
            "    - {{ name: p{i}, priority: {}, match: {{ client_tags_all: [etl], source: \"^airflow\", user: \"{user}\" }}, group: etl }}\n",
            n - i
        );
    }
    y += "groups: [{ name: adhoc }, { name: etl }]\nbackends:\n";
    for i in 0..4 {
        y += &format!(
            "  - {{ name: b{i}, url: \"http://127.0.0.1:{}\", group: {} }}\n",
            9000 + i,
            if i % 2 == 0 { "adhoc" } else { "etl" }
        );
    }
    y += "health: { enabled: false }\ndatabase: { url: \"sqlite::memory:\" }\n";
    y
}

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("x-trino-user", "svc_loader"),
        ("x-trino-source", "airflow-prod"),
        ("x-trino-client-tags", "nightly,etl"),
        ("host", "trino.example.com:8443"),
        ("user-agent", "trino-python-client/0.340.0"),
        ("accept-encoding", "gzip, deflate"),
        ("x-trino-catalog", "hive"),
        ("x-trino-schema", "web"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    h
}

fn policies(c: &mut Criterion) {
    let mut g = c.benchmark_group("choose_group");
    let h = headers();
    for n in [1usize, 20, 200] {
        let cfg = parse_str("bench", &config(n)).unwrap();
        let snaps = SnapshotHandle::new(&cfg).unwrap();
        let snap = snaps.load();
        g.bench_with_input(BenchmarkId::new("last_policy_matches", n), &n, |b, _| {
            b.iter(|| {
                let facts = RequestFacts::from_headers("main", black_box(&h)).unwrap();
                black_box(choose_group(&snap, &facts))
            })
        });
    }
    g.finish();
}

const ID: &str = "20261123_164501_04217_k3f9a";

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let page = format!("/v1/statement/executing/{ID}/y5c2d7a3e1b0f9a8c6d4e2f0a1b3c5d7e9f1a2b4/42");
    g.bench_function("classify_page_path", |b| {
        b.iter(|| black_box(classify(&Method::GET, black_box(&page), None).is_ok()))
    });
    g.bench_function("classify_submit", |b| {
        b.iter(|| black_box(classify(&Method::POST, black_box("/v1/statement"), None).is_ok()))
    });
    g.bench_function("coordinator_id", |b| {
        b.iter(|| black_box(coordinator_id(black_box(ID))))
    });
    g.finish();
}

fn snapshot(c: &mut Criterion) {
    let cfg = parse_str("bench", &config(20)).unwrap();
    let snaps = SnapshotHandle::new(&cfg).unwrap();
    c.bench_function("snapshot_load", |b| {
        b.iter(|| black_box(snaps.load().version))
    });
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn query_map(c: &mut Criterion) {
    const N: usize = 1_000_000;
    let cfg = parse_str("bench", &config(1)).unwrap();
    let snap = SnapshotHandle::new(&cfg).unwrap().load();
    let backend = snap.backends[0].clone();
    let ids: Vec<String> = (0..N)
        .map(|i| format!("20261123_164501_{i:07}_k3f9a"))
        .collect();
    let before = rss_bytes();
    let map = Stickiness::new(N, Duration::from_secs(86_400));
    for id in &ids {
        map.learn_query(id, &backend);
    }
    let after = rss_bytes();
    eprintln!(
        "query-id map: {N} ids remembered in {:.1} MiB of resident memory",
        (after.saturating_sub(before)) as f64 / (1 << 20) as f64
    );
    let mut g = c.benchmark_group("query_map_1m");
    let mut i = 0usize;
    g.bench_function("resolve_hit", |b| {
        b.iter(|| {
            i = (i + 7919) % N;
            black_box(map.resolve_query(&ids[i]).source())
        })
    });
    g.bench_function("resolve_by_coordinator_id", |b| {
        b.iter(|| {
            black_box(
                map.resolve_query(black_box("20261124_000000_99999_k3f9a"))
                    .source(),
            )
        })
    });
    let mut j = 0usize;
    g.bench_function("learn", |b| {
        b.iter(|| {
            j += 1;
            // Re-learning existing ids keeps the map at 1M entries (and the same memory).
            black_box(map.learn_query(&ids[j % N], &backend))
        })
    });
    g.finish();
}

/// A realistic first answer of a submission (shape of Trino 4xx), and a larger one with columns
/// and data, as some clients get when the query finishes at once.
fn answers() -> (String, String) {
    let small = format!(
        r#"{{"id":"{ID}","infoUri":"https://trino.example.com/ui/query.html?{ID}","nextUri":"https://trino.example.com/v1/statement/queued/{ID}/y5c2d7a3e1b0f9a8c6d4e2f0a1b3c5d7e9f1a2b4/1","stats":{{"state":"QUEUED","queued":true,"scheduled":false,"nodes":0,"totalSplits":0,"queuedSplits":0,"runningSplits":0,"completedSplits":0,"cpuTimeMillis":0,"wallTimeMillis":0,"queuedTimeMillis":0,"elapsedTimeMillis":0,"processedRows":0,"processedBytes":0,"physicalInputBytes":0,"physicalWrittenBytes":0,"peakMemoryBytes":0,"spilledBytes":0}},"warnings":[]}}"#
    );
    let rows: Vec<String> = (0..200)
        .map(|i| format!(r#"[{i},"name-{i}",{}.5,"2026-11-23"]"#, i * 3))
        .collect();
    let large = format!(
        r#"{{"id":"{ID}","infoUri":"https://trino.example.com/ui/query.html?{ID}","columns":[{{"name":"id","type":"bigint","typeSignature":{{"rawType":"bigint","arguments":[]}}}},{{"name":"name","type":"varchar","typeSignature":{{"rawType":"varchar","arguments":[{{"kind":"LONG","value":2147483647}}]}}}},{{"name":"v","type":"double","typeSignature":{{"rawType":"double","arguments":[]}}}},{{"name":"d","type":"date","typeSignature":{{"rawType":"date","arguments":[]}}}}],"data":[{}],"stats":{{"state":"FINISHED","queued":false,"scheduled":true}},"warnings":[]}}"#,
        rows.join(",")
    );
    (small, large)
}

fn submission_answer(c: &mut Criterion) {
    let (small, large) = answers();
    let mut g = c.benchmark_group("submission_id");
    for (name, body) in [
        ("queued_answer", &small),
        ("finished_answer_200_rows", &large),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let a = Submitted::parse(black_box(body.as_bytes())).unwrap();
                black_box((a.finished(), a.id.map(|s| s.len())))
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = policies, parsing, snapshot, query_map, submission_answer
}
criterion_main!(benches);
