//! `shadowai-agent match`: asks the catalog what a domain, program name or command line is, and
//! why. Nothing matching is an answer (`no match`, exit 0), not an error.

use std::io::{self, BufRead, Write};

use anyhow::Context as _;
use serde::Serialize;
use shadowai_catalog::{Catalog, ProcessFacts};

use super::CommandError;
use crate::redact::escape_for_terminal;

/// Arguments of `match`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    shadowai-agent match chatgpt.com api.business.githubcopilot.com gemini.com\n  \
    shadowai-agent match claude ollama\n  \
    printf 'claude.ai\\nexample.com\\n' | shadowai-agent match - --json\n  \
    shadowai-agent match --cmdline 'node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --dangerously-skip-permissions'")]
pub struct MatchArgs {
    /// Domains or program names to look up; `-` reads one per line from standard input.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
    /// A command line to look up, split into arguments as a shell would (quotes work);
    /// may be given more than once.
    #[arg(long, value_name = "COMMAND LINE")]
    pub cmdline: Vec<String>,
    /// Print one JSON object per name with `name`, `matched`, `kind`, `product`, `vendor`,
    /// `category`, `plan`, `risk`, `confidence`, `rule` and `reason`.
    #[arg(long)]
    pub json: bool,
}

/// Longest line read from standard input; longer lines cannot be DNS names or program names.
const MAX_STDIN_LINE: usize = 64 * 1024;

/// Runs `match`.
pub fn run(args: MatchArgs) -> Result<(), CommandError> {
    if args.names.is_empty() && args.cmdline.is_empty() {
        return Err(CommandError::Usage(
            "give at least one NAME, `-` to read names from standard input, or --cmdline \"...\""
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

    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = answers
        .iter()
        .try_for_each(|answer| {
            if args.json {
                answer.write_json(&mut out)
            } else {
                answer.write_human(&mut out)
            }
        })
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(error) => Err(anyhow::Error::new(error)
            .context("cannot write to stdout")
            .into()),
    }
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
    /// `domain`, `process` (a program name) or `cmdline`; `null` when nothing matched.
    kind: Option<&'static str>,
    product: Option<&'a str>,
    /// The product's display name, e.g. "Claude Code".
    product_name: Option<&'a str>,
    vendor: Option<&'a str>,
    category: Option<&'static str>,
    plan: Option<String>,
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
        writeln!(
            out,
            "  plan: {}   risk: {risk}   confidence: {}",
            self.plan.as_deref().unwrap_or("-"),
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
            risk: Vec::new(),
            confidence: Some(found.confidence.as_str()),
            rule: Some(found.rule),
            reason: Some(found.reason.clone()),
            product_name: Some(&found.product.name),
        };
    }
    // Not a known domain: perhaps a program name (`claude`, `ollama.exe`).
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

        let answer = answer_name(&catalog, "gemini.com");
        assert!(!answer.matched);
        let mut human = Vec::new();
        answer.write_human(&mut human).unwrap();
        assert_eq!(String::from_utf8(human).unwrap(), "gemini.com: no match\n");
    }
}
