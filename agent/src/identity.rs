//! The agent's identity on disk, and enrollment.
//!
//! State directory layout (all written by the agent; secrets 0600):
//! - `agent.key`      the private key, PEM (generated here; never leaves the machine)
//! - `agent.crt`      the certificate the collector issued, PEM
//! - `ca.crt`         the collector CA, PEM (the only trust root for later connections)
//! - `identity.json`  agent id, group, collector URL, certificate expiry
//!
//! Enrollment writes the key first and the identity last, so that an interrupted enrollment
//! leaves no `identity.json` and is simply retried with a fresh key.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use shadowai_proto::v1;

use crate::config::CollectorUrl;
use crate::transport;

/// What `identity.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdentityFile {
    /// Agent id assigned by the collector.
    pub agent_id: String,
    /// Enrollment group.
    pub group: String,
    /// The collector this identity belongs to.
    pub collector: String,
    /// Certificate expiry, Unix ms.
    pub certificate_expires_at_ms: i64,
    /// When enrollment happened, Unix ms.
    pub enrolled_at_ms: i64,
}

/// Errors of identity handling.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("the enrollment token is malformed (expected sa1.<id>.<secret>.<pin>)")]
    BadToken,
    #[error("key generation failed: {0}")]
    Key(String),
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    #[error("the collector refused enrollment: {0}")]
    Refused(String),
    #[error("the collector cannot enroll right now: {0}")]
    Unavailable(String),
}

/// A refusal (bad, expired or used-up token) is final; a collector that is busy or restarting is
/// asked again later.
fn enrollment_error(status: tonic::Status) -> IdentityError {
    use tonic::Code;
    match status.code() {
        Code::Unavailable
        | Code::ResourceExhausted
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled => {
            IdentityError::Unavailable(format!("{}: {}", status.code(), status.message()))
        }
        _ => IdentityError::Refused(status.message().to_owned()),
    }
}

/// A loaded identity, ready to open mutual-TLS connections.
#[derive(Clone)]
pub struct Identity {
    /// The identity file.
    pub file: IdentityFile,
    /// The collector address.
    pub collector: CollectorUrl,
    /// TLS client configuration with the agent certificate and the pinned CA.
    pub tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.into(),
        source,
    }
}

impl Identity {
    /// Loads the identity from `state_dir`; `Ok(None)` when the agent is not enrolled.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, IdentityError> {
        finish_renewal(state_dir)?;
        let identity_path = state_dir.join("identity.json");
        let text = match fs::read_to_string(&identity_path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io(&identity_path)(error)),
        };
        let corrupt = |path: &Path, detail: String| IdentityError::Corrupt {
            path: path.into(),
            detail,
        };
        let file: IdentityFile =
            serde_json::from_str(&text).map_err(|e| corrupt(&identity_path, e.to_string()))?;
        let collector =
            CollectorUrl::parse(&file.collector).map_err(|e| corrupt(&identity_path, e))?;
        let ca_path = state_dir.join("ca.crt");
        let cert_path = state_dir.join("agent.crt");
        let key_path = state_dir.join("agent.key");
        let ca = CertificateDer::from_pem_file(&ca_path)
            .map_err(|e| corrupt(&ca_path, e.to_string()))?;
        let chain = CertificateDer::pem_file_iter(&cert_path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| corrupt(&cert_path, e.to_string()))?;
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| corrupt(&key_path, e.to_string()))?;
        let tls = transport::mutual_config(ca, chain, key)?;
        Ok(Some(Self {
            file,
            collector,
            tls,
        }))
    }
}

