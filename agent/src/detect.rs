//! The agent's detection record: what every sensor produces, what `--json` prints and what is
//! sent to the collector.
//!
//! A detection is built only from a catalog match, so it always names the rule and the reason.
//! Strings that came from the endpoint (process name, exe, command line) are redacted and capped
//! when the [`ProcessRef`] is made, before a detection exists.

use serde::Serialize;
use shadowai_catalog::{DomainMatch, ProcessMatch};
use shadowai_proto::v1;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::redact::{self, MAX_EXE, MAX_NAME};

/// Which sensor saw it. Serialised in snake_case: `dns`, `tls_sni`, `quic_sni`, `process`,
/// `config`, `listener`, `app`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// A DNS query or answer.
    Dns,
    /// A TLS ClientHello over TCP.
    TlsSni,
    /// A QUIC Initial packet's ClientHello.
    QuicSni,
    /// A running process.
    Process,
    /// A configuration file.
    Config,
    /// A listening socket.
    Listener,
    /// An installed app or IDE extension.
    App,
}

impl Signal {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Dns => "dns",
            Signal::TlsSni => "tls_sni",
            Signal::QuicSni => "quic_sni",
            Signal::Process => "process",
            Signal::Config => "config",
            Signal::Listener => "listener",
            Signal::App => "app",
        }
    }
}

/// The process a detection is about or attributed to; already redacted and capped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRef {
    /// Process id.
    pub pid: u32,
    /// Parent process id (0 when unknown).
    pub parent_pid: u32,
    /// Start time, Unix ms (tells reused pids apart; 0 when unknown).
    pub started_at_ms: i64,
    /// Process name, at most 256 bytes.
    pub name: String,
    /// Executable path, at most 4 KiB (`""` when it could not be read).
    pub exe: String,
    /// Command line, secrets redacted, at most 8 KiB.
    pub cmdline: String,
    /// User name (or the numeric id when the name is unknown).
    pub user: String,
    /// Numeric user id where the platform has one.
    pub uid: Option<u32>,
    /// True when name, exe or command line were cut to fit.
    pub truncated: bool,
    /// The chain of parents, nearest first (at most [`MAX_ANCESTORS`]): for a lineage detection
    /// the agent and the shell between it and this process. Empty when not recorded.
    pub ancestors: Vec<Ancestor>,
}

/// Most ancestors a [`ProcessRef`] keeps.
pub const MAX_ANCESTORS: usize = 16;

/// One parent in a process's chain of ancestors; already redacted and capped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    /// Process id.
    pub pid: u32,
    /// Process name, at most 256 bytes.
    pub name: String,
    /// Executable path, at most 4 KiB (`""` when unreadable).
    pub exe: String,
}

impl Ancestor {
    /// Caps name and executable path.
    pub fn new(pid: u32, name: &str, exe: &str) -> Ancestor {
        Ancestor {
            pid,
            name: redact::cap(name, MAX_NAME).0.to_owned(),
            exe: redact::cap(exe, MAX_EXE).0.to_owned(),
        }
    }
}

/// Raw facts about a process, as a sensor read them.
#[derive(Debug, Clone, Copy)]
pub struct RawProcess<'a> {
    /// Process id.
    pub pid: u32,
    /// Parent process id (0 when unknown).
    pub parent_pid: u32,
    /// Start time, Unix ms.
    pub started_at_ms: i64,
    /// Process name.
    pub name: &'a str,
    /// Executable path (`""` when unreadable).
    pub exe: &'a str,
    /// Arguments, argv\[0\] first.
    pub args: &'a [String],
    /// User name (`""` when unknown).
    pub user: &'a str,
    /// Numeric user id.
    pub uid: Option<u32>,
}

impl ProcessRef {
    /// Redacts the command line and caps every string.
    pub fn from_raw(raw: &RawProcess<'_>) -> ProcessRef {
        let (name, name_cut) = redact::cap(raw.name, MAX_NAME);
        let (exe, exe_cut) = redact::cap(raw.exe, MAX_EXE);
        let (cmdline, cmdline_cut) = redact::redact_cmdline_capped(raw.args);
        let user = match (raw.user, raw.uid) {
            ("", Some(uid)) => uid.to_string(),
            (user, _) => redact::cap(user, MAX_NAME).0.to_owned(),
        };
        ProcessRef {
            pid: raw.pid,
            parent_pid: raw.parent_pid,
            started_at_ms: raw.started_at_ms,
            name: name.to_owned(),
            exe: exe.to_owned(),
            cmdline,
            user,
            uid: raw.uid,
            truncated: name_cut || exe_cut || cmdline_cut,
            ancestors: Vec::new(),
        }
    }

