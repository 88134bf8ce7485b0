//! The in-memory [`Store`]: the embedded default, with exactly the semantics of the Redis
//! store (indexes, leases, versions, tombstones, completeness markers, fill tokens), checked
//! by the same conformance suite (`cache_core::testing`, feature `testing`).
//!
//! ## The memory budget
//! The budget ([`MemoryStoreBuilder::max_capacity_bytes`]) bounds everything the store holds,
//! each thing weighed at what it costs in this process (measured; see the soak figures in
//! `docs/benchmarks.md`):
//! - records, tombstones and values live in a [`moka`] cache with per-entry TTLs, each entry
//!   weighing its key, its body, its slots in moka's own structures, and (for a record) its
//!   entries in the index maps beside it and its decoded copy (see below), or (for a value)
//!   its entries under its tags;
//! - completeness markers (one per distinct index result asked for) have a sixteenth of the
//!   budget, and a lifetime (see `memory/markers.rs`);
//! - fill leases have another sixteenth: past it a fill takes no lease, so it is not stored
//!   (never wrong, only uncached);
//! - purge marks (every purge of a tag, which every distinct miss makes) a third sixteenth: past it
//!   the oldest are forgotten, and values computed before them are refused (not stored).
//!
//! Evicting a record drops the markers whose result contained it, found through the markers'
//! first filters, never by looking at every marker.
//!
//! ## Decoded copies
//! Records are kept in their cached form (bytes, as on Redis), and beside it the decoded record
//! the first read made ([`DecodedCopy`]), so that later hits clone it instead of decoding the
//! bytes. Each write makes a new, empty copy: a copy is only ever handed out with the bytes it
//! was decoded from, and goes with them. The copy is weighed from the moment the record is
//! written (moka weighs an entry once, when it is written), as its bytes' length again: a
//! decoded model holds about what its JSON holds, in strings and numbers instead of text.
//!
//! ## Logical keys
//! Entries are keyed by the logical keys [`Store::flush`] patterns match (`projects:r:recX`,
//! `projects:tomb:recX`, `v:{key}`; this store has no `tag:` keys). Flushing a record forgets
//! its index entries and drops its entity's completeness markers.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    fmt,
    hash::{BuildHasher, Hash, Hasher},
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
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::{
    RecordId,
    clock::{Clock, SystemClock},
    keys, order,
    query::IndexQuery,
    schema::{EntitySchema, IndexEntries},
    store::{
        DecodedCopy, DeleteOrder, FillToken, Lease, Lookup, QueryFill, QueryLookup, RecordWrite, RemoveMode, Store,
        StoreResult, StoreStats, Tombstone, WriteMode, WriteOutcome, human_bytes,
    },
};

mod computed;
mod inner;
mod markers;
mod operations;
mod watermark;

use inner::{forget_value_tags, is_newer};
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
/// use cache_core::{MemoryStore, clock::ManualClock};
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
    entries: Moka<Key, Entry, KeyHashing>,
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
    /// holds (records, tombstones, markers, leases, purge marks), each weighed at what it
    /// costs in this process. Beyond it the least useful entries are evicted.
    pub fn max_capacity_bytes(mut self, bytes: u64) -> Self {
        self.budget = bytes;
        self
    }

    /// The clock TTLs are checked against (default: the system clock). Tests pass a
    /// [`ManualClock`](crate::clock::ManualClock) and advance it past a TTL instead of sleeping.
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
            .build_with_hasher(KeyHashing { seed: rand::random() });
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
/// (`&'static`): a lookup allocates nothing for them, and compares them by address first.
#[derive(Debug, Clone, Eq)]
enum Key {
    Record(&'static str, RecordId),
    Tombstone(&'static str, RecordId),
    Value(String),
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Record(a, x), Self::Record(b, y)) | (Self::Tombstone(a, x), Self::Tombstone(b, y)) => {
                x == y && same_entity(a, b)
            }
            (Self::Value(a), Self::Value(b)) => a == b,
            _ => false,
        }
    }
}

fn same_entity(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Self::Record(entity, id) => RecordKey::record(entity, id).hash(state),
            Self::Tombstone(entity, id) => RecordKey::tombstone(entity, id).hash(state),
            Self::Value(key) => {
                state.write_u8(2);
                key.hash(state);
            }
        }
    }
}

