//! The one ordered path every change takes into the cache: the application's own writes
//! ([`Cache::upsert`], [`Cache::delete`], [`Cache::invalidate`]), webhooks, and change feeds
//! ([`Cache::apply_changes`]).
//!
//! The rules (the guide's consistency chapter states them for users):
//! - **Source time.** A change that carries the time it happened at the source
//!   ([`Change::at`]) first claims that time in a per-record watermark kept in the store
//!   ([`Store::advance_watermark`](crate::store::Store::advance_watermark), atomic across instances).
//!   A change older than the latest claimed is refused ([`Refusal::Older`]) without a write;
//!   an equal time claims again, so a redelivery is applied again, idempotently. A change
//!   whose write a newer one may have overtaken (the newer claimed while it wrote) forgets the
//!   record afterwards, so that the next read asks the source ([`Refusal::Superseded`]).
//! - **Versions.** An upsert older than the cached record's version is refused
//!   ([`Refusal::OlderVersion`]).
//! - **Deletes are final.** A delete leaves a tombstone keeping the deleted version and the
//!   delete's source time ([`Tombstone`]). An upsert that is not newer than the delete (by
//!   version when both have one, else by source time) is refused ([`Refusal::Deleted`]). An
//!   upsert that cannot be ordered against it (no version or time the tombstone also has)
//!   makes the cache read the record from the origin, which decides: a record re-created at
//!   the source is cached as the source has it, a deleted one stays deleted.
//! - **Every removal purges** the values and responses tagged by the record, its entity and
//!   the index values it was filed under.
//! - **An invalidation without a source time seals the order.** The record's watermark moves
//!   past every change applied so far (and to this process's clock, as `Cache::delete` is
//!   stamped), so a late redelivery cannot bring back what the invalidation dropped.
//! - **Order is per record.** [`Cache::apply_changes`] applies one record's changes in the
//!   order given, and different records' side by side (up to 64 at once).

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;

use crate::{
    Cache, CacheError, Cacheable, RecordId, keys,
    operation::{Operation, StoreStep},
    origin::SourceRecord,
    registry::EntityHandle,
    schema::{EntitySchema, ModelError},
    stats::StaleReason,
    store::{RecordWrite, RemoveMode, Tombstone, WriteMode, WriteOutcome},
};

/// How long the latest source time applied to a record is remembered by default: 7 days. A
/// change delayed longer cannot be recognised as older by its time (a version field, or a
/// delete's tombstone while it lives, still orders it).
pub const DEFAULT_ORDERING_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// One change to one record, as the source reports it: a webhook delivery, a row of a change
/// feed, or the application's own write after its commit.
///
/// ```
/// # use cache_core::{Cacheable, RecordId, change::Change};
/// # #[derive(Cacheable, Clone, Debug)]
/// # #[cache(entity = "projects", source_table = "Projects")]
/// # struct Project { #[cache(id)] id: RecordId }
/// let id: RecordId = "recProject0000001".parse()?;
/// let deleted_at = std::time::SystemTime::now();
/// let change = Change::delete(Project::schema(), id).at(deleted_at).version(7.0);
/// # let _ = change;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Change {
    schema: &'static EntitySchema,
    id: RecordId,
    kind: ChangeKind,
    at: Option<SystemTime>,
    version: Option<f64>,
}

/// What happened to the record.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ChangeKind {
    /// The record is now this (source shape: fields keyed by source name).
    Upsert(SourceRecord),
    /// The source deleted the record.
    Delete,
    /// Something changed that the sender does not describe: the cache forgets the record and
    /// the next read asks the source.
    Invalidate,
}

impl Change {
    /// The record is now `record`.
    pub fn upsert(entity: &'static EntitySchema, record: SourceRecord) -> Self {
        Self {
            schema: entity,
            id: record.id.clone(),
            kind: ChangeKind::Upsert(record),
            at: None,
            version: None,
        }
    }

    /// The source deleted the record.
    pub fn delete(entity: &'static EntitySchema, id: RecordId) -> Self {
        Self {
            schema: entity,
            id,
            kind: ChangeKind::Delete,
            at: None,
            version: None,
        }
    }

