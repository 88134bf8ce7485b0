//! Computed values on the in-memory store: single-flight in a process and across caches
//! sharing a store, dependencies and their purges, explicit tags, early refresh, serve-stale,
//! lock waits, and values computed across a write. Time is a manual clock, early refresh a
//! manual random source; concurrency is made deterministic with gates, never with sleeps.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{
    Cache, CacheError, ComputeOptions, Computed, MemoryStore, RecordId,
    clock::ManualClock,
    compute::{ComputedStats, ManualRandom},
    dependencies::{self, DependencyScope},
    origin::OriginError,
    query::IndexQuery,
    schema::{EntitySchema, IndexEntries},
    store::{
        ComputeLock, ComputedLookup, ComputedWrite, FillToken, Lease, LockAttempt, LockWait, Lookup, QueryLookup,
        RecordWrite, RemoveMode, Store, StoreResult, StoreStats, WriteMode, WriteOutcome,
    },
    testing::MemoryOrigin,
};
use common::{Project, Status, id, project};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

const TTL: Duration = Duration::from_secs(100);
const NAME: &str = "test_value";

// ------------------------------------------------------------------ harness

/// A store in front of a shared [`MemoryStore`] that counts its calls: to show that a waiter
/// waits in one call instead of polling.
#[derive(Clone)]
struct CountingStore {
    inner: MemoryStore,
    calls: Arc<Mutex<HashMap<&'static str, usize>>>,
}

impl CountingStore {
    fn new(inner: MemoryStore) -> Self {
        Self {
            inner,
            calls: Arc::default(),
        }
    }

    fn count(&self, method: &'static str) {
        *self.calls.lock().unwrap().entry(method).or_default() += 1;
    }

    fn calls(&self, method: &str) -> usize {
        self.calls.lock().unwrap().get(method).copied().unwrap_or(0)
    }

    fn total(&self) -> usize {
        self.calls.lock().unwrap().values().sum()
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        self.count("get");
        self.inner.get(entity, id).await
    }
    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        self.count("get_many");
        self.inner.get_many(entity, ids).await
    }
    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        self.count("lease");
        self.inner.lease(entity, ids, ttl).await
    }
    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        self.count("put");
        self.inner.put(entity, writes, mode).await
    }
    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        self.count("remove");
        self.inner.remove(entity, ids, mode).await
    }
    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        self.count("query");
        self.inner.query(entity, query).await
    }
    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<cache_core::store::QueryFill> {
        self.count("complete_query");
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
        self.count("get_value");
        self.inner.get_value(key).await
    }
    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        self.count("put_value");
        self.inner.put_value(key, value, ttl, tags).await
    }
    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        self.count("purge_tags");
        self.inner.purge_tags(tags).await
    }
    async fn get_computed(&self, key: &str) -> StoreResult<ComputedLookup> {
        self.count("get_computed");
        self.inner.get_computed(key).await
    }
    async fn put_computed(&self, key: &str, write: &ComputedWrite) -> StoreResult<bool> {
        self.count("put_computed");
        self.inner.put_computed(key, write).await
    }
    async fn lock_computed(&self, key: &str, ttl: Duration) -> StoreResult<LockAttempt> {
        self.count("lock_computed");
        self.inner.lock_computed(key, ttl).await
    }
    async fn unlock_computed(&self, key: &str, lock: ComputeLock) -> StoreResult<()> {
        self.count("unlock_computed");
        self.inner.unlock_computed(key, lock).await
    }
    async fn extend_computed(&self, key: &str, lock: ComputeLock, ttl: Duration) -> StoreResult<bool> {
        self.count("extend_computed");
        self.inner.extend_computed(key, lock, ttl).await
    }
    async fn wait_computed(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        self.count("wait_computed");
        self.inner.wait_computed(key, timeout).await
    }
}

/// One application instance: a cache over the shared memory store, with its own counters.
struct Instance {
    cache: Cache,
    store: CountingStore,
}

struct Rig {
    memory: MemoryStore,
    origin: MemoryOrigin,
    clock: ManualClock,
    random: ManualRandom,
}

