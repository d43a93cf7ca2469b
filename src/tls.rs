//! HTTPS on the listen address when `[tls]` names a certificate and a key:
//! the `[tls]` config, loading the PEM files into a rustls server config
//! (ring, the provider the S3 client already uses), and a listener that
//! hands axum finished TLS connections.
//!
//! Handshakes run in their own tasks, so a slow or silent client cannot hold
//! up the accept loop; one that does not finish within
//! [`HANDSHAKE_TIMEOUT`] is dropped.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

/// `[tls]`: serve HTTPS instead of HTTP when both files are set.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the server certificate, followed by its chain.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.{field}: reading {path}: {reason}")]
    Read {
        field: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("tls.cert_file: {path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("tls: certificate {cert} and key {key} do not make a server identity: {reason}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl TlsConfig {
    /// Both files or neither; the message names the missing field.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err("tls.key_file: required when tls.cert_file is set".into()),
            (None, Some(_)) => Err("tls.cert_file: required when tls.key_file is set".into()),
            _ => Ok(()),
        }
    }

    /// The acceptor for the configured certificate and key, if TLS is on.
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let certs = load_certs(cert)?;
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
            field: "key_file",
            path: key.clone(),
            reason: e.to_string(),
        })?;
        let identity = |reason: String| TlsError::Identity {
            cert: cert.clone(),
            key: key.clone(),
            reason,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| identity(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key_der)
            .map_err(|e| identity(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |e: rustls::pki_types::pem::Error| TlsError::Read {
        field: "cert_file",
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes finished but not yet taken by the server.
const READY_QUEUE: usize = 64;

/// An [`axum::serve::Listener`] of TLS connections over a TCP listener.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let accept_loop = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off
                        // instead of spinning (as axum's own listener does).
                        debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accept_loop,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        assert_eq!(TlsConfig::default().validate(), Ok(()));
        let cert_only = TlsConfig {
            cert_file: Some("c.pem".into()),
            key_file: None,
        };
        assert!(cert_only.validate().unwrap_err().contains("tls.key_file"));
        let key_only = TlsConfig {
            cert_file: None,
            key_file: Some("k.pem".into()),
        };
        assert!(key_only.validate().unwrap_err().contains("tls.cert_file"));
    }

    #[test]
    fn unreadable_or_empty_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").expect("write");
        let missing = dir.path().join("missing.pem");
        let c = TlsConfig {
            cert_file: Some(missing.clone()),
            key_file: Some(empty.clone()),
        };
        let err = c.acceptor().err().expect("missing cert").to_string();
        assert!(
            err.contains("tls.cert_file") && err.contains("missing.pem"),
            "{err}"
        );
        let c = TlsConfig {
            cert_file: Some(empty.clone()),
            key_file: Some(empty),
        };
        let err = c.acceptor().err().expect("empty cert").to_string();
        assert!(err.contains("holds no certificate"), "{err}");
    }
}
