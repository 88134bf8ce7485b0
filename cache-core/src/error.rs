//! The errors of cache operations and of building a cache.

use std::sync::Arc;

use crate::{origin::OriginError, schema::ModelError, store::StoreError};

/// Why a cache operation failed.
///
/// A failing store is never one of them on the read and write paths: the cache logs it and
/// answers from the origin ("fail open"). Only maintenance ([`Cache::sweep`](crate::Cache::sweep))
/// reports [`CacheError::Store`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The origin failed. Shared, because every caller waiting on the same origin call gets
    /// the same error; it is never cached.
    #[error(transparent)]
    Origin(Arc<OriginError>),
    /// A record could not be converted: a source record that does not parse
    /// ([`ModelError::Field`]) or a record that does not serialise.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The query names a field that is not indexed (or not sortable, for the sort).
    #[error("invalid query on {entity}: {reason}")]
    InvalidQuery {
        /// The entity queried.
        entity: &'static str,
        /// What is wrong with the query.
        reason: String,
    },
    /// The store failed during maintenance (a sweep).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A change names an entity no model registered with the cache reads
    /// ([`CacheBuilder::register`](crate::CacheBuilder::register)).
    #[error("no registered model is entity `{0}`")]
    UnknownEntity(&'static str),
}

impl CacheError {
    /// The origin's error, when the origin failed.
    pub fn origin_error(&self) -> Option<&OriginError> {
        match self {
            Self::Origin(err) => Some(err),
            _ => None,
        }
    }
}

impl From<OriginError> for CacheError {
    fn from(err: OriginError) -> Self {
        Self::Origin(Arc::new(err))
    }
}

/// Why a [`CacheBuilder`](crate::CacheBuilder) could not build a cache.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An environment variable has a value the cache does not understand.
    #[error("{var}={value:?} is not understood: use one of {expected}")]
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// Two registered models share an entity name.
    #[error("two models are registered as entity `{entity}`: {first} and {second}")]
    DuplicateEntity {
        /// The entity name.
        entity: &'static str,
        /// The first model's type.
        first: &'static str,
        /// The second model's type.
        second: &'static str,
    },
    /// Two registered models read the same source table.
    #[error("two models read source table `{table}`: {first} and {second}")]
    DuplicateSourceTable {
        /// The source table.
        table: &'static str,
        /// The first model's entity.
        first: &'static str,
        /// The second model's entity.
        second: &'static str,
    },
    /// The TTL jitter is not a fraction in `[0, 1)`.
    #[error("ttl jitter must be in [0, 1), got {0}")]
    InvalidJitter(f64),
}
