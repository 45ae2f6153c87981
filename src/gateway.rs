//! State shared by every listener, the admin API and the health check of one gateway process:
//! the snapshot holder, query ownership (memory, coordinator ids, the shared database) and the
//! history sink. The request path reads it; settings live in the snapshot, not here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::database::Database;
use crate::history::{HistoryEvent, HistorySink};
use crate::lifecycle::Lifecycle;
use crate::metrics::METRICS;
use crate::oauth2::{AuthIdHash, Leg};
use crate::query_id::{coordinator_id, CoordinatorId};
use crate::queue::Queue;
use crate::snapshot::{Backend, SnapshotHandle};
use crate::stickiness::{Resolution, Stickiness};

/// Longest wait for the database when a follow-up's owner is unknown in memory.
const DATABASE_LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// Longest wait for the database when sharing an OAuth2 login's backend (the challenge waits).
const DATABASE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Database lookups allowed at once (see [`Gateway::resolve_owner`]).
const LOOKUP_PERMITS: usize = 8;

pub struct Gateway {
    pub snapshots: Arc<SnapshotHandle>,
    pub sticky: Stickiness,
    /// The first health-check pass has decided every backend (the proxy listeners open then).
    pub warm: AtomicBool,
    /// Where query history and learned coordinator ids go (`None` in tests without a database).
    pub history: Option<HistorySink>,
    /// The shared database, asked when nothing in memory knows a query's owner.
    pub database: Option<Arc<Database>>,
    /// Concurrent database lookups allowed (see [`Gateway::resolve_owner`]).
    lookup_permits: tokio::sync::Semaphore,
    /// This instance's name in the history (shared by every record, not copied).
    pub instance: Arc<str>,
    /// Draining and requests in flight ([`crate::lifecycle`]).
    pub lifecycle: Arc<Lifecycle>,
    /// Queries held while their clusters are full, and running limits ([`crate::queue`]).
    pub queue: Arc<Queue>,
}

impl Gateway {
    pub fn new(
        snapshots: Arc<SnapshotHandle>,
        sticky: Stickiness,
        history: Option<HistorySink>,
        database: Option<Arc<Database>>,
        instance: impl Into<Arc<str>>,
    ) -> Gateway {
        Gateway {
            snapshots,
            sticky,
            warm: AtomicBool::new(false),
            history,
            database,
            lookup_permits: tokio::sync::Semaphore::new(LOOKUP_PERMITS),
            instance: instance.into(),
            lifecycle: Lifecycle::new(),
            queue: Arc::new(Queue::new()),
        }
    }

    pub fn is_warm(&self) -> bool {
        self.warm.load(Ordering::Relaxed)
    }

    /// Learn a query's owner; a coordinator new to this instance is shared through the database.
    pub fn learn_query(&self, query_id: &str, backend: &Arc<Backend>) {
        if let Some(cid) = self.sticky.learn_query(query_id, backend) {
            self.share_coordinator(cid, backend);
        }
    }

    /// The one owner resolver for follow-ups: memory, then the query id's coordinator id, then
    /// the shared database, else a miss. Counted in `trino_edge_sticky_resolution_total`.
    pub async fn resolve_owner(&self, query_id: &str) -> Resolution {
        let owner = match self.sticky.resolve_query(query_id) {
            Resolution::Miss => match self.lookup_in_database(query_id).await {
                Some(b) => Resolution::Database(b),
                None => Resolution::Miss,
            },
            known => known,
        };
        METRICS
            .sticky_resolution
            .with_label_values(&[owner.source()])
            .inc();
        owner
    }

