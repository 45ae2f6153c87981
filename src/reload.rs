//! SIGHUP re-reads the config file and swaps in a new snapshot; an invalid file changes nothing.
//!
//! A reload keeps its word: every setting the request path, the health check and the admin API
//! read lives in the snapshot and takes effect with it, and the few fixed when the process
//! started ([`restart_only_changes`]) make the whole reload fail with `key: needs a restart` — never
//! "reloaded" while ignoring a change.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

use crate::config::{self, Config};
use crate::metrics::METRICS;
use crate::snapshot::SnapshotHandle;
use crate::sync::StateSync;

pub struct Reloader {
    /// `None` for configs built in memory (`demo`): nothing to re-read.
    pub file: Option<PathBuf>,
    pub snapshots: Arc<SnapshotHandle>,
    /// The config the process started with: listener and admin addresses cannot change live.
    pub started_with: Config,
    /// In database mode the file only supplies the non-routing settings.
    pub sync: Option<Arc<StateSync>>,
    /// Listener certificates, re-read on every SIGHUP (renewals need no restart).
    pub certs: Vec<Arc<crate::tls::ServerCert>>,
}

impl Reloader {
    /// Re-read and apply the file, counting the outcome in `trino_edge_config_reload_total`.
    /// Returns the new snapshot version, or the reason it was rejected.
    pub async fn reload(&self) -> Result<u64, String> {
        for c in &self.certs {
            // A broken renewal keeps the old certificate; say so, but still apply the config.
            if let Err(e) = c.reload() {
                tracing::error!("TLS certificate not reloaded (the old one stays in use): {e}");
            }
        }
        if let Some(sync) = &self.sync {
            // `StateSync::reload` counts the outcome of the database part itself.
            let file = self.check_file().inspect_err(|_| count(false))?;
            sync.file.store(Arc::new(file));
            return match sync.reload(true).await? {
                Some(v) => Ok(v),
                None => Ok(self.snapshots.load().version),
            };
        }
        let result = match self.check_file() {
            Ok(new) => self
                .snapshots
                .replace(&new)
                .map(|s| s.version)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        count(result.is_ok());
        result
    }

    /// The file, parsed and validated, if it can be applied without a restart.
    fn check_file(&self) -> Result<Config, String> {
        let Some(file) = &self.file else {
            return Err("no config file to reload (configuration was built in memory)".into());
        };
        let loaded = config::load(file).map_err(|e| e.to_string())?;
        let changed = restart_only_changes(&self.started_with, &loaded.config);
        if !changed.is_empty() {
            return Err(changed
                .iter()
                .map(|k| format!("{k}: needs a restart (or a SIGQUIT upgrade)"))
                .collect::<Vec<_>>()
                .join("; "));
        }
        Ok(loaded.config)
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                warn!("cannot listen for SIGHUP, live reload disabled: {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    match self.reload().await {
                        Ok(v) => {
                            METRICS.snapshot_version.set(v as i64);
                            info!(version = v, "configuration reloaded\n{}", self.snapshots.load().describe())
                        }
                        Err(e) => error!(
                            version = self.snapshots.load().version,
                            "configuration reload rejected, keeping the current snapshot: {e}"
                        ),
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// The settings fixed when the process started that differ between `old` and `new`, by config
/// path: the listening sockets, the admin listener's address and certificate files, the
/// database, Pingora's process settings, the sticky cache's size and lifetime, the health-check
/// cadence (the crate's `HealthCheckService` runs at a fixed frequency) and the hybrid engine's
/// thread pool. Everything else is read from the snapshot.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    fn json<T: serde::Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
    }
    // In order: each proxy service found its listener's settings by position at start.
    let sockets = |c: &Config| -> Vec<serde_json::Value> {
        c.proxy
            .listeners
            .iter()
            .map(|l| json(&(&l.name, &l.address, &l.tls)))
            .collect()
    };
    [
        (
            "proxy.listeners (names, addresses, tls)",
            sockets(old) != sockets(new),
        ),
        ("admin.address", old.admin.address != new.admin.address),
        ("admin.tls", json(&old.admin.tls) != json(&new.admin.tls)),
        ("database.url", old.database.url != new.database.url),
        ("server", json(&old.server) != json(&new.server)),
        (
            "proxy.sticky_capacity",
            old.proxy.sticky_capacity != new.proxy.sticky_capacity,
        ),
        (
            "proxy.sticky_ttl",
            old.proxy.sticky_ttl.get() != new.proxy.sticky_ttl.get(),
        ),
        (
            "health.interval",
            old.health.interval.get() != new.health.interval.get(),
        ),
        ("hybrid.threads", old.hybrid.threads != new.hybrid.threads),
    ]
    .into_iter()
    .filter(|&(_, changed)| changed)
    .map(|(k, _)| k)
    .collect()
}

fn count(ok: bool) {
    let label = if ok { "success" } else { "failure" };
    METRICS.config_reload.with_label_values(&[label]).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
proxy:
  listeners: [{ name: main, address: "127.0.0.1:1" }]
  read_timeout: 60s
admin: { address: "127.0.0.1:3" }
routing: { default_group: g }
groups: [{ name: g }]
health: { interval: 5s }
"#;

    fn changes(edit: (&str, &str)) -> Vec<&'static str> {
        let old = config::parse_str("a", BASE).unwrap();
        let new = config::parse_str("b", &BASE.replace(edit.0, edit.1)).unwrap();
        restart_only_changes(&old, &new)
    }

    #[test]
    fn restart_only_settings_are_named_and_live_ones_are_not() {
        assert!(changes(("read_timeout: 60s", "read_timeout: 1s")).is_empty());
        assert_eq!(
            changes(("interval: 5s", "interval: 1s")),
            ["health.interval"]
        );
        assert_eq!(changes(("127.0.0.1:3", "127.0.0.1:4")), ["admin.address"]);
        // The admin listener reads its limits at every accept.
        assert!(changes((
            "\"127.0.0.1:3\" }",
            "\"127.0.0.1:3\", header_timeout: 1s, idle_timeout: 2s, max_connections: 5 }"
        ))
        .is_empty());
        assert_eq!(
            changes(("127.0.0.1:1", "127.0.0.1:2")),
            ["proxy.listeners (names, addresses, tls)"]
        );
        assert_eq!(
            changes(("  read_timeout: 60s", "  sticky_ttl: 1h")),
            ["proxy.sticky_ttl"]
        );
    }
}
