//! Login rate limiting and lockout, per user name and per source address.
//!
//! Sans-IO: the caller passes the time. Failed sign-ins are counted in a sliding window
//! (`WINDOW_MS`); a user name with `USER_FAILURES` failures, or an address with `ADDRESS_FAILURES`,
//! is locked for `LOCKOUT_MS` from its last failure. While locked, every attempt is refused with
//! the same answer whether or not the password is right (and whether or not the user exists), so
//! guessing cannot continue and the lock says nothing about which names exist. A successful
//! sign-in clears the user's failures (not the address's).
//!
//! Memory is bounded: at most `MAX_TRACKED` names and addresses each; when full, the entry whose
//! last failure is oldest is forgotten. The state is per collector process (a restart forgets it).

use std::collections::HashMap;
use std::sync::Mutex;

/// Failures of one user name that lock it.
pub const USER_FAILURES: usize = 5;
/// Failures from one address that lock it (several people may share a NAT address).
pub const ADDRESS_FAILURES: usize = 20;
/// The window failures are counted in, ms.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// How long a lock lasts after the last failure, ms.
pub const LOCKOUT_MS: i64 = 15 * 60 * 1000;
/// Most user names and addresses tracked each.
const MAX_TRACKED: usize = 10_000;

/// Failure times of one key, oldest first (at most the threshold's worth are kept).
#[derive(Debug, Default)]
struct Failures {
    times: Vec<i64>,
}

impl Failures {
    fn locked_until(&self, threshold: usize, now_ms: i64) -> Option<i64> {
        let recent = self
            .times
            .iter()
            .filter(|at| now_ms - **at < WINDOW_MS)
            .count();
        let last = *self.times.last()?;
        (recent >= threshold && now_ms < last + LOCKOUT_MS).then_some(last + LOCKOUT_MS)
    }

    fn record(&mut self, threshold: usize, now_ms: i64) {
        self.times.retain(|at| now_ms - *at < WINDOW_MS);
        self.times.push(now_ms);
        if self.times.len() > threshold {
            let extra = self.times.len() - threshold;
            self.times.drain(..extra);
        }
    }

    fn last(&self) -> i64 {
        self.times.last().copied().unwrap_or(i64::MIN)
    }
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Failures>,
}

impl Table {
    fn locked_until(&self, key: &str, threshold: usize, now_ms: i64) -> Option<i64> {
        self.entries.get(key)?.locked_until(threshold, now_ms)
    }

    fn record(&mut self, key: &str, threshold: usize, now_ms: i64) {
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_TRACKED {
            self.entries
                .retain(|_, failures| now_ms - failures.last() < WINDOW_MS.max(LOCKOUT_MS));
            if self.entries.len() >= MAX_TRACKED {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, failures)| failures.last())
                    .map(|(key, _)| key.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries
            .entry(key.to_owned())
            .or_default()
            .record(threshold, now_ms);
    }
}

/// The login throttle shared by every request of one collector.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    state: Mutex<(Table, Table)>,
}

impl LoginThrottle {
    /// Until when (Unix ms) sign-ins for `user` from `address` are refused, if they are now.
    pub fn locked_until(&self, user: &str, address: &str, now_ms: i64) -> Option<i64> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (users, addresses) = &*state;
        let by_user = users.locked_until(&user_key(user), USER_FAILURES, now_ms);
        let by_address = addresses.locked_until(address, ADDRESS_FAILURES, now_ms);
        by_user.max(by_address)
    }

    /// Counts a failed sign-in.
    pub fn record_failure(&self, user: &str, address: &str, now_ms: i64) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (users, addresses) = &mut *state;
        users.record(&user_key(user), USER_FAILURES, now_ms);
        addresses.record(address, ADDRESS_FAILURES, now_ms);
    }

    /// Clears a user's failures after a successful sign-in.
    pub fn record_success(&self, user: &str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0.entries.remove(&user_key(user));
    }
}

/// User names are counted case-insensitively and capped, so that variants of one name share a
/// counter and a long name cannot make an entry large.
fn user_key(user: &str) -> String {
    user.chars()
        .take(128)
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_750_000_000_000;

    #[test]
    fn a_user_is_locked_after_five_failures_and_unlocked_later() {
        let throttle = LoginThrottle::default();
        for i in 0..4 {
            throttle.record_failure("alice", "10.0.0.1", T + i);
            assert_eq!(throttle.locked_until("alice", "10.0.0.9", T + i), None);
        }
        throttle.record_failure("Alice", "10.0.0.2", T + 4);
        // locked by name, from any address
        assert_eq!(
            throttle.locked_until("alice", "10.0.0.9", T + 5),
            Some(T + 4 + LOCKOUT_MS)
        );
        assert_eq!(throttle.locked_until("bob", "10.0.0.9", T + 5), None);
        assert_eq!(
            throttle.locked_until("alice", "x", T + 4 + LOCKOUT_MS),
            None
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let throttle = LoginThrottle::default();
        for i in 0..4 {
            throttle.record_failure("alice", "a", T + i);
        }
        let later = T + WINDOW_MS + 10;
        throttle.record_failure("alice", "a", later);
        assert_eq!(throttle.locked_until("alice", "a", later + 1), None);
    }

    #[test]
    fn an_address_is_locked_after_twenty_failures_across_names() {
        let throttle = LoginThrottle::default();
        for i in 0..20 {
            throttle.record_failure(&format!("user{i}"), "192.0.2.7", T + i);
        }
        assert!(
            throttle
                .locked_until("someone", "192.0.2.7", T + 30)
                .is_some()
        );
        assert!(
            throttle
                .locked_until("someone", "192.0.2.8", T + 30)
                .is_none()
        );
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let throttle = LoginThrottle::default();
        for i in 0..4 {
            throttle.record_failure("alice", "a", T + i);
        }
        throttle.record_success("alice");
        throttle.record_failure("alice", "a", T + 10);
        assert_eq!(throttle.locked_until("alice", "b", T + 11), None);
    }

    #[test]
    fn memory_is_bounded() {
        let throttle = LoginThrottle::default();
        for i in 0..(MAX_TRACKED as i64 + 50) {
            throttle.record_failure(&format!("u{i}"), &format!("a{i}"), T + i);
        }
        let state = throttle.state.lock().unwrap();
        assert!(state.0.entries.len() <= MAX_TRACKED);
        assert!(state.1.entries.len() <= MAX_TRACKED);
    }
}