    /// Something changed: forget the record.
    pub fn invalidate(entity: &'static EntitySchema, id: RecordId) -> Self {
        Self {
            schema: entity,
            id,
            kind: ChangeKind::Invalidate,
            at: None,
            version: None,
        }
    }

    /// When the change happened at the source, by the source's clock (a `chrono`
    /// `DateTime<Utc>` converts with `.into()`). Changes of one record are applied in this
    /// order, across every instance sharing the store; compared to the microsecond.
    #[must_use]
    pub fn at(mut self, at: impl Into<SystemTime>) -> Self {
        self.at = Some(at.into());
        self
    }

    /// For a delete: the version the deleted record had (its `#[cache(version)]` value). An
    /// upsert's version is read from its record.
    #[must_use]
    pub fn version(mut self, version: f64) -> Self {
        self.version = Some(version);
        self
    }

    /// The entity changed.
    pub fn entity(&self) -> &'static EntitySchema {
        self.schema
    }

    /// The record changed.
    pub fn id(&self) -> &RecordId {
        &self.id
    }

    /// What happened.
    pub fn kind(&self) -> &ChangeKind {
        &self.kind
    }

    /// When, by the source's clock, if the sender said.
    pub fn source_time(&self) -> Option<SystemTime> {
        self.at
    }
}

/// What applying a change did.
#[derive(Debug)]
#[non_exhaustive]
pub enum ChangeOutcome {
    /// The cache holds the change.
    Applied,
    /// Not applied, and rightly so: acknowledge it to its sender.
    Refused(Refusal),
    /// The cache is disabled; nothing was touched.
    Disabled,
    /// The store failed: the change may not be applied. Deliver it again.
    StoreFailed,
    /// The change had to be checked with the origin (an upsert after a delete it cannot be
    /// ordered against), and the origin failed: nothing was applied. Deliver it again.
    OriginFailed,
    /// The record does not parse as the model; nothing was touched.
    Invalid(ModelError),
}

impl ChangeOutcome {
    /// Whether the sender should deliver the change again.
    pub fn should_retry(&self) -> bool {
        matches!(self, Self::StoreFailed | Self::OriginFailed)
    }
}

/// Why a change was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// A change of the record with a later source time was applied first.
    Older,
    /// The cache holds a newer version of the record.
    OlderVersion,
    /// The source deleted the record after this state of it.
    Deleted,
    /// A newer change claimed the record while this one was written: the record was
    /// forgotten, and the next read asks the source.
    Superseded,
}

impl Refusal {
    /// The reason as webhook responses and logs say it: `stale` or `deleted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Older | Self::OlderVersion | Self::Superseded => "stale",
            Self::Deleted => "deleted",
        }
    }

    fn stale_reason(self) -> StaleReason {
        match self {
            Self::Older | Self::Superseded => StaleReason::Order,
            Self::OlderVersion => StaleReason::Version,
            Self::Deleted => StaleReason::Deleted,
        }
    }
}

/// Now, as a source time (Unix microseconds): the order of a delete the source reported
/// without a time of its own.
pub(crate) fn source_now() -> i64 {
    micros(SystemTime::now())
}

