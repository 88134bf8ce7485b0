//! Outages on real servers: a store built while Redis is down or hung, connecting when it
//! answers; a hung (`SIGSTOP`) server never delaying a request past the operation budget; a
//! half-open breaker sending one probe, not a crowd; cheap stats on a large database.
//!
//! Every test starts its own server: the command counts are the test's own.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cache_core::{
    Cache, Cacheable, RecordId,
    store::{Availability, Store, StoreError},
    testing::MemoryOrigin,
};
use cache_redis::{
    CircuitBreakerConfig, CircuitState, RedisStore, RedisStoreBuilder,
    testing::{RedisCluster, RedisServer, unique_namespace},
};

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "outage_notes", source_table = "Notes", ttl = "1h")]
struct Note {
    #[cache(id)]
    id: RecordId,
    text: String,
}

fn id(s: &str) -> RecordId {
    RecordId::new(s).unwrap()
}

fn notes(n: usize) -> Vec<Note> {
    (0..n)
        .map(|i| Note {
            id: id(&format!("n{i}")),
            text: format!("note {i}"),
        })
        .collect()
}

fn builder(server: &RedisServer) -> RedisStoreBuilder {
    RedisStore::builder(server.url()).namespace(unique_namespace())
}

/// A cache over `store` and an origin holding `records`.
fn cache_over(store: &RedisStore, records: &[Note]) -> (Cache, MemoryOrigin) {
    let origin = MemoryOrigin::new();
    for record in records {
        origin.put(record).unwrap();
    }
    let cache = Cache::builder(store.clone(), origin.clone())
        .register::<Note>()
        .build()
        .unwrap();
    (cache, origin)
}

/// Polls `done` until it holds, failing after `within`.
async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads every record twice after the store connected: the first read fills, the second is
/// a hit that asks the origin nothing.
async fn assert_reads_hit(cache: &Cache, origin: &MemoryOrigin, records: &[Note]) {
    for record in records {
        assert_eq!(cache.get::<Note>(&record.id).await.unwrap().as_ref(), Some(record));
    }
    origin.reset_calls();
    let hits = cache.stats().total().hits;
    for record in records {
        assert_eq!(cache.get::<Note>(&record.id).await.unwrap().as_ref(), Some(record));
    }
    assert_eq!(origin.total_calls(), 0, "every read was answered by Redis");
    assert_eq!(cache.stats().total().hits, hits + records.len() as u64);
}

