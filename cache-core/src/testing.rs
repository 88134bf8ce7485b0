//! Test support (feature `testing`): the [store conformance suite](conformance) every
//! [`Store`](crate::store::Store) runs, [`MemoryOrigin`], an origin in memory that counts its calls,
//! fails on demand and holds calls at a gate so that races are deterministic, and
//! [`FailingStore`], a store that can be taken down, fail one method and hold calls at a gate.

pub mod conformance;
mod failing;
pub mod origin_conformance;

pub use failing::{FailingStore, StoreHold};

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    Cacheable, RecordId, order,
    origin::{Deletion, Origin, OriginError, SourceQuery, SourceRecord},
    schema::{EntitySchema, IndexEntries, ModelError},
};

/// An origin method, for counting, failing and holding calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OriginMethod {
    /// [`Origin::fetch`].
    Fetch,
    /// [`Origin::fetch_many`].
    FetchMany,
    /// [`Origin::query`].
    Query,
    /// [`Origin::exists_many`].
    ExistsMany,
    /// [`Origin::delete`].
    Delete,
}

/// One call made to a [`MemoryOrigin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginCall {
    /// The method.
    pub method: OriginMethod,
    /// The entity asked about.
    pub entity: &'static str,
    /// The ids asked for (empty for queries).
    pub ids: Vec<RecordId>,
}

/// The source of truth, in memory: records per entity in their source shape.
///
/// Queries filter and order by the records' own index entries (computed by the model when a
/// record is put), so the origin orders exactly as the cache does. Clones share the same data.
///
/// ```
/// # use cache_core::testing::{MemoryOrigin, OriginMethod};
/// let origin = MemoryOrigin::new();
/// origin.fail(OriginMethod::Query); // every query now fails
/// origin.heal();
/// assert_eq!(origin.count(OriginMethod::Fetch), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryOrigin {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    tables: Mutex<HashMap<&'static str, BTreeMap<RecordId, Stored>>>,
    calls: Mutex<Vec<OriginCall>>,
    failing: Mutex<HashSet<OriginMethod>>,
    holds: Mutex<HashMap<OriginMethod, Arc<Gate>>>,
}

#[derive(Debug, Clone)]
struct Stored {
    source: SourceRecord,
    index: IndexEntries,
    version: Option<f64>,
}

#[derive(Debug)]
struct Gate {
    waiting: watch::Sender<usize>,
    open: watch::Sender<bool>,
}

impl Gate {
    fn new() -> Self {
        Self {
            waiting: watch::Sender::new(0),
            open: watch::Sender::new(false),
        }
    }

    /// Called by a held call: counts it as arrived, then waits until the gate opens.
    async fn pass(&self) {
        let mut open = self.open.subscribe();
        self.waiting.send_modify(|n| *n += 1);
        // The sender lives in `self`: the channel cannot close while we wait.
        let _ = open.wait_for(|open| *open).await;
    }

    /// Waits until `n` calls are held at the gate.
    async fn arrived(&self, n: usize) {
        let mut rx = self.waiting.subscribe();
        // The sender lives in `self`: the channel cannot close while we wait.
        let _ = rx.wait_for(|waiting| *waiting >= n).await;
    }

    /// Lets the held calls (and every later one) through.
    fn open(&self) {
        self.open.send_replace(true);
    }
}

/// Calls of one method held at a gate (see [`MemoryOrigin::hold`]). Dropping it releases them.
#[derive(Debug)]
#[must_use = "dropping a hold releases it"]
pub struct Hold {
    origin: MemoryOrigin,
    method: OriginMethod,
    gate: Arc<Gate>,
}

impl Hold {
    /// Waits until `n` calls are held at the gate.
    pub async fn arrived(&self, n: usize) {
        self.gate.arrived(n).await;
    }

