//! The near cache on real servers: two `Cache` instances sharing one Redis, each with a near
//! cache kept consistent by `CLIENT TRACKING`. A write on one is not answered by the other once
//! its push arrived; a read racing an invalidation keeps nothing; a lost tracking connection
//! empties the near cache until tracking is back; tracking refused keeps it off; the budget
//! holds; a cluster tracks every master. Computed values (cached responses among them) are
//! near the same way.
//!
//! Nothing waits by sleeping: each test polls a condition against a deadline, or holds a call
//! at a gate.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{
    Cache, Cacheable, ComputeOptions, RecordId,
    change::Change,
    near::NearCache,
    query::IndexQuery,
    schema::{EntitySchema, IndexEntries},
    store::{
        FillToken, Invalidation, InvalidationSink, Lease, Lookup, QueryFill, QueryLookup, RecordWrite, RemoveMode,
        Store, StoreResult, StoreStats, WriteMode, WriteOutcome,
    },
    testing::MemoryOrigin,
};
use cache_redis::{
    RedisStore,
    testing::{RedisCluster, RedisServer, unique_namespace},
};
use futures::stream::BoxStream;
use tokio::sync::watch;

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "near_projects", source_table = "Projects", ttl = "1h")]
struct Project {
    #[cache(id)]
    id: RecordId,
    name: String,
    #[indexed]
    event: String,
    #[sortable]
    points: i64,
}

fn id(s: &str) -> RecordId {
    RecordId::new(s).unwrap()
}

fn project(rid: &str, name: &str, event: &str, points: i64) -> Project {
    Project {
        id: id(rid),
        name: name.to_owned(),
        event: event.to_owned(),
        points,
    }
}

const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `done` until it holds, failing with `what` after [`DEADLINE`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`until`] for an async condition.
async fn until_async<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + DEADLINE;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One application instance: its store (its own connections) and its cache with a near cache.
struct Instance {
    store: RedisStore,
    cache: Cache,
}

impl Instance {
    fn near(&self) -> &NearCache {
        self.cache.near_cache().expect("a near cache over redis")
    }

    async fn get(&self, rid: &str) -> Option<Project> {
        self.cache.get::<Project>(&id(rid)).await.unwrap()
    }

    fn near_hits(&self) -> u64 {
        self.near().stats().hits
    }

    /// Reads `rid` until the near cache holds it (the first read fills the store from the
    /// origin, the second reads the store and keeps the answer), then once more from it.
    async fn warm(&self, rid: &str) -> Project {
        for _ in 0..3 {
            if self.near().holds::<Project>(&id(rid)) {
                break;
            }
            self.get(rid).await.expect("the origin has it");
        }
        assert!(self.near().holds::<Project>(&id(rid)), "{rid} is near");
        let hits = self.near_hits();
        let found = self.get(rid).await.expect("found");
        assert_eq!(self.near_hits(), hits + 1, "answered by the near cache");
        found
    }
}

async fn instance_with(store: RedisStore, origin: &MemoryOrigin, budget: u64) -> Instance {
    let cache = Cache::builder(store.clone(), origin.clone())
        .register::<Project>()
        .near_cache(budget)
        .build()
        .unwrap();
    let near = cache.near_cache().expect("redis supports the near cache").clone();
    until("tracking is on", || near.is_enabled()).await;
    Instance { store, cache }
}

async fn instance(url: &str, namespace: &str, origin: &MemoryOrigin) -> Instance {
    let store = RedisStore::builder(url).namespace(namespace).connect().await.unwrap();
    instance_with(store, origin, 1 << 20).await
}

/// Two instances over one server and namespace, and their origin holding `records`.
async fn pair(server: &RedisServer, records: &[Project]) -> (Instance, Instance, MemoryOrigin) {
    let origin = MemoryOrigin::new();
    for r in records {
        origin.put(r).unwrap();
    }
    let namespace = unique_namespace();
    let a = instance(&server.url(), &namespace, &origin).await;
    let b = instance(&server.url(), &namespace, &origin).await;
    (a, b, origin)
}

