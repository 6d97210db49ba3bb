//! Admission control for agents: the collector says "not now" (RESOURCE_EXHAUSTED with a
//! `retry-after` in seconds) instead of queueing without bound.
//!
//! Three limits, all answered at once, never by waiting in a queue inside the collector:
//! - **per-agent rate**: a token bucket per agent id, costed in observations, so one agent draining
//!   a full spool cannot take the store from everyone else;
//! - **concurrent ingest transactions**: a semaphore taken with `try_acquire` around the store
//!   transaction of a report; a report that finds no permit is shed at once;
//! - **TLS handshakes per second**, collector-wide: the accept loop takes one token per connection
//!   and otherwise leaves connections in the kernel's accept queue (bounded by the listen backlog),
//!   so a fleet reconnecting after an outage is admitted at a steady rate and TLS work stays bounded.
//!
//! The buckets are sans-IO: time is a parameter. Counters are plain atomics that a metrics exporter
//! can read ([`AdmissionCounters`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::validate::MAX_BATCH_OBSERVATIONS;

/// Most agents whose bucket is tracked at once. A bucket that has refilled is forgotten (it is the
/// same as a new one), so this bounds memory only when more agents than this are all busy; past
/// it, new agents are admitted untracked (counted in `agents_untracked`).
const MAX_TRACKED_AGENTS: usize = 200_000;
/// Longest `retry-after` the collector asks for, seconds.
const MAX_RETRY_AFTER_SECONDS: u64 = 300;

/// The limits, as configured (`[ingest_limits]` in the collector config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Sustained observations per second one agent may report.
    pub agent_observations_per_second: u32,
    /// Observations one agent may report at once after being quiet (bucket size); at least a full batch.
    pub agent_observation_burst: u32,
    /// Report transactions in the store at once, collector-wide.
    pub max_concurrent_ingest: u32,
    /// New agent connections (TLS handshakes) per second, collector-wide.
    pub handshakes_per_second: u32,
    /// Handshakes admitted at once after a quiet period (bucket size).
    pub handshake_burst: u32,
}

impl Default for LimitsConfig {
    /// Defaults for a 2-core collector: ~100 k observations/s in total needs far fewer than 16
    /// concurrent transactions; 200 handshakes/s costs a few percent of one core and brings 10 k
    /// agents back in under a minute.
    fn default() -> Self {
        Self {
            agent_observations_per_second: 2_000,
            agent_observation_burst: 20_000,
            max_concurrent_ingest: 16,
            handshakes_per_second: 200,
            handshake_burst: 50,
        }
    }
}

impl LimitsConfig {
    /// Checks the values; the error names the key and what to fix.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            (
                "ingest_limits.agent_observations_per_second",
                self.agent_observations_per_second,
            ),
            (
                "ingest_limits.max_concurrent_ingest",
                self.max_concurrent_ingest,
            ),
            (
                "ingest_limits.handshakes_per_second",
                self.handshakes_per_second,
            ),
            ("ingest_limits.handshake_burst", self.handshake_burst),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if (self.agent_observation_burst as usize) < MAX_BATCH_OBSERVATIONS {
            return Err((
                "ingest_limits.agent_observation_burst",
                format!("must be at least {MAX_BATCH_OBSERVATIONS} (one full batch)"),
            ));
        }
        if self.max_concurrent_ingest > 4_096 {
            return Err((
                "ingest_limits.max_concurrent_ingest",
                "must be at most 4096".into(),
            ));
        }
        Ok(())
    }
}

/// Counts of what admission control did, since start. Read by metrics and logs.
#[derive(Debug, Default)]
pub struct AdmissionCounters {
    /// Reports refused because the agent was over its rate.
    pub shed_agent_rate: AtomicU64,
    /// Reports refused because every ingest permit was taken.
    pub shed_concurrency: AtomicU64,
    /// TLS handshakes admitted by the accept loop.
    pub handshakes_admitted: AtomicU64,
    /// Times the accept loop waited for a handshake token.
    pub handshakes_paced: AtomicU64,
    /// Reports admitted without a bucket because too many agents were tracked.
    pub agents_untracked: AtomicU64,
}

/// Why a report is not admitted now, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The agent is over its own rate.
    AgentRate { retry_after_seconds: u64 },
    /// The collector is at its concurrent-transaction limit.
    Busy { retry_after_seconds: u64 },
}

impl Shed {
    /// Seconds the agent should wait (the `retry-after` metadata).
    pub fn retry_after_seconds(self) -> u64 {
        match self {
            Shed::AgentRate {
                retry_after_seconds,
            }
            | Shed::Busy {
                retry_after_seconds,
            } => retry_after_seconds,
        }
    }

