//! The collector's private certificate authority and the enrollment token format.
//!
//! The CA is created on first start (rcgen, ECDSA P-256) and kept in the data directory
//! (`ca.pem`, `ca.key` with mode 0600). It signs one certificate per agent at enrollment, whose
//! common name is the agent id; the collector later recognises the agent by the SHA-256 fingerprint
//! of the certificate it presents, never by anything the agent writes in a message.
//!
//! An enrollment token is `sa1.<token id>.<secret>.<ca pin>` (base64url, no padding): the id finds the
//! database row, only the SHA-256 of the 256-bit secret is stored, and the pin (SHA-256 of the CA
//! certificate) lets a fresh agent verify the collector before it has any other trust anchor.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// How long an agent certificate is valid. Agents renew when a third of it is left.
pub const AGENT_CERTIFICATE_LIFETIME: Duration = Duration::days(90);
/// How long the CA is valid.
const CA_LIFETIME: Duration = Duration::days(3650);
/// How long a collector's TLS server certificate is valid; it is re-issued at every start.
const SERVER_CERTIFICATE_LIFETIME: Duration = Duration::days(365);
/// Largest CSR accepted, bytes.
pub const MAX_CSR_BYTES: usize = 8 * 1024;

/// Errors of the identity layer.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA files in {dir} are unusable: {detail}")]
    BadCa { dir: PathBuf, detail: String },
    #[error("certificate signing request is invalid")]
    BadCsr,
    #[error("certificate signing request is larger than {MAX_CSR_BYTES} bytes")]
    CsrTooLarge,
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// A certificate issued to an agent.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// PEM of the certificate.
    pub pem: String,
    /// SHA-256 of the DER, hex: how the collector recognises the agent.
    pub fingerprint: String,
    /// End of validity, Unix ms.
    pub expires_at_ms: i64,
}

/// The collector's CA: loads or creates its key and certificate, and signs agent certificates.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    certificate_pem: String,
    certificate_der: CertificateDer<'static>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("pin", &self.pin())
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Loads `ca.pem`/`ca.key` from `dir`, creating both on first start.
    pub fn load_or_create(dir: &Path, now: OffsetDateTime) -> Result<Self, IdentityError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if cert_path.exists() || key_path.exists() {
            return Self::load(dir, &cert_path, &key_path);
        }
        fs::create_dir_all(dir).map_err(|source| IdentityError::Io {
            path: dir.into(),
            source,
        })?;
        let key = KeyPair::generate().map_err(|e| IdentityError::Generate(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "shadowai");
        name.push(
            DnType::CommonName,
            format!("shadowai collector CA {}", short_id()),
        );
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_LIFETIME;
        let certificate = params
            .self_signed(&key)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        write_public(&cert_path, certificate.pem().as_bytes())?;
        Self::load(dir, &cert_path, &key_path)
    }

    fn load(dir: &Path, cert_path: &Path, key_path: &Path) -> Result<Self, IdentityError> {
        let bad = |detail: String| IdentityError::BadCa {
            dir: dir.into(),
            detail,
        };
        let certificate_pem =
            fs::read_to_string(cert_path).map_err(|source| IdentityError::Io {
                path: cert_path.into(),
                source,
            })?;
        let key_pem = fs::read_to_string(key_path).map_err(|source| IdentityError::Io {
            path: key_path.into(),
            source,
        })?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("ca.key: {e}")))?;
        let certificate_der = pem_to_der(&certificate_pem).ok_or_else(|| bad("ca.pem".into()))?;
        let issuer = Issuer::from_ca_cert_der(&certificate_der, key)
            .map_err(|e| bad(format!("ca.pem: {e}")))?;
        Ok(Self {
            issuer,
            certificate_pem,
            certificate_der,
        })
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA certificate, DER.
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.certificate_der
    }

    /// The pin agents check at enrollment: base64url SHA-256 of the CA certificate.
    pub fn pin(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.certificate_der.as_ref()))
    }

    /// Signs a certificate for `agent_id` from the agent's CSR. Only the CSR's public key is used:
    /// names and extensions the agent asked for are ignored.
    pub fn issue_agent_certificate(
        &self,
        csr_der: &[u8],
        agent_id: Uuid,
        now: OffsetDateTime,
        lifetime: Duration,
    ) -> Result<IssuedCertificate, IdentityError> {
        if csr_der.len() > MAX_CSR_BYTES {
            return Err(IdentityError::CsrTooLarge);
        }
        let mut request = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|_| IdentityError::BadCsr)?;
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "shadowai agent");
        name.push(DnType::CommonName, agent_id.to_string());
        params.distinguished_name = name;
        params.subject_alt_names = vec![SanType::URI(
            format!("urn:shadowai:agent:{agent_id}")
                .try_into()
                .map_err(|_| IdentityError::Generate("agent uri".into()))?,
        )];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + lifetime;
        params.serial_number = Some(random_serial());
        request.params = params;
        let certificate = request
            .signed_by(&self.issuer)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(IssuedCertificate {
            pem: certificate.pem(),
            fingerprint: fingerprint(certificate.der()),
            expires_at_ms: unix_ms(now + lifetime),
        })
    }

    /// Issues a fresh TLS server certificate (new key) for the given DNS names and IP addresses.
    pub fn issue_server_certificate(
        &self,
        names: &[String],
        now: OffsetDateTime,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), IdentityError> {
        let key = KeyPair::generate().map_err(|e| IdentityError::Generate(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.clone()
                        .try_into()
                        .map_err(|_| IdentityError::Generate(format!("bad server name {name}")))?,
                ),
            };
            params.subject_alt_names.push(san);
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "shadowai collector");
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + SERVER_CERTIFICATE_LIFETIME;
        params.serial_number = Some(random_serial());
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let chain = vec![certificate.der().clone(), self.certificate_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((chain, key))
    }
}

