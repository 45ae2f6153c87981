use super::*;
use crate::config::parse_str;
use crate::snapshot::RuntimeRegistry;

fn snap(queue: &str) -> Snapshot {
    let c = parse_str(
        "t",
        &format!(
            r#"
proxy: {{ listeners: [{{ name: main, address: "127.0.0.1:1" }}] }}
admin: {{ address: "127.0.0.1:3" }}
routing: {{ default_group: g }}
groups: [{{ name: g, strict: true, queue: {{ {queue} }} }}]
backends:
  - {{ name: a, url: "http://127.0.0.1:10", group: g, max_running_queries: 2 }}
"#
        ),
    )
    .unwrap();
    let s = Snapshot::compile(&c, 1, &RuntimeRegistry::default()).unwrap();
    s.backends[0].runtime.health.force(true);
    s
}

fn ticket(user: &str) -> Box<Ticket> {
    Box::new(Ticket {
        headers: StoredHeaders::keep(&HeaderMap::new(), &[]),
        body: Bytes::from_static(b"SELECT 1"),
        query: None,
        user: Some(user.to_string()),
        source: None,
        client_tags: None,
        reason: RouteReason::Default,
        policy: None,
        key: Vec::new(),
    })
}

fn hold(q: &Queue, s: &Snapshot, user: &str) -> Result<Held, QueueError> {
    q.hold(
        s,
        Hold {
            group: 0,
            fallback: None,
            priority: 0,
            limits: Vec::new(),
            ticket: ticket(user),
        },
    )
}

fn key(q: &Queue, h: &Held) -> u64 {
    q.key_of(&h.id).unwrap()
}

#[tokio::test]
async fn held_until_room_then_handed_over_in_fair_order() {
    let s = snap("max_queued: 10");
    let q = Queue::new();
    // The backend is full: 2 running of 2.
    s.backends[0].runtime.health.set_load(2, 0);
    let a: Vec<Held> = (0..3).map(|_| hold(&q, &s, "alice").unwrap()).collect();
    let b = hold(&q, &s, "bob").unwrap();
    assert_eq!(q.waiting(), 4);
    assert!(q.group_waiting("g"));
    assert!(crate::query_id::held_id(&a[0].id).is_some());
    assert_eq!(q.key_of("20261130_101010_00001_k3f9a"), None);
    q.dispatch(&s);
    assert_eq!(q.waiting(), 4, "no room: nothing granted");
    // A poll while no room: QUEUED again with the next token.
    match q
        .poll(key(&q, &a[0]), &a[0].slug, Duration::from_millis(10))
        .await
    {
        Polled::Waiting { held, .. } => assert_eq!(held.token, 2),
        _ => panic!("expected QUEUED"),
    }
    // A heartbeat keeps it alive; the wrong slug knows nothing.
    assert!(q.touch(key(&q, &a[0]), &a[0].slug));
    assert!(!q.touch(key(&q, &a[0]), "nope"));
    assert!(matches!(
        q.poll(key(&q, &a[0]), "nope", Duration::ZERO).await,
        Polled::Unknown
    ));
    // Room for two: alice's first, then bob's (users take turns), and the grants count at once.
    s.backends[0].runtime.health.set_load(0, 0);
    q.dispatch(&s);
    assert_eq!(q.waiting(), 2);
    assert!(s.backends[0].is_full(), "grants count against the limit");
    let listed = q.list();
    assert_eq!(listed.len(), 4);
    let granted: Vec<&str> = listed
        .iter()
        .filter(|l| l.state == "handing_over")
        .map(|l| l.query_id.as_str())
        .collect();
    assert_eq!(granted.len(), 2);
    assert!(granted.contains(&&*a[0].id) && granted.contains(&&*b.id));
    // Waiting ones are listed with their positions.
    let positions: Vec<Option<usize>> = listed.iter().map(|l| l.position).collect();
    assert_eq!(&positions[..2], &[Some(1), Some(2)]);
    match q.poll(key(&q, &b), &b.slug, Duration::ZERO).await {
        Polled::Claimed(c) => {
            assert_eq!(c.id, b.id);
            assert_eq!(&*c.grant.backend.name, "a");
            assert_eq!(c.ticket.user.as_deref(), Some("bob"));
        }
        _ => panic!("expected the hand-over"),
    }
    // Taken once only: while its submission is on its way, another poll is told to wait.
    assert!(matches!(
        q.poll(key(&q, &b), &b.slug, Duration::ZERO).await,
        Polled::Waiting { .. }
    ));
    // Refused by the backend: it waits again, first in line, and is granted again.
    q.hand_over_failed(&b.id);
    assert_eq!(q.waiting(), 3);
    s.backends[0].runtime.health.set_load(1, 0);
    q.dispatch(&s);
    assert_eq!(q.waiting(), 2);
    assert!(matches!(
        q.poll(key(&q, &b), &b.slug, Duration::ZERO).await,
        Polled::Claimed(_)
    ));
    // Accepted: it leaves the queue, and its held id leads to the query's own.
    q.handed_over(&b.id, "20261130_101010_00009_k3f9a");
    assert!(!q.holds(key(&q, &b)));
    assert!(matches!(
        q.poll(key(&q, &b), &b.slug, Duration::ZERO).await,
        Polled::Unknown
    ));
    assert_eq!(
        q.real_id(key(&q, &b)).as_deref(),
        Some("20261130_101010_00009_k3f9a")
    );
    // A late report of failure changes nothing for a query already accepted.
    q.hand_over_failed(&b.id);
    assert_eq!(q.waiting(), 2);
}

