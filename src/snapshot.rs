//! The immutable routing table the request path reads, and its lock-free holder.
//!
//! A [`Snapshot`] is compiled once from a validated [`Config`] (regexes compiled, names resolved to
//! indexes, group selectors built over the shared health registry, upstream TLS loaded) and never
//! changes. Reloads build a new one and swap it in through [`SnapshotHandle`]; a request loads the
//! current `Arc<Snapshot>` once and keeps using it, so a reload never blocks or disturbs a request
//! in flight. Every proxy setting is read from the snapshot, so a reload applies it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_load_balancing::HealthRegistry;
use tracing::warn;

use crate::balance::{probe_view, Member, Selector};
use crate::config::validate::check_backend_url;
use crate::config::{
    Config, ConfigError, Forwarding, HealthConfig, ListenerConfig, QueueConfig, Spooling, Strategy,
};
pub use crate::health::state::BackendRuntime;
use crate::health::state::Health;
use crate::routing::policy::CompiledPolicy;
use crate::tls::UpstreamTls;

/// Keeps one [`BackendRuntime`] per backend (name and URL: a re-pointed backend starts over as
/// PENDING) across snapshots, and the health registry every snapshot's selectors share.
pub struct RuntimeRegistry {
    backends: Mutex<HashMap<(String, String), Arc<BackendRuntime>>>,
    /// One health verdict per backend target, shared by every group selector of every snapshot.
    pub health: Arc<HealthRegistry>,
}

impl std::fmt::Debug for RuntimeRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeRegistry").finish_non_exhaustive()
    }
}

impl Default for RuntimeRegistry {
    fn default() -> Self {
        RuntimeRegistry {
            backends: Mutex::new(HashMap::new()),
            // A target's identity is its address (see [`target_address`]); the weight a group
            // gives it must not split its health.
            health: Arc::new(HealthRegistry::with_equivalence(|t| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                t.addr.hash(&mut h);
                h.finish()
            })),
        }
    }
}

impl RuntimeRegistry {
    /// Runtimes for exactly these backends, and whether any is new; others are dropped from the
    /// registry (snapshots and sticky entries that still point at them keep theirs alive while
    /// they need them).
    fn runtimes(&self, keys: &[(String, String)]) -> (Vec<Arc<BackendRuntime>>, bool) {
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        let mut added = false;
        let out: Vec<Arc<BackendRuntime>> = keys
            .iter()
            .map(|k| {
                map.entry(k.clone())
                    .or_insert_with(|| {
                        added = true;
                        Arc::default()
                    })
                    .clone()
            })
            .collect();
        map.retain(|k, _| keys.contains(k));
        (out, added)
    }
}

/// The backend's identity in the health registry and the selectors: an address in the private
/// `fd00::/8` range derived from its name and URL (FNV-1a), the same on every instance and across
/// restarts, so consistent hashing sends a key to the same cluster everywhere. It is never
/// connected to; the connect address comes from the URL (resolved in the background).
pub fn target_address(name: &str, url: &str) -> SocketAddr {
    let fnv = |seed: u64| {
        let mut h = seed;
        for b in name.bytes().chain([0u8]).chain(url.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h
    };
    let (hi, lo) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x84222325_cbf29ce4));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    bytes[0] = 0xfd;
    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(bytes)), 8080)
}

#[derive(Debug)]
pub struct Backend {
    pub name: Arc<str>,
    pub url: String,
    /// The groups listing this backend (indexes into [`Snapshot::groups`]).
    pub groups: Vec<usize>,
    /// Identity in the health registry and the selectors (see [`target_address`]).
    pub target: SocketAddr,
    pub enabled: bool,
    pub weight: u32,
    pub tls: bool,
    /// `host:port` as written in the URL.
    pub address: String,
    /// The address to connect to when the URL names an IP; `None` for host names (see
    /// [`BackendRuntime::resolved`]).
    pub ip: Option<SocketAddr>,
    /// Host name for SNI and, with `rewrite_host`, the `Host` header.
    pub host: String,
    /// `host[:port]` as a `Host` header value.
    pub authority: String,
    pub rewrite_host: bool,
    /// The port of [`Backend::url`], explicit or the scheme's default.
    pub port: u16,
    pub forwarding: Forwarding,
    pub max_queued_queries: Option<i64>,
    pub max_running_queries: Option<i64>,
    pub runtime: Arc<BackendRuntime>,
    /// The upstream peer, built once per snapshot with its TLS and timeouts (for a host name the
    /// address is filled in per connection from [`BackendRuntime::resolved`]).
    pub peer: HttpPeer,
}

