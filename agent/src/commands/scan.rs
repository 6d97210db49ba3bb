//! `shadowai-agent scan`: a one-shot host scan that prints every AI process running now (with
//! what AI agents started), local model servers listening, and the file inventory: agent and
//! MCP configs, apps, IDE extensions (under `--root` when given). Inventory problems and model
//! files are summarised on standard error.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use shadowai_catalog::Catalog;
use shadowai_proto::v1::SensorState;

use super::CommandError;
use crate::detect::{Detection, Evidence};
use crate::host::{HostOptions, HostSensor, inventory};
use crate::redact::escape_for_terminal;

/// Arguments of `scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Print one JSON object per detection and line (fields as in DESIGN.md §3).
    #[arg(long)]
    pub json: bool,
    /// Read the file inventory (configs, MCP servers, apps, extensions, model files) under DIR
    /// as if it were `/` (mounted disk images, tests). Processes and listeners are always
    /// those of the running system.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Skip the file inventory (processes and listeners only).
    #[arg(long)]
    pub no_inventory: bool,
    /// Keep watching for SECONDS with the daemon's sensor loop (process events where
    /// available, polling, listeners, inventory on change), printing detections as they come.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub follow: Option<u64>,
    /// Process polling interval in seconds with `--follow`.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

/// Runs `scan`.
pub fn run(args: ScanArgs) -> Result<(), CommandError> {
    if let Some(root) = &args.root
        && !root.is_dir()
    {
        return Err(CommandError::Usage(format!(
            "--root {}: not a directory; give the directory to treat as `/`",
            root.display()
        )));
    }
    let catalog = Catalog::embedded().context("the built-in catalog is invalid")?;
    let catalog = Arc::new(catalog);
    if let Some(seconds) = args.follow {
        return follow(&args, catalog, Duration::from_secs(seconds));
    }
    let options = HostOptions {
        process_events: false,
        inventory: !args.no_inventory,
        inventory_watch: false,
        root: args.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        ..HostOptions::default()
    };
    let mut sensor = HostSensor::new(catalog.clone(), options);
    let now = now_ms();
    let mut detections = sensor.scan_processes(now);
    detections.sort_by_key(|detection| detection.process.as_ref().map(|process| process.pid));
    let mut inventory_note = None;
    if !args.no_inventory {
        let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        let found = inventory::scan(&catalog, &root, now);
        detections.extend(found.detections);
        inventory_note = Some((found.problems, found.models, found.files_read, found.homes));
    }

    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = if args.json {
        write_json(&mut out, &detections)
    } else {
        write_table(&mut out, &detections)
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => {}
        // `scan | head` closing the pipe early is not an error.
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context("cannot write to stdout")
                .into());
        }
    }

    let (state, detail) = sensor.process_health();
    if state != SensorState::Ok {
        eprintln!("note: process sensor {}: {detail}", state_name(state));
    }
    if let Some((problems, models, files_read, homes)) = inventory_note {
        eprintln!(
            "inventory: {homes} home(s), {files_read} config file(s) read, {} problem(s)",
            problems.len()
        );
        for problem in problems {
            eprintln!(
                "inventory problem: {}: {}",
                escape_for_terminal(&problem.path),
                problem.problem
            );
        }
        for store in models {
            eprintln!(
                "model files: {} {} file(s), {} bytes at {}",
                store.kind,
                store.files,
                store.bytes,
                escape_for_terminal(&store.path)
            );
        }
    }
    Ok(())
}

