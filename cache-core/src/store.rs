//! The `Store` contract: where cached records, their indexes, tombstones and computed values
//! live. The in-memory store and `cache-redis` implement it; the conformance suite in
//! `cache_core::testing` (feature `testing`) checks them.
//!
//! A store deals in bytes and [`IndexEntries`]; it never sees model types (a store in this
//! process may keep an opaque [`DecodedCopy`] beside a record's bytes, see
//! [`Store::get_with_copy`]). Every method is one round trip on a networked store where the
//! contract allows it (see each method).
//!
//! ## Consistency machinery
//! - **Leases** (stale-set protection for record fills). Before a read-through fill the cache
//!   takes a [`Lease`] on the ids it will fill; an upsert, invalidation or delete of an id
//!   revokes its lease, and a fill whose lease was revoked is refused
//!   ([`WriteOutcome::LeaseLost`]).
//! - **Versions.** When the entity has a version field, a write carrying a version older than
//!   the cached one is refused ([`WriteOutcome::StaleVersion`]).
//! - **Completeness markers** (index queries). A query is answered by the store only when a
//!   marker says the store holds every record matching its filters. Upserts and deletes keep
//!   markers true by moving index entries; an invalidation (the store no longer knows where a
//!   record belongs) drops every marker of its entity. A query fill is refused when any write
//!   to the entity happened since the query missed ([`FillToken`]).
//! - **Purge marks** (computed values). A purge remembers when each of its tags was purged; a
//!   computed value is refused when one of its tags was purged after the lookup that preceded
//!   its computation ([`Store::put_computed`], [`PurgeStamp`]).
//! - **Compute locks** (computed values). One instance computes a missing value while the
//!   others wait for it without polling ([`Store::lock_computed`], [`Store::wait_computed`]).
//!
//! ## What counts as a write
//! Fill tokens are refused after a *write*: a [`WriteMode::Upsert`] put or a
//! [`RemoveMode::Invalidate`] / [`RemoveMode::Tombstone`] remove that touched the entity.
//! Read-through fills ([`WriteMode::Fill`], [`RemoveMode::FillTombstone`] and
//! [`Store::complete_query`]) only copy the origin and are not writes: under steady read
//! traffic a query fill must still succeed. A fill that raced a write is refused by its
//! lease or its token instead.

use std::{
    any::Any,
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::{
    RecordId,
    query::IndexQuery,
    schema::{EntitySchema, IndexEntries},
};

mod health;

pub use self::health::{Availability, StoreStats, human_bytes};

/// What a store error means for the caller.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached (connection refused, timed out).
    #[error("cache store unavailable: {0}")]
    Unavailable(String),
    /// The store refused the call without trying it: its circuit breaker is open, or it is not
    /// connected yet. The hot path of an outage, so it carries a static reason and the cache does
    /// not log it per call (the store logs its state changes).
    #[error("cache store refused the call: {0}")]
    Refused(&'static str),
    /// The store answered with an error.
    #[error("cache store error: {0}")]
    Backend(String),
    /// The request is not valid for this store (a key pattern that would leave the namespace).
    #[error("invalid store request: {0}")]
    Invalid(String),
}

impl StoreError {
    /// Whether the store could not be reached or refused to try ([`StoreError::Unavailable`],
    /// [`StoreError::Refused`]): the caller answers from the origin instead.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Refused(_))
    }
}

/// The result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// What the store holds for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The record's cached form.
    Hit(Bytes),
    /// The source does not have the record (negative cache entry).
    Tombstone,
    /// Nothing is cached.
    Miss,
}

