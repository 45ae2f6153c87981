//! TLS: certificates for the proxy and admin listeners, re-read on SIGHUP, and the trust anchors
//! and client identity used towards `https://` backends.
//!
//! Listener certificates are handed out per handshake from an [`ArcSwap`], so a renewed
//! certificate takes effect for new connections without a restart and without dropping the ones
//! in flight. Everything goes through OpenSSL, which Pingora links anyway.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::X509;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::tls::ext;
use pingora_core::utils::tls::CertKey;
use tracing::{info, warn};

use crate::config::model::{TlsFiles, UpstreamTlsConfig};

/// A certificate chain (leaf first) and its private key.
pub struct Certified {
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
}

fn read_certs(path: &str, what: &str) -> Result<Vec<X509>, String> {
    let certs = X509::stack_from_pem(&read(path, what)?)
        .map_err(|e| format!("{what} {path} is not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} {path} holds no certificate"));
    }
    Ok(certs)
}

/// Read a PEM certificate chain and its key, and check that they belong together.
pub fn load_pair(cert_path: &str, key_path: &str) -> Result<Certified, String> {
    let chain = read_certs(cert_path, "certificate")?;
    let key = PKey::private_key_from_pem(&read(key_path, "private key")?)
        .map_err(|e| format!("private key {key_path} is not a PEM private key: {e}"))?;
    let matches = chain[0]
        .public_key()
        .map(|p| p.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err(format!(
            "private key {key_path} does not belong to certificate {cert_path}"
        ));
    }
    Ok(Certified { chain, key })
}

/// A listener's certificate, replaceable while connections are served.
pub struct ServerCert {
    files: TlsFiles,
    current: ArcSwap<Certified>,
    /// Built from `current`, for the admin listener's own handshakes.
    acceptor: ArcSwap<SslAcceptor>,
}

impl ServerCert {
    pub fn load(files: &TlsFiles) -> Result<Arc<ServerCert>, String> {
        let c = load_pair(&files.cert, &files.key)?;
        let acceptor = build_acceptor(&c)?;
        Ok(Arc::new(ServerCert {
            files: files.clone(),
            current: ArcSwap::from_pointee(c),
            acceptor: ArcSwap::from_pointee(acceptor),
        }))
    }

    /// Read the files again; on any problem keep serving the old certificate.
    pub fn reload(&self) -> Result<(), String> {
        let c = load_pair(&self.files.cert, &self.files.key)?;
        let acceptor = build_acceptor(&c)?;
        self.current.store(Arc::new(c));
        self.acceptor.store(Arc::new(acceptor));
        info!(cert = %self.files.cert, "TLS certificate reloaded");
        Ok(())
    }

    pub fn acceptor(&self) -> Arc<SslAcceptor> {
        self.acceptor.load_full()
    }

    /// Pingora listener settings that take the certificate from `self` at every handshake.
    pub fn listener_settings(self: &Arc<Self>) -> Result<TlsSettings, String> {
        TlsSettings::with_callbacks(Box::new(Callbacks(self.clone())))
            .map_err(|e| format!("cannot set up TLS: {e}"))
    }
}

/// Mozilla "intermediate" server settings (TLS 1.2+), like Pingora's own listeners.
fn build_acceptor(c: &Certified) -> Result<SslAcceptor, String> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    b.set_certificate(&c.chain[0])
        .and_then(|_| b.set_private_key(&c.key))
        .map_err(|e| format!("cannot use the certificate: {e}"))?;
    for extra in &c.chain[1..] {
        b.add_extra_chain_cert(extra.clone())
            .map_err(|e| format!("cannot use the certificate chain: {e}"))?;
    }
    Ok(b.build())
}

struct Callbacks(Arc<ServerCert>);

#[async_trait]
impl TlsAccept for Callbacks {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let c = self.0.current.load();
        let ok = ext::ssl_use_certificate(ssl, &c.chain[0]).is_ok()
            && ext::ssl_use_private_key(ssl, &c.key).is_ok()
            && c.chain[1..]
                .iter()
                .all(|x| ext::ssl_add_chain_cert(ssl, x).is_ok());
        if !ok {
            warn!(cert = %self.0.files.cert, "could not present the TLS certificate");
        }
    }
}

/// How the gateway talks to `https://` backends: which CAs it trusts (default: the system's)
/// and which client certificate it shows (for backends that require mutual TLS).
#[derive(Default, Clone)]
pub struct UpstreamTls {
    pub ca: Option<Arc<Box<[X509]>>>,
    pub client: Option<Arc<CertKey>>,
    /// The same, as PEM, for the reqwest clients (health probes).
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl UpstreamTls {
    pub fn load(cfg: Option<&UpstreamTlsConfig>) -> Result<UpstreamTls, String> {
        let Some(cfg) = cfg else {
            return Ok(UpstreamTls::default());
        };
        let mut out = UpstreamTls::default();
        if let Some(ca) = &cfg.ca_file {
            let pem = read(ca, "CA bundle")?;
            let certs = X509::stack_from_pem(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| format!("CA bundle {ca} holds no PEM certificate"))?;
            out.ca = Some(Arc::new(certs.into_boxed_slice()));
            out.ca_pem = Some(pem);
        }
        match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => {
                let c = load_pair(cert, key)?;
                let key_pem = c
                    .key
                    .private_key_to_pem_pkcs8()
                    .map_err(|e| format!("client key {key}: {e}"))?;
                out.identity_pem = Some((read(cert, "client certificate")?, key_pem));
                out.client = Some(Arc::new(CertKey::new(c.chain, c.key)));
            }
            (None, None) => {}
            _ => return Err("client_cert and client_key go together".into()),
        }
        Ok(out)
    }

    /// Apply the same trust and identity to a reqwest client.
    pub fn configure(
        &self,
        mut b: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, String> {
        if let Some(pem) = &self.ca_pem {
            for cert in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("CA bundle: {e}"))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &self.identity_pem {
            let id = reqwest::Identity::from_pkcs8_pem(cert, key)
                .map_err(|e| format!("client certificate: {e}"))?;
            b = b.identity(id);
        }
        Ok(b)
    }
}

/// Longest a client may take for its TLS handshake on the admin listener.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Handshakes in progress at once on the admin listener; further connections wait in the backlog.
const MAX_HANDSHAKES: usize = 256;

/// An HTTPS listener for axum: handshakes run concurrently (a slow client cannot hold up the
/// others) with a deadline, and only finished ones are handed to the server.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_openssl::SslStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    local: std::net::SocketAddr,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: tokio::net::TcpListener, cert: Arc<ServerCert>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let acceptor_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (stream, addr) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        warn!("admin listener: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tx, acceptor) = (tx.clone(), cert.acceptor());
                tokio::spawn(async move {
                    let _permit = permit;
                    let handshake = async {
                        let ssl = openssl::ssl::Ssl::new(acceptor.context()).ok()?;
                        let mut s = tokio_openssl::SslStream::new(ssl, stream).ok()?;
                        std::pin::Pin::new(&mut s).accept().await.ok()?;
                        Some(s)
                    };
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                        Ok(Some(s)) => {
                            let _ = tx.send((s, addr)).await;
                        }
                        _ => tracing::debug!(%addr, "admin TLS handshake failed or timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            rx,
            local,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_openssl::SslStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The acceptor task never ends on its own; wait forever if it somehow did.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
