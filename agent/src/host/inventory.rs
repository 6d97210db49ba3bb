//! The file inventory: what AI tooling is installed and how it is configured, read from disk.
//!
//! * agent and MCP config files of every catalog product (`Catalog::config_locations`), in
//!   every user's home, in project directories under it (a directory with `.git`) and at
//!   system paths: risky settings and every MCP server (name, command or remote host,
//!   transport, auto-approve/trust flags; remote and unrecognised servers flagged);
//! * installed desktop apps (`Catalog::apps`), `.desktop` launchers, and IDE extensions
//!   (`~/.vscode/extensions`, `~/.cursor/extensions`, ...);
//! * local model files (Ollama and LM Studio stores, Hugging Face cache, loose `*.gguf` and
//!   `*.safetensors`), summarised by count and size, never opened.
//!
//! Everything is read under a root (`/` on the live system, `scan --root DIR` otherwise), with
//! [`super::files`]: capped, no symlink out of the home (or root), never executed. A file that
//! cannot be used is an [`InventoryProblem`], counted and reported, never a crash.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;
use shadowai_catalog::{Catalog, ConfigFile, Os, PathVars, Product, expand_path, is_project_path};

use super::files::{self, FileProblem};
use crate::detect::{Detection, Evidence, McpServer};
use crate::redact;

/// Most homes scanned.
const MAX_HOMES: usize = 4096;
/// Most entries looked at in one directory when expanding a `*` or listing extensions.
const MAX_DIR_ENTRIES: usize = 4096;
/// Most entries the home walk looks at, per home.
const MAX_WALK_ENTRIES: usize = 200_000;
/// How deep the home walk goes (projects, loose model files).
const MAX_WALK_DEPTH: usize = 6;
/// Most project directories per home.
const MAX_PROJECTS: usize = 1024;
/// Smallest loose model file counted.
const MIN_MODEL_FILE: u64 = 1024 * 1024;
/// Longest value kept in a config detection.
const MAX_VALUE: usize = 1024;

/// Where IDEs of the VS Code family keep their extensions, under a home.
pub const EXTENSION_DIRS: &[&str] = &[
    ".vscode/extensions",
    ".vscode-insiders/extensions",
    ".vscode-server/extensions",
    ".vscode-oss/extensions",
    ".cursor/extensions",
    ".cursor-server/extensions",
    ".windsurf/extensions",
    ".windsurf-server/extensions",
    ".kiro/extensions",
    ".trae/extensions",
    ".positron/extensions",
    ".antigravity/extensions",
];

/// Local model stores, under a home (`~/`) or absolute.
pub const MODEL_STORES: &[(&str, &str)] = &[
    ("ollama", "~/.ollama/models"),
    ("ollama", "/usr/share/ollama/.ollama/models"),
    ("ollama", "/var/lib/ollama/models"),
    ("lmstudio", "~/.lmstudio/models"),
    ("lmstudio", "~/.cache/lm-studio/models"),
    ("huggingface", "~/.cache/huggingface/hub"),
    ("gpt4all", "~/.local/share/nomic.ai/GPT4All"),
    ("jan", "~/jan/models"),
    ("llamafile", "~/.llamafile"),
];

/// Directories the home walk never enters.
const WALK_SKIP: &[&str] = &[
    "node_modules",
    ".git",
    "proc",
    ".cache",
    "snap",
    ".local",
    ".npm",
];

/// A file the inventory could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryProblem {
    /// The file, as seen from the scanned system.
    pub path: String,
    /// What is wrong.
    pub problem: FileProblem,
}

/// Local model files found in one store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStore {
    /// `ollama`, `lmstudio`, `huggingface`, ..., or `loose` for files found by extension.
    pub kind: &'static str,
    /// The store's directory, as seen from the scanned system.
    pub path: String,
    /// Files counted.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
}

/// What one inventory pass found.
#[derive(Debug, Default)]
pub struct Inventory {
    /// Config, MCP, app and extension detections.
    pub detections: Vec<Detection>,
    /// Files that could not be used.
    pub problems: Vec<InventoryProblem>,
    /// Local model stores with at least one file.
    pub models: Vec<ModelStore>,
    /// Directories worth watching for changes (the parents of config files that exist).
    pub watch: Vec<PathBuf>,
    /// Config files read.
    pub files_read: usize,
    /// Homes scanned.
    pub homes: usize,
}

