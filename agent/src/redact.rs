//! Making endpoint strings safe to keep and to show: secrets redacted, lengths capped, terminal
//! control characters escaped.
//!
//! Command lines carry API keys and passwords more often than anyone would like
//! (`--api-key sk-…`, `OPENAI_API_KEY=… aider`, `https://user:pass@host`). They are redacted
//! before anything leaves the process. Known token shapes keep their public prefix
//! (`sk-proj-[REDACTED]`, `ghp_[REDACTED]`) so a responder still sees which kind of secret was
//! exposed; values of secret-named flags and `KEY=value` pairs keep their name.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";
/// Longest command line kept, in bytes (the wire contract's limit).
pub const MAX_CMDLINE: usize = 8 * 1024;
/// Longest process name kept, in bytes.
pub const MAX_NAME: usize = 256;
/// Longest executable path kept, in bytes.
pub const MAX_EXE: usize = 4 * 1024;

/// Redacts secrets in a command line, joins the arguments with spaces and caps the result at
/// [`MAX_CMDLINE`] bytes.
pub fn redact_cmdline(args: &[String]) -> String {
    redact_cmdline_capped(args).0
}

/// Like [`redact_cmdline`], also saying whether the result was truncated.
pub fn redact_cmdline_capped(args: &[String]) -> (String, bool) {
    let mut joined = String::new();
    let mut value_is_secret = false;
    for (index, arg) in args.iter().enumerate() {
        if index > 0 {
            joined.push(' ');
        }
        // The value after `--token` is secret, unless it is the next flag.
        if value_is_secret && !arg.starts_with('-') {
            joined.push_str(REDACTED);
            value_is_secret = false;
            continue;
        }
        value_is_secret = index > 0 && is_secret_flag(arg);
        joined.push_str(&redact_text(arg));
        // Redaction happens before the cap, so a secret is never cut in half and left readable.
        if joined.len() > MAX_CMDLINE {
            break;
        }
    }
    let (kept, truncated) = cap(&joined, MAX_CMDLINE);
    (kept.to_owned(), truncated)
}

/// Redacts secrets inside one piece of text: `KEY=value` pairs with secret-like keys, URL
/// credentials, authorization headers and known token shapes.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let mut current = Cow::Borrowed(text);
    current = replace(current, &KEY_VALUE, |caps: &Captures<'_>| {
        let key = &caps["key"];
        if is_secret_name(key) {
            format!("{key}={REDACTED}")
        } else {
            caps[0].to_owned()
        }
    });
    for (pattern, replacement) in FIXED.iter() {
        current = replace(current, pattern, |caps: &Captures<'_>| {
            let mut out = String::new();
            caps.expand(replacement, &mut out);
            out
        });
    }
    current
}

/// Cuts `text` to at most `max` bytes on a char boundary; says whether it cut.
pub fn cap(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    (&text[..cut], true)
}

