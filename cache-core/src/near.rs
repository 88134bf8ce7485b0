//! The near cache: decoded records, index query results and computed values (cached responses
//! among them) kept in this process, in front of a
//! store that reports every change to what it holds ([`Store::subscribe_invalidations`]; Redis
//! does so with server-assisted client-side caching, `CLIENT TRACKING`). Turned on with
//! [`CacheBuilder::near_cache`](crate::CacheBuilder::near_cache).
//!
//! ## What it answers
//! An entry is answered only when
//! - the store has vouched for reporting every change ([`InvalidationSink::set_tracking`])
//!   since before the read that produced the entry began, and
//! - no invalidation that may touch the entry arrived since that read began.
//!
//! Both are checked on every hit against counters rather than by removing entries: a
//! *generation* per record (hashed into a fixed table, so that it costs no memory per id; two
//! ids sharing a slot only cost each other a miss), one per entity for its query results, and
//! an *epoch* for everything, odd while the store does not vouch. A read takes the counters
//! before it asks the store and keeps its entry stamped with them: an invalidation processed
//! while the store's answer was on its way leaves the entry unanswerable. This is the race
//! between a read and an invalidation that Redis's client-side caching documentation
//! describes. Removing entries on an invalidation only frees their memory.
//!
//! Only what the store answered is kept (a hit, a complete query page, a computed value's
//! stored form), never what a fill or a computation brought: its own write invalidates it
//! anyway. Tombstones are not kept either: "not found" is asked of the store each time.
//!
//! A computed value is kept as the bytes the store answered, decoded on each hit (its type need
//! not be `Clone`), and beside them decoded when its reader can clone it
//! ([`Cache::compute_cloned_with`]); whether it is still fresh is judged on each hit as on a
//! store read.
//!
//! Entries are weighed at their cached form's length plus the decoded value's inline size and
//! [`ENTRY_OVERHEAD`], against the budget given to the builder; past it, moka evicts the least
//! useful ones.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState},
    sync::{
        Arc, PoisonError, RwLock, Weak,
        atomic::{
            AtomicU64,
            Ordering::{Relaxed, SeqCst},
        },
    },
    time::Duration,
};

use bytes::Bytes;
use moka::{notification::RemovalCause, sync::Cache as Moka};
use serde::Serialize;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::{
    Cache, Cacheable, RecordId,
    operation::{Operation, OperationGuard},
    query::IndexQuery,
    schema::EntitySchema,
    store::{Invalidation, InvalidationSink, Store},
};

mod reads;

pub(crate) use self::reads::{get, keep_query, query, read_records};

/// The default longest life of a near entry ([`CacheBuilder::near_cache_max_age`]).
///
/// [`CacheBuilder::near_cache_max_age`]: crate::CacheBuilder::near_cache_max_age
pub const DEFAULT_NEAR_MAX_AGE: Duration = Duration::from_secs(60);

/// What an entry weighs beside its cached form and its value's inline size: the key (a type id
/// and a reference-counted id), moka's slot and bookkeeping, the value's shared allocation.
/// An estimate, on the high side.
pub const ENTRY_OVERHEAD: usize = 192;

/// Record generations: 16,384 counters (128 KiB).
const RECORD_SLOTS: usize = 1 << 14;
/// Entity generations (query results).
const ENTITY_SLOTS: usize = 1 << 8;

/// How the builder configures the near cache: none when `max_bytes` is 0.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NearConfig {
    pub(crate) max_bytes: u64,
    pub(crate) max_age: Duration,
}

impl Default for NearConfig {
    fn default() -> Self {
        Self {
            max_bytes: 0,
            max_age: DEFAULT_NEAR_MAX_AGE,
        }
    }
}

/// The near cache of a [`Cache`]: see the [module docs](self). Read it through the cache
/// ([`Cache::near_cache`]); its counts are in [`NearCache::stats`].
#[derive(Clone)]
pub struct NearCache {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("enabled", &self.is_enabled())
            .field("capacity_bytes", &self.shared.capacity)
            .finish_non_exhaustive()
    }
}

