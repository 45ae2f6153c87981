//! Per-request counters held by guards that settle exactly once, whatever path the request takes
//! (answer, retry on another backend, connect failure, reset, client gone): dropping the request
//! context settles what is still open.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::snapshot::BackendRuntime;

/// One request in flight to a backend (`BackendRuntime::inflight`), released on drop.
pub struct InFlight(Arc<BackendRuntime>);

impl InFlight {
    pub fn enter(runtime: &Arc<BackendRuntime>) -> InFlight {
        runtime.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight(runtime.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A submission sent to a backend, counted in the least-load and limit estimates from the moment
/// it is sent. Unless the backend accepted the query ([`Started::accepted`]: from then on the
/// query's end is counted when the gateway sees it finish), dropping the guard takes the count
/// back — a refused, failed or abandoned submission never leaves a phantom running query.
pub struct Started {
    runtime: Arc<BackendRuntime>,
    accepted: bool,
}

impl Started {
    pub fn send(runtime: &Arc<BackendRuntime>) -> Started {
        runtime
            .health
            .started_since_probe
            .fetch_add(1, Ordering::Relaxed);
        Started {
            runtime: runtime.clone(),
            accepted: false,
        }
    }

    /// The backend created the query: it now runs until the gateway sees it end.
    pub fn accepted(&mut self) {
        self.accepted = true;
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        if !self.accepted {
            self.runtime
                .health
                .finished_since_probe
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_settles_once() {
        let rt = Arc::new(BackendRuntime::default());
        {
            let _a = InFlight::enter(&rt);
            let _b = InFlight::enter(&rt);
            assert_eq!(rt.inflight.load(Ordering::Relaxed), 2);
        }
        assert_eq!(rt.inflight.load(Ordering::Relaxed), 0);
        // Refused or failed: taken back.
        drop(Started::send(&rt));
        assert_eq!(rt.health.net_started_since_probe(), 0);
        // Accepted: counted until the query's end is seen.
        let mut s = Started::send(&rt);
        s.accepted();
        drop(s);
        assert_eq!(rt.health.net_started_since_probe(), 1);
    }
}
