//! `shadowai-agent match`: asks the catalog what a domain, IDE extension, program name or
//! command line is, and why. Nothing matching is an answer (`no match`, exit 0), not an error.
//! `--stats` counts what the catalog holds; `--lint [DIR]` validates a directory of data files
//! and prints every problem as `file:line: message` (exit 2 when there are problems).

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use shadowai_catalog::{Catalog, CatalogError, ProcessFacts};

use super::CommandError;
use crate::redact::escape_for_terminal;

/// Arguments of `match`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shadowai-agent match chatgpt.com api.business.githubcopilot.com gemini.com\n  \
    shadowai-agent match contoso.openai.azure.com saoudrizwan.claude-dev claude ollama\n  \
    printf 'claude.ai\\nexample.com\\n' | shadowai-agent match - --json\n  \
    shadowai-agent match --cmdline 'node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --dangerously-skip-permissions'\n  \
    shadowai-agent match --stats\n  \
    shadowai-agent match --lint catalog/data")]
pub struct MatchArgs {
    /// Domains, IDE extension ids or program names to look up; `-` reads one per line from
    /// standard input.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// A command line to look up, split into arguments as a shell would (quotes work);
    /// may be given more than once.
    #[arg(long, value_name = "COMMAND LINE")]
    pub cmdline: Vec<String>,
    /// Print one JSON object per name with `name`, `matched`, `kind`, `product`, `vendor`,
    /// `category`, `plan`, `tenant`, `risk`, `confidence`, `rule` and `reason`.
    #[arg(long)]
    pub json: bool,
    /// Print what the built-in catalog holds (products, domain rules, process signatures,
    /// risky settings, MCP clients, ports, per category).
    #[arg(long, conflicts_with_all = ["names", "cmdline", "lint"])]
    pub stats: bool,
    /// Validate a directory of catalog data files (`*.toml` and `VERSION`) and print every
    /// problem as `file:line: message`; exits 2 when there are problems.
    #[arg(
        long,
        value_name = "DIR",
        num_args = 0..=1,
        default_missing_value = "catalog/data",
        conflicts_with_all = ["names", "cmdline"]
    )]
    pub lint: Option<PathBuf>,
}

/// Longest line read from standard input; longer lines cannot be DNS names or program names.
const MAX_STDIN_LINE: usize = 64 * 1024;
/// Largest data file `--lint` reads, the same bound a catalog bundle has.
const MAX_LINT_FILE: u64 = shadowai_catalog::MAX_BUNDLE_BYTES as u64;

/// Runs `match`.
pub fn run(args: MatchArgs) -> Result<(), CommandError> {
    if let Some(dir) = &args.lint {
        return lint(dir, args.json);
    }
    if args.stats {
        let catalog = Catalog::embedded().context("the built-in catalog is invalid")?;
        return print_stats(&catalog, args.json);
    }
    if args.names.is_empty() && args.cmdline.is_empty() {
        return Err(CommandError::Usage(
            "give at least one NAME, `-` to read names from standard input, --cmdline \"...\", --stats or --lint DIR"
                .into(),
        ));
    }
    let mut commands = Vec::with_capacity(args.cmdline.len());
    for text in &args.cmdline {
        let words = split_command_line(text)
            .map_err(|problem| CommandError::Usage(format!("--cmdline {text:?}: {problem}")))?;
        if words.is_empty() {
            return Err(CommandError::Usage("--cmdline needs a command".into()));
        }
        commands.push((text.as_str(), words));
    }
    let mut names = Vec::new();
    let mut stdin_read = false;
    for name in &args.names {
        if name == "-" {
            if !stdin_read {
                names.extend(read_names(io::stdin().lock())?);
                stdin_read = true;
            }
        } else {
            names.push(name.clone());
        }
    }

    let catalog = Catalog::embedded().context("the built-in catalog is invalid")?;
    let mut answers: Vec<Answer<'_>> = names
        .iter()
        .map(|name| answer_name(&catalog, name))
        .collect();
    answers.extend(
        commands
            .iter()
            .map(|(text, words)| answer_cmdline(&catalog, text, words)),
    );

    write_stdout(|out| {
        answers.iter().try_for_each(|answer| {
            if args.json {
                answer.write_json(out)
            } else {
                answer.write_human(out)
            }
        })
    })
}

/// Writes to standard output through a buffer; a closed pipe (`| head`) is not an error.
fn write_stdout(
    write: impl FnOnce(&mut io::BufWriter<io::StdoutLock<'_>>) -> io::Result<()>,
) -> Result<(), CommandError> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(anyhow::Error::new(error)
            .context("cannot write to stdout")
            .into()),
    }
}

