//! E-mail delivery of scheduled reports (`[reports.smtp]` and a schedule's `email_to`), through
//! lettre's SMTP client on tokio with rustls (no OpenSSL).
//!
//! - Every file a run wrote is attached (CSV: each table file), up to `max_attachment_bytes` in
//!   all; files past the cap are named in the body with their path on the collector instead.
//! - Header values (subject, addresses) go through lettre's builders, which encode them: a group
//!   or report name can never add a header line.
//! - A delivery is tried `attempts` times at most, `retry_delay` apart; its outcome is recorded on
//!   the run (`report_runs.delivery`), never retried later.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::config::ConfigError;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP (only for a relay on the same host or network; no credentials allowed).
    None,
    /// SMTP, then STARTTLS before anything is sent (refused if the server does not offer it).
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// The `[reports.smtp]` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    host: String,
    port: Option<u16>,
    tls: TlsMode,
    username: Option<String>,
    password_file: Option<PathBuf>,
    from: String,
    ca_file: Option<PathBuf>,
    timeout_seconds: Option<u64>,
    attempts: Option<u32>,
    max_attachment_bytes: Option<u64>,
}

/// Validated SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    /// Read at every delivery, so that a rotated password needs no restart.
    pub password_file: Option<PathBuf>,
    pub from: Mailbox,
    /// PEM roots to trust instead of the Mozilla roots (webpki-roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Per SMTP command and connection.
    pub timeout: Duration,
    /// Tries per delivery, at least 1.
    pub attempts: u32,
    /// Wait between tries.
    pub retry_delay: Duration,
    /// Attachments in all; larger files are listed in the body instead.
    pub max_attachment_bytes: u64,
}

const KEY: &str = "reports.smtp";

fn invalid(problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: KEY,
        problem: problem.into(),
    }
}

impl SmtpFile {
    /// Checks the section, reads the CA file, and checks that the password file is readable.
    pub fn validate(self) -> Result<SmtpSettings, ConfigError> {
        let host_ok = !self.host.is_empty()
            && self.host.len() <= 253
            && self
                .host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
        if !host_ok {
            return Err(invalid(format!(
                "host `{}`: use a DNS name or an IP address",
                self.host.escape_debug()
            )));
        }
        let port = self.port.unwrap_or(match self.tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        });
        if port == 0 {
            return Err(invalid("port must be 1 to 65535"));
        }
        match (&self.username, &self.password_file) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(invalid("give both username and password_file, or neither"));
            }
            (Some(_), Some(_)) if self.tls == TlsMode::None => {
                return Err(invalid(
                    "a password is never sent without TLS: use tls = \"starttls\" or \"tls\"",
                ));
            }
            (Some(username), Some(path)) => {
                if username.is_empty() || username.chars().any(char::is_control) {
                    return Err(invalid(
                        "username must be non-empty, without control characters",
                    ));
                }
                read_password(path).map_err(invalid)?;
            }
            (None, None) => {}
        }
        let from: Mailbox = self.from.parse().map_err(|e| {
            invalid(format!(
                "from `{}` is not an e-mail address ({e}): use e.g. \"shadowai <reports@example.com>\"",
                self.from.escape_debug()
            ))
        })?;
        if self.ca_file.is_some() && self.tls == TlsMode::None {
            return Err(invalid("ca_file is for tls = \"starttls\" or \"tls\""));
        }
        let ca_pem = match &self.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| invalid(format!("cannot read ca_file {}: {e}", path.display())))?;
                Certificate::from_pem(&pem).map_err(|e| {
                    invalid(format!(
                        "ca_file {}: not a PEM certificate: {e}",
                        path.display()
                    ))
                })?;
                Some(pem)
            }
            None => None,
        };
        let timeout_seconds = self.timeout_seconds.unwrap_or(30);
        if !(1..=600).contains(&timeout_seconds) {
            return Err(invalid("timeout_seconds must be 1 to 600"));
        }
        let attempts = self.attempts.unwrap_or(3);
        if !(1..=5).contains(&attempts) {
            return Err(invalid("attempts must be 1 to 5"));
        }
        let max_attachment_bytes = self.max_attachment_bytes.unwrap_or(20 * 1024 * 1024);
        if max_attachment_bytes > 100 * 1024 * 1024 {
            return Err(invalid(
                "max_attachment_bytes must be at most 104857600 (100 MiB)",
            ));
        }
        Ok(SmtpSettings {
            host: self.host,
            port,
            tls: self.tls,
            username: self.username,
            password_file: self.password_file,
            from,
            ca_pem,
            timeout: Duration::from_secs(timeout_seconds),
            attempts,
            retry_delay: Duration::from_secs(60),
            max_attachment_bytes,
        })
    }
}

