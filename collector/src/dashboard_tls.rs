//! HTTPS for the dashboard and API: a certificate the operator provides (`[http] tls_cert` and
//! `tls_key`, PEM), or one issued by the collector CA for `server_names` (`[http] tls = "ca"`).
//!
//! Handshakes run in their own tasks with the same timeout and concurrency bound as the agent
//! listener, so a client that never finishes its handshake holds one slot for at most
//! [`HANDSHAKE_TIMEOUT`], never the accept loop. HTTP/1.1 and HTTP/2 are offered by ALPN.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use crate::identity::CertificateAuthority;

/// How long a browser may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections wait in the kernel's accept queue.
const MAX_CONCURRENT_HANDSHAKES: usize = 128;

/// Where the dashboard's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DashboardTls {
    /// PEM files provided by the operator (a chain, leaf first, and its private key).
    Files {
        /// Certificate chain (PEM).
        cert: std::path::PathBuf,
        /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
        key: std::path::PathBuf,
    },
    /// A certificate issued by the collector CA for the configured server names at each start.
    CollectorCa,
}

/// The rustls configuration of the dashboard listener.
pub fn server_config(
    tls: &DashboardTls,
    ca: &CertificateAuthority,
    server_names: &[String],
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (chain, key) = match tls {
        DashboardTls::Files { cert, key } => read_pem(cert, key)?,
        DashboardTls::CollectorCa => {
            ca.issue_server_certificate(server_names, time::OffsetDateTime::now_utc())?
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the dashboard certificate and key do not match or are not supported")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read the dashboard certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{}: no certificate in the file", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read the dashboard private key {} (PEM, PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    Ok((chain, key))
}

/// A listener that yields connections whose TLS handshake has completed.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Accepts on `listener` and runs handshakes in the background.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, remote_addr) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        debug!(error = %error, "dashboard accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if sender.is_closed() {
                    return;
                }
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = sender.send((stream, remote_addr)).await;
                        }
                        Ok(Err(error)) => {
                            debug!(%remote_addr, error = %error, "dashboard TLS handshake failed");
                        }
                        Err(_) => debug!(%remote_addr, "dashboard TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local_addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task ends only with the runtime: wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Serves `router` on `listener`, over TLS when `tls` is given, until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        None => {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            // `tap_io` gives the listener axum's ConnectInfo<SocketAddr> support.
            let listener = TlsListener::new(listener, config)?.tap_io(|_| {});
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}
