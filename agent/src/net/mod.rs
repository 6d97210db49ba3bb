//! The network sensor: DNS queries and answers, TLS and QUIC server names, seen on the wire.
//!
//! ```text
//!  capture (per interface thread, kernel BPF)      detector thread
//!  ┌───────────────┐  bounded channel of Frames   ┌──────────────────────────────────────────┐
//!  │ AF_PACKET+BPF ├──────── (overflow counted) ─►│ shadowai_wire::Decoder → Event           │
//!  └───────────────┘                              │ Detector (catalog, windows, IP→name)     │
//!                                                 │   └ Attribute: /proc socket → process    │
//!                                                 └───────────► sink(Output) (print / spool) │
//! ```
//!
//! - [`filter`]: the classic BPF program and what it passes, in words.
//! - [`capture`]: the OS shell (sockets, threads, interface watcher). Linux only.
//! - [`detector`]: the sans-IO core. [`attribution`]: flow → process from `/proc`.
//! - [`blind`]: DoH / DoT / ECH, reported as visibility events, not detections.
//!
//! **Invariant:** only catalog matches and blind spots leave this module. Names that miss the
//! catalog are never logged, counted by name or kept.

pub mod attribution;
pub mod blind;
pub mod capture;
pub mod detector;
pub mod filter;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use shadowai_catalog::Catalog;
use shadowai_proto::v1::SensorState;
use shadowai_wire::{Decoder, DecoderStats, Limits};

pub use capture::{CaptureError, FIX_PRIVILEGE, Frame};
pub use detector::{Attribute, BlindSpotEvent, Detector, DetectorConfig, DetectorStats, Output};

/// Settings of the live network sensor.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Interfaces to capture on; empty means every interface that is up (and those that appear).
    pub interfaces: Vec<String>,
    /// Frames waiting for the detector at most; beyond, frames are dropped and counted.
    pub channel_capacity: usize,
    /// How often interfaces are re-listed.
    pub relist_interval: Duration,
    /// The detector's windows and table sizes.
    pub detector: DetectorConfig,
    /// The decoder's flow table bounds.
    pub limits: Limits,
    /// The daemon's resource budget: frames are sampled or not decoded while it holds back.
    pub throttle: Option<Arc<crate::budget::Throttle>>,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            channel_capacity: 4096,
            relist_interval: Duration::from_secs(5),
            detector: DetectorConfig::default(),
            limits: Limits::default(),
            throttle: None,
        }
    }
}

/// What the sensor has done so far.
#[derive(Debug, Default, Clone)]
pub struct NetStats {
    /// Frames the kernel filter passed to us.
    pub frames: u64,
    /// Frames dropped because the detector fell behind.
    pub overflow: u64,
    /// Capture read errors.
    pub capture_errors: u64,
    /// The decoder's counters.
    pub decoder: DecoderStats,
    /// The detector's counters.
    pub detector: DetectorStats,
    /// Interfaces captured now.
    pub interfaces: Vec<String>,
    /// Frames not decoded because the resource budget sampled or paused the sensor.
    pub skipped_for_budget: u64,
}

/// The live network sensor: capture threads and the detector thread.
pub struct NetSensor {
    capture: Option<capture::Capture>,
    detector: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    catalogs: mpsc::Sender<Arc<Catalog>>,
    stats: Arc<Mutex<NetStats>>,
    throttle: Option<Arc<crate::budget::Throttle>>,
}

impl std::fmt::Debug for NetSensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSensor").finish_non_exhaustive()
    }
}

