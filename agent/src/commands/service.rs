//! `shadowai-agent service`: the daemon as a Windows service (the MSI installs it with
//! `service --config "%ProgramData%\shadowai\agent.toml"`).
//!
//! The Service Control Manager starts the process and expects it to connect to the dispatcher
//! (`StartServiceCtrlDispatcher`) at once and to register a control handler within 30 s, or it
//! kills the process (error 1053). So the command line is read and the configuration validated
//! before the dispatcher starts; the service main then reports `Running`, runs the same daemon as
//! `run` (same sensors, spool and transport, same single-threaded runtime), and maps the SCM's
//! Stop and Shutdown controls to the daemon's shutdown, which flushes the batch in flight to the
//! spool within the same grace as SIGTERM on Linux. `StopPending` carries that grace as its wait
//! hint; `Stopped` carries exit code 1 when the daemon failed (the SCM's recovery actions, set by
//! the MSI, then restart it).
//!
//! Logs: a service has no console. They go to standard error as with `run` (discarded by the
//! SCM); what an operator needs is in `status` (`shadowai-agent status --json`) and its status
//! file in the state directory. Writing to the Windows Event Log is the next step.
//!
//! Built and type-checked here for `x86_64-pc-windows-gnu` (`cargo check --target
//! x86_64-pc-windows-gnu -p shadowai-agent`); never run on Windows by this project's tests.
//! On other systems the command refuses with a usage error: systemd and launchd run `run`.

use std::path::PathBuf;

use super::CommandError;

/// The name the MSI registers the service under (deploy/windows/shadowai-agent.wxs).
pub const SERVICE_NAME: &str = "shadowai-agent";

/// Arguments of `service`.
#[derive(Debug, clap::Args)]
pub struct ServiceArgs {
    /// Configuration file (default: %ProgramData%\shadowai\agent.toml).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[cfg(not(windows))]
pub fn run(_args: ServiceArgs) -> Result<(), CommandError> {
    Err(CommandError::Usage(
        "`service` runs the agent under the Windows Service Control Manager; on Linux and macOS \
         systemd and launchd run `shadowai-agent run`"
            .into(),
    ))
}

#[cfg(windows)]
pub fn run(args: ServiceArgs) -> Result<(), CommandError> {
    windows::run(args)
}

#[cfg(windows)]
mod windows {
    use std::ffi::OsString;
    use std::sync::OnceLock;
    use std::time::Duration;

    use anyhow::Context as _;
    use tracing::{error, info};
    use windows_service::service::{
        ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus,
        ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::{CommandError, SERVICE_NAME, ServiceArgs};
    use crate::commands::run::{SHUTDOWN_GRACE, daemon, load_config};
    use crate::config::Config;

    /// The validated configuration, handed from `run` (the process's command line) to the service
    /// main (which the dispatcher calls on its own thread with the SCM's start arguments).
    static CONFIG: OnceLock<Config> = OnceLock::new();

    define_windows_service!(ffi_service_main, service_main);

    pub(super) fn run(args: ServiceArgs) -> Result<(), CommandError> {
        crate::commands::init_logging();
        let (config, _) = load_config(args.config.as_ref())?;
        let _ = CONFIG.set(config);
        service_dispatcher::start(SERVICE_NAME, ffi_service_main)
            .context("cannot connect to the Service Control Manager (start the agent as a service, or use `run` from a console)")?;
        Ok(())
    }

    fn status(state: ServiceState, exit_code: u32, wait_hint: Duration) -> ServiceStatus {
        ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: if state == ServiceState::Running {
                ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
            } else {
                ServiceControlAccept::empty()
            },
            exit_code: ServiceExitCode::Win32(exit_code),
            checkpoint: 0,
            wait_hint,
            process_id: None,
        }
    }

    fn service_main(_arguments: Vec<OsString>) {
        let Some(config) = CONFIG.get().cloned() else {
            error!("service started without a configuration");
            return;
        };
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let handler = move |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown => {
                let _ = stop.send(true);
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let handle = match service_control_handler::register(SERVICE_NAME, handler) {
            Ok(handle) => handle,
            Err(e) => {
                error!(error = %e, "cannot register the service control handler");
                return;
            }
        };
        let _ = handle.set_service_status(status(ServiceState::Running, 0, Duration::ZERO));
        info!("running as a Windows service");
        let outcome = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CommandError::Runtime(e.into()))
            .and_then(|runtime| {
                runtime.block_on(daemon(config, false, async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                    let _ = handle.set_service_status(status(
                        ServiceState::StopPending,
                        0,
                        SHUTDOWN_GRACE + Duration::from_secs(1),
                    ));
                }))
            });
        let exit_code = match &outcome {
            Ok(()) => 0,
            Err(CommandError::Usage(message)) => {
                error!(%message, "the agent cannot run");
                1
            }
            Err(CommandError::Runtime(e)) => {
                error!(error = %format!("{e:#}"), "the agent stopped");
                1
            }
        };
        let _ = handle.set_service_status(status(ServiceState::Stopped, exit_code, Duration::ZERO));
    }
}