/// What a near cache holds and did since it was built ([`NearCache::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NearStats {
    /// Whether it answers now: the store vouches for reporting every change.
    pub enabled: bool,
    /// Entries held (some may be unanswerable until a read finds them so).
    pub entries: u64,
    /// Their weight, in bytes.
    pub weighted_bytes: u64,
    /// The budget, in bytes.
    pub capacity_bytes: u64,
    /// Reads it answered (a record, a query, or a computed value).
    pub hits: u64,
    /// Reads it could not answer while enabled, passed on to the store.
    pub misses: u64,
    /// Entries evicted for the budget or their age.
    pub evictions: u64,
    /// Invalidations applied (of a record, of an entity's index data, of a computed value, of
    /// everything).
    pub invalidations: u64,
    /// Times it was turned off, and emptied, because the store could no longer vouch for
    /// reporting every change (a tracking connection lost).
    pub outages: u64,
}

/// The counters and epoch a read saw before asking the store. Its entry is answered only while
/// they have not moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    epoch: u64,
    generation: u64,
}

/// What the near cache says to a read.
pub(crate) enum Near<V> {
    /// Answered.
    Hit(V),
    /// Not answered: ask the store, and keep its answer with this stamp.
    Miss(Stamp),
    /// Off: ask the store, keep nothing.
    Off,
}

/// An entry's key, with its hash computed once ([`PreHashed`] hands it to moka as it is).
#[derive(Clone)]
struct Key {
    hash: u64,
    of: KeyOf,
}

#[derive(Clone, PartialEq, Eq)]
enum KeyOf {
    Record(TypeId, RecordId),
    Query(TypeId, Box<IndexQuery>),
    /// A computed value, by its key (its stored form is the same whatever type reads it).
    Value(Box<str>),
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.of == other.of
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A record's key, borrowed: what a read looks up, without counting a reference to the id.
struct RecordKey<'a> {
    hash: u64,
    ty: TypeId,
    id: &'a RecordId,
}

impl Hash for RecordKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl moka::Equivalent<Key> for RecordKey<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.hash == key.hash && matches!(&key.of, KeyOf::Record(ty, id) if *ty == self.ty && id == self.id)
    }
}

impl RecordKey<'_> {
    fn owned(&self) -> Key {
        Key {
            hash: self.hash,
            of: KeyOf::Record(self.ty, self.id.clone()),
        }
    }
}

/// A computed value's key, borrowed.
struct ValueKey<'a> {
    hash: u64,
    key: &'a str,
}

impl Hash for ValueKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl moka::Equivalent<Key> for ValueKey<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.hash == key.hash && matches!(&key.of, KeyOf::Value(k) if **k == *self.key)
    }
}

/// Passes a [`Key`]'s hash through: it is already a seeded xxh3 (or SipHash) of the key.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not used by `Key`; FxHash's mixing, should anything else write.
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A computed value as kept: its stored form, and a decoded copy when its reader can copy one.
struct NearValue {
    bytes: Bytes,
    decoded: Option<Box<dyn Any + Send + Sync>>,
}

#[derive(Clone)]
struct Entry {
    /// A `T` for a record, a `Vec<T>` for a query result, a [`NearValue`] for a computed value.
    value: Arc<dyn Any + Send + Sync>,
    stamp: Stamp,
    weight: u32,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    invalidations: AtomicU64,
    outages: AtomicU64,
}

struct Shared {
    entries: Moka<Key, Entry, BuildHasherDefault<PreHashed>>,
    /// Seeds the record hashes, so that nobody outside can pick ids that collide.
    seed: u64,
    /// Hashes query keys.
    queries: RandomState,
    capacity: u64,
    /// Even while the store vouches for reporting every change, odd otherwise; moved by every
    /// change of that and by every invalidation of everything.
    epoch: AtomicU64,
    /// Generations of records and computed values, by [`slot`] of their hash.
    records: Box<[AtomicU64]>,
    /// Generations of entities' query results, by [`entity_slot`].
    entities: Box<[AtomicU64]>,
    /// The model types with entries, by entity name: what a record invalidation removes.
    types: RwLock<HashMap<&'static str, Vec<TypeId>>>,
    counters: Arc<Counters>,
}

