//! Process rules: name normalisation, exe globs, and the compiled process matcher.
//!
//! Matching gathers candidate rules from three indexes built once (a hash of names, one
//! `RegexSet` over executable paths, `RegexSet`s over command lines), then checks every
//! condition of each candidate. Cost grows with the process's own facts and the few candidate
//! rules, not with the size of the catalog.

use std::borrow::Cow;
use std::collections::HashMap;

use regex::{RegexSet, RegexSetBuilder, SetMatches};

/// Exe globs are matched as bytes without Unicode classes: `[^/]` is then one byte class
/// instead of a UTF-8 automaton, which keeps the set small to compile and fast to run. Paths
/// are compared byte for byte (Windows paths ignore ASCII case).
type ExeSet = regex::bytes::RegexSet;
type ExeMatches = regex::bytes::SetMatches;

use crate::load::REGEX_SIZE_LIMIT;
use crate::model::{Confidence, Product, Runtime};

/// Command lines are matched on their first 32 KiB: enough for any real tool invocation, and a
/// bound on the work a hostile multi-megabyte command line can cause.
pub const MAX_MATCHED_CMDLINE: usize = 32 * 1024;

/// How a process's name was found, for the explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameSource {
    ProcessName,
    ExeName,
    Argv0,
    Script,
    Module,
}

impl NameSource {
    fn describe(self) -> &'static str {
        match self {
            NameSource::ProcessName => "process name is",
            NameSource::ExeName => "executable file name is",
            NameSource::Argv0 => "argv[0] is",
            NameSource::Script => "script name is",
            NameSource::Module => "python module is",
        }
    }
}

/// Checks a catalog process name.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err("must be 1 to 255 bytes".into());
    }
    if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        return Err("must be a file name, without path separators or control characters".into());
    }
    if normalize_name(name).is_empty() {
        return Err("is empty once `.exe` is removed".into());
    }
    Ok(())
}

/// Lowercases a process or file name and removes a trailing `.exe`, so that `Ollama`,
/// `ollama.exe` and `ollama` compare equal.
pub(crate) fn normalize_name(name: &str) -> Cow<'_, str> {
    let lowered = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    if lowered.ends_with(".exe") {
        let cut = lowered.len() - ".exe".len();
        return match lowered {
            Cow::Borrowed(text) => Cow::Borrowed(&text[..cut]),
            Cow::Owned(mut text) => {
                text.truncate(cut);
                Cow::Owned(text)
            }
        };
    }
    lowered
}

/// The file name of a path in either `/` or `\` form.
pub(crate) fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// Translates an exe glob to an anchored regex: `**` spans segments, `*` stays within one,
/// `?` is one character. Paths are compared with `/` separators.
pub(crate) fn glob_to_regex(glob: &str, case_insensitive: bool) -> Result<String, String> {
    if glob.is_empty() || glob.len() > 1024 {
        return Err("must be 1 to 1024 bytes".into());
    }
    if glob.contains('\\') {
        return Err("write paths with `/`, also for Windows".into());
    }
    let mut out = String::with_capacity(glob.len() * 2 + 8);
    if case_insensitive {
        out.push_str("(?i)");
    }
    out.push('^');
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(".*");
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            other => {
                let mut buffer = [0u8; 4];
                out.push_str(&regex::escape(other.encode_utf8(&mut buffer)));
            }
        }
    }
    out.push('$');
    Ok(out)
}

/// The runtime a (normalised) program name stands for.
fn runtime_of(name: &str) -> Option<Runtime> {
    match name {
        "node" | "nodejs" | "bun" => Some(Runtime::Node),
        "pythonw" | "python" => Some(Runtime::Python),
        _ => {
            let version = name.strip_prefix("python")?;
            let is_version = !version.is_empty()
                && version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && version.as_bytes()[0].is_ascii_digit();
            is_version.then_some(Runtime::Python)
        }
    }
}

/// Runtime options that take the next argument as their value, so it is not the script.
fn option_takes_value(runtime: Runtime, option: &str) -> bool {
    match runtime {
        Runtime::Node => matches!(option, "-r" | "--require" | "--import" | "--loader"),
        Runtime::Python => matches!(option, "-W" | "-X"),
    }
}

