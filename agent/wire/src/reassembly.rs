//! Bounded reassembly: a byte buffer that accepts out-of-order pieces (TCP segments, QUIC CRYPTO
//! frames) and a flow table with a hard size, FIFO eviction and idle expiry.
//!
//! Memory bounds: a [`Reassembler`] never holds more than the `max` its caller passes (the flow's
//! byte limit) nor more than [`MAX_RANGES`] disjoint pieces; a [`FlowTable`] never holds more than
//! its capacity, and its eviction queue at most twice that. A SYN flood or a storm of fragments
//! therefore costs evictions, never memory.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Most disjoint pieces held while waiting for a hole to fill (Chromium's "chaos protection"
/// splits a hello in a dozen or so CRYPTO frames; more than this is treated as hostile).
pub const MAX_RANGES: usize = 64;

/// A stream buffer from offset 0 (the caller's origin) with holes.
#[derive(Debug, Default, Clone)]
pub struct Reassembler {
    data: Vec<u8>,
    /// Received ranges `[start, end)`, sorted, disjoint and not touching.
    ranges: Vec<(usize, usize)>,
}

impl Reassembler {
    /// An empty buffer (allocates nothing until bytes arrive).
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// Stores `bytes` at `offset`; anything past `max` is not stored. Returns the number of
    /// bytes dropped (past `max`, or all of them if the piece would exceed [`MAX_RANGES`]).
    /// Overlapping bytes overwrite earlier ones.
    pub fn insert(&mut self, offset: usize, bytes: &[u8], max: usize) -> usize {
        if offset >= max || bytes.is_empty() {
            return bytes.len();
        }
        let keep = bytes.len().min(max - offset);
        let dropped = bytes.len() - keep;
        let Some(kept) = bytes.get(..keep) else {
            return bytes.len();
        };
        let (start, end) = (offset, offset + keep);
        // merge with every range that overlaps or touches [start, end)
        let first = self.ranges.partition_point(|r| r.1 < start);
        let last = self.ranges.partition_point(|r| r.0 <= end);
        if first == last && self.ranges.len() >= MAX_RANGES {
            return bytes.len();
        }
        let merged_start = self.ranges.get(first).map_or(start, |r| r.0.min(start));
        let merged_end = last
            .checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .map_or(end, |r| r.1.max(end));
        if first < last {
            self.ranges.drain(first..last);
        }
        self.ranges.insert(first, (merged_start, merged_end));
        if self.data.len() < end {
            self.data.resize(end, 0);
        }
        if let Some(dst) = self.data.get_mut(start..end) {
            dst.copy_from_slice(kept);
        }
        dropped
    }

    /// The bytes received without a hole from offset 0.
    pub fn contiguous(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, end)) => self.data.get(..end).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Drops the first `n` bytes (at most the contiguous ones); offsets shift down by `n`.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.contiguous().len());
        if n == 0 {
            return;
        }
        self.data.drain(..n);
        self.ranges.retain_mut(|r| {
            r.0 = r.0.saturating_sub(n);
            r.1 = r.1.saturating_sub(n);
            r.1 > r.0
        });
    }

    /// Bytes currently allocated for data.
    pub fn buffered(&self) -> usize {
        self.data.len()
    }

    /// Number of disjoint pieces held.
    pub fn pieces(&self) -> usize {
        self.ranges.len()
    }
}

struct Slot<V> {
    value: V,
    last_seen: i64,
    generation: u64,
}

/// A hash map with a hard capacity: inserting into a full table expires idle entries (at most
/// once per `idle_timeout / 4` of capture time) and otherwise evicts the oldest inserted entry.
///
/// Keys are hashed with foldhash, seeded per table: about a third of SipHash's cost on a pair of
/// socket addresses (the bulk-TCP hot path looks every segment up once a flow is tracked), and
/// an attacker who cannot see the seed cannot aim collisions at it; the capacity bounds the
/// damage anyway.
pub struct FlowTable<K, V> {
    map: HashMap<K, Slot<V>, foldhash::fast::RandomState>,
    order: VecDeque<(K, u64)>,
    capacity: usize,
    idle_timeout_ms: i64,
    next_generation: u64,
    last_sweep_ms: i64,
}

