//! Scheduled reports by e-mail against a real SMTP server: Debian's python3-aiosmtpd, run as
//! `python3 -m aiosmtpd ... -c aiosmtpd.handlers.Mailbox DIR` (a Maildir), started per test and
//! stopped by its PID (also when the test fails). The received messages are read back with
//! Python's own `email` package, so the MIME we check is what a mail client would see.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use shadowai_collector::identity::CertificateAuthority;
use shadowai_collector::report::schedule::{ReportsFile, Schedule, run_once};

use crate::backend_tests;
use crate::harness::{NOW, TestDb, seed_fleet};

backend_tests!(a_scheduled_report_is_mailed_once_with_its_files);

const PYTHON: &str = "/usr/bin/python3";

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A running aiosmtpd writing every message it accepts to `maildir`.
struct Smtpd {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Smtpd {
    fn start(dir: &Path, extra: &[&str]) -> Smtpd {
        let has_aiosmtpd = Command::new(PYTHON)
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            has_aiosmtpd,
            "aiosmtpd not found: apt-get install python3-aiosmtpd (scripts/test.sh does)"
        );
        let port = free_port();
        let maildir = dir.join("maildir");
        let child = Command::new(PYTHON)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        Smtpd {
            child,
            port,
            maildir,
        }
    }