/// Options after which no script follows (inline code).
fn option_ends_search(runtime: Runtime, option: &str) -> bool {
    match runtime {
        Runtime::Node => matches!(option, "-e" | "--eval" | "-p" | "--print"),
        Runtime::Python => option == "-c",
    }
}

fn strip_script_extension(name: &str) -> &str {
    for extension in [".js", ".mjs", ".cjs", ".ts", ".py", ".pyw"] {
        if let Some(stem) = name.strip_suffix(extension)
            && !stem.is_empty()
        {
            return stem;
        }
    }
    name
}

/// Facts about one process, prepared once for matching.
pub(crate) struct Prepared<'f> {
    names: Vec<(Cow<'f, str>, NameSource)>,
    runtime: Option<Runtime>,
    exe: Cow<'f, str>,
    cmdline: String,
    args: &'f [String],
}

impl<'f> Prepared<'f> {
    pub(crate) fn new(name: &'f str, exe: &'f str, args: &'f [String]) -> Prepared<'f> {
        let mut names: Vec<(Cow<'f, str>, NameSource)> = Vec::with_capacity(5);
        push_name(&mut names, name, NameSource::ProcessName);
        push_name(&mut names, basename(exe), NameSource::ExeName);
        if let Some(argv0) = args.first() {
            push_name(&mut names, basename(argv0), NameSource::Argv0);
        }
        let runtime = names
            .iter()
            .find_map(|(candidate, _)| runtime_of(candidate));
        if let Some(runtime) = runtime {
            let mut rest = args.iter().skip(1);
            while let Some(arg) = rest.next() {
                if option_ends_search(runtime, arg) {
                    break;
                }
                if runtime == Runtime::Python && arg == "-m" {
                    if let Some(module) = rest.next() {
                        push_name(&mut names, module, NameSource::Module);
                    }
                    break;
                }
                if arg.starts_with('-') {
                    if option_takes_value(runtime, arg) {
                        rest.next();
                    }
                    continue;
                }
                push_name(
                    &mut names,
                    strip_script_extension(basename(arg)),
                    NameSource::Script,
                );
                break;
            }
        }
        let exe = if exe.contains('\\') {
            Cow::Owned(exe.replace('\\', "/"))
        } else {
            Cow::Borrowed(exe)
        };
        Prepared {
            names,
            runtime,
            exe,
            cmdline: join_capped(args),
            args,
        }
    }
}

/// Adds a normalised candidate name unless it is empty or already known.
fn push_name<'f>(
    names: &mut Vec<(Cow<'f, str>, NameSource)>,
    candidate: &'f str,
    source: NameSource,
) {
    if candidate.is_empty() {
        return;
    }
    let normalized = normalize_name(candidate);
    if !names.iter().any(|(known, _)| *known == normalized) {
        names.push((normalized, source));
    }
}

/// Joins arguments with single spaces, cut at [`MAX_MATCHED_CMDLINE`] on a char boundary.
fn join_capped(args: &[String]) -> String {
    let mut joined = String::new();
    for (index, arg) in args.iter().enumerate() {
        if index > 0 {
            joined.push(' ');
        }
        joined.push_str(arg);
        if joined.len() >= MAX_MATCHED_CMDLINE {
            let mut cut = MAX_MATCHED_CMDLINE;
            while !joined.is_char_boundary(cut) {
                cut -= 1;
            }
            joined.truncate(cut);
            break;
        }
    }
    joined
}

struct CompiledRule {
    product: usize,
    rule: usize,
    /// Normalised names, with their index in the rule's `names`.
    names: Vec<(String, usize)>,
    runtime: Option<Runtime>,
    exe_ids: Vec<usize>,
    /// Ids of its command-line patterns within `cmdline_sets[gate(runtime)]`.
    cmdline_ids: Vec<usize>,
    confidence: Confidence,
    specificity: usize,
}

/// What matched, before it is turned into a [`crate::ProcessMatch`].
pub(crate) struct Found {
    pub(crate) product: usize,
    pub(crate) rule: usize,
    pub(crate) reason: String,
}

/// The compiled process matcher.
pub(crate) struct ProcessIndex {
    rules: Vec<CompiledRule>,
    by_name: HashMap<String, Vec<usize>>,
    exe_set: ExeSet,
    exe_owner: Vec<usize>,
    exe_glob: Vec<(usize, usize, usize)>,
    /// Command-line patterns, one set per runtime gate: rules that require a runtime are only
    /// searched for processes running under it, so most processes pay for a handful of
    /// patterns instead of all of them.
    cmdline_sets: [CmdlineSet; 3],
}

/// Command-line patterns of the rules with one runtime gate (none, node, python).
struct CmdlineSet {
    set: RegexSet,
    /// Compiled rule of each pattern.
    owner: Vec<usize>,
}

/// Which of [`ProcessIndex::cmdline_sets`] a runtime's rules are in.
fn gate(runtime: Option<Runtime>) -> usize {
    match runtime {
        None => 0,
        Some(Runtime::Node) => 1,
        Some(Runtime::Python) => 2,
    }
}

impl std::fmt::Debug for ProcessIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessIndex")
            .field("rules", &self.rules.len())
            .field("exe_patterns", &self.exe_owner.len())
            .field(
                "cmdline_patterns",
                &self
                    .cmdline_sets
                    .iter()
                    .map(|s| s.owner.len())
                    .sum::<usize>(),
            )
            .finish()
    }
}