// ------------------------------------------------------------------ start-up

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_built_while_redis_is_down_caches_once_it_is_up() {
    let mut server = RedisServer::reserve();
    let store = builder(&server).connect().await.expect("built although Redis is down");
    assert!(!store.is_connected());
    assert_eq!(store.availability(), Availability::Unavailable);
    let err = store.ping().await.expect_err("nothing answers yet");
    assert!(
        matches!(err, StoreError::Refused(_)),
        "refused without trying while not connected: {err}"
    );

    let records = notes(5);
    let (cache, origin) = cache_over(&store, &records);
    for record in &records {
        let read = cache.get::<Note>(&record.id).await.expect("answered from the origin");
        assert_eq!(read.as_ref(), Some(record));
    }
    assert!(origin.total_calls() >= records.len(), "the origin answered");
    assert_eq!(
        store.circuit().state,
        CircuitState::Closed,
        "not being connected yet is not the breaker's business"
    );

    tokio::task::block_in_place(|| server.start_again());
    wait_until("the store connects", Duration::from_secs(20), || store.is_connected()).await;
    assert_eq!(store.availability(), Availability::Available);
    assert_reads_hit(&cache, &origin, &records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_built_while_redis_hangs_connects_when_it_answers() {
    let mut server = RedisServer::start();
    server.pause();
    let store = builder(&server)
        .timeouts(Duration::from_millis(200), Duration::from_millis(200))
        .connect()
        .await
        .expect("built although Redis hangs");
    assert!(!store.is_connected());
    let records = notes(3);
    let (cache, origin) = cache_over(&store, &records);
    assert_eq!(
        cache.get::<Note>(&records[0].id).await.unwrap().as_ref(),
        Some(&records[0])
    );

    server.resume();
    wait_until("the store connects", Duration::from_secs(20), || store.is_connected()).await;
    assert_eq!(store.availability(), Availability::Available);
    assert_reads_hit(&cache, &origin, &records).await;
}

#[tokio::test]
async fn configuration_errors_still_fail_the_build() {
    let server = RedisServer::start();
    let _: () = server.query(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("reader")
            .arg("on")
            .arg(">right")
            .arg("+@all"),
    );
    let url = format!("redis://reader:wrong@127.0.0.1:{}", server.port());
    let err = RedisStore::builder(url)
        .connect()
        .await
        .expect_err("refused credentials");
    assert!(err.to_string().contains("could not connect"), "{err}");
    let err = RedisStore::builder("http://127.0.0.1:1")
        .connect()
        .await
        .expect_err("bad url");
    assert!(err.to_string().contains("invalid redis url"), "{err}");
}

// ------------------------------------------------------------------ a hung server

/// Readers go through a `Cache` while the server is paused for several cool-downs (so that
/// the breaker probes more than once): each read answers, and none waits on the store longer
/// than the budget (plus scheduling slack), although the response timeout is far longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_never_delays_a_request_beyond_the_budget() {
    const BUDGET: Duration = Duration::from_millis(150);
    const SLACK: Duration = Duration::from_millis(50);
    let mut server = RedisServer::start();
    let store = builder(&server)
        .timeouts(Duration::from_secs(2), Duration::from_secs(2))
        .operation_budget(BUDGET)
        .circuit_breaker(CircuitBreakerConfig {
            failure_threshold: 5,
            cool_down: Duration::from_millis(300),
        })
        .connect()
        .await
        .unwrap();
    let records = notes(20);
    let (cache, _origin) = cache_over(&store, &records);
    for record in &records {
        cache.get::<Note>(&record.id).await.unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let slowest_us = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..8)
        .map(|r| {
            let (cache, records) = (cache.clone(), records.clone());
            let (stop, reads, slowest_us) = (stop.clone(), reads.clone(), slowest_us.clone());
            tokio::spawn(async move {
                let mut i = r;
                while !stop.load(Ordering::Relaxed) {
                    let record = &records[i % records.len()];
                    let started = Instant::now();
                    let read = cache.get::<Note>(&record.id).await;
                    let took = u64::try_from(started.elapsed().as_micros()).unwrap();
                    assert_eq!(read.expect("no error surfaces").as_ref(), Some(record));
                    slowest_us.fetch_max(took, Ordering::Relaxed);
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();

    let reads_now = || reads.load(Ordering::Relaxed);
    let before = reads_now();
    wait_until("reads run", Duration::from_secs(10), || reads_now() >= before + 100).await;
    tokio::task::block_in_place(|| server.pause());
    let paused_at = reads_now();
    // Opened once, then at least two probes failed and re-opened it.
    wait_until("the breaker probed twice", Duration::from_secs(20), || {
        store.circuit().opened >= 3
    })
    .await;
    wait_until("reads go on while paused", Duration::from_secs(20), || {
        reads_now() >= paused_at + 500
    })
    .await;
    assert!(store.circuit().rejected > 0, "{:?}", store.circuit());
    tokio::task::block_in_place(|| server.resume());
    wait_until("the breaker closes", Duration::from_secs(20), || {
        store.circuit().state == CircuitState::Closed
    })
    .await;
    let resumed_at = reads_now();
    wait_until("reads go on", Duration::from_secs(10), || {
        reads_now() >= resumed_at + 100
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.expect("every read answered");
    }
    let slowest = Duration::from_micros(slowest_us.load(Ordering::Relaxed));
    assert!(
        slowest <= BUDGET + SLACK,
        "a read took {slowest:?}, more than the budget {BUDGET:?} + {SLACK:?}"
    );
}

/// While the breaker is half-open, one call probes and every other one is refused without
/// reaching the server: counted by the server itself once it runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_breaker_sends_one_probe() {
    let mut server = RedisServer::start();
    let store = builder(&server)
        .operation_budget(Duration::from_millis(100))
        .circuit_breaker(CircuitBreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_millis(200),
        })
        .connect()
        .await
        .unwrap();
    let schema = Note::schema();
    let n1 = id("n1");
    store.get(schema, &n1).await.expect("up");
    let _: () = server.query(redis::cmd("CONFIG").arg("RESETSTAT"));
    tokio::task::block_in_place(|| server.pause());

    let err = store.get(schema, &n1).await.expect_err("no answer within the budget");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
    assert_eq!(store.circuit().state, CircuitState::Open, "one slow failure opens it");
    assert_eq!(store.circuit().opened, 1);
    assert_eq!(store.availability(), Availability::Unavailable);

    // Crowds of calls until one of them was the probe (the cool-down ended).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    while store.circuit().opened < 2 {
        assert!(Instant::now() < deadline, "no probe: {:?}", store.circuit());
        let crowd = futures::future::join_all((0..32).map(|_| store.get(schema, &n1))).await;
        assert!(crowd.iter().all(Result::is_err), "the server is paused");
        let refusals = crowd
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Refused(_))))
            .count();
        assert!(
            refusals >= crowd.len() - 1,
            "all but a probe refused without trying: {crowd:?}"
        );
        refused += crowd.len();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.circuit().opened, 2, "one probe failed and re-opened it");
    assert_eq!(
        store.circuit().rejected,
        refused as u64 - 1,
        "every call but the probe was refused"
    );

    tokio::task::block_in_place(|| server.resume());
    // What the store sent while the server was paused is read in one go once it runs.
    wait_until("the server ran the queued commands", Duration::from_secs(10), || {
        server.command_calls("ping") >= 1
    })
    .await;
    assert_eq!(server.command_calls("get"), 1, "only the first call's");
    assert_eq!(server.command_calls("ping"), 1, "one probe");
}

// ------------------------------------------------------------------ stats

/// `stats` on a database of 60,000 keys, 20,000 of them the store's: an estimate from a sample
/// (no `SCAN` of the namespace), near the exact count `exact_key_count` finds by scanning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_estimate_a_large_namespace_without_scanning_it() {
    let server = RedisServer::start();
    let store = builder(&server).namespace("big").connect().await.unwrap();
    let mut conn = store.connection();
    for (prefix, n) in [("big:v:k", 20_000), ("other:k", 40_000)] {
        for chunk in (0..n).collect::<Vec<u32>>().chunks(5_000) {
            let mut mset = redis::cmd("MSET");
            for i in chunk {
                mset.arg(format!("{prefix}{i}")).arg("x");
            }
            let _: () = mset.query_async(&mut conn).await.unwrap();
        }
    }

    let (stats, commands) = server.count_commands(store.stats()).await;
    let stats = stats.unwrap();
    assert!(!stats.total_keys_exact, "said to be an estimate");
    let estimate = stats.total_keys;
    let scans = commands.iter().filter(|c| *c == "scan").count();
    assert!(scans <= 2, "a sample, not a scan of 60,000 keys: {commands:?}");
    assert!(
        (14_000..=26_000).contains(&estimate),
        "estimate {estimate} is not near 20,000"
    );
    assert_eq!(store.exact_key_count().await.unwrap(), 20_000);
    let exact = store.exact_stats().await.unwrap();
    assert_eq!((exact.total_keys, exact.total_keys_exact), (20_000, true));
}

