//! Host names of backends resolved in the background, never on the request path: once before
//! the proxy listeners open, then every [`REFRESH`] (all addresses are kept; connections rotate
//! over them). A backend new in a snapshot is resolved when the snapshot is swapped in.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::services::ServiceReadyNotifier;

use crate::snapshot::SnapshotHandle;

/// How often every host name is looked up again.
pub const REFRESH: Duration = Duration::from_secs(30);

pub struct Resolver {
    pub snapshots: Arc<SnapshotHandle>,
}

#[async_trait]
impl BackgroundService for Resolver {
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: ServiceReadyNotifier,
    ) {
        self.snapshots.load().resolve_host_names(true).await;
        ready.notify_ready();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REFRESH) => self.snapshots.load().resolve_host_names(true).await,
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn start(&self, shutdown: ShutdownWatch) {
        let (tx, _rx) = tokio::sync::watch::channel(false);
        self.start_with_ready_notifier(shutdown, ServiceReadyNotifier::new(tx))
            .await
    }
}