fn print_stats(catalog: &Catalog, json: bool) -> Result<(), CommandError> {
    let stats = catalog.stats();
    write_stdout(|out| {
        if json {
            let value = serde_json::json!({
                "version": catalog.version(),
                "sha256": catalog.sha256(),
                "risky_total": stats.risky_total(),
                "stats": stats,
            });
            writeln!(out, "{value}")
        } else {
            writeln!(
                out,
                "catalog {} (sha256 {})",
                catalog.version(),
                catalog.sha256()
            )?;
            write!(out, "{stats}")
        }
    })
}

/// What `--lint` found in a directory.
#[derive(Debug, PartialEq, Eq)]
struct LintReport {
    /// `path:line: message`, one per problem.
    problems: Vec<String>,
    /// A one-line summary when the catalog loaded.
    summary: Option<String>,
}

/// Loads every `*.toml` of `dir` (and `dir/VERSION`) as a catalog and reports its problems
/// with the real paths of the files.
fn lint_dir(dir: &Path) -> Result<LintReport, CommandError> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        CommandError::Usage(format!(
            "--lint {}: cannot read the directory: {error}",
            dir.display()
        ))
    })?;
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !file_name.ends_with(".toml") {
            continue;
        }
        let path = entry.path();
        let content = std::fs::File::open(&path).and_then(|file| {
            let mut text = String::new();
            io::Read::read_to_string(&mut io::Read::take(file, MAX_LINT_FILE + 1), &mut text)
                .map(|_| text)
        });
        match content {
            Ok(text) if text.len() as u64 > MAX_LINT_FILE => problems.push(format!(
                "{}: larger than {MAX_LINT_FILE} bytes",
                path.display()
            )),
            Ok(text) => files.push((format!("data/{file_name}"), text)),
            Err(error) => problems.push(format!("{}: cannot read: {error}", path.display())),
        }
    }
    let version_path = dir.join("VERSION");
    let version = match std::fs::read_to_string(&version_path) {
        Ok(text) => text.trim().to_owned(),
        Err(error) => {
            problems.push(format!("{}: cannot read: {error}", version_path.display()));
            "0".to_owned()
        }
    };
    if files.is_empty() {
        problems.push(format!("{}: no *.toml data files", dir.display()));
    }
    if !problems.is_empty() {
        return Ok(LintReport {
            problems,
            summary: None,
        });
    }
    // Problems name files as `data/<name>`, also inside messages ("first declared at
    // data/x.toml:3"); show the paths the contributor edits instead.
    let names: Vec<String> = files
        .iter()
        .filter_map(|(name, _)| name.strip_prefix("data/").map(str::to_owned))
        .collect();
    let real_path = |file: &str| match file.strip_prefix("data/") {
        Some(name) => dir.join(name).display().to_string(),
        None => file.to_owned(),
    };
    let real_message = |message: &str| {
        names.iter().fold(message.to_owned(), |text, name| {
            text.replace(
                &format!(" data/{name}:"),
                &format!(" {}:", dir.join(name).display()),
            )
        })
    };
    match Catalog::from_files(&version, files) {
        Ok(catalog) => {
            let stats = catalog.stats();
            Ok(LintReport {
                problems,
                summary: Some(format!(
                    "{}: catalog {} is valid: {} products, {} domain rules, {} process signatures, {} risky settings",
                    dir.display(),
                    catalog.version(),
                    stats.products,
                    stats.domain_rules,
                    stats.process_signatures,
                    stats.risky_total()
                )),
            })
        }
        Err(CatalogError::Invalid(found)) => Ok(LintReport {
            problems: found
                .iter()
                .map(|problem| {
                    let message = real_message(&problem.message);
                    match problem.line {
                        Some(line) => format!("{}:{line}: {message}", real_path(&problem.file)),
                        None => format!("{}: {message}", real_path(&problem.file)),
                    }
                })
                .collect(),
            summary: None,
        }),
        Err(CatalogError::Bundle { reason }) => Ok(LintReport {
            problems: vec![format!("{}: {reason}", dir.display())],
            summary: None,
        }),
    }
}

fn lint(dir: &Path, json: bool) -> Result<(), CommandError> {
    let report = lint_dir(dir)?;
    write_stdout(|out| write_lint(&report, json, out))?;
    if report.problems.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Usage(format!(
            "{} problem(s) in {}",
            report.problems.len(),
            dir.display()
        )))
    }
}

