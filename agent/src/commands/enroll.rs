//! `shadowai-agent enroll`: one-time enrollment with a collector.

use std::path::PathBuf;

use anyhow::Context as _;

use super::CommandError;
use super::run::{load_config, now_ms};
use crate::config::CollectorUrl;
use crate::identity::{self, Identity};

/// Arguments of `enroll`.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The collector, `https://HOST[:PORT]` (default port 7443).
    #[arg(long, value_name = "URL")]
    pub collector: String,
    /// The enrollment token from `shadowai-collector token create`.
    #[arg(long, value_name = "TOKEN", conflicts_with = "token_file")]
    pub token: Option<String>,
    /// A file holding the enrollment token (what an MDM places).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Where to keep the identity (default: the configuration's `state_dir`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Configuration file, for `state_dir`.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Enroll again even when an identity exists (a new agent id is issued).
    #[arg(long)]
    pub force: bool,
}

/// Runs `enroll`.
pub fn run(args: EnrollArgs) -> Result<(), CommandError> {
    super::init_logging();
    let (config, _) = load_config(args.config.as_ref())?;
    let state_dir = args.state_dir.unwrap_or(config.state_dir);
    let collector = CollectorUrl::parse(&args.collector).map_err(CommandError::Usage)?;
    let token = match (args.token, args.token_file) {
        (Some(token), _) => token,
        (None, Some(path)) => std::fs::read_to_string(&path).map_err(|e| {
            CommandError::Usage(format!("cannot read token file {}: {e}", path.display()))
        })?,
        (None, None) => return Err(CommandError::Usage("give --token or --token-file".into())),
    };
    let existing = Identity::load(&state_dir).context("cannot read the existing identity")?;
    if let (false, Some(existing)) = (args.force, existing) {
        println!(
            "already enrolled as {} with {} (use --force to enroll again)",
            existing.file.agent_id, existing.file.collector
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let identity = runtime
        .block_on(identity::enroll(&collector, &token, &state_dir, now_ms()))
        .map_err(|error| match error {
            identity::IdentityError::BadToken => CommandError::Usage(error.to_string()),
            other => CommandError::Runtime(anyhow::Error::new(other).context("enrollment failed")),
        })?;
    println!(
        "enrolled as {} in group {} with {}; identity in {}",
        identity.file.agent_id,
        identity.file.group,
        identity.file.collector,
        state_dir.display()
    );
    Ok(())
}
