//! The cache operations: read-through reads, writes that keep the store and everything
//! derived from it correct, over any [`Store`] and [`Origin`].
//!
//! The read path, the write path and the consistency machinery are described in the book's
//! consistency chapter (`docs/src/consistency.md`).

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
    fmt,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use rand::Rng;
use tracing::Instrument;

use crate::{
    CacheError, CacheView, Cacheable, ConfigError, EntitySchema, FillToken, IndexEntries, IndexQuery, InvalidSwitch,
    Lookup, Origin, OriginError, Query, QueryFill, QueryLookup, RecordId, RecordWrite, Registry, RemoveMode,
    SourceQuery, SourceRecord, Store, StoreError, WriteMode, WriteOutcome,
    change::{ChangeOutcome, Refusal, write_tags},
    flight::{Flight, FlightGuard, FlightOf, Flights, Found, QueryOutcome, RecordsOutcome, spawn_shared},
    keys, order,
    registry::EntityHandle,
    stats::{CacheStats, StaleReason, Stats},
    telemetry::{self, Event},
};

/// The default fraction by which TTLs are randomly lengthened or shortened, so that records
/// cached together do not all expire together.
pub const DEFAULT_TTL_JITTER: f64 = 0.05;
/// The default life of a fill lease: longer than any origin call should take.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// The environment variable read by [`CacheBuilder::enabled_from_env`].
pub const CACHE_ENABLED_ENV: &str = "CACHE_ENABLED";

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpsertOutcome {
    /// The record is cached as given.
    Stored,
    /// Refused, not an error: the cache holds a newer version of the record.
    Stale,
    /// Refused, not an error: the source deleted the record after this state of it (see
    /// [`Refusal::Deleted`](crate::Refusal::Deleted)).
    Deleted,
    /// The cache is disabled; nothing was stored.
    Disabled,
    /// The store failed (logged as `cache_store_error`); the record may be cached in an older
    /// form until its TTL runs out.
    StoreFailed,
}

/// What removing a record from the cache did ([`EntityHandle::remove`](crate::EntityHandle::remove)).
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

/// Anything that can be the cache's store: a [`Store`], or one already shared as
/// `Arc<dyn Store>`.
pub trait IntoStore {
    /// The store, shared.
    fn into_store(self) -> Arc<dyn Store>;
}

impl<S: Store> IntoStore for S {
    fn into_store(self) -> Arc<dyn Store> {
        Arc::new(self)
    }
}

impl IntoStore for Arc<dyn Store> {
    fn into_store(self) -> Arc<dyn Store> {
        self
    }
}

/// Anything that can be the cache's origin: an [`Origin`], or one already shared as
/// `Arc<dyn Origin>`.
pub trait IntoOrigin {
    /// The origin, shared.
    fn into_origin(self) -> Arc<dyn Origin>;
}

impl<O: Origin> IntoOrigin for O {
    fn into_origin(self) -> Arc<dyn Origin> {
        Arc::new(self)
    }
}

impl IntoOrigin for Arc<dyn Origin> {
    fn into_origin(self) -> Arc<dyn Origin> {
        self
    }
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
/// # async fn demo<P: Cacheable>(origin: impl cache_core::Origin, id: RecordId) -> Result<(), Box<dyn std::error::Error>> {
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

impl CacheBuilder {
    /// Whether the cache is used at all. A disabled cache sends every read to the origin
    /// (counted as a bypass) and every write skips the store. Enabled by default.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Reads [`CACHE_ENABLED`](CACHE_ENABLED_ENV): `false`, `0`, `no` or `off` disable the
    /// cache, `true`, `1`, `yes` or `on` enable it (any case); unset leaves the setting as it
    /// is. Any other value makes [`CacheBuilder::build`] fail with
    /// [`ConfigError::InvalidEnv`].
    pub fn enabled_from_env(self) -> Self {
        let value = std::env::var(CACHE_ENABLED_ENV).ok();
        self.enabled_from_value(value.as_deref())
    }

    fn enabled_from_value(mut self, value: Option<&str>) -> Self {
        let Some(value) = value else {
            return self;
        };
        match parse_switch(value) {
            Ok(enabled) => self.enabled = enabled,
            Err(_) => self.errors.push(ConfigError::InvalidEnv {
                var: CACHE_ENABLED_ENV,
                value: value.to_owned(),
                expected: InvalidSwitch::EXPECTED,
            }),
        }
        self
    }

