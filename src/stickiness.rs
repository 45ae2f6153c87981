//! Query id → owning backend: every follow-up of a query must reach the backend that runs it.
//!
//! Resolution order (see DESIGN.md §4):
//! 1. the in-process map of query ids learned from submission responses (bounded, expiring);
//! 2. the coordinator id — the last five characters of a Trino query id, random per coordinator
//!    process — learned per backend. This answers on *every* gateway instance that has seen any
//!    query of that coordinator, without a database, so replicas keep each other's queries going;
//! 3. otherwise a miss, which the proxy answers with a Trino-shaped 404, never a guess.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use tracing::warn;

use crate::oauth2::AuthIdHash;
use crate::query_id::{coordinator_id, is_valid_query_id, CoordinatorId};
use crate::snapshot::Backend;

/// The owner is kept as the backend itself, not its name: a query keeps reaching its coordinator
/// even after a reload removed or re-pointed that backend (removal means "no new queries").
/// Kept small (24 bytes): the map holds up to a million of them.
#[derive(Clone)]
struct Entry {
    backend: Arc<Backend>,
    /// Seconds since [`Stickiness::epoch`] when the entry was learned.
    learned: u32,
    /// Set once the query's last page went through (flipped in place, under the shard lock).
    finished: bool,
}

/// A 128-bit keyed hash of an id, used as the map key instead of the id itself: no allocation
/// per entry, 16 bytes instead of ~56. The key is random per process, so nobody can aim for a
/// collision, and by chance one is ~2^-89 likely at a million entries.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct IdKey(u128);

struct IdHasher([std::hash::RandomState; 2]);

impl IdHasher {
    fn new() -> Self {
        IdHasher([std::hash::RandomState::new(), std::hash::RandomState::new()])
    }

    fn key(&self, id: &str) -> IdKey {
        let [a, b] = &self.0;
        IdKey((u128::from(a.hash_one(id)) << 64) | u128::from(b.hash_one(id)))
    }
}

/// The same configured backend, also across a reload (which builds new `Backend` values).
fn same_backend(a: &Arc<Backend>, b: &Arc<Backend>) -> bool {
    Arc::ptr_eq(a, b) || (a.name == b.name && a.url == b.url)
}

/// How a follow-up's backend was found (a metric label later, so a fixed set).
#[derive(Debug, Clone)]
pub enum Resolution {
    /// This instance routed or looked up the query before.
    Memory(Arc<Backend>),
    /// The query id's coordinator id belongs to a known backend.
    CoordinatorId(Arc<Backend>),
    /// The shared database knew it (see `Gateway::resolve_owner`; never answered from here).
    Database(Arc<Backend>),
    Miss,
}

impl Resolution {
    pub fn backend(&self) -> Option<&Arc<Backend>> {
        match self {
            Resolution::Memory(b) | Resolution::CoordinatorId(b) | Resolution::Database(b) => {
                Some(b)
            }
            Resolution::Miss => None,
        }
    }

    pub fn source(&self) -> &'static str {
        match self {
            Resolution::Memory(_) => "memory",
            Resolution::CoordinatorId(_) => "coordinator_id",
            Resolution::Database(_) => "database",
            Resolution::Miss => "miss",
        }
    }
}

pub struct Stickiness {
    queries: Cache<IdKey, Entry>,
    transactions: Cache<IdKey, Entry>,
    /// OAuth2 logins in progress → the backend that issued the challenge (see [`crate::oauth2`]).
    logins: Cache<IdKey, Entry>,
    coordinators: ArcSwap<HashMap<CoordinatorId, Arc<Backend>>>,
    ids: IdHasher,
    epoch: Instant,
    ttl: Duration,
}

