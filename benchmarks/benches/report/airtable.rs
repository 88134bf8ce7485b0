//! The Airtable lines (10): `cache_airtable::AirtableOrigin` and its webhooks-API feed against
//! the Airtable simulator, in-process over a real HTTP socket on loopback, with Airtable's
//! limits (5 requests a second per base, 429 and a 30 s pause past it, pages of 100). The
//! cache is on the report's Redis server under a namespace of its own.

use std::time::{Duration, Instant};

use cache_airtable::{
    AirtableClient, AirtableConfig, AirtableOrigin, DEFAULT_REQUESTS_PER_SECOND, FeedConfig, MAX_PAGE_SIZE,
    WebhookFeed, testing::Simulator,
};
use cache_core::{
    Cache, Cacheable, RecordId,
    store::{Lookup, Store},
};
use cache_redis::RedisStore;
use model_cache_bench::{
    model::{Project, ProjectSort, event_id},
    report::{Line, Verdict, fmt_duration, fmt_rate, fmt_ratio, thousands},
    sample::{Samples, ratio},
};
use serde_json::{Map, Value, json};

use super::{Bench, EVENTS, WARM_BATCH, p50_p99};

/// The simulated base.
const BASE: &str = "appBenchReport001";
/// Airtable's limit per base, the client's default.
const RATE: f64 = DEFAULT_REQUESTS_PER_SECOND as f64;
/// Records a list request answers at most.
const PAGE: usize = MAX_PAGE_SIZE as usize;
/// Ids per `exists_many` of the sweep (the demo's default).
const SWEEP_BATCH: usize = 500;
/// One cached record in this many is gone from the base, for the sweep to remove.
const SWEEP_GONE_EVERY: usize = 200;
/// The bound on the sweep's requests.
const SWEEP_TARGET: u64 = 100;
/// Concurrent cold reads.
const CONCURRENT: usize = 64;
/// Changes made at once for the feed's rate.
const BULK: usize = 1_000;
/// How long a change may take to reach the cache before the run fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// A store of its own on the report's server.
async fn store(b: &Bench, namespace: &str) -> RedisStore {
    RedisStore::builder(b.server.url())
        .namespace(namespace)
        .connect()
        .await
        .expect("connect the Airtable lines' store")
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Waits until the store holds `id` with `name` (the change applied); polls every millisecond.
async fn until_named(store: &RedisStore, id: &RecordId, name: &str, since: Instant) -> Duration {
    loop {
        if let Lookup::Hit(bytes) = store.get(Project::schema(), id).await.expect("store get")
            && Project::from_cached(&bytes).expect("decode").name == name
        {
            return since.elapsed();
        }
        assert!(since.elapsed() < DEADLINE, "a change to {id} never reached the cache");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The Airtable lines.
pub(super) async fn airtable_lines(b: &mut Bench) {
    let started = Instant::now();
    let sim = Simulator::start().await.expect("the Airtable simulator starts");
    for r in &b.records {
        let source = r.to_source().expect("a source record");
        assert!(sim.insert_with_id(BASE, "Projects", r.id.as_str(), source.fields));
    }
    eprintln!(
        "model-cache bench: 10 seeded the simulator with {} records in {:.1} s",
        b.records.len(),
        started.elapsed().as_secs_f64()
    );
    let client =
        AirtableClient::new(AirtableConfig::new(BASE, sim.token()).api_url(sim.url())).expect("an Airtable client");
    let origin = AirtableOrigin::new(client.clone());
    let rps = DEFAULT_REQUESTS_PER_SECOND;

    // 10a: the sweep of every cached record. The store is filled from the report's in-memory
    // origin (no Airtable request), then one record in 200 is deleted in the base.
    let swept = store(b, "bench-airtable").await;
    let filler = Cache::builder(swept.clone(), b.origin.clone())
        .register::<Project>()
        .build()
        .expect("the filling cache");
    for chunk in b.ids.chunks(WARM_BATCH) {
        filler.get_many::<Project>(chunk).await.expect("fill");
    }
    let mut gone = 0;
    for id in b.ids.iter().skip(1).step_by(SWEEP_GONE_EVERY) {
        gone += usize::from(sim.remove(BASE, "Projects", id.as_str()));
    }
    // The records still in the base, for the lines after the sweep.
    let live: Vec<&RecordId> = b
        .ids
        .iter()
        .enumerate()
        .filter(|(i, _)| i % SWEEP_GONE_EVERY != 1)
        .map(|(_, id)| id)
        .collect();
    let cache = Cache::builder(swept.clone(), origin.clone())
        .register::<Project>()
        .build()
        .expect("the Airtable cache");
    let before = sim.stats(BASE);
    let t = Instant::now();
    let report = cache
        .sweep(Project::schema(), SWEEP_BATCH, |_| {})
        .await
        .expect("the sweep");
    let took = t.elapsed();
    let after = sim.stats(BASE);
    let requests = after.requests - before.requests;
    let records = b.records.len() as u64;
    b.lines.push(Line {
        number: "10a".to_owned(),
        name: format!("Airtable: sweep of {} cached records", thousands(records)),
        ours: format!(
            "{requests} requests, {} ({} checked, {} removed)",
            fmt_duration(took),
            thousands(report.checked as u64),
            report.removed
        ),
        baseline: format!(
            "one request a record, as the original system: {} requests, {} at {RATE} requests/s",
            thousands(records),
            fmt_duration(Duration::from_secs_f64(records as f64 / RATE))
        ),
        ratio: fmt_ratio(requests as f64 / records as f64),
        target: format!("≤ {SWEEP_TARGET} requests"),
        verdict: Verdict::from_check(
            requests <= SWEEP_TARGET && report.removed == gone as u64 && after.rate_limited == before.rate_limited,
        ),
        notes: vec![
            format!(
                "`Cache::sweep` with batch {SWEEP_BATCH}: each batch one `exists_many`, which lists the batch's ids \
                 with a `RECORD_ID()` formula asking for no fields, {PAGE} ids a request. {gone} of the records \
                 (one in {SWEEP_GONE_EVERY}) were deleted in the base beforehand; the sweep removed {}.",
                report.removed
            ),
            format!(
                "Wall time against the rate limit's floor: {requests} requests at {rps} a second (a bucket of \
                 {rps} to start) take at least {}; {} requests answered 429.",
                fmt_duration(Duration::from_secs_f64(
                    (requests.saturating_sub(u64::from(rps))) as f64 / f64::from(rps)
                )),
                after.rate_limited - before.rate_limited
            ),
        ],
    });

    // 10b: a cold leaderboard: one event's projects, by points.
    let per_event = b.records.len() / EVENTS;
    let cold = Cache::builder(store(b, "bench-airtable-cold-query").await, origin.clone())
        .register::<Project>()
        .build()
        .expect("a cold cache");
    // Not the event of the sweep's deleted records (the second record's event).
    let event = 0;
    let before = sim.stats(BASE);
    let t = Instant::now();
    let board = cold
        .query(
            Project::by_event(&event_id(event))
                .desc(ProjectSort::Points)
                .limit(per_event),
        )
        .await
        .expect("the leaderboard");
    let took = t.elapsed();
    let after = sim.stats(BASE);
    let requests = after.requests - before.requests;
    let pages = board.len().div_ceil(PAGE) as u64;
    b.lines.push(Line {
        number: "10b".to_owned(),
        name: format!("Airtable: cold leaderboard of {per_event} projects"),
        ours: format!("{} projects, {requests} requests, {}", board.len(), fmt_duration(took)),
        baseline: format!("the pages of {PAGE} the answer takes: {pages}"),
        ratio: fmt_ratio(requests as f64 / pages as f64),
        target: "requests = pages".to_owned(),
        verdict: Verdict::from_check(board.len() == per_event && requests == pages),
        notes: vec![format!(
            "`Cache::query` of `Project::by_event(…).desc(Points)` on an empty cache: one list request a page, \
             with the event's formula and Airtable's sort, following `offset`; the whole result is stored, marked \
             complete. The time includes waiting for the rate limit's tokens after line 10a."
        )],
    });

    // 10c: 64 concurrent cold reads of different records.
    let cold = Cache::builder(store(b, "bench-airtable-cold-reads").await, origin.clone())
        .register::<Project>()
        .build()
        .expect("a cold cache");
    let ids = &live[1_000..1_000 + CONCURRENT];
    let before = sim.stats(BASE);
    let t = Instant::now();
    let reads = futures::future::join_all(ids.iter().map(|id| cold.get::<Project>(id))).await;
    let took = t.elapsed();
    let after = sim.stats(BASE);
    let answered = reads.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    let requests = after.requests - before.requests;
    let refused = after.rate_limited - before.rate_limited;
    let busiest = after.max_per_second;
    b.lines.push(Line {
        number: "10c".to_owned(),
        name: format!("Airtable: {CONCURRENT} concurrent cold reads of different records"),
        ours: format!(
            "{answered} of {CONCURRENT} answered in {}, {requests} requests, at most {busiest} in any second, \
             {refused} answered 429",
            fmt_duration(took)
        ),
        baseline: format!("Airtable's limit: {RATE} requests/s per base"),
        ratio: fmt_ratio(busiest as f64 / RATE),
        target: format!("all answered, ≤ {RATE} requests/s, no 429"),
        verdict: Verdict::from_check(answered == CONCURRENT && busiest as f64 <= RATE && refused == 0),
        notes: vec![
            format!(
                "{CONCURRENT} `Cache::get`s of records no cache holds, started at once on one task; every request \
                 waits for the client's shared limiter (`governor`, {rps} a second), so none reaches the base \
                 beyond its limit. At most {busiest} requests in any one second is the simulator's count over the \
                 whole run (lines 10a to 10e)."
            ),
            format!(
                "The floor at {rps} requests a second (a bucket of {rps} to start): {}.",
                fmt_duration(Duration::from_secs_f64(
                    (requests.saturating_sub(u64::from(rps))) as f64 / f64::from(rps)
                ))
            ),
        ],
    });

    // 10d, 10e: the webhooks-API feed, notified on a loopback route.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port for the notification route");
    let url = format!("http://{}/airtable", listener.local_addr().expect("its address"));
    let webhook = client.create_webhook(Some(&url)).await.expect("a webhook");
    let mut config = FeedConfig::new(webhook.id, webhook.mac_secret_base64);
    // Notifications only: the poll would hide a slow notification path.
    config.poll_interval = Duration::from_secs(3600);
    let feed = WebhookFeed::new(cache.clone(), origin.clone(), config).expect("the feed");
    let app: axum::Router = feed.routes("/airtable");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let feed = feed.clone();
        async move {
            feed.run(async {
                let _ = stop.await;
            })
            .await;
        }
    });
    // One change at a time, the first ones untimed: they take the feed's start-up work (its
    // webhook refresh and first rounds).
    let rename = async |round: usize, id: &RecordId| {
        let name = format!("renamed {round}");
        let t = Instant::now();
        assert!(sim.update(BASE, "Projects", id.as_str(), fields(json!({ "name": name }))));
        until_named(&swept, id, &name, t).await
    };
    let warmup = 3;
    let start = sim.stats(BASE);
    let mut first = Vec::new();
    for (round, id) in live[2_000..2_000 + warmup].iter().enumerate() {
        first.push(rename(round, id).await);
    }
    let changes = b.n(40, 10);
    let before = sim.stats(BASE);
    let notified = feed.notifications();
    let mut latency = Samples::new();
    for (round, id) in live[2_000 + warmup..2_000 + warmup + changes].iter().enumerate() {
        latency.push(rename(warmup + round, id).await);
    }
    let after = sim.stats(BASE);
    let latency = latency.summary();
    let per_change = (after.requests - before.requests) as f64 / changes as f64;
    let pings = feed.notifications() - notified;
    // One change at a time leaves the bucket empty: each request waits for its token.
    let floor = Duration::from_secs_f64(per_change / RATE);
    b.lines.push(Line {
        number: "10d".to_owned(),
        name: "Airtable: feed notification-to-cache latency (one change at a time)".to_owned(),
        ours: p50_p99(&latency),
        baseline: format!(
            "the limiter's floor: {per_change:.1} requests a change at {RATE} requests/s: {}",
            fmt_duration(floor)
        ),
        ratio: fmt_ratio(ratio(latency.p50, floor)),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            format!(
                "{changes} records renamed in the simulator one at a time; each timed from the change to the \
                 renamed record in the Redis store (read every millisecond). {pings} notifications were accepted \
                 (`X-Airtable-Content-MAC` checked); the feed's poll was set to an hour, so every change came by \
                 its notification."
            ),
            format!(
                "Requests per change: {per_change:.1} (the payloads after the stored cursor; whole records are \
                 fetched only where a payload lacks cells). Each waits for the client's limiter: at {rps} \
                 requests a second the latency is mostly the limiter's wait, not the simulator's answer."
            ),
            format!(
                "Untimed, the first {warmup} changes after the feed started: {} ({} requests), the feed's \
                 start-up work included.",
                first.iter().map(|d| fmt_duration(*d)).collect::<Vec<_>>().join(", "),
                before.requests - start.requests
            ),
        ],
    });

    let t = Instant::now();
    let before = sim.stats(BASE);
    let bulk: Vec<&RecordId> = live.iter().skip(4_000).take(BULK).copied().collect();
    for id in &bulk {
        assert!(sim.update(BASE, "Projects", id.as_str(), fields(json!({ "name": "bulk" }))));
    }
    let last = bulk.last().expect("a bulk change");
    until_named(&swept, last, "bulk", t).await;
    let took = t.elapsed();
    let after = sim.stats(BASE);
    for id in &bulk {
        match swept.get(Project::schema(), id).await.expect("store get") {
            Lookup::Hit(bytes) => assert_eq!(Project::from_cached(&bytes).expect("decode").name, "bulk"),
            other => panic!("{id} is not cached after the feed: {other:?}"),
        }
    }
    let requests = after.requests - before.requests;
    let rate = BULK as f64 / took.as_secs_f64();
    let floor = Duration::from_secs_f64(requests.saturating_sub(u64::from(rps)) as f64 / f64::from(rps));
    b.lines.push(Line {
        number: "10e".to_owned(),
        name: format!(
            "Airtable: feed changes applied per second ({} changed at once)",
            thousands(BULK as u64)
        ),
        ours: format!(
            "{} ({} in {}, {requests} requests)",
            fmt_rate(rate),
            thousands(BULK as u64),
            fmt_duration(took)
        ),
        baseline: format!(
            "the same {requests} requests at {RATE} requests/s: {} ({})",
            fmt_duration(floor),
            fmt_rate(BULK as f64 / floor.as_secs_f64().max(f64::MIN_POSITIVE))
        ),
        ratio: fmt_ratio(rate * floor.as_secs_f64() / BULK as f64),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            format!(
                "{} records renamed in the simulator at once (one Airtable transaction each); timed until every \
                 one is in the Redis store as renamed, through `Cache::apply_changes` in \
                 `baseTransactionNumber` order. {} answered 429.",
                thousands(BULK as u64),
                after.rate_limited - before.rate_limited
            ),
            "The ratio is the rate over the rate the requests made would allow at Airtable's limit: the feed \
             is bounded by the requests it needs, not by the cache."
                .to_owned(),
        ],
    });
    let _ = stop_tx.send(());
    running.await.expect("the feed stops");
    server.abort();
    eprintln!(
        "model-cache bench: 10 Airtable lines took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
