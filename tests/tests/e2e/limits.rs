//! Oversized and malformed reports over the real mTLS channel, on SQLite and PostgreSQL: bad enum
//! values, invalid UTF-8 where the proto says `string`, 10 MB fields (also gzip-compressed so that
//! they are small on the wire), and 100 000 observations in one batch (plain and compressed). Each
//! is refused with a clear status and nothing of it is stored; a valid report afterwards works.

use prost::Message as _;
use rustls_pki_types::ServerName;
use shadowai_proto::v1::{self, agent_service_client::AgentServiceClient};
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

use crate::channel::{Backend, Collector, start_with};

/// `ReportRequest` with its observations as raw bytes: lets the test send what the generated
/// types cannot express (invalid UTF-8 in a `string` field). Wire-identical to `ReportRequest`.
#[derive(Clone, PartialEq, prost::Message)]
struct RawReport {
    #[prost(bytes = "vec", repeated, tag = "1")]
    observations: Vec<Vec<u8>>,
}

fn observation() -> v1::Observation {
    shadowai_collector::loadgen::observation(2)
}

async fn channel(collector: &Collector, state: &std::path::Path) -> Channel {
    let agent = collector.enroll(state).await;
    shadowai_collector::loadgen::open_channel(
        &collector.url.host,
        collector.url.port,
        ServerName::try_from(collector.url.host.clone()).unwrap(),
        agent.tls.clone(),
    )
    .await
    .unwrap()
}

async fn send_raw(channel: &Channel, observations: Vec<Vec<u8>>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<RawReport, v1::ReportResponse>::default();
    grpc.unary(
        tonic::Request::new(RawReport { observations }),
        PathAndQuery::from_static("/shadowai.v1.AgentService/Report"),
        codec,
    )
    .await
    .expect_err("must be refused")
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(collector) =
                    super::start_with(super::Backend::Sqlite, Default::default()).await
                else { return };
                super::$name(collector).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(collector) =
                    super::start_with(super::Backend::Postgres, Default::default()).await
                else { return };
                super::$name(collector).await;
            })*
        }
    };
}

both_backends!(malformed_and_oversized_reports_are_refused_and_nothing_is_stored);

async fn malformed_and_oversized_reports_are_refused_and_nothing_is_stored(collector: Collector) {
    let state = tempfile::tempdir().unwrap();
    let channel = channel(&collector, state.path()).await;
    let plain = AgentServiceClient::new(channel.clone());
    let gzip = AgentServiceClient::new(channel.clone()).send_compressed(CompressionEncoding::Gzip);
    let stored = || async { collector.store.count_observations().await.unwrap() };

    // invalid UTF-8 in the id, and in a nested string (process.name), beside a valid observation
    let valid = observation().encode_to_vec();
    let mut bad_id = observation().encode_to_vec();
    bad_id.extend_from_slice(&[0x0a, 2, 0xff, 0xfe]); // id = 1: a later value wins
    let mut bad_name = observation().encode_to_vec();
    bad_name.extend_from_slice(&[0x22, 4, 0x22, 2, 0xc3, 0x28]); // process = 4 { name = 4 }
    for bad in [bad_id, bad_name] {
        let status = send_raw(&channel, vec![valid.clone(), bad]).await;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().contains("UTF-8") || status.message().contains("utf-8"),
            "{status:?}"
        );
    }

    // bad enum values
    let mut bad_confidence = observation();
    bad_confidence.detection.as_mut().unwrap().confidence = 99;
    let mut bad_event = observation();
    bad_event.kind = Some(v1::observation::Kind::ProcessSeen(v1::ProcessObservation {
        event: 42,
    }));
    for bad in [bad_confidence, bad_event] {
        let status = plain
            .clone()
            .report(v1::ReportRequest {
                observations: vec![observation(), bad],
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("unknown value"), "{status:?}");
    }

    // a 10 MB field: plain it is over the message limit; compressed it is ~10 KB on the wire and
    // still refused once inflated
    let mut huge = observation();
    huge.process.as_mut().unwrap().cmdline = "A".repeat(10 * 1024 * 1024);
    let huge = v1::ReportRequest {
        observations: vec![observation(), huge],
    };
    for mut client in [plain.clone(), gzip.clone()] {
        let status = client.report(huge.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }

    // 100 000 observations in one batch, plain and compressed
    let many = v1::ReportRequest {
        observations: (0..100_000).map(|_| observation()).collect(),
    };
    for mut client in [plain.clone(), gzip.clone()] {
        let status = client.report(many.clone()).await.unwrap_err();
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    }
    assert_eq!(stored().await, 0, "nothing of a refused report is stored");

    // the channel and the store are fine afterwards
    let ok = plain
        .clone()
        .report(v1::ReportRequest {
            observations: vec![observation()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.committed_ids.len(), 1);
    assert_eq!(stored().await, 1);
}