impl Rig {
    fn new() -> Self {
        let clock = ManualClock::new();
        Self {
            memory: MemoryStore::builder().clock(clock.clone()).build(),
            origin: MemoryOrigin::new(),
            clock,
            // ln(1) = 0: no early refresh unless a test asks for it.
            random: ManualRandom::new(1.0),
        }
    }

    /// An instance; several share the store and the origin as processes share Redis.
    fn instance(&self) -> Instance {
        let store = CountingStore::new(self.memory.clone());
        let cache = Cache::builder(store.clone(), self.origin.clone())
            .ttl_jitter(0.0)
            .clock(self.clock.clone())
            .random(self.random.clone())
            .build()
            .unwrap();
        Instance { cache, store }
    }

    fn seed(&self, records: &[Project]) {
        for r in records {
            self.origin.put(r).unwrap();
        }
    }
}

fn stats(cache: &Cache) -> ComputedStats {
    cache.computed_stats().get(NAME).copied().unwrap_or_default()
}

/// Yields until `cache`'s counts satisfy `check` (other tasks run meanwhile; no sleeping).
async fn until(cache: &Cache, check: impl Fn(&ComputedStats) -> bool) {
    for _ in 0..100_000 {
        if check(&stats(cache)) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("never reached; stats: {:?}", stats(cache));
}

/// Holds computations until opened, and counts those that arrived.
#[derive(Clone)]
struct Gate {
    open: Arc<watch::Sender<bool>>,
    arrived: Arc<watch::Sender<usize>>,
}

impl Gate {
    fn new() -> Self {
        Self {
            open: Arc::new(watch::Sender::new(false)),
            arrived: Arc::new(watch::Sender::new(0)),
        }
    }

    async fn pass(&self) {
        self.arrived.send_modify(|n| *n += 1);
        let mut open = self.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }

    async fn arrived(&self, n: usize) {
        let mut rx = self.arrived.subscribe();
        let _ = rx.wait_for(|a| *a >= n).await;
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    fn count(&self) -> usize {
        *self.arrived.borrow()
    }
}

/// What the computations compute: the points of an event's projects, and which run made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Total {
    points: i64,
    run: usize,
}

/// Sums the points of the projects of `event` read through the cache (an index query: the
/// value depends on `projects?event=...`), counting the run.
async fn event_total(cache: &Cache, event: &str, runs: &Gate) -> Result<Total, CacheError> {
    runs.arrived.send_modify(|n| *n += 1);
    let projects = cache.query(Project::by_event(&id(event))).await?;
    Ok(Total {
        points: projects.iter().map(|p| p.points).sum(),
        run: runs.count(),
    })
}

/// The points of one project read through the cache (depends on `projects:<id>`).
async fn project_points(cache: &Cache, rid: &str, runs: &Gate) -> Result<Total, CacheError> {
    runs.arrived.send_modify(|n| *n += 1);
    let p: Option<Project> = cache.get(&id(rid)).await?;
    Ok(Total {
        points: p.map_or(0, |p| p.points),
        run: runs.count(),
    })
}

fn options() -> ComputeOptions {
    ComputeOptions::new(TTL).name(NAME)
}

fn boom() -> CacheError {
    CacheError::from(OriginError::failed("the computation failed"))
}

// ------------------------------------------------------------------ single-flight

#[tokio::test]
async fn concurrent_callers_in_one_process_share_one_computation() {
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", Status::Draft, 3, 1)]);
    let a = rig.instance();
    let gate = Gate::new();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (cache, gate) = (a.cache.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute("total:recE1", &options(), || async {
                        gate.pass().await;
                        event_total(&cache, "recE1", &Gate::new()).await
                    })
                    .await
            })
        })
        .collect();
    gate.arrived(1).await;
    until(&a.cache, |s| s.coalesced == 7).await;
    gate.open();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap().points, 3);
    }
    assert_eq!(gate.count(), 1, "one computation for eight callers");
    let s = stats(&a.cache);
    assert_eq!((s.computations, s.misses, s.coalesced), (1, 8, 7));
    let again: Total = a
        .cache
        .get_or_compute("total:recE1", &options(), || async { Err(boom()) })
        .await
        .unwrap();
    assert_eq!(again.points, 3, "then answered from the store");
    assert_eq!(stats(&a.cache).hits, 1);
}

