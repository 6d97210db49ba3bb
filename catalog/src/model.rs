//! The catalog's data model: what a product entry says once it has been read and validated.
//!
//! These types are what the rest of shadowai sees. The TOML shapes they are read from live in
//! `load.rs`, so that the file format can grow without changing these types.

use serde::{Deserialize, Serialize};

/// What kind of AI a product is. Policy and reports group by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Consumer or business chat assistants (ChatGPT, Claude, Gemini apps).
    ChatApp,
    /// Model APIs called by code (api.openai.com, api.anthropic.com).
    ModelApi,
    /// Coding assistants and agentic IDEs (Claude Code, Codex CLI, Cursor, Copilot).
    CodingAssistant,
    /// Autonomous agents that act with tools on their own (Goose, OpenClaw).
    AutonomousAgent,
    /// Libraries and frameworks to build agents (LangChain, CrewAI).
    AgentFramework,
    /// Model Context Protocol servers.
    McpServer,
    /// Local model runtimes (Ollama, LM Studio, llama.cpp, vLLM).
    LocalModelRuntime,
    /// Model hubs and weight downloads (Hugging Face).
    ModelHub,
    /// Routers, inference clouds and gateways (OpenRouter, Groq).
    InferenceGateway,
    /// Image, video, voice and music generation.
    MediaGeneration,
    /// Writing, meeting and productivity AI.
    ProductivityAi,
    /// AI embedded in browsers (sidebars, AI browsers).
    BrowserAi,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 12] = [
        Category::ChatApp,
        Category::ModelApi,
        Category::CodingAssistant,
        Category::AutonomousAgent,
        Category::AgentFramework,
        Category::McpServer,
        Category::LocalModelRuntime,
        Category::ModelHub,
        Category::InferenceGateway,
        Category::MediaGeneration,
        Category::ProductivityAi,
        Category::BrowserAi,
    ];

    /// The stable snake_case name used in data files, JSON output and the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::ChatApp => "chat_app",
            Category::ModelApi => "model_api",
            Category::CodingAssistant => "coding_assistant",
            Category::AutonomousAgent => "autonomous_agent",
            Category::AgentFramework => "agent_framework",
            Category::McpServer => "mcp_server",
            Category::LocalModelRuntime => "local_model_runtime",
            Category::ModelHub => "model_hub",
            Category::InferenceGateway => "inference_gateway",
            Category::MediaGeneration => "media_generation",
            Category::ProductivityAi => "productivity_ai",
            Category::BrowserAi => "browser_ai",
        }
    }
}

/// How sure a rule is. Ordered: `Low < Medium < High`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confidence {
    /// A weak hint: a vendor's corporate site, a generic name.
    Low,
    /// A specific but not unique signature.
    Medium,
    /// A signature unique to the product.
    High,
}

impl Confidence {
    /// "low", "medium" or "high".
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// How bad a risky setting is. Ordered: `Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Low,
    /// Broad auto-approval of edits or allowlists.
    Medium,
    /// Approvals off for shell or edits, or MCP tools trusted blindly.
    High,
    /// All approvals off and no sandbox.
    Critical,
}

impl Severity {
    /// "low", "medium", "high" or "critical".
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The risk flag names a catalog entry may raise. A fixed vocabulary, so that a typo in a data
/// file is an error rather than a flag no policy knows about.
pub const KNOWN_RISKS: &[(&str, &str)] = &[
    (
        "approval_bypass",
        "the tool runs actions without asking a human first",
    ),
    ("sandbox_off", "the tool runs commands outside its sandbox"),
    ("auto_edit", "the tool edits files without asking"),
    (
        "broad_allowlist",
        "a wide allowlist pre-approves shell commands or tools",
    ),
    (
        "mcp_auto_trust",
        "MCP servers or their tools are trusted without confirmation",
    ),
    (
        "network_exposed",
        "a model or agent server accepts connections beyond this machine",
    ),
    (
        "unattended",
        "the tool runs headless, with no human watching",
    ),
    (
        "mcp_remote",
        "an MCP server is reached over the network, so tool calls and data leave the machine",
    ),
    (
        "computer_use",
        "the agent drives the desktop or a browser on the user's behalf",
    ),
    // Raised by the agent's own rules rather than by catalog entries; listed here so that the
    // vocabulary a policy sees is one list.
    (
        "agent_shell",
        "an AI agent started a shell (agent/lineage rule)",
    ),
    (
        "agent_infra_cli",
        "an AI agent ran an infrastructure or destructive command line (agent/lineage rule)",
    ),
    (
        "agent_mcp_server",
        "an AI agent started an MCP server process (agent/lineage rule)",
    ),
    (
        "mcp_unknown_server",
        "an MCP configuration names a server the catalog does not know (agent inventory rule)",
    ),
];

/// Whether `name` is in [`KNOWN_RISKS`].
pub fn is_known_risk(name: &str) -> bool {
    KNOWN_RISKS.iter().any(|(known, _)| *known == name)
}

/// How a domain pattern matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainKind {
    /// The name itself only.
    Exact,
    /// The name and every name under it; with `tenant`, only the names under it.
    Suffix,
    /// The name itself only, where the one `*` stands for any part of one label
    /// (`chatgpt-async-webps-prod-*.webpubsub.azure.com`, `bedrock-runtime.*.amazonaws.com`).
    Wildcard,
}

