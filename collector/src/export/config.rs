//! The `[export]` section of the collector configuration, validated into [`ExportSettings`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ExportSettings, QueueSettings, SyslogSettings, WebhookSettings};
use crate::config::ConfigError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    batch_size: Option<usize>,
    queue_capacity: Option<usize>,
    max_backoff_seconds: Option<u64>,
    poll_interval_seconds: Option<u64>,
    webhook: Option<WebhookFile>,
    syslog: Option<SyslogFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: String,
    ca_file: Option<PathBuf>,
    authorization: Option<String>,
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyslogFile {
    address: String,
    #[serde(default)]
    tls: bool,
    ca_file: Option<PathBuf>,
    facility: Option<Facility>,
    app_name: Option<String>,
    max_message_bytes: Option<usize>,
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Facility {
    Number(u8),
    Name(String),
}

const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

fn read_ca(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
}

impl ExportFile {
    pub fn validate(self, hostname: Option<&str>) -> Result<ExportSettings, ConfigError> {
        let defaults = QueueSettings::default();
        let queue = QueueSettings {
            batch_size: self.batch_size.unwrap_or(defaults.batch_size),
            queue_capacity: self.queue_capacity.unwrap_or(defaults.queue_capacity),
            poll_interval: self
                .poll_interval_seconds
                .map_or(defaults.poll_interval, Duration::from_secs),
            max_backoff: self
                .max_backoff_seconds
                .map_or(defaults.max_backoff, Duration::from_secs),
            initial_backoff: defaults.initial_backoff,
        };
        if !(1..=1_000).contains(&queue.batch_size) {
            return Err(invalid("export.batch_size", "must be between 1 and 1000"));
        }
        if !(queue.batch_size..=100_000).contains(&queue.queue_capacity) {
            return Err(invalid(
                "export.queue_capacity",
                "must be at least batch_size and at most 100000",
            ));
        }
        if queue.poll_interval.is_zero() || queue.poll_interval > Duration::from_secs(3600) {
            return Err(invalid("export.poll_interval_seconds", "must be 1 to 3600"));
        }
        if queue.max_backoff < Duration::from_secs(1)
            || queue.max_backoff > Duration::from_secs(86_400)
        {
            return Err(invalid("export.max_backoff_seconds", "must be 1 to 86400"));
        }
        let timeout = |seconds: Option<u64>, key| match seconds.unwrap_or(10) {
            s @ 1..=300 => Ok(Duration::from_secs(s)),
            _ => Err(invalid(key, "must be 1 to 300")),
        };
        let mut settings = ExportSettings::default();
        if let Some(webhook) = self.webhook {
            let ca_pem = match &webhook.ca_file {
                Some(path) => Some(read_ca("export.webhook.ca_file", path)?),
                None => None,
            };
            let webhook = WebhookSettings {
                url: webhook.url,
                ca_pem,
                authorization: webhook.authorization,
                timeout: timeout(webhook.timeout_seconds, "export.webhook.timeout_seconds")?,
            };
            // Parse now, so that a bad URL is a configuration error (exit 2), not a runtime one.
            super::webhook::Webhook::new(&webhook)
                .map_err(|e| invalid("export.webhook", e.to_string()))?;
            settings.webhook = Some((webhook, queue.clone()));
        }
        if let Some(syslog) = self.syslog {
            if syslog.ca_file.is_some() && !syslog.tls {
                return Err(invalid(
                    "export.syslog.ca_file",
                    "is only used with tls = true",
                ));
            }
            let facility = match syslog.facility {
                None => 16,
                Some(Facility::Number(number)) if number <= 23 => number,
                Some(Facility::Number(_)) => {
                    return Err(invalid("export.syslog.facility", "must be 0 to 23"));
                }
                Some(Facility::Name(name)) => FACILITIES
                    .iter()
                    .position(|f| *f == name)
                    .and_then(|p| u8::try_from(p).ok())
                    .ok_or_else(|| {
                        invalid(
                            "export.syslog.facility",
                            format!("unknown facility `{name}`"),
                        )
                    })?,
            };
            let tls = if syslog.tls {
                Some(match &syslog.ca_file {
                    Some(path) => Some(read_ca("export.syslog.ca_file", path)?),
                    None => None,
                })
            } else {
                None
            };
            let max_message_bytes = syslog.max_message_bytes.unwrap_or(65_536);
            if !(480..=1_048_576).contains(&max_message_bytes) {
                return Err(invalid(
                    "export.syslog.max_message_bytes",
                    "must be 480 to 1048576",
                ));
            }
            let syslog = SyslogSettings {
                address: syslog.address,
                tls,
                facility,
                app_name: syslog.app_name.unwrap_or_else(|| "shadowai".into()),
                hostname: hostname.unwrap_or("-").to_owned(),
                max_message_bytes,
                timeout: timeout(syslog.timeout_seconds, "export.syslog.timeout_seconds")?,
            };
            super::syslog::Syslog::new(&syslog)
                .map_err(|e| invalid("export.syslog", e.to_string()))?;
            settings.syslog = Some((syslog, queue));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ExportSettings, String> {
        let file: ExportFile = toml::from_str(text).map_err(|e| e.to_string())?;
        file.validate(Some("collector-1"))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_section_is_read() {
        let settings = parse(
            "batch_size = 10\nqueue_capacity = 50\n[webhook]\nurl = \"https://siem.example.com:8443/in?x=1\"\n\
             authorization = \"Bearer t\"\n[syslog]\naddress = \"siem.example.com:6514\"\ntls = true\nfacility = \"local3\"\n",
        )
        .unwrap();
        let (webhook, queue) = settings.webhook.unwrap();
        assert_eq!(webhook.url, "https://siem.example.com:8443/in?x=1");
        assert_eq!((queue.batch_size, queue.queue_capacity), (10, 50));
        let (syslog, _) = settings.syslog.unwrap();
        assert_eq!((syslog.facility, syslog.tls.is_some()), (19, true));
        assert_eq!(syslog.hostname, "collector-1");
    }

    #[test]
    fn mistakes_say_what_to_fix() {
        for (text, expected) in [
            ("[webhook]\nurl = \"http://siem/in\"\n", "https://"),
            (
                "[webhook]\nurl = \"https://siem/in\"\nretries = 3\n",
                "unknown field `retries`",
            ),
            ("[syslog]\naddress = \"siem\"\n", "host:port"),
            (
                "[syslog]\naddress = \"siem:514\"\nfacility = \"local9\"\n",
                "unknown facility",
            ),
            (
                "[syslog]\naddress = \"siem:514\"\nca_file = \"/x\"\n",
                "tls = true",
            ),
            ("batch_size = 0\n", "between 1 and 1000"),
            (
                "batch_size = 100\nqueue_capacity = 10\n",
                "at least batch_size",
            ),
            (
                "[webhook]\nurl = \"https://s/\"\nca_file = \"/nonexistent/ca.pem\"\n",
                "cannot read",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
