//! Warnings in an outage: one line when a kind of failure starts, then at most one line per
//! window with the count of those it held back, instead of one line per request. The counters
//! and metrics ([`crate::stats::CacheStats`]) still count every failure.
//!
//! ```
//! use std::time::Instant;
//! use cache_core::log_limit::WarnLimit;
//!
//! static STORE_ERRORS: WarnLimit = WarnLimit::new();
//! if let Some(held_back) = STORE_ERRORS.admit(Instant::now()) {
//!     tracing::warn!(held_back, "response_cache_store_error");
//! }
//! ```

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How often a failure that keeps happening is logged again.
pub const WARN_WINDOW: Duration = Duration::from_secs(10);

/// One kind of failure's log limit: the first failure of a [`WARN_WINDOW`] is logged, the
/// others are counted and reported with the next line.
#[derive(Debug)]
pub struct WarnLimit {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// When the current window began (its first failure was logged then).
    started: Option<Instant>,
    /// Failures held back since.
    held: u64,
}

impl Default for WarnLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl WarnLimit {
    /// A limit with no failure yet.
    pub const fn new() -> Self {
        Self {
            window: Mutex::new(Window { started: None, held: 0 }),
        }
    }

    /// Whether to log a failure happening at `now`: `Some(held_back)`, the number of failures
    /// held back since the last line, or `None` to hold this one back.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        match window.started {
            Some(started) if now.saturating_duration_since(started) < WARN_WINDOW => {
                window.held += 1;
                None
            }
            _ => {
                window.started = Some(now);
                Some(std::mem::take(&mut window.held))
            }
        }
    }
}

/// The limits of the cache's own failures.
#[derive(Debug, Default)]
pub(crate) struct WarnLimits {
    /// Store calls (`cache_store_error`, `computed_store_error`).
    pub(crate) store: WarnLimit,
    /// Origin calls (`cache_origin_error`).
    pub(crate) origin: WarnLimit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_window_with_the_count_held_back() {
        let limits = WarnLimits::default();
        let start = Instant::now();
        assert_eq!(limits.store.admit(start), Some(0));
        let logged = (1..=999)
            .filter(|i| limits.store.admit(start + Duration::from_millis(*i)).is_some())
            .count();
        assert_eq!(logged, 0, "a thousand failures in one window log one line");
        // Another kind has its own window.
        assert_eq!(limits.origin.admit(start), Some(0));
        assert_eq!(limits.store.admit(start + WARN_WINDOW), Some(999));
        assert_eq!(limits.store.admit(start + WARN_WINDOW), None);
    }
}
