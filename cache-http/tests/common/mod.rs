//! What every HTTP test needs: models, a cache over the in-memory store and origin, a store
//! that can be taken down (or fail or hold one method), and a real server on a free loopback
//! port.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use cache_core::{
    Cache, Cacheable, ComputeLock, ComputedLookup, ComputedWrite, EntitySchema, FillToken, IndexEntries, IndexQuery,
    Lease, Link, LockAttempt, LockWait, Lookup, MemoryStore, QueryLookup, RecordId, RecordWrite, RemoveMode, Store,
    StoreError, StoreResult, StoreStats, WriteMode, WriteOutcome,
    testing::{FailingStore, MemoryOrigin},
};
use cache_http::{CacheTelemetryLayer, ResponseCacheLayer};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";
pub const TOKEN: &str = "admin-token-0123456789-abcdefghijklmnop";

/// A hackathon. No version field: webhooks order its deliveries by timestamp alone.
#[derive(Cacheable, Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cache(entity = "events", source_table = "Events")]
pub struct Event {
    #[cache(id)]
    #[schemars(with = "String")]
    pub id: RecordId,
    pub name: String,
}

/// A project competing in one event (column `event_id`, indexed: `Project::by_event`).
#[derive(Cacheable, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cache(entity = "projects", source_table = "Projects")]
pub struct Project {
    #[cache(id)]
    pub id: RecordId,
    pub name: String,
    pub event: Link<Event>,
    #[sortable]
    pub points: i64,
    #[cache(version)]
    pub version: i64,
}

pub fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("a valid id")
}

pub fn project(pid: &str, event: &str, points: i64, version: i64) -> Project {
    Project {
        id: id(pid),
        name: format!("Project {pid}"),
        event: Link::new(id(event)),
        points,
        version,
    }
}

/// The store the tests run on: a [`FailingStore`] (taken down and brought back with
/// `set_down`) in front of a [`HoldingStore`].
pub type TestStore = FailingStore<HoldingStore>;

/// A store in memory that adds what [`FailingStore`] does not: failing one method only, and
/// holding a record write at a gate, to order deliveries that race.
#[derive(Debug, Default)]
pub struct HoldingStore {
    inner: MemoryStore,
    failing: Mutex<HashSet<&'static str>>,
    gate: Mutex<Option<(String, Arc<Gate>)>>,
}

/// Where a held call waits: the test learns that it arrived, then lets it go on.
#[derive(Debug, Default)]
pub struct Gate {
    arrived: Notify,
    release: Notify,
}

impl Gate {
    /// Waits until the held call reached the gate.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Lets the held call go on.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// Called by the held code: signals its arrival and waits to be released. `Notify` keeps
    /// one permit, so neither side can miss the other.
    pub async fn pass(&self) {
        self.arrived.notify_one();
        self.release.notified().await;
    }
}

impl HoldingStore {
    /// Fails calls of `method` (`"put"`, `"get_value"`, ...) until [`HoldingStore::heal`].
    pub fn fail(&self, method: &'static str) {
        self.failing.lock().unwrap().insert(method);
    }

    pub fn heal(&self) {
        self.failing.lock().unwrap().clear();
    }

