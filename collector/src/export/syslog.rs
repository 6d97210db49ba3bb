//! The syslog sink: RFC 5424 messages over TCP (TLS optional, RFC 5425), framed by octet counting
//! (RFC 6587 §3.4.1: `MSG-LEN SP SYSLOG-MSG`), one message per OCSF event (JSON in MSG).
//!
//! TCP syslog has no acknowledgement. Before each batch the connection is checked for a close
//! from the receiver (a read that returns end-of-stream), so that a receiver restart is noticed
//! before a batch is written into a dead socket; a write error drops the connection and the batch
//! is sent again whole on a new one. An event written in the instant the receiver dies can still
//! be lost; the webhook, which is acknowledged, does not have that limit.

use std::time::Duration;

use futures_util::FutureExt as _;
use rustls_pki_types::ServerName;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{ExportSetupError, SendError};

/// Where and how to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSettings {
    /// `host:port` of the receiver.
    pub address: String,
    /// TLS (RFC 5425) with this CA PEM pinned (`Some(None)`: TLS with the Mozilla roots);
    /// `None`: plain TCP.
    pub tls: Option<Option<Vec<u8>>>,
    /// Facility number (0..=23), e.g. 16 = local0.
    pub facility: u8,
    /// APP-NAME field.
    pub app_name: String,
    /// HOSTNAME field (this collector).
    pub hostname: String,
    /// Larger messages (after dropping the command line) are dead letters.
    pub max_message_bytes: usize,
    /// Connect + write, per batch.
    pub timeout: Duration,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

pub(super) struct Syslog {
    settings: SyslogSettings,
    host: String,
    tls: Option<TlsConnector>,
    connection: Option<Box<dyn Stream>>,
}

impl Syslog {
    pub(super) fn new(settings: &SyslogSettings) -> Result<Syslog, ExportSetupError> {
        let (host, port) =
            settings
                .address
                .rsplit_once(':')
                .ok_or_else(|| ExportSetupError::Invalid {
                    what: "export.syslog.address",
                    problem: "must be host:port".into(),
                })?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(ExportSetupError::Invalid {
                what: "export.syslog.address",
                problem: "must be host:port".into(),
            });
        }
        if settings.facility > 23 {
            return Err(ExportSetupError::Invalid {
                what: "export.syslog.facility",
                problem: "must be 0 to 23".into(),
            });
        }
        let tls = match &settings.tls {
            Some(ca) => Some(TlsConnector::from(super::client_tls(ca.as_deref(), &[])?)),
            None => None,
        };
        Ok(Syslog {
            settings: settings.clone(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            tls,
            connection: None,
        })
    }

