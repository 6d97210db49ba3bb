//! The real `shadowai-collector serve` as an operator deploys it: the dashboard over HTTPS with a
//! certificate the operator provides, `/metrics` behind the metrics bearer token, and every metric
//! name a Grafana dashboard under `dashboards/grafana/` queries present in a real scrape, with the
//! counters moving when a real agent enrolls.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, ServerName};

use crate::support::{POLL, ProcessGuard, binaries};

const METRICS_TOKEN: &str = "0123456789abcdef0123456789abcdef-metrics";

/// A certificate authority and a server certificate for `localhost`, as an operator's PKI would
/// issue them (PEM files on disk).
struct OperatorPki {
    ca_der: CertificateDer<'static>,
}

fn operator_pki(dir: &Path) -> OperatorPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Example Corp operator CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    // chain: leaf first, then the CA
    std::fs::write(
        dir.join("dashboard.crt"),
        format!("{}{}", leaf.pem(), ca_cert.pem()),
    )
    .unwrap();
    std::fs::write(dir.join("dashboard.key"), leaf_key.serialize_pem()).unwrap();
    OperatorPki {
        ca_der: ca_cert.der().clone(),
    }
}

/// One HTTP/1.1 GET over TLS (rustls, trusting only `ca`); returns (status, body).
fn https_get(
    addr: &str,
    ca: &CertificateDer<'static>,
    path: &str,
    bearer: Option<&str>,
) -> (u16, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let authorization = bearer
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{authorization}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    // A peer that closes without close_notify is an error in rustls; the bytes read still count.
    let _ = tls.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {response:?}"));
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let chunked = head
        .to_ascii_lowercase()
        .contains("\r\ntransfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// A `Transfer-Encoding: chunked` body made plain (good enough for text bodies).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

/// Sample names of an OpenMetrics/Prometheus text exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The value of the sample whose line starts with `series` (name and labels, exactly).
fn sample_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split(' ').next()?.parse().ok())
}

/// Every `shadowai_*` metric name the Grafana dashboards query.
fn dashboard_metric_names() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/grafana");
    let mut names = BTreeSet::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        files += 1;
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let mut rest = expr;
                while let Some(at) = rest.find("shadowai_") {
                    let name: String = rest[at..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    rest = &rest[at + name.len()..];
                    names.insert(name);
                }
            }
        }
    }
    assert!(files >= 2, "dashboards/grafana holds the dashboards");
    names
}

#[tokio::test]
async fn dashboard_over_https_and_metrics_every_grafana_panel_needs() {
    let bins = binaries();
    let dir = tempfile::tempdir().unwrap();
    let pki = operator_pki(dir.path());
    std::fs::write(
        dir.path().join("metrics-token"),
        format!("{METRICS_TOKEN}\n"),
    )
    .unwrap();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{data}\"\n\
             heartbeat_interval_seconds = 5\n\
             [http]\n\
             tls_cert = \"{dir}/dashboard.crt\"\n\
             tls_key = \"{dir}/dashboard.key\"\n\
             [metrics]\n\
             token_file = \"{dir}/metrics-token\"\n",
            data = dir.path().join("data").display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let mut collector = ProcessGuard::spawn(
        "shadowai-collector serve",
        Command::new(&bins.collector)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ]),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (grpc, dashboard) = loop {
        let line = collector
            .lines()
            .into_iter()
            .find(|line| line.contains("dashboard: "));
        if let Some(line) = line {
            let grpc = line
                .split("agents: https://")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .unwrap()
                .to_owned();
            let dashboard = line.split("dashboard: ").nth(1).unwrap().to_owned();
            break (grpc, dashboard);
        }
        assert!(
            collector.try_exit_status().is_none() && Instant::now() < deadline,
            "collector did not start\n{}",
            collector.log_tail()
        );
        tokio::time::sleep(POLL).await;
    };
    assert!(
        dashboard.starts_with("https://"),
        "the collector says it serves HTTPS: {dashboard}"
    );
    let http = dashboard
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_owned();

    let ca = pki.ca_der.clone();
    let get = move |path: &'static str, bearer: Option<&'static str>| {
        let (http, ca) = (http.clone(), ca.clone());
        tokio::task::spawn_blocking(move || https_get(&http, &ca, path, bearer))
    };
    // HTTPS with the operator's certificate (verified against the operator's CA, for `localhost`)
    let (status, body) = get("/healthz", None).await.unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, _) = get("/readyz", None).await.unwrap();
    assert_eq!(status, 200);

    // /metrics is not public
    assert_eq!(get("/metrics", None).await.unwrap().0, 401);
    assert_eq!(
        get("/metrics", Some("0123456789abcdef0123456789abcdef-wrong!!"))
            .await
            .unwrap()
            .0,
        401
    );

    // a real agent enrolls: the enroll counter moves, and the fleet gauge sees the agent online
    let token = {
        let output = Command::new(&bins.collector)
            .args(["token", "create", "--group", "metrics"])
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let enrolled = Command::new(&bins.agent)
        .args(["enroll", "--collector", &format!("https://{grpc}")])
        .args(["--token", &token])
        .arg("--state-dir")
        .arg(dir.path().join("agent"))
        .output()
        .unwrap();
    assert!(enrolled.status.success(), "{enrolled:?}");

    let deadline = Instant::now() + Duration::from_secs(40);
    let text = loop {
        let (status, body) = get("/metrics", Some(METRICS_TOKEN)).await.unwrap();
        assert_eq!(status, 200, "{body}");
        let text = body;
        let enrolls = sample_value(&text, "shadowai_ingest_requests_total{rpc=\"enroll\"}");
        let online = sample_value(&text, "shadowai_agents{state=\"online\"}");
        if enrolls == Some(1.0) && online == Some(1.0) {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "enroll {enrolls:?}, online {online:?} after 40 s (fleet refresh every 15 s)\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text");

    // the contract with dashboards/grafana: every queried name is exported
    let exported = sample_names(&text);
    let queried = dashboard_metric_names();
    assert!(queried.len() >= 10, "{queried:?}");
    let missing: Vec<_> = queried.difference(&exported).collect();
    assert!(
        missing.is_empty(),
        "dashboards query metrics the collector does not export: {missing:?}\nexported: {exported:?}"
    );

    // the API keys work for scrapers too
    let key = {
        let output = Command::new(&bins.collector)
            .args(["apikey", "create", "--role", "viewer"])
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let key: &'static str = Box::leak(key.into_boxed_str());
    assert_eq!(get("/metrics", Some(key)).await.unwrap().0, 200);

    let status = collector.terminate().await;
    assert!(status.success(), "{}", collector.log_tail());
}

#[test]
fn metric_text_helpers() {
    let text = "# TYPE a counter\na_total{x=\"1\"} 3\nb 4.5\n# EOF\n";
    assert_eq!(
        sample_names(text),
        BTreeSet::from(["a_total".to_owned(), "b".to_owned()])
    );
    assert_eq!(sample_value(text, "a_total{x=\"1\"}"), Some(3.0));
    assert_eq!(sample_value(text, "b"), Some(4.5));
    assert_eq!(dechunk("5\r\nhello\r\n0\r\n\r\n"), "hello");
}
