//! Network lab: real clients' DNS, TLS and QUIC traffic between two network namespaces, seen live by
//! `shadowai-agent sniff` running inside the client namespace and offline by `shadowai-agent pcap`
//! on a tcpdump capture of the same run.
//!
//! Which client asks for which name is `tests/netlab/plan.tsv` (also what `tests/netlab/lab.sh`
//! runs); whether a name is AI comes from the catalog through `shadowai-agent match`, never from this
//! file. Each AI name is used by exactly one client, so a client whose traffic the agent misses shows
//! up as a missing name; benign names (and Chromium's own requests to Google) must produce nothing.
//!
//! Needs root and `ip netns` (plus the tools `lab.sh check` lists). Without them the test is skipped
//! with the reason, or fails when `SHADOWAI_REQUIRE_NETLAB=1` (scripts/test.sh sets it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use shadowai_collector::store::{ObservationQuery, Signal, Store};

use crate::support::{ProcessGuard, Serve, binaries, lock_machine_wide, poll_until};

/// The signals a network capture yields.
const SIGNALS: [&str; 3] = ["dns", "tls_sni", "quic_sni"];
/// How long the agent and tcpdump may take to start capturing.
const CAPTURE_READY: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_ai_names_are_detected_live_and_in_the_capture_and_benign_ones_are_not() {
    let Some(lab_script) = netlab_or_skip() else {
        return;
    };
    // two labs at once would work (own namespaces), but share 2 cores with Chromium: keep it calm
    let _lock = lock_machine_wide("netlab").await;
    let bins = binaries();
    let plan = read_plan(&netlab_dir().join("plan.tsv"));
    let expected = Expectations::from_catalog(&plan, &bins.agent);
    assert!(
        expected.required.values().map(BTreeSet::len).sum::<usize>() >= 20,
        "the plan should exercise at least 20 (AI name, signal) pairs: {:?}",
        expected.required
    );

    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("temp dir");
    let lab = Lab::up(&lab_script, &format!("e2e{}", std::process::id()));
    let client_ns = lab.client_namespace();

    // libpcap sizes tcpdump's immediate-mode ring from the offload state when it starts: start the
    // captures with offloads on so that the Chromium run's >MTU super-frames are kept whole
    lab.script(&["offloads", &lab.id, "on"]);
    let capture = tmp.path().join("lab.pcap");
    let mut tcpdump = ProcessGuard::spawn(
        "tcpdump",
        Command::new("ip")
            .args(["netns", "exec", &client_ns])
            .args([
                "tcpdump",
                "-i",
                "veth0",
                "-n",
                "-s",
                "0",
                "-U",
                "--immediate-mode",
            ])
            .args(["-Z", "root", "-w"])
            .arg(&capture),
    );
    // `ip netns exec` execs into the agent: the guard's pid is the agent's
    let mut sniff = ProcessGuard::spawn(
        "shadowai-agent sniff",
        Command::new("ip")
            .args(["netns", "exec", &client_ns])
            .arg(&bins.agent)
            .args(["sniff", "--json"]),
    );
    wait_for_line(&tcpdump, "listening on", "tcpdump to start capturing").await;
    wait_for_line(
        &sniff,
        "sniff: capturing on",
        "the agent to start capturing",
    )
    .await;
    lab.script(&["offloads", &lab.id, "off"]);

    let run = lab.run_clients(env!("CARGO_BIN_EXE_shadowai-netlab-rustls"));
    let ran = parse_client_runs(&run);
    let planned: Vec<(String, String)> = plan
        .iter()
        .map(|line| (line.client.clone(), line.name.clone()))
        .collect();
    let ran_pairs: Vec<(String, String)> =
        ran.iter().map(|(c, n, _)| (c.clone(), n.clone())).collect();
    assert_eq!(
        ran_pairs,
        planned,
        "lab.sh run-clients must run every line of the plan:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let failed: Vec<_> = ran.iter().filter(|(_, _, status)| *status != 0).collect();
    assert!(
        failed.is_empty(),
        "clients failed (client, name, exit status): {failed:?}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );

    // the last hellos and their DNS answers are on the wire; give both captures a moment to see them
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tcpdump_status = tcpdump.terminate().await;
    assert!(
        tcpdump_status.success(),
        "tcpdump: {tcpdump_status}\n{}",
        tcpdump.log_tail()
    );
    let sniff_status = sniff.terminate().await;
    assert!(
        sniff_status.success(),
        "sniff exits 0 on SIGTERM, got {sniff_status}\n{}",
        sniff.log_tail()
    );
    let live = sniff.stdout_lines();

    let offline = Command::new(&bins.agent)
        .args(["pcap", "--json"])
        .arg(&capture)
        .output()
        .expect("run shadowai-agent pcap");
    assert!(
        offline.status.success(),
        "shadowai-agent pcap {}: {}\n{}",
        capture.display(),
        offline.status,
        String::from_utf8_lossy(&offline.stderr)
    );
    let offline: Vec<String> = String::from_utf8_lossy(&offline.stdout)
        .lines()
        .map(str::to_owned)
        .collect();

    let mut problems = check("live sniff", &live, &expected);
    problems.extend(check("pcap of the run", &offline, &expected));
    if !problems.is_empty() {
        // keep the capture for a human: it shows what was on the wire
        let kept = std::env::temp_dir().join(format!("shadowai-netlab-{}.pcap", lab.id));
        let _ = std::fs::copy(&capture, &kept);
        panic!(
            "{} problem(s):\n  {}\ncapture kept at {}\n--- sniff output ---\n{}\n--- pcap output ---\n{}",
            problems.len(),
            problems.join("\n  "),
            kept.display(),
            live.join("\n"),
            offline.join("\n")
        );
    }
    eprintln!("{}", attribution_summary(&live));
    eprintln!(
        "network lab: {} clients run, both captures checked in {:.1} s",
        ran.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// the plan and what the catalog says about it

/// The daemon (`shadowai-agent run`, network sensor on by default on Linux) inside the client
/// namespace captures a real `dig` query and a real `openssl s_client` hello and reports them to a
/// real collector (`serve`, in the same namespace, SQLite): each AI name arrives once, with the
/// catalog rule that fired; the benign name in the same run never leaves the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reports_captured_ai_names_to_the_collector_once() {
    let Some(lab_script) = netlab_or_skip() else {
        return;
    };
    let _lock = lock_machine_wide("netlab").await;
    let bins = binaries();
    let tmp = tempfile::tempdir().expect("temp dir");
    let lab = Lab::up(&lab_script, &format!("d{}", std::process::id()));
    let client_ns = lab.client_namespace();
    let in_client = |program: &Path| {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &client_ns]).arg(program);
        command
    };

    let database = format!("sqlite://{}", tmp.path().join("collector.db").display());
    let serve = Serve::start_in(Some(&client_ns), &tmp.path().join("collector"), &database).await;
    let token = serve.command(&["token", "create", "--group", "netlab"]);
    let state = tmp.path().join("agent");
    let enrolled = in_client(&bins.agent)
        .args(["enroll", "--collector", &format!("https://{}", serve.grpc)])
        .args(["--token", &token])
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("run shadowai-agent enroll");
    assert!(enrolled.status.success(), "enroll: {enrolled:?}");
    let config = tmp.path().join("agent.toml");
    // no [network] section: the sensor is on by default on Linux
    std::fs::write(
        &config,
        format!(
            "collector = \"https://{}\"\nstate_dir = \"{}\"\n[process]\nenabled = false\n\
             [inventory]\nenabled = false\n[transport]\nflush_interval_ms = 100\n",
            serve.grpc,
            state.display()
        ),
    )
    .expect("write agent.toml");
    let mut daemon = ProcessGuard::spawn(
        "shadowai-agent run",
        in_client(&bins.agent)
            .arg("run")
            .arg("--config")
            .arg(&config),
    );
    poll_until(
        CAPTURE_READY,
        "the daemon's network sensor to capture veth0",
        || {
            let status = std::fs::read_to_string(state.join("status.json"));
            async move {
                let status: Value = serde_json::from_str(&status.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
                let capturing = status["sensors"].as_array().is_some_and(|sensors| {
                    sensors.iter().any(|s| {
                        s["sensor"] == "network"
                            && field(s, "detail").contains("capturing on")
                            && field(s, "detail").contains("veth0")
                    })
                });
                if capturing {
                    Ok(())
                } else {
                    Err(status.to_string())
                }
            }
        },
    )
    .await;

    let server = "10.231.0.1";
    for name in ["api.anthropic.com", "example.org"] {
        let dig = in_client(Path::new("dig"))
            .args([&format!("@{server}"), name, "+tries=1", "+time=3"])
            .output()
            .expect("run dig");
        assert!(dig.status.success(), "dig {name}: {dig:?}");
    }
    let hello = in_client(Path::new("openssl"))
        .args(["s_client", "-connect", &format!("{server}:443")])
        .args(["-servername", "api.mistral.ai"])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    assert!(hello.status.success(), "openssl s_client: {hello:?}");

    let store = Store::connect(&database)
        .await
        .expect("open the collector's database");
    let expected = [
        ("api.anthropic.com", Signal::Dns),
        ("api.mistral.ai", Signal::TlsSni),
    ];
    let stored = || async {
        let page = store
            .list_observations(&ObservationQuery {
                limit: 1000,
                after: None,
                agent_id: None,
                product: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(page.items)
    };
    poll_until(
        Duration::from_secs(40),
        "both AI names stored by the collector",
        || async {
            let items = stored().await?;
            let missing: Vec<_> = expected
                .iter()
                .filter(|(name, signal)| {
                    !items.iter().any(|o| o.name == *name && o.signal == *signal)
                })
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "missing {missing:?}; daemon:\n{}",
                    daemon.log_tail()
                ))
            }
        },
    )
    .await;
    // a duplicate would come with the next flush (100 ms): give it time, then count
    tokio::time::sleep(Duration::from_secs(2)).await;
    let items = stored().await.expect("list observations");
    for (name, signal) in expected {
        let found: Vec<_> = items
            .iter()
            .filter(|o| o.name == name && o.signal == signal)
            .collect();
        assert_eq!(found.len(), 1, "{name} {signal:?} stored once: {found:#?}");
        let observation = found[0];
        assert!(
            !observation.product.is_empty() && !observation.rule.is_empty(),
            "{name}: the catalog product and rule are named: {observation:#?}"
        );
    }
    let leaked: Vec<_> = items
        .iter()
        .filter(|o| o.name.contains("example.org"))
        .collect();
    assert!(
        leaked.is_empty(),
        "a benign name reached the collector: {leaked:#?}"
    );
    let status = daemon.terminate().await;
    assert!(
        status.success(),
        "the daemon exits 0 on SIGTERM: {status}\n{}",
        daemon.log_tail()
    );
    store.close().await;
}

/// One line of plan.tsv.
#[derive(Debug, Clone, PartialEq)]
struct PlanLine {
    client: String,
    /// `-` for "no name at all".
    name: String,
    /// (signal, required): `quic_sni?` in the file is an optional signal.
    signals: Vec<(String, bool)>,
}

fn parse_plan(text: &str) -> Vec<PlanLine> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [client, name, signals] = fields[..] else {
                panic!("plan.tsv: a line is `client name signals`, got {line:?}");
            };
            let signals = signals
                .split(',')
                .map(|signal| match signal.strip_suffix('?') {
                    Some(optional) => (optional.to_owned(), false),
                    None => (signal.to_owned(), true),
                })
                .collect::<Vec<_>>();
            for (signal, _) in &signals {
                assert!(
                    SIGNALS.contains(&signal.as_str()),
                    "plan.tsv: unknown signal {signal:?} in {line:?}"
                );
            }
            PlanLine {
                client: client.to_owned(),
                name: name.to_owned(),
                signals,
            }
        })
        .collect()
}