/// The ids of a server's tracking connections (`CLIENT LIST`).
fn tracking_clients(server: &RedisServer) -> Vec<u64> {
    let list: String = server.query(redis::cmd("CLIENT").arg("LIST"));
    list.lines()
        .filter(|line| line.split(' ').any(|f| f == "name=model-cache-near"))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")?.parse().ok()))
        .collect()
}

#[tokio::test]
async fn a_write_on_one_instance_is_not_answered_by_the_other() {
    let server = RedisServer::start();
    let records = [
        project("recP1", "one", "recE1", 1),
        project("recP2", "two", "recE1", 2),
        project("recP3", "three", "recE2", 3),
    ];
    let (a, b, origin) = pair(&server, &records).await;

    // Upsert on A: B's entry goes with the push, then B reads the new value.
    a.warm("recP1").await;
    b.warm("recP1").await;
    let renamed = project("recP1", "one, renamed", "recE1", 1);
    origin.put(&renamed).unwrap();
    a.cache.upsert(&renamed).await.unwrap();
    assert_eq!(
        a.get("recP1").await,
        Some(renamed.clone()),
        "A reads its own write at once"
    );
    until("B's near cache dropped recP1", || {
        !b.near().holds::<Project>(&id("recP1"))
    })
    .await;
    assert_eq!(b.get("recP1").await, Some(renamed.clone()));

    // The same, without looking at B's near cache: once A's write returned and B processed
    // the invalidations made before a fence, B never answers the old value.
    b.warm("recP1").await;
    let again = project("recP1", "one, again", "recE1", 1);
    origin.put(&again).unwrap();
    a.cache.upsert(&again).await.unwrap();
    b.store.sync_invalidations().await;
    assert_eq!(b.get("recP1").await, Some(again.clone()));

    // Invalidate on A (after a change at the source).
    b.warm("recP2").await;
    let changed = project("recP2", "two, changed", "recE1", 2);
    origin.put(&changed).unwrap();
    a.cache.invalidate::<Project>(&id("recP2")).await.unwrap();
    until("B's near cache dropped recP2", || {
        !b.near().holds::<Project>(&id("recP2"))
    })
    .await;
    assert_eq!(b.get("recP2").await, Some(changed));

    // A change through `apply_changes` on A.
    b.warm("recP3").await;
    let fed = project("recP3", "three, fed", "recE2", 30);
    origin.put(&fed).unwrap();
    let change = Change::upsert(Project::schema(), fed.to_source().unwrap());
    a.cache.apply_changes(vec![change]).await.unwrap();
    b.store.sync_invalidations().await;
    assert_eq!(b.get("recP3").await, Some(fed));

    // Delete on A.
    b.warm("recP2").await;
    assert!(a.cache.delete::<Project>(&id("recP2")).await.unwrap());
    until("B's near cache dropped recP2", || {
        !b.near().holds::<Project>(&id("recP2"))
    })
    .await;
    assert_eq!(b.get("recP2").await, None);
    assert_eq!(a.get("recP2").await, None);
}

#[tokio::test]
async fn index_queries_are_near_until_their_entity_changes() {
    let server = RedisServer::start();
    let records = [
        project("recP1", "one", "recE1", 1),
        project("recP2", "two", "recE1", 2),
        project("recP3", "three", "recE2", 3),
    ];
    let (a, b, origin) = pair(&server, &records).await;
    let leaderboard = || Project::by_event("recE1").desc(ProjectSort::Points);
    let ids = |found: Vec<Project>| found.into_iter().map(|p| p.id.as_str().to_owned()).collect::<Vec<_>>();

    // Miss (filled from the origin), store hit (kept), near hit.
    for _ in 0..2 {
        b.cache.query(leaderboard()).await.unwrap();
    }
    let hits = b.near_hits();
    assert_eq!(ids(b.cache.query(leaderboard()).await.unwrap()), ["recP2", "recP1"]);
    assert_eq!(b.near_hits(), hits + 1, "the query answered by the near cache");

    // A moves recP3 into the event, on top.
    let moved = project("recP3", "three", "recE1", 30);
    origin.put(&moved).unwrap();
    a.cache.upsert(&moved).await.unwrap();
    b.store.sync_invalidations().await;
    assert_eq!(
        ids(b.cache.query(leaderboard()).await.unwrap()),
        ["recP3", "recP2", "recP1"]
    );
    assert_eq!(
        ids(a.cache.query(leaderboard()).await.unwrap()),
        ["recP3", "recP2", "recP1"],
        "A reads its own write"
    );
}

