//! Prometheus metrics of the collector, served at `/metrics` (OpenMetrics text).
//!
//! One process-wide registry ([`metrics()`]): ingest handlers count and time per call (never per
//! observation in a loop), the fleet gauges (agents online/silent/blinded, alerts by severity and
//! status, database pool) come from one database query every [`FLEET_REFRESH`] in
//! [`spawn_fleet_refresh`], never from a scrape, so that a scraper cannot load the database.
//!
//! Names follow `shadowai_<noun>_<unit>` (counters get `_total` from the encoder). Every label set
//! is bounded and known in advance; each is created at zero on start so that dashboards and alert
//! rules see a series before the first event. Label values never come from an agent.
//!
//! The metric names are a contract with `dashboards/grafana/*.json`; the end-to-end test
//! `observability` scrapes a real collector and checks every name a dashboard queries.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::{FleetCounts, Store};

/// How often the fleet gauges are recomputed from the database.
pub const FLEET_REFRESH: Duration = Duration::from_secs(15);

/// An agent is *silent* when its last contact is older than this many heartbeat intervals.
pub const SILENT_AFTER_HEARTBEATS: i64 = 3;

/// The content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The gRPC calls agents make.
pub const RPCS: [&str; 5] = [
    "enroll",
    "renew_certificate",
    "report",
    "heartbeat",
    "fetch_catalog",
];

/// Why a call was refused (`shadowai_ingest_rejects_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// No, unknown or malformed credentials (certificate or token).
    Unauthenticated,
    /// The agent has been revoked.
    Revoked,
    /// A message broke a limit of the contract.
    Invalid,
    /// A message or batch over the size limits.
    TooLarge,
    /// Load shedding: over the agent's rate or the collector's capacity (RESOURCE_EXHAUSTED with
    /// `retry-after`; the agent retries after it).
    Shed,
    /// The store could not take the data (the agent retries).
    Unavailable,
}

impl Reject {
    /// Every reason, for pre-created series.
    pub const ALL: [Reject; 6] = [
        Reject::Unauthenticated,
        Reject::Revoked,
        Reject::Invalid,
        Reject::TooLarge,
        Reject::Shed,
        Reject::Unavailable,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Unauthenticated => "unauthenticated",
            Reject::Revoked => "revoked",
            Reject::Invalid => "invalid",
            Reject::TooLarge => "too_large",
            Reject::Shed => "shed",
            Reject::Unavailable => "unavailable",
        }
    }

    /// The reason a gRPC status stands for. RESOURCE_EXHAUSTED is load shedding when it carries
    /// a `retry-after` (`ingest::shed_status`), otherwise a size limit (which no wait changes).
    pub fn of_status(status: &tonic::Status) -> Reject {
        match status.code() {
            tonic::Code::Unauthenticated => Reject::Unauthenticated,
            tonic::Code::PermissionDenied => Reject::Revoked,
            tonic::Code::ResourceExhausted if status.metadata().contains_key("retry-after") => {
                Reject::Shed
            }
            tonic::Code::ResourceExhausted | tonic::Code::OutOfRange => Reject::TooLarge,
            tonic::Code::InvalidArgument => Reject::Invalid,
            _ => Reject::Unavailable,
        }
    }
}

