//! Active health and load checks: one probe per backend every `health.interval`, as a Pingora
//! background service. Results land in each backend's [`state::BackendHealth`], which the
//! strategies read lock-free; the probe's own query teaches the gateway each coordinator id (and
//! reveals coordinator restarts) before any client query does.

pub mod probe;
pub mod state;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::proxy::Gateway;
use crate::query_id::coordinator_id;
use crate::snapshot::{Backend, Snapshot};
use probe::ProbeResult;

pub struct HealthChecker {
    gateway: Arc<Gateway>,
    http: reqwest::Client,
}

impl HealthChecker {
    pub fn new(gateway: Arc<Gateway>) -> Result<Self, String> {
        let builder = reqwest::Client::builder().pool_idle_timeout(Duration::from_secs(30));
        let http = gateway
            .upstream_tls
            .configure(builder)?
            .build()
            .map_err(|e| format!("cannot build the health-check HTTP client: {e}"))?;
        Ok(HealthChecker { gateway, http })
    }

    /// Probe every backend of `snap` concurrently, each within `health.timeout`.
    pub async fn round(&self, snap: &Snapshot) {
        let cfg = &snap.health;
        let mut probes = JoinSet::new();
        for b in &snap.backends {
            let (http, b, cfg) = (self.http.clone(), b.clone(), cfg.clone());
            probes.spawn(async move {
                let baseline = b.runtime.health.corrections();
                let result =
                    match tokio::time::timeout(cfg.timeout.get(), probe::probe(&http, &b, &cfg))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(format!("no answer within {}", cfg.timeout)),
                    };
                (b, baseline, result)
            });
        }
        while let Some(done) = probes.join_next().await {
            if let Ok((b, baseline, result)) = done {
                self.apply(snap, &b, baseline, result);
            }
        }
        self.gateway.health_rounds.fetch_add(1, Ordering::Relaxed);
    }

    fn apply(
        &self,
        snap: &Snapshot,
        b: &Arc<Backend>,
        baseline: (i64, i64),
        result: Result<ProbeResult, String>,
    ) {
        let h = &b.runtime.health;
        let t = h.record(result.is_ok(), snap.health.rise, snap.health.fall);
        match &result {
            Ok(r) => {
                if t.from != t.to {
                    info!(backend = %b.name, from = ?t.from, to = ?t.to, "backend is healthy");
                }
                if let Some((running, queued)) = r.load {
                    h.set_load_since(running, queued, baseline);
                }
                if let Some(cid) = r.query_id.as_deref().and_then(coordinator_id) {
                    if let Some(old) = h.observe_coordinator(cid) {
                        warn!(
                            backend = %b.name,
                            old = %String::from_utf8_lossy(&old),
                            new = %String::from_utf8_lossy(&cid),
                            "coordinator restarted: queries of the old coordinator are gone"
                        );
                        self.gateway.sticky.forget_coordinator(old);
                    }
                    if self.gateway.sticky.learn_coordinator(cid, b) {
                        self.gateway.share_coordinator(cid, b);
                    }
                }
            }
            Err(e) if t.from != t.to => {
                warn!(backend = %b.name, from = ?t.from, to = ?t.to, "backend is unhealthy: {e}")
            }
            Err(_) => {}
        }
        h.update_report(|rep| {
            rep.last_check = Some(SystemTime::now());
            match result {
                Ok(r) => {
                    rep.last_error = None;
                    rep.version = r.version.or(rep.version.take());
                    if let Some(id) = r.query_id.as_deref().and_then(coordinator_id) {
                        rep.coordinator_id = Some(String::from_utf8_lossy(&id).into_owned());
                    }
                }
                Err(e) => rep.last_error = Some(e),
            }
        });
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let snap = self.gateway.snapshots.load();
            let started = tokio::time::Instant::now();
            if snap.health.enabled {
                self.round(&snap).await;
            }
            // The interval may change with a reload; the next round starts one interval after
            // this one started, so slow probes don't stretch the cadence.
            let next = started + snap.health.interval.get();
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
