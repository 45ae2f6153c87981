//! Admission control at the gateway: holding queries while their clusters are full, fairly,
//! instead of failing them.
//!
//! * **Hold.** When no backend of a submission's group (nor of its fallback) can take it, or its
//!   user or source is at a running limit, or queries of its group already wait, the proxy holds
//!   it here ([`Queue::hold`]) and answers the client itself with a `QUEUED` page
//!   ([`page::queued`]) whose `nextUri` points back at the gateway.
//! * **Hand-over.** The dispatcher ([`Queue::dispatch`], woken when a query ends and on every
//!   tick) picks the next query in fair order ([`fair`]) and grants it a backend that can take it
//!   — counting it against that backend's limits at once, so nothing else fills the room. The
//!   client's poll, usually already waiting here (polls are held up to [`POLL_WAIT`], as Trino's
//!   own queued endpoint does), takes the grant ([`Queue::poll`]) and becomes the submission: the
//!   proxy sends the statement with the client's original headers and answers the poll with the
//!   backend's first page. Nothing is submitted for a query whose client stopped polling.
//! * **Query id.** While held, the client sees a gateway id of Trino's form whose last five
//!   characters start with `0` — outside Trino's coordinator-id alphabet, so it never names a
//!   backend — followed by this instance's tag. From the hand-over on, each page carries the id
//!   the backend gave the query, as with any Trino query whose id a client reads per page. The
//!   history records both.
//! * **Bounds.** Per group: `max_queued` held at once (then `QUERY_QUEUE_FULL`), `max_queue_time`
//!   (then `EXCEEDED_TIME_LIMIT`), `client_timeout` without a poll (then dropped).

pub mod fair;
pub mod page;
pub mod peers;
pub mod running;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderMap;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::Notify;
use tracing::{debug, info};

use crate::bookkeeping::Started;
use crate::metrics::METRICS;
use crate::query_id::{held_id, COORDINATOR_ALPHABET};
use crate::routing::query::QueryProperties;
use crate::routing::{self, RouteReason};
use crate::snapshot::{Backend, Snapshot, SnapshotHandle};
use fair::FairOrder;
pub use page::QueueError;
use running::{Limits, Running, Slot};

/// Longest a poll of a held query waits here for its hand-over before answering `QUEUED` again.
pub const POLL_WAIT: Duration = Duration::from_secs(1);

/// A granted hand-over not taken up by a poll within this long goes back to the head of the line.
const GRANT_TTL: Duration = Duration::from_secs(10);

/// A hand-over whose submission has neither been accepted nor refused after this long is
/// forgotten (the proxy reports one or the other when the request ends).
const HANDOVER_TTL: Duration = Duration::from_secs(600);

/// Handed-over queries whose held id is remembered (the most recent ones).
const HANDED_REMEMBERED: usize = 100_000;

/// How often the dispatcher looks even when nothing woke it: backends' load changes with every
/// probe, and timeouts pass.
const TICK: Duration = Duration::from_millis(200);

/// Request headers kept compactly while a query waits: `name NUL value NUL ...` in one
/// allocation of exactly their size. (A `HeaderMap` taken from the request keeps its table's
/// spare room, and values that are slices of the connection's read buffer keep that buffer.)
#[derive(Clone)]
pub struct StoredHeaders(Box<[u8]>);

impl StoredHeaders {
    /// `map` without the headers named in `skip`.
    pub fn keep(map: &HeaderMap, skip: &[http::HeaderName]) -> StoredHeaders {
        let mut out = Vec::new();
        for (name, value) in map {
            if skip.contains(name) {
                continue;
            }
            out.extend_from_slice(name.as_str().as_bytes());
            out.push(0);
            out.extend_from_slice(value.as_bytes());
            out.push(0);
        }
        StoredHeaders(out.into_boxed_slice())
    }

