//! Counts of what computed values did, per name, and their metrics.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;

/// `model_cache_computed_total{name, outcome}`: what computed values did (`outcome` is one of
/// the [`ComputedStats`] field names, singular: `hit`, `miss`, `early_refresh`, ...).
pub const COMPUTED_TOTAL: &str = "model_cache_computed_total";
/// `model_cache_computed_duration_seconds{name}`: how long computations took.
pub const COMPUTED_DURATION: &str = "model_cache_computed_duration_seconds";

/// Counts for the values of one [`name`](crate::ComputeOptions::name).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ComputedStats {
    /// Reads answered by a fresh stored value.
    pub hits: u64,
    /// Reads that found no fresh value.
    pub misses: u64,
    /// Reads that recomputed a still fresh value early (XFetch).
    pub early_refreshes: u64,
    /// Misses that waited for a computation in flight in this process.
    pub coalesced: u64,
    /// Computations run by this process.
    pub computations: u64,
    /// Computations that failed.
    pub errors: u64,
    /// Misses that waited for another instance's computation (the store's lock).
    pub lock_waits: u64,
    /// Waits that reached their bound (the waiter then computed itself).
    pub lock_wait_timeouts: u64,
    /// Expired values answered because the computation failed (serve-stale).
    pub stale_served: u64,
    /// Computed values the store refused: a tag was purged while they were computed.
    pub refused: u64,
    /// Reads that skipped the store: the cache is disabled.
    pub bypasses: u64,
    /// Store failures answered around.
    pub store_errors: u64,
}

/// One thing a computed value did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Miss,
    EarlyRefresh,
    Coalesced,
    Computation,
    Error,
    LockWait,
    LockWaitTimeout,
    StaleServed,
    Refused,
    Bypass,
    StoreError,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::EarlyRefresh => "early_refresh",
            Self::Coalesced => "coalesced",
            Self::Computation => "computation",
            Self::Error => "error",
            Self::LockWait => "lock_wait",
            Self::LockWaitTimeout => "lock_wait_timeout",
            Self::StaleServed => "stale_served",
            Self::Refused => "refused",
            Self::Bypass => "bypass",
            Self::StoreError => "store_error",
        }
    }
}

#[derive(Debug, Default)]
struct Counters([AtomicU64; 12]);

impl Counters {
    fn index(outcome: Outcome) -> usize {
        match outcome {
            Outcome::Hit => 0,
            Outcome::Miss => 1,
            Outcome::EarlyRefresh => 2,
            Outcome::Coalesced => 3,
            Outcome::Computation => 4,
            Outcome::Error => 5,
            Outcome::LockWait => 6,
            Outcome::LockWaitTimeout => 7,
            Outcome::StaleServed => 8,
            Outcome::Refused => 9,
            Outcome::Bypass => 10,
            Outcome::StoreError => 11,
        }
    }

    fn snapshot(&self) -> ComputedStats {
        let n = |i: usize| self.0[i].load(Ordering::Relaxed);
        ComputedStats {
            hits: n(0),
            misses: n(1),
            early_refreshes: n(2),
            coalesced: n(3),
            computations: n(4),
            errors: n(5),
            lock_waits: n(6),
            lock_wait_timeouts: n(7),
            stale_served: n(8),
            refused: n(9),
            bypasses: n(10),
            store_errors: n(11),
        }
    }
}

/// The counters of every name, and the single place that also feeds metrics.
#[derive(Debug, Default)]
pub(crate) struct ComputedCounters {
    names: RwLock<HashMap<&'static str, Arc<Counters>>>,
}

impl ComputedCounters {
    fn of(&self, name: &'static str) -> Arc<Counters> {
        if let Some(c) = self.names.read().unwrap_or_else(PoisonError::into_inner).get(name) {
            return Arc::clone(c);
        }
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(names.entry(name).or_default())
    }

    pub(crate) fn count(&self, name: &'static str, outcome: Outcome) {
        self.of(name).0[Counters::index(outcome)].fetch_add(1, Ordering::Relaxed);
        metrics::counter!(COMPUTED_TOTAL, "name" => name, "outcome" => outcome.label()).increment(1);
    }

    pub(crate) fn computed(&self, name: &'static str, took: Duration) {
        self.count(name, Outcome::Computation);
        metrics::histogram!(COMPUTED_DURATION, "name" => name).record(took.as_secs_f64());
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<&'static str, ComputedStats> {
        self.names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, c)| (*name, c.snapshot()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_name() {
        let c = ComputedCounters::default();
        c.count("a", Outcome::Hit);
        c.count("a", Outcome::Hit);
        c.computed("b", Duration::from_millis(3));
        let s = c.snapshot();
        assert_eq!(s["a"].hits, 2);
        assert_eq!(s["b"].computations, 1);
        assert_eq!(s["b"].hits, 0);
    }
}