/// The decoded form of one stored record, kept beside its cached form by a store in this
/// process ([`MemoryStore`](crate::MemoryStore)): the first read that decodes the record keeps
/// a copy here ([`DecodedCopy::keep`]), and later reads clone it instead of decoding the bytes
/// again.
///
/// A store makes a new one with every write of a record and hands out clones of it (they share
/// the copy) only with the bytes it was made with, so a copy never outlives its bytes: a new
/// write, a delete, an invalidation, an eviction or the record's expiry leaves it unreachable.
/// It holds one model type: a read as another type decodes the bytes.
#[derive(Clone, Default)]
pub struct DecodedCopy(Arc<OnceLock<Box<dyn Any + Send + Sync>>>);

impl DecodedCopy {
    /// An empty one, for a record just written.
    pub fn new() -> Self {
        Self::default()
    }

    /// The copy kept, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.get()?.downcast_ref::<T>()
    }

    /// Keeps `record`, decoded from the bytes this was handed out with, unless a copy is kept
    /// already.
    pub fn keep<T: Any + Send + Sync>(&self, record: T) {
        let _ = self.0.set(Box::new(record));
    }
}

impl fmt::Debug for DecodedCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecodedCopy")
            .field("kept", &self.0.get().is_some())
            .finish()
    }
}

/// A lease on ids about to be filled from the origin: a token the fill presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease(pub u64);

/// The state of an entity's writes when a query missed: a query fill presents it, and is
/// refused if the entity was written since. Opaque to the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FillToken(pub Vec<u64>);

/// One record to write with its index entries.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    /// The record's id.
    pub id: RecordId,
    /// The cached form.
    pub body: Bytes,
    /// The record's index entries (they replace the previous ones).
    pub index: IndexEntries,
    /// The record's version, when the entity has a version field.
    pub version: Option<f64>,
    /// When the change happened at the source (Unix microseconds, the source's clock), when
    /// the change says: it orders the write against a delete's [`Tombstone`].
    pub at: Option<i64>,
    /// The time to live, jitter already applied.
    pub ttl: Duration,
}

/// Why a record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The application or a webhook says this is the record now: clears its tombstone and
    /// revokes any lease; refused when the cached version is newer, or when a delete's
    /// tombstone is not older ([`Tombstone::order`]).
    Upsert,
    /// A read-through fill under this lease: refused when the lease was revoked, the cached
    /// version is newer, or a delete's tombstone has a version not older. Does not clear a
    /// tombstone written after the lease was taken (the lease is revoked by it).
    Fill(Lease),
}

/// What happened to one write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Stored. `previous` is the record's old index entries, if it was cached, so that the
    /// caller can tell which index results it left.
    Written {
        /// The old index entries.
        previous: Option<IndexEntries>,
    },
    /// Refused: the cached version is newer.
    StaleVersion,
    /// Refused: the fill's lease was revoked by a newer write.
    LeaseLost,
    /// Refused: the source deleted the record, and the write is not newer than the delete (its
    /// version is not above the deleted one, or its source time not after the delete's).
    Deleted,
    /// Refused: the source deleted the record, and the write carries nothing to order it
    /// against the delete by (no version or source time the tombstone also has). The cache
    /// then reads the record from the origin, which decides.
    Unordered,
}

/// A delete the source reported, as its tombstone keeps it: later writes of the record are
/// ordered against it ([`WriteOutcome::Deleted`], [`WriteOutcome::Unordered`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tombstone {
    /// How long the tombstone lives.
    pub ttl: Duration,
    /// The version the deleted record had.
    pub version: Option<f64>,
    /// When the source deleted it (Unix microseconds, the source's clock).
    pub at: Option<i64>,
}

