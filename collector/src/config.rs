//! Collector configuration: a TOML file (unknown keys are errors) plus command-line overrides,
//! validated once into [`Settings`].
//!
//! ```toml
//! data_dir = "/var/lib/shadowai-collector"     # CA, keys; SQLite database by default
//! database_url = "postgres://shadowai@db/shadowai"  # default sqlite://<data_dir>/shadowai.db
//! grpc_listen = "0.0.0.0:7443"                 # agents (mTLS)
//! http_listen = "127.0.0.1:8080"               # dashboard and API
//! server_names = ["collector.example.com"]     # names agents use to reach this collector
//! heartbeat_interval_seconds = 60
//! secure_cookies = true                        # set when the dashboard is served over HTTPS
//! observation_retention_days = 90              # raw observations expire after this (findings, alerts, chain roots stay)
//! retention_interval_seconds = 3600            # how often retention runs
//! chain_root_interval_seconds = 300            # how often an evidence chain root is committed
//!
//! [ingest_limits]                              # load shedding (defaults shown, sized for 2 cores)
//! agent_observations_per_second = 2000         # per agent, sustained
//! agent_observation_burst = 20000              # per agent, after a quiet period (>= 1000)
//! max_concurrent_ingest = 16                   # report transactions at once, collector-wide
//! handshakes_per_second = 200                  # new agent TLS connections, collector-wide
//! handshake_burst = 50
//!
//! [http]                                       # HTTPS for the dashboard (default: plain HTTP)
//! tls_cert = "/etc/shadowai/dashboard.crt"     # PEM chain, leaf first; with tls_key
//! tls_key = "/etc/shadowai/dashboard.key"
//! # tls = "ca"                                 # or: a certificate from the collector CA
//!
//! [metrics]
//! token_file = "/etc/shadowai/metrics-token"   # /metrics wants `Authorization: Bearer <token>`
//!
//! [export]                                     # SIEM export (OCSF Detection Finding events)
//! batch_size = 100                             # events per request or write
//! queue_capacity = 1000                        # events held in memory per sink (retry queue)
//! max_backoff_seconds = 300                    # retry delays: full jitter up to this cap
//! poll_interval_seconds = 5                    # how often an idle sink looks for new alerts
//! [export.webhook]
//! url = "https://siem.example.com/ingest"      # POST of a JSON array of events
//! ca_file = "/etc/shadowai/siem-ca.pem"        # optional: trust only this CA (default: public roots)
//! authorization = "Bearer ..."                 # optional Authorization header
//! timeout_seconds = 10
//! [export.syslog]
//! address = "siem.example.com:6514"            # RFC 5424 over TCP, octet-counting framing
//! tls = true                                   # RFC 5425; ca_file as for the webhook
//! facility = "local0"                          # or a number 0..=23
//! max_message_bytes = 65536
//!
//! [[reports.schedule]]                         # scheduled leadership reports (UTC)
//! name = "monthly"
//! cron = "0 0 7 1 * *"                         # sec min hour day month weekday: 07:00 on the 1st
//! since = "30d"                                # period before the run time
//! formats = ["html", "pdf", "json"]            # csv writes a directory of tables
//! output_dir = "/var/lib/shadowai-collector/reports"
//! group = "engineering"                        # optional
//! pseudonymize = false
//! email_to = ["ciso@example.com"]              # optional: mail the files (needs [reports.smtp])
//! [reports.smtp]
//! host = "smtp.example.com"
//! tls = "starttls"                             # none | starttls | tls; port 25 / 587 / 465
//! username = "shadowai"                        # optional, with password_file (not with tls none)
//! password_file = "/etc/shadowai/smtp-password"
//! from = "shadowai <reports@example.com>"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::dashboard_tls::DashboardTls;
use crate::ingest::limits::LimitsConfig;