#[tokio::test]
async fn instances_sharing_a_store_compute_once_and_the_others_wait_without_polling() {
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", Status::Draft, 5, 1)]);
    let (a, b) = (rig.instance(), rig.instance());
    let gate = Gate::new();
    let owner = {
        let (cache, gate) = (a.cache.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("total:recE1", &options(), || async {
                    gate.pass().await;
                    event_total(&cache, "recE1", &Gate::new()).await
                })
                .await
        })
    };
    gate.arrived(1).await;
    let waiter = {
        let cache = b.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute::<Total, CacheError, _, _>("total:recE1", &options(), || async {
                    panic!("the waiter must not compute")
                })
                .await
        })
    };
    until(&b.cache, |s| s.lock_waits == 1).await;
    // Let the waiter settle into its wait, then check it did not poll meanwhile.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let before = b.store.total();
    gate.open();
    let owned: Total = owner.await.unwrap().unwrap();
    let waited: Total = waiter.await.unwrap().unwrap();
    assert_eq!(owned, waited, "the waiter answers the owner's value");
    assert_eq!(gate.count(), 1, "one computation across both instances");
    assert_eq!(b.store.calls("wait_computed"), 1, "one wait, no polling");
    assert!(
        b.store.total() - before <= 1,
        "nothing but the wait's answer after the owner finished"
    );
    assert_eq!(b.store.calls("get_computed"), 1);
    let s = stats(&b.cache);
    assert_eq!((s.computations, s.lock_waits, s.lock_wait_timeouts), (0, 1, 0));
}

#[tokio::test]
async fn a_waiter_whose_owner_fails_computes_itself_at_once() {
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", Status::Draft, 5, 1)]);
    let (a, b) = (rig.instance(), rig.instance());
    let gate = Gate::new();
    let patient = options().lock_wait(Duration::from_secs(3600));
    let owner = {
        let (cache, gate, opts) = (a.cache.clone(), gate.clone(), patient.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute::<Total, _, _, _>("total:recE1", &opts, || async {
                    gate.pass().await;
                    Err(boom())
                })
                .await
        })
    };
    gate.arrived(1).await;
    let runs = Gate::new();
    let waiter = {
        let (cache, runs, opts) = (b.cache.clone(), runs.clone(), patient.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("total:recE1", &opts, || event_total(&cache, "recE1", &runs))
                .await
        })
    };
    until(&b.cache, |s| s.lock_waits == 1).await;
    gate.open();
    assert!(owner.await.unwrap().is_err());
    // An hour-long bound: finishing at all shows the failure woke the waiter.
    let total = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken by the failure, not by its bound")
        .unwrap()
        .unwrap();
    assert_eq!(total.points, 5);
    assert_eq!(runs.count(), 1, "the waiter computed itself");
    assert_eq!(b.store.calls("wait_computed"), 1);
    let s = stats(&b.cache);
    assert_eq!((s.lock_waits, s.lock_wait_timeouts, s.computations), (1, 0, 1));
}

#[tokio::test(start_paused = true)]
async fn a_wait_ends_at_its_bound_and_the_waiter_computes() {
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", Status::Draft, 5, 1)]);
    let (a, b) = (rig.instance(), rig.instance());
    let gate = Gate::new();
    let owner = {
        let (cache, gate) = (a.cache.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("total:recE1", &options(), || async {
                    gate.pass().await;
                    event_total(&cache, "recE1", &Gate::new()).await
                })
                .await
        })
    };
    gate.arrived(1).await;
    let runs = Gate::new();
    // Paused tokio time: the 5 s bound passes as soon as everything waits.
    let total = b
        .cache
        .get_or_compute("total:recE1", &options().lock_wait(Duration::from_secs(5)), || {
            event_total(&b.cache, "recE1", &runs)
        })
        .await
        .unwrap();
    assert_eq!((total.points, runs.count()), (5, 1));
    assert_eq!(stats(&b.cache).lock_wait_timeouts, 1);
    gate.open();
    owner.await.unwrap().unwrap();
}

