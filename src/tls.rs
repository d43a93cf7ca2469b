//! HTTPS on the listen address when `[tls]` names a certificate and a key:
//! the `[tls]` config, loading the PEM files into a rustls server config
//! (ring, the provider the S3 client already uses), optional client
//! certificates checked against `tls.client_ca_file` (mutual TLS), and a
//! listener that hands axum finished TLS connections.
//!
//! Handshakes run in their own tasks, so a slow or silent client cannot hold
//! up the accept loop; one that does not finish within
//! [`HANDSHAKE_TIMEOUT`] is dropped.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
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
    /// PEM file with the CA certificates client certificates must chain to;
    /// set, the listener asks every client for a certificate (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: `required` (the default) refuses the
    /// handshake of a client without a valid certificate; `optional` lets a
    /// client without one in but still refuses an invalid one.
    pub client_auth: Option<ClientAuth>,
}

/// `tls.client_auth`: whether a client certificate is required.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    Required,
    Optional,
}

impl FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "required" => Ok(Self::Required),
            "optional" => Ok(Self::Optional),
            _ => Err(format!("{s:?} is not one of required, optional")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.{field}: reading {path}: {reason}")]
    Read {
        field: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("tls.{field}: {path} holds no certificate")]
    NoCertificate { field: &'static str, path: PathBuf },
    #[error("tls.client_ca_file: {path} does not make a client verifier: {reason}")]
    ClientCa { path: PathBuf, reason: String },
    #[error("tls: certificate {cert} and key {key} do not make a server identity: {reason}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

impl TlsConfig {
    /// Both files or neither, client verification only with a server
    /// identity; the message names the field. The files themselves are
    /// read (and checked) by [`Self::acceptor`] at start.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err("tls.key_file: required when tls.cert_file is set".into());
            }
            (None, Some(_)) => {
                return Err("tls.cert_file: required when tls.key_file is set".into());
            }
            _ => {}
        }
        if self.client_ca_file.is_some() && self.cert_file.is_none() {
            return Err(
                "tls.client_ca_file: needs tls.cert_file and tls.key_file (client certificates are only asked for over TLS)"
                    .into(),
            );
        }
        if self.client_auth.is_some() && self.client_ca_file.is_none() {
            return Err(
                "tls.client_auth: needs tls.client_ca_file to verify client certificates against"
                    .into(),
            );
        }
        Ok(())
    }

    /// The acceptor for the configured certificate and key, if TLS is on.
    pub fn acceptor(&self) -> Result<Option<TlsAcceptor>, TlsError> {
        let (Some(cert), Some(key)) = (&self.cert_file, &self.key_file) else {
            return Ok(None);
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = match &self.client_ca_file {
            Some(ca) => Some(client_verifier(
                ca,
                self.client_auth.unwrap_or_default(),
                provider.clone(),
            )?),
            None => None,
        };
        let certs = load_certs("cert_file", cert)?;
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
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| identity(e.to_string()))?;
        let builder = match verifier {
            None => builder.with_no_client_auth(),
            Some(v) => builder.with_client_cert_verifier(v),
        };
        let mut config = builder
            .with_single_cert(certs, key_der)
            .map_err(|e| identity(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(TlsAcceptor::from(Arc::new(config))))
    }
}

/// A verifier of client certificates chaining to the CAs in `path`.
fn client_verifier(
    path: &Path,
    auth: ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let invalid = |reason: String| TlsError::ClientCa {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for ca in load_certs("client_ca_file", path)? {
        roots.add(ca).map_err(|e| invalid(e.to_string()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    builder.build().map_err(|e| invalid(e.to_string()))
}

fn load_certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |e: rustls::pki_types::pem::Error| TlsError::Read {
        field,
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            field,
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
            ..Default::default()
        };
        assert!(cert_only.validate().unwrap_err().contains("tls.key_file"));
        let key_only = TlsConfig {
            cert_file: None,
            key_file: Some("k.pem".into()),
            ..Default::default()
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
            ..Default::default()
        };
        let err = c.acceptor().err().expect("missing cert").to_string();
        assert!(
            err.contains("tls.cert_file") && err.contains("missing.pem"),
            "{err}"
        );
        let c = TlsConfig {
            cert_file: Some(empty.clone()),
            key_file: Some(empty),
            ..Default::default()
        };
        let err = c.acceptor().err().expect("empty cert").to_string();
        assert!(err.contains("holds no certificate"), "{err}");
    }

    #[test]
    fn client_verification_needs_a_server_identity_and_a_ca() {
        let ca_only = TlsConfig {
            client_ca_file: Some("ca.pem".into()),
            ..Default::default()
        };
        let err = ca_only.validate().unwrap_err();
        assert!(err.contains("tls.client_ca_file"), "{err}");
        let auth_only = TlsConfig {
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
            client_auth: Some(ClientAuth::Optional),
            ..Default::default()
        };
        let err = auth_only.validate().unwrap_err();
        assert!(err.contains("tls.client_auth"), "{err}");
        assert_eq!("Optional".parse(), Ok(ClientAuth::Optional));
        assert!("sometimes".parse::<ClientAuth>().is_err());
    }

    #[test]
    fn missing_empty_or_bad_client_cas_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The CA file is read first, so the server files need not exist.
        let with_ca = |ca: PathBuf| TlsConfig {
            cert_file: Some("cert.pem".into()),
            key_file: Some("key.pem".into()),
            client_ca_file: Some(ca),
            client_auth: None,
        };
        let err = with_ca(dir.path().join("missing-ca.pem"))
            .acceptor()
            .err()
            .expect("missing CA")
            .to_string();
        assert!(
            err.contains("tls.client_ca_file") && err.contains("missing-ca.pem"),
            "{err}"
        );
        let empty = dir.path().join("empty-ca.pem");
        std::fs::write(&empty, "").expect("write");
        let err = with_ca(empty)
            .acceptor()
            .err()
            .expect("empty CA")
            .to_string();
        assert!(
            err.contains("tls.client_ca_file") && err.contains("holds no certificate"),
            "{err}"
        );
        // A PEM block that is not a certificate.
        let garbage = dir.path().join("garbage-ca.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let err = with_ca(garbage)
            .acceptor()
            .err()
            .expect("bad CA")
            .to_string();
        assert!(
            err.contains("tls.client_ca_file") && !err.contains("cert_file"),
            "{err}"
        );
    }
}
