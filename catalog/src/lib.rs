//! The shadowai detection catalog: reviewed data files and the matcher compiled from them.
//!
//! Detection is deterministic: a [`Catalog`] decides what a domain or a process is, and every
//! match names the rule (`data/<file>.toml#<product>/<kind>/<rule>`) and says why it matched.
//!
//! **Architecture invariant:** this crate is pure data and matching. It does no IO beyond what
//! it is handed (no files, sockets, clocks or processes), so the agent and the collector use the
//! same matcher, and it is tested without a machine.
//!
//! # Data files
//!
//! `catalog/data/*.toml`, one file per vendor or family, each a list of `[[product]]` tables.
//! Every file in that folder is embedded into the binary at build time; `data/VERSION` holds the
//! catalog version. Unknown keys, malformed domains, invalid regexes and paths, duplicate ids and
//! overlapping domain rules are errors that name file and line. `docs/CATALOG.md` is the
//! contributor's guide; the format in short:
//!
//! ```toml
//! [[product]]
//! id = "ollama.ollama"                 # vendor.product: a-z, 0-9, -
//! vendor = "Ollama"
//! name = "Ollama"
//! category = "local_model_runtime"     # see Category
//! summary = "Runs open-weight models locally."
//! ports = [11434]                      # default listening ports
//! sources = ["https://docs.ollama.com/faq"]
//! verified = "2026-11-21"              # when the entry was last checked against its sources
//! domains = [
//!   { suffix = "ollama.com" },         # the name and everything under it
//!   { exact = "registry.ollama.ai" },  # that name only
//!   { suffix = "openai.azure.com", tenant = true },   # <tenant>.openai.azure.com
//!   { wildcard = "bedrock-runtime.*.amazonaws.com", plan = "{*}" },  # `*` = part of one label
//! ]
//! extensions = ["publisher.extension-id"]   # IDE extension ids
//!
//! [[product.process]]
//! id = "server"
//! names = ["ollama"]                   # process/exe/argv[0]/script name; case and .exe ignored
//! args = ["serve"]                     # all of these arguments present
//! # args_any = ["run", "session"]      # at least one of these
//! # runtime = "node"                   # node | python: the process runs under this runtime
//! # cmdline = ['node_modules[/\\]@openai[/\\]codex[/\\]']   # regexes over the joined arguments
//! # exe.macos = ["/Applications/Ollama.app/**"]              # globs per linux | macos | windows
//! confidence = "high"                  # low | medium | high (default high)
//!
//! [[product.risky_flag]]
//! flag = "--permission-mode"
//! value = "bypassPermissions"          # optional: `--flag value` or `--flag=value`
//! risk = ["approval_bypass"]           # names from KNOWN_RISKS
//! severity = "critical"                # low | medium | high | critical
//! explanation = "Runs every tool call without asking."
//!
//! [[product.config]]                   # a config file of the tool
//! id = "user-settings"
//! kind = "settings"                    # mcp | settings
//! format = "json"                      # json | jsonc | toml | yaml
//! paths.linux = ["~/.claude/settings.json"]
//! paths.windows = ['%USERPROFILE%\.claude\settings.json']
//! # mcp_key = "mcpServers"             # kind = mcp: dotted path to the server map or list
//!
//! [[product.config.setting]]
//! id = "bypass-permissions"
//! key = "permissions.defaultMode"      # dotted path into the document
//! equals = "bypassPermissions"         # or is_true = true, or contains = "..."
//! risk = ["approval_bypass"]
//! severity = "critical"
//! explanation = "Every tool runs without asking."
//!
//! [[product.app]]                      # an installed desktop app
//! id = "desktop"
//! macos_bundle_id = "com.openai.chat"
//! paths.macos = ["/Applications/ChatGPT.app"]
//! ```
//!
//! When several process rules match, the one with the highest confidence wins, then the one
//! with the most kinds of condition, then the first in file order. For domains, rules of
//! different vendors never overlap (checked on load), and within a vendor the most specific
//! rule wins (see `domain.rs`).
//!
//! Shared infrastructure ([`SHARED_INFRASTRUCTURE`]: google.com, github.com, amazonaws.com,
//! CDNs, telemetry vendors, the gemini.com look-alike, ...) can never be a rule on its own.
#![forbid(unsafe_code)]

