//! The admin listener's connections, served here rather than by `axum::serve`, which has no
//! deadlines and no cap: idle or trickling clients could hold any number of connections (and the
//! file descriptors the proxy shares) before a single request was authenticated. Pingora accepts
//! them (see [`super::AdminService`]); this serves each one.
//!
//! - At most `admin.max_connections` are open at once, TLS handshakes included; a connection
//!   beyond that is closed as soon as it is accepted, so it costs a file descriptor for an
//!   instant instead of waiting in the kernel's queue behind connections that may never speak.
//! - A request head must be complete `admin.header_timeout` after the connection opened (over
//!   HTTPS the handshake counts too) or, on a kept-alive connection, after the head's first byte.
//! - A kept-alive connection with no request in progress is closed after `admin.idle_timeout`.
//!
//! All three are read from the current snapshot when a connection is accepted, so a reload
//! changes them for new connections. On shutdown a connection finishes the request in progress
//! and closes; requests count as in flight for the drain ([`crate::lifecycle`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use pingora_core::protocols::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::debug;

use crate::config::model::AdminConfig;
use crate::lifecycle::Lifecycle;
use crate::metrics::METRICS;
use crate::snapshot::SnapshotHandle;
use crate::tls::ServerCert;

/// After a connection's last answer, how long the gateway keeps reading (and discarding) what the
/// client still sends before it closes the socket: closing with unread bytes makes the kernel
/// send a reset, which can destroy an answer the client has not read yet (a 413 to a client
/// still uploading).
const LINGER: Duration = Duration::from_secs(2);
/// The most bytes read and discarded during [`LINGER`].
const LINGER_BYTES: usize = 1024 * 1024;

/// Why the gateway closed an admin connection itself (the `reason` label of
/// `trino_edge_admin_connections_closed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    HeaderTimeout,
    IdleTimeout,
    MaxConnections,
}

impl Closed {
    fn label(self) -> &'static str {
        match self {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::MaxConnections => "max_connections",
        }
    }

    fn count(self) {
        METRICS
            .admin_connections_closed
            .with_label_values(&[self.label()])
            .inc();
    }
}

/// The deadlines of one connection, fixed when it was accepted.
#[derive(Debug, Clone, Copy)]
struct Deadlines {
    header: Duration,
    idle: Duration,
}

/// Serve one accepted connection: closed at once beyond `admin.max_connections`, otherwise
/// served until done, under its deadlines; `shutdown` (Pingora's) lets its request in progress
/// finish, then closes it.
pub(super) async fn accepted(
    stream: Stream,
    open: &Arc<AtomicUsize>,
    app: Router,
    tls: Option<Arc<ServerCert>>,
    snapshots: &SnapshotHandle,
    shutdown: watch::Receiver<bool>,
    lifecycle: &Arc<Lifecycle>,
) {
    let (deadlines, max) = limits(&snapshots.load().config.admin);
    let Some(slot) = Slot::take(open, max) else {
        Closed::MaxConnections.count();
        debug!(
            max,
            "admin connection closed: admin.max_connections are open"
        );
        return;
    };
    connection(stream, tls, app, deadlines, shutdown, lifecycle).await;
    drop(slot);
}

fn limits(c: &AdminConfig) -> (Deadlines, usize) {
    (
        Deadlines {
            header: c.header_timeout.get(),
            idle: c.idle_timeout.get(),
        },
        c.max_connections,
    )
}

/// One of the `admin.max_connections` places, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(open.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn connection(
    stream: Stream,
    tls: Option<Arc<ServerCert>>,
    app: Router,
    deadlines: Deadlines,
    stop: watch::Receiver<bool>,
    lifecycle: &Arc<Lifecycle>,
) {
    // The header deadline runs from here, through the TLS handshake.
    let activity = Arc::new(Activity::new());
    let Some(cert) = tls else {
        return http(stream, app, activity, deadlines, stop, lifecycle).await;
    };
    match tokio::time::timeout(deadlines.header, cert.accept(stream)).await {
        Ok(Ok(stream)) => http(stream, app, activity, deadlines, stop, lifecycle).await,
        Ok(Err(e)) => debug!("admin connection closed: {e}"),
        Err(_) => {
            Closed::HeaderTimeout.count();
            debug!(
                "admin connection closed: TLS handshake not complete within admin.header_timeout"
            );
        }
    }
}