/// One home directory.
#[derive(Debug, Clone)]
struct Home {
    /// Where it is on the scanning machine (under the root).
    path: PathBuf,
}

/// Runs one inventory pass with the filesystem rooted at `root` (`/` for the live system).
pub fn scan(catalog: &Catalog, root: &Path, now_ms: i64) -> Inventory {
    let mut inventory = Inventory::default();
    let root = files::real_dir(root);
    let homes = find_homes(&root);
    inventory.homes = homes.len();
    let os = current_os();
    let mut ctx = Context {
        catalog,
        root: &root,
        now_ms,
        inventory: &mut inventory,
        seen_files: HashSet::new(),
    };
    let mut projects: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut loose = ModelStore {
        kind: "loose",
        path: String::new(),
        files: 0,
        bytes: 0,
    };
    for home in &homes {
        let mut found = walk_home(&home.path, &mut loose);
        found.truncate(MAX_PROJECTS);
        projects.extend(
            found
                .into_iter()
                .map(|project| (project, home.path.clone())),
        );
    }
    for location in catalog.config_locations() {
        for pattern in location.config.paths_for(os) {
            if is_project_path(pattern) {
                for (project, home) in &projects {
                    let relative = pattern.trim_start_matches("./").trim_start_matches(".\\");
                    for path in expand_glob(&project.join(relative)) {
                        ctx.config_file(location.product, location.config, &path, home);
                    }
                }
            } else if pattern.starts_with('~') {
                for home in &homes {
                    let home_text = home.path.to_string_lossy();
                    let vars = PathVars {
                        home: Some(&home_text),
                        ..PathVars::default()
                    };
                    if let Some(expanded) = expand_path(pattern, &vars) {
                        for path in expand_glob(Path::new(&expanded)) {
                            ctx.config_file(location.product, location.config, &path, &home.path);
                        }
                    }
                }
            } else if let Some(under_root) = under(&root, pattern) {
                for path in expand_glob(&under_root) {
                    ctx.config_file(location.product, location.config, &path, &root);
                }
            }
        }
    }
    for app in catalog.apps() {
        for pattern in app.app.paths.for_os(os) {
            let candidates: Vec<PathBuf> = if pattern.starts_with('~') {
                homes
                    .iter()
                    .filter_map(|home| {
                        let home_text = home.path.to_string_lossy();
                        let vars = PathVars {
                            home: Some(&home_text),
                            ..PathVars::default()
                        };
                        expand_path(pattern, &vars).map(PathBuf::from)
                    })
                    .collect()
            } else {
                under(&root, pattern).into_iter().collect()
            };
            for path in candidates.iter().flat_map(|p| expand_glob(p)) {
                if std::fs::symlink_metadata(&path).is_ok() {
                    let app_id = app
                        .app
                        .macos_bundle_id
                        .clone()
                        .unwrap_or_else(|| app.app.name.clone());
                    ctx.app(
                        app.product,
                        &app.app.id,
                        &app_id,
                        &path,
                        "",
                        "installed app",
                    );
                }
            }
        }
    }
    for home in &homes {
        for dir in EXTENSION_DIRS {
            ctx.extensions(&home.path.join(dir));
        }
    }
    for dir in ["usr/share/applications", "usr/local/share/applications"] {
        ctx.desktop_entries(&root.join(dir));
    }
    for home in &homes {
        ctx.desktop_entries(&home.path.join(".local/share/applications"));
    }
    for (kind, pattern) in MODEL_STORES {
        let bases: Vec<PathBuf> = if let Some(rest) = pattern.strip_prefix("~/") {
            homes.iter().map(|home| home.path.join(rest)).collect()
        } else {
            under(&root, pattern).into_iter().collect()
        };
        for base in bases {
            let mut store = ModelStore {
                kind,
                path: shown(&root, &base),
                files: 0,
                bytes: 0,
            };
            let mut budget = MAX_WALK_ENTRIES;
            count_files(&base, 0, &mut budget, &mut |size| {
                store.files += 1;
                store.bytes = store.bytes.saturating_add(size);
            });
            if store.files > 0 {
                inventory.models.push(store);
            }
        }
    }
    if loose.files > 0 {
        loose.path = "(home directories)".into();
        inventory.models.push(loose);
    }
    inventory.watch.sort();
    inventory.watch.dedup();
    inventory
}