mod bundle;
mod config;
mod domain;
mod error;
mod load;
mod model;
mod overlap;
mod process;
mod stats;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};

pub use bundle::{BUNDLE_FORMAT, MAX_BUNDLE_BYTES, MAX_FILES, MAX_VERSION};
pub use config::{McpServer, PathVars, expand_path, is_project_path, lookup_key};
pub use domain::{MAX_NAME, SHARED_INFRASTRUCTURE, normalize_domain};
pub use error::{CatalogError, Problem};
pub use load::Visibility;
pub use model::{
    App, Category, Confidence, ConfigFile, ConfigFormat, ConfigKind, ConfigSetting, DomainKind,
    DomainRule, ExePatterns, Extension, KNOWN_RISKS, Os, OsPaths, PATH_PLACEHOLDERS, ProcessRule,
    Product, RiskyFlag, Runtime, SettingTest, Severity, is_known_risk,
};
pub use process::MAX_MATCHED_CMDLINE;
pub use stats::{CategoryStats, Stats};

use domain::{DomainIndex, IndexRule, Miss, RuleRef};
use process::{Prepared, ProcessIndex};

// Generated by build.rs: `EMBEDDED_VERSION` and `EMBEDDED_FILES` (every `data/*.toml`).
include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// What is known about a process when it is matched.
#[derive(Debug, Clone, Copy)]
pub struct ProcessFacts<'a> {
    /// The name the OS reports (on Linux the 15-byte `comm`).
    pub name: &'a str,
    /// The executable path, or `""` when it could not be read.
    pub exe: &'a str,
    /// The arguments; `args[0]` is argv\[0\].
    pub args: &'a [String],
}

/// A domain the catalog knows.
#[derive(Debug, Clone)]
pub struct DomainMatch<'a> {
    /// The product.
    pub product: &'a Product,
    /// The rule id, e.g. `data/openai.toml#openai.chatgpt/domain/chatgpt.com`.
    pub rule: &'a str,
    /// The rule's pattern.
    pub pattern: &'a str,
    /// Exact, suffix or wildcard.
    pub kind: DomainKind,
    /// Why it matched, in words.
    pub reason: String,
    /// How sure the rule is.
    pub confidence: Confidence,
    /// The plan the name reveals, e.g. `business` for `*.business.githubcopilot.com`, or a
    /// region for a regional endpoint.
    pub plan: Option<String>,
    /// The tenant the name reveals, e.g. the Azure resource of `contoso.openai.azure.com`:
    /// what tells a sanctioned corporate tenant from a personal account.
    pub tenant: Option<String>,
}

/// The product and rule a domain belongs to (see [`Catalog::lookup_domain`]).
#[derive(Debug, Clone, Copy)]
pub struct DomainHit<'a> {
    /// The product.
    pub product: &'a Product,
    /// The rule that matched.
    pub rule: &'a DomainRule,
}

/// A process the catalog knows.
#[derive(Debug, Clone)]
pub struct ProcessMatch<'a> {
    /// The product.
    pub product: &'a Product,
    /// The rule id, e.g. `data/ollama.toml#ollama.ollama/process/server`.
    pub rule: &'a str,
    /// Why it matched, e.g. "process name is `ollama` and arguments contain `serve`".
    pub reason: String,
    /// How sure the rule is.
    pub confidence: Confidence,
    /// Risky flags present in the arguments, in catalog order.
    pub risks: Vec<&'a RiskyFlag>,
}