/// Alert severities and statuses the store writes; anything else is counted as `other`.
const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];
const STATUSES: [&str; 3] = ["open", "acknowledged", "resolved"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    rpc: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    rpc: &'static str,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    severity: &'static str,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Database operations timed in `shadowai_db_query_duration_seconds{operation}`.
pub const DB_OPERATIONS: [&str; 4] = ["insert_observations", "heartbeat", "identify", "fleet"];

fn db_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The collector's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RpcLabels, Counter>,
    rejects: Family<RejectLabels, Counter>,
    in_flight: Family<RpcLabels, Gauge>,
    observations: Family<OutcomeLabels, Counter>,
    batch_seconds: Histogram,
    batch_observations: Histogram,
    db_seconds: Family<OperationLabels, Histogram, fn() -> Histogram>,
    db_pool: Family<StateLabels, Gauge>,
    agents: Family<StateLabels, Gauge>,
    agents_blinded: Gauge,
    alerts: Family<AlertLabels, Gauge>,
    export_dead_letters: Gauge,
    fleet_refresh_errors: Counter,
    fleet_refreshed: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RpcLabels, Counter>::default();
        registry.register(
            "shadowai_ingest_requests",
            "gRPC calls from agents that completed, by rpc",
            requests.clone(),
        );
        let rejects = Family::<RejectLabels, Counter>::default();
        registry.register(
            "shadowai_ingest_rejects",
            "gRPC calls from agents that were refused, by rpc and reason",
            rejects.clone(),
        );
        let in_flight = Family::<RpcLabels, Gauge>::default();
        registry.register(
            "shadowai_ingest_in_flight_requests",
            "gRPC calls being handled now, by rpc",
            in_flight.clone(),
        );
        let observations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "shadowai_ingest_observations",
            "observations in committed reports: inserted, or duplicate (redelivered, already stored)",
            observations.clone(),
        );
        let batch_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "shadowai_ingest_batch_duration_seconds",
            "time to validate, store and commit one report, seconds",
            batch_seconds.clone(),
        );
        let batch_observations = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "shadowai_ingest_batch_observations",
            "observations per committed report",
            batch_observations.clone(),
        );
        let db_seconds =
            Family::<OperationLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                db_histogram,
            );
        registry.register(
            "shadowai_db_query_duration_seconds",
            "database latency of one store operation (a transaction where there is one), seconds",
            db_seconds.clone(),
        );
        let db_pool = Family::<StateLabels, Gauge>::default();
        registry.register(
            "shadowai_db_pool_connections",
            "database pool connections by state (idle, in_use)",
            db_pool.clone(),
        );
        let agents = Family::<StateLabels, Gauge>::default();
        registry.register(
            "shadowai_agents",
            "enrolled agents by state: online (contact within 3 heartbeat intervals), silent, revoked",
            agents.clone(),
        );
        let agents_blinded = Gauge::default();
        registry.register(
            "shadowai_agents_blinded",
            "online or silent agents whose last heartbeat reported a blind spot or a blind sensor",
            agents_blinded.clone(),
        );
        let alerts = Family::<AlertLabels, Gauge>::default();
        registry.register(
            "shadowai_alerts",
            "alerts by severity and status",
            alerts.clone(),
        );
        let export_dead_letters = Gauge::default();
        registry.register(
            "shadowai_export_dead_letters",
            "SIEM export records that could not be delivered and wait in the dead-letter store",
            export_dead_letters.clone(),
        );
        let fleet_refresh_errors = Counter::default();
        registry.register(
            "shadowai_fleet_refresh_errors",
            "failed refreshes of the fleet gauges (agents, alerts) from the database",
            fleet_refresh_errors.clone(),
        );
        let fleet_refreshed = Gauge::default();
        registry.register(
            "shadowai_fleet_refreshed_timestamp_seconds",
            "Unix time of the last successful refresh of the fleet gauges",
            fleet_refreshed.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "shadowai_build_info",
            "the collector's version (value 1)",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        // Every series exists from the start (at zero).
        for rpc in RPCS {
            drop(requests.get_or_create(&RpcLabels { rpc }));
            drop(in_flight.get_or_create(&RpcLabels { rpc }));
            for reason in Reject::ALL {
                drop(rejects.get_or_create(&RejectLabels {
                    rpc,
                    reason: reason.as_str(),
                }));
            }
        }
        for outcome in ["inserted", "duplicate"] {
            drop(observations.get_or_create(&OutcomeLabels { outcome }));
        }
        for operation in DB_OPERATIONS {
            drop(db_seconds.get_or_create(&OperationLabels { operation }));
        }
        for state in ["idle", "in_use"] {
            drop(db_pool.get_or_create(&StateLabels { state }));
        }
        for state in ["online", "silent", "revoked"] {
            drop(agents.get_or_create(&StateLabels { state }));
        }
        for severity in SEVERITIES.into_iter().chain(["other"]) {
            for status in STATUSES.into_iter().chain(["other"]) {
                drop(alerts.get_or_create(&AlertLabels { severity, status }));
            }
        }
        Self {
            registry,
            requests,
            rejects,
            in_flight,
            observations,
            batch_seconds,
            batch_observations,
            db_seconds,
            db_pool,
            agents,
            agents_blinded,
            alerts,
            export_dead_letters,
            fleet_refresh_errors,
            fleet_refreshed,
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Marks a call to `rpc` as in flight until the guard is dropped.
    pub fn start(&self, rpc: &'static str) -> InFlight {
        let gauge = self.in_flight.get_or_create(&RpcLabels { rpc }).clone();
        gauge.inc();
        InFlight { gauge }
    }

    /// Counts the end of a call: completed, or refused for `status`.
    pub fn finish<T>(&self, rpc: &'static str, result: &Result<T, tonic::Status>) {
        match result {
            Ok(_) => {
                self.requests.get_or_create(&RpcLabels { rpc }).inc();
            }
            Err(status) => {
                self.rejects
                    .get_or_create(&RejectLabels {
                        rpc,
                        reason: Reject::of_status(status).as_str(),
                    })
                    .inc();
            }
        }
    }

    /// Records one committed report.
    pub fn report_committed(&self, inserted: usize, duplicates: usize, elapsed: Duration) {
        let (inserted, duplicates) = (inserted as u64, duplicates as u64);
        self.observations
            .get_or_create(&OutcomeLabels {
                outcome: "inserted",
            })
            .inc_by(inserted);
        self.observations
            .get_or_create(&OutcomeLabels {
                outcome: "duplicate",
            })
            .inc_by(duplicates);
        self.batch_seconds.observe(elapsed.as_secs_f64());
        self.batch_observations
            .observe(inserted.saturating_add(duplicates) as f64);
    }

    /// Records the latency of one database operation (one of [`DB_OPERATIONS`]).
    pub fn database(&self, operation: &'static str, started: Instant) {
        self.db_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sets the number of SIEM export records waiting in the dead-letter store.
    pub fn set_export_dead_letters(&self, count: i64) {
        self.export_dead_letters.set(count);
    }

    /// Sets the fleet gauges from one database reading.
    pub fn set_fleet(&self, fleet: &FleetCounts, now_ms: i64) {
        let agents = |state| self.agents.get_or_create(&StateLabels { state });
        agents("online").set(fleet.agents_online);
        agents("silent").set(fleet.agents_silent);
        agents("revoked").set(fleet.agents_revoked);
        self.agents_blinded.set(fleet.agents_blinded);
        let mut counts: std::collections::BTreeMap<(&'static str, &'static str), i64> =
            std::collections::BTreeMap::new();
        for (severity, status, count) in &fleet.alerts {
            let severity = known(&SEVERITIES, severity);
            let status = known(&STATUSES, status);
            *counts.entry((severity, status)).or_default() += count;
        }
        // Series that have no alerts left go back to zero.
        for severity in SEVERITIES.into_iter().chain(["other"]) {
            for status in STATUSES.into_iter().chain(["other"]) {
                let count = counts.get(&(severity, status)).copied().unwrap_or(0);
                self.alerts
                    .get_or_create(&AlertLabels { severity, status })
                    .set(count);
            }
        }
        let pool = |state| self.db_pool.get_or_create(&StateLabels { state });
        pool("idle").set(i64::from(fleet.pool_idle));
        pool("in_use").set(i64::from(fleet.pool_size.saturating_sub(fleet.pool_idle)));
        self.fleet_refreshed.set(now_ms / 1000);
    }
}

fn known(values: &[&'static str], value: &str) -> &'static str {
    values
        .iter()
        .find(|known| **known == value)
        .copied()
        .unwrap_or("other")
}

/// A call in flight; dropping it decrements the gauge (also on cancellation).
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// A tower layer on the agent gRPC server that counts and times every call by rpc: in flight,
/// completed, refused by reason (from the `grpc-status` of trailers-only answers, which is how
/// tonic answers an error, including a message over the size limit refused before the handler).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics(inner)
    }
}

/// The service of [`GrpcMetricsLayer`].
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S>(S);

/// The rpc label of a gRPC path (`/shadowai.v1.AgentService/Report` -> `report`); `None` for
/// anything else, which is not counted (the label set stays bounded).
fn rpc_of_path(path: &str) -> Option<&'static str> {
    let method = path.strip_prefix("/shadowai.v1.AgentService/")?;
    Some(match method {
        "Enroll" => "enroll",
        "RenewCertificate" => "renew_certificate",
        "Report" => "report",
        "Heartbeat" => "heartbeat",
        "FetchCatalog" => "fetch_catalog",
        _ => return None,
    })
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let rpc = rpc_of_path(request.uri().path());
        let in_flight = rpc.map(|rpc| metrics().start(rpc));
        let future = self.0.call(request);
        Box::pin(async move {
            let response = future.await;
            if let (Some(rpc), Ok(response)) = (rpc, &response) {
                let status = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map(tonic::Code::from_i32)
                    .filter(|code| *code != tonic::Code::Ok);
                match status {
                    None => metrics().finish(rpc, &Ok(())),
                    Some(code) => {
                        // The metadata (a `retry-after`) tells shedding from a size limit.
                        let metadata =
                            tonic::metadata::MetadataMap::from_headers(response.headers().clone());
                        let status = tonic::Status::with_metadata(code, "", metadata);
                        metrics().finish::<()>(rpc, &Err(status));
                    }
                }
            }
            drop(in_flight);
            response
        })
    }
}

