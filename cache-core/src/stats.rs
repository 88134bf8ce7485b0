//! Per-entity statistics of a [`Cache`](crate::Cache), and the metrics it emits through the
//! [`metrics`] facade (exported by whatever recorder the application installs, such as
//! `cache-http`'s Prometheus endpoint).
//!
//! ## Metrics
//! | name | kind | labels |
//! |---|---|---|
//! | `model_cache_lookups_total` | counter | `entity`, `operation`, `result` (`hit`, `miss`, `tombstone`, `bypass`) |
//! | `model_cache_coalesced_total` | counter | `entity`, `operation` |
//! | `model_cache_origin_calls_total` | counter | `entity`, `operation` (`fetch`, `fetch_many`, `query`, `delete`, `exists_many`) |
//! | `model_cache_origin_errors_total` | counter | `entity`, `operation` |
//! | `model_cache_store_errors_total` | counter | `entity`, `operation` |
//! | `model_cache_stale_refusals_total` | counter | `entity`, `reason` (`lease`, `version`, `fill_token`, `order`, `deleted`) |
//! | `model_cache_operation_duration_seconds` | histogram | `entity`, `operation` |
//! | `model_cache_origin_duration_seconds` | histogram | `entity`, `operation` |
//! | `model_cache_near_lookups_total` | counter | `entity`, `operation`, `result` (`hit`, `miss`): reads the [near cache](crate::near::NearCache) answered (also counted as hits above) or passed on to the store while it was on |
//! | `model_cache_near_evictions_total` | counter | |
//! | `model_cache_near_invalidations_total` | counter | `kind` (`record`, `index`, `all`) |
//! | `model_cache_near_enabled` | gauge | 1 while the near cache answers, 0 while the store cannot vouch for its invalidations |

use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasherDefault, Hasher},
    sync::{
        Arc, OnceLock, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use metrics::{Counter, Histogram};

use serde::Serialize;

use crate::{
    dependencies::{self, Event},
    operation::{Operation, OriginCall, StoreStep},
};

/// Counts of what a cache did, per entity, since it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// The counts, by entity name.
    pub entities: BTreeMap<&'static str, EntityStats>,
}

impl CacheStats {
    /// The counts of one entity (zeros when it was never used).
    pub fn entity(&self, entity: &str) -> EntityStats {
        self.entities.get(entity).copied().unwrap_or_default()
    }

    /// The counts of every entity added up.
    pub fn total(&self) -> EntityStats {
        self.entities.values().fold(EntityStats::default(), |mut sum, e| {
            sum.hits += e.hits;
            sum.misses += e.misses;
            sum.bypasses += e.bypasses;
            sum.origin_calls += e.origin_calls;
            sum.origin_errors += e.origin_errors;
            sum.tombstone_hits += e.tombstone_hits;
            sum.stale_refusals += e.stale_refusals;
            sum.store_errors += e.store_errors;
            sum.coalesced += e.coalesced;
            sum
        })
    }
}

/// Counts for one entity. A record read counts once per record; a query once per query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EntityStats {
    /// Reads answered by the cache.
    pub hits: u64,
    /// Reads the cache could not answer.
    pub misses: u64,
    /// Reads that skipped the cache (disabled, or a refresh was asked for).
    pub bypasses: u64,
    /// Calls made to the origin.
    pub origin_calls: u64,
    /// Origin calls that failed.
    pub origin_errors: u64,
    /// Reads answered "does not exist" by a tombstone.
    pub tombstone_hits: u64,
    /// Writes refused because newer data was cached (lease lost, older version, query fill
    /// after a write).
    pub stale_refusals: u64,
    /// Store failures answered around.
    pub store_errors: u64,
    /// Misses that joined an origin call already in flight.
    pub coalesced: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    origin_calls: AtomicU64,
    origin_errors: AtomicU64,
    tombstone_hits: AtomicU64,
    stale_refusals: AtomicU64,
    store_errors: AtomicU64,
    coalesced: AtomicU64,
}

