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

/// A dedicated runtime thread for the database pool, alive for the whole process.
pub fn runtime() -> Result<tokio::runtime::Handle, String> {
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
                    let _ = tx.send(Err(e.to_string()));
                }
            }
        })
        .map_err(|e| e.to_string())?;
    rx.recv().map_err(|e| e.to_string())?
}

/// A failed database operation as a message, counted in `trino_edge_db_errors_total{op}`.
pub fn error(op: &str, e: StoreError) -> String {
    METRICS.db_errors.with_label_values(&[op]).inc();
    format!("database {op} failed: {e}")
}
