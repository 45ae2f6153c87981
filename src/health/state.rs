//! Live health and load of one backend: written by the checker, read lock-free by the strategies.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use crate::query_id::CoordinatorId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Health {
    /// Never checked yet: gets no new queries.
    Pending,
    Healthy,
    Unhealthy,
}

impl Health {
    fn from_u8(v: u8) -> Health {
        match v {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Pending,
        }
    }
    fn as_u8(self) -> u8 {
        match self {
            Health::Pending => 0,
            Health::Healthy => 1,
            Health::Unhealthy => 2,
        }
    }
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

#[derive(Debug, Default)]
pub struct BackendHealth {
    state: AtomicU8,
    ok_streak: AtomicU32,
    fail_streak: AtomicU32,
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

/// The outcome of applying one probe result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Health,
    pub to: Health,
}

impl BackendHealth {
    pub fn state(&self) -> Health {
        Health::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Apply one probe outcome with rise/fall hysteresis. The first probe decides at once, so a
    /// starting gateway routes as soon as it has looked once.
    pub fn record(&self, ok: bool, rise: u32, fall: u32) -> Transition {
        let from = self.state();
        let to = if ok {
            self.fail_streak.store(0, Ordering::Relaxed);
            let streak = self.ok_streak.fetch_add(1, Ordering::Relaxed) + 1;
            match from {
                Health::Pending => Health::Healthy,
                Health::Unhealthy if streak >= rise => Health::Healthy,
                other => other,
            }
        } else {
            self.ok_streak.store(0, Ordering::Relaxed);
            let streak = self.fail_streak.fetch_add(1, Ordering::Relaxed) + 1;
            match from {
                Health::Pending => Health::Unhealthy,
                Health::Healthy if streak >= fall => Health::Unhealthy,
                other => other,
            }
        };
        self.state.store(to.as_u8(), Ordering::Relaxed);
        Transition { from, to }
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
    fn first_probe_decides_then_rise_and_fall_apply() {
        let h = BackendHealth::default();
        assert_eq!(h.state(), Health::Pending);
        assert_eq!(h.record(true, 2, 2).to, Health::Healthy);
        assert_eq!(
            h.record(false, 2, 2).to,
            Health::Healthy,
            "one lost probe must not flap"
        );
        assert_eq!(h.record(true, 2, 2).to, Health::Healthy);
        assert_eq!(h.record(false, 2, 2).to, Health::Healthy);
        assert_eq!(h.record(false, 2, 2).to, Health::Unhealthy);
        assert_eq!(h.record(true, 2, 2).to, Health::Unhealthy);
        assert_eq!(h.record(true, 2, 2).to, Health::Healthy);
        let fresh = BackendHealth::default();
        assert_eq!(fresh.record(false, 2, 2).to, Health::Unhealthy);
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
