//! Queries running per user and per source through this gateway instance, for the running limits
//! (`max_running_per_user`, `max_running_per_source` on a group or a policy).
//!
//! A query counts from the moment it is let through (a [`Slot`] is taken) until the gateway sees
//! it end (its last page, a cancel, a 404 from its backend). A slot whose submission was not
//! accepted is given back when dropped. A query whose end the gateway never sees (its client went
//! away mid-query) stops counting once no request of it has come by for the group's
//! `client_timeout`, as Trino itself abandons it then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::routing::RouteReason;
use crate::snapshot::Snapshot;

/// What a limit counts: one user's or one source's queries in one group or under one policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    scope: Scope,
    who: Who,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Group(Arc<str>),
    Policy(Arc<str>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    User(Arc<str>),
    Source(Arc<str>),
}

/// The limits that apply to one query, with their maximums.
pub type Limits = Vec<(LimitKey, u32)>;

/// The running limits for a query placed in `group` by `reason`, from its user and source.
pub fn limits_of(
    snap: &Snapshot,
    group: usize,
    reason: RouteReason,
    user: Option<&str>,
    source: Option<&str>,
) -> Limits {
    let mut out = Limits::new();
    let g = &snap.groups[group];
    let mut add = |scope: Scope, q: &crate::config::QueueConfig| {
        if let (Some(max), Some(u)) = (q.max_running_per_user, user) {
            out.push((
                LimitKey {
                    scope: scope.clone(),
                    who: Who::User(u.into()),
                },
                max,
            ));
        }
        if let (Some(max), Some(s)) = (q.max_running_per_source, source) {
            out.push((
                LimitKey {
                    scope,
                    who: Who::Source(s.into()),
                },
                max,
            ));
        }
    };
    add(Scope::Group(g.name.clone()), &g.queue);
    if let RouteReason::Policy(i) = reason {
        let p = &snap.policies[i];
        add(Scope::Policy(p.name.clone()), &p.queue);
    }
    out
}

#[derive(Default)]
struct Counts {
    running: HashMap<LimitKey, u32>,
    /// Accepted queries by id: their limits and when a request of theirs was last seen.
    queries: HashMap<Box<str>, Tracked>,
}

struct Tracked {
    limits: Limits,
    seen: Instant,
    idle_after: Duration,
}

/// The counts, shared by the proxy and the queue's dispatcher.
#[derive(Default)]
pub struct Running {
    counts: Mutex<Counts>,
    /// Queries counted by id (read without the lock: the common case is none).
    tracked: AtomicUsize,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a query under `limits` may start now.
    pub fn may_start(&self, limits: &Limits) -> bool {
        let c = self.lock();
        Self::below(&c, limits)
    }

    fn below(c: &Counts, limits: &Limits) -> bool {
        limits
            .iter()
            .all(|(k, max)| c.running.get(k).copied().unwrap_or(0) < *max)
    }

    /// Take a slot under `limits` if every one of them has room.
    pub fn try_start(self: &Arc<Self>, limits: Limits) -> Option<Slot> {
        let mut c = self.lock();
        if !Self::below(&c, &limits) {
            return None;
        }
        for (k, _) in &limits {
            *c.running.entry(k.clone()).or_insert(0) += 1;
        }
        Some(Slot {
            running: self.clone(),
            limits: Some(limits),
        })
    }