/// Refreshes the fleet gauges from `store` now and every [`FLEET_REFRESH`] until the task is
/// dropped. Agents are *silent* after [`SILENT_AFTER_HEARTBEATS`] heartbeat intervals without
/// contact.
pub fn spawn_fleet_refresh(
    store: Store,
    heartbeat_interval_seconds: u32,
) -> tokio::task::JoinHandle<()> {
    let silent_after_ms = i64::from(heartbeat_interval_seconds) * 1000 * SILENT_AFTER_HEARTBEATS;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(FLEET_REFRESH);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            refresh_fleet(&store, silent_after_ms).await;
        }
    })
}

/// One refresh of the fleet gauges.
pub async fn refresh_fleet(store: &Store, silent_after_ms: i64) {
    let now_ms = crate::server::now_ms();
    let started = Instant::now();
    let fleet = store.fleet_counts(now_ms, silent_after_ms).await;
    let metrics = metrics();
    metrics.database("fleet", started);
    match fleet {
        Ok(fleet) => metrics.set_fleet(&fleet, now_ms),
        Err(error) => {
            metrics.fleet_refresh_errors.inc();
            tracing::warn!(error = %error, "cannot refresh the fleet metrics");
        }
    }
    // The lasting dead-letter count is the database's (every collector exporting from it), not
    // this process's counter.
    let mut dead_letters = 0;
    for sink in [crate::export::WEBHOOK_SINK, crate::export::SYSLOG_SINK] {
        match store.export_totals(sink).await {
            Ok(totals) => dead_letters += totals.dead_letters,
            Err(error) => {
                metrics.fleet_refresh_errors.inc();
                tracing::warn!(error = %error, sink, "cannot count export dead letters");
                return;
            }
        }
    }
    metrics.set_export_dead_letters(dead_letters);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_exists_before_the_first_event() {
        let text = metrics().encode();
        for needle in [
            "shadowai_ingest_rejects_total{rpc=\"report\",reason=\"too_large\"} 0",
            "shadowai_ingest_observations_total{outcome=\"duplicate\"}",
            "shadowai_ingest_batch_duration_seconds_bucket",
            "shadowai_db_query_duration_seconds_count{operation=\"insert_observations\"}",
            "shadowai_agents{state=\"silent\"}",
            "shadowai_alerts{severity=\"high\",status=\"open\"}",
            "shadowai_export_dead_letters 0",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }

    #[test]
    fn fleet_gauges_follow_the_database_and_bound_their_labels() {
        let fleet = FleetCounts {
            agents_online: 3,
            agents_silent: 1,
            agents_revoked: 0,
            agents_blinded: 2,
            alerts: vec![
                ("high".into(), "open".into(), 4),
                ("<script>".into(), "open".into(), 1),
                ("weird".into(), "open".into(), 2),
            ],
            pool_size: 4,
            pool_idle: 3,
        };
        let metrics = Metrics::new();
        metrics.set_fleet(&fleet, 1_750_000_000_000);
        let text = metrics.encode();
        assert!(
            text.contains("shadowai_agents{state=\"online\"} 3"),
            "{text}"
        );
        assert!(text.contains("shadowai_agents_blinded 2"), "{text}");
        assert!(
            text.contains("shadowai_alerts{severity=\"high\",status=\"open\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("shadowai_alerts{severity=\"other\",status=\"open\"} 3"),
            "{text}"
        );
        assert!(!text.contains("script"), "{text}");
        assert!(
            text.contains("shadowai_db_pool_connections{state=\"in_use\"} 1"),
            "{text}"
        );
        // a severity that disappears goes back to zero
        metrics.set_fleet(&FleetCounts::default(), 1_750_000_015_000);
        let text = metrics.encode();
        assert!(
            text.contains("shadowai_alerts{severity=\"high\",status=\"open\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn in_flight_is_released_on_drop_and_rejects_are_classified() {
        let metrics = Metrics::new();
        let guard = metrics.start("report");
        assert!(
            metrics
                .encode()
                .contains("shadowai_ingest_in_flight_requests{rpc=\"report\"} 1")
        );
        drop(guard);
        assert!(
            metrics
                .encode()
                .contains("shadowai_ingest_in_flight_requests{rpc=\"report\"} 0")
        );
        metrics.finish::<()>("report", &Err(tonic::Status::resource_exhausted("big")));
        metrics.finish::<()>(
            "report",
            &Err(crate::ingest::shed_status(
                crate::ingest::limits::Shed::Busy {
                    retry_after_seconds: 1,
                },
            )),
        );
        metrics.finish::<()>(
            "heartbeat",
            &Err(tonic::Status::permission_denied("revoked")),
        );
        metrics.finish("report", &Ok(()));
        let text = metrics.encode();
        assert!(
            text.contains("shadowai_ingest_rejects_total{rpc=\"report\",reason=\"too_large\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shadowai_ingest_rejects_total{rpc=\"report\",reason=\"shed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shadowai_ingest_rejects_total{rpc=\"heartbeat\",reason=\"revoked\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("shadowai_ingest_requests_total{rpc=\"report\"} 1"),
            "{text}"
        );
    }

    /// The value of one series of the process-wide registry.
    fn global(series: &str) -> f64 {
        let text = metrics().encode();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    /// What the gRPC layer sees is a trailers-only answer: code and metadata in the headers. A
    /// shed answer (RESOURCE_EXHAUSTED with `retry-after`) is counted as shed, not as too large.
    #[tokio::test]
    async fn the_grpc_layer_tells_shedding_from_too_large() {
        use tower::{Layer as _, Service as _, ServiceExt as _};
        let answer = |retry_after: Option<&'static str>| {
            GrpcMetricsLayer.layer(tower::service_fn(move |_: http::Request<()>| async move {
                let mut response = http::Response::new(());
                let headers = response.headers_mut();
                headers.insert("grpc-status", http::HeaderValue::from_static("8"));
                if let Some(seconds) = retry_after {
                    headers.insert("retry-after", http::HeaderValue::from_static(seconds));
                }
                Ok::<_, std::convert::Infallible>(response)
            }))
        };
        let call = || {
            http::Request::builder()
                .uri("/shadowai.v1.AgentService/FetchCatalog")
                .body(())
                .unwrap()
        };
        let shed = "shadowai_ingest_rejects_total{rpc=\"fetch_catalog\",reason=\"shed\"}";
        let too_large = "shadowai_ingest_rejects_total{rpc=\"fetch_catalog\",reason=\"too_large\"}";
        let (shed_before, too_large_before) = (global(shed), global(too_large));
        let mut service = answer(Some("3"));
        service.ready().await.unwrap().call(call()).await.unwrap();
        let mut service = answer(None);
        service.ready().await.unwrap().call(call()).await.unwrap();
        assert_eq!(global(shed), shed_before + 1.0);
        assert_eq!(global(too_large), too_large_before + 1.0);
    }
}
