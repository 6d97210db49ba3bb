//! The gRPC service agents talk to.
//!
//! Architecture invariant: the agent a call speaks for is derived only from the TLS client
//! certificate of the connection (`PeerInfo`, filled in by `server::tls`), looked up by fingerprint
//! in the store on every call, so that a revoked agent is refused at once. No message field can name
//! another agent. Every call except `Enroll` requires that certificate.
//!
//! Errors map to gRPC codes here, once; messages say what to fix and never carry SQL or paths.

pub mod limits;
pub mod validate;

use std::sync::Arc;

use shadowai_proto::v1::{self, agent_service_server::AgentService};
use time::OffsetDateTime;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::identity::{CertificateAuthority, EnrollmentToken, IdentityError, unix_ms};
use crate::server::PeerInfo;
use crate::store::{AgentIdentity, EnrollAgent, Heartbeat, Store, StoreError};

/// The catalog the collector distributes to agents.
#[derive(Debug, Clone)]
pub struct CatalogRelease {
    /// Catalog version.
    pub version: String,
    /// SHA-256 hex of `bundle`.
    pub sha256: String,
    /// The bundle bytes.
    pub bundle: Arc<Vec<u8>>,
}

impl CatalogRelease {
    /// A release from the store.
    pub fn from_record(record: crate::store::CatalogReleaseRecord) -> Self {
        Self {
            version: record.version,
            sha256: record.sha256,
            bundle: Arc::new(record.bundle),
        }
    }

    /// The catalog built into this collector.
    pub fn embedded() -> Result<Self, shadowai_catalog::CatalogError> {
        let catalog = shadowai_catalog::Catalog::embedded()?;
        Ok(Self {
            version: catalog.version().to_owned(),
            sha256: catalog.sha256().to_owned(),
            bundle: Arc::new(catalog.bundle().to_vec()),
        })
    }
}

/// Settings of the ingest service.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Heartbeat interval told to agents, seconds.
    pub heartbeat_interval_seconds: u32,
    /// Validity of agent certificates; agents are asked to renew when a third is left.
    pub agent_certificate_lifetime: time::Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_seconds: 60,
            agent_certificate_lifetime: crate::identity::AGENT_CERTIFICATE_LIFETIME,
        }
    }
}

/// How long the newest published catalog is cached before the store is asked again. Bounds how
/// soon agents see a new release (next heartbeat after this) and the query rate (one per period).
const CATALOG_REFRESH: std::time::Duration = std::time::Duration::from_secs(10);

/// A cached answer to "which catalog is published": when it was read, and what it was.
type PublishedCatalog = Option<(std::time::Instant, Option<CatalogRelease>)>;

/// The `AgentService` implementation.
#[derive(Clone)]
pub struct AgentApi {
    store: Store,
    ca: Arc<CertificateAuthority>,
    builtin_catalog: CatalogRelease,
    published_catalog: Arc<std::sync::Mutex<PublishedCatalog>>,
    config: IngestConfig,
    admission: Arc<limits::Admission>,
}

impl AgentApi {
    /// Creates the service.
    pub fn new(
        store: Store,
        ca: Arc<CertificateAuthority>,
        catalog: CatalogRelease,
        config: IngestConfig,
    ) -> Self {
        Self {
            store,
            ca,
            builtin_catalog: catalog,
            published_catalog: Arc::new(std::sync::Mutex::new(None)),
            config,
            admission: Arc::new(limits::Admission::default()),
        }
    }

    /// Replaces the admission limits (per-agent rate, concurrent ingest, handshake rate).
    pub fn with_admission(mut self, admission: Arc<limits::Admission>) -> Self {
        self.admission = admission;
        self
    }

    /// The admission state: limits and counters (the server's accept loop reads the handshake rate).
    pub fn admission(&self) -> &Arc<limits::Admission> {
        &self.admission
    }

