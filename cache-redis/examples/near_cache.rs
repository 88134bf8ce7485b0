//! The near cache's figures on a local `redis-server` (spawned by the test helpers):
//!
//! 1. a near cache hit (`Cache::get` answered in process) next to a bare `moka` get of the same
//!    decoded record, and next to a raw Redis `GET` of its bytes;
//! 2. the time from a write on one instance (`Cache::upsert`) to the eviction of the record
//!    from another instance's near cache, p50 and p99;
//! 3. 64 tasks reading 100 hot records for a few seconds, with and without the near cache.
//!
//! ```sh
//! cargo run --release -p cache-redis --example near_cache
//! ```
#![allow(clippy::unwrap_used, clippy::print_stdout)] // An example: a panic is the failure report.

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cache_core::{Cache, Cacheable, Link, RecordId, store::Store, testing::MemoryOrigin};
use cache_redis::{
    RedisStore,
    testing::{RedisServer, unique_namespace},
};

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "events", source_table = "Events")]
struct Event {
    #[cache(id)]
    id: RecordId,
    name: String,
}

/// A record of the benchmarks' size: a dozen fields, about 400 bytes cached.
#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "projects", source_table = "Projects", ttl = "8h")]
struct Project {
    #[cache(id)]
    id: RecordId,
    name: String,
    description: String,
    event: Link<Event>,
    #[indexed]
    slug: String,
    #[sortable]
    points: i64,
    votes: i64,
    team: Vec<String>,
    url: Option<String>,
    created_at: String,
}

fn project(i: usize, name: &str) -> Project {
    Project {
        id: RecordId::new(format!("recProject{i:07}")).unwrap(),
        name: name.to_owned(),
        description: "A project built over a weekend to help judges score submissions fairly.".to_owned(),
        event: Link::new(RecordId::new("recEvent0000001").unwrap()),
        slug: format!("project-{i}"),
        points: i64::try_from(i).unwrap(),
        votes: 42,
        team: vec!["recUser0000001".to_owned(), "recUser0000002".to_owned()],
        url: Some(format!("https://example.com/projects/{i}")),
        created_at: "2025-01-06T17:04:00Z".to_owned(),
    }
}

