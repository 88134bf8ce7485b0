//! [`CountingOrigin`]: the source of truth in memory, counting its calls, so that the report
//! can say how many origin calls a warm-up or a sweep made.
//!
//! `cache_core::testing::MemoryOrigin` does the same for tests; this one stays out of the
//! `testing` feature (and its proptest) to keep the bench crate quick to build, and knows
//! ids without bodies, so that a sweep of 100,000 records needs no 100,000 source records.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use async_trait::async_trait;
use cache_core::{
    Cacheable, Order, RecordId,
    origin::{Deletion, Origin, OriginError, SourceQuery, SourceRecord},
    schema::{EntitySchema, IndexEntries, ModelError},
};

/// How many calls the origin answered, by method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginCalls {
    /// `fetch`.
    pub fetch: u64,
    /// `fetch_many`.
    pub fetch_many: u64,
    /// `query`.
    pub query: u64,
    /// `exists_many`.
    pub exists_many: u64,
    /// `delete`.
    pub delete: u64,
}

impl OriginCalls {
    /// Every call.
    pub fn total(&self) -> u64 {
        self.fetch + self.fetch_many + self.query + self.exists_many + self.delete
    }
}

/// The source of truth in memory, for one or several entities. Clones share the data and the
/// counters.
#[derive(Debug, Clone, Default)]
pub struct CountingOrigin {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tables: RwLock<HashMap<&'static str, Table>>,
    fetch: AtomicU64,
    fetch_many: AtomicU64,
    query: AtomicU64,
    exists_many: AtomicU64,
    delete: AtomicU64,
}

#[derive(Debug, Default)]
struct Table {
    /// Records with a body: served by `fetch`, `fetch_many` and `query`.
    records: HashMap<RecordId, Stored>,
    /// Every id the source has (with or without a body): answered by `exists_many`.
    present: HashSet<RecordId>,
}

#[derive(Debug)]
struct Stored {
    source: SourceRecord,
    index: IndexEntries,
}

impl CountingOrigin {
    /// An empty origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts a record (its source shape and index entries).
    pub fn put<T: Cacheable>(&self, record: &T) -> Result<(), ModelError> {
        let stored = Stored {
            source: record.to_source()?,
            index: record.index_entries(),
        };
        let mut tables = self.inner.tables.write().unwrap_or_else(PoisonError::into_inner);
        let table = tables.entry(T::schema().entity).or_default();
        table.present.insert(record.id().clone());
        table.records.insert(record.id().clone(), stored);
        Ok(())
    }

    /// Says the source has `ids` of `entity`, without their bodies (enough for a sweep).
    pub fn put_ids(&self, entity: &'static EntitySchema, ids: impl IntoIterator<Item = RecordId>) {
        let mut tables = self.inner.tables.write().unwrap_or_else(PoisonError::into_inner);
        tables.entry(entity.entity).or_default().present.extend(ids);
    }

    /// Removes a record at the source (not counted as a call); answers whether it was there.
    pub fn remove(&self, entity: &'static EntitySchema, id: &RecordId) -> bool {
        let mut tables = self.inner.tables.write().unwrap_or_else(PoisonError::into_inner);
        tables.get_mut(entity.entity).is_some_and(|table| {
            table.records.remove(id);
            table.present.remove(id)
        })
    }

    /// The calls answered so far.
    pub fn calls(&self) -> OriginCalls {
        let i = &self.inner;
        OriginCalls {
            fetch: i.fetch.load(Ordering::Relaxed),
            fetch_many: i.fetch_many.load(Ordering::Relaxed),
            query: i.query.load(Ordering::Relaxed),
            exists_many: i.exists_many.load(Ordering::Relaxed),
            delete: i.delete.load(Ordering::Relaxed),
        }
    }

    fn read<R>(&self, entity: &EntitySchema, f: impl FnOnce(&Table) -> R) -> R {
        let tables = self.inner.tables.read().unwrap_or_else(PoisonError::into_inner);
        match tables.get(entity.entity) {
            Some(table) => f(table),
            None => f(&Table::default()),
        }
    }
}

