//! Shared state of one emulator instance: configuration, the bounded query registry, open
//! transactions, counters for tests, and the runtime failure knob.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use chrono::{Datelike, Timelike};
use tokio::sync::watch;

use super::query::{lock, QueryEntry, QueryState};
use super::spooling::Spooler;
use super::{EmulatorConfig, EmulatorStats, FailureMode};

/// Version `/v1/info` and `system.runtime.nodes` report.
pub(crate) const VERSION: &str = "446-emulator";

/// Queries kept at most; beyond it the oldest finished ones are forgotten first, so that a
/// long benchmark cannot grow memory without bound.
pub(crate) const MAX_QUERIES: usize = 10_000;

/// How many active queries eviction skips before it gives up and drops the oldest query
/// anyway; bounds the work one submission can cause.
const EVICTION_SCAN: usize = 64;

/// Open transactions kept at most (clients that never commit must not leak memory).
const MAX_TRANSACTIONS: usize = 10_000;

/// Base-32 alphabet of Trino coordinator ids (no `l`, `o`, `0`, `1`).
pub(crate) const COORDINATOR_ID_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// Everything one emulator instance shares between its handlers.
pub struct EmulatorState {
    pub(crate) config: EmulatorConfig,
    coordinator_id: String,
    started: Instant,
    /// Address the server listens on; the fallback authority for requests without `Host`.
    local_addr: OnceLock<SocketAddr>,
    query_counter: AtomicU64,
    queries: Mutex<Registry>,
    transactions: Mutex<HashSet<String>>,
    /// `FailureMode` packed into an atomic: read on every request and connection.
    failure_mode: AtomicU32,
    pub(crate) counters: Counters,
    /// The spooling manager (issues nothing without `EmulatorConfig::spooling`).
    pub(crate) spooler: Spooler,
    /// OAuth2 external authentication (`EmulatorConfig::oauth2`).
    pub(crate) oauth2: Option<super::oauth2::Coordinator>,
    /// Runs the SQL the emulator's own statements do not cover (`emulator::engine`).
    pub(crate) engine: super::engine::Engine,
    shutdown: watch::Sender<bool>,
}

/// Counters behind `EmulatorStats`.
#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub submissions: AtomicU64,
    pub pages: AtomicU64,
    pub cancels: AtomicU64,
    pub forwarded_host_requests: AtomicU64,
    pub last_forwarded_host: Mutex<Option<String>>,
    pub last_user: Mutex<Option<String>>,
    pub last_session: Mutex<Option<String>>,
    pub last_prepared_statement: Mutex<Option<String>>,
    pub last_client_capabilities: Mutex<Option<String>>,
    pub forwarded_refused: AtomicU64,
    pub heartbeats: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Replaces a "last seen" value, allocating only when it changed.
    pub(crate) fn remember(slot: &Mutex<Option<String>>, value: &str) {
        let mut slot = lock(slot);
        if slot.as_deref() != Some(value) {
            *slot = Some(value.to_string());
        }
    }
}

const MODE_NONE: u32 = 0;
const MODE_RESET: u32 = 1;
const MODE_STATUS: u32 = 1 << 16;

impl EmulatorState {
    /// Creates the state of an emulator that is not listening yet (see `emulator::router`
    /// for serving it from another server).
    pub fn new(config: EmulatorConfig) -> Self {
        let coordinator_id = config
            .coordinator_id
            .clone()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(random_coordinator_id);
        let spooler = Spooler::new(config.spooling.clone());
        let oauth2 = config.oauth2.clone().map(super::oauth2::Coordinator::new);
        Self {
            config,
            coordinator_id,
            started: Instant::now(),
            local_addr: OnceLock::new(),
            query_counter: AtomicU64::new(0),
            queries: Mutex::new(Registry::new(MAX_QUERIES)),
            transactions: Mutex::new(HashSet::new()),
            failure_mode: AtomicU32::new(MODE_NONE),
            counters: Counters::default(),
            spooler,
            oauth2,
            engine: super::engine::Engine::new(),
            shutdown: watch::Sender::new(false),
        }
    }

    /// The five-character coordinator id that ends every query id of this instance.
    pub fn coordinator_id(&self) -> &str {
        &self.coordinator_id
    }

    /// The instance name from the configuration (used in logs).
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> EmulatorStats {
        let c = &self.counters;
        EmulatorStats {
            requests: c.requests.load(Ordering::Relaxed),
            submissions: c.submissions.load(Ordering::Relaxed),
            pages: c.pages.load(Ordering::Relaxed),
            cancels: c.cancels.load(Ordering::Relaxed),
            forwarded_host_requests: c.forwarded_host_requests.load(Ordering::Relaxed),
            last_forwarded_host: lock(&c.last_forwarded_host).clone(),
            last_user: lock(&c.last_user).clone(),
            last_session: lock(&c.last_session).clone(),
            last_prepared_statement: lock(&c.last_prepared_statement).clone(),
            last_client_capabilities: lock(&c.last_client_capabilities).clone(),
            forwarded_refused: c.forwarded_refused.load(Ordering::Relaxed),
            segments_issued: self.spooler.issued.load(Ordering::Relaxed),
            segment_downloads: self.spooler.downloads.load(Ordering::Relaxed),
            segment_acks: self.spooler.acks.load(Ordering::Relaxed),
            segment_not_found: self.spooler.not_found.load(Ordering::Relaxed),
            heartbeats: c.heartbeats.load(Ordering::Relaxed),
            oauth2: self.oauth2.as_ref().map(|o| o.stats()).unwrap_or_default(),
        }
    }