    /// What the agent is told.
    pub fn message(self) -> &'static str {
        match self {
            Shed::AgentRate { .. } => "this agent is over its report rate; retry after the delay",
            Shed::Busy { .. } => "the collector is at capacity; retry after the delay",
        }
    }
}

/// The admission state of one collector process.
#[derive(Debug)]
pub struct Admission {
    config: LimitsConfig,
    ingest_permits: std::sync::Arc<Semaphore>,
    agents: AgentRateLimiter,
    /// What was admitted and shed.
    pub counters: AdmissionCounters,
}

impl Default for Admission {
    fn default() -> Self {
        Self::new(LimitsConfig::default())
    }
}

impl Admission {
    /// Admission state for `config` (assumed validated).
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            config,
            ingest_permits: std::sync::Arc::new(Semaphore::new(
                config.max_concurrent_ingest as usize,
            )),
            agents: AgentRateLimiter::new(
                f64::from(config.agent_observations_per_second),
                f64::from(config.agent_observation_burst),
                MAX_TRACKED_AGENTS,
            ),
            counters: AdmissionCounters::default(),
        }
    }

    /// The configured limits.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Admits a report of `observations` from `agent_id`, or says when to retry. The permit must be
    /// held until the store transaction has ended. The global permit is taken first so that a
    /// report shed for capacity does not spend the agent's tokens.
    pub fn admit_report(
        &self,
        agent_id: Uuid,
        observations: usize,
        now: Instant,
    ) -> Result<OwnedSemaphorePermit, Shed> {
        let Ok(permit) = self.ingest_permits.clone().try_acquire_owned() else {
            self.counters
                .shed_concurrency
                .fetch_add(1, Ordering::Relaxed);
            return Err(Shed::Busy {
                retry_after_seconds: 1,
            });
        };
        match self.agents.take(agent_id, observations.max(1) as f64, now) {
            Taken::Yes => {}
            Taken::Untracked => {
                self.counters
                    .agents_untracked
                    .fetch_add(1, Ordering::Relaxed);
            }
            Taken::No(wait) => {
                self.counters
                    .shed_agent_rate
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Shed::AgentRate {
                    retry_after_seconds: retry_after_seconds(wait),
                });
            }
        }
        Ok(permit)
    }

    /// A fresh handshake bucket for one listener's accept loop.
    pub fn handshake_bucket(&self, now: Instant) -> TokenBucket {
        TokenBucket::new(
            f64::from(self.config.handshakes_per_second),
            f64::from(self.config.handshake_burst),
            now,
        )
    }
}

/// Whole seconds to wait, rounded up, at least 1 and at most `MAX_RETRY_AFTER_SECONDS`.
fn retry_after_seconds(wait: Duration) -> u64 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    seconds.clamp(1, MAX_RETRY_AFTER_SECONDS)
}

/// A token bucket: `rate` tokens per second up to `capacity`. Starts full.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, capacity: f64, now: Instant) -> Self {
        Self {
            rate,
            capacity,
            tokens: capacity,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
    }

    /// Takes `cost` tokens, or returns how long until they would be there.
    pub fn try_take(&mut self, cost: f64, now: Instant) -> Result<(), Duration> {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - self.tokens) / self.rate))
        }
    }

    /// Whether the bucket has refilled completely (it is then the same as a new one).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.capacity
    }
}

enum Taken {
    Yes,
    No(Duration),
    Untracked,
}

/// One token bucket per agent id, bounded in number.
#[derive(Debug)]
struct AgentRateLimiter {
    rate: f64,
    capacity: f64,
    max_agents: usize,
    buckets: Mutex<HashMap<Uuid, TokenBucket>>,
}

