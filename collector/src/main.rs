//! `shadowai-collector`: the collector's command line. See DESIGN.md §3 for the contract.
//!
//! Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use shadowai_collector::config::{ListenOverrides, Overrides, Settings};
use shadowai_collector::identity::CertificateAuthority;
use shadowai_collector::ingest::limits::Admission;
use shadowai_collector::ingest::{AgentApi, CatalogRelease, IngestConfig};
use shadowai_collector::server::{self, Bound, now_ms};
use shadowai_collector::store::{ExpectedRoot, Role, Store};
use shadowai_collector::{
    auth, catalogs, dashboard_tls, evidence, http, loadgen, metrics, policy, quickstart, tokens,
};

#[derive(Parser)]
#[command(
    name = "shadowai-collector",
    version,
    about = "shadowai collector: evidence database, alerts, dashboard and API for shadow-AI detection"
)]
struct Cli {
    #[command(flatten)]
    common: Overrides,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the production server (agents over mTLS gRPC, dashboard and API over HTTP).
    Serve {
        #[command(flatten)]
        listen: ListenOverrides,
    },
    /// One-command evaluation: SQLite, a private CA, an admin login, and an agent for this machine.
    Quickstart(quickstart::QuickstartArgs),
    /// Enrollment tokens for agents (what an MDM hands out).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Dashboard users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API keys for the JSON API.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Detection catalog releases served to agents.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
    /// Enrolled agents.
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// The alert policy: sanctioned products, tenant rules, severity overrides, suppressions.
    Policy {
        #[command(subcommand)]
        command: policy::cli::PolicyCommand,
    },
    /// Check the evidence hash chain; print its head. Exit 1 naming the first broken record.
    Verify {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// A root recorded earlier (`SEQ:HASH`, as verify prints it) that must still be there.
        #[arg(long, value_name = "SEQ:HASH")]
        expect_root: Option<String>,
    },
    /// Simulated agents over real gRPC and mTLS against a running collector (benchmarks, load tests).
    Loadgen(loadgen::LoadgenArgs),
    /// Online backup of the SQLite database into a new file (PostgreSQL: use pg_dump).
    Backup {
        /// The backup file to create (it must not exist).
        #[arg(long, value_name = "FILE")]
        to: std::path::PathBuf,
    },
    /// The leadership evidence report (HTML, PDF, CSV or JSON); docs/REPORTS.md explains it.
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Start of the period: a length before --until (30d, 12h, 2w) or a time (RFC 3339, YYYY-MM-DD).
    #[arg(long, default_value = "30d")]
    since: String,
    /// End of the period (RFC 3339 or YYYY-MM-DD) [default: now].
    #[arg(long)]
    until: Option<String>,
    /// html, pdf, csv or json.
    #[arg(long, default_value = "html")]
    format: String,
    /// Only hosts of this group.
    #[arg(long)]
    group: Option<String>,
    /// Replace users and hosts by stable keyed hashes (key: report-pseudonym.key in the data dir).
    #[arg(long)]
    pseudonymize: bool,
    /// Output file; for csv a directory (one file per table).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: std::path::PathBuf,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; prints it on standard output (and nothing else).
    Create {
        /// The group agents enrolled with this token join.
        #[arg(long)]
        group: String,
        /// Lifetime: e.g. 30m, 12h, 7d, or `never` [default: 7d].
        #[arg(long, default_value = "7d")]
        expires: String,
        /// How many agents may enroll with it [default: unlimited].
        #[arg(long)]
        max_uses: Option<u32>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a dashboard user; prints a generated password unless --password-stdin.
    Add {
        /// User name.
        name: String,
        /// admin, responder or viewer.
        #[arg(long)]
        role: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create an API key; prints it on standard output (and nothing else). It is shown only once.
    Create {
        /// admin, responder or viewer.
        #[arg(long)]
        role: String,
        /// A label for the key.
        #[arg(long, default_value = "api")]
        name: String,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate a catalog directory (VERSION and *.toml, as catalog/data/) and publish it to agents.
    Publish {
        /// The directory.
        dir: std::path::PathBuf,
    },
    /// Show the catalog agents are served now.
    Show,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// List enrolled agents.
    List,
    /// Revoke an agent: its certificate is refused from now on.
    Revoke {
        /// The agent id.
        agent_id: uuid::Uuid,
    },
}

/// A usage error (exit 2) or anything else (exit 1).
enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Runtime(error)
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SHADOWAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn settings(
    common: &Overrides,
    listen: &ListenOverrides,
    grpc: SocketAddr,
) -> Result<Settings, Failure> {
    Settings::load(common, listen, grpc).map_err(|e| Failure::Usage(e.to_string()))
}

fn role(text: &str) -> Result<Role, Failure> {
    text.parse::<Role>().map_err(|_| {
        Failure::Usage(format!(
            "unknown role `{text}`: use admin, responder or viewer"
        ))
    })
}

/// Opens the data directory (CA) and the database.
async fn open(settings: &Settings) -> anyhow::Result<(Store, Arc<CertificateAuthority>)> {
    quickstart::open(settings)
        .await
        .with_context(|| format!("database {}", redact_url(&settings.database_url)))
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let no_listen = ListenOverrides::default();
    let any_grpc = SocketAddr::from(([0, 0, 0, 0], 7443));
    match cli.command {
        Command::Serve { listen } => {
            let settings = settings(&cli.common, &listen, any_grpc)?;
            serve(&settings).await?;
        }
        Command::Quickstart(args) => {
            let local_grpc = SocketAddr::from(([127, 0, 0, 1], 7443));
            let settings = settings(&cli.common, &args.listen, local_grpc)?;
            quickstart::run(settings, args).await?;
        }
        Command::Token {
            command:
                TokenCommand::Create {
                    group,
                    expires,
                    max_uses,
                },
        } => {
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let lifetime = tokens::parse_lifetime(&expires)
                .map_err(|message| Failure::Usage(format!("--expires: {message}")))?;
            tokens::check(&group, max_uses)
                .map_err(|error| Failure::Usage(format!("--group/--max-uses: {error}")))?;
            let (store, ca) = open(&settings).await?;
            let token = tokens::create(&store, &ca, &group, lifetime, max_uses, "cli").await?;
            println!("{token}");
        }
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    role: role_name,
                    password_stdin,
                },
        } => {
            let role = role(&role_name)?;
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("cannot read the password")?;
                let line = line.trim_end_matches(['\r', '\n']).to_owned();
                if line.chars().count() < 12 {
                    return Err(Failure::Usage(
                        "the password must have at least 12 characters".into(),
                    ));
                }
                line
            } else {
                auth::new_password()
            };
            let (store, _) = open(&settings).await?;
            let hash = auth::hash_password(&password).context("cannot hash the password")?;
            store
                .create_user(&name, role, &hash, now_ms())
                .await
                .context("cannot add the user")?;
            if !password_stdin {
                println!("password: {password}");
            }
        }
        Command::Apikey {
            command:
                ApikeyCommand::Create {
                    role: role_name,
                    name,
                },
        } => {
            let role = role(&role_name)?;
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let (store, _) = open(&settings).await?;
            let (key, digest) = auth::new_api_key();
            store
                .create_api_key(&name, role, &digest, now_ms())
                .await
                .context("cannot store the key")?;
            println!("{key}");
        }
        Command::Catalog { command } => {
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let (store, _) = open(&settings).await?;
            match command {
                CatalogCommand::Publish { dir } => {
                    let release = catalogs::publish_dir(&store, &dir, "cli", now_ms()).await?;
                    println!(
                        "published catalog {} (sha256 {})",
                        release.version, release.sha256
                    );
                }
                CatalogCommand::Show => {
                    match store.latest_catalog().await.context("cannot read")? {
                        Some(release) => {
                            println!("{} (sha256 {}, published)", release.version, release.sha256)
                        }
                        None => {
                            let builtin = CatalogRelease::embedded().context("built-in catalog")?;
                            println!("{} (sha256 {}, built in)", builtin.version, builtin.sha256);
                        }
                    }
                }
            }
        }
        Command::Agent { command } => {
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let (store, _) = open(&settings).await?;
            match command {
                AgentCommand::List => {
                    for agent in store.list_agents().await.context("cannot list agents")? {
                        println!(
                            "{}\t{}\t{}\t{}",
                            agent.agent_id,
                            agent.group,
                            agent.hostname.escape_debug(),
                            if agent.revoked { "revoked" } else { "active" }
                        );
                    }
                }
                AgentCommand::Revoke { agent_id } => {
                    store
                        .revoke_agent(agent_id, "cli", now_ms())
                        .await
                        .context("cannot revoke")?;
                    println!("revoked {agent_id}");
                }
            }
        }
        Command::Policy { command } => {
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let (store, _) = open(&settings).await?;
            policy::cli::run(&store, command, now_ms())
                .await
                .map_err(|error| match error {
                    policy::admin::PolicyError::Invalid(message) => Failure::Usage(message),
                    policy::admin::PolicyError::Store(error) => {
                        Failure::Runtime(anyhow::Error::new(error).context("policy"))
                    }
                })?;
        }
        Command::Verify { json, expect_root } => {
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let expected = expect_root
                .map(|text| text.parse::<ExpectedRoot>())
                .transpose()
                .map_err(|e| Failure::Usage(format!("--expect-root: {e}")))?;
            verify(&settings, expected, json).await?;
        }
        Command::Loadgen(args) => {
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let ca_path = args
                .ca
                .clone()
                .unwrap_or_else(|| settings.data_dir.join("ca.pem"));
            let ca_der = loadgen::read_ca(&ca_path)?;
            let store = if args.token.is_none() || args.raw_rows.is_some() {
                Some(open(&settings).await?)
            } else {
                None
            };
            let token = match (&args.token, &store) {
                (Some(token), _) => token.clone(),
                (None, Some((store, ca))) => {
                    let lifetime = Some(time::Duration::hours(12));
                    tokens::create(store, ca, "loadgen", lifetime, None, "loadgen").await?
                }
                (None, None) => return Err(Failure::Usage("--token is required".into())),
            };
            let setup = loadgen::Setup {
                ca_der,
                token,
                store: store.map(|(store, _)| store),
            };
            let report = loadgen::run(&args, setup).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).context("cannot encode the report")?
                );
            } else {
                print!("{report}");
            }
        }
        Command::Backup { to } => {
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            let (store, _) = open(&settings).await?;
            match store.backup_sqlite(&to).await {
                Ok(()) => println!("backup written to {}", to.display()),
                Err(
                    error @ (shadowai_collector::store::BackupError::NotSqlite
                    | shadowai_collector::store::BackupError::Exists(_)
                    | shadowai_collector::store::BackupError::Path),
                ) => return Err(Failure::Usage(error.to_string())),
                Err(error) => {
                    return Err(Failure::Runtime(
                        anyhow::Error::new(error).context("backup failed"),
                    ));
                }
            }
        }
        Command::Report(args) => {
            let settings = settings(&cli.common, &no_listen, any_grpc)?;
            report(&settings, args).await?;
        }
    }
    Ok(())
}