/// Why a write was refused as stale.
#[derive(Debug, Clone, Copy)]
pub(crate) enum StaleReason {
    Lease,
    Version,
    FillToken,
    /// A change older than one already applied to the record (by source time).
    Order,
    /// A write not newer than the record's delete.
    Deleted,
}

impl StaleReason {
    fn label(self) -> &'static str {
        match self {
            Self::Lease => "lease",
            Self::Version => "version",
            Self::FillToken => "fill_token",
            Self::Order => "order",
            Self::Deleted => "deleted",
        }
    }
}

/// The cache's counters, and the single place that also feeds metrics and the dependency scopes.
///
/// Every operation counts here, so the per-call work is one map lookup by the addresses of
/// its `&'static str` labels: no string is hashed or compared, no metric key built.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// The counters by entity name (two copies of one name share them).
    entities: RwLock<HashMap<&'static str, Arc<Counters>>>,
    /// By the addresses of (entity, operation or stale reason).
    meters: RwLock<HashMap<LabelsAddr, Meter, BuildHasherDefault<AddrHasher>>>,
    /// How often failures are logged.
    pub(crate) warnings: crate::log_limit::WarnLimits,
}

/// The addresses and lengths of two `&'static str` labels.
type LabelsAddr = [usize; 4];

fn labels_addr(entity: &'static str, label: &'static str) -> LabelsAddr {
    [entity.as_ptr().addr(), entity.len(), label.as_ptr().addr(), label.len()]
}

/// Hashes [`LabelsAddr`] (FxHash's mixing): SipHash would cost more than the rest of the lookup.
#[derive(Debug, Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[usize; 4]` hashes as one slice of bytes: a word at a time, as FxHash does.
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.write_u64(u64::from_le_bytes(le));
        }
        for &b in words.remainder() {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

/// The counters and metric handles of one (entity, operation). A labelled `counter!` builds
/// its key and asks the recorder on every call; a handle, once registered, does neither. The
/// handles belong to the recorder current when they were registered: when another one is
/// current (installed after the cache was built, or a thread's local one), they are
/// registered again.
#[derive(Debug)]
struct Meter {
    counters: Arc<Counters>,
    recorder: usize,
    lookups: [OnceLock<Counter>; 4],
    coalesced: OnceLock<Counter>,
    origin_calls: OnceLock<Counter>,
    origin_errors: OnceLock<Counter>,
    store_errors: OnceLock<Counter>,
    stale: OnceLock<Counter>,
    operation_duration: OnceLock<Histogram>,
    origin_duration: OnceLock<Histogram>,
    near_lookups: [OnceLock<Counter>; 2],
}

impl Meter {
    fn new(counters: Arc<Counters>, recorder: usize) -> Self {
        Self {
            counters,
            recorder,
            lookups: Default::default(),
            coalesced: OnceLock::new(),
            origin_calls: OnceLock::new(),
            origin_errors: OnceLock::new(),
            store_errors: OnceLock::new(),
            stale: OnceLock::new(),
            operation_duration: OnceLock::new(),
            origin_duration: OnceLock::new(),
            near_lookups: Default::default(),
        }
    }
}

/// The address of the current metrics recorder, which tells whether cached handles are its.
fn current_recorder() -> usize {
    metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>().addr())
}

impl Stats {
    /// Runs `f` on the meter of (`entity`, `label`) for the current recorder.
    fn with_meter<R>(&self, entity: &'static str, label: &'static str, f: impl FnOnce(&Meter) -> R) -> R {
        let key = labels_addr(entity, label);
        let recorder = current_recorder();
        {
            let meters = self.meters.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(meter) = meters.get(&key).filter(|m| m.recorder == recorder) {
                return f(meter);
            }
        }
        let counters = self.counters(entity);
        let mut meters = self.meters.write().unwrap_or_else(PoisonError::into_inner);
        let meter = meters
            .entry(key)
            .or_insert_with(|| Meter::new(Arc::clone(&counters), recorder));
        if meter.recorder != recorder {
            *meter = Meter::new(counters, recorder);
        }
        f(meter)
    }

