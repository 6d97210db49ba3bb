//! The agent's own resource budget: it measures its CPU time and resident memory every few
//! seconds and, when over budget, deliberately does less until the load falls.
//!
//! The decision is a sans-IO state machine ([`Controller`]): samples of cumulative CPU time and
//! RSS go in with the time, a [`Level`] comes out. The shell ([`measure`]) reads `/proc/self`;
//! the sensors and the transport read the level from a shared [`Throttle`] (an atomic), so none
//! of them blocks on the controller.
//!
//! Rules (all documented in the README's configuration reference):
//! - CPU is averaged over a full window (default 60 s) of samples; nothing is judged before the
//!   first window is complete, so start-up work (catalog compile, first inventory) never trips it.
//!   RSS is the latest sample.
//! - Over budget (CPU average above `cpu_percent`, or RSS above `rss_mb`) at the end of a full
//!   window: one level down (`normal` → `reduced` → `minimal`), and a new window starts, so each
//!   step is judged on what it achieved.
//! - Recovery needs a whole window well inside the budget (CPU below half of it and RSS below
//!   80 % of it): one level up. The gap between "over" and "well inside" is the hysteresis that
//!   keeps the agent from flapping between two levels.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// How much the agent is holding back.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Everything as configured.
    Normal,
    /// Scans 4× less often, network frames sampled 1 in 4, batches a quarter of the size.
    Reduced,
    /// Scans 16× less often, network decoding paused, batches a sixteenth of the size.
    Minimal,
}

impl Level {
    fn from_u8(value: u8) -> Level {
        match value {
            0 => Level::Normal,
            1 => Level::Reduced,
            _ => Level::Minimal,
        }
    }

    /// Factor applied to the process and inventory scan intervals.
    pub fn scan_factor(self) -> u32 {
        match self {
            Level::Normal => 1,
            Level::Reduced => 4,
            Level::Minimal => 16,
        }
    }

    /// The network sensor decodes one frame in this many; 0 means decoding is paused.
    pub fn network_sample_every(self) -> u32 {
        match self {
            Level::Normal => 1,
            Level::Reduced => 4,
            Level::Minimal => 0,
        }
    }

    /// The batch size to use instead of the configured one.
    pub fn batch_size(self, configured: usize) -> usize {
        match self {
            Level::Normal => configured,
            Level::Reduced => (configured / 4).max(1),
            Level::Minimal => (configured / 16).max(1),
        }
    }

    /// What this level changes, in words (for `status`, heartbeats and logs).
    pub fn effects(self) -> &'static str {
        match self {
            Level::Normal => "none",
            Level::Reduced => {
                "process and inventory scans 4x less often; network frames sampled 1 in 4; report batches a quarter of the configured size"
            }
            Level::Minimal => {
                "process and inventory scans 16x less often; network decoding paused; report batches a sixteenth of the configured size"
            }
        }
    }
}

/// The budget's settings (`[budget]` in the configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// Whether the agent degrades at all (it always measures).
    pub enabled: bool,
    /// CPU budget, percent of one core, averaged over `window`.
    pub cpu_percent: f64,
    /// Resident memory budget, bytes.
    pub rss_bytes: u64,
    /// The averaging window, and the least time between two level changes.
    pub window: Duration,
    /// How often the shell samples.
    pub sample_interval: Duration,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            enabled: true,
            cpu_percent: 2.0,
            rss_bytes: 50 * 1024 * 1024,
            window: Duration::from_secs(60),
            sample_interval: Duration::from_secs(5),
        }
    }
}

/// One measurement of the agent process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used since the process started (user + system, all threads), ms.
    pub cpu_ms: u64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

/// Share of the budget under which the agent recovers a level (CPU).
const RECOVER_CPU_SHARE: f64 = 0.5;
/// Share of the budget under which the agent recovers a level (RSS).
const RECOVER_RSS_SHARE: f64 = 0.8;

/// The budget's decision core: samples and time in, level out.
#[derive(Debug)]
pub struct Controller {
    config: BudgetConfig,
    /// (time ms, cumulative CPU ms) since the current window started.
    samples: VecDeque<(i64, u64)>,
    level: Level,
    cpu_percent: Option<f64>,
    rss_bytes: u64,
    reason: String,
}

impl Controller {
    /// A controller at [`Level::Normal`] with no samples yet.
    pub fn new(config: BudgetConfig) -> Controller {
        Controller {
            config,
            samples: VecDeque::new(),
            level: Level::Normal,
            cpu_percent: None,
            rss_bytes: 0,
            reason: String::new(),
        }
    }

