//! The sweep: finds cached records the source no longer has (deleted without a webhook) and
//! removes them, in batches, without blocking the store.

use std::{collections::HashSet, time::Instant};

use futures::StreamExt;
use serde::Serialize;

use crate::{
    Cache, CacheError, RecordId,
    change::source_now,
    keys,
    operation::{Operation, OriginCall},
    schema::EntitySchema,
    store::{RemoveMode, Tombstone},
};

/// How far a sweep has got, reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SweepProgress {
    /// The entity swept.
    pub entity: &'static str,
    /// Cached ids checked against the origin so far.
    pub checked: u64,
    /// Ids the origin no longer has, removed (and tombstoned) so far.
    pub removed: u64,
    /// Batches done (one `Origin::exists_many` call each).
    pub batches: u64,
}

/// What a finished sweep did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// The entity swept.
    pub entity: &'static str,
    /// Cached ids checked against the origin.
    pub checked: u64,
    /// Ids the origin no longer has, removed from the cache and tombstoned.
    pub removed: u64,
    /// `Origin::exists_many` calls made: `ceil(checked / batch)`.
    pub batches: u64,
    /// How long the sweep took, in milliseconds.
    pub elapsed_ms: u64,
}

impl Cache {
    /// Checks every cached record of `entity` against the origin, `batch` ids per
    /// `Origin::exists_many` call, and removes (with a tombstone) those the origin no longer
    /// has, purging what depended on them. `progress` is called after every batch.
    ///
    /// Unlike reads and writes, a sweep reports store failures ([`CacheError::Store`]); it
    /// stops at the first failure, keeping what it removed. A disabled cache has nothing to
    /// sweep.
    pub async fn sweep(
        &self,
        entity: &'static EntitySchema,
        batch: usize,
        mut progress: impl FnMut(SweepProgress),
    ) -> Result<SweepReport, CacheError> {
        let _op = self.operation(entity.entity, Operation::Sweep);
        let started = Instant::now();
        let batch = batch.max(1);
        let mut at = SweepProgress {
            entity: entity.entity,
            checked: 0,
            removed: 0,
            batches: 0,
        };
        if self.is_enabled() {
            let mut seen = HashSet::new();
            let mut pending: Vec<RecordId> = Vec::new();
            let mut scan = self.store().scan_ids(entity, batch);
            while let Some(ids) = scan.next().await {
                // A networked store's scan may answer an id twice.
                pending.extend(ids?.into_iter().filter(|id| seen.insert(id.clone())));
                while pending.len() >= batch {
                    let chunk: Vec<RecordId> = pending.drain(..batch).collect();
                    self.sweep_batch(entity, &chunk, &mut at).await?;
                    progress(at);
                }
            }
            if !pending.is_empty() {
                self.sweep_batch(entity, &pending, &mut at).await?;
                progress(at);
            }
        }
        let elapsed = started.elapsed();
        tracing::info!(
            entity = entity.entity,
            checked = at.checked,
            removed = at.removed,
            "cache_sweep_done"
        );
        Ok(SweepReport {
            entity: entity.entity,
            checked: at.checked,
            removed: at.removed,
            batches: at.batches,
            elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        })
    }

    async fn sweep_batch(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
        at: &mut SweepProgress,
    ) -> Result<(), CacheError> {
        let existing = self
            .ask_origin(
                entity.entity,
                OriginCall::ExistsMany,
                self.origin().exists_many(entity, ids),
            )
            .await?;
        let existing: HashSet<RecordId> = existing.into_iter().collect();
        let lost: Vec<RecordId> = ids.iter().filter(|id| !existing.contains(*id)).cloned().collect();
        at.batches += 1;
        at.checked += ids.len() as u64;
        if lost.is_empty() {
            return Ok(());
        }
        // The source did not have them now: a change of them from before is refused.
        let mode = RemoveMode::Tombstone(Tombstone {
            at: Some(source_now()),
            ..Tombstone::new(self.jittered(entity.tombstone_ttl))
        });
        let previous = self.store().remove(entity, &lost, mode).await?;
        at.removed += lost.len() as u64;
        let mut tags = vec![keys::entity_tag(entity.entity)];
        for (id, previous) in lost.iter().zip(previous) {
            tracing::debug!(entity = entity.entity, %id, "cache_deleted");
            tags.push(keys::record_tag(entity.entity, id));
            for (field, value) in previous.iter().flat_map(|p| &p.tags) {
                tags.push(keys::index_tag(entity.entity, field, value));
            }
        }
        self.detach_flights(entity.entity, &lost);
        self.purge(entity, tags).await;
        Ok(())
    }
}