fn read_plan(path: &Path) -> Vec<PlanLine> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let plan = parse_plan(&text);
    assert!(!plan.is_empty(), "{} has no lines", path.display());
    plan
}

/// What the detections of one run must be, per signal.
#[derive(Debug, Default)]
struct Expectations {
    /// (signal → AI names) that must be detected.
    required: BTreeMap<String, BTreeSet<String>>,
    /// (signal → AI names) that may be detected (required ones included).
    allowed: BTreeMap<String, BTreeSet<String>>,
    /// AI name → (product, rule) per the catalog.
    catalog: BTreeMap<String, (String, String)>,
    /// Names of the plan the catalog does not know: nothing may mention them.
    benign: BTreeSet<String>,
    /// Names whose server publishes an ECH config (Chromium sends ECH to them first).
    ech: BTreeSet<String>,
}

impl Expectations {
    /// Asks `shadowai-agent match --json -` about every name of the plan.
    fn from_catalog(plan: &[PlanLine], agent: &Path) -> Expectations {
        let names: BTreeSet<&str> = plan
            .iter()
            .map(|line| line.name.as_str())
            .filter(|name| *name != "-")
            .collect();
        let mut child = Command::new(agent)
            .args(["match", "--json", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run shadowai-agent match");
        {
            let mut stdin = child.stdin.take().expect("match stdin");
            for name in &names {
                writeln!(stdin, "{name}").expect("write a name to match");
            }
        }
        let output = child.wait_with_output().expect("shadowai-agent match");
        assert!(
            output.status.success(),
            "shadowai-agent match: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut answers = BTreeMap::new();
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let answer: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("match --json printed a non-JSON line ({e}): {line}"));
            let name = field(&answer, "name").to_owned();
            answers.insert(name, answer);
        }
        Expectations::from_answers(plan, &answers)
    }

    fn from_answers(plan: &[PlanLine], answers: &BTreeMap<String, Value>) -> Expectations {
        let mut expected = Expectations::default();
        for line in plan.iter().filter(|line| line.name != "-") {
            let answer = answers
                .get(&line.name)
                .unwrap_or_else(|| panic!("match gave no answer for {}", line.name));
            if line.client == "chromium-ech" {
                expected.ech.insert(line.name.clone());
            }
            if answer.get("matched").and_then(Value::as_bool) != Some(true) {
                expected.benign.insert(line.name.clone());
                continue;
            }
            expected.catalog.insert(
                line.name.clone(),
                (
                    field(answer, "product").to_owned(),
                    field(answer, "rule").to_owned(),
                ),
            );
            for (signal, required) in &line.signals {
                if *required {
                    expected
                        .required
                        .entry(signal.clone())
                        .or_default()
                        .insert(line.name.clone());
                }
                expected
                    .allowed
                    .entry(signal.clone())
                    .or_default()
                    .insert(line.name.clone());
            }
        }
        expected
    }
}

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("")
}

