//! `shadowai-agent status`: enrollment, collector contact, spool and sensors, for people and MDM
//! scripts (`--json`).

use std::path::PathBuf;

use super::CommandError;
use super::run::{load_config, now_ms};
use crate::identity::Identity;

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Configuration file, for `state_dir`.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// State directory (default: the configuration's).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `status`. Exit code 0 when enrolled (whatever the daemon's state), 1 when not enrolled.
pub fn run(args: StatusArgs) -> Result<(), CommandError> {
    let (config, _) = load_config(args.config.as_ref())?;
    let state_dir = args.state_dir.unwrap_or(config.state_dir);
    let identity = Identity::load(&state_dir).map_err(|e| CommandError::Runtime(e.into()))?;
    let daemon = crate::status::read(&state_dir);
    if args.json {
        let value = serde_json::json!({
            "enrolled": identity.is_some(),
            "state_dir": state_dir,
            "identity": identity.as_ref().map(|i| &i.file),
            "daemon": daemon,
        });
        println!("{value}");
    } else {
        match &identity {
            None => println!("enrolled: no (state directory {})", state_dir.display()),
            Some(identity) => {
                println!(
                    "enrolled: yes, agent {} in group {}",
                    identity.file.agent_id, identity.file.group
                );
                println!("collector: {}", identity.file.collector);
            }
        }
        match &daemon {
            None => println!("daemon: no status written yet (is `shadowai-agent run` running?)"),
            Some(status) => {
                let age = |at: i64| format!("{} s ago", (now_ms() - at).max(0) / 1000);
                println!(
                    "daemon: {:?} (pid {}, updated {})",
                    status.state,
                    status.pid,
                    age(status.updated_at_ms)
                );
                println!(
                    "last contact: {}",
                    status
                        .last_contact_ms
                        .map_or_else(|| "never".to_owned(), age)
                );
                if let Some(error) = &status.last_error {
                    println!("last error: {error}");
                }
                println!(
                    "last acknowledged report: {}",
                    status
                        .last_ack_ms
                        .map_or_else(|| "none in this run".to_owned(), age)
                );
                println!(
                    "spool: {} waiting, oldest {} s, {} KiB on disk",
                    status.spool_depth,
                    status.spool_oldest_age_ms / 1000,
                    status.spool_bytes / 1024
                );
                for problem in &status.spool_problems {
                    println!("spool problem at start: {problem}");
                }
                if status.dropped.is_empty() {
                    println!("dropped: none waiting to be reported");
                }
                for dropped in &status.dropped {
                    println!(
                        "dropped (not yet reported): {} {} observations ({})",
                        dropped.count, dropped.kind, dropped.reason
                    );
                }
                match &status.budget {
                    None => println!("budget: not measured yet"),
                    Some(budget) => println!("budget: {}", budget.summary()),
                }
                println!("catalog: {}", status.catalog_version);
                for sensor in &status.sensors {
                    println!(
                        "sensor {}: {} {}",
                        sensor.sensor, sensor.state, sensor.detail
                    );
                }
                for spot in &status.blind_spots {
                    println!("blind spot: {spot}");
                }
            }
        }
    }
    if identity.is_none() {
        return Err(CommandError::Runtime(anyhow::anyhow!("not enrolled")));
    }
    Ok(())
}
