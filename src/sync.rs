//! Keeping every instance's snapshot in line with the shared database.
//!
//! In `database` mode the file seeds an empty database once; after that the database's groups,
//! backends and policies are the truth, and the file supplies everything else (listeners, health,
//! timeouts). Every instance polls the version counter; a change made through any instance's admin
//! API is loaded, validated and swapped in within one poll interval. The request path never waits
//! on any of this: it keeps reading the last good snapshot, also while the database is down.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::Mutex;
use tracing::{info, warn};

use crate::config::{validate, Config};
use crate::database::Database;
use crate::metrics::METRICS;
use crate::proxy::Gateway;
use crate::snapshot::SnapshotHandle;
use crate::store::drift::{self, Difference};
use crate::store::{Store, StoredRouting};

/// Which side owns groups, backends and policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ConfigSource {
    /// The database (seeded from the file when empty); the admin API changes it.
    #[default]
    Database,
    /// The file; the admin API is read-only and SIGHUP reloads the file.
    File,
}

/// The file's routing parts replaced by the database's.
pub fn merge(file: &Config, db: &StoredRouting) -> Config {
    let mut c = file.clone();
    c.groups = db.groups.clone();
    c.backends = db.backends.clone();
    c.routing.policies = db.policies.clone();
    c
}