fn write_lint(report: &LintReport, json: bool, out: &mut impl Write) -> io::Result<()> {
    for problem in &report.problems {
        if json {
            writeln!(out, "{}", serde_json::json!({ "problem": problem }))?;
        } else {
            writeln!(out, "{}", escape_for_terminal(problem))?;
        }
    }
    if let Some(summary) = &report.summary {
        writeln!(out, "{summary}")?;
    }
    Ok(())
}

fn read_names(input: impl BufRead) -> Result<Vec<String>, CommandError> {
    let mut names = Vec::new();
    for line in input.split(b'\n') {
        let line = line.context("cannot read standard input")?;
        if line.len() > MAX_STDIN_LINE {
            names.push(String::from_utf8_lossy(&line[..MAX_STDIN_LINE]).into_owned());
            continue;
        }
        let line = String::from_utf8_lossy(&line);
        let name = line.trim();
        if !name.is_empty() && !name.starts_with('#') {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The catalog's answer for one input.
#[derive(Serialize)]
struct Answer<'a> {
    name: &'a str,
    matched: bool,
    /// `domain`, `extension`, `process` (a program name) or `cmdline`; `null` when nothing
    /// matched.
    kind: Option<&'static str>,
    product: Option<&'a str>,
    /// The product's display name, e.g. "Claude Code".
    product_name: Option<&'a str>,
    vendor: Option<&'a str>,
    category: Option<&'static str>,
    plan: Option<String>,
    /// The tenant the name reveals, e.g. an Azure OpenAI resource.
    tenant: Option<String>,
    risk: Vec<&'a str>,
    confidence: Option<&'static str>,
    rule: Option<&'a str>,
    reason: Option<String>,
}

impl<'a> Answer<'a> {
    fn no_match(name: &'a str, kind: Option<&'static str>) -> Answer<'a> {
        Answer {
            name,
            matched: false,
            kind,
            product: None,
            product_name: None,
            vendor: None,
            category: None,
            plan: None,
            tenant: None,
            risk: Vec::new(),
            confidence: None,
            rule: None,
            reason: None,
        }
    }

    fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        let line = serde_json::to_string(self).map_err(io::Error::other)?;
        writeln!(out, "{line}")
    }

    fn write_human(&self, out: &mut impl Write) -> io::Result<()> {
        let name = escape_for_terminal(self.name);
        let (Some(product), Some(rule)) = (self.product, self.rule) else {
            return writeln!(out, "{name}: no match");
        };
        writeln!(
            out,
            "{name}: {product} ({} by {}, {})",
            self.display_name(),
            self.vendor.unwrap_or("-"),
            self.category.unwrap_or("-")
        )?;
        let risk = if self.risk.is_empty() {
            "-".to_owned()
        } else {
            self.risk.join(", ")
        };
        // Plan and tenant come from the name itself: escape them like the name.
        let plan = self.plan.as_deref().map_or("-".into(), escape_for_terminal);
        let tenant = match &self.tenant {
            Some(tenant) => format!("   tenant: {}", escape_for_terminal(tenant)),
            None => String::new(),
        };
        writeln!(
            out,
            "  plan: {plan}{tenant}   risk: {risk}   confidence: {}",
            self.confidence.unwrap_or("-")
        )?;
        writeln!(out, "  rule: {rule}")?;
        writeln!(out, "  why:  {}", self.reason.as_deref().unwrap_or("-"))
    }

    fn display_name(&self) -> &str {
        self.product_name.unwrap_or("-")
    }
}

fn answer_name<'a>(catalog: &'a Catalog, name: &'a str) -> Answer<'a> {
    if let Some(found) = catalog.match_domain(name) {
        return Answer {
            name,
            matched: true,
            kind: Some("domain"),
            product: Some(&found.product.id),
            vendor: Some(&found.product.vendor),
            category: Some(found.product.category.as_str()),
            plan: found.plan.clone(),
            tenant: found.tenant.clone(),
            risk: Vec::new(),
            confidence: Some(found.confidence.as_str()),
            rule: Some(found.rule),
            reason: Some(found.reason.clone()),
            product_name: Some(&found.product.name),
        };
    }
    // Not a known domain: perhaps an IDE extension id (`saoudrizwan.claude-dev`).
    if let Some(found) = catalog.extension(name) {
        return Answer {
            name,
            matched: true,
            kind: Some("extension"),
            product: Some(&found.product.id),
            vendor: Some(&found.product.vendor),
            category: Some(found.product.category.as_str()),
            plan: None,
            tenant: None,
            risk: Vec::new(),
            confidence: Some("high"),
            rule: Some(&found.extension.id),
            reason: Some(format!(
                "IDE extension id is `{}`",
                found.extension.extension
            )),
            product_name: Some(&found.product.name),
        };
    }
    // Perhaps a program name (`claude`, `ollama.exe`).
    let args = [name.to_owned()];
    let facts = ProcessFacts {
        name,
        exe: "",
        args: &args,
    };
    match catalog.match_process(&facts) {
        Some(found) => process_answer(name, "process", &found),
        None => Answer::no_match(name, None),
    }
}

