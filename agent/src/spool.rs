//! The durable queue between the sensors and the transport, with enqueue / lease / commit.
//!
//! Invariants:
//! - An observation leaves the spool only when the collector acknowledged its id (`commit`) or when
//!   it is dropped to respect the bound (or lost to a corrupt file), and then it is counted per
//!   reason and kind; the counts reach the collector in the next heartbeat. The counts are kept
//!   on disk (`dropped.json`) until a heartbeat carrying them is acknowledged, so a restart in
//!   between does not lose them.
//! - Every enqueued observation is written to the spool file before `enqueue` returns (one
//!   `write` per call, no user-space buffer): a killed agent (`kill -9`) loses nothing it had
//!   enqueued. What was leased and not acknowledged is resent after a restart; the collector stores
//!   ids once, so a resend after a lost ack is harmless.
//! - A lease that fails (`release`) puts the observations back at the front, in order.
//! - Bounded on disk (`max_bytes`, default 64 MiB) and in memory (a 16-byte index entry per
//!   waiting observation; payloads are read back from disk when leased).
//! - A corrupt record ends its segment: the tail is truncated, counted and reported, and the
//!   agent carries on. Nothing in a spool file can make the agent panic or allocate without bound.
//!
//! # On-disk format, version 1
//!
//! A directory of segment files `seg-<16 hex digits>.log`, numbered upwards; the highest is the
//! one appended to. Segments are at most `max_bytes / 16` bytes (at least 64 KiB) before a new one
//! is started. Each segment starts with an 8-byte header `b"SAISPOOL"`-like magic `SASPOOL` + a
//! version byte (`1`), then records:
//!
//! ```text
//! u32 LE  length of body
//! u32 LE  CRC-32 (IEEE) of body
//! body:   u8 type, then
//!         type 1 (observation): i64 LE enqueued-at (Unix ms), protobuf `shadowai.v1.Observation`
//!         type 2 (resolved):    n × (u32 LE segment number low bits, u32 LE offset) of observation
//!                               records that were acknowledged or dropped
//! ```
//!
//! Next to the segments, `dropped.json` holds the dropped counts not yet acknowledged: a JSON
//! array of `{"reason", "kind", "count"}`, replaced atomically (write + rename) when they change.
//!
//! Recovery reads every segment in order, indexes observation records, and removes those named by
//! a resolved record. Segments are deleted only from the oldest end and only when nothing in them
//! is live, so a resolved record is never deleted before the observation it names. A reader
//! accepts every version up to its own; a newer agent therefore reads an older spool. Files are
//! synced to disk on commit and at most once a second otherwise (an OS crash may lose the last
//! second; a process crash loses nothing).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message as _;
use shadowai_proto::v1;
use tracing::warn;

/// Dropped because the spool reached its size bound.
pub const DROP_SPOOL_FULL: &str = "spool_full";
/// Lost because a spool file was corrupt (truncated or damaged).
pub const DROP_SPOOL_CORRUPT: &str = "spool_corrupt";
/// Not stored because the spool could not be written (disk full, permissions).
pub const DROP_SPOOL_IO: &str = "spool_io_error";

const MAGIC: &[u8; 7] = b"SASPOOL";
/// The format version this agent writes; it reads every version up to this one.
pub const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: u64 = 8;
const RECORD_OBSERVATION: u8 = 1;
const RECORD_RESOLVED: u8 = 2;
/// Largest record body accepted when reading: a protobuf observation is capped far below this
/// by the collector's limits; anything larger is corruption.
const MAX_RECORD: u32 = 1 << 20;
const MIN_SEGMENT: u64 = 64 * 1024;
const SYNC_INTERVAL_MS: u128 = 1000;

/// The dropped counts not yet acknowledged, next to the segments.
const DROPPED_FILE: &str = "dropped.json";
/// Most (reason, kind) pairs counted; the catalogue of reasons is small and fixed.
const MAX_DROPPED_KEYS: usize = 64;

