//! TLS: certificates for the proxy and admin listeners, re-read on SIGHUP, and the trust anchors
//! and client identity used towards `https://` backends.
//!
//! Listener certificates are handed out per handshake from an [`ArcSwap`], so a renewed
//! certificate takes effect for new connections without a restart and without dropping the ones
//! in flight. Everything goes through OpenSSL, which Pingora links anyway.

use std::sync::Arc;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::error::ErrorStack;
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

/// Why certificates, keys or TLS settings cannot be used. `what` names the file's role
/// ("certificate", "private key", "CA bundle", "client certificate").
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path} is not PEM certificates: {source}")]
    NotPemCertificates {
        what: &'static str,
        path: String,
        source: ErrorStack,
    },
    #[error("{what} {path} holds no certificate")]
    NoCertificate { what: &'static str, path: String },
    #[error("private key {path} is not a PEM private key: {source}")]
    NotPemKey { path: String, source: ErrorStack },
    #[error("private key {key} does not belong to certificate {cert}")]
    KeyMismatch { key: String, cert: String },
    #[error("cannot set up TLS: {0}")]
    Setup(#[source] ErrorStack),
    #[error("cannot set up TLS: {0}")]
    Listener(#[source] Box<pingora_error::Error>),
    #[error("cannot use the certificate: {0}")]
    Certificate(#[source] ErrorStack),
    #[error("cannot use the certificate: the chain is empty")]
    EmptyChain,
    #[error("cannot use the certificate chain: {0}")]
    Chain(#[source] ErrorStack),
    #[error("CA bundle {0} holds no PEM certificate")]
    NoCa(String),
    #[error("client key {path}: {source}")]
    ClientKey { path: String, source: ErrorStack },
    #[error("client_cert and client_key go together")]
    HalfIdentity,
}

/// For callers that still report errors as text (`server`, `config::validate`).
impl From<TlsError> for String {
    fn from(e: TlsError) -> String {
        e.to_string()
    }
}

/// Why a TLS connection to the admin listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("cannot start a TLS session: {0}")]
    Session(#[source] ErrorStack),
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] openssl::ssl::Error),
}

/// A certificate chain (leaf first) and its private key.
pub struct Certified {
    /// The leaf first; [`load_pair`] never returns an empty chain.
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

impl Certified {
    /// The leaf certificate and the intermediates after it.
    fn split(&self) -> Option<(&X509, &[X509])> {
        self.chain.split_first()
    }
}

fn read(path: &str, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_string(),
        source,
    })
}

fn read_certs(path: &str, what: &'static str) -> Result<Vec<X509>, TlsError> {
    let certs = X509::stack_from_pem(&read(path, what)?).map_err(|source| {
        TlsError::NotPemCertificates {
            what,
            path: path.to_string(),
            source,
        }
    })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            what,
            path: path.to_string(),
        });
    }
    Ok(certs)
}

