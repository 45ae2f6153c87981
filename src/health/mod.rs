//! Active health and load checks on pingora-load-balancing.
//!
//! One `HealthRegistry` (held by the snapshot handle) is shared by every group selector of every
//! snapshot: each backend is one target, probed once per pass however many groups list it, and
//! its verdict survives reloads. One `HealthCheckService` runs the passes; [`TrinoHealthCheck`] is
//! its `HealthCheck`: `/v1/info`, then the probe or load query through the client protocol (or
//! Trino's `/metrics`), with the crate's rise/fall counting from `health.rise`/`health.fall`.
//! What the crate does not keep — load figures, coordinator id, version, last error, and whether
//! the backend was ever found good — goes to the backend's [`state::BackendHealth`].
//!
//! Where our semantics differ from the crate's defaults:
//! * the crate starts a new target healthy; a backend here gets no queries before a probe found
//!   it good ([`state::BackendHealth::state`] is PENDING, then UNHEALTHY until the first good
//!   probe), so a new or re-pointed backend is never routed to blind;
//! * a backend that appears in a snapshot is probed at once (a pass starts when the snapshot is
//!   swapped in), not at the next interval;
//! * the proxy listeners open only after the first pass has decided every backend
//!   ([`HealthService`] forwards the crate's readiness to Pingora's service dependencies).

pub mod probe;
pub mod state;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::SystemTime;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;
use pingora_error::{Error, ErrorType};
use pingora_load_balancing::health_check::HealthCheck;
use pingora_load_balancing::{Backend as Target, HealthCheckService};
use tracing::{info, warn};

use crate::gateway::Gateway;
use crate::query_id::coordinator_id;
use crate::snapshot::Backend;
use probe::{ProbeError, ProbeResult};

/// The `HealthCheck` the shared registry runs for every backend.
pub struct TrinoHealthCheck {
    /// Weak: the gateway owns the snapshot handle that owns the registry that owns this check.
    gateway: Weak<Gateway>,
}

impl TrinoHealthCheck {
    pub fn new(gateway: &Arc<Gateway>) -> TrinoHealthCheck {
        TrinoHealthCheck {
            gateway: Arc::downgrade(gateway),
        }
    }

    /// Store what a probe learned beside the crate's verdict.
    fn apply(
        gw: &Gateway,
        b: &Arc<Backend>,
        result: &Result<ProbeResult, ProbeError>,
        baseline: (i64, i64),
    ) {
        let h = &b.runtime.health;
        let (before, after) = h.probed(result.is_ok());
        match result {
            Ok(r) => {
                if before != after {
                    info!(backend = %b.name, from = ?before, to = ?after, "backend is healthy");
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
                        gw.sticky.forget_coordinator(old);
                    }
                    if gw.sticky.learn_coordinator(cid, b) {
                        gw.share_coordinator(cid, b);
                    }
                }
            }
            Err(e) if before != after => {
                warn!(backend = %b.name, from = ?before, to = ?after, "backend is unhealthy: {e}")
            }
            Err(_) => {}
        }
        h.update_report(|rep| {
            rep.last_check = Some(SystemTime::now());
            match result {
                Ok(r) => {
                    rep.last_error = None;
                    if r.version.is_some() {
                        rep.version.clone_from(&r.version);
                    }
                    if let Some(id) = r.query_id.as_deref().and_then(coordinator_id) {
                        rep.coordinator_id = Some(String::from_utf8_lossy(&id).into_owned());
                    }
                }
                Err(e) => rep.last_error = Some(e.to_string()),
            }
        });
    }
}

#[async_trait]
impl HealthCheck for TrinoHealthCheck {
    async fn check(&self, target: &Target) -> pingora_error::Result<()> {
        let Some(gw) = self.gateway.upgrade() else {
            return Ok(());
        };
        let snap = gw.snapshots.load();
        // A backend gone from the current snapshot (its old views not dropped yet): leave it.
        let (Some(b), true) = (snap.backend_by_target(target), snap.health.enabled) else {
            return Ok(());
        };
        let b = b.clone();
        let baseline = b.runtime.health.corrections();
        let cfg = &snap.health;
        let result = match tokio::time::timeout(
            cfg.timeout.get(),
            probe::probe(snap.upstream_client(), &b, cfg),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout(cfg.timeout.to_string())),
        };
        Self::apply(&gw, &b, &result, baseline);
        result
            .map(|_| ())
            .map_err(|e| Error::explain(ErrorType::ConnectError, e.to_string()))
    }

    async fn health_status_change(&self, target: &Target, healthy: bool) {
        let Some(gw) = self.gateway.upgrade() else {
            return;
        };
        let snap = gw.snapshots.load();
        if let Some(b) = snap.backend_by_target(target) {
            b.runtime.health.flipped(healthy);
            if healthy {
                info!(backend = %b.name, "backend passed `health.rise` probes: healthy");
            } else {
                warn!(backend = %b.name, "backend failed `health.fall` probes: unhealthy");
            }
        }
    }

    fn backend_summary(&self, target: &Target) -> String {
        let name = self.gateway.upgrade().and_then(|gw| {
            let snap = gw.snapshots.load();
            snap.backend_by_target(target).map(|b| b.name.to_string())
        });
        format!("backend {}", name.as_deref().unwrap_or("(removed)"))
    }

    fn health_threshold(&self, success: bool) -> usize {
        let (rise, fall) = self
            .gateway
            .upgrade()
            .map(|gw| {
                let snap = gw.snapshots.load();
                (snap.health.rise, snap.health.fall)
            })
            .unwrap_or((1, 1));
        (if success { rise } else { fall }).max(1) as usize
    }
}

/// Pingora background service around the crate's `HealthCheckService`: it marks the gateway warm
/// and tells dependent services (the proxy listeners) to start once the first pass is done.
pub struct HealthService {
    inner: HealthCheckService,
    gateway: Arc<Gateway>,
}

impl HealthService {
    /// The service over the snapshot handle's registry, probing every `health.interval` (fixed
    /// for the life of the process: a reload that changes it is refused).
    pub fn new(gateway: Arc<Gateway>) -> HealthService {
        let snap = gateway.snapshots.load();
        let registry = gateway.snapshots.registry.health.clone();
        registry.set_health_check(Box::new(TrinoHealthCheck::new(&gateway)));
        let mut inner = HealthCheckService::new(registry);
        inner.health_check_frequency = Some(snap.health.interval.get());
        inner.parallel_health_check = true;
        HealthService { inner, gateway }
    }
}

#[async_trait]
impl BackgroundService for HealthService {
    async fn start_with_ready_notifier(
        &self,
        shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        let (tx, mut first_pass) = tokio::sync::watch::channel(false);
        let run = self
            .inner
            .run(shutdown, Some(ServiceReadyNotifier::new(tx)));
        tokio::pin!(run);
        let mut ready = Some(ready);
        loop {
            tokio::select! {
                () = &mut run => return,
                changed = first_pass.wait_for(|&done| done), if ready.is_some() => {
                    if changed.is_ok() {
                        self.gateway.warm.store(true, Ordering::Relaxed);
                        info!("first health-check pass done: proxy listeners open");
                        if let Some(r) = ready.take() {
                            r.notify_ready();
                        }
                    }
                }
            }
        }
    }

    async fn start(&self, shutdown: ShutdownWatch) {
        let (tx, _rx) = tokio::sync::watch::channel(false);
        self.start_with_ready_notifier(shutdown, ServiceReadyNotifier::new(tx))
            .await
    }
}
