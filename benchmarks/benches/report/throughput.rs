//! Throughput (4): `Cache::get` hits from 64 concurrent tasks beside `redis-benchmark`; the
//! same with the near cache on (11c).

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cache_core::{Cache, RecordId};
use model_cache_bench::{
    model::Project,
    redis_benchmark,
    report::{Line, Verdict, fmt_duration, fmt_rate, fmt_ratio, thousands},
    sample::Samples,
};

use super::{Bench, p50_p99};

/// Concurrent tasks (and `redis-benchmark` clients).
const CLIENTS: usize = 64;

/// `requests` `Cache::get` hits on `cache` from `CLIENTS` spawned tasks, over `ids`; answers
/// the wall time and every latency.
pub(super) async fn cache_throughput(cache: &Cache, ids: &Arc<Vec<RecordId>>, requests: usize) -> (Duration, Samples) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (cache, next, ids) = (cache.clone(), Arc::clone(&next), Arc::clone(ids));
        tasks.spawn(async move {
            let mut latencies = Samples::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return latencies;
                }
                let sent = Instant::now();
                let found: Option<Project> = cache.get(&ids[(i * 7_919) % ids.len()]).await.expect("get");
                assert!(found.is_some(), "a hit");
                latencies.push(sent.elapsed());
                // A hit answered in process (the near cache) never waits, so it never yields
                // to the other tasks: this does, once its task has used up its budget. Over
                // Redis the reply's wait has used the budget already, and it costs nothing.
                tokio::task::consume_budget().await;
            }
        });
    }
    let mut all = Samples::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(&done.expect("a throughput task"));
    }
    (started.elapsed(), all)
}

/// Stores the value `redis-benchmark -t get` reads (its key, `key:__rand_int__`).
async fn set_benchmark_key(b: &Bench, value: &[u8]) {
    let () = redis::cmd("SET")
        .arg("key:__rand_int__")
        .arg(value)
        .query_async(&mut b.conn.clone())
        .await
        .expect("SET the redis-benchmark key");
}