/// Read a PEM certificate chain and its key, and check that they belong together.
pub fn load_pair(cert_path: &str, key_path: &str) -> Result<Certified, TlsError> {
    let chain = read_certs(cert_path, "certificate")?;
    let key = PKey::private_key_from_pem(&read(key_path, "private key")?).map_err(|source| {
        TlsError::NotPemKey {
            path: key_path.to_string(),
            source,
        }
    })?;
    let matches = chain
        .first()
        .and_then(|leaf| leaf.public_key().ok())
        .is_some_and(|p| p.public_eq(&key));
    if !matches {
        return Err(TlsError::KeyMismatch {
            key: key_path.to_string(),
            cert: cert_path.to_string(),
        });
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
    pub fn load(files: &TlsFiles) -> Result<Arc<ServerCert>, TlsError> {
        let c = load_pair(&files.cert, &files.key)?;
        let acceptor = build_acceptor(&c)?;
        Ok(Arc::new(ServerCert {
            files: files.clone(),
            current: ArcSwap::from_pointee(c),
            acceptor: ArcSwap::from_pointee(acceptor),
        }))
    }

    /// Read the files again; on any problem keep serving the old certificate.
    pub fn reload(&self) -> Result<(), TlsError> {
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

    /// The server side of a TLS handshake on `tcp` with the current certificate (the admin
    /// listener; its caller puts the deadline on it).
    pub async fn accept<S>(&self, tcp: S) -> Result<tokio_openssl::SslStream<S>, HandshakeError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let acceptor = self.acceptor();
        let ssl = openssl::ssl::Ssl::new(acceptor.context()).map_err(HandshakeError::Session)?;
        let mut stream =
            tokio_openssl::SslStream::new(ssl, tcp).map_err(HandshakeError::Session)?;
        std::pin::Pin::new(&mut stream)
            .accept()
            .await
            .map_err(HandshakeError::Handshake)?;
        Ok(stream)
    }

    /// Pingora listener settings that take the certificate from `self` at every handshake.
    pub fn listener_settings(self: &Arc<Self>) -> Result<TlsSettings, TlsError> {
        TlsSettings::with_callbacks(Box::new(Callbacks(self.clone()))).map_err(TlsError::Listener)
    }
}

/// Mozilla "intermediate" server settings (TLS 1.2+), like Pingora's own listeners.
fn build_acceptor(c: &Certified) -> Result<SslAcceptor, TlsError> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(TlsError::Setup)?;
    let (leaf, intermediates) = c.split().ok_or(TlsError::EmptyChain)?;
    b.set_certificate(leaf)
        .and_then(|_| b.set_private_key(&c.key))
        .map_err(TlsError::Certificate)?;
    for extra in intermediates {
        b.add_extra_chain_cert(extra.clone())
            .map_err(TlsError::Chain)?;
    }
    Ok(b.build())
}

struct Callbacks(Arc<ServerCert>);

#[async_trait]
impl TlsAccept for Callbacks {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let c = self.0.current.load();
        let ok = c.split().is_some_and(|(leaf, intermediates)| {
            ext::ssl_use_certificate(ssl, leaf).is_ok()
                && ext::ssl_use_private_key(ssl, &c.key).is_ok()
                && intermediates
                    .iter()
                    .all(|x| ext::ssl_add_chain_cert(ssl, x).is_ok())
        });
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

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("cas", &self.ca.as_ref().map(|c| c.len()))
            .field("client_cert", &self.client.is_some())
            .finish()
    }
}

impl UpstreamTls {
    pub fn load(cfg: Option<&UpstreamTlsConfig>) -> Result<UpstreamTls, TlsError> {
        let Some(cfg) = cfg else {
            return Ok(UpstreamTls::default());
        };
        let mut out = UpstreamTls::default();
        if let Some(ca) = &cfg.ca_file {
            let pem = read(ca, "CA bundle")?;
            let certs = X509::stack_from_pem(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| TlsError::NoCa(ca.clone()))?;
            out.ca = Some(Arc::new(certs.into_boxed_slice()));
            out.ca_pem = Some(pem);
        }
        match (&cfg.client_cert, &cfg.client_key) {
            (Some(cert), Some(key)) => {
                let c = load_pair(cert, key)?;
                let key_pem =
                    c.key
                        .private_key_to_pem_pkcs8()
                        .map_err(|source| TlsError::ClientKey {
                            path: key.clone(),
                            source,
                        })?;
                out.identity_pem = Some((read(cert, "client certificate")?, key_pem));
                out.client = Some(Arc::new(CertKey::new(c.chain, c.key)));
            }
            (None, None) => {}
            _ => return Err(TlsError::HalfIdentity),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_files_are_named_in_the_error() {
        let e = load_pair("/nonexistent/cert.pem", "/nonexistent/key.pem")
            .err()
            .expect("missing file");
        assert!(
            matches!(&e, TlsError::Read { what: "certificate", path, .. } if path == "/nonexistent/cert.pem"),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("cannot read certificate /nonexistent/cert.pem: "),
            "{e}"
        );

        let dir = tempfile::tempdir().expect("temp dir");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").expect("write");
        let junk = junk.display().to_string();
        let e = load_pair(&junk, &junk).err().expect("not PEM");
        assert!(
            matches!(
                &e,
                TlsError::NoCertificate {
                    what: "certificate",
                    ..
                }
            ) || matches!(&e, TlsError::NotPemCertificates { .. }),
            "{e:?}"
        );
        let text: String = e.into();
        assert!(text.starts_with("certificate "), "{text}");
    }
}