    /// Takes one sample; returns the new level when it changed.
    pub fn handle_sample(&mut self, now_ms: i64, usage: Usage) -> Option<Level> {
        self.rss_bytes = usage.rss_bytes;
        let went_backwards = self
            .samples
            .back()
            .is_some_and(|&(at, cpu)| now_ms < at || usage.cpu_ms < cpu);
        if went_backwards {
            // A clock step or a counter that cannot be trusted: start the window again.
            self.samples.clear();
        }
        self.samples.push_back((now_ms, usage.cpu_ms));
        let window_ms = i64::try_from(self.config.window.as_millis()).unwrap_or(i64::MAX);
        // Keep exactly one sample at or before the window's start, so the average spans it.
        while self.samples.len() > 2 && self.samples[1].0 <= now_ms.saturating_sub(window_ms) {
            self.samples.pop_front();
        }
        let &(first_at, first_cpu) = self.samples.front()?;
        let span_ms = now_ms.saturating_sub(first_at);
        if span_ms < window_ms || span_ms <= 0 {
            return None;
        }
        let cpu_percent = (usage.cpu_ms.saturating_sub(first_cpu)) as f64 * 100.0 / span_ms as f64;
        self.cpu_percent = Some(cpu_percent);
        let rss_limit = self.config.rss_bytes as f64;
        let cpu_over = cpu_percent > self.config.cpu_percent;
        let rss_over = usage.rss_bytes as f64 > rss_limit;
        let calm = cpu_percent < self.config.cpu_percent * RECOVER_CPU_SHARE
            && (usage.rss_bytes as f64) < rss_limit * RECOVER_RSS_SHARE;
        let next = if !self.config.enabled {
            Level::Normal
        } else if (cpu_over || rss_over) && self.level < Level::Minimal {
            self.reason = match (cpu_over, rss_over) {
                (true, true) => "cpu and memory over budget",
                (true, false) => "cpu over budget",
                _ => "memory over budget",
            }
            .to_owned();
            Level::from_u8(self.level as u8 + 1)
        } else if calm && self.level > Level::Normal {
            self.reason = "load back inside the budget".to_owned();
            Level::from_u8(self.level as u8 - 1)
        } else {
            self.level
        };
        if next == self.level {
            return None;
        }
        self.level = next;
        // Judge the new level on a window of its own.
        self.samples.clear();
        self.samples.push_back((now_ms, usage.cpu_ms));
        Some(next)
    }

    /// The current level.
    pub fn level(&self) -> Level {
        self.level
    }

    /// What `status` and heartbeats show.
    pub fn report(&self) -> BudgetReport {
        BudgetReport {
            level: self.level,
            degraded: self.level != Level::Normal,
            enabled: self.config.enabled,
            cpu_percent: self.cpu_percent.map(|p| (p * 100.0).round() / 100.0),
            cpu_budget_percent: self.config.cpu_percent,
            rss_mb: (self.rss_bytes as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            rss_budget_mb: self.config.rss_bytes / (1024 * 1024),
            window_seconds: self.config.window.as_secs(),
            reason: self.reason.clone(),
            effects: self.level.effects().to_owned(),
        }
    }
}

/// The budget as `status` (and the status file) shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BudgetReport {
    /// Current level.
    pub level: Level,
    /// Whether the agent is holding back (`level` is not `normal`).
    pub degraded: bool,
    /// Whether degrading is enabled.
    pub enabled: bool,
    /// CPU over the last full window, percent of one core (none before the first window).
    pub cpu_percent: Option<f64>,
    /// The CPU budget.
    pub cpu_budget_percent: f64,
    /// Resident memory at the last sample, MiB.
    pub rss_mb: f64,
    /// The memory budget, MiB.
    pub rss_budget_mb: u64,
    /// The averaging window.
    pub window_seconds: u64,
    /// Why the level last changed.
    pub reason: String,
    /// What the current level changes.
    pub effects: String,
}

impl BudgetReport {
    /// One line for the heartbeat's sensor detail and blind spot.
    pub fn summary(&self) -> String {
        let cpu = self
            .cpu_percent
            .map_or_else(|| "not yet measured".to_owned(), |p| format!("{p:.2} %"));
        format!(
            "{:?}: cpu {cpu} of {} % over {} s, rss {:.1} of {} MiB; {}",
            self.level,
            self.cpu_budget_percent,
            self.window_seconds,
            self.rss_mb,
            self.rss_budget_mb,
            if self.degraded {
                format!("{} ({})", self.effects, self.reason)
            } else {
                "nothing held back".to_owned()
            }
        )
        .to_lowercase()
    }
}

/// The level shared with the sensors and the transport.
#[derive(Debug, Default)]
pub struct Throttle {
    level: AtomicU8,
}

impl Throttle {
    /// The current level.
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    /// Sets the level (the budget task does).
    pub fn set(&self, level: Level) {
        self.level.store(level as u8, Ordering::Relaxed);
    }
}

/// Reads the agent's own CPU time and RSS from `/proc/self` (Linux); `None` elsewhere or when
/// `/proc` is not readable.
pub fn measure() -> Option<Usage> {
    #[cfg(target_os = "linux")]
    {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let ticks = rustix::param::clock_ticks_per_second().max(1);
        Some(Usage {
            cpu_ms: parse_cpu_ticks(&stat)?.saturating_mul(1000) / ticks,
            rss_bytes: parse_vm_rss(&status)?,
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// `utime + stime` (clock ticks) of a `/proc/PID/stat` line. The command name may hold spaces
/// and parentheses, so fields are counted after the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After `)`: state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    // utime(14) stime(15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime.saturating_add(stime))
}

/// `VmRSS` of a `/proc/PID/status` text, bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb.saturating_mul(1024))
}

#[cfg(test)]
mod tests;
