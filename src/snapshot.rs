//! The immutable routing table the request path reads, and its lock-free holder.
//!
//! A [`Snapshot`] is compiled once from a validated [`Config`] (regexes compiled, names resolved to
//! indexes, upstream peers prepared) and never changes. Reloads build a new one and swap it in
//! through [`SnapshotHandle`]; a request loads the current `Arc<Snapshot>` once and keeps using it,
//! so a reload never blocks or disturbs a request in flight.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::validate::check_backend_url;
use crate::config::{Config, ConfigError, Forwarding, HealthConfig, Spooling, Strategy};
use crate::health::state::{BackendHealth, Health};
use crate::routing::policy::CompiledPolicy;

/// State of a backend that must outlive snapshots (a reload must not reset health or counts).
#[derive(Debug, Default)]
pub struct BackendRuntime {
    /// Requests currently proxied to this backend. For Trino this tracks running queries closely:
    /// a running query's client is almost always waiting in a long-poll page request.
    pub inflight: AtomicI64,
    pub health: BackendHealth,
}

/// Keeps one [`BackendRuntime`] per backend (name and URL: a re-pointed backend starts over as
/// PENDING) across snapshots. Only touched while compiling.
#[derive(Debug, Default)]
pub struct RuntimeRegistry {
    backends: Mutex<HashMap<(String, String), Arc<BackendRuntime>>>,
}

impl RuntimeRegistry {
    /// Runtimes for exactly these backends; others are dropped from the registry (snapshots and
    /// sticky entries that still point at them keep theirs alive while they need them).
    fn runtimes(&self, keys: &[(String, String)]) -> Vec<Arc<BackendRuntime>> {
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        let out: Vec<Arc<BackendRuntime>> = keys
            .iter()
            .map(|k| map.entry(k.clone()).or_default().clone())
            .collect();
        map.retain(|k, _| keys.contains(k));
        out
    }
}

#[derive(Debug)]
pub struct Backend {
    pub name: Arc<str>,
    pub url: String,
    pub group: usize,
    pub enabled: bool,
    pub weight: u32,
    pub tls: bool,
    /// `host:port` to connect to (resolved by Pingora at connect time).
    pub address: String,
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
}

impl Backend {
    pub fn health(&self) -> Health {
        self.runtime.health.state()
    }

    /// Running queries: the backend's last report plus queries started since, or — before any
    /// report — this gateway's requests in flight.
    pub fn running_estimate(&self) -> i64 {
        let h = &self.runtime.health;
        if h.load_known.load(std::sync::atomic::Ordering::Relaxed) {
            h.running_estimate()
        } else {
            self.runtime
                .inflight
                .load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    pub fn queued_reported(&self) -> i64 {
        self.runtime
            .health
            .reported_queued
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// At a configured concurrency limit: gets no new queries. Queries started since the last
    /// report count against both limits (each may still be queued or already running): a burst
    /// between probes must not overshoot either.
    pub fn is_full(&self) -> bool {
        let h = &self.runtime.health;
        let queued_estimate = if h.load_known.load(std::sync::atomic::Ordering::Relaxed) {
            self.queued_reported() + h.net_started_since_probe()
        } else {
            0
        };
        self.max_running_queries
            .is_some_and(|m| self.running_estimate() >= m)
            || self
                .max_queued_queries
                .is_some_and(|m| queued_estimate >= m)
    }
}

#[derive(Debug)]
pub struct Group {
    pub name: Arc<str>,
    pub strategy: Strategy,
    /// Never fall back to another group.
    pub strict: bool,
    pub spooling: Option<Spooling>,
    /// Indexes into [`Snapshot::backends`], in config order.
    pub members: Vec<usize>,
    /// Round-robin cursor; a reload starts a fresh rotation, which is harmless.
    pub cursor: AtomicUsize,
}

/// Public URL of the gateway, pre-split into the `X-Forwarded-*` values sent to backends.
#[derive(Debug, Clone)]
pub struct ExternalUrl {
    pub proto: String,
    pub host: String,
    pub port: String,
}

#[derive(Debug)]
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
    pub health: HealthConfig,
    group_index: HashMap<String, usize>,
}

impl Snapshot {
    /// Compile a validated config. Fails only if the config was not validated first.
    pub fn compile(
        config: &Config,
        version: u64,
        registry: &RuntimeRegistry,
    ) -> Result<Snapshot, ConfigError> {
        let bug = |path: &str, msg: String| ConfigError::single("<config>", path, msg);
        let group_index: HashMap<String, usize> = config
            .groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.clone(), i))
            .collect();
        let mut groups: Vec<Group> = config
            .groups
            .iter()
            .map(|g| Group {
                name: g.name.as_str().into(),
                strategy: g.strategy,
                strict: g.strict,
                spooling: g.spooling,
                members: Vec::new(),
                cursor: AtomicUsize::new(0),
            })
            .collect();

        let keys: Vec<(String, String)> = config
            .backends
            .iter()
            .map(|b| (b.name.clone(), b.url.clone()))
            .collect();
        let mut runtimes = registry.runtimes(&keys).into_iter();
        let mut backends = Vec::with_capacity(config.backends.len());
        for (i, b) in config.backends.iter().enumerate() {
            let group = *group_index.get(&b.group).ok_or_else(|| {
                bug(
                    &format!("backends[{i}].group"),
                    format!("unknown group `{}`", b.group),
                )
            })?;
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
            groups[group].members.push(backends.len());
            backends.push(Arc::new(Backend {
                name: b.name.as_str().into(),
                url: b.url.trim_end_matches('/').to_string(),
                group,
                enabled: b.enabled,
                weight: b.weight,
                tls,
                address: format!("{host}:{port}"),
                host: bare_host,
                authority,
                rewrite_host: b.rewrite_host,
                port,
                forwarding: b.forwarding,
                max_queued_queries: b.max_queued_queries.map(i64::from),
                max_running_queries: b.max_running_queries.map(i64::from),
                runtime: runtimes.next().unwrap_or_default(),
            }));
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

        Ok(Snapshot {
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
            health: config.health.clone(),
            group_index,
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
            let _ = writeln!(
                out,
                "  {}{default}: strategy {}{inline}",
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

    /// Compile `config` and swap it in; the old snapshot stays if compiling fails.
    pub fn replace(&self, config: &Config) -> Result<Arc<Snapshot>, ConfigError> {
        let version = self.current.load().version + 1;
        let snap = Arc::new(Snapshot::compile(config, version, &self.registry)?);
        self.current.store(snap.clone());
        Ok(snap)
    }
}