impl Tombstone {
    /// A tombstone that knows nothing of the delete's order: every upsert of the record is
    /// [`WriteOutcome::Unordered`] while it lives.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            version: None,
            at: None,
        }
    }

    /// How a write of the record compares with this delete.
    ///
    /// Versions decide when both sides have one; otherwise source times decide when both
    /// have one; otherwise the write cannot be ordered. Equal is not newer: the delete came
    /// after the state it deleted.
    pub fn order(&self, version: Option<f64>, at: Option<i64>) -> DeleteOrder {
        match (self.version, version, self.at, at) {
            (Some(deleted), Some(written), ..) if written.is_nan() || deleted.is_nan() => DeleteOrder::Unordered,
            (Some(deleted), Some(written), ..) if written > deleted => DeleteOrder::Newer,
            (Some(_), Some(_), ..) => DeleteOrder::NotNewer,
            (.., Some(deleted), Some(written)) if written > deleted => DeleteOrder::Newer,
            (.., Some(_), Some(_)) => DeleteOrder::NotNewer,
            _ => DeleteOrder::Unordered,
        }
    }

    /// The later of two deletes of one record: the larger version and the larger time.
    #[must_use]
    pub fn merge(self, other: Self) -> Self {
        let max_f = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Self {
            ttl: self.ttl.max(other.ttl),
            version: max_f(self.version, other.version),
            at: self.at.max(other.at),
        }
    }
}

/// How a write compares with a delete's [`Tombstone`] ([`Tombstone::order`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOrder {
    /// The write is newer: a re-created record.
    Newer,
    /// The write is not newer: refused as [`WriteOutcome::Deleted`].
    NotNewer,
    /// Nothing orders them: refused as [`WriteOutcome::Unordered`].
    Unordered,
}

/// How records are removed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RemoveMode {
    /// Forget the records (the next read goes to the origin); drops the entity's completeness
    /// markers, since where the records now belong is unknown. A delete's tombstone stops
    /// answering reads but keeps ordering upserts until it expires.
    Invalidate,
    /// The source deleted them: remove them and their index entries and leave this tombstone
    /// (merged with the record's earlier one, [`Tombstone::merge`]). Completeness markers
    /// stay true. Until it expires, an upsert of the record is refused unless it is newer than
    /// the delete ([`Tombstone::order`]), and a fill whose version is not newer is refused.
    Tombstone(Tombstone),
    /// A read-through fill learned that the source does not have the records: a tombstone
    /// that answers reads as "not found" but orders nothing (an upsert clears it), only for
    /// the ids whose lease is still `lease`; the others (revoked by a newer upsert,
    /// invalidation or delete) are left as they are and answered `None`. A delete's tombstone
    /// already there keeps its order. Not a write (see the [module docs](self)).
    FillTombstone {
        /// The lease the fill took before asking the origin.
        lease: Lease,
        /// How long the tombstones live.
        ttl: Duration,
    },
}

/// What [`Store::complete_query`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryFill {
    /// Refused: the entity was written since the token was issued.
    Refused,
    /// Stored and marked complete.
    Completed {
        /// The cached records it forgot because the origin's result no longer has them: the
        /// cache purges what depended on them.
        forgotten: Vec<RecordId>,
    },
}

impl QueryFill {
    /// Whether the result was marked complete.
    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Completed { .. })
    }
}

/// What an index query found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryLookup {
    /// The store holds the complete result.
    Complete {
        /// The page of records, in order.
        page: Vec<Bytes>,
        /// The token to fill the result with when the cache cannot use the page (a
        /// `no-cache` refresh, a body it cannot read): a refill is a fill like any other,
        /// refused after a write.
        token: FillToken,
    },
    /// The store does not know the complete result; fill it with this token.
    Incomplete(FillToken),
}

/// A lock on computing one value (see [`Store::lock_computed`]): the token its owner presents
/// to store the value or release the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ComputeLock(pub u64);

/// Where the store's purges stood when a computed value was looked up. A value computed after
/// the lookup is stored with it, and refused when one of its tags was purged since (the
/// value may have been computed from what the purge replaced). Opaque to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PurgeStamp(pub u64);

/// What the store holds for a computed value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputedLookup {
    /// The stored value, if any (it may be past its logical expiry: the cache decides).
    pub value: Option<Bytes>,
    /// The stamp to store a recomputation with.
    pub stamp: PurgeStamp,
}

