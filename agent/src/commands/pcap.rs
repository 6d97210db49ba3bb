//! `shadowai-agent pcap FILE... [--json]`: offline analysis of capture files with the same
//! decoder and detector as the live sensor. Time is the packets' timestamps; processes are not
//! attributed (the detection says "process unknown: offline capture").

use std::fs::File;
use std::io::{self, BufReader, IsTerminal as _, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};
use shadowai_catalog::Catalog;
use shadowai_wire::{Decoder, Event, Limits, LinkType};

use super::CommandError;
use crate::net::detector::Offline;
use crate::net::{Detector, DetectorConfig, Output};

/// Arguments of `pcap`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Output: one line per detection (DNS query or answer, TLS or QUIC server name that the catalog \
knows) and per blind spot (DNS over HTTPS or TLS, Encrypted Client Hello). With --json each is one \
JSON object per line: detections carry the DESIGN.md §3 fields (ts, signal, name, product, vendor, \
category, risk, confidence, src, dst, rule, count, ...); blind spots are objects with \
\"kind\":\"blind_spot\", \"blind_spot\" (doh | dot | ech) and the same ts, name, src, dst and rule \
fields, plus detail. The same name from the same source is reported once per 10-minute window of \
capture time, then once more with its count when the window closes. A summary goes to stderr.

Exit codes: 0 ok, 1 runtime error (unreadable file), 2 usage error (no such file, not a capture).")]
pub struct PcapArgs {
    /// Capture files: pcap or pcapng (recognised by their magic number), read in order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print one JSON object per line instead of readable lines.
    #[arg(long)]
    pub json: bool,
}

/// What a run of the pipeline saw.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Packets read from the files.
    pub packets: u64,
    /// Frames decoded down to TCP or UDP.
    pub decoded: u64,
    /// Frames refused as malformed by the decoder.
    pub malformed: u64,
    /// Packets of a link type the decoder does not know.
    pub unknown_link: u64,
    /// Detections printed.
    pub detections: u64,
    /// Blind spots printed.
    pub blind_spots: u64,
}

