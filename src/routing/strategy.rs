//! Picking one backend of a group for a new query.

use std::sync::atomic::Ordering;

use crate::config::Strategy;
use crate::snapshot::{Backend, Group, Snapshot};

/// Pick a backend of `group` that is enabled and not in `exclude` (backends that already failed to
/// connect for this request). `None` when no backend is eligible.
pub fn pick(snap: &Snapshot, group: &Group, exclude: &[usize]) -> Option<usize> {
    let eligible = |&bi: &usize| {
        let b: &Backend = &snap.backends[bi];
        b.enabled && !exclude.contains(&bi)
    };
    let members = &group.members;
    if members.is_empty() {
        return None;
    }
    match group.strategy {
        Strategy::RoundRobin => {
            // Rotate over the eligible backends only (counting them instead of collecting them, so
            // no allocation): with n eligible backends, n picks in a row hit each exactly once.
            let n = members.iter().filter(|bi| eligible(bi)).count();
            if n == 0 {
                return None;
            }
            let k = group.cursor.fetch_add(1, Ordering::Relaxed) % n;
            members.iter().copied().filter(eligible).nth(k)
        }
        Strategy::Random => {
            let candidates: Vec<usize> = members.iter().copied().filter(eligible).collect();
            (!candidates.is_empty()).then(|| candidates[fastrand::usize(..candidates.len())])
        }
        Strategy::Weighted => {
            let total: u64 = members
                .iter()
                .filter(|bi| eligible(bi))
                .map(|&bi| u64::from(snap.backends[bi].weight))
                .sum();
            if total == 0 {
                return None;
            }
            let mut ticket = fastrand::u64(..total);
            for &bi in members.iter().filter(|bi| eligible(bi)) {
                let w = u64::from(snap.backends[bi].weight);
                if ticket < w {
                    return Some(bi);
                }
                ticket -= w;
            }
            None
        }
        Strategy::LeastLoad => {
            // Fewest requests in flight (see `BackendRuntime::inflight`); ties are broken by the
            // rotating cursor so equal backends share the work.
            let start = group.cursor.fetch_add(1, Ordering::Relaxed);
            (0..members.len())
                .map(|k| members[(start + k) % members.len()])
                .filter(|bi| eligible(bi))
                .min_by_key(|&bi| snap.backends[bi].runtime.inflight.load(Ordering::Relaxed))
        }
    }
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
        assert_eq!(pick(&s, g, &[0]), Some(1));
        assert_eq!(pick(&s, g, &[0, 1]), None);
    }

    #[test]
    fn least_load_prefers_the_idle_backend() {
        let s = snap("least_load");
        s.backends[0].runtime.inflight.store(5, Ordering::Relaxed);
        for _ in 0..4 {
            assert_eq!(pick(&s, &s.groups[0], &[]), Some(1));
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
            assert_ne!(pick(&s, &s.groups[0], &[1]), Some(2));
        }
        assert_eq!(pick(&s, &s.groups[0], &[0, 1]), None);
    }
}
