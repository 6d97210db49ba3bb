//! Catalog distribution: an agent picks up a newer catalog the collector publishes, without a
//! restart, and refuses a malformed one — keeping the last good catalog and working on.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sha2::Digest;
use shadowai_collector::catalogs;
use shadowai_collector::ingest::IngestConfig;
use shadowai_collector::store::{CatalogReleaseRecord, ObservationQuery};

use crate::channel::{Backend, Collector, start_with};
use crate::support::{ProcessGuard, binaries, poll_until, spawn_idle_as};

/// A product the built-in catalog does not know, added by the published release.
const EXTRA_PRODUCT: &str = r#"
[[product]]
id = "e2etest.fake-tool"
vendor = "E2E Test"
name = "Fake AI tool"
category = "autonomous_agent"
sources = ["https://example.invalid/shadowai/e2e-test-product"]
verified = "2026-11-21"

[[product.process]]
id = "cli"
names = ["shadowai-e2e-fake-tool"]
"#;

pub(crate) fn daemon_status(state: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(state.join("status.json")).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

async fn catalog_in_use(state: &Path, version: &str) -> Result<(), String> {
    let status = daemon_status(state)?;
    match (status["state"].as_str(), status["catalog_version"].as_str()) {
        (Some("connected"), Some(v)) if v == version => Ok(()),
        other => Err(format!("status {other:?}")),
    }
}

pub(crate) async fn observed_pid(
    collector: &Collector,
    product: &str,
    pid: u32,
) -> Result<(), String> {
    let page = collector
        .store
        .list_observations(&ObservationQuery {
            limit: 100,
            after: None,
            agent_id: None,
            product: Some(product.to_owned()),
        })
        .await
        .map_err(|e| e.to_string())?;
    let pids: Vec<u32> = page
        .items
        .iter()
        .filter_map(|o| o.process.as_ref().map(|p| p.pid))
        .collect();
    if pids.contains(&pid) {
        Ok(())
    } else {
        Err(format!("pids seen for {product}: {pids:?}"))
    }
}

fn write_catalog(dir: &Path, version: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let builtin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../catalog/data");
    for entry in std::fs::read_dir(&builtin).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join("zz-e2e.toml"), EXTRA_PRODUCT).unwrap();
    std::fs::write(dir.join("VERSION"), version).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_swaps_in_a_published_catalog_and_refuses_a_malformed_one() {
    let collector = start_with(
        Backend::Sqlite,
        IngestConfig {
            heartbeat_interval_seconds: 5,
            ..IngestConfig::default()
        },
    )
    .await
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    collector.enroll(&state).await;
    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "collector = \"{}\"\nstate_dir = \"{}\"\n[process]\ninterval_seconds = 1\n[network]\nenabled = false\n[transport]\nflush_interval_ms = 100\n",
            collector.url,
            state.display()
        ),
    )
    .unwrap();
    let builtin = shadowai_catalog::Catalog::embedded().unwrap();
    let agent = ProcessGuard::spawn(
        "shadowai-agent run",
        Command::new(&binaries().agent)
            .arg("run")
            .arg("--config")
            .arg(&config),
    );
    poll_until(
        Duration::from_secs(30),
        "agent connected with the built-in catalog",
        || catalog_in_use(&state, builtin.version()),
    )
    .await;

    // A newer release, published while the agent runs.
    let v2 = work.path().join("catalog-v2");
    write_catalog(&v2, "e2e-2");
    catalogs::publish_dir(&collector.store, &v2, "test", 1)
        .await
        .unwrap();
    poll_until(Duration::from_secs(40), "agent runs catalog e2e-2", || {
        catalog_in_use(&state, "e2e-2")
    })
    .await;
    let tool = spawn_idle_as(
        &work.path().join("one/shadowai-e2e-fake-tool"),
        &["--serve"],
    );
    poll_until(
        Duration::from_secs(20),
        "the new product is detected",
        || observed_pid(&collector, "e2etest.fake-tool", tool.pid()),
    )
    .await;

    // A malformed release (its digest is right, its content is not a catalog).
    let garbage = b"{\"format\":1,\"version\":\"e2e-3\",\"files\":[]}".to_vec();
    collector
        .store
        .publish_catalog(
            &CatalogReleaseRecord {
                version: "e2e-3".into(),
                sha256: hex::encode(sha2::Sha256::digest(&garbage)),
                bundle: garbage,
                published_at_ms: 2,
            },
            "test",
        )
        .await
        .unwrap();
    poll_until(Duration::from_secs(40), "the agent refuses e2e-3", || {
        let log = agent.lines().join("\n");
        async move {
            if log.contains("invalid catalog from collector") {
                Ok(())
            } else {
                Err(log)
            }
        }
    })
    .await;
    catalog_in_use(&state, "e2e-2").await.unwrap();
    // ... and keeps working with the last good catalog.
    let second = spawn_idle_as(&work.path().join("two/shadowai-e2e-fake-tool"), &[]);
    poll_until(
        Duration::from_secs(20),
        "detection after the refusal",
        || observed_pid(&collector, "e2etest.fake-tool", second.pid()),
    )
    .await;
    let refusals = agent
        .lines()
        .join("\n")
        .matches("invalid catalog from collector")
        .count();
    assert_eq!(
        refusals, 1,
        "a refused catalog is not fetched again at every heartbeat"
    );
}