    /// The catalog agents should run: the newest release published to the store (all collectors
    /// sharing a database serve the same one), or the built-in catalog while none is published.
    pub async fn current_catalog(&self) -> CatalogRelease {
        let cached = {
            let cache = self
                .published_catalog
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            cache
                .as_ref()
                .filter(|(at, _)| at.elapsed() < CATALOG_REFRESH)
                .map(|(_, release)| release.clone())
        };
        let published = match cached {
            Some(published) => published,
            None => {
                let published = match self.store.latest_catalog().await {
                    Ok(record) => record.map(CatalogRelease::from_record),
                    Err(error) => {
                        warn!(error = %error, "cannot read the published catalog; serving the built-in one");
                        return self.builtin_catalog.clone();
                    }
                };
                *self
                    .published_catalog
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((std::time::Instant::now(), published.clone()));
                published
            }
        };
        published.unwrap_or_else(|| self.builtin_catalog.clone())
    }

    /// Finds the calling agent from the connection's client certificate.
    async fn caller<T>(&self, request: &Request<T>) -> Result<(AgentIdentity, PeerInfo), Status> {
        let peer = request
            .extensions()
            .get::<PeerInfo>()
            .cloned()
            .unwrap_or_default();
        let Some(certificate) = &peer.client_certificate else {
            return Err(Status::unauthenticated(
                "a client certificate is required: enroll first",
            ));
        };
        let started = std::time::Instant::now();
        let agent = self
            .store
            .agent_by_certificate(&certificate.fingerprint)
            .await;
        crate::metrics::metrics().database("identify", started);
        let agent = agent
            .map_err(store_status)?
            .ok_or_else(|| Status::unauthenticated("unknown client certificate"))?;
        if agent.revoked {
            debug!(agent_id = %agent.agent_id, "call from revoked agent refused");
            return Err(Status::permission_denied("this agent has been revoked"));
        }
        Ok((agent, peer))
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Maps a store error to a gRPC status without leaking internals.
fn store_status(error: StoreError) -> Status {
    match error {
        StoreError::TokenUnknown => Status::unauthenticated("enrollment token refused: unknown"),
        StoreError::TokenExpired => Status::unauthenticated("enrollment token refused: expired"),
        StoreError::TokenUsedUp => Status::unauthenticated("enrollment token refused: used up"),
        StoreError::TokenRevoked => Status::unauthenticated("enrollment token refused: revoked"),
        other => {
            warn!(error = %other, "store error during ingest");
            Status::unavailable("the collector cannot store data right now; retry later")
        }
    }
}

/// RESOURCE_EXHAUSTED with `retry-after: <seconds>` metadata (the agent waits at least that long).
pub fn shed_status(shed: limits::Shed) -> Status {
    let mut status = Status::resource_exhausted(shed.message());
    status.metadata_mut().insert(
        "retry-after",
        tonic::metadata::MetadataValue::from(shed.retry_after_seconds()),
    );
    status
}

fn identity_status(error: IdentityError) -> Status {
    match error {
        IdentityError::BadCsr => Status::invalid_argument("csr_der is not a valid signed CSR"),
        IdentityError::CsrTooLarge => Status::invalid_argument("csr_der is too large"),
        other => {
            warn!(error = %other, "certificate issue failed");
            Status::internal("certificate issue failed")
        }
    }
}

fn host_facts(host: Option<&v1::HostFacts>) -> Result<v1::HostFacts, Status> {
    let host = host.cloned().unwrap_or_default();
    let check = |field: &str, value: &str, limit: usize| {
        validate::text(field, value, limit).map_err(|e| Status::invalid_argument(e.to_string()))
    };
    Ok(v1::HostFacts {
        hostname: check("host.hostname", &host.hostname, 255)?,
        os: check("host.os", &host.os, 32)?,
        os_version: check("host.os_version", &host.os_version, 128)?,
        arch: check("host.arch", &host.arch, 32)?,
        agent_version: check("host.agent_version", &host.agent_version, 64)?,
    })
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn enroll(
        &self,
        request: Request<v1::EnrollRequest>,
    ) -> Result<Response<v1::EnrollResponse>, Status> {
        let remote = request
            .extensions()
            .get::<PeerInfo>()
            .and_then(|p| p.remote_addr)
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let message = request.into_inner();
        let token = EnrollmentToken::parse(&message.token)
            .ok_or_else(|| Status::unauthenticated("enrollment token refused: malformed"))?;
        if token.ca_pin != self.ca.pin() {
            return Err(Status::unauthenticated(
                "enrollment token refused: issued by another collector CA",
            ));
        }
        let host = host_facts(message.host.as_ref())?;
        let now = now();
        let agent_id = Uuid::now_v7();
        let issued = self
            .ca
            .issue_agent_certificate(
                &message.csr_der,
                agent_id,
                now,
                self.config.agent_certificate_lifetime,
            )
            .map_err(identity_status)?;
        let enrolled = self
            .store
            .enroll_agent(&EnrollAgent {
                token_id: token.token_id.clone(),
                secret_sha256: token.secret_sha256(),
                agent_id,
                cert_fingerprint: issued.fingerprint.clone(),
                cert_expires_at_ms: issued.expires_at_ms,
                hostname: host.hostname,
                os: host.os,
                os_version: host.os_version,
                arch: host.arch,
                agent_version: host.agent_version,
                remote_addr: remote,
                now_ms: unix_ms(now),
            })
            .await
            .map_err(store_status)?;
        info!(agent_id = %enrolled.agent_id, group = %enrolled.group, "agent enrolled");
        Ok(Response::new(v1::EnrollResponse {
            agent_id: enrolled.agent_id.to_string(),
            certificate_pem: issued.pem,
            ca_certificate_pem: self.ca.certificate_pem().to_owned(),
            group: enrolled.group,
            certificate_expires_at_ms: issued.expires_at_ms,
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<v1::RenewCertificateRequest>,
    ) -> Result<Response<v1::RenewCertificateResponse>, Status> {
        let (agent, _) = self.caller(&request).await?;
        let now = now();
        let issued = self
            .ca
            .issue_agent_certificate(
                &request.get_ref().csr_der,
                agent.agent_id,
                now,
                self.config.agent_certificate_lifetime,
            )
            .map_err(identity_status)?;
        self.store
            .add_agent_certificate(
                agent.agent_id,
                &issued.fingerprint,
                issued.expires_at_ms,
                unix_ms(now),
            )
            .await
            .map_err(store_status)?;
        info!(agent_id = %agent.agent_id, "agent certificate renewed");
        Ok(Response::new(v1::RenewCertificateResponse {
            certificate_pem: issued.pem,
            certificate_expires_at_ms: issued.expires_at_ms,
        }))
    }

    async fn report(
        &self,
        request: Request<v1::ReportRequest>,
    ) -> Result<Response<v1::ReportResponse>, Status> {
        let started = std::time::Instant::now();
        let (agent, _) = self.caller(&request).await?;
        let now_ms = unix_ms(now());
        let batch = validate::batch(request.get_ref(), now_ms).map_err(|invalid| {
            debug!(agent_id = %agent.agent_id, error = %invalid, "report refused");
            if invalid.is_size() {
                Status::resource_exhausted(invalid.to_string())
            } else {
                Status::invalid_argument(invalid.to_string())
            }
        })?;
        // Admission after validation (a refused batch costs no tokens) and around the transaction
        // only: the permit is released when the store has answered.
        let permit = self
            .admission
            .admit_report(agent.agent_id, batch.len(), std::time::Instant::now())
            .map_err(|shed| {
                debug!(agent_id = %agent.agent_id, ?shed, "report shed");
                shed_status(shed)
            })?;
        let stored = std::time::Instant::now();
        let outcome = self
            .store
            .insert_observations(agent.agent_id, &batch, now_ms)
            .await;
        crate::metrics::metrics().database("insert_observations", stored);
        let outcome = outcome.map_err(store_status)?;
        drop(permit);
        crate::metrics::metrics().report_committed(
            outcome.inserted,
            outcome.duplicates,
            started.elapsed(),
        );
        debug!(
            agent_id = %agent.agent_id,
            inserted = outcome.inserted,
            duplicates = outcome.duplicates,
            alerts = outcome.alerts_raised,
            "report committed"
        );
        // Only after the commit above: the agent forgets exactly these ids.
        let committed_ids = batch.iter().map(|o| o.id.to_string()).collect();
        Ok(Response::new(v1::ReportResponse { committed_ids }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let (agent, peer) = self.caller(&request).await?;
        let message = request.into_inner();
        let host = host_facts(message.host.as_ref())?;
        let invalid = |e: validate::Invalid| Status::invalid_argument(e.to_string());
        let catalog_version =
            validate::text("catalog_version", &message.catalog_version, 64).map_err(invalid)?;
        if message.sensors.len() > 16
            || message.dropped.len() > 64
            || message.blind_spots.len() > 32
        {
            return Err(Status::invalid_argument(
                "too many sensors, dropped counts or blind spots",
            ));
        }
        let mut sensors = Vec::new();
        for sensor in &message.sensors {
            let state = v1::SensorState::try_from(sensor.state)
                .map_err(|_| Status::invalid_argument("sensors.state: unknown value"))?;
            sensors.push(serde_json::json!({
                "sensor": validate::text("sensors.sensor", &sensor.sensor, 64).map_err(invalid)?,
                "state": state.as_str_name(),
                "detail": validate::text("sensors.detail", &sensor.detail, 1024).map_err(invalid)?,
            }));
        }
        let mut dropped = Vec::new();
        for count in &message.dropped {
            dropped.push(serde_json::json!({
                "reason": validate::text("dropped.reason", &count.reason, 64).map_err(invalid)?,
                "kind": validate::text("dropped.kind", &count.kind, 32).map_err(invalid)?,
                "count": count.count,
            }));
        }
        let mut blind_spots = Vec::new();
        for spot in &message.blind_spots {
            blind_spots.push(serde_json::json!({
                "kind": validate::text("blind_spots.kind", &spot.kind, 64).map_err(invalid)?,
                "detail": validate::text("blind_spots.detail", &spot.detail, 1024).map_err(invalid)?,
                "since_ms": spot.since_ms,
            }));
        }
        let health = serde_json::json!({
            "sensors": sensors,
            "dropped": dropped,
            "blind_spots": blind_spots,
            "spool_depth": message.spool_depth,
            "spool_oldest_age_ms": message.spool_oldest_age_ms,
            "uptime_seconds": message.uptime_seconds,
            "degraded": message.degraded,
        });
        let now = now();
        let heartbeat = Heartbeat {
            hostname: host.hostname,
            os: host.os,
            os_version: host.os_version,
            arch: host.arch,
            agent_version: host.agent_version,
            catalog_version,
            health,
        };
        let stored = std::time::Instant::now();
        let recorded = self
            .store
            .record_heartbeat(agent.agent_id, &heartbeat, unix_ms(now))
            .await;
        crate::metrics::metrics().database("heartbeat", stored);
        recorded.map_err(store_status)?;
        // Renew when less than a third of the certificate's life is left.
        let renew_certificate = peer.client_certificate.is_some_and(|c| {
            let third = self.config.agent_certificate_lifetime.whole_milliseconds() as i64 / 3;
            c.not_after_ms - unix_ms(now) < third
        });
        let catalog = self.current_catalog().await;
        Ok(Response::new(v1::HeartbeatResponse {
            catalog_version: catalog.version,
            catalog_sha256: catalog.sha256,
            server_time_ms: unix_ms(now),
            heartbeat_interval_seconds: self.config.heartbeat_interval_seconds,
            renew_certificate,
        }))
    }

    async fn fetch_catalog(
        &self,
        request: Request<v1::FetchCatalogRequest>,
    ) -> Result<Response<v1::FetchCatalogResponse>, Status> {
        self.caller(&request).await?;
        let catalog = self.current_catalog().await;
        let is_current = request.get_ref().known_version == catalog.version;
        Ok(Response::new(v1::FetchCatalogResponse {
            content: if is_current {
                Vec::new()
            } else {
                catalog.bundle.as_ref().clone()
            },
            version: catalog.version,
            sha256: catalog.sha256,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shed_report_is_resource_exhausted_with_retry_after_seconds() {
        let status = shed_status(limits::Shed::AgentRate {
            retry_after_seconds: 3,
        });
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        let value = status.metadata().get("retry-after").unwrap();
        assert_eq!(value.to_str().unwrap(), "3");
        assert!(status.message().contains("retry"), "{}", status.message());
    }
}
