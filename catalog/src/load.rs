//! Reading and validating catalog data files.
//!
//! The TOML shapes below are private: they carry source positions (`Spanned`) so that every
//! problem names its file and line, and are turned into the public model once validated. All
//! problems of all files are collected, so that a contributor sees every mistake at once.

use std::collections::HashMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::domain;
use crate::error::Problem;
use crate::model::{
    Category, Confidence, DomainKind, DomainRule, ExePatterns, ProcessRule, Product, RiskyFlag,
    Runtime, Severity, is_known_risk,
};
use crate::process;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    product: Vec<Spanned<RawProduct>>,
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
    cmdline: Vec<String>,
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
    linux: Vec<String>,
    #[serde(default)]
    macos: Vec<String>,
    #[serde(default)]
    windows: Vec<String>,
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

/// Longest display string (vendor, product name) the wire contract accepts.
const MAX_DISPLAY: usize = 128;
/// Longest regex program a single command-line pattern may compile to.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Reads every file and validates the whole set. `files` are `(name, content)` pairs.
pub(crate) fn load_files(files: &[(String, String)]) -> Result<Vec<Product>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut located = Vec::new();
    for (file, content) in files {
        let mut checker = Checker {
            file,
            content,
            problems: &mut problems,
        };
        checker.read(&mut located);
    }
    check_across_files(&located, &mut problems);
    if problems.is_empty() {
        Ok(located.into_iter().map(|entry| entry.product).collect())
    } else {
        Err(problems)
    }
}

/// Where each product and domain pattern was declared, for cross-file checks.
struct Located {
    product: Product,
    id_line: usize,
    domain_lines: Vec<usize>,
}

struct Checker<'a> {
    file: &'a str,
    content: &'a str,
    problems: &'a mut Vec<Problem>,
}

impl Checker<'_> {
    fn read(&mut self, out: &mut Vec<Located>) {
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
        if raw.product.is_empty() {
            self.problem(0..0, "file declares no [[product]]".to_owned());
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
        if raw.sources.get_ref().is_empty() {
            self.problem(
                raw.sources.span(),
                format!("product `{id}` needs at least one source"),
            );
        }
        for source in raw.sources.get_ref() {
            if !source.starts_with("https://") || source.chars().any(char::is_whitespace) {
                self.problem(
                    raw.sources.span(),
                    format!("source `{source}` must be an https:// URL"),
                );
            }
        }
        if !is_date(raw.verified.get_ref()) {
            self.problem(
                raw.verified.span(),
                format!(
                    "verified `{}` must be a date YYYY-MM-DD",
                    raw.verified.get_ref()
                ),
            );
        }
        if raw.ports.contains(&0) {
            self.problem(span.clone(), "port 0 is not a listening port".to_owned());
        }
        if raw.domains.is_empty() && raw.process.is_empty() {
            self.problem(
                span.clone(),
                format!("product `{id}` has neither domains nor process rules"),
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
        for entry in raw.process {
            let span = entry.span();
            if let Some(rule) = self.process(&prefix, entry.into_inner(), span.clone()) {
                if processes.iter().any(|other| other.name == rule.name) {
                    self.problem(span, format!("duplicate process rule id `{}`", rule.name));
                } else {
                    processes.push(rule);
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
                ports: raw.ports,
                sources: raw.sources.into_inner(),
                verified: raw.verified.into_inner(),
                file: self.file.to_owned(),
            },
            domain_lines,
        })
    }

    fn domain(&mut self, prefix: &str, entry: Spanned<RawDomain>) -> Option<DomainRule> {
        let span = entry.span();
        let raw = entry.into_inner();
        let (pattern, kind) = match (raw.exact, raw.suffix) {
            (Some(pattern), None) => (pattern, DomainKind::Exact),
            (None, Some(pattern)) => (pattern, DomainKind::Suffix),
            _ => {
                self.problem(
                    span,
                    "a domain entry needs exactly one of `exact` or `suffix`".into(),
                );
                return None;
            }
        };
        if let Err(reason) = domain::check_pattern(&pattern) {
            self.problem(span, format!("domain `{pattern}`: {reason}"));
            return None;
        }
        if let Some(plan) = &raw.plan
            && let Err(reason) = domain::check_plan(&pattern, plan)
        {
            self.problem(span, format!("domain `{pattern}`: {reason}"));
            return None;
        }
        Some(DomainRule {
            id: format!("{prefix}/domain/{pattern}"),
            pattern,
            kind,
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
    ) -> Option<ProcessRule> {
        let before = self.problems.len();
        if !is_rule_name(&raw.id) {
            self.problem(
                span.clone(),
                format!("process rule id `{}` must be a-z, 0-9, `-`", raw.id),
            );
        }
        let exe = ExePatterns {
            linux: raw.exe.linux,
            macos: raw.exe.macos,
            windows: raw.exe.windows,
        };
        if raw.names.is_empty() && exe.is_empty() && raw.cmdline.is_empty() {
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
        for glob in globs {
            if let Err(reason) = process::glob_to_regex(glob, false) {
                self.problem(span.clone(), format!("exe glob `{glob}`: {reason}"));
            }
        }
        for pattern in &raw.cmdline {
            if let Err(error) = regex::RegexBuilder::new(pattern)
                .size_limit(REGEX_SIZE_LIMIT)
                .build()
            {
                let first_line = error.to_string();
                let first_line = first_line
                    .lines()
                    .last()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                self.problem(
                    span.clone(),
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
        Some(ProcessRule {
            id: format!("{prefix}/process/{}", raw.id),
            name: raw.id,
            names: raw.names,
            runtime: raw.runtime,
            exe,
            cmdline: raw.cmdline,
            args: raw.args,
            args_any: raw.args_any,
            confidence: raw.confidence.unwrap_or(Confidence::High),
            note: raw.note,
        })
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
        if raw.risk.is_empty() {
            self.problem(
                span.clone(),
                format!("risky flag `{}` raises no risk", raw.flag),
            );
        }
        for risk in &raw.risk {
            if !is_known_risk(risk) {
                self.problem(
                    span.clone(),
                    format!("unknown risk `{risk}`: use one of KNOWN_RISKS in catalog/src/model.rs or add it there"),
                );
            }
        }
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

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.content.len());
        self.content.as_bytes()[..end]
            .iter()
            .filter(|byte| **byte == b'\n')
            .count()
            + 1
    }
}

fn check_across_files(products: &[Located], problems: &mut Vec<Problem>) {
    let mut ids: HashMap<&str, &Located> = HashMap::new();
    let mut patterns: HashMap<(&str, DomainKind), (&Located, usize)> = HashMap::new();
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
        for (rule, line) in product.domains.iter().zip(&located.domain_lines) {
            let key = (rule.pattern.as_str(), rule.kind);
            if let Some((first, first_line)) = patterns.insert(key, (located, *line)) {
                problems.push(Problem {
                    file: product.file.clone(),
                    line: Some(*line),
                    message: format!(
                        "domain `{}` is already a rule of `{}` at {}:{}",
                        rule.pattern, first.product.id, first.product.file, first_line
                    ),
                });
            }
        }
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