    async fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "aiosmtpd exited before listening"
            );
            assert!(Instant::now() < deadline, "aiosmtpd did not listen in 20 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The messages in the Maildir, parsed by Python's `email` package; attachments are written
    /// to `out` and named by their `path`.
    fn messages(&self, out: &Path) -> Vec<Value> {
        const READ: &str = r#"
import email, email.policy, json, mailbox, os, sys
box = mailbox.Maildir(sys.argv[1], create=False)
found = []
for number, key in enumerate(sorted(box.keys())):
    message = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    attachments = []
    for part in message.iter_attachments():
        path = os.path.join(sys.argv[2], "%d-%s" % (number, part.get_filename()))
        with open(path, "wb") as f:
            f.write(part.get_payload(decode=True))
        attachments.append({"filename": part.get_filename(), "type": part.get_content_type(), "path": path})
    found.append({
        "subject": str(message["subject"]),
        "from": str(message["from"]),
        "to": [a.addr_spec for a in message["to"].addresses],
        "rcpt": str(message["x-rcptto"]),
        "headers": list(message.keys()),
        "body": message.get_body(preferencelist=("plain",)).get_content(),
        "attachments": attachments,
    })
print(json.dumps(found))
"#;
        let output = Command::new(PYTHON)
            .args(["-c", READ])
            .arg(&self.maildir)
            .arg(out)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        // SIGKILL to this PID only, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn schedule(text: &str) -> Schedule {
    let file: ReportsFile = toml::from_str(text).unwrap();
    file.validate()
        .unwrap_or_else(|e| panic!("{e}"))
        .pop()
        .unwrap()
}

async fn a_scheduled_report_is_mailed_once_with_its_files(db: &TestDb) {
    seed_fleet(&db.store).await;
    let dir = tempfile::tempdir().unwrap();
    let mut smtpd = Smtpd::start(dir.path(), &[]);
    smtpd.wait_listening().await;
    let output = dir.path().join("reports");
    let schedule = schedule(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"shadowai <reports@example.com>\"\n\
         [[schedule]]\nname = \"monthly\"\ncron = \"0 0 7 1 * *\"\nformats = [\"html\", \"csv\", \"json\"]\n\
         output_dir = \"{out}\"\ngroup = \"eng\"\n\
         email_to = [\"ciso@example.com\", \"Risk Team <risk@example.com>\"]\n",
        port = smtpd.port,
        out = output.display()
    ));
    let run = run_once(&db.store, &schedule, dir.path(), NOW).await;
    assert_eq!(run.outcome, "ok", "{:?}", run.error);
    assert_eq!(
        (run.delivery.as_deref(), run.delivery_error.as_deref()),
        (Some("sent"), None)
    );
    let listed = db.store.list_report_runs(10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].delivery.as_deref(), Some("sent"));

    let received = dir.path().join("received");
    std::fs::create_dir(&received).unwrap();
    let messages = smtpd.messages(&received);
    assert_eq!(messages.len(), 1, "{messages:#?}");
    let message = &messages[0];
    assert_eq!(
        message["subject"],
        "shadowai report monthly, group eng: 2026-10-22 to 2026-11-21"
    );
    assert_eq!(
        message["to"],
        serde_json::json!(["ciso@example.com", "risk@example.com"])
    );
    assert_eq!(message["rcpt"], "ciso@example.com, risk@example.com");
    assert_eq!(message["from"], "shadowai <reports@example.com>");
    assert!(
        message["body"]
            .as_str()
            .unwrap()
            .contains("Hosts with unsanctioned AI: "),
        "{message}"
    );
    // every written file is attached, byte for byte: the HTML, each CSV table, the JSON
    let written: Vec<String> = serde_json::from_str(&run.files).unwrap();
    assert!(written.len() > 3, "{written:?}");
    let attachments = message["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), written.len(), "{attachments:#?}");
    for (file, attachment) in written.iter().zip(attachments) {
        let name = Path::new(file).file_name().unwrap().to_str().unwrap();
        assert_eq!(attachment["filename"], name);
        let expected_type = match Path::new(file).extension().unwrap().to_str().unwrap() {
            "html" => "text/html",
            "csv" => "text/csv",
            "json" => "application/json",
            other => panic!("unexpected file {other}"),
        };
        assert_eq!(attachment["type"], expected_type);
        let got = std::fs::read(attachment["path"].as_str().unwrap()).unwrap();
        assert!(got == std::fs::read(file).unwrap(), "{name} differs");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_smtp_server_is_a_recorded_failed_delivery_not_a_failed_run() {
    let db = TestDb::sqlite().await;
    seed_fleet(&db.store).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port(); // nothing listens there
    let mut schedule = schedule(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"reports@example.com\"\n\
         attempts = 2\ntimeout_seconds = 5\n\
         [[schedule]]\nname = \"weekly\"\ncron = \"0 0 7 * * Mon\"\nformats = [\"html\"]\n\
         output_dir = \"{out}\"\nemail_to = [\"ciso@example.com\"]\n",
        out = dir.path().join("reports").display()
    ));
    let email = schedule.email.as_mut().unwrap();
    std::sync::Arc::get_mut(&mut email.smtp)
        .unwrap()
        .retry_delay = Duration::from_millis(200);
    let started = Instant::now();
    let run = run_once(&db.store, &schedule, dir.path(), NOW).await;
    assert_eq!(run.outcome, "ok", "{:?}", run.error);
    assert_eq!(run.delivery.as_deref(), Some("failed"));
    let error = run.delivery_error.clone().unwrap();
    assert!(
        error.contains("after 2 attempt(s)") && error.contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // the report itself is there, and the failure is what the runs list shows
    let written: Vec<String> = serde_json::from_str(&run.files).unwrap();
    assert!(Path::new(&written[0]).exists());
    let listed = db.store.list_report_runs(10).await.unwrap();
    assert_eq!(listed[0].delivery.as_deref(), Some("failed"));
    assert_eq!(listed[0].delivery_error.as_deref(), Some(error.as_str()));
    db.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_report_skips_the_delivery() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    // the output directory cannot be created: a file is in the way
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, b"x").unwrap();
    let schedule = schedule(&format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"reports@example.com\"\n\
         [[schedule]]\nname = \"weekly\"\ncron = \"0 0 7 * * Mon\"\nformats = [\"html\"]\n\
         output_dir = \"{out}\"\nemail_to = [\"ciso@example.com\"]\n",
        port = free_port(),
        out = blocker.join("reports").display()
    ));
    let run = run_once(&db.store, &schedule, dir.path(), NOW).await;
    assert_eq!(run.outcome, "failed");
    assert_eq!(
        (run.delivery.as_deref(), run.delivery_error.as_deref()),
        (Some("skipped"), None)
    );
    db.finish().await;
}

fn pem(label: &str, der: &[u8]) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A CA and a server certificate for 127.0.0.1 in `dir`: (cert file, key file, CA file).
fn tls_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_dir = dir.join("ca");
    std::fs::create_dir_all(&ca_dir).unwrap();
    let ca =
        CertificateAuthority::load_or_create(&ca_dir, time::OffsetDateTime::now_utc()).unwrap();
    let (chain, key) = ca
        .issue_server_certificate(&["127.0.0.1".to_owned()], time::OffsetDateTime::now_utc())
        .unwrap();
    let cert = dir.join("server.pem");
    std::fs::write(
        &cert,
        chain
            .iter()
            .map(|c| pem("CERTIFICATE", c))
            .collect::<String>(),
    )
    .unwrap();
    let key_file = dir.join("server.key");
    std::fs::write(&key_file, pem("PRIVATE KEY", key.secret_der())).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.certificate_pem()).unwrap();
    (cert, key_file, ca_file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_smtps_verify_the_server_with_ca_file() {
    let db = TestDb::sqlite().await;
    seed_fleet(&db.store).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca_file) = tls_files(dir.path());
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    // a CA that did not sign the server's certificate
    let stranger = tempfile::tempdir().unwrap();
    let (_, _, wrong_ca) = tls_files(stranger.path());

    for (mode, args) in [
        ("starttls", ["--tlscert", cert, "--tlskey", key]),
        ("tls", ["--smtpscert", cert, "--smtpskey", key]),
    ] {
        let server_dir = dir.path().join(mode);
        std::fs::create_dir(&server_dir).unwrap();
        let mut smtpd = Smtpd::start(&server_dir, &args);
        smtpd.wait_listening().await;
        for (ca, expected) in [(&wrong_ca, "failed"), (&ca_file, "sent")] {
            let schedule = schedule(&format!(
                "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"{mode}\"\nfrom = \"reports@example.com\"\n\
                 ca_file = \"{ca}\"\nattempts = 1\ntimeout_seconds = 10\n\
                 [[schedule]]\nname = \"weekly\"\ncron = \"0 0 7 * * Mon\"\nformats = [\"json\"]\n\
                 output_dir = \"{out}\"\nemail_to = [\"ciso@example.com\"]\n",
                port = smtpd.port,
                ca = ca.display(),
                out = server_dir.join("reports").display()
            ));
            let run = run_once(&db.store, &schedule, dir.path(), NOW).await;
            assert_eq!(
                run.delivery.as_deref(),
                Some(expected),
                "{mode} with {}: {:?}",
                ca.display(),
                run.delivery_error
            );
            if expected == "failed" {
                let error = run.delivery_error.unwrap();
                assert!(
                    error.to_lowercase().contains("certificate"),
                    "{mode}: {error}"
                );
            }
        }
        let received = server_dir.join("received");
        std::fs::create_dir(&received).unwrap();
        let messages = smtpd.messages(&received);
        assert_eq!(messages.len(), 1, "{mode}: {messages:#?}");
        assert_eq!(messages[0]["attachments"][0]["type"], "application/json");
    }
    db.finish().await;
}

