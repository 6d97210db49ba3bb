//! The agent's configuration file (TOML, unknown keys are errors), turned once into a validated
//! [`Config`]. Only `main`/the commands read files and the environment; everything else gets a
//! `Config`.
//!
//! ```toml
//! collector = "https://collector.example.com:7443"   # where to report (required for `run`)
//! state_dir = "/var/lib/shadowai"                     # identity and spool (default per OS)
//! enrollment_token_file = "/etc/shadowai/enrollment-token"  # read at first start when not enrolled
//! # enrollment_token = "sa1...."                 # or the token itself (not both)
//!
//! [process]
//! enabled = true
//! interval_seconds = 5          # 1..=3600
//! events = true                 # Linux proc connector (root) for short-lived processes
//!
//! [inventory]
//! enabled = true                # agent/MCP configs, apps, extensions, model files
//! interval_seconds = 3600       # full rescan, 60..=86400
//! watch = true                  # rescan when a watched config file changes
//!
//! [network]                   # DNS / TLS SNI / QUIC SNI sensor (needs CAP_NET_RAW)
//! enabled = true                # default: on for Linux (the only platform with live capture)
//! interfaces = []               # [] = every interface that is up, and those that appear later
//! window_seconds = 600          # 60..=86400: one report per name and process per window
//!
//! [transport]
//! batch_max_observations = 500  # 1..=1000
//! flush_interval_ms = 2000      # 100..=60000
//! heartbeat_interval_seconds = 60
//! spool_max_mb = 64            # 1..=4096: the on-disk spool's bound; beyond, the oldest are dropped and counted
//!
//! [budget]                    # the agent's own CPU and memory (see crate::budget)
//! enabled = true                # degrade when over budget (it always measures)
//! cpu_percent = 2.0             # 0.1..=100, percent of one core averaged over the window
//! rss_mb = 50                   # 1..=65536, resident memory
//! window_seconds = 60           # 10..=3600, averaging window and least time between two steps
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The network sensor is on by default where the agent can capture live (Linux); on other
/// platforms turning it on only reports the blind spot that capture is unsupported.
const NETWORK_DEFAULT: bool = cfg!(target_os = "linux");

use serde::Deserialize;

/// The default configuration file of this OS.
pub fn default_config_path() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/shadowai/agent.toml")
    } else if cfg!(windows) {
        PathBuf::from(r"C:\ProgramData\shadowai\agent.toml")
    } else {
        PathBuf::from("/etc/shadowai/agent.toml")
    }
}

