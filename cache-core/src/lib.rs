//! model-cache's core: a read-through cache driven by your model structs.
//!
//! This crate owns the model ([`Cacheable`], [`EntitySchema`], [`Link`], [`Links`],
//! [`RecordId`]), the [`Store`] and [`Origin`] contracts, and the cache operations over them
//! ([`Cache`]), with the embedded in-memory store ([`MemoryStore`]). Results that are not
//! records (aggregates, statistics) are cached as [computed values](compute) ([`Computed`],
//! [`Cache::get_or_compute`]), invalidated by the records they read.
#![warn(missing_docs)]

mod cache;
pub mod change;
mod clock;
pub mod compute;
mod error;
pub mod feed;
mod flight;
mod id;
pub mod keys;
mod link;
pub mod log_limit;
mod memory;
mod model;
pub mod near;
mod operation;
pub mod order;
mod origin;
mod query;
mod registry;
mod schema;
mod stats;
pub mod store;
mod sweep;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
pub mod __private;

// The derive names this crate `::cache_core`; this lets its own unit tests derive models too.
#[allow(unused_extern_crates)]
extern crate self as cache_core;

pub use cache::{
    CACHE_ENABLED_ENV, Cache, CacheBuilder, DEFAULT_LEASE_TTL, DEFAULT_TTL_JITTER, IntoOrigin, IntoStore,
    RemoveOutcome, UpsertOutcome, parse_switch,
};
pub use change::{Change, ChangeKind, ChangeOutcome, Refusal};
pub use clock::{Clock, ManualClock, SystemClock};
pub use compute::{ComputeOptions, Computed, ComputedStats, ManualRandom, RandomSource, SystemRandom};
pub use error::{CacheError, ConfigError, InvalidSwitch};
pub use id::{FORBIDDEN_ID_CHARS, InvalidId, MAX_ID_LEN, RecordId};
pub use link::{Link, Links};
pub use memory::{DEFAULT_MEMORY_BUDGET, MemoryStore, MemoryStoreBuilder};
pub use model::{CacheView, Cacheable, IndexEntries, IndexValue, ModelError, NoSort, SortField, SortKey, SourceRecord};
pub use near::{NearCache, NearStats};
pub use origin::{Deletion, Origin, OriginError, SourceFilter, SourceQuery};
pub use query::{Filter, IndexQuery, Order, Query, Sort};
pub use registry::{EntityHandle, Registry};
pub use schema::{
    DEFAULT_NEGATIVE_TTL, DEFAULT_TOMBSTONE_TTL, DEFAULT_TTL, EntitySchema, EntitySchemaBuilder, FieldKind,
    FieldSchema, IndexKind,
};
pub use stats::{CacheStats, EntityStats, describe_metrics};
pub use store::{
    ComputeLock, ComputedLookup, ComputedWrite, DeleteOrder, FillToken, Lease, LockAttempt, LockWait, Lookup,
    PURGE_MEMORY, PurgeStamp, QueryFill, QueryLookup, RecordWrite, RemoveMode, Store, StoreError, StoreResult,
    StoreStats, Tombstone, WriteMode, WriteOutcome, human_bytes,
};
pub use sweep::{SweepProgress, SweepReport};

/// `#[derive(Cacheable)]`, `#[derive(CacheView)]` and `#[derive(IndexValue)]`.
#[cfg(feature = "derive")]
pub use cache_derive::{CacheView, Cacheable, IndexValue};

// The README's examples are compiled and run as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
