//! model-cache's core: a read-through cache driven by your model structs.
//!
//! The crate root is what an application needs: the cache ([`Cache`], [`CacheBuilder`]), the
//! model ([`Cacheable`], [`CacheView`], [`IndexValue`], [`RecordId`], [`Link`], [`Links`]),
//! queries ([`Query`], [`Order`]), results that are not records (aggregates, statistics) cached
//! as [computed values](compute) ([`Computed`], [`ComputeOptions`], [`Cache::get_or_compute`])
//! and invalidated by the records they read, the embedded in-memory store ([`MemoryStore`]),
//! and the errors and outcomes of all of these.
//!
//! Everything else lives in a module named for who needs it:
//!
//! | module | what it holds | for |
//! |---|---|---|
//! | [`store`] | the [`Store`](store::Store) contract and its types, [`IntoStore`](store::IntoStore) | store implementers (`cache-redis`) |
//! | [`origin`] | the [`Origin`](origin::Origin) contract, [`SourceRecord`](origin::SourceRecord), [`SourceQuery`](origin::SourceQuery), [`Deletion`](origin::Deletion) | origin implementers (`cache-sql`, `cache-airtable`) |
//! | [`change`] | [`Change`](change::Change) and its outcomes: the one path source changes take in | webhooks and change feeds |
//! | [`feed`] | a change feed's position and lock in the store, and its status | change feeds |
//! | [`dependencies`] | the per-request [`DependencyScope`](dependencies::DependencyScope): the tags a response or computed value is purged by | HTTP integrations, computations with their own tags |
//! | [`schema`] | [`EntitySchema`](schema::EntitySchema), fields, index entries, sort keys, [`ModelError`](schema::ModelError) | code acting on entities at run time, hand-written models |
//! | [`registry`] | the registered models, type-erased ([`EntityHandle`](registry::EntityHandle)) | webhook and admin routers |
//! | [`query`] | the untyped [`IndexQuery`](query::IndexQuery) stores and origins see | store and origin implementers |
//! | [`compute`] | computed values: the typed and untyped APIs, their statistics, randomness | applications, the response cache |
//! | [`config`] | the builder's defaults and the `CACHE_ENABLED` switch | applications' configuration |
//! | [`memory`] | the in-memory store's budget | applications |
//! | [`near`] | the in-process near cache in front of a tracking store | applications, the dashboard |
//! | [`stats`] | [`CacheStats`](stats::CacheStats) and the metrics the cache emits | dashboards, metrics |
//! | [`sweep`] | the sweep's progress and report | operators, the admin router |
//! | [`id`] | the limits on record ids | applications checking ids early |
//! | [`clock`] | time as the in-memory store sees it, for tests without sleeping | tests |
//! | [`keys`], [`order`], [`log_limit`] | dependency tags and key patterns, the one result order, rate-limited warnings | store implementers, integrations |
//! | `testing` (feature `testing`) | the store and origin conformance suites, `MemoryOrigin`, `FailingStore` | implementers' tests |
#![warn(missing_docs)]

mod cache;
pub mod change;
pub mod clock;
pub mod compute;
pub mod config;
pub mod dependencies;
mod error;
pub mod feed;
mod flight;
pub mod id;
pub mod keys;
mod link;
pub mod log_limit;
pub mod memory;
mod model;
pub mod near;
mod operation;
pub mod order;
pub mod origin;
pub mod query;
pub mod registry;
pub mod schema;
pub mod stats;
pub mod store;
pub mod sweep;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
pub mod __private;

// The derive names this crate `::cache_core`; this lets its own unit tests derive models too.
#[allow(unused_extern_crates)]
extern crate self as cache_core;

pub use cache::{Cache, CacheBuilder, RemoveOutcome, UpsertOutcome};
pub use compute::{ComputeOptions, Computed};
pub use error::{CacheError, ConfigError};
pub use id::{InvalidId, RecordId};
pub use link::{Link, Links};
pub use memory::{MemoryStore, MemoryStoreBuilder};
pub use model::{CacheView, Cacheable, IndexValue};
pub use query::{Order, Query};

/// `#[derive(Cacheable)]`, `#[derive(CacheView)]` and `#[derive(IndexValue)]`.
#[cfg(feature = "derive")]
pub use cache_derive::{CacheView, Cacheable, IndexValue};

// The README's examples are compiled and run as doctests of this crate.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
