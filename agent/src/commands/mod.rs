//! One module per CLI subcommand. Each `run` returns `Result<(), CommandError>`; `main` maps it to
//! the documented exit code once.

pub mod enroll;
pub mod matching;
pub mod pcap;
pub mod run;
pub mod scan;
pub mod service;
pub mod sniff;
pub mod status;

use std::process::ExitCode;

/// The outcome of a subcommand that failed.
#[derive(Debug)]
pub enum CommandError {
    /// Bad usage or configuration: exit code 2, with a message saying what to fix.
    Usage(String),
    /// Anything else: exit code 1.
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for CommandError {
    fn from(error: anyhow::Error) -> Self {
        CommandError::Runtime(error)
    }
}

/// Maps a subcommand's outcome to the process exit code, printing the error once.
pub fn exit_code(outcome: Result<(), CommandError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(CommandError::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(CommandError::Runtime(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to standard error; the level comes from `SHADOWAI_LOG` (default `info`), e.g.
/// `SHADOWAI_LOG=debug`. Only command entry points call this.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHADOWAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
