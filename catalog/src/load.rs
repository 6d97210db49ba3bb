//! Reading and validating catalog data files.
//!
//! The TOML shapes below are private: they carry source positions (`Spanned`) so that every
//! problem names its file and line, and are turned into the public model once validated. All
//! problems of all files are collected, so that a contributor sees every mistake at once.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::config;
use crate::domain;
use crate::error::Problem;
use crate::model::{
    App, Category, Confidence, ConfigFile, ConfigFormat, ConfigKind, ConfigSetting, DomainKind,
    DomainRule, ExePatterns, Extension, Os, OsPaths, ProcessRule, Product, RiskyFlag, Runtime,
    SettingTest, Severity, is_known_risk,
};
use crate::overlap;
use crate::process;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    product: Vec<Spanned<RawProduct>>,
    #[serde(default)]
    visibility: Option<Spanned<RawVisibility>>,
}

/// `[visibility]`: names behind which the network sensor goes blind (see [`Visibility`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVisibility {
    #[serde(default)]
    doh_resolvers: Vec<Spanned<String>>,
    #[serde(default)]
    ech_public_names: Vec<Spanned<String>>,
    sources: Spanned<Vec<String>>,
    verified: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProduct {
    id: Spanned<String>,
    vendor: Spanned<String>,
    name: Spanned<String>,
    category: Category,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    domains: Vec<Spanned<RawDomain>>,
    #[serde(default)]
    process: Vec<Spanned<RawProcess>>,
    #[serde(default)]
    risky_flag: Vec<Spanned<RawRiskyFlag>>,
    #[serde(default)]
    config: Vec<Spanned<RawConfig>>,
    #[serde(default)]
    app: Vec<Spanned<RawApp>>,
    #[serde(default)]
    extensions: Vec<Spanned<String>>,
    #[serde(default)]
    ports: Vec<u16>,
    sources: Spanned<Vec<String>>,
    verified: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    #[serde(default)]
    exact: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    wildcard: Option<String>,
    #[serde(default)]
    tenant: bool,
    #[serde(default)]
    plan: Option<String>,
    #[serde(default)]
    confidence: Option<Confidence>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    #[serde(default)]
    runtime: Option<Runtime>,
    #[serde(default)]
    exe: RawExe,
    #[serde(default)]
    cmdline: Vec<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    args_any: Vec<String>,
    #[serde(default)]
    confidence: Option<Confidence>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExe {
    #[serde(default)]
    linux: Vec<Spanned<String>>,
    #[serde(default)]
    macos: Vec<Spanned<String>>,
    #[serde(default)]
    windows: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRiskyFlag {
    flag: String,
    #[serde(default)]
    value: Option<String>,
    risk: Vec<String>,
    severity: Severity,
    explanation: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    id: String,
    kind: ConfigKind,
    format: ConfigFormat,
    #[serde(default)]
    paths: RawPaths,
    #[serde(default)]
    mcp_key: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    setting: Vec<Spanned<RawSetting>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    #[serde(default)]
    linux: Vec<String>,
    #[serde(default)]
    macos: Vec<String>,
    #[serde(default)]
    windows: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSetting {
    id: String,
    key: String,
    #[serde(default)]
    equals: Option<String>,
    #[serde(default)]
    is_true: Option<bool>,
    #[serde(default)]
    contains: Option<String>,
    risk: Vec<String>,
    severity: Severity,
    explanation: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    id: String,
    #[serde(default)]
    macos_bundle_id: Option<String>,
    #[serde(default)]
    paths: RawPaths,
}

/// Longest display string (vendor, product name) the wire contract accepts.
const MAX_DISPLAY: usize = 128;
/// Unit of the size limit for compiled regex sets (each set may use 16 of them).
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Lines of the regexes of one process rule: each `cmdline` pattern, and each exe glob per OS
/// (Linux, macOS, Windows), in the rule's order. Errors found only when the regex sets are
/// compiled (`ProcessIndex::build`) are reported at these lines.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegexLines {
    pub(crate) cmdline: Vec<usize>,
    pub(crate) exe: [Vec<usize>; 3],
}

/// [`RegexLines`] of every process rule, by product and rule.
pub(crate) type CatalogRegexLines = Vec<Vec<RegexLines>>;

/// The file and line of a regex that `ProcessIndex::build` could not compile.
pub(crate) fn regex_problem(
    products: &[Product],
    lines: &CatalogRegexLines,
    error: process::RegexError,
) -> Problem {
    let file = products
        .get(error.product)
        .map_or_else(|| "data/*.toml".to_owned(), |product| product.file.clone());
    let rule_lines = lines
        .get(error.product)
        .and_then(|rules| rules.get(error.rule));
    let line = rule_lines.and_then(|rule| match error.pattern {
        process::PatternAt::Cmdline(index) => rule.cmdline.get(index).copied(),
        process::PatternAt::Exe { os, glob } => {
            rule.exe.get(os).and_then(|globs| globs.get(glob)).copied()
        }
    });
    Problem {
        file,
        line,
        message: error.message,
    }
}

/// Reads every file and validates the whole set. `files` are `(name, content)` pairs. Also
/// returns where each process rule's regexes were written.
pub(crate) fn load_files(
    files: &[(String, String)],
) -> Result<(Vec<Product>, CatalogRegexLines, Visibility), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut located = Vec::new();
    let mut visibility = Visibility::default();
    for (file, content) in files {
        let mut checker = Checker {
            file,
            content,
            newlines: content
                .bytes()
                .enumerate()
                .filter_map(|(at, byte)| (byte == b'\n').then_some(at))
                .collect(),
            problems: &mut problems,
        };
        checker.read(&mut located, &mut visibility);
    }
    check_across_files(&located, &mut problems);
    if problems.is_empty() {
        let (products, regex_lines) = located
            .into_iter()
            .map(|entry| (entry.product, entry.regex_lines))
            .unzip();
        Ok((products, regex_lines, visibility))
    } else {
        Err(problems)
    }
}

/// Names behind which the network sensor goes blind, from the catalog's `[visibility]` tables:
/// public DNS-over-HTTPS resolvers (DNS names leave the host encrypted) and the public names of
/// Encrypted Client Hello fronts (the real server name is hidden). Lowercase, no trailing dot.
#[derive(Debug, Clone, Default)]
pub struct Visibility {
    /// Host names of public DoH resolvers.
    pub doh_resolvers: std::collections::BTreeSet<String>,
    /// Client-facing (outer SNI) names of ECH providers.
    pub ech_public_names: std::collections::BTreeSet<String>,
}

/// Where each product, domain rule and extension was declared, for cross-file checks.
struct Located {
    product: Product,
    id_line: usize,
    domain_lines: Vec<usize>,
    extension_lines: Vec<usize>,
    regex_lines: Vec<RegexLines>,
}

struct Checker<'a> {
    file: &'a str,
    content: &'a str,
    /// Offsets of every `\n`, so that a line number is a binary search, not a scan of the
    /// file for every entry.
    newlines: Vec<usize>,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn read(&mut self, out: &mut Vec<Located>, visibility: &mut Visibility) {
        let raw: RawFile = match toml::from_str(self.content) {
            Ok(raw) => raw,
            Err(error) => {
                let line = error.span().map(|span| self.line_of(span.start));
                self.problems.push(Problem {
                    file: self.file.to_owned(),
                    line,
                    message: error.message().trim().to_owned(),
                });
                return;
            }
        };
        if raw.product.is_empty() && raw.visibility.is_none() {
            self.problem(
                0..0,
                "file declares no [[product]] (nor [visibility])".to_owned(),
            );
        }
        if let Some(raw_visibility) = raw.visibility {
            self.visibility(raw_visibility, visibility);
        }
        for product in raw.product {
            let span = product.span();
            if let Some(located) = self.product(product.into_inner(), span) {
                out.push(located);
            }
        }
    }

    fn product(&mut self, raw: RawProduct, span: Range<usize>) -> Option<Located> {
        let before = self.problems.len();
        let id = raw.id.get_ref().clone();
        if !is_product_id(&id) {
            self.problem(
                raw.id.span(),
                format!("product id `{id}` must look like `vendor.product` (a-z, 0-9, `-`)"),
            );
        }
        self.display_string(&raw.vendor, "vendor");
        self.display_string(&raw.name, "name");
        self.sources(&raw.sources, &format!("product `{id}`"));
        self.verified(&raw.verified);
        if raw.ports.contains(&0) {
            self.problem(span.clone(), "port 0 is not a listening port".to_owned());
        }
        let has_signal = !raw.domains.is_empty()
            || !raw.process.is_empty()
            || !raw.config.is_empty()
            || !raw.app.is_empty()
            || !raw.extensions.is_empty();
        if !has_signal {
            self.problem(
                span.clone(),
                format!(
                    "product `{id}` has neither domains nor process rules (nor configs, apps or extensions)"
                ),
            );
        }

        let has_process_rules = !raw.process.is_empty();
        let has_risky_flags = !raw.risky_flag.is_empty();
        let prefix = format!("{}#{id}", self.file);
        let mut domain_lines = Vec::new();
        let mut domains = Vec::new();
        for entry in raw.domains {
            let line = self.line_of(entry.span().start);
            if let Some(rule) = self.domain(&prefix, entry) {
                domains.push(rule);
                domain_lines.push(line);
            }
        }
        let mut processes: Vec<ProcessRule> = Vec::new();
        let mut regex_lines = Vec::new();
        for entry in raw.process {
            let span = entry.span();
            if let Some((rule, lines)) = self.process(&prefix, entry.into_inner(), span.clone()) {
                if processes.iter().any(|other| other.name == rule.name) {
                    self.problem(span, format!("duplicate process rule id `{}`", rule.name));
                } else {
                    processes.push(rule);
                    regex_lines.push(lines);
                }
            }
        }
        let mut risky_flags: Vec<RiskyFlag> = Vec::new();
        for entry in raw.risky_flag {
            let span = entry.span();
            if let Some(flag) = self.risky_flag(&prefix, entry.into_inner(), span.clone()) {
                if risky_flags.iter().any(|other| other.id == flag.id) {
                    self.problem(span, format!("duplicate risky flag `{}`", flag.id));
                } else {
                    risky_flags.push(flag);
                }
            }
        }
        // Risky flags are looked for in a matched process's arguments: without a process rule
        // they could never fire.
        if has_risky_flags && !has_process_rules {
            self.problem(
                span,
                format!("product `{id}` has risky flags but no process rule"),
            );
        }
        let mut configs: Vec<ConfigFile> = Vec::new();
        for entry in raw.config {
            let span = entry.span();
            if let Some(file) = self.config(&prefix, entry.into_inner(), span.clone()) {
                if configs.iter().any(|other| other.name == file.name) {
                    self.problem(span, format!("duplicate config id `{}`", file.name));
                } else {
                    configs.push(file);
                }
            }
        }
        let mut apps: Vec<App> = Vec::new();
        for entry in raw.app {
            let span = entry.span();
            if let Some(app) = self.app(&prefix, entry.into_inner(), span.clone()) {
                if apps.iter().any(|other| other.name == app.name) {
                    self.problem(span, format!("duplicate app id `{}`", app.name));
                } else {
                    apps.push(app);
                }
            }
        }
        let mut extensions: Vec<Extension> = Vec::new();
        let mut extension_lines = Vec::new();
        for entry in raw.extensions {
            let span = entry.span();
            let extension = entry.into_inner();
            if let Err(reason) = config::check_extension(&extension) {
                self.problem(span, format!("extension `{extension}`: {reason}"));
                continue;
            }
            if extensions
                .iter()
                .any(|other| other.extension.eq_ignore_ascii_case(&extension))
            {
                self.problem(span, format!("extension `{extension}` is listed twice"));
                continue;
            }
            extension_lines.push(self.line_of(span.start));
            extensions.push(Extension {
                id: format!("{prefix}/extension/{extension}"),
                extension,
            });
        }
        if self.problems.len() > before {
            return None;
        }
        Some(Located {
            id_line: self.line_of(raw.id.span().start),
            product: Product {
                id,
                vendor: raw.vendor.into_inner(),
                name: raw.name.into_inner(),
                category: raw.category,
                summary: raw.summary,
                domains,
                processes,
                risky_flags,
                configs,
                apps,
                extensions,
                ports: raw.ports,
                sources: raw.sources.into_inner(),
                verified: raw.verified.into_inner(),
                file: self.file.to_owned(),
            },
            domain_lines,
            extension_lines,
            regex_lines,
        })
    }

    fn visibility(&mut self, raw: Spanned<RawVisibility>, out: &mut Visibility) {
        let span = raw.span();
        let raw = raw.into_inner();
        self.sources(&raw.sources, "[visibility]");
        self.verified(&raw.verified);
        if raw.doh_resolvers.is_empty() && raw.ech_public_names.is_empty() {
            self.problem(span, "[visibility] lists no names".to_owned());
        }
        for (names, table, what) in [
            (raw.doh_resolvers, &mut out.doh_resolvers, "doh_resolvers"),
            (
                raw.ech_public_names,
                &mut out.ech_public_names,
                "ech_public_names",
            ),
        ] {
            for name in names {
                let span = name.span();
                let name = name.into_inner();
                if let Err(reason) = domain::check_syntax(&name, DomainKind::Exact) {
                    self.problem(span, format!("{what}: `{name}`: {reason}"));
                } else if name != name.to_ascii_lowercase() {
                    self.problem(span, format!("{what}: `{name}` must be lowercase"));
                } else if !table.insert(name.clone()) {
                    self.problem(span, format!("{what}: `{name}` is listed twice"));
                }
            }
        }
    }

    fn sources(&mut self, sources: &Spanned<Vec<String>>, owner: &str) {
        if sources.get_ref().is_empty() {
            self.problem(sources.span(), format!("{owner} needs at least one source"));
        }
        for source in sources.get_ref() {
            if !source.starts_with("https://") || source.chars().any(char::is_whitespace) {
                self.problem(
                    sources.span(),
                    format!("source `{source}` must be an https:// URL"),
                );
            }
        }
    }

    fn verified(&mut self, verified: &Spanned<String>) {
        if !is_date(verified.get_ref()) {
            self.problem(
                verified.span(),
                format!(
                    "verified `{}` must be a date YYYY-MM-DD",
                    verified.get_ref()
                ),
            );
        }
    }

    fn domain(&mut self, prefix: &str, entry: Spanned<RawDomain>) -> Option<DomainRule> {
        let span = entry.span();
        let raw = entry.into_inner();
        let (pattern, kind) = match (raw.exact, raw.suffix, raw.wildcard) {
            (Some(pattern), None, None) => (pattern, DomainKind::Exact),
            (None, Some(pattern), None) => (pattern, DomainKind::Suffix),
            (None, None, Some(pattern)) => (pattern, DomainKind::Wildcard),
            _ => {
                self.problem(
                    span,
                    "a domain entry needs exactly one of `exact`, `suffix` or `wildcard`".into(),
                );
                return None;
            }
        };
        if let Err(reason) = domain::check_pattern(&pattern, kind) {
            self.problem(span, format!("domain `{pattern}`: {reason}"));
            return None;
        }
        if raw.tenant && kind == DomainKind::Exact {
            self.problem(
                span,
                format!(
                    "domain `{pattern}`: `tenant` needs a `suffix` (the label left of it) or a `wildcard` (what `*` stands for)"
                ),
            );
            return None;
        }
        if let Some(plan) = &raw.plan
            && let Err(reason) = domain::check_plan(kind, plan)
        {
            self.problem(span, format!("domain `{pattern}`: {reason}"));
            return None;
        }
        Some(DomainRule {
            id: format!("{prefix}/domain/{pattern}"),
            pattern,
            kind,
            tenant: raw.tenant,
            plan: raw.plan,
            confidence: raw.confidence.unwrap_or(Confidence::High),
            note: raw.note,
        })
    }

    fn process(
        &mut self,
        prefix: &str,
        raw: RawProcess,
        span: Range<usize>,
    ) -> Option<(ProcessRule, RegexLines)> {
        let before = self.problems.len();
        if !is_rule_name(&raw.id) {
            self.problem(
                span.clone(),
                format!("process rule id `{}` must be a-z, 0-9, `-`", raw.id),
            );
        }
        // Each regex keeps its own line: errors found when the sets are compiled point at it.
        let lines_of = |patterns: &[Spanned<String>]| -> Vec<usize> {
            patterns
                .iter()
                .map(|pattern| self.line_of(pattern.span().start))
                .collect()
        };
        let lines = RegexLines {
            cmdline: lines_of(&raw.cmdline),
            exe: [
                lines_of(&raw.exe.linux),
                lines_of(&raw.exe.macos),
                lines_of(&raw.exe.windows),
            ],
        };
        let texts = |patterns: Vec<Spanned<String>>| -> Vec<String> {
            patterns.into_iter().map(Spanned::into_inner).collect()
        };
        let exe = ExePatterns {
            linux: texts(raw.exe.linux),
            macos: texts(raw.exe.macos),
            windows: texts(raw.exe.windows),
        };
        let cmdline = texts(raw.cmdline);
        if raw.names.is_empty() && exe.is_empty() && cmdline.is_empty() {
            self.problem(
                span.clone(),
                format!(
                    "process rule `{}` needs `names`, `exe` or `cmdline`",
                    raw.id
                ),
            );
        }
        for name in &raw.names {
            if let Err(reason) = process::check_name(name) {
                self.problem(span.clone(), format!("process name `{name}`: {reason}"));
            }
        }
        let globs = exe.linux.iter().chain(&exe.macos).chain(&exe.windows);
        let glob_lines = lines.exe.iter().flatten();
        for (glob, line) in globs.zip(glob_lines) {
            if let Err(reason) = process::glob_to_regex(glob, false) {
                self.problem_at(*line, format!("exe glob `{glob}`: {reason}"));
            }
        }
        for (pattern, line) in cmdline.iter().zip(&lines.cmdline) {
            // Parsing finds every syntax error with the regex crate's own parser; compiling
            // each pattern here as well would double the catalog's compile time (the sets
            // compile them once, in `ProcessIndex::build`, and an error there, such as the size
            // limit, is traced back to its pattern and reported at the pattern's line).
            if let Err(error) = regex_syntax::Parser::new().parse(pattern) {
                let first_line = error.to_string();
                let first_line = first_line
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                self.problem_at(
                    *line,
                    format!("cmdline regex `{pattern}` is invalid: {first_line}"),
                );
            }
        }
        for arg in raw.args.iter().chain(&raw.args_any) {
            if arg.is_empty() || arg.chars().any(char::is_whitespace) {
                self.problem(
                    span.clone(),
                    format!("argument `{arg}` must be one non-empty word"),
                );
            }
        }
        if self.problems.len() > before {
            return None;
        }
        let rule = ProcessRule {
            id: format!("{prefix}/process/{}", raw.id),
            name: raw.id,
            names: raw.names,
            runtime: raw.runtime,
            exe,
            cmdline,
            args: raw.args,
            args_any: raw.args_any,
            confidence: raw.confidence.unwrap_or(Confidence::High),
            note: raw.note,
        };
        Some((rule, lines))
    }

    fn risky_flag(
        &mut self,
        prefix: &str,
        raw: RawRiskyFlag,
        span: Range<usize>,
    ) -> Option<RiskyFlag> {
        let before = self.problems.len();
        if !raw.flag.starts_with('-')
            || raw.flag.len() < 2
            || raw.flag.chars().any(char::is_whitespace)
        {
            self.problem(
                span.clone(),
                format!(
                    "risky flag `{}` must start with `-` and be one word",
                    raw.flag
                ),
            );
        }
        if let Some(value) = &raw.value
            && (value.is_empty() || value.chars().any(char::is_whitespace))
        {
            self.problem(
                span.clone(),
                format!("risky flag value `{value}` must be one word"),
            );
        }
        self.risks(&raw.risk, &span, &format!("risky flag `{}`", raw.flag));
        if raw.explanation.trim().is_empty() {
            self.problem(
                span,
                format!("risky flag `{}` needs an explanation", raw.flag),
            );
        }
        if self.problems.len() > before {
            return None;
        }
        let spelled = match &raw.value {
            Some(value) => format!("{}={value}", raw.flag),
            None => raw.flag.clone(),
        };
        Some(RiskyFlag {
            id: format!("{prefix}/risky_flag/{spelled}"),
            flag: raw.flag,
            value: raw.value,
            risk: raw.risk,
            severity: raw.severity,
            explanation: raw.explanation,
        })
    }

    fn config(&mut self, prefix: &str, raw: RawConfig, span: Range<usize>) -> Option<ConfigFile> {
        let before = self.problems.len();
        if !is_rule_name(&raw.id) {
            self.problem(
                span.clone(),
                format!("config id `{}` must be a-z, 0-9, `-`", raw.id),
            );
        }
        let paths = self.paths(&raw.paths, &span, &format!("config `{}`", raw.id));
        match (raw.kind, &raw.mcp_key) {
            (ConfigKind::Mcp, None) => self.problem(
                span.clone(),
                format!(
                    "config `{}` of kind `mcp` needs `mcp_key` (the dotted path to the server map or list)",
                    raw.id
                ),
            ),
            (ConfigKind::Settings, Some(_)) => self.problem(
                span.clone(),
                format!(
                    "config `{}`: `mcp_key` belongs to `kind = \"mcp\"`",
                    raw.id
                ),
            ),
            (_, Some(key)) => {
                if let Err(reason) = config::check_key(key) {
                    self.problem(span.clone(), format!("mcp_key `{key}`: {reason}"));
                }
            }
            (ConfigKind::Settings, None) => {}
        }
        if raw.kind == ConfigKind::Settings && raw.setting.is_empty() {
            self.problem(
                span.clone(),
                format!(
                    "config `{}` of kind `settings` lists no [[product.config.setting]]",
                    raw.id
                ),
            );
        }
        let config_prefix = format!("{prefix}/config/{}", raw.id);
        let mut settings: Vec<ConfigSetting> = Vec::new();
        for entry in raw.setting {
            let span = entry.span();
            if let Some(setting) = self.setting(&config_prefix, entry.into_inner(), span.clone()) {
                if settings.iter().any(|other| other.name == setting.name) {
                    self.problem(span, format!("duplicate setting id `{}`", setting.name));
                } else {
                    settings.push(setting);
                }
            }
        }
        if self.problems.len() > before {
            return None;
        }
        Some(ConfigFile {
            id: config_prefix,
            name: raw.id,
            kind: raw.kind,
            format: raw.format,
            paths,
            mcp_key: raw.mcp_key,
            note: raw.note,
            settings,
        })
    }

    fn setting(
        &mut self,
        prefix: &str,
        raw: RawSetting,
        span: Range<usize>,
    ) -> Option<ConfigSetting> {
        let before = self.problems.len();
        if !is_rule_name(&raw.id) {
            self.problem(
                span.clone(),
                format!("setting id `{}` must be a-z, 0-9, `-`", raw.id),
            );
        }
        if let Err(reason) = config::check_key(&raw.key) {
            self.problem(span.clone(), format!("key `{}`: {reason}", raw.key));
        }
        let test = match (raw.equals, raw.is_true, raw.contains) {
            (Some(value), None, None) => Some(SettingTest::Equals(value)),
            (None, Some(true), None) => Some(SettingTest::IsTrue),
            (None, None, Some(value)) if !value.is_empty() => Some(SettingTest::Contains(value)),
            (None, Some(false), None) => {
                self.problem(
                    span.clone(),
                    format!(
                        "setting `{}`: `is_true` can only be `true`; use `equals = \"false\"` for a false value",
                        raw.id
                    ),
                );
                None
            }
            _ => {
                self.problem(
                    span.clone(),
                    format!(
                        "setting `{}` needs exactly one of `equals`, `is_true = true` or a non-empty `contains`",
                        raw.id
                    ),
                );
                None
            }
        };
        self.risks(&raw.risk, &span, &format!("setting `{}`", raw.id));
        if raw.explanation.trim().is_empty() {
            self.problem(span, format!("setting `{}` needs an explanation", raw.id));
        }
        let test = test?;
        if self.problems.len() > before {
            return None;
        }
        Some(ConfigSetting {
            id: format!("{prefix}/{}", raw.id),
            name: raw.id,
            key: raw.key,
            test,
            risk: raw.risk,
            severity: raw.severity,
            explanation: raw.explanation,
        })
    }

    fn app(&mut self, prefix: &str, raw: RawApp, span: Range<usize>) -> Option<App> {
        let before = self.problems.len();
        if !is_rule_name(&raw.id) {
            self.problem(
                span.clone(),
                format!("app id `{}` must be a-z, 0-9, `-`", raw.id),
            );
        }
        if let Some(bundle) = &raw.macos_bundle_id
            && let Err(reason) = config::check_bundle_id(bundle)
        {
            self.problem(
                span.clone(),
                format!("macos_bundle_id `{bundle}`: {reason}"),
            );
        }
        let paths = self.paths(&raw.paths, &span, &format!("app `{}`", raw.id));
        if raw.macos_bundle_id.is_none() && paths.is_empty() {
            self.problem(
                span.clone(),
                format!("app `{}` needs `macos_bundle_id` or `paths`", raw.id),
            );
        }
        if self.problems.len() > before {
            return None;
        }
        Some(App {
            id: format!("{prefix}/app/{}", raw.id),
            name: raw.id,
            macos_bundle_id: raw.macos_bundle_id,
            paths,
        })
    }

    fn paths(&mut self, raw: &RawPaths, span: &Range<usize>, owner: &str) -> OsPaths {
        let paths = OsPaths {
            linux: raw.linux.clone(),
            macos: raw.macos.clone(),
            windows: raw.windows.clone(),
        };
        for os in Os::ALL {
            for path in paths.for_os(os) {
                if let Err(reason) = config::check_path(path, os) {
                    self.problem(
                        span.clone(),
                        format!("{owner}: paths.{} `{path}`: {reason}", os.as_str()),
                    );
                }
            }
        }
        paths
    }

    fn risks(&mut self, risks: &[String], span: &Range<usize>, owner: &str) {
        if risks.is_empty() {
            self.problem(span.clone(), format!("{owner} raises no risk"));
        }
        for risk in risks {
            if !is_known_risk(risk) {
                self.problem(
                    span.clone(),
                    format!("unknown risk `{risk}`: use one of KNOWN_RISKS in catalog/src/model.rs or add it there"),
                );
            }
        }
    }

    fn display_string(&mut self, value: &Spanned<String>, what: &str) {
        let text = value.get_ref();
        if text.trim().is_empty() || text.len() > MAX_DISPLAY || text.chars().any(char::is_control)
        {
            self.problem(
                value.span(),
                format!(
                    "{what} `{text}` must be 1 to {MAX_DISPLAY} bytes without control characters"
                ),
            );
        }
    }

    fn problem(&mut self, span: Range<usize>, message: String) {
        let line = self.line_of(span.start);
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: Some(line),
            message,
        });
    }

    fn problem_at(&mut self, line: usize, message: String) {
        self.problems.push(Problem {
            file: self.file.to_owned(),
            line: Some(line),
            message,
        });
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.content.len());
        self.newlines.partition_point(|newline| *newline < end) + 1
    }
}

