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
//! | `model_cache_stale_refusals_total` | counter | `entity`, `reason` (`lease`, `version`, `fill_token`) |
//! | `model_cache_operation_duration_seconds` | histogram | `entity`, `operation` |
//! | `model_cache_origin_duration_seconds` | histogram | `entity`, `operation` |

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;

use crate::telemetry::{self, Event};

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
}

impl StaleReason {
    fn label(self) -> &'static str {
        match self {
            Self::Lease => "lease",
            Self::Version => "version",
            Self::FillToken => "fill_token",
        }
    }
}

/// The cache's counters, and the single place that also feeds metrics and telemetry.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    entities: RwLock<HashMap<&'static str, Arc<Counters>>>,
}

impl Stats {
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
    pub(crate) fn lookup(&self, entity: &'static str, operation: &'static str, event: Event, n: u64) {
        if n == 0 {
            return;
        }
        let c = self.counters(entity);
        let (counter, result) = match event {
            Event::Hit => (&c.hits, "hit"),
            Event::Miss => (&c.misses, "miss"),
            Event::TombstoneHit => (&c.tombstone_hits, "tombstone"),
            Event::Bypass => (&c.bypasses, "bypass"),
            Event::OriginCall | Event::StoreError | Event::Coalesced => return,
        };
        counter.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("model_cache_lookups_total", "entity" => entity, "operation" => operation, "result" => result)
            .increment(n);
        telemetry::count(event, n);
    }

    pub(crate) fn coalesced(&self, entity: &'static str, operation: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.counters(entity).coalesced.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("model_cache_coalesced_total", "entity" => entity, "operation" => operation).increment(n);
        telemetry::count(Event::Coalesced, n);
    }

    pub(crate) fn origin_call(&self, entity: &'static str, operation: &'static str) {
        self.counters(entity).origin_calls.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("model_cache_origin_calls_total", "entity" => entity, "operation" => operation).increment(1);
        telemetry::count(Event::OriginCall, 1);
    }

    pub(crate) fn origin_done(&self, entity: &'static str, operation: &'static str, took: Duration, ok: bool) {
        metrics::histogram!("model_cache_origin_duration_seconds", "entity" => entity, "operation" => operation)
            .record(took.as_secs_f64());
        if !ok {
            self.counters(entity).origin_errors.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("model_cache_origin_errors_total", "entity" => entity, "operation" => operation)
                .increment(1);
        }
    }

    pub(crate) fn store_error(&self, entity: &'static str, operation: &'static str) {
        self.counters(entity).store_errors.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("model_cache_store_errors_total", "entity" => entity, "operation" => operation).increment(1);
        telemetry::count(Event::StoreError, 1);
    }

    pub(crate) fn stale(&self, entity: &'static str, reason: StaleReason, n: u64) {
        if n == 0 {
            return;
        }
        self.counters(entity).stale_refusals.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("model_cache_stale_refusals_total", "entity" => entity, "reason" => reason.label())
            .increment(n);
    }

    pub(crate) fn operation_done(&self, entity: &'static str, operation: &'static str, took: Duration) {
        metrics::histogram!("model_cache_operation_duration_seconds", "entity" => entity, "operation" => operation)
            .record(took.as_secs_f64());
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
        crate::compute::COMPUTED_TOTAL,
        "Computed values by outcome: hit, miss, early_refresh, served_stale, ..."
    );
    describe_histogram!(
        crate::compute::COMPUTED_DURATION,
        Unit::Seconds,
        "Duration of value computations."
    );
}
