//! The process sensor's core: decides, from successive process listings, which AI processes to
//! report. No IO and no clock: listings and the time are passed in, so it is tested with made-up
//! processes.
//!
//! A process is identified by pid and start time (pids are reused). It is reported when it is
//! first seen, when its executable or command line changes (an `exec`, or a rewritten process
//! title), and when a new catalog changes its verdict. Everything else is remembered by a cheap
//! fingerprint, so a steady-state scan matches nothing against the catalog.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::Arc;

use shadowai_catalog::{Catalog, ProcessFacts};

use crate::detect::{Detection, ProcessEventKind, ProcessRef, RawProcess};

/// One process of a listing, as the OS shell read it.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// Process id.
    pub pid: u32,
    /// Parent process id (0 when unknown).
    pub parent_pid: u32,
    /// Start time, seconds since the Unix epoch.
    pub start_time_s: u64,
    /// Process name as the OS reports it.
    pub name: &'a OsStr,
    /// Executable path; `None` when it could not be read (another user's process, no root).
    pub exe: Option<&'a Path>,
    /// Arguments, argv\[0\] first.
    pub cmd: &'a [OsString],
    /// Numeric user id.
    pub uid: Option<u32>,
    /// User name, when known.
    pub user: Option<&'a str>,
}

/// What the catalog said about a process, to notice when a new catalog changes its mind.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    product: String,
    rule: String,
    risk: Vec<String>,
}

#[derive(Debug)]
struct Seen {
    fingerprint: u64,
    /// Noted from a process event rather than a listing: the next listing adopts its
    /// fingerprint and reports only if the verdict differs.
    from_event: bool,
    verdict: Option<Verdict>,
    catalog_generation: u64,
    last_listing: u64,
}

/// Remembers the processes of the previous listing and reports AI processes that are new or
/// changed.
#[derive(Debug)]
pub struct Tracker {
    catalog: Arc<Catalog>,
    catalog_generation: u64,
    listing: u64,
    seen: HashMap<(u32, u64), Seen>,
}

impl Tracker {
    /// A tracker that has seen nothing yet: its first listing reports every AI process.
    pub fn new(catalog: Arc<Catalog>) -> Tracker {
        Tracker {
            catalog,
            catalog_generation: 0,
            listing: 0,
            seen: HashMap::new(),
        }
    }

    /// The catalog in use.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Swaps the catalog. Known processes are matched again at the next listing and reported
    /// only if the verdict changed, so a catalog update does not repeat every detection.
    pub fn set_catalog(&mut self, catalog: Arc<Catalog>) {
        self.catalog = catalog;
        self.catalog_generation += 1;
    }

    /// How many processes are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no process is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Feeds one complete listing and returns the detections it causes. Processes missing from
    /// the listing are forgotten.
    pub fn observe<'a>(
        &mut self,
        listing: impl IntoIterator<Item = Snapshot<'a>>,
        now_ms: i64,
    ) -> Vec<Detection> {
        self.listing += 1;
        let mut detections = Vec::new();
        for process in listing {
            let key = (process.pid, process.start_time_s);
            let fingerprint = fingerprint(&process);
            if let Some(seen) = self.seen.get_mut(&key)
                && seen.fingerprint == fingerprint
                && seen.catalog_generation == self.catalog_generation
            {
                seen.last_listing = self.listing;
                continue;
            }
            let (was_known, same_facts, old_verdict) = match self.seen.get_mut(&key) {
                Some(seen) => (
                    true,
                    seen.fingerprint == fingerprint || seen.from_event,
                    seen.verdict.take(),
                ),
                None => (false, false, None),
            };
            // "changed": the facts changed (an exec, a new title), or a new catalog changed the
            // verdict on a process already reported. A process a new catalog recognises for the
            // first time is "started", as far as anyone was told.
            let changed = was_known && (!same_facts || old_verdict.is_some());
            let (verdict, detection) = self.evaluate(&process, now_ms, changed);
            let report = match &verdict {
                None => false,
                // Same facts, new catalog: only a different verdict is news.
                Some(verdict) if same_facts => old_verdict.as_ref() != Some(verdict),
                Some(_) => true,
            };
            if report {
                detections.extend(detection);
            }
            self.seen.insert(
                key,
                Seen {
                    fingerprint,
                    from_event: false,
                    verdict,
                    catalog_generation: self.catalog_generation,
                    last_listing: self.listing,
                },
            );
        }
        let listing = self.listing;
        self.seen.retain(|_, seen| seen.last_listing == listing);
        detections
    }

    /// Notes one process reported by a process event (an `exec` seen as it happened), and
    /// returns its detection when it is an AI process not reported yet. The next listing
    /// does not report it again unless its verdict changed.
    pub fn note(&mut self, process: &Snapshot<'_>, now_ms: i64) -> Option<Detection> {
        let key = (process.pid, process.start_time_s);
        let fingerprint = fingerprint(process);
        if let Some(seen) = self.seen.get(&key)
            && (seen.fingerprint == fingerprint || seen.from_event)
        {
            return None;
        }
        let changed = self.seen.contains_key(&key);
        let (verdict, detection) = self.evaluate(process, now_ms, changed);
        self.seen.insert(
            key,
            Seen {
                fingerprint,
                from_event: true,
                verdict,
                catalog_generation: self.catalog_generation,
                last_listing: self.listing,
            },
        );
        detection
    }

    fn evaluate(
        &self,
        process: &Snapshot<'_>,
        now_ms: i64,
        changed: bool,
    ) -> (Option<Verdict>, Option<Detection>) {
        let name = process.name.to_string_lossy();
        let exe = process
            .exe
            .map(|exe| exe.to_string_lossy())
            .unwrap_or_default();
        let args: Vec<String> = process
            .cmd
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let facts = ProcessFacts {
            name: &name,
            exe: &exe,
            args: &args,
        };
        let Some(found) = self.catalog.match_process(&facts) else {
            return (None, None);
        };
        let verdict = Verdict {
            product: found.product.id.clone(),
            rule: found.rule.to_owned(),
            risk: found.risk_names().into_iter().map(str::to_owned).collect(),
        };
        let started_at_ms =
            i64::try_from(process.start_time_s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let process_ref = ProcessRef::from_raw(&RawProcess {
            pid: process.pid,
            parent_pid: process.parent_pid,
            started_at_ms,
            name: &name,
            exe: &exe,
            args: &args,
            user: process.user.unwrap_or_default(),
            uid: process.uid,
        });
        let detection = Detection::from_process_match(
            &found,
            self.catalog.version(),
            process_ref,
            now_ms,
            if changed {
                ProcessEventKind::Changed
            } else {
                ProcessEventKind::Started
            },
        );
        (Some(verdict), Some(detection))
    }
}

/// A hash of what identifies a process's behaviour: name, executable and arguments.
fn fingerprint(process: &Snapshot<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    process.name.hash(&mut hasher);
    process.exe.hash(&mut hasher);
    process.cmd.hash(&mut hasher);
    hasher.finish()
}
