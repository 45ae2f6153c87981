#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Two gateway instances that share nothing keep each other's queries going (coordinator ids).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_submitted_through_one_instance_continues_through_another() {
    let b1 = backend(100).await;
    let b2 = backend(100).await;
    let a = simple_gateway(&[&b1, &b2], "round_robin").await;
    let b = simple_gateway(&[&b1, &b2], "round_robin").await;

    // Before B has seen any query of these coordinators it cannot know the owner: a clean 404,
    // never a guess.
    let via_a = Client::new(&a.url);
    let first = via_a
        .submit("SELECT * FROM UNNEST(sequence(1, 1000))", &[])
        .await;
    let first: serde_json::Value = first.json().await.unwrap();
    let next = first["nextUri"].as_str().unwrap();
    let r = reqwest::get(via_a.rebased(&b.url).follow_url(next))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_trino_error(&r.text().await.unwrap(), "QUERY_NOT_FOUND");

    // B learns both coordinator ids from its own traffic (round robin: one query each).
    let via_b = Client::new(&b.url);
    let learned: Vec<String> = vec![
        via_b.run("SELECT 1", &[]).await.id,
        via_b.run("SELECT 1", &[]).await.id,
    ];
    let mut coords: Vec<&str> = learned.iter().map(|id| coordinator_of(id)).collect();
    coords.sort();
    let mut want = vec![b1.coordinator_id(), b2.coordinator_id()];
    want.sort();
    assert_eq!(coords, want);

    // Now every query submitted through A can be paged, cancelled and inspected through B.
    for _ in 0..4 {
        let out = via_a
            .rebased(&b.url)
            .run("SELECT * FROM UNNEST(sequence(1, 1000))", &[])
            .await;
        assert!(out.error.is_none(), "{:?}", out.error);
        assert_eq!(out.rows.len(), 1000);
        assert!(out.next_uris.len() >= 10);
        let info = reqwest::get(format!("{}/v1/query/{}", b.url, out.id))
            .await
            .unwrap();
        assert_eq!(info.status(), 200);
    }
    let readyz: serde_json::Value = reqwest::get(format!("{}/readyz", b.admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(readyz["knownCoordinators"], 2);
}
