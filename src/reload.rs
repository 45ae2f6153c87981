//! SIGHUP re-reads the config file and swaps in a new snapshot; an invalid file changes nothing.

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
        let new = &loaded.config;
        let addrs = |c: &Config| {
            let mut v: Vec<(String, String)> = c
                .proxy
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.address.clone()))
                .collect();
            v.sort();
            (v, c.admin.address.clone())
        };
        if addrs(new) != addrs(&self.started_with) {
            return Err(
                "listener or admin addresses changed; that needs a restart (or a SIGQUIT upgrade)"
                    .into(),
            );
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

fn count(ok: bool) {
    let label = if ok { "success" } else { "failure" };
    METRICS.config_reload.with_label_values(&[label]).inc();
}
