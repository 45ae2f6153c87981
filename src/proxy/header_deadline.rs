//! A deadline on the whole request header (slowloris).
//!
//! Pingora bounds each *read* of a request header (60 s) and its size (1 MiB), but not the total
//! time: a client trickling one byte every 59 s holds a connection for weeks. Pingora 0.9 has no
//! hook before the header is parsed, so this wraps the proxy application: each request's
//! processing runs under a timer, and the proxy's first phase marks the header as read (through a
//! task-local flag, since both run in the same task). A request whose header is not complete when
//! the timer fires is dropped, which closes the connection. Once the header is in, the timer is
//! gone: long polls and long result streams are not limited.
//!
//! On a reused keep-alive connection the wait for the next request happens inside the same call,
//! so its deadline is the idle timeout plus the header timeout.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora_core::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::ShutdownWatch;

use crate::metrics::METRICS;

tokio::task_local! {
    static HEADER_READ: Cell<bool>;
}

/// Called by the proxy's first phase: this request's header is complete.
pub fn mark_header_read() {
    let _ = HEADER_READ.try_with(|f| f.set(true));
}

/// Connections younger than this are on their first request (no idle wait before it).
const FRESH: Duration = Duration::from_secs(1);

pub struct HeaderDeadline<A> {
    inner: Arc<A>,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl<A> HeaderDeadline<A> {
    pub fn new(inner: A, header_timeout: Duration, idle_timeout: Duration) -> Self {
        HeaderDeadline {
            inner: Arc::new(inner),
            header_timeout,
            idle_timeout,
        }
    }

    fn deadline(&self, session: &ServerSession) -> Duration {
        let established = session
            .digest()
            .and_then(|d| d.timing_digest.first().cloned().flatten())
            .map(|t| t.established_ts);
        let fresh = established
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < FRESH);
        if fresh {
            self.header_timeout
        } else {
            self.idle_timeout + self.header_timeout
        }
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> HttpServerApp for HeaderDeadline<A> {
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let deadline = self.deadline(&session);
        // The flag lives in the task-local itself: no allocation per request.
        let work = HEADER_READ.scope(
            Cell::new(false),
            self.inner.process_new_http(session, shutdown),
        );
        tokio::pin!(work);
        tokio::select! {
            biased;
            r = &mut work => return r,
            _ = tokio::time::sleep(deadline) => {}
        }
        // Taken only here, once the header is done with: a later `mark_header_read` finds no
        // flag and does nothing.
        if work.as_mut().take_value().is_some_and(|read| read.get()) {
            return work.await;
        }
        METRICS.slow_headers.inc();
        tracing::debug!(
            ?deadline,
            "request header not complete in time; connection closed"
        );
        None
    }

    fn h2_options(&self) -> Option<pingora_core::protocols::http::v2::server::H2Options> {
        self.inner.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.inner.server_options()
    }

    async fn http_cleanup(&self) {
        self.inner.http_cleanup().await
    }
}