impl NetSensor {
    /// Starts capturing; every detection and blind spot is given to `sink` on the detector
    /// thread, in order. Fails (before any thread starts) without the capture privilege.
    pub fn start(
        config: NetConfig,
        catalog: Arc<Catalog>,
        sink: impl FnMut(Output) + Send + 'static,
    ) -> Result<NetSensor, CaptureError> {
        let (frame_sender, frames) = mpsc::sync_channel(config.channel_capacity.max(16));
        let capture = capture::Capture::start(
            config.interfaces.clone(),
            frame_sender,
            config.relist_interval,
        )?;
        let (catalogs, catalog_updates) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(NetStats::default()));
        let throttle = config.throttle.clone();
        let thread = {
            let stop = stop.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("net-detect".into())
                .spawn(move || {
                    detect_loop(
                        &config,
                        catalog,
                        &frames,
                        &catalog_updates,
                        &stop,
                        &stats,
                        sink,
                    );
                })
                .map_err(CaptureError::Socket)?
        };
        Ok(NetSensor {
            capture: Some(capture),
            detector: Some(thread),
            stop,
            catalogs,
            stats,
            throttle,
        })
    }

    /// Swaps the catalog (after a validated update).
    pub fn set_catalog(&self, catalog: Arc<Catalog>) {
        let _ = self.catalogs.send(catalog);
    }

    /// A channel on which new catalogs reach the detector thread.
    pub fn catalog_sender(&self) -> mpsc::Sender<Arc<Catalog>> {
        self.catalogs.clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> NetStats {
        let mut stats = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(capture) = &self.capture {
            let counters = capture.counters();
            stats.frames = counters.frames.load(Ordering::Relaxed);
            stats.overflow = counters.overflow.load(Ordering::Relaxed);
            stats.capture_errors = counters.errors.load(Ordering::Relaxed);
            stats.interfaces = capture.interfaces();
        }
        stats
    }

    /// The sensor's state and why, for the heartbeat.
    pub fn health(&self) -> (SensorState, String) {
        let stats = self.stats();
        if stats.interfaces.is_empty() {
            return (
                SensorState::Degraded,
                "no interface captured yet (none up, or all refused)".to_owned(),
            );
        }
        let mut detail = format!(
            "capturing on {}; {} frames, {} dropped for overload",
            stats.interfaces.join(", "),
            stats.frames,
            stats.overflow
        );
        let held_back = self
            .throttle
            .as_ref()
            .map(|throttle| throttle.level().network_sample_every())
            .filter(|every| *every != 1);
        if let Some(every) = held_back {
            if every == 0 {
                detail.push_str("; decoding paused by the resource budget");
            } else {
                detail.push_str(&format!("; 1 frame in {every} decoded (resource budget)"));
            }
            detail.push_str(&format!(", {} frames skipped", stats.skipped_for_budget));
            return (SensorState::Degraded, detail);
        }
        if stats.overflow > 0 {
            (SensorState::Degraded, detail)
        } else {
            (SensorState::Ok, detail)
        }
    }

    /// Stops capture, lets the detector finish the frames already captured, closes every window
    /// (the sink receives the pending summaries) and returns the final counters.
    pub fn stop(mut self) -> NetStats {
        let mut stats = self.stats();
        if let Some(capture) = self.capture.take() {
            capture.stop();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.detector.take() {
            let _ = thread.join();
        }
        let inner = self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        stats.decoder = inner.decoder;
        stats.detector = inner.detector;
        stats
    }
}

impl Drop for NetSensor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn detect_loop(
    config: &NetConfig,
    catalog: Arc<Catalog>,
    frames: &Receiver<Frame>,
    catalog_updates: &Receiver<Arc<Catalog>>,
    stop: &AtomicBool,
    stats: &Mutex<NetStats>,
    mut sink: impl FnMut(Output),
) {
    let mut decoder = Decoder::new(config.limits);
    let mut detector = Detector::new(catalog, config.detector.clone());
    let mut attribution = attribution::ProcAttribution::default();
    let mut events = Vec::new();
    let mut last_tick = now_ms();
    let mut skipped_for_budget = 0u64;
    let mut sequence = 0u64;
    loop {
        let received = frames.recv_timeout(Duration::from_millis(200));
        // The budget's sampling: one frame in `every` is decoded, none while paused.
        let every = config
            .throttle
            .as_ref()
            .map_or(1, |throttle| throttle.level().network_sample_every());
        sequence = sequence.wrapping_add(u64::from(received.is_ok()));
        let is_skipped = every == 0 || !sequence.is_multiple_of(u64::from(every.max(1)));
        match received {
            Ok(_) if is_skipped => skipped_for_budget += 1,
            Ok(frame) => {
                events.clear();
                decoder.decode(frame.link, frame.ts_ms, &frame.data, &mut events);
                for event in &events {
                    detector.handle_event(event, &mut attribution);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
        let now = now_ms();
        if now.saturating_sub(last_tick) >= 1000 || now < last_tick {
            last_tick = now;
            while let Ok(newer) = catalog_updates.try_recv() {
                detector.set_catalog(newer);
            }
            events.clear();
            decoder.expire_into(now, &mut events);
            for event in &events {
                detector.handle_event(event, &mut attribution);
            }
            detector.handle_timeout(now);
            let mut shared = stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shared.decoder = decoder.stats().clone();
            shared.detector = detector.stats().clone();
            shared.skipped_for_budget = skipped_for_budget;
        }
        while let Some(output) = detector.poll_output() {
            sink(output);
        }
    }
    detector.flush();
    while let Some(output) = detector.poll_output() {
        sink(output);
    }
    let mut shared = stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    shared.decoder = decoder.stats().clone();
    shared.detector = detector.stats().clone();
}

/// The shell's clock, Unix ms.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