/// A configuration problem, with what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    grpc_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
    server_names: Option<Vec<String>>,
    heartbeat_interval_seconds: Option<u32>,
    secure_cookies: Option<bool>,
    observation_retention_days: Option<u32>,
    retention_interval_seconds: Option<u32>,
    chain_root_interval_seconds: Option<u32>,
    ingest_limits: Option<IngestLimitsFile>,
    #[serde(default)]
    http: HttpFile,
    #[serde(default)]
    metrics: MetricsFile,
    export: Option<crate::export::config::ExportFile>,
    reports: Option<crate::report::schedule::ReportsFile>,
}

/// `[ingest_limits]`: every key optional, defaults from [`LimitsConfig::default`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IngestLimitsFile {
    agent_observations_per_second: Option<u32>,
    agent_observation_burst: Option<u32>,
    max_concurrent_ingest: Option<u32>,
    handshakes_per_second: Option<u32>,
    handshake_burst: Option<u32>,
}

impl IngestLimitsFile {
    fn into_config(self) -> Result<LimitsConfig, ConfigError> {
        let default = LimitsConfig::default();
        let config = LimitsConfig {
            agent_observations_per_second: self
                .agent_observations_per_second
                .unwrap_or(default.agent_observations_per_second),
            agent_observation_burst: self
                .agent_observation_burst
                .unwrap_or(default.agent_observation_burst),
            max_concurrent_ingest: self
                .max_concurrent_ingest
                .unwrap_or(default.max_concurrent_ingest),
            handshakes_per_second: self
                .handshakes_per_second
                .unwrap_or(default.handshakes_per_second),
            handshake_burst: self.handshake_burst.unwrap_or(default.handshake_burst),
        };
        config
            .validate()
            .map_err(|(key, problem)| ConfigError::Invalid { key, problem })?;
        Ok(config)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    token_file: Option<PathBuf>,
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Configuration file (TOML).
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory: CA, keys and the default SQLite database [default: ./shadowai-data].
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite in the data directory].
    /// Also from the environment variable SHADOWAI_DATABASE_URL (containers: from a secret).
    #[arg(
        long = "database",
        value_name = "URL",
        global = true,
        env = "SHADOWAI_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
}

/// Listener overrides for the commands that serve.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ListenOverrides {
    /// Address for agents (gRPC over mTLS) [default: 0.0.0.0:7443; quickstart 127.0.0.1:7443].
    #[arg(long, value_name = "ADDR")]
    pub grpc_listen: Option<SocketAddr>,
    /// Address for the dashboard and API (HTTP) [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Database URL.
    pub database_url: String,
    /// Agent listener.
    pub grpc_listen: SocketAddr,
    /// Dashboard listener.
    pub http_listen: SocketAddr,
    /// Names in the server certificate.
    pub server_names: Vec<String>,
    /// Heartbeat interval told to agents.
    pub heartbeat_interval_seconds: u32,
    /// Secure flag on cookies.
    pub secure_cookies: bool,
    /// Raw observations expire after this many days.
    pub observation_retention_days: u32,
    /// How often retention runs.
    pub retention_interval_seconds: u32,
    /// How often an evidence chain root is committed.
    pub chain_root_interval_seconds: u32,
    /// Load shedding: per-agent rate, concurrent ingest, handshake rate.
    pub ingest_limits: LimitsConfig,
    /// HTTPS for the dashboard and API, when configured.
    pub dashboard_tls: Option<DashboardTls>,
    /// A file holding the bearer token `/metrics` accepts (besides API keys).
    pub metrics_token_file: Option<PathBuf>,
    /// SIEM export sinks (none unless configured).
    pub export: crate::export::ExportSettings,
    /// Scheduled reports (none unless configured).
    pub report_schedules: Vec<crate::report::schedule::Schedule>,
}