/// A regex that keeps the process rules from compiling, found by [`blame`].
#[derive(Debug)]
pub(crate) struct RegexError {
    /// Index of the product.
    pub(crate) product: usize,
    /// Index of the process rule within the product.
    pub(crate) rule: usize,
    /// Which of the rule's regexes.
    pub(crate) pattern: PatternAt,
    pub(crate) message: String,
}

/// A regex of a process rule.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PatternAt {
    /// The rule's `cmdline` pattern of this index.
    Cmdline(usize),
    /// The exe glob of this index for this OS (0 Linux, 1 macOS, 2 Windows).
    Exe { os: usize, glob: usize },
}

/// Finds the pattern to blame when a set of `patterns` does not compile: the one whose
/// addition first makes the set fail, by bisecting on prefixes of the set (a set only grows
/// as patterns are added), then compiled alone to tell whether it fails by itself. A few
/// compiles, each bounded by the size limit, on an error path only. Returns its index and
/// what is wrong; `None` if every prefix compiles (the set's error then was not one pattern's).
fn blame<P: AsRef<str>>(
    patterns: &[P],
    set_error: &str,
    compiles: impl Fn(&[P]) -> Result<(), String>,
) -> Option<(usize, String)> {
    // Invariant: the prefix of `good` patterns compiles, that of `bad` does not.
    let (mut good, mut bad) = (0, patterns.len());
    if compiles(patterns).is_ok() {
        return None;
    }
    while bad - good > 1 {
        let middle = good + (bad - good) / 2;
        if compiles(patterns.get(..middle)?).is_ok() {
            good = middle;
        } else {
            bad = middle;
        }
    }
    let culprit = bad - 1;
    let pattern = patterns.get(culprit)?.as_ref();
    let message = match compiles(patterns.get(culprit..bad)?) {
        Err(error) => format!("regex `{pattern}` does not compile: {error}"),
        Ok(()) => format!(
            "regex `{pattern}` compiles alone, but its set does not from this regex on, \
             number {bad} of {} ({set_error}); shorten or simplify the set's regexes",
            patterns.len()
        ),
    };
    Some((culprit, message))
}

