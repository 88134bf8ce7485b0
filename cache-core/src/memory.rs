//! The in-memory [`Store`]: the embedded default, with exactly the semantics of the Redis
//! store (indexes, leases, versions, tombstones, completeness markers, fill tokens), checked
//! by the same [conformance suite](crate::testing).
//!
//! ## The memory budget
//! The budget ([`MemoryStoreBuilder::max_capacity_bytes`]) bounds everything the store holds,
//! each thing weighed at what it costs in this process (measured; see the soak figures in
//! `docs/benchmarks.md`):
//! - records, tombstones and values live in a [`moka`] cache with per-entry TTLs, each entry
//!   weighing its key, its body, its slots in moka's own structures, and (for a record) its
//!   entries in the index maps beside it, or (for a value) its entries under its tags;
//! - completeness markers (one per distinct index result asked for) have a sixteenth of the
//!   budget, and a lifetime (see [`markers`]);
//! - fill leases have another sixteenth: past it a fill takes no lease, so it is not stored
//!   (never wrong, only uncached);
//! - purge marks (every purge of a tag, which every distinct miss makes) a third sixteenth: past it
//!   the oldest are forgotten, and values computed before them are refused (not stored).
//!
//! Evicting a record drops the markers whose result contained it, found through the markers'
//! first filters, never by looking at every marker.
//!
//! ## Logical keys
//! Entries are keyed by the logical keys [`Store::flush`] patterns match (`projects:r:recX`,
//! `projects:tomb:recX`, `v:{key}`; this store has no `tag:` keys). Flushing a record forgets
//! its index entries and drops its entity's completeness markers.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use moka::{Expiry, future::Cache as Moka, notification::RemovalCause};

use crate::{
    Clock, DeleteOrder, EntitySchema, FillToken, IndexEntries, IndexQuery, Lease, Lookup, QueryFill, QueryLookup,
    RecordId, RecordWrite, RemoveMode, Store, StoreResult, StoreStats, SystemClock, Tombstone, WriteMode, WriteOutcome,
    human_bytes, keys, order,
};

mod computed;
mod markers;
mod watermark;

use markers::{EntityMarkers, MarkerUse};

/// The default memory budget of a [`MemoryStore`]: 128 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 128 * 1024 * 1024;

/// What an entry weighs beside its key, body and index entries: moka's hash table slot, entry
/// info, deque and timer nodes, our `Key` and `Entry`, and the allocator's headers.
const ENTRY_OVERHEAD: usize = 560;
/// What a heap allocation costs beside its bytes (glibc's header, rounded up to 16).
const ALLOCATION: usize = 16;
/// What a record's line in the index weighs beside its id and entries: its slot in the
/// `indexed` B-tree (nodes are not full) and its entry vectors.
const INDEXED_OVERHEAD: usize = 192;
/// What each tag of a record weighs beside its text: the two strings in the record's entries,
/// and under `tags` the key, the id set (a B-tree leaf for few ids) and a copy of the id.
const TAG_OVERHEAD: usize = 480;
/// What a lease weighs: its slot in the lease map (at most half full) and its copy of the id.
const LEASE_WEIGHT: usize = 128;

/// The in-memory store. Cheap to clone: clones share the same data.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{ManualClock, MemoryStore};
///
/// let clock = ManualClock::new();
/// let store = MemoryStore::builder()
///     .max_capacity_bytes(64 * 1024 * 1024)
///     .clock(clock.clone())
///     .build();
/// # let _ = store;
/// // ... write with a TTL, then `clock.advance(ttl)`: the entry reads as expired.
/// ```
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Moka<Key, Entry>,
    /// The share of the budget of each of the markers, the leases and the purge marks, in
    /// bytes.
    side_budget: u64,
    state: tokio::sync::Mutex<State>,
    /// Entries moka evicted (size, real-time expiry), for the index to forget under the lock.
    evicted: Arc<Mutex<Evicted>>,
    clock: Arc<dyn Clock>,
    budget: u64,
    next_lease: AtomicU64,
    next_gen: AtomicU64,
    purges: computed::PurgeCounter,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("budget", &self.inner.budget)
            .field("clock", &self.inner.clock)
            .finish_non_exhaustive()
    }
}

/// Configures a [`MemoryStore`]; see [`MemoryStore::builder`].
#[derive(Debug)]
#[must_use]
pub struct MemoryStoreBuilder {
    budget: u64,
    clock: Arc<dyn Clock>,
}

