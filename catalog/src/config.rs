//! Config files of AI tools: where they live, and how a parsed document is read against the
//! catalog. The crate reads no files: the host sensor finds and parses them (JSON, JSONC, TOML
//! or YAML, all turned into a [`serde_json::Value`]) and asks these functions what they say.
//!
//! Keys are dotted paths (`permissions.defaultMode`). A document key that itself contains dots
//! (VS Code's flat `"chat.tools.autoApprove": true`) is found too: at each level the longest
//! run of segments that is a key is tried first. A `*` segment stands for every key of an
//! object or every element of an array (`projects.*.mcpServers` in `~/.claude.json`), and a
//! number for one array element.

use std::borrow::Cow;

use serde_json::Value;

use crate::model::{ConfigFile, ConfigSetting, Os, PATH_PLACEHOLDERS, SettingTest};

/// Longest dotted key a setting or MCP key may have.
const MAX_KEY: usize = 256;
/// Most segments a key may have; also bounds the work of a lookup.
const MAX_SEGMENTS: usize = 16;
/// Longest path in a data file.
const MAX_PATH: usize = 512;
/// Most values one lookup returns, so that a hostile document with huge arrays under a `*`
/// stays cheap.
const MAX_LOOKUP_VALUES: usize = 4096;

/// Where the placeholders of catalog paths point on the machine being scanned.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathVars<'a> {
    /// The user's home directory (`~`).
    pub home: Option<&'a str>,
    /// `%APPDATA%`, e.g. `C:\Users\u\AppData\Roaming`.
    pub appdata: Option<&'a str>,
    /// `%LOCALAPPDATA%`, e.g. `C:\Users\u\AppData\Local`.
    pub localappdata: Option<&'a str>,
    /// `%USERPROFILE%`, e.g. `C:\Users\u`.
    pub userprofile: Option<&'a str>,
    /// `%PROGRAMDATA%`, e.g. `C:\ProgramData`.
    pub programdata: Option<&'a str>,
}

/// Expands a catalog path's leading placeholder (`~`, `%APPDATA%`, ...). Absolute paths come
/// back as they are; `None` when the placeholder's value is unknown or the path is
/// project-relative (`./...`, see [`is_project_path`]), which the caller joins to a project
/// directory itself. A `*` in the result is left for the caller to expand.
pub fn expand_path(path: &str, vars: &PathVars<'_>) -> Option<String> {
    if is_project_path(path) {
        return None;
    }
    if let Some(rest) = path.strip_prefix('~') {
        return Some(format!("{}{rest}", vars.home?));
    }
    for (placeholder, value) in [
        ("%APPDATA%", vars.appdata),
        ("%LOCALAPPDATA%", vars.localappdata),
        ("%USERPROFILE%", vars.userprofile),
        ("%PROGRAMDATA%", vars.programdata),
    ] {
        if let Some(rest) = path.strip_prefix(placeholder) {
            return Some(format!("{}{rest}", value?));
        }
    }
    Some(path.to_owned())
}

/// Whether a catalog path is relative to a project directory (`./.mcp.json`).
pub fn is_project_path(path: &str) -> bool {
    path.starts_with("./") || path.starts_with(".\\")
}

/// Every value at a dotted key (see the module docs), in document order.
pub fn lookup_key<'d>(document: &'d Value, key: &str) -> Vec<&'d Value> {
    let segments: Vec<&str> = key.split('.').collect();
    let mut found = Vec::new();
    if segments.len() <= MAX_SEGMENTS {
        collect(document, &segments, &mut found);
    }
    found
}

fn collect<'d>(value: &'d Value, segments: &[&str], found: &mut Vec<&'d Value>) {
    if found.len() >= MAX_LOOKUP_VALUES {
        return;
    }
    let Some(first) = segments.first() else {
        found.push(value);
        return;
    };
    match value {
        Value::Object(map) => {
            if *first == "*" {
                for child in map.values() {
                    collect(child, &segments[1..], found);
                }
                return;
            }
            // Longest run of segments first, so `a.b` as one key wins over `a` then `b`.
            for take in (1..=segments.len()).rev() {
                let joined: Cow<'_, str> = if take == 1 {
                    Cow::Borrowed(first)
                } else {
                    Cow::Owned(segments[..take].join("."))
                };
                if let Some(child) = map.get(joined.as_ref()) {
                    collect(child, &segments[take..], found);
                }
            }
        }
        Value::Array(items) => {
            if *first == "*" {
                for item in items {
                    collect(item, &segments[1..], found);
                }
            } else if let Some(item) = first.parse::<usize>().ok().and_then(|at| items.get(at)) {
                collect(item, &segments[1..], found);
            }
        }
        _ => {}
    }
}

impl SettingTest {
    /// Whether one value passes the test.
    pub fn is_met_by(&self, value: &Value) -> bool {
        match self {
            SettingTest::IsTrue => *value == Value::Bool(true),
            SettingTest::Equals(wanted) => match value {
                Value::String(text) => text == wanted,
                Value::Bool(flag) => wanted == if *flag { "true" } else { "false" },
                Value::Number(number) => number.to_string() == *wanted,
                _ => false,
            },
            SettingTest::Contains(wanted) => match value {
                Value::String(text) => text.contains(wanted.as_str()),
                Value::Array(items) => items.iter().any(|item| item.as_str() == Some(wanted)),
                Value::Object(map) => map.contains_key(wanted.as_str()),
                _ => false,
            },
        }
    }
}

