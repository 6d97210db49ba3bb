//! `shadowai-collector quickstart`: the one-command evaluation.
//!
//! Everything lives in the data directory (default `./shadowai-data`): the SQLite database, the
//! private CA, `admin-credentials.txt` (0600) and `agent/` (the local agent's config, identity and
//! log). A second run reuses all of it: same CA, same admin password, same agent identity.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};
use tracing::warn;

use crate::config::{ListenOverrides, Settings};
use crate::identity::CertificateAuthority;
use crate::ingest::{AgentApi, CatalogRelease, IngestConfig};
use crate::server::{self, Bound, now_ms};
use crate::store::{Role, Store};
use crate::{auth, http, tokens};

/// Arguments of `quickstart`.
#[derive(Debug, Clone, clap::Args)]
pub struct QuickstartArgs {
    #[command(flatten)]
    pub listen: ListenOverrides,
    /// The agent program [default: shadowai-agent next to this program].
    #[arg(long, value_name = "PATH")]
    pub agent_bin: Option<PathBuf>,
    /// Start only the collector, no local agent.
    #[arg(long)]
    pub no_agent: bool,
    /// Process scan interval of the local agent, seconds.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub scan_interval: u64,
}

/// Creates a directory readable only by its owner (keys live there).
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    Ok(())
}

/// Opens the data directory (CA) and the database.
pub async fn open(settings: &Settings) -> anyhow::Result<(Store, Arc<CertificateAuthority>)> {
    create_private_dir(&settings.data_dir)?;
    let ca =
        CertificateAuthority::load_or_create(&settings.data_dir, time::OffsetDateTime::now_utc())?;
    let store = Store::connect(&settings.database_url)
        .await
        .context("cannot open the database")?;
    Ok((store, Arc::new(ca)))
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut terminate) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the quickstart until SIGTERM/Ctrl-C.
pub async fn run(mut settings: Settings, args: QuickstartArgs) -> anyhow::Result<()> {
    create_private_dir(&settings.data_dir)?;
    settings.data_dir = settings.data_dir.canonicalize().context("data directory")?;
    let (store, ca) = open(&settings).await?;
    let bound = Bound::bind(settings.grpc_listen, settings.http_listen).await?;
    let dashboard = format!("http://{}/", bound.http_addr);
    let collector_host = match bound.grpc_addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let collector_url = match SocketAddr::new(collector_host, bound.grpc_addr.port()) {
        SocketAddr::V4(v4) => format!("https://{v4}"),
        SocketAddr::V6(v6) => format!("https://[{}]:{}", v6.ip(), v6.port()),
    };
    let login = admin_login(&store, &settings.data_dir, &dashboard).await?;

    let api = AgentApi::new(
        store.clone(),
        ca.clone(),
        CatalogRelease::embedded().context("the built-in catalog is invalid")?,
        IngestConfig {
            heartbeat_interval_seconds: 10,
            ..Default::default()
        },
    )
    .with_admission(Arc::new(crate::ingest::limits::Admission::new(
        settings.ingest_limits,
    )));
    let tls = server::agent_tls_config(&ca, &settings.server_names)?;
    let sweep = tokio::spawn(crate::policy::sweep_every_minute(store.clone()));
    let router = http::router(
        http::HttpState::new(
            store.clone(),
            http::HttpConfig {
                secure_cookies: settings.secure_cookies,
            },
        )
        .with_enrollment_pin(ca.pin()),
    );
    let (stop_sender, stop_receiver) = tokio::sync::oneshot::channel::<()>();
    let mut serving = tokio::spawn(bound.serve(api, tls, router, async move {
        let _ = stop_receiver.await;
    }));
    // Evidence chain roots and retention, as `serve` runs them (ended with the runtime).
    tokio::spawn(crate::evidence::run_jobs(
        store.clone(),
        crate::evidence::EvidenceSchedule::from_settings(&settings),
        std::future::pending(),
    ));

    let out = std::io::stdout();
    let mut out = out.lock();
    writeln!(out, "shadowai quickstart")?;
    writeln!(out, "data directory: {}", settings.data_dir.display())?;
    writeln!(out, "dashboard: {dashboard}")?;
    match &login {
        Login::Created { password } => writeln!(out, "login: admin / {password}")?,
        Login::Existing => writeln!(out, "login: admin (password unchanged)")?,
        Login::Missing => writeln!(
            out,
            "login: admin-credentials.txt is missing; add a user with \
             `shadowai-collector user add NAME --role admin --data-dir {}`",
            settings.data_dir.display()
        )?,
    }
    writeln!(
        out,
        "credentials file: {}",
        settings.data_dir.join("admin-credentials.txt").display()
    )?;
    writeln!(out, "collector: {collector_url}")?;
    out.flush()?;
    drop(out);

    let mut agent = if args.no_agent {
        None
    } else {
        let agent = start_agent(&store, &ca, &settings, &args, &collector_url).await?;
        Some(agent)
    };
    if let Some(agent) = &agent {
        println!(
            "agent: pid {} (process scan every {} s; log {})",
            agent.id().unwrap_or_default(),
            args.scan_interval,
            settings.data_dir.join("agent/agent.log").display()
        );
        if network_capture_possible() {
            println!("network sensor: DNS, TLS SNI and QUIC SNI on every interface that is up");
        } else if cfg!(target_os = "linux") {
            println!(
                "network sensor: off (packet capture needs root or CAP_NET_RAW; run quickstart \
                 with sudo to see AI names in DNS and TLS)"
            );
        } else {
            println!("network sensor: off (live capture is Linux-only in this version)");
        }
        if !is_root() {
            println!(
                "process sensor: running without root sees only this user's executables; \
                 run as root (sudo) for the whole machine"
            );
        }
    }
    println!("ready");

    let outcome = tokio::select! {
        () = shutdown_signal() => Ok(()),
        result = &mut serving => match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(error) => Err(anyhow::anyhow!("server task failed: {error}")),
        },
        status = wait_agent(&mut agent) => {
            warn!(?status, "the local agent exited; the collector keeps running");
            shutdown_signal().await;
            Ok(())
        }
    };
    if let Some(mut agent) = agent {
        stop_agent(&mut agent).await;
    }
    let _ = stop_sender.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    sweep.abort();
    println!("stopped");
    outcome
}