/// Escapes characters that would let an endpoint string drive a terminal or disguise itself:
/// control characters (escape sequences, carriage returns) and invisible or bidirectional
/// formatting characters. Everything else is shown as is.
pub fn escape_for_terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe_for_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe_for_terminal(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn is_unsafe_for_terminal(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// `KEY=value` anywhere in an argument (env-style arguments, `--flag=value`, URL queries).
static KEY_VALUE: LazyLock<Regex> =
    LazyLock::new(|| compile(r#"(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)=(?P<value>[^\s&;'"]+)"#));

/// Secrets recognised by their shape, with what replaces them (`$1` keeps the kind).
static FIXED: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // user:password@ in URLs.
        (r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]+:)[^\s/@]+@", "${1}[REDACTED]@"),
        // HTTP headers that carry credentials.
        (r"(?i)\b(authorization\s*[:=]\s*)(?:(?:bearer|basic|token)\s+)?[^\s'\x22]+", "${1}[REDACTED]"),
        (r"(?i)\b((?:x-api-key|api-key|x-goog-api-key|private-token|x-auth-token)\s*:\s*)[^\s'\x22]+", "${1}[REDACTED]"),
        (r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", "${1}[REDACTED]"),
        // Anthropic before OpenAI: both start with `sk-`.
        (r"\b(sk-ant-)[A-Za-z0-9_-]{10,}", "${1}[REDACTED]"),
        (r"\b(sk-(?:proj-|svcacct-|admin-)?)[A-Za-z0-9_-]{16,}", "${1}[REDACTED]"),
        (r"\b(gh[pousr]_)[A-Za-z0-9]{20,}", "${1}[REDACTED]"),
        (r"\b(github_pat_)[A-Za-z0-9_]{20,}", "${1}[REDACTED]"),
        (r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", "${1}[REDACTED]"),
        (r"\b(xox[abposr]-|xapp-)[A-Za-z0-9-]{10,}", "${1}[REDACTED]"),
        (r"\b(hf_)[A-Za-z0-9]{20,}", "${1}[REDACTED]"),
        (r"\b(AIza)[0-9A-Za-z_-]{30,}", "${1}[REDACTED]"),
        (r"\b(ya29\.)[0-9A-Za-z_-]{20,}", "${1}[REDACTED]"),
        (r"\b((?:sk|rk)_live_)[0-9A-Za-z]{10,}", "${1}[REDACTED]"),
        (r"\b(eyJ)[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", "${1}[REDACTED]"),
        // More vendors whose keys carry a public prefix.
        (r"\b(glpat-|gldt-|glrt-)[A-Za-z0-9_-]{20,}", "${1}[REDACTED]"),
        (r"\b(npm_)[A-Za-z0-9]{30,}", "${1}[REDACTED]"),
        (r"\b(gsk_)[A-Za-z0-9]{20,}", "${1}[REDACTED]"),
        (r"\b(xai-)[A-Za-z0-9]{20,}", "${1}[REDACTED]"),
        (r"\b(pplx-)[A-Za-z0-9]{20,}", "${1}[REDACTED]"),
        (r"\b(r8_)[A-Za-z0-9]{20,}", "${1}[REDACTED]"),
        (r"\b(GOCSPX-)[A-Za-z0-9_-]{20,}", "${1}[REDACTED]"),
        (r"(?i)\b(hooks\.slack\.com/services/)[A-Za-z0-9/_-]+", "${1}[REDACTED]"),
        (r"(?i)\b(discord(?:app)?\.com/api/webhooks/)[0-9A-Za-z/_-]+", "${1}[REDACTED]"),
        // Azure: AD client secrets (no public prefix: the kind goes into the marker) and the
        // signature of SAS URLs.
        (r"\b[A-Za-z0-9_~.-]{3}[78]Q~[A-Za-z0-9_~.-]{31,34}", "[REDACTED:azure_client_secret]"),
        (r"(?i)([?&]sig=)[A-Za-z0-9%+/=]{16,}", "${1}[REDACTED]"),
        // A private key pasted into an argument.
        (r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)", "-----BEGIN ${1}PRIVATE KEY-----[REDACTED]"),
    ]
    .into_iter()
    .map(|(pattern, replacement)| (compile(pattern), replacement))
    .collect()
});

/// The patterns above are constants checked by the tests; a failure here is a programming error
/// caught before release, never input-dependent.
fn compile(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(regex) => regex,
        Err(error) => panic!("redaction pattern {pattern:?} does not compile: {error}"),
    }
}

fn replace<'t>(
    text: Cow<'t, str>,
    pattern: &Regex,
    with: impl FnMut(&Captures<'_>) -> String,
) -> Cow<'t, str> {
    if !pattern.is_match(&text) {
        return text;
    }
    Cow::Owned(pattern.replace_all(&text, with).into_owned())
}

/// Whether an argument is a flag whose value (the next argument) is a secret, e.g. `--token`.
fn is_secret_flag(arg: &str) -> bool {
    arg.starts_with('-') && !arg.contains('=') && is_secret_name(arg.trim_start_matches('-'))
}

/// Words of a flag or variable name that make its value a secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
    "auth",
    "authorization",
    "bearer",
    "cookie",
];
/// Words that make a following `key` a secret (`api_key`, `secret-access-key`).
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "access",
    "secret",
    "private",
    "auth",
    "master",
    "account",
    "subscription",
];
/// A last word that says the value is a reference or a setting, not the secret itself.
const NOT_A_VALUE: &[&str] = &[
    "file", "path", "dir", "env", "id", "type", "length", "len", "count", "limit", "url",
    "command", "cmd",
];
/// A first word that makes the flag a switch (`--no-auth`), whose next argument is not its value.
const SWITCH_PREFIXES: &[&str] = &[
    "no", "disable", "enable", "skip", "use", "require", "allow", "with", "without",
];

/// Whether a flag or variable name (`OPENAI_API_KEY`, `api-key`, `clientSecret`) names a secret.
fn is_secret_name(name: &str) -> bool {
    let words = words_of(name);
    let (Some(first), Some(last)) = (words.first(), words.last()) else {
        return false;
    };
    if NOT_A_VALUE.contains(&last.as_str()) || SWITCH_PREFIXES.contains(&first.as_str()) {
        return false;
    }
    words.iter().enumerate().any(|(index, word)| {
        SECRET_WORDS.contains(&word.as_str())
            || (word == "key" && index > 0 && KEY_QUALIFIERS.contains(&words[index - 1].as_str()))
    })
}

