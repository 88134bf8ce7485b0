//! Computed values on real servers: one computation for many callers in a process and across
//! instances sharing Redis (waiters block in `BLPOP` on their own connection, never polling),
//! dependencies purged by record changes, tag invalidation, early refresh, serve-stale, a
//! failed owner waking its waiters, values computed across a write refused, and all of it on
//! a cluster.
//!
//! Every test starts its own server (or cluster): the command counts are the test's own.
//! Logical time is a manual clock given to the caches; Redis keeps values on real time, longer.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cache_core::{
    Cache, CacheError, Cacheable, ComputeOptions, Link, RecordId,
    clock::ManualClock,
    compute::{ComputedStats, ManualRandom},
    origin::OriginError,
    testing::MemoryOrigin,
};
use cache_redis::{
    RedisStore, RedisStoreBuilder,
    testing::{RedisCluster, RedisServer, unique_namespace},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

const TTL: Duration = Duration::from_secs(100);
const NAME: &str = "redis_value";

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "events", source_table = "Events", ttl = "8h")]
struct Event {
    #[cache(id)]
    id: RecordId,
    name: String,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "projects", source_table = "Projects", ttl = "8h")]
struct Project {
    #[cache(id)]
    id: RecordId,
    event: Link<Event>,
    #[sortable]
    points: i64,
    #[cache(version)]
    version: i64,
}

fn id(s: &str) -> RecordId {
    RecordId::new(s).unwrap()
}