    /// The same process with its chain of parents, nearest first; cut to [`MAX_ANCESTORS`].
    pub fn with_ancestors(mut self, mut ancestors: Vec<Ancestor>) -> ProcessRef {
        ancestors.truncate(MAX_ANCESTORS);
        self.ancestors = ancestors;
        self
    }
}

/// One detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// UUIDv7 (time-ordered), so that redelivery to the collector is harmless.
    pub id: Uuid,
    /// When it was seen, Unix ms.
    pub ts_ms: i64,
    /// Which sensor saw it.
    pub signal: Signal,
    /// The domain, or the process or tool name.
    pub name: String,
    /// Catalog product id, e.g. `ollama.ollama`.
    pub product: String,
    /// Vendor display name.
    pub vendor: String,
    /// Catalog category, e.g. `local_model_runtime`.
    pub category: String,
    /// Risk flags, e.g. `approval_bypass`.
    pub risk: Vec<String>,
    /// `low`, `medium` or `high`.
    pub confidence: String,
    /// The catalog rule that matched.
    pub rule: String,
    /// Why it matched.
    pub reason: String,
    /// Plan the evidence reveals (e.g. `business`, a region).
    pub plan: Option<String>,
    /// Tenant the evidence reveals (e.g. the Azure OpenAI resource of `contoso.openai.azure.com`).
    pub tenant: Option<String>,
    /// The catalog version that matched.
    pub catalog_version: String,
    /// How many times it was seen in the de-duplication window (at least 1).
    pub count: u32,
    /// The process, when known.
    pub process: Option<ProcessRef>,
    /// Source address:port, for network signals.
    pub src: Option<String>,
    /// Destination address:port, for network signals.
    pub dst: Option<String>,
    /// The signal-specific evidence; its variant matches `signal`.
    pub evidence: Evidence,
}

/// What a process detection reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessEventKind {
    /// First seen since the agent started, or a new process.
    Started,
    /// Seen before with another executable, command line or verdict.
    Changed,
    /// An AI agent process spawned it (lineage detection).
    SpawnedByAgent,
}

/// The signal-specific evidence of a detection (the wire's `Observation.kind`). Every string is
/// already capped by the sensor that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// A process.
    Process {
        /// Why it is reported now.
        event: ProcessEventKind,
    },
    /// A DNS query or answer.
    Dns {
        /// Query type number (1 A, 28 AAAA, 65 HTTPS, ...).
        qtype: u16,
        /// Addresses from the answer, when seen (at most 32).
        answers: Vec<String>,
        /// The resolver address the query went to.
        resolver: String,
        /// DNS over TCP.
        tcp: bool,
    },
    /// A TLS ClientHello over TCP.
    TlsSni {
        /// ALPN protocols offered (at most 16).
        alpn: Vec<String>,
        /// The hello carries an encrypted_client_hello extension.
        ech: bool,
    },
    /// A QUIC Initial's ClientHello.
    QuicSni {
        /// QUIC version (1, or 0x6b3343cf for v2).
        version: u32,
        /// ALPN protocols offered (at most 16).
        alpn: Vec<String>,
    },
    /// A configuration file.
    Config {
        /// The file.
        path: String,
        /// The setting that matters, e.g. `permissions.defaultMode` or `mcpServers.github`.
        setting: String,
        /// Its value, secrets redacted, capped at 1 KiB.
        value: String,
        /// For MCP servers: the server name, the command or remote host, and the transport.
        mcp: Option<McpServer>,
    },
    /// A listening socket.
    Listener {
        /// Bind address.
        address: String,
        /// Port.
        port: u16,
        /// `tcp` or `udp`.
        protocol: &'static str,
        /// Bound beyond loopback.
        exposed: bool,
    },
    /// An installed app or IDE extension.
    App {
        /// Bundle id, package name or extension id.
        app_id: String,
        /// Install path.
        path: String,
        /// Installed version (`""` when unknown).
        version: String,
    },
}