/// Serve HTTP/1.1 on `io` under the connection's deadlines.
async fn http<S>(
    io: S,
    app: Router,
    activity: Arc<Activity>,
    deadlines: Deadlines,
    mut stop: watch::Receiver<bool>,
    lifecycle: &Arc<Lifecycle>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = Tracked {
        app: TowerToHyperService::new(app),
        activity: activity.clone(),
        lifecycle: lifecycle.clone(),
    };
    let watched = Watched {
        io,
        activity: activity.clone(),
    };
    let mut conn = hyper::server::conn::http1::Builder::new()
        // The deadlines are ours (hyper's header timer would also cut idle connections short).
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(watched), service);
    let mut stopping = false;
    loop {
        if !stopping && *stop.borrow_and_update() {
            // Finish the request in progress, if any, then close.
            stopping = true;
            Pin::new(&mut conn).graceful_shutdown();
        }
        let deadline = activity.deadline(deadlines);
        let woken = activity.changed.notified();
        tokio::select! {
            done = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => {
                match done {
                    Ok(()) => linger(conn.into_parts().io.into_inner().io).await,
                    Err(e) => debug!("admin connection ended: {e}"),
                }
                return;
            }
            () = woken => {}
            () = sleep_until(deadline.map(|(at, _)| at)) => {
                if let Some((at, why)) = activity.deadline(deadlines) {
                    if at <= Instant::now() {
                        why.count();
                        debug!(reason = why.label(), "admin connection closed");
                        // Dropping the connection closes the socket.
                        return;
                    }
                }
            }
            changed = stop.changed(), if !stopping => {
                if changed.is_err() {
                    // The accept loop is gone without a word: finish as on shutdown.
                    stopping = true;
                    Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
    }
}

/// Sleep until `at`; forever when there is no deadline.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The connection is done: say so (FIN, or TLS close_notify), then read and discard what the
/// client still sends, for a bounded time, before the socket closes (see [`LINGER`]).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    let drain = async {
        io.shutdown().await.ok()?;
        let mut sink = [0u8; 8192];
        let mut total = 0;
        while total < LINGER_BYTES {
            match io.read(&mut sink).await.ok()? {
                0 => break,
                n => total += n,
            }
        }
        Some(())
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Where a connection stands, for its deadlines.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for the rest of a request head: since the connection opened, or since the first
    /// byte after an idle spell.
    Head(Instant),
    /// Between requests, nothing received since the last answer was handed over.
    Idle(Instant),
    /// This many requests being answered: no deadline (handlers bound their own work).
    Busy(usize),
}

/// A connection's [`Phase`], moved on by its reads ([`Watched`]) and requests ([`Tracked`]).
struct Activity {
    phase: Mutex<Phase>,
    /// Woken when a deadline may have moved closer.
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next deadline and what its expiry means; `None` while a request is answered. A
    /// deadline too far to represent counts as none.
    fn deadline(&self, d: Deadlines) -> Option<(Instant, Closed)> {
        match *self.phase() {
            Phase::Head(since) => since
                .checked_add(d.header)
                .map(|at| (at, Closed::HeaderTimeout)),
            Phase::Idle(since) => since
                .checked_add(d.idle)
                .map(|at| (at, Closed::IdleTimeout)),
            Phase::Busy(_) => None,
        }
    }

    /// Bytes arrived: an idle connection has begun a request head. (Bytes read while a request
    /// is answered are its body, or a pipelined request that hyper parses once it is done.)
    fn read_some(&self) {
        let mut phase = self.phase();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Head(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    /// A request head is complete: no deadline until its answer has been handed over.
    fn busy(self: &Arc<Self>) -> Busy {
        let mut phase = self.phase();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Head(_) | Phase::Idle(_) => Phase::Busy(1),
        };
        Busy(self.clone())
    }
}

/// A request in progress; dropped with the answer's body, i.e. once hyper has taken all of it
/// (or when the connection goes away).
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut phase = self.0.phase();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
        drop(phase);
        self.0.changed.notify_one();
    }
}

/// The admin router as a hyper service that marks each request busy until its answer's body
/// has been handed over.
struct Tracked {
    app: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    /// Admin requests count as in flight for a draining process too (a hybrid query, say).
    lifecycle: Arc<Lifecycle>,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl Service<hyper::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<Incoming>) -> Answer {
        let busy = (self.activity.busy(), self.lifecycle.request_owned());
        let answer = self.app.call(req);
        Box::pin(async move {
            let response = answer.await?;
            // The body owns `busy`: the request counts as in progress until the body is dropped.
            Ok(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_progress = &busy;
                    frame
                }))
            }))
        })
    }
}

/// A connection's byte stream, reporting reads to its [`Activity`].
struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read_some();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadlines() -> Deadlines {
        Deadlines {
            header: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }

    /// `at` lies between `before + d` and `after + d`, with its reason.
    fn within(
        got: Option<(Instant, Closed)>,
        before: Instant,
        after: Instant,
        d: Duration,
        why: Closed,
    ) {
        let (at, reason) = got.expect("a deadline");
        assert_eq!(reason, why);
        assert!(
            at >= before + d && at <= after + d,
            "{at:?} {before:?} {after:?}"
        );
    }

    #[test]
    fn the_deadline_follows_the_connection_through_its_phases() {
        let (ten, sixty) = (Duration::from_secs(10), Duration::from_secs(60));
        let before = Instant::now();
        let a = Arc::new(Activity::new());
        let opened = a.deadline(deadlines());
        // A new connection must send its head within the header timeout...
        within(opened, before, Instant::now(), ten, Closed::HeaderTimeout);
        // ...and reads during the head do not move that deadline.
        std::thread::sleep(Duration::from_millis(5));
        a.read_some();
        assert_eq!(a.deadline(deadlines()), opened);
        // Answering: no deadline, also with a second (pipelined) request.
        let first = a.busy();
        let second = a.busy();
        assert_eq!(a.deadline(deadlines()), None);
        drop(first);
        assert_eq!(a.deadline(deadlines()), None);
        // The answer handed over: idle.
        let before = Instant::now();
        drop(second);
        let idle = a.deadline(deadlines());
        within(idle, before, Instant::now(), sixty, Closed::IdleTimeout);
        // The next head's first byte starts the header timer afresh; later bytes do not.
        std::thread::sleep(Duration::from_millis(5));
        let before = Instant::now();
        a.read_some();
        let head = a.deadline(deadlines());
        within(head, before, Instant::now(), ten, Closed::HeaderTimeout);
        std::thread::sleep(Duration::from_millis(5));
        a.read_some();
        assert_eq!(a.deadline(deadlines()), head);
    }

    #[test]
    fn slots_stop_at_the_cap_and_come_back_when_dropped() {
        let open = Arc::new(AtomicUsize::new(0));
        let a = Slot::take(&open, 2).expect("first");
        let _b = Slot::take(&open, 2).expect("second");
        assert!(Slot::take(&open, 2).is_none());
        drop(a);
        assert!(Slot::take(&open, 2).is_some());
        assert_eq!(open.load(Ordering::Acquire), 1);
    }
}