#[tokio::test]
async fn stats_count_a_namespace_that_owns_the_database() {
    let server = RedisServer::start();
    let store = builder(&server).namespace("own").connect().await.unwrap();
    let _: () = redis::cmd("MSET")
        .arg("own:v:a")
        .arg("x")
        .arg("own:v:b")
        .arg("x")
        .query_async(&mut store.connection())
        .await
        .unwrap();
    let small = store.stats().await.unwrap();
    assert_eq!(
        (small.total_keys, small.total_keys_exact),
        (2, true),
        "counted key by key"
    );
    let mut mset = redis::cmd("MSET");
    for i in 0..12_000 {
        mset.arg(format!("own:v:k{i}")).arg("x");
    }
    let _: () = mset.query_async(&mut store.connection()).await.unwrap();
    let large = store.stats().await.unwrap();
    assert_eq!(large.total_keys, 12_002, "every sampled key is ours");
    assert!(!large.total_keys_exact, "estimated above 10,000 keys");
}

// ------------------------------------------------------------------ cluster

/// A master of a cluster dies: its slots fail (fast, after the first call found it dead),
/// every other slot keeps working, and the store's global breaker never opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_costs_only_its_own_slots() {
    let mut cluster =
        tokio::task::spawn_blocking(|| RedisCluster::start_with_args(3, &["--cluster-require-full-coverage", "no"]))
            .await
            .unwrap();
    let store = RedisStore::cluster(cluster.urls())
        .namespace(unique_namespace())
        .operation_budget(Duration::from_millis(300))
        .circuit_breaker(CircuitBreakerConfig {
            failure_threshold: 1,
            cool_down: Duration::from_secs(60),
        })
        .connect()
        .await
        .unwrap();
    let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
    for key in &keys {
        store
            .put_value(key, bytes::Bytes::from_static(b"v"), Duration::from_secs(600), &[])
            .await
            .unwrap();
    }
    let owner = |key: &String| cluster.owner_of(&store.value_key(key));
    let doomed: Vec<&String> = keys.iter().filter(|k| owner(k) == 0).collect();
    let healthy: Vec<&String> = keys.iter().filter(|k| owner(k) != 0).collect();
    assert!(
        !doomed.is_empty() && !healthy.is_empty(),
        "30 keys spread over 3 masters"
    );

    tokio::task::block_in_place(|| cluster.node_mut(0).stop());
    for _ in 0..3 {
        for key in &doomed {
            let err = store.get_value(key).await.expect_err("its master is dead");
            assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        }
        for key in &healthy {
            assert_eq!(
                store.get_value(key).await.expect("another master's slot").as_deref(),
                Some(&b"v"[..])
            );
        }
    }
    let circuit = store.circuit();
    assert_eq!(
        (circuit.state, circuit.opened),
        (CircuitState::Closed, 0),
        "{circuit:?}"
    );
    let slots: std::collections::HashSet<u16> = doomed
        .iter()
        .map(|k| cluster.nodes()[1].query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(store.value_key(k))))
        .collect();
    assert_eq!(
        store.unavailable_slots(),
        slots.len(),
        "the dead master's slots, no others"
    );
}