    /// Holds the next record write whose body contains `needle` at a gate, before it reaches
    /// the store.
    pub fn hold_put(&self, needle: &str) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        *self.gate.lock().unwrap() = Some((needle.to_owned(), Arc::clone(&gate)));
        gate
    }

    fn check(&self, method: &'static str) -> StoreResult<()> {
        if self.failing.lock().unwrap().contains(method) {
            Err(StoreError::Unavailable(format!("{method}: connection refused (test)")))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Store for HoldingStore {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        self.check("get")?;
        self.inner.get(entity, id).await
    }

    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        self.check("get_many")?;
        self.inner.get_many(entity, ids).await
    }

    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        self.check("lease")?;
        self.inner.lease(entity, ids, ttl).await
    }

    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        let held = {
            let mut gate = self.gate.lock().unwrap();
            let hit = gate.as_ref().is_some_and(|(needle, _)| {
                writes
                    .iter()
                    .any(|w| w.body.windows(needle.len()).any(|b| b == needle.as_bytes()))
            });
            if hit { gate.take().map(|(_, gate)| gate) } else { None }
        };
        if let Some(gate) = held {
            gate.pass().await;
        }
        self.check("put")?;
        self.inner.put(entity, writes, mode).await
    }

    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        self.check("remove")?;
        self.inner.remove(entity, ids, mode).await
    }

    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        self.check("query")?;
        self.inner.query(entity, query).await
    }

    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<bool> {
        self.check("complete_query")?;
        self.inner.complete_query(entity, query, token, records).await
    }

    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>> {
        self.inner.scan_ids(entity, batch)
    }

    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64> {
        self.check("flush")?;
        self.inner.flush(pattern).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.check("ping")?;
        self.inner.ping().await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        self.check("stats")?;
        self.inner.stats().await
    }

    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>> {
        self.check("get_value")?;
        self.inner.get_value(key).await
    }

    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        self.check("put_value")?;
        self.inner.put_value(key, value, ttl, tags).await
    }

    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        self.check("purge_tags")?;
        self.inner.purge_tags(tags).await
    }

    async fn advance_watermark(&self, key: &str, value: i64, ttl: Duration) -> StoreResult<bool> {
        self.check("advance_watermark")?;
        self.inner.advance_watermark(key, value, ttl).await
    }

    async fn get_computed(&self, key: &str) -> StoreResult<ComputedLookup> {
        self.check("get_computed")?;
        self.inner.get_computed(key).await
    }

    async fn put_computed(&self, key: &str, write: &ComputedWrite) -> StoreResult<bool> {
        self.check("put_computed")?;
        self.inner.put_computed(key, write).await
    }

    async fn lock_computed(&self, key: &str, ttl: Duration) -> StoreResult<LockAttempt> {
        self.check("lock_computed")?;
        self.inner.lock_computed(key, ttl).await
    }

    async fn unlock_computed(&self, key: &str, lock: ComputeLock) -> StoreResult<()> {
        self.check("unlock_computed")?;
        self.inner.unlock_computed(key, lock).await
    }

    async fn wait_computed(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        self.check("wait_computed")?;
        self.inner.wait_computed(key, timeout).await
    }
}

/// A cache over a [`TestStore`] and a [`MemoryOrigin`] holding two events and three
/// projects: P1 (10 points) and P2 (5) in E1, P3 (7) in E2.
pub struct Harness {
    pub cache: Cache,
    pub origin: MemoryOrigin,
    pub store: Arc<TestStore>,
}

impl Harness {
    pub fn new() -> Self {
        let origin = MemoryOrigin::new();
        for (eid, name) in [("recE1", "Hack One"), ("recE2", "Hack Two")] {
            origin
                .put(&Event {
                    id: id(eid),
                    name: name.into(),
                })
                .unwrap();
        }
        origin.put(&project("recP1", "recE1", 10, 1)).unwrap();
        origin.put(&project("recP2", "recE1", 5, 1)).unwrap();
        origin.put(&project("recP3", "recE2", 7, 1)).unwrap();
        let store = Arc::new(FailingStore::new(HoldingStore::default()));
        let cache = cache_on(&store, &origin);
        Self { cache, origin, store }
    }

    /// Another application instance: its own cache (in-process state) on the same store and
    /// source.
    pub fn instance(&self) -> Cache {
        cache_on(&self.store, &self.origin)
    }

    /// The demo application: `GET /events/{id}` (no response cache) and
    /// `GET /events/{id}/projects` (response-cached, 60 s), under the telemetry layer.
    pub fn app(&self) -> Router {
        self.app_with(ResponseCacheLayer::new(&self.cache).ttl(Duration::from_secs(60)))
    }

    pub fn app_with(&self, layer: ResponseCacheLayer) -> Router {
        Router::new()
            .route("/events/{id}", get(get_event))
            .route("/events/{id}/projects", get(list_projects).layer(layer))
            .with_state(self.cache.clone())
            .layer(CacheTelemetryLayer::new())
    }
}

fn cache_on(store: &Arc<TestStore>, origin: &MemoryOrigin) -> Cache {
    Cache::builder(Arc::clone(store) as Arc<dyn Store>, origin.clone())
        .ttl_jitter(0.0)
        .register::<Event>()
        .register::<Project>()
        .build()
        .unwrap()
}

async fn get_event(State(cache): State<Cache>, Path(eid): Path<String>) -> Response {
    let Ok(eid) = RecordId::new(eid) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match cache.get::<Event>(&eid).await {
        Ok(Some(event)) => Json(event).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

async fn list_projects(State(cache): State<Cache>, Path(eid): Path<String>) -> Response {
    let Ok(eid) = RecordId::new(eid) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match cache.query(Project::by_event(&eid).desc(ProjectSort::Points)).await {
        Ok(projects) => Json(projects).into_response(),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

/// Serves `router` on a free loopback port; answers its base URL. The listener is bound
/// before this returns, so requests can be sent at once.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}