/// Splits a name into lowercase words at `-`, `_`, `.` and camelCase boundaries.
fn words_of(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(cmdline: &str) -> String {
        let args: Vec<String> = cmdline.split(' ').map(str::to_owned).collect();
        redact_cmdline(&args)
    }

    #[track_caller]
    fn check(cmdline: &str, expect: &str) {
        assert_eq!(redacted(cmdline), expect, "redact_cmdline({cmdline:?})");
    }

    #[test]
    fn known_token_shapes_keep_their_kind() {
        check(
            "aider --openai-key sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
            "aider --openai-key sk-proj-[REDACTED]",
        );
        check("x sk-abcdefghijklmnopqrstuvwxyz012345", "x sk-[REDACTED]");
        check(
            "x sk-ant-api03-abcdefghijklmnopqrstuvwxyz-_0123",
            "x sk-ant-[REDACTED]",
        );
        check(
            "x ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "x ghp_[REDACTED]",
        );
        check(
            "x github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz",
            "x github_pat_[REDACTED]",
        );
        check("x AKIAIOSFODNN7EXAMPLE", "x AKIA[REDACTED]");
        check("x xoxb-123456789012-abcdefghijkl", "x xoxb-[REDACTED]");
        check("x hf_abcdefghijklmnopqrstuvwxyzABCDEFGH", "x hf_[REDACTED]");
        check(
            "x AIzaSyA-abcdefghijklmnopqrstuvwxyz012345",
            "x AIza[REDACTED]",
        );
        check(
            "x eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "x eyJ[REDACTED]",
        );
        check("x ya29.a0AfH6SMBabcdefghijklmnopqrstu", "x ya29.[REDACTED]");
        check("x glpat-abcdefghijklmnopqrst12", "x glpat-[REDACTED]");
        check(
            "x npm_abcdefghijklmnopqrstuvwxyz0123456789",
            "x npm_[REDACTED]",
        );
        check("x gsk_abcdefghijklmnopqrstuvwxyz01", "x gsk_[REDACTED]");
        check("x xai-abcdefghijklmnopqrstuvwxyz01", "x xai-[REDACTED]");
        check("x GOCSPX-abcdefghijklmnopqrstuvwx", "x GOCSPX-[REDACTED]");
        check(
            "x https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX",
            "x https://hooks.slack.com/services/[REDACTED]",
        );
        check(
            "x abc8Q~abcdefghijklmnopqrstuvwxyz0123456",
            "x [REDACTED:azure_client_secret]",
        );
        check(
            "x https://acct.blob.core.windows.net/c?sv=2022&sig=abcdefghijklmnop%2Bqrst",
            "x https://acct.blob.core.windows.net/c?sv=2022&sig=[REDACTED]",
        );
        let args = vec![
            "x".to_owned(),
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----".to_owned(),
        ];
        assert_eq!(
            redact_cmdline(&args),
            "x -----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]"
        );
    }

    #[test]
    fn secret_flags_hide_their_value_in_both_forms() {
        check(
            "llama-server --api-key hunter2hunter2 --port 8080",
            "llama-server --api-key [REDACTED] --port 8080",
        );
        check(
            "llama-server --api-key=hunter2hunter2",
            "llama-server --api-key=[REDACTED]",
        );
        check(
            "tool --password p4ss --token t0k --secret s3c",
            "tool --password [REDACTED] --token [REDACTED] --secret [REDACTED]",
        );
        check(
            "tool --auth-token abc --client-secret def",
            "tool --auth-token [REDACTED] --client-secret [REDACTED]",
        );
        check("tool --apiKey abc", "tool --apiKey [REDACTED]");
        // The next flag is not a value; switches and references are not secrets.
        check("tool --token --verbose", "tool --token --verbose");
        check("tool --no-auth serve", "tool --no-auth serve");
        check(
            "tool --token-file /run/secrets/t",
            "tool --token-file /run/secrets/t",
        );
        check(
            "vllm serve m --max-tokens 4096",
            "vllm serve m --max-tokens 4096",
        );
    }

    #[test]
    fn env_style_arguments_hide_secret_values() {
        check(
            "env OPENAI_API_KEY=abc123 ANTHROPIC_AUTH_TOKEN=xyz HOME=/root aider",
            "env OPENAI_API_KEY=[REDACTED] ANTHROPIC_AUTH_TOKEN=[REDACTED] HOME=/root aider",
        );
        check(
            "docker run -e GITHUB_TOKEN=abc -e MAX_TOKENS=5 img",
            "docker run -e GITHUB_TOKEN=[REDACTED] -e MAX_TOKENS=5 img",
        );
        check(
            "sh -c AWS_SECRET_ACCESS_KEY=abc;aws",
            "sh -c AWS_SECRET_ACCESS_KEY=[REDACTED];aws",
        );
        check("x DB_PASSWORD=p", "x DB_PASSWORD=[REDACTED]");
        check("x AWS_ACCESS_KEY_ID=public", "x AWS_ACCESS_KEY_ID=public");
    }

    #[test]
    fn urls_and_headers_lose_their_credentials() {
        check(
            "git clone https://alice:s3cret@git.example.com/r.git",
            "git clone https://alice:[REDACTED]@git.example.com/r.git",
        );
        check(
            "psql postgres://app:pw@db:5432/x",
            "psql postgres://app:[REDACTED]@db:5432/x",
        );
        check(
            "curl https://api.example/v1?api_key=abc&x=1",
            "curl https://api.example/v1?api_key=[REDACTED]&x=1",
        );
        check(
            "curl https://example.com/path",
            "curl https://example.com/path",
        );
        let args = vec![
            "curl".to_owned(),
            "-H".to_owned(),
            "Authorization: Bearer abcdefghijkl".to_owned(),
        ];
        assert_eq!(redact_cmdline(&args), "curl -H Authorization: [REDACTED]");
        let args = vec![
            "curl".to_owned(),
            "-H".to_owned(),
            "x-api-key: abcdef".to_owned(),
        ];
        assert_eq!(redact_cmdline(&args), "curl -H x-api-key: [REDACTED]");
    }

    #[test]
    fn ordinary_command_lines_are_unchanged() {
        for cmdline in [
            "ollama serve",
            "node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --dangerously-skip-permissions",
            "codex -a never -s danger-full-access",
            "python -m vllm.entrypoints.openai.api_server --model Qwen/Qwen3-8B --port 8000",
            "git push --force origin main",
            "task-sk-1",
        ] {
            check(cmdline, cmdline);
        }
    }

    #[test]
    fn long_command_lines_are_capped_on_a_char_boundary() {
        let args = vec!["x".to_owned(), "é".repeat(MAX_CMDLINE)];
        let (text, truncated) = redact_cmdline_capped(&args);
        assert!(truncated);
        assert!(text.len() <= MAX_CMDLINE && text.len() >= MAX_CMDLINE - 1);
        let (text, truncated) = redact_cmdline_capped(&["ollama".to_owned(), "serve".to_owned()]);
        assert_eq!((text.as_str(), truncated), ("ollama serve", false));
    }

    #[test]
    fn a_secret_at_the_cap_is_never_left_half_readable() {
        let filler = "a".repeat(MAX_CMDLINE - 10);
        let key = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";
        let (text, truncated) = redact_cmdline_capped(&[filler, key.to_owned()]);
        assert!(truncated);
        assert!(!text.contains("abcdefghij"), "{text}");
    }

    #[test]
    fn caps_cut_on_char_boundaries() {
        assert_eq!(cap("héllo", 2), ("h", true));
        assert_eq!(cap("héllo", 3), ("hé", true));
        assert_eq!(cap("hello", 5), ("hello", false));
    }

    #[test]
    fn terminal_control_characters_are_escaped() {
        assert_eq!(escape_for_terminal("ollama"), "ollama");
        assert_eq!(escape_for_terminal("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(escape_for_terminal("line\r\nnext"), "line\\u{d}\\u{a}next");
        assert_eq!(
            escape_for_terminal("evil\u{202e}txt.exe"),
            "evil\\u{202e}txt.exe"
        );
        assert_eq!(escape_for_terminal("日本語"), "日本語");
    }

    #[test]
    fn names_are_split_into_words() {
        assert_eq!(words_of("OPENAI_API_KEY"), ["openai", "api", "key"]);
        assert_eq!(words_of("clientSecret"), ["client", "secret"]);
        assert_eq!(words_of("api-key"), ["api", "key"]);
        assert!(is_secret_name("OPENAI_API_KEY"));
        assert!(is_secret_name("apiKey"));
        assert!(!is_secret_name("MAX_TOKENS"));
        assert!(!is_secret_name("key"));
        assert!(!is_secret_name("KEYBOARD"));
    }
}
