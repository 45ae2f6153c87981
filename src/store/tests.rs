//! Unit tests on `sqlite::memory:` (the three real databases run the full scenario in
//! `tests/store.rs`).

use super::*;

fn group(name: &str) -> GroupConfig {
    serde_json::from_value(serde_json::json!({ "name": name })).unwrap()
}

fn backend(name: &str, group: &str) -> BackendConfig {
    serde_json::from_value(serde_json::json!({
        "name": name, "url": format!("http://{name}:8080"), "group": group,
        "max_queued_queries": 7
    }))
    .unwrap()
}

fn policy(name: &str, group: &str) -> PolicyConfig {
    serde_json::from_value(serde_json::json!({
        "name": name, "group": group, "priority": 3,
        "match": { "user": "^etl", "client_tags_all": ["a", "b"] }
    }))
    .unwrap()
}

fn names<T: Stored>(objs: &[T]) -> Vec<&str> {
    objs.iter().map(|o| o.name()).collect()
}

async fn memory() -> Store {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.dialect(), Dialect::Sqlite);
    assert_eq!(store.migrate().await.unwrap(), Store::migration_count());
    store
}

#[tokio::test]
async fn memory_database_keeps_its_schema_and_migrates_once() {
    let store = memory().await;
    assert_eq!(store.migrate().await.unwrap(), 0);
    // Clones share the single connection, hence the same in-memory database.
    let clone = store.clone();
    assert_eq!(clone.version().await.unwrap(), 0);
    assert!(clone.is_empty().await.unwrap());
}