pub(super) async fn throughput_line(b: &mut Bench) {
    let requests = b.n(100_000, 5_000);
    let value = &b.bodies[0];
    set_benchmark_key(b, value).await;
    let port = b.server.port();
    let ids = Arc::new(b.ids.clone());
    // Warm-up of both.
    cache_throughput(&b.cache, &ids, requests / 10).await;
    redis_benchmark::run_get(port, CLIENTS, requests / 10, value.len())
        .await
        .expect("redis-benchmark");
    let rounds = 3;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    let mut latencies = Samples::new();
    let mut last = None;
    for round in 0..rounds {
        for k in 0..2 {
            if (round + k) % 2 == 0 {
                let (elapsed, lat) = cache_throughput(&b.cache, &ids, requests).await;
                #[allow(clippy::cast_precision_loss)]
                ours.push(requests as f64 / elapsed.as_secs_f64());
                latencies.extend(&lat);
            } else {
                let run = redis_benchmark::run_get(port, CLIENTS, requests, value.len())
                    .await
                    .expect("redis-benchmark");
                theirs.push(run.row.rps);
                last = Some(run);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, t) = (median(&mut ours), median(&mut theirs));
    let last = last.expect("a redis-benchmark run");
    let lat = latencies.summary();
    let r = o / t;
    let target = 0.7;
    let fmt_ms = |ms: Option<f64>| {
        ms.map_or_else(
            || "n/a".to_owned(),
            |ms| fmt_duration(Duration::from_secs_f64(ms / 1e3)),
        )
    };
    b.lines.push(Line {
        number: "4".to_owned(),
        name: format!("Throughput: `Cache::get` hits from {CLIENTS} concurrent tasks vs `redis-benchmark`"),
        ours: format!("{} ({})", fmt_rate(o), p50_p99(&lat)),
        baseline: format!(
            "`redis-benchmark -t get -c {CLIENTS} -d {}`: {} (p50 {}, p99 {})",
            value.len(),
            fmt_rate(t),
            fmt_ms(last.row.p50_ms),
            fmt_ms(last.row.p99_ms)
        ),
        ratio: fmt_ratio(r),
        target: format!("≥ {target:.2}x"),
        verdict: Verdict::from_check(r >= target),
        notes: vec![
            format!(
                "Median of {rounds} alternating runs of {} requests each (rates: model-cache {}; redis-benchmark {}).",
                thousands(requests as u64),
                ours.iter().map(|&x| fmt_rate(x)).collect::<Vec<_>>().join(", "),
                theirs.iter().map(|&x| fmt_rate(x)).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "model-cache: {CLIENTS} tokio tasks on one current-thread runtime (one OS thread), every `get` \
                 decoding its record, over the store's one multiplexed connection (redis-rs pipelines what the \
                 tasks send at once). redis-benchmark: {CLIENTS} connections from one thread, replies not decoded, \
                 all on the one key `key:__rand_int__` holding a {}-byte record.",
                value.len()
            ),
            format!("Exact command: `{}`.", last.command),
        ],
    });
}

/// The median of `rates`.
fn median(rates: &[f64]) -> f64 {
    let mut sorted = rates.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn rates(rates: &[f64]) -> String {
    rates.iter().map(|&x| fmt_rate(x)).collect::<Vec<_>>().join(", ")
}

/// Line 11c: line 4 with the near cache on, beside line 4's own path and `redis-benchmark`,
/// all three in alternate runs. `near` is a cache over the same records with its near cache
/// on and holding them all.
pub(super) async fn near_throughput_line(b: &mut Bench, near: &Cache) {
    let requests = b.n(100_000, 5_000);
    // Near hits are some fifty times shorter: more of them, for a run as long.
    let near_requests = b.n(1_000_000, 20_000);
    let value = b.bodies[0].clone();
    set_benchmark_key(b, &value).await;
    let port = b.server.port();
    let ids = Arc::new(b.ids.clone());
    let near_cache = near.near_cache().expect("a near cache");
    cache_throughput(near, &ids, near_requests / 10).await;
    cache_throughput(&b.cache, &ids, requests / 10).await;
    redis_benchmark::run_get(port, CLIENTS, requests / 10, value.len())
        .await
        .expect("redis-benchmark");
    let misses_before = near_cache.stats().misses;
    let calls_before = b.origin.calls().total();
    let rounds = 3;
    let (mut ours, mut plain, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut latencies, mut plain_latencies) = (Samples::new(), Samples::new());
    let mut last = None;
    for round in 0..rounds {
        for k in 0..3 {
            #[allow(clippy::cast_precision_loss)]
            match (round + k) % 3 {
                0 => {
                    let (elapsed, lat) = cache_throughput(near, &ids, near_requests).await;
                    ours.push(near_requests as f64 / elapsed.as_secs_f64());
                    latencies.extend(&lat);
                }
                1 => {
                    let (elapsed, lat) = cache_throughput(&b.cache, &ids, requests).await;
                    plain.push(requests as f64 / elapsed.as_secs_f64());
                    plain_latencies.extend(&lat);
                }
                _ => {
                    let run = redis_benchmark::run_get(port, CLIENTS, requests, value.len())
                        .await
                        .expect("redis-benchmark");
                    theirs.push(run.row.rps);
                    last = Some(run);
                }
            }
        }
    }
    let misses = near_cache.stats().misses - misses_before;
    assert_eq!(b.origin.calls().total(), calls_before, "every measured get was a hit");
    let (o, p, t) = (median(&ours), median(&plain), median(&theirs));
    let last = last.expect("a redis-benchmark run");
    let (lat, plain_lat) = (latencies.summary(), plain_latencies.summary());
    let r = o / p;
    let target = 1.0;
    b.lines.push(Line {
        number: "11c".to_owned(),
        name: format!("Throughput with the near cache: `Cache::get` hits from {CLIENTS} concurrent tasks"),
        ours: format!("{} ({})", fmt_rate(o), p50_p99(&lat)),
        baseline: format!(
            "line 4's path, alongside (`Cache::get` over Redis, no near cache): {} ({}); `redis-benchmark -t get \
             -c {CLIENTS} -d {}`: {}",
            fmt_rate(p),
            p50_p99(&plain_lat),
            value.len(),
            fmt_rate(t)
        ),
        ratio: fmt_ratio(r),
        target: format!("≥ {target:.2}x line 4's path"),
        verdict: Verdict::from_check(r >= target),
        notes: vec![
            format!(
                "Median of {rounds} alternating runs of each: {} near-cache reads a run (rates {}), {} reads \
                 without it (rates {}), {} `redis-benchmark` requests (rates {}).",
                thousands(near_requests as u64),
                rates(&ours),
                thousands(requests as u64),
                rates(&plain),
                thousands(requests as u64),
                rates(&theirs)
            ),
            format!(
                "With the near cache: {} `redis-benchmark`'s rate (line 4 judges its path at ≥ 0.70x of it); \
                 {misses} reads the near cache could not answer while measuring (the {} records all fit its \
                 budget).",
                fmt_ratio(o / t),
                thousands(b.ids.len() as u64)
            ),
            format!(
                "As line 4: {CLIENTS} tokio tasks on one current-thread runtime (one OS thread), each read an owned \
                 `Project`; with the near cache it is cloned from the decoded one this process holds, with no round \
                 trip and no decoding, and each task yields to the others when its tokio budget is spent (a near \
                 hit never waits). The latencies count the time a task waits for its turn. Exact command of the \
                 baseline: `{}`.",
                last.command
            ),
        ],
    });
}
