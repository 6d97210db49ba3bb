//! Process matching through one `check(name, exe, cmdline, expect)` helper.
//!
//! `name` is what the OS reports (`""` to use argv[0]'s file name), `exe` the executable path
//! (`""` when unreadable), `cmdline` the arguments split on spaces. `expect` is `"-"` for no
//! match, or `"<product> <rule>"` plus ` risk=<flags>` when risky flags are present.

use shadowai_catalog::{Confidence, ProcessFacts};

use crate::catalog;

#[track_caller]
fn check(name: &str, exe: &str, cmdline: &str, expect: &str) {
    let args: Vec<String> = cmdline
        .split(' ')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    let argv0_name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("");
    let name = if name.is_empty() { argv0_name } else { name };
    let facts = ProcessFacts {
        name,
        exe,
        args: &args,
    };
    let actual = match catalog().match_process(&facts) {
        None => "-".to_owned(),
        Some(found) => {
            let rule = found.rule.rsplit('/').next().unwrap_or_default();
            let mut text = format!("{} {rule}", found.product.id);
            let risks = found.risk_names();
            if !risks.is_empty() {
                text.push_str(&format!(" risk={}", risks.join(",")));
            }
            text
        }
    };
    assert_eq!(
        actual, expect,
        "match_process(name={name:?}, exe={exe:?}, args={cmdline:?})"
    );
}

#[test]
fn local_model_runtimes() {
    check(
        "",
        "/usr/local/bin/ollama",
        "ollama serve",
        "ollama.ollama server",
    );
    check(
        "",
        "/usr/bin/ollama",
        "/usr/bin/ollama run llama3",
        "ollama.ollama cli",
    );
    check(
        "ollama",
        "",
        "ollama runner --model /x/blobs/sha256-1 --port 40000",
        "ollama.ollama runner",
    );
    check(
        "Ollama",
        "/Applications/Ollama.app/Contents/MacOS/Ollama",
        "/Applications/Ollama.app/Contents/MacOS/Ollama",
        "ollama.ollama macos-app",
    );
    check(
        "ollama app.exe",
        "C:\\Users\\u\\AppData\\Local\\Programs\\Ollama\\ollama app.exe",
        "ollama",
        "ollama.ollama tray-app",
    );
    check(
        "",
        "/opt/homebrew/bin/llama-server",
        "llama-server -m model.gguf --port 8080",
        "ggml.llama-cpp server",
    );
    check(
        "",
        "/usr/local/bin/llama-server",
        "llama-server -m m.gguf --host 0.0.0.0",
        "ggml.llama-cpp server risk=network_exposed",
    );
    check(
        "python3",
        "/usr/bin/python3.11",
        "python3 -m llama_cpp.server --model m.gguf",
        "ggml.llama-cpp python-server",
    );
    check(
        "vllm",
        "/usr/bin/python3.12",
        "/usr/bin/python3 /home/u/.local/bin/vllm serve Qwen/Qwen3-8B",
        "vllm.vllm serve",
    );
    check(
        "python",
        "/usr/bin/python3.12",
        "python -m vllm.entrypoints.openai.api_server --model x",
        "vllm.vllm openai-entrypoint",
    );
    check(
        "",
        "/home/u/.lmstudio/bin/lms",
        "lms server start",
        "lmstudio.lm-studio cli-path",
    );
    check(
        "",
        "/usr/local/bin/lms",
        "lms load qwen",
        "lmstudio.lm-studio cli",
    );
    check(
        "LM Studio",
        "/Applications/LM Studio.app/Contents/MacOS/LM Studio",
        "/Applications/LM Studio.app/Contents/MacOS/LM Studio",
        "lmstudio.lm-studio app",
    );
}

#[test]
fn claude_code_in_every_install_shape() {
    check(
        "claude",
        "/home/u/.local/share/claude/versions/2.0.14",
        "claude",
        "anthropic.claude-code native-install",
    );
    check(
        "node",
        "/usr/bin/node",
        "node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --dangerously-skip-permissions",
        "anthropic.claude-code npm risk=approval_bypass",
    );
    check(
        "node",
        "/usr/bin/node",
        "node /usr/local/bin/claude --permission-mode bypassPermissions",
        "anthropic.claude-code native risk=approval_bypass",
    );
    check(
        "claude",
        "/opt/homebrew/bin/claude",
        "claude --permission-mode=acceptEdits",
        "anthropic.claude-code native risk=auto_edit",
    );
    check(
        "claude",
        "/opt/homebrew/bin/claude",
        "claude --permission-mode plan",
        "anthropic.claude-code native",
    );
    check(
        "claude",
        "/opt/homebrew/bin/claude",
        "claude -p fix-the-build --dangerously-skip-permissions",
        "anthropic.claude-code native risk=approval_bypass,unattended",
    );
    check(
        "claude",
        "/usr/lib/node_modules/@anthropic-ai/claude-code/bin/claude.exe",
        "claude",
        "anthropic.claude-code npm-binary",
    );
    // The desktop app shares the name, and is told apart by its path.
    check(
        "Claude",
        "/Applications/Claude.app/Contents/MacOS/Claude",
        "/Applications/Claude.app/Contents/MacOS/Claude",
        "anthropic.claude desktop-app",
    );
}