impl Backend {
    /// One of the addresses the host name resolved to, in rotation; `None` before the first
    /// successful resolution.
    pub fn resolved_address(&self) -> Option<SocketAddr> {
        let addrs = self.runtime.resolved.load();
        if addrs.is_empty() {
            return None;
        }
        addrs
            .get(self.runtime.next_address() % addrs.len())
            .copied()
    }

    pub fn health(&self) -> Health {
        self.runtime.health.state()
    }

    /// Running queries: the backend's last report plus queries started since, or — before any
    /// report — this gateway's requests in flight.
    pub fn running_estimate(&self) -> i64 {
        self.runtime.running_estimate()
    }

    pub fn queued_reported(&self) -> i64 {
        self.runtime.queued_reported()
    }

    /// At a configured concurrency limit: gets no new queries. Queries started since the last
    /// report count against both limits (each may still be queued or already running): a burst
    /// between probes must not overshoot either.
    ///
    /// Without `max_queued_queries`, queries the backend reported queued count against
    /// `max_running_queries` too: they are on their way to running (a report taken while the
    /// gateway's own fresh submissions were still queued there must not open room for more).
    pub fn is_full(&self) -> bool {
        let h = &self.runtime.health;
        let known = h.load_known.load(std::sync::atomic::Ordering::Relaxed);
        let queued_estimate = if known {
            self.queued_reported() + h.net_started_since_probe()
        } else {
            0
        };
        let queued_as_running = if known && self.max_queued_queries.is_none() {
            self.queued_reported()
        } else {
            0
        };
        self.max_running_queries
            .is_some_and(|m| self.running_estimate() + queued_as_running >= m)
            || self
                .max_queued_queries
                .is_some_and(|m| queued_estimate >= m)
    }
}

pub struct Group {
    pub name: Arc<str>,
    pub strategy: Strategy,
    /// Never fall back to another group.
    pub strict: bool,
    pub spooling: Option<Spooling>,
    /// The gateway's queue for this group and its running limits (defaults where unset).
    pub queue: QueueConfig,
    /// Indexes into [`Snapshot::backends`], in config order.
    pub members: Vec<usize>,
    /// The group's pingora-load-balancing selector over its view of the shared health registry.
    pub selector: Selector,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name)
            .field("strategy", &self.strategy)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

/// Public URL of the gateway, pre-split into the `X-Forwarded-*` values sent to backends.
#[derive(Debug, Clone)]
pub struct ExternalUrl {
    pub proto: String,
    pub host: String,
    pub port: String,
}

