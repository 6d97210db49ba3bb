//! The agent channel's security properties, over real TLS and real gRPC on loopback, against the
//! real collector service and store (SQLite always; PostgreSQL when `SHADOWAI_TEST_POSTGRES_URL` is
//! set, required when `SHADOWAI_REQUIRE_POSTGRES=1`). Each refusal also asserts that nothing was
//! stored.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use shadowai_agent::config::CollectorUrl;
use shadowai_agent::{identity, transport};
use shadowai_collector::identity::{CertificateAuthority, EnrollmentToken, unix_ms};
use shadowai_collector::ingest::limits::{Admission, LimitsConfig};
use shadowai_collector::ingest::{AgentApi, CatalogRelease, IngestConfig};
use shadowai_collector::server::{self, Bound};
use shadowai_collector::store::{NewEnrollmentToken, Store};
use shadowai_collector::{http, tokens};
use shadowai_proto::v1;
use tonic::Code;

use crate::support::TestDatabase;

pub(crate) struct Collector {
    pub(crate) store: Store,
    pub(crate) ca: Arc<CertificateAuthority>,
    pub(crate) url: CollectorUrl,
    /// The service's admission control: its limits and counters (what it admitted and shed).
    pub(crate) admission: Arc<Admission>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn start(backend: Backend) -> Option<Collector> {
    start_with(backend, IngestConfig::default()).await
}

/// Starts an in-process collector on loopback with its own CA and database.
pub(crate) async fn start_with(backend: Backend, ingest: IngestConfig) -> Option<Collector> {
    start_limited(backend, ingest, LimitsConfig::default()).await
}

/// [`start_with`] with the admission limits of `[ingest_limits]` set to `limits`.
pub(crate) async fn start_limited(
    backend: Backend,
    ingest: IngestConfig,
    limits: LimitsConfig,
) -> Option<Collector> {
    limits.validate().expect("valid [ingest_limits]");
    let dir = tempfile::tempdir().unwrap();
    let (url, database) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("db.sqlite").display()),
            None,
        ),
        Backend::Postgres => {
            let database = TestDatabase::create().await?;
            (database.url.clone(), Some(database))
        }
    };
    let store = Store::connect(&url).await.unwrap();
    let ca = Arc::new(
        CertificateAuthority::load_or_create(dir.path(), time::OffsetDateTime::now_utc()).unwrap(),
    );
    let localhost = SocketAddr::from(([127, 0, 0, 1], 0));
    let bound = Bound::bind(localhost, localhost).await.unwrap();
    let admission = Arc::new(Admission::new(limits));
    let api = AgentApi::new(
        store.clone(),
        ca.clone(),
        CatalogRelease::embedded().unwrap(),
        ingest,
    )
    .with_admission(admission.clone());
    let tls = server::agent_tls_config(&ca, &["127.0.0.1".to_owned()]).unwrap();
    let router = http::router(http::HttpState::new(
        store.clone(),
        http::HttpConfig {
            secure_cookies: false,
        },
    ));
    let url = CollectorUrl {
        host: "127.0.0.1".into(),
        port: bound.grpc_addr.port(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(bound.serve(api, tls, router, async move {
        let _ = stopped.await;
    }));
    Some(Collector {
        store,
        ca,
        url,
        admission,
        stop: Some(stop),
        _dir: dir,
        _database: database,
    })
}

#[derive(Clone, Copy)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Collector {
    async fn token(&self, max_uses: Option<u32>) -> String {
        tokens::create(
            &self.store,
            &self.ca,
            "test",
            Some(time::Duration::hours(1)),
            max_uses,
            "test",
        )
        .await
        .unwrap()
    }

    pub(crate) async fn enroll(&self, state: &Path) -> identity::Identity {
        let token = self.token(Some(1)).await;
        identity::enroll(&self.url, &token, state, 0).await.unwrap()
    }

    async fn stored(&self) -> i64 {
        self.store.count_observations().await.unwrap()
    }
}

fn observation(cmdline: &str) -> v1::Observation {
    v1::Observation {
        id: uuid::Uuid::now_v7().to_string(),
        observed_at_ms: unix_ms(time::OffsetDateTime::now_utc()),
        detection: Some(v1::Detection {
            product: "ollama.ollama".into(),
            vendor: "Ollama".into(),
            category: "local_model_runtime".into(),
            rule: "data/ollama.toml#ollama.ollama/process/server".into(),
            reason: "test".into(),
            confidence: v1::Confidence::High as i32,
            count: 1,
            ..Default::default()
        }),
        process: Some(v1::ProcessInfo {
            pid: 4242,
            name: "ollama".into(),
            exe: "/usr/local/bin/ollama".into(),
            cmdline: cmdline.into(),
            user: "alice".into(),
            ..Default::default()
        }),
        kind: Some(v1::observation::Kind::ProcessSeen(v1::ProcessObservation {
            event: v1::ProcessEvent::Started as i32,
        })),
    }
}

