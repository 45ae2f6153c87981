//! Live health and load of one backend: written by the health check, read lock-free by the
//! strategies.
//!
//! The rise/fall verdict itself is pingora-load-balancing's (its `HealthRegistry` keeps one per
//! backend); this state mirrors it for readers that have no selector at hand (admin API, metrics,
//! readiness) and adds what the crate does not know: whether the backend was ever probed and
//! found good (the crate starts every new target healthy; we give a new backend no queries before
//! its first good probe), the load it reported and its coordinator id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use arc_swap::ArcSwap;
use std::time::SystemTime;

use serde::Serialize;

use crate::query_id::CoordinatorId;

/// State of a backend that must outlive snapshots (a reload must not reset health or counts).
#[derive(Debug, Default)]
pub struct BackendRuntime {
    /// Requests currently proxied to this backend. For Trino this tracks running queries closely:
    /// a running query's client is almost always waiting in a long-poll page request.
    pub inflight: AtomicI64,
    pub health: BackendHealth,
    /// The addresses the backend's host name resolved to (kept fresh in the background; empty
    /// until the first resolution, and unused for IP literals).
    pub resolved: ArcSwap<Vec<SocketAddr>>,
    /// Rotates connections over [`BackendRuntime::resolved`].
    next_address: AtomicUsize,
}

impl BackendRuntime {
    /// Running queries: the backend's last report plus queries started since, or — before any
    /// report — this gateway's requests in flight.
    pub fn running_estimate(&self) -> i64 {
        if self.health.load_known.load(Ordering::Relaxed) {
            self.health.running_estimate()
        } else {
            self.inflight.load(Ordering::Relaxed)
        }
    }

    pub fn queued_reported(&self) -> i64 {
        self.health.reported_queued.load(Ordering::Relaxed)
    }

    /// The next position in the rotation over resolved addresses.
    pub fn next_address(&self) -> usize {
        self.next_address.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    /// Never checked yet: gets no new queries.
    Pending,
    Healthy,
    Unhealthy,
}

/// What the last probe found, for operators (admin API, logs); not read on the request path.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeReport {
    pub last_check: Option<SystemTime>,
    pub last_error: Option<String>,
    pub version: Option<String>,
    pub coordinator_id: Option<String>,
    /// How many coordinator restarts (changes of coordinator id) the checker has seen.
    pub restarts: u64,
}

#[derive(Debug)]
pub struct BackendHealth {
    /// Probes completed, good or bad.
    probes: AtomicU64,
    /// Some probe found the backend good: until then it gets no queries.
    ever_ok: AtomicBool,
    /// The registry's rise/fall verdict, mirrored on every flip (the crate starts targets healthy).
    healthy: AtomicBool,
    /// Backend-reported counts from the last load probe.
    pub reported_running: AtomicI64,
    pub reported_queued: AtomicI64,
    pub load_known: AtomicBool,
    /// Queries this gateway sent to the backend since its last load report: the correction that
    /// keeps least-load and the limits honest between probes (a burst must not all go to the
    /// backend that looked idle at the last probe).
    pub started_since_probe: AtomicI64,
    /// Queries this gateway saw finish (last page, cancel) since the last load report.
    pub finished_since_probe: AtomicI64,
    coordinator: Mutex<Option<CoordinatorId>>,
    report: Mutex<ProbeReport>,
}

impl Default for BackendHealth {
    fn default() -> Self {
        BackendHealth {
            probes: AtomicU64::new(0),
            ever_ok: AtomicBool::new(false),
            healthy: AtomicBool::new(true),
            reported_running: AtomicI64::new(0),
            reported_queued: AtomicI64::new(0),
            load_known: AtomicBool::new(false),
            started_since_probe: AtomicI64::new(0),
            finished_since_probe: AtomicI64::new(0),
            coordinator: Mutex::new(None),
            report: Mutex::new(ProbeReport::default()),
        }
    }
}

impl BackendHealth {
    /// PENDING before the first probe; HEALTHY once a probe found it good and the registry's
    /// rise/fall verdict agrees; UNHEALTHY otherwise.
    pub fn state(&self) -> Health {
        if self.probes.load(Ordering::Relaxed) == 0 {
            Health::Pending
        } else if self.ever_ok.load(Ordering::Relaxed) && self.healthy.load(Ordering::Relaxed) {
            Health::Healthy
        } else {
            Health::Unhealthy
        }
    }

    /// Count one probe outcome (the rise/fall verdict is the registry's, see [`Self::flipped`]).
    /// Returns the state before and after.
    pub fn probed(&self, ok: bool) -> (Health, Health) {
        let before = self.state();
        if ok {
            self.ever_ok.store(true, Ordering::Relaxed);
        }
        self.probes.fetch_add(1, Ordering::Relaxed);
        (before, self.state())
    }

