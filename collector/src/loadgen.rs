//! `shadowai-collector loadgen`: simulated agents over the real channel, for benchmarks and load
//! tests.
//!
//! Every simulated agent is a real agent as far as the collector can tell: it makes its own key
//! pair, enrolls with a token through the real `Enroll` RPC (server-authenticated TLS, CA checked
//! against the token's pin), and reports over its own mutual-TLS gRPC connection with its own
//! certificate. Observations carry fresh UUIDv7 ids. A report shed with RESOURCE_EXHAUSTED is
//! retried after the `retry-after` the collector sent plus full jitter, like the agent does; other
//! failures back off exponentially with full jitter.
//!
//! What is measured: observations acknowledged per second (from the first report sent to the last
//! ack), ack latency of successful reports (p50, p99, max), reports shed, errors, connection
//! attempts and connections established per second (the highest count in any one-second bucket,
//! and over the whole connect phase), and, with `--watch-pid`, the collector's RSS over the run.
//! With `--raw-rows`, the same database's raw insert rate (multi-row INSERTs into the observations
//! table, no gRPC, no TLS, no policy) is measured in the same run for comparison.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rand::Rng as _;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::Serialize;
use shadowai_proto::v1::{self, agent_service_client::AgentServiceClient};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

use crate::identity::unix_ms;
use crate::store::Store;

/// Time allowed to open a connection (TCP + TLS), as the agent allows.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// First and largest backoff after an error other than a shed.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(30);

/// Options of `loadgen`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// The collector's agent endpoint, HOST:PORT; several, comma-separated, spread the agents:
    /// agent i enrolls through collector i mod n and reports through collector i+1 mod n.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub collector: String,
    /// Simulated agents (each enrolls and gets its own certificate).
    #[arg(long)]
    pub agents: usize,
    /// Observations each agent sends.
    #[arg(long)]
    pub events: u64,
    /// Observations per report (the collector accepts at most 1000).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Reports in flight at once, over all agents.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Enrollments in flight at once.
    #[arg(long, default_value_t = 16)]
    pub enroll_concurrency: usize,
    /// After enrolling, all agents connect at the same moment (a fleet back from an outage) before
    /// any sends; otherwise each connects when it first sends.
    #[arg(long)]
    pub reconnect_storm: bool,
    /// Enrollment token [default: a new one created in the database of --data-dir/--database].
    #[arg(long)]
    pub token: Option<String>,
    /// The collector CA certificate (PEM) [default: ca.pem in the data directory].
    #[arg(long, value_name = "PATH")]
    pub ca: Option<std::path::PathBuf>,
    /// Compress reports with gzip, as agents do.
    #[arg(long)]
    pub gzip: bool,
    /// Sample this process's resident memory (the collector's PID) once a second.
    #[arg(long, value_name = "PID")]
    pub watch_pid: Option<u32>,
    /// Afterwards, insert this many rows straight into the database (--data-dir/--database) to
    /// measure its raw insert rate in the same run.
    #[arg(long, value_name = "ROWS")]
    pub raw_rows: Option<u64>,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub agents: usize,
    pub observations_sent: u64,
    pub observations_acked: u64,
    pub reports_acked: u64,
    pub seconds: f64,
    pub observations_per_second: f64,
    pub ack_latency_p50_ms: f64,
    pub ack_latency_p99_ms: f64,
    pub ack_latency_max_ms: f64,
    /// Reports answered RESOURCE_EXHAUSTED (and retried).
    pub shed: u64,
    /// Calls that failed otherwise (and were retried), connection failures included.
    pub errors: u64,
    /// Batches given up after too many failures.
    pub lost_batches: u64,
    pub enroll_seconds: f64,
    pub connect_attempts: u64,
    pub connections: u64,
    pub connect_seconds: f64,
    /// Connections established in the busiest one-second bucket of the connect phase.
    pub connections_per_second_max: u64,
    /// Connections established per second over the connect phase.
    pub connections_per_second_mean: f64,
    /// The agent ids, for checks against the database.
    #[serde(skip)]
    pub agent_ids: Vec<Uuid>,
    pub rss_kib_first: Option<u64>,
    pub rss_kib_max: Option<u64>,
    pub rss_kib_last: Option<u64>,
    pub raw_rows: Option<u64>,
    pub raw_rows_per_second: Option<f64>,
}

