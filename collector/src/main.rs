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
use shadowai_collector::ingest::{AgentApi, CatalogRelease, IngestConfig};
use shadowai_collector::server::{self, Bound, now_ms};
use shadowai_collector::store::{Role, Store};
use shadowai_collector::{auth, catalogs, http, quickstart, tokens};

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
            let lifetime = parse_lifetime(&expires).map_err(Failure::Usage)?;
            if group.is_empty() || group.len() > 128 {
                return Err(Failure::Usage("--group must be 1 to 128 bytes".into()));
            }
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
    }
    Ok(())
}

/// Parses `30m`, `12h`, `7d` or `never`.
fn parse_lifetime(text: &str) -> Result<Option<time::Duration>, String> {
    if text == "never" {
        return Ok(None);
    }
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let number: i64 = number
        .parse()
        .map_err(|_| format!("--expires `{text}`: use e.g. 30m, 12h, 7d or never"))?;
    let lifetime = match unit {
        "m" => time::Duration::minutes(number),
        "h" => time::Duration::hours(number),
        "d" => time::Duration::days(number),
        _ => {
            return Err(format!(
                "--expires `{text}`: use e.g. 30m, 12h, 7d or never"
            ));
        }
    };
    if number <= 0 {
        return Err(format!("--expires `{text}` must be positive"));
    }
    Ok(Some(lifetime))
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let (store, ca) = open(settings).await?;
    let bound = Bound::bind(settings.grpc_listen, settings.http_listen).await?;
    let api = AgentApi::new(
        store.clone(),
        ca.clone(),
        CatalogRelease::embedded().context("the built-in catalog is invalid")?,
        IngestConfig {
            heartbeat_interval_seconds: settings.heartbeat_interval_seconds,
            ..Default::default()
        },
    );
    let tls = server::agent_tls_config(&ca, &settings.server_names)?;
    let router = http::router(http::HttpState::new(
        store,
        http::HttpConfig {
            secure_cookies: settings.secure_cookies,
        },
    ));
    eprintln!(
        "agents: https://{} (mTLS); dashboard: http://{}/",
        bound.grpc_addr, bound.http_addr
    );
    bound
        .serve(api, tls, router, quickstart::shutdown_signal())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("7d").unwrap(), Some(time::Duration::days(7)));
        assert_eq!(parse_lifetime("never").unwrap(), None);
        assert!(parse_lifetime("7").is_err());
        assert!(parse_lifetime("-1h").is_err());
        assert!(parse_lifetime("").is_err());
    }

    #[test]
    fn database_passwords_are_not_shown() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
