//! Load balancing on pingora-load-balancing: one selector per group of a snapshot, each a crate
//! `LoadBalancer` over its own view of the shared `HealthRegistry`.
//!
//! * `round_robin` and `weighted` → `Weighted<Rotation>`: the crate's weighted table (every
//!   enabled backend once, or `weight` times) walked by [`Rotation`], a round-robin counter that a
//!   dry run can read without moving;
//! * `random` → `Weighted<Random>`;
//! * `consistent` → Ketama (`KetamaHashing`) over the group's `hash_key`;
//! * `least_load` → [`LeastLoad`], our own `BackendSelection`: backends by estimated load, ties
//!   in rotation.
//!
//! Which proposal is accepted (health, limits, retries) is the caller's: see
//! [`crate::routing::strategy`].

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::FutureExt;
use pingora_core::protocols::l4::socket::SocketAddr as LbAddr;
use pingora_load_balancing::discovery::Static;
use pingora_load_balancing::selection::algorithms::Random;
use pingora_load_balancing::selection::consistent::KetamaHashing;
use pingora_load_balancing::selection::weighted::Weighted;
use pingora_load_balancing::selection::{BackendIter, BackendSelection, SelectionAlgorithm};
use pingora_load_balancing::{Backend as Target, Backends, HealthRegistry, LoadBalancer};

use crate::config::{GroupConfig, HashKey, Strategy};
use crate::health::state::BackendRuntime;
use crate::routing::facts::RequestFacts;

/// A backend as a selector sees it.
#[derive(Clone)]
pub struct Member {
    /// Its identity in the registry (see [`crate::snapshot::target_address`]).
    pub target: SocketAddr,
    pub weight: u32,
    pub enabled: bool,
    pub runtime: Arc<BackendRuntime>,
}

fn target(m: &Member, weighted: bool) -> Target {
    Target {
        addr: LbAddr::Inet(m.target),
        // Ketama asserts a weight of at least one; validation already refuses 0.
        weight: if weighted {
            m.weight.max(1) as usize
        } else {
            1
        },
        ext: Default::default(),
    }
}

/// A group's selector could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error("cannot publish the group's backends to its selector: {0}")]
    Publish(String),
}

/// The key a dry run passes: the rotating strategies then answer without moving.
const PEEK: &[u8] = b"peek";

/// A round-robin counter for the crate's `Weighted` table. The first step of a selection takes a
/// turn (a dry run only looks at it). The fallback steps the crate asks for after a skip
/// (unhealthy, full, already tried) do not take turns: they jump to a pseudo-random position
/// derived from the skipped one, so a skipped backend's turns spread evenly over the others
/// instead of all going to its neighbour in the table. (Disabled backends are not in the table.)
pub struct Rotation(AtomicUsize);

impl SelectionAlgorithm for Rotation {
    fn new() -> Self {
        Rotation(AtomicUsize::new(0))
    }

    fn next(&self, key: &[u8]) -> u64 {
        // The crate feeds the previous index back (8 bytes, little endian) for fallback steps.
        if let Ok(prev) = <[u8; 8]>::try_from(key) {
            // splitmix64: a fixed, well-spread successor.
            let mut z = u64::from_le_bytes(prev).wrapping_add(0x9e37_79b9_7f4a_7c15);
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            return z ^ (z >> 31);
        }
        if key == PEEK {
            self.0.load(Ordering::Relaxed) as u64
        } else {
            self.0.fetch_add(1, Ordering::Relaxed) as u64
        }
    }
}

/// `least_load`: the group's backends from the least to the most loaded (estimated running plus
/// reported queued queries); equal loads in an order that rotates from one selection to the next.
pub struct LeastLoad {
    entries: Box<[(Target, Option<Arc<BackendRuntime>>)]>,
    cursor: AtomicUsize,
}

/// Load score for `least_load`: estimated running plus reported queued queries.
fn load(r: &BackendRuntime) -> i64 {
    r.running_estimate() + r.queued_reported()
}

impl BackendSelection for LeastLoad {
    type Iter = LeastLoadIter;
    /// The group's backends, whose live load the selection reads.
    type Config = Vec<Member>;

    fn build_with_config(backends: &BTreeSet<Target>, config: &Self::Config) -> Self {
        let entries = backends
            .iter()
            .map(|t| {
                let r = config
                    .iter()
                    .find(|m| t.addr == LbAddr::Inet(m.target))
                    .map(|m| m.runtime.clone());
                (t.clone(), r)
            })
            .collect();
        LeastLoad {
            entries,
            cursor: AtomicUsize::new(0),
        }
    }

    fn build(backends: &BTreeSet<Target>) -> Self {
        Self::build_with_config(backends, &Vec::new())
    }

