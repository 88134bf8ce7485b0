//! The stored form of a computed value, and the wall-clock time it is judged by.
//!
//! A value is stored as JSON with what early refresh and serve-stale need (readable with
//! `redis-cli GET`):
//!
//! ```json
//! {"value":{...},"computed_at_ms":1700000000000,"expires_at_ms":1700000300000,"delta_ms":84,"tags":["events:recE1"]}
//! ```
//!
//! Expiry is logical, in Unix milliseconds, so that every instance judges a value alike; the
//! store keeps the value a little longer (the serve-stale bound) and forgets it after.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::clock::Clock;

/// A computed value with its metadata.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Envelope<T> {
    /// The value.
    pub(crate) value: T,
    /// When it was stored (Unix ms).
    pub(crate) computed_at_ms: u64,
    /// When it stops being fresh (Unix ms).
    pub(crate) expires_at_ms: u64,
    /// How long its computation took: XFetch's `delta`.
    pub(crate) delta_ms: u64,
    /// What it depends on.
    pub(crate) tags: Vec<String>,
}

/// An envelope as read, with the bytes it came from (shared with in-process waiters).
#[derive(Debug)]
pub(crate) struct Stored<T> {
    pub(crate) envelope: Envelope<T>,
    pub(crate) bytes: Bytes,
}

impl<T: DeserializeOwned> Stored<T> {
    pub(crate) fn decode(bytes: Bytes) -> Result<Self, serde_json::Error> {
        Ok(Self {
            envelope: serde_json::from_slice(&bytes)?,
            bytes,
        })
    }
}

impl<T> Envelope<T> {
    /// Fresh at `now`.
    pub(crate) fn is_fresh(&self, now_ms: u64) -> bool {
        now_ms < self.expires_at_ms
    }
}

impl<T> Stored<T> {
    /// Fresh at `now`.
    pub(crate) fn is_fresh(&self, now_ms: u64) -> bool {
        self.envelope.is_fresh(now_ms)
    }

    /// Expired less than `bound` ago at `now` (fresh values are within any bound).
    pub(crate) fn within_stale_bound(&self, now_ms: u64, bound: Duration) -> bool {
        let bound = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
        now_ms < self.envelope.expires_at_ms.saturating_add(bound)
    }
}

/// XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): recompute a fresh value early when
/// `now - delta * beta * ln(rand) >= expiry`, `rand` in `(0, 1]`. The expected lead grows with
/// the computation time `delta`, and the chance of refreshing with each read as the expiry
/// nears, so that one read of a hot value recomputes it shortly before it expires.
pub(crate) fn refresh_early(now_ms: u64, expires_at_ms: u64, delta_ms: u64, beta: f64, rand: f64) -> bool {
    if beta <= 0.0 || delta_ms == 0 {
        return now_ms >= expires_at_ms;
    }
    #[allow(clippy::cast_precision_loss)] // milliseconds since 1970 are far below 2^53
    let lead = -(delta_ms as f64) * beta * rand.ln();
    #[allow(clippy::cast_precision_loss)]
    let early = now_ms as f64 + lead >= expires_at_ms as f64;
    early
}

/// Wall-clock time read through the cache's injectable [`Clock`]: the system time when the
/// cache was built, advanced by the clock since. Tests that advance a
/// [`ManualClock`](crate::clock::ManualClock) advance it too.
#[derive(Debug, Clone)]
pub(crate) struct WallClock {
    clock: Arc<dyn Clock>,
    anchor: Instant,
    anchor_ms: u64,
}

impl WallClock {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        let anchor_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            anchor: clock.now(),
            clock,
            anchor_ms,
        }
    }

    /// The monotonic instant, for measuring computations.
    pub(crate) fn instant(&self) -> Instant {
        self.clock.now()
    }

    /// Unix milliseconds now.
    pub(crate) fn now_ms(&self) -> u64 {
        let since = self.clock.now().saturating_duration_since(self.anchor);
        self.anchor_ms
            .saturating_add(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A duration in whole milliseconds.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn xfetch_follows_the_formula() {
        let e = std::f64::consts::E;
        // ln(1/e) = -1: the lead is delta * beta.
        assert!(!refresh_early(89_999, 100_000, 10_000, 1.0, 1.0 / e));
        assert!(refresh_early(90_000, 100_000, 10_000, 1.0, 1.0 / e));
        assert!(
            refresh_early(80_000, 100_000, 10_000, 2.0, 1.0 / e),
            "beta 2 doubles the lead"
        );
        assert!(!refresh_early(99_999, 100_000, 10_000, 1.0, 1.0), "ln(1) = 0: no lead");
        assert!(
            !refresh_early(99_999, 100_000, 10_000, 0.0, 1e-9),
            "beta 0: never early"
        );
        assert!(refresh_early(100_000, 100_000, 0, 1.0, 0.5), "expired is expired");
    }

    #[test]
    fn wall_clock_follows_the_injected_clock() {
        let clock = ManualClock::new();
        let wall = WallClock::new(Arc::new(clock.clone()));
        let start = wall.now_ms();
        clock.advance(Duration::from_secs(90));
        assert_eq!(wall.now_ms() - start, 90_000);
    }

    #[test]
    fn stale_bound() {
        let stored = Stored {
            envelope: Envelope {
                value: (),
                computed_at_ms: 0,
                expires_at_ms: 1000,
                delta_ms: 0,
                tags: vec![],
            },
            bytes: Bytes::new(),
        };
        assert!(stored.is_fresh(999));
        assert!(!stored.is_fresh(1000));
        assert!(stored.within_stale_bound(1999, Duration::from_secs(1)));
        assert!(!stored.within_stale_bound(2000, Duration::from_secs(1)));
    }
}