/// Hashes [`Key`]s with xxh3, seeded per store: ids come from outside, and nobody can pick
/// ids that collide without the seed. A key is a few dozen bytes, which SipHash (the default)
/// takes several times longer to hash.
#[derive(Clone)]
struct KeyHashing {
    seed: u64,
}

impl BuildHasher for KeyHashing {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: self.seed,
            len: 0,
            buf: [0; KEY_HASH_BUFFER],
        }
    }
}

/// What [`KeyHasher`] gathers before hashing: a record key's parts fit.
const KEY_HASH_BUFFER: usize = 64;

/// Gathers a key's parts and hashes them in one call; a longer key (a value's) is hashed in
/// pieces, each seeding the next.
struct KeyHasher {
    seed: u64,
    len: usize,
    buf: [u8; KEY_HASH_BUFFER],
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > KEY_HASH_BUFFER {
            self.seed = xxh3_64_with_seed(&self.buf[..self.len], self.seed);
            self.len = 0;
            if bytes.len() > KEY_HASH_BUFFER {
                self.seed = xxh3_64_with_seed(bytes, self.seed);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn finish(&self) -> u64 {
        xxh3_64_with_seed(&self.buf[..self.len], self.seed)
    }
}

/// A record's or tombstone's [`Key`], borrowed: what a read looks up, without counting a
/// reference to the id.
struct RecordKey<'a> {
    tombstone: bool,
    entity: &'static str,
    id: &'a RecordId,
}

impl<'a> RecordKey<'a> {
    fn record(entity: &'static str, id: &'a RecordId) -> Self {
        Self {
            tombstone: false,
            entity,
            id,
        }
    }

    fn tombstone(entity: &'static str, id: &'a RecordId) -> Self {
        Self {
            tombstone: true,
            entity,
            id,
        }
    }
}

impl Hash for RecordKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(u8::from(self.tombstone));
        self.entity.hash(state);
        self.id.hash(state);
    }
}

impl moka::Equivalent<Key> for RecordKey<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        match key {
            Key::Record(entity, id) => !self.tombstone && id == self.id && same_entity(entity, self.entity),
            Key::Tombstone(entity, id) => self.tombstone && id == self.id && same_entity(entity, self.entity),
            Key::Value(_) => false,
        }
    }
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
        /// The decoded record the first read of these bytes kept (see the [module docs](self)).
        copy: DecodedCopy,
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
                // The body, and its decoded copy estimated at its length again (module docs).
                Kind::Record { body, index_weight, .. } => 2 * (body.len() + ALLOCATION) + *index_weight as usize,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Order, query::Sort};

    #[test]
    fn a_borrowed_key_hashes_and_compares_as_its_key() {
        let hashing = KeyHashing { seed: 7 };
        let id = RecordId::new("recA").unwrap();
        let copy = RecordId::new("recA").unwrap();
        let (record, tombstone) = (Key::Record("projects", id.clone()), Key::Tombstone("projects", id));
        assert_eq!(
            hashing.hash_one(&record),
            hashing.hash_one(RecordKey::record("projects", &copy))
        );
        assert_eq!(
            hashing.hash_one(&tombstone),
            hashing.hash_one(RecordKey::tombstone("projects", &copy))
        );
        assert_ne!(hashing.hash_one(&record), hashing.hash_one(&tombstone));
        assert!(moka::Equivalent::equivalent(
            &RecordKey::record("projects", &copy),
            &record
        ));
        assert!(!moka::Equivalent::equivalent(
            &RecordKey::tombstone("projects", &copy),
            &record
        ));
        assert!(!moka::Equivalent::equivalent(
            &RecordKey::record("users", &copy),
            &record
        ));
        // Longer than the buffer: hashed in pieces, still a function of the whole key.
        let long = |tail: &str| hashing.hash_one(Key::Value(format!("{}{tail}", "k".repeat(200))));
        assert_eq!(long("a"), long("a"));
        assert_ne!(long("a"), long("b"));
        assert_ne!(hashing.hash_one(&record), KeyHashing { seed: 8 }.hash_one(&record));
    }

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