/// A computed value to store.
#[derive(Debug, Clone)]
pub struct ComputedWrite {
    /// The stored form.
    pub value: Bytes,
    /// How long the store keeps it.
    pub ttl: Duration,
    /// What it was computed from: [`Store::purge_tags`] of any of them removes it.
    pub tags: Vec<String>,
    /// The stamp of the lookup that preceded the computation.
    pub stamp: PurgeStamp,
    /// The lock the computation held, released (and its waiters woken) by the write.
    pub lock: Option<ComputeLock>,
}

/// What [`Store::lock_computed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockAttempt {
    /// The caller holds the lock now.
    Acquired(ComputeLock),
    /// Someone else holds it: wait with [`Store::wait_computed`].
    Held,
}

/// How a wait for someone else's computation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockWait {
    /// The value is there.
    Value(Bytes),
    /// The lock was released (or had expired) without a value: the computation failed, or
    /// its value was refused or purged. Compute it yourself.
    Released,
    /// The wait's bound passed first.
    TimedOut,
}

/// How long a store remembers a purge for [`Store::put_computed`]: a computation that took
/// longer than this (from its lookup to its write) is not stored, since a purge during it can
/// no longer be ruled out.
pub const PURGE_MEMORY: Duration = Duration::from_secs(600);

/// A change to what a store holds, as a [near cache](crate::near::NearCache) needs to hear of it
/// ([`Store::subscribe_invalidations`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation<'a> {
    /// A record's body or tombstone changed (written, removed, expired, evicted). Its entity's
    /// query results may have changed with it.
    Record {
        /// The entity, as [`EntitySchema::entity`] names it.
        entity: &'a str,
        /// The record's id.
        id: &'a str,
    },
    /// A computed value (a cached response among them) was written, removed or expired.
    Value {
        /// Its key, as given to [`Cache::compute_with`](crate::Cache::compute_with).
        key: &'a str,
    },
    /// The entity's index data changed (index sets, completeness markers): its query results
    /// may have changed.
    Index {
        /// The entity, as [`EntitySchema::entity`] names it.
        entity: &'a str,
    },
    /// Anything may have changed (a flush of the whole database).
    All,
}

/// Receives a store's invalidations ([`Store::subscribe_invalidations`]): the near cache.
///
/// Both methods are called where the store learns of the change (on the reader of its push
/// connection, or when its own write returns): they must be quick and must not block.
pub trait InvalidationSink: Send + Sync {
    /// Forgets what `invalidation` may have changed.
    fn invalidate(&self, invalidation: Invalidation<'_>);

    /// Whether the store vouches, from now on, for reporting every change: `false` when its
    /// invalidation channel is lost or not established yet (the sink then forgets everything
    /// and holds nothing until it hears `true`), `true` once the channel is established again.
    fn set_tracking(&self, tracking: bool);
}

/// Where cached data lives. See the [module docs](self) for the consistency machinery.
///
/// Methods take the entity's schema; a store derives its key layout from
/// [`EntitySchema::entity`] and [`EntitySchema::fingerprint`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one record: one round trip.
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup>;