    fn release(c: &mut Counts, limits: &Limits) {
        for (k, _) in limits {
            if let Some(n) = c.running.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.running.remove(k);
                }
            }
        }
    }

    /// Queries counted by id right now.
    pub fn tracked(&self) -> usize {
        self.tracked.load(Ordering::Relaxed)
    }

    /// The query ended: its slot is free. False when it was not counted.
    pub fn finished(&self, query_id: &str) -> bool {
        if self.tracked() == 0 {
            return false;
        }
        let mut c = self.lock();
        match c.queries.remove(query_id) {
            Some(t) => {
                Self::release(&mut c, &t.limits);
                self.tracked.fetch_sub(1, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// A request of the query came by: it is still alive.
    pub fn seen(&self, query_id: &str) {
        if self.tracked() == 0 {
            return;
        }
        if let Some(t) = self.lock().queries.get_mut(query_id) {
            t.seen = Instant::now();
        }
    }

    /// Free the slots of queries nobody has asked about for their `client_timeout`; how many.
    pub fn sweep(&self, now: Instant) -> usize {
        if self.tracked() == 0 {
            return 0;
        }
        let mut c = self.lock();
        let idle: Vec<Box<str>> = c
            .queries
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(t.seen) > t.idle_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &idle {
            if let Some(t) = c.queries.remove(id) {
                Self::release(&mut c, &t.limits);
                self.tracked.fetch_sub(1, Ordering::Relaxed);
            }
        }
        idle.len()
    }

    /// Running queries per limit, for the admin API: (scope, kind, name, running).
    pub fn snapshot(&self) -> Vec<(String, &'static str, String, u32)> {
        let c = self.lock();
        let mut out: Vec<_> = c
            .running
            .iter()
            .map(|(k, n)| {
                let scope = match &k.scope {
                    Scope::Group(g) => format!("group:{g}"),
                    Scope::Policy(p) => format!("policy:{p}"),
                };
                let (kind, name) = match &k.who {
                    Who::User(u) => ("user", u.to_string()),
                    Who::Source(s) => ("source", s.to_string()),
                };
                (scope, kind, name, *n)
            })
            .collect();
        out.sort();
        out
    }
}

/// One query's place under its running limits; given back when dropped unless the query was
/// accepted ([`Slot::accepted`]), from then on until its end is seen.
pub struct Slot {
    running: Arc<Running>,
    limits: Option<Limits>,
}

impl Slot {
    /// The backend created query `query_id`: it holds the slot until its end is seen, or until
    /// no request of it has come by for `idle_after`.
    pub fn accepted(mut self, query_id: &str, idle_after: Duration) {
        let Some(limits) = self.limits.take() else {
            return;
        };
        let mut c = self.running.lock();
        let tracked = Tracked {
            limits,
            seen: Instant::now(),
            idle_after,
        };
        if let Some(old) = c.queries.insert(query_id.into(), tracked) {
            // The same id twice (not expected): count it once.
            Running::release(&mut c, &old.limits);
        } else {
            self.running.tracked.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(limits) = self.limits.take() {
            Running::release(&mut self.running.lock(), &limits);
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> LimitKey {
        LimitKey {
            scope: Scope::Group("g".into()),
            who: Who::User(user.into()),
        }
    }

    #[test]
    fn slots_count_until_the_end_or_idle() {
        let r = Arc::new(Running::default());
        let limits = vec![(key("alice"), 2)];
        let a = r.try_start(limits.clone()).unwrap();
        let b = r.try_start(limits.clone()).unwrap();
        assert!(r.try_start(limits.clone()).is_none());
        assert!(!r.may_start(&limits));
        // Not accepted: given back.
        drop(b);
        assert!(r.may_start(&limits));
        a.accepted("q1", Duration::from_secs(60));
        let c = r.try_start(limits.clone()).unwrap();
        c.accepted("q2", Duration::from_millis(0));
        assert!(!r.may_start(&limits));
        assert_eq!(r.tracked(), 2);
        // Another user is not limited by alice's queries.
        assert!(r.may_start(&vec![(key("bob"), 1)]));
        assert!(r.finished("q1"));
        assert!(!r.finished("q1"));
        assert!(r.may_start(&limits));
        // q2 idle past its timeout: freed by the sweep.
        assert_eq!(r.sweep(Instant::now() + Duration::from_millis(5)), 1);
        assert_eq!(r.tracked(), 0);
        assert!(r.snapshot().is_empty());
    }
}