/// One line of `dropped.json`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DroppedFileEntry {
    reason: String,
    kind: String,
    count: u64,
}

/// Default bound of the spool on disk.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Where one observation record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Position {
    segment: u64,
    offset: u32,
}

/// The in-memory index entry of a waiting or leased observation.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: Position,
    len: u32,
    kind: Kind,
    enqueued_at_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Process,
    Dns,
    TlsSni,
    QuicSni,
    Config,
    Listener,
    App,
    Unknown,
}

impl Kind {
    fn of(observation: &v1::Observation) -> Kind {
        use v1::observation::Kind as K;
        match observation.kind {
            Some(K::ProcessSeen(_)) => Kind::Process,
            Some(K::Dns(_)) => Kind::Dns,
            Some(K::TlsSni(_)) => Kind::TlsSni,
            Some(K::QuicSni(_)) => Kind::QuicSni,
            Some(K::Config(_)) => Kind::Config,
            Some(K::Listener(_)) => Kind::Listener,
            Some(K::App(_)) => Kind::App,
            None => Kind::Unknown,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Process => "process",
            Kind::Dns => "dns",
            Kind::TlsSni => "tls_sni",
            Kind::QuicSni => "quic_sni",
            Kind::Config => "config",
            Kind::Listener => "listener",
            Kind::App => "app",
            Kind::Unknown => "unknown",
        }
    }
}

/// The kind of an observation, as counted in dropped counts.
pub fn kind_of(observation: &v1::Observation) -> &'static str {
    Kind::of(observation).as_str()
}

#[derive(Debug)]
struct Segment {
    number: u64,
    bytes: u64,
    /// Observations of this segment still waiting or leased.
    live: usize,
}

/// What opening a spool found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Observations found waiting (including ones leased before a crash: they are resent).
    pub recovered: usize,
    /// Corrupt places found and truncated, in words (for logs and `status`).
    pub problems: Vec<String>,
}

/// Where the spool keeps its data.
#[derive(Debug)]
enum Storage {
    /// Segment files under a directory.
    Disk {
        dir: PathBuf,
        active: Option<File>,
        /// A read handle on the segment last read from (leases read runs of one segment).
        reader: Option<(u64, File)>,
    },
    /// No files: for one-shot commands and tests. Payloads live in `memory`.
    Memory,
}

/// The spool.
#[derive(Debug)]
pub struct Spool {
    storage: Storage,
    segments: VecDeque<Segment>,
    waiting: VecDeque<Entry>,
    leased: Vec<(Entry, String)>,
    /// Payloads of an in-memory spool, by position.
    memory: HashMap<Position, Vec<u8>>,
    max_bytes: u64,
    segment_bytes: u64,
    total_bytes: u64,
    dropped: BTreeMap<(String, String), u64>,
    /// The dropped counts changed since they were last written.
    dropped_dirty: bool,
    dirty_since: Option<Instant>,
    last_error: Option<String>,
}

impl Spool {
    /// An in-memory spool bounded at `max_bytes` of encoded observations: for commands that do
    /// not keep state, and for tests. It has the same semantics as a disk spool, minus durability.
    pub fn in_memory(max_bytes: u64) -> Spool {
        let mut spool = Spool::empty(Storage::Memory, max_bytes);
        spool.segments.push_back(Segment {
            number: 0,
            bytes: HEADER_LEN,
            live: 0,
        });
        spool.total_bytes = HEADER_LEN;
        spool
    }

    fn empty(storage: Storage, max_bytes: u64) -> Spool {
        let max_bytes = max_bytes.max(MIN_SEGMENT * 4);
        Spool {
            storage,
            segments: VecDeque::new(),
            waiting: VecDeque::new(),
            leased: Vec::new(),
            memory: HashMap::new(),
            max_bytes,
            segment_bytes: (max_bytes / 16).max(MIN_SEGMENT),
            total_bytes: 0,
            dropped: BTreeMap::new(),
            dropped_dirty: false,
            dirty_since: None,
            last_error: None,
        }
    }

