//! Query history and learned coordinator ids, written to the database off the request path.
//!
//! The proxy hands events to a bounded channel with `try_send` (never waits); one background
//! writer batches them into the database. When the database is slow or down the channel fills,
//! further events are dropped and counted (`trino_edge_history_dropped_total`), routing carries
//! on untouched, and writing resumes on its own when the database is back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::database::Database;
use crate::metrics::METRICS;
use crate::store::HistoryRecord;

/// Events waiting to be written; beyond this, new ones are dropped.
const CAPACITY: usize = 10_000;
/// Most events per database transaction.
const BATCH: usize = 500;
/// Longest an event waits for its batch to fill.
const LINGER: Duration = Duration::from_millis(200);
/// Longest pause between attempts while the database is away: short enough that history resumes
/// within seconds of its return, long enough that a dead database sees no retry storm.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub enum HistoryEvent {
    Query(Box<HistoryRecord>),
    Coordinator { id: String, backend: String },
}

/// The proxy's end of the channel: cheap to clone, never blocks.
#[derive(Clone)]
pub struct HistorySink {
    tx: mpsc::Sender<HistoryEvent>,
}

impl HistorySink {
    pub fn record(&self, event: HistoryEvent) {
        if self.tx.try_send(event).is_err() {
            METRICS.history_dropped.inc();
        }
    }
}

pub struct HistoryWriter {
    rx: tokio::sync::Mutex<mpsc::Receiver<HistoryEvent>>,
    database: Arc<Database>,
}

pub fn channel(database: Arc<Database>) -> (HistorySink, HistoryWriter) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    (
        HistorySink { tx },
        HistoryWriter {
            rx: tokio::sync::Mutex::new(rx),
            database,
        },
    )
}

impl HistoryWriter {
    async fn write(
        &self,
        queries: &Arc<Vec<HistoryRecord>>,
        coordinators: &[(String, String)],
    ) -> Result<(), crate::database::OpError> {
        if !queries.is_empty() {
            // Shared, not copied: the database runs on its own runtime, and a failed batch is
            // tried again.
            let batch = queries.clone();
            self.database
                .run(move |s| async move { s.insert_history(&batch).await })
                .await
                .map_err(|e| crate::database::error("history", e))?;
        }
        for (id, backend) in coordinators {
            let (id, backend) = (id.clone(), backend.clone());
            let now = chrono::Utc::now().timestamp_millis();
            self.database
                .run(move |s| async move { s.save_coordinator(&id, &backend, now).await })
                .await
                .map_err(|e| crate::database::error("coordinator", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl BackgroundService for HistoryWriter {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut rx = self.rx.lock().await;
        let mut failing = false;
        loop {
            // Wait for the first event, then let the batch fill for a moment.
            let first = tokio::select! {
                e = rx.recv() => e,
                _ = shutdown.changed() => None,
            };
            let Some(first) = first else { return };
            let mut events = Vec::with_capacity(BATCH);
            events.push(first);
            // Take what is queued in one go (the timer is only armed when nothing is queued).
            let deadline = tokio::time::Instant::now() + LINGER;
            while events.len() < BATCH {
                let room = BATCH - events.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut events, room)).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            let mut queries = Vec::new();
            let mut coordinators = Vec::new();
            for e in events {
                match e {
                    HistoryEvent::Query(r) => queries.push(*r),
                    HistoryEvent::Coordinator { id, backend } => coordinators.push((id, backend)),
                }
            }
            let queries = Arc::new(queries);
            // Retry the batch with backoff while the database is away; meanwhile the channel
            // fills and the proxy's further events are dropped (and counted), never waited for.
            let mut backoff = Duration::from_millis(500);
            loop {
                match self.write(&queries, &coordinators).await {
                    Ok(()) => {
                        if failing {
                            info!("history: database reachable again, writing resumed");
                            failing = false;
                        }
                        break;
                    }
                    Err(e) => {
                        if !failing {
                            warn!("history: {e}; retrying (routing is not affected)");
                            failing = true;
                        }
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.changed() => return,
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
    }
}