    /// Registers a model for the type-erased routers and the sweep ([`Cache::entities`]).
    /// Typed operations work for any model, registered or not.
    pub fn register<T: Cacheable>(mut self) -> Self {
        self.entities.push(EntityHandle::of::<T>());
        self
    }

    /// The fraction by which every TTL is randomly lengthened or shortened (default
    /// [`DEFAULT_TTL_JITTER`], 5%); must be in `[0, 1)`.
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// How long a fill lease lives (default [`DEFAULT_LEASE_TTL`]). An origin call slower than
    /// this loses its lease and its result is not cached.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long the latest source time applied to each record is remembered (default
    /// [`DEFAULT_ORDERING_TTL`](crate::change::DEFAULT_ORDERING_TTL), 7 days): a change
    /// delayed longer is not recognised as older by its time.
    pub fn ordering_ttl(mut self, ttl: Duration) -> Self {
        self.ordering_ttl = ttl;
        self
    }

    /// Builds the cache.
    pub fn build(mut self) -> Result<Cache, ConfigError> {
        if let Some(err) = self.errors.drain(..).next() {
            return Err(err);
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(ConfigError::InvalidJitter(self.jitter));
        }
        let mut registry = Registry::default();
        for handle in self.entities {
            registry.insert(handle)?;
        }
        Ok(Cache {
            inner: Arc::new(Inner {
                store: self.store,
                origin: self.origin,
                enabled: self.enabled,
                registry,
                jitter: self.jitter,
                lease_ttl: self.lease_ttl,
                ordering_ttl: self.ordering_ttl,
                stats: Stats::default(),
                flights: Arc::default(),
                computed: self.compute.build(),
            }),
        })
    }
}

/// Reads an on/off switch as [`CacheBuilder::enabled_from_env`] reads
/// [`CACHE_ENABLED`](CACHE_ENABLED_ENV): `true`, `1`, `yes`, `on` switch on, `false`, `0`, `no`,
/// `off` switch off, in any case and with surrounding whitespace; anything else is an error.
/// Fits `clap`'s `value_parser`.
///
/// ```
/// assert_eq!(cache_core::parse_switch(" Off "), Ok(false));
/// assert_eq!(cache_core::parse_switch("1"), Ok(true));
/// assert!(cache_core::parse_switch("maybe").is_err());
/// ```
pub fn parse_switch(value: &str) -> Result<bool, InvalidSwitch> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(InvalidSwitch {
            value: value.to_owned(),
        }),
    }
}

/// A record the origin gave, read by the model.
enum OriginRecord {
    /// Readable and encodable: the write that stores it (its body is what callers decode).
    Storable(RecordWrite),
    /// Readable, but the model cannot encode it: not stored; callers read its source form,
    /// with these index entries.
    Unstorable(SourceRecord, IndexEntries),
    /// The model cannot read it.
    Unreadable(crate::ModelError),
}

/// How a record flight asks the origin.
#[derive(Debug, Clone, Copy)]
enum Fetch {
    /// `Origin::fetch` (one id).
    One,
    /// `Origin::fetch_many`.
    Many,
}

impl Fetch {
    fn label(self) -> &'static str {
        match self {
            Self::One => "fetch",
            Self::Many => "fetch_many",
        }
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

    // ---------------------------------------------------------------- reads

    /// Reads one record: from the store, or on a miss from the origin (then stored). `None`
    /// when the source does not have it (remembered as a fill tombstone for the entity's
    /// `negative_ttl`). An origin failure is an error and is never cached; a store failure is
    /// logged and answered from the origin.
    pub async fn get<T: Cacheable>(&self, id: &RecordId) -> Result<Option<T>, CacheError> {
        let schema = T::schema();
        let started = Instant::now();
        telemetry::record_tags(std::iter::once_with(|| keys::record_tag(schema.entity, id)));
        let out = self
            .read_records::<T>(schema, std::slice::from_ref(id), Fetch::One, "get")
            .await;
        self.inner.stats.operation_done(schema.entity, "get", started.elapsed());
        Ok(out?.into_iter().next().flatten())
    }