/// `verify`: prints the report; a broken chain is an error (exit 1) after the report.
async fn verify(
    settings: &Settings,
    expected: Option<ExpectedRoot>,
    json: bool,
) -> anyhow::Result<()> {
    let store = Store::connect(&settings.database_url)
        .await
        .with_context(|| format!("database {}", redact_url(&settings.database_url)))?;
    let report = store
        .verify(expected)
        .await
        .context("cannot read the evidence chain")?;
    if json {
        println!("{}", evidence::render_json(&report));
    } else {
        print!("{}", evidence::render_text(&report));
    }
    match &report.broken {
        None => Ok(()),
        Some(broken) => anyhow::bail!(
            "evidence chain broken at {} {} (chain {}, seq {})",
            broken.table,
            broken.id.escape_debug(),
            broken.chain.escape_debug(),
            broken.seq
        ),
    }
}

/// `report`: builds the report and writes it.
async fn report(settings: &Settings, args: ReportArgs) -> Result<(), Failure> {
    use shadowai_collector::report::{self, Format, ReportRequest, pseudonym};
    let now = now_ms();
    let (since_ms, until_ms) =
        report::period(&args.since, args.until.as_deref(), now).map_err(Failure::Usage)?;
    let format: Format = args.format.parse().map_err(Failure::Usage)?;
    if let Some(group) = &args.group {
        report::check_group(group).map_err(|e| Failure::Usage(format!("--group: {e}")))?;
    }
    let namer = if args.pseudonymize {
        let key = pseudonym::load_or_create_key(&settings.data_dir)
            .context("cannot read or create the pseudonym key")?;
        pseudonym::Namer::keyed(key)
    } else {
        pseudonym::Namer::plain()
    };
    let (store, _) = open(settings).await?;
    let request = ReportRequest {
        since_ms,
        until_ms,
        group: args.group,
        namer,
    };
    let built = report::data::build(&store, &request, now)
        .await
        .context("cannot read the evidence")?;
    let rendered = tokio::task::spawn_blocking(move || report::render(&built, format))
        .await
        .context("the renderer stopped")?
        .context("cannot render the report")?;
    let files = report::write(&rendered, &args.output).context("cannot write the report")?;
    for file in files {
        println!("{file}");
    }
    Ok(())
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let (store, ca) = open(settings).await?;
    http::reports::set_data_dir(settings.data_dir.clone());
    let exporter = shadowai_collector::export::Exporter::spawn(store.clone(), &settings.export)
        .context("SIEM export")?;
    let (stop_schedules, schedules_stopped) = tokio::sync::watch::channel(false);
    let scheduler = shadowai_collector::report::schedule::spawn(
        store.clone(),
        settings.report_schedules.clone(),
        settings.data_dir.clone(),
        schedules_stopped,
    );
    let bound = Bound::bind(settings.grpc_listen, settings.http_listen).await?;
    let api = AgentApi::new(
        store.clone(),
        ca.clone(),
        CatalogRelease::embedded().context("the built-in catalog is invalid")?,
        IngestConfig {
            heartbeat_interval_seconds: settings.heartbeat_interval_seconds,
            ..Default::default()
        },
    )
    .with_admission(Arc::new(Admission::new(settings.ingest_limits)));
    let tls = server::agent_tls_config(&ca, &settings.server_names)?;
    tokio::spawn(policy::sweep_every_minute(store.clone()));
    let jobs = tokio::spawn(evidence::run_jobs(
        store.clone(),
        evidence::EvidenceSchedule::from_settings(settings),
        std::future::pending(),
    ));
    let dashboard_tls = settings
        .dashboard_tls
        .as_ref()
        .map(|tls| dashboard_tls::server_config(tls, &ca, &settings.server_names))
        .transpose()?;
    let metrics_token = settings
        .metrics_token_file
        .as_deref()
        .map(read_metrics_token)
        .transpose()?;
    let _fleet_metrics =
        metrics::spawn_fleet_refresh(store.clone(), settings.heartbeat_interval_seconds);
    let router = http::router(
        http::HttpState::new(
            store,
            http::HttpConfig {
                secure_cookies: settings.secure_cookies,
            },
        )
        .with_metrics_token(metrics_token)
        .with_enrollment_pin(ca.pin()),
    );
    eprintln!(
        "agents: https://{} (mTLS); dashboard: {}://{}/",
        bound.grpc_addr,
        if dashboard_tls.is_some() {
            "https"
        } else {
            "http"
        },
        bound.http_addr
    );
    let served = bound
        .with_dashboard_tls(dashboard_tls)
        .serve(api, tls, router, quickstart::shutdown_signal())
        .await;
    jobs.abort();
    let _ = stop_schedules.send(true);
    let _ = scheduler.await;
    exporter.shutdown().await;
    served
}

/// Reads the `/metrics` bearer token: one line of at least 32 visible ASCII characters.
fn read_metrics_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the metrics token file {}", path.display()))?;
    let token = text.trim();
    if token.len() < 32 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "{}: the metrics token must be one line of at least 32 visible ASCII characters \
             (e.g. `openssl rand -hex 32`)",
            path.display()
        );
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_not_shown() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