fn project(rid: &str, event: &str, points: i64, version: i64) -> Project {
    Project {
        id: id(rid),
        event: Link::new(id(event)),
        points,
        version,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Total {
    points: i64,
    run: usize,
}

// ------------------------------------------------------------------ harness

/// Instances of one application sharing a Redis namespace and an origin.
struct Rig {
    namespace: String,
    origin: MemoryOrigin,
    clock: ManualClock,
    random: ManualRandom,
}

impl Rig {
    fn new() -> Self {
        Self {
            namespace: unique_namespace(),
            origin: MemoryOrigin::new(),
            clock: ManualClock::new(),
            random: ManualRandom::new(1.0),
        }
    }

    /// One instance: its own connection (as another process would have) and its own cache.
    /// Generous timeouts: on a loaded test machine a store call timing out would be answered
    /// around (fail open) and, say, a purge skipped.
    async fn instance(&self, builder: RedisStoreBuilder) -> (Cache, RedisStore) {
        let store = builder
            .namespace(&self.namespace)
            .timeouts(Duration::from_secs(10), Duration::from_secs(10))
            .connect()
            .await
            .unwrap();
        let cache = Cache::builder(store.clone(), self.origin.clone())
            .ttl_jitter(0.0)
            .clock(self.clock.clone())
            .random(self.random.clone())
            .build()
            .unwrap();
        (cache, store)
    }

    fn seed(&self, records: &[Project]) {
        for r in records {
            self.origin.put(r).unwrap();
        }
    }
}

fn stats(cache: &Cache) -> ComputedStats {
    let stats = cache.computed_stats().get(NAME).copied().unwrap_or_default();
    assert_eq!(
        (stats.store_errors, cache.stats().total().store_errors),
        (0, 0),
        "no store call failed: the test's premise"
    );
    stats
}

fn options() -> ComputeOptions {
    ComputeOptions::new(TTL).name(NAME)
}

fn boom() -> CacheError {
    CacheError::from(OriginError::failed("the computation failed"))
}

/// Counts computations and holds them until opened.
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

    fn opened() -> Self {
        let gate = Self::new();
        gate.open();
        gate
    }

    async fn pass(&self) -> usize {
        self.arrived.send_modify(|n| *n += 1);
        let run = *self.arrived.borrow();
        let _ = self.open.subscribe().wait_for(|o| *o).await;
        run
    }

    async fn arrived(&self, n: usize) {
        let _ = self.arrived.subscribe().wait_for(|a| *a >= n).await;
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    fn count(&self) -> usize {
        *self.arrived.borrow()
    }
}

/// The points of an event's projects read through `cache` (an index query), once past `gate`.
async fn event_total(cache: &Cache, event: &str, gate: &Gate) -> Result<Total, CacheError> {
    let run = gate.pass().await;
    let projects = cache.query(Project::by_event(&id(event))).await?;
    Ok(Total {
        points: projects.iter().map(|p| p.points).sum(),
        run,
    })
}

/// The points of one project read through `cache`.
async fn project_points(cache: &Cache, rid: &str, gate: &Gate) -> Result<Total, CacheError> {
    let run = gate.pass().await;
    let p: Option<Project> = cache.get(&id(rid)).await?;
    Ok(Total {
        points: p.map_or(0, |p| p.points),
        run,
    })
}

/// A field of `INFO <section>` summed over `nodes`.
fn info_field(nodes: &[RedisServer], section: &str, field: &str) -> u64 {
    nodes
        .iter()
        .map(|node| {
            let info: String = node.query(redis::cmd("INFO").arg(section));
            info.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// How many times `command` ran on `nodes` (`INFO commandstats`).
fn command_calls(nodes: &[RedisServer], command: &str) -> u64 {
    nodes
        .iter()
        .map(|node| {
            let info: String = node.query(redis::cmd("INFO").arg("commandstats"));
            info.lines()
                .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:calls=")))
                .and_then(|rest| rest.split(',').next()?.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Waits until `n` clients are blocked (in `BLPOP`) on `nodes`: the server's word that a
/// waiter waits, rather than a sleep.
async fn until_blocked(nodes: &[RedisServer], n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while info_field(nodes, "clients", "blocked_clients") < n {
        assert!(Instant::now() < deadline, "no client ever blocked");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ------------------------------------------------------------------ one server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_in_one_process_share_one_computation() {
    let server = RedisServer::start();
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", 3, 1)]);
    let (cache, _) = rig.instance(RedisStore::builder(server.url())).await;
    let gate = Gate::new();
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (cache, gate) = (cache.clone(), gate.clone());
            tokio::spawn(async move {
                cache
                    .get_or_compute("total:recE1", &options(), || event_total(&cache, "recE1", &gate))
                    .await
            })
        })
        .collect();
    gate.arrived(1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats(&cache).coalesced < 7 {
        assert!(Instant::now() < deadline, "{:?}", stats(&cache));
        tokio::task::yield_now().await;
    }
    gate.open();
    for caller in callers {
        assert_eq!(caller.await.unwrap().unwrap().points, 3);
    }
    assert_eq!(gate.count(), 1, "one computation for eight callers");
    assert_eq!(
        command_calls(std::slice::from_ref(&server), "blpop"),
        0,
        "nobody waited on Redis"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_compute_once_and_the_other_waits_in_one_blpop() {
    let server = RedisServer::start();
    let nodes = std::slice::from_ref(&server);
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", 5, 1)]);
    let (a, _) = rig.instance(RedisStore::builder(server.url())).await;
    let (b, b_store) = rig.instance(RedisStore::builder(server.url())).await;
    let gate = Gate::new();
    let owner = {
        let (cache, gate) = (a.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("total:recE1", &options(), || event_total(&cache, "recE1", &gate))
                .await
        })
    };
    gate.arrived(1).await;
    let waiter = {
        let cache = b.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute::<Total, CacheError, _, _>("total:recE1", &options(), || async {
                    panic!("the waiter must not compute")
                })
                .await
        })
    };
    until_blocked(nodes, 1).await;
    // The wait blocks its own connection, never the store's shared one.
    tokio::time::timeout(Duration::from_millis(500), cache_core::store::Store::ping(&b_store))
        .await
        .expect("the shared connection answers while a waiter blocks")
        .unwrap();

    let (results, commands) = server
        .count_commands(async {
            gate.open();
            (owner.await.unwrap().unwrap(), waiter.await.unwrap().unwrap())
        })
        .await;
    let (owned, waited) = results;
    assert_eq!(owned, waited, "the waiter answers the owner's value");
    assert_eq!(gate.count(), 1, "one computation across both instances");
    assert!(
        !commands.iter().any(|c| c == "blpop"),
        "the waiter did not wait again: {commands:?}"
    );
    assert!(
        commands.iter().filter(|c| *c == "get").count() <= 1,
        "the waiter read the value once after its wake-up, without polling: {commands:?}"
    );
    assert_eq!(command_calls(nodes, "blpop"), 1, "one blocking wait in all");
    let s = stats(&b);
    assert_eq!((s.computations, s.lock_waits, s.lock_wait_timeouts), (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_owner_fails_stops_waiting_and_computes_itself() {
    let server = RedisServer::start();
    let nodes = std::slice::from_ref(&server);
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", 5, 1)]);
    let (a, _) = rig.instance(RedisStore::builder(server.url())).await;
    let (b, _) = rig.instance(RedisStore::builder(server.url())).await;
    let patient = options().lock_wait(Duration::from_secs(3600));
    let gate = Gate::new();
    let owner = {
        let (cache, gate, opts) = (a.clone(), gate.clone(), patient.clone());
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
    let runs = Gate::opened();
    let waiter = {
        let (cache, runs, opts) = (b.clone(), runs.clone(), patient.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("total:recE1", &opts, || event_total(&cache, "recE1", &runs))
                .await
        })
    };
    until_blocked(nodes, 1).await;
    gate.open();
    assert!(owner.await.unwrap().is_err());
    // An hour-long bound: finishing at all shows the failure woke the waiter.
    let total = tokio::time::timeout(Duration::from_secs(30), waiter)
        .await
        .expect("woken by the owner's failure")
        .unwrap()
        .unwrap();
    assert_eq!((total.points, runs.count()), (5, 1), "the waiter computed itself");
    let s = stats(&b);
    assert_eq!((s.lock_waits, s.lock_wait_timeouts, s.computations), (1, 0, 1));
    assert_eq!(command_calls(nodes, "blpop"), 1, "one blocking wait, no polling");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_changes_remove_the_values_that_read_them_and_tags_invalidate() {
    let server = RedisServer::start();
    let rig = Rig::new();
    rig.seed(&[
        project("recP1", "recE1", 1, 1),
        project("recP2", "recE2", 2, 1),
        project("recP3", "recE1", 3, 1),
    ]);
    let (cache, _) = rig.instance(RedisStore::builder(server.url())).await;
    let cache = &cache;
    let (r1, r2, re1) = (Gate::opened(), Gate::opened(), Gate::opened());
    let opts = options();
    let tagged = options().tags(["site"]);
    let p1 = || cache.get_or_compute("points:recP1", &opts, || project_points(cache, "recP1", &r1));
    let p2 = || cache.get_or_compute("points:recP2", &tagged, || project_points(cache, "recP2", &r2));
    let e1 = || cache.get_or_compute("total:recE1", &opts, || event_total(cache, "recE1", &re1));
    assert_eq!(p1().await.unwrap().points, 1);
    assert_eq!(p2().await.unwrap().points, 2);
    assert_eq!(e1().await.unwrap().points, 4);

    let changed = project("recP1", "recE1", 10, 2);
    rig.origin.put(&changed).unwrap();
    cache.upsert(&changed).await.unwrap();
    assert_eq!(p1().await.unwrap(), Total { points: 10, run: 2 });
    assert_eq!(e1().await.unwrap(), Total { points: 13, run: 2 });
    assert_eq!(p2().await.unwrap().run, 1, "a value that did not read recP1 stays");

    let joined = project("recP4", "recE1", 100, 1);
    rig.origin.put(&joined).unwrap();
    cache.upsert(&joined).await.unwrap();
    assert_eq!(
        e1().await.unwrap(),
        Total { points: 113, run: 3 },
        "recE1's result changed"
    );
    assert_eq!(p1().await.unwrap().run, 2);

    assert!(cache.delete::<Project>(&id("recP3")).await.unwrap());

    assert_eq!(e1().await.unwrap(), Total { points: 110, run: 4 });

    assert_eq!(cache.invalidate_tags(["nothing"]).await.unwrap(), 0);
    assert_eq!(p2().await.unwrap().run, 1);
    assert_eq!(cache.invalidate_tags(["site"]).await.unwrap(), 1);
    assert_eq!(p2().await.unwrap().run, 2, "the explicit tag removed it");
    assert_eq!(p1().await.unwrap().run, 2);
}

/// A hit is one plain `GET` (no script: a hit needs no purge stamp), and still never answers
/// a value a record change on another instance removed: that read is a miss, looked up again
/// with its stamp (the script) before computing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_one_get_and_a_change_elsewhere_makes_the_next_read_a_miss() {
    let server = RedisServer::start();
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", 1, 1)]);
    let (a, _) = rig.instance(RedisStore::builder(server.url())).await;
    let (b, _) = rig.instance(RedisStore::builder(server.url())).await;
    let (gate, opts) = (Gate::opened(), options());
    let p1 = || a.get_or_compute("points:recP1", &opts, || project_points(&a, "recP1", &gate));
    assert_eq!(p1().await.unwrap(), Total { points: 1, run: 1 });

    let (hit, commands) = server.count_commands(p1()).await;
    assert_eq!(hit.unwrap(), Total { points: 1, run: 1 });
    assert_eq!(commands, ["get"], "a hit is one GET");

    let changed = project("recP1", "recE1", 10, 2);
    rig.origin.put(&changed).unwrap();
    b.upsert(&changed).await.unwrap();
    let (miss, commands) = server.count_commands(p1()).await;
    assert_eq!(miss.unwrap(), Total { points: 10, run: 2 }, "recomputed, not served");
    assert_eq!(
        &commands[..2],
        ["get", "evalsha"],
        "a miss takes its stamp: {commands:?}"
    );
    assert_eq!(stats(&a).computations, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_computed_across_a_write_is_refused() {
    let server = RedisServer::start();
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", 1, 1)]);
    let (a, store) = rig.instance(RedisStore::builder(server.url())).await;
    let (b, _) = rig.instance(RedisStore::builder(server.url())).await;
    let gate = Gate::new();
    let stale = {
        let (cache, gate) = (a.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("points:recP1", &options(), || async {
                    let p: Option<Project> = cache.get(&id("recP1")).await?;
                    gate.pass().await;
                    Ok::<_, CacheError>(Total {
                        points: p.map_or(0, |p| p.points),
                        run: 1,
                    })
                })
                .await
        })
    };
    gate.arrived(1).await;
    // Another instance changes recP1 while the computation holds the old record.
    let changed = project("recP1", "recE1", 7, 2);
    rig.origin.put(&changed).unwrap();
    b.upsert(&changed).await.unwrap();
    gate.open();
    assert_eq!(stale.await.unwrap().unwrap().points, 1);
    assert_eq!(stats(&a).refused, 1);
    assert_eq!(
        cache_core::store::Store::get_value(&store, "points:recP1")
            .await
            .unwrap(),
        None
    );
    let opened = Gate::opened();
    let fresh: Total = a
        .get_or_compute("points:recP1", &options(), || project_points(&a, "recP1", &opened))
        .await
        .unwrap();
    assert_eq!(fresh.points, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refresh_recomputes_before_expiry_under_a_stream_of_reads() {
    let server = RedisServer::start();
    let rig = Rig::new();
    let (cache, _) = rig.instance(RedisStore::builder(server.url())).await;
    let runs = Gate::opened();
    let opts = options();
    let read = || {
        cache.get_or_compute("hot", &opts, || async {
            let run = runs.pass().await;
            // The computation takes 10 s on the injected clock: XFetch's delta.
            rig.clock.advance(Duration::from_secs(10));
            Ok::<_, CacheError>(Total { points: 0, run })
        })
    };
    read().await.unwrap();
    rig.random.set((-1.0f64).exp()); // ln = -1: the lead is delta * beta = 10 s
    let mut refreshed_at = None;
    for i in 1..=30u64 {
        rig.clock.advance(Duration::from_secs(5));
        if read().await.unwrap().run == 2 && refreshed_at.is_none() {
            refreshed_at = Some(i * 5);
        }
    }
    assert_eq!(refreshed_at, Some(90), "at expiry - 10 s");
    let s = stats(&cache);
    assert_eq!((s.misses, s.early_refreshes, s.hits), (1, 1, 29));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stale_within_its_bound_and_not_beyond_even_while_redis_keeps_the_value() {
    let server = RedisServer::start();
    let rig = Rig::new();
    let (cache, store) = rig.instance(RedisStore::builder(server.url())).await;
    let opts = options().serve_stale(Duration::from_secs(30));
    cache
        .get_or_compute("k", &opts, || async {
            Ok::<_, CacheError>(Total { points: 1, run: 1 })
        })
        .await
        .unwrap();
    rig.clock.advance(TTL + Duration::from_secs(29));
    let stale: Total = cache
        .get_or_compute("k", &opts, || async { Err(boom()) })
        .await
        .unwrap();
    assert_eq!(stale.points, 1, "29 s past expiry: served stale");
    rig.clock.advance(Duration::from_secs(2));
    let beyond = cache
        .get_or_compute::<Total, _, _, _>("k", &opts, || async { Err(boom()) })
        .await;
    assert!(beyond.is_err(), "31 s past expiry: beyond the bound");
    let kept: i64 = server.query(redis::cmd("PTTL").arg(store.value_key("k")));
    assert!(
        kept > 100_000,
        "Redis still holds it (real time): the bound is the cache's ({kept} ms)"
    );
    assert_eq!(stats(&cache).stale_served, 1);
}

// ------------------------------------------------------------------ cluster

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_instances_compute_once_waiters_block_and_purges_reach_values() {
    let cluster = RedisCluster::start();
    let nodes = cluster.nodes();
    let rig = Rig::new();
    rig.seed(&[project("recP1", "recE1", 5, 1), project("recP2", "recE2", 1, 1)]);
    let (a, a_store) = rig.instance(RedisStore::cluster(cluster.urls())).await;
    let (b, _) = rig.instance(RedisStore::cluster(cluster.urls())).await;

    // The value, its lock and its wake-ups share one slot.
    let value_key = a_store.value_key("total:recE1");
    let lock_key = format!("{}:lock:{{{value_key}}}", a_store.namespace());
    let slot = |key: &str| -> u64 { nodes[0].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)) };
    assert_eq!(slot(&value_key), slot(&lock_key));
    assert_eq!(slot(&value_key), slot(&format!("{lock_key}:wake:123")));

    let gate = Gate::new();
    let owner = {
        let (cache, gate) = (a.clone(), gate.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("total:recE1", &options(), || event_total(&cache, "recE1", &gate))
                .await
        })
    };
    gate.arrived(1).await;
    let waiter = {
        let cache = b.clone();
        tokio::spawn(async move {
            cache
                .get_or_compute::<Total, CacheError, _, _>("total:recE1", &options(), || async {
                    panic!("the waiter must not compute")
                })
                .await
        })
    };
    until_blocked(nodes, 1).await;
    gate.open();
    assert_eq!(owner.await.unwrap().unwrap(), waiter.await.unwrap().unwrap());
    assert_eq!(gate.count(), 1, "one computation across the instances");
    assert_eq!(command_calls(nodes, "blpop"), 1);

    // A record change through one instance removes the value for both (tags in other slots).
    let other = Gate::opened();
    let opts = options();
    let p2 = || b.get_or_compute("points:recP2", &opts, || project_points(&b, "recP2", &other));
    assert_eq!(p2().await.unwrap().run, 1);
    let changed = project("recP1", "recE1", 50, 2);
    rig.origin.put(&changed).unwrap();
    a.upsert(&changed).await.unwrap();
    let recount = Gate::opened();
    let total: Total = b
        .get_or_compute("total:recE1", &options(), || event_total(&b, "recE1", &recount))
        .await
        .unwrap();
    assert_eq!((total.points, recount.count()), (50, 1));
    assert_eq!(p2().await.unwrap().run, 1, "the other value stays");

    // A value computed across a write is refused on a cluster too.
    let held = Gate::new();
    let read_p2 = |cache: Cache, gate: Gate| async move {
        let p: Option<Project> = cache.get(&id("recP2")).await?;
        let run = gate.pass().await;
        Ok::<_, CacheError>(Total {
            points: p.map_or(0, |p| p.points),
            run,
        })
    };
    let stale = {
        let (cache, held) = (a.clone(), held.clone());
        tokio::spawn(async move {
            cache
                .get_or_compute("late:recP2", &options(), || read_p2(cache.clone(), held))
                .await
        })
    };
    held.arrived(1).await;
    let changed = project("recP2", "recE2", 20, 2);
    rig.origin.put(&changed).unwrap();
    b.upsert(&changed).await.unwrap();
    held.open();
    assert_eq!(stale.await.unwrap().unwrap().points, 1);
    assert_eq!(stats(&a).refused, 1, "refused: recP2 changed during the computation");
    let fresh: Total = b
        .get_or_compute("late:recP2", &options(), || read_p2(b.clone(), Gate::opened()))
        .await
        .unwrap();
    assert_eq!(fresh.points, 20);
}