impl ProcessIndex {
    /// Compiles every process rule. Individual patterns were validated on load; this can still
    /// fail if a pattern, or the combined sets, exceed the regex size limit: the error then
    /// names the regex to blame.
    pub(crate) fn build(products: &[Product]) -> Result<ProcessIndex, RegexError> {
        let mut rules = Vec::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut exe_patterns = Vec::new();
        let mut exe_owner = Vec::new();
        let mut exe_glob = Vec::new();
        let mut cmdline_patterns: [Vec<&str>; 3] = Default::default();
        let mut cmdline_owner: [Vec<usize>; 3] = Default::default();
        // Where each pattern of each set comes from: product, rule, which regex.
        let mut exe_source = Vec::new();
        let mut cmdline_source: [Vec<(usize, usize, PatternAt)>; 3] = Default::default();
        for (product_index, product) in products.iter().enumerate() {
            for (rule_index, rule) in product.processes.iter().enumerate() {
                let compiled_index = rules.len();
                let mut names = Vec::new();
                for (name_index, name) in rule.names.iter().enumerate() {
                    let normalized = normalize_name(name).into_owned();
                    let owners = by_name.entry(normalized.clone()).or_default();
                    if !owners.contains(&compiled_index) {
                        owners.push(compiled_index);
                    }
                    names.push((normalized, name_index));
                }
                let mut exe_ids = Vec::new();
                let per_os = [
                    (&rule.exe.linux, false),
                    (&rule.exe.macos, true),
                    (&rule.exe.windows, true),
                ];
                for (os_index, (globs, case_insensitive)) in per_os.into_iter().enumerate() {
                    for (glob_index, glob) in globs.iter().enumerate() {
                        let at = PatternAt::Exe {
                            os: os_index,
                            glob: glob_index,
                        };
                        let regex =
                            glob_to_regex(glob, case_insensitive).map_err(|reason| RegexError {
                                product: product_index,
                                rule: rule_index,
                                pattern: at,
                                message: format!("exe glob `{glob}`: {reason}"),
                            })?;
                        exe_ids.push(exe_patterns.len());
                        exe_patterns.push(regex);
                        exe_source.push((product_index, rule_index, at));
                        exe_owner.push(compiled_index);
                        exe_glob.push((rule_index, os_index, glob_index));
                    }
                }
                let mut cmdline_ids = Vec::new();
                let gate = gate(rule.runtime);
                for (pattern_index, pattern) in rule.cmdline.iter().enumerate() {
                    cmdline_ids.push(cmdline_patterns[gate].len());
                    cmdline_patterns[gate].push(pattern);
                    cmdline_owner[gate].push(compiled_index);
                    cmdline_source[gate].push((
                        product_index,
                        rule_index,
                        PatternAt::Cmdline(pattern_index),
                    ));
                }
                let specificity = [
                    !rule.names.is_empty(),
                    rule.runtime.is_some(),
                    !rule.exe.is_empty(),
                    !rule.cmdline.is_empty(),
                    !rule.args.is_empty(),
                    !rule.args_any.is_empty(),
                ]
                .iter()
                .filter(|present| **present)
                .count();
                rules.push(CompiledRule {
                    product: product_index,
                    rule: rule_index,
                    names,
                    runtime: rule.runtime,
                    exe_ids,
                    cmdline_ids,
                    confidence: rule.confidence,
                    specificity,
                });
            }
        }
        let build_exe = |patterns: &[String]| {
            regex::bytes::RegexSetBuilder::new(patterns)
                .unicode(false)
                .size_limit(REGEX_SIZE_LIMIT * 16)
                .build()
        };
        // On an error, the regex to blame is found and named with its rule.
        let located = |sources: &[(usize, usize, PatternAt)], found: Option<(usize, String)>| {
            let (index, message) = found?;
            let (product, rule, pattern) = *sources.get(index)?;
            Some(RegexError {
                product,
                rule,
                pattern,
                message,
            })
        };
        let unlocated = |message: String| RegexError {
            product: usize::MAX,
            rule: usize::MAX,
            pattern: PatternAt::Cmdline(usize::MAX),
            message,
        };
        let exe_set = build_exe(&exe_patterns).map_err(|error| {
            let error = error.to_string();
            let found = blame(&exe_patterns, &error, |prefix| {
                build_exe(prefix).map(drop).map_err(|e| e.to_string())
            });
            located(
                &exe_source,
                found.map(|(at, why)| (at, format!("exe glob {why}"))),
            )
            .unwrap_or_else(|| unlocated(format!("exe globs do not compile together: {error}")))
        })?;
        let build_cmdline = |patterns: &[&str]| {
            RegexSetBuilder::new(patterns)
                .size_limit(REGEX_SIZE_LIMIT * 16)
                .build()
        };
        let mut sets = Vec::with_capacity(3);
        for ((patterns, owner), sources) in cmdline_patterns
            .into_iter()
            .zip(cmdline_owner)
            .zip(&cmdline_source)
        {
            let set = build_cmdline(&patterns).map_err(|error| {
                let error = error.to_string();
                let found = blame(&patterns, &error, |prefix| {
                    build_cmdline(prefix).map(drop).map_err(|e| e.to_string())
                });
                located(
                    sources,
                    found.map(|(at, why)| (at, format!("cmdline {why}"))),
                )
                .unwrap_or_else(|| {
                    unlocated(format!("cmdline regexes do not compile together: {error}"))
                })
            })?;
            sets.push(CmdlineSet { set, owner });
        }
        let cmdline_sets: [CmdlineSet; 3] = sets
            .try_into()
            .map_err(|_| unlocated("cmdline sets: expected three".to_owned()))?;
        Ok(ProcessIndex {
            rules,
            by_name,
            exe_set,
            exe_owner,
            exe_glob,
            cmdline_sets,
        })
    }

