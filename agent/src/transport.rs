//! The agent's side of the channel: rustls client configurations and tonic channels over them.
//!
//! Two trust modes:
//! - enrollment: the agent has no CA yet, only the pin (SHA-256 of the CA certificate) carried by
//!   the enrollment token. The collector sends its CA in the chain; the agent accepts the chain only
//!   if that CA matches the pin and the server certificate is valid for the collector's name under it.
//! - everything after: the CA saved at enrollment is the only trust root, and the agent presents its
//!   own certificate (mutual TLS).
//!
//! TLS is done here (not by tonic) so that the pinning verifier can be used and one TLS stack
//! (rustls + ring) serves both modes.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use shadowai_proto::v1::agent_service_client::AgentServiceClient;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};

use crate::config::CollectorUrl;

/// Time allowed to open a connection (TCP + TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the transport layer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Client configuration for enrollment: trust the CA whose SHA-256 (base64url) is `pin`.
pub fn pinned_config(pin: &str) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let pin: [u8; 32] = URL_SAFE_NO_PAD
        .decode(pin)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| TransportError::Tls("the CA pin in the token is malformed".into()))?;
    let provider = provider();
    let verifier = Arc::new(PinnedCaVerifier {
        pin,
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Client configuration for mutual TLS: trust only `ca`, present `chain`/`key`.
pub fn mutual_config(
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca)
        .map_err(|e| TransportError::Tls(format!("collector CA: {e}")))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TransportError::Tls(format!("agent certificate: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// Opens a gRPC channel to the collector over TLS with `config`.
pub async fn connect(
    url: &CollectorUrl,
    config: Arc<rustls::ClientConfig>,
) -> Result<AgentServiceClient<Channel>, TransportError> {
    let host = url.host.clone();
    let port = url.port;
    let server_name = ServerName::try_from(host.clone())
        .map_err(|_| TransportError::Tls(format!("`{host}` is not a valid server name")))?;
    // tonic must not add TLS itself: the scheme is http and the connector below does TLS.
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))
        .map_err(|e| TransportError::Tls(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true);
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let config = config.clone();
        let host = host.clone();
        let server_name = server_name.clone();
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|source| TransportError::Connect {
            url: url.to_string(),
            source,
        })?;
    Ok(AgentServiceClient::new(channel)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(16 * 1024 * 1024))
}

/// Accepts a server chain only when it contains the pinned CA and the leaf is valid under it.
#[derive(Debug)]
struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|candidate| Sha256::digest(candidate.as_ref()).as_slice() == self.pin)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the collector's CA does not match the pin in the enrollment token".into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
