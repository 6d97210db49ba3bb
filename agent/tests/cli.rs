//! The real `shadowai-agent` binary: `match` and `scan`, with real child processes.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

const AGENT: &str = env!("CARGO_BIN_EXE_shadowai-agent");

fn agent(args: &[&str]) -> Output {
    Command::new(AGENT)
        .args(args)
        .output()
        .expect("the agent binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

fn json_lines(output: &Output) -> Vec<Value> {
    stdout(output)
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
        })
        .collect()
}

#[test]
fn match_explains_domains_and_program_names_for_humans() {
    let output = agent(&[
        "match",
        "chatgpt.com",
        "API.Business.GithubCopilot.com.",
        "gemini.com",
        "claude",
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.contains("chatgpt.com: openai.chatgpt (ChatGPT by OpenAI, chat_app)"),
        "{text}"
    );
    assert!(
        text.contains("rule: data/openai.toml#openai.chatgpt/domain/chatgpt.com"),
        "{text}"
    );
    assert!(
        text.contains("why:  domain is `chatgpt.com` or under it"),
        "{text}"
    );
    assert!(text.contains("plan: business"), "{text}");
    assert!(text.contains("gemini.com: no match"), "{text}");
    assert!(
        text.contains("claude: anthropic.claude-code (Claude Code by Anthropic, coding_assistant)"),
        "{text}"
    );
}

#[test]
fn match_json_gives_one_object_per_name() {
    let output = agent(&[
        "match",
        "--json",
        "api.openai.com",
        "www.google.com",
        "--cmdline",
        "node /usr/lib/node_modules/@anthropic-ai/claude-code/cli.js --permission-mode bypassPermissions",
    ]);
    assert!(output.status.success(), "{output:?}");
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 3);

    assert_eq!(lines[0]["name"], "api.openai.com");
    assert_eq!(lines[0]["matched"], true);
    assert_eq!(lines[0]["kind"], "domain");
    assert_eq!(lines[0]["product"], "openai.api");
    assert_eq!(lines[0]["vendor"], "OpenAI");
    assert_eq!(lines[0]["category"], "model_api");
    assert_eq!(
        lines[0]["rule"],
        "data/openai.toml#openai.api/domain/api.openai.com"
    );
    assert_eq!(lines[0]["plan"], Value::Null);

    assert_eq!(lines[1]["name"], "www.google.com");
    assert_eq!(lines[1]["matched"], false);
    assert_eq!(lines[1]["product"], Value::Null);
    assert_eq!(lines[1]["rule"], Value::Null);

    assert_eq!(lines[2]["matched"], true);
    assert_eq!(lines[2]["kind"], "cmdline");
    assert_eq!(lines[2]["product"], "anthropic.claude-code");
    assert_eq!(lines[2]["category"], "coding_assistant");
    assert_eq!(lines[2]["risk"], serde_json::json!(["approval_bypass"]));
    assert_eq!(
        lines[2]["rule"],
        "data/anthropic.toml#anthropic.claude-code/process/npm"
    );
}

