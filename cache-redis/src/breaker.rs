//! The circuit breaker: when Redis is down or slow, operations fail fast with
//! [`StoreError::Unavailable`] instead of each paying a connect or response timeout, and the
//! cache answers from the origin.
//!
//! Closed: calls go through; `failure_threshold` consecutive unavailability errors open it.
//! Open: calls are refused at once for `cool_down`. Then half-open: one call is let through
//! as a probe (refused calls meanwhile); its success closes the breaker, its failure opens it
//! for another cool-down. Only unavailability counts as a failure: a server that answers with
//! an error is up.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cache_core::StoreError;
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

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant, failures: u32 },
    HalfOpen { failures: u32 },
}

#[derive(Debug)]
pub(crate) struct CircuitBreaker {
    config: CircuitBreakerConfig,
    /// Closed with no failure counted: the common case, decided without the lock.
    healthy: AtomicBool,
    state: Mutex<State>,
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

impl CircuitBreaker {
    pub(crate) fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            config: CircuitBreakerConfig {
                failure_threshold: config.failure_threshold.max(1),
                ..config
            },
            healthy: AtomicBool::new(true),
            state: Mutex::new(State::Closed { failures: 0 }),
            rejected: AtomicU64::new(0),
            opened: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Lets a call through, or refuses it with [`StoreError::Unavailable`].
    pub(crate) fn admit(&self) -> Result<Admission, StoreError> {
        if self.healthy.load(Ordering::Acquire) {
            return Ok(Admission::Pass);
        }
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => Ok(Admission::Pass),
            State::Open { until, failures } if Instant::now() >= until => {
                *state = State::HalfOpen { failures };
                Ok(Admission::Probe)
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Unavailable(
                    "redis circuit breaker is open (recent calls failed); not calling redis".to_owned(),
                ))
            }
        }
    }

    /// Records a call that reached a live server.
    pub(crate) fn success(&self) {
        if self.healthy.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        let was = std::mem::replace(&mut *state, State::Closed { failures: 0 });
        self.healthy.store(true, Ordering::Release);
        match was {
            State::Closed { .. } => {}
            State::Open { .. } | State::HalfOpen { .. } => {
                tracing::info!("redis_circuit_closed");
            }
        }
    }

    /// Records a call that found the server unavailable.
    pub(crate) fn failure(&self, error: &StoreError) {
        let mut state = self.lock();
        self.healthy.store(false, Ordering::Release);
        let failures = match *state {
            State::Closed { failures } | State::Open { failures, .. } | State::HalfOpen { failures } => {
                failures.saturating_add(1)
            }
        };
        let open = match *state {
            State::Closed { .. } => failures >= self.config.failure_threshold,
            // A failed probe (or a call admitted before the breaker opened) re-opens it.
            State::HalfOpen { .. } => true,
            State::Open { .. } => false,
        };
        if open {
            *state = State::Open {
                until: Instant::now() + self.config.cool_down,
                failures,
            };
            self.opened.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                failures,
                cool_down_ms = self.config.cool_down.as_millis() as u64,
                %error,
                "redis_circuit_open"
            );
        } else {
            match &mut *state {
                State::Closed { failures: f } | State::Open { failures: f, .. } => *f = failures,
                State::HalfOpen { .. } => {}
            }
        }
    }

    /// Records a probe abandoned before it finished (its future was dropped): the breaker
    /// goes back to open with its cool-down over, so the next call probes again.
    pub(crate) fn abandon_probe(&self) {
        let mut state = self.lock();
        if let State::HalfOpen { failures } = *state {
            *state = State::Open {
                until: Instant::now(),
                failures,
            };
        }
    }

    pub(crate) fn status(&self) -> CircuitStatus {
        let state = self.lock();
        let (state, consecutive_failures) = match *state {
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
        breaker.failure(&down());
        breaker.success();
        breaker.failure(&down());
        assert_eq!(
            breaker.status().state,
            CircuitState::Closed,
            "a success resets the count"
        );
        breaker.failure(&down());
        assert_eq!(breaker.status().state, CircuitState::Open);
        assert_eq!(breaker.status().opened, 1);

        assert!(matches!(breaker.admit(), Ok(Admission::Probe)));
        assert!(breaker.admit().is_err(), "one probe at a time");
        assert_eq!(breaker.status().rejected, 1);
        breaker.failure(&down());
        assert_eq!(breaker.status().state, CircuitState::Open, "a failed probe re-opens");

        assert!(matches!(breaker.admit(), Ok(Admission::Probe)));
        breaker.abandon_probe();
        assert!(matches!(breaker.admit(), Ok(Admission::Probe)));
        breaker.success();
        assert_eq!(breaker.status().state, CircuitState::Closed);
        assert_eq!(breaker.status().consecutive_failures, 0);
    }

    #[test]
    fn refuses_during_the_cool_down() {
        let breaker = CircuitBreaker::new(CircuitBreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(3600),
        });
        breaker.failure(&down());
        for _ in 0..3 {
            assert!(matches!(breaker.admit(), Err(StoreError::Unavailable(_))));
        }
        assert_eq!(breaker.status().rejected, 3);
    }
}