#[test]
fn report_config_refuses_bad_email_settings() {
    for (text, expected) in [
        (
            // email_to without [reports.smtp]
            "[[schedule]]\nname = \"m\"\ncron = \"0 0 7 1 * *\"\nformats = [\"html\"]\noutput_dir = \"/r\"\nemail_to = [\"a@example.com\"]\n",
            "needs a [reports.smtp]",
        ),
        (
            "[smtp]\nhost = \"m\"\ntls = \"none\"\nfrom = \"r@example.com\"\n[[schedule]]\nname = \"m\"\ncron = \"0 0 7 1 * *\"\nformats = [\"html\"]\noutput_dir = \"/r\"\nemail_to = [\"a@example.com\\r\\nBcc: x@evil.example\"]\n",
            "not an e-mail address",
        ),
        (
            // a group with CRLF never reaches a subject line: it is refused here
            "[smtp]\nhost = \"m\"\ntls = \"none\"\nfrom = \"r@example.com\"\n[[schedule]]\nname = \"m\"\ncron = \"0 0 7 1 * *\"\nformats = [\"html\"]\noutput_dir = \"/r\"\ngroup = \"eng\\r\\nBcc: x@evil.example\"\nemail_to = [\"a@example.com\"]\n",
            "control characters",
        ),
    ] {
        let file: ReportsFile = toml::from_str(text).unwrap();
        let error = file.validate().unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_group_name_stays_inside_the_subject() {
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let mut smtpd = Smtpd::start(dir.path(), &[]);
    smtpd.wait_listening().await;
    // Not a control character, so a valid group: quotes, a colon, non-ASCII and a fake header.
    let group = "R&D \"ops\": Bcc: x@evil.example \u{e9}\u{2028}X-Injected: 1";
    let text = format!(
        "[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"reports@example.com\"\n\
         [[schedule]]\nname = \"weekly\"\ncron = \"0 0 7 * * Mon\"\nformats = [\"json\"]\n\
         output_dir = \"{out}\"\ngroup = {group}\nemail_to = [\"ciso@example.com\"]\n",
        port = smtpd.port,
        out = dir.path().join("reports").display(),
        group = toml::Value::String(group.to_owned()),
    );
    // U+2028 is not a control character, so the group is valid
    let schedule = schedule(&text);
    let run = run_once(&db.store, &schedule, dir.path(), NOW).await;
    assert_eq!(
        run.delivery.as_deref(),
        Some("sent"),
        "{:?}",
        run.delivery_error
    );
    let received = dir.path().join("received");
    std::fs::create_dir(&received).unwrap();
    let messages = smtpd.messages(&received);
    assert_eq!(messages.len(), 1);
    let headers: Vec<&str> = messages[0]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert!(
        !headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("bcc") || h.eq_ignore_ascii_case("x-injected")),
        "{headers:?}"
    );
    assert_eq!(messages[0]["rcpt"], "ciso@example.com");
    assert!(
        messages[0]["subject"]
            .as_str()
            .unwrap()
            .contains("R&D \"ops\": Bcc: x@evil.example \u{e9}"),
        "{}",
        messages[0]["subject"]
    );
    db.finish().await;
}