    /// `QUEUED`, `RUNNING`, `FINISHED` or `FAILED`; `None` for unknown (or evicted) queries.
    pub fn query_state(&self, query_id: &str) -> Option<String> {
        self.query(query_id).map(|q| q.state().as_str().to_string())
    }

    /// Whether the query was canceled by a client (DELETE of `nextUri` or `/v1/query/{id}`).
    pub fn was_canceled(&self, query_id: &str) -> bool {
        self.query(query_id).is_some_and(|q| q.was_canceled())
    }

    /// Changes how the emulator answers from the next request (or connection) on.
    pub fn set_failure_mode(&self, mode: FailureMode) {
        let packed = match mode {
            FailureMode::None => MODE_NONE,
            FailureMode::Reset => MODE_RESET,
            FailureMode::Status(code) => MODE_STATUS | u32::from(code),
        };
        self.failure_mode.store(packed, Ordering::Relaxed);
    }

    /// The current failure mode.
    pub fn failure_mode(&self) -> FailureMode {
        match self.failure_mode.load(Ordering::Relaxed) {
            MODE_NONE => FailureMode::None,
            MODE_RESET => FailureMode::Reset,
            packed => FailureMode::Status(u16::try_from(packed & 0xffff).unwrap_or(500)),
        }
    }

    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub(crate) fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.local_addr.set(addr);
    }

    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr.get().copied()
    }

    /// `YYYYMMDD_HHMMSS_NNNNN_ccccc`, like Trino's `QueryIdGenerator` (UTC, a five-digit
    /// counter that wraps, the coordinator id).
    pub(crate) fn next_query_id(&self) -> String {
        let n = self.query_counter.fetch_add(1, Ordering::Relaxed) % 100_000;
        let now = chrono::Utc::now();
        format!(
            "{:04}{:02}{:02}_{:02}{:02}{:02}_{:05}_{}",
            now.year(),
            now.month(),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            n,
            self.coordinator_id
        )
    }

    pub(crate) fn query(&self, query_id: &str) -> Option<Arc<QueryEntry>> {
        lock(&self.queries).map.get(query_id).cloned()
    }

    /// Registers a query; the segments of queries forgotten to make room go with them.
    pub(crate) fn insert_query(&self, entry: Arc<QueryEntry>) {
        let forgotten = lock(&self.queries).insert(entry);
        self.spooler.forget_queries(&forgotten);
    }

    /// Active queries by state, for the `system.runtime.queries` probe and `/metrics`.
    pub(crate) fn active_counts(&self) -> (u64, u64) {
        let registry = lock(&self.queries);
        let mut queued = 0;
        let mut running = 0;
        for q in registry.map.values() {
            match q.state() {
                QueryState::Queued => queued += 1,
                QueryState::Running => running += 1,
                QueryState::Finished | QueryState::Failed => {}
            }
        }
        (queued, running)
    }

    /// Every query the emulator still knows, for `system.runtime.queries`.
    fn runtime_queries(&self) -> Vec<super::system::RuntimeQuery> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let now = Instant::now();
        let registry = lock(&self.queries);
        registry
            .order
            .iter()
            .map(|q| {
                let age = i64::try_from(now.saturating_duration_since(q.created()).as_millis())
                    .unwrap_or(i64::MAX);
                super::system::RuntimeQuery {
                    id: q.id.clone(),
                    state: q.state().as_str(),
                    user: q.session.user.clone(),
                    source: q.session.source.clone(),
                    query: q.sql.clone(),
                    created: now_ms.saturating_sub(age),
                }
            })
            .collect()
    }

    /// Starts a transaction and returns its id (UUID form, like Trino's `TransactionId`).
    pub(crate) fn begin_transaction(&self) -> String {
        let id = random_uuid();
        let mut open = lock(&self.transactions);
        if open.len() >= MAX_TRANSACTIONS {
            if let Some(victim) = open.iter().next().cloned() {
                open.remove(&victim);
            }
        }
        open.insert(id.clone());
        id
    }

    pub(crate) fn has_transaction(&self, id: &str) -> bool {
        lock(&self.transactions).contains(id)
    }

    pub(crate) fn end_transaction(&self, id: &str) -> bool {
        lock(&self.transactions).remove(id)
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Sleeps for `delay`, returning early when the emulator shuts down.
    pub(crate) async fn sleep(&self, delay: Duration) {
        if delay.is_zero() {
            return;
        }
        let mut signal = self.shutdown_signal();
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = signal.wait_for(|down| *down) => {}
        }
    }
}