/// `scan --follow`: the daemon's sensor loop for a while, detections printed as they come.
fn follow(args: &ScanArgs, catalog: Arc<Catalog>, duration: Duration) -> Result<(), CommandError> {
    let options = HostOptions {
        process_interval: Duration::from_secs(args.interval),
        process_events: true,
        inventory: !args.no_inventory,
        inventory_watch: true,
        root: args.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        ..HostOptions::default()
    };
    let mut sensor = HostSensor::new(catalog, options);
    let events = if sensor.has_events() {
        "process events on"
    } else {
        "process events unavailable: polling only"
    };
    eprintln!("following for {} s ({events})", duration.as_secs());
    let (stop_sender, stop) = mpsc::channel::<()>();
    let (_catalog_sender, catalogs) = mpsc::channel::<Arc<Catalog>>();
    // A cancellable timer: it fires after `duration`, or at once when `cancel` is dropped.
    let (cancel, cancelled) = mpsc::channel::<()>();
    let timer = std::thread::spawn(move || {
        let _ = cancelled.recv_timeout(duration);
        let _ = stop_sender.send(());
    });
    let json = args.json;
    let mut failed: Option<io::Error> = None;
    sensor.run(&stop, &catalogs, &now_ms, &mut |detections, _| {
        if failed.is_some() {
            return;
        }
        let stdout = io::stdout();
        let mut out = stdout.lock();
        for detection in detections {
            let written = if json {
                writeln!(out, "{}", detection.to_json_line())
            } else {
                writeln!(
                    out,
                    "{} {} {} [{}] {}",
                    detection.signal.as_str(),
                    detection.product,
                    escape_for_terminal(&detection.name),
                    detection.risk.join(","),
                    detection.rule
                )
            };
            if let Err(error) = written.and_then(|()| out.flush()) {
                failed = Some(error);
                return;
            }
        }
    });
    drop(cancel);
    drop(stop);
    let _ = timer.join();
    match failed {
        None => Ok(()),
        Some(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Some(error) => Err(anyhow::Error::new(error)
            .context("cannot write to stdout")
            .into()),
    }
}

fn write_json(out: &mut impl Write, detections: &[Detection]) -> io::Result<()> {
    for detection in detections {
        writeln!(out, "{}", detection.to_json_line())?;
    }
    Ok(())
}

fn write_table(out: &mut impl Write, detections: &[Detection]) -> io::Result<()> {
    let (processes, others): (Vec<&Detection>, Vec<&Detection>) =
        detections.iter().partition(|d| d.process.is_some());
    write_process_table(out, &processes)?;
    if !others.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<9} {:<24} {:<28} {:<24} {:<40} WHERE",
            "SIGNAL", "PRODUCT", "NAME", "RISK", "RULE"
        )?;
        for detection in &others {
            let risk = if detection.risk.is_empty() {
                "-".to_owned()
            } else {
                detection.risk.join(",")
            };
            let place = match &detection.evidence {
                Evidence::Config { path, setting, .. } => format!("{path} {setting}"),
                Evidence::App { path, .. } => path.clone(),
                Evidence::Listener { address, port, .. } => format!("{address}:{port}"),
                _ => String::new(),
            };
            writeln!(
                out,
                "{:<9} {:<24} {:<28} {:<24} {:<40} {}",
                detection.signal.as_str(),
                detection.product,
                escape_for_terminal(&detection.name),
                risk,
                detection.rule,
                escape_for_terminal(&place),
            )?;
        }
        writeln!(out, "{} other finding(s)", others.len())?;
    }
    Ok(())
}

fn write_process_table(out: &mut impl Write, detections: &[&Detection]) -> io::Result<()> {
    if detections.is_empty() {
        return writeln!(out, "no AI processes found");
    }
    writeln!(
        out,
        "{:<8} {:<24} {:<20} {:<7} {:<24} {:<12} {:<56} EXE",
        "PID", "PRODUCT", "CATEGORY", "CONF", "RISK", "USER", "RULE"
    )?;
    for detection in detections {
        let Some(process) = &detection.process else {
            continue;
        };
        let risk = if detection.risk.is_empty() {
            "-".to_owned()
        } else {
            detection.risk.join(",")
        };
        let exe = if process.exe.is_empty() {
            "(unreadable)"
        } else {
            process.exe.as_str()
        };
        writeln!(
            out,
            "{:<8} {:<24} {:<20} {:<7} {:<24} {:<12} {:<56} {}",
            process.pid,
            detection.product,
            detection.category,
            detection.confidence,
            risk,
            escape_for_terminal(&process.user),
            detection.rule,
            escape_for_terminal(exe),
        )?;
    }
    let count = detections.len();
    writeln!(
        out,
        "{count} AI process{} found",
        if count == 1 { "" } else { "es" }
    )
}

fn state_name(state: SensorState) -> &'static str {
    match state {
        SensorState::Ok => "ok",
        SensorState::Degraded => "partial",
        SensorState::Blind => "blind",
        SensorState::Disabled => "disabled",
        SensorState::Unspecified => "unknown",
    }
}

/// The wall clock, read here in the shell and passed into the sensor.
fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}