/// `name` lowercased, without a trailing dot and without leading RFC 8552 "attrleaf" labels
/// (`_8443._https.www.example.com` is a query about `www.example.com`).
fn base_name(name: &str) -> String {
    let mut name = name.trim_end_matches('.').to_ascii_lowercase();
    while name.starts_with('_') {
        match name.split_once('.') {
            Some((_, rest)) => name = rest.to_owned(),
            None => break,
        }
    }
    name
}

/// Everything wrong with one run's JSON lines (detections and blind spots) against `expected`.
fn check(source: &str, lines: &[String], expected: &Expectations) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut ech_blind: BTreeSet<String> = BTreeSet::new();
    for line in lines {
        let Ok(object) = serde_json::from_str::<Value>(line) else {
            problems.push(format!("{source}: a stdout line is not JSON: {line}"));
            continue;
        };
        let name = base_name(field(&object, "name"));
        if expected.benign.contains(&name) {
            problems.push(format!("{source}: benign name reported: {line}"));
            continue;
        }
        if field(&object, "kind") == "blind_spot" {
            if field(&object, "blind_spot") == "ech" {
                ech_blind.insert(name);
            }
            continue;
        }
        let signal = field(&object, "signal");
        if !SIGNALS.contains(&signal) {
            problems.push(format!("{source}: unexpected signal {signal:?}: {line}"));
            continue;
        }
        let allowed = expected
            .allowed
            .get(signal)
            .is_some_and(|names| names.contains(&name));
        if !allowed {
            problems.push(format!(
                "{source}: {signal} detection of {name:?}, which no client of the plan put in {signal}: {line}"
            ));
            continue;
        }
        if let Some((product, rule)) = expected.catalog.get(&name) {
            if field(&object, "product") != product {
                problems.push(format!(
                    "{source}: {name} should be product {product} per `match`: {line}"
                ));
            }
            if field(&object, "rule") != rule {
                problems.push(format!(
                    "{source}: {name} should name rule {rule} per `match`: {line}"
                ));
            }
        }
        seen.entry(signal.to_owned()).or_default().insert(name);
    }
    for (signal, names) in &expected.required {
        let found = seen.get(signal).cloned().unwrap_or_default();
        let missing: Vec<&String> = names.difference(&found).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{source}: {signal} detections missing for {missing:?}"
            ));
        }
    }
    let missing_ech: Vec<&String> = expected.ech.difference(&ech_blind).collect();
    if !missing_ech.is_empty() {
        problems.push(format!(
            "{source}: no `ech` blind spot for {missing_ech:?}, whose HTTPS record carries an ECH config"
        ));
    }
    problems
}

