//! model-cache's core: a read-through cache driven by your model structs.
//!
//! This crate owns the model ([`Cacheable`], [`EntitySchema`], [`Link`], [`Links`],
//! [`RecordId`]), the [`Store`] and [`Origin`] contracts, and the cache operations over them.
#![warn(missing_docs)]

mod id;
pub mod keys;
mod link;
mod model;
mod origin;
mod query;
mod schema;
mod store;

#[doc(hidden)]
pub mod __private;

pub use id::{FORBIDDEN_ID_CHARS, InvalidId, MAX_ID_LEN, RecordId};
pub use link::{Link, Links};
pub use model::{CacheView, Cacheable, IndexEntries, IndexValue, ModelError, NoSort, SortField, SortKey, SourceRecord};
pub use origin::{Origin, OriginError, SourceFilter, SourceQuery};
pub use query::{Filter, IndexQuery, Order, Query, Sort};
pub use schema::{
    DEFAULT_TOMBSTONE_TTL, DEFAULT_TTL, EntitySchema, EntitySchemaBuilder, FieldKind, FieldSchema, IndexKind,
};
pub use store::{
    FillToken, Lease, Lookup, QueryLookup, RecordWrite, RemoveMode, Store, StoreError, StoreResult, StoreStats,
    WriteMode, WriteOutcome,
};

/// `#[derive(Cacheable)]`, `#[derive(CacheView)]` and `#[derive(IndexValue)]`.
#[cfg(feature = "derive")]
pub use cache_derive::{CacheView, Cacheable, IndexValue};