    fn counters(&self, entity: &'static str) -> Arc<Counters> {
        if let Some(c) = self.entities.read().unwrap_or_else(PoisonError::into_inner).get(entity) {
            return Arc::clone(c);
        }
        let mut map = self.entities.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(entity).or_default())
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        let map = self.entities.read().unwrap_or_else(PoisonError::into_inner);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            entities: map
                .iter()
                .map(|(entity, c)| {
                    (
                        *entity,
                        EntityStats {
                            hits: load(&c.hits),
                            misses: load(&c.misses),
                            bypasses: load(&c.bypasses),
                            origin_calls: load(&c.origin_calls),
                            origin_errors: load(&c.origin_errors),
                            tombstone_hits: load(&c.tombstone_hits),
                            stale_refusals: load(&c.stale_refusals),
                            store_errors: load(&c.store_errors),
                            coalesced: load(&c.coalesced),
                        },
                    )
                })
                .collect(),
        }
    }

    /// Counts a lookup result (`hit`, `miss`, `tombstone`, `bypass`) of `n` records.
    pub(crate) fn lookup(&self, entity: &'static str, operation: Operation, event: Event, n: u64) {
        let operation = operation.name();
        if n == 0 {
            return;
        }
        let (slot, result) = match event {
            Event::Hit => (0, "hit"),
            Event::Miss => (1, "miss"),
            Event::TombstoneHit => (2, "tombstone"),
            Event::Bypass => (3, "bypass"),
            Event::OriginCall | Event::StoreError | Event::Coalesced => return,
        };
        self.with_meter(entity, operation, |m| {
            let c = &m.counters;
            let counter = [&c.hits, &c.misses, &c.tombstone_hits, &c.bypasses][slot];
            counter.fetch_add(n, Ordering::Relaxed);
            m.lookups[slot]
                .get_or_init(|| {
                    metrics::counter!("model_cache_lookups_total", "entity" => entity, "operation" => operation, "result" => result)
                })
                .increment(n);
        });
        dependencies::count(event, n);
    }

    /// Counts `n` reads the near cache answered (`hit`: also cache hits, as [`Stats::lookup`]
    /// counts them) or passed on to the store (`miss`: the store's answer is counted then).
    /// One meter lookup for both counts: this is the near cache's hit path.
    pub(crate) fn near_lookup(&self, entity: &'static str, operation: Operation, hit: bool, n: u64) {
        let operation = operation.name();
        if n == 0 {
            return;
        }
        let (slot, result) = if hit { (0, "hit") } else { (1, "miss") };
        self.with_meter(entity, operation, |m| {
            if hit {
                m.counters.hits.fetch_add(n, Ordering::Relaxed);
                m.lookups[0]
                    .get_or_init(|| {
                        metrics::counter!("model_cache_lookups_total", "entity" => entity, "operation" => operation, "result" => "hit")
                    })
                    .increment(n);
            }
            m.near_lookups[slot]
                .get_or_init(|| {
                    metrics::counter!("model_cache_near_lookups_total", "entity" => entity, "operation" => operation, "result" => result)
                })
                .increment(n);
        });
        if hit {
            dependencies::count(Event::Hit, n);
        }
    }

    /// An operation every record of which was a hit: [`Stats::lookup`] of its `n` hits (and,
    /// when the near cache answered them, [`Stats::near_lookup`]) and [`Stats::operation_done`],
    /// in one meter lookup. This is the hit path of `Cache::get`.
    pub(crate) fn hits_done(&self, entity: &'static str, operation: Operation, n: u64, near: bool, took: Duration) {
        let operation = operation.name();
        self.with_meter(entity, operation, |m| {
            m.counters.hits.fetch_add(n, Ordering::Relaxed);
            m.lookups[0]
                .get_or_init(|| {
                    metrics::counter!("model_cache_lookups_total", "entity" => entity, "operation" => operation, "result" => "hit")
                })
                .increment(n);
            if near {
                m.near_lookups[0]
                    .get_or_init(|| {
                        metrics::counter!("model_cache_near_lookups_total", "entity" => entity, "operation" => operation, "result" => "hit")
                    })
                    .increment(n);
            }
            m.operation_duration
                .get_or_init(|| {
                    metrics::histogram!("model_cache_operation_duration_seconds", "entity" => entity, "operation" => operation)
                })
                .record(took.as_secs_f64());
        });
        dependencies::count(Event::Hit, n);
    }

    pub(crate) fn coalesced(&self, entity: &'static str, operation: Operation, n: u64) {
        let operation = operation.name();
        if n == 0 {
            return;
        }
        self.with_meter(entity, operation, |m| {
            m.counters.coalesced.fetch_add(n, Ordering::Relaxed);
            m.coalesced
                .get_or_init(
                    || metrics::counter!("model_cache_coalesced_total", "entity" => entity, "operation" => operation),
                )
                .increment(n);
        });
        dependencies::count(Event::Coalesced, n);
    }

    pub(crate) fn origin_call(&self, entity: &'static str, call: OriginCall) {
        let operation = call.name();
        self.with_meter(entity, operation, |m| {
            m.counters.origin_calls.fetch_add(1, Ordering::Relaxed);
            m.origin_calls
                .get_or_init(|| metrics::counter!("model_cache_origin_calls_total", "entity" => entity, "operation" => operation))
                .increment(1);
        });
        dependencies::count(Event::OriginCall, 1);
    }

    pub(crate) fn origin_done(&self, entity: &'static str, call: OriginCall, took: Duration, ok: bool) {
        let operation = call.name();
        self.with_meter(entity, operation, |m| {
            m.origin_duration
                .get_or_init(|| {
                    metrics::histogram!("model_cache_origin_duration_seconds", "entity" => entity, "operation" => operation)
                })
                .record(took.as_secs_f64());
            if !ok {
                m.counters.origin_errors.fetch_add(1, Ordering::Relaxed);
                m.origin_errors
                    .get_or_init(|| {
                        metrics::counter!("model_cache_origin_errors_total", "entity" => entity, "operation" => operation)
                    })
                    .increment(1);
            }
        });
    }

    pub(crate) fn store_error(&self, entity: &'static str, step: StoreStep) {
        let operation = step.name();
        self.with_meter(entity, operation, |m| {
            m.counters.store_errors.fetch_add(1, Ordering::Relaxed);
            m.store_errors
                .get_or_init(|| metrics::counter!("model_cache_store_errors_total", "entity" => entity, "operation" => operation))
                .increment(1);
        });
        dependencies::count(Event::StoreError, 1);
    }

    pub(crate) fn stale(&self, entity: &'static str, reason: StaleReason, n: u64) {
        if n == 0 {
            return;
        }
        let reason = reason.label();
        self.with_meter(entity, reason, |m| {
            m.counters.stale_refusals.fetch_add(n, Ordering::Relaxed);
            m.stale
                .get_or_init(
                    || metrics::counter!("model_cache_stale_refusals_total", "entity" => entity, "reason" => reason),
                )
                .increment(n);
        });
    }

    pub(crate) fn operation_done(&self, entity: &'static str, operation: Operation, took: Duration) {
        let operation = operation.name();
        self.with_meter(entity, operation, |m| {
            m.operation_duration
                .get_or_init(|| {
                    metrics::histogram!("model_cache_operation_duration_seconds", "entity" => entity, "operation" => operation)
                })
                .record(took.as_secs_f64());
        });
    }
}

