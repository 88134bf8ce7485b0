//! The cache operations: read-through reads, writes that keep the store and everything
//! derived from it correct, over any [`Store`] and [`Origin`].
//!
//! The read path, the write path and the consistency machinery are described in the book's
//! consistency chapter (`docs/src/consistency.md`); the guide's architecture chapter follows a
//! read and a write through these modules.
//!
//! This file holds the [`Cache`] itself and what every path shares (statistics, purges, TTL
//! jitter); the paths are beside it: `read.rs` (reads and the fill pipeline), `query.rs`
//! (index queries), `write.rs` (the application's writes), `builder.rs` (configuration).

mod builder;
mod query;
mod read;
mod write;

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use rand::Rng;
use tracing::Instrument;

#[cfg(test)]
use self::read::distinct;
use self::read::{Fetch, OriginRecord};
use crate::{
    CacheError, CacheView, Cacheable, ConfigError, Query, RecordId,
    change::{ChangeOutcome, Refusal, write_tags},
    config::{CACHE_ENABLED_ENV, DEFAULT_LEASE_TTL, DEFAULT_TTL_JITTER, InvalidSwitch, parse_switch},
    dependencies,
    flight::{Flight, FlightGuard, FlightOf, Flights, Found, QueryOutcome, RecordsOutcome, spawn_shared},
    keys,
    operation::{Operation, OperationGuard, OriginCall, StoreStep},
    order,
    origin::{IntoOrigin, Origin, OriginError, SourceQuery, SourceRecord},
    query::IndexQuery,
    registry::{EntityHandle, Registry},
    schema::{EntitySchema, IndexEntries},
    stats::{CacheStats, StaleReason, Stats},
    store::{
        DecodedCopy, FillToken, IntoStore, Lookup, QueryFill, QueryLookup, RecordWrite, RemoveMode, Store, StoreError,
        WriteMode, WriteOutcome,
    },
};

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpsertOutcome {
    /// The record is cached as given.
    Stored,
    /// Refused, not an error: the cache holds a newer version of the record.
    Stale,
    /// Refused, not an error: the source deleted the record after this state of it (see
    /// [`Refusal::Deleted`](crate::change::Refusal::Deleted)).
    Deleted,
    /// The cache is disabled; nothing was stored.
    Disabled,
    /// The store failed (logged as `cache_store_error`); the record may be cached in an older
    /// form until its TTL runs out.
    StoreFailed,
}

/// What removing a record from the cache did ([`EntityHandle::remove`](crate::registry::EntityHandle::remove)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoveOutcome {
    /// The record is gone from the cache (and tombstoned, when asked).
    Removed,
    /// The cache is disabled; nothing was touched.
    Disabled,
    /// The store failed (logged as `cache_store_error`); the record may still be cached until
    /// its TTL runs out, so a webhook sender should retry.
    StoreFailed,
}

/// A read-through cache of model records in front of an origin.
///
/// Cheap to clone: clones share the store, the origin, the statistics and the in-flight
/// origin calls. Reads run their origin calls as Tokio tasks (so that a call completes for
/// everyone waiting on it even if its first caller goes away): use the cache inside a Tokio
/// runtime.
///
/// ```no_run
/// # use cache_core::{Cache, MemoryStore, Cacheable, RecordId};
/// # async fn demo<P: Cacheable>(origin: impl cache_core::origin::Origin, id: RecordId) -> Result<(), Box<dyn std::error::Error>> {
/// let cache = Cache::builder(MemoryStore::new(), origin)
///     .enabled_from_env()
///     .register::<P>()
///     .build()?;
/// let project: Option<P> = cache.get(&id).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    origin: Arc<dyn Origin>,
    enabled: bool,
    registry: Registry,
    jitter: f64,
    lease_ttl: Duration,
    ordering_ttl: Duration,
    stats: Stats,
    flights: Arc<Flights>,
    computed: crate::compute::ComputeState,
    /// Decoded records and query results kept in this process (`CacheBuilder::near_cache`).
    near: Option<crate::near::NearCache>,
    feeds: crate::feed::Feeds,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("enabled", &self.inner.enabled)
            .field("entities", &self.inner.registry)
            .field("ttl_jitter", &self.inner.jitter)
            .field("lease_ttl", &self.inner.lease_ttl)
            .finish_non_exhaustive()
    }
}

