//! How a client connection is served around its requests: waiting for the next request without
//! holding any request state, and a deadline on each request header.
//!
//! **Idle memory.** Pingora's own HTTP/1 loop (`impl ServerApp for HttpServerApp`) starts the next
//! request's processing right away: while a keep-alive connection sits idle, it holds the whole
//! boxed proxy future, a session and a header buffer, parked in `read_request` — about 29 KiB per
//! idle connection here (10,000 idle clients: +293 MiB). This loop waits for the first bytes of
//! the next request with nothing but the stream and a small stack buffer, and only then builds the
//! session (handing it those bytes as its parse prefix, so no byte is read twice and no extra
//! system call is made) and starts the proxy: 10,000 idle clients now cost +71 MiB. HTTP/2 and h2c
//! connections go to Pingora's own loop unchanged.
//!
//! **Slowloris.** Pingora bounds each *read* of a request header (60 s) and its size (1 MiB), but
//! not the total time: a client trickling one byte every 59 s would hold a connection for weeks.
//! So each request's processing runs under a timer from its first byte (armed only when the
//! header is not complete after the first poll, which is rare), and the proxy's first phase marks
//! the header as read (through a task-local flag, since both run in the same task).
//! A request whose header is not complete when the timer fires is dropped, which closes the
//! connection. Once the header is in, the timer is gone: long polls and long result streams are
//! not limited. Before the first byte, a fresh connection waits at most `header_timeout` and a
//! reused one `client_idle_timeout` (as nginx's `client_header_timeout` and `keepalive_timeout`).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::{Stream, ALPN};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lifecycle::Lifecycle;
use crate::metrics::METRICS;
use crate::snapshot::SnapshotHandle;

tokio::task_local! {
    /// One flag per connection, reset for each request (no allocation per request).
    static HEADER_READ: Arc<AtomicBool>;
}

/// Called by the proxy's first phase: this request's header is complete.
pub fn mark_header_read() {
    let _ = HEADER_READ.try_with(|f| f.store(true, Ordering::Relaxed));
}

/// Polls `fut` once: `Ready` when it finished without waiting.
async fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut *fut).poll(cx))).await
}

/// Bytes read while waiting for a request: a Trino client's request header is about 0.5–1 KiB,
/// so most requests arrive whole in this first read. This is all an idle connection holds
/// beyond the stream itself.
const FIRST_READ: usize = 1024;

/// Capacity of the header buffer handed to the session (Pingora's own initial header buffer).
const HEADER_BUF: usize = 4096;

/// The longest request header block Pingora reads (its `MAX_HEADER_SIZE`). A longer one is
/// answered here — `431` in Trino's error shape — where Pingora would answer a bare `400`.
pub const MAX_HEADER_BYTES: usize = 1_048_575;

/// After an oversized header, the rest the client sends is read and dropped for at most this
/// long before the connection closes, so that the client sees the answer rather than a reset.
const LINGER: Duration = Duration::from_secs(2);

/// The proxy application `A`, served connection by connection.
pub struct ClientConnections<A> {
    inner: Arc<A>,
    /// `proxy.header_timeout` and `proxy.client_idle_timeout` are read from the current
    /// snapshot for every connection and wait, so a reload applies them.
    snapshots: Arc<SnapshotHandle>,
    /// Counts the requests in flight, which a draining process waits for.
    lifecycle: Arc<Lifecycle>,
}

impl<A> ClientConnections<A> {
    pub fn new(inner: A, snapshots: Arc<SnapshotHandle>, lifecycle: Arc<Lifecycle>) -> Self {
        ClientConnections {
            inner: Arc::new(inner),
            snapshots,
            lifecycle,
        }
    }

    /// The current `(header_timeout, client_idle_timeout)`.
    fn timeouts(&self) -> (Duration, Duration) {
        let snap = self.snapshots.load();
        let p = &snap.config.proxy;
        (p.header_timeout.get(), p.client_idle_timeout.get())
    }
}

/// Waits up to `wait` for the first bytes of the next request and returns them as the start of a
/// header buffer; `None` when the client closed the connection or stayed idle. The timer is only
/// set up when the bytes are not there yet.
async fn first_bytes(stream: &mut Stream, wait: Duration) -> Option<BytesMut> {
    let mut buf = [0u8; FIRST_READ];
    let mut read = pin!(stream.read(&mut buf));
    let read = match poll_once(&mut read).await {
        Poll::Ready(r) => r,
        Poll::Pending => match tokio::time::timeout(wait, read).await {
            Ok(r) => r,
            Err(_) => {
                tracing::debug!(?wait, "client connection idle; closed");
                return None;
            }
        },
    };
    let n = read.ok().filter(|&n| n > 0)?;
    let mut prefix = BytesMut::with_capacity(HEADER_BUF.max(n));
    prefix.extend_from_slice(&buf[..n]);
    Some(prefix)
}

/// A header longer than one first read: what became of reading it whole.
enum LongHeader {
    /// The whole header block (and whatever followed it in the same reads).
    Complete(BytesMut),
    /// Longer than [`MAX_HEADER_BYTES`].
    TooLarge,
    /// The client closed, failed or stayed silent past the header deadline.
    Gone,
}

/// Whether `buf` holds the end of a request header block.
fn has_header_end(buf: &[u8]) -> bool {
    memchr::memmem::find(buf, b"\r\n\r\n").is_some()
}

