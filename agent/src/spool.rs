//! The queue between the sensors and the transport, with enqueue / lease / commit semantics.
//!
//! Invariants:
//! - An observation leaves the spool only when the collector acknowledged its id (`commit`) or when
//!   it is dropped to respect the bound, and then it is counted per reason and kind.
//! - A lease that fails (`release`) puts the observations back at the front, in order, so they are
//!   resent; the collector stores ids once, so a resend after a lost ack is harmless.
//! - Bounded: at most `max_observations` waiting plus leased; overflow drops the oldest waiting ones.
//!
//! This version keeps the queue in memory: observations survive collector outages but not an agent
//! restart. The durable on-disk format (issue 6) replaces the storage behind this same API.

use std::collections::{BTreeMap, VecDeque};

use shadowai_proto::v1;

/// Why observations were dropped.
pub const DROP_SPOOL_FULL: &str = "spool_full";

/// The spool.
#[derive(Debug)]
pub struct Spool {
    waiting: VecDeque<Queued>,
    leased: Vec<Queued>,
    max_observations: usize,
    dropped: BTreeMap<(String, String), u64>,
}

#[derive(Debug)]
struct Queued {
    observation: v1::Observation,
    enqueued_at_ms: i64,
}

/// The kind of an observation, as counted in dropped counts.
pub fn kind_of(observation: &v1::Observation) -> &'static str {
    use v1::observation::Kind;
    match observation.kind {
        Some(Kind::ProcessSeen(_)) => "process",
        Some(Kind::Dns(_)) => "dns",
        Some(Kind::TlsSni(_)) => "tls_sni",
        Some(Kind::QuicSni(_)) => "quic_sni",
        Some(Kind::Config(_)) => "config",
        Some(Kind::Listener(_)) => "listener",
        Some(Kind::App(_)) => "app",
        None => "unknown",
    }
}

impl Spool {
    /// An empty spool holding at most `max_observations`.
    pub fn new(max_observations: usize) -> Self {
        Self {
            waiting: VecDeque::new(),
            leased: Vec::new(),
            max_observations: max_observations.max(1),
            dropped: BTreeMap::new(),
        }
    }

    /// Adds an observation, dropping (and counting) the oldest waiting one when full.
    pub fn enqueue(&mut self, observation: v1::Observation, now_ms: i64) {
        while self.waiting.len() + self.leased.len() >= self.max_observations {
            let Some(oldest) = self.waiting.pop_front() else {
                // Everything is leased: the newest is the one that cannot be kept.
                self.count_drop(DROP_SPOOL_FULL, kind_of(&observation));
                return;
            };
            self.count_drop(DROP_SPOOL_FULL, kind_of(&oldest.observation));
        }
        self.waiting.push_back(Queued {
            observation,
            enqueued_at_ms: now_ms,
        });
    }

    /// Leases up to `max` observations for sending. Only one lease is outstanding at a time:
    /// returns nothing while a previous lease is neither committed nor released.
    pub fn lease(&mut self, max: usize) -> Vec<v1::Observation> {
        if !self.leased.is_empty() {
            return Vec::new();
        }
        let take = max.min(self.waiting.len());
        self.leased.extend(self.waiting.drain(..take));
        self.leased.iter().map(|q| q.observation.clone()).collect()
    }

    /// Forgets the leased observations whose ids the collector acknowledged; any leased ones not
    /// acknowledged go back to the front of the queue.
    pub fn commit(&mut self, acknowledged: &[String]) {
        let acknowledged: std::collections::HashSet<&str> =
            acknowledged.iter().map(String::as_str).collect();
        let leased = std::mem::take(&mut self.leased);
        let unacknowledged: Vec<Queued> = leased
            .into_iter()
            .filter(|q| !acknowledged.contains(q.observation.id.as_str()))
            .collect();
        for queued in unacknowledged.into_iter().rev() {
            self.waiting.push_front(queued);
        }
    }

    /// Drops the leased observations (the collector refused them for good), counting them.
    pub fn drop_leased(&mut self, reason: &str) {
        for queued in std::mem::take(&mut self.leased) {
            self.count_drop(reason, kind_of(&queued.observation));
        }
    }

    /// Returns a failed lease to the front of the queue.
    pub fn release(&mut self) {
        self.commit(&[]);
    }

    /// Observations waiting or in flight.
    pub fn depth(&self) -> usize {
        self.waiting.len() + self.leased.len()
    }

    /// Age of the oldest observation, ms (0 when empty).
    pub fn oldest_age_ms(&self, now_ms: i64) -> u64 {
        let oldest = self
            .leased
            .first()
            .or(self.waiting.front())
            .map(|q| q.enqueued_at_ms);
        oldest.map_or(0, |at| {
            u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0)
        })
    }

    /// The dropped counts since the last call, to report in a heartbeat.
    pub fn take_dropped(&mut self) -> Vec<v1::DroppedCount> {
        std::mem::take(&mut self.dropped)
            .into_iter()
            .map(|((reason, kind), count)| v1::DroppedCount {
                reason,
                kind,
                count,
            })
            .collect()
    }

    /// Puts dropped counts back when the heartbeat carrying them failed.
    pub fn restore_dropped(&mut self, counts: Vec<v1::DroppedCount>) {
        for count in counts {
            *self.dropped.entry((count.reason, count.kind)).or_default() += count.count;
        }
    }

    fn count_drop(&mut self, reason: &str, kind: &str) {
        *self
            .dropped
            .entry((reason.to_owned(), kind.to_owned()))
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation(id: &str) -> v1::Observation {
        v1::Observation {
            id: id.into(),
            kind: Some(v1::observation::Kind::Dns(v1::DnsObservation::default())),
            ..Default::default()
        }
    }

    fn ids(observations: &[v1::Observation]) -> Vec<&str> {
        observations.iter().map(|o| o.id.as_str()).collect()
    }

    #[test]
    fn lease_commit_release_keep_order_and_lose_nothing() {
        let mut spool = Spool::new(10);
        for id in ["a", "b", "c"] {
            spool.enqueue(observation(id), 0);
        }
        let batch = spool.lease(2);
        assert_eq!(ids(&batch), ["a", "b"]);
        assert!(spool.lease(2).is_empty(), "one lease at a time");
        spool.release();
        assert_eq!(ids(&spool.lease(10)), ["a", "b", "c"]);
        // partial acknowledgement: b is resent first
        spool.commit(&["a".into(), "c".into()]);
        assert_eq!(ids(&spool.lease(10)), ["b"]);
        spool.commit(&["b".into()]);
        assert_eq!(spool.depth(), 0);
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts_them() {
        let mut spool = Spool::new(2);
        for id in ["a", "b", "c", "d"] {
            spool.enqueue(observation(id), 0);
        }
        assert_eq!(ids(&spool.lease(10)), ["c", "d"]);
        let dropped = spool.take_dropped();
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            (
                dropped[0].reason.as_str(),
                dropped[0].kind.as_str(),
                dropped[0].count
            ),
            ("spool_full", "dns", 2)
        );
        assert!(spool.take_dropped().is_empty());
    }
}