fn check_across_files(products: &[Located], problems: &mut Vec<Problem>) {
    let mut ids: HashMap<&str, &Located> = HashMap::new();
    let mut extensions: HashMap<String, (&Located, usize)> = HashMap::new();
    let mut placed = Vec::new();
    for located in products {
        let product = &located.product;
        if let Some(first) = ids.insert(product.id.as_str(), located) {
            problems.push(Problem {
                file: product.file.clone(),
                line: Some(located.id_line),
                message: format!(
                    "duplicate product id `{}` (first declared at {}:{})",
                    product.id, first.product.file, first.id_line
                ),
            });
        }
        for (extension, line) in product.extensions.iter().zip(&located.extension_lines) {
            let key = extension.extension.to_ascii_lowercase();
            if let Some((first, first_line)) = extensions.get(&key) {
                problems.push(Problem {
                    file: product.file.clone(),
                    line: Some(*line),
                    message: format!(
                        "extension `{}` is already listed by `{}` at {}:{}",
                        extension.extension, first.product.id, first.product.file, first_line
                    ),
                });
            } else {
                extensions.insert(key, (located, *line));
            }
        }
        for (rule, line) in product.domains.iter().zip(&located.domain_lines) {
            placed.push(overlap::Placed {
                rule,
                product: &product.id,
                vendor: product.vendor_key(),
                file: &product.file,
                line: *line,
            });
        }
    }
    for conflict in overlap::conflicts(&placed) {
        let (earlier, later) = (conflict.earlier, conflict.later);
        let message = if conflict.duplicate {
            format!(
                "domain `{}` is already a rule of `{}` at {}:{}",
                later.rule.pattern, earlier.product, earlier.file, earlier.line
            )
        } else {
            format!(
                "domain rule `{} {}` of `{}` overlaps `{} {}` of `{}` at {}:{}: a name may belong to one vendor only; keep the host in one product or list only hosts specific to each",
                later.rule.kind.as_str(),
                later.rule.pattern,
                later.product,
                earlier.rule.kind.as_str(),
                earlier.rule.pattern,
                earlier.product,
                earlier.file,
                earlier.line
            )
        };
        problems.push(Problem {
            file: later.file.to_owned(),
            line: Some(later.line),
            message,
        });
    }
}

