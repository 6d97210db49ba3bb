//! Policy: what the organisation sanctions and how alerts are raised.
//!
//! `rules` is the pure alert policy (observation + finding state + policy snapshot in, alert
//! actions out). `admin` holds the editing operations shared by the JSON API and the CLI (input
//! validation and catalog lookups); `cli` is the `shadowai-collector policy` command. The records
//! live in the store (`store::policy`), where every change is audited by one function.

pub mod admin;
pub mod cli;
pub mod rules;

pub use rules::{
    PolicySnapshot, Reason, Sanction, Settings, Severity, SeverityOverride, Suppression, TenantRule,
};

/// How often the sweep (silent sensors, expired suppressions) runs.
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `Store::sweep_silent` every `SWEEP_INTERVAL` until the task is dropped. A failed sweep is
/// logged and tried again at the next tick (no faster retry).
pub async fn sweep_every_minute(store: crate::store::Store) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.sweep_silent(crate::server::now_ms()).await {
            Ok(outcome) => tracing::debug!(
                silent_raised = outcome.silent_alerts_raised,
                silent_bumped = outcome.silent_alerts_bumped,
                unsuppressed = outcome.alerts_unsuppressed,
                "policy sweep"
            ),
            Err(error) => tracing::warn!(error = %error, "policy sweep failed"),
        }
    }
}