/// The default state directory of this OS.
pub fn default_state_dir() -> PathBuf {
    if cfg!(target_os = "macos") {
        PathBuf::from("/Library/Application Support/shadowai/state")
    } else if cfg!(windows) {
        PathBuf::from(r"C:\ProgramData\shadowai\state")
    } else {
        PathBuf::from("/var/lib/shadowai")
    }
}

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
    #[error("{path}: {key} {problem}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    collector: Option<String>,
    state_dir: Option<PathBuf>,
    enrollment_token_file: Option<PathBuf>,
    enrollment_token: Option<String>,
    #[serde(default)]
    process: ProcessFile,
    #[serde(default)]
    inventory: InventoryFile,
    #[serde(default)]
    network: NetworkFile,
    #[serde(default)]
    transport: TransportFile,
    #[serde(default)]
    budget: BudgetFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetFile {
    enabled: Option<bool>,
    cpu_percent: Option<f64>,
    rss_mb: Option<u64>,
    window_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkFile {
    enabled: Option<bool>,
    interfaces: Option<Vec<String>>,
    window_seconds: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessFile {
    enabled: Option<bool>,
    interval_seconds: Option<u64>,
    events: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    enabled: Option<bool>,
    interval_seconds: Option<u64>,
    watch: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransportFile {
    batch_max_observations: Option<usize>,
    flush_interval_ms: Option<u64>,
    heartbeat_interval_seconds: Option<u64>,
    spool_max_mb: Option<u64>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the collector is, `https://host:port`, when configured.
    pub collector: Option<CollectorUrl>,
    /// Identity and spool directory.
    pub state_dir: PathBuf,
    /// Token file an MDM placed, used at first start.
    pub enrollment_token_file: Option<PathBuf>,
    /// The token itself, when an MDM writes it into the configuration (never with a file).
    pub enrollment_token: Option<String>,
    /// Process sensor on/off.
    pub process_enabled: bool,
    /// Process scan interval.
    pub process_interval: Duration,
    /// Kernel process events (Linux proc connector) on/off.
    pub process_events: bool,
    /// File inventory on/off.
    pub inventory_enabled: bool,
    /// Full inventory rescan interval.
    pub inventory_interval: Duration,
    /// Rescan the inventory when a watched config file changes.
    pub inventory_watch: bool,
    /// Network sensor on/off.
    pub network_enabled: bool,
    /// Interfaces the network sensor captures on; empty means all.
    pub network_interfaces: Vec<String>,
    /// The network sensor's de-duplication window.
    pub network_window: Duration,
    /// Most observations per report.
    pub batch_max_observations: usize,
    /// Longest a detection waits before it is sent.
    pub flush_interval: Duration,
    /// Heartbeat interval (the collector may ask for another within bounds).
    pub heartbeat_interval: Duration,
    /// Bytes the spool may take on disk; beyond, the oldest observations are dropped and counted.
    pub spool_max_bytes: u64,
    /// The agent's own resource budget.
    pub budget: crate::budget::BudgetConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            collector: None,
            state_dir: default_state_dir(),
            enrollment_token_file: None,
            enrollment_token: None,
            process_enabled: true,
            process_interval: Duration::from_secs(5),
            process_events: true,
            inventory_enabled: true,
            inventory_interval: Duration::from_secs(3600),
            inventory_watch: true,
            network_enabled: NETWORK_DEFAULT,
            network_interfaces: Vec::new(),
            network_window: Duration::from_secs(600),
            batch_max_observations: 500,
            flush_interval: Duration::from_secs(2),
            heartbeat_interval: Duration::from_secs(60),
            spool_max_bytes: crate::spool::DEFAULT_MAX_BYTES,
            budget: crate::budget::BudgetConfig::default(),
        }
    }
}

/// A collector address: `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorUrl {
    /// Host name or IP address (brackets removed for IPv6).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl CollectorUrl {
    /// Parses `https://host[:port]` (port 7443 when absent).
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .trim()
            .strip_prefix("https://")
            .ok_or_else(|| format!("`{text}` must start with https://"))?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(format!("`{text}` must be https://HOST[:PORT] with no path"));
        }
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{text}`: unclosed [ in IPv6 address"))?;
            (host.to_owned(), after.strip_prefix(':'))
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (rest.to_owned(), None),
            }
        };
        let port = match port {
            Some(port) => port.parse().map_err(|_| format!("`{text}`: bad port"))?,
            None => 7443,
        };
        if host.is_empty() {
            return Err(format!("`{text}`: no host"));
        }
        Ok(Self { host, port })
    }
}

impl std::fmt::Display for CollectorUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "https://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "https://{}:{}", self.host, self.port)
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates configuration text; `path` is only for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string(),
        })?;
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid {
            path: path.into(),
            key,
            problem,
        };
        let defaults = Config::default();
        let collector = file
            .collector
            .as_deref()
            .map(CollectorUrl::parse)
            .transpose()
            .map_err(|e| invalid("collector", e))?;
        let in_range = |key: &'static str, value: u64, low: u64, high: u64| {
            if (low..=high).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(
                    key,
                    format!("must be between {low} and {high}, got {value}"),
                ))
            }
        };
        let process_interval = match file.process.interval_seconds {
            Some(v) => Duration::from_secs(in_range("process.interval_seconds", v, 1, 3600)?),
            None => defaults.process_interval,
        };
        let inventory_interval = match file.inventory.interval_seconds {
            Some(v) => Duration::from_secs(in_range("inventory.interval_seconds", v, 60, 86_400)?),
            None => defaults.inventory_interval,
        };
        let network_window = match file.network.window_seconds {
            Some(v) => Duration::from_secs(in_range("network.window_seconds", v, 60, 86_400)?),
            None => defaults.network_window,
        };
        let network_interfaces = file.network.interfaces.unwrap_or_default();
        if network_interfaces.len() > 64 {
            return Err(invalid(
                "network.interfaces",
                format!("lists {} interfaces; at most 64", network_interfaces.len()),
            ));
        }
        for name in &network_interfaces {
            // Linux interface names: 1..=15 bytes, no `/`, no whitespace.
            if name.is_empty()
                || name.len() > 15
                || name.contains('/')
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(invalid(
                    "network.interfaces",
                    format!(
                        "{name:?} is not an interface name (1 to 15 characters, no `/` or spaces)"
                    ),
                ));
            }
        }
        let batch_max_observations = match file.transport.batch_max_observations {
            Some(v) => in_range("transport.batch_max_observations", v as u64, 1, 1000)? as usize,
            None => defaults.batch_max_observations,
        };
        let flush_interval = match file.transport.flush_interval_ms {
            Some(v) => {
                Duration::from_millis(in_range("transport.flush_interval_ms", v, 100, 60_000)?)
            }
            None => defaults.flush_interval,
        };
        let heartbeat_interval = match file.transport.heartbeat_interval_seconds {
            Some(v) => Duration::from_secs(in_range(
                "transport.heartbeat_interval_seconds",
                v,
                5,
                3600,
            )?),
            None => defaults.heartbeat_interval,
        };
        let spool_max_bytes = match file.transport.spool_max_mb {
            Some(v) => in_range("transport.spool_max_mb", v, 1, 4096)? * 1024 * 1024,
            None => defaults.spool_max_bytes,
        };
        if file.enrollment_token.is_some() && file.enrollment_token_file.is_some() {
            return Err(invalid(
                "enrollment_token",
                "and enrollment_token_file are both set: keep one".to_owned(),
            ));
        }
        if let Some(token) = &file.enrollment_token
            && (token.trim().is_empty() || token.len() > 4096)
        {
            return Err(invalid(
                "enrollment_token",
                "must be the token `shadowai-collector token create` printed".to_owned(),
            ));
        }
        let mut budget = defaults.budget.clone();
        budget.enabled = file.budget.enabled.unwrap_or(budget.enabled);
        if let Some(cpu) = file.budget.cpu_percent {
            if !(0.1..=100.0).contains(&cpu) {
                return Err(invalid(
                    "budget.cpu_percent",
                    format!("must be between 0.1 and 100, got {cpu}"),
                ));
            }
            budget.cpu_percent = cpu;
        }
        if let Some(v) = file.budget.rss_mb {
            budget.rss_bytes = in_range("budget.rss_mb", v, 1, 65_536)? * 1024 * 1024;
        }
        if let Some(v) = file.budget.window_seconds {
            budget.window = Duration::from_secs(in_range("budget.window_seconds", v, 10, 3600)?);
        }
        Ok(Self {
            collector,
            state_dir: file.state_dir.unwrap_or(defaults.state_dir),
            enrollment_token_file: file.enrollment_token_file,
            enrollment_token: file.enrollment_token,
            process_enabled: file.process.enabled.unwrap_or(true),
            process_interval,
            process_events: file.process.events.unwrap_or(true),
            inventory_enabled: file.inventory.enabled.unwrap_or(true),
            inventory_interval,
            inventory_watch: file.inventory.watch.unwrap_or(true),
            network_enabled: file.network.enabled.unwrap_or(NETWORK_DEFAULT),
            network_interfaces,
            network_window,
            batch_max_observations,
            flush_interval,
            heartbeat_interval,
            spool_max_bytes,
            budget,
        })
    }
}

impl Config {
    /// The host sensor's options (processes, events, inventory of the live system).
    pub fn host_options(&self) -> crate::host::HostOptions {
        crate::host::HostOptions {
            process_interval: self.process_interval,
            process_events: self.process_events,
            inventory: self.inventory_enabled,
            inventory_interval: self.inventory_interval,
            inventory_watch: self.inventory_watch,
            root: PathBuf::from("/"),
            throttle: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(Path::new("agent.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn valid_file_is_read() {
        let config = parse(
            "collector = \"https://c.example:9443\"\nstate_dir = \"/tmp/s\"\n[process]\ninterval_seconds = 2\n",
        )
        .unwrap();
        assert_eq!(
            config.collector,
            Some(CollectorUrl {
                host: "c.example".into(),
                port: 9443
            })
        );
        assert_eq!(config.process_interval, Duration::from_secs(2));
        assert_eq!(config.state_dir, PathBuf::from("/tmp/s"));
        assert!(config.process_events && config.inventory_enabled && config.inventory_watch);
        let config = parse(
            "[process]\nevents = false\n[inventory]\ninterval_seconds = 600\nwatch = false\n",
        )
        .unwrap();
        assert!(!config.process_events && !config.inventory_watch);
        assert_eq!(config.inventory_interval, Duration::from_secs(600));
        assert!(parse("[inventory]\ninterval_seconds = 1").is_err());
    }

    #[test]
    fn mistakes_name_the_key() {
        let error = parse("colector = \"https://x\"").unwrap_err();
        assert!(error.contains("unknown field `colector`"), "{error}");
        let error = parse("[process]\ninterval_seconds = 0").unwrap_err();
        assert!(
            error.contains("process.interval_seconds must be between 1 and 3600"),
            "{error}"
        );
        let error = parse("collector = \"http://x\"").unwrap_err();
        assert!(error.contains("must start with https://"), "{error}");
    }

    #[test]
    fn network_section() {
        let config = parse(
            "[network]\nenabled = true\ninterfaces = [\"eth0\", \"wg0\"]\nwindow_seconds = 120\n",
        )
        .unwrap();
        assert!(config.network_enabled);
        assert_eq!(config.network_interfaces, ["eth0", "wg0"]);
        assert_eq!(config.network_window, Duration::from_secs(120));
        let defaults = parse("").unwrap();
        assert_eq!(defaults.network_enabled, cfg!(target_os = "linux"));
        assert!(defaults.network_interfaces.is_empty());
        let error = parse("[network]\ninterfaces = [\"../etc\"]").unwrap_err();
        assert!(error.contains("network.interfaces"), "{error}");
        let error = parse("[network]\nwindow_seconds = 5").unwrap_err();
        assert!(
            error.contains("network.window_seconds must be between 60 and 86400"),
            "{error}"
        );
        let error = parse("[network]\npromiscuous = true").unwrap_err();
        assert!(error.contains("unknown field `promiscuous`"), "{error}");
    }

    #[test]
    fn enrollment_token_from_a_file_or_the_configuration_not_both() {
        let config = parse("enrollment_token = \"sa1.a.b.c\"").unwrap();
        assert_eq!(config.enrollment_token.as_deref(), Some("sa1.a.b.c"));
        let error =
            parse("enrollment_token = \"sa1.a.b.c\"\nenrollment_token_file = \"/t\"").unwrap_err();
        assert!(
            error.contains("enrollment_token and enrollment_token_file are both set"),
            "{error}"
        );
        assert!(parse("enrollment_token = \" \"").is_err());
    }

    #[test]
    fn budget_section() {
        let defaults = parse("").unwrap().budget;
        assert!(defaults.enabled);
        assert_eq!((defaults.cpu_percent, defaults.rss_bytes), (2.0, 50 << 20));
        assert_eq!(defaults.window, Duration::from_secs(60));
        let budget = parse(
            "[budget]\nenabled = false\ncpu_percent = 0.5\nrss_mb = 30\nwindow_seconds = 10\n",
        )
        .unwrap()
        .budget;
        assert!(!budget.enabled);
        assert_eq!((budget.cpu_percent, budget.rss_bytes), (0.5, 30 << 20));
        assert_eq!(budget.window, Duration::from_secs(10));
        let error = parse("[budget]\ncpu_percent = 0").unwrap_err();
        assert!(
            error.contains("budget.cpu_percent must be between 0.1 and 100, got 0"),
            "{error}"
        );
        let error = parse("[budget]\nwindow_seconds = 1").unwrap_err();
        assert!(error.contains("budget.window_seconds"), "{error}");
        let error = parse("[budget]\nmemory_mb = 1").unwrap_err();
        assert!(error.contains("unknown field `memory_mb`"), "{error}");
    }

    #[test]
    fn collector_urls() {
        let url = CollectorUrl::parse("https://[::1]:7000/").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 7000));
        assert_eq!(url.to_string(), "https://[::1]:7000");
        assert_eq!(CollectorUrl::parse("https://h").unwrap().port, 7443);
        assert!(CollectorUrl::parse("https://u:p@h:1").is_err());
        assert!(CollectorUrl::parse("https://h:99999").is_err());
    }
}