    /// Finds the best rule for a process: highest confidence, then the rule with the most kinds
    /// of condition, then the first in catalog order. Only the winner's explanation is written.
    pub(crate) fn find(&self, products: &[Product], facts: &Prepared<'_>) -> Option<Found> {
        // Most processes match no pattern: a plain `is_match` answers that more cheaply than
        // collecting every overlapping match, which only runs when something matched.
        let exe = facts.exe.as_bytes();
        let exe_hits =
            (!exe.is_empty() && self.exe_set.is_match(exe)).then(|| self.exe_set.matches(exe));
        // The ungated set always runs; a runtime's set only under that runtime.
        let search = |gate: usize| {
            let cmdline = &self.cmdline_sets[gate];
            (!cmdline.owner.is_empty() && cmdline.set.is_match(&facts.cmdline))
                .then(|| cmdline.set.matches(&facts.cmdline))
        };
        let cmdline_hits = [
            search(0),
            if facts.runtime == Some(Runtime::Node) {
                search(1)
            } else {
                None
            },
            if facts.runtime == Some(Runtime::Python) {
                search(2)
            } else {
                None
            },
        ];

        let mut candidates: Vec<usize> = Vec::new();
        for (name, _) in &facts.names {
            if let Some(owners) = self.by_name.get(name.as_ref()) {
                candidates.extend(owners);
            }
        }
        if let Some(hits) = &exe_hits {
            candidates.extend(hits.iter().map(|id| self.exe_owner[id]));
        }
        for (gate, hits) in cmdline_hits.iter().enumerate() {
            if let Some(hits) = hits {
                let owner = &self.cmdline_sets[gate].owner;
                candidates.extend(hits.iter().map(|id| owner[id]));
            }
        }
        candidates.sort_unstable();
        candidates.dedup();

        let mut best: Option<(usize, Evidence)> = None;
        for candidate in candidates {
            let compiled = &self.rules[candidate];
            let Some(evidence) =
                self.check(products, compiled, facts, exe_hits.as_ref(), &cmdline_hits)
            else {
                continue;
            };
            let better = match &best {
                None => true,
                Some((current, _)) => {
                    let current = &self.rules[*current];
                    (compiled.confidence, compiled.specificity)
                        > (current.confidence, current.specificity)
                }
            };
            if better {
                best = Some((candidate, evidence));
            }
        }
        let (index, evidence) = best?;
        let compiled = &self.rules[index];
        Some(Found {
            product: compiled.product,
            rule: compiled.rule,
            reason: self.explain(products, compiled, &evidence),
        })
    }

