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
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    #[arg(long = "database", value_name = "URL", global = true)]
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
        Ok(Self {
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
            secure_cookies: file.secure_cookies.unwrap_or(false),
        })
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

fn hostname() -> Option<String> {
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
        assert!(settings.server_names.contains(&"localhost".to_owned()));
    }
}