pub struct Snapshot {
    pub version: u64,
    /// The validated configuration this snapshot was compiled from (what the admin API shows).
    pub config: Arc<Config>,
    pub listeners: Vec<Arc<str>>,
    pub backends: Vec<Arc<Backend>>,
    pub groups: Vec<Group>,
    pub policies: Vec<CompiledPolicy>,
    pub default_group: usize,
    pub honor_routing_group_header: bool,
    pub external_url: Option<ExternalUrl>,
    pub trust_forwarded_headers: bool,
    /// Largest submission body passed on (`proxy.max_submission_bytes`).
    pub max_submission_bytes: u64,
    /// Some policy reads the statement (`match.statement`, `catalogs_any`, ...): the proxy then
    /// holds each submission body to analyze it. Without one, submissions pay nothing for this.
    pub content_routing: bool,
    /// Some group or policy limits the queries running per user or per source: the proxy then
    /// counts them (see [`crate::queue`]). Without one, submissions pay nothing for this.
    pub running_limits: bool,
    pub health: HealthConfig,
    /// Keeps every backend of this snapshot in the health registry (probed) while it is current.
    _probe_view: pingora_load_balancing::Backends,
    /// Trust and client identity for `https://` backends (`proxy.backend_tls`, re-read on reload).
    pub upstream_tls: UpstreamTls,
    /// The HTTP client to backends (health probes, hybrid subqueries), built on first use with
    /// [`Snapshot::upstream_tls`].
    upstream_client: OnceLock<reqwest::Client>,
    group_index: HashMap<String, usize>,
    backend_index: HashMap<Arc<str>, usize>,
    target_index: HashMap<SocketAddr, usize>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version)
            .field("backends", &self.backends)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Compile a validated config. Fails only if the config was not validated first, or when
    /// `proxy.backend_tls` files cannot be read.
    pub fn compile(
        config: &Config,
        version: u64,
        registry: &RuntimeRegistry,
    ) -> Result<Snapshot, ConfigError> {
        Ok(Self::compile_reporting(config, version, registry)?.0)
    }

    /// [`Snapshot::compile`], also saying whether a backend is new to the registry.
    fn compile_reporting(
        config: &Config,
        version: u64,
        registry: &RuntimeRegistry,
    ) -> Result<(Snapshot, bool), ConfigError> {
        let bug = |path: &str, msg: String| ConfigError::single("<config>", path, msg);
        let group_index: HashMap<String, usize> = config
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.clone(), i))
            .collect();
        let upstream_tls = UpstreamTls::load(config.proxy.backend_tls.as_ref())
            .map_err(|e| ConfigError::single("<config>", "proxy.backend_tls", e.to_string()))?;

        let keys: Vec<(String, String)> = config
            .backends
            .iter()
            .map(|b| (b.name.clone(), b.url.clone()))
            .collect();
        let (runtimes, added) = registry.runtimes(&keys);
        let mut runtimes = runtimes.into_iter();
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); config.groups.len()];
        let mut backends = Vec::with_capacity(config.backends.len());
        for (i, b) in config.backends.iter().enumerate() {
            let mut groups = Vec::with_capacity(b.groups.len());
            for (j, name) in b.groups.iter().enumerate() {
                let g = *group_index.get(name).ok_or_else(|| {
                    bug(
                        &format!("backends[{i}].groups[{j}]"),
                        format!("unknown group `{name}`"),
                    )
                })?;
                if !groups.contains(&g) {
                    groups.push(g);
                    members[g].push(backends.len());
                }
            }
            let url =
                check_backend_url(&b.url).map_err(|e| bug(&format!("backends[{i}].url"), e))?;
            let tls = url.scheme() == "https";
            let host = url.host_str().unwrap_or_default().to_string();
            let port = url
                .port_or_known_default()
                .unwrap_or(if tls { 443 } else { 80 });
            let bare_host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let authority = match url.port() {
                Some(p) => format!("{host}:{p}"),
                None => host.clone(),
            };
            let ip = bare_host
                .parse::<IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, port));
            let connect_to =
                ip.unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
            let mut peer = HttpPeer::new(connect_to, tls, bare_host.clone());
            if tls {
                peer.options.ca = upstream_tls.ca.clone();
                peer.client_cert_key = upstream_tls.client.clone();
            }
            peer.options.connection_timeout = Some(config.proxy.connect_timeout.get());
            peer.options.read_timeout = Some(config.proxy.read_timeout.get());
            backends.push(Arc::new(Backend {
                name: b.name.as_str().into(),
                url: b.url.trim_end_matches('/').to_string(),
                groups,
                target: target_address(&b.name, &b.url),
                enabled: b.enabled,
                weight: b.weight,
                tls,
                address: format!("{host}:{port}"),
                ip,
                host: bare_host,
                authority,
                rewrite_host: b.rewrite_host,
                port,
                forwarding: b.forwarding,
                max_queued_queries: b.max_queued_queries.map(i64::from),
                max_running_queries: b.max_running_queries.map(i64::from),
                runtime: runtimes.next().unwrap_or_default(),
                peer,
            }));
        }
        let member = |b: &Arc<Backend>| Member {
            target: b.target,
            weight: b.weight,
            enabled: b.enabled,
            runtime: b.runtime.clone(),
        };
        let all: Vec<Member> = backends.iter().map(member).collect();
        let probes =
            probe_view(&all, &registry.health).map_err(|e| bug("backends", e.to_string()))?;
        let mut groups = Vec::with_capacity(config.groups.len());
        for (gi, (g, members)) in config.groups.iter().zip(members).enumerate() {
            let member_backends: Vec<Member> =
                members.iter().map(|&bi| member(&backends[bi])).collect();
            let selector = Selector::build(g, &member_backends, &registry.health)
                .map_err(|e| bug(&format!("groups[{gi}]"), e.to_string()))?;
            groups.push(Group {
                name: g.name.as_str().into(),
                strategy: g.strategy,
                strict: g.strict,
                spooling: g.spooling,
                queue: g.queue.unwrap_or_default(),
                members,
                selector,
            });
        }

        let mut policies = Vec::with_capacity(config.routing.policies.len());
        for (i, p) in config.routing.policies.iter().enumerate() {
            let fallback = match &p.fallback_group {
                None => None,
                Some(fb) => Some(*group_index.get(fb).ok_or_else(|| {
                    bug(
                        &format!("routing.policies[{i}].fallback_group"),
                        format!("unknown group `{fb}`"),
                    )
                })?),
            };
            let group = *group_index.get(&p.group).ok_or_else(|| {
                bug(
                    &format!("routing.policies[{i}].group"),
                    format!("unknown group `{}`", p.group),
                )
            })?;
            policies.push(
                CompiledPolicy::compile(p, group, fallback)
                    .map_err(|e| bug(&format!("routing.policies[{i}]"), e))?,
            );
        }
        // Highest priority first; equal priorities keep file order (stable sort).
        policies.sort_by_key(|p| std::cmp::Reverse(p.priority));

        let default_group = *group_index
            .get(&config.routing.default_group)
            .ok_or_else(|| bug("routing.default_group", "unknown group".into()))?;

        let external_url = match &config.proxy.external_url {
            None => None,
            Some(raw) => {
                let u =
                    url::Url::parse(raw).map_err(|e| bug("proxy.external_url", e.to_string()))?;
                Some(ExternalUrl {
                    proto: u.scheme().to_string(),
                    host: u.host_str().unwrap_or_default().to_string(),
                    port: u.port_or_known_default().unwrap_or(80).to_string(),
                })
            }
        };

        let backend_index = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.name.clone(), i))
            .collect();
        let target_index = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.target, i))
            .collect();
        let content_routing = policies.iter().any(CompiledPolicy::reads_content);
        let running_limits = groups.iter().any(|g| g.queue.limits_running())
            || policies.iter().any(|p| p.queue.limits_running());
        let snap = Snapshot {
            version,
            config: Arc::new(config.clone()),
            listeners: config
                .proxy
                .listeners
                .iter()
                .map(|l| l.name.as_str().into())
                .collect(),
            backends,
            groups,
            policies,
            default_group,
            honor_routing_group_header: config.routing.honor_routing_group_header,
            external_url,
            trust_forwarded_headers: config.proxy.trust_forwarded_headers,
            max_submission_bytes: config.proxy.max_submission_bytes,
            content_routing,
            running_limits,
            health: config.health.clone(),
            upstream_tls,
            upstream_client: OnceLock::new(),
            _probe_view: probes,
            group_index,
            backend_index,
            target_index,
        };
        Ok((snap, added))
    }

    pub fn backend_by_name(&self, name: &str) -> Option<&Arc<Backend>> {
        self.backend_index.get(name).map(|&i| &self.backends[i])
    }

    /// The backend a health-registry target stands for.
    pub fn backend_by_target(
        &self,
        target: &pingora_load_balancing::Backend,
    ) -> Option<&Arc<Backend>> {
        match target.addr {
            pingora_core::protocols::l4::socket::SocketAddr::Inet(a) => {
                self.target_index.get(&a).map(|&i| &self.backends[i])
            }
            _ => None,
        }
    }

    /// The settings of the listener at `index` in `proxy.listeners` (fixed for the process).
    pub fn listener(&self, index: usize) -> Option<&ListenerConfig> {
        self.config.proxy.listeners.get(index)
    }

    /// Resolve the host names of backends given by name (all of them, or only those never
    /// resolved yet), keeping every address; a failed lookup keeps the previous addresses.
    pub async fn resolve_host_names(&self, all: bool) {
        for b in &self.backends {
            if b.ip.is_some() || (!all && !b.runtime.resolved.load().is_empty()) {
                continue;
            }
            match tokio::net::lookup_host(&b.address).await {
                Ok(found) => {
                    let (own, found): (Vec<SocketAddr>, Vec<SocketAddr>) = found.partition(|&a| {
                        crate::config::validate::own_listener(&self.config, a).is_some()
                    });
                    if let Some(a) = own.first() {
                        tracing::error!(backend = %b.name, address = %a,
                            "backend host name resolves to this gateway's own listener; that address is not used (it would loop)");
                    }
                    let mut addrs: Vec<SocketAddr> = found;
                    addrs.sort();
                    addrs.dedup();
                    if !addrs.is_empty() && **b.runtime.resolved.load() != addrs {
                        tracing::debug!(backend = %b.name, ?addrs, "resolved");
                        b.runtime.resolved.store(Arc::new(addrs));
                    }
                }
                Err(e) => warn!(backend = %b.name, "cannot resolve {}: {e}", b.address),
            }
        }
    }

    /// The HTTP client to backends for health probes and hybrid subqueries (this snapshot's
    /// upstream TLS, so a reload that rotates `proxy.backend_tls` applies to them too).
    pub fn upstream_client(&self) -> &reqwest::Client {
        self.upstream_client.get_or_init(|| {
            // Probes and hybrid subqueries carry the loop marker too: a backend that leads
            // back to this gateway answers them 508 and is never taken for healthy.
            let mut marked = http::HeaderMap::new();
            marked.insert(http::header::VIA, crate::hop::ELEMENT.clone());
            let builder = reqwest::Client::builder()
                .default_headers(marked.clone())
                .pool_idle_timeout(std::time::Duration::from_secs(30))
                .connect_timeout(std::time::Duration::from_secs(10));
            match self
                .upstream_tls
                .configure(builder)
                .and_then(|b| b.build().map_err(|e| e.to_string()))
            {
                Ok(c) => c,
                Err(e) => {
                    warn!("cannot build the health-check HTTP client with proxy.backend_tls ({e}); probing without it");
                    reqwest::Client::builder()
                        .default_headers(marked)
                        .build()
                        .unwrap_or_default()
                }
            }
        })
    }

    pub fn group_by_name(&self, name: &str) -> Option<usize> {
        self.group_index.get(name).copied()
    }

    /// Human-readable routing table, printed by `check-config` and logged on reload.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "listeners:");
        for l in &self.listeners {
            let _ = writeln!(out, "  {l}");
        }
        let _ = writeln!(out, "groups:");
        for (gi, g) in self.groups.iter().enumerate() {
            let default = if gi == self.default_group {
                " (default)"
            } else {
                ""
            };
            let inline = if g.spooling == Some(Spooling::Inline) {
                ", spooling inline"
            } else {
                ""
            };
            let hash = g
                .selector
                .hash_key()
                .map(|k| format!(" (hash_key {k})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{default}: strategy {}{hash}{inline}",
                g.name,
                g.strategy.as_str()
            );
            if g.members.is_empty() {
                let _ = writeln!(out, "    (no backends)");
            }
            for &bi in &g.members {
                let b = &self.backends[bi];
                let state = if b.enabled { "enabled" } else { "disabled" };
                let rewrite = match b.forwarding {
                    Forwarding::Rewrite => ", forwarding rewrite",
                    Forwarding::Headers => "",
                };
                let _ = writeln!(
                    out,
                    "    {} {} weight {} {state}{rewrite}",
                    b.name, b.url, b.weight
                );
            }
        }
        let _ = writeln!(out, "routing (first match wins):");
        if self.honor_routing_group_header {
            let _ = writeln!(
                out,
                "  X-Trino-Routing-Group header naming an existing group -> that group"
            );
        }
        for p in &self.policies {
            let _ = writeln!(
                out,
                "  policy {} (priority {}): {} -> {}",
                p.name,
                p.priority,
                p.describe_conditions(),
                self.groups[p.group].name
            );
        }
        let _ = writeln!(
            out,
            "  otherwise -> {}",
            self.groups[self.default_group].name
        );
        out
    }
}

