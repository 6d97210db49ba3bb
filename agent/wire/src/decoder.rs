//! The frame decoder: link → IP → transport → DNS / TLS / QUIC, with bounded flow tables.

use crate::{DecoderStats, Event, Limits, LinkType};

/// Turns captured frames into [`Event`]s. Holds bounded per-flow state; no IO, no clock.
pub struct Decoder {
    limits: Limits,
    stats: DecoderStats,
}

impl Decoder {
    /// A decoder whose tables stay within `limits`.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            stats: DecoderStats::default(),
        }
    }

    /// One captured frame (owned by the caller) → zero or more events pushed to `out`. Never panics.
    pub fn decode(&mut self, link: LinkType, ts_ms: i64, frame: &[u8], out: &mut Vec<Event>) {
        let _ = (link, ts_ms, frame, out, self.limits);
        self.stats.frames += 1;
    }

    /// Drops flows idle longer than the timeout (call ~1/s); also called internally when full.
    pub fn expire(&mut self, now_ms: i64) {
        let _ = now_ms;
    }

    /// Counters so far.
    pub fn stats(&self) -> &DecoderStats {
        &self.stats
    }
}