/// Facts about this machine sent at enrollment and in heartbeats.
pub fn host_facts() -> v1::HostFacts {
    v1::HostFacts {
        hostname: sysinfo::System::host_name().unwrap_or_default(),
        os: std::env::consts::OS.to_owned(),
        os_version: sysinfo::System::long_os_version().unwrap_or_default(),
        arch: std::env::consts::ARCH.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// Enrolls with the collector using `token`, writing the identity into `state_dir`.
pub async fn enroll(
    collector: &CollectorUrl,
    token: &str,
    state_dir: &Path,
    now_ms: i64,
) -> Result<Identity, IdentityError> {
    let token = token.trim();
    let pin = token
        .split('.')
        .nth(3)
        .filter(|_| token.starts_with("sa1."))
        .ok_or(IdentityError::BadToken)?;
    create_private_dir(state_dir)?;

    let (key, csr_der) = key_and_csr()?;
    let mut client = transport::connect(collector, transport::pinned_config(pin)?).await?;
    let response = client
        .enroll(v1::EnrollRequest {
            token: token.to_owned(),
            csr_der,
            host: Some(host_facts()),
        })
        .await
        .map_err(enrollment_error)?
        .into_inner();

    replace_file(
        &state_dir.join("agent.key"),
        key.serialize_pem().as_bytes(),
        true,
    )?;
    replace_file(
        &state_dir.join("agent.crt"),
        response.certificate_pem.as_bytes(),
        false,
    )?;
    replace_file(
        &state_dir.join("ca.crt"),
        response.ca_certificate_pem.as_bytes(),
        false,
    )?;
    let file = IdentityFile {
        agent_id: response.agent_id,
        group: response.group,
        collector: collector.to_string(),
        certificate_expires_at_ms: response.certificate_expires_at_ms,
        enrolled_at_ms: now_ms,
    };
    let json = serde_json::to_vec_pretty(&file).map_err(|e| IdentityError::Key(e.to_string()))?;
    replace_file(&state_dir.join("identity.json"), &json, false)?;
    Identity::load(state_dir)?.ok_or_else(|| IdentityError::Corrupt {
        path: state_dir.join("identity.json"),
        detail: "missing right after enrollment".into(),
    })
}

/// A fresh key pair and a CSR for it; the key never leaves this machine.
fn key_and_csr() -> Result<(KeyPair, Vec<u8>), IdentityError> {
    let key = KeyPair::generate().map_err(|e| IdentityError::Key(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "shadowai agent");
    params.distinguished_name = name;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| IdentityError::Key(e.to_string()))?;
    Ok((key, csr.der().to_vec()))
}

/// Renews the agent certificate over the current mutual-TLS channel: a new key pair is made here,
/// the collector signs its CSR for the same agent id, and the new key and certificate replace the
/// old ones. The swap survives a crash at any point: the new pair is written beside the old one
/// first (`*.next`), and [`Identity::load`] completes a half-done swap or discards a half-written
/// pair, so a key never ends up beside a certificate that is not its own.
pub async fn renew(
    client: &mut v1::agent_service_client::AgentServiceClient<tonic::transport::Channel>,
    identity: &Identity,
    state_dir: &Path,
) -> Result<Identity, IdentityError> {
    let (key, csr_der) = key_and_csr()?;
    let response = client
        .renew_certificate(v1::RenewCertificateRequest { csr_der })
        .await
        .map_err(|status| IdentityError::Refused(status.message().to_owned()))?
        .into_inner();
    // Refuse a certificate that does not parse before anything on disk changes.
    CertificateDer::pem_slice_iter(response.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|chain| !chain.is_empty())
        .ok_or_else(|| IdentityError::Refused("the renewed certificate does not parse".into()))?;
    let key_next = state_dir.join("agent.key.next");
    let cert_next = state_dir.join("agent.crt.next");
    replace_file(&key_next, key.serialize_pem().as_bytes(), true)?;
    replace_file(&cert_next, response.certificate_pem.as_bytes(), false)?;
    let mut file = identity.file.clone();
    file.certificate_expires_at_ms = response.certificate_expires_at_ms;
    let json = serde_json::to_vec_pretty(&file).map_err(|e| IdentityError::Key(e.to_string()))?;
    finish_renewal(state_dir)?;
    replace_file(&state_dir.join("identity.json"), &json, false)?;
    let mut renewed = Identity::load(state_dir)?.ok_or_else(|| IdentityError::Corrupt {
        path: state_dir.join("identity.json"),
        detail: "missing right after renewal".into(),
    })?;
    renewed.collector = identity.collector.clone();
    Ok(renewed)
}

/// Completes or rolls back a certificate swap that a crash interrupted (see [`renew`]).
fn finish_renewal(state_dir: &Path) -> Result<(), IdentityError> {
    let key_next = state_dir.join("agent.key.next");
    let cert_next = state_dir.join("agent.crt.next");
    match (key_next.exists(), cert_next.exists()) {
        (true, true) => {
            fs::rename(&key_next, state_dir.join("agent.key")).map_err(io(&key_next))?;
            fs::rename(&cert_next, state_dir.join("agent.crt")).map_err(io(&cert_next))?;
        }
        (false, true) => {
            fs::rename(&cert_next, state_dir.join("agent.crt")).map_err(io(&cert_next))?;
        }
        (true, false) => fs::remove_file(&key_next).map_err(io(&key_next))?,
        (false, false) => {}
    }
    Ok(())
}

/// Creates the state directory readable only by the agent's user.
pub fn create_private_dir(dir: &Path) -> Result<(), IdentityError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    Ok(())
}

/// Writes `contents` to a temporary file and renames it over `path` (atomic on one filesystem).
fn replace_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), IdentityError> {
    let temporary = path.with_extension("tmp");
    let _ = fs::remove_file(&temporary);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&temporary).map_err(io(&temporary))?;
    file.write_all(contents).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    fs::rename(&temporary, path).map_err(io(path))
}