/// Validate a merged config, with issues as one message.
pub fn check(config: &Config) -> Result<(), String> {
    validate::validate(config).map_err(|issues| {
        issues
            .iter()
            .map(|i| {
                if i.path.is_empty() {
                    i.message.clone()
                } else {
                    format!("{}: {}", i.path, i.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    })
}

pub struct StateSync {
    pub source: ConfigSource,
    pub database: Arc<Database>,
    pub snapshots: Arc<SnapshotHandle>,
    /// The file's current settings (replaced on SIGHUP).
    pub file: ArcSwap<Config>,
    /// Database version the current snapshot was built from.
    applied: AtomicI64,
    /// One reload at a time (the poller and API writes may race).
    reloading: Mutex<()>,
}

/// What [`StateSync::open`] found: the store, the config to start with and the database version
/// it came from.
pub struct Opened {
    pub store: Store,
    /// The file's config, with the database's groups, backends and policies in database mode.
    pub config: Config,
    pub version: i64,
    /// Database mode: where the database's routing config differs from the file's (ignored) one.
    pub drift: Vec<Difference>,
}

impl StateSync {
    /// Connect and migrate; in database mode also seed an empty database from the file and
    /// return the merged config and how the file differs from it (in file mode the file's config
    /// as it is).
    pub async fn open(file: &Config, source: ConfigSource) -> Result<Opened, String> {
        let url = &file.database.url;
        let store = Store::connect(url)
            .await
            .map_err(|e| format!("database {}: {e}", redact(url)))?;
        store
            .migrate()
            .await
            .map_err(|e| format!("database migration failed: {e}"))?;
        if source == ConfigSource::File {
            return Ok(Opened {
                store,
                config: file.clone(),
                version: 0,
                drift: Vec::new(),
            });
        }
        if store
            .seed(&file.groups, &file.backends, &file.routing.policies)
            .await
            .map_err(|e| format!("seeding the database failed: {e}"))?
        {
            info!("database was empty: seeded it with the file's groups, backends and policies");
        }
        let stored = store
            .load()
            .await
            .map_err(|e| format!("reading the database failed: {e}"))?;
        let merged = merge(file, &stored);
        check(&merged).map_err(|e| format!("the database's routing config is invalid: {e}"))?;
        Ok(Opened {
            drift: drift::compare(file, &stored),
            store,
            config: merged,
            version: stored.version,
        })
    }

    pub fn new(
        source: ConfigSource,
        database: Arc<Database>,
        snapshots: Arc<SnapshotHandle>,
        file: Config,
        version: i64,
    ) -> Arc<StateSync> {
        Arc::new(StateSync {
            source,
            database,
            snapshots,
            file: ArcSwap::from_pointee(file),
            applied: AtomicI64::new(version),
            reloading: Mutex::new(()),
        })
    }

    /// Learn the coordinator ids other instances stored, so this one can route follow-ups for
    /// backends it has not talked to yet. Local knowledge wins over the database's.
    pub async fn learn_shared_coordinators(&self, gateway: &Gateway) -> Result<usize, String> {
        let shared = self
            .database
            .run(|s| async move { s.coordinators().await })
            .await
            .map_err(|e| crate::database::error("coordinators", e))?;
        let snap = self.snapshots.load();
        let mut learned = 0;
        for (id, backend) in shared {
            let Some(cid) = <[u8; 5]>::try_from(id.as_bytes()).ok() else {
                continue;
            };
            if gateway.sticky.knows_coordinator(cid) {
                continue;
            }
            if let Some(b) = snap.backends.iter().find(|b| *b.name == *backend) {
                gateway.sticky.learn_coordinator(cid, b);
                learned += 1;
            }
        }
        Ok(learned)
    }

    /// Announce this instance (its held-query tag and `proxy.advertise_url`) in the database and
    /// read back the other instances, so that a poll of a query another instance holds can be
    /// forwarded there (see [`crate::queue::peers`]). Without `advertise_url` this instance is
    /// not announced, but still forwards to the instances that are.
    pub async fn share_queue_peers(&self, gateway: &Gateway) -> Result<(), String> {
        let snap = self.snapshots.load();
        let now = crate::store::now_ms();
        let tag = gateway.queue.tag();
        if let Some(url) = snap.config.proxy.advertise_url.clone() {
            let tag = String::from_utf8_lossy(&tag).into_owned();
            self.database
                .run(move |s| async move {
                    s.announce_gateway(&tag, &url, now, now - PEER_FORGOTTEN_MS)
                        .await
                })
                .await
                .map_err(|e| crate::database::error("gateways", e))?;
        }
        let rows = self
            .database
            .run(move |s| async move { s.gateways(now - PEER_ALIVE_MS).await })
            .await
            .map_err(|e| crate::database::error("gateways", e))?;
        gateway.queue.peers.refresh(rows, tag, &snap).await;
        Ok(())
    }

    /// Load the database and swap in a new snapshot if its version moved (or `force`). Counts
    /// reloads (success, or failure for an invalid config) in the metrics.
    pub async fn reload(&self, force: bool) -> Result<Option<u64>, String> {
        if self.source == ConfigSource::File {
            return Ok(None); // the file owns routing; SIGHUP reloads it
        }
        let _one = self.reloading.lock().await;
        let version = self
            .database
            .run(|s| async move { s.version().await })
            .await
            .map_err(|e| crate::database::error("version", e))?;
        if !force && version == self.applied.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let stored = self
            .database
            .run(|s| async move { s.load().await })
            .await
            .map_err(|e| crate::database::error("load", e))?;
        let merged = merge(&self.file.load(), &stored);
        if let Err(e) = check(&merged) {
            METRICS.config_reload.with_label_values(&["failure"]).inc();
            return Err(format!(
                "database version {} is invalid, keeping the current snapshot: {e}",
                stored.version
            ));
        }
        let snap = self.snapshots.replace(&merged).map_err(|e| {
            METRICS.config_reload.with_label_values(&["failure"]).inc();
            e.to_string()
        })?;
        self.applied.store(stored.version, Ordering::Relaxed);
        METRICS.config_reload.with_label_values(&["success"]).inc();
        METRICS.snapshot_version.set(snap.version as i64);
        Ok(Some(snap.version))
    }
}

/// Hide a password in a database URL for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Polls the version counter every `database.poll_interval`.
pub struct SyncService {
    pub sync: Arc<StateSync>,
    pub gateway: Arc<Gateway>,
}

/// Coordinator ids are re-read from the database every this many polls (and the gateway
/// instances holding queries are announced and read back).
const COORDINATOR_EVERY: u32 = 4;

/// An instance not announced for this long is not forwarded to (it stopped: its tag dies with it).
const PEER_ALIVE_MS: i64 = 60_000;
/// Rows of instances gone this long are deleted.
const PEER_FORGOTTEN_MS: i64 = 86_400_000;

#[async_trait]
impl BackgroundService for SyncService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut failing = false;
        let mut polls = 0u32;
        loop {
            polls = polls.wrapping_add(1);
            if polls % COORDINATOR_EVERY == 1 {
                if let Err(e) = self.sync.learn_shared_coordinators(&self.gateway).await {
                    if !failing {
                        warn!("config sync: {e}");
                    }
                }
                if let Err(e) = self.sync.share_queue_peers(&self.gateway).await {
                    if !failing {
                        warn!("config sync: {e}");
                    }
                }
            }
            let interval = self.sync.file.load().database.poll_interval.get();
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            // Log a failure once, and the recovery, instead of once per poll.
            match self.sync.reload(false).await {
                Ok(changed) => {
                    if failing {
                        info!("config sync: database reachable again");
                        failing = false;
                    }
                    if let Some(v) = changed {
                        info!(
                            version = v,
                            "routing config changed in the database; snapshot swapped"
                        );
                    }
                }
                Err(e) => {
                    if !failing {
                        warn!("config sync: {e} (routing continues on the current snapshot)");
                    }
                    failing = true;
                }
            }
        }
    }
}