    /// Opens (or creates) the spool in `dir`, recovering what a previous run left. Corrupt data
    /// is truncated and reported in the returned [`Recovery`]; only an unusable directory (cannot
    /// be created, listed or written) is an error.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, Recovery)> {
        fs::create_dir_all(dir)?;
        restrict_dir(dir)?;
        let mut spool = Spool::empty(
            Storage::Disk {
                dir: dir.to_owned(),
                active: None,
                reader: None,
            },
            max_bytes,
        );
        let mut recovery = Recovery::default();
        let mut numbers = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(number) = name.to_str().and_then(segment_number) {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        spool.load_dropped(dir, &mut recovery);
        let mut resolved: Vec<Position> = Vec::new();
        for number in numbers {
            spool.recover_segment(dir, number, &mut resolved, &mut recovery)?;
        }
        let resolved: std::collections::HashSet<Position> = resolved.into_iter().collect();
        if !resolved.is_empty() {
            let before = spool.waiting.len();
            let mut kept = VecDeque::with_capacity(before);
            for entry in spool.waiting.drain(..) {
                if resolved.contains(&entry.at) {
                    if let Some(segment) = spool
                        .segments
                        .iter_mut()
                        .find(|s| s.number == entry.at.segment)
                    {
                        segment.live = segment.live.saturating_sub(1);
                    }
                } else {
                    kept.push_back(entry);
                }
            }
            spool.waiting = kept;
        }
        recovery.recovered = spool.waiting.len();
        spool.delete_resolved_segments();
        spool.start_segment_if_needed(true)?;
        spool.enforce_bound();
        spool.persist_dropped();
        Ok((spool, recovery))
    }

    /// Reads one segment into the index; truncates it at the first damaged record.
    fn recover_segment(
        &mut self,
        dir: &Path,
        number: u64,
        resolved: &mut Vec<Position>,
        recovery: &mut Recovery,
    ) -> io::Result<()> {
        let path = segment_path(dir, number);
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let length = file.metadata()?.len();
        let mut header = [0u8; HEADER_LEN as usize];
        let header_ok = file.read_exact(&mut header).is_ok()
            && &header[..7] == MAGIC
            && (1..=FORMAT_VERSION).contains(&header[7]);
        if !header_ok {
            // Not ours, or from a newer agent we cannot read: keep it aside, never delete
            // evidence we do not understand.
            let aside = path.with_extension("unreadable");
            fs::rename(&path, &aside)?;
            recovery.problems.push(format!(
                "{}: not a spool segment this agent can read (moved to {})",
                path.display(),
                aside.display()
            ));
            self.count_drop(DROP_SPOOL_CORRUPT, "unknown");
            return Ok(());
        }
        let mut segment = Segment {
            number,
            bytes: HEADER_LEN,
            live: 0,
        };
        let mut reader = io::BufReader::new(&mut file);
        let mut offset = HEADER_LEN;
        let mut body = Vec::new();
        let damaged_at = loop {
            if offset == length {
                break None;
            }
            let mut head = [0u8; 8];
            if reader.read_exact(&mut head).is_err() {
                break Some(offset);
            }
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            if len == 0 || len > MAX_RECORD || offset + 8 + u64::from(len) > length {
                break Some(offset);
            }
            body.resize(len as usize, 0);
            if reader.read_exact(&mut body).is_err() || crc32fast::hash(&body) != crc {
                break Some(offset);
            }
            let Ok(at) = u32::try_from(offset) else {
                break Some(offset);
            };
            match parse_body(&body) {
                Some(Body::Observation {
                    enqueued_at_ms,
                    observation,
                }) => {
                    segment.live += 1;
                    self.waiting.push_back(Entry {
                        at: Position {
                            segment: number,
                            offset: at,
                        },
                        len,
                        kind: Kind::of(&observation),
                        enqueued_at_ms,
                    });
                }
                Some(Body::Resolved(positions)) => resolved.extend(positions),
                None => break Some(offset),
            }
            offset += 8 + u64::from(len);
        };
        drop(reader);
        if let Some(at) = damaged_at {
            let lost = length - at;
            file.set_len(at)?;
            file.sync_all()?;
            recovery.problems.push(format!(
                "{}: damaged record at byte {at}; truncated {lost} bytes",
                path.display()
            ));
            self.count_drop(DROP_SPOOL_CORRUPT, "unknown");
        }
        segment.bytes = damaged_at.unwrap_or(length);
        self.total_bytes += segment.bytes;
        self.segments.push_back(segment);
        Ok(())
    }

