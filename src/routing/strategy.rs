//! Picking one backend of a group for a new query.

use std::sync::atomic::Ordering;

use crate::config::Strategy;
use crate::health::state::Health;
use crate::snapshot::{Backend, Group, Snapshot};

/// Why a group could not take a new query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No backend is enabled and healthy (or all were tried already).
    NoneHealthy,
    /// Healthy backends exist, but every one is at its concurrency limit.
    AllFull,
}

/// May get new queries at all: enabled, and healthy (when health checks run).
pub fn is_routable(snap: &Snapshot, b: &Backend) -> bool {
    b.enabled && (!snap.health.enabled || b.health() == Health::Healthy)
}

/// Whether [`pick`] would find a backend, without moving any rotation.
pub fn has_candidate(snap: &Snapshot, group: &Group, exclude: &[usize]) -> bool {
    group.members.iter().any(|&bi| {
        let b = &snap.backends[bi];
        !exclude.contains(&bi) && is_routable(snap, b) && !b.is_full()
    })
}

/// Load score for `least_load`: estimated running plus reported queued queries.
fn load(b: &Backend) -> i64 {
    b.running_estimate() + b.queued_reported()
}

/// Pick a backend of `group` for a new query: routable, not full and not in `exclude` (backends
/// already tried for this request).
pub fn pick(snap: &Snapshot, group: &Group, exclude: &[usize]) -> Result<usize, Unavailable> {
    select(snap, group, exclude, true)
}

/// What [`pick`] would answer now, without moving the group's rotation (for the dry-run API; for
/// `random` and `weighted` it is one draw of the same distribution).
pub fn peek(snap: &Snapshot, group: &Group) -> Result<usize, Unavailable> {
    select(snap, group, &[], false)
}

/// The next rotation position; `advance` is false for a dry run.
#[inline]
fn cursor(group: &Group, advance: bool) -> usize {
    if advance {
        group.cursor.fetch_add(1, Ordering::Relaxed)
    } else {
        group.cursor.load(Ordering::Relaxed)
    }
}