impl<'a> ProcessMatch<'a> {
    /// The distinct risk flag names raised, sorted.
    pub fn risk_names(&self) -> Vec<&'a str> {
        let mut names: Vec<&'a str> = self
            .risks
            .iter()
            .flat_map(|flag| flag.risk.iter().map(String::as_str))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// An IDE extension the catalog knows.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionMatch<'a> {
    /// The product.
    pub product: &'a Product,
    /// The extension entry (its `id` is the rule id).
    pub extension: &'a Extension,
}

/// A config file of a product, for the host sensor.
#[derive(Debug, Clone, Copy)]
pub struct ConfigLocation<'a> {
    /// The product.
    pub product: &'a Product,
    /// The config file: paths per OS, format, MCP key and risky settings.
    pub config: &'a ConfigFile,
}

/// A desktop app of a product, for the host sensor.
#[derive(Debug, Clone, Copy)]
pub struct AppLocation<'a> {
    /// The product.
    pub product: &'a Product,
    /// The app: bundle id and install paths.
    pub app: &'a App,
}

/// A validated catalog, compiled for matching. Build it once and share it (`Arc`).
pub struct Catalog {
    version: String,
    sha256: String,
    bundle: Vec<u8>,
    products: Vec<Product>,
    by_id: HashMap<String, usize>,
    /// Lowercased extension id → (product, extension).
    by_extension: HashMap<String, (usize, usize)>,
    domains: DomainIndex,
    /// The explanation of each domain rule, `[product][rule]`, written once at compile time so
    /// that a match only copies it.
    domain_reasons: Vec<Vec<String>>,
    processes: ProcessIndex,
    visibility: Visibility,
}

/// Looks `name` up in a lowercase set without allocating for names already in that form (what
/// the wire carries almost always).
fn visibility_entry<'a>(
    set: &'a std::collections::BTreeSet<String>,
    name: &str,
) -> Option<&'a str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        set.get(name.to_ascii_lowercase().as_str())
            .map(String::as_str)
    } else {
        set.get(name).map(String::as_str)
    }
}