impl<K: Hash + Eq + Copy, V> FlowTable<K, V> {
    /// An empty table holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize, idle_timeout_ms: i64) -> FlowTable<K, V> {
        FlowTable {
            map: HashMap::with_hasher(foldhash::fast::RandomState::default()),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            idle_timeout_ms,
            next_generation: 0,
            last_sweep_ms: i64::MIN,
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// No entries: lets the hot path skip hashing.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The entry of `key`, marked as seen at `now_ms`.
    #[inline]
    pub fn get_mut(&mut self, key: &K, now_ms: i64) -> Option<&mut V> {
        let slot = self.map.get_mut(key)?;
        slot.last_seen = slot.last_seen.max(now_ms);
        Some(&mut slot.value)
    }

    /// Inserts (or replaces) `key`. Returns `(expired, evicted)`: entries dropped for idleness
    /// and entries dropped to make room.
    pub fn insert(&mut self, key: K, value: V, now_ms: i64) -> (u64, u64) {
        let mut expired = 0;
        let mut evicted = 0;
        if !self.map.contains_key(&key) && self.map.len() >= self.capacity {
            if now_ms.saturating_sub(self.last_sweep_ms) >= (self.idle_timeout_ms / 4).max(1) {
                expired = self.expire(now_ms);
            }
            while self.map.len() >= self.capacity {
                let Some((old, generation)) = self.order.pop_front() else {
                    break;
                };
                if self
                    .map
                    .get(&old)
                    .is_some_and(|s| s.generation == generation)
                {
                    self.map.remove(&old);
                    evicted += 1;
                }
            }
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.map.insert(
            key,
            Slot {
                value,
                last_seen: now_ms,
                generation,
            },
        );
        self.order.push_back((key, generation));
        if self.order.len() > self.capacity * 2 + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, g)| map.get(k).is_some_and(|s| s.generation == *g));
        }
        (expired, evicted)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.map.remove(key).map(|s| s.value)
    }

    /// Drops entries not seen for longer than the idle timeout; returns how many.
    pub fn expire(&mut self, now_ms: i64) -> u64 {
        self.expire_with(now_ms, |_, _| {})
    }

    /// [`FlowTable::expire`], handing each dropped entry to `on_drop` first.
    pub fn expire_with(&mut self, now_ms: i64, mut on_drop: impl FnMut(&K, &V)) -> u64 {
        self.last_sweep_ms = now_ms;
        let before = self.map.len();
        let timeout = self.idle_timeout_ms;
        self.map.retain(|k, s| {
            let keep = now_ms.saturating_sub(s.last_seen) <= timeout;
            if !keep {
                on_drop(k, &s.value);
            }
            keep
        });
        let removed = before - self.map.len();
        if removed > 0 {
            let map = &self.map;
            self.order
                .retain(|(k, g)| map.get(k).is_some_and(|s| s.generation == *g));
        }
        removed as u64
    }

    /// Every value, for accounting (order unspecified).
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|s| &s.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_pieces_join() {
        let mut r = Reassembler::new();
        assert_eq!(r.insert(5, b"fghij", 100), 0);
        assert_eq!(r.contiguous(), b"");
        assert_eq!(r.insert(0, b"abc", 100), 0);
        assert_eq!(r.contiguous(), b"abc");
        assert_eq!(r.pieces(), 2);
        assert_eq!(r.insert(2, b"cde", 100), 0); // overlap + touch both sides
        assert_eq!(r.contiguous(), b"abcdefghij");
        assert_eq!(r.pieces(), 1);
        r.consume(4);
        assert_eq!(r.contiguous(), b"efghij");
        assert_eq!(r.insert(6, b"kl", 100), 0);
        assert_eq!(r.contiguous(), b"efghijkl");
    }

    #[test]
    fn bounded_by_max_and_pieces() {
        let mut r = Reassembler::new();
        assert_eq!(r.insert(8, b"abcd", 10), 2);
        assert_eq!(r.insert(10, b"x", 10), 1);
        assert_eq!(r.buffered(), 10);
        let mut r = Reassembler::new();
        for i in 0..MAX_RANGES {
            assert_eq!(r.insert(2 * i + 1, b"x", 10_000), 0);
        }
        assert_eq!(
            r.insert(1000, b"y", 10_000),
            1,
            "one piece too many is refused"
        );
        assert_eq!(
            r.insert(0, b"z", 10_000),
            0,
            "a piece that merges is still taken"
        );
    }

    #[test]
    fn table_never_grows_past_capacity() {
        let mut t: FlowTable<u32, u32> = FlowTable::new(4, 1000);
        let mut evicted = 0;
        for k in 0..1000u32 {
            evicted += t.insert(k, k, 0).1;
            assert!(t.len() <= 4);
            assert!(t.order.len() <= 4 * 2 + 16);
        }
        assert_eq!(evicted, 996);
        // FIFO: the newest survive
        assert!(t.get_mut(&999, 0).is_some() && t.get_mut(&0, 0).is_none());
        // re-inserting and removing keeps the queue bounded
        for k in 0..1000u32 {
            t.insert(k % 3, k, 0);
            t.remove(&(k % 3));
            assert!(t.order.len() <= 4 * 2 + 16);
        }
        let held = t.len() as u64;
        assert_eq!(t.expire(5000), held);
        assert!(t.is_empty());
    }

    #[test]
    fn idle_entries_expire_first_when_full() {
        let mut t: FlowTable<u32, ()> = FlowTable::new(2, 100);
        t.insert(1, (), 0);
        t.insert(2, (), 150);
        let (expired, evicted) = t.insert(3, (), 200);
        assert_eq!((expired, evicted), (1, 0));
        assert!(t.get_mut(&2, 200).is_some());
    }
}