fn report(observations: Vec<v1::Observation>) -> v1::ReportRequest {
    v1::ReportRequest { observations }
}

/// Runs one scenario on SQLite and on PostgreSQL.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(collector) = super::start(super::Backend::Sqlite).await else { return };
                super::$name(collector).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(collector) = super::start(super::Backend::Postgres).await else { return };
                super::$name(collector).await;
            })*
        }
    };
}

both_backends!(
    enrolled_agent_reports_and_redelivery_is_stored_once,
    call_without_client_certificate_is_refused,
    certificate_from_another_ca_is_refused,
    bad_tokens_are_refused,
    revoked_agent_is_refused,
    oversized_and_overlong_batches_are_refused_whole,
    heartbeat_and_catalog_fetch_work,
);

async fn enrolled_agent_reports_and_redelivery_is_stored_once(collector: Collector) {
    let state = tempfile::tempdir().unwrap();
    let agent = collector.enroll(state.path()).await;
    let mut client = transport::connect(&collector.url, agent.tls.clone())
        .await
        .unwrap();
    let batch = report(vec![
        observation("ollama serve"),
        observation("ollama run llama3"),
    ]);
    let ids: Vec<String> = batch.observations.iter().map(|o| o.id.clone()).collect();
    let first = client.report(batch.clone()).await.unwrap().into_inner();
    assert_eq!(first.committed_ids, ids);
    let again = client.report(batch).await.unwrap().into_inner();
    assert_eq!(
        again.committed_ids, ids,
        "a redelivered batch is acknowledged again"
    );
    assert_eq!(collector.stored().await, 2, "and stored once");
    // identity files: the private key is readable by the agent's user only
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(state.path().join("agent.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

async fn call_without_client_certificate_is_refused(collector: Collector) {
    let token = collector.token(None).await;
    let pin = EnrollmentToken::parse(&token).unwrap().ca_pin;
    // Server-authenticated TLS only, as at enrollment.
    let mut client = transport::connect(&collector.url, transport::pinned_config(&pin).unwrap())
        .await
        .unwrap();
    let status = client
        .report(report(vec![observation("x")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let status = client
        .heartbeat(v1::HeartbeatRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = client
        .fetch_catalog(v1::FetchCatalogRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(collector.stored().await, 0);
}

async fn certificate_from_another_ca_is_refused(collector: Collector) {
    let other_dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let other = CertificateAuthority::load_or_create(other_dir.path(), now).unwrap();
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let forged = other
        .issue_agent_certificate(
            csr.der(),
            uuid::Uuid::now_v7(),
            now,
            shadowai_collector::identity::AGENT_CERTIFICATE_LIFETIME,
        )
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(forged.pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let tls = transport::mutual_config(collector.ca.certificate_der().clone(), chain, key).unwrap();
    // TLS 1.3 may report the refusal at connect or at the first call; either way nothing passes.
    if let Ok(mut client) = transport::connect(&collector.url, tls).await {
        let status = client
            .report(report(vec![observation("x")]))
            .await
            .unwrap_err();
        assert_ne!(status.code(), Code::Ok);
    }
    assert_eq!(collector.stored().await, 0);
}

async fn bad_tokens_are_refused(collector: Collector) {
    let state = tempfile::tempdir().unwrap();
    let expect_refused = |result: Result<identity::Identity, identity::IdentityError>,
                          why: &str| match result {
        Err(identity::IdentityError::Refused(message)) => {
            assert!(message.contains(why), "`{message}` should say {why}")
        }
        other => panic!("expected a refusal ({why}), got {other:?}"),
    };
    // unknown: well-formed, right CA pin, but never issued
    let unknown = EnrollmentToken::generate(&collector.ca.pin()).to_string();
    expect_refused(
        identity::enroll(&collector.url, &unknown, state.path(), 0).await,
        "unknown",
    );
    // expired
    let expired = EnrollmentToken::generate(&collector.ca.pin());
    let now = unix_ms(time::OffsetDateTime::now_utc());
    collector
        .store
        .create_enrollment_token(&NewEnrollmentToken {
            token_id: expired.token_id.clone(),
            secret_sha256: expired.secret_sha256(),
            group: "test".into(),
            expires_at_ms: Some(now - 1_000),
            max_uses: None,
            created_at_ms: now - 10_000,
            created_by: "test".into(),
        })
        .await
        .unwrap();
    expect_refused(
        identity::enroll(&collector.url, &expired.to_string(), state.path(), 0).await,
        "expired",
    );
    // used up
    let once = collector.token(Some(1)).await;
    identity::enroll(&collector.url, &once, state.path(), 0)
        .await
        .unwrap();
    let second = tempfile::tempdir().unwrap();
    expect_refused(
        identity::enroll(&collector.url, &once, second.path(), 0).await,
        "used up",
    );
    // right id, wrong secret
    let mut wrong = EnrollmentToken::parse(&collector.token(None).await).unwrap();
    wrong.secret = EnrollmentToken::generate(&collector.ca.pin()).secret;
    expect_refused(
        identity::enroll(&collector.url, &wrong.to_string(), second.path(), 0).await,
        "unknown",
    );
    // a token for another collector: the pin does not match, the agent refuses to talk at all
    let foreign = EnrollmentToken::generate(&EnrollmentToken::generate("x").secret).to_string();
    let error = identity::enroll(&collector.url, &foreign, second.path(), 0)
        .await
        .unwrap_err();
    assert!(
        matches!(error, identity::IdentityError::Transport(_)),
        "{error:?}"
    );
    assert_eq!(
        collector.store.list_agents().await.unwrap().len(),
        1,
        "only the one valid enrollment"
    );
}

async fn revoked_agent_is_refused(collector: Collector) {
    let state = tempfile::tempdir().unwrap();
    let agent = collector.enroll(state.path()).await;
    let mut client = transport::connect(&collector.url, agent.tls.clone())
        .await
        .unwrap();
    client
        .report(report(vec![observation("before")]))
        .await
        .unwrap();
    let agent_id = agent.file.agent_id.parse().unwrap();
    collector
        .store
        .revoke_agent(agent_id, "test", 0)
        .await
        .unwrap();
    let status = client
        .report(report(vec![observation("after")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let status = client
        .heartbeat(v1::HeartbeatRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(collector.stored().await, 1, "nothing after the revocation");
}

async fn oversized_and_overlong_batches_are_refused_whole(collector: Collector) {
    let state = tempfile::tempdir().unwrap();
    let agent = collector.enroll(state.path()).await;
    let mut client = transport::connect(&collector.url, agent.tls.clone())
        .await
        .unwrap();

    let too_many = report((0..1_001).map(|_| observation("x")).collect());
    let status = client.report(too_many).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // 6 MiB on the wire: over the message limit before it is even decoded
    let huge = report(
        (0..6)
            .map(|_| observation(&"A".repeat(1024 * 1024)))
            .collect(),
    );
    let status = client.report(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // one over-long string spoils the batch: the valid observation beside it is not stored
    let mut long_name = observation("ok");
    long_name.process.as_mut().unwrap().name = "n".repeat(1024 * 1024);
    let status = client
        .report(report(vec![observation("valid"), long_name]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("process.name"),
        "{}",
        status.message()
    );

    let mut bad_id = observation("x");
    bad_id.id = "'; DROP TABLE observations;--".into();
    let status = client.report(report(vec![bad_id])).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(collector.stored().await, 0);
}

async fn heartbeat_and_catalog_fetch_work(collector: Collector) {
    let state = tempfile::tempdir().unwrap();
    let agent = collector.enroll(state.path()).await;
    let mut client = transport::connect(&collector.url, agent.tls.clone())
        .await
        .unwrap();
    let reply = client
        .heartbeat(v1::HeartbeatRequest {
            catalog_version: "old".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let catalog = shadowai_catalog::Catalog::embedded().unwrap();
    assert_eq!(reply.catalog_version, catalog.version());
    assert!(
        !reply.renew_certificate,
        "a fresh certificate needs no renewal"
    );
    let fetched = client
        .fetch_catalog(v1::FetchCatalogRequest {
            known_version: "old".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.sha256, catalog.sha256());
    let parsed = shadowai_catalog::Catalog::from_bundle(&fetched.content).unwrap();
    assert_eq!(parsed.version(), catalog.version());
    let current = client
        .fetch_catalog(v1::FetchCatalogRequest {
            known_version: catalog.version().into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        current.content.is_empty(),
        "nothing to send when the agent is current"
    );
}