impl fmt::Debug for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalog")
            .field("version", &self.version)
            .field("sha256", &self.sha256)
            .field("products", &self.products.len())
            .field("domain_nodes", &self.domains.node_count())
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// The catalog built into this binary from `catalog/data/`.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        let files = EMBEDDED_FILES
            .iter()
            .map(|(name, content)| ((*name).to_owned(), (*content).to_owned()))
            .collect();
        Catalog::from_files(EMBEDDED_VERSION.trim(), files)
    }

    /// A catalog from a bundle (see the `bundle` module docs for the format), validated fully.
    pub fn from_bundle(bytes: &[u8]) -> Result<Catalog, CatalogError> {
        let decoded = bundle::decode(bytes)?;
        Catalog::compile(decoded)
    }

    /// A catalog from a version and `(name, content)` data files, validated fully. Names are
    /// `data/<name>.toml`.
    pub fn from_files(
        version: &str,
        files: Vec<(String, String)>,
    ) -> Result<Catalog, CatalogError> {
        let decoded = bundle::check(version.to_owned(), files)?;
        Catalog::compile(decoded)
    }

    fn compile(decoded: bundle::Decoded) -> Result<Catalog, CatalogError> {
        let (products, regex_lines, visibility) =
            load::load_files(&decoded.files).map_err(CatalogError::Invalid)?;
        let processes = ProcessIndex::build(&products).map_err(|error| {
            CatalogError::Invalid(vec![load::regex_problem(&products, &regex_lines, error)])
        })?;
        let domains = DomainIndex::build(products.iter().enumerate().flat_map(|(p, product)| {
            product
                .domains
                .iter()
                .enumerate()
                .map(move |(r, rule)| IndexRule {
                    rule: RuleRef {
                        product: index_u32(p),
                        rule: index_u32(r),
                    },
                    pattern: rule.pattern.as_str(),
                    kind: rule.kind,
                    tenant: rule.tenant,
                })
        }));
        let by_id = products
            .iter()
            .enumerate()
            .map(|(index, p)| (p.id.clone(), index))
            .collect();
        let by_extension = products
            .iter()
            .enumerate()
            .flat_map(|(p, product)| {
                product
                    .extensions
                    .iter()
                    .enumerate()
                    .map(move |(e, extension)| (extension.extension.to_ascii_lowercase(), (p, e)))
            })
            .collect();
        let domain_reasons = products
            .iter()
            .map(|product| product.domains.iter().map(domain_reason).collect())
            .collect();
        let bundle = bundle::encode(&decoded.version, &decoded.files);
        let sha256 = hex::encode(Sha256::digest(&bundle));
        Ok(Catalog {
            version: decoded.version,
            sha256,
            bundle,
            products,
            by_id,
            by_extension,
            domains,
            domain_reasons,
            processes,
            visibility,
        })
    }

    /// The entry for `name` (any case, trailing dot allowed) when it is a public
    /// DNS-over-HTTPS resolver of the catalog's `[visibility]` list.
    pub fn doh_resolver(&self, name: &str) -> Option<&str> {
        visibility_entry(&self.visibility.doh_resolvers, name)
    }

    /// The entry for `name` when it is the public (outer) name of an Encrypted Client Hello
    /// front in the catalog's `[visibility]` list.
    pub fn ech_public_name(&self, name: &str) -> Option<&str> {
        visibility_entry(&self.visibility.ech_public_names, name)
    }

    /// Both `[visibility]` lists.
    pub fn visibility(&self) -> &Visibility {
        &self.visibility
    }

    /// The catalog version, e.g. `2026.11.21-1`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// SHA-256 (lowercase hex) of [`Catalog::bundle`].
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The canonical bundle: what a collector distributes to agents.
    pub fn bundle(&self) -> &[u8] {
        &self.bundle
    }

    /// Every product, in file and declaration order.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// A product by id.
    pub fn product(&self, id: &str) -> Option<&Product> {
        self.by_id.get(id).map(|index| &self.products[*index])
    }

    /// Which product and rule a DNS name or TLS server name belongs to, without the
    /// explanation [`Catalog::match_domain`] writes: the allocation-free question a sensor asks
    /// of every name before it builds a detection.
    pub fn lookup_domain(&self, name: &str) -> Option<DomainHit<'_>> {
        // Names on the wire are ASCII and looked up as they are, in any case; a Unicode name
        // is converted to its `xn--` form first.
        let rule = match self.domains.lookup(name) {
            Ok(hit) => hit.rule,
            Err(Miss::NoMatch) => return None,
            Err(Miss::Unicode) => {
                let normalized = normalize_domain(name)?;
                self.domains.lookup(&normalized).ok()?.rule
            }
        };
        let product = self.products.get(rule.product as usize)?;
        Some(DomainHit {
            product,
            rule: product.domains.get(rule.rule as usize)?,
        })
    }

    /// What a DNS name or TLS server name is. The name is normalised first (see
    /// [`normalize_domain`]: case, one trailing dot, Unicode to punycode); anything that is not
    /// a plausible DNS name, including names over [`MAX_NAME`] bytes, matches nothing.
    pub fn match_domain(&self, name: &str) -> Option<DomainMatch<'_>> {
        let normalized;
        let hit = match self.domains.lookup(name) {
            Ok(hit) => hit,
            Err(Miss::NoMatch) => return None,
            Err(Miss::Unicode) => {
                normalized = normalize_domain(name)?;
                self.domains.lookup(&normalized).ok()?
            }
        };
        let product = &self.products[hit.rule.product as usize];
        let rule = &product.domains[hit.rule.rule as usize];
        let reason = self.domain_reasons[hit.rule.product as usize][hit.rule.rule as usize].clone();
        // The texts a name reveals keep the name's case: lowercase them.
        let star = hit.star.map(lowercase);
        let plan = rule.plan.as_ref().map(|plan| match &star {
            Some(star) => plan.replace("{*}", star),
            None => plan.clone(),
        });
        let tenant = match rule.kind {
            _ if !rule.tenant => None,
            DomainKind::Wildcard => star.map(Cow::into_owned),
            _ => hit.below.map(|below| lowercase(below).into_owned()),
        };
        Some(DomainMatch {
            product,
            rule: &rule.id,
            pattern: &rule.pattern,
            kind: rule.kind,
            reason,
            confidence: rule.confidence,
            plan,
            tenant,
        })
    }

    /// What a process is, and which risky flags it was started with.
    pub fn match_process(&self, process: &ProcessFacts<'_>) -> Option<ProcessMatch<'_>> {
        let prepared = Prepared::new(process.name, process.exe, process.args);
        let found = self.processes.find(&self.products, &prepared)?;
        let product = &self.products[found.product];
        let rule = &product.processes[found.rule];
        let risks = product
            .risky_flags
            .iter()
            .filter(|flag| process::has_flag(process.args, &flag.flag, flag.value.as_deref()))
            .collect();
        Some(ProcessMatch {
            product,
            rule: &rule.id,
            reason: found.reason,
            confidence: rule.confidence,
            risks,
        })
    }

    /// An IDE extension by its marketplace id (compared without case, e.g. `github.copilot`).
    pub fn extension(&self, id: &str) -> Option<ExtensionMatch<'_>> {
        let key = id.trim().to_ascii_lowercase();
        let (product, extension) = *self.by_extension.get(&key)?;
        let product = &self.products[product];
        Some(ExtensionMatch {
            product,
            extension: &product.extensions[extension],
        })
    }

    /// Every config file of every product, in catalog order: where the host sensor looks for
    /// MCP server lists and risky agent settings.
    pub fn config_locations(&self) -> impl Iterator<Item = ConfigLocation<'_>> {
        self.products.iter().flat_map(|product| {
            product
                .configs
                .iter()
                .map(move |config| ConfigLocation { product, config })
        })
    }

    /// Every desktop app of every product, in catalog order.
    pub fn apps(&self) -> impl Iterator<Item = AppLocation<'_>> {
        self.products.iter().flat_map(|product| {
            product
                .apps
                .iter()
                .map(move |app| AppLocation { product, app })
        })
    }

    /// The products whose local server listens on `port` by default.
    pub fn products_on_port(&self, port: u16) -> impl Iterator<Item = &Product> {
        self.products
            .iter()
            .filter(move |product| product.ports.contains(&port))
    }

    /// What the catalog holds, counted (see [`Stats`]).
    pub fn stats(&self) -> Stats {
        stats::count(&self.products)
    }
}

/// Why a name matched a domain rule, in words.
fn domain_reason(rule: &DomainRule) -> String {
    match (rule.kind, rule.tenant) {
        (DomainKind::Exact, _) => format!("domain is `{}`", rule.pattern),
        (DomainKind::Suffix, false) => format!("domain is `{}` or under it", rule.pattern),
        (DomainKind::Suffix, true) => format!(
            "domain is under `{}`; the label left of it names the tenant",
            rule.pattern
        ),
        (DomainKind::Wildcard, false) => format!("domain matches `{}`", rule.pattern),
        (DomainKind::Wildcard, true) => {
            format!("domain matches `{}`; `*` names the tenant", rule.pattern)
        }
    }
}

/// Catalog sizes are bounded by [`MAX_BUNDLE_BYTES`], far below `u32::MAX` entries.
/// `text` in lowercase, copied only if it has upper-case letters.
fn lowercase(text: &str) -> Cow<'_, str> {
    if text.bytes().any(|byte| byte.is_ascii_uppercase()) {
        Cow::Owned(text.to_ascii_lowercase())
    } else {
        Cow::Borrowed(text)
    }
}

fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}