    pub(super) async fn send(&mut self, events: &[serde_json::Value]) -> Result<(), SendError> {
        let mut bytes = Vec::new();
        let now = OffsetDateTime::now_utc();
        for event in events {
            let message = message(&self.settings, event, now)?;
            bytes.extend_from_slice(&frame(&message));
        }
        match tokio::time::timeout(self.settings.timeout, self.write(&bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => {
                self.connection = None;
                Err(error)
            }
            Err(_) => {
                self.connection = None;
                Err(SendError::Transient("timed out".into()))
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        if let Some(connection) = &mut self.connection
            && is_closed(connection.as_mut())
        {
            self.connection = None;
        }
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(self.connect().await?),
        };
        connection
            .write_all(bytes)
            .await
            .map_err(|e| SendError::Transient(format!("write failed: {e}")))?;
        connection
            .flush()
            .await
            .map_err(|e| SendError::Transient(format!("write failed: {e}")))?;
        Ok(())
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, SendError> {
        let tcp = TcpStream::connect(&self.settings.address)
            .await
            .map_err(|e| SendError::Transient(format!("cannot connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = ServerName::try_from(self.host.clone())
            .map_err(|_| SendError::Refused("the address's host is not a valid TLS name".into()))?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|e| SendError::Transient(format!("TLS handshake failed: {e}")))?;
        Ok(Box::new(stream))
    }
}

/// True when the receiver has closed the connection (or it failed). Never waits: a receiver that
/// has said nothing is alive; anything it did send is discarded (syslog receivers do not talk).
fn is_closed(connection: &mut dyn Stream) -> bool {
    let mut buffer = [0u8; 512];
    loop {
        match connection.read(&mut buffer).now_or_never() {
            None => return false,
            Some(Ok(0)) | Some(Err(_)) => return true,
            Some(Ok(_)) => continue,
        }
    }
}

/// `MSG-LEN SP SYSLOG-MSG` (RFC 6587 octet counting).
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = format!("{} ", message.len()).into_bytes();
    framed.extend_from_slice(message);
    framed
}

/// The RFC 5424 message of one event:
/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - ocsf2004 - JSON`.
fn message(
    settings: &SyslogSettings,
    event: &serde_json::Value,
    now: OffsetDateTime,
) -> Result<Vec<u8>, SendError> {
    let severity = match event.get("severity_id").and_then(|v| v.as_u64()) {
        Some(5) | Some(6) => 2, // critical
        Some(4) => 3,           // error
        Some(3) => 4,           // warning
        Some(2) => 5,           // notice
        _ => 6,                 // informational
    };
    let priority = u32::from(settings.facility) * 8 + severity;
    let timestamp = now
        .format(&Rfc3339)
        .map_err(|e| SendError::Refused(format!("cannot format the time: {e}")))?;
    let header = format!(
        "<{priority}>1 {timestamp} {} {} - ocsf{} - ",
        header_field(&settings.hostname, 255),
        header_field(&settings.app_name, 48),
        super::CLASS_UID
    );
    let mut body =
        serde_json::to_vec(event).map_err(|e| SendError::Refused(format!("cannot encode: {e}")))?;
    if header.len() + body.len() > settings.max_message_bytes {
        // The command line is the only unbounded-ish field; try without it before giving up.
        let mut smaller = event.clone();
        for path in ["actor", "evidences"] {
            strip_cmdline(smaller.get_mut(path));
        }
        body = serde_json::to_vec(&smaller)
            .map_err(|e| SendError::Refused(format!("cannot encode: {e}")))?;
        if header.len() + body.len() > settings.max_message_bytes {
            return Err(SendError::Refused(format!(
                "event of {} bytes exceeds max_message_bytes ({})",
                header.len() + body.len(),
                settings.max_message_bytes
            )));
        }
    }
    let mut message = header.into_bytes();
    message.extend_from_slice(&body);
    Ok(message)
}

fn strip_cmdline(value: Option<&mut serde_json::Value>) {
    match value {
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                strip_cmdline(Some(item));
            }
        }
        Some(serde_json::Value::Object(object)) => {
            if let Some(serde_json::Value::Object(process)) = object.get_mut("process") {
                process.insert("cmd_line".into(), "[omitted: message too large]".into());
            }
        }
        _ => {}
    }
}

/// An RFC 5424 header field: printable US-ASCII without spaces, capped, `-` when empty.
fn header_field(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if clean.is_empty() { "-".into() } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SyslogSettings {
        SyslogSettings {
            address: "127.0.0.1:1".into(),
            tls: None,
            facility: 16,
            app_name: "shadow ai".into(),
            hostname: "collector\u{7}one".into(),
            max_message_bytes: 600,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn messages_are_rfc5424_and_octet_counted() {
        let event = serde_json::json!({ "severity_id": 4, "message": "é" });
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let message = message(&settings(), &event, now).unwrap();
        let text = String::from_utf8(message.clone()).unwrap();
        assert_eq!(
            text,
            "<131>1 2023-11-14T22:13:20Z collectorone shadowai - ocsf2004 - {\"message\":\"é\",\"severity_id\":4}"
        );
        let framed = frame(&message);
        let (length, rest) = std::str::from_utf8(&framed)
            .unwrap()
            .split_once(' ')
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), rest.len());
        assert_eq!(rest.as_bytes(), message.as_slice());
    }

    #[test]
    fn oversized_events_lose_the_command_line_then_are_refused() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let event = serde_json::json!({
            "actor": { "process": { "cmd_line": "x".repeat(1000) } },
            "evidences": [{ "process": { "cmd_line": "x".repeat(1000) } }],
        });
        let message = message(&settings(), &event, now).unwrap();
        assert!(message.len() <= 600);
        assert!(String::from_utf8(message).unwrap().contains("[omitted"));
        let event = serde_json::json!({ "message": "y".repeat(1000) });
        assert!(matches!(
            super::message(&settings(), &event, now),
            Err(SendError::Refused(_))
        ));
    }
}
