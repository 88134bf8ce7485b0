//! Latency samples, and the interleaved runner: a measured variant and its baselines run in
//! alternate batches (the order rotating every round) after a warm-up, so that drift on a
//! shared machine (another build starting, the CPU clocking down) hits each of them alike.

use std::time::{Duration, Instant};

/// Latencies of one variant.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    nanos: Vec<u64>,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one latency.
    pub fn push(&mut self, latency: Duration) {
        self.nanos.push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every latency of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.nanos.extend_from_slice(&other.nanos);
    }

    /// How many latencies were taken.
    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    /// Whether none was taken.
    pub fn is_empty(&self) -> bool {
        self.nanos.is_empty()
    }

    /// The count, median, 99th percentile and mean.
    pub fn summary(&self) -> Summary {
        let mut sorted = self.nanos.clone();
        sorted.sort_unstable();
        let total: u128 = sorted.iter().map(|&n| u128::from(n)).sum();
        let mean = match sorted.len() {
            0 => 0,
            n => u64::try_from(total / n as u128).unwrap_or(u64::MAX),
        };
        Summary {
            count: sorted.len(),
            p50: Duration::from_nanos(quantile(&sorted, 0.50)),
            p99: Duration::from_nanos(quantile(&sorted, 0.99)),
            mean: Duration::from_nanos(mean),
        }
    }
}

/// The nearest-rank quantile `q` (in `[0, 1]`) of sorted values; 0 when there are none.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What a set of latencies comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// How many latencies.
    pub count: usize,
    /// The median.
    pub p50: Duration,
    /// The 99th percentile.
    pub p99: Duration,
    /// The mean.
    pub mean: Duration,
}

impl Summary {
    /// `self`'s median over `baseline`'s: how many times slower `self` is.
    pub fn p50_ratio(&self, baseline: &Summary) -> f64 {
        ratio(self.p50, baseline.p50)
    }

    /// `self`'s 99th percentile over `baseline`'s.
    pub fn p99_ratio(&self, baseline: &Summary) -> f64 {
        ratio(self.p99, baseline.p99)
    }
}

/// `a / b`, as a float.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// How an interleaved comparison is run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Latencies to take of each variant.
    pub samples: usize,
    /// Latencies taken of one variant before the next one runs.
    pub batch: usize,
    /// Operations run of each variant, untimed, before any is timed.
    pub warmup: usize,
    /// Operations per latency: 1 times each operation; more time a group of them and record
    /// its mean, for operations so short that reading the clock would weigh on them.
    pub group: usize,
}

impl Plan {
    /// A plan timing each operation on its own, in batches of `batch`.
    pub fn new(samples: usize, batch: usize, warmup: usize) -> Self {
        Self {
            samples,
            batch,
            warmup,
            group: 1,
        }
    }

    /// The same plan, timing groups of `group` operations.
    pub fn grouped(self, group: usize) -> Self {
        Self {
            group: group.max(1),
            ..self
        }
    }
}

/// Runs `variants` variants of an operation in alternate batches and answers each one's
/// latencies, in variant order.
///
/// `op(variant, i)` runs one operation of `variant`; `i` counts that variant's operations
/// from 0 (warm-up included), for picking a different record each time.
pub async fn interleave(variants: usize, plan: &Plan, mut op: impl AsyncFnMut(usize, usize)) -> Vec<Samples> {
    let mut next = vec![0usize; variants];
    for (variant, i) in next.iter_mut().enumerate() {
        for _ in 0..plan.warmup {
            op(variant, *i).await;
            *i += 1;
        }
    }
    let mut samples = vec![Samples::new(); variants];
    let batch = plan.batch.max(1);
    let mut round = 0;
    while samples.iter().any(|s| s.len() < plan.samples) {
        for k in 0..variants {
            // The order rotates, so that no variant always runs right after another.
            let variant = (round + k) % variants;
            let todo = batch.min(plan.samples - samples[variant].len().min(plan.samples));
            for _ in 0..todo {
                let started = Instant::now();
                for _ in 0..plan.group {
                    op(variant, next[variant]).await;
                    next[variant] += 1;
                }
                samples[variant].push(started.elapsed() / u32::try_from(plan.group).unwrap_or(u32::MAX));
            }
        }
        round += 1;
    }
    samples
}

/// Times a CPU-only operation (decoding a record, say) on its own: `samples` latencies, each
/// the mean of `group` calls, after `group` untimed calls.
pub fn time_cpu(samples: usize, group: usize, mut op: impl FnMut(usize)) -> Summary {
    let group = group.max(1);
    for i in 0..group {
        op(i);
    }
    let mut out = Samples::new();
    let mut i = 0;
    for _ in 0..samples {
        let started = Instant::now();
        for _ in 0..group {
            op(i);
            i += 1;
        }
        out.push(started.elapsed() / u32::try_from(group).unwrap_or(u32::MAX));
    }
    out.summary()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let mut s = Samples::new();
        for n in 1..=100u64 {
            s.push(Duration::from_nanos(n));
        }
        let sum = s.summary();
        assert_eq!(sum.count, 100);
        assert_eq!(sum.p50, Duration::from_nanos(50));
        assert_eq!(sum.p99, Duration::from_nanos(99));
        assert_eq!(sum.mean, Duration::from_nanos(50));
        assert_eq!(Samples::new().summary().p99, Duration::ZERO);
    }

    #[test]
    fn ratios() {
        let a = Summary {
            count: 1,
            p50: Duration::from_micros(60),
            p99: Duration::from_micros(100),
            mean: Duration::ZERO,
        };
        let b = Summary {
            p50: Duration::from_micros(50),
            p99: Duration::from_micros(200),
            ..a
        };
        assert!((a.p50_ratio(&b) - 1.2).abs() < 1e-9);
        assert!((a.p99_ratio(&b) - 0.5).abs() < 1e-9);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn interleave_alternates_batches_and_counts_per_variant() {
        let log = RefCell::new(Vec::new());
        let plan = Plan::new(5, 2, 1);
        let samples = interleave(2, &plan, async |variant, i| log.borrow_mut().push((variant, i))).await;
        assert_eq!(samples.iter().map(Samples::len).collect::<Vec<_>>(), [5, 5]);
        let log = log.into_inner();
        // Warm-up: one of each; then batches of two, the first variant alternating.
        assert_eq!(&log[..4], &[(0, 0), (1, 0), (0, 1), (0, 2)]);
        assert_eq!(&log[4..8], &[(1, 1), (1, 2), (1, 3), (1, 4)]);
        assert_eq!(log.len(), 12);
        assert_eq!(log.iter().filter(|(v, _)| *v == 0).count(), 6);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn grouped_plans_run_group_operations_per_sample() {
        let mut calls = 0;
        let samples = interleave(1, &Plan::new(3, 10, 0).grouped(4), async |_, _| calls += 1).await;
        assert_eq!(samples[0].len(), 3);
        assert_eq!(calls, 12);
    }
}