async fn instance(url: &str, namespace: &str, origin: &MemoryOrigin, near: bool) -> (Cache, RedisStore) {
    let store = RedisStore::builder(url).namespace(namespace).connect().await.unwrap();
    let builder = Cache::builder(store.clone(), origin.clone()).register::<Project>();
    let builder = if near { builder.near_cache(64 << 20) } else { builder };
    let cache = builder.build().unwrap();
    if near {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cache.near_cache().unwrap().is_enabled() {
            assert!(Instant::now() < deadline, "tracking never came on");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    (cache, store)
}

/// The median of `runs` timings of `iterations` calls, per call.
async fn per_call<F: Future<Output = ()>>(runs: usize, iterations: u32, mut f: impl FnMut() -> F) -> Duration {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        for _ in 0..iterations {
            f().await;
        }
        times.push(started.elapsed() / iterations);
    }
    times.sort();
    times[runs / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let server = RedisServer::start();
    let url = server.url();
    let namespace = unique_namespace();
    let origin = MemoryOrigin::new();
    for i in 0..100 {
        origin.put(&project(i, "original")).unwrap();
    }
    let (a, store_a) = instance(&url, &namespace, &origin, true).await;
    let (b, _) = instance(&url, &namespace, &origin, true).await;
    let id = project(0, "original").id;

    // 1. Hits.
    for _ in 0..3 {
        a.get::<Project>(&id).await.unwrap().unwrap();
    }
    assert!(a.near_cache().unwrap().holds::<Project>(&id));
    let record = a.get::<Project>(&id).await.unwrap().unwrap();
    let bytes = record.to_cached().unwrap().len();
    let moka: moka::sync::Cache<RecordId, Project> = moka::sync::Cache::builder().max_capacity(10_000).build();
    moka.insert(id.clone(), record.clone());
    // Alternated in pairs, so that both see the same machine: the median of the pairs' ratios,
    // and each side's fastest run.
    let (mut near_runs, mut moka_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..41 {
        let near = per_call(1, 10_000, || async {
            black_box(a.get::<Project>(black_box(&id)).await.unwrap());
        })
        .await;
        let bare = per_call(1, 10_000, || async {
            black_box(moka.get(black_box(&id)).unwrap());
        })
        .await;
        #[allow(clippy::cast_precision_loss)]
        ratios.push(near.as_nanos() as f64 / bare.as_nanos() as f64);
        near_runs.push(near);
        moka_runs.push(bare);
    }
    near_runs.sort();
    moka_runs.sort();
    ratios.sort_by(f64::total_cmp);
    let (near_hit, moka_get, hit_ratio) = (near_runs[0], moka_runs[0], ratios[ratios.len() / 2]);
    let key = store_a.key_layout(Project::schema()).for_id(&id).record(&id);
    let mut conn = store_a.connection();
    let raw_get = per_call(9, 2_000, || {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let got: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
            black_box(got.unwrap());
        }
    })
    .await;
    let _: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
    let ns = |d: Duration| d.as_nanos();
    println!("record: {bytes} bytes cached");
    println!("near cache hit (Cache::get)     {:>8} ns (fastest run)", ns(near_hit));
    println!("bare moka get of the record     {:>8} ns (fastest run)", ns(moka_get));
    println!("raw redis GET of its bytes      {:>8} ns", ns(raw_get));
    #[allow(clippy::cast_precision_loss)]
    let ratio = |x: Duration, y: Duration| x.as_nanos() as f64 / y.as_nanos() as f64;
    println!(
        "near hit / moka get: {hit_ratio:.2}x (median of 41 alternated pairs)    raw GET / near hit: {:.0}x",
        ratio(raw_get, near_hit)
    );

    // 2. Write on A, evicted on B.
    let b_near = b.near_cache().unwrap().clone();
    let mut from_start = Vec::new();
    let mut from_put = Vec::new();
    let mut after_return = Vec::new();
    for round in 0..2000 {
        let target = project(round % 100, "original");
        while !b_near.holds::<Project>(&target.id) {
            b.get::<Project>(&target.id).await.unwrap().unwrap();
        }
        let write = project(round % 100, &format!("write {round}"));
        origin.put(&write).unwrap();
        // Every other round the write is one `Store::put` (one round trip, no purge).
        let (started, returned) = if round % 2 == 0 {
            let started = Instant::now();
            a.upsert(&write).await.unwrap();
            (started, Instant::now())
        } else {
            let body = bytes::Bytes::from(write.to_cached().unwrap());
            let put = cache_core::store::RecordWrite {
                id: write.id.clone(),
                body,
                index: write.index_entries(),
                version: None,
                at: None,
                ttl: Duration::from_secs(3600),
            };
            let started = Instant::now();
            store_a
                .put(Project::schema(), &[put], cache_core::store::WriteMode::Upsert)
                .await
                .unwrap();
            (started, Instant::now())
        };
        while b_near.holds::<Project>(&target.id) {
            tokio::task::yield_now().await;
        }
        let evicted = Instant::now();
        let samples = if round % 2 == 0 { &mut from_start } else { &mut from_put };
        samples.push(evicted - started);
        after_return.push(evicted.saturating_duration_since(returned));
        origin.put(&target).unwrap();
        a.upsert(&target).await.unwrap();
    }
    from_start.sort();
    from_put.sort();
    after_return.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "write on A -> evicted on B, from the start of A's upsert: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        us(percentile(&from_start, 0.5)),
        us(percentile(&from_start, 0.99)),
        us(percentile(&from_start, 1.0))
    );
    println!(
        "                            from the start of A's Store::put: p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        us(percentile(&from_put, 0.5)),
        us(percentile(&from_put, 0.99)),
        us(percentile(&from_put, 1.0))
    );
    println!(
        "                            after A's write returned:     p50 {:.0} us, p99 {:.0} us",
        us(percentile(&after_return, 0.5)),
        us(percentile(&after_return, 0.99))
    );

    // 3. 64 tasks, 100 hot records.
    let (plain, _) = instance(&url, &namespace, &origin, false).await;
    for (label, cache) in [("without the near cache", plain), ("with the near cache", a.clone())] {
        let ids: Arc<Vec<RecordId>> = Arc::new((0..100).map(|i| project(i, "").id).collect());
        for id in ids.iter() {
            for _ in 0..3 {
                cache.get::<Project>(id).await.unwrap();
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let (cache, ids, stop, done) = (cache.clone(), Arc::clone(&ids), Arc::clone(&stop), Arc::clone(&done));
                tokio::spawn(async move {
                    let mut i = t;
                    while !stop.load(Ordering::Relaxed) {
                        black_box(cache.get::<Project>(&ids[i % ids.len()]).await.unwrap());
                        done.fetch_add(1, Ordering::Relaxed);
                        i += 7;
                        // A near hit never waits: let the runtime's timer and other tasks run.
                        tokio::task::consume_budget().await;
                    }
                })
            })
            .collect();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.unwrap();
        }
        #[allow(clippy::cast_precision_loss)]
        let per_second = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        println!("64 tasks, 100 hot records, {label}: {per_second:.0} reads/s");
    }
}