/// Registers the descriptions and units of every `model_cache_*` metric with the installed
/// recorder. Call it once after installing the recorder; metrics work without it.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "model_cache_lookups_total",
        "Cache reads by result: hit, miss, tombstone or bypass (one per record, or per query)."
    );
    describe_counter!(
        "model_cache_coalesced_total",
        "Cache misses that joined an origin call already in flight."
    );
    describe_counter!("model_cache_origin_calls_total", "Calls made to the origin.");
    describe_counter!("model_cache_origin_errors_total", "Origin calls that failed.");
    describe_counter!(
        "model_cache_store_errors_total",
        "Store failures the cache answered around (from the origin)."
    );
    describe_counter!(
        "model_cache_stale_refusals_total",
        "Writes refused because newer data was cached."
    );
    describe_histogram!(
        "model_cache_operation_duration_seconds",
        Unit::Seconds,
        "Duration of cache operations."
    );
    describe_histogram!(
        "model_cache_origin_duration_seconds",
        Unit::Seconds,
        "Duration of origin calls."
    );
    describe_counter!(
        "model_cache_near_lookups_total",
        "Reads the near cache answered (hit) or passed on to the store (miss), while it was on."
    );
    describe_counter!(
        crate::near::NEAR_EVICTIONS,
        "Near cache entries evicted for its memory budget or their age."
    );
    describe_counter!(
        crate::near::NEAR_INVALIDATIONS,
        "Invalidations the near cache applied: of a record, of an entity's index data, of everything."
    );
    metrics::describe_gauge!(
        crate::near::NEAR_ENABLED,
        "1 while the near cache answers, 0 while the store cannot vouch for reporting every change."
    );
    describe_counter!(
        crate::compute::COMPUTED_TOTAL,
        "Computed values by outcome: hit, miss, early_refresh, served_stale, ..."
    );
    describe_histogram!(
        crate::compute::COMPUTED_DURATION,
        Unit::Seconds,
        "Duration of value computations."
    );
}