impl Stickiness {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Stickiness {
            queries: Cache::new(capacity.max(1)),
            transactions: Cache::new((capacity / 10).max(1_000)),
            logins: Cache::new((capacity / 10).max(1_000)),
            coordinators: ArcSwap::from_pointee(HashMap::new()),
            ids: IdHasher::new(),
            epoch: Instant::now(),
            ttl,
        }
    }

    fn now(&self) -> u32 {
        u32::try_from(self.epoch.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    fn fresh(&self, e: &Entry) -> bool {
        u64::from(self.now().saturating_sub(e.learned)) < self.ttl.as_secs()
    }

    fn entry(&self, backend: &Arc<Backend>) -> Entry {
        Entry {
            backend: backend.clone(),
            learned: self.now(),
            finished: false,
        }
    }

    /// Record that `backend` runs `query_id` (and owns its coordinator id).
    /// Returns the query's coordinator id if this taught us a new coordinator → backend pairing.
    ///
    /// A confused or malicious backend must not capture another backend's queries: an id that a
    /// live entry gives to another backend is not re-pointed, nor is a coordinator id that a
    /// health probe of another backend confirms.
    pub fn learn_query(&self, query_id: &str, backend: &Arc<Backend>) -> Option<CoordinatorId> {
        if !is_valid_query_id(query_id) {
            return None;
        }
        let key = self.ids.key(query_id);
        if let Some(e) = self.queries.get(&key) {
            if !same_backend(&e.backend, backend) && self.fresh(&e) {
                warn!(query_id, owner = %e.backend.name, claimed_by = %backend.name,
                      "a backend answered with the id of another backend's query; ignored");
                return None;
            }
        }
        let cid = coordinator_id(query_id);
        if let Some(cid) = cid {
            if let Some(owner) = self.coordinators.load().get(&cid) {
                if Arc::ptr_eq(owner, backend) {
                    // The common case: a known coordinator of this very backend; nothing new.
                    self.queries.insert(key, self.entry(backend));
                    return None;
                }
                if !same_backend(owner, backend) && owner.runtime.health.coordinator() == Some(cid)
                {
                    warn!(query_id, owner = %owner.name, claimed_by = %backend.name,
                          "a backend answered with a query id of another backend's coordinator; ignored");
                    return None;
                }
            }
        }
        self.queries.insert(key, self.entry(backend));
        let cid = cid?;
        self.learn_coordinator(cid, backend).then_some(cid)
    }

    /// Record a backend's coordinator id; a later owner of the same id wins (a restarted
    /// coordinator draws a new id, so a clash means the old process is gone).
    /// Returns whether the pairing is new.
    pub fn learn_coordinator(&self, cid: CoordinatorId, backend: &Arc<Backend>) -> bool {
        if self
            .coordinators
            .load()
            .get(&cid)
            .is_some_and(|b| Arc::ptr_eq(b, backend))
        {
            return false; // the common case: nothing new, no write
        }
        self.coordinators.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(cid, backend.clone());
            map
        });
        true
    }

    /// Record that a query this instance routed has finished. `true` only the first time, so a
    /// re-fetched last page or a cancel after the end is not counted twice.
    pub fn mark_finished(&self, query_id: &str) -> bool {
        let first = self.queries.entry(&self.ids.key(query_id), None, |_, e| {
            EntryAction::Retain(!std::mem::replace(&mut e.finished, true))
        });
        matches!(first, EntryResult::Retained(true))
    }

    /// Drop a coordinator id whose process is gone (its queries died with it): follow-ups of its
    /// queries then get the gateway's clean 404 instead of reaching the restarted coordinator.
    pub fn forget_coordinator(&self, cid: CoordinatorId) {
        if self.coordinators.load().contains_key(&cid) {
            self.coordinators.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.remove(&cid);
                map
            });
        }
    }

    pub fn resolve_query(&self, query_id: &str) -> Resolution {
        let cid = coordinator_id(query_id);
        if let Some(e) = self.queries.get(&self.ids.key(query_id)) {
            // A remembered query of a coordinator known to have restarted is gone too.
            let alive = cid.is_none_or(|c| self.coordinators.load().contains_key(&c));
            if alive && self.fresh(&e) {
                return Resolution::Memory(e.backend);
            }
        }
        if let Some(b) = cid.and_then(|cid| self.coordinators.load().get(&cid).cloned()) {
            return Resolution::CoordinatorId(b);
        }
        Resolution::Miss
    }

    pub fn learn_transaction(&self, txn: &str, backend: &Arc<Backend>) {
        if txn.len() <= 128 {
            self.transactions
                .insert(self.ids.key(txn), self.entry(backend));
        }
    }

    pub fn forget_transaction(&self, txn: &str) {
        self.transactions.remove(&self.ids.key(txn));
    }

    pub fn resolve_transaction(&self, txn: &str) -> Option<Arc<Backend>> {
        self.transactions
            .get(&self.ids.key(txn))
            .filter(|e| self.fresh(e))
            .map(|e| e.backend)
    }

    /// Record that `backend` issued the OAuth2 login `login`.
    pub fn learn_login(&self, login: &AuthIdHash, backend: &Arc<Backend>) {
        self.logins
            .insert(self.ids.key(login.as_str()), self.entry(backend));
    }

    /// The backend that issued `login`, if learned within `ttl`.
    pub fn resolve_login(&self, login: &AuthIdHash, ttl: Duration) -> Option<Arc<Backend>> {
        let now = self.now();
        self.logins
            .get(&self.ids.key(login.as_str()))
            .filter(|e| u64::from(now.saturating_sub(e.learned)) < ttl.as_secs())
            .map(|e| e.backend)
    }

    pub fn knows_coordinator(&self, cid: CoordinatorId) -> bool {
        self.coordinators.load().contains_key(&cid)
    }

    /// Number of coordinator ids known (for readiness and tests).
    pub fn known_coordinators(&self) -> usize {
        self.coordinators.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_query_ids() {
        assert!(is_valid_query_id("20260430_121314_00042_k3f9a"));
        assert!(!is_valid_query_id(""));
        assert!(!is_valid_query_id("../etc/passwd"));
        assert!(!is_valid_query_id("ABC"));
        assert!(!is_valid_query_id(&"a".repeat(129)));
    }

    fn backends() -> Vec<Arc<Backend>> {
        let c = crate::config::parse_str(
            "t",
            r#"
proxy: { listeners: [{ name: main, address: "127.0.0.1:1" }] }
admin: { address: "127.0.0.1:3" }
routing: { default_group: g }
groups: [{ name: g }]
backends:
  - { name: a, url: "http://127.0.0.1:10", group: g }
  - { name: b, url: "http://127.0.0.1:11", group: g }
"#,
        )
        .unwrap();
        crate::snapshot::Snapshot::compile(&c, 1, &Default::default())
            .unwrap()
            .backends
    }

    fn owner(r: &Resolution) -> (&'static str, Option<&str>) {
        (r.source(), r.backend().map(|b| &*b.name))
    }

    #[test]
    fn resolves_by_memory_then_coordinator_then_misses() {
        let s = Stickiness::new(100, Duration::from_secs(60));
        let bs = backends();
        let (a, b) = (&bs[0], &bs[1]);
        s.learn_query("20260430_121314_00042_k3f9a", a);
        assert_eq!(
            owner(&s.resolve_query("20260430_121314_00042_k3f9a")),
            ("memory", Some("a"))
        );
        assert_eq!(
            owner(&s.resolve_query("20260430_121315_00043_k3f9a")),
            ("coordinator_id", Some("a"))
        );
        assert_eq!(
            owner(&s.resolve_query("20260430_121315_00043_zzzzz")),
            ("miss", None)
        );
        s.learn_coordinator(*b"k3f9a", b);
        assert_eq!(
            owner(&s.resolve_query("20260430_121316_00044_k3f9a")),
            ("coordinator_id", Some("b"))
        );
        assert_eq!(s.known_coordinators(), 1);
        assert!(s.mark_finished("20260430_121314_00042_k3f9a"));
        assert!(
            !s.mark_finished("20260430_121314_00042_k3f9a"),
            "counted once"
        );
        assert!(
            !s.mark_finished("20260430_121314_00099_k3f9a"),
            "not routed here"
        );
        // A restarted coordinator's queries are gone, also those remembered by id.
        s.learn_query("20260430_121317_00045_k3f9a", b);
        s.forget_coordinator(*b"k3f9a");
        assert_eq!(
            owner(&s.resolve_query("20260430_121317_00045_k3f9a")),
            ("miss", None)
        );
    }

    #[test]
    fn a_backend_cannot_capture_another_backends_queries() {
        let s = Stickiness::new(100, Duration::from_secs(60));
        let bs = backends();
        let (a, b) = (&bs[0], &bs[1]);
        // `a` runs a query; `b` answers a submission with the same id: ignored.
        s.learn_query("20260430_121314_00042_k3f9a", a);
        assert_eq!(s.learn_query("20260430_121314_00042_k3f9a", b), None);
        assert_eq!(
            owner(&s.resolve_query("20260430_121314_00042_k3f9a")),
            ("memory", Some("a"))
        );
        // A probe confirms `a` runs coordinator k3f9a: `b` cannot claim new ids of it either.
        a.runtime.health.observe_coordinator(*b"k3f9a");
        s.learn_query("20260430_121320_00050_k3f9a", b);
        assert_eq!(
            owner(&s.resolve_query("20260430_121321_00051_k3f9a")),
            ("coordinator_id", Some("a"))
        );
        // Unconfirmed coordinator ids may move (a backend re-pointed to another cluster).
        s.learn_query("20260430_121322_00052_zzzz2", a);
        s.learn_query("20260430_121323_00053_zzzz2", b);
        assert_eq!(
            owner(&s.resolve_query("20260430_121324_00054_zzzz2")),
            ("coordinator_id", Some("b"))
        );
    }

    #[test]
    fn entries_expire() {
        let s = Stickiness::new(100, Duration::from_millis(0));
        let bs = backends();
        s.learn_query("custom_id", &bs[0]);
        s.learn_transaction("t1", &bs[0]);
        assert!(matches!(s.resolve_query("custom_id"), Resolution::Miss));
        assert!(s.resolve_transaction("t1").is_none());
    }
}
