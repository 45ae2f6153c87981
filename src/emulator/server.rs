//! Connection handling for `emulator::start`: a listener and a stream wrapper that let the
//! emulator misbehave at the TCP level (`FailureMode::Reset`) and die abruptly
//! (`EmulatorHandle::shutdown`), as a crashed coordinator would. Neither is possible from
//! inside an HTTP handler, hence this layer below axum.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::state::EmulatorState;
use super::FailureMode;

/// Accepts connections for axum; drops them at once in `FailureMode::Reset` and closes the
/// listening socket on shutdown.
pub(crate) struct EmulatorListener {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    state: Arc<EmulatorState>,
    shutdown: watch::Receiver<bool>,
}

impl EmulatorListener {
    pub(crate) fn new(listener: TcpListener, state: Arc<EmulatorState>) -> io::Result<Self> {
        Ok(Self {
            local_addr: listener.local_addr()?,
            shutdown: state.shutdown_signal(),
            listener: Some(listener),
            state,
        })
    }
}

async fn wait_shutdown(signal: &mut watch::Receiver<bool>) {
    let _ = signal.wait_for(|down| *down).await;
}

impl axum::serve::Listener for EmulatorListener {
    type Io = EmulatorStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                // Shut down: the socket is closed; never hand out another connection.
                std::future::pending::<()>().await;
                continue;
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => Some(accepted),
                () = wait_shutdown(&mut self.shutdown) => None,
            };
            match accepted {
                None => self.listener = None,
                Some(Ok((stream, peer))) => {
                    if self.state.failure_mode() == FailureMode::Reset {
                        // RST instead of FIN: the client sees "connection reset".
                        let _ = stream.set_zero_linger();
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    return (EmulatorStream::new(stream, &self.state), peer);
                }
                Some(Err(e)) => {
                    // Same policy as axum's own TcpListener: per-connection errors are
                    // transient, resource exhaustion (EMFILE) needs a pause.
                    tracing::debug!(error = %e, "emulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// A TCP stream that fails every read and write once the emulator shuts down, and every read
/// while `FailureMode::Reset` is on, so that kept-alive connections die too.
pub(crate) struct EmulatorStream {
    stream: TcpStream,
    state: Arc<EmulatorState>,
    /// Resolves at shutdown; polled alongside the socket so idle connections wake up for it.
    /// `None` once it has resolved (a finished future must not be polled again).
    shutdown: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl EmulatorStream {
    fn new(stream: TcpStream, state: &Arc<EmulatorState>) -> Self {
        let mut signal = state.shutdown_signal();
        Self {
            stream,
            state: Arc::clone(state),
            shutdown: Some(Box::pin(async move { wait_shutdown(&mut signal).await })),
        }
    }

    fn closed_error(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let down = match self.shutdown.as_mut() {
            Some(signal) => signal.as_mut().poll(cx).is_ready(),
            None => true,
        };
        if down {
            self.shutdown = None;
            let _ = self.stream.set_zero_linger();
            return Some(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "emulator shut down",
            ));
        }
        None
    }
}

impl AsyncRead for EmulatorStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.closed_error(cx) {
            return Poll::Ready(Err(e));
        }
        if self.state.failure_mode() == FailureMode::Reset {
            let _ = self.stream.set_zero_linger();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "emulated connection reset",
            )));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for EmulatorStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.closed_error(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.closed_error(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