/// Read on after a first read that filled its buffer without the header's end, until the end
/// (the whole header is then handed to Pingora as its parse prefix), bounded by
/// [`MAX_HEADER_BYTES`] and `wait`. Only headers over [`FIRST_READ`] bytes pay for this.
async fn read_long_header(stream: &mut Stream, mut buf: BytesMut, wait: Duration) -> LongHeader {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if buf.len() > MAX_HEADER_BYTES {
            return LongHeader::TooLarge;
        }
        let scanned = buf.len().saturating_sub(3);
        buf.reserve(16 * 1024);
        match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return LongHeader::Gone,
        }
        if has_header_end(&buf[scanned..]) {
            return LongHeader::Complete(buf);
        }
    }
}

/// Answer an oversized header with a Trino error (`431`), drain what the client still sends
/// (bounded), and close.
async fn refuse_long_header(stream: &mut Stream) {
    let err = super::error::GatewayError::header_too_large(MAX_HEADER_BYTES);
    let body = err.body();
    let head = format!(
        "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let written = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.flush().await
    };
    if tokio::time::timeout(LINGER, written).await.is_err() {
        return;
    }
    let mut sink = [0u8; 8192];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
    let _ = stream.shutdown().await;
}

impl<A: HttpServerApp + Send + Sync + 'static> ClientConnections<A> {
    /// One request under the header deadline; the connection back when it may be reused.
    async fn serve(
        &self,
        session: ServerSession,
        shutdown: &ShutdownWatch,
        header_read: &Arc<AtomicBool>,
    ) -> Option<(Stream, Option<HttpPersistentSettings>)> {
        header_read.store(false, Ordering::Relaxed);
        // Past the drain (see `Lifecycle::admit`), the connection closes without an answer.
        let _in_flight = self.lifecycle.admit()?;
        let mut work = pin!(HEADER_READ.scope(
            header_read.clone(),
            self.inner.process_new_http(session, shutdown),
        ));
        // Most requests arrive whole with their first bytes: the first poll parses the header
        // and runs the proxy up to its first wait, and no timer is needed at all.
        if let Poll::Ready(r) = poll_once(&mut work).await {
            return r.map(|r| r.consume());
        }
        if !header_read.load(Ordering::Relaxed) {
            let header_timeout = self.timeouts().0;
            if let Ok(r) = tokio::time::timeout(header_timeout, &mut work).await {
                return r.map(|r| r.consume());
            }
            if !header_read.load(Ordering::Relaxed) {
                METRICS.slow_headers.inc();
                tracing::debug!(
                    timeout = ?header_timeout,
                    "request header not complete in time; connection closed"
                );
                return None;
            }
        }
        work.await.map(|r| r.consume())
    }
}

#[async_trait]
impl<A: HttpServerApp + Send + Sync + 'static> ServerApp for ClientConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let options = self.inner.server_options();
        let h2c_or_custom = options.is_some_and(|o| o.h2c || o.force_custom);
        if h2c_or_custom
            || matches!(
                stream.selected_alpn_proto(),
                Some(ALPN::H2 | ALPN::Custom(_))
            )
        {
            // An HTTP/2 connection counts as one request in flight while it lasts (Pingora
            // sends it GOAWAY on shutdown).
            let _in_flight = self.lifecycle.request();
            return ServerApp::process_new(&self.inner, stream, shutdown).await;
        }
        let reuse_limit = options.and_then(|o| o.keepalive_request_limit);
        let header_read = Arc::new(AtomicBool::new(false));
        let mut wait = self.timeouts().0;
        let mut settings: Option<HttpPersistentSettings> = None;
        let mut first = true;
        loop {
            if !first && *shutdown.borrow() {
                return None; // shutting down: no further request on this connection
            }
            let mut prefix = first_bytes(&mut stream, wait).await?;
            if prefix.len() == FIRST_READ && !has_header_end(&prefix) {
                // A header over 1 KiB (large session properties or prepared statements).
                match read_long_header(&mut stream, prefix, self.timeouts().0).await {
                    LongHeader::Complete(whole) => prefix = whole,
                    LongHeader::TooLarge => {
                        tracing::debug!(
                            "request header over {MAX_HEADER_BYTES} bytes; answered 431"
                        );
                        refuse_long_header(&mut stream).await;
                        return None;
                    }
                    LongHeader::Gone => return None,
                }
            }
            let mut session = ServerSession::new_http1(stream);
            if first {
                // As Pingora's own loop: keep-alive unless shutting down (the proxy then sets
                // the client idle timeout), and the configured request limit.
                let idle = self.timeouts().1;
                let keepalive = (!*shutdown.borrow()).then(|| idle.as_secs().max(1));
                session.set_keepalive(keepalive);
                session.set_keepalive_reuses_remaining(reuse_limit);
            } else if let Some(settings) = settings.take() {
                settings.apply_to_session(&mut session);
            }
            // The proxy never enables HTTP/1.1 pipelining, so the previous request left no
            // pipelined bytes in `settings` and this prefix is the only one.
            debug_assert!(!session.pipelining_enabled());
            session.set_pipelined_prefix(prefix);
            (stream, settings) = self.serve(session, shutdown, &header_read).await?;
            first = false;
            wait = self.timeouts().1;
        }
    }

    async fn cleanup(&self) {
        self.inner.http_cleanup().await
    }
}