/// An instance whose store's answers can be held at a gate.
struct Gated {
    store: RedisStore,
    gate: AnswerGate,
    cache: Cache,
    near: NearCache,
}

/// An instance, and a gated one over the same server and namespace, both over `origin`.
async fn gated_pair(server: &RedisServer, origin: &MemoryOrigin) -> (Instance, Gated) {
    let namespace = unique_namespace();
    let a = instance(&server.url(), &namespace, origin).await;
    let store = RedisStore::builder(server.url())
        .namespace(&namespace)
        .connect()
        .await
        .unwrap();
    let gate = AnswerGate::new(store.clone());
    let cache = Cache::builder(gate.clone(), origin.clone())
        .register::<Project>()
        .near_cache(1 << 20)
        .build()
        .unwrap();
    let near = cache.near_cache().unwrap().clone();
    until("tracking is on", || near.is_enabled()).await;
    (
        a,
        Gated {
            store,
            gate,
            cache,
            near,
        },
    )
}

#[tokio::test]
async fn a_read_racing_an_invalidation_keeps_nothing() {
    let server = RedisServer::start();
    let origin = MemoryOrigin::new();
    let old = project("recP1", "old", "recE1", 1);
    origin.put(&old).unwrap();
    let (a, b) = gated_pair(&server, &origin).await;
    // In the store (a fill), not yet near.
    assert_eq!(b.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(old.clone()));
    assert!(!b.near.holds::<Project>(&id("recP1")));

    // B's read: the store answers "old" and the answer is held on its way back.
    let gate = b.gate.hold_answers();
    let reader = {
        let cache = b.cache.clone();
        tokio::spawn(async move { cache.get::<Project>(&id("recP1")).await.unwrap() })
    };
    gate.arrived().await;
    // Meanwhile A writes, and B's tracking connection delivers the invalidation.
    let new = project("recP1", "new", "recE1", 1);
    origin.put(&new).unwrap();
    a.cache.upsert(&new).await.unwrap();
    b.store.sync_invalidations().await;
    gate.release();
    // The read answers what the store said when it was asked, and keeps none of it.
    assert_eq!(reader.await.unwrap(), Some(old));
    assert!(
        !b.near.holds::<Project>(&id("recP1")),
        "an answer older than an invalidation is not kept"
    );
    assert_eq!(b.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(new.clone()));
    assert_eq!(b.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(new));
    assert!(b.near.holds::<Project>(&id("recP1")), "a later read is kept");
}

