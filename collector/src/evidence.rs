//! The evidence chain's periodic jobs (roots, adoption of unlinked rows, retention) run by `serve`,
//! and the `verify` command's output. The chain itself is `store::chain`.

use std::future::Future;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::server::now_ms;
use crate::store::{RetentionPolicy, Store, VerifyReport};

/// Most chain heads one root pins; the others go into the next root.
pub(crate) const MAX_ROOT_ENTRIES: u32 = 50_000;
/// Unlinked observations adopted per pass.
const ADOPT_BATCH: u32 = 10_000;
/// Chains handled per retention pass, and links removed per chain per pass.
const EXPIRY_CHAINS: u32 = 100;
const EXPIRY_BATCH: u32 = 1_000;
/// Retention passes per run: bounds one run's work; the next run continues.
const EXPIRY_PASSES: u32 = 1_000;

/// When the jobs run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceSchedule {
    /// How often a root is committed over the chains that moved.
    pub root_interval: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Observations older than this many days expire.
    pub retention_days: u32,
}

impl EvidenceSchedule {
    /// The schedule the configuration asks for.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        EvidenceSchedule {
            root_interval: Duration::from_secs(settings.chain_root_interval_seconds.into()),
            retention_interval: Duration::from_secs(settings.retention_interval_seconds.into()),
            retention_days: settings.observation_retention_days,
        }
    }

    /// The retention policy as recorded in expiry records.
    pub fn policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            max_age_ms: i64::from(self.retention_days) * 86_400_000,
            label: format!("observation_retention_days={}", self.retention_days),
        }
    }
}

/// Runs the jobs until `shutdown` completes. Failures are logged and retried at the next tick
/// (never in a loop); a transaction cut short by shutdown rolls back.
pub async fn run_jobs(
    store: Store,
    schedule: EvidenceSchedule,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut roots = tokio::time::interval(schedule.root_interval);
    roots.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retention = tokio::time::interval(schedule.retention_interval);
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let policy = schedule.policy();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = roots.tick() => commit_root(&store).await,
            _ = retention.tick() => expire(&store, &policy).await,
        }
    }
}

/// Adopts observations stored before the chain existed, then commits a root.
pub async fn commit_root(store: &Store) {
    match store
        .link_unlinked_observations(now_ms(), ADOPT_BATCH)
        .await
    {
        Ok(0) => {}
        Ok(linked) => info!(
            linked,
            "linked observations stored before the evidence chain"
        ),
        Err(error) => warn!(error = %error, "cannot link unlinked observations"),
    }
    match store.commit_root(now_ms(), MAX_ROOT_ENTRIES).await {
        Ok(Some(root)) => debug!(
            seq = root.seq,
            entries = root.entries,
            hash = %hex::encode(root.hash),
            "evidence chain root committed"
        ),
        Ok(None) => {}
        Err(error) => warn!(error = %error, "cannot commit an evidence chain root"),
    }
}

/// Expires observations past the retention period, in bounded passes.
pub async fn expire(store: &Store, policy: &RetentionPolicy) {
    let mut total = crate::store::ExpiryOutcome::default();
    for _ in 0..EXPIRY_PASSES {
        match store
            .expire_observations(policy, now_ms(), EXPIRY_CHAINS, EXPIRY_BATCH)
            .await
        {
            Ok(outcome) if outcome.chains == 0 => break,
            Ok(outcome) => {
                total.chains += outcome.chains;
                total.observations += outcome.observations;
                total.links += outcome.links;
            }
            Err(error) => {
                warn!(error = %error, "retention pass failed");
                break;
            }
        }
    }
    if total.observations > 0 {
        info!(
            observations = total.observations,
            links = total.links,
            policy = %policy.label,
            "expired observations past retention"
        );
    }
}

/// The human form of a verify report.
pub fn render_text(report: &VerifyReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let status = if report.is_intact() {
        "intact"
    } else {
        "BROKEN"
    };
    let _ = writeln!(out, "evidence chain: {status}");
    match &report.root {
        Some(root) => {
            let _ = writeln!(
                out,
                "root: {}:{} (committed {})",
                root.seq,
                root.hash,
                rfc3339(root.committed_at_ms)
            );
        }
        None if report.is_intact() => {
            let _ = writeln!(
                out,
                "root: none committed yet (serve commits one periodically)"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "root: not verified (the walk stops at the first break)"
            );
        }
    }
    let _ = writeln!(
        out,
        "chains: {}, roots: {}, expired links: {}",
        report.chains, report.roots, report.expired
    );
    let records = if report.records.is_empty() {
        "none".to_owned()
    } else {
        report
            .records
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "records: {records}");
    if report.pending_adoption > 0 {
        let _ = writeln!(
            out,
            "observations stored before the chain, not linked yet: {} (serve links them)",
            report.pending_adoption
        );
    }
    if let Some(broken) = &report.broken {
        let _ = writeln!(
            out,
            "first broken record: table {}, id {}, chain {}, seq {}",
            broken.table.escape_debug(),
            broken.id.escape_debug(),
            broken.chain.escape_debug(),
            broken.seq
        );
        let _ = writeln!(out, "problem: {}", broken.problem.escape_debug());
    }
    out
}

/// The JSON form of a verify report: the report plus `intact`.
pub fn render_json(report: &VerifyReport) -> String {
    let mut value = serde_json::to_value(report).unwrap_or(serde_json::Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("intact".into(), report.is_intact().into());
    }
    value.to_string()
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BrokenRecord, RootInfo};

    #[test]
    fn reports_name_the_root_and_the_broken_record() {
        let mut report = VerifyReport {
            root: Some(RootInfo {
                seq: 3,
                hash: "ab".repeat(32),
                committed_at_ms: 0,
            }),
            roots: 3,
            chains: 2,
            records: [("observation".to_owned(), 5)].into_iter().collect(),
            expired: 1,
            pending_adoption: 0,
            broken: None,
        };
        let text = render_text(&report);
        assert!(text.starts_with("evidence chain: intact\n"), "{text}");
        assert!(
            text.contains(&format!("root: 3:{}", "ab".repeat(32))),
            "{text}"
        );
        assert!(text.contains("records: observation 5"), "{text}");
        report.broken = Some(BrokenRecord {
            table: "observations".into(),
            id: "x\u{1b}[31m".into(),
            chain: "agent:a".into(),
            seq: 4,
            problem: "edited".into(),
        });
        let text = render_text(&report);
        assert!(
            text.contains("table observations, id x\\u{1b}[31m, chain agent:a, seq 4"),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&render_json(&report)).unwrap();
        assert_eq!(json["intact"], false);
        assert_eq!(json["broken"]["seq"], 4);
        assert_eq!(json["records"]["observation"], 5);
    }
}
