//! Plain configuration structs, exactly as written in the YAML file.
//!
//! The schema is a public contract: fields may be added, never renamed. Every struct denies unknown
//! keys so that a typo is an error instead of a silently ignored setting.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub routing: RoutingConfig,
    pub groups: Vec<GroupConfig>,
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    #[serde(default)]
    pub server: ServerConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub listeners: Vec<ListenerConfig>,
    /// Public URL of the gateway (e.g. `https://trino.example.com`). When set, the `X-Forwarded-*`
    /// headers sent to backends are derived from it, so `nextUri` always points at this URL; else
    /// they are derived from the request's `Host` header and the listener.
    #[serde(default)]
    pub external_url: Option<String>,
    /// Keep `X-Forwarded-*` headers sent by the client (only when a trusted proxy sits in front).
    #[serde(default)]
    pub trust_forwarded_headers: bool,
    /// Capacity of the in-process query-id → backend map.
    #[serde(default = "default_sticky_capacity")]
    pub sticky_capacity: usize,
    /// How long a learned query id stays in the in-process map.
    #[serde(default = "default_sticky_ttl")]
    pub sticky_ttl: HumanDuration,
    /// Timeout for establishing a connection to a backend; a timeout counts as a connect failure.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
}

fn default_sticky_capacity() -> usize {
    200_000
}
fn default_sticky_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(24 * 3600))
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub address: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    pub default_group: String,
    #[serde(default = "yes")]
    pub honor_routing_group_header: bool,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(rename = "match", default)]
    pub match_: MatchConfig,
    pub group: String,
}

/// Conditions of a policy; every condition given must hold, an empty match always holds.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Name of the listener the request arrived on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<String>,
    /// Every one of these tags must be in `X-Trino-Client-Tags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_tags_all: Vec<String>,
    /// At least one of these tags must be in `X-Trino-Client-Tags`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_tags_any: Vec<String>,
    /// Regex (unanchored unless you anchor it) on `X-Trino-Source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Regex on `X-Trino-User`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `Host` header without port, compared case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Exact header values (header names are case-insensitive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    #[serde(default)]
    pub strategy: Strategy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    #[default]
    RoundRobin,
    Random,
    Weighted,
    LeastLoad,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round_robin",
            Strategy::Random => "random",
            Strategy::Weighted => "weighted",
            Strategy::LeastLoad => "least_load",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    pub url: String,
    pub group: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "one")]
    pub weight: u32,
    /// Send the backend's own `host:port` as `Host` instead of the client's (for backends behind a
    /// virtual-host ingress). Off by default: a Trino without `process-forwarded` then still builds
    /// `nextUri` from the client's `Host`, i.e. pointing back at the gateway.
    #[serde(default)]
    pub rewrite_host: bool,
}

fn one() -> u32 {
    1
}

/// Process-level settings handed to Pingora.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Worker threads per listener; default: number of CPUs.
    #[serde(default)]
    pub threads: Option<usize>,
    /// On SIGTERM, keep serving this long before shutting down (Pingora's grace period).
    #[serde(default = "default_grace")]
    pub grace_period: HumanDuration,
    /// After the grace period, wait at most this long for in-flight requests.
    #[serde(default = "default_shutdown_timeout")]
    pub graceful_shutdown_timeout: HumanDuration,
    /// Absolute paths; default derived from the admin port so several instances can share a host.
    #[serde(default)]
    pub pid_file: Option<String>,
    #[serde(default)]
    pub upgrade_sock: Option<String>,
}

fn default_grace() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            threads: None,
            grace_period: default_grace(),
            graceful_shutdown_timeout: default_shutdown_timeout(),
            pid_file: None,
            upgrade_sock: None,
        }
    }
}
