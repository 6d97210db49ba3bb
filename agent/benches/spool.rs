//! Spool throughput: enqueue + lease + commit of DNS-sized observations on the durable (disk)
//! spool, in batches as the daemon does. `cargo bench -p shadowai-agent --bench spool`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shadowai_agent::spool::{DEFAULT_MAX_BYTES, Spool};
use shadowai_proto::v1;

fn observation(i: usize) -> v1::Observation {
    v1::Observation {
        id: format!("0190a0b0-0000-7000-8000-{i:012}"),
        observed_at_ms: 1_763_736_368_123,
        detection: Some(v1::Detection {
            product: "openai.chatgpt".into(),
            vendor: "OpenAI".into(),
            category: "chat_app".into(),
            rule: "data/openai.toml#openai.chatgpt/domain/chatgpt.com".into(),
            reason: "domain is under `chatgpt.com`".into(),
            confidence: v1::Confidence::High as i32,
            catalog_version: "2026.11.21-1".into(),
            count: 1,
            ..Default::default()
        }),
        process: Some(v1::ProcessInfo {
            pid: 4242,
            name: "chromium".into(),
            exe: "/usr/lib/chromium/chromium".into(),
            user: "alice".into(),
            ..Default::default()
        }),
        kind: Some(v1::observation::Kind::TlsSni(v1::TlsSniObservation {
            server_name: "chatgpt.com".into(),
            alpn: vec!["h2".into(), "http/1.1".into()],
            src: "10.0.0.2:50000".into(),
            dst: "104.18.32.47:443".into(),
            ..Default::default()
        })),
    }
}

fn spool(c: &mut Criterion) {
    const BATCH: usize = 500;
    let observations: Vec<v1::Observation> = (0..BATCH).map(observation).collect();
    let ids: Vec<String> = observations.iter().map(|o| o.id.clone()).collect();
    let mut group = c.benchmark_group("spool");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("disk_enqueue_lease_commit_500", |b| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).expect("spool");
        b.iter_batched(
            || observations.clone(),
            |batch| {
                spool.enqueue_many(batch, 0);
                let leased = spool.lease(BATCH);
                assert_eq!(leased.len(), BATCH);
                spool.commit(&ids);
            },
            BatchSize::LargeInput,
        );
    });
    group.bench_function("disk_enqueue_one_by_one_500", |b| {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut spool, _) = Spool::open(dir.path(), DEFAULT_MAX_BYTES).expect("spool");
        b.iter_batched(
            || observations.clone(),
            |batch| {
                for observation in batch {
                    spool.enqueue(observation, 0);
                }
                let leased = spool.lease(BATCH);
                spool.commit(&ids[..leased.len()]);
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, spool);
criterion_main!(benches);