pub(crate) fn random_coordinator_id() -> String {
    (0..5)
        .map(|_| {
            let i = fastrand::usize(..COORDINATOR_ID_ALPHABET.len());
            char::from(COORDINATOR_ID_ALPHABET[i])
        })
        .collect()
}

/// A random version-4 UUID in its usual text form.
pub(crate) fn random_uuid() -> String {
    let v = (fastrand::u128(..) & !(0xf << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Per-query random slug, like Trino's (`y` + 32 hex digits): guards the paging URIs.
pub(crate) fn random_slug() -> String {
    format!("y{:032x}", fastrand::u128(..))
}

/// Queries by id, plus their submission order for eviction.
pub(crate) struct Registry {
    capacity: usize,
    map: HashMap<String, Arc<QueryEntry>>,
    order: VecDeque<Arc<QueryEntry>>,
}

impl Registry {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Inserts a query and returns the ids of the queries forgotten to make room for it.
    pub(crate) fn insert(&mut self, entry: Arc<QueryEntry>) -> Vec<String> {
        let forgotten = self.make_room();
        self.map.insert(entry.id.clone(), Arc::clone(&entry));
        self.order.push_back(entry);
        forgotten
    }

    fn is_current(&self, entry: &Arc<QueryEntry>) -> bool {
        self.map
            .get(&entry.id)
            .is_some_and(|e| Arc::ptr_eq(e, entry))
    }

    /// Frees one slot when full: the oldest finished query among the `EVICTION_SCAN` oldest
    /// goes first; when all of those are still active the oldest query goes regardless, so one
    /// submission never scans the whole registry.
    fn make_room(&mut self) -> Vec<String> {
        let mut forgotten = Vec::new();
        while self.map.len() >= self.capacity {
            let window = self.order.len().min(EVICTION_SCAN);
            let victim = (0..window)
                .find(|&i| {
                    self.order
                        .get(i)
                        .is_some_and(|e| e.is_done() || !self.is_current(e))
                })
                .unwrap_or(0);
            let Some(evicted) = self.order.remove(victim) else {
                break;
            };
            if self.is_current(&evicted) {
                self.map.remove(&evicted.id);
                forgotten.push(evicted.id.clone());
            }
        }
        forgotten
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.map.contains_key(id)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

impl super::system::Runtime for EmulatorState {
    fn node(&self) -> super::system::Node {
        super::system::Node {
            id: self.coordinator_id.clone(),
            uri: self
                .local_addr()
                .map_or_else(String::new, |a| format!("http://{a}")),
            version: VERSION,
        }
    }

    fn queries(&self) -> Vec<super::system::RuntimeQuery> {
        self.runtime_queries()
    }
}

#[cfg(test)]
mod tests {
    use super::super::protocol::Protocol;
    use super::super::query::{NewQuery, Plan, Session};
    use super::*;

    fn entry(id: &str) -> Arc<QueryEntry> {
        Arc::new(QueryEntry::new(
            id.to_string(),
            "y".into(),
            NewQuery {
                sql: String::new(),
                session: Session {
                    user: "u".into(),
                    source: None,
                    catalog: None,
                    schema: None,
                    protocol: Protocol::Trino,
                    parametric_datetime: true,
                },
                plan: Plan::Update { update_type: "USE" },
                headers: Vec::new(),
                page_delay: Duration::ZERO,
                sleep: Duration::ZERO,
            },
            Instant::now(),
        ))
    }

    #[test]
    fn eviction_prefers_oldest_finished() {
        let mut r = Registry::new(3);
        let a = entry("a");
        let b = entry("b");
        let c = entry("c");
        r.insert(Arc::clone(&a));
        r.insert(Arc::clone(&b));
        r.insert(Arc::clone(&c));
        // b is done (canceled), a and c are still active
        assert!(b.cancel());
        r.insert(entry("d"));
        assert_eq!(r.len(), 3);
        assert!(r.contains("a") && !r.contains("b") && r.contains("c") && r.contains("d"));
        // nothing is done: the oldest still-registered query goes
        r.insert(entry("e"));
        assert_eq!(r.len(), 3);
        assert!(!r.contains("a") && r.contains("c") && r.contains("d") && r.contains("e"));
    }

    #[test]
    fn registry_stays_bounded() {
        let mut r = Registry::new(100);
        for i in 0..1_000 {
            let e = entry(&format!("q{i}"));
            if i % 3 == 0 {
                e.cancel();
            }
            r.insert(e);
            assert!(r.len() <= 100);
        }
        assert!(r.contains("q999"));
    }

    #[test]
    fn ids_and_uuids() {
        let id = random_coordinator_id();
        assert_eq!(id.len(), 5);
        assert!(id.bytes().all(|b| COORDINATOR_ID_ALPHABET.contains(&b)));
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.as_bytes()[14], b'4');
        assert!(matches!(u.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
        let slug = random_slug();
        assert_eq!(slug.len(), 33);
        assert!(slug.starts_with('y'));
    }
}
