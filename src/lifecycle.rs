//! The process lifecycle: what each signal does, and the order things stop in.
//!
//! - **SIGTERM** drains. `/readyz` answers `503` at once, while every listener keeps accepting
//!   and serving for `server.grace_period`: a load balancer (or Kubernetes, whose endpoint
//!   removal races the signal) is taking the instance out, and clients that still reach it must
//!   be served. Then the listeners stop accepting, keep-alive clients get `Connection: close` with
//!   their next answer, and the requests in flight get up to `server.graceful_shutdown_timeout`.
//! - **SIGQUIT** upgrades without downtime: once a process started with `--upgrade` is waiting
//!   for the sockets (it asks for them only after its first health pass, so it is ready to
//!   serve), every listening socket — proxy and admin, TLS or not — is handed to it. This
//!   process accepts beside it for Pingora's 5 s, then drains as above. If no new process comes
//!   within [`UPGRADE_WAIT`], nothing is handed over and this process keeps serving, saying why.
//! - **SIGINT** stops at once.
//!
//! After a drain, the history writer stops last ([`crate::history::HistoryStop::finish`]): it
//! writes what the requests queued, within [`HISTORY_FLUSH`], and counts and logs what it could
//! not; then the process exits, without waiting out Pingora's fallback timers.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora_core::services::background::BackgroundService;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::history::HistoryStop;

/// How long a process sent SIGQUIT waits for its successor (`trino-edge serve --upgrade`) to ask
/// for the sockets; the successor asks once its first health pass is done.
pub const UPGRADE_WAIT: Duration = Duration::from_secs(60);

/// How long the history writer gets, after the requests are done, for what they queued.
pub const HISTORY_FLUSH: Duration = Duration::from_secs(5);

/// Whether the process is draining, and how many requests are in flight.
#[derive(Debug, Default)]
pub struct Lifecycle {
    /// SIGTERM received: `/readyz` says not ready.
    draining: AtomicBool,
    /// The listeners stopped accepting: the request that ends the last one in flight says so.
    stopping: AtomicBool,
    /// The requests in flight are done and the history is about to close: a request arriving
    /// now on a kept-alive connection is not taken (its connection closes unanswered, which
    /// clients retry), so every query answered is in the history.
    closed: AtomicBool,
    in_flight: AtomicUsize,
    quiet: Notify,
}

impl Lifecycle {
    pub fn new() -> Arc<Lifecycle> {
        Arc::new(Lifecycle::default())
    }

    /// Shutting down (SIGTERM): no longer ready for new clients.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Requests being served now (proxy and admin listeners).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// A request begins; it counts as in flight until the guard is dropped.
    pub fn request(&self) -> InFlight<&Lifecycle> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self)
    }

    /// A request on the proxy begins, unless the process is past taking requests (`None`; see
    /// `closed`). Counted first and checked after, so the drain either waits for it or it is
    /// refused.
    pub fn admit(&self) -> Option<InFlight<&Lifecycle>> {
        let guard = self.request();
        (!self.closed.load(Ordering::SeqCst)).then_some(guard)
    }

    /// No request is taken from now on (see [`Lifecycle::admit`]).
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// [`Lifecycle::request`] for a guard that must own its count (moved into a response body).
    pub fn request_owned(self: &Arc<Self>) -> InFlight<Arc<Lifecycle>> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn ended(&self) {
        // Only a stopping process is woken (the request path pays one atomic otherwise).
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && self.stopping.load(Ordering::SeqCst)
        {
            self.quiet.notify_waiters();
        }
    }

    /// Resolves once no request is in flight (after the listeners stopped accepting).
    async fn quiet(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        loop {
            let woken = self.quiet.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            woken.await;
        }
    }
}

/// One request in flight (see [`Lifecycle::request`]).
pub struct InFlight<L: std::ops::Deref<Target = Lifecycle>>(L);

impl<L: std::ops::Deref<Target = Lifecycle>> Drop for InFlight<L> {
    fn drop(&mut self) {
        self.0.ended();
    }
}

/// The signals as Pingora's run loop sees them (see the module documentation).
pub struct Signals {
    pub lifecycle: Arc<Lifecycle>,
    /// `server.grace_period`.
    pub grace_period: Duration,
    /// Where a successor waits for the sockets (Pingora's upgrade socket).
    pub upgrade_sock: String,
}

/// A signal stream, or one that never fires when the handler cannot be installed.
async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn install(kind: SignalKind, name: &str) -> Option<Signal> {
    signal(kind)
        .inspect_err(|e| error!("cannot handle {name}: {e}"))
        .ok()
}