#[tokio::test]
async fn a_waiting_poll_wakes_when_its_query_is_granted() {
    let s = Arc::new(snap(""));
    let q = Arc::new(Queue::new());
    s.backends[0].runtime.health.set_load(2, 0);
    let h = hold(&q, &s, "u").unwrap();
    let k = key(&q, &h);
    let poller = {
        let q = q.clone();
        let slug = h.slug.clone();
        tokio::spawn(async move { q.poll(k, &slug, Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    s.backends[0].runtime.health.set_load(1, 0);
    q.dispatch(&s);
    let polled = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("the poll returns on the grant, not after its 30 s")
        .unwrap();
    assert!(matches!(polled, Polled::Claimed(_)));
}

#[tokio::test]
async fn full_cancel_time_limit_and_abandon() {
    let s = snap("max_queued: 2, max_queue_time: 50ms, client_timeout: 1h");
    let q = Queue::new();
    s.backends[0].runtime.health.set_load(2, 0);
    let first = hold(&q, &s, "u").unwrap();
    let second = hold(&q, &s, "u").unwrap();
    assert!(matches!(
        hold(&q, &s, "v"),
        Err(QueueError::Full { max: 2, .. })
    ));
    // Cancel: out of the line, nothing granted for it; the poll learns it was canceled.
    assert!(!q.cancel(key(&q, &second), Some("other slug")));
    assert!(q.cancel(key(&q, &second), Some(&second.slug)));
    assert!(
        q.cancel(key(&q, &second), Some(&second.slug)),
        "a second DELETE is fine"
    );
    assert_eq!(q.waiting(), 1);
    match q.poll(key(&q, &second), &second.slug, Duration::ZERO).await {
        Polled::Failed { err, .. } => assert_eq!(err.trino_code().0, "USER_CANCELED"),
        _ => panic!("expected the cancel"),
    }
    // Past max_queue_time: the next poll answers EXCEEDED_TIME_LIMIT.
    q.sweep(&s, Instant::now() + Duration::from_millis(100));
    assert_eq!(q.waiting(), 0);
    match q.poll(key(&q, &first), &first.slug, Duration::ZERO).await {
        Polled::Failed { err, .. } => assert_eq!(err.trino_code().0, "EXCEEDED_TIME_LIMIT"),
        _ => panic!("expected the time limit"),
    }
    // A client that stops polling is dropped after client_timeout; nothing is granted for it.
    let s = snap("client_timeout: 1s");
    s.backends[0].runtime.health.set_load(2, 0);
    let gone = hold(&q, &s, "w").unwrap();
    q.sweep(&s, Instant::now() + Duration::from_secs(5));
    assert_eq!(q.waiting(), 0);
    assert!(q.list().is_empty());
    s.backends[0].runtime.health.set_load(0, 0);
    q.dispatch(&s);
    assert!(!s.backends[0].is_full());
    assert!(matches!(
        q.poll(key(&q, &gone), &gone.slug, Duration::ZERO).await,
        Polled::Unknown
    ));
}

#[tokio::test]
async fn running_limits_hold_a_users_excess_and_grants_return_when_not_taken() {
    let s = snap("max_running_per_user: 1");
    let q = Queue::new();
    let limits = running::limits_of(&s, 0, RouteReason::Default, Some("u"), None);
    assert_eq!(limits.len(), 1);
    let running = q.running.try_start(limits.clone()).unwrap();
    let h = q
        .hold(
            &s,
            Hold {
                group: 0,
                fallback: None,
                priority: 0,
                limits: limits.clone(),
                ticket: ticket("u"),
            },
        )
        .unwrap();
    // The backend has room, but u runs one already.
    q.dispatch(&s);
    assert_eq!(q.waiting(), 1);
    drop(running);
    q.dispatch(&s);
    assert_eq!(q.waiting(), 0);
    assert!(!q.running.may_start(&limits), "the grant holds u's slot");
    // Not taken up within the grant's time: back at the head of the line, room given back.
    q.sweep(&s, Instant::now() + GRANT_TTL + Duration::from_secs(1));
    assert_eq!(q.waiting(), 1);
    assert!(q.running.may_start(&limits));
    q.dispatch(&s);
    assert!(matches!(
        q.poll(key(&q, &h), &h.slug, Duration::ZERO).await,
        Polled::Claimed(_)
    ));
}

#[tokio::test]
async fn draining_hands_every_held_query_over() {
    let s = snap("");
    let q = Queue::new();
    s.backends[0].runtime.health.set_load(2, 0);
    let h = hold(&q, &s, "u").unwrap();
    q.release_all(&s);
    assert!(q.is_closed());
    assert_eq!(q.waiting(), 0);
    assert!(matches!(hold(&q, &s, "u"), Err(QueueError::ShuttingDown)));
    // Handed over though the backend is full: the cluster queues it itself.
    assert!(matches!(
        q.poll(key(&q, &h), &h.slug, Duration::ZERO).await,
        Polled::Claimed(_)
    ));
    // With no routable backend, it fails instead.
    let q = Queue::new();
    let h = hold(&q, &s, "u").unwrap();
    s.backends[0].runtime.health.force(false);
    q.release_all(&s);
    match q.poll(key(&q, &h), &h.slug, Duration::ZERO).await {
        Polled::Failed { err, .. } => assert_eq!(err, QueueError::ShuttingDown),
        _ => panic!("expected the shutdown"),
    }
}

#[test]
fn stored_headers_come_back_as_they_were() {
    let mut map = HeaderMap::new();
    map.insert("x-trino-user", "alice".parse().unwrap());
    map.append("x-trino-session", "a=1".parse().unwrap());
    map.append("x-trino-session", "b=2".parse().unwrap());
    map.insert("content-length", "42".parse().unwrap());
    map.insert(
        "x-odd",
        http::HeaderValue::from_bytes(b"caf\xc3\xa9 \t x").unwrap(),
    );
    let kept = StoredHeaders::keep(&map, &[http::header::CONTENT_LENGTH]);
    let back = kept.to_map();
    assert_eq!(back.len(), 4);
    assert_eq!(back["x-trino-user"], "alice");
    let sessions: Vec<_> = back.get_all("x-trino-session").iter().collect();
    assert_eq!(sessions, ["a=1", "b=2"]);
    assert_eq!(back["x-odd"].as_bytes(), b"caf\xc3\xa9 \t x");
    assert!(!back.contains_key("content-length"));
    // Exactly the bytes of the names and values and one separator after each.
    let bytes: usize = map
        .iter()
        .filter(|(n, _)| *n != http::header::CONTENT_LENGTH)
        .map(|(n, v)| n.as_str().len() + v.len() + 2)
        .sum();
    assert_eq!(kept.len(), bytes);
}