    /// The owner of `query_id` according to the database: its history entry, else its
    /// coordinator id. Bounded in time: a slow database gives a 404, not a hanging client.
    async fn lookup_in_database(&self, query_id: &str) -> Option<Arc<Backend>> {
        let db = self.database.as_ref()?;
        // Unknown ids are cheap to send: bound how many lookups may run at once, and treat the
        // rest as misses right away instead of queueing them on the database.
        let _permit = self.lookup_permits.try_acquire().ok()?;
        let id = query_id.to_string();
        let cid = coordinator_id(query_id).map(|c| String::from_utf8_lossy(&c).into_owned());
        let lookup = db.run(move |s| async move {
            match s.query_backend(&id).await? {
                Some(b) => Ok(Some(b)),
                None => match cid {
                    Some(cid) => s.coordinator(&cid).await,
                    None => Ok(None),
                },
            }
        });
        let name = match tokio::time::timeout(DATABASE_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(name)) => name?,
            Ok(Err(e)) => {
                warn!(
                    "query owner lookup failed: {}",
                    crate::database::error("lookup", e)
                );
                return None;
            }
            Err(_) => {
                METRICS.db_errors.with_label_values(&["lookup"]).inc();
                return None;
            }
        };
        let snap = self.snapshots.load();
        let b = snap.backend_by_name(&name)?.clone();
        // The history remembers queries of a coordinator that has restarted since: they are gone.
        let current = b.runtime.health.coordinator();
        if let (Some(q), Some(cur)) = (coordinator_id(query_id), current) {
            if q != cur {
                return None;
            }
        }
        self.sticky.learn_query(query_id, &b);
        Some(b)
    }

    /// Pin an OAuth2 login to the backend that issued its challenge: in memory, and in the shared
    /// database before the challenge reaches the client, so that whichever instance its browser
    /// and its token poll reach next knows the backend. A database failure is logged and counted;
    /// the login then works through this instance only.
    pub async fn pin_login(&self, login: AuthIdHash, backend: &Arc<Backend>, ttl: Duration) {
        self.sticky.learn_login(&login, backend);
        METRICS.logins_pinned.inc();
        let Some(db) = &self.database else {
            return;
        };
        let now = crate::store::now_ms();
        let expired = now.saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let name = String::from(&*backend.name);
        let save =
            db.run(
                move |s| async move { s.save_login_pin(login.as_str(), &name, now, expired).await },
            );
        match tokio::time::timeout(DATABASE_WRITE_TIMEOUT, save).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(
                "login pin not shared: {}",
                crate::database::error("login_pin", e)
            ),
            Err(_) => {
                METRICS.db_errors.with_label_values(&["login_pin"]).inc();
                warn!("login pin not shared: the database did not answer in time");
            }
        }
    }

    /// The backend that issued an OAuth2 login: memory, then the shared database, else a miss.
    /// Counted in `trino_edge_login_legs_total`.
    pub async fn resolve_login(&self, leg: Leg, ttl: Duration) -> Resolution {
        let login = leg.hash();
        let owner = match self.sticky.resolve_login(&login, ttl) {
            Some(b) => Resolution::Memory(b),
            None => match self.login_in_database(login, ttl).await {
                Some(b) => Resolution::Database(b),
                None => Resolution::Miss,
            },
        };
        METRICS
            .login_legs
            .with_label_values(&[leg.kind(), owner.source()])
            .inc();
        owner
    }

    async fn login_in_database(&self, login: AuthIdHash, ttl: Duration) -> Option<Arc<Backend>> {
        let db = self.database.as_ref()?;
        let _permit = self.lookup_permits.try_acquire().ok()?;
        let since = crate::store::now_ms()
            .saturating_sub(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let lookup = db.run(move |s| async move { s.login_pin(login.as_str(), since).await });
        let name = match tokio::time::timeout(DATABASE_LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(name)) => name?,
            Ok(Err(e)) => {
                warn!(
                    "login owner lookup failed: {}",
                    crate::database::error("lookup", e)
                );
                return None;
            }
            Err(_) => {
                METRICS.db_errors.with_label_values(&["lookup"]).inc();
                return None;
            }
        };
        let b = self.snapshots.load().backend_by_name(&name)?.clone();
        self.sticky.learn_login(&login, &b);
        Some(b)
    }

    pub fn share_coordinator(&self, cid: CoordinatorId, backend: &Backend) {
        if let Some(h) = &self.history {
            h.record(HistoryEvent::Coordinator {
                id: String::from_utf8_lossy(&cid).into_owned(),
                backend: String::from(&*backend.name),
            });
        }
    }
}