impl DomainKind {
    /// "exact", "suffix" or "wildcard": the key used in data files.
    pub fn as_str(self) -> &'static str {
        match self {
            DomainKind::Exact => "exact",
            DomainKind::Suffix => "suffix",
            DomainKind::Wildcard => "wildcard",
        }
    }
}

/// One domain rule of a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRule {
    /// Rule id, e.g. `data/openai.toml#openai.chatgpt/domain/chatgpt.com`.
    pub id: String,
    /// Lowercase pattern; a `wildcard` pattern holds exactly one `*`.
    pub pattern: String,
    /// Exact, suffix or wildcard.
    pub kind: DomainKind,
    /// Whether the name tells a tenant (an organisation's own resource): for a suffix rule the
    /// label left of the suffix, for a wildcard rule the text the `*` stood for.
    pub tenant: bool,
    /// Plan this host reveals. In a wildcard rule `{*}` is replaced by the text the `*` stood
    /// for (e.g. the region of a regional endpoint).
    pub plan: Option<String>,
    /// How sure the rule is.
    pub confidence: Confidence,
    /// Reviewer's note (not shown in matches).
    pub note: Option<String>,
}

/// The language runtime a process runs under, for tools shipped as scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Runtime {
    /// `node`, `nodejs` or `bun`.
    Node,
    /// `python`, `python3`, `python3.12`, `pythonw`.
    Python,
}

impl Runtime {
    /// "node" or "python".
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Node => "node",
            Runtime::Python => "python",
        }
    }
}

/// Executable path globs per operating system (`*` within one path segment, `**` across
/// segments, `?` one character; `/` separates segments on every OS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExePatterns {
    /// Linux paths.
    pub linux: Vec<String>,
    /// macOS paths.
    pub macos: Vec<String>,
    /// Windows paths, matched case-insensitively after `\` is turned into `/`.
    pub windows: Vec<String>,
}

impl ExePatterns {
    /// Whether no pattern is given for any OS.
    pub fn is_empty(&self) -> bool {
        self.linux.is_empty() && self.macos.is_empty() && self.windows.is_empty()
    }
}

/// One process signature of a product. Every condition given must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRule {
    /// Rule id, e.g. `data/ollama.toml#ollama.ollama/process/server`.
    pub id: String,
    /// Short name within the product, e.g. `server`.
    pub name: String,
    /// Process names (case-insensitive, `.exe` ignored); matched against the process name, the
    /// executable's file name, argv\[0\]'s file name and, under a script runtime, the script or
    /// module name.
    pub names: Vec<String>,
    /// The process must run under this runtime.
    pub runtime: Option<Runtime>,
    /// Executable path globs.
    pub exe: ExePatterns,
    /// Regexes over the command line (arguments joined by single spaces).
    pub cmdline: Vec<String>,
    /// Arguments that must all be present (exact, after argv\[0\]).
    pub args: Vec<String>,
    /// Arguments of which at least one must be present (exact, after argv\[0\]).
    pub args_any: Vec<String>,
    /// How sure the rule is.
    pub confidence: Confidence,
    /// Reviewer's note.
    pub note: Option<String>,
}

/// A command-line flag that removes a human from the loop or the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskyFlag {
    /// Rule id, e.g. `data/anthropic.toml#anthropic.claude-code/risky_flag/--dangerously-skip-permissions`.
    pub id: String,
    /// The flag, e.g. `--permission-mode`.
    pub flag: String,
    /// The value that makes it risky (`--flag value` or `--flag=value`); `None` when the flag
    /// alone is risky.
    pub value: Option<String>,
    /// Risk flag names it raises, from [`KNOWN_RISKS`].
    pub risk: Vec<String>,
    /// How bad it is.
    pub severity: Severity,
    /// What it does, for a responder.
    pub explanation: String,
}

/// An IDE extension of a product (VS Code, Open VSX or JetBrains marketplace id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// Rule id, e.g. `data/cline.toml#cline.cline/extension/saoudrizwan.claude-dev`.
    pub id: String,
    /// The marketplace id as the vendor spells it, e.g. `GitHub.copilot`. Compared without case.
    pub extension: String,
}

/// An operating system, for paths that differ per OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Os {
    /// Linux.
    Linux,
    /// macOS.
    Macos,
    /// Windows.
    Windows,
}

impl Os {
    /// Every OS, in declaration order.
    pub const ALL: [Os; 3] = [Os::Linux, Os::Macos, Os::Windows];

    /// "linux", "macos" or "windows".
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Macos => "macos",
            Os::Windows => "windows",
        }
    }
}

/// File paths per operating system. A path starts with `~/` (the user's home), `/`, `./` (inside
/// a project directory) or, on Windows, one of [`PATH_PLACEHOLDERS`], `~\` or a drive (`C:\`).
/// A `*` stands for any part of one path segment (e.g. a Store app's publisher suffix).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsPaths {
    /// Linux paths.
    pub linux: Vec<String>,
    /// macOS paths.
    pub macos: Vec<String>,
    /// Windows paths.
    pub windows: Vec<String>,
}