    /// [`Store::get`], with the [`DecodedCopy`] kept beside a hit's bytes by a store in this
    /// process: the cache answers the copy when it holds the model asked for, and otherwise
    /// keeps the record it decodes there. The default keeps none (a networked store's bytes
    /// are decoded by each read).
    async fn get_with_copy(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<(Lookup, Option<DecodedCopy>)> {
        Ok((self.get(entity, id).await?, None))
    }

    /// Reads many records, answering in the order of `ids`: one round trip.
    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>>;

    /// Takes one lease on all `ids`, living `ttl`, replacing any earlier lease on them.
    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease>;

    /// Writes records with their index entries, moving each from its old index entries to
    /// its new ones atomically; answers in the order of `writes`.
    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>>;

    /// Removes records and their index entries and revokes their leases; answers each
    /// record's old index entries (`None` when it was not cached), in the order of `ids`.
    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>>;

    /// Answers an index query from the store when its result is complete: one round trip
    /// that returns the records of the page. Either way it answers the entity's current
    /// [`FillToken`], so that a refill of a complete result is refused after a write too.
    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup>;

    /// Stores the complete result of `query`'s filters (every matching record, as the origin
    /// gave them) and marks it complete, unless the entity was written since `token` was
    /// issued. Records whose cached version is newer are left as they are; written records
    /// lose their tombstones; cached records that the store files under these filters but
    /// that `records` lacks are forgotten (as by [`RemoveMode::Invalidate`], without dropping
    /// markers), so that the marked result is exactly the origin's. Returns whether the result
    /// was marked complete, with the records it forgot.
    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<QueryFill>;

    /// The ids of the entity's cached records, in batches of about `batch` (never a blocking
    /// whole-keyspace command such as `KEYS`).
    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>>;

    /// Removes what this cache holds under the *logical keys* matching `pattern` (everything
    /// when `None`), never touching another namespace; answers how many logical keys it removed.
    ///
    /// Every store understands the same logical keys, whatever its physical ones:
    /// - `{entity}:r:{id}`: the cached record `id` of `entity` (`projects:r:recP1`);
    /// - `{entity}:tomb:{id}`: its tombstone;
    /// - `v:{key}`: a computed value or cached response;
    /// - `tag:{tag}`: the values recorded under a tag, on stores that keep them as keys (Redis).
    ///
    /// Patterns are globs as Redis `SCAN MATCH` reads them
    /// ([`keys::glob_match`](crate::keys::glob_match)), and every store refuses the same ones
    /// ([`keys::validate_pattern`](crate::keys::validate_pattern)): `projects:*` flushes every
    /// record and tombstone of `projects`, `*:tomb:*` every tombstone, `v:http:*` the cached
    /// responses. Removing a record also drops its entity's completeness markers, so the
    /// entity's queries go to the origin again; `*` removes everything, indexes included.
    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64>;

    /// Checks that the store answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Reports to `sink` every change to the records, index data and computed values the store
    /// holds (a value written by [`Store::put_value`] or [`Store::put_computed`], removed by
    /// [`Store::purge_tags`] or [`Store::flush`], expired or evicted; the cache's own
    /// bookkeeping values, [`keys::is_bookkeeping_value_key`](crate::keys::is_bookkeeping_value_key),
    /// may be left out): the changes other instances make (as the store's backend pushes them)
    /// and the store's own writes (as each returns), until `sink` is dropped. The store keeps only the weak
    /// reference. It first tells the sink whether it can vouch for that now
    /// ([`InvalidationSink::set_tracking`]), and says so again whenever that changes.
    ///
    /// Answers whether the store supports it; the default does not (a store in this process
    /// needs no near cache). Redis does, with server-assisted client-side caching.
    fn subscribe_invalidations(&self, sink: std::sync::Weak<dyn InvalidationSink>) -> bool {
        let _ = sink;
        false
    }

    /// Counters and gauges. Cheap enough for every monitoring scrape: a store may estimate
    /// [`StoreStats::total_keys`] (and says so in [`StoreStats::total_keys_exact`]).
    async fn stats(&self) -> StoreResult<StoreStats>;

    /// [`Store::stats`] with the keys counted one by one, however long that takes (a `SCAN`
    /// of the whole keyspace on Redis): for an operator's question, not for monitoring.
    async fn exact_stats(&self) -> StoreResult<StoreStats> {
        self.stats().await
    }

    /// Whether the store takes calls now. Cheap and without I/O: metrics and health checks
    /// read it on every scrape. A store with no connection or breaker of its own is always
    /// [`Availability::Available`].
    fn availability(&self) -> Availability {
        Availability::Available
    }

    /// Reads a computed value or cached response.
    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>>;

    /// Stores a computed value or cached response under `key` with a TTL, and records it
    /// under each of `tags` so that [`Store::purge_tags`] removes it.
    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()>;

    /// Removes every value recorded under any of `tags`; answers how many were removed. A store
    /// that supports [`Store::put_computed`]'s refusals also remembers, for
    /// [`PURGE_MEMORY`], that these tags were purged.
    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64>;

    /// Raises the watermark under `key` to `value` unless it holds a higher one, atomically:
    /// answers whether it now holds `value` (it was missing, lower or equal; equal answers
    /// `true`, so that a retried claim succeeds again). The watermark then lives `ttl`. It is a
    /// value without tags (read by [`Store::get_value`] as the decimal integer); a value under
    /// `key` that is not an integer counts as missing. After concurrent calls the key holds the
    /// highest of their values, and each call answered `false` exactly when a higher one was
    /// there first.
    ///
    /// The default reads and writes without that atomicity; the in-memory and Redis stores
    /// implement it atomically.
    async fn advance_watermark(&self, key: &str, value: i64, ttl: Duration) -> StoreResult<bool> {
        let current = self.get_value(key).await?;
        let current = current.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<i64>().ok());
        if current.is_some_and(|current| current > value) {
            return Ok(false);
        }
        self.put_value(key, Bytes::from(value.to_string()), ttl, &[]).await?;
        Ok(true)
    }