impl Signals {
    /// SIGTERM: not ready at once, serve on for the grace period (SIGINT cuts it short).
    async fn terminate(&self, int: &mut Option<Signal>) -> ShutdownSignal {
        self.lifecycle.start_draining();
        info!(
            grace_period = ?self.grace_period,
            "SIGTERM: /readyz answers 503 from now on; still accepting and serving for \
             server.grace_period"
        );
        tokio::select! {
            () = tokio::time::sleep(self.grace_period) => {
                info!("grace period over: no new connections; finishing the requests in flight");
                ShutdownSignal::GracefulTerminate
            }
            () = next(int) => {
                info!("SIGINT during the grace period: stopping at once");
                ShutdownSignal::FastShutdown
            }
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let mut quit = install(SignalKind::quit(), "SIGQUIT");
        let mut term = install(SignalKind::terminate(), "SIGTERM");
        let mut int = install(SignalKind::interrupt(), "SIGINT");
        loop {
            tokio::select! {
                () = next(&mut int) => {
                    info!("SIGINT: stopping at once");
                    return ShutdownSignal::FastShutdown;
                }
                () = next(&mut term) => return self.terminate(&mut int).await,
                () = next(&mut quit) => {
                    info!(
                        socket = %self.upgrade_sock,
                        "SIGQUIT: waiting up to {UPGRADE_WAIT:?} for a new process \
                         (`trino-edge serve --upgrade`) to ask for the listening sockets"
                    );
                    tokio::select! {
                        found = successor(Path::new(&self.upgrade_sock), UPGRADE_WAIT) => match found {
                            Ok(()) => {
                                info!("handing the listening sockets to the new process; \
                                       this one drains");
                                return ShutdownSignal::GracefulUpgrade;
                            }
                            Err(why) => error!(
                                "SIGQUIT: no upgrade ({why}); this process keeps serving"
                            ),
                        },
                        () = next(&mut int) => return ShutdownSignal::FastShutdown,
                        () = next(&mut term) => return self.terminate(&mut int).await,
                    }
                }
            }
        }
    }
}

/// Why no socket hand-over happened.
#[derive(Debug, thiserror::Error)]
pub enum NoSuccessor {
    #[error(
        "no process listened on {0} within {1:?}: start `trino-edge serve --upgrade` with the \
         same server.upgrade_sock"
    )]
    NotListening(String, Duration),
}

/// Waits until a successor listens on the upgrade socket. Connecting to find out would take
/// the one connection it accepts, so this reads the kernel's table of Unix sockets instead
/// (a stale socket file, left by a process that died, does not count).
async fn successor(path: &Path, wait: Duration) -> Result<(), NoSuccessor> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if listening(path) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(NoSuccessor::NotListening(path.display().to_string(), wait));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `__SO_ACCEPTCON` in `/proc/net/unix`'s flags column: the socket listens.
const ACCEPTING: u32 = 0x0001_0000;

/// Whether a Unix socket bound to `path` is listening, from `/proc/net/unix`.
fn listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let Some(want) = path.to_str() else {
        return false;
    };
    listening_in(&table, want)
}

fn listening_in(table: &str, want: &str) -> bool {
    table.lines().skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode [Path]
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.len() >= 8
            && cols[7] == want
            && u32::from_str_radix(cols[3], 16).is_ok_and(|f| f & ACCEPTING != 0)
    })
}

/// Runs the end of a graceful shutdown once Pingora has stopped the listeners: wait for the
/// requests in flight (at most `timeout`), let the history writer flush, exit.
pub struct Drain {
    pub lifecycle: Arc<Lifecycle>,
    pub history: HistoryStop,
    /// `server.graceful_shutdown_timeout`.
    pub timeout: Duration,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        if shutdown.changed().await.is_err() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let waiting = self.lifecycle.in_flight();
        info!(
            in_flight = waiting,
            "listeners closed; waiting up to {:?} (server.graceful_shutdown_timeout) for the \
             requests in flight",
            self.timeout
        );
        if tokio::time::timeout(self.timeout, self.lifecycle.quiet())
            .await
            .is_err()
        {
            warn!(
                in_flight = self.lifecycle.in_flight(),
                "server.graceful_shutdown_timeout passed with requests in flight; they are cut off"
            );
        }
        // A kept-alive client may have sent a request meanwhile: no more are taken, and those
        // taken before get what is left of the timeout, so that their queries are in the history
        // it writes next.
        self.lifecycle.close();
        let _ = tokio::time::timeout_at(deadline, self.lifecycle.quiet()).await;
        let flushed = self
            .history
            .finish(tokio::time::Instant::now() + HISTORY_FLUSH)
            .await;
        info!(
            history_written = flushed.queries_written,
            history_dropped = flushed.dropped + self.history.late(),
            "shutdown complete"
        );
        std::process::exit(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_by_its_path() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 22187 /tmp/trino-edge-8090.sock\n\
            0000000000000000: 00000002 00000000 00000000 0001 03 22188 /tmp/other.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 22190\n";
        assert!(listening_in(table, "/tmp/trino-edge-8090.sock"));
        // Bound but connected (not listening), and absent.
        assert!(!listening_in(table, "/tmp/other.sock"));
        assert!(!listening_in(table, "/tmp/trino-edge-9090.sock"));
    }

    #[test]
    fn a_real_listener_is_seen_and_a_stale_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(listening(&path));
        drop(l);
        // The file stays behind; nothing listens on it.
        assert!(path.exists());
        assert!(!listening(&path));
    }

    #[tokio::test]
    async fn quiet_waits_for_the_last_request() {
        let l = Lifecycle::new();
        let a = l.request_owned();
        let b = l.request_owned();
        assert_eq!(l.in_flight(), 2);
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.quiet().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(b);
        tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .expect("quiet once the last request ended")
            .unwrap();
    }
}