#[inline]
fn select(
    snap: &Snapshot,
    group: &Group,
    exclude: &[usize],
    advance: bool,
) -> Result<usize, Unavailable> {
    let routable = |bi: &usize| !exclude.contains(bi) && is_routable(snap, &snap.backends[*bi]);
    let eligible = |bi: &usize| routable(bi) && !snap.backends[*bi].is_full();
    let members = &group.members;
    let none = || {
        if members.iter().any(routable) {
            Unavailable::AllFull
        } else {
            Unavailable::NoneHealthy
        }
    };
    let picked = match group.strategy {
        Strategy::RoundRobin => {
            // Rotate over the eligible backends only (counting them instead of collecting them, so
            // no allocation): with n eligible backends, n picks in a row hit each exactly once.
            let n = members.iter().filter(|bi| eligible(bi)).count();
            if n == 0 {
                return Err(none());
            }
            let k = cursor(group, advance) % n;
            members.iter().copied().filter(eligible).nth(k)
        }
        Strategy::Random => {
            let n = members.iter().filter(|bi| eligible(bi)).count();
            if n == 0 {
                return Err(none());
            }
            members
                .iter()
                .copied()
                .filter(eligible)
                .nth(fastrand::usize(..n))
        }
        Strategy::Weighted => {
            let total: u64 = members
                .iter()
                .filter(|bi| eligible(bi))
                .map(|&bi| u64::from(snap.backends[bi].weight))
                .sum();
            if total == 0 {
                return Err(none());
            }
            let mut ticket = fastrand::u64(..total);
            members.iter().copied().filter(eligible).find(|&bi| {
                let w = u64::from(snap.backends[bi].weight);
                if ticket < w {
                    true
                } else {
                    ticket -= w;
                    false
                }
            })
        }
        Strategy::LeastLoad => {
            // Lowest load; ties are broken by the rotating cursor so equal backends share work.
            let start = cursor(group, advance);
            (0..members.len())
                .map(|k| members[(start + k) % members.len()])
                .filter(eligible)
                .min_by_key(|&bi| load(&snap.backends[bi]))
        }
    };
    picked.ok_or_else(none)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::snapshot::RuntimeRegistry;

    fn snap(strategy: &str) -> Snapshot {
        let c = parse_str(
            "t",
            &format!(
                r#"
proxy: {{ listeners: [{{ name: main, address: "127.0.0.1:1" }}] }}
admin: {{ address: "127.0.0.1:3" }}
routing: {{ default_group: g }}
health: {{ enabled: false }}
groups: [{{ name: g, strategy: {strategy} }}]
backends:
  - {{ name: a, url: "http://127.0.0.1:10", group: g, weight: 1 }}
  - {{ name: b, url: "http://127.0.0.1:11", group: g, weight: 3 }}
  - {{ name: c, url: "http://127.0.0.1:12", group: g, enabled: false }}
"#
            ),
        )
        .unwrap();
        Snapshot::compile(&c, 1, &RuntimeRegistry::default()).unwrap()
    }

    #[test]
    fn round_robin_is_exact_and_skips_disabled_and_excluded() {
        let s = snap("round_robin");
        let g = &s.groups[0];
        let picks: Vec<usize> = (0..6).map(|_| pick(&s, g, &[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&b| b == 0).count(), 3);
        assert_eq!(picks.iter().filter(|&&b| b == 1).count(), 3);
        assert!(!picks.contains(&2));
        assert_eq!(pick(&s, g, &[0]), Ok(1));
        assert_eq!(pick(&s, g, &[0, 1]), Err(Unavailable::NoneHealthy));
        // A dry run names the next pick and does not move the rotation.
        let next = peek(&s, g).unwrap();
        assert_eq!(peek(&s, g), Ok(next));
        assert_eq!(pick(&s, g, &[]), Ok(next));
        assert_ne!(peek(&s, g), Ok(next));
    }

    #[test]
    fn least_load_prefers_the_idle_backend() {
        let s = snap("least_load");
        s.backends[0].runtime.inflight.store(5, Ordering::Relaxed);
        for _ in 0..4 {
            assert_eq!(pick(&s, &s.groups[0], &[]), Ok(1));
        }
    }

    #[test]
    fn weighted_and_random_respect_eligibility() {
        let s = snap("weighted");
        let mut counts = [0usize; 3];
        for _ in 0..4000 {
            counts[pick(&s, &s.groups[0], &[]).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        // weight 1:3 → about 1000:3000; allow wide slack, this is about the ratio's direction.
        assert!(counts[1] > 2 * counts[0], "{counts:?}");
        let s = snap("random");
        for _ in 0..100 {
            assert_ne!(pick(&s, &s.groups[0], &[1]), Ok(2));
        }
        assert_eq!(
            pick(&s, &s.groups[0], &[0, 1]),
            Err(Unavailable::NoneHealthy)
        );
    }

    fn checked_snap() -> Snapshot {
        let c = parse_str(
            "t",
            r#"
proxy: { listeners: [{ name: main, address: "127.0.0.1:1" }] }
admin: { address: "127.0.0.1:3" }
routing: { default_group: g }
groups: [{ name: g, strategy: least_load }]
backends:
  - { name: a, url: "http://127.0.0.1:10", group: g, max_running_queries: 4 }
  - { name: b, url: "http://127.0.0.1:11", group: g, max_queued_queries: 2 }
"#,
        )
        .unwrap();
        Snapshot::compile(&c, 1, &RuntimeRegistry::default()).unwrap()
    }

    #[test]
    fn only_healthy_backends_below_their_limits_get_queries() {
        let s = checked_snap();
        let g = &s.groups[0];
        // PENDING backends get nothing.
        assert_eq!(pick(&s, g, &[]), Err(Unavailable::NoneHealthy));
        s.backends[0].runtime.health.record(true, 2, 2);
        assert_eq!(pick(&s, g, &[]), Ok(0));
        s.backends[1].runtime.health.record(true, 2, 2);
        // Reported load decides, and queries started since the report count too.
        s.backends[0].runtime.health.set_load(3, 0);
        s.backends[1].runtime.health.set_load(1, 0);
        assert_eq!(pick(&s, g, &[]), Ok(1));
        s.backends[1]
            .runtime
            .health
            .started_since_probe
            .store(5, Ordering::Relaxed);
        assert_eq!(pick(&s, g, &[]), Ok(0));
        // a: 4 running ≥ max 4; b: 2 queued ≥ max 2 → all full.
        s.backends[0].runtime.health.set_load(4, 0);
        s.backends[1].runtime.health.set_load(0, 2);
        assert_eq!(pick(&s, g, &[]), Err(Unavailable::AllFull));
        assert!(!has_candidate(&s, g, &[]));
        s.backends[1].runtime.health.set_load(0, 1);
        assert_eq!(pick(&s, g, &[]), Ok(1));
        assert!(has_candidate(&s, g, &[]));
        assert!(!has_candidate(&s, g, &[1]));
    }
}
