//! SIEM export end to end: alerts become OCSF Detection Findings that arrive once at a local HTTPS
//! receiver and at a real rsyslog, through receiver restarts and collector restarts; refused
//! events are dead letters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use shadowai_collector::export::{
    ExportSettings, Exporter, QueueSettings, SYSLOG_SINK, SyslogSettings, WEBHOOK_SINK,
    WebhookSettings, dead_letters_total,
};
use shadowai_collector::identity::CertificateAuthority;
use shadowai_collector::store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::backend_tests;
use crate::harness::{DAY, NOW, TestDb, enroll, execute, observation, scalar};

backend_tests!(the_export_cursor_is_per_sink_and_follows_status_changes);

const FIXTURE: &str = include_str!("../fixtures/ocsf_detection_finding_1.3.0.json");

fn queue() -> QueueSettings {
    QueueSettings {
        batch_size: 2,
        queue_capacity: 4,
        poll_interval: Duration::from_millis(100),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
    }
}

/// Raises one alert per product on a fresh host.
async fn raise_alerts(store: &Store, host: &str, products: &[&str]) {
    let agent = enroll(store, host, "eng", NOW - 10 * DAY).await;
    let batch: Vec<_> = products
        .iter()
        .enumerate()
        .map(|(i, product)| observation(product, "chat", NOW - DAY + i as i64))
        .collect();
    store.insert_observations(agent, &batch, NOW).await.unwrap();
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks an event against the OCSF 1.3.0 Detection Finding requirements of the fixture.
fn validate_ocsf(event: &Value) {
    let fixture: Value = serde_json::from_str(FIXTURE).unwrap();
    let present = |object: &Value, key: &str| object.get(key).is_some_and(|v| !v.is_null());
    for key in fixture["required"].as_array().unwrap() {
        assert!(
            present(event, key.as_str().unwrap()),
            "missing {key}: {event}"
        );
    }
    assert_eq!(event["class_uid"], fixture["class_uid"]);
    assert_eq!(event["category_uid"], fixture["category_uid"]);
    let activity = event["activity_id"].as_i64().unwrap();
    assert_eq!(event["type_uid"].as_i64().unwrap(), 2004 * 100 + activity);
    for (key, allowed) in fixture["enums"].as_object().unwrap() {
        if let Some(value) = event.get(key) {
            assert!(
                allowed.as_array().unwrap().contains(value),
                "{key} = {value}"
            );
        }
    }
    let objects: BTreeMap<&str, Option<&Value>> = BTreeMap::from([
        ("metadata", event.get("metadata")),
        ("finding_info", event.get("finding_info")),
        ("device", event.get("device")),
        ("os", event.pointer("/device/os")),
        ("file", event.pointer("/actor/process/file")),
    ]);
    for (object, value) in objects {
        let Some(value) = value else { continue };
        for key in fixture["objects"][object].as_array().unwrap() {
            assert!(
                present(value, key.as_str().unwrap()),
                "{object} lacks {key}: {value}"
            );
        }
    }
    let at_least_one = |object: &str, value: Option<&Value>| {
        let Some(value) = value else { return };
        let keys = fixture["at_least_one"][object].as_array().unwrap();
        assert!(
            keys.iter().any(|k| present(value, k.as_str().unwrap())),
            "{object} is empty: {value}"
        );
    };
    at_least_one("actor", event.get("actor"));
    at_least_one("user", event.pointer("/actor/user"));
    for evidence in event["evidences"].as_array().into_iter().flatten() {
        at_least_one("network_endpoint", evidence.get("dst_endpoint"));
        at_least_one("network_endpoint", evidence.get("src_endpoint"));
    }
    assert!(event["metadata"]["product"]["name"].is_string());
}

// ------------------------------------------------------------------------------ HTTPS receiver

#[derive(Clone, Default)]
struct Received {
    events: Arc<Mutex<Vec<Value>>>,
    requests: Arc<Mutex<u32>>,
}

impl Received {
    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }
}

