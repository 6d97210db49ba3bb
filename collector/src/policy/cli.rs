//! `shadowai-collector policy ...`: the policy from the command line. Changes are audited as made by
//! `cli` from `local`; the same checks as the JSON API apply (`policy::admin`).

use clap::Subcommand;

/// `println!` that ignores a closed standard output (`policy list | head`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
use uuid::Uuid;

use super::admin::{self, PolicyError, SuppressionRequest};
use super::rules::SETTING_SPECS;
use crate::store::{PolicyActor, PolicyRuleKind, Store};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the whole policy (sanctions, tenant rules, overrides, suppressions, settings).
    List {
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sanction a product, for every group or for one.
    Sanction {
        /// Catalog product id, e.g. github.copilot.
        product: String,
        /// Only for this group [default: every group].
        #[arg(long, default_value = "")]
        group: String,
        /// Category, needed only for a product the catalog does not know.
        #[arg(long)]
        category: Option<String>,
        /// Why (shown with the policy and in the audit).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Withdraw a sanction.
    Unsanction {
        product: String,
        #[arg(long, default_value = "")]
        group: String,
    },
    /// Tenant rules: "this tenant of this product is ours".
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Severity overrides.
    Override {
        #[command(subcommand)]
        command: OverrideCommand,
    },
    /// Suppressions (with an owner and an expiry).
    Suppress {
        #[command(subcommand)]
        command: SuppressCommand,
    },
    /// Set a numeric setting (silent_after_ms, consumer_use_threshold).
    Set { name: String, value: i64 },
    /// The audit trail of policy changes, newest first.
    Changes {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Declare a tenant ours, e.g. `tenant add microsoft.azure-openai contoso`.
    Add {
        product: String,
        tenant: String,
        #[arg(long, default_value = "")]
        group: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Remove a tenant rule by id (see `policy list`).
    Remove { id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Force the severity of matching alerts.
    Add {
        /// info, low, medium, high or critical.
        #[arg(long)]
        severity: String,
        /// Alert reason id [default: any].
        #[arg(long, default_value = "")]
        reason: String,
        /// Product id [default: any].
        #[arg(long, default_value = "")]
        product: String,
        #[arg(long, default_value = "")]
        group: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Remove an override by id.
    Remove { id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum SuppressCommand {
    /// Suppress matching alerts until the expiry: they are still recorded, not in the open queue.
    Add {
        /// Who answers for the suppression.
        #[arg(long)]
        owner: String,
        /// How long: e.g. 30m, 12h, 7d (at most 366d).
        #[arg(long)]
        expires: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, default_value = "")]
        product: String,
        #[arg(long, default_value = "")]
        group: String,
        /// Agent id of the host.
        #[arg(long, default_value = "")]
        host: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Lift a suppression before its expiry.
    Lift { id: Uuid },
}

/// Parses `30m`, `12h` or `7d` into milliseconds.
pub fn duration_ms(text: &str) -> Result<i64, PolicyError> {
    let bad = || PolicyError::Invalid(format!("--expires `{text}`: use e.g. 30m, 12h or 7d"));
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    if number <= 0 {
        return Err(bad());
    }
    number.checked_mul(unit_ms).ok_or_else(bad)
}

fn or_any(text: &str) -> &str {
    if text.is_empty() { "*" } else { text }
}

/// Runs one `policy` command; prints what it did on standard output.
pub async fn run(store: &Store, command: PolicyCommand, now_ms: i64) -> Result<(), PolicyError> {
    let actor = PolicyActor {
        who: "cli".to_owned(),
        from: "local".to_owned(),
    };
    match command {
        PolicyCommand::List { json } => {
            let policy = store.read_policy(now_ms).await?;
            let suppressions = store.list_suppressions().await?;
            if json {
                let document = serde_json::json!({
                    "sanctions": policy.sanctions,
                    "tenants": policy.tenants,
                    "overrides": policy.overrides,
                    "suppressions": suppressions,
                    "settings": policy.settings,
                });
                out!("{document:#}");
                return Ok(());
            }
            out!("sanctions:");
            for s in &policy.sanctions {
                out!(
                    "  {}\t{}\tgroup {}\t{}",
                    s.product,
                    s.category,
                    or_any(&s.group),
                    s.note.escape_debug()
                );
            }
            out!("tenants:");
            for t in &policy.tenants {
                out!(
                    "  {}\t{}\t{}\tgroup {}",
                    t.id,
                    t.product,
                    t.tenant.escape_debug(),
                    or_any(&t.group)
                );
            }
            out!("overrides:");
            for o in &policy.overrides {
                out!(
                    "  {}\treason {}\tproduct {}\tgroup {}\t-> {}",
                    o.id,
                    or_any(&o.reason),
                    or_any(&o.product),
                    or_any(&o.group),
                    o.severity
                );
            }
            out!("suppressions:");
            for s in &suppressions {
                let state = match s.lifted_at_ms {
                    Some(_) => "lifted",
                    None if s.is_active(now_ms) => "active",
                    None => "expired",
                };
                out!(
                    "  {}\t{state}\treason {}\tproduct {}\tgroup {}\thost {}\towner {}\texpires {}",
                    s.id,
                    or_any(&s.reason),
                    or_any(&s.product),
                    or_any(&s.group),
                    or_any(&s.agent_id),
                    s.owner.escape_debug(),
                    s.expires_at_ms
                );
            }
            out!("settings:");
            for spec in SETTING_SPECS {
                let value = match spec.name {
                    "silent_after_ms" => policy.settings.silent_after_ms,
                    _ => policy.settings.consumer_use_threshold,
                };
                out!("  {}\t{value}\t({})", spec.name, spec.help);
            }
        }
        PolicyCommand::Sanction {
            product,
            group,
            category,
            note,
        } => {
            let s = admin::sanction(
                store,
                &product,
                &group,
                category.as_deref(),
                &note,
                &actor,
                now_ms,
            )
            .await?;
            out!(
                "sanctioned {} ({}) for group {}",
                s.product,
                s.category,
                or_any(&s.group)
            );
        }
        PolicyCommand::Unsanction { product, group } => {
            let s = admin::unsanction(store, &product, &group, &actor, now_ms).await?;
            out!(
                "withdrew the sanction of {} for group {}",
                s.product,
                or_any(&s.group)
            );
        }
        PolicyCommand::Tenant { command } => match command {
            TenantCommand::Add {
                product,
                tenant,
                group,
                note,
            } => {
                let t = admin::add_tenant(store, &product, &tenant, &group, &note, &actor, now_ms)
                    .await?;
                out!(
                    "{}\ttenant {} of {} is ours",
                    t.id,
                    t.tenant.escape_debug(),
                    t.product
                );
            }
            TenantCommand::Remove { id } => {
                store
                    .remove_policy_rule(PolicyRuleKind::Tenant, id, &actor, now_ms)
                    .await?;
                out!("removed tenant rule {id}");
            }
        },
        PolicyCommand::Override { command } => match command {
            OverrideCommand::Add {
                severity,
                reason,
                product,
                group,
                note,
            } => {
                let o = admin::add_override(
                    store, &reason, &product, &group, &severity, &note, &actor, now_ms,
                )
                .await?;
                out!("{}\toverride -> {}", o.id, o.severity);
            }
            OverrideCommand::Remove { id } => {
                store
                    .remove_policy_rule(PolicyRuleKind::Override, id, &actor, now_ms)
                    .await?;
                out!("removed override {id}");
            }
        },
        PolicyCommand::Suppress { command } => match command {
            SuppressCommand::Add {
                owner,
                expires,
                reason,
                product,
                group,
                host,
                note,
            } => {
                let request = SuppressionRequest {
                    reason,
                    product,
                    group,
                    agent_id: host,
                    owner,
                    note,
                    expires_at_ms: now_ms.saturating_add(duration_ms(&expires)?),
                };
                let s = admin::suppress(store, &request, &actor, now_ms).await?;
                out!("{}\tsuppression until {}", s.id, s.expires_at_ms);
            }
            SuppressCommand::Lift { id } => {
                store.lift_suppression(id, &actor, now_ms).await?;
                out!("lifted suppression {id}");
            }
        },
        PolicyCommand::Set { name, value } => {
            admin::set_setting(store, &name, value, &actor, now_ms).await?;
            out!("{name} = {value}");
        }
        PolicyCommand::Changes { limit } => {
            for change in store.list_policy_changes(limit, None).await? {
                out!(
                    "{}\t{}\t{}\t{}\tbefore {}\tafter {}",
                    change.at_ms,
                    change.actor.escape_debug(),
                    change.source.escape_debug(),
                    change.kind,
                    change
                        .before
                        .map_or("-".to_owned(), |v| v.to_string())
                        .escape_debug(),
                    change
                        .after
                        .map_or("-".to_owned(), |v| v.to_string())
                        .escape_debug()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("30m").unwrap(), 1_800_000);
        assert_eq!(duration_ms("7d").unwrap(), 7 * 86_400_000);
        for bad in ["", "7", "-1h", "0d", "1w", "99999999999999999d"] {
            assert!(duration_ms(bad).is_err(), "{bad:?}");
        }
    }
}