#[test]
fn other_coding_agents() {
    check(
        "node",
        "/usr/bin/node",
        "node /usr/lib/node_modules/@openai/codex/bin/codex.js --yolo",
        "openai.codex npm risk=approval_bypass,sandbox_off",
    );
    check(
        "codex",
        "/usr/lib/node_modules/@openai/codex/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl/codex/codex",
        "codex --full-auto",
        "openai.codex npm-binary risk=auto_edit",
    );
    check(
        "codex",
        "/home/u/.local/bin/codex",
        "codex -a never -s danger-full-access exec fix",
        "openai.codex native risk=approval_bypass,sandbox_off",
    );
    check(
        "codex",
        "/home/u/.local/bin/codex",
        "codex --dangerously-bypass-approvals-and-sandbox",
        "openai.codex native risk=approval_bypass,sandbox_off",
    );
    check(
        "codex",
        "/home/u/.local/bin/codex",
        "codex -- --yolo",
        "openai.codex native",
    );
    check(
        "node",
        "/usr/bin/node",
        "node /usr/local/lib/node_modules/@google/gemini-cli/dist/index.js --yolo",
        "google.gemini-cli npm risk=approval_bypass",
    );
    check(
        "node",
        "/usr/bin/node",
        "node /usr/local/bin/gemini --approval-mode=yolo",
        "google.gemini-cli cli risk=approval_bypass",
    );
    check(
        "gemini",
        "/usr/local/bin/gemini",
        "gemini -y",
        "google.gemini-cli cli risk=approval_bypass",
    );
    check(
        "aider",
        "/usr/bin/python3.12",
        "/usr/bin/python3 /home/u/.local/bin/aider --yes-always",
        "aider.aider cli risk=approval_bypass",
    );
    check(
        "python3",
        "/usr/bin/python3.12",
        "python3 -m aider --message fix",
        "aider.aider cli risk=unattended",
    );
    check(
        "cursor-agent",
        "/home/u/.local/bin/cursor-agent",
        "cursor-agent --force -p task",
        "anysphere.cursor agent-cli risk=approval_bypass",
    );
    check(
        "node",
        "/home/u/.local/share/cursor-agent/versions/2026.05.01-eea359f/node",
        "/home/u/.local/share/cursor-agent/versions/2026.05.01-eea359f/node --use-system-ca /home/u/.local/share/cursor-agent/versions/2026.05.01-eea359f/index.js --approve-mcps",
        "anysphere.cursor agent-cli-script risk=mcp_auto_trust",
    );
    check(
        "node",
        "",
        "/home/u/.local/share/cursor-agent/versions/1/node /home/u/.local/share/cursor-agent/versions/1/index.js --yolo",
        "anysphere.cursor agent-cli-script risk=approval_bypass",
    );
    check(
        "Cursor",
        "/Applications/Cursor.app/Contents/MacOS/Cursor",
        "/Applications/Cursor.app/Contents/MacOS/Cursor",
        "anysphere.cursor app-path",
    );
    check(
        "copilot-languag",
        "/home/u/.local/share/JetBrains/plugins/github-copilot/copilot-agent/native/linux-x64/copilot-language-server",
        "copilot-language-server --stdio",
        "github.copilot language-server",
    );
    check(
        "node",
        "/usr/bin/node",
        "node /usr/lib/node_modules/@github/copilot/index.js --allow-all-tools",
        "github.copilot cli-npm risk=approval_bypass",
    );
}

#[test]
fn autonomous_agents() {
    check(
        "goose",
        "/home/u/.local/bin/goose",
        "goose session",
        "block.goose cli",
    );
    check(
        "goose",
        "/home/u/.local/bin/goose",
        "goose run -t deploy",
        "block.goose cli",
    );
    check(
        "goosed",
        "/Applications/Goose.app/Contents/MacOS/goosed",
        "goosed agent",
        "block.goose server",
    );
    check(
        "node",
        "/usr/bin/node",
        "node /usr/lib/node_modules/openclaw/openclaw.mjs gateway --port 18789",
        "openclaw.openclaw gateway",
    );
    check(
        "openclaw",
        "/usr/bin/node",
        "openclaw doctor",
        "openclaw.openclaw cli",
    );
}