#[cfg(test)]
mod tests {
    use metrics::{CounterFn, Gauge, Key, KeyName, Metadata, Recorder, SharedString, Unit};

    use super::*;

    /// Adds up every increment of `model_cache_lookups_total`, whatever its labels.
    #[derive(Default)]
    struct LookupsRecorder(Arc<AtomicU64>);

    struct Add(Arc<AtomicU64>);

    impl CounterFn for Add {
        fn increment(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }

        fn absolute(&self, _: u64) {}
    }

    impl Recorder for LookupsRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            if key.name() == "model_cache_lookups_total" {
                Counter::from_arc(Arc::new(Add(Arc::clone(&self.0))))
            } else {
                Counter::noop()
            }
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::noop()
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    #[test]
    fn metric_handles_follow_the_current_recorder() {
        let stats = Stats::default();
        stats.lookup("projects", Operation::Get, Event::Hit, 1);
        let (first, second) = (LookupsRecorder::default(), LookupsRecorder::default());
        metrics::with_local_recorder(&first, || {
            stats.lookup("projects", Operation::Get, Event::Hit, 2);
            stats.lookup("projects", Operation::Get, Event::Miss, 3);
        });
        metrics::with_local_recorder(&second, || stats.lookup("projects", Operation::Get, Event::Hit, 4));
        assert_eq!(first.0.load(Ordering::Relaxed), 5, "registered after the first use");
        assert_eq!(second.0.load(Ordering::Relaxed), 4);
        let projects = stats.snapshot().entity("projects");
        assert_eq!((projects.hits, projects.misses), (7, 3));
    }

    #[test]
    fn copies_of_an_entity_name_share_its_counters() {
        let stats = Stats::default();
        let copy: &'static str = String::from("projects").leak();
        stats.lookup("projects", Operation::Get, Event::Hit, 1);
        stats.lookup(copy, Operation::Get, Event::Hit, 2);
        assert_eq!(stats.snapshot().entity("projects").hits, 3);
    }
}
