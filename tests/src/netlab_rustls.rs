//! `shadowai-netlab-rustls NAME PORT`: a rustls HTTPS client for the network lab whose ClientHello
//! carries a post-quantum hybrid key share, X25519MLKEM768 (0x11ec, 1,216 bytes) plus a classical
//! X25519 share, as rustls sends with its `prefer-post-quantum` provider. That hello is ~1.5 KB,
//! larger than one TCP segment on a 1,500-byte link: the sniffer has to reassemble two segments.
//!
//! rustls' ring provider has no ML-KEM and the product bans aws-lc (deny.toml), so the hybrid group
//! is built here from ML-KEM-768 (RustCrypto `ml-kem`, FIPS 203) and ring's X25519, through rustls'
//! public key-exchange API. It is a complete key exchange: when a server picks the hybrid group the
//! shared secret is ML-KEM's followed by X25519's (draft-ietf-tls-ecdhe-mlkem); when it picks
//! X25519 (the lab's OpenSSL 3.0 server does), the classical component completes alone.
//!
//! The name is resolved by the system resolver (so a DNS query is on the wire), the certificate is
//! NOT verified (the lab's server is self-signed, as with `curl -k`), one `GET /` is sent and the exit
//! status is 0 only for an HTTP 200.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ml_kem::kem::Decapsulate;
use ml_kem::{EncodedSizeUser, KemCore, MlKem768};
use ring::agreement;
use ring::rand::{SecureRandom, SystemRandom};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ActiveKeyExchange, CryptoProvider, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, NamedGroup, SignatureScheme};

/// Longest response read: the lab server answers a few bytes.
const MAX_RESPONSE: u64 = 64 * 1024;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("shadowai-netlab-rustls: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(port), None) = (args.next(), args.next(), args.next()) else {
        bail!("usage: shadowai-netlab-rustls NAME PORT");
    };
    let port: u16 = port.parse().context("PORT is a number")?;

    let provider = CryptoProvider {
        kx_groups: vec![&X25519_MLKEM768, rustls::crypto::ring::kx_group::X25519],
        ..rustls::crypto::ring::default_provider()
    };
    let provider = Arc::new(provider);
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS 1.2 and 1.3 with the ring provider")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    // what an HTTP client built on rustls (hyper, reqwest) offers
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

    let server_name = ServerName::try_from(name.clone()).context("NAME is a DNS name")?;
    let mut connection = rustls::ClientConnection::new(Arc::new(config), server_name)
        .context("create the TLS client")?;
    let address = (name.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolve {name}"))?
        .next()
        .with_context(|| format!("{name} has no address"))?;
    let mut socket = TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .with_context(|| format!("connect to {address}"))?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    socket.set_write_timeout(Some(Duration::from_secs(5)))?;

    let mut tls = rustls::Stream::new(&mut connection, &mut socket);
    let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes())
        .context("TLS handshake and request")?;
    let mut response = Vec::new();
    // a server may close without close_notify: what arrived before that still counts
    if let Err(error) = tls.take(MAX_RESPONSE).read_to_end(&mut response)
        && response.is_empty()
    {
        return Err(error).context("read the response");
    }
    let status_line = response.split(|byte| *byte == b'\n').next().unwrap_or(&[]);
    let status_line = String::from_utf8_lossy(status_line);
    if !status_line.starts_with("HTTP/1.1 200") {
        bail!("unexpected response: {}", status_line.trim_end());
    }
    let group = connection
        .negotiated_key_exchange_group()
        .map(|group| format!("{:?}", group.name()))
        .unwrap_or_default();
    eprintln!("ok: {name} answered 200 (key exchange {group})");
    Ok(())
}

/// X25519MLKEM768 (draft-ietf-tls-ecdhe-mlkem): client share = ML-KEM-768 encapsulation key (1,184
/// bytes) ‖ X25519 public key (32); server share = ML-KEM ciphertext (1,088) ‖ X25519 public key.
#[derive(Debug)]
struct X25519MlKem768;

static X25519_MLKEM768: X25519MlKem768 = X25519MlKem768;

const MLKEM768_CIPHERTEXT_LEN: usize = 1088;
const X25519_LEN: usize = 32;

impl SupportedKxGroup for X25519MlKem768 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let random = SystemRandom::new();
        let mut seeds = [0u8; 64];
        random
            .fill(&mut seeds)
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let (d, z) = seeds.split_at(32);
        // FIPS 203 ML-KEM.KeyGen_internal(d, z) with both seeds from the OS random generator
        let d = ml_kem::B32::try_from(d).map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let z = ml_kem::B32::try_from(z).map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let (decapsulation_key, encapsulation_key) = MlKem768::generate_deterministic(&d, &z);

        let x25519 = agreement::EphemeralPrivateKey::generate(&agreement::X25519, &random)
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;
        let x25519_public = x25519
            .compute_public_key()
            .map_err(|_| rustls::Error::FailedToGetRandomBytes)?;

        let mut share = encapsulation_key.as_bytes().to_vec();
        let classical_at = share.len();
        share.extend_from_slice(x25519_public.as_ref());
        Ok(Box::new(ActiveX25519MlKem768 {
            decapsulation_key,
            x25519,
            share,
            classical_at,
        }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

struct ActiveX25519MlKem768 {
    decapsulation_key: <MlKem768 as KemCore>::DecapsulationKey,
    x25519: agreement::EphemeralPrivateKey,
    /// The key share sent: encapsulation key then the X25519 public key (from `classical_at`).
    share: Vec<u8>,
    classical_at: usize,
}

fn x25519_agree(
    private: agreement::EphemeralPrivateKey,
    peer: &[u8],
) -> Result<Vec<u8>, rustls::Error> {
    agreement::agree_ephemeral(
        private,
        &agreement::UnparsedPublicKey::new(&agreement::X25519, peer),
        <[u8]>::to_vec,
    )
    .map_err(|_| rustls::Error::from(rustls::PeerMisbehaved::InvalidKeyShare))
}

impl ActiveKeyExchange for ActiveX25519MlKem768 {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let invalid = || rustls::Error::from(rustls::PeerMisbehaved::InvalidKeyShare);
        if peer_pub_key.len() != MLKEM768_CIPHERTEXT_LEN + X25519_LEN {
            return Err(invalid());
        }
        let (ciphertext, x25519_peer) = peer_pub_key.split_at(MLKEM768_CIPHERTEXT_LEN);
        let ciphertext =
            ml_kem::Ciphertext::<MlKem768>::try_from(ciphertext).map_err(|_| invalid())?;
        let mlkem_secret = self
            .decapsulation_key
            .decapsulate(&ciphertext)
            .map_err(|()| invalid())?;
        let mut secret = mlkem_secret.to_vec();
        secret.extend_from_slice(&x25519_agree(self.x25519, x25519_peer)?);
        Ok(SharedSecret::from(secret))
    }

    fn hybrid_component(&self) -> Option<(NamedGroup, &[u8])> {
        Some((NamedGroup::X25519, self.share.get(self.classical_at..)?))
    }

    fn complete_hybrid_component(
        self: Box<Self>,
        peer_pub_key: &[u8],
    ) -> Result<SharedSecret, rustls::Error> {
        Ok(SharedSecret::from(x25519_agree(self.x25519, peer_pub_key)?))
    }

    fn pub_key(&self) -> &[u8] {
        &self.share
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X25519MLKEM768
    }
}

/// Accepts any certificate (the lab's is self-signed) but still checks the handshake signatures
/// with the provider's algorithms, so the server must hold the certificate's key.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