#[tokio::test]
async fn errors_are_shared_with_waiters_and_never_cached() {
    let rig = Rig::new();
    let a = rig.instance();
    let gate = Gate::new();
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (cache, gate) = (a.cache.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute::<Total, _, _, _>("k", &options(), || async {
                        gate.pass().await;
                        Err(boom())
                    })
                    .await
            })
        })
        .collect();
    gate.arrived(1).await;
    until(&a.cache, |s| s.coalesced == 3).await;
    gate.open();
    let mut errors = Vec::new();
    for caller in callers {
        errors.push(caller.await.unwrap().unwrap_err());
    }
    assert!(errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])), "one error, shared");
    assert_eq!(gate.count(), 1);
    let runs = Gate::new();
    let total = a
        .cache
        .get_or_compute("k", &options(), || async {
            runs.arrived.send_modify(|n| *n += 1);
            Ok::<_, CacheError>(Total { points: 1, run: 1 })
        })
        .await
        .unwrap();
    assert_eq!((total.points, runs.count()), (1, 1), "the error was not cached");
}

#[tokio::test]
async fn a_cancelled_computation_hands_over_to_its_waiters() {
    let rig = Rig::new();
    let (a, b) = (rig.instance(), rig.instance());
    let gate = Gate::new();
    let leader = {
        let (cache, gate) = (a.cache.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute::<Total, CacheError, _, _>("k", &options(), || async {
                    gate.pass().await;
                    unreachable!("cancelled before the gate opens")
                })
                .await
        })
    };
    gate.arrived(1).await;
    let joiner = {
        let cache = a.cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute("k", &options(), || async {
                    Ok::<_, CacheError>(Total { points: 2, run: 2 })
                })
                .await
        })
    };
    until(&a.cache, |s| s.coalesced == 1).await;
    leader.abort();
    // The cancelled leader's lock is released (not left to its 30 s TTL), so the joiner took
    // over at once.
    let took_over = tokio::time::timeout(Duration::from_secs(5), joiner).await;
    assert_eq!(took_over.expect("not waiting out the lock").unwrap().unwrap().points, 2);
    let relocked = b.store.lock_computed("k", Duration::from_secs(1)).await.unwrap();
    assert!(matches!(relocked, LockAttempt::Acquired(_)), "the lock is free");
    assert_eq!(stats(&a.cache).lock_wait_timeouts, 0);
}

// ------------------------------------------------------------------ dependencies

#[tokio::test]
async fn a_record_change_removes_the_values_that_read_it_and_leaves_the_others() {
    let rig = Rig::new();
    rig.seed(&[
        project("recP1", "recE1", Status::Draft, 1, 1),
        project("recP2", "recE2", Status::Draft, 2, 1),
        project("recP3", "recE1", Status::Draft, 3, 1),
    ]);
    let a = rig.instance();
    let cache = &a.cache;
    let opts = options();
    let (r1, r2, re1) = (Gate::new(), Gate::new(), Gate::new());
    let p1 = || cache.get_or_compute("points:recP1", &opts, || project_points(cache, "recP1", &r1));
    let p2 = || cache.get_or_compute("points:recP2", &opts, || project_points(cache, "recP2", &r2));
    let e1 = || cache.get_or_compute("total:recE1", &opts, || event_total(cache, "recE1", &re1));
    assert_eq!(p1().await.unwrap().points, 1);
    assert_eq!(p2().await.unwrap().points, 2);
    assert_eq!(e1().await.unwrap().points, 4);

    // An upsert of recP1: the values that read it go, the other stays.
    let changed = project("recP1", "recE1", Status::Draft, 10, 2);
    rig.origin.put(&changed).unwrap();
    cache.upsert(&changed).await.unwrap();
    assert_eq!(p1().await.unwrap(), Total { points: 10, run: 2 });
    assert_eq!(e1().await.unwrap(), Total { points: 13, run: 2 });
    assert_eq!(p2().await.unwrap(), Total { points: 2, run: 1 }, "untouched");

    // A new project entering recE1's index result removes the total only.
    let joined = project("recP4", "recE1", Status::Draft, 100, 1);
    rig.origin.put(&joined).unwrap();
    cache.upsert(&joined).await.unwrap();
    assert_eq!(e1().await.unwrap(), Total { points: 113, run: 3 });
    assert_eq!(p1().await.unwrap().run, 2);

    // An invalidation, then a delete.
    cache.invalidate::<Project>(&id("recP2")).await.unwrap();
    assert_eq!(p2().await.unwrap().run, 2);
    assert!(cache.delete::<Project>(&id("recP3")).await.unwrap());
    assert_eq!(e1().await.unwrap(), Total { points: 110, run: 4 });
    assert_eq!(p1().await.unwrap().run, 2);
    assert_eq!(p2().await.unwrap().run, 2);
}