/// An MCP server declared in a client's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct McpServer {
    /// The server's name in the config.
    pub name: String,
    /// The command (redacted), or the remote URL's host.
    pub target: String,
    /// `stdio`, `http` or `sse`.
    pub transport: String,
}

impl Detection {
    /// A process detection from a catalog match.
    pub fn from_process_match(
        found: &ProcessMatch<'_>,
        catalog_version: &str,
        process: ProcessRef,
        ts_ms: i64,
        event: ProcessEventKind,
    ) -> Detection {
        Detection {
            id: new_id(ts_ms),
            ts_ms,
            signal: Signal::Process,
            name: process.name.clone(),
            product: found.product.id.clone(),
            vendor: found.product.vendor.clone(),
            category: found.product.category.as_str().to_owned(),
            risk: found.risk_names().into_iter().map(str::to_owned).collect(),
            confidence: found.confidence.as_str().to_owned(),
            rule: found.rule.to_owned(),
            reason: found.reason.clone(),
            plan: None,
            tenant: None,
            catalog_version: catalog_version.to_owned(),
            count: 1,
            process: Some(process),
            src: None,
            dst: None,
            evidence: Evidence::Process { event },
        }
    }

    /// A detection of a catalog product, for sensors that explain their own match (config files,
    /// listeners, apps): no plan, tenant, process or addresses, count 1, confidence `high`; the
    /// caller sets name, rule, reason and risk. The signal follows from `evidence`.
    pub fn of_product(
        product: &shadowai_catalog::Product,
        catalog_version: &str,
        ts_ms: i64,
        evidence: Evidence,
    ) -> Detection {
        Detection {
            id: new_id(ts_ms),
            ts_ms,
            signal: evidence.signal(),
            name: product.name.clone(),
            product: product.id.clone(),
            vendor: product.vendor.clone(),
            category: product.category.as_str().to_owned(),
            risk: Vec::new(),
            confidence: "high".to_owned(),
            rule: String::new(),
            reason: String::new(),
            plan: None,
            tenant: None,
            catalog_version: catalog_version.to_owned(),
            count: 1,
            process: None,
            src: None,
            dst: None,
            evidence,
        }
    }

    /// A network detection (DNS, TLS or QUIC SNI) from a catalog match. `name` is the name as
    /// seen, capped at 253 bytes; `evidence` must be a `Dns`, `TlsSni` or `QuicSni` variant.
    pub fn from_domain_match(
        found: &DomainMatch<'_>,
        catalog_version: &str,
        evidence: Evidence,
        name: &str,
        ts_ms: i64,
    ) -> Detection {
        Detection {
            id: new_id(ts_ms),
            ts_ms,
            signal: evidence.signal(),
            name: redact::cap(name, 253).0.to_owned(),
            product: found.product.id.clone(),
            vendor: found.product.vendor.clone(),
            category: found.product.category.as_str().to_owned(),
            risk: Vec::new(),
            confidence: found.confidence.as_str().to_owned(),
            rule: found.rule.to_owned(),
            reason: found.reason.clone(),
            plan: found.plan.clone(),
            tenant: found.tenant.clone(),
            catalog_version: catalog_version.to_owned(),
            count: 1,
            process: None,
            src: None,
            dst: None,
            evidence,
        }
    }

