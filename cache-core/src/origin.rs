//! The `Origin` contract: the slow source of truth (Airtable, an SQL database, an HTTP API).
//!
//! An origin speaks in source shapes ([`SourceRecord`]: fields keyed by source name, links as
//! arrays) and source field names; the cache translates from the model through the
//! [`EntitySchema`]. One origin serves every entity, as one Airtable base serves every table.

use std::{sync::Arc, time::SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{
    Order, RecordId,
    query::IndexQuery,
    schema::{EntitySchema, FieldSchema},
};

/// A record as the source has it: its id and its fields keyed by source field name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The record's id.
    pub id: RecordId,
    /// The fields, keyed by source name (`event_id`, `Email Address`).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// Why the origin could not answer. "Not found" is not an error: it is `Ok(None)` (or an id
/// absent from a batch), and only it is ever cached as a tombstone.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    /// The source failed: unreachable, timed out, answered with an error.
    #[error("origin failed: {0}")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The source refused for rate limiting; try again later.
    #[error("origin rate limited; retry after {retry_after_ms} ms")]
    RateLimited {
        /// How long the source asked to wait.
        retry_after_ms: u64,
    },
    /// The source does not know the entity or a field.
    #[error("origin does not support this: {0}")]
    Unsupported(String),
}

impl OriginError {
    /// Wraps any error as a source failure.
    pub fn failed(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Failed(err.into())
    }
}

/// One equality condition in source terms.
#[derive(Debug, Clone)]
pub struct SourceFilter {
    /// The field (its `source_name` is the column; its `index` says how values compare:
    /// [`IndexKind::Lowercase`](crate::schema::IndexKind::Lowercase) compares trimmed, lower-cased).
    pub field: &'static FieldSchema,
    /// The normalised value, as text (`"42"`, `"true"`, `"recE1"`).
    pub value: String,
}

/// An index query in source terms.
#[derive(Debug, Clone)]
pub struct SourceQuery {
    /// The conditions, all of which must hold.
    pub filters: Vec<SourceFilter>,
    /// The sort field and direction. Ties, and unsorted results, are ordered by id in the
    /// same direction (ascending when unsorted); an absent sort value sorts first ascending.
    pub sort: Option<(&'static FieldSchema, Order)>,
    /// Results to skip.
    pub offset: usize,
    /// Results to return at most.
    pub limit: Option<usize>,
}

impl SourceQuery {
    /// Translates an index query to source terms; `None` when it names a field the entity
    /// does not have.
    pub fn from_index_query(entity: &'static EntitySchema, query: &IndexQuery) -> Option<Self> {
        let filters = query
            .filters
            .iter()
            .map(|f| {
                entity.field(f.field).map(|field| SourceFilter {
                    field,
                    value: f.value.clone(),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let sort = match query.sort {
            Some(s) => Some((entity.field(s.field)?, s.order)),
            None => None,
        };
        Some(Self {
            filters,
            sort,
            offset: query.offset,
            limit: query.limit,
        })
    }
}

/// The source of truth.
///
/// Two methods are required: [`Origin::fetch_many`] (records by id) and [`Origin::query`]
/// (records by index). The others have defaults built on them, which an origin overrides when
/// the source can answer more cheaply: [`Origin::fetch`] as a batch of one,
/// [`Origin::exists_many`] as a `fetch_many` whose fields are dropped, and [`Origin::delete`]
/// as [`OriginError::Unsupported`] (a read-only source; the application deletes through its
/// own path and tells the cache).
///
/// ```
/// use async_trait::async_trait;
/// use cache_core::{RecordId, schema::EntitySchema, origin::{Origin, OriginError, SourceQuery, SourceRecord}};
///
/// struct Catalogue;
///
/// #[async_trait]
/// impl Origin for Catalogue {
///     async fn fetch_many(
///         &self,
///         _entity: &'static EntitySchema,
///         ids: &[RecordId],
///     ) -> Result<Vec<SourceRecord>, OriginError> {
///         Ok(ids
///             .iter()
///             .map(|id| SourceRecord { id: id.clone(), fields: serde_json::Map::new() })
///             .collect())
///     }
///
///     async fn query(
///         &self,
///         _entity: &'static EntitySchema,
///         _query: &SourceQuery,
///     ) -> Result<Vec<SourceRecord>, OriginError> {
///         Ok(Vec::new())
///     }
/// }
/// ```
#[async_trait]
pub trait Origin: Send + Sync + 'static {
    /// Fetches one record; `Ok(None)` when the source does not have it. Defaults to
    /// [`Origin::fetch_many`] of the one id.
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        let records = self.fetch_many(entity, std::slice::from_ref(id)).await?;
        Ok(records.into_iter().find(|record| record.id == *id))
    }

    /// Fetches many records in one call; ids the source does not have are simply absent, and
    /// the order is free.
    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError>;

    /// The records matching every filter, ordered and paged as [`SourceQuery`] says.
    async fn query(&self, entity: &'static EntitySchema, query: &SourceQuery)
    -> Result<Vec<SourceRecord>, OriginError>;

    /// Which of `ids` the source still has, in one call (the sweep uses it). Defaults to
    /// [`Origin::fetch_many`], keeping the ids asked for; a source that can answer without
    /// the fields should override it.
    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        let asked: std::collections::HashSet<&RecordId> = ids.iter().collect();
        let records = self.fetch_many(entity, ids).await?;
        Ok(records
            .into_iter()
            .map(|record| record.id)
            .filter(|id| asked.contains(id))
            .collect())
    }

    /// Deletes a record at the source: what the source knows of the deletion, or `Ok(None)`
    /// when the record did not exist. The cache's tombstone keeps it, so that a write which
    /// is not newer than the delete is refused (see [`Deletion`]). Defaults to
    /// [`OriginError::Unsupported`]: a read-only source.
    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        let _ = id;
        Err(OriginError::Unsupported(format!(
            "deleting {} records: this origin is read-only",
            entity.entity
        )))
    }
}

/// What the source knows of a record it deleted: the tombstone the cache leaves orders later
/// writes of the record against it.
///
/// - `version`: the `#[cache(version)]` value the deleted record had (an SQL origin returns
///   it from `DELETE ... RETURNING`). A write of the record with a version not above it is
///   refused; a record re-created with a higher version is accepted.
/// - `record`: the deleted record as the source last had it (`DELETE ... RETURNING *`): the
///   cache reads the version from it with the model when `version` is not given.
/// - `at`: when the source deleted it, by the source's clock. A change that carries a source
///   time not after it is refused. The cache uses its own clock when the origin gives none.
///
/// ```
/// use cache_core::origin::Deletion;
/// let deleted = Deletion::new().with_version(7.0);
/// assert_eq!(deleted.version, Some(7.0));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Deletion {
    /// The deleted record's version, when the model has a version field and the source can
    /// tell.
    pub version: Option<f64>,
    /// The deleted record as the source last had it.
    pub record: Option<SourceRecord>,
    /// When the source deleted it.
    pub at: Option<SystemTime>,
}

impl Deletion {
    /// A deletion the source says nothing more of.
    pub fn new() -> Self {
        Self::default()
    }

    /// The deleted record's version.
    #[must_use]
    pub fn with_version(mut self, version: f64) -> Self {
        self.version = Some(version);
        self
    }

    /// The deleted record as the source last had it.
    #[must_use]
    pub fn with_record(mut self, record: SourceRecord) -> Self {
        self.record = Some(record);
        self
    }

    /// When the source deleted it.
    #[must_use]
    pub fn with_at(mut self, at: SystemTime) -> Self {
        self.at = Some(at);
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