/// Runs `pcap`.
pub fn run(args: PcapArgs) -> Result<(), CommandError> {
    for file in &args.files {
        if !file.is_file() {
            return Err(CommandError::Usage(format!(
                "{}: no such file; give pcap or pcapng capture files",
                file.display()
            )));
        }
    }
    let catalog = Arc::new(Catalog::embedded().context("the built-in catalog is invalid")?);
    let started = std::time::Instant::now();
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut pipeline = Pipeline::new(catalog);
    let json = args.json;
    let mut write_error = None;
    let mut print = |output: &Output| {
        if write_error.is_some() {
            return;
        }
        let line = if json {
            output.to_json_line()
        } else {
            output.to_human_line()
        };
        if let Err(error) = writeln!(out, "{line}") {
            write_error = Some(error);
        }
    };
    for file in &args.files {
        pipeline.read_file(file, &mut print)?;
    }
    pipeline.finish(&mut print);
    let flushed = match write_error {
        Some(error) => Err(error),
        None => out.flush(),
    };
    match flushed {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Err(error) => {
            return Err(anyhow::Error::new(error)
                .context("cannot write to stdout")
                .into());
        }
    }
    let s = &pipeline.summary;
    eprintln!(
        "pcap: {} packets, {} frames decoded, {} detections, {} blind spots, {} malformed, {} of unknown link type ({:.2} s)",
        s.packets,
        s.decoded,
        s.detections,
        s.blind_spots,
        s.malformed,
        s.unknown_link,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Decoder + detector over capture files, in packet time.
pub struct Pipeline {
    decoder: Decoder,
    detector: Detector,
    events: Vec<Event>,
    last_tick_ms: i64,
    /// Latest packet time seen.
    latest_ms: i64,
    /// Counters so far.
    pub summary: Summary,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("summary", &self.summary)
            .finish_non_exhaustive()
    }
}

/// Files larger than this get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 64 << 20;

impl Pipeline {
    /// A pipeline with default limits.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            decoder: Decoder::new(Limits::default()),
            detector: Detector::new(catalog, DetectorConfig::default()),
            events: Vec::new(),
            last_tick_ms: i64::MIN,
            latest_ms: 0,
            summary: Summary::default(),
        }
    }

    /// One captured frame.
    pub fn frame(
        &mut self,
        link: Option<LinkType>,
        ts_ms: i64,
        data: &[u8],
        sink: &mut dyn FnMut(&Output),
    ) {
        self.summary.packets += 1;
        self.latest_ms = self.latest_ms.max(ts_ms);
        let Some(link) = link else {
            self.summary.unknown_link += 1;
            return;
        };
        self.decoder.decode(link, ts_ms, data, &mut self.events);
        if !self.events.is_empty() {
            for event in self.events.drain(..) {
                self.detector.handle_event(&event, &mut Offline);
            }
            self.drain(sink);
        }
        // Windows and idle flows close on packet time, checked once per second of it.
        if ts_ms.saturating_sub(self.last_tick_ms) >= 1000 {
            self.last_tick_ms = ts_ms;
            // Hellos whose last segment never came are reported when their SNI was read.
            self.decoder.expire_into(ts_ms, &mut self.events);
            for event in self.events.drain(..) {
                self.detector.handle_event(&event, &mut Offline);
            }
            self.detector.handle_timeout(ts_ms);
            self.drain(sink);
        }
    }

    fn drain(&mut self, sink: &mut dyn FnMut(&Output)) {
        while let Some(output) = self.detector.poll_output() {
            match output {
                Output::Detection(_) => self.summary.detections += 1,
                Output::BlindSpot(_) => self.summary.blind_spots += 1,
            }
            sink(&output);
        }
    }

    /// Closes every window (pending summaries go to `sink`) and fills in the decoder counters.
    pub fn finish(&mut self, sink: &mut dyn FnMut(&Output)) {
        // End of capture: every flow goes idle, as it would have after the last packet.
        let end_ms = self
            .latest_ms
            .saturating_add(Limits::default().idle_timeout_ms)
            .saturating_add(1);
        self.decoder.expire_into(end_ms, &mut self.events);
        for event in self.events.drain(..) {
            self.detector.handle_event(&event, &mut Offline);
        }
        self.detector.flush();
        self.drain(sink);
        let stats = self.decoder.stats();
        self.summary.malformed = stats.malformed;
        self.summary.decoded = stats
            .frames
            .saturating_sub(stats.malformed)
            .saturating_sub(stats.unsupported)
            .saturating_sub(stats.ip_fragments);
    }

    /// Reads one pcap or pcapng file through the pipeline. A file that ends in the middle of a
    /// packet (a capture cut short) is read up to there with a warning.
    pub fn read_file(
        &mut self,
        path: &Path,
        sink: &mut dyn FnMut(&Output),
    ) -> Result<(), CommandError> {
        let shown = path.display();
        let file = File::open(path).with_context(|| format!("cannot open {shown}"))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 4];
        reader.read_exact(&mut magic).map_err(|_| {
            CommandError::Usage(format!("{shown}: too short to be a pcap or pcapng file"))
        })?;
        let progress = (size >= PROGRESS_MIN_BYTES && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(size);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        let chained = io::Cursor::new(magic).chain(reader);
        let outcome = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d] => self.read_pcap(chained, progress.as_ref(), sink),
            [0x0a, 0x0d, 0x0d, 0x0a] => self.read_pcapng(chained, progress.as_ref(), sink),
            _ => {
                return Err(CommandError::Usage(format!(
                    "{shown}: not a pcap or pcapng file (unknown magic number)"
                )));
            }
        };
        if let Some(bar) = progress {
            bar.finish_and_clear();
        }
        if let Err(error) = outcome {
            eprintln!("warning: {shown}: stopped reading: {error}");
        }
        Ok(())
    }

    fn read_pcap(
        &mut self,
        reader: impl Read,
        progress: Option<&indicatif::ProgressBar>,
        sink: &mut dyn FnMut(&Output),
    ) -> Result<(), pcap_file::PcapError> {
        let mut pcap = PcapReader::new(reader)?;
        let link = LinkType::from_pcap(u32::from(pcap.header().datalink));
        let mut bytes = 24u64;
        while let Some(packet) = pcap.next_packet() {
            let packet = packet?;
            let ts_ms = i64::try_from(packet.timestamp.as_millis()).unwrap_or(i64::MAX);
            bytes += 16 + packet.data.len() as u64;
            self.frame(link, ts_ms, &packet.data, sink);
            if let Some(bar) = progress
                && self.summary.packets.is_multiple_of(65_536)
            {
                bar.set_position(bytes);
            }
        }
        Ok(())
    }

    fn read_pcapng(
        &mut self,
        reader: impl Read,
        progress: Option<&indicatif::ProgressBar>,
        sink: &mut dyn FnMut(&Output),
    ) -> Result<(), pcap_file::PcapError> {
        let mut pcapng = PcapNgReader::new(reader)?;
        // Per interface of the current section: link type and timestamp units per second.
        let mut interfaces: Vec<(Option<LinkType>, u128)> = Vec::new();
        let mut bytes = 0u64;
        let mut last_ts_ms = 0i64;
        while let Some(block) = pcapng.next_block() {
            match block? {
                Block::SectionHeader(_) => interfaces.clear(),
                Block::InterfaceDescription(idb) => {
                    let resolution = idb
                        .options
                        .iter()
                        .find_map(|option| match option {
                            pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                            _ => None,
                        })
                        .unwrap_or(6);
                    let units_per_second = if resolution & 0x80 != 0 {
                        1u128.checked_shl(u32::from(resolution & 0x7f)).unwrap_or(0)
                    } else {
                        10u128.checked_pow(u32::from(resolution)).unwrap_or(0)
                    };
                    if interfaces.len() < 65_536 {
                        interfaces.push((
                            LinkType::from_pcap(u32::from(idb.linktype)),
                            units_per_second,
                        ));
                    }
                }
                Block::EnhancedPacket(epb) => {
                    bytes += 32 + epb.data.len() as u64;
                    let (link, units) = interfaces
                        .get(epb.interface_id as usize)
                        .copied()
                        .unwrap_or((None, 0));
                    // pcap-file hands the raw 64-bit timestamp over as nanoseconds.
                    let raw = epb.timestamp.as_nanos();
                    let ts_ms = raw
                        .saturating_mul(1000)
                        .checked_div(units)
                        .and_then(|ms| i64::try_from(ms).ok())
                        .unwrap_or(last_ts_ms);
                    last_ts_ms = ts_ms;
                    self.frame(link, ts_ms, &epb.data, sink);
                }
                Block::SimplePacket(spb) => {
                    bytes += 16 + spb.data.len() as u64;
                    let link = interfaces.first().and_then(|(link, _)| *link);
                    self.frame(link, last_ts_ms, &spb.data, sink);
                }
                _ => {}
            }
            if let Some(bar) = progress
                && self.summary.packets.is_multiple_of(65_536)
            {
                bar.set_position(bytes);
            }
        }
        Ok(())
    }
}
