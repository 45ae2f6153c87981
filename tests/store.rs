#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The database store against real databases: one scenario, run on SQLite (a temp file unless
//! `TRINO_EDGE_TEST_SQLITE` names one), PostgreSQL (`TRINO_EDGE_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and MySQL/MariaDB (`TRINO_EDGE_TEST_MYSQL`, default
//! `mysql://root@127.0.0.1:3306/test`).
//!
//! Each database gets exactly one test function, which drops every `te_*` table first and then runs
//! the whole scenario sequentially. An unreachable database fails the test: CI starts the services.

use std::collections::HashSet;

use trino_edge::config::{BackendConfig, GroupConfig, PolicyConfig};
use trino_edge::store::{
    Dialect, HistoryFilter, HistoryRecord, Kind, Store, StoreError, StoredRouting,
};

#[tokio::test]
async fn store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = std::env::var("TRINO_EDGE_TEST_SQLITE").unwrap_or_else(|_| {
        format!(
            "sqlite://{}",
            dir.path().join("trino-edge-test.db").display()
        )
    });
    scenario("TRINO_EDGE_TEST_SQLITE", &url, Dialect::Sqlite).await;
}

#[tokio::test]
async fn store_on_postgres() {
    let url = std::env::var("TRINO_EDGE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    scenario("TRINO_EDGE_TEST_POSTGRES", &url, Dialect::Postgres).await;
}

#[tokio::test]
async fn store_on_mysql() {
    let url = std::env::var("TRINO_EDGE_TEST_MYSQL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string());
    scenario("TRINO_EDGE_TEST_MYSQL", &url, Dialect::MySql).await;
}

async fn connect(var: &str, url: &str) -> Store {
    match Store::connect(url).await {
        Ok(store) => store,
        Err(e) => panic!(
            "cannot connect to the test database ({var}): {e}. Start the database (CI does) or \
             point {var} at one."
        ),
    }
}

async fn scenario(var: &str, url: &str, dialect: Dialect) {
    let store = connect(var, url).await;
    let other = connect(var, url).await; // a second gateway instance
    assert_eq!(store.dialect(), dialect);

    migrations(&store, &other).await;
    config(&store, &other).await;
    history(&store).await;
    coordinators(&store, &other).await;
    login_pins(&store, &other).await;
}

// ---------------------------------------------------------------------------------------------
// Migrations

async fn migrations(store: &Store, other: &Store) {
    let total = Store::migration_count();
    assert!(total > 0);

    store.drop_all_for_tests().await.unwrap();
    assert_eq!(store.migrate().await.unwrap(), total);
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "second migrate applies nothing"
    );
    assert_eq!(other.migrate().await.unwrap(), 0);

    // Two instances starting at once on an empty database: exactly one applies each migration,
    // neither fails.
    for round in 0..3 {
        store.drop_all_for_tests().await.unwrap();
        let (a, b) = tokio::join!(store.migrate(), other.migrate());
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a + b, total, "round {round}: {a} + {b}");
    }
    let (a, b) = tokio::join!(store.migrate(), other.migrate());
    assert_eq!((a.unwrap(), b.unwrap()), (0, 0));
    assert_eq!(store.version().await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// Routing configuration

fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn group(name: &str) -> GroupConfig {
    from_json(serde_json::json!({ "name": name }))
}

fn full_group(name: &str) -> GroupConfig {
    from_json(serde_json::json!({ "name": name, "strategy": "least_load", "strict": true }))
}

fn backend(name: &str, group: &str) -> BackendConfig {
    from_json(serde_json::json!({
        "name": name, "url": format!("http://{name}.example:8080"), "group": group
    }))
}

/// Every field of a backend set to a non-default value.
fn full_backend(name: &str, group: &str) -> BackendConfig {
    from_json(serde_json::json!({
        "name": name,
        "url": "https://trino-1.example.com:8443/",
        "group": group,
        "enabled": false,
        "weight": 5,
        "rewrite_host": true,
        "max_queued_queries": 10,
        "max_running_queries": 20
    }))
}

fn policy(name: &str, group: &str) -> PolicyConfig {
    from_json(serde_json::json!({ "name": name, "group": group }))
}

/// Every match condition and option of a policy.
fn full_policy(name: &str, group: &str) -> PolicyConfig {
    from_json(serde_json::json!({
        "name": name,
        "priority": -7,
        "group": group,
        "fallback_group": "adhoc",
        "match": {
            "listener": "internal",
            "client_tags_all": ["etl", "nightly"],
            "client_tags_any": ["a", "b", "ü"],
            "source": "^(airflow|dbt)$",
            "user": "^svc-.*",
            "host": "trino.example.com",
            "headers": { "X-Team": "data", "X-Env": "prod \"quoted\" 'single' ?" }
        }
    }))
}

fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap()
}

fn names<T: serde::Serialize>(objs: &[T]) -> Vec<String> {
    objs.iter()
        .map(|o| json(o)["name"].as_str().unwrap().to_string())
        .collect()
}

/// The version both instances see, checked against `load()`.
async fn assert_version(store: &Store, other: &Store, expected: i64) {
    assert_eq!(store.version().await.unwrap(), expected);
    assert_eq!(other.version().await.unwrap(), expected);
    assert_eq!(other.load().await.unwrap().version, expected);
}

async fn config(store: &Store, other: &Store) {
    assert!(store.is_empty().await.unwrap());
    assert_eq!(store.load().await.unwrap(), StoredRouting::default());

    // Seed once.
    let groups = vec![full_group("adhoc"), group("etl")];
    let backends = vec![
        full_backend("b1", "adhoc"),
        backend("b2", "etl"),
        backend("a0", "etl"),
    ];
    let policies = vec![full_policy("p-etl", "etl"), policy("p-all", "adhoc")];
    assert!(store.seed(&groups, &backends, &policies).await.unwrap());
    assert_version(store, other, 1).await;
    assert!(!store.is_empty().await.unwrap());
    let expected = StoredRouting {
        version: 1,
        groups: groups.clone(),
        backends: backends.clone(),
        policies: policies.clone(),
    };
    let loaded = other.load().await.unwrap();
    assert_eq!(loaded, expected, "load returns exactly what was seeded");
    assert_eq!(
        json(&loaded.backends[0]),
        json(&full_backend("b1", "adhoc"))
    );
    assert_eq!(
        json(&loaded.policies[0]),
        json(&full_policy("p-etl", "etl"))
    );
    assert_eq!(
        names(&loaded.backends),
        ["b1", "b2", "a0"],
        "stored order, not name order"
    );

    // Not again, from either instance.
    assert!(!store.seed(&[group("x")], &[], &[]).await.unwrap());
    assert!(!other.seed(&groups, &backends, &policies).await.unwrap());
    assert_version(store, other, 1).await;

    // Creates append and bump.
    assert_eq!(store.create_group(&group("g3")).await.unwrap(), 2);
    assert_eq!(store.create_backend(&backend("b3", "g3")).await.unwrap(), 3);
    assert_eq!(
        store.create_policy(&full_policy("p3", "g3")).await.unwrap(),
        4
    );
    assert_version(store, other, 4).await;
    let loaded = store.load().await.unwrap();
    assert_eq!(names(&loaded.groups), ["adhoc", "etl", "g3"]);
    assert_eq!(names(&loaded.backends), ["b1", "b2", "a0", "b3"]);
    assert_eq!(names(&loaded.policies), ["p-etl", "p-all", "p3"]);

    // Create conflicts leave everything as it was.
    let conflict = store.create_group(&group("adhoc")).await.unwrap_err();
    assert!(
        matches!(&conflict, StoreError::Conflict(m) if m == "group `adhoc`"),
        "{conflict}"
    );
    assert_eq!(conflict.to_string(), "group `adhoc` already exists");
    assert!(matches!(
        other.create_backend(&backend("b1", "etl")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.create_policy(&policy("p3", "etl")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_version(store, other, 4).await;
    assert_eq!(store.load().await.unwrap(), loaded);

    // Replace in place keeps the position.
    let mut b1 = full_backend("b1", "etl");
    b1.weight = 9;
    b1.max_running_queries = None;
    assert_eq!(store.replace_backend("b1", &b1).await.unwrap(), 5);
    let loaded = store.load().await.unwrap();
    assert_eq!(names(&loaded.backends), ["b1", "b2", "a0", "b3"]);
    assert_eq!(json(&loaded.backends[0]), json(&b1));
    assert_eq!(loaded.backends[0].max_running_queries, None);

    // Rename via replace: same position, new name.
    assert_eq!(
        store
            .replace_group("etl", &full_group("batch"))
            .await
            .unwrap(),
        6
    );
    let mut p = full_policy("p-etl-2", "batch");
    p.priority = 99;
    assert_eq!(store.replace_policy("p-etl", &p).await.unwrap(), 7);
    assert_version(store, other, 7).await;
    let loaded = other.load().await.unwrap();
    assert_eq!(names(&loaded.groups), ["adhoc", "batch", "g3"]);
    assert_eq!(json(&loaded.groups[1]), json(&full_group("batch")));
    assert_eq!(names(&loaded.policies), ["p-etl-2", "p-all", "p3"]);
    assert_eq!(loaded.policies[0].priority, 99);

    // Replace errors: missing name, rename onto an existing name.
    let missing = store
        .replace_group("nope", &group("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(&missing, StoreError::NotFound(m) if m == "group `nope`"),
        "{missing}"
    );
    assert_eq!(missing.to_string(), "group `nope` not found");
    assert!(matches!(
        store.replace_backend("etl-gone", &backend("x", "g3")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.replace_policy("p3", &policy("p-all", "g3")).await,
        Err(StoreError::Conflict(m)) if m == "policy `p-all`"
    ));
    assert!(matches!(
        store.replace_backend("b2", &backend("b3", "g3")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_version(store, other, 7).await;

    // Delete.
    let missing = store.delete(Kind::Backend, "nope").await.unwrap_err();
    assert_eq!(missing.to_string(), "backend `nope` not found");
    assert!(matches!(
        store.delete(Kind::Group, "etl").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete(Kind::Policy, "p-etl").await,
        Err(StoreError::NotFound(_))
    ));
    assert_version(store, other, 7).await;
    assert_eq!(store.delete(Kind::Backend, "b2").await.unwrap(), 8);
    assert_eq!(store.delete(Kind::Policy, "p-all").await.unwrap(), 9);
    assert_eq!(store.delete(Kind::Group, "g3").await.unwrap(), 10);
    // A new object goes after the remaining ones, also after a deleted last one.
    assert_eq!(store.create_group(&group("g4")).await.unwrap(), 11);
    assert_version(store, other, 11).await;
    let loaded = store.load().await.unwrap();
    assert_eq!(names(&loaded.groups), ["adhoc", "batch", "g4"]);
    assert_eq!(names(&loaded.backends), ["b1", "a0", "b3"]);
    assert_eq!(names(&loaded.policies), ["p-etl-2", "p3"]);

    // Names the columns cannot hold.
    assert!(matches!(
        store.create_group(&group(&"g".repeat(65))).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store.create_group(&group(&"g".repeat(64))).await.is_ok());
    assert_version(store, other, 12).await;

    // Replace everything at once: one bump, exact round trip, order as given.
    let groups = vec![group("z"), full_group("adhoc"), group("m")];
    let backends: Vec<BackendConfig> = (0..12usize)
        .rev()
        .map(|i| {
            if i.is_multiple_of(3) {
                full_backend(&format!("b{i:02}"), "z")
            } else {
                backend(&format!("b{i:02}"), "m")
            }
        })
        .collect();
    let policies = vec![policy("last", "m"), full_policy("first", "z")];
    assert_eq!(
        other
            .replace_all(&groups, &backends, &policies)
            .await
            .unwrap(),
        13
    );
    assert_version(store, other, 13).await;
    let expected = StoredRouting {
        version: 13,
        groups: groups.clone(),
        backends: backends.clone(),
        policies: policies.clone(),
    };
    assert_eq!(store.load().await.unwrap(), expected);
    // A duplicate name in the input fails before anything changes.
    assert!(matches!(
        store.replace_all(&[group("d"), group("d")], &[], &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.load().await.unwrap(), expected);
    // Replacing with nothing empties the config (a later seed would then apply again).
    assert_eq!(store.replace_all(&[], &[], &[]).await.unwrap(), 14);
    assert!(store.is_empty().await.unwrap());
    assert!(store.seed(&groups, &backends, &policies).await.unwrap());
    assert_version(store, other, 15).await;
    assert_eq!(
        store.load().await.unwrap(),
        StoredRouting {
            version: 15,
            ..expected
        }
    );

    concurrent_writers(store, other).await;
}

/// Two instances writing at once: writers serialize on the version row, so every change gets its
/// own version, positions follow the order of the versions, and a name is created only once.
async fn concurrent_writers(store: &Store, other: &Store) {
    let before = store.load().await.unwrap();
    let creates = (0..10).map(|i| {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        async move {
            let name = format!("c{i}");
            (name.clone(), s.create_group(&group(&name)).await.unwrap())
        }
    });
    let mut created = futures_join_all(creates).await;
    let mut versions: Vec<i64> = created.iter().map(|(_, v)| *v).collect();
    versions.sort();
    let first = before.version + 1;
    assert_eq!(versions, (first..first + 10).collect::<Vec<_>>());
    created.sort_by_key(|(_, v)| *v);
    let loaded = store.load().await.unwrap();
    let mut want = names(&before.groups);
    want.extend(created.into_iter().map(|(n, _)| n));
    assert_eq!(names(&loaded.groups), want, "appended in version order");

    let same = (0..6).map(|i| {
        let s = if i % 2 == 0 {
            store.clone()
        } else {
            other.clone()
        };
        async move { s.create_group(&group("contested")).await }
    });
    let results = futures_join_all(same).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(results
        .iter()
        .all(|r| r.is_ok() || matches!(r, Err(StoreError::Conflict(_)))));
    assert_version(store, other, first + 10).await;
}

/// `join_all` without the futures crate: one task per future.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Query history

const BASE_MS: i64 = 1_760_000_000_000;

fn record(i: usize) -> HistoryRecord {
    HistoryRecord {
        query_id: format!("20251109_{:06}_{:05}_edge{}", i / 2, i, i % 2),
        // Pairs share a timestamp, so the query id breaks ties.
        submitted_ms: BASE_MS + (i as i64 / 2) * 1000,
        user: Some(if i.is_multiple_of(2) { "alice" } else { "bob" }.to_string()),
        source: if i % 5 == 4 {
            None
        } else {
            Some(["trino-cli", "dbt", "airflow"][i % 3].to_string())
        },
        client_tags: Some(format!("tag{},etl", i % 4)),
        group: Some(if i.is_multiple_of(3) { "adhoc" } else { "etl" }.into()),
        backend: Some(format!("b{}", i % 4).into()),
        policy: i.is_multiple_of(2).then(|| "p-etl".into()),
        gateway: Some(format!("gw-{}", i % 2).into()),
        sql: Some(format!("SELECT {i}, 'ünïcode ☃', ? FROM t -- \"quoted\"")),
        statement_type: i.is_multiple_of(3).then(|| "select".into()),
        catalogs: (i % 4 == 1).then(|| "hive,iceberg".into()),
        // Some were held in the gateway's queue first (read back as written on every database).
        queued_ms: (i % 3 == 2).then_some(i as i64 * 1_234),
        queued_id: (i % 3 == 2).then(|| format!("20251109_{:06}_{:05}_0abcd", i / 2, i)),
    }
}

/// Newest first, as the store lists.
fn newest_first(mut v: Vec<HistoryRecord>) -> Vec<HistoryRecord> {
    v.sort_by(|a, b| {
        b.submitted_ms
            .cmp(&a.submitted_ms)
            .then_with(|| b.query_id.cmp(&a.query_id))
    });
    v
}

/// Every page of `filter` (with `limit`), checked for size and cursor.
async fn all_pages(store: &Store, filter: &HistoryFilter) -> (Vec<HistoryRecord>, usize) {
    let mut filter = filter.clone();
    let mut out = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.history(&filter).await.unwrap();
        pages += 1;
        assert!(page.queries.len() <= filter.limit.max(1));
        out.extend(page.queries);
        match page.next_cursor {
            Some(c) => filter.cursor = Some(c),
            None => return (out, pages),
        }
        assert!(pages < 100, "pagination does not end");
    }
}

async fn history(store: &Store) {
    let records: Vec<HistoryRecord> = (0..25).map(record).collect();
    assert_eq!(
        store
            .history(&HistoryFilter::default())
            .await
            .unwrap()
            .queries,
        vec![]
    );

    // Two overlapping batches, then a retry of the first one: duplicates are skipped.
    store.insert_history(&records[..15]).await.unwrap();
    store.insert_history(&records[10..]).await.unwrap();
    store.insert_history(&records[..15]).await.unwrap();
    store.insert_history(&[]).await.unwrap();
    // A duplicate id does not overwrite the stored record.
    let mut changed = record(3);
    changed.user = Some("mallory".to_string());
    store.insert_history(&[changed]).await.unwrap();

    let expected = newest_first(records.clone());
    let all = store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(
        all.queries, expected,
        "every field round-trips, newest first"
    );
    assert_eq!(all.next_cursor, None);

    // Pagination: 25 records, pages of 10.
    let filter = HistoryFilter {
        limit: 10,
        ..Default::default()
    };
    let first = store.history(&filter).await.unwrap();
    assert_eq!(first.queries, expected[..10]);
    let cursor = first.next_cursor.clone().unwrap();
    // A query that arrives between pages sorts before the cursor and does not shift the pages.
    let newer = HistoryRecord {
        query_id: "20251109_999999_99999_late".to_string(),
        submitted_ms: BASE_MS + 1_000_000,
        ..Default::default()
    };
    store
        .insert_history(std::slice::from_ref(&newer))
        .await
        .unwrap();
    let second = store
        .history(&HistoryFilter {
            cursor: Some(cursor),
            ..filter.clone()
        })
        .await
        .unwrap();
    assert_eq!(second.queries, expected[10..20]);
    let third = store
        .history(&HistoryFilter {
            cursor: second.next_cursor.clone(),
            ..filter.clone()
        })
        .await
        .unwrap();
    assert_eq!(third.queries, expected[20..]);
    assert_eq!(third.next_cursor, None);
    let mut expected = expected;
    expected.insert(0, newer.clone());
    let mut records = records;
    records.push(newer);

    let (paged, pages) = all_pages(store, &filter).await;
    assert_eq!(pages, 3);
    assert_eq!(paged, expected);
    let ids: HashSet<&str> = paged.iter().map(|r| r.query_id.as_str()).collect();
    assert_eq!(ids.len(), 26, "each record exactly once");
    let (paged, pages) = all_pages(
        store,
        &HistoryFilter {
            limit: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((paged.len(), pages), (26, 26));
    assert_eq!(paged, expected);
    // Exact multiple of the page size: the last full page has no cursor.
    let (paged, pages) = all_pages(
        store,
        &HistoryFilter {
            limit: 13,
            ..Default::default()
        },
    )
    .await;
    assert_eq!((paged.len(), pages), (26, 2));

    // Limits: 0 means 100, above 1000 means 1000.
    assert_eq!(
        store
            .history(&HistoryFilter::default())
            .await
            .unwrap()
            .queries
            .len(),
        26
    );
    assert_eq!(
        store
            .history(&HistoryFilter {
                limit: 1_000_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .queries
            .len(),
        26
    );

    // Filters, alone and combined, each checked against the same filter in Rust (also paged).
    let s = |v: &str| Some(v.to_string());
    let since = BASE_MS + 3_000;
    let until = BASE_MS + 9_000;
    type Predicate = Box<dyn Fn(&HistoryRecord) -> bool>;
    let cases: Vec<(HistoryFilter, Predicate)> = vec![
        (
            HistoryFilter {
                user: s("alice"),
                ..Default::default()
            },
            Box::new(|r| r.user.as_deref() == Some("alice")),
        ),
        (
            HistoryFilter {
                source: s("dbt"),
                ..Default::default()
            },
            Box::new(|r| r.source.as_deref() == Some("dbt")),
        ),
        (
            HistoryFilter {
                group: s("adhoc"),
                ..Default::default()
            },
            Box::new(|r| r.group.as_deref() == Some("adhoc")),
        ),
        (
            HistoryFilter {
                backend: s("b2"),
                ..Default::default()
            },
            Box::new(|r| r.backend.as_deref() == Some("b2")),
        ),
        (
            HistoryFilter {
                since_ms: Some(since),
                ..Default::default()
            },
            Box::new(move |r| r.submitted_ms >= since),
        ),
        (
            HistoryFilter {
                until_ms: Some(until),
                ..Default::default()
            },
            Box::new(move |r| r.submitted_ms < until),
        ),
        (
            HistoryFilter {
                user: s("bob"),
                group: s("etl"),
                since_ms: Some(since),
                until_ms: Some(until),
                ..Default::default()
            },
            Box::new(move |r| {
                r.user.as_deref() == Some("bob")
                    && r.group.as_deref() == Some("etl")
                    && r.submitted_ms >= since
                    && r.submitted_ms < until
            }),
        ),
        (
            HistoryFilter {
                user: s("nobody"),
                ..Default::default()
            },
            Box::new(|_| false),
        ),
    ];
    for (i, (filter, pred)) in cases.iter().enumerate() {
        let want: Vec<HistoryRecord> = expected.iter().filter(|r| pred(r)).cloned().collect();
        assert!(want.len() < expected.len(), "case {i} filters something");
        if i < 7 {
            assert!(!want.is_empty(), "case {i} matches something");
        }
        let got = store.history(filter).await.unwrap();
        assert_eq!(got.queries, want, "case {i}: {filter:?}");
        let (paged, _) = all_pages(
            store,
            &HistoryFilter {
                limit: 3,
                ..filter.clone()
            },
        )
        .await;
        assert_eq!(paged, want, "case {i} paged");
    }
    assert!(matches!(
        store
            .history(&HistoryFilter {
                cursor: Some("not-a-cursor".to_string()),
                ..Default::default()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));

    // Single entries.
    for r in &records {
        assert_eq!(
            store.history_entry(&r.query_id).await.unwrap().as_ref(),
            Some(r)
        );
    }
    assert_eq!(store.history_entry("no-such-query").await.unwrap(), None);
    assert_eq!(
        store.query_backend(&records[6].query_id).await.unwrap(),
        Some("b2".to_string())
    );
    assert_eq!(
        store.query_backend(&records[25].query_id).await.unwrap(),
        None
    );
    assert_eq!(store.query_backend("no-such-query").await.unwrap(), None);

    // Over-long values are cut to their columns instead of failing the batch.
    let long = HistoryRecord {
        query_id: "long".to_string(),
        submitted_ms: 1,
        user: Some("ü".repeat(300)),
        client_tags: Some("t".repeat(2000)),
        sql: Some("x".repeat(70_000)),
        catalogs: Some("c".repeat(1500)),
        ..Default::default()
    };
    store.insert_history(&[long]).await.unwrap();
    let got = store.history_entry("long").await.unwrap().unwrap();
    assert_eq!(got.catalogs.map(|t| t.len()), Some(1024));
    assert_eq!(got.user, Some("ü".repeat(256)));
    assert_eq!(got.client_tags.map(|t| t.len()), Some(1024));
    assert_eq!(got.sql.map(|t| t.len()), Some(70_000));
}

// ---------------------------------------------------------------------------------------------
// Coordinators

async fn coordinators(store: &Store, other: &Store) {
    assert_eq!(store.coordinators().await.unwrap(), vec![]);
    store.save_coordinator("kq4mz", "b1", 1).await.unwrap();
    store.save_coordinator("abcde", "b2", 2).await.unwrap();
    // Same values again, then a move to another backend.
    store.save_coordinator("abcde", "b2", 2).await.unwrap();
    other.save_coordinator("kq4mz", "b3", 3).await.unwrap();
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        store.coordinators().await.unwrap(),
        vec![pair("abcde", "b2"), pair("kq4mz", "b3")]
    );
    assert_eq!(
        other.coordinator("kq4mz").await.unwrap(),
        Some("b3".to_string())
    );
    assert_eq!(store.coordinator("zzzzz").await.unwrap(), None);

    // Two instances learning the same id at once both succeed.
    let (a, b) = tokio::join!(
        store.save_coordinator("race1", "b1", 10),
        other.save_coordinator("race1", "b2", 11)
    );
    a.unwrap();
    b.unwrap();
    let owner = store.coordinator("race1").await.unwrap().unwrap();
    assert!(owner == "b1" || owner == "b2", "{owner}");
    assert!(matches!(
        store.save_coordinator(&"c".repeat(17), "b1", 0).await,
        Err(StoreError::Invalid(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// OAuth2 login pins

async fn login_pins(store: &Store, other: &Store) {
    let (h1, h2) = ("a".repeat(64), "b".repeat(64));
    store.save_login_pin(&h1, "b1", 1_000, 0).await.unwrap();
    // Another instance reads it; an older cut-off hides nothing, a newer one hides it.
    assert_eq!(
        other.login_pin(&h1, 500).await.unwrap().as_deref(),
        Some("b1")
    );
    assert_eq!(other.login_pin(&h1, 1_001).await.unwrap(), None);
    assert_eq!(other.login_pin(&h2, 0).await.unwrap(), None);
    // Pinning again moves it; pins older than the TTL go when new ones are written.
    other.save_login_pin(&h1, "b2", 2_000, 0).await.unwrap();
    assert_eq!(
        store.login_pin(&h1, 0).await.unwrap().as_deref(),
        Some("b2")
    );
    store.save_login_pin(&h2, "b1", 9_000, 5_000).await.unwrap();
    assert_eq!(
        store.login_pin(&h1, 0).await.unwrap(),
        None,
        "expired pin deleted"
    );
    assert_eq!(
        store.login_pin(&h2, 0).await.unwrap().as_deref(),
        Some("b1")
    );
    // Two instances pinning the same login at once both succeed.
    let h3 = "c".repeat(64);
    let (a, b) = tokio::join!(
        store.save_login_pin(&h3, "b1", 9_100, 0),
        other.save_login_pin(&h3, "b2", 9_100, 0)
    );
    a.unwrap();
    b.unwrap();
    assert!(store.login_pin(&h3, 0).await.unwrap().is_some());
    assert!(matches!(
        store.save_login_pin("../x", "b1", 0, 0).await,
        Err(StoreError::Invalid(_))
    ));
}