/// Configures a [`Cache`]; see [`Cache::builder`].
#[must_use]
pub struct CacheBuilder {
    store: Arc<dyn Store>,
    origin: Arc<dyn Origin>,
    enabled: bool,
    errors: Vec<ConfigError>,
    entities: Vec<EntityHandle>,
    jitter: f64,
    lease_ttl: Duration,
    ordering_ttl: Duration,
    pub(crate) compute: crate::compute::ComputeSetup,
    near: crate::near::NearConfig,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("enabled", &self.enabled)
            .field("entities", &self.entities)
            .field("ttl_jitter", &self.jitter)
            .field("lease_ttl", &self.lease_ttl)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Starts configuring a cache over `store` and `origin` (each a concrete type or an
    /// `Arc<dyn ...>`).
    pub fn builder(store: impl IntoStore, origin: impl IntoOrigin) -> CacheBuilder {
        CacheBuilder {
            store: store.into_store(),
            origin: origin.into_origin(),
            enabled: true,
            errors: Vec::new(),
            entities: Vec::new(),
            jitter: DEFAULT_TTL_JITTER,
            lease_ttl: DEFAULT_LEASE_TTL,
            ordering_ttl: crate::change::DEFAULT_ORDERING_TTL,
            compute: crate::compute::ComputeSetup::default(),
            near: crate::near::NearConfig::default(),
        }
    }

    /// The registered models.
    pub fn entities(&self) -> &Registry {
        &self.inner.registry
    }

    /// Counts of what the cache did, per entity.
    pub fn stats(&self) -> CacheStats {
        self.inner.stats.snapshot()
    }

    /// What the change feeds applying to this cache report: their position, lag, backlog and
    /// outcomes ([`feed`](crate::feed)).
    pub fn feeds(&self) -> &crate::feed::Feeds {
        &self.inner.feeds
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The origin.
    pub fn origin(&self) -> &Arc<dyn Origin> {
        &self.inner.origin
    }

    /// Whether the cache is used (see [`CacheBuilder::enabled`]).
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    /// The near cache, when one was asked for and the store supports it
    /// ([`CacheBuilder::near_cache`]).
    pub fn near_cache(&self) -> Option<&crate::near::NearCache> {
        self.inner.near.as_ref()
    }

    pub(crate) fn ordering_ttl(&self) -> Duration {
        self.inner.ordering_ttl
    }

    pub(crate) fn compute_state(&self) -> &crate::compute::ComputeState {
        &self.inner.computed
    }

    pub(crate) fn stats_handle(&self) -> &Stats {
        &self.inner.stats
    }

    pub(crate) fn detach_flights(&self, entity: &'static str, ids: &[RecordId]) {
        self.inner.flights.detach(entity, ids);
    }

    fn stale_refused(&self, entity: &'static str, id: &RecordId, reason: StaleReason) {
        self.inner.stats.stale(entity, reason, 1);
        tracing::debug!(entity, %id, ?reason, "cache_stale_refused");
    }

    /// Purges values tagged with any of `tags`.
    pub(crate) async fn purge(&self, schema: &'static EntitySchema, mut tags: Vec<String>) {
        if tags.is_empty() {
            return;
        }
        tags.sort();
        tags.dedup();
        self.inner.computed.detach(&tags).await;
        if let Err(err) = self.inner.store.purge_tags(&tags).await {
            self.store_failed(schema.entity, StoreStep::PurgeTags, &err);
        }
    }

    pub(crate) fn record_write<T: Cacheable>(&self, record: &T) -> Result<RecordWrite, crate::schema::ModelError> {
        Ok(RecordWrite {
            id: record.id().clone(),
            body: Bytes::from(record.to_cached()?),
            index: record.index_entries(),
            version: record.version(),
            at: None,
            ttl: self.jittered(T::schema().ttl),
        })
    }

    /// `ttl` lengthened or shortened by a random fraction of up to the configured jitter.
    pub(crate) fn jittered(&self, ttl: Duration) -> Duration {
        let jitter = self.inner.jitter;
        if jitter == 0.0 {
            return ttl;
        }
        let factor = 1.0 + rand::rng().random_range(-jitter..=jitter);
        Duration::try_from_secs_f64(ttl.as_secs_f64() * factor).unwrap_or(ttl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn builder() -> CacheBuilder {
        Cache::builder(MemoryStore::new(), crate::testing::MemoryOrigin::new())
    }

    #[test]
    fn cache_enabled_values() {
        for (value, enabled) in [
            ("false", false),
            ("0", false),
            ("No", false),
            (" OFF ", false),
            ("true", true),
            ("1", true),
            ("yes", true),
            ("on", true),
        ] {
            let cache = builder()
                .enabled(!enabled)
                .enabled_from_value(Some(value))
                .build()
                .unwrap();
            assert_eq!(cache.is_enabled(), enabled, "{value}");
        }
        assert!(builder().enabled_from_value(None).build().unwrap().is_enabled());
        let err = builder().enabled_from_value(Some("nope")).build().unwrap_err();
        assert_eq!(
            err.to_string(),
            "CACHE_ENABLED=\"nope\" is not understood: use one of true, false, 1, 0, yes, no, on, off"
        );
        assert_eq!(
            parse_switch("nope").unwrap_err().to_string(),
            "\"nope\" is not understood: use one of true, false, 1, 0, yes, no, on, off"
        );
    }

    #[test]
    fn distinct_keeps_first_positions_and_borrows_when_it_can() {
        let id = |s: &str| RecordId::new(s).unwrap();
        let ids = [id("a"), id("b"), id("a"), id("c"), id("b")];
        assert_eq!(*distinct(&ids), [id("a"), id("b"), id("c")]);
        assert!(matches!(distinct(&ids[..2]), Cow::Borrowed(_)));
        assert!(matches!(distinct(&ids[..1]), Cow::Borrowed(_)));
    }

    #[test]
    fn jitter_must_be_a_fraction() {
        assert_eq!(
            builder().ttl_jitter(1.0).build().unwrap_err(),
            ConfigError::InvalidJitter(1.0)
        );
        assert!(builder().ttl_jitter(-0.1).build().is_err());
        let cache = builder().ttl_jitter(0.05).build().unwrap();
        let ttl = Duration::from_secs(1000);
        let seen: HashSet<Duration> = (0..50).map(|_| cache.jittered(ttl)).collect();
        assert!(seen.iter().all(|d| (950..=1050).contains(&d.as_secs())), "{seen:?}");
        assert!(seen.len() > 1, "jitter varies the TTL");
        let exact = builder().ttl_jitter(0.0).build().unwrap();
        assert_eq!(exact.jittered(ttl), ttl);
    }
}
