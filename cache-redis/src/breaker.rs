//! The circuit breaker: when Redis is down or slow, operations fail fast with
//! [`StoreError::Unavailable`] instead of each paying a connect or response timeout, and the
//! cache answers from the origin.
//!
//! Closed: calls go through; `failure_threshold` consecutive unavailability errors open it,
//! and so does one *slow* failure (a call that used up its time budget: a hung server would
//! make every call after it wait as long).
//! Open: calls are refused at once for `cool_down`. Then half-open: one call is let through
//! as a probe (refused calls meanwhile); its success closes the breaker, its failure opens it
//! for another cool-down. Only unavailability counts as a failure: a server that answers with
//! an error is up.
//!
//! Logs: the state changes (`redis_circuit_open`, the outage's first `redis_circuit_half_open`,
//! `redis_circuit_closed` with the outage's length and counts) and, while Redis fails, one
//! `redis_circuit_summary` every 10 s with the calls that failed, were refused and probed;
//! never a line per call.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cache_core::store::StoreError;
use serde::Serialize;

/// When the breaker opens and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakerConfig {
    /// Consecutive unavailability errors that open the breaker. Default 5.
    pub failure_threshold: u32,
    /// How long it stays open before letting a probe through. Default 1 s.
    pub cool_down: Duration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(1),
        }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// One probe call is in flight; others are refused.
    HalfOpen,
}

/// What the breaker has seen, for tests, health checks and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CircuitStatus {
    /// The state now (an open breaker whose cool-down has ended reports `HalfOpen` only once a
    /// probe is in flight).
    pub state: CircuitState,
    /// Unavailability errors in a row (reset by any success).
    pub consecutive_failures: u32,
    /// Calls refused without reaching Redis.
    pub rejected: u64,
    /// Times the breaker opened (half-open probes that failed included).
    pub opened: u64,
}

/// How often at most the breaker logs a summary while Redis is failing.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, failures: u32 },
    HalfOpen { failures: u32 },
}

/// Counts for the log: since the last summary, and since the outage began.
#[derive(Debug)]
struct Tally {
    /// When the breaker last left the healthy state (the outage's start).
    since: Option<Instant>,
    /// When the last summary was logged.
    last_summary: Instant,
    /// Calls that reached Redis and failed, since the last summary.
    failed: u64,
    /// Calls refused, since the last summary.
    failed_fast: u64,
    /// Probes let through, since the last summary.
    probes: u64,
    /// Whether this outage has probed yet (only its first probe is logged at `info`).
    probed: bool,
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    config: CircuitBreakerConfig,
    /// Closed with no failure counted: the common case, decided without the lock.
    healthy: AtomicBool,
    state: Mutex<(State, Tally)>,
    rejected: AtomicU64,
    opened: AtomicU64,
}

/// Leave to make one call.
#[derive(Debug)]
pub(crate) enum Admission {
    /// The breaker is closed.
    Pass,
    /// The breaker was open and its cool-down ended: this call is the probe.
    Probe,
}

/// How a call that found the server unavailable failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// At once (connection refused, not connected yet): counted towards the threshold.
    Fast,
    /// After waiting (a timeout, a hung server): opens the breaker at once, since every call
    /// after it would wait as long.
    Slow,
}

