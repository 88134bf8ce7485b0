//! How one call site caches its computed value: [`ComputeOptions`].

use std::time::Duration;

/// The default time a computed value is fresh: 5 minutes.
pub const DEFAULT_COMPUTE_TTL: Duration = Duration::from_secs(300);
/// The default `beta` of early refresh: 1, the value the XFetch paper shows optimal.
pub const DEFAULT_BETA: f64 = 1.0;
/// The default life of a compute lock: longer than any computation should take.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(30);
/// The default longest wait for another instance's computation before computing oneself.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);
/// The metrics label of values computed without [`ComputeOptions::name`].
pub const UNNAMED: &str = "unnamed";

/// The settings both [`ComputeOptions`] and [`Computed`](crate::Computed) carry; `Copy` and
/// const-constructible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Policy {
    pub(crate) name: &'static str,
    pub(crate) ttl: Duration,
    pub(crate) jitter: Option<f64>,
    pub(crate) serve_stale: Option<Duration>,
    pub(crate) beta: f64,
    pub(crate) lock: bool,
    pub(crate) lock_ttl: Duration,
    pub(crate) lock_wait: Duration,
}

impl Policy {
    pub(crate) const fn new(name: &'static str, ttl: Duration) -> Self {
        Self {
            name,
            ttl,
            jitter: None,
            serve_stale: None,
            beta: DEFAULT_BETA,
            lock: true,
            lock_ttl: DEFAULT_LOCK_TTL,
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// `beta`, read as the default when it is not a finite non-negative number.
    pub(crate) fn beta(&self) -> f64 {
        if self.beta.is_finite() && self.beta >= 0.0 {
            self.beta
        } else {
            DEFAULT_BETA
        }
    }

    /// The jitter asked for, when it is a fraction in `[0, 1)`.
    pub(crate) fn jitter(&self) -> Option<f64> {
        self.jitter.filter(|j| (0.0..1.0).contains(j))
    }
}

/// How [`Cache::get_or_compute`](crate::Cache::get_or_compute) caches one value: its time to
/// live, early refresh, serve-stale, the cross-instance lock and explicit tags. The typed
/// [`Computed`](crate::Computed) carries the same settings for a function's results.
///
/// ```
/// use std::time::Duration;
/// use cache_core::ComputeOptions;
///
/// let options = ComputeOptions::new(Duration::from_secs(60))
///     .name("site_stats")
///     .serve_stale(Duration::from_secs(600))
///     .tags(["site"]);
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct ComputeOptions {
    pub(crate) policy: Policy,
    pub(crate) tags: Vec<String>,
}

impl ComputeOptions {
    /// Values fresh for `ttl` (lengthened or shortened by the cache's
    /// [`ttl_jitter`](crate::CacheBuilder::ttl_jitter)), refreshed early with `beta` 1, locked
    /// across instances, not served stale, without explicit tags.
    pub const fn new(ttl: Duration) -> Self {
        Self {
            policy: Policy::new(UNNAMED, ttl),
            tags: Vec::new(),
        }
    }

    /// The `name` label of the value's metrics and per-name statistics
    /// ([`Cache::computed_stats`](crate::Cache::computed_stats)); [`UNNAMED`] by default. One
    /// name per call site, never one per key: each name is a time series.
    pub fn name(mut self, name: &'static str) -> Self {
        self.policy.name = name;
        self
    }

    /// How long a computed value is fresh.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.policy.ttl = ttl;
        self
    }

    /// The fraction by which the TTL is randomly lengthened or shortened, instead of the
    /// cache's; a value outside `[0, 1)` is ignored.
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.policy.jitter = Some(jitter);
        self
    }

    /// When the computation fails and the value expired less than `bound` ago, answer the
    /// expired value (logged as `computed_served_stale`) instead of the error. The store keeps
    /// values `bound` past their expiry for this.
    pub fn serve_stale(mut self, bound: Duration) -> Self {
        self.policy.serve_stale = Some(bound);
        self
    }

    /// How eagerly a value is recomputed before it expires (XFetch): a read recomputes when
    /// `now - delta * beta * ln(rand()) >= expiry`, `delta` being how long the value took to
    /// compute. `1` by default; above 1 refreshes earlier, `0` never early. A negative or
    /// non-finite `beta` is read as 1.
    pub fn beta(mut self, beta: f64) -> Self {
        self.policy.beta = beta;
        self
    }

    /// Whether a miss takes the store's lock so that one instance computes while the others
    /// wait for its value (on by default). Off, every instance that misses computes (each
    /// process still computes once per key at a time).
    pub fn lock(mut self, lock: bool) -> Self {
        self.policy.lock = lock;
        self
    }

    /// How long the lock lives ([`DEFAULT_LOCK_TTL`]): if its owner dies, others compute after
    /// this.
    pub fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.policy.lock_ttl = ttl;
        self
    }

    /// How long a miss waits for another instance's computation ([`DEFAULT_LOCK_WAIT`])
    /// before computing itself.
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.policy.lock_wait = wait;
        self
    }

    /// Tags the value carries besides those of what its computation reads: purging any of
    /// them ([`Cache::invalidate_tags`](crate::Cache::invalidate_tags)) removes it.
    pub fn tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_settings_fall_back() {
        let mut policy = Policy::new("x", Duration::from_secs(1));
        for beta in [f64::NAN, -1.0, f64::INFINITY] {
            policy.beta = beta;
            assert_eq!(policy.beta(), DEFAULT_BETA);
        }
        policy.beta = 0.0;
        assert_eq!(policy.beta(), 0.0);
        policy.jitter = Some(1.5);
        assert_eq!(policy.jitter(), None);
        policy.jitter = Some(0.1);
        assert_eq!(policy.jitter(), Some(0.1));
    }
}
