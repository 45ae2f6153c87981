//! Query history and learned coordinator ids, written to the database off the request path.
//!
//! The proxy hands events to a bounded channel with `try_send` (never waits); one background
//! writer batches them into the database. When the database is slow or down the channel fills,
//! further events are dropped and counted (`trino_edge_history_dropped_total`), routing carries
//! on untouched, and writing resumes on its own when the database is back.
//!
//! **At shutdown** the writer is the last to stop ([`crate::lifecycle`]): it does not follow
//! Pingora's shutdown signal but [`HistoryStop::finish`], called once the proxies have finished
//! their requests. It then closes the channel (an event recorded after that is dropped and
//! counted), writes what was queued until a deadline, and counts and logs whatever it could not
//! write as dropped — every accepted query is in the history or in the dropped count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
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
    /// Events recorded after the writer was stopped (see [`HistoryStop::late`]).
    late: Arc<AtomicUsize>,
}

impl HistorySink {
    pub fn record(&self, event: HistoryEvent) {
        match self.tx.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => METRICS.history_dropped.inc(),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                METRICS.history_dropped.inc();
                self.late.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

pub struct HistoryWriter {
    rx: tokio::sync::Mutex<mpsc::Receiver<HistoryEvent>>,
    database: Arc<Database>,
    /// Set by [`HistoryStop::finish`]: write what is queued until this instant, then stop.
    stop: watch::Receiver<Option<Instant>>,
    /// What the last flush did, for [`HistoryStop::finish`].
    flushed: watch::Sender<Option<Flushed>>,
    /// Events of the batch being written (taken from the queue, not yet in the database).
    writing: Arc<AtomicUsize>,
}

/// What the writer did with the events still queued when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flushed {
    /// Query records written during the final flush.
    pub queries_written: usize,
    /// Events (query records and coordinator ids) that could not be written by the deadline,
    /// counted in `trino_edge_history_dropped_total`.
    pub dropped: usize,
}

/// The lifecycle's handle on the writer (see [`HistoryStop::finish`]).
pub struct HistoryStop {
    stop: watch::Sender<Option<Instant>>,
    flushed: watch::Receiver<Option<Flushed>>,
    /// Counts what is still queued should the writer not answer in time.
    tx: mpsc::WeakSender<HistoryEvent>,
    writing: Arc<AtomicUsize>,
    late: Arc<AtomicUsize>,
}

impl HistoryStop {
    /// Events recorded after [`HistoryStop::finish`] closed the queue (dropped and counted in
    /// `trino_edge_history_dropped_total`; none unless a request ended during the flush).
    pub fn late(&self) -> usize {
        self.late.load(Ordering::Relaxed)
    }

    /// Stop the writer: events recorded from now on are dropped (and counted); those queued are
    /// written until `deadline`, the rest counted as dropped. Waits for the writer's report, a
    /// moment past the deadline at most; without one, what is still queued is counted here.
    pub async fn finish(&self, deadline: Instant) -> Flushed {
        let _ = self.stop.send(Some(deadline));
        let mut flushed = self.flushed.clone();
        let report =
            tokio::time::timeout_at(deadline + REPORT_MARGIN, flushed.wait_for(Option::is_some))
                .await;
        if let Ok(Ok(report)) = report {
            if let Some(f) = *report {
                return f;
            }
        }
        // The writer is stuck (in a database call that ignores its deadline): what it has not
        // taken from the queue is lost with the process.
        let queued = self
            .tx
            .upgrade()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
            + self.writing.load(Ordering::Acquire);
        METRICS.history_dropped.inc_by(queued as u64);
        warn!(
            dropped = queued,
            "history: the writer did not finish by its deadline; {queued} queued event(s) \
             dropped (counted in trino_edge_history_dropped_total)"
        );
        Flushed {
            queries_written: 0,
            dropped: queued,
        }
    }
}

/// How long [`HistoryStop::finish`] waits past the deadline for the writer's report.
const REPORT_MARGIN: Duration = Duration::from_millis(500);

pub fn channel(database: Arc<Database>) -> (HistorySink, HistoryWriter, HistoryStop) {
    let (tx, rx) = mpsc::channel(CAPACITY);
    let (stop_tx, stop_rx) = watch::channel(None);
    let (flushed_tx, flushed_rx) = watch::channel(None);
    let weak = tx.downgrade();
    let writing = Arc::new(AtomicUsize::new(0));
    let late = Arc::new(AtomicUsize::new(0));
    (
        HistorySink {
            tx,
            late: late.clone(),
        },
        HistoryWriter {
            rx: tokio::sync::Mutex::new(rx),
            database,
            stop: stop_rx,
            flushed: flushed_tx,
            writing: writing.clone(),
        },
        HistoryStop {
            stop: stop_tx,
            flushed: flushed_rx,
            tx: weak,
            writing,
            late,
        },
    )
}

/// A batch taken from the queue, split by kind.
#[derive(Default)]
struct Batch {
    queries: Arc<Vec<HistoryRecord>>,
    coordinators: Vec<(String, String)>,
}

impl Batch {
    fn of(events: Vec<HistoryEvent>) -> Batch {
        let mut queries = Vec::new();
        let mut coordinators = Vec::new();
        for e in events {
            match e {
                HistoryEvent::Query(r) => queries.push(*r),
                HistoryEvent::Coordinator { id, backend } => coordinators.push((id, backend)),
            }
        }
        Batch {
            queries: Arc::new(queries),
            coordinators,
        }
    }