#[tokio::test]
async fn a_lost_tracking_connection_empties_the_near_cache_until_it_is_back() {
    let server = RedisServer::start();
    let (a, b, origin) = pair(&server, &[project("recP1", "one", "recE1", 1)]).await;
    b.warm("recP1").await;

    // Kill B's tracking connection (and A's: the server cannot tell them apart). A write made
    // while it is down must not be missed.
    let killed = tracking_clients(&server);
    assert_eq!(killed.len(), 2, "one tracking connection per instance");
    let outages = b.near().stats().outages;
    for client in &killed {
        let _: u64 = server.query(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(client));
    }
    // It may be back already: reconnecting on loopback takes a millisecond.
    until("B's near cache went off", || b.near().stats().outages > outages).await;
    assert!(!b.near().holds::<Project>(&id("recP1")), "what it held is gone");
    let changed = project("recP1", "changed while tracking was down", "recE1", 1);
    origin.put(&changed).unwrap();
    a.cache.upsert(&changed).await.unwrap();

    // Back by itself, on new connections; nothing from before is answered.
    until("B's near cache is back", || b.near().is_enabled()).await;
    assert!(tracking_clients(&server).iter().all(|c| !killed.contains(c)));
    assert!(!b.near().holds::<Project>(&id("recP1")));
    assert_eq!(b.get("recP1").await, Some(changed.clone()));
    b.warm("recP1").await;

    // A restarted server (empty): off while it is down, back after, nothing stale.
    let mut server = server;
    server.stop();
    until("B's near cache is off", || !b.near().is_enabled()).await;
    let hits = b.near_hits();
    assert_eq!(b.get("recP1").await, Some(changed.clone()), "from the origin");
    assert_eq!(b.near_hits(), hits, "nothing answered near while tracking is down");
    assert!(!b.near().is_enabled(), "still off while the server is down");
    server.start_again();
    until("B's near cache is back", || b.near().is_enabled()).await;
    let fresh = project("recP1", "after the restart", "recE1", 1);
    origin.put(&fresh).unwrap();
    until_async("B keeps recP1 near again", || async {
        b.get("recP1").await == Some(fresh.clone()) && b.near().holds::<Project>(&id("recP1"))
    })
    .await;
    assert_eq!(b.warm("recP1").await, fresh);
}

#[tokio::test]
async fn tracking_refused_keeps_the_near_cache_off() {
    let server = RedisServer::start();
    let _: () = server.query(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("untracked")
            .arg("on")
            .arg(">secret")
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .arg("-client|tracking"),
    );
    let url = format!("redis://untracked:secret@127.0.0.1:{}", server.port());
    let origin = MemoryOrigin::new();
    origin.put(&project("recP1", "one", "recE1", 1)).unwrap();
    let store = RedisStore::builder(url)
        .namespace(unique_namespace())
        .connect()
        .await
        .unwrap();
    let cache = Cache::builder(store, origin)
        .register::<Project>()
        .near_cache(1 << 20)
        .build()
        .unwrap();
    let near = cache.near_cache().unwrap();
    // The refusal is in the server's ACL log once the store tried.
    until("the server refused tracking", || {
        let log: Vec<redis::Value> = server.query(redis::cmd("ACL").arg("LOG"));
        !log.is_empty()
    })
    .await;
    for _ in 0..3 {
        assert!(cache.get::<Project>(&id("recP1")).await.unwrap().is_some());
    }
    assert!(!near.is_enabled());
    assert_eq!(near.stats().hits, 0);
    assert!(!near.holds::<Project>(&id("recP1")));
    assert!(
        cache.stats().entity("near_projects").hits >= 1,
        "the store still answers"
    );
}

/// Records what a store reports.
#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl InvalidationSink for Recorder {
    fn invalidate(&self, invalidation: Invalidation<'_>) {
        self.0.lock().unwrap().push(format!("{invalidation:?}"));
    }

    fn set_tracking(&self, tracking: bool) {
        self.0.lock().unwrap().push(format!("tracking {tracking}"));
    }
}