    /// The registry flipped its verdict (after `rise` good or `fall` bad probes in a row).
    pub fn flipped(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    /// Set the state directly (tests of the strategies, which run no probes).
    pub fn force(&self, ok: bool) {
        self.flipped(ok);
        self.probed(ok);
    }

    /// The correction counters now; taken when a probe starts.
    pub fn corrections(&self) -> (i64, i64) {
        (
            self.started_since_probe.load(Ordering::Relaxed),
            self.finished_since_probe.load(Ordering::Relaxed),
        )
    }

    /// Store a load report from a probe that started when the counters were `baseline`: only what
    /// the report already covers is taken off the counters, so queries started while the probe was
    /// in flight still count (a reset to zero would lose them and let a burst overshoot a limit).
    pub fn set_load_since(&self, running: i64, queued: i64, baseline: (i64, i64)) {
        self.reported_running.store(running, Ordering::Relaxed);
        self.reported_queued.store(queued, Ordering::Relaxed);
        self.started_since_probe
            .fetch_sub(baseline.0, Ordering::Relaxed);
        self.finished_since_probe
            .fetch_sub(baseline.1, Ordering::Relaxed);
        self.load_known.store(true, Ordering::Relaxed);
    }

    /// Store a load report that covers everything counted so far.
    pub fn set_load(&self, running: i64, queued: i64) {
        self.set_load_since(running, queued, self.corrections());
    }

    /// Queries started minus queries seen finishing since the last load report.
    pub fn net_started_since_probe(&self) -> i64 {
        self.started_since_probe.load(Ordering::Relaxed)
            - self.finished_since_probe.load(Ordering::Relaxed)
    }

    /// Estimated running queries: the last report, plus what we started since, minus what we saw
    /// finish since. Abandoned queries (clients that never read the last page) skew it for at most
    /// one probe interval, because every report starts the correction over.
    pub fn running_estimate(&self) -> i64 {
        (self.reported_running.load(Ordering::Relaxed) + self.net_started_since_probe()).max(0)
    }

    /// The coordinator id the last probe saw (`None` before the first or without SQL probes).
    pub fn coordinator(&self) -> Option<CoordinatorId> {
        *self.coordinator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remember the coordinator id seen by a probe; returns the previous one if it changed
    /// (the coordinator restarted).
    pub fn observe_coordinator(&self, cid: CoordinatorId) -> Option<CoordinatorId> {
        let mut cur = self.coordinator.lock().unwrap_or_else(|p| p.into_inner());
        let previous = cur.replace(cid);
        match previous {
            Some(prev) if prev != cid => {
                self.report
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .restarts += 1;
                Some(prev)
            }
            _ => None,
        }
    }

    pub fn update_report(&self, f: impl FnOnce(&mut ProbeReport)) {
        f(&mut self.report.lock().unwrap_or_else(|p| p.into_inner()));
    }

    pub fn report(&self) -> ProbeReport {
        self.report
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_backend_is_pending_until_probed_and_healthy_only_after_a_good_probe() {
        let h = BackendHealth::default();
        assert_eq!(h.state(), Health::Pending);
        // The registry starts targets healthy; a failed first probe still leaves it unusable.
        assert_eq!(h.probed(false), (Health::Pending, Health::Unhealthy));
        assert_eq!(h.probed(true), (Health::Unhealthy, Health::Healthy));
        h.flipped(false);
        assert_eq!(h.state(), Health::Unhealthy);
        assert_eq!(
            h.probed(true).1,
            Health::Unhealthy,
            "rise is the registry's call"
        );
        h.flipped(true);
        assert_eq!(h.state(), Health::Healthy);
    }

    #[test]
    fn coordinator_changes_are_restarts() {
        let h = BackendHealth::default();
        assert_eq!(h.observe_coordinator(*b"aaaaa"), None);
        assert_eq!(h.observe_coordinator(*b"aaaaa"), None);
        assert_eq!(h.observe_coordinator(*b"bbbbb"), Some(*b"aaaaa"));
        assert_eq!(h.report().restarts, 1);
    }

    #[test]
    fn load_report_resets_the_correction() {
        let h = BackendHealth::default();
        h.started_since_probe.fetch_add(3, Ordering::Relaxed);
        assert_eq!(h.running_estimate(), 3);
        h.finished_since_probe.fetch_add(2, Ordering::Relaxed);
        assert_eq!(h.running_estimate(), 1);
        h.set_load(5, 1);
        assert_eq!(h.running_estimate(), 5);
        // A query started while a probe was in flight survives that probe's report.
        let baseline = h.corrections();
        h.started_since_probe.fetch_add(1, Ordering::Relaxed);
        h.set_load_since(5, 1, baseline);
        assert_eq!(h.running_estimate(), 6);
    }
}