#[test]
fn match_reads_names_from_stdin() {
    let mut child = Command::new(AGENT)
        .args(["match", "-", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"claude.ai\n\n# comment\nexample.com\nregistry.ollama.ai.\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let lines = json_lines(&output);
    let summary: Vec<(String, bool)> = lines
        .iter()
        .map(|line| {
            (
                line["name"].as_str().unwrap().to_owned(),
                line["matched"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("claude.ai".into(), true),
            ("example.com".into(), false),
            ("registry.ollama.ai.".into(), true)
        ]
    );
}

#[test]
fn match_usage_errors_exit_2_with_a_message() {
    let output = agent(&["match"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("give at least one NAME"));
    let output = agent(&["match", "--cmdline", "claude 'unterminated"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unterminated single quote"));
}

#[test]
fn match_escapes_terminal_control_characters() {
    let output = agent(&["match", "evil\u{1b}[2J.example"]);
    assert!(output.status.success());
    assert_eq!(stdout(&output), "evil\\u{1b}[2J.example: no match\n");
}

/// A harmless program copied under an AI tool's name, killed when dropped.
struct Impostor {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Impostor {
    /// Copies `program` to `<tmp>/<name>` and starts it with `args`.
    fn start(program: &str, name: &str, args: &[&str]) -> Impostor {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let exe = dir.path().join(name);
        std::fs::copy(program, &exe).expect("a copy of the program");
        let child = spawn_retrying(&exe, args);
        Impostor { child, _dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Impostor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns, retrying while another test's fork still holds the freshly copied file open for
/// writing (ETXTBSY), a race of the test harness only.
#[allow(clippy::disallowed_methods)] // a short back-off in a test, not in a runtime thread
fn spawn_retrying(exe: &Path, args: &[&str]) -> Child {
    let mut attempts = 0;
    loop {
        // stdin stays open (a pipe held by `Child`), so `sh -c 'read line'` waits without a child
        // process that could outlive the test.
        match Command::new(exe).args(args).stdin(Stdio::piped()).spawn() {
            Ok(child) => return child,
            Err(error) if error.raw_os_error() == Some(26) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(error) => panic!("cannot start {}: {error}", exe.display()),
        }
    }
}

fn scan_json() -> Vec<Value> {
    let output = agent(&["scan", "--json"]);
    assert!(output.status.success(), "{output:?}");
    json_lines(&output)
}

fn detection_for(detections: &[Value], pid: u32) -> &Value {
    let found: Vec<&Value> = detections
        .iter()
        .filter(|d| d["process"]["pid"] == pid)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one detection for pid {pid} in {detections:#?}"
    );
    found[0]
}

#[test]
fn scan_finds_a_program_by_its_name_alone() {
    let impostor = Impostor::start("/bin/sleep", "ollama", &["600"]);
    let detections = scan_json();
    let detection = detection_for(&detections, impostor.pid());
    assert_eq!(detection["signal"], "process");
    assert_eq!(detection["product"], "ollama.ollama");
    assert_eq!(detection["vendor"], "Ollama");
    assert_eq!(detection["category"], "local_model_runtime");
    assert_eq!(
        detection["rule"],
        "data/ollama.toml#ollama.ollama/process/cli"
    );
    assert_eq!(detection["confidence"], "medium");
    assert_eq!(detection["name"], "ollama");
    assert_eq!(detection["process"]["name"], "ollama");
    assert!(
        detection["process"]["exe"]
            .as_str()
            .unwrap()
            .ends_with("/ollama")
    );
    assert!(
        detection["process"]["user"]
            .as_str()
            .is_some_and(|user| !user.is_empty())
    );
    assert!(detection["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(detection["event"], "started");
}

#[test]
fn scan_finds_ollama_serve_and_redacts_its_secrets() {
    // A copy of sh named `ollama` whose argv carries `serve`; the `read` builtin keeps it alive
    // on its stdin pipe, without a child process that could outlive the test.
    let impostor = Impostor::start(
        "/bin/sh",
        "ollama",
        &[
            "-c",
            "read line",
            "serve",
            "--api-key",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123",
        ],
    );
    let detections = scan_json();
    let detection = detection_for(&detections, impostor.pid());
    assert_eq!(detection["product"], "ollama.ollama");
    assert_eq!(
        detection["rule"],
        "data/ollama.toml#ollama.ollama/process/server"
    );
    assert_eq!(detection["confidence"], "high");
    assert_eq!(
        detection["reason"],
        "process name is `ollama` and arguments contain `serve`"
    );
    let cmdline = detection["process"]["cmdline"].as_str().unwrap();
    assert!(
        cmdline.ends_with("ollama -c read line serve --api-key [REDACTED]"),
        "{cmdline}"
    );
    assert!(!cmdline.contains("abcdefghij"), "{cmdline}");
}

#[test]
fn scan_prints_a_line_per_detection_for_humans() {
    let impostor = Impostor::start("/bin/sleep", "llama-server", &["600"]);
    let output = agent(&["scan"]);
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(text.starts_with("PID"), "{text}");
    let line = text
        .lines()
        .find(|line| line.starts_with(&format!("{} ", impostor.pid())))
        .unwrap_or_else(|| panic!("no line for pid {} in\n{text}", impostor.pid()));
    assert!(line.contains("ggml.llama-cpp"), "{line}");
    assert!(line.contains("local_model_runtime"), "{line}");
    assert!(
        line.contains("data/llama-cpp.toml#ggml.llama-cpp/process/server"),
        "{line}"
    );
}

#[test]
fn scan_ignores_benign_programs() {
    let impostor = Impostor::start("/bin/sleep", "not-an-ai-tool", &["600"]);
    let detections = scan_json();
    assert!(
        !detections
            .iter()
            .any(|d| d["process"]["pid"] == impostor.pid())
    );
}

#[test]
fn scan_root_must_be_a_directory() {
    let output = agent(&["scan", "--root", "/nonexistent/shadowai"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a directory"));
    let dir = tempfile::tempdir().unwrap();
    let output = agent(&["scan", "--json", "--root", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn match_answers_every_category_with_positive_and_negative_cases() {
    // (input, expected category or None for no match); `$ ` marks a command line.
    let cases: &[(&str, Option<&str>)] = &[
        ("chatgpt.com", Some("chat_app")),
        ("gemini.com", None),
        ("api.anthropic.com", Some("model_api")),
        ("storage.googleapis.com", None),
        ("api.individual.githubcopilot.com", Some("coding_assistant")),
        ("saoudrizwan.claude-dev", Some("coding_assistant")),
        ("raw.githubusercontent.com", None),
        ("$ goose session", Some("autonomous_agent")),
        ("$ goosebumps --help", None),
        ("$ crewai run", Some("agent_framework")),
        ("$ python3 -m pytest", None),
        ("mcp.notion.com", Some("mcp_server")),
        ("www.notion.so", None),
        ("$ ollama serve", Some("local_model_runtime")),
        ("myollama.com", None),
        ("huggingface.co", Some("model_hub")),
        ("hub.docker.com", None),
        ("openrouter.ai", Some("inference_gateway")),
        ("api.stripe.com", None),
        ("www.midjourney.com", Some("media_generation")),
        ("vimeo.com", None),
        ("otter.ai", Some("productivity_ai")),
        ("jasper.com", None),
        ("ai-chat.bsg.brave.com", Some("browser_ai")),
        ("search.brave.com", None),
    ];
    let mut args = vec!["match", "--json"];
    for (input, _) in cases {
        match input.strip_prefix("$ ") {
            Some(command) => args.extend(["--cmdline", command]),
            None => args.push(input),
        }
    }
    let output = agent(&args);
    assert!(output.status.success(), "{output:?}");
    let answers = json_lines(&output);
    // Names come first, then command lines, each in the order given.
    let ordered: Vec<&(&str, Option<&str>)> = cases
        .iter()
        .filter(|(input, _)| !input.starts_with("$ "))
        .chain(cases.iter().filter(|(input, _)| input.starts_with("$ ")))
        .collect();
    assert_eq!(answers.len(), ordered.len());
    let mut seen_categories = std::collections::BTreeSet::new();
    for ((input, expected), answer) in ordered.into_iter().zip(&answers) {
        assert_eq!(
            answer["name"].as_str(),
            Some(input.trim_start_matches("$ ")),
            "{answer}"
        );
        assert_eq!(
            answer["matched"],
            Value::Bool(expected.is_some()),
            "{input}: {answer}"
        );
        assert_eq!(answer["category"].as_str(), *expected, "{input}: {answer}");
        if let Some(category) = expected {
            assert!(
                answer["rule"]
                    .as_str()
                    .is_some_and(|rule| rule.starts_with("data/")),
                "{answer}"
            );
            seen_categories.insert(*category);
        }
    }
    assert_eq!(
        seen_categories.len(),
        12,
        "every category has a positive case"
    );
}