#[tokio::test]
async fn explicit_tags_and_tags_recorded_inside_are_invalidated() {
    static SITE: Computed<String, u32> = Computed::new(NAME).ttl(TTL).tags(&["site"]);
    let rig = Rig::new();
    let a = rig.instance();
    let runs = Gate::new();
    let compute = |label: &str| {
        let label = label.to_owned();
        let runs = runs.clone();
        let cache = a.cache.clone();
        async move {
            SITE.get(&cache, &label, |label| async move {
                runs.arrived.send_modify(|n| *n += 1);
                dependencies::record_tags([format!("event:{label}")]);
                Ok::<_, CacheError>(u32::try_from(runs.count()).unwrap())
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(compute("recX").await, 1);
    assert_eq!(compute("recY").await, 2);
    assert_eq!(a.cache.invalidate_tags(["unrelated"]).await.unwrap(), 0);
    assert_eq!((compute("recX").await, compute("recY").await), (1, 2), "still cached");
    assert_eq!(a.cache.invalidate_tags(["event:recX"]).await.unwrap(), 1);
    assert_eq!(compute("recX").await, 3, "the recorded tag removed recX");
    assert_eq!(compute("recY").await, 2);
    assert_eq!(a.cache.invalidate_tags(["site"]).await.unwrap(), 2);
    assert_eq!((compute("recX").await, compute("recY").await), (4, 5));
}

#[tokio::test]
async fn a_value_computed_across_a_write_is_answered_but_not_stored() {
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", Status::Draft, 1, 1)]);
    let a = rig.instance();
    let gate = Gate::new();
    let runs = Gate::new();
    let stale = {
        let (cache, gate, runs) = (a.cache.clone(), gate.clone(), runs.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("points:recP1", &options(), || async {
                    let read = project_points(&cache, "recP1", &runs).await;
                    gate.pass().await;
                    read
                })
                .await
        })
    };
    gate.arrived(1).await;
    // The computation has read recP1; now it changes.
    let changed = project("recP1", "recE1", Status::Draft, 7, 2);
    rig.origin.put(&changed).unwrap();
    a.cache.upsert(&changed).await.unwrap();
    // A miss after the write does not join the computation that read the old record, nor
    // wait for its lock (released by the purge): it computes from the new record at once.
    let fresh: Total = tokio::time::timeout(
        Duration::from_secs(5),
        a.cache
            .get_or_compute("points:recP1", &options(), || project_points(&a.cache, "recP1", &runs)),
    )
    .await
    .expect("not waiting for the detached computation")
    .unwrap();
    assert_eq!(fresh.points, 7);
    gate.open();
    assert_eq!(
        stale.await.unwrap().unwrap().points,
        1,
        "its caller began before the write"
    );
    let s = stats(&a.cache);
    assert_eq!((s.coalesced, s.lock_waits), (0, 0));
    assert_eq!(s.refused, 1, "the old value was refused");
    let next: Total = a
        .cache
        .get_or_compute("points:recP1", &options(), || project_points(&a.cache, "recP1", &runs))
        .await
        .unwrap();
    assert_eq!(next.points, 7, "never the value computed from the old record");
}

// ------------------------------------------------------------------ early refresh

/// A computation that takes `cost` on the injected clock.
async fn costly(rig: &Rig, runs: &Gate, cost: Duration) -> Result<Total, CacheError> {
    runs.arrived.send_modify(|n| *n += 1);
    rig.clock.advance(cost);
    Ok(Total {
        points: 0,
        run: runs.count(),
    })
}

#[tokio::test]
async fn early_refresh_recomputes_a_hot_value_before_it_expires() {
    let rig = Rig::new();
    let a = rig.instance();
    let runs = Gate::new();
    let cost = Duration::from_secs(10);
    let opts = options();
    let read = || a.cache.get_or_compute("hot", &opts, || costly(&rig, &runs, cost));
    assert_eq!(read().await.unwrap().run, 1);
    // rand = 1/e: ln(rand) = -1, so a read refreshes once now + delta * beta >= expiry, that
    // is 10 s before the value expires (100 s after it was stored).
    rig.random.set((-1.0f64).exp());
    let step = Duration::from_secs(5);
    let mut refreshed_at = None;
    for i in 1..=30u64 {
        rig.clock.advance(step);
        let value = read().await.unwrap();
        if value.run == 2 && refreshed_at.is_none() {
            refreshed_at = Some(i * 5);
        }
    }
    assert_eq!(
        refreshed_at,
        Some(90),
        "refreshed at expiry - delta * beta, before expiry"
    );
    let s = stats(&a.cache);
    assert_eq!(
        s.misses, 1,
        "only the first read missed: the value never expired under reads"
    );
    assert_eq!((s.early_refreshes, s.hits), (1, 29));
}

#[tokio::test]
async fn without_early_refresh_a_hot_value_expires_under_reads() {
    let rig = Rig::new();
    let a = rig.instance();
    let runs = Gate::new();
    let opts = options();
    let read = || {
        a.cache
            .get_or_compute("hot", &opts, || costly(&rig, &runs, Duration::from_secs(10)))
    };
    read().await.unwrap();
    // rand = 1 (ln = 0): XFetch never fires; the value expires at 100 s and a read misses.
    for _ in 0..30 {
        rig.clock.advance(Duration::from_secs(5));
        read().await.unwrap();
    }
    let s = stats(&a.cache);
    assert_eq!((s.early_refreshes, s.misses), (0, 2));
}

#[tokio::test]
async fn beta_scales_the_lead_and_zero_disables_it() {
    let rig = Rig::new();
    let a = rig.instance();
    let runs = Gate::new();
    rig.random.set((-1.0f64).exp());
    let early = options().beta(3.0);
    a.cache
        .get_or_compute("b3", &early, || costly(&rig, &runs, Duration::from_secs(10)))
        .await
        .unwrap();
    rig.clock.advance(Duration::from_secs(69));
    a.cache
        .get_or_compute("b3", &early, || costly(&rig, &runs, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(
        stats(&a.cache).early_refreshes,
        0,
        "31 s before expiry: not yet, the lead is 30 s"
    );
    rig.clock.advance(Duration::from_secs(1));
    a.cache
        .get_or_compute("b3", &early, || costly(&rig, &runs, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(stats(&a.cache).early_refreshes, 1, "70 s: 30 s before expiry");

    let never = options().beta(0.0);
    a.cache
        .get_or_compute("b0", &never, || costly(&rig, &runs, Duration::from_secs(10)))
        .await
        .unwrap();
    rig.clock.advance(Duration::from_secs(99));
    rig.random.set(1e-300);
    a.cache
        .get_or_compute("b0", &never, || costly(&rig, &runs, Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(stats(&a.cache).early_refreshes, 1, "beta 0: never early");
}

#[tokio::test]
async fn a_failed_early_refresh_answers_the_fresh_value() {
    let rig = Rig::new();
    let a = rig.instance();
    let runs = Gate::new();
    let first: Total = a
        .cache
        .get_or_compute("k", &options(), || costly(&rig, &runs, Duration::from_secs(1)))
        .await
        .unwrap();
    rig.clock.advance(Duration::from_secs(99));
    rig.random.set(1e-300);
    let during: Total = a
        .cache
        .get_or_compute("k", &options(), || async { Err(boom()) })
        .await
        .unwrap();
    assert_eq!(during, first);
    let s = stats(&a.cache);
    assert_eq!((s.early_refreshes, s.errors), (1, 1));
}

// ------------------------------------------------------------------ serve-stale

#[tokio::test]
async fn serve_stale_answers_an_expired_value_within_its_bound_only() {
    let rig = Rig::new();
    let a = rig.instance();
    let opts = options().serve_stale(Duration::from_secs(30));
    let ok = || async { Ok::<_, CacheError>(Total { points: 1, run: 1 }) };
    a.cache.get_or_compute("k", &opts, ok).await.unwrap();
    rig.clock.advance(TTL + Duration::from_secs(29));
    let stale: Total = a
        .cache
        .get_or_compute("k", &opts, || async { Err(boom()) })
        .await
        .unwrap();
    assert_eq!(stale.points, 1, "29 s past expiry, within the 30 s bound");
    assert_eq!(stats(&a.cache).stale_served, 1);
    let plain = a
        .cache
        .get_or_compute::<Total, _, _, _>("k", &options(), || async { Err(boom()) })
        .await;
    assert!(plain.is_err(), "without serve_stale the error is answered");
    rig.clock.advance(Duration::from_secs(2));
    let beyond = a
        .cache
        .get_or_compute::<Total, _, _, _>("k", &opts, || async { Err(boom()) })
        .await;
    assert!(beyond.is_err(), "31 s past expiry: beyond the bound");
    assert_eq!(stats(&a.cache).stale_served, 1);
}

// ------------------------------------------------------------------ the rest

#[tokio::test]
async fn reads_record_the_values_dependencies_into_the_enclosing_scope() {
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", Status::Draft, 1, 1)]);
    let a = rig.instance();
    let runs = Gate::new();
    let opts = options().tags(["site"]);
    let request = || async {
        let t = DependencyScope::new();
        let total: Total = dependencies::scope(
            t.clone(),
            a.cache
                .get_or_compute("total:recE1", &opts, || event_total(&a.cache, "recE1", &runs)),
        )
        .await
        .unwrap();
        (total, t.snapshot())
    };
    let (_, missed) = request().await;
    let (_, hit) = request().await;
    let expected = ["projects?event=recE1", "site"];
    assert_eq!(missed.tags, expected, "the computation's reads count for the request");
    assert_eq!(hit.tags, expected, "a hit depends on what the value depends on");
    assert_eq!(
        (missed.misses, hit.hits),
        (2, 1),
        "the value's miss and the query's; then one hit"
    );
}

#[tokio::test]
async fn typed_values_are_keyed_by_their_arguments() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct EventCard {
        event: RecordId,
        projects: usize,
    }
    static CARDS: Computed<RecordId, EventCard> = Computed::new(NAME).ttl(TTL).version(2);
    let rig = Rig::new();
    rig.seed(&[
        project("recP1", "recE1", Status::Draft, 1, 1),
        project("recP2", "recE1", Status::Submitted, 1, 1),
    ]);
    let a = rig.instance();
    let card = |event: &'static str| {
        let cache = a.cache.clone();
        async move {
            let reader = cache.clone();
            CARDS
                .get(&cache, &id(event), |event| async move {
                    let projects = reader.query(Project::by_event(&event)).await?.len();
                    Ok::<_, CacheError>(EventCard { event, projects })
                })
                .await
                .unwrap()
        }
    };
    assert_eq!(card("recE1").await.projects, 2);
    assert_eq!(card("recE2").await.projects, 0);
    let key = CARDS.key(&id("recE1")).unwrap();
    assert!(
        key.starts_with(&format!("{NAME}:params_")) && key.ends_with(":v2"),
        "{key}"
    );
    assert!(
        rig.memory.get_value(&key).await.unwrap().is_some(),
        "stored under its key"
    );
    assert_eq!(stats(&a.cache).misses, 2);
    card("recE1").await;
    assert_eq!(stats(&a.cache).hits, 1);
}

#[tokio::test]
async fn a_disabled_cache_computes_every_time() {
    let rig = Rig::new();
    let cache = Cache::builder(rig.memory.clone(), rig.origin.clone())
        .enabled(false)
        .build()
        .unwrap();
    let runs = Gate::new();
    for _ in 0..2 {
        cache
            .get_or_compute("k", &options(), || event_total(&cache, "recE1", &runs))
            .await
            .unwrap();
    }
    assert_eq!(runs.count(), 2);
    assert_eq!(cache.computed_stats()[NAME].bypasses, 2);
    assert_eq!(rig.memory.get_value("k").await.unwrap(), None);
}
