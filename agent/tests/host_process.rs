//! The host sensor against real processes: AI tools started under the names and paths real
//! tools use, an agent (real `node` running `@anthropic-ai/claude-code/cli.js`) that starts a
//! shell, `kubectl`, a short-lived `aws` and an MCP server, and real listening sockets.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;
use support::{AGENT, ProcessGuard, agent, is_root, json_lines, node, program_copy};

const ANTHROPIC_KEY: &str = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
const OPENAI_KEY: &str = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789";

/// Writes `<dir>/node_modules/@anthropic-ai/claude-code/cli.js` with `body`.
fn claude_code_script(dir: &Path, body: &str) -> std::path::PathBuf {
    let package = dir.join("node_modules/@anthropic-ai/claude-code");
    std::fs::create_dir_all(&package).unwrap();
    let script = package.join("cli.js");
    std::fs::write(&script, body).unwrap();
    script
}

fn by_pid(detections: &[Value], pid: u32) -> Vec<&Value> {
    detections
        .iter()
        .filter(|d| d["process"]["pid"] == pid)
        .collect()
}

fn risks(detection: &Value) -> Vec<&str> {
    detection["risk"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn scan_reports_ai_processes_their_risky_flags_and_nothing_benign() {
    let dir = tempfile::tempdir().unwrap();
    let node = node();
    let idle = "setInterval(() => {}, 1000)";
    let script = claude_code_script(dir.path(), idle);
    let claude = ProcessGuard::spawn(Command::new(&node).arg(&script).args([
        "--dangerously-skip-permissions",
        "--api-key",
        ANTHROPIC_KEY,
    ]));
    // Native binaries, imitated by copies of node named like the tools running an idle script
    // (arguments after the script are the script's, as the tools' own flags would be).
    let idle_script = dir.path().join("idle.js");
    std::fs::write(&idle_script, idle).unwrap();
    let idle_script = idle_script.to_str().unwrap();
    let codex_path = program_copy(&node, &dir.path().join("bin/codex"));
    let codex = ProcessGuard::spawn(Command::new(&codex_path).args([
        idle_script,
        "--dangerously-bypass-approvals-and-sandbox",
        &format!("OPENAI_API_KEY={OPENAI_KEY}"),
    ]));
    let gemini_path = program_copy(&node, &dir.path().join("bin/gemini"));
    let gemini = ProcessGuard::spawn(Command::new(&gemini_path).args([idle_script, "--yolo"]));
    let benign_path = program_copy("/bin/sleep", &dir.path().join("bin/build-helper"));
    let benign = ProcessGuard::spawn(Command::new(&benign_path).arg("30"));
    let plain_node = ProcessGuard::spawn(Command::new(&node).args(["-e", idle]));
    support::pause(300);

    let output = agent(&["scan", "--json", "--no-inventory"]);
    assert!(output.status.success(), "{output:?}");
    let detections = json_lines(&output.stdout);
    let stdout = String::from_utf8_lossy(&output.stdout);

    let found = by_pid(&detections, claude.pid());
    assert_eq!(found.len(), 1, "{stdout}");
    assert_eq!(found[0]["product"], "anthropic.claude-code");
    assert_eq!(found[0]["event"], "started");
    assert!(risks(found[0]).contains(&"approval_bypass"), "{}", found[0]);
    assert!(
        found[0]["rule"]
            .as_str()
            .unwrap()
            .starts_with("data/anthropic.toml#anthropic.claude-code/process/"),
        "{}",
        found[0]
    );

    let found = by_pid(&detections, codex.pid());
    assert_eq!(found.len(), 1, "{stdout}");
    assert_eq!(found[0]["product"], "openai.codex");
    assert!(
        risks(found[0]).contains(&"approval_bypass") || risks(found[0]).contains(&"sandbox_off")
    );

    let found = by_pid(&detections, gemini.pid());
    assert_eq!(found.len(), 1, "{stdout}");
    assert_eq!(found[0]["product"], "google.gemini-cli");
    assert!(risks(found[0]).contains(&"approval_bypass"), "{}", found[0]);

    assert!(by_pid(&detections, benign.pid()).is_empty(), "{stdout}");
    assert!(by_pid(&detections, plain_node.pid()).is_empty(), "{stdout}");
    // Secrets never leave the process, but their kind does.
    assert!(!stdout.contains("AbCdEfGhIjKlMnOp"), "{stdout}");
    assert!(
        !stdout.contains("abcdefghijklmnopqrstuvwxyz0123456789"),
        "{stdout}"
    );
    assert!(stdout.contains("OPENAI_API_KEY=[REDACTED]"), "{stdout}");
}

/// The agent script: after `go` appears, runs a shell that runs `kubectl`, a short-lived
/// `aws` (exits at once), and an MCP server through `npx`; then idles.
const AGENT_SCRIPT: &str = r#"
const { execFileSync, spawn } = require('child_process');
const fs = require('fs');
const dir = process.env.LINEAGE_DIR;
const env = { PATH: dir + '/bin:/usr/bin:/bin' };
const wait = () => {
  if (!fs.existsSync(dir + '/go')) { setTimeout(wait, 20); return; }
  execFileSync('/bin/sh', ['-c', 'kubectl get pods; echo done'], { env });
  execFileSync(dir + '/bin/aws', ['s3', 'ls'], { env });
  spawn(dir + '/bin/npx', ['-y', '@modelcontextprotocol/server-filesystem', '/tmp'], { env, stdio: 'ignore' });
  fs.writeFileSync(dir + '/done', '');
};
wait();
setInterval(() => {}, 1000);
"#;

#[test]
fn agent_children_are_caught_through_process_events_with_their_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Stub CLIs: `kubectl` lives 50 ms, `aws` 20 ms, `npx` (the MCP server) 300 ms.
    for (name, body) in [
        ("kubectl", "#!/bin/sh\nsleep 0.05\n"),
        ("aws", "#!/bin/sh\nsleep 0.02\n"),
        ("npx", "#!/bin/sh\nsleep 0.3\n"),
    ] {
        let path = bin.join(name);
        std::fs::write(&path, body).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let script = claude_code_script(dir.path(), AGENT_SCRIPT);

    // Polling every hour: whatever is caught comes from the event source.
    let mut follower = Command::new(AGENT);
    follower
        .args([
            "scan",
            "--follow",
            "8",
            "--interval",
            "3600",
            "--json",
            "--no-inventory",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let follower = ProcessGuard::spawn(&mut follower);
    support::pause(1500);

    let agent_process = ProcessGuard::spawn(
        Command::new(node())
            .arg(&script)
            .arg("--dangerously-skip-permissions")
            .env("LINEAGE_DIR", dir.path()),
    );
    support::pause(300);
    std::fs::write(dir.path().join("go"), "").unwrap();
    support::wait_for_file(&dir.path().join("done"));

    let agent_pid = agent_process.pid();
    let output = follower.wait_with_output();
    drop(agent_process);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detections = json_lines(&output.stdout);

    if !is_root() {
        assert!(stderr.contains("polling only"), "{stderr}");
        return;
    }
    assert!(stderr.contains("process events on"), "{stderr}");
    let lineage: Vec<&Value> = detections
        .iter()
        .filter(|d| d["event"] == "spawned_by_agent")
        .collect();
    let text = String::from_utf8_lossy(&output.stdout);
    let rule = |rule: &str| {
        lineage
            .iter()
            .find(|d| d["rule"] == rule)
            .unwrap_or_else(|| panic!("no {rule} in {text}"))
    };
    let chain = |d: &Value| -> Vec<u64> {
        d["process"]["ancestors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["pid"].as_u64().unwrap())
            .collect()
    };

    let shell = rule("agent/lineage#agent_shell/sh");
    assert_eq!(shell["product"], "anthropic.claude-code");
    assert_eq!(shell["risk"], serde_json::json!(["agent_shell"]));
    assert_eq!(chain(shell), [u64::from(agent_pid)]);

    let kubectl = rule("agent/lineage#agent_infra_cli/kubectl");
    assert_eq!(kubectl["risk"], serde_json::json!(["agent_infra_cli"]));
    let kubectl_chain = chain(kubectl);
    assert_eq!(
        kubectl_chain.last(),
        Some(&u64::from(agent_pid)),
        "{kubectl}"
    );
    assert!(kubectl_chain.len() >= 2, "agent → sh → kubectl: {kubectl}");
    assert_eq!(kubectl["process"]["ancestors"][0]["name"], "sh");

    // `aws` lives 20 ms: only the event source can see it.
    let aws = rule("agent/lineage#agent_infra_cli/aws");
    assert_eq!(chain(aws), [u64::from(agent_pid)]);

    let mcp = lineage
        .iter()
        .find(|d| d["risk"] == serde_json::json!(["agent_mcp_server"]))
        .unwrap_or_else(|| panic!("no MCP server in {text}"));
    assert_eq!(chain(mcp), [u64::from(agent_pid)]);

    // The agent itself was reported once, with its risky flag.
    let agents: Vec<&Value> = detections
        .iter()
        .filter(|d| d["process"]["pid"] == agent_pid)
        .collect();
    assert_eq!(agents.len(), 1, "{text}");
    assert!(risks(agents[0]).contains(&"approval_bypass"));
    // Under this agent, nothing else was reported: the stubs' own `sleep` children are neither
    // shells nor infrastructure CLIs. (Other tests and builds on the machine may have agents of
    // their own, so detections outside this agent's tree are not looked at.)
    for detection in lineage
        .iter()
        .filter(|d| chain(d).contains(&u64::from(agent_pid)))
    {
        let rule = detection["rule"].as_str().unwrap();
        assert!(
            [
                "agent/lineage#agent_shell/sh",
                "agent/lineage#agent_infra_cli/kubectl",
                "agent/lineage#agent_infra_cli/aws",
            ]
            .contains(&rule)
                || rule.starts_with("agent/lineage#agent_mcp_server/"),
            "{detection}"
        );
    }
}

#[test]
fn listening_model_servers_are_reported_exposed_or_not() {
    let exposed = TcpListener::bind("0.0.0.0:11434");
    let local = TcpListener::bind("127.0.0.1:1234");
    let output = agent(&["scan", "--json", "--no-inventory"]);
    assert!(output.status.success(), "{output:?}");
    let detections = json_lines(&output.stdout);
    let listener = |port: u64| {
        detections
            .iter()
            .find(|d| d["signal"] == "listener" && d["port"] == port)
            .unwrap_or_else(|| panic!("no listener on {port}: {detections:?}"))
    };
    if exposed.is_ok() {
        let ollama = listener(11434);
        assert_eq!(ollama["product"], "ollama.ollama");
        assert_eq!(ollama["exposed"], true);
        assert_eq!(ollama["address"], "0.0.0.0");
        assert_eq!(ollama["risk"], serde_json::json!(["network_exposed"]));
        assert_eq!(ollama["rule"], "data/ollama.toml#ollama.ollama/port/11434");
    }
    if local.is_ok() {
        let lmstudio = listener(1234);
        assert_eq!(lmstudio["exposed"], false);
        assert_eq!(lmstudio["address"], "127.0.0.1");
        assert_eq!(lmstudio["risk"], serde_json::json!([]));
    }
    drop((exposed, local));
}

#[test]
fn secrets_on_a_command_line_are_redacted_with_their_kind_kept() {
    let dir = tempfile::tempdir().unwrap();
    let script = claude_code_script(dir.path(), "setInterval(() => {}, 1000)");
    // (argument, what must not appear, what must appear instead)
    let secrets: &[(&str, &str, &str)] = &[
        (ANTHROPIC_KEY, "AbCdEfGhIjKlMnOp", "sk-ant-[REDACTED]"),
        (
            OPENAI_KEY,
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "sk-proj-[REDACTED]",
        ),
        (
            "AIzaSyA-1234567890abcdefghijklmnopqrstu",
            "1234567890abcdefghij",
            "AIza[REDACTED]",
        ),
        (
            "ghp_0123456789abcdefghijABCDEFGHIJ0123",
            "0123456789abcdefghijABCD",
            "ghp_[REDACTED]",
        ),
        (
            "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
            "0987654321-AbCdEf",
            "xoxb-[REDACTED]",
        ),
        ("AKIAZ7EXAMPLEKEY1234", "Z7EXAMPLEKEY1234", "AKIA[REDACTED]"),
        (
            "hf_AbCdEfGhIjKlMnOpQrStUvWxYz012345",
            "AbCdEfGhIjKlMnOpQrSt",
            "hf_[REDACTED]",
        ),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlX29mX3RoZV9qd3Q",
            "eyJzdWIiOiJhbGljZSJ9",
            "eyJ[REDACTED]",
        ),
        (
            "xyz8Q~AbCdEfGhIjKlMnOpQrStUvWxYz0123456",
            "AbCdEfGhIjKlMnOpQrSt",
            "[REDACTED:azure_client_secret]",
        ),
        (
            "Authorization: Bearer tok3nV4lu3t0k3nV4lu3",
            "tok3nV4lu3",
            "Authorization: [REDACTED]",
        ),
        (
            "https://alice:pa55w0rd@db.example.com/x",
            "pa55w0rd",
            "alice:[REDACTED]@",
        ),
        (
            "DATABASE_PASSWORD=hunter2hunter2",
            "hunter2",
            "DATABASE_PASSWORD=[REDACTED]",
        ),
    ];
    let mut command = Command::new(node());
    command.arg(&script);
    for (secret, _, _) in secrets {
        command.arg(secret);
    }
    command.args(["--password", "correcthorsebattery", "--token=t0k3n-s3cr3t"]);
    let claude = ProcessGuard::spawn(&mut command);
    support::pause(300);
    let output = agent(&["scan", "--json", "--no-inventory"]);
    let detections = json_lines(&output.stdout);
    let found = by_pid(&detections, claude.pid());
    assert_eq!(found.len(), 1, "{detections:?}");
    let cmdline = found[0]["process"]["cmdline"].as_str().unwrap();
    for (_, hidden, shown) in secrets {
        assert!(!cmdline.contains(hidden), "{hidden} in {cmdline}");
        assert!(cmdline.contains(shown), "{shown} not in {cmdline}");
    }
    assert!(!cmdline.contains("correcthorsebattery"), "{cmdline}");
    assert!(cmdline.contains("--password [REDACTED]"), "{cmdline}");
    assert!(cmdline.contains("--token=[REDACTED]"), "{cmdline}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("t0k3n-s3cr3t"));
}