struct Context<'a> {
    catalog: &'a Catalog,
    root: &'a Path,
    now_ms: i64,
    inventory: &'a mut Inventory,
    seen_files: HashSet<PathBuf>,
}

impl Context<'_> {
    fn problem(&mut self, path: &Path, problem: FileProblem) {
        self.inventory.problems.push(InventoryProblem {
            path: shown(self.root, path),
            problem,
        });
    }

    fn config_file(&mut self, product: &Product, config: &ConfigFile, path: &Path, base: &Path) {
        // Two products may list the same file (`~/.claude.json`): read it once per config.
        if !self.seen_files.insert(path.join(&config.id)) {
            return;
        }
        let bytes = match files::read_capped(path, base) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(problem) => {
                self.problem(path, problem);
                return;
            }
        };
        if let Some(parent) = path.parent() {
            self.inventory.watch.push(parent.to_path_buf());
        }
        self.inventory.files_read += 1;
        let document = match files::parse(&bytes, config.format) {
            Ok(document) => document,
            Err(problem) => {
                self.problem(path, problem);
                return;
            }
        };
        let shown_path = shown(self.root, path);
        for setting in config.raised_settings(&document) {
            let value = shadowai_catalog::lookup_key(&document, &setting.key)
                .into_iter()
                .find(|value| setting.test.is_met_by(value))
                .map(value_text)
                .unwrap_or_default();
            self.inventory.detections.push(Detection {
                name: product.name.clone(),
                risk: setting.risk.clone(),
                confidence: "high".into(),
                rule: setting.id.clone(),
                reason: format!(
                    "{shown_path} sets `{}` ({} severity): {}",
                    setting.key,
                    setting.severity.as_str(),
                    setting.explanation
                ),
                ..Detection::of_product(
                    product,
                    self.catalog.version(),
                    self.now_ms,
                    Evidence::Config {
                        path: shown_path.clone(),
                        setting: setting.key.clone(),
                        value,
                        mcp: None,
                    },
                )
            });
        }
        for server in config.mcp_servers(&document) {
            let detection = self.mcp_server(product, config, &shown_path, &server);
            self.inventory.detections.push(detection);
        }
    }

    fn mcp_server(
        &self,
        product: &Product,
        config: &ConfigFile,
        shown_path: &str,
        server: &shadowai_catalog::McpServer<'_>,
    ) -> Detection {
        let definition = server.definition;
        let name = redact::cap(&server.name, 128).0.to_owned();
        let mut risk = Vec::new();
        let kind = definition
            .get("type")
            .or(definition.get("transport"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let url = server
            .url()
            .or_else(|| definition.get("uri").and_then(Value::as_str));
        let builtin = matches!(kind, "builtin" | "platform" | "frontend" | "inline_python");
        let (target, transport, value, known) = if builtin {
            let value = format!("{kind} extension");
            (
                String::new(),
                "builtin",
                value,
                Some((format!("a {kind} extension"), String::new())),
            )
        } else if let Some(url) = url {
            let host = url_host(url).unwrap_or_default();
            let transport = if kind.contains("sse") || url.trim_end_matches('/').ends_with("/sse") {
                "sse"
            } else {
                "http"
            };
            risk.push("mcp_remote".to_owned());
            let value = redact::redact_text(url);
            (
                host,
                transport,
                redact::cap(&value, MAX_VALUE).0.to_owned(),
                None,
            )
        } else {
            let command = definition
                .get("command")
                .or(definition.get("cmd"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut args: Vec<String> = vec![command.to_owned()];
            if let Some(Value::Array(list)) = definition.get("args") {
                args.extend(
                    list.iter()
                        .take(64)
                        .filter_map(Value::as_str)
                        .map(str::to_owned),
                );
            }
            let line = redact::redact_cmdline(&args);
            let known = self.known_mcp_server(command, &args);
            let target = redact::cap(&line, 512).0.to_owned();
            (
                target,
                "stdio",
                redact::cap(&line, MAX_VALUE).0.to_owned(),
                known,
            )
        };
        let trusted = [
            "autoApprove",
            "alwaysAllow",
            "trust",
            "auto_approve",
            "autoapprove",
        ]
        .iter()
        .filter_map(|key| definition.get(*key))
        .any(|flag| match flag {
            Value::Bool(on) => *on,
            Value::Array(items) => !items.is_empty(),
            Value::String(text) => !text.is_empty() && text != "false",
            _ => false,
        });
        if trusted {
            risk.push("mcp_auto_trust".to_owned());
        }
        let remote = risk.iter().any(|r| r == "mcp_remote");
        if known.is_none() && !remote {
            risk.push("mcp_unknown_server".to_owned());
        }
        risk.sort();
        let mut reason = format!(
            "{shown_path} declares the MCP server `{}` ({transport})",
            redact::escape_for_terminal(&name)
        );
        match (&known, remote) {
            (Some((known_name, rule)), _) if rule.is_empty() => {
                reason.push_str(&format!(", {known_name} of the client"))
            }
            (Some((known_name, rule)), _) => {
                reason.push_str(&format!(", recognised as {known_name} ({rule})"))
            }
            (None, true) => reason.push_str(&format!(", reached over the network at {target}")),
            (None, false) => reason.push_str(", not a server the catalog knows"),
        }
        if trusted {
            reason.push_str("; its tools run without confirmation");
        }
        Detection {
            name: name.clone(),
            risk,
            confidence: "high".into(),
            rule: format!("{}/mcp-server", config.id),
            reason,
            ..Detection::of_product(
                product,
                self.catalog.version(),
                self.now_ms,
                Evidence::Config {
                    path: shown_path.to_owned(),
                    setting: format!(
                        "{}.{}",
                        config.mcp_key.as_deref().unwrap_or("mcpServers"),
                        name
                    ),
                    value,
                    mcp: Some(McpServer {
                        name,
                        target,
                        transport: transport.to_owned(),
                    }),
                },
            )
        }
    }

    /// The catalog MCP server a configured command starts, as (name, rule). Launchers run the
    /// package under a runtime (`npx pkg` is `node …/npx pkg`), so they are matched as such.
    fn known_mcp_server(&self, command: &str, args: &[String]) -> Option<(String, String)> {
        let program = command.rsplit(['/', '\\']).next().unwrap_or(command);
        let runtime = match program {
            "npx" | "bunx" | "pnpx" | "npm" | "pnpm" | "yarn" => Some("node"),
            "uvx" | "uv" | "pipx" => Some("python"),
            _ => None,
        };
        let mut candidates = vec![(program.to_owned(), command.to_owned(), args.to_vec())];
        if let Some(runtime) = runtime {
            let mut with_runtime = vec![runtime.to_owned()];
            with_runtime.extend(args.iter().cloned());
            candidates.push((runtime.to_owned(), String::new(), with_runtime));
        }
        candidates.iter().find_map(|(name, exe, args)| {
            let facts = shadowai_catalog::ProcessFacts { name, exe, args };
            self.catalog
                .match_process(&facts)
                .filter(|found| found.product.category == shadowai_catalog::Category::McpServer)
                .map(|found| (found.product.name.clone(), found.rule.to_owned()))
        })
    }

    fn app(
        &mut self,
        product: &Product,
        rule: &str,
        app_id: &str,
        path: &Path,
        version: &str,
        what: &str,
    ) {
        let shown_path = shown(self.root, path);
        self.inventory.detections.push(Detection {
            name: product.name.clone(),
            risk: Vec::new(),
            confidence: "high".into(),
            rule: rule.to_owned(),
            reason: format!("{what} {} at {shown_path}", redact::cap(app_id, 128).0),
            ..Detection::of_product(
                product,
                self.catalog.version(),
                self.now_ms,
                Evidence::App {
                    app_id: redact::cap(app_id, 256).0.to_owned(),
                    path: shown_path,
                    version: redact::cap(version, 64).0.to_owned(),
                },
            )
        });
    }

    fn extensions(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        self.inventory.watch.push(dir.to_path_buf());
        for entry in entries.flatten().take(MAX_DIR_ENTRIES) {
            let folder = entry.file_name();
            let folder = folder.to_string_lossy();
            let Some((id, version)) = split_extension_folder(&folder) else {
                continue;
            };
            if let Some(found) = self.catalog.extension(id) {
                let rule = found.extension.id.clone();
                self.app(
                    found.product,
                    &rule,
                    id,
                    &entry.path(),
                    version,
                    "IDE extension",
                );
            }
        }
    }

    fn desktop_entries(&mut self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten().take(MAX_DIR_ENTRIES) {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("desktop") {
                continue;
            }
            let bytes = match files::read_capped(&path, self.root) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => continue,
                Err(problem) => {
                    self.problem(&path, problem);
                    continue;
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            let Some(exec) = text
                .lines()
                .find_map(|line| line.strip_prefix("Exec="))
                .and_then(|exec| exec.split_ascii_whitespace().next())
            else {
                continue;
            };
            let exec = exec.trim_matches('"');
            let name = exec.rsplit('/').next().unwrap_or(exec);
            let args = vec![exec.to_owned()];
            let facts = shadowai_catalog::ProcessFacts {
                name,
                exe: exec,
                args: &args,
            };
            if let Some(found) = self.catalog.match_process(&facts) {
                let rule = found.rule.to_owned();
                let file_name = entry.file_name().to_string_lossy().into_owned();
                self.app(
                    found.product,
                    &rule,
                    &file_name,
                    &path,
                    "",
                    "desktop launcher",
                );
            }
        }
    }
}

/// `publisher.name-1.2.3[-platform]` → (`publisher.name`, `1.2.3`).
pub fn split_extension_folder(folder: &str) -> Option<(&str, &str)> {
    let dot = folder.find('.')?;
    let bytes = folder.as_bytes();
    let dash = (dot..folder.len()).find(|&at| {
        bytes.get(at) == Some(&b'-') && bytes.get(at + 1).is_some_and(u8::is_ascii_digit)
    })?;
    let id = folder.get(..dash)?;
    let rest = folder.get(dash + 1..)?;
    let version = rest.split('-').next().unwrap_or(rest);
    Some((id, version))
}

/// A JSON value as text for a detection: strings as they are, others as JSON; redacted, capped.
fn value_text(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let redacted = redact::redact_text(&text);
    redact::cap(&redacted, MAX_VALUE).0.to_owned()
}

/// The host of a URL, without user info or port; `None` when there is none.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    (!host.is_empty()).then(|| redact::cap(host, 253).0.to_ascii_lowercase())
}

/// An absolute catalog path placed under the root; `None` for paths with `..`.
fn under(root: &Path, absolute: &str) -> Option<PathBuf> {
    let relative = Path::new(absolute);
    if relative
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return None;
    }
    let relative = relative.strip_prefix("/").unwrap_or(relative);
    Some(root.join(relative))
}

/// How a path looks on the scanned system: the root stripped, so `/home/alice/.claude.json`.
fn shown(root: &Path, path: &Path) -> String {
    let text = match path.strip_prefix(root) {
        Ok(relative) if root != Path::new("/") => format!("/{}", relative.display()),
        _ => path.display().to_string(),
    };
    redact::cap(&text, 4096).0.to_owned()
}

/// Expands `*` inside path segments (one level each); paths without `*` come back as they are.
fn expand_glob(path: &Path) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::new()];
    for component in path.components() {
        let text = component.as_os_str().to_string_lossy();
        if !text.contains('*') {
            for path in &mut current {
                path.push(component.as_os_str());
            }
            continue;
        }
        let mut next = Vec::new();
        for base in &current {
            let Ok(entries) = std::fs::read_dir(base) else {
                continue;
            };
            for entry in entries.flatten().take(MAX_DIR_ENTRIES) {
                let name = entry.file_name();
                if wildcard_match(&text, &name.to_string_lossy()) {
                    next.push(base.join(name));
                }
            }
        }
        next.sort();
        current = next;
    }
    current
}