    /// Opens the newest segment for appending, or starts a new one when there is none or it is
    /// full (`reopen` also reopens an existing newest segment after recovery).
    fn start_segment_if_needed(&mut self, reopen: bool) -> io::Result<()> {
        let Storage::Disk { dir, active, .. } = &mut self.storage else {
            if self
                .segments
                .back()
                .is_none_or(|s| s.bytes >= self.segment_bytes)
            {
                let number = self.segments.back().map_or(0, |s| s.number + 1);
                self.segments.push_back(Segment {
                    number,
                    bytes: HEADER_LEN,
                    live: 0,
                });
                self.total_bytes += HEADER_LEN;
            }
            return Ok(());
        };
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.bytes >= self.segment_bytes);
        if !full && (reopen || active.is_none()) {
            if let Some(newest) = self.segments.back() {
                let file = OpenOptions::new()
                    .append(true)
                    .open(segment_path(dir, newest.number))?;
                *active = Some(file);
            }
            return Ok(());
        }
        if !full {
            return Ok(());
        }
        let number = self.segments.back().map_or(1, |s| s.number + 1);
        let path = segment_path(dir, number);
        let mut file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let mut header = [0u8; HEADER_LEN as usize];
        header[..7].copy_from_slice(MAGIC);
        header[7] = FORMAT_VERSION;
        file.write_all(&header)?;
        if let Some(old) = active.take() {
            old.sync_data()?;
        }
        *active = Some(file);
        self.segments.push_back(Segment {
            number,
            bytes: HEADER_LEN,
            live: 0,
        });
        self.total_bytes += HEADER_LEN;
        Ok(())
    }

    /// Appends one record body; returns where it starts.
    fn append(&mut self, body: &[u8]) -> io::Result<Position> {
        self.start_segment_if_needed(false)?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|len| *len <= MAX_RECORD)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
        let Some(segment) = self.segments.back_mut() else {
            return Err(io::Error::other("no segment"));
        };
        let offset = u32::try_from(segment.bytes)
            .map_err(|_| io::Error::other("segment offset beyond 4 GiB"))?;
        let at = Position {
            segment: segment.number,
            offset,
        };
        let mut record = Vec::with_capacity(8 + body.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        record.extend_from_slice(body);
        match &mut self.storage {
            Storage::Disk { active, .. } => {
                let Some(file) = active.as_mut() else {
                    return Err(io::Error::other("no active segment"));
                };
                if let Err(error) = file.write_all(&record) {
                    // A partial write leaves a damaged tail that recovery truncates; start a
                    // fresh segment so that later records are not appended after it.
                    *active = None;
                    segment.bytes = self.segment_bytes;
                    return Err(error);
                }
            }
            Storage::Memory => {
                self.memory.insert(at, record);
            }
        }
        segment.bytes += record_len(len);
        self.total_bytes += record_len(len);
        self.dirty_since.get_or_insert_with(Instant::now);
        Ok(at)
    }

    /// Adds an observation, dropping (and counting) the oldest waiting ones when the bound is
    /// reached. A write failure drops the new observation and counts it.
    pub fn enqueue(&mut self, observation: v1::Observation, now_ms: i64) {
        self.enqueue_many(std::iter::once(observation), now_ms);
    }

    /// Adds several observations (one write each, then at most one sync).
    pub fn enqueue_many(
        &mut self,
        observations: impl IntoIterator<Item = v1::Observation>,
        now_ms: i64,
    ) {
        let mut body = Vec::new();
        for observation in observations {
            let kind = Kind::of(&observation);
            body.clear();
            body.push(RECORD_OBSERVATION);
            body.extend_from_slice(&now_ms.to_le_bytes());
            // Encoding into a Vec cannot fail.
            let _ = observation.encode(&mut body);
            match self.append(&body) {
                Ok(at) => {
                    if let Some(segment) = self.segments.back_mut() {
                        segment.live += 1;
                    }
                    let len = u32::try_from(body.len()).unwrap_or(MAX_RECORD);
                    self.waiting.push_back(Entry {
                        at,
                        len,
                        kind,
                        enqueued_at_ms: now_ms,
                    });
                }
                Err(error) => {
                    self.note_error(format!("cannot write the spool: {error}"));
                    self.add_drop(DROP_SPOOL_IO, kind.as_str(), 1);
                }
            }
        }
        self.enforce_bound();
        self.maybe_sync(false);
    }

    /// Leases up to `max` observations for sending. Only one lease is outstanding at a time:
    /// returns nothing while a previous lease is neither committed nor released. Records that
    /// cannot be read back (damaged since they were written) are dropped and counted.
    pub fn lease(&mut self, max: usize) -> Vec<v1::Observation> {
        if !self.leased.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(entry) = self.waiting.pop_front() else {
                break;
            };
            match self.read(entry) {
                Ok(observation) => {
                    self.leased.push((entry, observation.id.clone()));
                    out.push(observation);
                }
                Err(error) => {
                    self.note_error(format!("cannot read back a spooled observation: {error}"));
                    self.add_drop(DROP_SPOOL_CORRUPT, entry.kind.as_str(), 1);
                    self.resolve(&[entry]);
                }
            }
        }
        self.persist_dropped();
        out
    }

    fn read(&mut self, entry: Entry) -> io::Result<v1::Observation> {
        let record = match &mut self.storage {
            Storage::Memory => self
                .memory
                .get(&entry.at)
                .cloned()
                .ok_or_else(|| io::Error::other("missing record"))?,
            Storage::Disk { dir, reader, .. } => {
                if reader.as_ref().is_none_or(|(n, _)| *n != entry.at.segment) {
                    *reader = Some((
                        entry.at.segment,
                        File::open(segment_path(dir, entry.at.segment))?,
                    ));
                }
                let Some((_, file)) = reader.as_mut() else {
                    return Err(io::Error::other("no reader"));
                };
                let mut record = vec![0u8; 8 + entry.len as usize];
                file.seek(SeekFrom::Start(u64::from(entry.at.offset)))?;
                file.read_exact(&mut record)?;
                record
            }
        };
        let (Some(crc), Some(body)) = (record.get(4..8), record.get(8..)) else {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "short record"));
        };
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "checksum mismatch",
            ));
        }
        match parse_body(body) {
            Some(Body::Observation { observation, .. }) => Ok(*observation),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an observation",
            )),
        }
    }

    /// Forgets the leased observations whose ids the collector acknowledged; any leased ones not
    /// acknowledged go back to the front of the queue.
    pub fn commit(&mut self, acknowledged: &[String]) {
        let acknowledged: std::collections::HashSet<&str> =
            acknowledged.iter().map(String::as_str).collect();
        let leased = std::mem::take(&mut self.leased);
        let mut done = Vec::new();
        let mut back = Vec::new();
        for (entry, id) in leased {
            if acknowledged.contains(id.as_str()) {
                done.push(entry);
            } else {
                back.push(entry);
            }
        }
        for entry in back.into_iter().rev() {
            self.waiting.push_front(entry);
        }
        self.resolve(&done);
        self.maybe_sync(true);
    }

    /// Drops the leased observations (the collector refused them for good), counting them.
    pub fn drop_leased(&mut self, reason: &str) {
        let leased = std::mem::take(&mut self.leased);
        let entries: Vec<Entry> = leased.into_iter().map(|(entry, _)| entry).collect();
        for entry in &entries {
            self.add_drop(reason, entry.kind.as_str(), 1);
        }
        self.persist_dropped();
        self.resolve(&entries);
        self.maybe_sync(true);
    }

    /// Returns a failed lease to the front of the queue.
    pub fn release(&mut self) {
        self.commit(&[]);
    }

    /// Marks entries as done on disk and frees segments that hold nothing live.
    fn resolve(&mut self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        for entry in entries {
            if let Some(segment) = self
                .segments
                .iter_mut()
                .find(|s| s.number == entry.at.segment)
            {
                segment.live = segment.live.saturating_sub(1);
            }
            if matches!(self.storage, Storage::Memory) {
                self.memory.remove(&entry.at);
            }
        }
        if matches!(self.storage, Storage::Disk { .. }) {
            {
                let mut body = Vec::with_capacity(1 + entries.len() * 8);
                body.push(RECORD_RESOLVED);
                for entry in entries {
                    // Segment numbers are stored modulo 2^32: a spool would need four billion
                    // segments for two live ones to collide.
                    body.extend_from_slice(&(entry.at.segment as u32).to_le_bytes());
                    body.extend_from_slice(&entry.at.offset.to_le_bytes());
                }
                for chunk in split_resolved(&body) {
                    if let Err(error) = self.append(&chunk) {
                        // The observations stay resolved in memory; after a restart they would
                        // be resent once, which the collector absorbs (ids are unique).
                        self.note_error(format!("cannot record acknowledgements: {error}"));
                    }
                }
            }
        }
        self.delete_resolved_segments();
    }

    /// Deletes segments from the oldest end while they hold nothing live (never the newest).
    fn delete_resolved_segments(&mut self) {
        while self.segments.len() > 1 && self.segments.front().is_some_and(|s| s.live == 0) {
            let Some(segment) = self.segments.pop_front() else {
                break;
            };
            self.total_bytes = self.total_bytes.saturating_sub(segment.bytes);
            if let Storage::Disk { reader, .. } = &mut self.storage
                && reader.as_ref().is_some_and(|(n, _)| *n == segment.number)
            {
                *reader = None;
            }
            if let Storage::Disk { dir, .. } = &self.storage
                && let Err(error) = fs::remove_file(segment_path(dir, segment.number))
                && error.kind() != io::ErrorKind::NotFound
            {
                let message = format!("cannot delete a spent spool segment: {error}");
                self.note_error(message);
            }
        }
        if self.segments.len() == 1
            && self.waiting.is_empty()
            && self.leased.is_empty()
            && self
                .segments
                .front()
                .is_some_and(|s| s.bytes > self.segment_bytes / 2)
        {
            // All delivered and the only segment is large: start afresh so it can be deleted.
            if let Some(segment) = self.segments.back_mut() {
                segment.bytes = self.segment_bytes;
            }
            if self.start_segment_if_needed(false).is_ok() {
                self.delete_resolved_segments();
            }
        }
    }

    /// Drops the oldest segments while the spool is over its bound; their waiting observations
    /// are counted as dropped (`spool_full`). Leased ones stay in flight.
    fn enforce_bound(&mut self) {
        while self.total_bytes > self.max_bytes && self.segments.len() > 1 {
            let Some(oldest) = self.segments.front().map(|s| s.number) else {
                break;
            };
            let leased_there = self.leased.iter().any(|(e, _)| e.at.segment == oldest);
            if leased_there {
                break;
            }
            let waiting = std::mem::take(&mut self.waiting);
            let mut kept = VecDeque::with_capacity(waiting.len());
            for entry in waiting {
                if entry.at.segment == oldest {
                    self.add_drop(DROP_SPOOL_FULL, entry.kind.as_str(), 1);
                    self.memory.remove(&entry.at);
                } else {
                    kept.push_back(entry);
                }
            }
            self.waiting = kept;
            if let Some(front) = self.segments.front_mut() {
                front.live = 0;
            }
            self.delete_resolved_segments();
        }
        self.persist_dropped();
    }

    /// Syncs the active segment when asked (`force`) or when unsynced data is older than a second.
    fn maybe_sync(&mut self, force: bool) {
        let Some(since) = self.dirty_since else {
            return;
        };
        if !force && since.elapsed().as_millis() < SYNC_INTERVAL_MS {
            return;
        }
        if let Storage::Disk {
            active: Some(file), ..
        } = &self.storage
            && let Err(error) = file.sync_data()
        {
            self.note_error(format!("cannot sync the spool: {error}"));
            return;
        }
        self.dirty_since = None;
    }

    /// Syncs everything written so far (shutdown).
    pub fn flush(&mut self) {
        self.maybe_sync(true);
        self.persist_dropped();
    }

    /// Observations waiting or in flight.
    pub fn depth(&self) -> usize {
        self.waiting.len() + self.leased.len()
    }

    /// Bytes the spool occupies (on disk, or the same accounting in memory).
    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The latest storage error, for `status` (cleared when read).
    pub fn take_error(&mut self) -> Option<String> {
        self.last_error.take()
    }

    /// Age of the oldest observation, ms (0 when empty).
    pub fn oldest_age_ms(&self, now_ms: i64) -> u64 {
        let oldest = self
            .leased
            .first()
            .map(|(entry, _)| entry)
            .or(self.waiting.front())
            .map(|entry| entry.enqueued_at_ms);
        oldest.map_or(0, |at| {
            u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0)
        })
    }

    /// The dropped counts not yet acknowledged by the collector, to report in a heartbeat.
    pub fn dropped(&self) -> Vec<v1::DroppedCount> {
        self.dropped
            .iter()
            .map(|((reason, kind), count)| v1::DroppedCount {
                reason: reason.clone(),
                kind: kind.clone(),
                count: *count,
            })
            .collect()
    }

    /// Forgets counts the collector acknowledged (a heartbeat carrying them succeeded); counted
    /// meanwhile stay for the next heartbeat.
    pub fn forget_dropped(&mut self, sent: &[v1::DroppedCount]) {
        for count in sent {
            let key = (count.reason.clone(), count.kind.clone());
            if let Some(left) = self.dropped.get_mut(&key) {
                *left = left.saturating_sub(count.count);
                if *left == 0 {
                    self.dropped.remove(&key);
                }
            }
        }
        self.dropped_dirty |= !sent.is_empty();
        self.persist_dropped();
    }

    /// Counts an observation that a sensor or the transport had to drop.
    pub fn count_drop(&mut self, reason: &str, kind: &str) {
        self.add_drop(reason, kind, 1);
        self.persist_dropped();
    }

    fn add_drop(&mut self, reason: &str, kind: &str, count: u64) {
        if self.dropped.len() >= MAX_DROPPED_KEYS
            && !self
                .dropped
                .contains_key(&(reason.to_owned(), kind.to_owned()))
        {
            // A bounded map: an unforeseen reason joins the catch-all instead of growing it.
            *self
                .dropped
                .entry(("other".to_owned(), "unknown".to_owned()))
                .or_default() += count;
        } else {
            *self
                .dropped
                .entry((reason.to_owned(), kind.to_owned()))
                .or_default() += count;
        }
        self.dropped_dirty = true;
    }

    /// Writes the dropped counts next to the segments (`dropped.json`, replaced atomically) so
    /// that they reach the collector even when the agent restarts before the next heartbeat.
    fn persist_dropped(&mut self) {
        if !self.dropped_dirty {
            return;
        }
        let Storage::Disk { dir, .. } = &self.storage else {
            self.dropped_dirty = false;
            return;
        };
        let counts: Vec<DroppedFileEntry> = self
            .dropped
            .iter()
            .map(|((reason, kind), count)| DroppedFileEntry {
                reason: reason.clone(),
                kind: kind.clone(),
                count: *count,
            })
            .collect();
        let path = dir.join(DROPPED_FILE);
        let temporary = dir.join(format!("{DROPPED_FILE}.tmp"));
        let written = serde_json::to_vec(&counts)
            .map_err(io::Error::other)
            .and_then(|json| fs::write(&temporary, json))
            .and_then(|()| fs::rename(&temporary, &path));
        match written {
            Ok(()) => self.dropped_dirty = false,
            Err(error) => self.note_error(format!("cannot record dropped counts: {error}")),
        }
    }

    /// Reads the counts a previous run left (a damaged file is reported and ignored).
    fn load_dropped(&mut self, dir: &Path, recovery: &mut Recovery) {
        let path = dir.join(DROPPED_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return,
            Err(error) => {
                recovery
                    .problems
                    .push(format!("{DROPPED_FILE}: cannot read: {error}"));
                return;
            }
        };
        let counts = (bytes.len() <= 64 * 1024)
            .then(|| serde_json::from_slice::<Vec<DroppedFileEntry>>(&bytes).ok())
            .flatten();
        let Some(counts) = counts else {
            recovery.problems.push(format!(
                "{DROPPED_FILE}: damaged; the dropped counts of the previous run are lost"
            ));
            return;
        };
        for entry in counts {
            if entry.reason.len() <= 64 && entry.kind.len() <= 32 && entry.count > 0 {
                self.add_drop(&entry.reason, &entry.kind, entry.count);
            }
        }
    }

    fn note_error(&mut self, message: String) {
        if self.last_error.as_deref() != Some(message.as_str()) {
            warn!("{message}");
        }
        self.last_error = Some(message);
    }
}