async fn wait_agent(agent: &mut Option<Child>) -> Option<std::process::ExitStatus> {
    match agent {
        Some(child) => child.wait().await.ok(),
        None => std::future::pending().await,
    }
}

enum Login {
    Created { password: String },
    Existing,
    Missing,
}

/// Creates the admin user on first run and writes `admin-credentials.txt` (0600).
async fn admin_login(store: &Store, data_dir: &Path, dashboard: &str) -> anyhow::Result<Login> {
    let path = data_dir.join("admin-credentials.txt");
    if path.exists() {
        return Ok(Login::Existing);
    }
    if store.user_count().await? > 0 {
        return Ok(Login::Missing);
    }
    let password = auth::new_password();
    let hash = auth::hash_password(&password).context("cannot hash the admin password")?;
    store
        .create_user("admin", Role::Admin, &hash, now_ms())
        .await
        .context("cannot create the admin user")?;
    let text = format!(
        "# shadowai quickstart admin login; keep this file private\nurl={dashboard}\nusername=admin\npassword={password}\n"
    );
    crate::identity::write_private(&path, text.as_bytes())?;
    Ok(Login::Created { password })
}

fn agent_program(args: &QuickstartArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.agent_bin {
        return Ok(path.clone());
    }
    let me = std::env::current_exe().context("cannot locate this program")?;
    let name = if cfg!(windows) {
        "shadowai-agent.exe"
    } else {
        "shadowai-agent"
    };
    let beside = me.with_file_name(name);
    if !beside.exists() {
        bail!(
            "the agent program was not found at {}: build it (`cargo build --release -p shadowai-agent`) \
             or pass --agent-bin PATH, or --no-agent",
            beside.display()
        );
    }
    Ok(beside)
}

/// Writes the local agent's configuration, enrolls it on first run, and starts it.
async fn start_agent(
    store: &Store,
    ca: &CertificateAuthority,
    settings: &Settings,
    args: &QuickstartArgs,
    collector_url: &str,
) -> anyhow::Result<Child> {
    let program = agent_program(args)?;
    let agent_dir = settings.data_dir.join("agent");
    let state_dir = agent_dir.join("state");
    create_private_dir(&agent_dir)?;
    let config_path = agent_dir.join("agent.toml");
    let config = format!(
        "# written by `shadowai-collector quickstart` at every start\n\
         collector = \"{collector_url}\"\n\
         state_dir = \"{}\"\n\n[process]\ninterval_seconds = {}\n\n[network]\nenabled = {}\n\n\
         [transport]\nflush_interval_ms = 500\n",
        toml_escape(&state_dir.display().to_string()),
        args.scan_interval,
        network_capture_possible()
    );
    std::fs::write(&config_path, config).context("cannot write the agent configuration")?;

    if !state_dir.join("identity.json").exists() {
        let token = tokens::create(
            store,
            ca,
            "quickstart",
            Some(time::Duration::hours(1)),
            Some(1),
            "quickstart",
        )
        .await?;
        let output = Command::new(&program)
            .arg("enroll")
            .arg("--collector")
            .arg(collector_url)
            .arg("--token")
            .arg(&token)
            .arg("--state-dir")
            .arg(&state_dir)
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("cannot run {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "the local agent could not enroll: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(agent_dir.join("agent.log"))
        .context("cannot open the agent log")?;
    let child = Command::new(&program)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    Ok(child)
}

/// Asks the agent to stop (SIGTERM: it flushes), then kills it after a grace period.
async fn stop_agent(agent: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = agent
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        if tokio::time::timeout(Duration::from_secs(6), agent.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = agent.kill().await;
}

/// The quickstart agent captures packets only where it can: Linux, as root. Elsewhere it would
/// only report the blind spot, which the lines printed at start already say.
fn network_capture_possible() -> bool {
    cfg!(target_os = "linux") && is_root()
}

fn is_root() -> bool {
    #[cfg(unix)]
    {
        rustix::process::geteuid().is_root()
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn toml_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