impl AgentRateLimiter {
    fn new(rate: f64, capacity: f64, max_agents: usize) -> Self {
        Self {
            rate,
            capacity,
            max_agents,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn take(&self, agent_id: Uuid, cost: f64, now: Instant) -> Taken {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !buckets.contains_key(&agent_id) && buckets.len() >= self.max_agents {
            // Full buckets carry no state: forget them before refusing to track a new agent.
            buckets.retain(|_, bucket| !bucket.is_full(now));
            if buckets.len() >= self.max_agents {
                return Taken::Untracked;
            }
        }
        let bucket = buckets
            .entry(agent_id)
            .or_insert_with(|| TokenBucket::new(self.rate, self.capacity, now));
        match bucket.try_take(cost, now) {
            Ok(()) => Taken::Yes,
            Err(wait) => Taken::No(wait),
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.lock().map(|b| b.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_its_rate_and_says_how_long_to_wait() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10.0, 5.0, start);
        for _ in 0..5 {
            assert!(bucket.try_take(1.0, start).is_ok());
        }
        let wait = bucket.try_take(1.0, start).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.1).abs() < 1e-9,
            "one token at 10/s is 100 ms away, got {wait:?}"
        );
        assert!(
            bucket
                .try_take(1.0, start + Duration::from_millis(100))
                .is_ok()
        );
        assert!(!bucket.is_full(start + Duration::from_millis(100)));
        // never above capacity, however long it was idle
        let later = start + Duration::from_secs(3600);
        assert!(bucket.is_full(later));
        assert!(bucket.try_take(5.0, later).is_ok());
        assert!(bucket.try_take(1.0, later).is_err());
    }

    #[test]
    fn an_agent_over_its_rate_is_shed_with_a_retry_after_and_others_are_not() {
        let admission = Admission::new(LimitsConfig {
            agent_observations_per_second: 1_000,
            agent_observation_burst: 2_000,
            ..LimitsConfig::default()
        });
        let now = Instant::now();
        let (noisy, quiet) = (Uuid::now_v7(), Uuid::now_v7());
        drop(admission.admit_report(noisy, 1_000, now).unwrap());
        drop(admission.admit_report(noisy, 1_000, now).unwrap());
        let shed = admission.admit_report(noisy, 1_000, now).unwrap_err();
        assert_eq!(
            shed,
            Shed::AgentRate {
                retry_after_seconds: 1
            }
        );
        assert!(admission.admit_report(quiet, 1_000, now).is_ok());
        // 0.5 s later half a batch has refilled: still 1 s (rounded up); 1 s later it passes
        assert!(
            admission
                .admit_report(noisy, 1_000, now + Duration::from_millis(500))
                .is_err()
        );
        assert!(
            admission
                .admit_report(noisy, 1_000, now + Duration::from_millis(1_000))
                .is_ok()
        );
        assert_eq!(
            admission.counters.shed_agent_rate.load(Ordering::Relaxed),
            2
        );
    }

    #[test]
    fn concurrency_is_refused_at_once_and_a_shed_report_spends_no_tokens() {
        let admission = Admission::new(LimitsConfig {
            max_concurrent_ingest: 2,
            agent_observation_burst: 1_000,
            ..LimitsConfig::default()
        });
        let now = Instant::now();
        let agent = Uuid::now_v7();
        let first = admission.admit_report(Uuid::now_v7(), 1, now).unwrap();
        let second = admission.admit_report(Uuid::now_v7(), 1, now).unwrap();
        let shed = admission.admit_report(agent, 1_000, now).unwrap_err();
        assert_eq!(
            shed,
            Shed::Busy {
                retry_after_seconds: 1
            }
        );
        drop((first, second));
        // the shed attempt took nothing from the agent's full bucket
        assert!(admission.admit_report(agent, 1_000, now).is_ok());
        assert_eq!(
            admission.counters.shed_concurrency.load(Ordering::Relaxed),
            1
        );
    }

    #[test]
    fn tracked_agents_are_bounded_and_refilled_buckets_are_forgotten() {
        let limiter = AgentRateLimiter::new(10.0, 10.0, 3);
        let now = Instant::now();
        for _ in 0..3 {
            assert!(matches!(limiter.take(Uuid::now_v7(), 5.0, now), Taken::Yes));
        }
        // all three are mid-bucket: a fourth is admitted but not tracked
        assert!(matches!(
            limiter.take(Uuid::now_v7(), 5.0, now),
            Taken::Untracked
        ));
        assert_eq!(limiter.tracked(), 3);
        // once they refilled they are forgotten and the newcomer gets a bucket
        let later = now + Duration::from_secs(1);
        assert!(matches!(
            limiter.take(Uuid::now_v7(), 5.0, later),
            Taken::Yes
        ));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_capped() {
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1_001)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(86_400)), 300);
    }

    #[test]
    fn config_values_are_checked() {
        assert!(LimitsConfig::default().validate().is_ok());
        let small_burst = LimitsConfig {
            agent_observation_burst: 10,
            ..LimitsConfig::default()
        };
        assert_eq!(
            small_burst.validate().unwrap_err().0,
            "ingest_limits.agent_observation_burst"
        );
        let no_handshakes = LimitsConfig {
            handshakes_per_second: 0,
            ..LimitsConfig::default()
        };
        assert_eq!(
            no_handshakes.validate().unwrap_err().0,
            "ingest_limits.handshakes_per_second"
        );
    }
}