#[test]
fn weak_names_are_low_or_medium_confidence() {
    // pressly/goose, the database migration tool, has the same name.
    let args: Vec<String> = ["goose", "postgres", "dbname=x", "up"]
        .map(String::from)
        .to_vec();
    let found = catalog()
        .match_process(&ProcessFacts {
            name: "goose",
            exe: "/usr/local/bin/goose",
            args: &args,
        })
        .unwrap();
    assert_eq!(found.confidence, Confidence::Low);
    let args = vec!["ollama".to_owned(), "list".to_owned()];
    let found = catalog()
        .match_process(&ProcessFacts {
            name: "ollama",
            exe: "",
            args: &args,
        })
        .unwrap();
    assert_eq!(found.confidence, Confidence::Medium);
    let args = vec!["ollama".to_owned(), "serve".to_owned()];
    let found = catalog()
        .match_process(&ProcessFacts {
            name: "ollama",
            exe: "",
            args: &args,
        })
        .unwrap();
    assert_eq!(found.confidence, Confidence::High);
}

#[test]
fn benign_processes_do_not_match() {
    check("", "/usr/bin/bash", "bash", "-");
    check("", "/usr/bin/node", "node server.js", "-");
    check(
        "",
        "/usr/bin/node",
        "node /srv/app/node_modules/.bin/next dev",
        "-",
    );
    check(
        "python3",
        "/usr/bin/python3",
        "python3 manage.py runserver",
        "-",
    );
    check(
        "",
        "/usr/bin/grep",
        "grep -r node_modules/@anthropic-ai/claude-code/ .",
        "-",
    );
    check(
        "",
        "/usr/bin/vim",
        "vim /usr/lib/node_modules/@openai/codex/bin/codex.js",
        "-",
    );
    check("", "/usr/bin/less", "less ollama.log", "-");
    check("sleep", "/usr/bin/sleep", "sleep 600", "-");
    check("", "/usr/bin/ollama-exporter", "ollama-exporter", "-");
    check("", "", "", "-");
}

#[test]
fn processes_that_hide_their_exe_still_match_by_name_and_cmdline() {
    // Non-root agents cannot read other users' /proc/<pid>/exe.
    check("ollama", "", "ollama serve", "ollama.ollama server");
    check(
        "node",
        "",
        "node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
        "anthropic.claude-code npm",
    );
}

#[test]
fn process_matches_explain_themselves() {
    let args = vec!["ollama".to_owned(), "serve".to_owned()];
    let found = catalog()
        .match_process(&ProcessFacts {
            name: "ollama",
            exe: "/usr/bin/ollama",
            args: &args,
        })
        .unwrap();
    assert_eq!(found.rule, "data/ollama.toml#ollama.ollama/process/server");
    assert_eq!(
        found.reason,
        "process name is `ollama` and arguments contain `serve`"
    );

    let args: Vec<String> = [
        "node",
        "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js",
        "--dangerously-skip-permissions",
    ]
    .map(String::from)
    .to_vec();
    let found = catalog()
        .match_process(&ProcessFacts {
            name: "node",
            exe: "/usr/bin/node",
            args: &args,
        })
        .unwrap();
    assert_eq!(
        found.reason,
        "it runs under node and command line matches `node_modules[/\\\\]@anthropic-ai[/\\\\]claude-code[/\\\\]`"
    );
    assert_eq!(found.risks.len(), 1);
    assert_eq!(
        found.risks[0].id,
        "data/anthropic.toml#anthropic.claude-code/risky_flag/--dangerously-skip-permissions"
    );
}

#[test]
fn hostile_command_lines_are_survived() {
    let huge = "a".repeat(2 * 1024 * 1024);
    let args = vec!["ollama".to_owned(), huge, "serve".to_owned()];
    let found = catalog()
        .match_process(&ProcessFacts {
            name: "ollama",
            exe: "",
            args: &args,
        })
        .unwrap();
    assert_eq!(found.product.id, "ollama.ollama");
    let args = vec!["\u{1b}[2J".to_owned(), "'; DROP TABLE x; --".to_owned()];
    assert!(
        catalog()
            .match_process(&ProcessFacts {
                name: "\u{0}",
                exe: "\u{202e}",
                args: &args
            })
            .is_none()
    );
}