/// A record's slot in the generations, from its hash.
fn slot(hash: u64) -> usize {
    (hash as usize) & (RECORD_SLOTS - 1)
}

fn entity_slot(entity: &str) -> usize {
    (xxh3_64(entity.as_bytes()) as usize) & (ENTITY_SLOTS - 1)
}

fn weight(bytes: usize) -> u32 {
    u32::try_from(bytes.saturating_add(ENTRY_OVERHEAD)).unwrap_or(u32::MAX)
}

impl NearCache {
    /// A near cache attached to `store`, or `None` when the store cannot report its changes.
    pub(crate) fn attach(config: NearConfig, store: &dyn Store) -> Option<Self> {
        let near = Self::new(config);
        let sink: Weak<dyn InvalidationSink> = Arc::downgrade(&near.shared) as Weak<Shared>;
        if !store.subscribe_invalidations(sink) {
            tracing::warn!(
                reason = "the store does not report its changes",
                "near_cache_unsupported"
            );
            return None;
        }
        Some(near)
    }

    /// A near cache that is off until told otherwise.
    fn new(config: NearConfig) -> Self {
        let counters = Arc::new(Counters::default());
        let evicted = Arc::clone(&counters);
        let entries = Moka::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_: &Key, entry: &Entry| entry.weight)
            .time_to_live(config.max_age)
            .eviction_listener(move |_, _, cause| {
                if matches!(cause, RemovalCause::Size | RemovalCause::Expired) {
                    evicted.evictions.fetch_add(1, Relaxed);
                    metrics::counter!(NEAR_EVICTIONS).increment(1);
                }
            })
            .build_with_hasher(BuildHasherDefault::default());
        Self {
            shared: Arc::new(Shared {
                entries,
                seed: rand::random(),
                queries: RandomState::new(),
                capacity: config.max_bytes,
                epoch: AtomicU64::new(1),
                records: (0..RECORD_SLOTS).map(|_| AtomicU64::new(0)).collect(),
                entities: (0..ENTITY_SLOTS).map(|_| AtomicU64::new(0)).collect(),
                types: RwLock::default(),
                counters,
            }),
        }
    }

    /// Whether it answers now: the store vouches for reporting every change.
    pub fn is_enabled(&self) -> bool {
        self.shared.epoch.load(SeqCst).is_multiple_of(2)
    }

    /// Whether a read of record `id` of `T` would be answered here now.
    pub fn holds<T: Cacheable>(&self, id: &RecordId) -> bool {
        let (key, slot) = self.shared.record_key::<T>(id);
        let Some(stamp) = self.shared.record_stamp(slot) else {
            return false;
        };
        self.shared.entries.get(&key).is_some_and(|entry| entry.stamp == stamp)
    }

    /// What it holds and did since it was built. Settles moka's pending work first, so that
    /// the entry count and weight are exact.
    pub fn stats(&self) -> NearStats {
        let shared = &self.shared;
        shared.entries.run_pending_tasks();
        let c = &shared.counters;
        NearStats {
            enabled: self.is_enabled(),
            entries: shared.entries.entry_count(),
            weighted_bytes: shared.entries.weighted_size(),
            capacity_bytes: shared.capacity,
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            evictions: c.evictions.load(Relaxed),
            invalidations: c.invalidations.load(Relaxed),
            outages: c.outages.load(Relaxed),
        }
    }

    /// Record `id` of `T`, if held and answerable.
    pub(crate) fn record<T: Cacheable>(&self, id: &RecordId) -> Near<T> {
        let (key, slot) = self.shared.record_key::<T>(id);
        let Some(stamp) = self.shared.record_stamp(slot) else {
            return Near::Off;
        };
        self.shared
            .answer(&key, stamp, |value| value.downcast_ref::<T>()?.near_copy())
    }

    /// Keeps `record` (read from the store as `body`) under the stamp its read took.
    pub(crate) fn keep_record<T: Cacheable>(&self, stamp: Stamp, id: &RecordId, record: &T, body: &Bytes) {
        let Some(copy) = record.near_copy() else {
            return;
        };
        let (key, slot) = self.shared.record_key::<T>(id);
        if self.shared.record_stamp(slot) != Some(stamp) {
            // Invalidated meanwhile: it would never be answered.
            return;
        }
        self.shared.note_type::<T>(T::schema().entity);
        let entry = Entry {
            value: Arc::new(copy),
            stamp,
            weight: weight(size_of::<T>() + body.len() + id.as_str().len()),
        };
        self.shared.entries.insert(key.owned(), entry);
    }

    /// The result of `query` on `T`, if held and answerable.
    pub(crate) fn query<T: Cacheable>(&self, query: &IndexQuery) -> Near<Vec<T>> {
        let Some(stamp) = self.shared.query_stamp(T::schema().entity) else {
            return Near::Off;
        };
        let key = self.shared.query_key::<T>(query);
        self.shared.answer(&key, stamp, |value| {
            value.downcast_ref::<Vec<T>>()?.iter().map(T::near_copy).collect()
        })
    }

    /// Keeps `records`, the result of `query` read from the store as `page`.
    pub(crate) fn keep_query<T: Cacheable>(&self, stamp: Stamp, query: &IndexQuery, records: &[T], page: &[Bytes]) {
        let entity = T::schema().entity;
        if self.shared.query_stamp(entity) != Some(stamp) {
            return;
        }
        let Some(copies) = records.iter().map(T::near_copy).collect::<Option<Vec<T>>>() else {
            return;
        };
        self.shared.note_type::<T>(entity);
        let bytes = page.iter().map(Bytes::len).sum::<usize>() + size_of_val(records);
        let entry = Entry {
            value: Arc::new(copies),
            stamp,
            weight: weight(bytes + size_of::<IndexQuery>()),
        };
        self.shared.entries.insert(self.shared.query_key::<T>(query), entry);
    }

    /// What `read` makes of the computed value under `key` (its stored form, and the decoded
    /// copy kept with it), if held and answerable.
    pub(crate) fn value<V>(
        &self,
        key: &str,
        read: impl FnOnce(&Bytes, Option<&(dyn Any + Send + Sync)>) -> Option<V>,
    ) -> Near<V> {
        let hash = self.shared.value_hash(key);
        let Some(stamp) = self.shared.record_stamp(slot(hash)) else {
            return Near::Off;
        };
        self.shared.answer(&ValueKey { hash, key }, stamp, |value| {
            let value = value.downcast_ref::<NearValue>()?;
            read(&value.bytes, value.decoded.as_deref())
        })
    }

    /// Keeps `bytes`, the stored form of the computed value under `key` as the store answered
    /// it to a read that took `stamp`, and the decoded copy `decoded` makes, if any. The copy
    /// weighs twice the stored form's length (its heap size is not known: short strings cost
    /// more decoded than in JSON). The cache's bookkeeping keys are never kept (their changes
    /// are not reported to near caches).
    pub(crate) fn keep_value(
        &self,
        stamp: Stamp,
        key: &str,
        bytes: &Bytes,
        decoded: impl FnOnce() -> Option<Box<dyn Any + Send + Sync>>,
    ) {
        let hash = self.shared.value_hash(key);
        if self.shared.record_stamp(slot(hash)) != Some(stamp) || crate::keys::is_bookkeeping_value_key(key) {
            return;
        }
        let decoded = decoded();
        let copies = 1 + 2 * usize::from(decoded.is_some());
        let entry = Entry {
            value: Arc::new(NearValue {
                bytes: bytes.clone(),
                decoded,
            }),
            stamp,
            weight: weight(bytes.len().saturating_mul(copies) + key.len()),
        };
        let key = Key {
            hash,
            of: KeyOf::Value(key.into()),
        };
        self.shared.entries.insert(key, entry);
    }

    /// Counts a computed value's lookup here: a hit (answered) or a miss (asked of the store).
    pub(crate) fn count_value(&self, hit: bool) {
        let counter = match hit {
            true => &self.shared.counters.hits,
            false => &self.shared.counters.misses,
        };
        counter.fetch_add(1, Relaxed);
    }
}

