//! SIEM export: alerts as OCSF Detection Finding events to an HTTPS webhook and to syslog
//! (RFC 5424 over TCP, RFC 6587 octet counting, TLS optional).
//!
//! Design constraints:
//! - **Nothing lost, nothing resent.** The database is the queue: an alert is pending for a sink
//!   until an `export_deliveries` row says the sink acknowledged its current status (migration
//!   0007). Rows are written after the acknowledgement, so a collector restart resends at most the
//!   batch that was in flight (at-least-once, never skip); events carry a stable `metadata.uid`
//!   (alert id + status) for a receiver that de-duplicates.
//! - **Bounded.** Each sink holds at most `queue_capacity` events in memory (its retry queue);
//!   it reads more from the database only when that queue is empty, so a receiver that is down
//!   costs memory for one queue, not for the backlog.
//! - **No retry storms.** Transient failures (connection refused, timeouts, HTTP 408/429/5xx) are
//!   retried with exponential backoff and full jitter, capped at `max_backoff`. Nothing is dropped
//!   for being retried too often: the backlog waits in the database.
//! - **Dead letters.** An event the receiver refuses for good (HTTP 4xx other than 408/429 for that
//!   event alone, or a syslog message larger than `max_message_bytes`) is recorded as
//!   `dead_letter`, counted ([`dead_letters_total`], `GET /api/v1/export`) and not retried.
//!   A refused batch is retried one event at a time so that one bad event does not condemn others.
//! - One collector exports: run the export on a single collector of a PostgreSQL cluster (two
//!   would each send every event).

pub mod config;
mod ocsf;
mod syslog;
mod webhook;

pub use ocsf::{CLASS_UID, OCSF_VERSION, detection_finding};
pub use syslog::{SyslogSettings, frame as syslog_frame};
pub use webhook::WebhookSettings;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::store::{ExportAlert, ExportOutcome, ExportRecord, Store};

/// Sink name of the webhook in `export_deliveries` and the API.
pub const WEBHOOK_SINK: &str = "webhook";
/// Sink name of syslog in `export_deliveries` and the API.
pub const SYSLOG_SINK: &str = "syslog";

/// How long a shutdown waits for the batch in flight before abandoning it (unrecorded, so it is
/// sent again by the next collector to run the export).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

static DEAD_LETTERS: AtomicU64 = AtomicU64::new(0);

/// Events this process has dead-lettered since it started, over all sinks (for `/metrics`).
/// The database keeps the lasting count (`Store::export_totals`).
pub fn dead_letters_total() -> u64 {
    DEAD_LETTERS.load(Ordering::Relaxed)
}

/// Settings shared by every sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// Events per request (webhook: one JSON array; syslog: one write).
    pub batch_size: usize,
    /// Events held in memory per sink (the retry queue).
    pub queue_capacity: usize,
    /// How often an idle sink looks for new alerts.
    pub poll_interval: Duration,
    /// First retry delay (before jitter).
    pub initial_backoff: Duration,
    /// Largest retry delay (before jitter).
    pub max_backoff: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            batch_size: 100,
            queue_capacity: 1_000,
            poll_interval: Duration::from_secs(5),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Every configured sink.
#[derive(Debug, Clone, Default)]
pub struct ExportSettings {
    pub webhook: Option<(WebhookSettings, QueueSettings)>,
    pub syslog: Option<(SyslogSettings, QueueSettings)>,
}

impl ExportSettings {
    pub fn is_empty(&self) -> bool {
        self.webhook.is_none() && self.syslog.is_none()
    }
}

/// What a sink did in this process (the API adds the database's totals).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    pub dead_letters: AtomicU64,
    pub retries: AtomicU64,
    pub queued: AtomicU64,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth retrying later (network, timeouts, receiver overloaded or restarting).
    #[error("transient: {0}")]
    Transient(String),
    /// The receiver refused the content; resending the same bytes will not help.
    #[error("refused: {0}")]
    Refused(String),
}

/// A configured receiver.
enum Transport {
    Webhook(webhook::Webhook),
    Syslog(syslog::Syslog),
}

impl Transport {
    async fn send(&mut self, events: &[serde_json::Value]) -> Result<(), SendError> {
        match self {
            Transport::Webhook(webhook) => webhook.send(events).await,
            Transport::Syslog(syslog) => syslog.send(events).await,
        }
    }
}