/// `vendor.product`: two dot-separated words of a-z, 0-9 and inner `-`, at most 128 bytes.
fn is_product_id(id: &str) -> bool {
    let Some((vendor, product)) = id.split_once('.') else {
        return false;
    };
    id.len() <= MAX_DISPLAY && is_rule_name(vendor) && is_rule_name(product)
}

fn is_rule_name(word: &str) -> bool {
    !word.is_empty()
        && word.len() <= 64
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !word.starts_with('-')
        && !word.ends_with('-')
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return false;
    }
    let number = |range: Range<usize>| text.get(range).and_then(|part| part.parse::<u32>().ok());
    matches!(
        (number(0..4), number(5..7), number(8..10)),
        (Some(2000..=2999), Some(1..=12), Some(1..=31))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_ids_are_vendor_dot_product() {
        assert!(is_product_id("ollama.ollama"));
        assert!(is_product_id("anthropic.claude-code"));
        assert!(!is_product_id("ollama"));
        assert!(!is_product_id("Ollama.ollama"));
        assert!(!is_product_id("a.b.c"));
        assert!(!is_product_id("-a.b"));
    }

    #[test]
    fn dates_are_checked() {
        assert!(is_date("2026-11-21"));
        assert!(!is_date("2026-13-01"));
        assert!(!is_date("21-11-2026"));
        assert!(!is_date("2026-1-21"));
    }
}