impl CircuitBreaker {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            config: CircuitBreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            healthy: AtomicBool::new(true),
            state: Mutex::new((
                State::Closed { failures: 0 },
                Tally {
                    since: None,
                    last_summary: Instant::now(),
                    failed: 0,
                    failed_fast: 0,
                    probes: 0,
                    probed: false,
                },
            )),
            rejected: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (State, Tally)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through, or refuses it with [`StoreError::Unavailable`].
    pub(crate) fn admit(&self) -> Result<Admission, StoreError> {
        if self.healthy.load(Ordering::Acquire) {
            return Ok(Admission::Pass);
        }
        let mut guard = self.lock();
        let (state, tally) = &mut *guard;
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(Admission::Pass),
            State::Open { until, failures } if now >= until => {
                *state = State::HalfOpen { failures };
                tally.probes += 1;
                if std::mem::replace(&mut tally.probed, true) {
                    tracing::debug!(failures, "redis_circuit_half_open");
                } else {
                    tracing::info!(failures, "redis_circuit_half_open");
                }
                Ok(Admission::Probe)
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tally.failed_fast += 1;
                summarise(tally, state, now);
                // A short static text: refusing is the hot path of an outage.
                Err(StoreError::Refused("redis circuit breaker open"))
            }
        }
    }

    /// Records a call that reached a live server.
    pub(crate) fn success(&self) {
        if self.healthy.load(Ordering::Acquire) {
            return;
        }
        let mut guard = self.lock();
        let (state, tally) = &mut *guard;
        let was = std::mem::replace(state, State::Closed { failures: 0 });
        self.healthy.store(true, Ordering::Release);
        let outage = tally.since.take();
        match was {
            State::Closed { .. } => {}
            State::Open { .. } | State::HalfOpen { .. } => {
                tracing::info!(
                    outage_ms = outage.map_or(0, |t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
                    failed = tally.failed,
                    failed_fast = tally.failed_fast,
                    "redis_circuit_closed"
                );
            }
        }
        tally.failed = 0;
        tally.failed_fast = 0;
        tally.probes = 0;
        tally.probed = false;
    }

    /// Records a call that found the server unavailable.
    pub(crate) fn failure(&self, error: &StoreError, how: Failure) {
        let mut guard = self.lock();
        let (state, tally) = &mut *guard;
        let now = Instant::now();
        self.healthy.store(false, Ordering::Release);
        if tally.since.is_none() {
            tally.since = Some(now);
            tally.last_summary = now;
        }
        tally.failed += 1;
        let failures = match *state {
            State::Closed { failures } | State::Open { failures, .. } | State::HalfOpen { failures } => {
                failures.saturating_add(1)
            }
        };
        let open = match *state {
            State::Closed { .. } => how == Failure::Slow || failures >= self.config.failure_threshold,
            // A failed probe (or a call admitted before the breaker opened) re-opens it.
            State::HalfOpen { .. } => true,
            State::Open { .. } => false,
        };
        if open {
            let reopened = matches!(*state, State::HalfOpen { .. });
            *state = State::Open {
                until: now + self.config.cool_down,
                failures,
            };
            self.opened.fetch_add(1, Ordering::Relaxed);
            // The first opening of an outage is news; a failed probe only at debug level
            // (the periodic summary counts them).
            if reopened {
                tracing::debug!(failures, %error, "redis_circuit_reopened");
            } else {
                tracing::warn!(
                    failures,
                    slow = how == Failure::Slow,
                    cool_down_ms = u64::try_from(self.config.cool_down.as_millis()).unwrap_or(u64::MAX),
                    %error,
                    "redis_circuit_open"
                );
            }
        } else {
            match state {
                State::Closed { failures: f } | State::Open { failures: f, .. } => *f = failures,
                State::HalfOpen { .. } => {}
            }
        }
        summarise(tally, state, now);
    }

    /// Records a probe abandoned before it finished (its future was dropped): the breaker
    /// goes back to open with its cool-down over, so the next call probes again.
    pub(crate) fn abandon_probe(&self) {
        let mut guard = self.lock();
        if let State::HalfOpen { failures } = guard.0 {
            guard.0 = State::Open {
                until: Instant::now(),
                failures,
            };
        }
    }

    pub(crate) fn status(&self) -> CircuitStatus {
        let guard = self.lock();
        let (state, consecutive_failures) = match guard.0 {
            State::Closed { failures } => (CircuitState::Closed, failures),
            State::Open { failures, .. } => (CircuitState::Open, failures),
            State::HalfOpen { failures } => (CircuitState::HalfOpen, failures),
        };
        CircuitStatus {
            state,
            consecutive_failures,
            rejected: self.rejected.load(Ordering::Relaxed),
            opened: self.opened.load(Ordering::Relaxed),
        }
    }
}

/// Logs, at most every [`SUMMARY_EVERY`] while Redis fails, what the calls met since the last
/// summary: one line for thousands of refused calls.
fn summarise(tally: &mut Tally, state: &State, now: Instant) {
    if now.duration_since(tally.last_summary) < SUMMARY_EVERY {
        return;
    }
    let state = match state {
        State::Closed { .. } => CircuitState::Closed,
        State::Open { .. } => CircuitState::Open,
        State::HalfOpen { .. } => CircuitState::HalfOpen,
    };
    tracing::warn!(
        ?state,
        failed = tally.failed,
        failed_fast = tally.failed_fast,
        probes = tally.probes,
        outage_ms = tally
            .since
            .map_or(0, |t| u64::try_from(now.duration_since(t).as_millis())
                .unwrap_or(u64::MAX)),
        "redis_circuit_summary"
    );
    tally.last_summary = now;
    tally.failed = 0;
    tally.failed_fast = 0;
    tally.probes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down() -> StoreError {
        StoreError::Unavailable("connection refused".to_owned())
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_after_the_cool_down() {
        let breaker = CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::ZERO,
        });
        assert!(matches!(breaker.admit(), Ok(Admission::Pass)));
        breaker.failure(&down(), Failure::Fast);
        breaker.success();
        breaker.failure(&down(), Failure::Fast);
        assert_eq!(
            breaker.status().state,
            CircuitState::Closed,
            "a success resets the count"
        );
        breaker.failure(&down(), Failure::Fast);
        assert_eq!(breaker.status().state, CircuitState::Open);
        assert_eq!(breaker.status().opened, 1);

        assert!(matches!(breaker.admit(), Ok(Admission::Probe)));
        assert!(breaker.admit().is_err(), "one probe at a time");
        assert_eq!(breaker.status().rejected, 1);
        breaker.failure(&down(), Failure::Fast);
        assert_eq!(breaker.status().state, CircuitState::Open, "a failed probe re-opens");

        assert!(matches!(breaker.admit(), Ok(Admission::Probe)));
        breaker.abandon_probe();
        assert!(matches!(breaker.admit(), Ok(Admission::Probe)));
        breaker.success();
        assert_eq!(breaker.status().state, CircuitState::Closed);
        assert_eq!(breaker.status().consecutive_failures, 0);
    }

    #[test]
    fn one_slow_failure_opens_at_once() {
        let breaker = CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_secs(3600),
        });
        breaker.failure(&down(), Failure::Fast);
        assert_eq!(breaker.status().state, CircuitState::Closed, "fast failures count up");
        breaker.failure(&down(), Failure::Slow);
        assert_eq!(breaker.status().state, CircuitState::Open);
        assert!(matches!(breaker.admit(), Err(StoreError::Refused(_))));
    }

    #[test]
    fn refuses_during_the_cool_down() {
        let breaker = CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(3600),
        });
        breaker.failure(&down(), Failure::Fast);
        for _ in 0..3 {
            assert!(matches!(breaker.admit(), Err(StoreError::Refused(_))));
        }
        assert_eq!(breaker.status().rejected, 3);
    }
}