/// The running export tasks.
#[derive(Debug)]
pub struct Exporter {
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    stats: Vec<(&'static str, Arc<SinkStats>)>,
}

impl Exporter {
    /// Starts one task per configured sink. Fails on unusable TLS settings (CA file), not on an
    /// unreachable receiver (that is retried).
    pub fn spawn(store: Store, settings: &ExportSettings) -> Result<Exporter, ExportSetupError> {
        let (shutdown, watcher) = watch::channel(false);
        let mut exporter = Exporter {
            shutdown,
            tasks: Vec::new(),
            stats: Vec::new(),
        };
        if let Some((webhook, queue)) = &settings.webhook {
            let transport = Transport::Webhook(webhook::Webhook::new(webhook)?);
            exporter.start(WEBHOOK_SINK, transport, queue.clone(), &store, &watcher);
        }
        if let Some((syslog, queue)) = &settings.syslog {
            let transport = Transport::Syslog(syslog::Syslog::new(syslog)?);
            exporter.start(SYSLOG_SINK, transport, queue.clone(), &store, &watcher);
        }
        Ok(exporter)
    }

    fn start(
        &mut self,
        sink: &'static str,
        transport: Transport,
        queue: QueueSettings,
        store: &Store,
        watcher: &watch::Receiver<bool>,
    ) {
        let stats = Arc::new(SinkStats::default());
        let worker = Worker {
            sink,
            store: store.clone(),
            transport,
            settings: queue,
            queue: VecDeque::new(),
            stats: stats.clone(),
            shutdown: watcher.clone(),
        };
        self.tasks.push(tokio::spawn(worker.run()));
        self.stats.push((sink, stats));
    }