/// The lock-free holder of the current snapshot.
#[derive(Debug)]
pub struct SnapshotHandle {
    current: ArcSwap<Snapshot>,
    pub registry: RuntimeRegistry,
}

impl SnapshotHandle {
    pub fn new(config: &Config) -> Result<Arc<SnapshotHandle>, ConfigError> {
        let registry = RuntimeRegistry::default();
        let snap = Snapshot::compile(config, 1, &registry)?;
        Ok(Arc::new(SnapshotHandle {
            current: ArcSwap::from_pointee(snap),
            registry,
        }))
    }

    /// The current snapshot; the only call the request path makes.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Compile `config` and swap it in; the old snapshot stays if compiling fails. A backend new
    /// to this process is probed at once (one health pass starts now), so it takes queries
    /// within one probe instead of one `health.interval`.
    pub fn replace(&self, config: &Config) -> Result<Arc<Snapshot>, ConfigError> {
        let version = self.current.load().version + 1;
        let (snap, added) = Snapshot::compile_reporting(config, version, &self.registry)?;
        let snap = Arc::new(snap);
        self.current.store(snap.clone());
        if added {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let health = self.registry.health.clone();
                let new = snap.clone();
                rt.spawn(async move {
                    new.resolve_host_names(false).await;
                    if new.health.enabled {
                        health.run_health_check(true).await;
                    }
                });
            }
        }
        Ok(snap)
    }
}