enum Body {
    Observation {
        enqueued_at_ms: i64,
        observation: Box<v1::Observation>,
    },
    Resolved(Vec<Position>),
}

/// Decodes a record body; `None` when it is not a valid record of a known type.
fn parse_body(body: &[u8]) -> Option<Body> {
    let (kind, rest) = body.split_first()?;
    match *kind {
        RECORD_OBSERVATION => {
            let (at, protobuf) = rest.split_at_checked(8)?;
            let enqueued_at_ms = i64::from_le_bytes(at.try_into().ok()?);
            let observation = Box::new(v1::Observation::decode(protobuf).ok()?);
            Some(Body::Observation {
                enqueued_at_ms,
                observation,
            })
        }
        RECORD_RESOLVED => {
            if rest.len() % 8 != 0 {
                return None;
            }
            let positions = rest
                .chunks_exact(8)
                .map(|pair| Position {
                    segment: u64::from(u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]])),
                    offset: u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
                })
                .collect();
            Some(Body::Resolved(positions))
        }
        _ => None,
    }
}

/// Splits a resolved-record body into bodies under the record size limit.
fn split_resolved(body: &[u8]) -> Vec<Vec<u8>> {
    let per_record = ((MAX_RECORD as usize - 1) / 8) * 8;
    body.get(1..)
        .unwrap_or_default()
        .chunks(per_record)
        .map(|chunk| {
            let mut part = Vec::with_capacity(1 + chunk.len());
            part.push(RECORD_RESOLVED);
            part.extend_from_slice(chunk);
            part
        })
        .collect()
}

fn record_len(body_len: u32) -> u64 {
    8 + u64::from(body_len)
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("seg-{number:016x}.log"))
}

fn segment_number(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?.strip_suffix(".log")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The spool holds evidence (command lines, names): only the agent's user may read it.
fn restrict_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests;