fn micros(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// How many records' changes [`Cache::apply_changes`] applies at once.
const CHANGES_IN_FLIGHT: usize = 64;

/// The store write a change makes.
enum Step {
    Upsert(RecordWrite),
    Remove(RemoveMode),
}

impl Cache {
    /// Applies changes reported by the source, each record's in the order given (different
    /// records' side by side): see the [module docs](crate::change) for the rules. Each change is answered; applying one again
    /// (a redelivery) changes nothing more. Fails before applying anything when a change
    /// names an entity not registered with the cache ([`CacheError::UnknownEntity`]).
    pub async fn apply_changes(&self, changes: Vec<Change>) -> Result<Vec<ChangeOutcome>, CacheError> {
        let handles = changes
            .iter()
            .map(|change| {
                self.entities()
                    .get(change.schema.entity)
                    .copied()
                    .ok_or(CacheError::UnknownEntity(change.schema.entity))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // One record's changes in the order given; different records' side by side (each
        // change costs a few store round trips, which a batch of a feed would otherwise pay
        // one after the other).
        let mut by_record: HashMap<(&'static str, RecordId), Vec<usize>> = HashMap::new();
        let mut order = Vec::new();
        for (i, change) in changes.iter().enumerate() {
            let slot = by_record
                .entry((change.schema.entity, change.id.clone()))
                .or_insert_with(|| {
                    order.push((change.schema.entity, change.id.clone()));
                    Vec::new()
                });
            slot.push(i);
        }
        let mut pending: Vec<Option<(Change, EntityHandle)>> = changes.into_iter().zip(handles).map(Some).collect();
        let runs: Vec<Vec<(usize, Change, EntityHandle)>> = order
            .into_iter()
            .map(|record| {
                by_record
                    .remove(&record)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|i| pending[i].take().map(|(change, handle)| (i, change, handle)))
                    .collect()
            })
            .collect();
        let mut outcomes: Vec<Option<ChangeOutcome>> = (0..pending.len()).map(|_| None).collect();
        let mut applied = futures::stream::iter(runs.into_iter().map(|run| async move {
            let mut done = Vec::with_capacity(run.len());
            for (i, change, handle) in run {
                done.push((i, self.apply_with(handle, change).await));
            }
            done
        }))
        .buffer_unordered(CHANGES_IN_FLIGHT);
        while let Some(done) = applied.next().await {
            for (i, outcome) in done {
                outcomes[i] = Some(outcome);
            }
        }
        Ok(outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or(ChangeOutcome::StoreFailed))
            .collect())
    }

    /// Applies one change ([`Cache::apply_changes`]).
    pub async fn apply_change(&self, change: Change) -> Result<ChangeOutcome, CacheError> {
        let mut outcomes = self.apply_changes(vec![change]).await?;
        Ok(outcomes.pop().unwrap_or(ChangeOutcome::StoreFailed))
    }

    async fn apply_with(&self, handle: EntityHandle, change: Change) -> ChangeOutcome {
        let schema = handle.schema();
        let at = change.at.map(micros);
        let step = match change.kind {
            ChangeKind::Upsert(record) => match handle.record_write(self, record) {
                Ok(write) => Step::Upsert(RecordWrite { at, ..write }),
                Err(err) => return ChangeOutcome::Invalid(err),
            },
            ChangeKind::Delete => Step::Remove(RemoveMode::Tombstone(Tombstone {
                version: change.version,
                at,
                ..Tombstone::new(self.jittered(schema.tombstone_ttl))
            })),
            ChangeKind::Invalidate => Step::Remove(RemoveMode::Invalidate),
        };
        let operation = match step {
            Step::Upsert(_) => Operation::Upsert,
            Step::Remove(RemoveMode::Invalidate) => Operation::Invalidate,
            Step::Remove(_) => Operation::Delete,
        };
        let _op = self.operation(schema.entity, operation);
        self.apply_ordered(handle, &change.id, at, step).await
    }

    /// The typed upsert's way in: the same path as every other change.
    pub(crate) async fn apply_upsert<T: Cacheable>(&self, write: RecordWrite) -> ChangeOutcome {
        let id = write.id.clone();
        self.apply_ordered(EntityHandle::of::<T>(), &id, None, Step::Upsert(write))
            .await
    }

    /// The typed delete's way in, after the origin deleted the record (`at`: when, by the
    /// source's clock or ours). A delete the source confirmed is never simply dropped: when a
    /// later change of the record was applied already, the record is forgotten instead, and
    /// the next read asks the source.
    pub(crate) async fn apply_delete<T: Cacheable>(
        &self,
        id: &RecordId,
        version: Option<f64>,
        at: SystemTime,
    ) -> ChangeOutcome {
        let tombstone = Tombstone {
            version,
            at: Some(micros(at)),
            ..Tombstone::new(self.jittered(T::schema().tombstone_ttl))
        };
        let handle = EntityHandle::of::<T>();
        let step = Step::Remove(RemoveMode::Tombstone(tombstone));
        match self.apply_ordered(handle, id, tombstone.at, step).await {
            ChangeOutcome::Refused(Refusal::Older) => {
                self.apply_ordered(handle, id, None, Step::Remove(RemoveMode::Invalidate))
                    .await
            }
            other => other,
        }
    }

    /// Forgets (`tombstone = false`) or tombstones a record the source deleted, through the
    /// ordered path, without a source time.
    pub(crate) async fn apply_removal(&self, handle: EntityHandle, id: &RecordId, tombstone: bool) -> ChangeOutcome {
        let mode = if tombstone {
            RemoveMode::Tombstone(Tombstone {
                at: Some(source_now()),
                ..Tombstone::new(self.jittered(handle.schema().tombstone_ttl))
            })
        } else {
            RemoveMode::Invalidate
        };
        self.apply_ordered(handle, id, None, Step::Remove(mode)).await
    }

    /// Claims the change's place in the record's order, writes it, and checks that no newer
    /// change overtook it.
    async fn apply_ordered(&self, handle: EntityHandle, id: &RecordId, at: Option<i64>, step: Step) -> ChangeOutcome {
        if !self.is_enabled() {
            return ChangeOutcome::Disabled;
        }
        let schema = handle.schema();
        let entity = schema.entity;
        let marker = at.map(|at| (keys::order_key(entity, id), at));
        if let Some((key, at)) = &marker {
            match self.store().advance_watermark(key, *at, self.ordering_ttl()).await {
                Ok(true) => {}
                Ok(false) => return self.refused(entity, id, Refusal::Older),
                Err(err) => {
                    self.store_failed(entity, StoreStep::AdvanceWatermark, &err);
                    return ChangeOutcome::StoreFailed;
                }
            }
        }
        if marker.is_none() && matches!(step, Step::Remove(RemoveMode::Invalidate)) {
            self.seal_order(entity, id).await;
        }
        self.detach_flights(entity, std::slice::from_ref(id));
        let outcome = match step {
            Step::Upsert(write) => self.put_upsert(handle, write).await,
            Step::Remove(mode) => self.remove_one(schema, id, mode).await,
        };
        match (outcome, marker) {
            (ChangeOutcome::Applied, Some((key, at))) => self.check_superseded(schema, id, &key, at).await,
            (outcome, _) => outcome,
        }
    }

    async fn put_upsert(&self, handle: EntityHandle, write: RecordWrite) -> ChangeOutcome {
        let schema = handle.schema();
        let entity = schema.entity;
        let outcome = match self
            .store()
            .put(schema, std::slice::from_ref(&write), WriteMode::Upsert)
            .await
        {
            Ok(outcomes) => outcomes.into_iter().next(),
            Err(err) => {
                self.store_failed(entity, StoreStep::Put, &err);
                return ChangeOutcome::StoreFailed;
            }
        };
        match outcome {
            Some(WriteOutcome::Written { previous }) => {
                tracing::debug!(entity, id = %write.id, "cache_upserted");
                self.purge(
                    schema,
                    write_tags(schema, &write.id, previous.as_ref(), Some(&write.index)),
                )
                .await;
                ChangeOutcome::Applied
            }
            Some(WriteOutcome::StaleVersion | WriteOutcome::LeaseLost) => {
                self.refused(entity, &write.id, Refusal::OlderVersion)
            }
            Some(WriteOutcome::Deleted) => self.refused(entity, &write.id, Refusal::Deleted),
            Some(WriteOutcome::Unordered) => {
                // Nothing orders this write against the delete: the source decides.
                tracing::debug!(entity, id = %write.id, "cache_upsert_unordered");
                match handle.refill(self, &write.id).await {
                    Ok(true) => ChangeOutcome::Applied,
                    Ok(false) => self.refused(entity, &write.id, Refusal::Deleted),
                    Err(_) => ChangeOutcome::OriginFailed,
                }
            }
            None => {
                let err = crate::store::StoreError::Backend("answered no outcome for one write".to_owned());
                self.store_failed(entity, StoreStep::Put, &err);
                ChangeOutcome::StoreFailed
            }
        }
    }

    async fn remove_one(&self, schema: &'static EntitySchema, id: &RecordId, mode: RemoveMode) -> ChangeOutcome {
        let entity = schema.entity;
        match self.store().remove(schema, std::slice::from_ref(id), mode).await {
            Ok(previous) => {
                let previous = previous.into_iter().next().flatten();
                if matches!(mode, RemoveMode::Invalidate) {
                    tracing::debug!(entity, %id, "cache_invalidated");
                } else {
                    tracing::debug!(entity, %id, "cache_deleted");
                }
                self.purge(schema, write_tags(schema, id, previous.as_ref(), None))
                    .await;
                ChangeOutcome::Applied
            }
            Err(err) => {
                self.store_failed(entity, StoreStep::Remove, &err);
                ChangeOutcome::StoreFailed
            }
        }
    }

    /// Before an invalidation that carries no source time (the application saying "this record
    /// changed"): stamps it, as `Cache::delete` is stamped, with this process's clock, and past
    /// every change applied so far. A change delivered afterwards with an earlier source time
    /// (a late redelivery of a delete the cache applied, or of an older state) is then refused
    /// instead of bringing back what the invalidation dropped: a tombstone answering "not
    /// found" for a record the source re-created, or an older record. The equal mark matters
    /// too: the watermark lets a change at exactly its mark through, to keep redeliveries
    /// idempotent. Refusing a change to an invalidated record is safe: the next read asks the
    /// origin. Best effort: on a store failure the invalidation still happens.
    async fn seal_order(&self, entity: &'static str, id: &RecordId) {
        let key = keys::order_key(entity, id);
        let mark = match self.store().get_value(&key).await {
            Ok(bytes) => bytes.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<i64>().ok()),
            Err(err) => {
                self.store_failed(entity, StoreStep::GetValue, &err);
                return;
            }
        };
        let sealed = mark.map_or(0, |mark| mark.saturating_add(1)).max(source_now());
        if let Err(err) = self.store().advance_watermark(&key, sealed, self.ordering_ttl()).await {
            self.store_failed(entity, StoreStep::AdvanceWatermark, &err);
        }
    }

    /// After a write: whether a newer change claimed the record meanwhile. Its write may have
    /// come first and been overwritten by this one, so the record is forgotten and the next
    /// read asks the source (a newer write that comes after this stands).
    ///
    /// When the claim cannot be read, the record is forgotten too and the change answered
    /// [`ChangeOutcome::StoreFailed`], so that its redelivery writes and checks again.
    async fn check_superseded(
        &self,
        schema: &'static EntitySchema,
        id: &RecordId,
        key: &str,
        at: i64,
    ) -> ChangeOutcome {
        let entity = schema.entity;
        let unread = match self.store().get_value(key).await {
            Ok(latest) => {
                let latest = latest.and_then(|bytes| std::str::from_utf8(&bytes).ok()?.parse::<i64>().ok());
                if latest.is_none_or(|latest| latest <= at) {
                    return ChangeOutcome::Applied;
                }
                false
            }
            Err(err) => {
                self.store_failed(entity, StoreStep::GetValue, &err);
                true
            }
        };
        match self.remove_one(schema, id, RemoveMode::Invalidate).await {
            ChangeOutcome::Applied if !unread => self.refused(entity, id, Refusal::Superseded),
            _ => ChangeOutcome::StoreFailed,
        }
    }

    fn refused(&self, entity: &'static str, id: &RecordId, refusal: Refusal) -> ChangeOutcome {
        self.stats_handle().stale(entity, refusal.stale_reason(), 1);
        tracing::debug!(entity, %id, reason = ?refusal, "cache_change_refused");
        ChangeOutcome::Refused(refusal)
    }
}

/// The tags a write changes: the record, its entity, and every index value it left or entered.
pub(crate) fn write_tags(
    schema: &EntitySchema,
    id: &RecordId,
    previous: Option<&crate::schema::IndexEntries>,
    current: Option<&crate::schema::IndexEntries>,
) -> Vec<String> {
    let mut tags = vec![keys::record_tag(schema.entity, id), keys::entity_tag(schema.entity)];
    for entries in [previous, current].into_iter().flatten() {
        for (field, value) in &entries.tags {
            tags.push(keys::index_tag(schema.entity, field, value));
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_times_are_microseconds_either_side_of_the_epoch() {
        assert_eq!(micros(UNIX_EPOCH + Duration::from_micros(1_500)), 1_500);
        assert_eq!(micros(UNIX_EPOCH - Duration::from_micros(2)), -2);
    }

    #[test]
    fn refusals_say_stale_or_deleted() {
        assert_eq!(Refusal::Older.as_str(), "stale");
        assert_eq!(Refusal::Superseded.as_str(), "stale");
        assert_eq!(Refusal::Deleted.as_str(), "deleted");
    }
}