    /// The headers again (values keep their order; none can hold a NUL, so none is split).
    pub fn to_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        let mut parts = self.0.split(|&b| b == 0);
        while let (Some(name), Some(value)) = (parts.next(), parts.next()) {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name),
                http::HeaderValue::from_bytes(value),
            ) {
                map.append(n, v);
            }
        }
        map
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What the hand-over needs of the original submission.
#[derive(Clone)]
pub struct Ticket {
    /// The client's request headers as they arrived (after the listener's identity rules).
    pub headers: StoredHeaders,
    /// The statement (a copy of its own: a slice of the connection's buffer would keep it).
    pub body: Bytes,
    pub query: Option<Box<QueryProperties>>,
    pub user: Option<String>,
    pub source: Option<String>,
    pub client_tags: Option<String>,
    /// Why the group was chosen, and the policy's name (policy indexes change with the snapshot).
    pub reason: RouteReason,
    pub policy: Option<Arc<str>>,
    /// What a `consistent` group hashes for this query.
    pub key: Vec<u8>,
}

impl Ticket {
    /// `reason` in `snap`: the policy found again by name (it may have moved or gone).
    pub fn reason_in(&self, snap: &Snapshot) -> RouteReason {
        match (self.reason, &self.policy) {
            (RouteReason::Policy(_), Some(name)) => snap
                .policies
                .iter()
                .position(|p| p.name == *name)
                .map_or(RouteReason::Default, RouteReason::Policy),
            (reason, _) => reason,
        }
    }
}

/// A submission to hold: where it waits and in which order.
pub struct Hold {
    /// The group first chosen for it.
    pub group: usize,
    /// Where it may go when that group has no room (its policy's `fallback_group`, else the
    /// default group; `None` for a strict group).
    pub fallback: Option<usize>,
    pub priority: i32,
    pub limits: Limits,
    pub ticket: Box<Ticket>,
}

/// A held query, as the client was told it.
#[derive(Debug, Clone)]
pub struct Held {
    pub id: Arc<str>,
    pub slug: Arc<str>,
    pub token: u64,
}

/// A backend granted to a held query, counted against its limits until the hand-over is sent
/// (or given back when dropped).
pub struct Grant {
    pub backend: Arc<Backend>,
    /// The group it was placed in (the fallback's, when that took it).
    pub group: Arc<str>,
    pub started: Started,
    pub slot: Option<Slot>,
    at: Instant,
}

/// A hand-over taken by its client's poll.
pub struct Claim {
    pub id: Arc<str>,
    pub ticket: Box<Ticket>,
    pub grant: Box<Grant>,
    pub waited: Duration,
}

/// What a poll of a held query found.
pub enum Polled {
    /// Still waiting: answer `QUEUED` with this token.
    Waiting { held: Held, elapsed: Duration },
    /// Its backend is ready: send the statement there.
    Claimed(Box<Claim>),
    /// It failed while held (time limit, group removed).
    Failed { err: QueueError, elapsed: Duration },
    /// No such held query (never was, canceled, dropped, or taken over already).
    Unknown,
}

enum State {
    Waiting,
    Granted(Box<Grant>),
    /// A poll took the grant and its submission is on its way (since then): the ticket stays
    /// until the backend accepts the query, so a refused hand-over waits again instead of being
    /// lost ([`Queue::hand_over_failed`]).
    HandingOver(Instant),
    Failed(QueueError),
}

struct Entry {
    id: Arc<str>,
    slug: Arc<str>,
    /// The group it waits in, by name (the snapshot may change while it waits).
    group: Arc<str>,
    fallback: Option<Arc<str>>,
    /// Its place in the fair order: the user ("" without one) and priority.
    user: Arc<str>,
    priority: i32,
    limits: Limits,
    ticket: Option<Box<Ticket>>,
    enqueued: Instant,
    polled: Instant,
    token: u64,
    state: State,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    groups: HashMap<Arc<str>, FairOrder>,
}

/// One row of the admin API's listing.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed {
    pub query_id: String,
    pub group: String,
    pub user: Option<String>,
    pub source: Option<String>,
    pub priority: i32,
    /// 1-based place in the group's leaving order (none once granted a backend).
    pub position: Option<usize>,
    /// `waiting`, `handing_over` (granted, the client's poll not yet back) or `failed`.
    pub state: &'static str,
    pub waited_ms: u64,
    pub backend: Option<String>,
}

