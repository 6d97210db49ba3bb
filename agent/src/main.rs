//! `shadowai-agent`: the endpoint agent's command line. See DESIGN.md §3 for the contract.
//!
//! Exit codes: 0 ok, 1 runtime error, 2 usage or configuration error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use shadowai_agent::commands;

#[derive(Parser)]
#[command(
    name = "shadowai-agent",
    version,
    about = "shadowai endpoint agent: finds AI tools and agents on this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent daemon: all sensors, spool and transport to the collector.
    Run(commands::run::RunArgs),
    /// One-shot host scan (processes); prints detections.
    Scan(commands::scan::ScanArgs),
    /// Offline analysis of pcap/pcapng files with the network detector; prints detections.
    Pcap(commands::pcap::PcapArgs),
    /// Live capture without a collector (needs CAP_NET_RAW); prints detections as they happen.
    Sniff(commands::sniff::SniffArgs),
    /// Ask the catalog what a domain or command line is, and why.
    Match(commands::matching::MatchArgs),
    /// One-time enrollment with a collector.
    Enroll(commands::enroll::EnrollArgs),
    /// Show enrollment, collector and spool state.
    Status(commands::status::StatusArgs),
    /// Run the daemon as a Windows service (the MSI installs it so; elsewhere use `run`).
    Service(commands::service::ServiceArgs),
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
    let outcome = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Scan(args) => commands::scan::run(args),
        Command::Pcap(args) => commands::pcap::run(args),
        Command::Sniff(args) => commands::sniff::run(args),
        Command::Match(args) => commands::matching::run(args),
        Command::Enroll(args) => commands::enroll::run(args),
        Command::Status(args) => commands::status::run(args),
        Command::Service(args) => commands::service::run(args),
    };
    commands::exit_code(outcome)
}