    // ------------------------------------------------------------ computed values
    //
    // The defaults make any store usable for computed values, without the protections: no
    // refusal of values computed across a purge, and no lock (every caller computes). The
    // in-memory and Redis stores implement them all.

    /// Reads a computed value, with the stamp to store its recomputation with: one round trip.
    async fn get_computed(&self, key: &str) -> StoreResult<ComputedLookup> {
        Ok(ComputedLookup {
            value: self.get_value(key).await?,
            stamp: PurgeStamp(0),
        })
    }

    /// Stores a computed value under `key` with its tags (as [`Store::put_value`]), unless one
    /// of its tags was purged since `write.stamp` (or the stamp is older than
    /// [`PURGE_MEMORY`]); then releases `write.lock` if it still holds and wakes the lock's
    /// waiters, whether the value was stored or not. Answers whether it was stored.
    async fn put_computed(&self, key: &str, write: &ComputedWrite) -> StoreResult<bool> {
        self.put_value(key, write.value.clone(), write.ttl, &write.tags).await?;
        Ok(true)
    }

    /// Takes the lock on computing `key` for `ttl`, unless someone holds it (`SET NX PX`).
    async fn lock_computed(&self, key: &str, ttl: Duration) -> StoreResult<LockAttempt> {
        let _ = (key, ttl);
        Ok(LockAttempt::Acquired(ComputeLock(0)))
    }

    /// Releases the lock on `key` if `lock` still holds it (a computation that failed), and
    /// wakes its waiters, who then compute themselves.
    async fn unlock_computed(&self, key: &str, lock: ComputeLock) -> StoreResult<()> {
        let _ = (key, lock);
        Ok(())
    }

    /// Keeps the lock on `key` for another `ttl` from now if `lock` still holds it, and
    /// answers whether it did: `false` when the lock lapsed (someone else may hold it now),
    /// and it is then left as it is. For work that outlasts the lock's first time to live (a
    /// feed's consumer), and for a step only the holder may take. Without locks (the default)
    /// every lock holds.
    async fn extend_computed(&self, key: &str, lock: ComputeLock, ttl: Duration) -> StoreResult<bool> {
        let _ = (key, lock, ttl);
        Ok(true)
    }

    /// Waits, at most `timeout`, for the holder of the lock on `key` to store the value or
    /// release the lock, without polling: answers at once when the value is there or nobody
    /// holds the lock.
    async fn wait_computed(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        let _ = timeout;
        Ok(match self.get_value(key).await? {
            Some(value) => LockWait::Value(value),
            None => LockWait::Released,
        })
    }
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