    fn len(&self) -> usize {
        self.queries.len() + self.coordinators.len()
    }
}

impl HistoryWriter {
    async fn write(&self, batch: &Batch) -> Result<(), crate::database::OpError> {
        let (queries, coordinators) = (&batch.queries, &batch.coordinators);
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

    /// The final flush: close the queue, write the batch in hand and everything queued until
    /// `deadline`, count the rest as dropped, and report.
    async fn flush(
        &self,
        rx: &mut mpsc::Receiver<HistoryEvent>,
        in_hand: Option<Batch>,
        deadline: Instant,
    ) -> Flushed {
        rx.close();
        let mut batches: Vec<Batch> = in_hand.into_iter().collect();
        let mut events = Vec::with_capacity(BATCH);
        while let Ok(e) = rx.try_recv() {
            events.push(e);
            if events.len() == BATCH {
                batches.push(Batch::of(std::mem::replace(
                    &mut events,
                    Vec::with_capacity(BATCH),
                )));
            }
        }
        if !events.is_empty() {
            batches.push(Batch::of(events));
        }
        let mut flushed = Flushed::default();
        let mut batches = batches.into_iter();
        let mut backoff = Duration::from_millis(100);
        let mut current = batches.next();
        while let Some(batch) = &current {
            match tokio::time::timeout_at(deadline, self.write(batch)).await {
                Ok(Ok(())) => {
                    flushed.queries_written += batch.queries.len();
                    current = batches.next();
                }
                Ok(Err(e)) if Instant::now() + backoff < deadline => {
                    warn!("history: {e}; retrying until the shutdown deadline");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        flushed.dropped = current
            .iter()
            .chain(batches.as_slice())
            .map(Batch::len)
            .sum();
        METRICS.history_dropped.inc_by(flushed.dropped as u64);
        if flushed.dropped > 0 {
            warn!(
                written = flushed.queries_written,
                dropped = flushed.dropped,
                "history: {} event(s) could not be written before the shutdown deadline; \
                 dropped (counted in trino_edge_history_dropped_total)",
                flushed.dropped
            );
        } else {
            info!(
                written = flushed.queries_written,
                "history: flushed at shutdown, nothing dropped"
            );
        }
        flushed
    }
}

#[async_trait]
impl BackgroundService for HistoryWriter {
    /// Pingora's shutdown signal is not followed: the proxies may still record queries after it,
    /// so [`HistoryStop::finish`] stops the writer, once they are done.
    async fn start(&self, _shutdown: ShutdownWatch) {
        let mut rx = self.rx.lock().await;
        let mut stop = self.stop.clone();
        let mut failing = false;
        let mut in_hand = None;
        'run: loop {
            // Wait for the first event, then let the batch fill for a moment.
            let first = tokio::select! {
                e = rx.recv() => e,
                _ = stop.wait_for(Option::is_some) => None,
            };
            let Some(first) = first else { break };
            let mut events = Vec::with_capacity(BATCH);
            events.push(first);
            // Take what is queued in one go (the timer is only armed when nothing is queued).
            let deadline = tokio::time::Instant::now() + LINGER;
            // Not woken by a stop (a waiter per event costs the request path): a stop is seen
            // after the next event or the linger, whichever comes first.
            while events.len() < BATCH {
                let room = BATCH - events.len();
                let more = tokio::time::timeout_at(deadline, rx.recv_many(&mut events, room)).await;
                if stop.borrow().is_some() {
                    // Stopping: this batch is written by the final flush, with the rest.
                    in_hand = Some(Batch::of(events));
                    break 'run;
                }
                match more {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            let batch = Batch::of(events);
            self.writing.store(batch.len(), Ordering::Release);
            // Retry the batch with backoff while the database is away; meanwhile the channel
            // fills and the proxy's further events are dropped (and counted), never waited for.
            let mut backoff = Duration::from_millis(500);
            loop {
                match self.write(&batch).await {
                    Ok(()) => {
                        self.writing.store(0, Ordering::Release);
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
                            _ = stop.wait_for(Option::is_some) => {
                                in_hand = Some(batch);
                                break 'run;
                            }
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        let deadline = (*stop.borrow()).unwrap_or_else(Instant::now);
        let flushed = self.flush(&mut rx, in_hand, deadline).await;
        let _ = self.flushed.send(Some(flushed));
    }
}