    /// One JSON object (no trailing newline) with the fields of DESIGN.md §3: `ts` (RFC 3339),
    /// `signal`, `name`, `product`, `vendor`, `category`, `risk`, `confidence`, `process` (when
    /// known), `src`/`dst` (when known), `rule`, `reason`, `plan`, `id`, `catalog_version`,
    /// `count`, and for processes `event` (`started` or `changed`).
    pub fn to_json_line(&self) -> String {
        let line = JsonLine {
            ts: rfc3339(self.ts_ms),
            signal: self.signal,
            name: &self.name,
            product: &self.product,
            vendor: &self.vendor,
            category: &self.category,
            risk: &self.risk,
            confidence: &self.confidence,
            process: self.process.as_ref().map(|process| JsonProcess {
                pid: process.pid,
                parent_pid: process.parent_pid,
                started_at: rfc3339(process.started_at_ms),
                name: &process.name,
                exe: &process.exe,
                cmdline: &process.cmdline,
                user: &process.user,
                uid: process.uid,
                truncated: process.truncated,
                ancestors: &process.ancestors,
            }),
            src: self.src.as_deref(),
            dst: self.dst.as_deref(),
            rule: &self.rule,
            reason: &self.reason,
            plan: self.plan.as_deref(),
            tenant: self.tenant.as_deref(),
            event: match &self.evidence {
                Evidence::Process { event } => Some(*event),
                _ => None,
            },
            evidence: JsonEvidence::of(&self.evidence),
            id: self.id.to_string(),
            catalog_version: &self.catalog_version,
            count: self.count,
        };
        // Only strings, numbers and booleans: serialisation cannot fail.
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// The wire form sent to the collector.
    pub fn to_observation(&self) -> v1::Observation {
        let process = self.process.as_ref().map(|process| v1::ProcessInfo {
            pid: process.pid,
            parent_pid: process.parent_pid,
            started_at_ms: process.started_at_ms,
            name: process.name.clone(),
            exe: process.exe.clone(),
            cmdline: process.cmdline.clone(),
            user: process.user.clone(),
            uid: process.uid.unwrap_or_default(),
            ancestors: process
                .ancestors
                .iter()
                .map(|ancestor| v1::ProcessAncestor {
                    pid: ancestor.pid,
                    name: ancestor.name.clone(),
                    exe: ancestor.exe.clone(),
                })
                .collect(),
            truncated: process.truncated,
        });
        let src = self.src.clone().unwrap_or_default();
        let dst = self.dst.clone().unwrap_or_default();
        let name = self.name.clone();
        let kind = match &self.evidence {
            Evidence::Process { event } => {
                let event = match event {
                    ProcessEventKind::Started => v1::ProcessEvent::Started,
                    ProcessEventKind::Changed => v1::ProcessEvent::Changed,
                    ProcessEventKind::SpawnedByAgent => v1::ProcessEvent::SpawnedByAgent,
                };
                v1::observation::Kind::ProcessSeen(v1::ProcessObservation {
                    event: event as i32,
                })
            }
            Evidence::Dns {
                qtype,
                answers,
                resolver,
                tcp,
            } => v1::observation::Kind::Dns(v1::DnsObservation {
                qname: name,
                qtype: u32::from(*qtype),
                answers: answers.clone(),
                resolver: resolver.clone(),
                tcp: *tcp,
            }),
            Evidence::TlsSni { alpn, ech } => {
                v1::observation::Kind::TlsSni(v1::TlsSniObservation {
                    server_name: name,
                    alpn: alpn.clone(),
                    ech: *ech,
                    src,
                    dst,
                })
            }
            Evidence::QuicSni { version, alpn } => {
                v1::observation::Kind::QuicSni(v1::QuicSniObservation {
                    server_name: name,
                    quic_version: *version,
                    alpn: alpn.clone(),
                    src,
                    dst,
                })
            }
            Evidence::Config {
                path,
                setting,
                value,
                mcp,
            } => v1::observation::Kind::Config(v1::ConfigObservation {
                path: path.clone(),
                setting: setting.clone(),
                value: value.clone(),
                mcp_server: mcp.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
                mcp_target: mcp.as_ref().map(|m| m.target.clone()).unwrap_or_default(),
                mcp_transport: mcp
                    .as_ref()
                    .map(|m| m.transport.clone())
                    .unwrap_or_default(),
            }),
            Evidence::Listener {
                address,
                port,
                protocol,
                exposed,
            } => v1::observation::Kind::Listener(v1::ListenerObservation {
                address: address.clone(),
                port: u32::from(*port),
                protocol: (*protocol).to_owned(),
                exposed: *exposed,
            }),
            Evidence::App {
                app_id,
                path,
                version,
            } => v1::observation::Kind::App(v1::AppObservation {
                app_id: app_id.clone(),
                path: path.clone(),
                version: version.clone(),
            }),
        };
        v1::Observation {
            id: self.id.to_string(),
            observed_at_ms: self.ts_ms,
            detection: Some(v1::Detection {
                product: self.product.clone(),
                vendor: self.vendor.clone(),
                category: self.category.clone(),
                rule: self.rule.clone(),
                reason: self.reason.clone(),
                risk: self.risk.clone(),
                confidence: confidence_to_wire(&self.confidence) as i32,
                plan: self.plan.clone().unwrap_or_default(),
                tenant: self.tenant.clone().unwrap_or_default(),
                catalog_version: self.catalog_version.clone(),
                count: self.count,
            }),
            process,
            kind: Some(kind),
        }
    }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    ts: String,
    signal: Signal,
    name: &'a str,
    product: &'a str,
    vendor: &'a str,
    category: &'a str,
    risk: &'a [String],
    confidence: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    process: Option<JsonProcess<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst: Option<&'a str>,
    rule: &'a str,
    reason: &'a str,
    plan: Option<&'a str>,
    tenant: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<ProcessEventKind>,
    /// Signal-specific fields (`qtype`, `alpn`, `path`, `port`, ...), flattened into the line.
    #[serde(flatten)]
    evidence: JsonEvidence<'a>,
    id: String,
    catalog_version: &'a str,
    count: u32,
}

#[derive(Serialize)]
struct JsonProcess<'a> {
    pid: u32,
    parent_pid: u32,
    started_at: String,
    name: &'a str,
    exe: &'a str,
    cmdline: &'a str,
    user: &'a str,
    uid: Option<u32>,
    truncated: bool,
    #[serde(skip_serializing_if = "<[Ancestor]>::is_empty")]
    ancestors: &'a [Ancestor],
}

