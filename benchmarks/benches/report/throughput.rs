//! Throughput (4): `Cache::get` hits from 64 concurrent tasks beside `redis-benchmark`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use model_cache_bench::{
    model::Project,
    redis_benchmark,
    report::{Line, Verdict, fmt_duration, fmt_rate, fmt_ratio, thousands},
    sample::Samples,
};

use super::{Bench, p50_p99};

/// Concurrent tasks (and `redis-benchmark` clients).
const CLIENTS: usize = 64;

/// `requests` `Cache::get` hits from `CLIENTS` spawned tasks; answers the wall time and every
/// latency.
async fn our_throughput(b: &Bench, requests: usize) -> (Duration, Samples) {
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(b.ids.clone());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (cache, next, ids) = (b.cache.clone(), Arc::clone(&next), Arc::clone(&ids));
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
            }
        });
    }
    let mut all = Samples::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(&done.expect("a throughput task"));
    }
    (started.elapsed(), all)
}

pub(super) async fn throughput_line(b: &mut Bench) {
    let requests = b.n(100_000, 5_000);
    let value = &b.bodies[0];
    let () = redis::cmd("SET")
        .arg("key:__rand_int__")
        .arg(value.as_slice())
        .query_async(&mut b.conn.clone())
        .await
        .expect("SET the redis-benchmark key");
    let port = b.server.port();
    // Warm-up of both.
    our_throughput(b, requests / 10).await;
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
                let (elapsed, lat) = our_throughput(b, requests).await;
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
