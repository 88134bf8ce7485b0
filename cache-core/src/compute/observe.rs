//! What one computed-value call does, step by step, told to an [`Observer`].
//!
//! The machinery (look up, join a flight, take the lock, compute, store) is the same for every
//! caller; what a step is counted as and logged under is the caller's: computed values count
//! into [`ComputedStats`](crate::compute::ComputedStats) and log `computed_*` events ([`Tally`]), the
//! HTTP response cache counts into its own metric and logs `response_cache_*` events.

use std::time::Duration;

use super::envelope::millis;
use super::stats::Outcome;
use crate::{
    Cache,
    dependencies::{self, Event},
    store::StoreError,
};

/// One step of a [`Cache::compute_with`] call, in the order they happen.
#[derive(Debug)]
#[non_exhaustive]
pub enum Step<'a> {
    /// The cache is disabled: the computation runs without the store.
    Bypass,
    /// A fresh stored value answers.
    Hit,
    /// No fresh stored value the caller accepts; `refresh` when the scope asked to skip stored
    /// values ([`DependencyScope::refresh`](crate::dependencies::DependencyScope::refresh)). Told once per
    /// call.
    Miss {
        /// The scope asked for a refresh.
        refresh: bool,
    },
    /// The call waits for the computation of its key in flight in this process.
    Coalesced,
    /// A fresh value is recomputed before it expires (XFetch).
    EarlyRefresh {
        /// When the value expires (Unix ms).
        expires_at_ms: u64,
        /// How long its computation took (ms).
        delta_ms: u64,
    },
    /// The call waits, up to `bound`, for another instance's computation (the store's lock).
    LockWait {
        /// The longest wait.
        bound: Duration,
    },
    /// The lock was released without a value: the call computes.
    LockReleased,
    /// The wait reached its bound: the call computes.
    LockWaitTimeout {
        /// The bound reached.
        bound: Duration,
    },
    /// The computation ran.
    Computed {
        /// How long it took.
        took: Duration,
    },
    /// The value was stored.
    Stored {
        /// How many tags it was stored under.
        tags: usize,
    },
    /// The store refused the value: one of its tags was purged since the lookup.
    Refused,
    /// The computation failed.
    Error {
        /// It was an early refresh.
        early: bool,
    },
    /// An early refresh failed: the still fresh value answers.
    EarlyRefreshFailed,
    /// The computation failed and a value expired less than the serve-stale bound ago
    /// answers.
    ServedStale {
        /// How long ago the value expired (ms).
        expired_ms_ago: u64,
    },
    /// A stored or shared value could not be read (another shape): treated as missing.
    Unreadable {
        /// Why.
        error: &'a serde_json::Error,
    },
    /// The value could not be serialised: answered, not stored.
    Unserializable {
        /// Why.
        error: &'a serde_json::Error,
    },
    /// The store failed in `operation`: the call goes on without it.
    StoreError {
        /// The store method (`get_computed`, `put_computed`, `lock_computed`, ...).
        operation: &'static str,
        /// The failure.
        error: &'a StoreError,
    },
}

/// Counts and logs the [`Step`]s of [`Cache::compute_with`] calls.
pub trait Observer: Sync {
    /// Told each step as it happens.
    fn observe(&self, step: Step<'_>);
}

/// The observer of computed values ([`Cache::get_or_compute`], [`Computed`](crate::Computed)):
/// counts per name ([`Cache::computed_stats`], `model_cache_computed_total`), records hits,
/// misses and store errors in the dependency scope (so `X-Cache` reflects them), logs
/// `computed_*`.
pub(crate) struct Tally<'a> {
    pub(crate) cache: &'a Cache,
    pub(crate) name: &'static str,
    pub(crate) key: &'a str,
}

impl Tally<'_> {
    fn count(&self, outcome: Outcome) {
        self.cache.compute_state().counters.count(self.name, outcome);
    }
}

impl Observer for Tally<'_> {
    fn observe(&self, step: Step<'_>) {
        let (name, key) = (self.name, self.key);
        match step {
            Step::Bypass => {
                self.count(Outcome::Bypass);
                dependencies::count(Event::Bypass, 1);
                tracing::debug!(name, key, "computed_bypass");
            }
            Step::Hit => {
                self.count(Outcome::Hit);
                dependencies::count(Event::Hit, 1);
                tracing::debug!(name, key, "computed_hit");
            }
            Step::Miss { refresh } => {
                self.count(Outcome::Miss);
                dependencies::count(if refresh { Event::Bypass } else { Event::Miss }, 1);
                tracing::debug!(name, key, refresh, "computed_miss");
            }
            Step::Coalesced => {
                self.count(Outcome::Coalesced);
                dependencies::count(Event::Coalesced, 1);
                tracing::debug!(name, key, "computed_coalesced");
            }
            Step::EarlyRefresh {
                expires_at_ms,
                delta_ms,
            } => {
                self.count(Outcome::EarlyRefresh);
                tracing::debug!(name, key, expires_at_ms, delta_ms, "computed_early_refresh");
            }
            Step::LockWait { bound } => {
                self.count(Outcome::LockWait);
                tracing::debug!(name, key, bound_ms = millis(bound), "computed_lock_wait");
            }
            Step::LockReleased => tracing::debug!(name, key, "computed_lock_released"),
            Step::LockWaitTimeout { bound } => {
                self.count(Outcome::LockWaitTimeout);
                tracing::warn!(name, key, bound_ms = millis(bound), "computed_lock_wait_timeout");
            }
            Step::Computed { took } => self.cache.compute_state().counters.computed(name, took),
            Step::Stored { tags } => tracing::debug!(name, key, tags, "computed_stored"),
            Step::Refused => {
                self.count(Outcome::Refused);
                tracing::debug!(name, key, "computed_refused");
            }
            Step::Error { early } => {
                self.count(Outcome::Error);
                tracing::warn!(name, key, early, "computed_error");
            }
            Step::EarlyRefreshFailed => tracing::warn!(name, key, "computed_early_refresh_failed"),
            Step::ServedStale { expired_ms_ago } => {
                self.count(Outcome::StaleServed);
                tracing::warn!(name, key, expired_ms_ago, "computed_served_stale");
            }
            Step::Unreadable { error } => tracing::warn!(name, key, error = %error, "computed_unreadable"),
            Step::Unserializable { error } => {
                tracing::warn!(name, key, error = %error, "computed_unserializable");
            }
            Step::StoreError { operation, error } => {
                self.count(Outcome::StoreError);
                dependencies::count(Event::StoreError, 1);
                let warnings = &self.cache.stats_handle().warnings;
                // A refusal is logged by the store on its state change, not once per call.
                if !matches!(error, StoreError::Refused(_))
                    && let Some(held) = warnings.store.admit(std::time::Instant::now())
                {
                    tracing::warn!(name, key, operation, error = %error, held_back = held, "computed_store_error");
                }
            }
        }
    }
}