/// How many live detections named their process, per process name (informational: short-lived
/// clients may be gone before /proc is read).
fn attribution_summary(lines: &[String]) -> String {
    let mut by_process: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0;
    for line in lines {
        let Ok(object) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if object.get("signal").is_none() {
            continue;
        }
        total += 1;
        let process = object
            .get("process")
            .map(|process| field(process, "name"))
            .filter(|name| !name.is_empty())
            .unwrap_or("(unattributed)");
        *by_process.entry(process.to_owned()).or_default() += 1;
    }
    format!("live detections: {total}, by process: {by_process:?}")
}

fn parse_client_runs(output: &Output) -> Vec<(String, String, i32)> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("ran ")?.split_whitespace();
            let client = words.next()?.to_owned();
            let name = words.next()?.to_owned();
            let status = words.next()?.parse().ok()?;
            Some((client, name, status))
        })
        .collect()
}

async fn wait_for_line(process: &ProcessGuard, needle: &str, what: &str) {
    poll_until(CAPTURE_READY, what, || {
        let found = process.lines().iter().any(|line| line.contains(needle));
        let tail = process.log_tail();
        async move { if found { Ok(()) } else { Err(tail) } }
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// the lab

fn netlab_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("netlab")
}

/// The lab script if this machine can run the lab; `None` (after saying why) if it cannot and
/// `SHADOWAI_REQUIRE_NETLAB` is not `1`.
fn netlab_or_skip() -> Option<PathBuf> {
    let script = netlab_dir().join("lab.sh");
    let required = std::env::var_os("SHADOWAI_REQUIRE_NETLAB").is_some_and(|v| v == "1");
    let check = Command::new("bash").arg(&script).arg("check").output();
    let reason = match check {
        Ok(output) if output.status.success() => return Some(script),
        Ok(output) => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        Err(e) => format!("cannot run bash {}: {e}", script.display()),
    };
    assert!(
        !required,
        "SHADOWAI_REQUIRE_NETLAB=1 but the network lab cannot run here: {reason}"
    );
    eprintln!(
        "skipped: the network lab cannot run here ({reason}); scripts/test.sh runs it as root"
    );
    None
}

/// A lab brought up by `lab.sh up`; dropping it runs `lab.sh down` (kills every process in its
/// namespaces by pid and deletes them), also when the test panics.
struct Lab {
    script: PathBuf,
    id: String,
}

impl Lab {
    fn up(script: &Path, id: &str) -> Lab {
        // the guard exists before `up` runs, so a half-made lab is taken down too
        let lab = Lab {
            script: script.to_owned(),
            id: id.to_owned(),
        };
        lab.script(&["up", id]);
        lab
    }

    fn client_namespace(&self) -> String {
        format!("sa-{}-cli", self.id)
    }

    /// Runs `lab.sh ARGS` and panics with its output if it fails.
    fn script(&self, args: &[&str]) -> Output {
        let output = Command::new("bash")
            .arg(&self.script)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run lab.sh {args:?}: {e}"));
        assert!(
            output.status.success(),
            "lab.sh {args:?} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn run_clients(&self, rustls_client: &str) -> Output {
        let output = Command::new("bash")
            .arg(&self.script)
            .args(["run-clients", &self.id])
            .env("NETLAB_RUSTLS_CLIENT", rustls_client)
            .output()
            .expect("run lab.sh run-clients");
        assert!(
            output.status.success(),
            "lab.sh run-clients failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let down = Command::new("bash")
            .arg(&self.script)
            .args(["down", &self.id])
            .output();
        if !matches!(&down, Ok(output) if output.status.success()) {
            eprintln!("warning: lab.sh down {} failed: {down:?}", self.id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the checker itself (no root needed)

mod checker {
    use super::*;

    fn plan() -> Vec<PlanLine> {
        parse_plan(
            "# comment\n\
             curl api.openai.com dns,tls_sni\n\
             curl example.org dns,tls_sni\n\
             chromium-quic-closed www.perplexity.ai dns,quic_sni?\n\
             chromium-ech api.openrouter.ai dns,tls_sni\n\
             openssl-nosni - tls_sni\n",
        )
    }

    fn answers() -> BTreeMap<String, Value> {
        let answer = |name: &str, product: Option<&str>| {
            serde_json::json!({
                "name": name,
                "matched": product.is_some(),
                "product": product,
                "rule": product.map(|p| format!("data/x.toml#{p}/domain/{name}")),
            })
        };
        [
            ("api.openai.com", Some("openai.api")),
            ("example.org", None),
            ("www.perplexity.ai", Some("perplexity.perplexity")),
            ("api.openrouter.ai", Some("openrouter.router")),
        ]
        .into_iter()
        .map(|(name, product)| (name.to_owned(), answer(name, product)))
        .collect()
    }

    fn detection(signal: &str, name: &str, product: &str) -> String {
        let base = base_name(name);
        serde_json::json!({
            "signal": signal, "name": name, "product": product,
            "rule": format!("data/x.toml#{product}/domain/{base}"),
        })
        .to_string()
    }

    fn good_run() -> Vec<String> {
        vec![
            detection("dns", "api.openai.com", "openai.api"),
            detection("tls_sni", "api.openai.com", "openai.api"),
            detection(
                "dns",
                "_8443._https.www.perplexity.ai",
                "perplexity.perplexity",
            ),
            detection("dns", "www.perplexity.ai", "perplexity.perplexity"),
            detection("dns", "api.openrouter.ai", "openrouter.router"),
            detection("tls_sni", "api.openrouter.ai", "openrouter.router"),
            r#"{"kind":"blind_spot","blind_spot":"ech","name":"api.openrouter.ai"}"#.to_owned(),
        ]
    }

    #[test]
    fn plan_lines_parse_with_optional_signals() {
        let plan = plan();
        assert_eq!(plan.len(), 5);
        assert_eq!(
            plan[2].signals,
            vec![("dns".to_owned(), true), ("quic_sni".to_owned(), false)]
        );
        let expected = Expectations::from_answers(&plan, &answers());
        assert_eq!(
            expected.required["dns"],
            BTreeSet::from(
                ["api.openai.com", "api.openrouter.ai", "www.perplexity.ai"].map(String::from)
            )
        );
        assert!(!expected.required.contains_key("quic_sni"));
        assert!(expected.allowed["quic_sni"].contains("www.perplexity.ai"));
        assert_eq!(expected.benign, BTreeSet::from(["example.org".to_owned()]));
    }

    #[test]
    fn a_complete_run_passes() {
        let expected = Expectations::from_answers(&plan(), &answers());
        assert_eq!(check("t", &good_run(), &expected), Vec::<String>::new());
        // the optional QUIC detection may be there too
        let mut run = good_run();
        run.push(detection(
            "quic_sni",
            "www.perplexity.ai",
            "perplexity.perplexity",
        ));
        assert_eq!(check("t", &run, &expected), Vec::<String>::new());
    }

    #[test]
    fn missing_benign_wrong_signal_and_wrong_rule_are_each_reported() {
        let expected = Expectations::from_answers(&plan(), &answers());

        let mut run = good_run();
        run.remove(1);
        let problems = check("t", &run, &expected);
        assert!(
            problems.len() == 1 && problems[0].contains("tls_sni detections missing"),
            "{problems:?}"
        );

        let mut run = good_run();
        run.push(detection("dns", "example.org", "nothing.real"));
        let problems = check("t", &run, &expected);
        assert!(
            problems.iter().any(|p| p.contains("benign name reported")),
            "{problems:?}"
        );

        let mut run = good_run();
        run.push(detection("quic_sni", "api.openai.com", "openai.api"));
        let problems = check("t", &run, &expected);
        assert!(
            problems.iter().any(|p| p.contains("no client of the plan")),
            "{problems:?}"
        );

        let mut run = good_run();
        run.push(detection("dns", "api.openai.com", "openai.chatgpt"));
        let problems = check("t", &run, &expected);
        assert!(
            problems.iter().any(|p| p.contains("should be product")),
            "{problems:?}"
        );

        let mut run = good_run();
        run.pop();
        let problems = check("t", &run, &expected);
        assert!(
            problems.iter().any(|p| p.contains("no `ech` blind spot")),
            "{problems:?}"
        );

        let problems = check("t", &["not json".to_owned()], &expected);
        assert!(
            problems.iter().any(|p| p.contains("not JSON")),
            "{problems:?}"
        );
    }

    #[test]
    fn attrleaf_labels_are_stripped() {
        assert_eq!(
            base_name("_8443._https.WWW.Perplexity.ai."),
            "www.perplexity.ai"
        );
        assert_eq!(base_name("_dmarc"), "_dmarc");
        assert_eq!(base_name("chatgpt.com"), "chatgpt.com");
    }
}