impl ConfigSetting {
    /// Whether the document sets this risky value (at any place the key reaches).
    pub fn is_raised_in(&self, document: &Value) -> bool {
        lookup_key(document, &self.key)
            .into_iter()
            .any(|value| self.test.is_met_by(value))
    }
}

/// One MCP server a config file lists.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServer<'d> {
    /// Its name: the map key, or the `name` field of a list element (else its position).
    pub name: Cow<'d, str>,
    /// Its definition (`command`, `args`, `url`, `env`, ...), as data.
    pub definition: &'d Value,
}

impl McpServer<'_> {
    /// The remote URL of a server reached over the network (`url`, `serverUrl` or `httpUrl`).
    pub fn url(&self) -> Option<&str> {
        ["url", "serverUrl", "httpUrl"]
            .iter()
            .find_map(|key| self.definition.get(key).and_then(Value::as_str))
    }
}

impl ConfigFile {
    /// The paths of this config file on one OS.
    pub fn paths_for(&self, os: Os) -> &[String] {
        self.paths.for_os(os)
    }

    /// The risky settings a parsed document of this file sets, in catalog order.
    pub fn raised_settings(&self, document: &Value) -> Vec<&ConfigSetting> {
        self.settings
            .iter()
            .filter(|setting| setting.is_raised_in(document))
            .collect()
    }

    /// The MCP servers a parsed document of this file lists (empty unless `kind = mcp`).
    pub fn mcp_servers<'d>(&self, document: &'d Value) -> Vec<McpServer<'d>> {
        let Some(key) = &self.mcp_key else {
            return Vec::new();
        };
        let mut servers = Vec::new();
        for list in lookup_key(document, key) {
            match list {
                Value::Object(map) => {
                    servers.extend(map.iter().map(|(name, definition)| McpServer {
                        name: Cow::Borrowed(name.as_str()),
                        definition,
                    }));
                }
                Value::Array(items) => {
                    for (at, definition) in items.iter().enumerate() {
                        let name = match definition.get("name").and_then(Value::as_str) {
                            Some(name) => Cow::Borrowed(name),
                            None => Cow::Owned(at.to_string()),
                        };
                        servers.push(McpServer { name, definition });
                    }
                }
                _ => {}
            }
        }
        servers
    }
}

/// Checks a dotted key of a data file.
pub(crate) fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("must be 1 to {MAX_KEY} bytes"));
    }
    let segments: Vec<&str> = key.split('.').collect();
    if segments.len() > MAX_SEGMENTS {
        return Err(format!("may have at most {MAX_SEGMENTS} segments"));
    }
    if segments.iter().any(|segment| segment.is_empty()) {
        return Err("has an empty segment (`..`, or a leading or trailing dot)".into());
    }
    if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(())
}

/// Checks a path of a data file for one OS (see [`crate::OsPaths`] for the forms allowed).
pub(crate) fn check_path(path: &str, os: Os) -> Result<(), String> {
    if path.is_empty() || path.len() > MAX_PATH {
        return Err(format!("must be 1 to {MAX_PATH} bytes"));
    }
    if path.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    if path.contains('$') {
        return Err("environment variables are not expanded: use `~` or a %PLACEHOLDER%".into());
    }
    if path.contains("**") {
        return Err("`**` is not allowed: `*` stands for part of one segment".into());
    }
    if path.split(['/', '\\']).any(|segment| segment == "..") {
        return Err("must not contain `..`".into());
    }
    let placeholder = PATH_PLACEHOLDERS
        .iter()
        .find(|placeholder| path.starts_with(**placeholder));
    let rest_has_percent = match placeholder {
        Some(placeholder) => path[placeholder.len()..].contains('%'),
        None => path.contains('%'),
    };
    if rest_has_percent {
        return Err(format!(
            "only a leading {} is expanded",
            PATH_PLACEHOLDERS.join(", ")
        ));
    }
    let is_home = path == "~" || path.starts_with("~/");
    let is_project = is_project_path(path);
    let is_valid = match os {
        Os::Linux | Os::Macos => {
            if placeholder.is_some() || path.contains('\\') {
                return Err(format!(
                    "a {} path uses `/` and no %PLACEHOLDER%",
                    os.as_str()
                ));
            }
            is_home || is_project || path.starts_with('/')
        }
        Os::Windows => {
            let bytes = path.as_bytes();
            let is_drive = bytes.len() >= 3
                && bytes[0].is_ascii_alphabetic()
                && bytes[1] == b':'
                && matches!(bytes[2], b'\\' | b'/');
            placeholder.is_some() || is_home || path.starts_with("~\\") || is_project || is_drive
        }
    };
    if is_valid {
        Ok(())
    } else {
        Err(format!(
            "must start with `~/`, `/`, `./` (inside a project) or, on Windows, {} or a drive",
            PATH_PLACEHOLDERS.join(", ")
        ))
    }
}

/// Checks a macOS bundle identifier (`com.openai.chat`).
pub(crate) fn check_bundle_id(id: &str) -> Result<(), String> {
    let valid = (3..=155).contains(&id.len())
        && id.contains('.')
        && id.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(())
    } else {
        Err("must be a reverse-DNS id such as `com.openai.chat`".into())
    }
}

/// Checks an IDE extension id (`publisher.extension`, or a JetBrains plugin id).
pub(crate) fn check_extension(id: &str) -> Result<(), String> {
    let valid = (2..=128).contains(&id.len())
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && !id.ends_with('.')
        && !id.contains("..")
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if valid {
        Ok(())
    } else {
        Err("must be 2 to 128 bytes of A-Z a-z 0-9 . - _ such as `publisher.extension`".into())
    }
}

#[cfg(test)]
mod tests;