/// `*` matches any run of characters within one segment.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return true;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (index, part) in parts.iter().enumerate() {
        if index + 1 == parts.len() {
            return rest.len() >= part.len() && rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.is_empty()
}

/// Home directories under the root: from `etc/passwd` (users with a real home), `home/*` and
/// `root`, each once.
fn find_homes(root: &Path) -> Vec<Home> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(Some(bytes)) = files::read_capped(&root.join("etc/passwd"), root) {
        for line in String::from_utf8_lossy(&bytes).lines() {
            let fields: Vec<&str> = line.split(':').collect();
            let (Some(uid), Some(home)) = (fields.get(2), fields.get(5)) else {
                continue;
            };
            let uid: u32 = uid.parse().unwrap_or(u32::MAX);
            let is_person = uid == 0 || (1000..60_000).contains(&uid);
            if is_person && home.starts_with('/') && *home != "/" {
                candidates.extend(under(root, home));
            }
        }
    }
    for dir in ["home", "Users"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            candidates.extend(entries.flatten().take(MAX_HOMES).map(|e| e.path()));
        }
    }
    candidates.push(root.join("root"));
    let mut seen = HashSet::new();
    let mut homes = Vec::new();
    for candidate in candidates {
        let Ok(meta) = std::fs::symlink_metadata(&candidate) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let real = files::real_dir(&candidate);
        if !real.starts_with(root) || !seen.insert(real.clone()) {
            continue;
        }
        homes.push(Home { path: real });
        if homes.len() >= MAX_HOMES {
            break;
        }
    }
    homes
}