/// A webhook receiver: HTTPS (rustls) + HTTP/1.1 (hyper). It answers 400 to a batch that holds an
/// event of a host named `reject-me`, otherwise stores the events and answers 204.
async fn start_receiver(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    received: Received,
) -> JoinHandle<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::spawn(async move {
        // Dropped with this task: aborting the receiver closes its connections too.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                break;
            };
            let acceptor = acceptor.clone();
            let received = received.clone();
            connections.spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let received = received.clone();
                    async move {
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let events: Vec<Value> = serde_json::from_slice(&body).unwrap();
                        *received.requests.lock().unwrap() += 1;
                        let status = if events
                            .iter()
                            .any(|e| e["device"]["hostname"] == "reject-me")
                        {
                            400
                        } else {
                            received.events.lock().unwrap().extend(events);
                            204
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
}

fn receiver_tls(dir: &Path) -> (Arc<rustls::ServerConfig>, Vec<u8>) {
    let ca = CertificateAuthority::load_or_create(dir, time::OffsetDateTime::now_utc()).unwrap();
    let (chain, key) = ca
        .issue_server_certificate(&["127.0.0.1".to_owned()], time::OffsetDateTime::now_utc())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    (Arc::new(config), ca.certificate_pem().as_bytes().to_vec())
}

fn ids(events: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for event in events {
        *counts
            .entry(event["metadata"]["uid"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

fn assert_once(events: &[Value], expected: usize) {
    let counts = ids(events);
    assert_eq!(counts.len(), expected, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "duplicates: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_events_arrive_once_through_receiver_and_collector_restarts() {
    let db = TestDb::sqlite().await;
    let store = db.store.clone();
    let certs = tempfile::tempdir().unwrap();
    let (tls, ca_pem) = receiver_tls(certs.path());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let received = Received::default();
    let receiver = start_receiver(listener, tls.clone(), received.clone()).await;

    raise_alerts(
        &store,
        "laptop-a",
        &["openai.chatgpt", "anthropic.claude", "google.gemini"],
    )
    .await;
    let settings = ExportSettings {
        webhook: Some((
            WebhookSettings {
                url: format!("https://{address}/ingest"),
                ca_pem: Some(ca_pem.clone()),
                authorization: Some("Bearer test".to_owned()),
                timeout: Duration::from_secs(5),
            },
            queue(),
        )),
        syslog: None,
    };
    let exporter = Exporter::spawn(store.clone(), &settings).unwrap();
    wait_for("3 events", Duration::from_secs(20), async || {
        received.events().len() >= 3
    })
    .await;
    assert_once(&received.events(), 3);
    for event in received.events() {
        validate_ocsf(&event);
        assert_eq!(event["activity_id"], 1);
        assert_eq!(event["device"]["hostname"], "laptop-a");
    }

    // The receiver goes away; alerts raised meanwhile wait, with backoff, and arrive once after.
    receiver.abort();
    let _ = receiver.await;
    raise_alerts(&store, "laptop-b", &["mistral.lechat", "deepseek.chat"]).await;
    let stats = exporter.stats()[0].1.clone();
    wait_for("retries", Duration::from_secs(20), async || {
        stats.retries.load(std::sync::atomic::Ordering::Relaxed) >= 2
    })
    .await;
    let listener = TcpListener::bind(address).await.unwrap();
    let receiver = start_receiver(listener, tls.clone(), received.clone()).await;
    wait_for("5 events", Duration::from_secs(30), async || {
        received.events().len() >= 5
    })
    .await;

    // The collector restarts: nothing is sent again, a new alert is sent once.
    exporter.shutdown().await;
    let exporter = Exporter::spawn(store.clone(), &settings).unwrap();
    raise_alerts(&store, "laptop-c", &["perplexity.perplexity"]).await;
    wait_for("6 events", Duration::from_secs(20), async || {
        received.events().len() >= 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_once(&received.events(), 6);

    // Triage resolves an alert: the SIEM gets a Close for it, once.
    execute(
        &db.url,
        "UPDATE alerts SET status = 'resolved' WHERE product = 'google.gemini'",
    )
    .await;
    wait_for("the close", Duration::from_secs(20), async || {
        received.events().len() >= 7
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events = received.events();
    assert_once(&events, 7);
    let close = events.last().unwrap();
    validate_ocsf(close);
    assert_eq!(
        (close["activity_id"].clone(), close["status_id"].clone()),
        (Value::from(3), Value::from(4))
    );

    // An event the receiver refuses is a dead letter; its batch-mates are delivered.
    let before = dead_letters_total();
    raise_alerts(&store, "reject-me", &["openai.chatgpt"]).await;
    raise_alerts(&store, "laptop-d", &["openai.chatgpt"]).await;
    wait_for("the dead letter", Duration::from_secs(20), async || {
        store
            .export_totals(WEBHOOK_SINK)
            .await
            .unwrap()
            .dead_letters
            == 1
    })
    .await;
    wait_for("8 events", Duration::from_secs(20), async || {
        received.events().len() >= 8
    })
    .await;
    assert!(dead_letters_total() > before);
    let totals = store.export_totals(WEBHOOK_SINK).await.unwrap();
    assert_eq!(
        (totals.delivered, totals.dead_letters, totals.pending),
        (7, 1, 0)
    );
    assert_eq!(
        scalar(&db.url, "SELECT COUNT(*) FROM export_deliveries WHERE outcome = 'dead_letter' AND error LIKE '%400%'", &[]).await,
        1
    );
    // The Grafana panel's gauge counts the database's dead letters (the only test here that
    // refreshes the process-wide metrics).
    shadowai_collector::metrics::refresh_fleet(&store, 60_000).await;
    let exposition = shadowai_collector::metrics::metrics().encode();
    assert!(
        exposition
            .lines()
            .any(|line| line == "shadowai_export_dead_letters 1"),
        "{exposition}"
    );
    exporter.shutdown().await;
    receiver.abort();
    db.finish().await;
}

async fn the_export_cursor_is_per_sink_and_follows_status_changes(db: &TestDb) {
    use shadowai_collector::store::{ExportOutcome, ExportRecord};
    let store = &db.store;
    raise_alerts(store, "laptop-a", &["openai.chatgpt", "google.gemini"]).await;
    let pending = store.pending_exports(WEBHOOK_SINK, 10).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(
        pending
            .iter()
            .all(|p| p.sent_status.is_none() && p.last_signal.as_deref() == Some("dns"))
    );
    let record = |alert: &shadowai_collector::store::ExportAlert, outcome| ExportRecord {
        alert_id: alert.alert.id,
        status: alert.alert.status.clone(),
        outcome,
        attempts: 1,
        error: None,
    };
    store
        .record_exports(
            WEBHOOK_SINK,
            &[record(&pending[0], ExportOutcome::Delivered)],
            NOW,
        )
        .await
        .unwrap();
    store
        .record_exports(
            WEBHOOK_SINK,
            &[record(&pending[1], ExportOutcome::DeadLetter)],
            NOW,
        )
        .await
        .unwrap();
    assert!(
        store
            .pending_exports(WEBHOOK_SINK, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.pending_exports(SYSLOG_SINK, 10).await.unwrap().len(),
        2
    );
    execute(&db.url, "UPDATE alerts SET status = 'acknowledged'").await;
    // The delivered alert is pending again (as an update); the dead letter stays dead.
    let again = store.pending_exports(WEBHOOK_SINK, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].sent_status.as_deref(), Some("open"));
    let totals = store.export_totals(WEBHOOK_SINK).await.unwrap();
    assert_eq!(
        (totals.delivered, totals.dead_letters, totals.pending),
        (1, 1, 1)
    );
}

// ------------------------------------------------------------------------------------- rsyslog

struct Rsyslog {
    dir: PathBuf,
    port: u16,
    child: std::process::Child,
}

impl Rsyslog {
    fn start(dir: &Path, port: u16) -> Rsyslog {
        let binary = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/bin/rsyslogd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("rsyslogd not found: apt-get install rsyslog (scripts/test.sh does)");
        let config = dir.join("rsyslog.conf");
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{dir}\" maxMessageSize=\"256k\")\n\
                 module(load=\"imtcp\")\n\
                 template(name=\"raw\" type=\"string\" string=\"%syslogseverity% %app-name% %msgid% %msg%\\n\")\n\
                 ruleset(name=\"siem\") {{ action(type=\"omfile\" file=\"{dir}/events.log\" template=\"raw\") }}\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"siem\")\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(binary)
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Rsyslog {
            dir: dir.to_owned(),
            port,
            child,
        }
    }

    async fn wait_listening(&self) {
        let port = self.port;
        wait_for("rsyslog to listen", Duration::from_secs(20), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
    }

    /// Stops rsyslog the way a service manager does (SIGTERM) and waits for it.
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        self.child.wait().unwrap();
    }

    fn events(dir: &Path) -> Vec<(String, Value)> {
        std::fs::read_to_string(dir.join("events.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| {
                let mut parts = line.splitn(4, ' ');
                let severity = parts.next().unwrap().to_owned();
                let app = parts.next().unwrap();
                let msgid = parts.next().unwrap();
                assert_eq!((app, msgid), ("shadowai", "ocsf2004"), "{line}");
                let message = parts.next().unwrap().trim();
                (
                    severity,
                    serde_json::from_str(message).unwrap_or_else(|e| panic!("{e}: {message}")),
                )
            })
            .collect()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_events_arrive_once_at_rsyslog_through_a_restart() {
    let db = TestDb::sqlite().await;
    let store = db.store.clone();
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let rsyslog = Rsyslog::start(dir.path(), port);
    rsyslog.wait_listening().await;

    raise_alerts(
        &store,
        "laptop-a",
        &["openai.chatgpt", "anthropic.claude", "google.gemini"],
    )
    .await;
    let settings = ExportSettings {
        webhook: None,
        syslog: Some((
            SyslogSettings {
                address: format!("127.0.0.1:{port}"),
                tls: None,
                facility: 16,
                app_name: "shadowai".to_owned(),
                hostname: "collector-test".to_owned(),
                max_message_bytes: 65_536,
                timeout: Duration::from_secs(5),
            },
            queue(),
        )),
    };
    let exporter = Exporter::spawn(store.clone(), &settings).unwrap();
    let path = dir.path().to_owned();
    wait_for("3 syslog events", Duration::from_secs(20), async || {
        Rsyslog::events(&path).len() >= 3
    })
    .await;

    // rsyslog restarts; alerts raised while it is down arrive once it is back.
    rsyslog.stop();
    raise_alerts(&store, "laptop-b", &["mistral.lechat", "deepseek.chat"]).await;
    let stats = exporter.stats()[0].1.clone();
    wait_for("retries", Duration::from_secs(20), async || {
        stats.retries.load(std::sync::atomic::Ordering::Relaxed) >= 1
    })
    .await;
    let rsyslog = Rsyslog::start(dir.path(), port);
    rsyslog.wait_listening().await;
    wait_for("5 syslog events", Duration::from_secs(30), async || {
        Rsyslog::events(&path).len() >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events: Vec<Value> = Rsyslog::events(&path)
        .into_iter()
        .map(|(severity, event)| {
            // medium alerts: OCSF severity 3, syslog warning (4)
            assert_eq!(severity, "4");
            event
        })
        .collect();
    assert_once(&events, 5);
    for event in &events {
        validate_ocsf(event);
    }
    assert_eq!(store.export_totals(SYSLOG_SINK).await.unwrap().delivered, 5);
    exporter.shutdown().await;
    rsyslog.stop();
    db.finish().await;
}
