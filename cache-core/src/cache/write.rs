//! The application's writes: `upsert`, `invalidate` and `delete`, each a change through the
//! one ordered change path (`change.rs`).

use super::*;

impl Cache {
    /// Stores `record` as the current state of the source record (after the application wrote
    /// it to the source). It takes the one ordered change path ([`Cache::apply_changes`]): a
    /// record older than the cached version is refused as [`UpsertOutcome::Stale`], one the
    /// source deleted since as [`UpsertOutcome::Deleted`], not errors. Purges every value
    /// tagged with the record, the index values it left or entered, and its entity.
    pub async fn upsert<T: Cacheable>(&self, record: &T) -> Result<UpsertOutcome, CacheError> {
        let _op = self.operation(T::schema().entity, Operation::Upsert);
        let write = self.record_write(record)?;
        let outcome = self.apply_upsert::<T>(write).await;
        Ok(match outcome {
            ChangeOutcome::Applied => UpsertOutcome::Stored,
            ChangeOutcome::Refused(Refusal::Deleted) => UpsertOutcome::Deleted,
            ChangeOutcome::Refused(_) => UpsertOutcome::Stale,
            ChangeOutcome::Disabled => UpsertOutcome::Disabled,
            _ => UpsertOutcome::StoreFailed,
        })
    }

    /// Forgets a record: the next read asks the origin. Drops the completeness markers of the
    /// entity's queries (the store no longer knows where the record belongs); prefer
    /// [`Cache::upsert`] when the new record is at hand.
    /// A store failure is logged (`cache_store_error`) and counted, not returned: the record
    /// then lives until its TTL runs out.
    pub async fn invalidate<T: Cacheable>(&self, id: &RecordId) -> Result<(), CacheError> {
        let _op = self.operation(T::schema().entity, Operation::Invalidate);
        self.apply_removal(EntityHandle::of::<T>(), id, false).await;
        Ok(())
    }

    /// Deletes a record at the origin, then removes it from the cache leaving a tombstone that
    /// keeps the deleted version (from [`Deletion`](crate::origin::Deletion)) and the delete's time, so
    /// that a write racing the delete cannot bring the record back. Answers whether the origin
    /// had it. If the origin fails, the cache is left as it was.
    pub async fn delete<T: Cacheable>(&self, id: &RecordId) -> Result<bool, CacheError> {
        let schema = T::schema();
        let entity = schema.entity;
        let _op = self.operation(entity, Operation::Delete);
        let deletion = self
            .ask_origin(entity, OriginCall::Delete, self.inner.origin.delete(schema, id))
            .await?;
        let existed = deletion.is_some();
        let deletion = deletion.unwrap_or_default();
        let version = match (deletion.version, deletion.record) {
            (Some(version), _) => Some(version),
            (None, Some(record)) => T::from_source(record)?.version(),
            (None, None) => None,
        };
        let at = deletion.at.unwrap_or_else(std::time::SystemTime::now);
        self.apply_delete::<T>(id, version, at).await;
        Ok(existed)
    }

    /// Reads a record from the origin whatever the store holds, and stores what it finds as a
    /// fill: how the cache settles an upsert it cannot order against a delete. Answers whether
    /// the origin has the record.
    pub(crate) async fn refill<T: Cacheable>(&self, id: &RecordId) -> Result<bool, CacheError> {
        let schema = T::schema();
        let found = self
            .fetch_records::<T>(schema, std::slice::from_ref(id), Fetch::One, None)
            .await?;
        Ok(found.iter().any(|flight| flight.contains_key(id)))
    }
}
