//! The cache's read paths through the near cache: a hit answers from it, a miss reads the
//! store with the stamp taken before, and keeps what the store answered only if no
//! invalidation came in between.

use super::*;

/// `Cache::get`'s hit path: the record when the near cache answers (the caller counts the
/// hit), without the general read path's allocations. On
/// `None` the read goes the general way, which asks the near cache again: a second probe
/// costs nothing next to the store's round trip that follows.
pub(crate) fn get<T: Cacheable>(cache: &Cache, id: &RecordId) -> Option<T> {
    let near = cache.near_cache()?;
    if crate::dependencies::refresh_requested() {
        // A refresh bypasses the cache: the general path counts it.
        return None;
    }
    let Near::Hit(record) = near.record::<T>(id) else {
        return None;
    };
    near.shared.counters.hits.fetch_add(1, Relaxed);
    Some(record)
}

/// `Cache::read_store` with the near cache in front: answers what it holds, asks the store
/// for the rest and keeps what the store answered. Answers the positions of misses.
pub(crate) async fn read_records<T: Cacheable>(
    cache: &Cache,
    schema: &'static EntitySchema,
    ids: &[RecordId],
    op: &OperationGuard<'_>,
    slots: &mut [Option<T>],
) -> Vec<usize> {
    let operation = op.operation();
    let Some(near) = cache.near_cache() else {
        return cache.read_store(schema, ids, op, slots, |_, _, _| {}).await;
    };
    let entity = schema.entity;
    // One id (`Cache::get`) allocates nothing on a hit.
    if let [id] = ids {
        return match near.record::<T>(id) {
            Near::Hit(record) => {
                slots[0] = Some(record);
                counted(near, cache, entity, operation, 1, 0);
                Vec::new()
            }
            Near::Miss(stamp) => {
                counted(near, cache, entity, operation, 0, 1);
                cache
                    .read_store(schema, ids, op, slots, |_, record, body| {
                        near.keep_record(stamp, id, record, body);
                    })
                    .await
            }
            Near::Off => cache.read_store(schema, ids, op, slots, |_, _, _| {}).await,
        };
    }
    let mut rest = Vec::new();
    let mut stamps = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        match near.record::<T>(id) {
            Near::Hit(record) => slots[i] = Some(record),
            Near::Miss(stamp) => {
                rest.push(i);
                stamps.push(Some(stamp));
            }
            Near::Off => {
                rest.push(i);
                stamps.push(None);
            }
        }
    }
    let misses = stamps.iter().filter(|s| s.is_some()).count();
    counted(near, cache, entity, operation, ids.len() - rest.len(), misses);
    if rest.is_empty() {
        return Vec::new();
    }
    let keep = |j: usize, record: &T, body: &Bytes| {
        if let Some(stamp) = stamps[j] {
            near.keep_record(stamp, &ids[rest[j]], record, body);
        }
    };
    if rest.len() == ids.len() {
        return cache.read_store(schema, ids, op, slots, keep).await;
    }
    let rest_ids: Vec<RecordId> = rest.iter().map(|&i| ids[i].clone()).collect();
    let mut rest_slots: Vec<Option<T>> = rest.iter().map(|_| None).collect();
    let store_misses = cache.read_store(schema, &rest_ids, op, &mut rest_slots, keep).await;
    for (&i, slot) in rest.iter().zip(rest_slots) {
        slots[i] = slot;
    }
    store_misses.into_iter().map(|j| rest[j]).collect()
}

/// The near cache's step of a query: `Ok` with the result when it holds it (counted as a hit),
/// otherwise the stamp to keep the store's answer with ([`keep_query`]).
pub(crate) fn query<T: Cacheable>(cache: &Cache, query: &IndexQuery) -> Result<Vec<T>, Option<Stamp>> {
    let Some(near) = cache.near_cache() else {
        return Err(None);
    };
    let entity = T::schema().entity;
    match near.query::<T>(query) {
        Near::Hit(records) => {
            counted(near, cache, entity, Operation::Query, 1, 0);
            Ok(records)
        }
        Near::Miss(stamp) => {
            counted(near, cache, entity, Operation::Query, 0, 1);
            Err(Some(stamp))
        }
        Near::Off => Err(None),
    }
}

/// Keeps a query result the store answered (see [`query`]).
pub(crate) fn keep_query<T: Cacheable>(
    cache: &Cache,
    stamp: Option<Stamp>,
    query: &IndexQuery,
    records: &[T],
    page: &[Bytes],
) {
    if let (Some(near), Some(stamp)) = (cache.near_cache(), stamp) {
        near.keep_query(stamp, query, records, page);
    }
}

/// Counts near hits (which are cache hits) and misses (which the store then counts).
fn counted(near: &NearCache, cache: &Cache, entity: &'static str, operation: Operation, hits: usize, misses: usize) {
    let stats = cache.stats_handle();
    let c = &near.shared.counters;
    if hits > 0 {
        c.hits.fetch_add(hits as u64, Relaxed);
        stats.near_lookup(entity, operation, true, hits as u64);
        tracing::debug!(entity, operation = operation.name(), hits, "cache_near_hit");
    }
    if misses > 0 {
        c.misses.fetch_add(misses as u64, Relaxed);
        stats.near_lookup(entity, operation, false, misses as u64);
    }
}
