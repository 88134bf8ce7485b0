//! The dashboard's record inspector and the dry run of a flush: what the store holds, read
//! without filling anything from the origin.

use cache_core::{
    Cache, RecordId,
    schema::EntitySchema,
    store::{Lookup, StoreError},
};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;

/// The most record ids a dry run reads before it stops counting (and says "at least").
pub const MAX_DRY_RUN_IDS: u64 = 200_000;
/// The batch size of a dry run's scans.
const SCAN_BATCH: usize = 500;

/// What the store holds for one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(crate) enum Held {
    /// The record is cached.
    Cached {
        /// Its cached form's size.
        bytes: usize,
        /// Its cached form, when it is JSON.
        body: Option<Value>,
        /// Its version, when the entity has a version field.
        version: Option<Value>,
        /// The values of its indexed fields: the index entries it is in.
        indexed: Vec<(&'static str, Value)>,
    },
    /// The source does not have it, and the store remembers that.
    Tombstone,
    /// Nothing is cached: the next read goes to the origin.
    Miss,
}

/// Reads what the store holds for `id` of `schema`'s entity (no fill, no origin call).
pub(crate) async fn inspect(cache: &Cache, schema: &EntitySchema, id: &RecordId) -> Result<Held, StoreError> {
    Ok(match cache.store().get(schema, id).await? {
        Lookup::Miss => Held::Miss,
        Lookup::Tombstone => Held::Tombstone,
        Lookup::Hit(bytes) => {
            let body: Option<Value> = serde_json::from_slice(&bytes).ok();
            let field = |name: &str| body.as_ref().and_then(|b| b.get(name)).cloned();
            Held::Cached {
                bytes: bytes.len(),
                version: schema.version_field.and_then(field),
                indexed: schema
                    .indexed_fields()
                    .map(|f| (f.name, field(f.name).unwrap_or(Value::Null)))
                    .collect(),
                body,
            }
        }
    })
}

/// What a flush of a pattern would remove, as far as the store can tell beforehand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct DryRun {
    /// The pattern.
    pub(crate) pattern: String,
    /// The cached records it matches, by entity (entities with none left out).
    pub(crate) records: Vec<(&'static str, u64)>,
    /// Their sum.
    pub(crate) total: u64,
    /// Whether counting stopped at [`MAX_DRY_RUN_IDS`] (the total is a lower bound).
    pub(crate) truncated: bool,
    /// Kinds of keys the pattern may also match that the store cannot list beforehand
    /// (tombstones, computed values and cached responses, tags).
    pub(crate) uncounted: Vec<&'static str>,
}

/// Counts the cached records `pattern` matches, with [`Store::scan_ids`](cache_core::store::Store::scan_ids)
/// (the `Store` contract has no count-only flush); says which other keys it may match.
pub(crate) async fn dry_run(cache: &Cache, pattern: &str) -> Result<DryRun, StoreError> {
    let prefix = literal_prefix(pattern);
    let compatible = |key_prefix: &str| prefix.starts_with(key_prefix) || key_prefix.starts_with(&prefix);
    let mut records = Vec::new();
    let (mut total, mut read, mut truncated) = (0u64, 0u64, false);
    let mut tombstones = false;
    'entities: for handle in cache.entities().iter() {
        let schema = handle.schema();
        tombstones |= compatible(&format!("{}:tomb:", schema.entity));
        let key_prefix = format!("{}:r:", schema.entity);
        if !compatible(&key_prefix) {
            continue;
        }
        let mut count = 0u64;
        let mut ids = cache.store().scan_ids(schema, SCAN_BATCH);
        while let Some(batch) = ids.next().await {
            for id in batch? {
                read += 1;
                if cache_core::keys::glob_match(pattern, &format!("{key_prefix}{id}")) {
                    count += 1;
                }
                if read >= MAX_DRY_RUN_IDS {
                    truncated = true;
                    total += count;
                    if count > 0 {
                        records.push((schema.entity, count));
                    }
                    break 'entities;
                }
            }
        }
        total += count;
        if count > 0 {
            records.push((schema.entity, count));
        }
    }
    let mut uncounted = Vec::new();
    if tombstones {
        uncounted.push("tombstones");
    }
    if compatible("v:") {
        uncounted.push("computed values and cached responses");
    }
    if compatible("tag:") {
        uncounted.push("tag sets");
    }
    Ok(DryRun {
        pattern: pattern.to_owned(),
        records,
        total,
        truncated,
        uncounted,
    })
}

/// The pattern's text before its first wildcard, class or escape: every key it matches
/// starts with it.
fn literal_prefix(pattern: &str) -> String {
    pattern
        .chars()
        .take_while(|c| !matches!(c, '*' | '?' | '[' | '\\'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix("projects:r:*"), "projects:r:");
        assert_eq!(literal_prefix("*"), "");
        assert_eq!(literal_prefix("v:\\*"), "v:");
        assert_eq!(literal_prefix("proj[ae]"), "proj");
    }
}