    /// This process's counters per sink.
    pub fn stats(&self) -> &[(&'static str, Arc<SinkStats>)] {
        &self.stats
    }

    /// Stops the sinks: a batch in flight gets [`SHUTDOWN_GRACE`] to be acknowledged and recorded;
    /// past that it is abandoned unrecorded (and sent again next time).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// A sink's settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExportSetupError {
    #[error("{what}: {problem}")]
    Invalid { what: &'static str, problem: String },
}

/// An alert waiting in a sink's retry queue.
struct Queued {
    export: ExportAlert,
    attempts: u32,
}

struct Worker {
    sink: &'static str,
    store: Store,
    transport: Transport,
    settings: QueueSettings,
    queue: VecDeque<Queued>,
    stats: Arc<SinkStats>,
    shutdown: watch::Receiver<bool>,
}

impl Worker {
    async fn run(mut self) {
        info!(sink = self.sink, "export started");
        let mut failures: u32 = 0;
        // After a refused batch, that many events are sent one at a time.
        let mut singles: usize = 0;
        loop {
            if *self.shutdown.borrow() {
                break;
            }
            if self.queue.is_empty() {
                let limit = u32::try_from(self.settings.queue_capacity).unwrap_or(u32::MAX);
                match self.store.pending_exports(self.sink, limit).await {
                    Ok(pending) => self.queue.extend(pending.into_iter().map(|export| Queued {
                        export,
                        attempts: 0,
                    })),
                    Err(error) => {
                        warn!(sink = self.sink, error = %error, "cannot read pending alerts")
                    }
                }
                self.stats
                    .queued
                    .store(self.queue.len() as u64, Ordering::Relaxed);
                if self.queue.is_empty() {
                    if self.sleep(self.settings.poll_interval).await {
                        break;
                    }
                    continue;
                }
            }
            let take = if singles > 0 {
                1
            } else {
                self.settings.batch_size.min(self.queue.len())
            };
            let mut batch: Vec<Queued> = self.queue.drain(..take).collect();
            let now_ms = crate::server::now_ms();
            let events: Vec<serde_json::Value> = batch
                .iter()
                .map(|queued| ocsf::detection_finding(&queued.export, now_ms))
                .collect();
            for queued in &mut batch {
                queued.attempts += 1;
            }
            // A shutdown lets the batch in flight finish (within SHUTDOWN_GRACE) and records it:
            // abandoning a batch the receiver already took would send it again after a restart.
            let result = {
                let send = self.transport.send(&events);
                tokio::pin!(send);
                tokio::select! {
                    result = &mut send => Some(result),
                    _ = self.shutdown.changed() => {
                        tokio::time::timeout(SHUTDOWN_GRACE, &mut send).await.ok()
                    }
                }
            };
            let Some(result) = result else { break };
            match result {
                Ok(()) => {
                    failures = 0;
                    singles = singles.saturating_sub(1);
                    self.record(&batch, ExportOutcome::Delivered, None).await;
                }
                Err(SendError::Refused(reason)) if batch.len() > 1 => {
                    debug!(sink = self.sink, %reason, "batch refused; sending its events one by one");
                    singles = batch.len();
                    self.requeue(batch);
                }
                Err(SendError::Refused(reason)) => {
                    singles = singles.saturating_sub(1);
                    warn!(sink = self.sink, alert_id = %batch[0].export.alert.id, %reason, "event refused by the receiver: dead letter");
                    self.record(&batch, ExportOutcome::DeadLetter, Some(reason))
                        .await;
                }
                Err(SendError::Transient(reason)) => {
                    failures = failures.saturating_add(1);
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff(&self.settings, failures, &mut rand::rng());
                    warn!(sink = self.sink, %reason, retry_in_ms = delay.as_millis() as u64, "export failed; will retry");
                    self.requeue(batch);
                    if self.sleep(delay).await {
                        break;
                    }
                }
            }
        }
        info!(sink = self.sink, "export stopped");
    }

    fn requeue(&mut self, batch: Vec<Queued>) {
        for queued in batch.into_iter().rev() {
            self.queue.push_front(queued);
        }
    }

    async fn record(&mut self, batch: &[Queued], outcome: ExportOutcome, error: Option<String>) {
        let records: Vec<ExportRecord> = batch
            .iter()
            .map(|queued| ExportRecord {
                alert_id: queued.export.alert.id,
                status: queued.export.alert.status.clone(),
                outcome,
                attempts: queued.attempts,
                error: error.clone(),
            })
            .collect();
        match self
            .store
            .record_exports(self.sink, &records, crate::server::now_ms())
            .await
        {
            Ok(()) => {
                let counter = match outcome {
                    ExportOutcome::Delivered => &self.stats.delivered,
                    ExportOutcome::DeadLetter => {
                        DEAD_LETTERS.fetch_add(records.len() as u64, Ordering::Relaxed);
                        &self.stats.dead_letters
                    }
                };
                counter.fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                // Delivered but not recorded: the alerts stay pending and are sent again later.
                warn!(sink = self.sink, error = %error, "cannot record export; the batch will be sent again");
                self.queue.clear();
                let _ = self.sleep(self.settings.initial_backoff).await;
            }
        }
        self.stats
            .queued
            .store(self.queue.len() as u64, Ordering::Relaxed);
    }

    /// Sleeps unless shut down first; true when shut down.
    async fn sleep(&mut self, delay: Duration) -> bool {
        if *self.shutdown.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => *self.shutdown.borrow(),
            _ = self.shutdown.changed() => true,
        }
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, initial * 2^(failures-1))]`.
pub fn backoff(settings: &QueueSettings, failures: u32, rng: &mut impl rand::Rng) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    let ceiling = settings
        .initial_backoff
        .saturating_mul(1u32 << exponent)
        .min(settings.max_backoff);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rng.random_range(0..=millis))
}

/// The rustls client configuration of a sink: only the CA in `ca_pem` when given (pinned), else the
/// Mozilla roots (webpki-roots).
pub(crate) fn client_tls(
    ca_pem: Option<&[u8]>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, ExportSetupError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ExportSetupError::Invalid {
                    what: "ca_file",
                    problem: format!("not a PEM certificate: {e}"),
                })?;
                roots.add(cert).map_err(|e| ExportSetupError::Invalid {
                    what: "ca_file",
                    problem: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(ExportSetupError::Invalid {
                    what: "ca_file",
                    problem: "holds no certificate".into(),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ExportSetupError::Invalid {
            what: "tls",
            problem: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn backoff_is_capped_and_jittered_from_zero() {
        let settings = QueueSettings {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            ..QueueSettings::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut below_half = 0;
        for failures in 1..=40 {
            let ceiling = (100u64 << (failures - 1).min(30)).min(2_000);
            for _ in 0..50 {
                let delay = backoff(&settings, failures, &mut rng).as_millis() as u64;
                assert!(delay <= ceiling, "{delay} > {ceiling} at {failures}");
                if delay < ceiling / 2 {
                    below_half += 1;
                }
            }
        }
        // Full jitter: about half of the delays fall below half of their ceiling.
        assert!((700..1300).contains(&below_half), "{below_half}");
    }
}