/// Walks a home (not following symlinks, bounded) for project directories (holding `.git`)
/// and loose model files.
fn walk_home(home: &Path, loose: &mut ModelStore) -> Vec<PathBuf> {
    let mut projects = Vec::new();
    let mut budget = MAX_WALK_ENTRIES;
    let mut stack = vec![(home.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if budget == 0 {
                return projects;
            }
            budget -= 1;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                if name == ".git" && depth > 0 && projects.len() < MAX_PROJECTS {
                    projects.push(dir.clone());
                }
                if depth < MAX_WALK_DEPTH && !WALK_SKIP.contains(&name.as_ref()) {
                    stack.push((entry.path(), depth + 1));
                }
            } else if kind.is_file() && is_model_file(&name) {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                if size >= MIN_MODEL_FILE {
                    loose.files += 1;
                    loose.bytes = loose.bytes.saturating_add(size);
                }
            }
        }
    }
    projects
}

fn is_model_file(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".gguf") || lower.ends_with(".safetensors") || lower.ends_with(".ggml")
}

/// Counts regular files under `dir` (no symlinks followed), within a budget of entries.
fn count_files(dir: &Path, depth: usize, budget: &mut usize, found: &mut impl FnMut(u64)) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            count_files(&entry.path(), depth + 1, budget, found);
        } else if kind.is_file() {
            found(entry.metadata().map(|m| m.len()).unwrap_or(0));
        }
    }
}

