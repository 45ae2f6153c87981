//! The shared database as the proxy, the history writer, the admin API and config sync use it:
//! one store, the runtime its connections live on, and the counting of failed operations.
//! Config sync ([`crate::sync`]) builds on it; it knows nothing of config or the proxy.

use std::sync::Arc;

use crate::metrics::METRICS;
use crate::store::{Store, StoreError};

pub struct Database {
    store: Store,
    /// The runtime that owns the pool's connections; every database call runs there, whichever
    /// Pingora service runtime (proxy, admin, sync) asks for it.
    rt: tokio::runtime::Handle,
}

impl Database {
    pub fn new(store: Store, rt: tokio::runtime::Handle) -> Arc<Database> {
        Arc::new(Database { store, rt })
    }

    /// Run a store operation on the database runtime.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Store) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>> + Send + 'static,
        T: Send + 'static,
    {
        match self.rt.spawn(f(self.store.clone())).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Db(sqlx::Error::WorkerCrashed)),
        }
    }
}

/// Why the database runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    Spawn(#[source] std::io::Error),
    #[error("{0}")]
    Build(#[source] std::io::Error),
    /// The runtime thread ended before it said whether it started.
    #[error("{0}")]
    Lost(#[source] std::sync::mpsc::RecvError),
}

/// For callers that still report errors as text (`server::serve`).
impl From<RuntimeError> for String {
    fn from(e: RuntimeError) -> String {
        e.to_string()
    }
}

/// A dedicated runtime thread for the database pool, alive for the whole process.
pub fn runtime() -> Result<tokio::runtime::Handle, RuntimeError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("database".into())
        .spawn(move || {
            match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    let _ = tx.send(Ok(rt.handle().clone()));
                    rt.block_on(std::future::pending::<()>());
                }
                Err(e) => {
                    let _ = tx.send(Err(RuntimeError::Build(e)));
                }
            }
        })
        .map_err(RuntimeError::Spawn)?;
    rx.recv().map_err(RuntimeError::Lost)?
}

/// A failed database operation: `op` is the label of `trino_edge_db_errors_total`.
#[derive(Debug, thiserror::Error)]
#[error("database {op} failed: {source}")]
pub struct OpError {
    pub op: &'static str,
    pub source: StoreError,
}

/// For callers that still report errors as text (`sync`).
impl From<OpError> for String {
    fn from(e: OpError) -> String {
        e.to_string()
    }
}

/// A failed database operation, counted in `trino_edge_db_errors_total{op}`.
pub fn error(op: &'static str, e: StoreError) -> OpError {
    METRICS.db_errors.with_label_values(&[op]).inc();
    OpError { op, source: e }
}