    fn iter(self: &Arc<Self>, key: &[u8]) -> LeastLoadIter {
        let n = self.entries.len().max(1);
        let start = if key == PEEK {
            self.cursor.load(Ordering::Relaxed)
        } else {
            self.cursor.fetch_add(1, Ordering::Relaxed)
        };
        let mut order: Vec<usize> = (0..self.entries.len()).map(|k| (start + k) % n).collect();
        // Stable: equal loads keep the rotated order.
        order.sort_by_key(|&i| self.entries[i].1.as_deref().map_or(i64::MAX, load));
        LeastLoadIter {
            selection: self.clone(),
            order,
            pos: 0,
        }
    }
}

pub struct LeastLoadIter {
    selection: Arc<LeastLoad>,
    order: Vec<usize>,
    pos: usize,
}

impl BackendIter for LeastLoadIter {
    fn next(&mut self) -> Option<&Target> {
        let i = *self.order.get(self.pos)?;
        self.pos += 1;
        self.selection.entries.get(i).map(|(t, _)| t)
    }
}

/// A group's selector: one of the crate's `LoadBalancer`s over the group's view of the shared
/// health registry.
pub enum Selector {
    Rotation(LoadBalancer<Weighted<Rotation>>),
    Random(LoadBalancer<Weighted<Random>>),
    Consistent(LoadBalancer<KetamaHashing>, HashKey),
    LeastLoad(LoadBalancer<LeastLoad>),
}

/// Publish `members` to a new view of `health` and build the selector over it. Only enabled
/// backends are selectable (the snapshot's probe view keeps the others probed).
fn balancer<S>(
    members: &[Member],
    weighted: bool,
    health: &Arc<HealthRegistry>,
    config: Option<S::Config>,
) -> Result<LoadBalancer<S>, SelectorError>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: BackendIter,
{
    let targets: BTreeSet<Target> = members
        .iter()
        .filter(|m| m.enabled)
        .map(|m| target(m, weighted))
        .collect();
    let view = Backends::new_with_health_registry(Static::new(targets), health.clone());
    let lb = LoadBalancer::from_backends_with_config(view, config);
    // Static discovery answers at once: publishing never waits.
    match lb.update().now_or_never() {
        Some(Ok(())) => Ok(lb),
        Some(Err(e)) => Err(SelectorError::Publish(e.to_string())),
        None => Err(SelectorError::Publish("discovery did not answer".into())),
    }
}

/// A view of every backend of a snapshot — enabled or not, in a group or not — so that each is
/// probed (once: the registry keys targets by identity) while the snapshot is current.
pub fn probe_view(
    backends: &[Member],
    health: &Arc<HealthRegistry>,
) -> Result<Backends, SelectorError> {
    let targets: BTreeSet<Target> = backends.iter().map(|m| target(m, false)).collect();
    let view = Backends::new_with_health_registry(Static::new(targets), health.clone());
    match view.update(|_| {}).now_or_never() {
        Some(Ok(())) => Ok(view),
        Some(Err(e)) => Err(SelectorError::Publish(e.to_string())),
        None => Err(SelectorError::Publish("discovery did not answer".into())),
    }
}

impl Selector {
    pub fn build(
        g: &GroupConfig,
        members: &[Member],
        health: &Arc<HealthRegistry>,
    ) -> Result<Selector, SelectorError> {
        Ok(match g.strategy {
            Strategy::RoundRobin => Selector::Rotation(balancer(members, false, health, None)?),
            Strategy::Weighted => Selector::Rotation(balancer(members, true, health, None)?),
            Strategy::Random => Selector::Random(balancer(members, false, health, None)?),
            Strategy::Consistent => Selector::Consistent(
                balancer(members, true, health, None)?,
                g.hash_key.clone().unwrap_or(HashKey::User),
            ),
            Strategy::LeastLoad => {
                Selector::LeastLoad(balancer(members, false, health, Some(members.to_vec()))?)
            }
        })
    }

    /// What consistent hashing hashes for this request (empty for the other strategies).
    pub fn key<'a>(&self, facts: &RequestFacts<'a>) -> &'a [u8] {
        let Selector::Consistent(_, key) = self else {
            return b"";
        };
        let v = match key {
            HashKey::User => facts.user,
            HashKey::Source => facts.source,
            HashKey::ClientTags => facts.client_tags,
            HashKey::Header(name) => facts
                .headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok()),
        };
        v.map(str::as_bytes).unwrap_or_default()
    }

    /// The hash key setting of a `consistent` group.
    pub fn hash_key(&self) -> Option<&HashKey> {
        match self {
            Selector::Consistent(_, k) => Some(k),
            _ => None,
        }
    }

    /// The first proposal `accept` takes (`ready`: the registry's health verdict).
    pub fn first(
        &self,
        key: &[u8],
        advance: bool,
        max: usize,
        accept: impl Fn(&Target, bool) -> bool,
    ) -> Option<Target> {
        let turn = if advance { b"".as_slice() } else { PEEK };
        match self {
            Selector::Rotation(lb) => lb.select_with(turn, max, accept),
            Selector::Random(lb) => lb.select_with(turn, max, accept),
            Selector::Consistent(lb, _) => lb.select_with(key, max, accept),
            Selector::LeastLoad(lb) => lb.select_with(turn, max, accept),
        }
    }
}
