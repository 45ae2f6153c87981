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
}

impl Reloader {
    /// Re-read and apply the file. Returns the new snapshot version, or the reason it was rejected.
    pub async fn reload(&self) -> Result<u64, String> {
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
        if let Some(sync) = &self.sync {
            // Routing stays the database's; the file's other settings apply.
            sync.file.store(Arc::new(loaded.config));
            return match sync.reload(true).await? {
                Some(v) => Ok(v),
                None => Ok(self.snapshots.load().version),
            };
        }
        let snap = self.snapshots.replace(new).map_err(|e| e.to_string())?;
        Ok(snap.version)
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
                    let result = self.reload().await;
                    // In database mode `StateSync::reload` counts the outcome itself.
                    if self.sync.is_none() || result.is_err() {
                        let label = if result.is_ok() { "success" } else { "failure" };
                        METRICS.config_reload.with_label_values(&[label]).inc();
                    }
                    match result {
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