#[async_trait]
impl Origin for CountingOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        self.inner.fetch.fetch_add(1, Ordering::Relaxed);
        Ok(self.read(entity, |t| t.records.get(id).map(|s| s.source.clone())))
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.inner.fetch_many.fetch_add(1, Ordering::Relaxed);
        Ok(self.read(entity, |t| {
            ids.iter()
                .filter_map(|id| t.records.get(id).map(|s| s.source.clone()))
                .collect()
        }))
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.inner.query.fetch_add(1, Ordering::Relaxed);
        Ok(self.read(entity, |t| {
            let mut found: Vec<(f64, &Stored)> = t
                .records
                .values()
                .filter(|s| {
                    query
                        .filters
                        .iter()
                        .all(|f| s.index.tag(f.field.name) == Some(f.value.as_str()))
                })
                .map(|s| {
                    let score = query
                        .sort
                        .and_then(|(field, _)| s.index.score(field.name))
                        .unwrap_or(f64::NEG_INFINITY);
                    (score, s)
                })
                .collect();
            let desc = matches!(query.sort, Some((_, Order::Desc)));
            // The cache's order: by score, ties by id, both in the sort's direction.
            found.sort_by(|(a, ra), (b, rb)| {
                let asc = (a + 0.0)
                    .total_cmp(&(b + 0.0))
                    .then_with(|| ra.source.id.cmp(&rb.source.id));
                if desc { asc.reverse() } else { asc }
            });
            found
                .into_iter()
                .skip(query.offset)
                .take(query.limit.unwrap_or(usize::MAX))
                .map(|(_, s)| s.source.clone())
                .collect()
        }))
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        self.inner.exists_many.fetch_add(1, Ordering::Relaxed);
        Ok(self.read(entity, |t| {
            ids.iter().filter(|id| t.present.contains(*id)).cloned().collect()
        }))
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        self.inner.delete.fetch_add(1, Ordering::Relaxed);
        Ok(self.remove(entity, id).then(Deletion::new))
    }
}

#[cfg(test)]
mod tests {
    use cache_core::{Cache, MemoryStore, Query};

    use super::*;
    use crate::model::{Project, ProjectSort, event_id, generate};

    #[tokio::test(flavor = "current_thread")]
    async fn serves_the_cache_and_counts_calls() {
        let records = generate(40, 2, 300);
        let origin = CountingOrigin::new();
        for r in &records {
            origin.put(r).unwrap();
        }
        let cache = Cache::builder(MemoryStore::new(), origin.clone()).build().unwrap();
        let top = cache
            .query(Project::by_event(&event_id(1)).desc(ProjectSort::Points).limit(5))
            .await
            .unwrap();
        let mut expected: Vec<&Project> = records.iter().filter(|r| r.event.id() == &event_id(1)).collect();
        expected.sort_by(|a, b| b.points.cmp(&a.points).then_with(|| b.id.cmp(&a.id)));
        let expected: Vec<Project> = expected.into_iter().take(5).cloned().collect();
        assert_eq!(top, expected);
        let again = cache.query(Query::<Project>::all().limit(3)).await.unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(origin.calls().query, 2);

        let ids: Vec<RecordId> = records.iter().map(|r| r.id.clone()).collect();
        assert_eq!(cache.get_many::<Project>(&ids).await.unwrap().len(), 40);
        assert!(origin.remove(Project::schema(), &ids[0]));
        origin.put_ids(Project::schema(), [RecordId::new("recOnlyAnId").unwrap()]);
        let existing = origin
            .exists_many(
                Project::schema(),
                &[ids[0].clone(), ids[1].clone(), RecordId::new("recOnlyAnId").unwrap()],
            )
            .await
            .unwrap();
        assert_eq!(existing, [ids[1].clone(), RecordId::new("recOnlyAnId").unwrap()]);
        assert_eq!(origin.calls().exists_many, 1);
    }
}