/// Parses a schedule's `email_to`: at least one address, each a valid mailbox.
pub fn parse_recipients(schedule: &str, addresses: &[String]) -> Result<Mailboxes, ConfigError> {
    let invalid = |problem: String| ConfigError::Invalid {
        key: "reports.schedule",
        problem,
    };
    if addresses.is_empty() {
        return Err(invalid(format!(
            "{schedule}: email_to is empty (leave it out for no e-mail)"
        )));
    }
    if addresses.len() > 100 {
        return Err(invalid(format!(
            "{schedule}: email_to has more than 100 addresses"
        )));
    }
    let mut mailboxes = Mailboxes::new();
    for address in addresses {
        let mailbox: Mailbox = address.parse().map_err(|e| {
            invalid(format!(
                "{schedule}: email_to `{}` is not an e-mail address ({e})",
                address.escape_debug()
            ))
        })?;
        mailboxes.push(mailbox);
    }
    Ok(mailboxes)
}

fn read_password(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read password_file {}: {e}", path.display()))?;
    let password = text.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(format!("password_file {} is empty", path.display()));
    }
    Ok(password)
}

/// What a report e-mail says: the subject and the lines of the body.
#[derive(Debug, Clone)]
pub struct Letter {
    pub subject: String,
    pub body: String,
    /// Files to attach, in order.
    pub files: Vec<PathBuf>,
}

/// The media type of an attached report file, from its extension.
fn content_type(path: &Path) -> ContentType {
    let media = match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("pdf") => "application/pdf",
        Some("csv") => "text/csv; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    ContentType::parse(media).unwrap_or(ContentType::TEXT_PLAIN)
}

/// Builds the message: a text part, then every file that fits under `max_attachment_bytes`;
/// the others are named in the text with their path.
pub fn message(
    settings: &SmtpSettings,
    to: &Mailboxes,
    letter: &Letter,
) -> Result<Message, String> {
    let mut body = letter.body.clone();
    let mut attachments = Vec::new();
    let mut total: u64 = 0;
    let mut left_out = Vec::new();
    for path in &letter.files {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let size = bytes.len() as u64;
        if total + size > settings.max_attachment_bytes {
            left_out.push(format!("{} ({size} bytes)", path.display()));
            continue;
        }
        total += size;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "report".into());
        // base64 always: a CSV's CRLF line ends (RFC 4180) arrive as they were written
        let body = Body::new_with_encoding(bytes, ContentTransferEncoding::Base64)
            .map_err(|_| format!("cannot encode {}", path.display()))?;
        attachments.push(Attachment::new(name).body(body, content_type(path)));
    }
    if !left_out.is_empty() {
        body.push_str(&format!(
            "\nNot attached (over {} bytes in all), on the collector:\n",
            settings.max_attachment_bytes
        ));
        for line in left_out {
            body.push_str(&format!("  {line}\n"));
        }
    }
    let mut parts = MultiPart::mixed().singlepart(SinglePart::plain(body));
    for attachment in attachments {
        parts = parts.singlepart(attachment);
    }
    let mut builder = Message::builder()
        .from(settings.from.clone())
        .subject(letter.subject.clone());
    for mailbox in to.iter() {
        builder = builder.to(mailbox.clone());
    }
    builder
        .multipart(parts)
        .map_err(|e| format!("cannot build the e-mail: {e}"))
}