    /// Reads many records in one store round trip and at most one origin call: the records
    /// found, in the order of `ids` (each id once, at its first position); ids the source does
    /// not have are absent.
    pub async fn get_many<T: Cacheable>(&self, ids: &[RecordId]) -> Result<Vec<T>, CacheError> {
        let schema = T::schema();
        let started = Instant::now();
        let ids = distinct(ids);
        telemetry::record_tags(ids.iter().map(|id| keys::record_tag(schema.entity, id)));
        let out = self.read_records::<T>(schema, &ids, Fetch::Many, "get_many").await;
        self.inner
            .stats
            .operation_done(schema.entity, "get_many", started.elapsed());
        Ok(out?.into_iter().flatten().collect())
    }

    /// Runs an index query: from the store when it holds the complete result, otherwise from
    /// the origin (whose complete, unpaged result is then stored and marked complete). Results
    /// are ordered by the sort field, ties and unsorted results by id, in the sort's direction
    /// (ascending when unsorted).
    pub async fn query<T: Cacheable>(&self, query: Query<T>) -> Result<Vec<T>, CacheError> {
        let schema = T::schema();
        let started = Instant::now();
        let query = query.into_index_query();
        validate(schema, &query)?;
        if query.filters.is_empty() {
            telemetry::record_tags(std::iter::once_with(|| keys::entity_tag(schema.entity)));
        } else {
            telemetry::record_tags(
                query
                    .filters
                    .iter()
                    .map(|f| keys::index_tag(schema.entity, f.field, &f.value)),
            );
        }
        let out = self.run_query::<T>(schema, &query).await;
        self.inner
            .stats
            .operation_done(schema.entity, "query", started.elapsed());
        out
    }

    /// [`Cache::get`], returning a view of the model.
    pub async fn get_as<T: Cacheable, V: CacheView<T>>(&self, id: &RecordId) -> Result<Option<V>, CacheError> {
        Ok(self.get::<T>(id).await?.map(V::from_model))
    }

    /// [`Cache::get_many`], returning views of the model.
    pub async fn get_many_as<T: Cacheable, V: CacheView<T>>(&self, ids: &[RecordId]) -> Result<Vec<V>, CacheError> {
        Ok(self.get_many::<T>(ids).await?.into_iter().map(V::from_model).collect())
    }

    /// [`Cache::query`], returning views of the model.
    pub async fn query_as<T: Cacheable, V: CacheView<T>>(&self, query: Query<T>) -> Result<Vec<V>, CacheError> {
        Ok(self.query::<T>(query).await?.into_iter().map(V::from_model).collect())
    }