impl OsPaths {
    /// The paths for one OS.
    pub fn for_os(&self, os: Os) -> &[String] {
        match os {
            Os::Linux => &self.linux,
            Os::Macos => &self.macos,
            Os::Windows => &self.windows,
        }
    }

    /// Whether no path is given for any OS.
    pub fn is_empty(&self) -> bool {
        self.linux.is_empty() && self.macos.is_empty() && self.windows.is_empty()
    }
}

/// The Windows environment placeholders a path may start with.
pub const PATH_PLACEHOLDERS: &[&str] = &[
    "%APPDATA%",
    "%LOCALAPPDATA%",
    "%USERPROFILE%",
    "%PROGRAMDATA%",
];

/// What a config file of a tool holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigKind {
    /// A list of MCP servers (and possibly settings).
    Mcp,
    /// Agent settings.
    Settings,
}

impl ConfigKind {
    /// "mcp" or "settings".
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigKind::Mcp => "mcp",
            ConfigKind::Settings => "settings",
        }
    }
}

/// The syntax of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigFormat {
    /// JSON.
    Json,
    /// JSON with comments and trailing commas (VS Code family).
    Jsonc,
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

impl ConfigFormat {
    /// "json", "jsonc", "toml" or "yaml".
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigFormat::Json => "json",
            ConfigFormat::Jsonc => "jsonc",
            ConfigFormat::Toml => "toml",
            ConfigFormat::Yaml => "yaml",
        }
    }
}

/// When a setting counts as present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingTest {
    /// The value is this string (or a number or boolean written so).
    Equals(String),
    /// The value is the boolean `true`.
    IsTrue,
    /// A string value contains this text, an array holds this string, or an object has this key.
    Contains(String),
}

/// A setting inside a config file that removes a human from the loop or the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSetting {
    /// Rule id, e.g. `data/anthropic.toml#anthropic.claude-code/config/user-settings/bypass-permissions`.
    pub id: String,
    /// Short name within its config, e.g. `bypass-permissions`.
    pub name: String,
    /// Dotted path into the document (see [`crate::lookup_key`]), e.g. `permissions.defaultMode`.
    pub key: String,
    /// When it counts as present.
    pub test: SettingTest,
    /// Risk flag names it raises, from [`KNOWN_RISKS`].
    pub risk: Vec<String>,
    /// How bad it is.
    pub severity: Severity,
    /// What it does, for a responder.
    pub explanation: String,
}

/// A config file of a tool: where it is on each OS and what in it matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Rule id, e.g. `data/cursor.toml#anysphere.cursor/config/mcp-user`.
    pub id: String,
    /// Short name within the product, e.g. `mcp-user`.
    pub name: String,
    /// MCP server list or settings.
    pub kind: ConfigKind,
    /// Syntax.
    pub format: ConfigFormat,
    /// Where it is.
    pub paths: OsPaths,
    /// Dotted path to the MCP server map or list (`kind = mcp`), e.g. `mcpServers`.
    pub mcp_key: Option<String>,
    /// Reviewer's note, e.g. "user scope".
    pub note: Option<String>,
    /// Settings that matter.
    pub settings: Vec<ConfigSetting>,
}

/// An installed desktop app of a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Rule id, e.g. `data/openai.toml#openai.chatgpt/app/desktop`.
    pub id: String,
    /// Short name within the product, e.g. `desktop`.
    pub name: String,
    /// macOS bundle identifier, e.g. `com.openai.chat`.
    pub macos_bundle_id: Option<String>,
    /// Install paths.
    pub paths: OsPaths,
}

/// One product of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// `vendor.product`, e.g. `ollama.ollama`.
    pub id: String,
    /// Vendor display name.
    pub vendor: String,
    /// Product display name.
    pub name: String,
    /// What kind of AI it is.
    pub category: Category,
    /// One line on what it is.
    pub summary: Option<String>,
    /// Domain rules.
    pub domains: Vec<DomainRule>,
    /// Process signatures.
    pub processes: Vec<ProcessRule>,
    /// Risky command-line flags.
    pub risky_flags: Vec<RiskyFlag>,
    /// Config files and the settings in them that matter.
    pub configs: Vec<ConfigFile>,
    /// Installed desktop apps.
    pub apps: Vec<App>,
    /// IDE extensions.
    pub extensions: Vec<Extension>,
    /// TCP ports its local server listens on by default.
    pub ports: Vec<u16>,
    /// Where the facts come from.
    pub sources: Vec<String>,
    /// When the entry was last checked against its sources (`YYYY-MM-DD`).
    pub verified: String,
    /// The data file it came from, e.g. `data/ollama.toml`.
    pub file: String,
}

impl Product {
    /// The vendor part of the id (`openai` of `openai.chatgpt`): rules of one vendor may nest.
    pub fn vendor_key(&self) -> &str {
        self.id
            .split_once('.')
            .map_or(self.id.as_str(), |(vendor, _)| vendor)
    }
}