fn transport(settings: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls_parameters = || -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(settings.host.clone());
        builder = match &settings.ca_pem {
            Some(pem) => builder
                .certificate_store(CertificateStore::None)
                .add_root_certificate(
                    Certificate::from_pem(pem).map_err(|e| format!("ca_file: {e}"))?,
                ),
            None => builder.certificate_store(CertificateStore::WebpkiRoots),
        };
        builder
            .build_rustls()
            .map_err(|e| format!("TLS settings: {e}"))
    };
    let tls = match settings.tls {
        TlsMode::None => Tls::None,
        TlsMode::Starttls => Tls::Required(tls_parameters()?),
        TlsMode::Tls => Tls::Wrapper(tls_parameters()?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
        .port(settings.port)
        .tls(tls)
        .timeout(Some(settings.timeout));
    if let (Some(username), Some(path)) = (&settings.username, &settings.password_file) {
        builder = builder.credentials(Credentials::new(username.clone(), read_password(path)?));
    }
    Ok(builder.build())
}

/// Sends `letter` to `to`, trying at most `settings.attempts` times. The error of the last try
/// says what went wrong.
pub async fn send(settings: &SmtpSettings, to: &Mailboxes, letter: &Letter) -> Result<(), String> {
    let message = message(settings, to, letter)?;
    let mut last_error = String::new();
    for attempt in 1..=settings.attempts {
        if attempt > 1 {
            tokio::time::sleep(settings.retry_delay).await;
        }
        let result = match transport(settings) {
            Ok(transport) => transport
                .send(message.clone())
                .await
                .map(|_| ())
                .map_err(|e| describe(settings, &e)),
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(error) => {
                tracing::warn!(attempt, attempts = settings.attempts, %error, "report e-mail not sent");
                last_error = error;
            }
        }
    }
    Err(format!(
        "after {} attempt(s): {last_error}",
        settings.attempts
    ))
}

fn describe(settings: &SmtpSettings, error: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    let mut text = format!("SMTP {}:{}: {error}", settings.host, settings.port);
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(text: &str) -> Result<SmtpSettings, String> {
        toml::from_str::<SmtpFile>(text)
            .map_err(|e| e.to_string())?
            .validate()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn smtp_settings_are_validated() {
        let ok = smtp("host = \"mail.example.com\"\ntls = \"starttls\"\nfrom = \"shadowai <r@example.com>\"\n")
            .unwrap();
        assert_eq!((ok.port, ok.attempts), (587, 3));
        for (text, expected) in [
            (
                "host = \"\"\ntls = \"none\"\nfrom = \"r@example.com\"\n",
                "host",
            ),
            (
                "host = \"a\r\nb\"\ntls = \"none\"\nfrom = \"r@example.com\"\n",
                "host",
            ),
            (
                "host = \"m\"\ntls = \"ssl\"\nfrom = \"r@example.com\"\n",
                "unknown variant",
            ),
            (
                "host = \"m\"\ntls = \"none\"\nfrom = \"not an address\"\n",
                "from",
            ),
            (
                "host = \"m\"\ntls = \"none\"\nfrom = \"r@example.com\"\nusername = \"u\"\npassword_file = \"/etc/hostname\"\n",
                "never sent without TLS",
            ),
            (
                "host = \"m\"\ntls = \"tls\"\nfrom = \"r@example.com\"\nusername = \"u\"\n",
                "both",
            ),
            (
                "host = \"m\"\ntls = \"tls\"\nfrom = \"r@example.com\"\nusername = \"u\"\npassword_file = \"/nonexistent/p\"\n",
                "cannot read password_file",
            ),
            (
                "host = \"m\"\ntls = \"tls\"\nfrom = \"r@example.com\"\nattempts = 0\n",
                "attempts",
            ),
            (
                "host = \"m\"\ntls = \"none\"\nfrom = \"r@example.com\"\nca_file = \"/x\"\n",
                "ca_file",
            ),
        ] {
            let error = smtp(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
        assert!(parse_recipients("monthly", &[]).is_err());
        assert!(
            parse_recipients("monthly", &["a@example.com\r\nBcc: x@evil.example".into()]).is_err()
        );
        assert_eq!(
            parse_recipients(
                "monthly",
                &["a@example.com".into(), "B <b@example.com>".into()]
            )
            .unwrap()
            .iter()
            .count(),
            2
        );
    }

    #[test]
    fn a_subject_with_crlf_adds_no_header() {
        let settings = smtp("host = \"m\"\ntls = \"none\"\nfrom = \"r@example.com\"\n").unwrap();
        let to = parse_recipients("x", &["ciso@example.com".into()]).unwrap();
        let letter = Letter {
            subject: "report eng\r\nBcc: attacker@evil.example\r\nX-Injected: 1".into(),
            body: "body\r\n.\r\nMAIL FROM:<x@evil.example>\r\n".into(),
            files: Vec::new(),
        };
        let raw = String::from_utf8(message(&settings, &to, &letter).unwrap().formatted()).unwrap();
        let headers = raw.split("\r\n\r\n").next().unwrap();
        for line in headers.lines() {
            assert!(
                !line.starts_with("Bcc:") && !line.starts_with("X-Injected:"),
                "injected header {line:?} in\n{raw}"
            );
        }
    }
}