    /// Reads `ids` (distinct) through the cache, answering one slot per id.
    async fn read_records<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        fetch: Fetch,
        operation: &'static str,
    ) -> Result<Vec<Option<T>>, CacheError> {
        let inner = &self.inner;
        let entity = schema.entity;
        let mut slots: Vec<Option<T>> = ids.iter().map(|_| None).collect();
        if ids.is_empty() {
            return Ok(slots);
        }
        if !inner.enabled {
            inner.stats.lookup(entity, operation, Event::Bypass, ids.len() as u64);
            tracing::debug!(entity, operation, "cache_bypass");
            inner.stats.origin_call(entity, fetch.label());
            let mut found = self
                .origin_fetch(schema, ids, fetch)
                .await
                .map_err(CacheError::Origin)?;
            for (slot, id) in slots.iter_mut().zip(ids) {
                if let Some(source) = found.remove(id) {
                    *slot = Some(T::from_source(source)?);
                }
            }
            return Ok(slots);
        }
        let (misses, coalesce) = if telemetry::refresh_requested() {
            inner.stats.lookup(entity, operation, Event::Bypass, ids.len() as u64);
            tracing::debug!(entity, operation, "cache_bypass");
            ((0..ids.len()).collect(), false)
        } else {
            (self.read_store(schema, ids, operation, &mut slots).await, true)
        };
        if misses.is_empty() {
            return Ok(slots);
        }
        let miss_ids: Vec<RecordId> = misses.iter().map(|&i| ids[i].clone()).collect();
        let found = self
            .fetch_records::<T>(schema, &miss_ids, fetch, coalesce, operation)
            .await?;
        for i in misses {
            if let Some(record) = found.iter().find_map(|flight| flight.get(&ids[i])) {
                slots[i] = Some(record.decode()?);
            }
        }
        Ok(slots)
    }

    /// Looks `ids` up in the store, filling the slots of hits; answers the positions of misses.
    async fn read_store<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        operation: &'static str,
        slots: &mut [Option<T>],
    ) -> Vec<usize> {
        let inner = &self.inner;
        let entity = schema.entity;
        // One id (`Cache::get`) asks `Store::get` and allocates no list of lookups.
        let (one, many) = if let [id] = ids {
            let lookup = inner.store.get(schema, id).await.unwrap_or_else(|err| {
                self.store_failed(entity, operation, &err);
                Lookup::Miss
            });
            (Some(lookup), Vec::new())
        } else {
            let lookups = match inner.store.get_many(schema, ids).await {
                Ok(lookups) if lookups.len() == ids.len() => lookups,
                Ok(lookups) => {
                    let err = StoreError::Backend(format!("answered {} lookups for {} ids", lookups.len(), ids.len()));
                    self.store_failed(entity, operation, &err);
                    vec![Lookup::Miss; ids.len()]
                }
                Err(err) => {
                    self.store_failed(entity, operation, &err);
                    vec![Lookup::Miss; ids.len()]
                }
            };
            (None, lookups)
        };
        let (mut hits, mut tombstones) = (0, 0);
        let mut misses = Vec::new();
        for (i, lookup) in one.into_iter().chain(many).enumerate() {
            match lookup {
                Lookup::Hit(bytes) => match T::from_cached(&bytes) {
                    Ok(record) => {
                        slots[i] = Some(record);
                        hits += 1;
                    }
                    Err(err) => {
                        tracing::warn!(entity, id = %ids[i], error = %err, "cache_unreadable");
                        misses.push(i);
                    }
                },
                Lookup::Tombstone => tombstones += 1,
                Lookup::Miss => misses.push(i),
            }
        }
        inner.stats.lookup(entity, operation, Event::Hit, hits);
        inner.stats.lookup(entity, operation, Event::TombstoneHit, tombstones);
        inner.stats.lookup(entity, operation, Event::Miss, misses.len() as u64);
        if hits + tombstones > 0 {
            tracing::debug!(entity, operation, hits, tombstones, "cache_hit");
        }
        misses
    }

    /// Fetches `ids` from the origin, joining the flights already fetching some of them
    /// (`coalesce`) and starting one flight for the rest; the flight stores what it finds.
    /// Answers what each of those flights found.
    async fn fetch_records<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        fetch: Fetch,
        coalesce: bool,
        operation: &'static str,
    ) -> Result<Vec<Arc<HashMap<RecordId, Found>>>, CacheError> {
        let entity = schema.entity;
        let start = |ids: Vec<RecordId>, registered: bool| {
            let what = if registered {
                FlightOf::Records(ids.clone())
            } else {
                FlightOf::Unregistered
            };
            let cache = self.clone();
            self.start_flight(entity, what, async move {
                cache.fill_records::<T>(schema, &ids, fetch).await
            })
        };
        let flights = if coalesce {
            let joined = self
                .inner
                .flights
                .join_records(entity, ids, |rest| start(rest.to_vec(), true));
            self.inner.stats.coalesced(entity, operation, joined.joined_ids);
            if !joined.rest.is_empty() {
                self.inner.stats.origin_call(entity, fetch.label());
            }
            joined.flights
        } else {
            self.inner.stats.origin_call(entity, fetch.label());
            vec![start(ids.to_vec(), false).1]
        };
        futures::future::join_all(flights)
            .await
            .into_iter()
            .map(|outcome| outcome.map_err(CacheError::Origin))
            .collect()
    }

    /// Runs `work` as a flight: its own task, recording into the caller's telemetry scopes,
    /// that unregisters `what` from the flights when it ends (even by a panic).
    fn start_flight<O: Clone + Send + Sync + 'static>(
        &self,
        entity: &'static str,
        what: FlightOf,
        work: impl Future<Output = Result<O, Arc<OriginError>>> + Send + 'static,
    ) -> (u64, Flight<Result<O, Arc<OriginError>>>) {
        let fid = self.inner.flights.next_id();
        let guard = FlightGuard {
            flights: Arc::clone(&self.inner.flights),
            entity,
            fid,
            what,
        };
        let scopes = telemetry::current();
        let work = async move {
            let _guard = guard;
            // The flight records (store errors, refusals) into the scope of who started it.
            telemetry::within(scopes, work).await
        };
        (fid, spawn_shared(work.instrument(tracing::Span::current())))
    }

    /// A record flight: lease, ask the origin, store what it found (under the lease) and
    /// tombstone what it lacks.
    async fn fill_records<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        fetch: Fetch,
    ) -> RecordsOutcome {
        let inner = &self.inner;
        let lease = match inner.store.lease(schema, ids, inner.lease_ttl).await {
            Ok(lease) => Some(lease),
            Err(err) => {
                self.store_failed(schema.entity, "lease", &err);
                None
            }
        };
        let fetched = self.origin_fetch(schema, ids, fetch).await?;
        let mut found = HashMap::with_capacity(fetched.len());
        let mut writes = Vec::with_capacity(fetched.len());
        for (id, source) in fetched {
            let record = match self.read_source::<T>(source) {
                OriginRecord::Storable(write) => {
                    let body = Found::Cached(write.body.clone());
                    writes.push(write);
                    body
                }
                OriginRecord::Unstorable(source, _) => Found::Source(source),
                OriginRecord::Unreadable(err) => Found::Unreadable(Arc::new(err)),
            };
            found.insert(id, record);
        }
        if let Some(lease) = lease {
            self.store_fill(schema, lease, ids, &found, &writes).await;
        }
        Ok(Arc::new(found))
    }

    /// Asks the origin for `ids`, keeping only the records asked for.
    async fn origin_fetch(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        fetch: Fetch,
    ) -> Result<HashMap<RecordId, SourceRecord>, Arc<OriginError>> {
        let started = Instant::now();
        let fetched = match (fetch, ids) {
            (Fetch::One, [id]) => self
                .inner
                .origin
                .fetch(schema, id)
                .await
                .map(|r| r.into_iter().collect()),
            _ => self.inner.origin.fetch_many(schema, ids).await,
        };
        self.origin_done(schema.entity, fetch.label(), started, fetched.as_ref().err());
        let asked: HashSet<&RecordId> = ids.iter().collect();
        Ok(fetched
            .map_err(Arc::new)?
            .into_iter()
            .filter(|r| asked.contains(&r.id))
            .map(|r| (r.id.clone(), r))
            .collect())
    }

    /// Reads a record the origin gave with the model, into what a flight stores and answers.
    fn read_source<T: Cacheable>(&self, source: SourceRecord) -> OriginRecord {
        let entity = T::schema().entity;
        let id = source.id.clone();
        let record = match T::from_source(source) {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(entity, %id, error = %err, "cache_unparseable");
                return OriginRecord::Unreadable(err);
            }
        };
        match self.record_write(&record) {
            Ok(write) => OriginRecord::Storable(write),
            Err(err) => {
                tracing::warn!(entity, %id, error = %err, "cache_unparseable");
                match record.to_source() {
                    Ok(source) => OriginRecord::Unstorable(source, record.index_entries()),
                    Err(err) => OriginRecord::Unreadable(err),
                }
            }
        }
    }

    async fn store_fill(
        &self,
        schema: &'static EntitySchema,
        lease: crate::Lease,
        ids: &[RecordId],
        found: &HashMap<RecordId, Found>,
        writes: &[RecordWrite],
    ) {
        let inner = &self.inner;
        let entity = schema.entity;
        let mut tags = Vec::new();
        if !writes.is_empty() {
            match inner.store.put(schema, writes, WriteMode::Fill(lease)).await {
                Ok(outcomes) => {
                    let mut stored = 0;
                    for (write, outcome) in writes.iter().zip(outcomes) {
                        match outcome {
                            WriteOutcome::Written { previous } => {
                                stored += 1;
                                if let Some(previous) = previous {
                                    tags.extend(write_tags(schema, &write.id, Some(&previous), Some(&write.index)));
                                }
                            }
                            WriteOutcome::LeaseLost => self.stale_refused(entity, &write.id, StaleReason::Lease),
                            WriteOutcome::StaleVersion => self.stale_refused(entity, &write.id, StaleReason::Version),
                            WriteOutcome::Deleted | WriteOutcome::Unordered => {
                                self.stale_refused(entity, &write.id, StaleReason::Deleted);
                            }
                        }
                    }
                    tracing::debug!(entity, stored, "cache_miss_stored");
                }
                Err(err) => self.store_failed(entity, "put", &err),
            }
        }
        let missing: Vec<RecordId> = ids.iter().filter(|id| !found.contains_key(*id)).cloned().collect();
        if !missing.is_empty() {
            let mode = RemoveMode::FillTombstone {
                lease,
                // A negative answer: short-lived, unlike a delete the source reported.
                ttl: self.jittered(schema.negative_ttl),
            };
            match inner.store.remove(schema, &missing, mode).await {
                Ok(previous) => {
                    for (id, previous) in missing.iter().zip(previous) {
                        tags.push(keys::record_tag(entity, id));
                        if let Some(previous) = previous {
                            tags.extend(write_tags(schema, id, Some(&previous), None));
                        }
                    }
                }
                Err(err) => self.store_failed(entity, "remove", &err),
            }
        }
        self.purge(schema, tags).await;
    }

    async fn run_query<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        query: &IndexQuery,
    ) -> Result<Vec<T>, CacheError> {
        let inner = &self.inner;
        let entity = schema.entity;
        if !inner.enabled {
            inner.stats.lookup(entity, "query", Event::Bypass, 1);
            tracing::debug!(entity, operation = "query", "cache_bypass");
            let source = source_query(schema, query)?;
            inner.stats.origin_call(entity, "query");
            let started = Instant::now();
            let records = inner.origin.query(schema, &source).await;
            self.origin_done(entity, "query", started, records.as_ref().err());
            return records?
                .into_iter()
                .map(|r| T::from_source(r).map_err(Into::into))
                .collect();
        }
        let refresh = telemetry::refresh_requested();
        // Whatever the store answers, the result is refilled through the fill token, as a miss
        // is: a write during the origin call refuses the refill.
        let token = match inner.store.query(schema, query).await {
            Ok(QueryLookup::Complete { page, token }) if !refresh => {
                match page.iter().map(|b| T::from_cached(b)).collect::<Result<Vec<T>, _>>() {
                    Ok(records) => {
                        inner.stats.lookup(entity, "query", Event::Hit, 1);
                        tracing::debug!(entity, operation = "query", "cache_hit");
                        return Ok(records);
                    }
                    Err(err) => {
                        // The refill replaces the bodies the model cannot read.
                        tracing::warn!(entity, error = %err, "cache_unreadable");
                        Some(token)
                    }
                }
            }
            Ok(QueryLookup::Complete { token, .. } | QueryLookup::Incomplete(token)) => Some(token),
            Err(err) => {
                self.store_failed(entity, "query", &err);
                None
            }
        };
        let event = if refresh { Event::Bypass } else { Event::Miss };
        inner.stats.lookup(entity, "query", event, 1);
        let start = |unpaged: IndexQuery, registered: bool| {
            let what = if registered {
                FlightOf::Query(unpaged.clone())
            } else {
                FlightOf::Unregistered
            };
            let cache = self.clone();
            self.start_flight(entity, what, async move {
                cache.fill_query::<T>(schema, &unpaged, token).await
            })
        };
        let unpaged = query.unpaged();
        let flight = if refresh {
            // A refresh neither joins a flight that began before it nor is joined.
            inner.stats.origin_call(entity, "query");
            start(unpaged, false).1
        } else {
            let (flight, joined) = inner
                .flights
                .join_query(entity, &unpaged, || start(unpaged.clone(), true));
            if joined {
                inner.stats.coalesced(entity, "query", 1);
            } else {
                inner.stats.origin_call(entity, "query");
            }
            flight
        };
        let found = flight.await.map_err(CacheError::Origin)?;
        // A record the model cannot read fails the query, in the page or not.
        if let Some(Found::Unreadable(err)) = found.iter().find(|f| matches!(f, Found::Unreadable(_))) {
            return Err(CacheError::Model(err.shared_copy()));
        }
        found
            .iter()
            .skip(query.offset)
            .take(query.limit.unwrap_or(usize::MAX))
            .map(Found::decode)
            .collect()
    }

    /// A query flight: ask the origin for the complete result, store it marked complete when
    /// the fill token still holds, and answer it in the query's order.
    async fn fill_query<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        unpaged: &IndexQuery,
        token: Option<FillToken>,
    ) -> QueryOutcome {
        let inner = &self.inner;
        let entity = schema.entity;
        let source = SourceQuery::from_index_query(schema, unpaged)
            .ok_or_else(|| Arc::new(OriginError::Unsupported(format!("a field of {unpaged:?} on {entity}"))))?;
        let started = Instant::now();
        let records = inner.origin.query(schema, &source).await;
        self.origin_done(entity, "query", started, records.as_ref().err());
        let records = records.map_err(Arc::new)?;
        let mut rows = Vec::with_capacity(records.len());
        let mut writes = Vec::with_capacity(records.len());
        let mut complete = true;
        for source in records {
            let id = source.id.clone();
            let (score, found) = match self.read_source::<T>(source) {
                OriginRecord::Storable(write) => {
                    let row = (sort_score(unpaged, &write.index), Found::Cached(write.body.clone()));
                    writes.push(write);
                    row
                }
                OriginRecord::Unstorable(source, index) => {
                    complete = false;
                    (sort_score(unpaged, &index), Found::Source(source))
                }
                OriginRecord::Unreadable(err) => {
                    complete = false;
                    (f64::NEG_INFINITY, Found::Unreadable(Arc::new(err)))
                }
            };
            rows.push((score, id, found));
        }
        // Only the origin's whole result can be marked complete.
        if let (true, Some(token)) = (complete, token) {
            match inner.store.complete_query(schema, unpaged, token, &writes).await {
                Ok(QueryFill::Completed { forgotten }) => {
                    tracing::debug!(entity, records = writes.len(), "cache_miss_stored");
                    if !forgotten.is_empty() {
                        // The source no longer files them here (deleted, or moved): what was
                        // tagged by them, or by the result they left, is stale.
                        let mut tags = vec![keys::entity_tag(entity)];
                        tags.extend(forgotten.iter().map(|id| keys::record_tag(entity, id)));
                        tags.extend(
                            unpaged
                                .filters
                                .iter()
                                .map(|f| keys::index_tag(entity, f.field, &f.value)),
                        );
                        self.purge(schema, tags).await;
                    }
                }
                Ok(QueryFill::Refused) => {
                    inner.stats.stale(entity, StaleReason::FillToken, 1);
                    tracing::debug!(entity, reason = "fill_token", "cache_stale_refused");
                }
                Err(err) => self.store_failed(entity, "complete_query", &err),
            }
        }
        let direction = unpaged.sort.map(|s| s.order);
        rows.sort_by(|a, b| order::compare_scored((a.0, &a.1), (b.0, &b.1), direction));
        Ok(Arc::new(rows.into_iter().map(|(_, _, found)| found).collect()))
    }

    // ---------------------------------------------------------------- writes

    /// Stores `record` as the current state of the source record (after the application wrote
    /// it to the source). It takes the one ordered change path ([`Cache::apply_changes`]): a
    /// record older than the cached version is refused as [`UpsertOutcome::Stale`], one the
    /// source deleted since as [`UpsertOutcome::Deleted`], not errors. Purges every value
    /// tagged with the record, the index values it left or entered, and its entity.
    pub async fn upsert<T: Cacheable>(&self, record: &T) -> Result<UpsertOutcome, CacheError> {
        let schema = T::schema();
        let started = Instant::now();
        let write = self.record_write(record)?;
        let outcome = self.apply_upsert::<T>(write).await;
        self.inner
            .stats
            .operation_done(schema.entity, "upsert", started.elapsed());
        Ok(match outcome {
            ChangeOutcome::Applied => UpsertOutcome::Stored,
            ChangeOutcome::Refused(Refusal::Deleted) => UpsertOutcome::Deleted,
            ChangeOutcome::Refused(_) => UpsertOutcome::Stale,
            ChangeOutcome::Disabled => UpsertOutcome::Disabled,
            _ => UpsertOutcome::StoreFailed,
        })
    }

    /// Forgets a record: the next read asks the origin. Drops the completeness markers of the
    /// entity's queries (the store no longer knows where the record belongs); prefer
    /// [`Cache::upsert`] when the new record is at hand.
    /// A store failure is logged (`cache_store_error`) and counted, not returned: the record
    /// then lives until its TTL runs out.
    pub async fn invalidate<T: Cacheable>(&self, id: &RecordId) -> Result<(), CacheError> {
        let started = Instant::now();
        self.apply_removal(EntityHandle::of::<T>(), id, false).await;
        self.inner
            .stats
            .operation_done(T::schema().entity, "invalidate", started.elapsed());
        Ok(())
    }

    /// Deletes a record at the origin, then removes it from the cache leaving a tombstone that
    /// keeps the deleted version (from [`Deletion`](crate::Deletion)) and the delete's time, so
    /// that a write racing the delete cannot bring the record back. Answers whether the origin
    /// had it. If the origin fails, the cache is left as it was.
    pub async fn delete<T: Cacheable>(&self, id: &RecordId) -> Result<bool, CacheError> {
        let schema = T::schema();
        let entity = schema.entity;
        let started = Instant::now();
        self.inner.stats.origin_call(entity, "delete");
        let origin_started = Instant::now();
        let deletion = self.inner.origin.delete(schema, id).await;
        self.origin_done(entity, "delete", origin_started, deletion.as_ref().err());
        let deletion = deletion?;
        let existed = deletion.is_some();
        let deletion = deletion.unwrap_or_default();
        let version = match (deletion.version, deletion.record) {
            (Some(version), _) => Some(version),
            (None, Some(record)) => T::from_source(record)?.version(),
            (None, None) => None,
        };
        let at = deletion.at.unwrap_or_else(std::time::SystemTime::now);
        self.apply_delete::<T>(id, version, at).await;
        self.inner.stats.operation_done(entity, "delete", started.elapsed());
        Ok(existed)
    }

    /// Reads a record from the origin whatever the store holds, and stores what it finds as a
    /// fill: how the cache settles an upsert it cannot order against a delete. Answers whether
    /// the origin has the record.
    pub(crate) async fn refill<T: Cacheable>(&self, id: &RecordId) -> Result<bool, CacheError> {
        let schema = T::schema();
        let found = self
            .fetch_records::<T>(schema, std::slice::from_ref(id), Fetch::One, false, "get")
            .await?;
        Ok(found.iter().any(|flight| flight.contains_key(id)))
    }

    // ---------------------------------------------------------------- helpers

    pub(crate) fn store_failed(&self, entity: &'static str, operation: &'static str, err: &StoreError) {
        self.inner.stats.store_error(entity, operation);
        if let Some(held) = self.inner.stats.warnings.store.admit(Instant::now()) {
            tracing::warn!(entity, operation, error = %err, held_back = held, "cache_store_error");
        }
    }

    pub(crate) fn origin_done(
        &self,
        entity: &'static str,
        operation: &'static str,
        started: Instant,
        err: Option<&OriginError>,
    ) {
        self.inner
            .stats
            .origin_done(entity, operation, started.elapsed(), err.is_none());
        if let Some(err) = err
            && let Some(held) = self.inner.stats.warnings.origin.admit(Instant::now())
        {
            tracing::warn!(entity, operation, error = %err, held_back = held, "cache_origin_error");
        }
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
            self.store_failed(schema.entity, "purge_tags", &err);
        }
    }

    pub(crate) fn record_write<T: Cacheable>(&self, record: &T) -> Result<RecordWrite, crate::ModelError> {
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

/// `ids` without repeats, each at its first position; borrowed when there are none (the usual
/// case), so that a read of distinct ids copies nothing.
fn distinct(ids: &[RecordId]) -> Cow<'_, [RecordId]> {
    if ids.len() < 2 {
        return Cow::Borrowed(ids);
    }
    let mut seen = HashSet::with_capacity(ids.len());
    match ids.iter().position(|id| !seen.insert(id)) {
        None => Cow::Borrowed(ids),
        Some(first_repeat) => {
            let mut distinct = ids[..first_repeat].to_vec();
            distinct.extend(ids[first_repeat..].iter().filter(|id| seen.insert(*id)).cloned());
            Cow::Owned(distinct)
        }
    }
}