impl Recorder {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

#[tokio::test]
async fn own_writes_are_reported_as_they_return() {
    // A user that may not turn tracking on: nothing is ever pushed, so what the sink hears
    // comes from the store's own writes.
    let server = RedisServer::start();
    let _: () = server.query(redis::cmd("ACL").arg(&[
        "SETUSER",
        "untracked",
        "on",
        ">secret",
        "~*",
        "&*",
        "+@all",
        "-client|tracking",
    ]));
    let store = RedisStore::builder(format!("redis://untracked:secret@127.0.0.1:{}", server.port()))
        .namespace(unique_namespace())
        .connect()
        .await
        .unwrap();
    let recorder = Arc::new(Recorder::default());
    let sink: Arc<dyn InvalidationSink> = recorder.clone();
    assert!(store.subscribe_invalidations(Arc::downgrade(&sink)));
    assert_eq!(recorder.take(), ["tracking false"]);
    let origin = MemoryOrigin::new();
    let cache = Cache::builder(store.clone(), origin.clone())
        .register::<Project>()
        .build()
        .unwrap();
    let p = project("recP1", "one", "recE1", 1);
    origin.put(&p).unwrap();
    cache.upsert(&p).await.unwrap();
    let record = r#"Record { entity: "near_projects", id: "recP1" }"#;
    assert!(recorder.take().iter().any(|i| i == record), "an upsert");
    cache.invalidate::<Project>(&p.id).await.unwrap();
    assert!(recorder.take().iter().any(|i| i == record), "an invalidation");
    cache.query(Project::by_event("recE1")).await.unwrap();
    let filled = recorder.take();
    assert!(
        filled.iter().any(|i| i == r#"Index { entity: "near_projects" }"#),
        "{filled:?}"
    );
    let options = ComputeOptions::new(Duration::from_secs(60)).tags(["t1"]);
    let value = r#"Value { key: "stats:a b" }"#;
    let computed: u64 = cache
        .get_or_compute("stats:a b", &options, || async { Ok::<_, std::io::Error>(1) })
        .await
        .unwrap();
    assert_eq!(computed, 1);
    assert!(recorder.take().iter().any(|i| i == value), "a computed value stored");
    assert_eq!(cache.invalidate_tags(["t1"]).await.unwrap(), 1);
    assert_eq!(recorder.take(), [value], "a purge, by the key it was computed under");
    store.flush(None).await.unwrap();
    assert_eq!(recorder.take(), ["All"]);
}

#[tokio::test]
async fn the_budget_bounds_what_is_kept_and_metrics_count() {
    let server = RedisServer::start();
    let origin = MemoryOrigin::new();
    let big = "x".repeat(2000);
    let records: Vec<Project> = (0..200)
        .map(|i| project(&format!("recP{i}"), &big, "recE1", i))
        .collect();
    for r in &records {
        origin.put(r).unwrap();
    }
    let store = RedisStore::builder(server.url())
        .namespace(unique_namespace())
        .connect()
        .await
        .unwrap();
    let budget = 64 * 1024;
    let one = instance_with(store, &origin, budget).await;
    let ids: Vec<RecordId> = records.iter().map(|r| r.id.clone()).collect();
    // Fill, then read from the store twice (kept, then answered near where still held).
    for _ in 0..3 {
        assert_eq!(one.cache.get_many::<Project>(&ids).await.unwrap().len(), ids.len());
    }
    let stats = one.near().stats();
    assert!(stats.weighted_bytes <= budget, "{stats:?}");
    assert!(
        stats.entries > 0 && stats.entries < 40,
        "about 30 entries of 2 KB fit: {stats:?}"
    );
    assert!(stats.evictions > 100, "{stats:?}");
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    assert_eq!(stats.capacity_bytes, budget);
    let cache_stats = one.cache.stats().entity("near_projects");
    assert!(cache_stats.hits >= stats.hits, "near hits count as cache hits");
}

#[tokio::test]
async fn a_cluster_tracks_every_master() {
    let cluster = RedisCluster::start();
    let origin = MemoryOrigin::new();
    // Enough ids to land on every master (one bucket per entity would put them on one).
    let records: Vec<Project> = (0..12)
        .map(|i| project(&format!("recP{i}"), "one", "recE1", i))
        .collect();
    for r in &records {
        origin.put(r).unwrap();
    }
    let namespace = unique_namespace();
    let connect = || async {
        let store = RedisStore::cluster(cluster.urls())
            .namespace(&namespace)
            .buckets(6)
            .connect()
            .await
            .unwrap();
        instance_with(store, &origin, 1 << 20).await
    };
    let (a, b) = (connect().await, connect().await);
    for node in cluster.nodes() {
        assert_eq!(tracking_clients(node).len(), 2, "every master tracked by each instance");
    }
    for r in &records {
        b.warm(r.id.as_str()).await;
    }
    for r in &records {
        let renamed = project(r.id.as_str(), "renamed", "recE1", r.points);
        origin.put(&renamed).unwrap();
        a.cache.upsert(&renamed).await.unwrap();
    }
    b.store.sync_invalidations().await;
    for r in &records {
        assert!(!b.near().holds::<Project>(&r.id), "{} dropped", r.id);
        assert_eq!(b.get(r.id.as_str()).await.unwrap().name, "renamed", "{}", r.id);
    }

    // Losing one master's tracking connection turns the whole near cache off, until it is back.
    b.warm("recP0").await;
    let node = &cluster.nodes()[1];
    let outages = b.near().stats().outages;
    for client in tracking_clients(node) {
        let _: u64 = node.query(redis::cmd("CLIENT").arg("KILL").arg("ID").arg(client));
    }
    until("B's near cache went off", || b.near().stats().outages > outages).await;
    assert!(!b.near().holds::<Project>(&id("recP0")));
    until("B's near cache is back", || b.near().is_enabled()).await;
    b.warm("recP0").await;
}

// ------------------------------------------------------------------ a gate on store answers

/// A store that, when armed, holds each `get` answer after the store gave it, until released.
#[derive(Clone)]
struct AnswerGate {
    inner: RedisStore,
    gate: Arc<Mutex<Option<Gate>>>,
}

#[derive(Clone)]
struct Gate {
    arrived: watch::Sender<bool>,
    open: watch::Sender<bool>,
}

impl Gate {
    async fn arrived(&self) {
        let _ = self.arrived.subscribe().wait_for(|a| *a).await;
    }

    fn release(&self) {
        self.open.send_replace(true);
    }
}

impl AnswerGate {
    fn new(inner: RedisStore) -> Self {
        Self {
            inner,
            gate: Arc::default(),
        }
    }

    /// Holds the answer on its way back, when a gate is set.
    async fn hold(&self) {
        let gate = self.gate.lock().unwrap().take();
        if let Some(gate) = gate {
            gate.arrived.send_replace(true);
            let _ = gate.open.subscribe().wait_for(|o| *o).await;
        }
    }

    fn hold_answers(&self) -> Gate {
        let gate = Gate {
            arrived: watch::Sender::new(false),
            open: watch::Sender::new(false),
        };
        *self.gate.lock().unwrap() = Some(gate.clone());
        gate
    }
}

#[async_trait]
impl Store for AnswerGate {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        let answer = self.inner.get(entity, id).await;
        self.hold().await;
        answer
    }

    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        self.inner.get_many(entity, ids).await
    }

    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        self.inner.lease(entity, ids, ttl).await
    }

    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        self.inner.put(entity, writes, mode).await
    }

    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        self.inner.remove(entity, ids, mode).await
    }

    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        self.inner.query(entity, query).await
    }

    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<QueryFill> {
        self.inner.complete_query(entity, query, token, records).await
    }

    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>> {
        self.inner.scan_ids(entity, batch)
    }

    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64> {
        self.inner.flush(pattern).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        self.inner.stats().await
    }

    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>> {
        let answer = self.inner.get_value(key).await;
        self.hold().await;
        answer
    }

    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        self.inner.put_value(key, value, ttl, tags).await
    }

    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        self.inner.purge_tags(tags).await
    }

    fn subscribe_invalidations(&self, sink: std::sync::Weak<dyn InvalidationSink>) -> bool {
        self.inner.subscribe_invalidations(sink)
    }
}

