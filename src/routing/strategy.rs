//! Picking one backend of a group for a new query: the group's [`Selector`] (on
//! pingora-load-balancing, see [`crate::balance`]) proposes backends in its strategy's order, and
//! this module accepts the first that may take the query — enabled, healthy (and probed good at
//! least once), below its concurrency limits, not already tried — keeping apart "all full" from
//! "none healthy".

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

/// Whether [`select`] would find a backend, without moving any rotation.
pub fn has_candidate(snap: &Snapshot, group: &Group, exclude: &[usize]) -> bool {
    group
        .members
        .iter()
        .any(|&bi| !exclude.contains(&bi) && available(snap, &snap.backends[bi]))
}

/// May take a new query now: routable and below its concurrency limits.
pub fn available(snap: &Snapshot, b: &Backend) -> bool {
    is_routable(snap, b) && !b.is_full()
}

/// Pick a backend of `group` for a new query: routable, not full and not in `exclude` (backends
/// already tried for this request). `key` is what a `consistent` group hashes (see
/// [`Selector::key`]); with `advance` false nothing moves (the dry run).
pub fn select(
    snap: &Snapshot,
    group: &Group,
    key: &[u8],
    exclude: &[usize],
    advance: bool,
) -> Result<usize, Unavailable> {
    let eligible = |bi: usize| !exclude.contains(&bi) && available(snap, &snap.backends[bi]);
    // Every member appears at least once within this many steps of any of the crate's iterators.
    let max = 16 * group.members.len() + 64;
    // The accepted member, noted by `accept` so it is not looked up twice. Groups are small: a
    // scan of the members beats hashing the target's address.
    let accepted = std::cell::Cell::new(None);
    let position = |t: &pingora_load_balancing::Backend| {
        let pingora_core::protocols::l4::socket::SocketAddr::Inet(addr) = t.addr else {
            return None;
        };
        group
            .members
            .iter()
            .copied()
            .find(|&bi| snap.backends[bi].target == addr)
    };
    let picked = group.selector.first(key, advance, max, |t, ready| {
        ready
            && position(t).is_some_and(|bi| {
                let ok = eligible(bi);
                if ok {
                    accepted.set(Some(bi));
                }
                ok
            })
    });
    if let (Some(_), Some(bi)) = (picked, accepted.get()) {
        return Ok(bi);
    }
    // The crate's iterators bound their walk; make sure "none" really means none.
    if let Some(&bi) = group.members.iter().find(|&&bi| eligible(bi)) {
        return Ok(bi);
    }
    let routable = group
        .members
        .iter()
        .any(|&bi| !exclude.contains(&bi) && is_routable(snap, &snap.backends[bi]));
    Err(if routable {
        Unavailable::AllFull
    } else {
        Unavailable::NoneHealthy
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::routing::facts::RequestFacts;
    use crate::snapshot::RuntimeRegistry;
    use http::HeaderMap;
    use std::sync::atomic::Ordering;

    fn snap_with(strategy: &str, extra: &str) -> Snapshot {
        let c = parse_str(
            "t",
            &format!(
                r#"
proxy: {{ listeners: [{{ name: main, address: "127.0.0.1:1" }}] }}
admin: {{ address: "127.0.0.1:3" }}
routing: {{ default_group: g }}
health: {{ enabled: false }}
groups: [{{ name: g, strategy: {strategy} {extra} }}]
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

    fn snap(strategy: &str) -> Snapshot {
        snap_with(strategy, "")
    }

    fn pick(s: &Snapshot, exclude: &[usize]) -> Result<usize, Unavailable> {
        select(s, &s.groups[0], b"", exclude, true)
    }

    #[test]
    fn round_robin_is_exact_and_skips_disabled_and_excluded() {
        let s = snap("round_robin");
        let picks: Vec<usize> = (0..6).map(|_| pick(&s, &[]).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&b| b == 0).count(), 3, "{picks:?}");
        assert_eq!(picks.iter().filter(|&&b| b == 1).count(), 3, "{picks:?}");
        assert!(!picks.contains(&2));
        assert_eq!(pick(&s, &[0]), Ok(1));
        assert_eq!(pick(&s, &[0, 1]), Err(Unavailable::NoneHealthy));
        // A dry run names the next pick and does not move the rotation.
        let g = &s.groups[0];
        let next = select(&s, g, b"", &[], false).unwrap();
        assert_eq!(select(&s, g, b"", &[], false), Ok(next));
        assert_eq!(pick(&s, &[]), Ok(next));
        assert_ne!(select(&s, g, b"", &[], false), Ok(next));
    }

    #[test]
    fn least_load_prefers_the_idle_backend() {
        let s = snap("least_load");
        s.backends[0]
            .runtime
            .inflight
            .store(5, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..4 {
            assert_eq!(pick(&s, &[]), Ok(1));
        }
    }

    #[test]
    fn weighted_follows_the_weights_exactly_and_random_respects_eligibility() {
        let s = snap("weighted");
        let mut counts = [0usize; 3];
        for _ in 0..400 {
            counts[pick(&s, &[]).unwrap()] += 1;
        }
        assert_eq!(counts[2], 0);
        // weight 1:3, the disabled backend's turns going to the next one.
        assert!(counts[1] >= 2 * counts[0], "{counts:?}");
        let s = snap("random");
        for _ in 0..100 {
            assert_ne!(pick(&s, &[1]), Ok(2));
        }
        assert_eq!(pick(&s, &[0, 1]), Err(Unavailable::NoneHealthy));
    }

    #[test]
    fn consistent_hashing_keeps_a_key_on_one_backend() {
        let s = snap_with("consistent", ", hash_key: \"header:X-Team\"");
        let h = HeaderMap::new();
        let facts = RequestFacts::new("main", &h);
        assert_eq!(s.groups[0].selector.key(&facts), b"");
        let mut teams = HeaderMap::new();
        teams.insert("x-team", "blue".parse().unwrap());
        let facts = RequestFacts::new("main", &teams);
        let key = s.groups[0].selector.key(&facts);
        assert_eq!(key, b"blue");
        let first = select(&s, &s.groups[0], key, &[], true).unwrap();
        for _ in 0..50 {
            assert_eq!(select(&s, &s.groups[0], key, &[], true), Ok(first));
        }
        // Its backend excluded, the key moves to the next one on the ring, and only there.
        let other = select(&s, &s.groups[0], key, &[first], true).unwrap();
        assert_ne!(other, first);
        assert_ne!(other, 2, "disabled");
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
    fn without_a_queued_limit_reported_queued_queries_count_as_running() {
        let s = checked_snap();
        // a: max_running_queries 4 only; b: max_queued_queries 2 only.
        s.backends[0].runtime.health.set_load(2, 2);
        assert!(s.backends[0].is_full(), "2 running + 2 queued of 4");
        s.backends[0].runtime.health.set_load(2, 1);
        assert!(!s.backends[0].is_full());
        s.backends[1].runtime.health.set_load(9, 1);
        assert!(!s.backends[1].is_full(), "no running limit on b");
    }

    #[test]
    fn only_healthy_backends_below_their_limits_get_queries() {
        let s = checked_snap();
        let g = &s.groups[0];
        // PENDING backends get nothing, though the crate starts every target healthy.
        assert_eq!(pick(&s, &[]), Err(Unavailable::NoneHealthy));
        s.backends[0].runtime.health.force(true);
        assert_eq!(pick(&s, &[]), Ok(0));
        s.backends[1].runtime.health.force(true);
        // Reported load decides, and queries started since the report count too.
        s.backends[0].runtime.health.set_load(3, 0);
        s.backends[1].runtime.health.set_load(1, 0);
        assert_eq!(pick(&s, &[]), Ok(1));
        s.backends[1]
            .runtime
            .health
            .started_since_probe
            .store(5, Ordering::Relaxed);
        assert_eq!(pick(&s, &[]), Ok(0));
        // a: 4 running ≥ max 4; b: 2 queued ≥ max 2 → all full.
        s.backends[0].runtime.health.set_load(4, 0);
        s.backends[1].runtime.health.set_load(0, 2);
        assert_eq!(pick(&s, &[]), Err(Unavailable::AllFull));
        assert!(!has_candidate(&s, g, &[]));
        s.backends[1].runtime.health.set_load(0, 1);
        assert_eq!(pick(&s, &[]), Ok(1));
        assert!(has_candidate(&s, g, &[]));
        assert!(!has_candidate(&s, g, &[1]));
        // A failed probe makes it unroutable.
        s.backends[1].runtime.health.force(false);
        assert_eq!(pick(&s, &[]), Err(Unavailable::AllFull));
    }
}