    /// Checks every condition of a rule; returns what satisfied them when all hold.
    fn check(
        &self,
        products: &[Product],
        compiled: &CompiledRule,
        facts: &Prepared<'_>,
        exe_hits: Option<&ExeMatches>,
        cmdline_hits: &[Option<SetMatches>; 3],
    ) -> Option<Evidence> {
        let rule = &products[compiled.product].processes[compiled.rule];
        let mut evidence = Evidence::default();
        if !compiled.names.is_empty() {
            evidence.name = Some(facts.names.iter().find_map(|(candidate, source)| {
                compiled
                    .names
                    .iter()
                    .find(|(name, _)| name == candidate)
                    .map(|(_, index)| (*index, *source))
            })?);
        }
        if let Some(runtime) = compiled.runtime
            && facts.runtime != Some(runtime)
        {
            return None;
        }
        if !compiled.exe_ids.is_empty() {
            let hits = exe_hits?;
            evidence.exe = Some(
                compiled
                    .exe_ids
                    .iter()
                    .copied()
                    .find(|id| hits.matched(*id))?,
            );
        }
        if !compiled.cmdline_ids.is_empty() {
            let hits = cmdline_hits[gate(compiled.runtime)].as_ref()?;
            evidence.cmdline = Some(
                compiled
                    .cmdline_ids
                    .iter()
                    .position(|id| hits.matched(*id))?,
            );
        }
        let rest = facts.args.get(1..).unwrap_or_default();
        if !rule.args.iter().all(|wanted| rest.contains(wanted)) {
            return None;
        }
        if !rule.args_any.is_empty() {
            evidence.arg_any = Some(
                rule.args_any
                    .iter()
                    .position(|wanted| rest.contains(wanted))?,
            );
        }
        Some(evidence)
    }

    /// The explanation of a match, written once for the winning rule (with `push_str`: this
    /// runs for every matched process, and `format!` costs more than the matching).
    fn explain(
        &self,
        products: &[Product],
        compiled: &CompiledRule,
        evidence: &Evidence,
    ) -> String {
        let rule = &products[compiled.product].processes[compiled.rule];
        let mut reason = String::with_capacity(96);
        let part = |reason: &mut String, words: &[&str]| {
            if !reason.is_empty() {
                reason.push_str(" and ");
            }
            for word in words {
                reason.push_str(word);
            }
        };
        if let Some((name_index, source)) = evidence.name {
            part(
                &mut reason,
                &[source.describe(), " `", &rule.names[name_index], "`"],
            );
        }
        if let Some(runtime) = compiled.runtime {
            part(&mut reason, &["it runs under ", runtime.as_str()]);
        }
        if let Some(id) = evidence.exe {
            let (_, os_index, glob_index) = self.exe_glob[id];
            let globs = [&rule.exe.linux, &rule.exe.macos, &rule.exe.windows][os_index];
            part(
                &mut reason,
                &["executable path matches `", &globs[glob_index], "`"],
            );
        }
        if let Some(position) = evidence.cmdline {
            part(
                &mut reason,
                &["command line matches `", &rule.cmdline[position], "`"],
            );
        }
        if !rule.args.is_empty() {
            part(&mut reason, &["arguments contain "]);
            for (index, arg) in rule.args.iter().enumerate() {
                if index > 0 {
                    reason.push_str(", ");
                }
                reason.push('`');
                reason.push_str(arg);
                reason.push('`');
            }
        }
        if let Some(position) = evidence.arg_any {
            part(
                &mut reason,
                &["arguments contain `", &rule.args_any[position], "`"],
            );
        }
        reason
    }
}

/// What satisfied a rule's conditions, kept as positions so that only the winning rule's
/// explanation is ever formatted.
#[derive(Debug, Default)]
struct Evidence {
    /// Index into the rule's `names`, and where the process's name came from.
    name: Option<(usize, NameSource)>,
    /// Id of the exe glob that matched.
    exe: Option<usize>,
    /// Position of the cmdline pattern that matched.
    cmdline: Option<usize>,
    /// Position of the `args_any` entry that was present.
    arg_any: Option<usize>,
}

