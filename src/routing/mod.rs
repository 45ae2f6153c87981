//! Choosing a group for a new query (policies) and a backend within it (strategies).

pub mod facts;
pub mod policy;
pub mod query;
pub mod strategy;

use std::sync::{Arc, LazyLock};

use crate::snapshot::Snapshot;
pub use facts::RequestFacts;
use strategy::Unavailable;

/// Why a group was chosen, for logs, metrics and the dry-run API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteReason {
    /// `X-Trino-Routing-Group` named an existing group.
    Header,
    /// The policy at this index of [`Snapshot::policies`] matched.
    Policy(usize),
    Default,
}

impl RouteReason {
    pub fn policy_name<'a>(&self, snap: &'a Snapshot) -> &'a str {
        match *self {
            RouteReason::Header => "routing-group-header",
            RouteReason::Policy(i) => &snap.policies[i].name,
            RouteReason::Default => "default",
        }
    }

    /// [`RouteReason::policy_name`], shared rather than copied (for the query history).
    pub fn policy_label(&self, snap: &Snapshot) -> Arc<str> {
        static HEADER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("routing-group-header"));
        static DEFAULT: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("default"));
        match *self {
            RouteReason::Header => HEADER.clone(),
            RouteReason::Policy(i) => snap.policies[i].name.clone(),
            RouteReason::Default => DEFAULT.clone(),
        }
    }
}

/// Pick the group for a new query: header (if honoured and the group exists), then the first
/// matching policy by descending priority, then the default group.
pub fn choose_group(snap: &Snapshot, facts: &RequestFacts<'_>) -> (usize, RouteReason) {
    if snap.honor_routing_group_header {
        if let Some(g) = facts
            .routing_group
            .and_then(|name| snap.group_by_name(name.trim()))
        {
            return (g, RouteReason::Header);
        }
    }
    for (i, p) in snap.policies.iter().enumerate() {
        if p.matches(facts) {
            return (p.group, RouteReason::Policy(i));
        }
    }
    (snap.default_group, RouteReason::Default)
}

/// Where a new query goes: a backend, and whether it got there through a fallback group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub group: usize,
    pub backend: usize,
    /// The group first chosen and why it could not take the query, when a fallback applied.
    pub fell_back_from: Option<(usize, Unavailable)>,
}

/// The routing decision for a new query: the group the policies chose, why, and where the
/// group's strategy (or a fallback) placed it — or the group that could not take it and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub group: usize,
    pub reason: RouteReason,
    pub placement: Result<Placement, (usize, Unavailable)>,
}

/// Route a new query: [`choose_group`], then [`place`]. With `advance` false nothing moves (the
/// dry run); otherwise this is the proxy's one decision.
pub fn route(snap: &Snapshot, facts: &RequestFacts<'_>, advance: bool) -> Route {
    let (group, reason) = choose_group(snap, facts);
    Route {
        group,
        reason,
        placement: place(snap, group, reason, facts, advance),
    }
}

/// Pick a backend in `group`; when it has none available, fall back to the policy's
/// `fallback_group` or else the default group — unless the group is `strict`. `Err` names the
/// group first chosen and why it could not take the query. With `advance` false nothing moves (the
/// dry-run API).
pub fn place(
    snap: &Snapshot,
    group: usize,
    reason: RouteReason,
    facts: &RequestFacts<'_>,
    advance: bool,
) -> Result<Placement, (usize, Unavailable)> {
    place_with(
        snap,
        group,
        fallback_of(snap, group, reason),
        |g| g.selector.key(facts),
        advance,
    )
}

/// Where a query of `group`, chosen for `reason`, may go when the group has no room: the policy's
/// `fallback_group`, else the default group; `None` for a strict group (or one that is its own
/// fallback).
pub fn fallback_of(snap: &Snapshot, group: usize, reason: RouteReason) -> Option<usize> {
    let fallback = match reason {
        RouteReason::Policy(i) => snap.policies[i].fallback_group,
        _ => None,
    }
    .unwrap_or(snap.default_group);
    (!snap.groups[group].strict && fallback != group).then_some(fallback)
}