impl Settings {
    /// Reads the file named in `overrides` (if any) and applies the overrides.
    pub fn load(
        overrides: &Overrides,
        listen: &ListenOverrides,
        default_grpc: SocketAddr,
    ) -> Result<Self, ConfigError> {
        let file = match &overrides.config {
            Some(path) => read(path)?,
            None => File::default(),
        };
        let data_dir = overrides
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("shadowai-data"));
        let database_url = overrides
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("shadowai.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                key: "database_url",
                problem: "must start with sqlite:// or postgres://".into(),
            });
        }
        let heartbeat_interval_seconds = file.heartbeat_interval_seconds.unwrap_or(60);
        if !(5..=3600).contains(&heartbeat_interval_seconds) {
            return Err(ConfigError::Invalid {
                key: "heartbeat_interval_seconds",
                problem: "must be between 5 and 3600".into(),
            });
        }
        let observation_retention_days = bounded(
            "observation_retention_days",
            file.observation_retention_days,
            90,
            1..=36_500,
        )?;
        let retention_interval_seconds = bounded(
            "retention_interval_seconds",
            file.retention_interval_seconds,
            3600,
            60..=86_400,
        )?;
        let chain_root_interval_seconds = bounded(
            "chain_root_interval_seconds",
            file.chain_root_interval_seconds,
            300,
            5..=86_400,
        )?;
        let mut server_names = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ];
        if let Some(host) = hostname() {
            server_names.push(host);
        }
        for name in file.server_names.unwrap_or_default() {
            if name.is_empty() || name.len() > 253 {
                return Err(ConfigError::Invalid {
                    key: "server_names",
                    problem: format!("bad name `{name}`"),
                });
            }
            if !server_names.contains(&name) {
                server_names.push(name);
            }
        }
        let ingest_limits = file.ingest_limits.unwrap_or_default().into_config()?;
        let dashboard_tls = dashboard_tls(&file.http)?;
        let export = match file.export {
            Some(export) => export.validate(hostname().as_deref())?,
            None => crate::export::ExportSettings::default(),
        };
        let report_schedules = match file.reports {
            Some(reports) => reports.validate()?,
            None => Vec::new(),
        };
        Ok(Self {
            export,
            report_schedules,
            data_dir,
            database_url,
            grpc_listen: listen
                .grpc_listen
                .or(file.grpc_listen)
                .unwrap_or(default_grpc),
            http_listen: listen
                .http_listen
                .or(file.http_listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            server_names,
            heartbeat_interval_seconds,
            // Served over HTTPS, cookies are Secure unless the file says otherwise.
            secure_cookies: file.secure_cookies.unwrap_or(dashboard_tls.is_some()),
            dashboard_tls,
            metrics_token_file: file.metrics.token_file,
            observation_retention_days,
            retention_interval_seconds,
            chain_root_interval_seconds,
            ingest_limits,
        })
    }
}

/// `value` (or `default`) when inside `range`.
fn bounded(
    key: &'static str,
    value: Option<u32>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, ConfigError> {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            key,
            problem: format!("must be between {} and {}", range.start(), range.end()),
        })
    }
}

fn dashboard_tls(http: &HttpFile) -> Result<Option<DashboardTls>, ConfigError> {
    match (&http.tls, &http.tls_cert, &http.tls_key) {
        (None, None, None) => Ok(None),
        (None, Some(cert), Some(key)) => Ok(Some(DashboardTls::Files {
            cert: cert.clone(),
            key: key.clone(),
        })),
        (None, _, _) => Err(ConfigError::Invalid {
            key: "http.tls_cert",
            problem: "tls_cert and tls_key go together: set both (PEM files) or neither".into(),
        }),
        (Some(mode), None, None) if mode == "ca" => Ok(Some(DashboardTls::CollectorCa)),
        (Some(_), None, None) => Err(ConfigError::Invalid {
            key: "http.tls",
            problem: "the only value is \"ca\" (a certificate from the collector CA)".into(),
        }),
        (Some(_), _, _) => Err(ConfigError::Invalid {
            key: "http.tls",
            problem: "use either tls = \"ca\" or tls_cert and tls_key, not both".into(),
        }),
    }
}

fn read(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        message: e.to_string(),
    })
}