impl Shared {
    /// The epoch, while the store vouches for reporting every change.
    fn epoch(&self) -> Option<u64> {
        let epoch = self.epoch.load(SeqCst);
        epoch.is_multiple_of(2).then_some(epoch)
    }

    /// The hash of record `id` of `entity`, seeded: its key's hash, and its slot in `records`.
    fn record_hash(&self, entity: &str, id: &str) -> u64 {
        xxh3_64_with_seed(id.as_bytes(), self.seed ^ xxh3_64(entity.as_bytes()))
    }

    /// The hash of the computed value under `key`: its key's hash, and its slot in `records`
    /// (a domain of its own beside the entities', which never start with a `~`).
    fn value_hash(&self, key: &str) -> u64 {
        xxh3_64_with_seed(key.as_bytes(), self.seed ^ xxh3_64(b"~value"))
    }

    /// The key of record `id` of `T`, and its generation's slot.
    fn record_key<'a, T: Cacheable>(&self, id: &'a RecordId) -> (RecordKey<'a>, usize) {
        let hash = self.record_hash(T::schema().entity, id.as_str());
        let key = RecordKey {
            hash,
            ty: TypeId::of::<T>(),
            id,
        };
        (key, slot(hash))
    }

    fn query_key<T: Cacheable>(&self, query: &IndexQuery) -> Key {
        let ty = TypeId::of::<T>();
        Key {
            hash: self.queries.hash_one((ty, query)),
            of: KeyOf::Query(ty, Box::new(query.clone())),
        }
    }

    fn record_stamp(&self, slot: usize) -> Option<Stamp> {
        let epoch = self.epoch()?;
        Some(Stamp {
            epoch,
            generation: self.records[slot].load(SeqCst),
        })
    }

    fn query_stamp(&self, entity: &str) -> Option<Stamp> {
        let epoch = self.epoch()?;
        Some(Stamp {
            epoch,
            generation: self.entities[entity_slot(entity)].load(SeqCst),
        })
    }

    /// Answers `key` when its entry carries `stamp` (nothing moved since its read), copying the
    /// value out with `copy`; forgets an entry that can no longer be answered.
    fn answer<V, Q: moka::Equivalent<Key> + Hash>(
        &self,
        key: &Q,
        stamp: Stamp,
        copy: impl FnOnce(&(dyn Any + Send + Sync)) -> Option<V>,
    ) -> Near<V> {
        match self.entries.get(key) {
            Some(entry) if entry.stamp == stamp => match copy(&*entry.value) {
                Some(value) => Near::Hit(value),
                None => Near::Miss(stamp),
            },
            Some(_) => {
                self.entries.invalidate(key);
                Near::Miss(stamp)
            }
            None => Near::Miss(stamp),
        }
    }

    /// Remembers that `T` has entries, so that an invalidation of one of its records finds them.
    fn note_type<T: Cacheable>(&self, entity: &'static str) {
        let ty = TypeId::of::<T>();
        let known = self
            .types
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(entity)
            .is_some_and(|types| types.contains(&ty));
        if !known {
            let mut types = self.types.write().unwrap_or_else(PoisonError::into_inner);
            let types = types.entry(entity).or_default();
            if !types.contains(&ty) {
                types.push(ty);
            }
        }
    }

    fn invalidated(&self, kind: &'static str) {
        self.counters.invalidations.fetch_add(1, Relaxed);
        metrics::counter!(NEAR_INVALIDATIONS, "kind" => kind).increment(1);
    }
}

