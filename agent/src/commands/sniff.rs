//! `shadowai-agent sniff [--interface IF]... [--seconds N] [--json]`: live capture without a
//! collector; prints detections and blind spots as they happen.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use shadowai_catalog::Catalog;

use super::CommandError;
use crate::net::{self, CaptureError, NetConfig, NetSensor, Output};

/// Arguments of `sniff`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Captures DNS (both directions), outgoing TLS ClientHellos and outgoing QUIC Initial packets on \
every interface that is up (loopback and VPN tunnels included, and interfaces that appear later), \
or only on those named with --interface. A kernel filter keeps everything else out; promiscuous \
mode stays off. Needs CAP_NET_RAW: run as root, or grant it once with
  sudo setcap cap_net_raw,cap_net_admin+ep $(which shadowai-agent)

Output: one line per detection (catalog name seen in DNS, TLS SNI or QUIC SNI, with the process \
that owns the socket when it can be found) and per blind spot (DNS over HTTPS or TLS, Encrypted \
Client Hello). With --json each is one JSON object per line: detections carry the DESIGN.md §3 \
fields (ts, signal, name, product, vendor, category, risk, confidence, process, src, dst, rule, \
count, ...); blind spots are objects with \"kind\":\"blind_spot\", \"blind_spot\" (doh | dot | ech \
| capture_no_privilege) and the same ts, name, src, dst and rule fields, plus detail. The same name \
from the same process is reported once per 10 minutes, then once more with its count. On stop \
(Ctrl-C, SIGTERM or --seconds) pending counts are printed and a summary goes to stderr.

Exit codes: 0 ok, 1 runtime error (e.g. no capture privilege), 2 usage error.")]
pub struct SniffArgs {
    /// Capture only on this interface (repeat for several); default: all interfaces.
    #[arg(long = "interface", value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Stop after N seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "N")]
    pub seconds: Option<u64>,
    /// Print one JSON object per line instead of readable lines.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sniff`.
pub fn run(args: SniffArgs) -> Result<(), CommandError> {
    super::init_logging();
    if args.seconds == Some(0) {
        return Err(CommandError::Usage(
            "--seconds must be at least 1 (leave it out to run until Ctrl-C)".into(),
        ));
    }
    if !cfg!(target_os = "linux") {
        return Err(CommandError::Usage(
            "live capture is only implemented on Linux; `pcap` analyses capture files anywhere"
                .into(),
        ));
    }
    #[cfg(target_os = "linux")]
    let known: Vec<String> = pnet_datalink::interfaces()
        .into_iter()
        .map(|i| i.name)
        .collect();
    #[cfg(not(target_os = "linux"))]
    let known: Vec<String> = Vec::new();
    for name in &args.interfaces {
        if !known.contains(name) {
            return Err(CommandError::Usage(format!(
                "--interface {}: no such interface; this host has: {}",
                crate::redact::escape_for_terminal(name),
                known.join(", ")
            )));
        }
    }
    let catalog = Arc::new(Catalog::embedded().context("the built-in catalog is invalid")?);
    let config = NetConfig {
        interfaces: args.interfaces.clone(),
        ..NetConfig::default()
    };
    let json = args.json;
    let sink = move |output: Output| {
        let line = if json {
            output.to_json_line()
        } else {
            output.to_human_line()
        };
        let stdout = io::stdout();
        let mut out = stdout.lock();
        // A closed pipe (`sniff | head`) just stops the printing.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let sensor = match NetSensor::start(config, catalog, sink) {
        Ok(sensor) => sensor,
        Err(error @ (CaptureError::NoPrivilege | CaptureError::Unsupported)) => {
            if json {
                println!("{}", blind_line(&error));
            }
            return Err(CommandError::Runtime(anyhow::anyhow!(
                "capture_no_privilege: {error}"
            )));
        }
        Err(error) => return Err(CommandError::Runtime(error.into())),
    };
    // Say when capture is up, so that a script can start traffic after this line.
    let mut waited = Duration::ZERO;
    while sensor.stats().interfaces.is_empty() && waited < Duration::from_secs(3) {
        crate::net::capture::pause(Duration::from_millis(20));
        waited += Duration::from_millis(20);
    }
    let interfaces = sensor.stats().interfaces;
    if interfaces.is_empty() {
        eprintln!("sniff: no interface could be captured yet; still watching for new ones");
    } else {
        eprintln!(
            "sniff: capturing on {} (Ctrl-C to stop)",
            interfaces.join(", ")
        );
    }
    wait_for_stop(args.seconds)?;
    let stats = sensor.stop();
    eprintln!(
        "sniff: {} frames captured, {} dropped for overload, {} decoder events, {} detections, {} blind spots, {} malformed",
        stats.frames,
        stats.overflow,
        stats.detector.events,
        stats.detector.detections,
        stats.detector.blind_spots,
        stats.decoder.malformed
    );
    Ok(())
}

/// Blocks until Ctrl-C, SIGTERM or the time limit.
fn wait_for_stop(seconds: Option<u64>) -> Result<(), CommandError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        let limit = async {
            match seconds {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => std::future::pending().await,
            }
        };
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut terminate) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                    () = limit => {}
                }
                return;
            }
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = limit => {}
        }
    });
    Ok(())
}

fn blind_line(error: &CaptureError) -> String {
    serde_json::json!({
        "kind": "blind_spot",
        "blind_spot": "capture_no_privilege",
        "ts": crate::net::detector::rfc3339(net::now_ms()),
        "name": "",
        "rule": "agent/src/net/capture.rs#capture_no_privilege",
        "detail": error.to_string(),
    })
    .to_string()
}