/// The OS whose catalog paths apply.
fn current_os() -> Os {
    if cfg!(target_os = "macos") {
        Os::Macos
    } else if cfg!(windows) {
        Os::Windows
    } else {
        Os::Linux
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_folders_split_into_id_and_version() {
        assert_eq!(
            split_extension_folder("github.copilot-chat-0.22.4"),
            Some(("github.copilot-chat", "0.22.4"))
        );
        assert_eq!(
            split_extension_folder("saoudrizwan.claude-dev-3.1.0-linux-x64"),
            Some(("saoudrizwan.claude-dev", "3.1.0"))
        );
        assert_eq!(split_extension_folder("extensions.json"), None);
        assert_eq!(split_extension_folder("-1"), None);
    }

    #[test]
    fn url_hosts_lose_credentials_and_ports() {
        assert_eq!(
            url_host("https://user:pw@MCP.Example.com:8443/sse").as_deref(),
            Some("mcp.example.com")
        );
        assert_eq!(url_host("http://[::1]:3000/mcp").as_deref(), Some("::1"));
        assert_eq!(url_host("https://").as_deref(), None);
    }

    #[test]
    fn wildcards_match_within_a_segment() {
        assert!(wildcard_match("*.yaml", "github.yaml"));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("*.yaml", "github.json"));
        assert!(wildcard_match("*", "anything"));
        assert!(!wildcard_match("a*", "b"));
    }
}