/// SHA-256 of a certificate's DER, lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The parts of an enrollment token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentToken {
    /// Database id of the token.
    pub token_id: String,
    /// The secret; only its SHA-256 is stored.
    pub secret: String,
    /// Pin of the CA that issued it.
    pub ca_pin: String,
}

impl EnrollmentToken {
    /// Makes a new random token for the CA with `ca_pin`.
    pub fn generate(ca_pin: &str) -> Self {
        let mut id = [0u8; 12];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        Self {
            token_id: URL_SAFE_NO_PAD.encode(id),
            secret: URL_SAFE_NO_PAD.encode(secret),
            ca_pin: ca_pin.to_owned(),
        }
    }

    /// Parses `sa1.<id>.<secret>.<pin>`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() > 256 {
            return None;
        }
        let mut parts = text.split('.');
        let (Some("sa1"), Some(id), Some(secret), Some(pin), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let is_b64 = |s: &str, len: usize| {
            s.len() == len
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !is_b64(id, 16) || !is_b64(secret, 43) || !is_b64(pin, 43) {
            return None;
        }
        Some(Self {
            token_id: id.into(),
            secret: secret.into(),
            ca_pin: pin.into(),
        })
    }

    /// SHA-256 of the secret, hex: the form the store keeps.
    pub fn secret_sha256(&self) -> String {
        hex::encode(Sha256::digest(self.secret.as_bytes()))
    }
}

impl std::fmt::Display for EnrollmentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sa1.{}.{}.{}", self.token_id, self.secret, self.ca_pin)
    }
}

/// Unix milliseconds of a point in time.
pub fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn pem_to_der(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

fn random_serial() -> rcgen::SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive INTEGER
    rcgen::SerialNumber::from_slice(&bytes)
}

fn short_id() -> String {
    let mut bytes = [0u8; 4];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Writes a secret file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    let io = |source| IdentityError::Io {
        path: path.into(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

fn write_public(path: &Path, contents: &[u8]) -> Result<(), IdentityError> {
    fs::write(path, contents).map_err(|source| IdentityError::Io {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_garbage() {
        let token = EnrollmentToken::generate(&URL_SAFE_NO_PAD.encode([7u8; 32]));
        let text = token.to_string();
        assert_eq!(EnrollmentToken::parse(&text), Some(token.clone()));
        assert_eq!(EnrollmentToken::parse(&format!("  {text}\n")), Some(token));
        for bad in [
            "",
            "sa1",
            "sa2.a.b.c",
            "sa1.a.b.c",
            &format!("{text}.x"),
            &"x".repeat(300),
        ] {
            assert_eq!(EnrollmentToken::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ca_is_created_once_and_signs_agent_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = CertificateAuthority::load_or_create(dir.path(), now).unwrap();
        let again = CertificateAuthority::load_or_create(dir.path(), now).unwrap();
        assert_eq!(ca.pin(), again.pin());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let agent_key = KeyPair::generate().unwrap();
        let mut asked = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asked.serialize_request(&agent_key).unwrap();
        let agent_id = Uuid::now_v7();
        let issued = ca
            .issue_agent_certificate(csr.der(), agent_id, now, AGENT_CERTIFICATE_LIFETIME)
            .unwrap();
        let der = pem_to_der(&issued.pem).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = parsed
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(cn, agent_id.to_string());
        assert!(
            !parsed.is_ca(),
            "an agent must never obtain a CA certificate"
        );
        assert_eq!(issued.fingerprint, fingerprint(&der));

        assert!(matches!(
            ca.issue_agent_certificate(b"not a csr", agent_id, now, AGENT_CERTIFICATE_LIFETIME),
            Err(IdentityError::BadCsr)
        ));
        assert!(matches!(
            ca.issue_agent_certificate(
                &vec![0u8; MAX_CSR_BYTES + 1],
                agent_id,
                now,
                AGENT_CERTIFICATE_LIFETIME
            ),
            Err(IdentityError::CsrTooLarge)
        ));
    }
}