impl InvalidationSink for Shared {
    fn invalidate(&self, invalidation: Invalidation<'_>) {
        match invalidation {
            Invalidation::Record { entity, id } => {
                let hash = self.record_hash(entity, id);
                self.records[slot(hash)].fetch_add(1, SeqCst);
                self.entities[entity_slot(entity)].fetch_add(1, SeqCst);
                self.invalidated("record");
                let types = self.types.read().unwrap_or_else(PoisonError::into_inner);
                if let (Some(types), Ok(id)) = (types.get(entity), RecordId::new(id)) {
                    for ty in types {
                        let key = Key {
                            hash,
                            of: KeyOf::Record(*ty, id.clone()),
                        };
                        self.entries.invalidate(&key);
                    }
                }
            }
            Invalidation::Value { key } => {
                let hash = self.value_hash(key);
                self.records[slot(hash)].fetch_add(1, SeqCst);
                self.invalidated("value");
                self.entries.invalidate(&ValueKey { hash, key });
            }
            Invalidation::Index { entity } => {
                // The entity's query entries stay until read, aged out or evicted: the
                // generation already keeps them from being answered.
                self.entities[entity_slot(entity)].fetch_add(1, SeqCst);
                self.invalidated("index");
            }
            Invalidation::All => {
                // By two: the parity says whether the store vouches.
                self.epoch.fetch_add(2, SeqCst);
                self.invalidated("all");
                self.entries.invalidate_all();
            }
        }
    }