#[tokio::test]
async fn crud_bumps_version_and_keeps_positions() {
    let store = memory().await;
    assert!(store
        .seed(&[group("g1")], &[backend("b1", "g1")], &[])
        .await
        .unwrap());
    assert_eq!(store.version().await.unwrap(), 1);
    assert!(!store.seed(&[group("x")], &[], &[]).await.unwrap());
    assert_eq!(store.version().await.unwrap(), 1);

    assert_eq!(store.create_group(&group("g0")).await.unwrap(), 2);
    assert_eq!(store.create_policy(&policy("p", "g0")).await.unwrap(), 3);
    assert!(matches!(
        store.create_group(&group("g1")).await,
        Err(StoreError::Conflict(m)) if m == "group `g1`"
    ));
    assert_eq!(store.version().await.unwrap(), 3);

    // Rename g1 → g2 in place: it stays first.
    assert_eq!(store.replace_group("g1", &group("g2")).await.unwrap(), 4);
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.version, 4);
    assert_eq!(names(&loaded.groups), ["g2", "g0"]);
    assert_eq!(loaded.backends[0].max_queued_queries, Some(7));
    assert_eq!(loaded.policies[0].match_.client_tags_all, ["a", "b"]);

    let missing = store.replace_backend("nope", &backend("nope", "g0")).await;
    assert_eq!(missing.unwrap_err().to_string(), "backend `nope` not found");
    assert!(matches!(
        store.replace_group("g0", &group("g2")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.delete(Kind::Policy, "nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.version().await.unwrap(), 4);
    assert_eq!(store.delete(Kind::Policy, "p").await.unwrap(), 5);

    let long = "x".repeat(MAX_NAME_LEN + 1);
    assert!(matches!(
        store.create_group(&group(&long)).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.replace_all(&[group("a"), group("a")], &[], &[]).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.version().await.unwrap(), 5);
    assert_eq!(
        store
            .replace_all(&[group("z"), group("a")], &[backend("b", "a")], &[])
            .await
            .unwrap(),
        6
    );
    let loaded = store.load().await.unwrap();
    assert_eq!(names(&loaded.groups), ["z", "a"]);
    assert_eq!(names(&loaded.backends), ["b"]);
    assert!(loaded.policies.is_empty());
}

#[tokio::test]
async fn corrupt_body_is_reported() {
    let store = memory().await;
    sqlx::query("INSERT INTO te_groups (name, position, body) VALUES ('g', 0, '{\"name\":\"g\",\"bogus\":1}')")
        .execute(&store.pool)
        .await
        .unwrap();
    let err = store.load().await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("group `g`"), "{err}");
}

#[tokio::test]
async fn history_and_coordinators() {
    let store = memory().await;
    let rec = |id: &str, ms: i64| HistoryRecord {
        query_id: id.to_string(),
        submitted_ms: ms,
        user: Some("u".into()),
        backend: Some("b1".into()),
        sql: Some("SELECT 'ü'".into()),
        ..Default::default()
    };
    let batch = [
        rec("q1", 10),
        rec("q2", 20),
        rec("q1", 99),
        rec(&"x".repeat(200), 5),
    ];
    store.insert_history(&batch).await.unwrap();
    store.insert_history(&batch).await.unwrap();
    let page = store.history(&HistoryFilter::default()).await.unwrap();
    assert_eq!(page.queries, vec![rec("q2", 20), rec("q1", 10)]);
    assert_eq!(page.next_cursor, None);
    let page = store
        .history(&HistoryFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.queries, vec![rec("q2", 20)]);
    let page = store
        .history(&HistoryFilter {
            limit: 1,
            cursor: page.next_cursor,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.queries, vec![rec("q1", 10)]);
    assert_eq!(page.next_cursor, None);
    assert!(matches!(
        store
            .history(&HistoryFilter {
                cursor: Some("garbage".into()),
                ..Default::default()
            })
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(
        store.query_backend("q1").await.unwrap().as_deref(),
        Some("b1")
    );
    assert_eq!(store.query_backend("q9").await.unwrap(), None);
    assert_eq!(
        store.history_entry("q2").await.unwrap(),
        Some(rec("q2", 20))
    );

    store.save_coordinator("abcde", "b1", 1).await.unwrap();
    store.save_coordinator("abcde", "b2", 2).await.unwrap();
    store.save_coordinator("fghij", "b1", 2).await.unwrap();
    assert_eq!(
        store.coordinator("abcde").await.unwrap().as_deref(),
        Some("b2")
    );
    assert_eq!(store.coordinator("zzzzz").await.unwrap(), None);
    assert_eq!(
        store.coordinators().await.unwrap(),
        vec![
            ("abcde".to_string(), "b2".to_string()),
            ("fghij".to_string(), "b1".to_string())
        ]
    );
    assert!(matches!(
        store.save_coordinator(&"c".repeat(17), "b1", 0).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test]
async fn unmigrated_database_and_unsupported_url() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert!(matches!(store.version().await, Err(StoreError::Db(_))));
    let err = Store::connect("redis://localhost").await.unwrap_err();
    assert!(matches!(err, StoreError::Unsupported(_)), "{err}");
}

#[tokio::test]
async fn sqlite_file_is_created_and_shared_by_two_stores() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("edge.db").display());
    let (a, b) = (
        Store::connect(&url).await.unwrap(),
        Store::connect(&url).await.unwrap(),
    );
    let (x, y) = tokio::join!(a.migrate(), b.migrate());
    assert_eq!(x.unwrap() + y.unwrap(), Store::migration_count());
    a.create_group(&group("g")).await.unwrap();
    assert_eq!(b.version().await.unwrap(), 1);
    assert_eq!(names(&b.load().await.unwrap().groups), ["g"]);
}

#[tokio::test]
async fn a_backend_in_several_groups_keeps_them_all_and_its_first_in_the_group_column() {
    let store = memory().await;
    let multi: BackendConfig = serde_json::from_value(serde_json::json!({
        "name": "m", "url": "http://m:8080", "groups": ["g2", "g1"]
    }))
    .unwrap();
    store
        .seed(
            &[group("g1"), group("g2")],
            &[backend("b1", "g1"), multi.clone()],
            &[],
        )
        .await
        .unwrap();
    let columns = |name: &'static str| {
        let store = store.clone();
        async move {
            let row = sqlx::query("SELECT group_name, body FROM te_backends WHERE name = ?")
                .bind(name)
                .fetch_one(&store.pool)
                .await
                .unwrap();
            (
                required_text(&row, 0, "group_name").unwrap(),
                required_text(&row, 1, "body").unwrap(),
            )
        }
    };
    // A single-group backend's row is exactly what it was before `groups` existed.
    assert_eq!(
        columns("b1").await,
        (
            "g1".to_string(),
            r#"{"name":"b1","url":"http://b1:8080","group":"g1","enabled":true,"weight":1,"rewrite_host":false,"max_queued_queries":7,"max_running_queries":null}"#
                .to_string()
        )
    );
    let (column, body) = columns("m").await;
    assert_eq!(column, "g2");
    assert!(body.contains(r#""groups":["g2","g1"]"#), "{body}");
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.backends[1].groups, ["g2", "g1"]);

    // Replacing it with one group writes `group` again, and the column follows.
    store
        .replace_backend("m", &backend("m", "g1"))
        .await
        .unwrap();
    let (column, body) = columns("m").await;
    assert_eq!(column, "g1");
    assert!(body.contains(r#""group":"g1""#), "{body}");

    // Every group name must fit a name column; a backend needs a group.
    let mut long = backend("x", "g1");
    long.groups.push("y".repeat(MAX_NAME_LEN + 1));
    assert!(matches!(
        store.create_backend(&long).await,
        Err(StoreError::Invalid(_))
    ));
    let mut none = backend("x", "g1");
    none.groups.clear();
    assert!(matches!(
        store.create_backend(&none).await,
        Err(StoreError::Invalid(m)) if m == "backend `x` names no group"
    ));
}

#[tokio::test]
async fn rows_written_with_group_or_groups_read_the_same() {
    let store = memory().await;
    for (i, body) in [
        r#"{"name":"a","url":"http://a:8080","group":"g"}"#,
        r#"{"name":"b","url":"http://b:8080","groups":["g"]}"#,
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO te_backends (name, position, group_name, body) VALUES (?, ?, 'g', ?)",
        )
        .bind(if i == 0 { "a" } else { "b" })
        .bind(i64::try_from(i).unwrap())
        .bind(body)
        .execute(&store.pool)
        .await
        .unwrap();
    }
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.backends[0].groups, ["g"]);
    assert_eq!(loaded.backends[1].groups, ["g"]);
}