impl MemoryStoreBuilder {
    /// The memory budget, in bytes (default [`DEFAULT_MEMORY_BUDGET`]): everything the store
    /// holds, each thing weighed at what it costs (see the [module docs](self)). Beyond it
    /// the least useful entries are evicted.
    pub fn max_capacity_bytes(mut self, bytes: u64) -> Self {
        self.budget = bytes;
        self
    }

    /// The clock TTLs are checked against (default: the system clock). Tests pass a
    /// [`ManualClock`](crate::ManualClock) and advance it past a TTL instead of sleeping.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the store.
    pub fn build(self) -> MemoryStore {
        let evicted: Arc<Mutex<Evicted>> = Arc::default();
        let sink = Arc::clone(&evicted);
        let side_budget = self.budget / 16;
        let entries = Moka::builder()
            .max_capacity(self.budget - 3 * side_budget)
            .weigher(|key: &Key, entry: &Entry| {
                let weight = key.weight() + entry.weight();
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            .eviction_listener(move |key, entry, cause| {
                // Our own removals and replacements already updated the index; a tombstone
                // has nothing in it.
                if matches!(cause, RemovalCause::Expired | RemovalCause::Size)
                    && !matches!(entry.kind, Kind::Tombstone { .. })
                {
                    sink.lock().unwrap_or_else(PoisonError::into_inner).push((key, entry));
                }
            })
            .build();
        MemoryStore {
            inner: Arc::new(Inner {
                entries,
                side_budget,
                state: tokio::sync::Mutex::default(),
                evicted,
                clock: self.clock,
                budget: self.budget,
                next_lease: AtomicU64::new(1),
                next_gen: AtomicU64::new(1),
                purges: computed::PurgeCounter::default(),
            }),
        }
    }
}

impl MemoryStore {
    /// A store with the default budget and the system clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts configuring a store.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            budget: DEFAULT_MEMORY_BUDGET,
            clock: Arc::new(SystemClock),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

type Evicted = Vec<(Arc<Key>, Entry)>;

/// A logical key (see the [module docs](self)). Entity names are the schemas' own
/// (`&'static`): a lookup allocates nothing for them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Record(&'static str, RecordId),
    Tombstone(&'static str, RecordId),
    Value(String),
}

impl Key {
    fn record(entity: &EntitySchema, id: &RecordId) -> Self {
        Self::Record(entity.entity, id.clone())
    }

    fn tombstone(entity: &EntitySchema, id: &RecordId) -> Self {
        Self::Tombstone(entity.entity, id.clone())
    }

    /// What the key's own allocation costs (entity names are static).
    fn weight(&self) -> usize {
        match self {
            Self::Record(_, id) | Self::Tombstone(_, id) => id.as_str().len() + ALLOCATION,
            Self::Value(k) => k.len() + ALLOCATION,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Record(entity, id) => write!(f, "{entity}:r:{id}"),
            Self::Tombstone(entity, id) => write!(f, "{entity}:tomb:{id}"),
            Self::Value(key) => write!(f, "v:{key}"),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    ttl: Duration,
    expires_at: Instant,
}

#[derive(Debug, Clone)]
enum Kind {
    Record {
        body: Bytes,
        version: Option<f64>,
        /// Which write this is, so that a late eviction notice never unindexes a newer write.
        generation: u64,
        /// What the record's index entries cost in the index maps ([`index_weight`]).
        index_weight: u32,
    },
    /// Not at the source. `deleted`: the delete the source reported, which orders later
    /// writes (`None` for a fill's "not found"). `answers`: whether reads are told "not
    /// found" (false once invalidated: the order stays, the next read asks the origin).
    Tombstone {
        deleted: Option<Tombstone>,
        answers: bool,
    },
    Value {
        body: Bytes,
        tags: Arc<[String]>,
    },
}

impl Entry {
    fn tombstone(deleted: Option<Tombstone>, answers: bool, ttl: Duration, now: Instant) -> Self {
        Self {
            kind: Kind::Tombstone { deleted, answers },
            ttl,
            expires_at: now + ttl,
        }
    }

    /// A tombstone replacing one that expires at `expires_at`, expiring with it.
    fn tombstone_until(deleted: Option<Tombstone>, answers: bool, expires_at: Instant, now: Instant) -> Self {
        Self::tombstone(deleted, answers, expires_at.saturating_duration_since(now), now)
    }

    /// What the entry costs beside its key.
    fn weight(&self) -> usize {
        ENTRY_OVERHEAD
            + match &self.kind {
                Kind::Record { body, index_weight, .. } => body.len() + ALLOCATION + *index_weight as usize,
                // The tag list, and the key's copy under each tag in `value_tags`.
                Kind::Value { body, tags } => {
                    body.len() + ALLOCATION + tags.iter().map(|t| 2 * (t.len() + ALLOCATION) + 96 + 64).sum::<usize>()
                }
                Kind::Tombstone { .. } => 0,
            }
    }
}

struct EntryExpiry;

impl Expiry<Key, Entry> for EntryExpiry {
    fn expire_after_create(&self, _key: &Key, entry: &Entry, _created_at: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        entry: &Entry,
        _updated_at: Instant,
        _duration_until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// What a record's index entries cost in the index maps: its line in `indexed` and its id
/// under each of its tags.
fn index_weight(id: &RecordId, entries: &IndexEntries) -> u32 {
    let id_len = id.as_str().len() + ALLOCATION;
    let tags: usize = entries
        .tags
        .iter()
        .map(|(f, v)| 2 * (f.len() + v.len()) + 2 * id_len + TAG_OVERHEAD)
        .sum();
    let scores: usize = entries.scores.iter().map(|(f, _)| f.len() + ALLOCATION + 32).sum();
    u32::try_from(INDEXED_OVERHEAD + id_len + tags + scores).unwrap_or(u32::MAX)
}

#[derive(Default)]
struct State {
    entities: HashMap<&'static str, EntityState>,
    /// The markers of every entity against their share of the budget.
    marker_use: MarkerUse,
    /// Value keys by tag.
    value_tags: HashMap<String, HashSet<String>>,
    /// Compute locks and purge marks.
    computed: computed::ComputedState,
}

#[derive(Default)]
struct EntityState {
    /// Bumped by every invalidation: completeness markers of an older epoch are void.
    epoch: u64,
    /// Bumped by every write (upsert, invalidation, tombstone); fills are not writes.
    seq: u64,
    /// The index entries of every record the index knows, by id.
    indexed: BTreeMap<RecordId, Indexed>,
    /// Ids by (field, value).
    tags: HashMap<(String, String), BTreeSet<RecordId>>,
    /// Complete results by filter key.
    markers: EntityMarkers,
    /// Leases by id: (lease, expiry).
    leases: HashMap<RecordId, (u64, Instant)>,
    /// Lease count above which expired leases are dropped.
    lease_cleanup_at: usize,
    /// When the leases' share of the budget is full, expired leases are looked for again only
    /// after this.
    lease_sweep_after: Option<Instant>,
}

struct Indexed {
    entries: IndexEntries,
    generation: u64,
}

impl EntityState {
    fn token(&self) -> FillToken {
        FillToken(vec![self.epoch, self.seq])
    }

    fn lease_holds(&self, id: &RecordId, lease: Lease, now: Instant) -> bool {
        self.leases
            .get(id)
            .is_some_and(|&(held, expires)| held == lease.0 && expires > now)
    }

    /// Replaces a record's index entries; answers the old ones.
    fn index(&mut self, id: &RecordId, entries: IndexEntries, generation: u64) -> Option<IndexEntries> {
        let previous = self.unindex(id);
        for (field, value) in &entries.tags {
            self.tags
                .entry((field.clone(), value.clone()))
                .or_default()
                .insert(id.clone());
        }
        self.indexed.insert(id.clone(), Indexed { entries, generation });
        previous
    }

    fn unindex(&mut self, id: &RecordId) -> Option<IndexEntries> {
        let old = self.indexed.remove(id)?;
        for (field, value) in &old.entries.tags {
            let key = (field.clone(), value.clone());
            if let Some(set) = self.tags.get_mut(&key) {
                set.remove(id);
                if set.is_empty() {
                    self.tags.remove(&key);
                }
            }
        }
        Some(old.entries)
    }

    /// The ids the index files under every filter of `query`, in no particular order.
    fn matching(&self, filters: &[(String, String)]) -> Vec<&RecordId> {
        let Some((first, rest)) = filters.split_first() else {
            return self.indexed.keys().collect();
        };
        let Some(base) = self.tags.get(first) else {
            return Vec::new();
        };
        base.iter()
            .filter(|id| rest.iter().all(|f| self.tags.get(f).is_some_and(|s| s.contains(*id))))
            .collect()
    }

    /// The page of `query` as the index has it: its ids in order, each with the generation of
    /// the write the index filed. Only the page is sorted, not every matching record.
    fn page(&self, query: &IndexQuery) -> Vec<(RecordId, u64)> {
        let mut rows: Vec<(f64, &RecordId, u64)> = self
            .matching(&filters_of(query))
            .into_iter()
            .filter_map(|id| {
                // Every id filed under a tag is indexed (`index` and `unindex` keep both).
                let indexed = self.indexed.get(id)?;
                let score = query.sort.and_then(|s| indexed.entries.score(s.field));
                Some((score.unwrap_or(f64::NEG_INFINITY), id, indexed.generation))
            })
            .collect();
        let direction = query.sort.map(|s| s.order);
        let by_order = |a: &(f64, &RecordId, u64), b: &(f64, &RecordId, u64)| {
            order::compare_scored((a.0, a.1), (b.0, b.1), direction)
        };
        let end = query
            .limit
            .map_or(rows.len(), |limit| query.offset.saturating_add(limit).min(rows.len()));
        if query.offset >= end {
            return Vec::new();
        }
        if end < rows.len() {
            rows.select_nth_unstable_by(end, by_order);
            rows.truncate(end);
        }
        if query.offset > 0 {
            rows.select_nth_unstable_by(query.offset, by_order);
        }
        let page = &mut rows[query.offset..];
        page.sort_unstable_by(by_order);
        page.iter()
            .map(|&(_, id, generation)| (id.clone(), generation))
            .collect()
    }

    fn invalidate_markers(&mut self, usage: &mut MarkerUse) {
        self.epoch += 1;
        self.markers.clear(usage);
    }
}

fn filters_of(query: &IndexQuery) -> Vec<(String, String)> {
    query
        .filters
        .iter()
        .map(|f| (f.field.to_owned(), f.value.clone()))
        .collect()
}

impl Inner {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    async fn live(&self, key: &Key) -> Option<Entry> {
        let entry = self.entries.get(key).await?;
        (entry.expires_at > self.now()).then_some(entry)
    }

    async fn lookup(&self, entity: &EntitySchema, id: &RecordId) -> Lookup {
        if let Some(Entry {
            kind: Kind::Record { body, .. },
            ..
        }) = self.live(&Key::record(entity, id)).await
        {
            return Lookup::Hit(body);
        }
        match self.live(&Key::tombstone(entity, id)).await {
            Some(Entry {
                kind: Kind::Tombstone { answers: true, .. },
                ..
            }) => Lookup::Tombstone,
            _ => Lookup::Miss,
        }
    }

    /// The delete the source reported for a record, while its tombstone lives.
    async fn deleted(&self, entity: &EntitySchema, id: &RecordId) -> Option<(Tombstone, Entry)> {
        let entry = self.live(&Key::tombstone(entity, id)).await?;
        match entry.kind {
            Kind::Tombstone {
                deleted: Some(deleted), ..
            } => Some((deleted, entry)),
            _ => None,
        }
    }

    async fn cached_version(&self, entity: &EntitySchema, id: &RecordId) -> Option<f64> {
        match self.live(&Key::record(entity, id)).await?.kind {
            Kind::Record { version, .. } => version,
            _ => None,
        }
    }

    /// Locks the state, first forgetting what moka evicted.
    async fn lock(&self) -> tokio::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().await;
        let evicted = std::mem::take(&mut *self.evicted.lock().unwrap_or_else(PoisonError::into_inner));
        for (key, entry) in evicted {
            match (&*key, entry.kind) {
                (Key::Record(entity, id), Kind::Record { generation, .. }) => {
                    let State {
                        entities, marker_use, ..
                    } = &mut *state;
                    let Some(es) = entities.get_mut(entity) else {
                        continue;
                    };
                    if es.indexed.get(id).is_some_and(|i| i.generation == generation) {
                        // The complete results that contained it are no longer all here.
                        if let Some(entries) = es.unindex(id) {
                            es.markers.drop_covering(&entries, marker_use);
                        }
                    }
                }
                // Only when no newer value took the key (a replacement is not an eviction).
                (Key::Value(k), Kind::Value { tags, .. }) if !self.entries.contains_key(&*key) => {
                    forget_value_tags(&mut state.value_tags, k, &tags);
                }
                _ => {}
            }
        }
        state
    }

    /// How many more leases fit in their share of the budget.
    fn lease_room(&self, state: &State) -> usize {
        let held: usize = state.entities.values().map(|es| es.leases.len()).sum();
        (self.side_budget as usize / LEASE_WEIGHT).saturating_sub(held)
    }

    /// Drops the oldest markers until they fit in their share of the budget, and expired ones
    /// at the front of the queue on the way.
    fn trim_markers(&self, state: &mut State) {
        let now = self.now();
        let cap = self.side_budget as usize;
        let State {
            entities, marker_use, ..
        } = state;
        while let Some((entity, key, stamp)) = marker_use.pop_oldest() {
            let Some(es) = entities.get_mut(entity) else {
                continue;
            };
            if !es.markers.is_current(&key, stamp) {
                continue;
            }
            // `holds` drops an expired marker itself.
            if !es.markers.holds(&key, es.epoch, now, marker_use) || marker_use.bytes > cap {
                es.markers.remove(&key, Some(stamp), marker_use);
                continue;
            }
            // Still wanted, and within the budget: it stays first in line.
            marker_use.push_front(entity, key, stamp);
            break;
        }
        if marker_use.queue_is_stale() {
            marker_use.retain_queue(|entity, key, stamp| {
                entities.get(entity).is_some_and(|es| es.markers.is_current(key, stamp))
            });
        }
    }

    async fn write_record(
        &self,
        es: &mut EntityState,
        entity: &EntitySchema,
        write: &RecordWrite,
    ) -> Option<IndexEntries> {
        let generation = self.next_gen.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            kind: Kind::Record {
                body: write.body.clone(),
                version: write.version,
                generation,
                index_weight: index_weight(&write.id, &write.index),
            },
            ttl: write.ttl,
            expires_at: self.now() + write.ttl,
        };
        self.entries.insert(Key::record(entity, &write.id), entry).await;
        self.entries.invalidate(&Key::tombstone(entity, &write.id)).await;
        es.index(&write.id, write.index.clone(), generation)
    }
}

fn forget_value_tags(value_tags: &mut HashMap<String, HashSet<String>>, key: &str, tags: &[String]) {
    for tag in tags {
        if let Some(keys) = value_tags.get_mut(tag) {
            keys.remove(key);
            if keys.is_empty() {
                value_tags.remove(tag);
            }
        }
    }
}

fn is_newer(cached: Option<f64>, incoming: Option<f64>) -> bool {
    matches!((cached, incoming), (Some(cached), Some(incoming)) if cached > incoming)
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        Ok(self.inner.lookup(entity, id).await)
    }

    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.inner.lookup(entity, id).await);
        }
        Ok(out)
    }

    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let now = inner.now();
        let lease = inner.next_lease.fetch_add(1, Ordering::Relaxed);
        let room = inner.lease_room(&state);
        let es = state.entities.entry(entity.entity).or_default();
        // Expired leases are dropped when the map doubled since, or (at most once a second)
        // when the leases' share of the budget is full.
        let full = room < ids.len() && es.lease_sweep_after.is_none_or(|after| now >= after);
        if es.leases.len() > es.lease_cleanup_at.max(1024) || full {
            let before = es.leases.len();
            es.leases.retain(|_, (_, expires)| *expires > now);
            es.lease_cleanup_at = es.leases.len() * 2;
            es.lease_sweep_after = Some(now + Duration::from_secs(1));
            if room + (before - es.leases.len()) < ids.len() {
                // Over the leases' share of the budget: this fill holds no lease, so its
                // result is refused (never wrong, only not cached).
                for id in ids {
                    es.leases.remove(id);
                }
                tracing::debug!(entity = entity.entity, "cache_memory_leases_full");
                return Ok(Lease(lease));
            }
        } else if room < ids.len() {
            for id in ids {
                es.leases.remove(id);
            }
            return Ok(Lease(lease));
        }
        for id in ids {
            es.leases.insert(id.clone(), (lease, now + ttl));
        }
        Ok(Lease(lease))
    }

    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let es = state.entities.entry(entity.entity).or_default();
        let now = inner.now();
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            if let WriteMode::Fill(lease) = mode
                && !es.lease_holds(&write.id, lease, now)
            {
                out.push(WriteOutcome::LeaseLost);
                continue;
            }
            if is_newer(inner.cached_version(entity, &write.id).await, write.version) {
                out.push(WriteOutcome::StaleVersion);
                continue;
            }
            if let Some((deleted, _)) = inner.deleted(entity, &write.id).await {
                let refusal = match (mode, deleted.order(write.version, write.at)) {
                    (_, DeleteOrder::Newer) => None,
                    (WriteMode::Upsert, DeleteOrder::NotNewer) => Some(WriteOutcome::Deleted),
                    (WriteMode::Upsert, DeleteOrder::Unordered) => Some(WriteOutcome::Unordered),
                    // A fill read the source after the delete (its lease says so): only a
                    // version proves it read an older state (a lagging replica).
                    (WriteMode::Fill(_), _) => deleted
                        .version
                        .zip(write.version)
                        .is_some_and(|(deleted, written)| written <= deleted)
                        .then_some(WriteOutcome::Deleted),
                };
                if let Some(refusal) = refusal {
                    out.push(refusal);
                    continue;
                }
            }
            let previous = inner.write_record(es, entity, write).await;
            es.leases.remove(&write.id);
            if mode == WriteMode::Upsert {
                es.seq += 1;
            }
            out.push(WriteOutcome::Written { previous });
        }
        Ok(out)
    }

    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let State {
            entities, marker_use, ..
        } = &mut *state;
        let es = entities.entry(entity.entity).or_default();
        let now = inner.now();
        let mut out = Vec::with_capacity(ids.len());
        let mut wrote = false;
        for id in ids {
            if let RemoveMode::FillTombstone { lease, .. } = mode
                && !es.lease_holds(id, lease, now)
            {
                out.push(None);
                continue;
            }
            let earlier = inner.deleted(entity, id).await;
            let tombstone = match (mode, earlier) {
                (RemoveMode::Tombstone(tombstone), earlier) => {
                    wrote = true;
                    let tombstone = match earlier {
                        Some((earlier, _)) => tombstone.merge(earlier),
                        None => tombstone,
                    };
                    Some(Entry::tombstone(Some(tombstone), true, tombstone.ttl, now))
                }
                // A delete's tombstone keeps its order and answers reads again.
                (RemoveMode::FillTombstone { .. }, Some((deleted, entry))) => {
                    Some(Entry::tombstone_until(Some(deleted), true, entry.expires_at, now))
                }
                (RemoveMode::FillTombstone { ttl, .. }, None) => Some(Entry::tombstone(None, true, ttl, now)),
                // The next read must ask the source; a delete's order stays until it expires.
                (RemoveMode::Invalidate, Some((deleted, entry))) => {
                    wrote = true;
                    Some(Entry::tombstone_until(Some(deleted), false, entry.expires_at, now))
                }
                (RemoveMode::Invalidate, None) => {
                    wrote = true;
                    None
                }
            };
            es.leases.remove(id);
            inner.entries.invalidate(&Key::record(entity, id)).await;
            match tombstone {
                Some(entry) => inner.entries.insert(Key::tombstone(entity, id), entry).await,
                None => inner.entries.invalidate(&Key::tombstone(entity, id)).await,
            }
            out.push(es.unindex(id));
        }
        if wrote {
            es.seq += 1;
        }
        if mode == RemoveMode::Invalidate {
            es.invalidate_markers(marker_use);
        }
        Ok(out)
    }

    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        let inner = &self.inner;
        // The page is chosen under the lock and its bodies read after it is released, so that
        // a hit does not hold every other caller through its reads.
        let (token, page) = {
            let mut state = inner.lock().await;
            let now = inner.now();
            let State {
                entities, marker_use, ..
            } = &mut *state;
            let es = entities.entry(entity.entity).or_default();
            let token = es.token();
            if !es.markers.holds(&query.filter_key(), es.epoch, now, marker_use) {
                return Ok(QueryLookup::Incomplete(token));
            }
            (token, es.page(query))
        };
        let mut bodies = Vec::with_capacity(page.len());
        for (id, filed) in &page {
            match inner.live(&Key::record(entity, id)).await {
                // Exactly the write the page was chosen by: the page is one snapshot.
                Some(Entry {
                    kind: Kind::Record { body, generation, .. },
                    ..
                }) if generation == *filed => bodies.push(body),
                // Expired, evicted, or written since: never a partial or mixed page.
                _ => return Ok(QueryLookup::Incomplete(token)),
            }
        }
        Ok(QueryLookup::Complete { page: bodies, token })
    }

    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<QueryFill> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let es = state.entities.entry(entity.entity).or_default();
        if es.token() != token {
            return Ok(QueryFill::Refused);
        }
        let filters = filters_of(query);
        let given: HashSet<&RecordId> = records.iter().map(|r| &r.id).collect();
        let dropped: Vec<RecordId> = es
            .matching(&filters)
            .into_iter()
            .filter(|id| !given.contains(id))
            .cloned()
            .collect();
        for id in &dropped {
            inner.entries.invalidate(&Key::record(entity, id)).await;
            es.unindex(id);
        }
        for write in records {
            if !is_newer(inner.cached_version(entity, &write.id).await, write.version) {
                inner.write_record(es, entity, write).await;
            }
        }
        // An empty result is a negative answer: anyone can ask for values that match nothing.
        let ttl = records.iter().map(|r| r.ttl).max().unwrap_or(entity.negative_ttl);
        let epoch = es.epoch;
        let expires_at = inner.now() + ttl;
        let State {
            entities, marker_use, ..
        } = &mut *state;
        if let Some(es) = entities.get_mut(entity.entity) {
            es.markers.insert(
                entity.entity,
                query.filter_key(),
                filters,
                epoch,
                expires_at,
                marker_use,
            );
        }
        inner.trim_markers(&mut state);
        Ok(QueryFill::Completed { forgotten: dropped })
    }

    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>> {
        let batch = batch.max(1);
        stream::unfold(Some(None::<RecordId>), move |cursor| async move {
            let after = cursor?;
            let candidates: Vec<RecordId> = {
                let state = self.inner.lock().await;
                let es = state.entities.get(entity.entity)?;
                let range = match &after {
                    Some(after) => es
                        .indexed
                        .range::<RecordId, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
                    None => es.indexed.range::<RecordId, _>(..),
                };
                range.take(batch).map(|(id, _)| id.clone()).collect()
            };
            let last = candidates.last().cloned()?;
            let mut ids = Vec::with_capacity(candidates.len());
            for id in candidates {
                if self.inner.live(&Key::record(entity, &id)).await.is_some() {
                    ids.push(id);
                }
            }
            Some((Ok(ids), Some(Some(last))))
        })
        .filter(|batch| futures::future::ready(!matches!(batch, Ok(ids) if ids.is_empty())))
        .boxed()
    }

    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64> {
        if let Some(pattern) = pattern {
            keys::validate_pattern(pattern)?;
        }
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let now = inner.now();
        let keys: Vec<(Arc<Key>, Entry)> = inner
            .entries
            .iter()
            .filter(|(key, _)| pattern.is_none_or(|p| keys::glob_match(p, &key.to_string())))
            .collect();
        let mut removed = 0;
        for (key, entry) in keys {
            inner.entries.invalidate(&*key).await;
            if entry.expires_at > now {
                removed += 1;
            }
            match (&*key, &entry.kind) {
                (Key::Record(entity, id), _) => {
                    let State {
                        entities, marker_use, ..
                    } = &mut *state;
                    if let Some(es) = entities.get_mut(entity) {
                        es.unindex(id);
                        es.invalidate_markers(marker_use);
                    }
                }
                (Key::Value(k), Kind::Value { tags, .. }) => forget_value_tags(&mut state.value_tags, k, tags),
                _ => {}
            }
        }
        if pattern.is_none() {
            // Keep epochs and sequences: a fill token issued before the flush stays void.
            let State {
                entities, marker_use, ..
            } = &mut *state;
            for es in entities.values_mut() {
                es.indexed.clear();
                es.tags.clear();
                es.leases.clear();
                es.invalidate_markers(marker_use);
                es.seq += 1;
            }
            state.value_tags.clear();
        }
        Ok(removed)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let inner = &self.inner;
        inner.entries.run_pending_tasks().await;
        let (markers, side_bytes) = {
            let state = inner.lock().await;
            let leases: usize = state.entities.values().map(|es| es.leases.len()).sum();
            let markers: usize = state.entities.values().map(|es| es.markers.len()).sum();
            let side = state.marker_use.bytes + leases * LEASE_WEIGHT + state.computed.marks_weight();
            (markers, side)
        };
        let now = inner.now();
        let entries = inner.entries.iter().filter(|(_, e)| e.expires_at > now).count();
        // Markers are keys too, as on Redis; leases are not counted (they live seconds).
        let total_keys = (entries + markers) as u64;
        let used = inner.entries.weighted_size() + side_bytes as u64;
        Ok(StoreStats {
            backend: "memory".to_owned(),
            total_keys,
            memory_used_bytes: Some(used),
            memory_used_human: Some(human_bytes(used)),
            ..StoreStats::default()
        })
    }

    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>> {
        Ok(match self.inner.live(&Key::Value(key.to_owned())).await {
            Some(Entry {
                kind: Kind::Value { body, .. },
                ..
            }) => Some(body),
            _ => None,
        })
    }

    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let k = Key::Value(key.to_owned());
        if let Some(Entry {
            kind: Kind::Value { tags: old, .. },
            ..
        }) = inner.entries.get(&k).await
        {
            forget_value_tags(&mut state.value_tags, key, &old);
        }
        for tag in tags {
            state.value_tags.entry(tag.clone()).or_default().insert(key.to_owned());
        }
        let entry = Entry {
            kind: Kind::Value {
                body: value,
                tags: tags.into(),
            },
            ttl,
            expires_at: inner.now() + ttl,
        };
        inner.entries.insert(k, entry).await;
        Ok(())
    }

    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let now = inner.now();
        state
            .computed
            .purged(tags, now, &inner.purges, inner.side_budget as usize);
        let mut keys = BTreeSet::new();
        for tag in tags {
            if let Some(found) = state.value_tags.remove(tag) {
                keys.extend(found);
            }
        }
        let mut removed = 0;
        for key in keys {
            if let Some(entry) = inner.entries.remove(&Key::Value(key.clone())).await {
                if let Kind::Value { tags, .. } = &entry.kind {
                    forget_value_tags(&mut state.value_tags, &key, tags);
                }
                if entry.expires_at > inner.now() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    async fn advance_watermark(&self, key: &str, value: i64, ttl: Duration) -> StoreResult<bool> {
        self.watermark_advance(key, value, ttl).await
    }

    async fn get_computed(&self, key: &str) -> StoreResult<crate::ComputedLookup> {
        self.computed_get(key).await
    }

    async fn put_computed(&self, key: &str, write: &crate::ComputedWrite) -> StoreResult<bool> {
        self.computed_put(key, write).await
    }

    async fn lock_computed(&self, key: &str, ttl: Duration) -> StoreResult<crate::LockAttempt> {
        self.computed_lock(key, ttl).await
    }

    async fn unlock_computed(&self, key: &str, lock: crate::ComputeLock) -> StoreResult<()> {
        self.computed_unlock(key, lock).await
    }

    async fn wait_computed(&self, key: &str, timeout: Duration) -> StoreResult<crate::LockWait> {
        self.computed_wait(key, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Order, Sort};

    #[test]
    fn a_page_is_the_slice_of_the_whole_order() {
        let mut es = EntityState::default();
        let ids: Vec<RecordId> = (0..40).map(|i| RecordId::new(format!("r{i:02}")).unwrap()).collect();
        for (i, id) in ids.iter().enumerate() {
            let entries = IndexEntries {
                tags: vec![("even".into(), (i % 2 == 0).to_string())],
                scores: vec![("points".into(), f64::from(u8::try_from(i % 7).unwrap()))],
            };
            es.index(id, entries, i as u64);
        }
        for filter in [None, Some("true")] {
            for sort in [None, Some(Order::Asc), Some(Order::Desc)] {
                let mut query = IndexQuery::all();
                if let Some(value) = filter {
                    query = query.filter("even", value.to_owned());
                }
                query.sort = sort.map(|order| Sort { field: "points", order });
                let whole: Vec<(RecordId, u64)> = es.page(&query);
                assert!(whole.is_sorted_by(|a, b| {
                    let score = |g: u64| if sort.is_some() { (g % 7) as f64 } else { 0.0 };
                    order::compare_scored((score(a.1), &a.0), (score(b.1), &b.0), sort).is_lt()
                }));
                for offset in [0, 1, 5, 19, 20, 45] {
                    for limit in [None, Some(0), Some(1), Some(3), Some(50)] {
                        let mut paged = query.clone();
                        paged.offset = offset;
                        paged.limit = limit;
                        let expected: Vec<_> = whole
                            .iter()
                            .skip(offset)
                            .take(limit.unwrap_or(usize::MAX))
                            .cloned()
                            .collect();
                        assert_eq!(es.page(&paged), expected, "{paged:?}");
                    }
                }
            }
        }
    }
}