/// [`place`] with the fallback given and the hashed key per group given by `key` (the gateway's
/// queue places a held query with what it kept of the submission).
pub fn place_with<'k>(
    snap: &Snapshot,
    group: usize,
    fallback: Option<usize>,
    key: impl Fn(&crate::snapshot::Group) -> &'k [u8],
    advance: bool,
) -> Result<Placement, (usize, Unavailable)> {
    let pick = |g: usize| {
        let group = &snap.groups[g];
        strategy::select(snap, group, key(group), &[], advance)
    };
    let why = match pick(group) {
        Ok(backend) => {
            return Ok(Placement {
                group,
                backend,
                fell_back_from: None,
            })
        }
        Err(why) => why,
    };
    let Some(fallback) = fallback else {
        return Err((group, why));
    };
    match pick(fallback) {
        Ok(backend) => Ok(Placement {
            group: fallback,
            backend,
            fell_back_from: Some((group, why)),
        }),
        Err(_) => Err((group, why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;
    use crate::snapshot::{RuntimeRegistry, Snapshot};
    use http::HeaderMap;

    fn snap() -> Snapshot {
        let c = parse_str(
            "t",
            r#"
proxy: { listeners: [{ name: main, address: "127.0.0.1:1" }, { name: bi, address: "127.0.0.1:2" }] }
admin: { address: "127.0.0.1:3" }
routing:
  default_group: adhoc
  policies:
    - { name: low, priority: 1, match: { user: "^svc_" }, group: etl }
    - { name: high, priority: 10, match: { client_tags_all: [etl, nightly], source: "^airflow" }, group: etl }
    - { name: bi, priority: 5, match: { listener: bi }, group: bi }
    - { name: team, priority: 5, match: { headers: { X-Team: data }, host: "Data.Example.com" }, group: bi }
groups: [{ name: adhoc }, { name: etl }, { name: bi }]
"#,
        )
        .unwrap();
        Snapshot::compile(&c, 1, &RuntimeRegistry::default()).unwrap()
    }

    fn route<'s>(s: &'s Snapshot, f: RequestFacts<'_>) -> (&'s str, &'s str) {
        let (g, why) = choose_group(s, &f);
        (&s.groups[g].name, why.policy_name(s))
    }

    #[test]
    fn policies_apply_in_priority_order() {
        let s = snap();
        let h = HeaderMap::new();
        let base = RequestFacts::new("main", &h);
        assert_eq!(route(&s, base.clone()), ("adhoc", "default"));
        assert_eq!(
            route(
                &s,
                RequestFacts {
                    user: Some("svc_x"),
                    ..base.clone()
                }
            ),
            ("etl", "low")
        );
        let tagged = RequestFacts {
            client_tags: Some("nightly, etl,x"),
            source: Some("airflow-prod"),
            ..base.clone()
        };
        assert_eq!(route(&s, tagged.clone()), ("etl", "high"));
        // One tag missing: `high` fails, nothing else matches.
        assert_eq!(
            route(
                &s,
                RequestFacts {
                    client_tags: Some("etl"),
                    ..tagged.clone()
                }
            ),
            ("adhoc", "default")
        );
        assert_eq!(route(&s, RequestFacts::new("bi", &h)), ("bi", "bi"));
    }

    #[test]
    fn header_and_host_conditions() {
        let s = snap();
        let mut h = HeaderMap::new();
        h.insert("x-team", "data".parse().unwrap());
        let f = RequestFacts {
            host: Some("data.example.COM"),
            ..RequestFacts::new("main", &h)
        };
        assert_eq!(route(&s, f.clone()), ("bi", "team"));
        assert_eq!(
            route(
                &s,
                RequestFacts {
                    host: Some("other"),
                    ..f
                }
            ),
            ("adhoc", "default")
        );
    }

    #[test]
    fn routing_group_header_wins_when_the_group_exists() {
        let s = snap();
        let h = HeaderMap::new();
        let f = RequestFacts {
            routing_group: Some("bi"),
            user: Some("svc_a"),
            ..RequestFacts::new("main", &h)
        };
        assert_eq!(route(&s, f.clone()), ("bi", "routing-group-header"));
        let f = RequestFacts {
            routing_group: Some("missing"),
            ..f
        };
        assert_eq!(route(&s, f), ("etl", "low"));
    }
}