fn sort_score(query: &IndexQuery, entries: &IndexEntries) -> f64 {
    query
        .sort
        .and_then(|s| entries.score(s.field))
        .unwrap_or(f64::NEG_INFINITY)
}

/// Checks that a query filters on indexed fields and sorts by a sortable one.
fn validate(schema: &'static EntitySchema, query: &IndexQuery) -> Result<(), CacheError> {
    let invalid = |reason: String| CacheError::InvalidQuery {
        entity: schema.entity,
        reason,
    };
    for filter in &query.filters {
        match schema.field(filter.field) {
            Some(field) if field.index.is_some() => {}
            Some(_) => return Err(invalid(format!("`{}` is not indexed", filter.field))),
            None => return Err(invalid(format!("no field `{}`", filter.field))),
        }
    }
    if let Some(sort) = query.sort {
        match schema.field(sort.field) {
            Some(field) if field.sortable => {}
            Some(_) => return Err(invalid(format!("`{}` is not sortable", sort.field))),
            None => return Err(invalid(format!("no field `{}`", sort.field))),
        }
    }
    Ok(())
}

fn source_query(schema: &'static EntitySchema, query: &IndexQuery) -> Result<SourceQuery, CacheError> {
    SourceQuery::from_index_query(schema, query).ok_or_else(|| CacheError::InvalidQuery {
        entity: schema.entity,
        reason: "names a field the entity does not have".to_owned(),
    })
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
