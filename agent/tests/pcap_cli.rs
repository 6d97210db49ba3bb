//! `shadowai-agent pcap` on committed captures of real clients (see
//! `agent/tests/fixtures/net/README.md`): the exact set of names per signal, blind spots, and
//! nothing benign.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use shadowai_agent::commands::pcap::Pipeline;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/net")
        .join(name)
}

fn agent(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shadowai-agent"))
        .arg("pcap")
        .args(args)
        .output()
        .expect("run shadowai-agent")
}

/// (kind, signal or blind-spot kind, name) of every JSON line.
fn lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}

fn names(values: &[serde_json::Value]) -> BTreeSet<(String, String)> {
    values
        .iter()
        .map(|v| {
            let signal = v
                .get("signal")
                .or_else(|| v.get("blind_spot"))
                .and_then(|s| s.as_str())
                .unwrap_or_default();
            let kind = if v.get("kind").is_some() {
                "blind:"
            } else {
                ""
            };
            (
                format!("{kind}{signal}"),
                v["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn expected() -> BTreeSet<(String, String)> {
    [
        ("dns", "chatgpt.com"),
        ("dns", "api.anthropic.com"),
        ("dns", "claude.ai"),
        ("dns", "api.openai.com"),
        ("tls_sni", "chatgpt.com"),
        ("tls_sni", "claude.ai"),
        ("blind:doh", "dns.google"),
        ("blind:ech", "api.openai.com"),
        ("blind:dot", "dns.google"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_owned(), b.to_owned()))
    .collect()
}

#[test]
fn the_loopback_capture_yields_exactly_the_ai_names_and_blind_spots() {
    for file in ["loopback-mix.pcap", "loopback-mix.pcapng"] {
        let output = agent(&["--json".as_ref(), fixture(file).as_os_str()]);
        assert!(output.status.success(), "{file}: {output:?}");
        let values = lines(&output);
        assert_eq!(names(&values), expected(), "{file}");
        let text = String::from_utf8_lossy(&output.stdout);
        for benign in ["example.org", "www.example.org"] {
            assert!(!text.contains(benign), "{file}: benign {benign} reported");
        }
        for value in &values {
            if value.get("kind").is_none() {
                assert!(
                    value["rule"].as_str().unwrap().starts_with("data/"),
                    "{value}"
                );
                assert_eq!(value["count"], 1);
                assert!(
                    value["reason"]
                        .as_str()
                        .unwrap()
                        .ends_with("process unknown: offline capture")
                );
                // Packet time, not the wall clock: the capture was made on 2026-11-21.
                assert!(
                    value["ts"].as_str().unwrap().starts_with("2026-11-21T"),
                    "{value}"
                );
            }
        }
        let via_dns: Vec<&serde_json::Value> = values
            .iter()
            .filter(|v| v["signal"] == "tls_sni" && v["name"] == "claude.ai")
            .collect();
        assert_eq!(via_dns[0]["dst"], "127.0.0.7:4433");
        assert!(
            via_dns[0]["reason"]
                .as_str()
                .unwrap()
                .contains("via DNS answer")
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("89 packets")
                && stderr.contains("6 detections")
                && stderr.contains("3 blind spots"),
            "{file}: {stderr}"
        );
    }
}

#[test]
fn two_files_share_one_detector_so_repeats_are_counted() {
    let pcap = fixture("loopback-mix.pcap");
    let output = agent(&["--json".as_ref(), pcap.as_os_str(), pcap.as_os_str()]);
    assert!(output.status.success());
    let values = lines(&output);
    let chatgpt_dns: Vec<u64> = values
        .iter()
        .filter(|v| v["signal"] == "dns" && v["name"] == "chatgpt.com")
        .map(|v| v["count"].as_u64().unwrap())
        .collect();
    // First sighting at once, the second (same packets again) folded into the window summary.
    assert_eq!(chatgpt_dns, [1, 1]);
    assert_eq!(names(&values), expected());
}

#[test]
fn readable_output_escapes_and_names_the_rule() {
    let output = agent(&[fixture("loopback-mix.pcap").as_os_str()]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(text.lines().count(), 9, "{text}");
    assert!(
        text.lines().any(|l| l.contains("tls_sni")
            && l.contains("chatgpt.com")
            && l.contains("rule=data/openai.toml#openai.chatgpt/domain/chatgpt.com")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("blind:doh") && l.contains("dns.google"))
    );
}

#[test]
fn a_capture_cut_short_is_read_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("loopback-mix.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let output = agent(&["--json".as_ref(), cut.as_os_str()]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("88 packets"));
    // Prefixes of the file (every 23rd length) are read in-process, never a panic.
    let catalog = std::sync::Arc::new(shadowai_catalog::Catalog::embedded().unwrap());
    for name in ["loopback-mix.pcap", "loopback-mix.pcapng"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for end in (0..bytes.len()).step_by(23) {
            std::fs::write(&cut, &bytes[..end]).unwrap();
            let mut pipeline = Pipeline::new(catalog.clone());
            let _ = pipeline.read_file(&cut, &mut |_| {});
            pipeline.finish(&mut |_| {});
        }
    }
}

#[test]
fn wrong_files_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not a capture").unwrap();
    let output = agent(&[text.as_os_str()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a pcap or pcapng file"));
    let missing = dir.path().join("missing.pcap");
    let output = agent(&[missing.as_os_str()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no such file"));
    let output = agent(&[]);
    assert_eq!(output.status.code(), Some(2));
}

/// The network lab's captures of real clients (agent/tests/fixtures/pcap/README.md): per file,
/// exactly these (signal, name) pairs, and nothing for the benign names and background traffic.
#[test]
fn the_lab_captures_yield_exactly_their_ai_names() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pcap");
    let both = |name: &str| vec![("dns", name.to_owned()), ("tls_sni", name.to_owned())];
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("curl.pcap", both("api.deepseek.com")),
        ("wget.pcap", both("huggingface.co")),
        ("gnutls.pcap", both("api.mistral.ai")),
        ("python.pcap", both("generativelanguage.googleapis.com")),
        ("node.pcap", both("api.together.xyz")),
        ("rustls.pcap", both("api.x.ai")),
        ("chromium-tcp-off.pcap", both("chatgpt.com")),
        ("chromium-tcp-on.pcap", both("claude.ai")),
        ("getent.pcap", vec![("dns", "api.groq.com".into())]),
        (
            "dig.pcap",
            vec![
                ("dns", "api.openai.com".into()),
                ("dns", "api.anthropic.com".into()),
            ],
        ),
        (
            "openssl.pcap",
            [
                both("copilot-proxy.githubusercontent.com"),
                both("api.cohere.com"),
            ]
            .concat()
            .into_iter()
            .chain([("tls_sni", "contoso.openai.azure.com".to_owned())])
            .collect(),
        ),
        (
            "chromium-quic-sink.pcap",
            vec![
                ("dns", "gemini.google.com".into()),
                ("quic_sni", "gemini.google.com".into()),
            ],
        ),
        (
            "chromium-quic-closed.pcap",
            vec![
                ("dns", "www.perplexity.ai".into()),
                ("dns", "_8443._https.www.perplexity.ai".into()),
            ],
        ),
        (
            "chromium-ech.pcap",
            [
                both("api.openrouter.ai"),
                vec![("blind:ech", "api.openrouter.ai".into())],
            ]
            .concat(),
        ),
    ];
    for (file, want) in cases {
        let output = agent(&["--json".as_ref(), dir.join(file).as_os_str()]);
        assert!(output.status.success(), "{file}: {output:?}");
        let values = lines(&output);
        let want: BTreeSet<(String, String)> =
            want.into_iter().map(|(s, n)| (s.to_owned(), n)).collect();
        assert_eq!(names(&values), want, "{file}");
        if file == "openssl.pcap" {
            let azure = values
                .iter()
                .find(|v| v["name"] == "contoso.openai.azure.com")
                .unwrap();
            assert_eq!(azure["tenant"], "contoso");
        }
    }
}

/// Hostile capture files: seeded random byte mutations of the fixtures (headers, lengths,
/// link types, payloads) go through the whole in-process pipeline without a panic.
#[test]
fn mutated_captures_never_crash_the_pipeline() {
    let catalog = std::sync::Arc::new(shadowai_catalog::Catalog::embedded().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mutated");
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for name in [
        "net/loopback-mix.pcap",
        "net/loopback-mix.pcapng",
        "pcap/chromium-quic-sink.pcap",
    ] {
        let original = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .unwrap();
        for _ in 0..150 {
            let mut bytes = original.clone();
            for _ in 0..=(next() % 8) {
                // Bias towards the first bytes of the file and of records, where lengths live.
                let at = if next() % 2 == 0 {
                    (next() % 64) as usize
                } else {
                    (next() as usize) % bytes.len()
                };
                if let Some(byte) = bytes.get_mut(at) {
                    *byte = next() as u8;
                }
            }
            std::fs::write(&path, &bytes).unwrap();
            let mut pipeline = Pipeline::new(catalog.clone());
            let _ = pipeline.read_file(&path, &mut |output| {
                let _ = output.to_json_line();
                let _ = output.to_human_line();
            });
            pipeline.finish(&mut |_| {});
        }
    }
}