/// A UUIDv7 for the given time: its timestamp part is the detection's, its rest random.
fn new_id(ts_ms: i64) -> Uuid {
    let ms = u64::try_from(ts_ms).unwrap_or(0);
    let timestamp = uuid::Timestamp::from_unix(
        uuid::NoContext,
        ms / 1000,
        u32::try_from((ms % 1000) * 1_000_000).unwrap_or(0),
    );
    Uuid::new_v7(timestamp)
}

/// RFC 3339 in UTC with millisecond precision; out-of-range times print as the Unix epoch.
fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let when =
        OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    when.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn confidence_to_wire(confidence: &str) -> v1::Confidence {
    match confidence {
        "high" => v1::Confidence::High,
        "medium" => v1::Confidence::Medium,
        "low" => v1::Confidence::Low,
        _ => v1::Confidence::Unspecified,
    }
}

impl Evidence {
    /// The signal this evidence belongs to.
    pub fn signal(&self) -> Signal {
        match self {
            Evidence::Process { .. } => Signal::Process,
            Evidence::Dns { .. } => Signal::Dns,
            Evidence::TlsSni { .. } => Signal::TlsSni,
            Evidence::QuicSni { .. } => Signal::QuicSni,
            Evidence::Config { .. } => Signal::Config,
            Evidence::Listener { .. } => Signal::Listener,
            Evidence::App { .. } => Signal::App,
        }
    }
}

/// The evidence fields of a JSON line; process events print as `event`, so `Process` adds none.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonEvidence<'a> {
    None {},
    Dns {
        qtype: u16,
        answers: &'a [String],
        resolver: &'a str,
        tcp: bool,
    },
    Tls {
        alpn: &'a [String],
        ech: bool,
    },
    Quic {
        quic_version: u32,
        alpn: &'a [String],
    },
    Config {
        path: &'a str,
        setting: &'a str,
        value: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        mcp: Option<&'a McpServer>,
    },
    Listener {
        address: &'a str,
        port: u16,
        protocol: &'static str,
        exposed: bool,
    },
    App {
        app_id: &'a str,
        path: &'a str,
        version: &'a str,
    },
}

