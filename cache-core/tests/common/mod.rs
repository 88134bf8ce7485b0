//! Models and a harness shared by the cache tests: a hackathon's projects, events and users,
//! a memory store on a manual clock behind a store that can be made to fail, and a memory
//! origin.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{
    Cache, CacheBuilder, CacheView, Cacheable, EntitySchema, FillToken, IndexEntries, IndexQuery, IndexValue, Lease,
    Link, Links, Lookup, ManualClock, MemoryStore, QueryLookup, RecordId, RecordWrite, RemoveMode, Store, StoreError,
    StoreResult, StoreStats, WriteMode, WriteOutcome,
    testing::{Hold, MemoryOrigin},
};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

#[derive(IndexValue, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Draft,
    Submitted,
    Judged,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "projects", source_table = "Projects", ttl = "8h", tombstone_ttl = "1h")]
pub(crate) struct Project {
    #[cache(id)]
    pub(crate) id: RecordId,
    pub(crate) name: String,
    pub(crate) event: Link<Event>,
    pub(crate) collaborators: Links<User>,
    #[indexed]
    pub(crate) status: Status,
    #[sortable]
    pub(crate) points: i64,
    #[cache(version)]
    pub(crate) version: i64,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "events", source_table = "Events")]
pub(crate) struct Event {
    #[cache(id)]
    pub(crate) id: RecordId,
    pub(crate) name: String,
    #[sortable]
    pub(crate) starts_at: Option<i64>,
}

/// No version field: only leases protect its fills.
#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "users", source_table = "People", tombstone_ttl = "30m")]
pub(crate) struct User {
    #[cache(id)]
    pub(crate) id: RecordId,
    #[cache(source = "Display Name")]
    pub(crate) display_name: String,
    #[indexed(normalize = "lowercase")]
    pub(crate) email: String,
}

#[derive(CacheView, Debug, PartialEq)]
#[cache(view_of = Project)]
pub(crate) struct ProjectCard {
    pub(crate) id: RecordId,
    pub(crate) name: String,
    pub(crate) points: i64,
}

pub(crate) fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("a valid id")
}

pub(crate) fn project(rid: &str, event: &str, status: Status, points: i64, version: i64) -> Project {
    Project {
        id: id(rid),
        name: format!("Project {rid}"),
        event: Link::new(id(event)),
        collaborators: Links::new(vec![id("recU1")]),
        status,
        points,
        version,
    }
}

pub(crate) fn user(rid: &str, name: &str, email: &str) -> User {
    User {
        id: id(rid),
        display_name: name.to_owned(),
        email: email.to_owned(),
    }
}

/// A store in front of a [`MemoryStore`] that counts calls per method and can be made to fail
/// every call, standing in for "Redis is down".
#[derive(Clone)]
pub(crate) struct FlakyStore {
    inner: MemoryStore,
    down: Arc<AtomicBool>,
    calls: Arc<Mutex<HashMap<&'static str, usize>>>,
}

impl FlakyStore {
    pub(crate) fn new(inner: MemoryStore) -> Self {
        Self {
            inner,
            down: Arc::default(),
            calls: Arc::default(),
        }
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub(crate) fn calls(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    fn enter(&self, method: &'static str) -> StoreResult<()> {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("connection refused".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FlakyStore {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        self.enter("get")?;
        self.inner.get(entity, id).await
    }

    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        self.enter("get_many")?;
        self.inner.get_many(entity, ids).await
    }

    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        self.enter("lease")?;
        self.inner.lease(entity, ids, ttl).await
    }

    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        self.enter("put")?;
        self.inner.put(entity, writes, mode).await
    }

    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        self.enter("remove")?;
        self.inner.remove(entity, ids, mode).await
    }

    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        self.enter("query")?;
        self.inner.query(entity, query).await
    }

    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<bool> {
        self.enter("complete_query")?;
        self.inner.complete_query(entity, query, token, records).await
    }

    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>> {
        self.inner.scan_ids(entity, batch)
    }

    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64> {
        self.enter("flush")?;
        self.inner.flush(pattern).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.enter("ping")?;
        self.inner.ping().await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        self.enter("stats")?;
        self.inner.stats().await
    }

    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>> {
        self.enter("get_value")?;
        self.inner.get_value(key).await
    }

    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        self.enter("put_value")?;
        self.inner.put_value(key, value, ttl, tags).await
    }

    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        self.enter("purge_tags")?;
        self.inner.purge_tags(tags).await
    }
}

/// A cache over a flaky memory store on a manual clock, and a memory origin.
pub(crate) struct Harness {
    pub(crate) cache: Cache,
    pub(crate) store: FlakyStore,
    pub(crate) memory: MemoryStore,
    pub(crate) origin: MemoryOrigin,
    pub(crate) clock: ManualClock,
}

pub(crate) fn harness() -> Harness {
    harness_with(|b| b)
}

pub(crate) fn harness_with(configure: impl FnOnce(CacheBuilder) -> CacheBuilder) -> Harness {
    let clock = ManualClock::new();
    let memory = MemoryStore::builder().clock(clock.clone()).build();
    let store = FlakyStore::new(memory.clone());
    let origin = MemoryOrigin::new();
    let builder = Cache::builder(store.clone(), origin.clone())
        .register::<Project>()
        .register::<Event>()
        .register::<User>();
    let cache = configure(builder).build().expect("a valid cache");
    Harness {
        cache,
        store,
        memory,
        origin,
        clock,
    }
}

impl Harness {
    /// Puts records at the origin (not in the cache).
    pub(crate) fn seed<T: Cacheable>(&self, records: &[T]) {
        for r in records {
            self.origin.put(r).expect("fixture records render");
        }
    }

    /// Waits (by yielding, not sleeping) until `n` misses of `entity` joined a flight.
    pub(crate) async fn until_coalesced(&self, entity: &str, n: u64) {
        while self.cache.stats().entity(entity).coalesced < n {
            tokio::task::yield_now().await;
        }
    }
}

/// Waits until the hold has `n` calls, then until `joined` misses joined them.
pub(crate) async fn hold_until(h: &Harness, hold: &Hold, calls: usize, entity: &str, joined: u64) {
    hold.arrived(calls).await;
    h.until_coalesced(entity, joined).await;
}

pub(crate) fn ids(list: &[&str]) -> Vec<RecordId> {
    list.iter().map(|s| id(s)).collect()
}

/// The ids of records, for comparing answers.
pub(crate) fn ids_of<T: Cacheable>(records: &[T]) -> Vec<String> {
    records.iter().map(|r| r.id().as_str().to_owned()).collect()
}

pub(crate) fn view_ids(views: &[ProjectCard]) -> Vec<String> {
    views.iter().map(|v| v.id.as_str().to_owned()).collect()
}

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