/// Whether the arguments (after argv\[0\], up to a `--`) carry a risky flag.
pub(crate) fn has_flag(args: &[String], flag: &str, value: Option<&str>) -> bool {
    let rest = args.get(1..).unwrap_or_default();
    for (index, arg) in rest.iter().enumerate() {
        if arg == "--" {
            return false;
        }
        match value {
            None if arg == flag => return true,
            None => {}
            Some(value) => {
                if arg == flag && rest.get(index + 1).is_some_and(|next| next == value) {
                    return true;
                }
                if arg
                    .strip_prefix(flag)
                    .and_then(|tail| tail.strip_prefix('='))
                    == Some(value)
                {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn names_compare_without_case_or_exe() {
        assert_eq!(normalize_name("Ollama.EXE"), "ollama");
        assert_eq!(normalize_name("LM Studio"), "lm studio");
        assert_eq!(normalize_name("claude"), "claude");
        assert_eq!(normalize_name(".exe"), "");
    }

    #[test]
    fn globs_translate_to_anchored_regexes() {
        let regex = |glob: &str| regex::Regex::new(&glob_to_regex(glob, false).unwrap()).unwrap();
        assert!(
            regex("/Applications/Cursor.app/**")
                .is_match("/Applications/Cursor.app/Contents/MacOS/Cursor")
        );
        assert!(regex("**/versions/*").is_match("/home/u/.local/share/claude/versions/2.0.14"));
        assert!(!regex("**/versions/*").is_match("/home/u/versions/2/x"));
        assert!(!regex("/usr/bin/ollama").is_match("/usr/bin/ollama2"));
        assert!(regex("/usr/bin/olla?a").is_match("/usr/bin/ollama"));
        assert!(glob_to_regex("C:\\x", true).is_err());
    }

    #[test]
    fn script_names_are_found_under_runtimes() {
        let args = strings(&[
            "/usr/bin/python3.12",
            "-X",
            "dev",
            "/home/u/.local/bin/aider.py",
            "--yes-always",
        ]);
        let prepared = Prepared::new("python3.12", "/usr/bin/python3.12", &args);
        assert_eq!(prepared.runtime, Some(Runtime::Python));
        assert!(
            prepared
                .names
                .iter()
                .any(|(name, source)| name == "aider" && *source == NameSource::Script)
        );

        let args = strings(&["python", "-m", "aider", "--model", "x"]);
        let prepared = Prepared::new("python", "", &args);
        assert!(
            prepared
                .names
                .iter()
                .any(|(name, source)| name == "aider" && *source == NameSource::Module)
        );

        let args = strings(&["node", "-e", "require('x')", "openclaw.mjs"]);
        let prepared = Prepared::new("node", "/usr/bin/node", &args);
        assert!(!prepared.names.iter().any(|(name, _)| name == "openclaw"));
    }

    #[test]
    fn long_command_lines_are_cut_on_a_char_boundary() {
        let args = vec!["é".repeat(MAX_MATCHED_CMDLINE)];
        let joined = join_capped(&args);
        assert!(joined.len() <= MAX_MATCHED_CMDLINE);
        assert!(joined.len() >= MAX_MATCHED_CMDLINE - 1);
    }

    #[test]
    fn risky_flags_take_both_value_forms_and_stop_at_double_dash() {
        let args = strings(&["claude", "--permission-mode", "bypassPermissions"]);
        assert!(has_flag(
            &args,
            "--permission-mode",
            Some("bypassPermissions")
        ));
        let args = strings(&["claude", "--permission-mode=bypassPermissions"]);
        assert!(has_flag(
            &args,
            "--permission-mode",
            Some("bypassPermissions")
        ));
        let args = strings(&["claude", "--permission-mode", "plan"]);
        assert!(!has_flag(
            &args,
            "--permission-mode",
            Some("bypassPermissions")
        ));
        let args = strings(&["codex", "--", "--yolo"]);
        assert!(!has_flag(&args, "--yolo", None));
        let args = strings(&["--yolo"]);
        assert!(!has_flag(&args, "--yolo", None), "argv[0] is not a flag");
    }

    #[test]
    fn blame_names_the_regex_that_fails_alone_or_tips_the_set_over() {
        // A set "compiles" while its total length stays within 10 bytes.
        let compiles = |set: &[&str]| {
            let total: usize = set.iter().map(|p| p.len()).sum();
            if total <= 10 {
                Ok(())
            } else {
                Err(format!("{total} bytes"))
            }
        };
        let fits = ["ab", "cd", "ef"];
        assert_eq!(blame(&fits, "", compiles), None);
        let (at, why) = blame(&["ab", "cdefghijklm", "x"], "too big", compiles).unwrap();
        assert_eq!(at, 1);
        assert_eq!(why, "regex `cdefghijklm` does not compile: 11 bytes");
        let (at, why) = blame(&["abc", "def", "ghi", "jkl", "m"], "13 bytes", compiles).unwrap();
        assert_eq!(at, 3);
        assert!(
            why.starts_with("regex `jkl` compiles alone, but its set does not"),
            "{why}"
        );
        assert!(why.contains("number 4 of 5 (13 bytes)"), "{why}");
    }
}
