//! The registered models, type-erased: what the webhook and admin routers and the sweep use
//! to act on an entity named at run time.

use std::{collections::BTreeMap, fmt};

use futures::future::BoxFuture;

use crate::{
    Cache, CacheError, Cacheable, ConfigError, RecordId, RemoveOutcome, UpsertOutcome,
    change::ChangeOutcome,
    origin::SourceRecord,
    schema::{EntitySchema, ModelError},
    store::RecordWrite,
};

type UpsertSourceFn = for<'a> fn(&'a Cache, SourceRecord) -> BoxFuture<'a, Result<UpsertOutcome, CacheError>>;
type CheckSourceFn = fn(&SourceRecord) -> Result<(), ModelError>;
type GetJsonFn = for<'a> fn(&'a Cache, &'a RecordId) -> BoxFuture<'a, Result<Option<serde_json::Value>, CacheError>>;
type RecordWriteFn = fn(&Cache, SourceRecord) -> Result<RecordWrite, ModelError>;
type RefillFn = for<'a> fn(&'a Cache, &'a RecordId) -> BoxFuture<'a, Result<bool, CacheError>>;

/// One registered model: its schema and the operations that need its Rust type.
#[derive(Clone, Copy)]
pub struct EntityHandle {
    schema: &'static EntitySchema,
    upsert_source: UpsertSourceFn,
    check_source: CheckSourceFn,
    get_json: GetJsonFn,
    record_write: RecordWriteFn,
    refill: RefillFn,
}

impl EntityHandle {
    /// The handle of `T`.
    pub fn of<T: Cacheable>() -> Self {
        Self {
            schema: T::schema(),
            upsert_source: upsert_source::<T>,
            check_source: check_source::<T>,
            get_json: get_json::<T>,
            record_write: record_write::<T>,
            refill: refill::<T>,
        }
    }

    /// The entity's schema.
    pub fn schema(&self) -> &'static EntitySchema {
        self.schema
    }

    /// Parses a record in its source shape (a webhook's payload) and upserts it. A record that
    /// does not parse is [`CacheError::Model`] with [`ModelError::Field`].
    pub fn upsert_source<'a>(
        &self,
        cache: &'a Cache,
        record: SourceRecord,
    ) -> BoxFuture<'a, Result<UpsertOutcome, CacheError>> {
        (self.upsert_source)(cache, record)
    }

    /// Checks that a record in its source shape parses as the model, touching nothing: a
    /// webhook checks a delivery before it claims the delivery's place in the record's order.
    pub fn check_source(&self, record: &SourceRecord) -> Result<(), ModelError> {
        (self.check_source)(record)
    }

    /// Forgets a record (`tombstone = false`, as [`Cache::invalidate`]), or records that the
    /// source deleted it (`tombstone = true`: removes it and leaves a tombstone, without
    /// asking the origin to delete anything, as a delete webhook needs). A store failure is
    /// answered as [`RemoveOutcome::StoreFailed`], so that a webhook can ask for a retry.
    pub fn remove<'a>(&self, cache: &'a Cache, id: &'a RecordId, tombstone: bool) -> BoxFuture<'a, RemoveOutcome> {
        let handle = *self;
        Box::pin(async move {
            match cache.apply_removal(handle, id, tombstone).await {
                ChangeOutcome::Disabled => RemoveOutcome::Disabled,
                ChangeOutcome::StoreFailed => RemoveOutcome::StoreFailed,
                _ => RemoveOutcome::Removed,
            }
        })
    }

    /// Reads a record in its source shape with the model into the write that stores it.
    pub(crate) fn record_write(&self, cache: &Cache, record: SourceRecord) -> Result<RecordWrite, ModelError> {
        (self.record_write)(cache, record)
    }

    /// Reads a record from the origin whatever the store holds ([`Cache::refill`]).
    pub(crate) fn refill<'a>(&self, cache: &'a Cache, id: &'a RecordId) -> BoxFuture<'a, Result<bool, CacheError>> {
        (self.refill)(cache, id)
    }

    /// Reads a record through the cache, as JSON in its cached form (fields keyed by their
    /// Rust names).
    pub fn get_json<'a>(
        &self,
        cache: &'a Cache,
        id: &'a RecordId,
    ) -> BoxFuture<'a, Result<Option<serde_json::Value>, CacheError>> {
        (self.get_json)(cache, id)
    }
}