    fn set_tracking(&self, tracking: bool) {
        let moved = self
            .epoch
            .fetch_update(SeqCst, SeqCst, |epoch| {
                (epoch.is_multiple_of(2) != tracking).then_some(epoch + 1)
            })
            .is_ok();
        if !moved {
            return;
        }
        metrics::gauge!(NEAR_ENABLED).set(if tracking { 1.0 } else { 0.0 });
        if tracking {
            tracing::info!("near_cache_on");
        } else {
            self.entries.invalidate_all();
            self.counters.outages.fetch_add(1, Relaxed);
            tracing::warn!("near_cache_off");
        }
    }
}

/// `model_cache_near_evictions_total`.
pub(crate) const NEAR_EVICTIONS: &str = "model_cache_near_evictions_total";
/// `model_cache_near_invalidations_total`.
pub(crate) const NEAR_INVALIDATIONS: &str = "model_cache_near_invalidations_total";
/// `model_cache_near_enabled`.
pub(crate) const NEAR_ENABLED: &str = "model_cache_near_enabled";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cacheable, MemoryStore};

    #[derive(Cacheable, Clone, Debug, PartialEq)]
    #[cache(entity = "near_things", source_table = "Things")]
    struct Thing {
        #[cache(id)]
        id: RecordId,
        #[indexed]
        colour: String,
    }

    #[derive(Cacheable, Debug)]
    #[cache(entity = "near_unclonable", source_table = "Unclonable")]
    struct Unclonable {
        #[cache(id)]
        id: RecordId,
    }

    /// A near cache and the sink a store would drive.
    fn near(budget: u64) -> (NearCache, Arc<dyn InvalidationSink>) {
        let near = NearCache::new(NearConfig {
            max_bytes: budget,
            max_age: DEFAULT_NEAR_MAX_AGE,
        });
        let sink: Arc<dyn InvalidationSink> = near.shared.clone();
        (near, sink)
    }

    fn thing(id: &str, colour: &str) -> Thing {
        Thing {
            id: RecordId::new(id).unwrap(),
            colour: colour.to_owned(),
        }
    }

    fn keep(near: &NearCache, t: &Thing) -> bool {
        match near.record::<Thing>(&t.id) {
            Near::Miss(stamp) => {
                near.keep_record(stamp, &t.id, t, &Bytes::from_static(b"{}"));
                true
            }
            _ => false,
        }
    }

    #[test]
    fn off_until_tracking_and_empty_after_losing_it() {
        let (near, sink) = near(1 << 20);
        let a = thing("recA", "red");
        assert!(
            matches!(near.record::<Thing>(&a.id), Near::Off),
            "off until the store vouches"
        );
        sink.set_tracking(true);
        assert!(keep(&near, &a));
        assert!(near.holds::<Thing>(&a.id));
        sink.set_tracking(false);
        assert!(!near.holds::<Thing>(&a.id));
        assert!(matches!(near.record::<Thing>(&a.id), Near::Off));
        sink.set_tracking(true);
        assert!(
            !near.holds::<Thing>(&a.id),
            "what was kept before the loss stays unanswerable"
        );
    }

    #[test]
    fn a_read_older_than_an_invalidation_is_not_kept() {
        let (near, sink) = near(1 << 20);
        sink.set_tracking(true);
        let a = thing("recA", "red");
        let Near::Miss(stamp) = near.record::<Thing>(&a.id) else {
            panic!("a miss");
        };
        // The store's answer is on its way while the invalidation arrives.
        sink.invalidate(Invalidation::Record {
            entity: "near_things",
            id: "recA",
        });
        near.keep_record(stamp, &a.id, &a, &Bytes::from_static(b"{}"));
        assert!(!near.holds::<Thing>(&a.id));
        // Nor across a loss and return of tracking.
        let Near::Miss(stamp) = near.record::<Thing>(&a.id) else {
            panic!("a miss");
        };
        sink.set_tracking(false);
        sink.set_tracking(true);
        near.keep_record(stamp, &a.id, &a, &Bytes::from_static(b"{}"));
        assert!(!near.holds::<Thing>(&a.id));
        assert!(keep(&near, &a));
        assert!(near.holds::<Thing>(&a.id));
    }

    #[test]
    fn invalidations_reach_records_queries_or_everything() {
        let (near, sink) = near(1 << 20);
        sink.set_tracking(true);
        let (a, b) = (thing("recA", "red"), thing("recB", "blue"));
        assert!(keep(&near, &a) && keep(&near, &b));
        let q = Thing::by_colour("red").into_index_query();
        let Near::Miss(stamp) = near.query::<Thing>(&q) else {
            panic!("a miss");
        };
        near.keep_query(stamp, &q, std::slice::from_ref(&a), &[Bytes::from_static(b"{}")]);
        assert!(matches!(near.query::<Thing>(&q), Near::Hit(ref r) if r == std::slice::from_ref(&a)));
        sink.invalidate(Invalidation::Index { entity: "near_things" });
        assert!(matches!(near.query::<Thing>(&q), Near::Miss(_)), "index data changed");
        assert!(near.holds::<Thing>(&a.id), "records stay");
        let Near::Miss(stamp) = near.query::<Thing>(&q) else {
            panic!("a miss");
        };
        near.keep_query(stamp, &q, std::slice::from_ref(&a), &[Bytes::from_static(b"{}")]);
        sink.invalidate(Invalidation::Record {
            entity: "near_things",
            id: "recB",
        });
        assert!(!near.holds::<Thing>(&b.id));
        assert!(near.holds::<Thing>(&a.id));
        assert!(
            matches!(near.query::<Thing>(&q), Near::Miss(_)),
            "a record change drops queries"
        );
        sink.invalidate(Invalidation::All);
        assert!(!near.holds::<Thing>(&a.id));
        assert!(near.is_enabled(), "a flush keeps tracking on");
        assert_eq!(near.stats().invalidations, 3);
    }

    #[test]
    fn models_that_are_not_clone_are_not_kept() {
        let (near, sink) = near(1 << 20);
        sink.set_tracking(true);
        let u = Unclonable {
            id: RecordId::new("recU").unwrap(),
        };
        assert!(u.near_copy().is_none());
        assert!(thing("recA", "red").near_copy().is_some());
        let Near::Miss(stamp) = near.record::<Unclonable>(&u.id) else {
            panic!("a miss");
        };
        near.keep_record(stamp, &u.id, &u, &Bytes::from_static(b"{}"));
        assert!(!near.holds::<Unclonable>(&u.id));
    }

    #[test]
    fn the_budget_bounds_the_weighed_entries() {
        let budget = 64 * 1024;
        let (near, sink) = near(budget);
        sink.set_tracking(true);
        let body = Bytes::from(vec![b'x'; 1000]);
        for i in 0..500 {
            let t = thing(&format!("rec{i}"), "red");
            let Near::Miss(stamp) = near.record::<Thing>(&t.id) else {
                panic!("a miss");
            };
            near.keep_record(stamp, &t.id, &t, &body);
        }
        let stats = near.stats();
        assert!(stats.weighted_bytes <= budget, "{stats:?}");
        assert!(stats.entries > 10 && stats.entries < 70, "{stats:?}");
        assert!(stats.evictions > 400, "{stats:?}");
    }

    #[test]
    fn a_store_without_invalidations_gets_no_near_cache() {
        let config = NearConfig {
            max_bytes: 1 << 20,
            max_age: DEFAULT_NEAR_MAX_AGE,
        };
        assert!(NearCache::attach(config, &MemoryStore::new()).is_none());
    }
}