/// What the run needs besides its options: the CA to trust and a token to enroll with.
pub struct Setup {
    pub ca_der: CertificateDer<'static>,
    pub token: String,
    /// The database, for `--raw-rows`.
    pub store: Option<Store>,
}

/// Reads a CA certificate in PEM form.
pub fn read_ca(path: &std::path::Path) -> anyhow::Result<CertificateDer<'static>> {
    CertificateDer::from_pem_file(path)
        .with_context(|| format!("cannot read the collector CA from {}", path.display()))
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    reports: AtomicU64,
    shed: AtomicU64,
    errors: AtomicU64,
    lost: AtomicU64,
    connect_attempts: AtomicU64,
}

struct Target {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

struct Shared {
    targets: Vec<Target>,
    counters: Counters,
    latencies: std::sync::Mutex<Vec<u32>>,
    connected_at: std::sync::Mutex<Vec<Instant>>,
    gzip: bool,
}

/// Runs the load: enroll, (storm-)connect, send, measure.
pub async fn run(args: &LoadgenArgs, setup: Setup) -> anyhow::Result<LoadReport> {
    if args.agents == 0 || args.events == 0 {
        bail!("--agents and --events must be at least 1");
    }
    if !(1..=1_000).contains(&args.batch) {
        bail!("--batch must be between 1 and 1000");
    }
    let concurrency = args.concurrency.max(1);
    let mut targets = Vec::new();
    for address in args.collector.split(',') {
        let (host, port) = split_host_port(address.trim())?;
        let server_name = ServerName::try_from(host.clone())
            .map_err(|_| anyhow::anyhow!("`{host}` is not a valid server name"))?;
        targets.push(Target {
            host,
            port,
            server_name,
        });
    }
    let shared = Arc::new(Shared {
        targets,
        counters: Counters::default(),
        latencies: std::sync::Mutex::new(Vec::new()),
        connected_at: std::sync::Mutex::new(Vec::new()),
        gzip: args.gzip,
    });
    let rss = args.watch_pid.map(RssWatch::start);

    // enrollment: each agent its own key, CSR and certificate
    let enroll_started = Instant::now();
    let enroll_permits = Arc::new(Semaphore::new(args.enroll_concurrency.max(1)));
    let mut enrolling = tokio::task::JoinSet::new();
    for index in 0..args.agents {
        let shared = shared.clone();
        let permits = enroll_permits.clone();
        let ca = setup.ca_der.clone();
        let token = setup.token.clone();
        enrolling.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            enroll(&shared, ca, &token, index).await
        });
    }
    let mut agents = Vec::with_capacity(args.agents);
    while let Some(joined) = enrolling.join_next().await {
        agents.push(joined.context("enrollment task")??);
    }
    let enroll_seconds = enroll_started.elapsed().as_secs_f64();
    // enrollment connections are not part of the connect-phase figures
    shared.counters.connect_attempts.store(0, Ordering::Relaxed);
    shared
        .connected_at
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();

    // connect: all at once in a storm, else lazily on first send
    let connect_started = Instant::now();
    let mut clients: Vec<Option<AgentServiceClient<Channel>>> = vec![None; agents.len()];
    if args.reconnect_storm {
        let mut connecting = tokio::task::JoinSet::new();
        for (index, agent) in agents.iter().enumerate() {
            let shared = shared.clone();
            let tls = agent.tls.clone();
            let target = agent.report_target;
            connecting.spawn(async move { (index, connect_retrying(&shared, target, tls).await) });
        }
        while let Some(joined) = connecting.join_next().await {
            let (index, client) = joined.context("connect task")?;
            clients[index] = Some(client);
        }
    }
    let connect_seconds_storm = connect_started.elapsed().as_secs_f64();

    // send
    let send_started = Instant::now();
    let inflight = Arc::new(Semaphore::new(concurrency));
    let mut sending = tokio::task::JoinSet::new();
    for (agent, client) in agents.iter().zip(clients) {
        let shared = shared.clone();
        let inflight = inflight.clone();
        let tls = agent.tls.clone();
        let target = agent.report_target;
        let (events, batch) = (args.events, args.batch);
        sending.spawn(async move {
            let mut client = match client {
                Some(client) => client,
                None => connect_retrying(&shared, target, tls).await,
            };
            send_all(&shared, &mut client, &inflight, events, batch).await;
        });
    }
    while let Some(joined) = sending.join_next().await {
        joined.context("send task")?;
    }
    let seconds = send_started.elapsed().as_secs_f64();

    let counters = &shared.counters;
    let mut latencies = std::mem::take(
        &mut *shared
            .latencies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    latencies.sort_unstable();
    let connected_at = std::mem::take(
        &mut *shared
            .connected_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let (connections_per_second_max, connections_per_second_mean, connect_seconds) =
        connection_rate(&connected_at, connect_started);
    let acked = counters.acked.load(Ordering::Relaxed);
    let mut report = LoadReport {
        agents: agents.len(),
        observations_sent: counters.sent.load(Ordering::Relaxed),
        observations_acked: acked,
        reports_acked: counters.reports.load(Ordering::Relaxed),
        seconds,
        observations_per_second: acked as f64 / seconds.max(1e-9),
        ack_latency_p50_ms: percentile_ms(&latencies, 0.50),
        ack_latency_p99_ms: percentile_ms(&latencies, 0.99),
        ack_latency_max_ms: latencies.last().map_or(0.0, |us| f64::from(*us) / 1000.0),
        shed: counters.shed.load(Ordering::Relaxed),
        errors: counters.errors.load(Ordering::Relaxed),
        lost_batches: counters.lost.load(Ordering::Relaxed),
        enroll_seconds,
        connect_attempts: counters.connect_attempts.load(Ordering::Relaxed),
        connections: connected_at.len() as u64,
        connect_seconds: if args.reconnect_storm {
            connect_seconds_storm
        } else {
            connect_seconds
        },
        connections_per_second_max,
        connections_per_second_mean,
        agent_ids: agents.iter().map(|a| a.agent_id).collect(),
        ..LoadReport::default()
    };
    if let Some(rss) = rss {
        let samples = rss.stop().await;
        report.rss_kib_first = samples.first().copied();
        report.rss_kib_max = samples.iter().max().copied();
        report.rss_kib_last = samples.last().copied();
    }
    if let (Some(rows), Some(store)) = (args.raw_rows, setup.store.as_ref()) {
        let agent_id = agents.first().map(|a| a.agent_id).context("no agent")?;
        let rate = raw_insert_rate(store, agent_id, rows).await?;
        report.raw_rows = Some(rows);
        report.raw_rows_per_second = Some(rate);
    }
    Ok(report)
}

/// Highest count in a one-second bucket (from `start`), mean rate, and span of the connections.
fn connection_rate(connected_at: &[Instant], start: Instant) -> (u64, f64, f64) {
    let mut buckets: BTreeMap<u64, u64> = BTreeMap::new();
    for at in connected_at {
        *buckets
            .entry(at.saturating_duration_since(start).as_secs())
            .or_default() += 1;
    }
    let max = buckets.values().copied().max().unwrap_or(0);
    let span = connected_at.iter().max().map_or(0.0, |last| {
        last.saturating_duration_since(start).as_secs_f64()
    });
    let mean = connected_at.len() as f64 / span.max(1.0);
    (max, mean, span)
}

fn percentile_ms(sorted_us: &[u32], quantile: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 * quantile).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

fn split_host_port(text: &str) -> anyhow::Result<(String, u16)> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok((address.ip().to_string(), address.port()));
    }
    let (host, port) = text
        .rsplit_once(':')
        .with_context(|| format!("--collector `{text}`: use HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--collector `{text}`: bad port"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

struct SimulatedAgent {
    agent_id: Uuid,
    tls: Arc<rustls::ClientConfig>,
    /// Index of the collector it reports through.
    report_target: usize,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(
    ca: CertificateDer<'static>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).context("collector CA")?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

async fn connect(
    shared: &Shared,
    target: usize,
    tls: Arc<rustls::ClientConfig>,
) -> Result<AgentServiceClient<Channel>, tonic::transport::Error> {
    shared
        .counters
        .connect_attempts
        .fetch_add(1, Ordering::Relaxed);
    let target = &shared.targets[target % shared.targets.len()];
    let channel = open_channel(&target.host, target.port, target.server_name.clone(), tls).await?;
    shared
        .connected_at
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Instant::now());
    let client = AgentServiceClient::new(channel);
    Ok(if shared.gzip {
        client.send_compressed(tonic::codec::CompressionEncoding::Gzip)
    } else {
        client
    })
}

/// Opens a gRPC channel to `host:port` over TLS with `tls` (the connection is made now).
pub async fn open_channel(
    host: &str,
    port: u16,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Channel, tonic::transport::Error> {
    let host = host.to_owned();
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = Endpoint::from_shared(format!("http://{authority}"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .tcp_nodelay(true);
    let connector = tower::service_fn(move |_uri: http::Uri| {
        let tls = tls.clone();
        let host = host.clone();
        let server_name = server_name.clone();
        async move {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(server_name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    endpoint.connect_with_connector(connector).await
}

/// Connects, retrying with capped exponential backoff and full jitter until it works.
async fn connect_retrying(
    shared: &Shared,
    target: usize,
    tls: Arc<rustls::ClientConfig>,
) -> AgentServiceClient<Channel> {
    let mut backoff = BACKOFF_FIRST;
    loop {
        match connect(shared, target, tls.clone()).await {
            Ok(client) => return client,
            Err(_) => {
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(full_jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
}

async fn enroll(
    shared: &Shared,
    ca: CertificateDer<'static>,
    token: &str,
    index: usize,
) -> anyhow::Result<SimulatedAgent> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "shadowai loadgen agent");
    params.distinguished_name = name;
    let csr = params.serialize_request(&key)?;
    let request = v1::EnrollRequest {
        token: token.to_owned(),
        csr_der: csr.der().to_vec(),
        host: Some(v1::HostFacts {
            hostname: format!("loadgen-{index:05}"),
            os: "linux".into(),
            os_version: "loadgen".into(),
            arch: std::env::consts::ARCH.into(),
            agent_version: concat!("loadgen-", env!("CARGO_PKG_VERSION")).into(),
        }),
    };
    let server_auth = client_config(ca.clone(), None)?;
    let mut backoff = BACKOFF_FIRST;
    let response = loop {
        let attempt = async {
            let mut client = connect(shared, index, server_auth.clone())
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            client.enroll(request.clone()).await
        };
        match attempt.await {
            Ok(response) => break response.into_inner(),
            Err(status) if is_retryable(&status) => {
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                let delay = full_jitter(backoff).max(retry_after(&status).unwrap_or_default());
                tokio::time::sleep(delay).await;
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
            Err(status) => bail!("enrollment refused: {}", status.message()),
        }
    };
    let agent_id = response
        .agent_id
        .parse()
        .context("the collector sent a malformed agent id")?;
    let chain = CertificateDer::pem_slice_iter(response.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the collector sent a malformed certificate")?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok(SimulatedAgent {
        agent_id,
        tls: client_config(ca, Some((chain, key)))?,
        report_target: index + 1,
    })
}

fn is_retryable(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded | Code::Unknown
    )
}

fn retry_after(status: &tonic::Status) -> Option<Duration> {
    let value = status.metadata().get("retry-after")?.to_str().ok()?;
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(3600)))
}

fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Sends `events` observations in batches; each batch until it is acknowledged (or given up after
/// repeated errors other than sheds).
async fn send_all(
    shared: &Shared,
    client: &mut AgentServiceClient<Channel>,
    inflight: &Semaphore,
    events: u64,
    batch: usize,
) {
    const MAX_ERRORS_PER_BATCH: u32 = 20;
    let mut left = events;
    while left > 0 {
        let size = left.min(batch as u64);
        left -= size;
        let request = v1::ReportRequest {
            observations: (0..size).map(|n| observation(n as usize)).collect(),
        };
        shared.counters.sent.fetch_add(size, Ordering::Relaxed);
        let mut errors = 0;
        let mut backoff = BACKOFF_FIRST;
        loop {
            let Ok(permit) = inflight.acquire().await else {
                return;
            };
            let started = Instant::now();
            let result = client.report(request.clone()).await;
            let latency = started.elapsed();
            drop(permit);
            match result {
                Ok(response) => {
                    let committed = response.into_inner().committed_ids.len() as u64;
                    if committed == size {
                        shared.counters.acked.fetch_add(size, Ordering::Relaxed);
                        shared.counters.reports.fetch_add(1, Ordering::Relaxed);
                        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
                        shared
                            .latencies
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(micros);
                    } else {
                        shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                        shared.counters.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                Err(status) if status.code() == Code::ResourceExhausted => {
                    shared.counters.shed.fetch_add(1, Ordering::Relaxed);
                    let wait = retry_after(&status).unwrap_or(Duration::from_secs(1));
                    tokio::time::sleep(wait + full_jitter(wait)).await;
                }
                Err(_) => {
                    shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                    errors += 1;
                    if errors >= MAX_ERRORS_PER_BATCH {
                        shared.counters.lost.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tokio::time::sleep(full_jitter(backoff)).await;
                    backoff = (backoff * 2).min(BACKOFF_CAP);
                }
            }
        }
    }
}

/// One observation as a real agent sends them: DNS, TLS SNI and process kinds in turn, each with a
/// catalog product and rule, and a fresh UUIDv7 id.
pub fn observation(n: usize) -> v1::Observation {
    let now = unix_ms(time::OffsetDateTime::now_utc());
    let (product, vendor, category, rule) = match n % 3 {
        0 => (
            "openai.chatgpt",
            "OpenAI",
            "chat_assistant",
            "data/openai.toml#openai.chatgpt/domain/chatgpt.com",
        ),
        1 => (
            "anthropic.claude",
            "Anthropic",
            "chat_assistant",
            "data/anthropic.toml#anthropic.claude/domain/claude.ai",
        ),
        _ => (
            "ollama.ollama",
            "Ollama",
            "local_model_runtime",
            "data/ollama.toml#ollama.ollama/process/server",
        ),
    };
    let process = v1::ProcessInfo {
        pid: 4_000 + (n % 512) as u32,
        parent_pid: 1,
        name: "loadgen-process".into(),
        exe: "/usr/lib/loadgen/bin/loadgen-process".into(),
        cmdline: "loadgen-process --simulated --flag value".into(),
        user: "loadgen".into(),
        ..Default::default()
    };
    let kind = match n % 3 {
        0 => v1::observation::Kind::Dns(v1::DnsObservation {
            qname: "chatgpt.com".into(),
            qtype: 1,
            answers: vec!["104.18.32.47".into()],
            resolver: "127.0.0.53".into(),
            tcp: false,
        }),
        1 => v1::observation::Kind::TlsSni(v1::TlsSniObservation {
            server_name: "claude.ai".into(),
            alpn: vec!["h2".into(), "http/1.1".into()],
            ech: false,
            src: "10.0.0.7:53412".into(),
            dst: "160.79.104.10:443".into(),
        }),
        _ => v1::observation::Kind::ProcessSeen(v1::ProcessObservation {
            event: v1::ProcessEvent::Started as i32,
        }),
    };
    v1::Observation {
        id: Uuid::now_v7().to_string(),
        observed_at_ms: now,
        detection: Some(v1::Detection {
            product: product.into(),
            vendor: vendor.into(),
            category: category.into(),
            rule: rule.into(),
            reason: "loadgen: simulated detection".into(),
            confidence: v1::Confidence::High as i32,
            count: 1,
            catalog_version: "loadgen".into(),
            ..Default::default()
        }),
        process: Some(process),
        kind: Some(kind),
    }
}

/// Raw insert rate of the database: `rows` observation rows for `agent_id` straight into the
/// observations table, 1000 per transaction in multi-row statements, one connection at a time.
async fn raw_insert_rate(store: &Store, agent_id: Uuid, rows: u64) -> anyhow::Result<f64> {
    const PER_TRANSACTION: u64 = 1_000;
    let now = unix_ms(time::OffsetDateTime::now_utc());
    let mut batches = Vec::new();
    let mut left = rows;
    while left > 0 {
        let size = left.min(PER_TRANSACTION);
        left -= size;
        let request = v1::ReportRequest {
            observations: (0..size as usize).map(observation).collect(),
        };
        batches.push(
            crate::ingest::validate::batch(&request, now)
                .map_err(|e| anyhow::anyhow!("loadgen observation refused: {e}"))?,
        );
    }
    let started = Instant::now();
    let mut inserted = 0u64;
    for batch in &batches {
        inserted += store
            .insert_observation_rows_only(agent_id, batch, now)
            .await
            .context("raw insert")? as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    if inserted != rows {
        bail!("raw insert stored {inserted} of {rows} rows");
    }
    Ok(rows as f64 / seconds.max(1e-9))
}

/// Samples a process's VmRSS once a second.
struct RssWatch {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Vec<u64>>,
}

impl RssWatch {
    fn start(pid: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                if let Some(kib) = rss_kib(pid) {
                    samples.push(kib);
                }
                tokio::select! {
                    _ = &mut stopped => return samples,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> Vec<u64> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "agents:                 {}", self.agents)?;
        writeln!(
            f,
            "observations acked:     {} of {} sent",
            self.observations_acked, self.observations_sent
        )?;
        writeln!(
            f,
            "throughput:             {:.0} observations/s over {:.1} s ({} reports)",
            self.observations_per_second, self.seconds, self.reports_acked
        )?;
        writeln!(
            f,
            "ack latency:            p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.ack_latency_p50_ms, self.ack_latency_p99_ms, self.ack_latency_max_ms
        )?;
        writeln!(
            f,
            "shed (retried):         {}; errors (retried): {}; batches lost: {}",
            self.shed, self.errors, self.lost_batches
        )?;
        writeln!(f, "enrollment:             {:.1} s", self.enroll_seconds)?;
        writeln!(
            f,
            "connections:            {} in {} attempts over {:.1} s; max {} in one second, mean {:.1}/s",
            self.connections,
            self.connect_attempts,
            self.connect_seconds,
            self.connections_per_second_max,
            self.connections_per_second_mean
        )?;
        if let (Some(first), Some(max), Some(last)) =
            (self.rss_kib_first, self.rss_kib_max, self.rss_kib_last)
        {
            writeln!(
                f,
                "collector RSS:          first {} MiB, max {} MiB, last {} MiB",
                first / 1024,
                max / 1024,
                last / 1024
            )?;
        }
        if let (Some(rows), Some(rate)) = (self.raw_rows, self.raw_rows_per_second) {
            writeln!(
                f,
                "raw insert (same db):   {rate:.0} rows/s ({rows} rows); ingest is {:.2} of raw",
                self.observations_per_second / rate.max(1e-9)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_observations_pass_the_collectors_own_validation() {
        let request = v1::ReportRequest {
            observations: (0..1_000).map(observation).collect(),
        };
        let now = unix_ms(time::OffsetDateTime::now_utc());
        let batch = crate::ingest::validate::batch(&request, now).unwrap();
        assert_eq!(batch.len(), 1_000);
    }

    #[test]
    fn percentiles_and_connection_buckets() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        assert_eq!(percentile_ms(&sorted, 0.50), 50.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let (max, mean, span) = connection_rate(&[at(10), at(20), at(990), at(1500)], start);
        assert_eq!(max, 3);
        assert!((span - 1.5).abs() < 1e-9);
        assert!((mean - 4.0 / 1.5).abs() < 1e-9);
    }

    #[test]
    fn collector_addresses() {
        assert_eq!(
            split_host_port("127.0.0.1:7443").unwrap(),
            ("127.0.0.1".into(), 7443)
        );
        assert_eq!(split_host_port("[::1]:7443").unwrap(), ("::1".into(), 7443));
        assert_eq!(
            split_host_port("collector.example:1").unwrap(),
            ("collector.example".into(), 1)
        );
        assert!(split_host_port("nope").is_err());
    }
}