impl fmt::Debug for EntityHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntityHandle")
            .field("entity", &self.schema.entity)
            .field("source_table", &self.schema.source_table)
            .field("type_name", &self.schema.type_name)
            .finish()
    }
}

fn upsert_source<T: Cacheable>(
    cache: &Cache,
    record: SourceRecord,
) -> BoxFuture<'_, Result<UpsertOutcome, CacheError>> {
    Box::pin(async move {
        let model = T::from_source(record)?;
        cache.upsert(&model).await
    })
}

fn record_write<T: Cacheable>(cache: &Cache, record: SourceRecord) -> Result<RecordWrite, ModelError> {
    cache.record_write(&T::from_source(record)?)
}

fn refill<'a, T: Cacheable>(cache: &'a Cache, id: &'a RecordId) -> BoxFuture<'a, Result<bool, CacheError>> {
    Box::pin(cache.refill::<T>(id))
}

fn check_source<T: Cacheable>(record: &SourceRecord) -> Result<(), ModelError> {
    T::from_source(record.clone()).map(drop)
}

fn get_json<'a, T: Cacheable>(
    cache: &'a Cache,
    id: &'a RecordId,
) -> BoxFuture<'a, Result<Option<serde_json::Value>, CacheError>> {
    Box::pin(async move {
        let Some(model) = cache.get::<T>(id).await? else {
            return Ok(None);
        };
        let bytes = model.to_cached()?;
        let value = serde_json::from_slice(&bytes).map_err(|source| crate::schema::ModelError::Cached {
            entity: T::schema().entity,
            source,
        })?;
        Ok(Some(value))
    })
}

/// The models registered with a cache, by entity name and by source table.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_entity: BTreeMap<&'static str, EntityHandle>,
    by_table: BTreeMap<&'static str, &'static str>,
}

impl Registry {
    pub(crate) fn insert(&mut self, handle: EntityHandle) -> Result<(), ConfigError> {
        let schema = handle.schema;
        if let Some(existing) = self.by_entity.get(schema.entity) {
            if std::ptr::eq(existing.schema, schema) {
                return Ok(());
            }
            return Err(ConfigError::DuplicateEntity {
                entity: schema.entity,
                first: existing.schema.type_name,
                second: schema.type_name,
            });
        }
        if let Some(first) = self.by_table.get(schema.source_table) {
            return Err(ConfigError::DuplicateSourceTable {
                table: schema.source_table,
                first,
                second: schema.entity,
            });
        }
        self.by_entity.insert(schema.entity, handle);
        self.by_table.insert(schema.source_table, schema.entity);
        Ok(())
    }

    /// The model registered as `entity` (`projects`).
    pub fn get(&self, entity: &str) -> Option<&EntityHandle> {
        self.by_entity.get(entity)
    }

    /// The model that reads source table `table` (`Projects`).
    pub fn by_source_table(&self, table: &str) -> Option<&EntityHandle> {
        self.by_table.get(table).and_then(|entity| self.by_entity.get(entity))
    }

    /// Every registered model, by entity name.
    pub fn iter(&self) -> impl Iterator<Item = &EntityHandle> {
        self.by_entity.values()
    }

    /// The number of registered models.
    pub fn len(&self) -> usize {
        self.by_entity.len()
    }

    /// Whether no model is registered.
    pub fn is_empty(&self) -> bool {
        self.by_entity.is_empty()
    }
}