    /// Lets the held calls (and every later one) through.
    pub fn release(self) {
        drop(self);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.gate.open();
        let mut holds = lock(&self.origin.inner.holds);
        if holds.get(&self.method).is_some_and(|g| Arc::ptr_eq(g, &self.gate)) {
            holds.remove(&self.method);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryOrigin {
    /// An empty origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts (creates or replaces) a record at the source.
    pub fn put<T: Cacheable>(&self, record: &T) -> Result<(), ModelError> {
        let stored = Stored {
            source: record.to_source()?,
            index: record.index_entries(),
            version: record.version(),
        };
        lock(&self.inner.tables)
            .entry(T::schema().entity)
            .or_default()
            .insert(record.id().clone(), stored);
        Ok(())
    }

    /// Puts a record given in its source shape; it must parse as a `T`.
    pub fn put_source<T: Cacheable>(&self, source: SourceRecord) -> Result<(), ModelError> {
        let record = T::from_source(source.clone())?;
        let (index, version) = (record.index_entries(), record.version());
        lock(&self.inner.tables)
            .entry(T::schema().entity)
            .or_default()
            .insert(source.id.clone(), Stored { source, index, version });
        Ok(())
    }

    /// Puts a record in its source shape without parsing it, with the index entries given (to
    /// serve records a model cannot read).
    pub fn put_raw(&self, entity: &'static EntitySchema, source: SourceRecord, index: IndexEntries) {
        lock(&self.inner.tables).entry(entity.entity).or_default().insert(
            source.id.clone(),
            Stored {
                source,
                index,
                version: None,
            },
        );
    }

    /// Removes a record at the source (not counted as a call); answers whether it was there.
    pub fn remove<T: Cacheable>(&self, id: &RecordId) -> bool {
        lock(&self.inner.tables)
            .get_mut(T::schema().entity)
            .is_some_and(|table| table.remove(id).is_some())
    }

    /// A record as the source has it.
    pub fn source<T: Cacheable>(&self, id: &RecordId) -> Option<SourceRecord> {
        lock(&self.inner.tables)
            .get(T::schema().entity)
            .and_then(|table| table.get(id))
            .map(|s| s.source.clone())
    }

    /// The ids of an entity's records, in id order.
    pub fn ids<T: Cacheable>(&self) -> Vec<RecordId> {
        lock(&self.inner.tables)
            .get(T::schema().entity)
            .map(|table| table.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<OriginCall> {
        lock(&self.inner.calls).clone()
    }

    /// The number of calls made to `method`.
    pub fn count(&self, method: OriginMethod) -> usize {
        lock(&self.inner.calls).iter().filter(|c| c.method == method).count()
    }

    /// The number of calls made to any method.
    pub fn total_calls(&self) -> usize {
        lock(&self.inner.calls).len()
    }

    /// Forgets the calls made so far.
    pub fn reset_calls(&self) {
        lock(&self.inner.calls).clear();
    }

    /// Makes every later call of `method` fail (calls already held at a gate fail too).
    pub fn fail(&self, method: OriginMethod) {
        lock(&self.inner.failing).insert(method);
    }

    /// Makes every method fail.
    pub fn fail_all(&self) {
        lock(&self.inner.failing).extend([
            OriginMethod::Fetch,
            OriginMethod::FetchMany,
            OriginMethod::Query,
            OriginMethod::ExistsMany,
            OriginMethod::Delete,
        ]);
    }

    /// Stops failing.
    pub fn heal(&self) {
        lock(&self.inner.failing).clear();
    }

    /// Holds every later call of `method` at a gate, after it is counted and before it
    /// answers, until the returned [`Hold`] is released (or dropped).
    pub fn hold(&self, method: OriginMethod) -> Hold {
        let gate = Arc::new(Gate {
            waiting: watch::Sender::new(0),
            open: watch::Sender::new(false),
        });
        lock(&self.inner.holds).insert(method, Arc::clone(&gate));
        Hold {
            origin: self.clone(),
            method,
            gate,
        }
    }

    /// Counts a call, then holds it at the gate if one is up. The answer is read before the
    /// gate, as a real origin answers from the data it read when the call arrived: a held call
    /// returns data older than what the test writes meanwhile.
    async fn call<T>(
        &self,
        method: OriginMethod,
        entity: &'static str,
        ids: &[RecordId],
        answer: impl FnOnce(&Self) -> T,
    ) -> Result<T, OriginError> {
        lock(&self.inner.calls).push(OriginCall {
            method,
            entity,
            ids: ids.to_vec(),
        });
        let answer = answer(self);
        let gate = lock(&self.inner.holds).get(&method).cloned();
        if let Some(gate) = gate {
            gate.pass().await;
        }
        if lock(&self.inner.failing).contains(&method) {
            return Err(OriginError::failed(format!("memory origin told to fail {method:?}")));
        }
        Ok(answer)
    }

    fn table<R>(&self, entity: &EntitySchema, f: impl FnOnce(Option<&mut BTreeMap<RecordId, Stored>>) -> R) -> R {
        let mut tables = lock(&self.inner.tables);
        f(tables.get_mut(entity.entity))
    }
}

#[async_trait]
impl Origin for MemoryOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        self.call(OriginMethod::Fetch, entity.entity, std::slice::from_ref(id), |o| {
            o.table(entity, |t| t.and_then(|t| t.get(id)).map(|s| s.source.clone()))
        })
        .await
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.call(OriginMethod::FetchMany, entity.entity, ids, |o| {
            o.table(entity, |t| {
                t.map(|t| {
                    ids.iter()
                        .filter_map(|id| t.get(id))
                        .map(|s| s.source.clone())
                        .collect()
                })
                .unwrap_or_default()
            })
        })
        .await
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.call(OriginMethod::Query, entity.entity, &[], |o| o.run_query(entity, query))
            .await
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        self.call(OriginMethod::ExistsMany, entity.entity, ids, |o| {
            o.table(entity, |t| {
                t.map(|t| ids.iter().filter(|id| t.contains_key(*id)).cloned().collect())
                    .unwrap_or_default()
            })
        })
        .await
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        // A delete is decided when it answers, not when it arrives: a failing delete deletes
        // nothing.
        self.call(OriginMethod::Delete, entity.entity, std::slice::from_ref(id), |_| ())
            .await?;
        let removed = self.table(entity, |t| t.and_then(|t| t.remove(id)));
        Ok(removed.map(|stored| Deletion {
            version: stored.version,
            ..Deletion::default()
        }))
    }
}

impl MemoryOrigin {
    fn run_query(&self, entity: &EntitySchema, query: &SourceQuery) -> Vec<SourceRecord> {
        let mut matching: Vec<(f64, Stored)> = self.table(entity, |t| {
            t.map(|t| {
                t.values()
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
                        (score, s.clone())
                    })
                    .collect()
            })
            .unwrap_or_default()
        });
        let direction = query.sort.map(|(_, o)| o);
        matching.sort_by(|a, b| order::compare_scored((a.0, &a.1.source.id), (b.0, &b.1.source.id), direction));
        matching
            .into_iter()
            .skip(query.offset)
            .take(query.limit.unwrap_or(usize::MAX))
            .map(|(_, s)| s.source)
            .collect()
    }
}
