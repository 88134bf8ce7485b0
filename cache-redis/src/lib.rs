//! The [`Store`](cache_core::store::Store) on Redis 6.2+, Valkey 7.2+ and Redis Cluster:
//! [`RedisStore`].
//!
//! - **One round trip per operation on a hit**: `get` is one `GET` of one key (which holds
//!   the record or its tombstone), `get_many` one `MGET` of a key per id, an index query
//!   (filters, sort, offset, limit) one `EVALSHA` that checks the completeness marker,
//!   intersects the filter sets, orders, pages and returns the records; an upsert moving a
//!   record between index entries is one atomic `EVALSHA`.
//! - **Keys** live under a namespace (`mc` by default) with the schema fingerprint in them, so
//!   data written under an old schema is never read; every key has a TTL. See [`KeyLayout`].
//! - **Cluster**: every key of an entity bucket shares one hash tag, so each script touches one
//!   slot; an entity can be spread over several buckets ([`RedisStoreBuilder::buckets`]), and
//!   queries then run on every bucket and merge.
//! - **Fail open**: a [circuit breaker](CircuitStatus) turns an unreachable or slow server into
//!   fast [`StoreError::Unavailable`](cache_core::store::StoreError::Unavailable) answers, so the cache
//!   serves from the origin, and closes by itself when the server is back; the connection
//!   reconnects after a restart and scripts are reloaded after `SCRIPT FLUSH`.
//! - **Bounded waits**: no operation waits longer than its
//!   [budget](RedisStoreBuilder::operation_budget) (250 ms by default), connecting included;
//!   the store is built even while Redis is down or hung and connects in the background; on a
//!   cluster a master that is down or failing over costs only its own slots.
//! - **Cheap stats**: [`stats`](cache_core::store::Store::stats) estimates the namespace's key count
//!   from `DBSIZE` and a sample; [`RedisStore::exact_key_count`] scans.
//!
//! ```no_run
//! use cache_redis::RedisStore;
//!
//! # async fn run() -> Result<(), cache_redis::ConnectError> {
//! let store = RedisStore::builder("redis://127.0.0.1:6379")
//!     .namespace("myapp")
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod breaker;
mod builder;
mod connection;
mod flush;
mod layout;
mod meta;
mod scripts;
mod store;
mod tracking;
mod wait;

#[cfg(feature = "testing")]
pub mod testing;

pub use breaker::{CircuitBreakerConfig, CircuitState, CircuitStatus};
pub use builder::{
    ConnectError, DEFAULT_CONNECT_TIMEOUT, DEFAULT_NAMESPACE, DEFAULT_OPERATION_BUDGET, DEFAULT_RESPONSE_TIMEOUT,
    RedisStoreBuilder,
};
pub use connection::{RedisConnection, Topology};
pub use layout::{BucketKeys, KeyLayout};
pub use store::RedisStore;

/// The redis-rs version the store is built on, for commands on [`RedisStore::connection`].
pub use redis;