/// Computes `key` on `cache`, counting the computations in `runs`; the value is `value`.
async fn computed(cache: &Cache, key: &str, runs: &std::sync::atomic::AtomicU64, value: &str) -> String {
    let options = ComputeOptions::new(Duration::from_secs(3600)).tags([format!("tag:{key}")]);
    cache
        .get_or_compute(key, &options, || async {
            runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(value.to_owned())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn computed_values_are_near_until_changed_on_any_instance() {
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    let server = RedisServer::start();
    let (a, b, _) = pair(&server, &[]).await;
    let runs = AtomicU64::new(0);
    // A computes and stores; B's first read is the store's answer, kept; then near.
    assert_eq!(computed(&a.cache, "http:GET /x", &runs, "v1").await, "v1");
    assert_eq!(computed(&b.cache, "http:GET /x", &runs, "unused").await, "v1");
    let (hits, misses) = (b.near().stats().hits, b.near().stats().misses);
    assert_eq!(misses, 1, "B asked the store once");
    let before = server.query::<redis::InfoDict>(redis::cmd("INFO").arg("commandstats"));
    for _ in 0..5 {
        assert_eq!(computed(&b.cache, "http:GET /x", &runs, "unused").await, "v1");
    }
    let after = server.query::<redis::InfoDict>(redis::cmd("INFO").arg("commandstats"));
    assert_eq!(b.near().stats().hits, hits + 5, "answered in process");
    let gets = |info: &redis::InfoDict| {
        info.get::<String>("cmdstat_get")
            .and_then(|s| s.split(',').find_map(|f| f.strip_prefix("calls=")?.parse::<u64>().ok()))
            .unwrap_or(0)
    };
    assert_eq!(gets(&after), gets(&before), "no GET reached Redis");
    assert_eq!(runs.load(SeqCst), 1);

    // A purges its tag: B's next read is a miss and computes the new value.
    assert_eq!(a.cache.invalidate_tags(["tag:http:GET /x"]).await.unwrap(), 1);
    b.store.sync_invalidations().await;
    assert_eq!(computed(&b.cache, "http:GET /x", &runs, "v2").await, "v2");
    assert_eq!(runs.load(SeqCst), 2);
    // The other way round: A keeps v2; B purges and computes v3; A's next read is B's.
    assert_eq!(computed(&a.cache, "http:GET /x", &runs, "unused").await, "v2");
    assert_eq!(computed(&a.cache, "http:GET /x", &runs, "unused").await, "v2");
    let a_hits = a.near().stats().hits;
    assert_eq!(b.cache.invalidate_tags(["tag:http:GET /x"]).await.unwrap(), 1);
    assert_eq!(computed(&b.cache, "http:GET /x", &runs, "v3").await, "v3");
    a.store.sync_invalidations().await;
    assert_eq!(computed(&a.cache, "http:GET /x", &runs, "unused").await, "v3");
    assert_eq!(a.near().stats().hits, a_hits, "A asked the store");
    // An instance reads its own purge at once, without waiting for any push.
    assert_eq!(computed(&a.cache, "http:GET /x", &runs, "unused").await, "v3");
    let runs_before = runs.load(SeqCst);
    assert_eq!(a.cache.invalidate_tags(["tag:http:GET /x"]).await.unwrap(), 1);
    assert_eq!(computed(&a.cache, "http:GET /x", &runs, "v3b").await, "v3b");
    assert_eq!(runs.load(SeqCst), runs_before + 1, "computed again");
    // A flush of the database reaches every near cache.
    assert_eq!(computed(&a.cache, "http:GET /x", &runs, "unused").await, "v3b");
    let _: () = server.query(&redis::cmd("FLUSHALL"));
    a.store.sync_invalidations().await;
    assert_eq!(computed(&a.cache, "http:GET /x", &runs, "v4").await, "v4");
}

#[tokio::test]
async fn a_value_read_racing_an_invalidation_keeps_nothing() {
    use std::sync::atomic::AtomicU64;
    let server = RedisServer::start();
    let origin = MemoryOrigin::new();
    let (a, b) = gated_pair(&server, &origin).await;
    let runs = AtomicU64::new(0);
    assert_eq!(computed(&a.cache, "k", &runs, "old").await, "old");

    // B's plain read: Redis answers "old", and the answer is held on its way back.
    let gate = b.gate.hold_answers();
    let reader = {
        let cache = b.cache.clone();
        tokio::spawn(async move { computed(&cache, "k", &AtomicU64::new(0), "unused").await })
    };
    gate.arrived().await;
    // Meanwhile A purges and recomputes, and B's tracking connection delivers that.
    a.cache.invalidate_tags(["tag:k"]).await.unwrap();
    assert_eq!(computed(&a.cache, "k", &runs, "new").await, "new");
    b.store.sync_invalidations().await;
    gate.release();
    // The read answers what the store said when it was asked, and keeps none of it.
    assert_eq!(reader.await.unwrap(), "old");
    let hits = b.near.stats().hits;
    assert_eq!(computed(&b.cache, "k", &runs, "unused").await, "new");
    assert_eq!(b.near.stats().hits, hits, "the old answer was not kept");
    assert_eq!(computed(&b.cache, "k", &runs, "unused").await, "new");
    assert_eq!(b.near.stats().hits, hits + 1, "a later read is kept");
}

/// A value that counts how often it is decoded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
struct Counted(String);

static DECODED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl<'de> serde::Deserialize<'de> for Counted {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DECODED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        String::deserialize(d).map(Counted)
    }
}

/// An observer that sees nothing.
struct Quiet;

impl cache_core::compute::Observer for Quiet {
    fn observe(&self, _: cache_core::compute::Step<'_>) {}
}

/// `compute_cloned_with` (`cloned`) or `compute_with` of `key`, answering `value` on a miss.
async fn counted(cache: &Cache, key: &str, value: &str, cloned: bool) -> Counted {
    use cache_core::compute::{Computation, Fetched};
    let options = ComputeOptions::new(Duration::from_secs(3600)).tags([format!("tag:{key}")]);
    let compute = || async { Ok::<_, std::io::Error>(Computation::<_, ()>::Store(Counted(value.to_owned()))) };
    let fetched = match cloned {
        true => {
            cache
                .compute_cloned_with(key, &options, &Quiet, &|_| true, compute)
                .await
        }
        false => cache.compute_with(key, &options, &Quiet, &|_| true, compute).await,
    };
    match fetched.unwrap() {
        Fetched::Value(v) => v.value,
        Fetched::Answer(()) => unreachable!("always stored"),
    }
}

#[tokio::test]
async fn a_cloned_value_is_kept_decoded_and_still_dropped_on_a_change() {
    use std::sync::atomic::Ordering::SeqCst;
    let server = RedisServer::start();
    let (a, b, _) = pair(&server, &[]).await;
    assert_eq!(counted(&a.cache, "v", "one", true).await, Counted("one".into()));
    // B's first read decodes what Redis answered and keeps it decoded.
    assert_eq!(counted(&b.cache, "v", "unused", true).await, Counted("one".into()));
    let decoded = DECODED.load(SeqCst);
    let hits = b.near().stats().hits;
    for _ in 0..3 {
        assert_eq!(counted(&b.cache, "v", "unused", true).await, Counted("one".into()));
    }
    assert_eq!(b.near().stats().hits, hits + 3, "answered in process");
    assert_eq!(DECODED.load(SeqCst), decoded, "cloned, not decoded");
    // The same entry read through `compute_with` is decoded from its stored form.
    assert_eq!(counted(&b.cache, "v", "unused", false).await, Counted("one".into()));
    assert_eq!(b.near().stats().hits, hits + 4);
    assert_eq!(DECODED.load(SeqCst), decoded + 1, "decoded from the stored form");
    // A's purge and new value reach B's decoded copy too.
    a.cache.invalidate_tags(["tag:v"]).await.unwrap();
    assert_eq!(counted(&a.cache, "v", "two", true).await, Counted("two".into()));
    b.store.sync_invalidations().await;
    assert_eq!(counted(&b.cache, "v", "unused", true).await, Counted("two".into()));
}