/// The gateway's queue: every group's held queries, and the running counts per user and source.
pub struct Queue {
    inner: Mutex<Inner>,
    /// Held queries not yet granted a backend (read without the lock on every submission).
    waiting: AtomicUsize,
    dispatcher: Notify,
    /// This instance's tag in held query ids (four characters of Trino's coordinator-id alphabet).
    tag: [u8; 4],
    seq: AtomicU64,
    pub running: Arc<Running>,
    /// The other instances holding queries, for forwarding their polls.
    pub peers: peers::Peers,
    /// Held queries handed over: their sequence number → the id the backend gave them, so that
    /// the held id (which the Python client keeps as its `query_id`) still leads to the query.
    handed: quick_cache::sync::Cache<u64, Arc<str>>,
    closed: AtomicBool,
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}

impl Queue {
    pub fn new() -> Queue {
        let mut tag = [0u8; 4];
        for c in &mut tag {
            *c = COORDINATOR_ALPHABET[fastrand::usize(..COORDINATOR_ALPHABET.len())];
        }
        Queue {
            inner: Mutex::new(Inner::default()),
            waiting: AtomicUsize::new(0),
            dispatcher: Notify::new(),
            tag,
            seq: AtomicU64::new(1),
            running: Arc::new(Running::default()),
            peers: peers::Peers::default(),
            handed: quick_cache::sync::Cache::new(HANDED_REMEMBERED),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Held queries waiting for a backend, all groups (no lock: the submission path reads it).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether queries of group `name` wait (a new one then waits behind them).
    pub fn group_waiting(&self, name: &str) -> bool {
        self.waiting() > 0 && self.lock().groups.get(name).is_some_and(|o| !o.is_empty())
    }

    /// The sequence number of a held query id of this instance; `None` for any other id.
    pub fn key_of(&self, id: &str) -> Option<u64> {
        held_id(id).and_then(|(seq, tag)| (tag == self.tag).then_some(seq))
    }

    /// This instance's tag in held query ids.
    pub fn tag(&self) -> [u8; 4] {
        self.tag
    }

    fn new_id(&self) -> (u64, Arc<str>) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let now = chrono::Utc::now().format("%Y%m%d_%H%M%S");
        let tag = String::from_utf8_lossy(&self.tag);
        (seq, format!("{now}_{seq:05}_0{tag}").into())
    }

    /// An id for a query the gateway fails before holding it (`QUERY_QUEUE_FULL`).
    pub fn failed_id(&self) -> Arc<str> {
        self.new_id().1
    }

    /// Hold a submission; `Err` when its group's queue is full or the gateway is stopping.
    pub fn hold(&self, snap: &Snapshot, hold: Hold) -> Result<Held, QueueError> {
        let group = &snap.groups[hold.group];
        if self.closed.load(Ordering::Relaxed) {
            return Err(self.rejected(&group.name, QueueError::ShuttingDown));
        }
        let max = group.queue.max_queued();
        let (key, id) = self.new_id();
        let slug: Arc<str> = format!("y{:016x}", fastrand::u64(..)).into();
        let now = Instant::now();
        let user: Arc<str> = hold.ticket.user.as_deref().unwrap_or("").into();
        {
            let mut inner = self.lock();
            let order = inner.groups.entry(group.name.clone()).or_default();
            if order.len() >= max as usize {
                drop(inner);
                return Err(self.rejected(
                    &group.name,
                    QueueError::Full {
                        group: group.name.to_string(),
                        max,
                    },
                ));
            }
            order.push(hold.priority, &user, key);
            let len = order.len();
            inner.entries.insert(
                key,
                Entry {
                    id: id.clone(),
                    slug: slug.clone(),
                    group: group.name.clone(),
                    fallback: hold.fallback.map(|f| snap.groups[f].name.clone()),
                    user,
                    priority: hold.priority,
                    limits: hold.limits,
                    ticket: Some(hold.ticket),
                    enqueued: now,
                    polled: now,
                    token: 1,
                    state: State::Waiting,
                    wake: Arc::new(Notify::new()),
                },
            );
            self.waiting.fetch_add(1, Ordering::Relaxed);
            METRICS
                .queue_length
                .with_label_values(&[&group.name])
                .set(i64::try_from(len).unwrap_or(i64::MAX));
        }
        METRICS.queue_held.with_label_values(&[&group.name]).inc();
        debug!(query_id = %id, group = %group.name, "query held at the gateway");
        self.dispatcher.notify_one();
        Ok(Held { id, slug, token: 1 })
    }

    fn rejected(&self, group: &str, err: QueueError) -> QueueError {
        METRICS
            .queue_rejections
            .with_label_values(&[group, err.reason()])
            .inc();
        err
    }

    /// A poll of held query `key` (its URI's `slug`): hand it over if its backend is ready, else
    /// wait up to `wait` for that, then answer.
    pub async fn poll(&self, key: u64, slug: &str, wait: Duration) -> Polled {
        let wake = match self.look(key, slug, false) {
            Ok(wake) => wake,
            Err(done) => return done,
        };
        if tokio::time::timeout(wait, wake.notified()).await.is_ok() {
            debug!(key, "held query woken");
        }
        match self.look(key, slug, true) {
            Ok(_) => Polled::Unknown, // not reached: a second look always answers
            Err(done) => done,
        }
    }

    /// One look at a held query: `Err` is the answer, `Ok` what to wait on (only when `last` is
    /// false).
    fn look(&self, key: u64, slug: &str, last: bool) -> Result<Arc<Notify>, Polled> {
        let mut inner = self.lock();
        let Some(e) = inner.entries.get_mut(&key).filter(|e| *e.slug == *slug) else {
            return Err(Polled::Unknown);
        };
        let now = Instant::now();
        e.polled = now;
        let elapsed = now.saturating_duration_since(e.enqueued);
        match &e.state {
            State::Waiting | State::HandingOver(_) if !last => Ok(e.wake.clone()),
            State::Waiting | State::HandingOver(_) => {
                e.token += 1;
                Err(Polled::Waiting {
                    held: Held {
                        id: e.id.clone(),
                        slug: e.slug.clone(),
                        token: e.token,
                    },
                    elapsed,
                })
            }
            State::Granted(_) => {
                let Some(ticket) = e.ticket.clone() else {
                    return Err(Polled::Unknown);
                };
                let State::Granted(grant) =
                    std::mem::replace(&mut e.state, State::HandingOver(now))
                else {
                    return Err(Polled::Unknown);
                };
                METRICS
                    .queue_wait
                    .with_label_values(&[&e.group])
                    .observe(elapsed.as_secs_f64());
                Err(Polled::Claimed(Box::new(Claim {
                    id: e.id.clone(),
                    ticket,
                    grant,
                    waited: elapsed,
                })))
            }
            State::Failed(_) => match inner.entries.remove(&key).map(|e| e.state) {
                Some(State::Failed(err)) => Err(Polled::Failed { err, elapsed }),
                _ => Err(Polled::Unknown),
            },
        }
    }

    /// Held query `id` of this instance was handed over and the backend named it `real`: it
    /// leaves the queue.
    pub fn handed_over(&self, id: &str, real: &str) {
        if let Some(key) = self.key_of(id) {
            self.lock().entries.remove(&key);
            self.handed.insert(key, real.into());
        }
    }

    /// The submission of held query `id` was not accepted (every backend tried refused it or
    /// could not be reached, before any answer of the query): it waits again, first in its
    /// user's line, and its client's next poll (which the failed one's error makes it send) finds
    /// it there.
    pub fn hand_over_failed(&self, id: &str) {
        let Some(key) = self.key_of(id) else {
            return;
        };
        let mut guard = self.lock();
        let Inner { entries, groups } = &mut *guard;
        let Some(e) = entries.get_mut(&key) else {
            return;
        };
        if !matches!(e.state, State::HandingOver(_)) {
            return;
        }
        e.state = State::Waiting;
        groups
            .entry(e.group.clone())
            .or_default()
            .push_front(e.priority, &e.user, key);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        info!(query_id = %e.id, group = %e.group, "hand-over refused: the query waits again");
        drop(guard);
        self.dispatcher.notify_one();
    }

    /// Whether held query `key` is in this instance's queue now.
    pub fn holds(&self, key: u64) -> bool {
        self.lock().entries.contains_key(&key)
    }

    /// The id the backend gave held query `key`, once handed over (recent ones only).
    pub fn real_id(&self, key: u64) -> Option<Arc<str>> {
        self.handed.get(&key)
    }

    /// A sign of life from held query `key`'s client (`HEAD` of its `nextUri`): it is not
    /// dropped for `client_timeout`. False when there is no such held query.
    pub fn touch(&self, key: u64, slug: &str) -> bool {
        let mut inner = self.lock();
        match inner.entries.get_mut(&key).filter(|e| *e.slug == *slug) {
            Some(e) => {
                e.polled = Instant::now();
                true
            }
            None => false,
        }
    }

    /// Cancel held query `key` (its client sent `DELETE`, or an operator): nothing is submitted
    /// for it, and a poll still waiting (or the next) gets Trino's `USER_CANCELED`. False when
    /// there is no such held query.
    pub fn cancel(&self, key: u64, slug: Option<&str>) -> bool {
        let mut guard = self.lock();
        let Inner { entries, groups } = &mut *guard;
        let Some(e) = entries
            .get_mut(&key)
            .filter(|e| slug.is_none_or(|s| *e.slug == *s))
        else {
            return false;
        };
        let before = std::mem::replace(&mut e.state, State::Failed(QueueError::Canceled));
        match before {
            State::Failed(QueueError::Canceled) => return true, // canceled already
            State::Waiting => self.leave_line(groups, e, key),
            // Dropping the grant gives its backend's room back.
            State::Granted(_) => self.dispatcher.notify_one(),
            // Too late: its submission is on its way (the client cancels the query it gets).
            State::HandingOver(_) | State::Failed(_) => {}
        }
        e.wake.notify_one();
        let (id, group) = (e.id.clone(), e.group.clone());
        drop(guard);
        METRICS
            .queue_rejections
            .with_label_values(&[&group, "canceled"])
            .inc();
        info!(query_id = %id, group = %group, "held query canceled");
        true
    }

    /// A waiting query leaves its group's line without a backend (canceled, timed out, dropped).
    fn leave_line(&self, groups: &mut HashMap<Arc<str>, FairOrder>, e: &Entry, key: u64) {
        if let Some(order) = groups.get_mut(&e.group) {
            order.remove(e.priority, &e.user, key);
        }
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }

    /// Something may have made room (a query ended): look at the queue soon.
    pub fn kick(&self) {
        if self.waiting() > 0 {
            self.dispatcher.notify_one();
        }
    }

    /// Grant backends to held queries while their groups have room, in fair order.
    pub fn dispatch(&self, snap: &Snapshot) {
        if self.waiting() == 0 {
            return;
        }
        let mut guard = self.lock();
        let Inner { entries, groups } = &mut *guard;
        for (name, order) in groups.iter_mut() {
            if order.is_empty() {
                continue;
            }
            let Some(gi) = snap.group_by_name(name) else {
                self.fail_group(name, order, entries);
                continue;
            };
            while let Some(pick) = order.next(|k| {
                entries
                    .get(&k)
                    .is_some_and(|e| self.running.may_start(&e.limits))
            }) {
                let Some(e) = entries.get_mut(&pick.key) else {
                    order.take(pick);
                    continue;
                };
                let key = e.ticket.as_ref().map(|t| t.key.as_slice()).unwrap_or(&[]);
                let fallback = e.fallback.as_deref().and_then(|f| snap.group_by_name(f));
                let Ok(p) = routing::place_with(snap, gi, fallback, |_| key, true) else {
                    break; // no room in this group now
                };
                let slot = if e.limits.is_empty() {
                    None
                } else {
                    match self.running.try_start(e.limits.clone()) {
                        Some(s) => Some(s),
                        None => break,
                    }
                };
                let backend = snap.backends[p.backend].clone();
                let started = Started::send(&backend.runtime);
                debug!(query_id = %e.id, backend = %backend.name, "held query granted a backend");
                e.state = State::Granted(Box::new(Grant {
                    backend,
                    group: snap.groups[p.group].name.clone(),
                    started,
                    slot,
                    at: Instant::now(),
                }));
                e.wake.notify_one();
                order.take(pick);
                self.waiting.fetch_sub(1, Ordering::Relaxed);
            }
            METRICS
                .queue_length
                .with_label_values(&[name])
                .set(i64::try_from(order.len()).unwrap_or(i64::MAX));
        }
    }

    /// Every waiting query of a group that is gone fails.
    fn fail_group(
        &self,
        name: &Arc<str>,
        order: &mut FairOrder,
        entries: &mut HashMap<u64, Entry>,
    ) {
        while let Some(pick) = order.next(|_| true) {
            order.take(pick);
            if let Some(e) = entries.get_mut(&pick.key) {
                e.state = State::Failed(self.rejected(
                    name,
                    QueueError::GroupRemoved {
                        group: name.to_string(),
                    },
                ));
                e.wake.notify_one();
            }
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        METRICS.queue_length.with_label_values(&[name]).set(0);
    }

    /// Time limits: a waiting query past its group's `max_queue_time` fails; one whose client has
    /// not polled for `client_timeout` is dropped; a grant not taken up returns to the line.
    pub fn sweep(&self, snap: &Snapshot, now: Instant) {
        self.running.sweep(now);
        let mut guard = self.lock();
        if guard.entries.is_empty() {
            return;
        }
        let Inner { entries, groups } = &mut *guard;
        let mut gone = Vec::new();
        let mut requeued = false;
        for (&key, e) in entries.iter_mut() {
            let q = snap
                .group_by_name(&e.group)
                .map(|g| snap.groups[g].queue)
                .unwrap_or_default();
            let idle = now.saturating_duration_since(e.polled);
            if idle > q.client_timeout() {
                gone.push(key);
                continue;
            }
            let waited = now.saturating_duration_since(e.enqueued);
            match &e.state {
                State::Waiting if waited > q.max_queue_time() => {
                    self.leave_line(groups, e, key);
                    let limit = crate::config::duration::HumanDuration(q.max_queue_time());
                    e.state = State::Failed(self.rejected(
                        &e.group,
                        QueueError::TimeLimit {
                            group: e.group.to_string(),
                            limit: limit.to_string(),
                        },
                    ));
                    e.wake.notify_one();
                }
                // A hand-over whose outcome never came (the request vanished): nothing to wait for.
                State::HandingOver(since)
                    if now.saturating_duration_since(*since) > HANDOVER_TTL =>
                {
                    gone.push(key);
                }
                State::Granted(g) if now.saturating_duration_since(g.at) > GRANT_TTL => {
                    // Dropping the grant gives its backend's room back.
                    e.state = State::Waiting;
                    groups
                        .entry(e.group.clone())
                        .or_default()
                        .push_front(e.priority, &e.user, key);
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                    requeued = true;
                }
                _ => {}
            }
        }
        for key in gone {
            if let Some(e) = entries.remove(&key) {
                if matches!(e.state, State::Waiting) {
                    self.leave_line(groups, &e, key);
                }
                if matches!(e.state, State::Waiting | State::Granted(_)) {
                    METRICS
                        .queue_rejections
                        .with_label_values(&[&e.group, "abandoned"])
                        .inc();
                    info!(query_id = %e.id, group = %e.group, "held query dropped: its client stopped polling");
                }
            }
        }
        groups.retain(|name, order| {
            METRICS
                .queue_length
                .with_label_values(&[name])
                .set(i64::try_from(order.len()).unwrap_or(i64::MAX));
            !order.is_empty()
        });
        drop(guard);
        if requeued {
            self.dispatcher.notify_one();
        }
    }

    /// Held queries, each group's in leaving order (the admin API).
    pub fn list(&self) -> Vec<Listed> {
        let inner = self.lock();
        let now = Instant::now();
        let mut out = Vec::with_capacity(inner.entries.len());
        let mut placed = std::collections::HashSet::new();
        let mut names: Vec<&Arc<str>> = inner.groups.keys().collect();
        names.sort();
        let row = |e: &Entry, position: Option<usize>| Listed {
            query_id: e.id.to_string(),
            group: e.group.to_string(),
            user: e.ticket.as_ref().and_then(|t| t.user.clone()),
            source: e.ticket.as_ref().and_then(|t| t.source.clone()),
            priority: e.priority,
            position,
            state: match e.state {
                State::Waiting => "waiting",
                State::Granted(_) | State::HandingOver(_) => "handing_over",
                State::Failed(_) => "failed",
            },
            waited_ms: u64::try_from(now.saturating_duration_since(e.enqueued).as_millis())
                .unwrap_or(u64::MAX),
            backend: match &e.state {
                State::Granted(g) => Some(g.backend.name.to_string()),
                _ => None,
            },
        };
        for name in names {
            for (i, key) in inner.groups[name].in_order().into_iter().enumerate() {
                if let Some(e) = inner.entries.get(&key) {
                    placed.insert(key);
                    out.push(row(e, Some(i + 1)));
                }
            }
        }
        let mut rest: Vec<(&u64, &Entry)> = inner
            .entries
            .iter()
            .filter(|(k, _)| !placed.contains(*k))
            .collect();
        rest.sort_by_key(|(k, _)| **k);
        out.extend(rest.into_iter().map(|(_, e)| row(e, None)));
        out
    }

    /// Cancel a held query by id (the admin API).
    pub fn cancel_by_id(&self, id: &str) -> bool {
        self.key_of(id).is_some_and(|k| self.cancel(k, None))
    }

    /// The gateway is draining: hold nothing more (a full group answers 503 again, so clients
    /// retry on another instance), and hand every waiting query to a routable backend of its
    /// group now, full or not — the cluster queues it itself — so that its client's next poll
    /// (usually already waiting here) takes it there before this instance stops. A query whose
    /// group has no routable backend fails with `SERVER_SHUTTING_DOWN`.
    pub fn release_all(&self, snap: &Snapshot) {
        self.closed.store(true, Ordering::Relaxed);
        let mut guard = self.lock();
        let Inner { entries, groups } = &mut *guard;
        for order in groups.values_mut() {
            while let Some(pick) = order.next(|_| true) {
                order.take(pick);
                self.waiting.fetch_sub(1, Ordering::Relaxed);
                let Some(e) = entries.get_mut(&pick.key) else {
                    continue;
                };
                let routable = snap.group_by_name(&e.group).and_then(|g| {
                    let group = &snap.groups[g];
                    group
                        .members
                        .iter()
                        .copied()
                        .find(|&bi| routing::strategy::is_routable(snap, &snap.backends[bi]))
                        .map(|bi| (group.name.clone(), bi))
                });
                e.state = match routable {
                    Some((group, bi)) => {
                        let backend = snap.backends[bi].clone();
                        let started = Started::send(&backend.runtime);
                        State::Granted(Box::new(Grant {
                            backend,
                            group,
                            started,
                            slot: None,
                            at: Instant::now(),
                        }))
                    }
                    None => State::Failed(self.rejected(&e.group, QueueError::ShuttingDown)),
                };
                e.wake.notify_one();
            }
        }
    }

    /// The queue holds nothing more (the gateway drains).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// The dispatcher: grants backends to held queries when woken or on every tick, and applies
/// the time limits.
pub struct Dispatcher {
    pub queue: Arc<Queue>,
    pub snapshots: Arc<SnapshotHandle>,
    /// When the gateway starts draining, every held query is handed over ([`Queue::release_all`]).
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
}

#[async_trait]
impl BackgroundService for Dispatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last_sweep = Instant::now();
        loop {
            tokio::select! {
                _ = self.queue.dispatcher.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => return,
            }
            let snap = self.snapshots.load();
            if self.lifecycle.is_draining() && !self.queue.is_closed() {
                info!(
                    waiting = self.queue.waiting(),
                    "draining: handing every held query over"
                );
                self.queue.release_all(&snap);
            }
            let now = Instant::now();
            if now.saturating_duration_since(last_sweep) >= TICK {
                last_sweep = now;
                self.queue.sweep(&snap, now);
            }
            self.queue.dispatch(&snap);
        }
    }
}

#[cfg(test)]
mod tests;