fn answer_cmdline<'a>(catalog: &'a Catalog, text: &'a str, words: &[String]) -> Answer<'a> {
    let argv0 = words.first().map(String::as_str).unwrap_or_default();
    let name = argv0.rsplit(['/', '\\']).next().unwrap_or(argv0);
    let exe = if argv0.contains(['/', '\\']) {
        argv0
    } else {
        ""
    };
    let facts = ProcessFacts {
        name,
        exe,
        args: words,
    };
    match catalog.match_process(&facts) {
        Some(found) => process_answer(text, "cmdline", &found),
        None => Answer::no_match(text, Some("cmdline")),
    }
}

fn process_answer<'a>(
    name: &'a str,
    kind: &'static str,
    found: &shadowai_catalog::ProcessMatch<'a>,
) -> Answer<'a> {
    Answer {
        name,
        matched: true,
        kind: Some(kind),
        product: Some(&found.product.id),
        vendor: Some(&found.product.vendor),
        category: Some(found.product.category.as_str()),
        plan: None,
        tenant: None,
        risk: found.risk_names(),
        confidence: Some(found.confidence.as_str()),
        rule: Some(found.rule),
        reason: Some(found.reason.clone()),
        product_name: Some(&found.product.name),
    }
}

/// Splits a command line into arguments the way a POSIX shell would for plain words and quotes:
/// whitespace separates words, `'...'` is literal, `"..."` allows `\"` and `\\`, and a
/// backslash outside quotes escapes only a space, a quote or a backslash, so that Windows paths
/// (`C:\Users\...`) survive. No expansion of any kind.
fn split_command_line(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => current.push(c),
                        None => return Err("unterminated single quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') if matches!(chars.peek(), Some('"' | '\\')) => {
                            current.extend(chars.next());
                        }
                        Some(c) => current.push(c),
                        None => return Err("unterminated double quote".into()),
                    }
                }
            }
            '\\' if matches!(chars.peek(), Some(' ' | '"' | '\'' | '\\')) => {
                in_word = true;
                current.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                current.push(c);
            }
        }
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(text: &str, expect: &[&str]) {
        assert_eq!(split_command_line(text).unwrap(), expect, "{text:?}");
    }

    #[test]
    fn command_lines_split_like_a_shell() {
        check("ollama serve", &["ollama", "serve"]);
        check("  ollama   serve  ", &["ollama", "serve"]);
        check(
            "sh -c 'sleep 600; :' serve",
            &["sh", "-c", "sleep 600; :", "serve"],
        );
        check(
            r#"aider --message "fix \"it\" now""#,
            &["aider", "--message", r#"fix "it" now"#],
        );
        check(
            r"/opt/my\ tools/ollama serve",
            &["/opt/my tools/ollama", "serve"],
        );
        check(
            r"C:\Users\u\ollama.exe serve",
            &[r"C:\Users\u\ollama.exe", "serve"],
        );
        check("''", &[""]);
        check("", &[]);
        assert!(split_command_line("claude 'oops").is_err());
        assert!(split_command_line("claude \"oops").is_err());
    }

    #[test]
    fn names_from_stdin_skip_blanks_and_comments() {
        let input = b"chatgpt.com\n\n# a comment\n  claude.ai  \r\nexample.com";
        let names = read_names(&input[..]).unwrap();
        assert_eq!(names, ["chatgpt.com", "claude.ai", "example.com"]);
    }

    #[test]
    fn answers_name_product_rule_and_risk() {
        let catalog = Catalog::embedded().unwrap();
        let answer = answer_name(&catalog, "api.business.githubcopilot.com");
        assert_eq!(answer.product, Some("github.copilot"));
        assert_eq!(answer.plan.as_deref(), Some("business"));
        assert_eq!(answer.kind, Some("domain"));

        let answer = answer_name(&catalog, "claude");
        assert_eq!(
            (answer.kind, answer.product),
            (Some("process"), Some("anthropic.claude-code"))
        );

        let words = split_command_line("codex --yolo").unwrap();
        let answer = answer_cmdline(&catalog, "codex --yolo", &words);
        assert_eq!(answer.risk, ["approval_bypass", "sandbox_off"]);

        let answer = answer_name(&catalog, "contoso.openai.azure.com");
        assert_eq!(answer.tenant.as_deref(), Some("contoso"));
        let mut human = Vec::new();
        answer.write_human(&mut human).unwrap();
        assert!(
            String::from_utf8(human)
                .unwrap()
                .contains("tenant: contoso")
        );

        let answer = answer_name(&catalog, "saoudrizwan.claude-dev");
        assert_eq!(
            (answer.kind, answer.product),
            (Some("extension"), Some("cline.cline"))
        );

        let answer = answer_name(&catalog, "gemini.com");
        assert!(!answer.matched);
        let mut human = Vec::new();
        answer.write_human(&mut human).unwrap();
        assert_eq!(String::from_utf8(human).unwrap(), "gemini.com: no match\n");
    }

    fn write(dir: &Path, name: &str, content: &str) {
        std::fs::write(dir.join(name), content).unwrap();
    }

    const GOOD: &str = "[[product]]\nid = \"acme.thing\"\nvendor = \"Acme\"\nname = \"Thing\"\ncategory = \"chat_app\"\nsources = [\"https://acme.example/\"]\nverified = \"2026-11-21\"\ndomains = [{ suffix = \"thing.acme.example\" }]\n";

    #[test]
    fn lint_names_every_problem_with_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "VERSION", "2026.11.21-1\n");
        write(dir.path(), "good.toml", GOOD);
        write(dir.path(), "notes.txt", "not a data file");
        let report = lint_dir(dir.path()).unwrap();
        assert_eq!(report.problems, Vec::<String>::new());
        let summary = report.summary.unwrap();
        assert!(
            summary.contains("catalog 2026.11.21-1 is valid: 1 products"),
            "{summary}"
        );

        let broken = GOOD
            .replace("acme.thing", "globex.thing")
            .replace("\"Acme\"", "\"Globex\"")
            .replace("thing.acme.example", "github.com")
            .replace("chat_app", "chatbot");
        write(dir.path(), "broken.toml", &broken);
        let overlapping = GOOD
            .replace("acme.thing", "initech.thing")
            .replace("\"Acme\"", "\"Initech\"")
            .replace(
                "suffix = \"thing.acme.example\"",
                "exact = \"x.thing.acme.example\"",
            );
        write(dir.path(), "overlap.toml", &overlapping);
        let report = lint_dir(dir.path()).unwrap();
        let broken_path = dir.path().join("broken.toml").display().to_string();
        let overlap_path = dir.path().join("overlap.toml").display().to_string();
        assert!(report.summary.is_none());
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.starts_with(&format!("{broken_path}:5: unknown variant `chatbot`"))),
            "{:#?}",
            report.problems
        );
        let good_path = dir.path().join("good.toml").display().to_string();
        assert!(
            report.problems.iter().any(|p| p.starts_with(&format!(
                "{overlap_path}:8: domain rule `exact x.thing.acme.example` of `initech.thing` overlaps `suffix thing.acme.example` of `acme.thing` at {good_path}:8"
            ))),
            "{:#?}",
            report.problems
        );
        let mut text = Vec::new();
        write_lint(&report, false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), report.problems.len(), "{text}");
        let mut json = Vec::new();
        write_lint(&report, true, &mut json).unwrap();
        let first: serde_json::Value =
            serde_json::from_str(String::from_utf8(json).unwrap().lines().next().unwrap()).unwrap();
        assert!(first["problem"].as_str().unwrap().contains(".toml:"));
    }

    #[test]
    fn lint_refuses_a_directory_without_version_or_data() {
        let dir = tempfile::tempdir().unwrap();
        let report = lint_dir(dir.path()).unwrap();
        assert_eq!(report.problems.len(), 2, "{:#?}", report.problems);
        assert!(
            report.problems[0].contains("VERSION: cannot read"),
            "{:#?}",
            report.problems
        );
        assert!(
            report.problems[1].contains("no *.toml data files"),
            "{:#?}",
            report.problems
        );
        assert!(matches!(
            lint_dir(&dir.path().join("missing")),
            Err(CommandError::Usage(_))
        ));
    }

    #[test]
    fn the_repository_catalog_lints_clean() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog/data");
        let report = lint_dir(&dir).unwrap();
        assert_eq!(report.problems, Vec::<String>::new());
        assert!(report.summary.is_some());
    }
}
