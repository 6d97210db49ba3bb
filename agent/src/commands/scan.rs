//! `shadowai-agent scan`: a one-shot host scan that prints every AI process running now.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use shadowai_catalog::Catalog;
use shadowai_proto::v1::SensorState;

use super::CommandError;
use crate::detect::Detection;
use crate::process::ProcessSensor;
use crate::redact::escape_for_terminal;

/// Arguments of `scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Print one JSON object per detection and line (fields as in DESIGN.md §3).
    #[arg(long)]
    pub json: bool,
    /// Read file-based inventory under DIR as if it were `/` (mounted disk images, tests).
    /// There is no file inventory yet: today DIR is only checked to be a directory, and the
    /// processes scanned are always those of the running system.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
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
    let mut sensor = ProcessSensor::new(Arc::new(catalog));
    let mut detections = sensor.scan(now_ms());
    detections.sort_by_key(|detection| detection.process.as_ref().map(|process| process.pid));

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

    let (state, detail) = sensor.health();
    if state != SensorState::Ok {
        eprintln!("note: process sensor {}: {detail}", state_name(state));
    }
    Ok(())
}

fn write_json(out: &mut impl Write, detections: &[Detection]) -> io::Result<()> {
    for detection in detections {
        writeln!(out, "{}", detection.to_json_line())?;
    }
    Ok(())
}

fn write_table(out: &mut impl Write, detections: &[Detection]) -> io::Result<()> {
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
