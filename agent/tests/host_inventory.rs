//! `scan --root`: the file inventory over a copy of `tests/fixtures/home` (real config files of
//! real tools, see its README) plus hostile files made here: a 10 MB JSON, deep nesting, a
//! symlink to `/etc/shadow`, invalid UTF-8, a FIFO.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use support::{agent, json_lines};

/// Copies a directory tree (no symlinks in the fixtures).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn fixture_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/home");
    copy_tree(&fixtures, root.path());
    // A project is a directory with `.git` (git cannot hold one inside the fixtures).
    std::fs::create_dir_all(root.path().join("home/alice/src/app/.git")).unwrap();
    root
}

fn inventory(root: &Path) -> (Vec<Value>, String, String) {
    let output = agent(&["scan", "--json", "--root", root.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    let detections = json_lines(&output.stdout)
        .into_iter()
        .filter(|d| d["signal"] == "config" || d["signal"] == "app")
        .collect();
    (
        detections,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// (rule tail after the product, path, setting) of every detection.
fn summary(detections: &[Value]) -> BTreeSet<(String, String, String)> {
    detections
        .iter()
        .map(|d| {
            let rule = d["rule"].as_str().unwrap();
            let tail = rule.split_once('#').map_or(rule, |(_, tail)| tail);
            (
                tail.to_owned(),
                d["path"].as_str().unwrap_or_default().to_owned(),
                d["setting"]
                    .as_str()
                    .or(d["app_id"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect()
}

fn find<'a>(detections: &'a [Value], rule_tail: &str, setting: &str) -> &'a Value {
    detections
        .iter()
        .find(|d| {
            d["rule"].as_str().unwrap().ends_with(rule_tail)
                && (d["setting"] == setting || d["app_id"] == setting)
        })
        .unwrap_or_else(|| panic!("no {rule_tail} {setting} in {detections:#?}"))
}

#[test]
fn risky_settings_mcp_servers_and_extensions_are_found_and_named() {
    let root = fixture_root();
    let (detections, stdout, stderr) = inventory(root.path());
    let found = summary(&detections);
    let expected: BTreeSet<(String, String, String)> = [
        (
            "anthropic.claude-code/config/user-state/project-allows-bash",
            "/home/alice/.claude.json",
            "projects.*.allowedTools",
        ),
        (
            "anthropic.claude-code/config/user-state/mcp-server",
            "/home/alice/.claude.json",
            "mcpServers.github",
        ),
        (
            "anthropic.claude-code/config/user-state/mcp-server",
            "/home/alice/.claude.json",
            "mcpServers.remote-docs",
        ),
        (
            "anthropic.claude-code/config/user-state/mcp-server",
            "/home/alice/.claude.json",
            "mcpServers.mystery",
        ),
        (
            "anthropic.claude-code/config/user-settings/bypass-permissions",
            "/home/alice/.claude/settings.json",
            "permissions.defaultMode",
        ),
        (
            "anthropic.claude-code/config/user-settings/allow-bash-wildcard",
            "/home/alice/.claude/settings.json",
            "permissions.allow",
        ),
        (
            "anthropic.claude-code/config/project-mcp/mcp-server",
            "/home/alice/src/app/.mcp.json",
            "mcpServers.sentry",
        ),
        (
            "openai.codex/config/user-config/approval-never",
            "/home/alice/.codex/config.toml",
            "approval_policy",
        ),
        (
            "openai.codex/config/user-config/sandbox-full-access",
            "/home/alice/.codex/config.toml",
            "sandbox_mode",
        ),
        (
            "openai.codex/config/user-config/mcp-server",
            "/home/alice/.codex/config.toml",
            "mcp_servers.linear",
        ),
        (
            "openai.codex/config/user-config/mcp-server",
            "/home/alice/.codex/config.toml",
            "mcp_servers.postgres",
        ),
        (
            "google.gemini-cli/config/user-settings/auto-accept",
            "/home/alice/.gemini/settings.json",
            "tools.autoAccept",
        ),
        (
            "google.gemini-cli/config/user-settings/trusted-mcp-server",
            "/home/alice/.gemini/settings.json",
            "mcpServers.*.trust",
        ),
        (
            "google.gemini-cli/config/user-settings/mcp-server",
            "/home/alice/.gemini/settings.json",
            "mcpServers.filesystem",
        ),
        (
            "github.copilot/config/vscode-settings/auto-approve",
            "/home/alice/.config/Code/User/settings.json",
            "chat.tools.autoApprove",
        ),
        (
            "block.goose/config/config/mode-auto",
            "/home/alice/.config/goose/config.yaml",
            "GOOSE_MODE",
        ),
        (
            "block.goose/config/config/mcp-server",
            "/home/alice/.config/goose/config.yaml",
            "extensions.developer",
        ),
        (
            "openclaw.openclaw/config/config/exec-security-full",
            "/home/alice/.openclaw/openclaw.json",
            "tools.exec.security",
        ),
        (
            "openclaw.openclaw/config/config/exec-ask-off",
            "/home/alice/.openclaw/openclaw.json",
            "tools.exec.ask",
        ),
        (
            "openclaw.openclaw/config/config/gateway-bind-lan",
            "/home/alice/.openclaw/openclaw.json",
            "gateway.bind",
        ),
        (
            "github.copilot/extension/GitHub.copilot",
            "/home/alice/.vscode/extensions/github.copilot-1.250.0",
            "github.copilot",
        ),
        (
            "cline.cline/extension/saoudrizwan.claude-dev",
            "/home/alice/.vscode/extensions/saoudrizwan.claude-dev-3.17.0-linux-x64",
            "saoudrizwan.claude-dev",
        ),
    ]
    .into_iter()
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    .collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:#?}\nextra {extra:#?}"
    );

    // Each detection names its risk; MCP servers carry name, target and transport.
    let bypass = find(
        &detections,
        "user-settings/bypass-permissions",
        "permissions.defaultMode",
    );
    assert_eq!(bypass["risk"], serde_json::json!(["approval_bypass"]));
    assert_eq!(bypass["value"], "bypassPermissions");
    assert_eq!(bypass["signal"], "config");
    let remote = find(
        &detections,
        "user-state/mcp-server",
        "mcpServers.remote-docs",
    );
    assert_eq!(remote["risk"], serde_json::json!(["mcp_remote"]));
    assert_eq!(remote["mcp"]["target"], "mcp.docs-example.com");
    assert_eq!(remote["mcp"]["transport"], "http");
    let mystery = find(&detections, "user-state/mcp-server", "mcpServers.mystery");
    assert_eq!(
        mystery["risk"],
        serde_json::json!(["mcp_auto_trust", "mcp_unknown_server"])
    );
    assert_eq!(mystery["mcp"]["transport"], "stdio");
    let github = find(&detections, "user-state/mcp-server", "mcpServers.github");
    assert_eq!(github["risk"], serde_json::json!([]), "a known server");
    assert!(
        github["reason"]
            .as_str()
            .unwrap()
            .contains("GitHub MCP server")
    );
    let linear = find(&detections, "user-config/mcp-server", "mcp_servers.linear");
    assert_eq!(linear["mcp"]["transport"], "sse");
    let copilot = find(&detections, "extension/GitHub.copilot", "github.copilot");
    assert_eq!(copilot["version"], "1.250.0");
    assert_eq!(copilot["signal"], "app");

    // Secrets in the files never come out, but what they were does.
    for secret in [
        "hunter2",
        "abc123secret",
        "tok_verysecretvalue",
        "s3cretpw",
        "ghp_abcdefghij",
    ] {
        assert!(!stdout.contains(secret), "{secret} leaked: {stdout}");
    }
    assert!(stdout.contains("api_key=[REDACTED]"), "{stdout}");
    // Bob's files are benign: nothing about them.
    assert!(!stdout.contains("/home/bob"), "{stdout}");
    assert!(stderr.contains("0 problem(s)"), "{stderr}");
}

#[test]
fn hostile_files_are_survived_and_reported_as_problems() {
    let root = fixture_root();
    let alice = root.path().join("home/alice");
    // 10 MB of valid JSON where Cursor keeps its MCP servers.
    std::fs::create_dir_all(alice.join(".cursor")).unwrap();
    let big = format!(
        "{{\"mcpServers\":{{\"x\":{{\"command\":\"{}\"}}}}}}",
        "a".repeat(10 << 20)
    );
    std::fs::write(alice.join(".cursor/mcp.json"), big).unwrap();
    // Deep nesting where Kimi keeps its MCP servers.
    std::fs::create_dir_all(alice.join(".kimi")).unwrap();
    let deep = format!(
        "{{\"mcpServers\":{}{}}}",
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    std::fs::write(alice.join(".kimi/mcp.json"), deep).unwrap();
    // A symlink to /etc/shadow where Copilot CLI keeps its MCP servers.
    std::fs::create_dir_all(alice.join(".copilot")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", alice.join(".copilot/mcp-config.json")).unwrap();
    // Invalid UTF-8 where Factory keeps its MCP servers.
    std::fs::create_dir_all(alice.join(".factory")).unwrap();
    std::fs::write(
        alice.join(".factory/mcp.json"),
        b"{\"mcpServers\": {\"\xff\xfe\": 1}}",
    )
    .unwrap();
    // A FIFO (a read would block forever) where Amazon Q keeps its MCP servers.
    std::fs::create_dir_all(alice.join(".aws/amazonq")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        alice.join(".aws/amazonq/mcp.json"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // Deep YAML where Goose keeps its config.
    std::fs::write(
        alice.join(".config/goose/config.yaml"),
        format!("GOOSE_MODE: {}", "[".repeat(100_000)),
    )
    .unwrap();

    let (detections, stdout, stderr) = inventory(root.path());
    for (path, problem) in [
        ("/home/alice/.cursor/mcp.json", "larger than"),
        ("/home/alice/.kimi/mcp.json", "does not parse as json"),
        ("/home/alice/.copilot/mcp-config.json", "leads outside"),
        ("/home/alice/.factory/mcp.json", "does not parse as json"),
        ("/home/alice/.aws/amazonq/mcp.json", "not a regular file"),
        (
            "/home/alice/.config/goose/config.yaml",
            "does not parse as yaml",
        ),
    ] {
        assert!(
            stderr
                .lines()
                .any(|line| line.starts_with("inventory problem")
                    && line.contains(path)
                    && line.contains(problem)),
            "{path}: {problem} not in {stderr}"
        );
    }
    assert!(stderr.contains("6 problem(s)"), "{stderr}");
    assert!(!stdout.contains("root:"), "nothing of /etc/shadow");
    // The good files are still read.
    find(
        &detections,
        "user-settings/bypass-permissions",
        "permissions.defaultMode",
    );
    assert!(
        !detections
            .iter()
            .any(|d| d["path"] == "/home/alice/.cursor/mcp.json")
    );
}

#[test]
fn model_files_are_counted_never_read() {
    let root = fixture_root();
    let blobs = root.path().join("home/alice/.ollama/models/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    for name in ["sha256-aaaa", "sha256-bbbb"] {
        let file = std::fs::File::create(blobs.join(name)).unwrap();
        file.set_len(3 << 20).unwrap();
    }
    let models = root.path().join("home/alice/models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::File::create(models.join("qwen3-8b-q4.gguf"))
        .unwrap()
        .set_len(5 << 20)
        .unwrap();
    // Unreadable to anyone but root: counting uses metadata only.
    let (_, _, stderr) = inventory(root.path());
    assert!(
        stderr
            .contains("model files: ollama 2 file(s), 6291456 bytes at /home/alice/.ollama/models"),
        "{stderr}"
    );
    assert!(
        stderr.contains("model files: loose 1 file(s), 5242880 bytes"),
        "{stderr}"
    );
}

#[test]
fn a_root_that_is_not_a_directory_is_a_usage_error() {
    let output = agent(&["scan", "--root", "/nonexistent/shadowai-root"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
