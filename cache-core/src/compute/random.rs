//! The random numbers early refresh draws, injectable so that tests decide when it happens.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use rand::Rng;

/// A source of uniformly distributed numbers in `(0, 1]`: the `rand()` of early refresh
/// ([`ComputeOptions::beta`](crate::ComputeOptions::beta)).
pub trait RandomSource: Send + Sync + fmt::Debug + 'static {
    /// A number in `(0, 1]`. Zero is excluded: early refresh takes its logarithm.
    fn unit(&self) -> f64;
}

/// The thread-local generator of `rand`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemRandom;

impl RandomSource for SystemRandom {
    fn unit(&self) -> f64 {
        // `random` answers [0, 1); its complement is (0, 1].
        1.0 - rand::rng().random::<f64>()
    }
}

/// A "random" number set by the test: early refresh then happens exactly when the test says.
/// Clones share the same number.
///
/// ```
/// use cache_core::compute::{ManualRandom, RandomSource};
///
/// let random = ManualRandom::new(1.0); // ln(1) = 0: never refresh early
/// random.set(0.0001); // from now on refresh well before expiry
/// assert_eq!(random.unit(), 0.0001);
/// ```
#[derive(Debug, Clone)]
pub struct ManualRandom {
    value: Arc<Mutex<f64>>,
}

impl ManualRandom {
    /// A source answering `value` (clamped into `(0, 1]`) until told otherwise.
    pub fn new(value: f64) -> Self {
        Self {
            value: Arc::new(Mutex::new(clamp(value))),
        }
    }

    /// Answers `value` (clamped into `(0, 1]`) from now on.
    pub fn set(&self, value: f64) {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner) = clamp(value);
    }
}

impl RandomSource for ManualRandom {
    fn unit(&self) -> f64 {
        *self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn clamp(value: f64) -> f64 {
    if value.is_nan() {
        return 1.0;
    }
    value.clamp(f64::MIN_POSITIVE, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_numbers_are_in_the_unit_interval_without_zero() {
        for _ in 0..1000 {
            let x = SystemRandom.unit();
            assert!(x > 0.0 && x <= 1.0, "{x}");
        }
    }

    #[test]
    fn manual_numbers_are_clamped() {
        let r = ManualRandom::new(0.0);
        assert!(r.unit() > 0.0);
        r.set(2.0);
        assert_eq!(r.unit(), 1.0);
        r.set(f64::NAN);
        assert_eq!(r.unit(), 1.0);
        let clone = r.clone();
        clone.set(0.25);
        assert_eq!(r.unit(), 0.25);
    }
}