pub(crate) fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let is_dns = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    is_dns.then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "databse_url = \"x\"").unwrap();
        let overrides = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let grpc = SocketAddr::from(([0, 0, 0, 0], 7443));
        let error = Settings::load(&overrides, &ListenOverrides::default(), grpc).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `databse_url`"),
            "{error}"
        );
        std::fs::write(&path, "database_url = \"mysql://x\"").unwrap();
        let error = Settings::load(&overrides, &ListenOverrides::default(), grpc).unwrap_err();
        assert!(
            error.to_string().contains("sqlite:// or postgres://"),
            "{error}"
        );
        std::fs::write(&path, "observation_retention_days = 0").unwrap();
        let error = Settings::load(&overrides, &ListenOverrides::default(), grpc).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("observation_retention_days: must be between 1"),
            "{error}"
        );
        std::fs::write(
            &path,
            "observation_retention_days = 30\nchain_root_interval_seconds = 60",
        )
        .unwrap();
        let settings = Settings::load(&overrides, &ListenOverrides::default(), grpc).unwrap();
        assert_eq!(settings.observation_retention_days, 30);
        assert_eq!(settings.chain_root_interval_seconds, 60);
    }

    #[test]
    fn ingest_limits_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let overrides = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let grpc = SocketAddr::from(([0, 0, 0, 0], 7443));
        std::fs::write(
            &path,
            "[ingest_limits]\nhandshakes_per_second = 20\nhandshake_burst = 1\n",
        )
        .unwrap();
        let settings = Settings::load(&overrides, &ListenOverrides::default(), grpc).unwrap();
        assert_eq!(settings.ingest_limits.handshakes_per_second, 20);
        assert_eq!(settings.ingest_limits.handshake_burst, 1);
        assert_eq!(
            settings.ingest_limits.max_concurrent_ingest,
            LimitsConfig::default().max_concurrent_ingest
        );
        std::fs::write(&path, "[ingest_limits]\nagent_observation_burst = 5\n").unwrap();
        let error = Settings::load(&overrides, &ListenOverrides::default(), grpc).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("ingest_limits.agent_observation_burst"),
            "{error}"
        );
        std::fs::write(&path, "[ingest_limits]\nmax_concurent_ingest = 5\n").unwrap();
        let error = Settings::load(&overrides, &ListenOverrides::default(), grpc).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    #[test]
    fn dashboard_tls_needs_both_files_or_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        let overrides = Overrides {
            config: Some(path.clone()),
            ..Default::default()
        };
        let grpc = SocketAddr::from(([0, 0, 0, 0], 7443));
        let load = |text: &str| {
            std::fs::write(&path, text).unwrap();
            Settings::load(&overrides, &ListenOverrides::default(), grpc)
        };
        let settings = load("[http]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n").unwrap();
        assert_eq!(
            settings.dashboard_tls,
            Some(DashboardTls::Files {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            })
        );
        assert!(settings.secure_cookies, "HTTPS implies Secure cookies");
        let settings = load("secure_cookies = false\n[http]\ntls = \"ca\"\n").unwrap();
        assert_eq!(settings.dashboard_tls, Some(DashboardTls::CollectorCa));
        assert!(!settings.secure_cookies);
        let error = load("[http]\ntls_cert = \"/c.pem\"\n").unwrap_err();
        assert!(error.to_string().contains("go together"), "{error}");
        let error = load("[http]\ntls = \"self\"\n").unwrap_err();
        assert!(error.to_string().contains("\"ca\""), "{error}");
        let error = load("[metrics]\ntoken = \"x\"\n").unwrap_err();
        assert!(
            error.to_string().contains("unknown field `token`"),
            "{error}"
        );
        let settings = load("[metrics]\ntoken_file = \"/t\"\n").unwrap();
        assert_eq!(settings.metrics_token_file, Some(PathBuf::from("/t")));
        assert_eq!(settings.dashboard_tls, None);
    }

    #[test]
    fn defaults_put_sqlite_in_the_data_dir() {
        let overrides = Overrides {
            data_dir: Some("/srv/d".into()),
            ..Default::default()
        };
        let grpc = SocketAddr::from(([0, 0, 0, 0], 7443));
        let settings = Settings::load(&overrides, &ListenOverrides::default(), grpc).unwrap();
        assert_eq!(settings.database_url, "sqlite:///srv/d/shadowai.db");
        assert_eq!(settings.observation_retention_days, 90);
        assert_eq!(settings.chain_root_interval_seconds, 300);
        assert!(settings.server_names.contains(&"localhost".to_owned()));
    }
}