impl<'a> JsonEvidence<'a> {
    fn of(evidence: &'a Evidence) -> JsonEvidence<'a> {
        match evidence {
            Evidence::Process { .. } => JsonEvidence::None {},
            Evidence::Dns {
                qtype,
                answers,
                resolver,
                tcp,
            } => JsonEvidence::Dns {
                qtype: *qtype,
                answers,
                resolver,
                tcp: *tcp,
            },
            Evidence::TlsSni { alpn, ech } => JsonEvidence::Tls { alpn, ech: *ech },
            Evidence::QuicSni { version, alpn } => JsonEvidence::Quic {
                quic_version: *version,
                alpn,
            },
            Evidence::Config {
                path,
                setting,
                value,
                mcp,
            } => JsonEvidence::Config {
                path,
                setting,
                value,
                mcp: mcp.as_ref(),
            },
            Evidence::Listener {
                address,
                port,
                protocol,
                exposed,
            } => JsonEvidence::Listener {
                address,
                port: *port,
                protocol,
                exposed: *exposed,
            },
            Evidence::App {
                app_id,
                path,
                version,
            } => JsonEvidence::App {
                app_id,
                path,
                version,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shadowai_catalog::{Catalog, ProcessFacts};

    fn ollama_detection() -> Detection {
        let catalog = Catalog::embedded().unwrap();
        let args: Vec<String> = ["ollama", "serve", "--api-key", "hunter2"]
            .map(String::from)
            .to_vec();
        let found = catalog
            .match_process(&ProcessFacts {
                name: "ollama",
                exe: "/usr/bin/ollama",
                args: &args,
            })
            .unwrap();
        let process = ProcessRef::from_raw(&RawProcess {
            pid: 4242,
            parent_pid: 1,
            started_at_ms: 1_763_700_000_000,
            name: "ollama",
            exe: "/usr/bin/ollama",
            args: &args,
            user: "alice",
            uid: Some(1000),
        });
        Detection::from_process_match(
            &found,
            catalog.version(),
            process,
            1_763_736_368_123,
            ProcessEventKind::Started,
        )
    }

    #[test]
    fn json_lines_carry_the_documented_fields() {
        let detection = ollama_detection();
        let line = detection.to_json_line();
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["ts"], "2025-11-21T14:46:08.123Z");
        assert_eq!(value["signal"], "process");
        assert_eq!(value["name"], "ollama");
        assert_eq!(value["product"], "ollama.ollama");
        assert_eq!(value["vendor"], "Ollama");
        assert_eq!(value["category"], "local_model_runtime");
        assert_eq!(value["risk"], serde_json::json!([]));
        assert_eq!(value["confidence"], "high");
        assert_eq!(
            value["rule"],
            "data/ollama.toml#ollama.ollama/process/server"
        );
        assert_eq!(
            value["reason"],
            "process name is `ollama` and arguments contain `serve`"
        );
        assert_eq!(value["plan"], serde_json::Value::Null);
        assert_eq!(value["event"], "started");
        assert_eq!(value["count"], 1);
        assert_eq!(value["id"], detection.id.to_string());
        assert_eq!(value["process"]["pid"], 4242);
        assert_eq!(value["process"]["exe"], "/usr/bin/ollama");
        assert_eq!(value["process"]["user"], "alice");
        assert_eq!(value["process"]["uid"], 1000);
        assert_eq!(
            value["process"]["cmdline"],
            "ollama serve --api-key [REDACTED]"
        );
        assert!(value.get("src").is_none());
    }

    #[test]
    fn ids_are_time_ordered_uuid_v7() {
        let detection = ollama_detection();
        assert_eq!(detection.id.get_version_num(), 7);
        let (seconds, nanos) = detection.id.get_timestamp().unwrap().to_unix();
        assert_eq!(
            seconds * 1000 + u64::from(nanos) / 1_000_000,
            1_763_736_368_123
        );
        assert_ne!(ollama_detection().id, detection.id);
    }

    #[test]
    fn process_detections_become_process_observations() {
        let mut detection = ollama_detection();
        let observation = detection.to_observation();
        assert_eq!(observation.id, detection.id.to_string());
        assert_eq!(observation.observed_at_ms, 1_763_736_368_123);
        let wire = observation.detection.unwrap();
        assert_eq!(wire.product, "ollama.ollama");
        assert_eq!(wire.confidence, v1::Confidence::High as i32);
        assert_eq!(wire.rule, "data/ollama.toml#ollama.ollama/process/server");
        assert_eq!(wire.count, 1);
        let process = observation.process.unwrap();
        assert_eq!(
            (process.pid, process.uid, process.user.as_str()),
            (4242, 1000, "alice")
        );
        assert_eq!(
            observation.kind,
            Some(v1::observation::Kind::ProcessSeen(v1::ProcessObservation {
                event: v1::ProcessEvent::Started as i32
            }))
        );
        detection.evidence = Evidence::Process {
            event: ProcessEventKind::Changed,
        };
        assert_eq!(
            detection.to_observation().kind,
            Some(v1::observation::Kind::ProcessSeen(v1::ProcessObservation {
                event: v1::ProcessEvent::Changed as i32
            }))
        );
    }

    #[test]
    fn domain_detections_carry_the_plan() {
        let catalog = Catalog::embedded().unwrap();
        let found = catalog
            .match_domain("API.Business.GithubCopilot.com.")
            .unwrap();
        let mut detection = Detection::from_domain_match(
            &found,
            catalog.version(),
            Evidence::TlsSni {
                alpn: vec!["h2".into()],
                ech: false,
            },
            "api.business.githubcopilot.com",
            0,
        );
        detection.src = Some("10.0.0.2:50000".into());
        detection.dst = Some("140.82.112.22:443".into());
        let value: serde_json::Value = serde_json::from_str(&detection.to_json_line()).unwrap();
        assert_eq!(value["signal"], "tls_sni");
        assert_eq!(value["plan"], "business");
        assert_eq!(value["dst"], "140.82.112.22:443");
        assert_eq!(value["alpn"], serde_json::json!(["h2"]));
        assert_eq!(value["ech"], false);
        assert!(value.get("process").is_none());
        assert!(value.get("event").is_none());
        let observation = detection.to_observation();
        assert_eq!(observation.detection.unwrap().plan, "business");
        let Some(v1::observation::Kind::TlsSni(sni)) = observation.kind else {
            panic!("expected a TLS SNI observation")
        };
        assert_eq!(sni.server_name, "api.business.githubcopilot.com");
        assert_eq!(sni.dst, "140.82.112.22:443");
        assert_eq!(sni.alpn, ["h2"]);
    }

    #[test]
    fn domain_detections_carry_the_tenant() {
        let catalog = Catalog::embedded().unwrap();
        let found = catalog
            .match_domain("contoso-prod.openai.azure.com")
            .unwrap();
        let detection = Detection::from_domain_match(
            &found,
            catalog.version(),
            Evidence::Dns {
                qtype: 1,
                answers: vec!["10.1.2.3".into()],
                resolver: "127.0.0.53".into(),
                tcp: false,
            },
            "contoso-prod.openai.azure.com",
            0,
        );
        assert_eq!(detection.signal, Signal::Dns);
        let value: serde_json::Value = serde_json::from_str(&detection.to_json_line()).unwrap();
        assert_eq!(value["tenant"], "contoso-prod");
        assert_eq!(value["qtype"], 1);
        assert_eq!(value["answers"], serde_json::json!(["10.1.2.3"]));
        let observation = detection.to_observation();
        assert_eq!(observation.detection.unwrap().tenant, "contoso-prod");
        let Some(v1::observation::Kind::Dns(dns)) = observation.kind else {
            panic!("expected a DNS observation")
        };
        assert_eq!(
            (dns.qname.as_str(), dns.qtype),
            ("contoso-prod.openai.azure.com", 1)
        );
    }

    #[test]
    fn hostile_process_strings_are_capped_and_flagged() {
        let huge = "x".repeat(1 << 20);
        let args = vec![huge.clone(), "<script>alert(1)</script>".to_owned()];
        let process = ProcessRef::from_raw(&RawProcess {
            pid: 1,
            parent_pid: 0,
            started_at_ms: 0,
            name: &huge,
            exe: &huge,
            args: &args,
            user: "",
            uid: Some(1001),
        });
        assert!(process.truncated);
        assert_eq!(process.name.len(), MAX_NAME);
        assert_eq!(process.exe.len(), MAX_EXE);
        assert!(process.cmdline.len() <= redact::MAX_CMDLINE);
        assert_eq!(process.user, "1001");
    }

    #[test]
    fn signals_serialise_in_snake_case() {
        for signal in [
            Signal::Dns,
            Signal::TlsSni,
            Signal::QuicSni,
            Signal::Process,
            Signal::Config,
            Signal::Listener,
            Signal::App,
        ] {
            assert_eq!(serde_json::to_value(signal).unwrap(), signal.as_str());
        }
    }
}
