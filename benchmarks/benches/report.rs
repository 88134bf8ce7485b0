//! The benchmark report: `cargo bench -p model-cache-bench`.
//!
//! Spawns one `redis-server` on loopback and measures, against it, model-cache beside the
//! physical limit (raw redis-rs commands on the store's own connection, `redis-benchmark`) and
//! beside peers (`cached`'s Redis store, a bare `moka` cache), then the demo's HTTP API with
//! and without the cache. Each comparison runs its variants in alternate batches after a
//! warm-up, so every ratio holds on a noisy machine. Writes `docs/benchmarks.md` and the
//! figures block of `docs/src/benchmarks.md`.
//!
//! For a quick look, `MODEL_CACHE_BENCH_SCALE=0.1` takes a tenth of the samples and
//! `MODEL_CACHE_BENCH_ONLY=1,3,5a` runs only those lines (the warm-up always runs); such a
//! partial run prints the report instead of writing it: only a full run writes the docs.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{Cache, Cacheable, Lookup, MemoryStore, Query, QueryLookup, RecordId, RecordWrite, Store, WriteMode};
use cache_redis::{RedisConnection, RedisStore, testing::RedisServer};
use cached::ConcurrentCachedAsync;
use model_cache_bench::{
    http::{self, LoadPlan, LoadResult},
    machine::{self, Machine},
    model::{self, Project, ProjectSort, TARGET_JSON_BYTES},
    origin::CountingOrigin,
    redis_benchmark,
    report::{Line, Report, Verdict, fmt_duration, fmt_rate, fmt_ratio, replace_between, thousands},
    sample::{Plan, Samples, Summary, interleave, ratio, time_cpu},
};

/// The one documented command.
const COMMAND: &str = "cargo bench -p model-cache-bench";
/// Records cached for the latency lines.
const RECORDS: usize = 10_000;
/// Events the records are spread over (200 projects each).
const EVENTS: usize = 50;
/// Ids per `get_many`.
const MANY: usize = 100;
/// The page of an index query.
const PAGE: usize = 50;
/// Concurrent tasks (and `redis-benchmark` clients) of the throughput line.
const CLIENTS: usize = 64;
/// Ids per `get_many` when warming, as `demo-app warm` does by default.
const WARM_BATCH: usize = 500;
/// Records cached for the sweep.
const SWEEP_RECORDS: usize = 100_000;
/// Ids per `Origin::exists_many` call of the sweep (the demo's default).
const SWEEP_BATCH: usize = 500;
/// One sweep record in this many is gone from the origin, for the sweep to remove.
const SWEEP_GONE_EVERY: usize = 1_000;
/// Records per `Store::put` when filling the sweep's store.
const PUT_BATCH: usize = 1_000;
/// The record TTL of the model (`ttl = "8h"`).
const TTL: Duration = Duration::from_secs(8 * 3600);
/// Begin and end of the figures block in the book chapter.
const BOOK_BEGIN: &str = "<!-- report:begin -->";
const BOOK_END: &str = "<!-- report:end -->";

fn main() {
    let scale = std::env::var("MODEL_CACHE_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(1.0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let only: Option<Vec<String>> = std::env::var("MODEL_CACHE_BENCH_ONLY").ok().map(|list| {
        list.split(',')
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect()
    });
    let report = runtime.block_on(run(scale, only.as_deref()));
    if (scale - 1.0).abs() > f64::EPSILON || only.is_some() {
        println!("\n{}", report.to_markdown());
        println!(
            "A partial run (MODEL_CACHE_BENCH_SCALE={scale}, MODEL_CACHE_BENCH_ONLY={only:?}): the docs are left as they are."
        );
        return;
    }
    println!("\n{}\n{}", report.header(), report.table());
    println!("{}", report.tally());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf);
    let out = root.join("docs/benchmarks.md");
    std::fs::write(&out, report.to_markdown()).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
    println!("wrote {}", out.display());
    let book = root.join("docs/src/benchmarks.md");
    if let Ok(chapter) = std::fs::read_to_string(&book) {
        let block = format!("{}\n{}\n{}", report.header(), report.table(), report.tally());
        match replace_between(&chapter, BOOK_BEGIN, BOOK_END, &block) {
            Some(updated) => {
                std::fs::write(&book, updated).unwrap_or_else(|e| panic!("writing {}: {e}", book.display()));
                println!("updated the figures in {}", book.display());
            }
            None => println!("{} has no {BOOK_BEGIN} block: not updated", book.display()),
        }
    }
}

/// Everything the lines share: the server, the store on it, the cache and the records.
struct Bench {
    scale: f64,
    server: RedisServer,
    store: RedisStore,
    conn: RedisConnection,
    cache: Cache,
    origin: CountingOrigin,
    records: Vec<Project>,
    ids: Vec<RecordId>,
    /// The record key of each id.
    keys: Vec<String>,
    /// The tombstone key of each id.
    tombs: Vec<String>,
    /// The cached form of each record.
    bodies: Vec<Vec<u8>>,
    /// Decoding one cached record on its own.
    decode_one: Option<Summary>,
    lines: Vec<Line>,
}

impl Bench {
    /// `full` scaled, at least `min`.
    fn n(&self, full: usize, min: usize) -> usize {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let scaled = (full as f64 * self.scale).round() as usize;
        scaled.max(min)
    }

    /// The `i`-th id of a fixed permutation of the ids, so that consecutive operations read
    /// records far apart.
    fn spread(&self, i: usize) -> usize {
        (i * 7_919) % self.ids.len()
    }

    async fn flushdb(&self) {
        let () = redis::cmd("FLUSHDB")
            .query_async(&mut self.conn.clone())
            .await
            .expect("FLUSHDB");
    }

    async fn used_memory(&self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut self.conn.clone())
            .await
            .expect("INFO memory");
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    async fn memory_usage(&self, key: &str) -> u64 {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .arg("SAMPLES")
            .arg(0)
            .query_async::<Option<u64>>(&mut self.conn.clone())
            .await
            .expect("MEMORY USAGE")
            .unwrap_or(0)
    }

    /// Every key matching `pattern` (`SCAN`, never `KEYS`).
    async fn scan(&self, pattern: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1_000)
                .query_async(&mut self.conn.clone())
                .await
                .expect("SCAN");
            keys.extend(page);
            if next == 0 {
                return keys;
            }
            cursor = next;
        }
    }

    /// Warms the cache as `demo-app warm` does: `get_many` in batches, each one origin
    /// `fetch_many` and one store write for what is missing.
    async fn warm(&self) -> usize {
        let mut loaded = 0;
        for chunk in self.ids.chunks(WARM_BATCH) {
            loaded += self
                .cache
                .get_many::<Project>(chunk)
                .await
                .expect("warm get_many")
                .len();
        }
        loaded
    }
}

async fn run(scale: f64, only: Option<&[String]>) -> Report {
    let started = Instant::now();
    let server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .connect()
        .await
        .expect("connect the store to the spawned redis-server");
    let conn = store.connection();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn.clone())
        .await
        .expect("INFO server");
    let machine = Machine::detect(machine::redis_version(&info).unwrap_or_else(|| "unknown".to_owned()));
    eprintln!("model-cache bench: {machine:?}, scale {scale}");

    let records = model::generate(RECORDS, EVENTS, TARGET_JSON_BYTES);
    let origin = CountingOrigin::new();
    for r in &records {
        origin.put(r).expect("a source record");
    }
    let cache = Cache::builder(store.clone(), origin.clone())
        .register::<Project>()
        .build()
        .expect("the cache");
    let layout = store.key_layout(Project::schema());
    let ids: Vec<RecordId> = records.iter().map(|r| r.id.clone()).collect();
    let keys = ids.iter().map(|id| layout.for_id(id).record(id)).collect();
    let tombs = ids.iter().map(|id| layout.for_id(id).tombstone(id)).collect();
    let bodies = records.iter().map(|r| r.to_cached().expect("cached form")).collect();
    let mut b = Bench {
        scale,
        server,
        store,
        conn,
        cache,
        origin,
        records,
        ids,
        keys,
        tombs,
        bodies,
        decode_one: None,
        lines: Vec::new(),
    };

    // The warm-up always runs: the lines after it read what it cached.
    step("6a warm-up", warm_line(&mut b)).await;
    if wanted(only, "7") {
        step("7 memory", memory_lines(&mut b)).await;
    }
    if wanted(only, "1") {
        step("1 get", get_line(&mut b)).await;
    }
    if wanted(only, "2") {
        step("2 get_many", get_many_line(&mut b)).await;
    }
    if wanted(only, "3") {
        step("3 query", query_line(&mut b)).await;
    }
    if wanted(only, "4") {
        step("4 throughput", throughput_line(&mut b)).await;
    }
    if wanted(only, "5a") {
        step("5a cached", cached_line(&mut b)).await;
    }
    if wanted(only, "5b") {
        step("5b moka", moka_line(&mut b)).await;
    }
    if wanted(only, "6b") {
        step("6b sweep", sweep_line(&mut b)).await;
    }
    // Last: the demo's router installs the Prometheus recorder for the whole process, which
    // would make every later in-process line pay for metrics.
    if wanted(only, "8") {
        step("8 http", http_lines(&mut b)).await;
    }

    let mut lines = std::mem::take(&mut b.lines);
    lines.sort_by(|x, y| x.number.cmp(&y.number));
    Report {
        machine,
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        command: COMMAND.to_owned(),
        elapsed: started.elapsed(),
        lines,
        method: method(&b),
    }
}

/// Whether line `number` runs: every line unless `MODEL_CACHE_BENCH_ONLY` lists some.
fn wanted(only: Option<&[String]>, number: &str) -> bool {
    only.is_none_or(|only| only.iter().any(|n| n == number))
}

async fn step(name: &str, work: impl Future<Output = ()>) {
    eprintln!("model-cache bench: {name}...");
    let started = Instant::now();
    work.await;
    eprintln!(
        "model-cache bench: {name} done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn method(b: &Bench) -> Vec<String> {
    vec![
        format!(
            "One `redis-server` spawned on a free loopback port (`cache_redis::testing::RedisServer`: \
             `--save \"\" --appendonly no`); every line runs against it, never against a shared server."
        ),
        format!(
            "Records: {} demo `Project`s (same fields, indexes and sort keys as the demo) spread over {} events, \
             {} bytes of cached JSON each on average.",
            thousands(b.records.len() as u64),
            EVENTS,
            b.bodies.iter().map(Vec::len).sum::<usize>() / b.bodies.len().max(1)
        ),
        "Latency lines: one operation at a time on a tokio current-thread runtime (one OS thread), the variants \
         run in alternate batches (the order rotating every round) after an untimed warm-up of each, so that \
         drift hits them alike; p50 and p99 are nearest-rank percentiles of every operation's latency. The \
         headline ratio is of the medians; targets are judged on it."
            .to_owned(),
        "Raw baselines run on the store's own connection (`RedisStore::connection()`, the same redis-rs \
         `ConnectionManager`), so they pay the same client costs; they do not decode the bytes they fetch."
            .to_owned(),
        "In-process lines (moka, `MemoryStore`, decoding) time groups of 16 operations and record the mean, \
         so that reading the clock does not weigh on sub-microsecond operations."
            .to_owned(),
        "Round trips are counted with `MONITOR` (`RedisServer::count_commands`): commands a client sent, not \
         those a Lua script ran. None of model-cache's operations pipelines, so each command is one round trip."
            .to_owned(),
        "Throughput and HTTP lines alternate whole runs instead of batches and add up (or take the median of) \
         the rounds."
            .to_owned(),
        "No metrics recorder is installed for lines 1 to 7 (the library's default); line 8 runs the demo as \
         shipped, with its Prometheus recorder."
            .to_owned(),
    ]
}

/// `p50 52.1 µs, p99 90.3 µs`.
fn p50_p99(s: &Summary) -> String {
    format!("p50 {}, p99 {}", fmt_duration(s.p50), fmt_duration(s.p99))
}

/// The part of `whole` that `part` is, as a percentage.
fn share(part: Duration, whole: Duration) -> String {
    format!("{:.0}%", 100.0 * ratio(part, whole))
}

/// `a - b` with its sign: `+5.21 µs`, `−0.40 µs`.
fn signed(a: Duration, b: Duration) -> String {
    if a >= b {
        format!("+{}", fmt_duration(a - b))
    } else {
        format!("−{}", fmt_duration(b - a))
    }
}

/// `a - b`, signed, for people.
fn gap(a: Duration, b: Duration) -> String {
    if a >= b {
        fmt_duration(a - b)
    } else {
        format!("−{}", fmt_duration(b - a))
    }
}

// ------------------------------------------------------------------ 6a: warm-up

async fn warm_line(b: &mut Bench) {
    let rounds = 3;
    let mut ours = Vec::new();
    let mut hand = Vec::new();
    let mut puts = Vec::new();
    let mut memory_per_record = 0;
    let mut calls = 0;
    let mut loaded = 0;
    for _ in 0..rounds {
        // The hand-written writes first, ours last: the cache stays warm for the next lines.
        b.flushdb().await;
        let t = Instant::now();
        hand_written_writes(b).await;
        hand.push(t.elapsed());

        b.flushdb().await;
        let t = Instant::now();
        for chunk in b.records.chunks(WARM_BATCH) {
            let writes = record_writes(chunk);
            b.store
                .put(Project::schema(), &writes, WriteMode::Upsert)
                .await
                .expect("put");
        }
        puts.push(t.elapsed());

        b.flushdb().await;
        let memory_before = b.used_memory().await;
        let calls_before = b.origin.calls().total();
        let t = Instant::now();
        loaded = b.warm().await;
        ours.push(t.elapsed());
        calls = b.origin.calls().total() - calls_before;
        memory_per_record = (b.used_memory().await.saturating_sub(memory_before)) / b.records.len() as u64;
    }
    assert_eq!(loaded, b.records.len(), "warming loaded every record");
    // The commands of one warming batch, from an empty server; then the rest, as before.
    b.flushdb().await;
    let (_, commands) = b
        .server
        .count_commands(b.cache.get_many::<Project>(&b.ids[..WARM_BATCH.min(b.ids.len())]))
        .await;
    b.warm().await;
    // The client's CPU work of a read-through fill, alone: parsing the source records into
    // models, then their cached form and index entries.
    let sources: Vec<_> = b.records.iter().map(|r| r.to_source().expect("source shape")).collect();
    let mut prepare = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for source in &sources {
            let record = Project::from_source(source.clone()).expect("parse");
            std::hint::black_box((record.to_cached().expect("encode"), record.index_entries()));
        }
        prepare.push(t.elapsed());
    }
    ours.sort();
    hand.sort();
    puts.sort();
    prepare.sort();
    let (ours, hand, put, prepare) = (
        ours[rounds / 2],
        hand[rounds / 2],
        puts[rounds / 2],
        prepare[rounds / 2],
    );
    let n = b.records.len();
    let target = Duration::from_millis(500);
    b.lines.push(Line {
        number: "6a".to_owned(),
        name: format!("Warm-up: {} records written with their indexes", thousands(n as u64)),
        ours: format!(
            "{} ({}/s), `get_many` batches of {WARM_BATCH}",
            fmt_duration(ours),
            thousands((n as f64 / ours.as_secs_f64()) as u64)
        ),
        baseline: format!("hand-written pipelines of the same keys: {}", fmt_duration(hand)),
        ratio: fmt_ratio(ratio(ours, hand)),
        target: "well under a second: ≤ 0.5 s".to_owned(),
        verdict: Verdict::from_check(ours <= target),
        notes: vec![
            format!(
                "Median of {rounds} rounds, each variant from an empty server (`FLUSHDB`): the hand-written \
                 writes, `Store::put` alone, then model-cache's warm-up."
            ),
            format!(
                "model-cache warms as `demo-app warm` does: `Cache::get_many` over batches of {WARM_BATCH} ids, so \
                 each batch is one store read, one origin `fetch_many`, one lease and one atomic `put` script that \
                 writes the records, their meta, id set, tag sets and sort sets. {calls} origin calls for {} records \
                 (`ceil({n} / {WARM_BATCH})` = {}).",
                thousands(n as u64),
                n.div_ceil(WARM_BATCH)
            ),
            format!(
                "Where the time goes: `Store::put` alone of the same records (upserts, batches of {WARM_BATCH}, \
                 encoding included): {} — the atomic script moving each record into its index entries; the \
                 client's CPU work of the fills alone (parsing {} source records, encoding them, computing their \
                 index entries): {}; the rest (the store read that finds them missing, the leases, the origin \
                 calls, cloning source records): {}.",
                fmt_duration(put),
                thousands(n as u64),
                fmt_duration(prepare),
                gap(ours, put + prepare)
            ),
            format!(
                "Commands of one warming batch of {WARM_BATCH} missing records: {} (each one round trip).",
                commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            ),
            "The hand-written baseline pipelines, per batch of 500, `SET … PX` of each record, `HSET` of its \
             index entries, `ZADD` to the id set, `SADD` to each tag set, `ZADD` to each sort set and a `PEXPIRE` \
             per shared key, in one round trip: no version check, no lease, no atomicity."
                .to_owned(),
            format!(
                "`used_memory` grew by {} bytes per record during model-cache's warm-up (see line 7); this counts \
                 the fills' lease keys too, which live until the lease TTL (30 s) ends.",
                thousands(memory_per_record)
            ),
        ],
    });
}

/// What `Store::put` takes for `records`, as the cache builds it.
fn record_writes(records: &[Project]) -> Vec<RecordWrite> {
    records
        .iter()
        .map(|r| RecordWrite {
            id: r.id.clone(),
            body: Bytes::from(r.to_cached().expect("cached form")),
            index: r.index_entries(),
            version: r.version(),
            ttl: TTL,
        })
        .collect()
}

/// The same records and index entries as a warm-up writes, in hand-written pipelines.
async fn hand_written_writes(b: &Bench) {
    let ttl = u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX);
    for (chunk, bodies) in b.records.chunks(WARM_BATCH).zip(b.bodies.chunks(WARM_BATCH)) {
        let mut pipe = redis::pipe();
        let mut shared = std::collections::BTreeSet::new();
        shared.insert("hand:m".to_owned());
        shared.insert("hand:ids".to_owned());
        for (record, body) in chunk.iter().zip(bodies) {
            let id = record.id.as_str();
            let index = record.index_entries();
            let meta = serde_json::to_vec(&index).expect("index entries as JSON");
            pipe.cmd("SET")
                .arg(format!("hand:r:{id}"))
                .arg(body.as_slice())
                .arg("PX")
                .arg(ttl)
                .ignore();
            pipe.cmd("HSET").arg("hand:m").arg(id).arg(meta).ignore();
            pipe.cmd("ZADD").arg("hand:ids").arg(0).arg(id).ignore();
            for (field, value) in &index.tags {
                let key = format!("hand:t:{field}:{value}");
                pipe.cmd("SADD").arg(&key).arg(id).ignore();
                shared.insert(key);
            }
            for (field, score) in &index.scores {
                let key = format!("hand:s:{field}");
                pipe.cmd("ZADD").arg(&key).arg(*score).arg(id).ignore();
                shared.insert(key);
            }
        }
        for key in shared {
            pipe.cmd("PEXPIRE").arg(key).arg(ttl).ignore();
        }
        let () = pipe
            .query_async(&mut b.conn.clone())
            .await
            .expect("hand-written writes");
    }
}

// ------------------------------------------------------------------ 7: memory

async fn memory_lines(b: &mut Bench) {
    let n = b.records.len() as u64;
    let json = b.bodies.iter().map(Vec::len).sum::<usize>() as u64 / n;
    let step = (b.keys.len() / 500).max(1);
    let mut record_total = 0;
    let mut sampled = 0;
    for key in b.keys.iter().step_by(step) {
        record_total += b.memory_usage(key).await;
        sampled += 1;
    }
    let record = record_total / sampled;
    let prefix = b.store.key_layout(Project::schema()).bucket(0).prefix().to_owned();
    let (mut meta, mut idset, mut tags, mut sorts, mut other) = (0, 0, 0, 0, 0);
    let mut other_keys = Vec::new();
    let mut leases = 0u64;
    for key in b.scan(&format!("{prefix}:*")).await {
        let rest = &key[prefix.len()..];
        if rest.starts_with(":r:") || rest.starts_with(":tomb:") {
            continue;
        }
        if rest.starts_with(":lease:") {
            leases += 1;
            continue;
        }
        let usage = b.memory_usage(&key).await;
        match rest {
            ":m" => meta += usage,
            ":ids" => idset += usage,
            r if r.starts_with(":t:") => tags += usage,
            r if r.starts_with(":s:") => sorts += usage,
            r => {
                other += usage;
                other_keys.push(r.trim_start_matches(':').to_owned());
            }
        }
    }
    let index = (meta + idset + tags + sorts + other) / n;
    #[allow(clippy::cast_precision_loss)]
    let times = |bytes: u64| fmt_ratio(bytes as f64 / json as f64);
    b.lines.push(Line {
        number: "7a".to_owned(),
        name: "Memory per cached record: the record key".to_owned(),
        ours: format!("{} B (`MEMORY USAGE` of the record key)", thousands(record)),
        baseline: format!("its JSON: {} B", thousands(json)),
        ratio: times(record),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![format!(
            "Mean `MEMORY USAGE … SAMPLES 0` of {sampled} record keys out of {}: the value (the cached JSON \
             as is, no compression), the key name (about {} bytes: namespace, hash tag, schema fingerprint, id) \
             and Redis's per-key overhead and expiry entry.",
            thousands(n),
            b.keys[0].len()
        )],
    });
    b.lines.push(Line {
        number: "7b".to_owned(),
        name: "Memory per cached record: with its index entries".to_owned(),
        ours: format!(
            "{} B (record {} + index {})",
            thousands(record + index),
            thousands(record),
            thousands(index)
        ),
        baseline: format!("its JSON: {} B", thousands(json)),
        ratio: times(record + index),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            format!(
                "Index share per record (whole keys over {} records): meta hash {} B, id set {} B, tag sets \
                 (`event`, `owner`) {} B, sort sets (`points`, `created_at`) {} B, other keys ({}) {} B.",
                thousands(n),
                meta / n,
                idset / n,
                tags / n,
                sorts / n,
                other_keys.join(", "),
                other / n
            ),
            "The meta hash keeps each record's index entries and version so that an upsert can move the \
             record out of its old index entries atomically, without reading the old record."
                .to_owned(),
            format!(
                "Not counted: {} lease keys left by the warm-up's fills (a fill does not delete its lease; they \
                 expire with the 30 s lease TTL).",
                thousands(leases)
            ),
        ],
    });
}

// ------------------------------------------------------------------ 1: get

async fn get_line(b: &mut Bench) {
    let decode = time_cpu(b.n(20_000, 2_000), 16, |i| {
        let body = &b.bodies[i % b.bodies.len()];
        std::hint::black_box(Project::from_cached(body).expect("decode"));
    });
    b.decode_one = Some(decode);
    let plan = Plan::new(b.n(40_000, 2_000), 500, 2_000);
    let (cache, conn, store) = (&b.cache, &b.conn, &b.store);
    let bench = &*b;
    let schema = Project::schema();
    let s = interleave(5, &plan, async |variant, i| {
        let k = bench.spread(i);
        match variant {
            0 => {
                let found: Option<Project> = cache.get(&bench.ids[k]).await.expect("get");
                assert!(found.is_some(), "a hit");
            }
            1 => {
                let raw: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&bench.keys[k])
                    .query_async(&mut conn.clone())
                    .await
                    .expect("GET");
                assert!(std::hint::black_box(raw).is_some());
            }
            2 => {
                let raw: (Option<Vec<u8>>, Option<Vec<u8>>) = redis::cmd("MGET")
                    .arg(&bench.keys[k])
                    .arg(&bench.tombs[k])
                    .query_async(&mut conn.clone())
                    .await
                    .expect("MGET");
                assert!(std::hint::black_box(raw).0.is_some());
            }
            3 => match store.get(schema, &bench.ids[k]).await.expect("store get") {
                Lookup::Hit(bytes) => {
                    std::hint::black_box::<Bytes>(bytes);
                }
                other => panic!("a hit, not {other:?}"),
            },
            _ => match store.get(schema, &bench.ids[k]).await.expect("store get") {
                Lookup::Hit(bytes) => {
                    std::hint::black_box(Project::from_cached(&bytes).expect("decode"));
                }
                other => panic!("a hit, not {other:?}"),
            },
        }
    })
    .await;
    let (ours, raw, mget, store_get) = (s[0].summary(), s[1].summary(), s[2].summary(), s[3].summary());
    let store_decode = s[4].summary();
    let (_, commands) = b.server.count_commands(b.cache.get::<Project>(&b.ids[1])).await;
    let r = ours.p50_ratio(&raw);
    let target = 1.2;

    b.lines.push(Line {
        number: "1".to_owned(),
        name: "`Cache::get` hit (Redis) vs raw `GET` of the same bytes".to_owned(),
        ours: p50_p99(&ours),
        baseline: format!("raw `GET`, same connection: {}", p50_p99(&raw)),
        ratio: fmt_ratio(r),
        target: format!("≤ {target:.2}x"),
        verdict: Verdict::from_check(r <= target && commands.len() == 1),
        notes: vec![
            format!(
                "{} samples of each; p99 ratio {}.",
                thousands(ours.count as u64),
                fmt_ratio(ours.p99_ratio(&raw))
            ),
            format!(
                "Commands per hit: {} — one round trip, reading the record and its tombstone key together.",
                commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "Where the {} between the two medians goes, step by step: reading the tombstone key too (raw \
                 `MGET` of both keys: {}, {}); `RedisStore::get` alone (key building, circuit breaker, the same \
                 `MGET`, no decoding: {}, {} over the raw `MGET`); `RedisStore::get` then decoding the bytes \
                 into a `Project` by hand ({}, {}; the same decode measured alone, hot: p50 {}); `Cache::get` \
                 over that ({}: statistics, telemetry, the read-through bookkeeping).",
                gap(ours.p50, raw.p50),
                p50_p99(&mget),
                signed(mget.p50, raw.p50),
                p50_p99(&store_get),
                signed(store_get.p50, mget.p50),
                p50_p99(&store_decode),
                signed(store_decode.p50, store_get.p50),
                fmt_duration(decode.p50),
                signed(ours.p50, store_decode.p50)
            ),
        ],
    });
}

// ------------------------------------------------------------------ 2: get_many

async fn get_many_line(b: &mut Bench) {
    let order: Vec<usize> = (0..b.ids.len()).map(|i| b.spread(i)).collect();
    let windows: Vec<Vec<usize>> = order.chunks(MANY).map(<[usize]>::to_vec).collect();
    let window_ids: Vec<Vec<RecordId>> = windows
        .iter()
        .map(|w| w.iter().map(|&k| b.ids[k].clone()).collect())
        .collect();
    let window_keys: Vec<Vec<&str>> = windows
        .iter()
        .map(|w| w.iter().map(|&k| b.keys[k].as_str()).collect())
        .collect();
    let window_both: Vec<Vec<&str>> = windows
        .iter()
        .map(|w| {
            w.iter()
                .flat_map(|&k| [b.keys[k].as_str(), b.tombs[k].as_str()])
                .collect()
        })
        .collect();
    let decode = time_cpu(b.n(2_000, 200), 1, |i| {
        for &k in &windows[i % windows.len()] {
            std::hint::black_box(Project::from_cached(&b.bodies[k]).expect("decode"));
        }
    });
    let plan = Plan::new(b.n(5_000, 300), 100, 200);
    let (cache, conn, store) = (&b.cache, &b.conn, &b.store);
    let schema = Project::schema();
    let s = interleave(4, &plan, async |variant, i| {
        let w = i % windows.len();
        match variant {
            0 => {
                let found: Vec<Project> = cache.get_many(&window_ids[w]).await.expect("get_many");
                assert_eq!(found.len(), MANY, "all hits");
            }
            1 => {
                let raw: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&window_keys[w])
                    .query_async(&mut conn.clone())
                    .await
                    .expect("MGET");
                assert_eq!(std::hint::black_box(raw).len(), MANY);
            }
            2 => {
                let raw: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&window_both[w])
                    .query_async(&mut conn.clone())
                    .await
                    .expect("MGET");
                assert_eq!(std::hint::black_box(raw).len(), 2 * MANY);
            }
            _ => {
                let found = store.get_many(schema, &window_ids[w]).await.expect("store get_many");
                assert!(std::hint::black_box(found).iter().all(|l| matches!(l, Lookup::Hit(_))));
            }
        }
    })
    .await;
    let (ours, raw, both, store_many) = (s[0].summary(), s[1].summary(), s[2].summary(), s[3].summary());
    let (_, commands) = b
        .server
        .count_commands(b.cache.get_many::<Project>(&window_ids[0]))
        .await;
    let r = ours.p50_ratio(&raw);
    let target = 1.3;
    b.lines.push(Line {
        number: "2".to_owned(),
        name: format!("`Cache::get_many` of {MANY} hits vs one raw `MGET`"),
        ours: p50_p99(&ours),
        baseline: format!("raw `MGET` of the {MANY} record keys: {}", p50_p99(&raw)),
        ratio: fmt_ratio(r),
        target: format!("≤ {target:.2}x, one round trip"),
        verdict: Verdict::from_check(r <= target && commands.len() == 1),
        notes: vec![
            format!(
                "{} samples of each; p99 ratio {}.",
                thousands(ours.count as u64),
                fmt_ratio(ours.p99_ratio(&raw))
            ),
            format!(
                "Commands per `get_many`: {} ({} round trip{}).",
                commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
                commands.len(),
                if commands.len() == 1 { "" } else { "s" }
            ),
            format!(
                "Where the {} between the medians goes, step by step: reading the {MANY} tombstone keys too (raw \
                 `MGET` of all {} keys: {}, {}); `RedisStore::get_many` alone (building {} key names, the same \
                 `MGET`, no decoding: {}, {}); `Cache::get_many` over it ({}: decoding {MANY} records, measured \
                 alone at p50 {}, plus de-duplicating the ids, statistics and telemetry).",
                gap(ours.p50, raw.p50),
                2 * MANY,
                p50_p99(&both),
                signed(both.p50, raw.p50),
                2 * MANY,
                p50_p99(&store_many),
                signed(store_many.p50, both.p50),
                signed(ours.p50, store_many.p50),
                fmt_duration(decode.p50)
            ),
        ],
    });
}

// ------------------------------------------------------------------ 3: index query

/// What the hand-written variants of one event's query need.
struct HandQuery {
    sort: String,
    tag: String,
    record_prefix: String,
    record_pattern: String,
    tmp: String,
}

fn leaderboard(event: usize) -> Query<Project> {
    Project::by_event(&model::event_id(event))
        .desc(ProjectSort::Points)
        .limit(PAGE)
}

/// The hand-written query in two round trips: `ZINTER` of the sort set and the tag set, then
/// `MGET` of the page's records.
async fn hand_two_trips(conn: &RedisConnection, h: &HandQuery) -> Vec<Option<Vec<u8>>> {
    let ids: Vec<String> = redis::cmd("ZINTER")
        .arg(2)
        .arg(&h.sort)
        .arg(&h.tag)
        .arg("WEIGHTS")
        .arg(1)
        .arg(0)
        .query_async(&mut conn.clone())
        .await
        .expect("ZINTER");
    let keys: Vec<String> = ids
        .iter()
        .rev()
        .take(PAGE)
        .map(|id| format!("{}{id}", h.record_prefix))
        .collect();
    redis::cmd("MGET")
        .arg(keys)
        .query_async(&mut conn.clone())
        .await
        .expect("MGET")
}

/// The hand-written query in one round trip: a pipeline of `ZINTERSTORE` into a temporary
/// key, `SORT … BY nosort DESC LIMIT 0 50 GET <record pattern>` and `DEL`.
async fn hand_one_trip(conn: &RedisConnection, h: &HandQuery) -> Vec<Option<Vec<u8>>> {
    let mut pipe = redis::pipe();
    pipe.cmd("ZINTERSTORE")
        .arg(&h.tmp)
        .arg(2)
        .arg(&h.sort)
        .arg(&h.tag)
        .arg("WEIGHTS")
        .arg(1)
        .arg(0)
        .ignore();
    pipe.cmd("SORT")
        .arg(&h.tmp)
        .arg("BY")
        .arg("nosort")
        .arg("DESC")
        .arg("LIMIT")
        .arg(0)
        .arg(PAGE)
        .arg("GET")
        .arg(&h.record_pattern);
    pipe.cmd("DEL").arg(&h.tmp).ignore();
    let (bodies,): (Vec<Option<Vec<u8>>>,) = pipe.query_async(&mut conn.clone()).await.expect("pipeline");
    bodies
}

/// The best query script by hand: `ZINTER` of the sort set and the tag set, the page taken
/// from its end (descending), its records read with one `MGET`; bodies only. It checks no
/// completeness marker.
const HAND_QUERY_SCRIPT: &str = r"
local all = redis.call('ZINTER', 2, KEYS[1], KEYS[2], 'WEIGHTS', 1, 0)
local keys = {}
for i = #all, math.max(1, #all - tonumber(ARGV[2]) + 1), -1 do keys[#keys + 1] = ARGV[1] .. all[i] end
if #keys == 0 then return {} end
return redis.call('MGET', unpack(keys))
";

/// The hand-written query in one round trip as a Lua script (`EVALSHA`).
async fn hand_script(conn: &RedisConnection, script: &redis::Script, h: &HandQuery) -> Vec<Option<Vec<u8>>> {
    script
        .key(&h.sort)
        .key(&h.tag)
        .arg(&h.record_prefix)
        .arg(PAGE)
        .invoke_async(&mut conn.clone())
        .await
        .expect("hand-written script")
}

fn ids_of(bodies: &[Option<Vec<u8>>]) -> Vec<RecordId> {
    bodies
        .iter()
        .map(|b| {
            let body = b.as_deref().expect("a record body");
            Project::from_cached(body).expect("decode").id
        })
        .collect()
}

async fn query_line(b: &mut Bench) {
    let calls_before = b.origin.calls().query;
    for e in 0..EVENTS {
        b.cache.query(leaderboard(e)).await.expect("query fill");
    }
    let fills = b.origin.calls().query - calls_before;
    let keys = b.store.key_layout(Project::schema()).bucket(0);
    let hand: Vec<HandQuery> = (0..EVENTS)
        .map(|e| {
            let q = leaderboard(e);
            let filter = &q.as_index_query().filters[0];
            HandQuery {
                sort: keys.sort("points"),
                tag: keys.tag(filter.field, &filter.value),
                record_prefix: format!("{}:r:", keys.prefix()),
                record_pattern: format!("{}:r:*", keys.prefix()),
                tmp: format!("bench:tmp:{e}"),
            }
        })
        .collect();

    // Every variant answers the same page, in the same order.
    let ours: Vec<RecordId> = b
        .cache
        .query(leaderboard(0))
        .await
        .expect("query")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ours.len(), PAGE);
    assert_eq!(ids_of(&hand_two_trips(&b.conn, &hand[0]).await), ours, "two-trip page");
    assert_eq!(ids_of(&hand_one_trip(&b.conn, &hand[0]).await), ours, "one-trip page");
    let script = redis::Script::new(HAND_QUERY_SCRIPT);
    assert_eq!(
        ids_of(&hand_script(&b.conn, &script, &hand[0]).await),
        ours,
        "script page"
    );
    let (_, commands) = b.server.count_commands(b.cache.query(leaderboard(1))).await;
    let (_, hand_one_commands) = b.server.count_commands(hand_one_trip(&b.conn, &hand[1])).await;

    let index_queries: Vec<_> = (0..EVENTS).map(|e| leaderboard(e).into_index_query()).collect();
    let decode = time_cpu(b.n(2_000, 200), 1, |i| {
        for k in (0..PAGE).map(|j| (i * PAGE + j) % b.bodies.len()) {
            std::hint::black_box(Project::from_cached(&b.bodies[k]).expect("decode"));
        }
    });
    let plan = Plan::new(b.n(5_000, 300), 100, 200);
    let (cache, conn, store) = (&b.cache, &b.conn, &b.store);
    let schema = Project::schema();
    let script = &script;
    let s = interleave(5, &plan, async |variant, i| {
        let e = i % EVENTS;
        match variant {
            0 => {
                let page = cache.query(leaderboard(e)).await.expect("query");
                assert_eq!(page.len(), PAGE);
            }
            1 => match store.query(schema, &index_queries[e]).await.expect("store query") {
                QueryLookup::Complete { page, .. } => assert_eq!(std::hint::black_box(page).len(), PAGE),
                QueryLookup::Incomplete(_) => panic!("the query result is cached"),
            },
            2 => assert_eq!(std::hint::black_box(hand_two_trips(conn, &hand[e]).await).len(), PAGE),
            3 => assert_eq!(std::hint::black_box(hand_one_trip(conn, &hand[e]).await).len(), PAGE),
            _ => assert_eq!(
                std::hint::black_box(hand_script(conn, script, &hand[e]).await).len(),
                PAGE
            ),
        }
    })
    .await;
    assert_eq!(
        b.origin.calls().query - calls_before,
        fills,
        "every measured query was a hit"
    );
    let (ours, store_only) = (s[0].summary(), s[1].summary());
    let (two, one, lua) = (s[2].summary(), s[3].summary(), s[4].summary());
    let (best, best_name) = [
        (two, "`ZINTER` + `MGET`"),
        (one, "one-trip pipeline"),
        (lua, "one-trip Lua script"),
    ]
    .into_iter()
    .min_by_key(|(s, _)| s.p50)
    .expect("three baselines");
    let r = ours.p50_ratio(&best);
    let target = 1.3;
    b.lines.push(Line {
        number: "3".to_owned(),
        name: format!("Index query hit (event filter, sort by points, limit {PAGE}) vs hand-written commands"),
        ours: p50_p99(&ours),
        baseline: format!("best hand-written ({best_name}): {}", p50_p99(&best)),
        ratio: fmt_ratio(r),
        target: format!("≤ {target:.2}x, one round trip"),
        verdict: Verdict::from_check(r <= target && commands.len() == 1),
        notes: vec![
            format!(
                "{} samples of each, over the {EVENTS} events' leaderboards ({} projects each); p99 ratio {}.",
                thousands(ours.count as u64),
                b.records.len() / EVENTS,
                fmt_ratio(ours.p99_ratio(&best))
            ),
            format!(
                "Commands per query hit: {} (one round trip: the script checks the completeness marker, \
                 intersects, orders, pages and returns the records).",
                commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
            ),
            format!(
                "Hand-written, two round trips (`ZINTER` of the sort set and the tag set, then `MGET` of the \
                 page): {}. Hand-written, one round trip (pipelined {}: `ZINTERSTORE` into a temporary key, \
                 `SORT … BY nosort DESC LIMIT 0 {PAGE} GET <record pattern>`, `DEL`; it writes on a read path \
                 and cannot tell a complete result from a partial one): {}.",
                p50_p99(&two),
                hand_one_commands
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                p50_p99(&one)
            ),
            format!(
                "Hand-written, one round trip as a Lua script (`EVALSHA`: `ZINTER`, the page taken from the end, one \
                 `MGET` of its records; no completeness marker, bodies only): {}.",
                p50_p99(&lua)
            ),
            format!(
                "`Store::query` alone (the same script, bodies not decoded): {} ({} of the hand-written best). \
                 Decoding the page's {PAGE} records, measured alone: p50 {} — {} of model-cache's median, which \
                 the raw baselines never pay.",
                p50_p99(&store_only),
                fmt_ratio(store_only.p50_ratio(&best)),
                fmt_duration(decode.p50),
                share(decode.p50, ours.p50)
            ),
        ],
    });
}

// ------------------------------------------------------------------ 4: throughput

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

async fn throughput_line(b: &mut Bench) {
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

// ------------------------------------------------------------------ 5a: cached

async fn cached_line(b: &mut Bench) {
    let peer: cached::AsyncRedisCache<String, Project> = cached::AsyncRedisCache::builder("projects")
        .connection_string(&b.server.url())
        .ttl(TTL)
        .build()
        .await
        .expect("cached's AsyncRedisCache");
    let names: Vec<String> = b.ids.iter().map(|id| id.as_str().to_owned()).collect();
    for (records, names) in b.records.chunks(500).zip(names.chunks(500)) {
        let sets = records
            .iter()
            .zip(names)
            .map(|(r, name)| peer.async_cache_set(name.clone(), r.clone()));
        for set in futures::future::join_all(sets).await {
            set.expect("cached set");
        }
    }
    let msgpack: Vec<Vec<u8>> = b
        .records
        .iter()
        .map(|r| rmp_serde::to_vec(r).expect("msgpack"))
        .collect();
    let rmp_decode = time_cpu(b.n(20_000, 2_000), 16, |i| {
        let bytes = &msgpack[i % msgpack.len()];
        std::hint::black_box(rmp_serde::from_slice::<Project>(bytes).expect("msgpack decode"));
    });
    let (_, peer_commands) = b.server.count_commands(peer.async_cache_get(&names[0])).await;
    let peer_key = b
        .scan(&format!("*{}", names[0]))
        .await
        .into_iter()
        .find(|k| !k.starts_with("mc:"))
        .unwrap_or_default();
    let peer_len: u64 = redis::cmd("STRLEN")
        .arg(&peer_key)
        .query_async(&mut b.conn.clone())
        .await
        .expect("STRLEN");

    let plan = Plan::new(b.n(40_000, 2_000), 500, 2_000);
    let (cache, bench, peer) = (&b.cache, &*b, &peer);
    let s = interleave(2, &plan, async |variant, i| {
        let k = bench.spread(i);
        if variant == 0 {
            let found: Option<Project> = cache.get(&bench.ids[k]).await.expect("get");
            assert!(found.is_some(), "a hit");
        } else {
            let found = peer.async_cache_get(&names[k]).await.expect("cached get");
            assert!(std::hint::black_box(found).is_some(), "a hit");
        }
    })
    .await;
    let (ours, theirs) = (s[0].summary(), s[1].summary());
    let r = ours.p50_ratio(&theirs);
    let decode = b.decode_one.unwrap_or(rmp_decode);
    b.lines.push(Line {
        number: "5a".to_owned(),
        name: "Peer: `Cache::get` hit (Redis) vs `cached`'s `AsyncRedisCache` get".to_owned(),
        ours: p50_p99(&ours),
        baseline: format!("`cached` 4.1 `AsyncRedisCache::async_cache_get`: {}", p50_p99(&theirs)),
        ratio: fmt_ratio(r),
        target: "≤ 1.00x (no slower)".to_owned(),
        verdict: Verdict::from_check(r <= 1.0),
        notes: vec![
            format!(
                "{} samples of each, same server, same records; p99 ratio {}.",
                thousands(ours.count as u64),
                fmt_ratio(ours.p99_ratio(&theirs))
            ),
            format!(
                "`cached` (feature `redis_tokio`) depends on redis `^1.2`, which unifies with the workspace's \
                 redis 1.8: one redis-rs in the build. It reads over a redis-rs `MultiplexedConnection` \
                 ({} per get); model-cache over a `ConnectionManager` wrapping one (`mget` of the record and its \
                 tombstone key).",
                peer_commands
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!(
                "`cached` stores MessagePack ({} B for this record, against {} B of JSON) and decodes it in p50 {} \
                 (measured alone); model-cache decodes its JSON in p50 {}. `cached` has no indexes, no tombstones, \
                 no stale-write protection.",
                thousands(peer_len),
                thousands(b.bodies[0].len() as u64),
                fmt_duration(rmp_decode.p50),
                fmt_duration(decode.p50)
            ),
        ],
    });
}

// ------------------------------------------------------------------ 5b: moka

async fn moka_line(b: &mut Bench) {
    let memory = MemoryStore::new();
    let cache = Cache::builder(memory.clone(), b.origin.clone())
        .register::<Project>()
        .build()
        .expect("the in-memory cache");
    for chunk in b.ids.chunks(WARM_BATCH) {
        cache.get_many::<Project>(chunk).await.expect("fill the memory store");
    }
    let moka: moka::future::Cache<RecordId, Project> = moka::future::Cache::builder().max_capacity(100_000).build();
    for r in &b.records {
        moka.insert(r.id.clone(), r.clone()).await;
    }
    let calls_before = b.origin.calls().total();
    let plan = Plan::new(b.n(50_000, 2_000), 1_000, 2_000).grouped(16);
    let schema = Project::schema();
    let (bench, cache, moka, memory) = (&*b, &cache, &moka, &memory);
    let s = interleave(3, &plan, async |variant, i| {
        let id = &bench.ids[bench.spread(i)];
        match variant {
            0 => {
                let found: Option<Project> = cache.get(id).await.expect("get");
                assert!(found.is_some(), "a hit");
            }
            1 => assert!(std::hint::black_box(moka.get(id).await).is_some(), "a hit"),
            _ => match memory.get(schema, id).await.expect("store get") {
                Lookup::Hit(bytes) => {
                    std::hint::black_box::<Bytes>(bytes);
                }
                other => panic!("a hit, not {other:?}"),
            },
        }
    })
    .await;
    assert_eq!(b.origin.calls().total(), calls_before, "every measured get was a hit");
    let (ours, theirs, store) = (s[0].summary(), s[1].summary(), s[2].summary());
    let r = ours.p50_ratio(&theirs);
    let target = 2.0;
    let decode = b.decode_one.unwrap_or(store);
    b.lines.push(Line {
        number: "5b".to_owned(),
        name: "Peer: `Cache::get` hit (`MemoryStore`) vs a bare `moka` get".to_owned(),
        ours: p50_p99(&ours),
        baseline: format!("`moka::future::Cache<RecordId, Project>::get`: {}", p50_p99(&theirs)),
        ratio: fmt_ratio(r),
        target: format!("≤ {target:.2}x"),
        verdict: Verdict::from_check(r <= target),
        notes: vec![
            format!(
                "{} samples of each (each the mean of 16 gets); p99 ratio {}. Both answer an owned `Project`: moka \
                 clones the one it holds, model-cache decodes it.",
                thousands(ours.count as u64),
                fmt_ratio(ours.p99_ratio(&theirs))
            ),
            format!(
                "Where the {} between the medians goes: `MemoryStore::get` alone (a moka get of the cached \
                 bytes plus the store's expiry check): {}; decoding the record from JSON: p50 {}; the rest \
                 (statistics, telemetry scope, `dyn Store`): {}.",
                gap(ours.p50, theirs.p50),
                p50_p99(&store),
                fmt_duration(decode.p50),
                fmt_duration(ours.p50.saturating_sub(store.p50).saturating_sub(decode.p50))
            ),
            "The memory store keeps records in their cached form (bytes) — as Redis does, so both stores \
             behave the same and the memory budget counts real sizes — and so pays a decode on every hit."
                .to_owned(),
        ],
    });
}

// ------------------------------------------------------------------ 6b: sweep

async fn sweep_line(b: &mut Bench) {
    let count = b.n(SWEEP_RECORDS, 2_000);
    let store = RedisStore::builder(b.server.url())
        .namespace("sweep")
        .connect()
        .await
        .expect("the sweep's store");
    let records = model::generate(count, EVENTS, TARGET_JSON_BYTES);
    let schema = Project::schema();
    let started = Instant::now();
    for chunk in records.chunks(PUT_BATCH) {
        store
            .put(schema, &record_writes(chunk), WriteMode::Upsert)
            .await
            .expect("put");
    }
    let filled = started.elapsed();
    let origin = CountingOrigin::new();
    let gone: Vec<RecordId> = records.iter().step_by(SWEEP_GONE_EVERY).map(|r| r.id.clone()).collect();
    origin.put_ids(schema, records.iter().map(|r| r.id.clone()));
    for id in &gone {
        origin.remove(schema, id);
    }
    drop(records);
    let cache = Cache::builder(store.clone(), origin.clone())
        .register::<Project>()
        .build()
        .expect("the sweep's cache");
    let pattern = store.key_layout(schema).record_pattern();

    // A raw SCAN of the record keys before and after: listing the ids alone.
    let t = Instant::now();
    let listed = scan_count(&b.conn, &pattern).await;
    let scan_before = t.elapsed();
    let t = Instant::now();
    let report = cache.sweep(schema, SWEEP_BATCH, |_| {}).await.expect("sweep");
    let swept = t.elapsed();
    let t = Instant::now();
    let left = scan_count(&b.conn, &pattern).await;
    let scan_after = t.elapsed();
    let scan = (scan_before + scan_after) / 2;
    store.flush(None).await.expect("flush the sweep namespace");

    let expected_calls = count.div_ceil(SWEEP_BATCH) as u64;
    let calls = origin.calls().exists_many;
    let ok = calls == expected_calls
        && report.batches == expected_calls
        && report.checked == count as u64
        && report.removed == gone.len() as u64
        && listed == count
        && left == count - gone.len();
    b.lines.push(Line {
        number: "6b".to_owned(),
        name: format!("Sweep of {} cached records", thousands(count as u64)),
        ours: format!(
            "{} ({}/s); {calls} `exists_many` calls; checked {}, removed {}",
            fmt_duration(swept),
            thousands((count as f64 / swept.as_secs_f64()) as u64),
            thousands(report.checked),
            report.removed
        ),
        baseline: format!(
            "raw `SCAN … COUNT 1000` of the same record keys: {}",
            fmt_duration(scan)
        ),
        ratio: fmt_ratio(ratio(swept, scan)),
        target: format!(
            "origin calls = ceil({} / {SWEEP_BATCH}) = {expected_calls}",
            thousands(count as u64)
        ),
        verdict: Verdict::from_check(ok),
        notes: vec![
            format!(
                "`Cache::sweep` with batch {SWEEP_BATCH} over an origin that counts its calls; one record in \
                 {SWEEP_GONE_EVERY} is gone from the origin, so the sweep removes (and tombstones) {}.",
                gone.len()
            ),
            format!(
                "The {} records were written beforehand with `Store::put` in batches of {PUT_BATCH} (upserts with \
                 their index entries): {} ({}/s).",
                thousands(count as u64),
                fmt_duration(filled),
                thousands((count as f64 / filled.as_secs_f64()) as u64)
            ),
            "The sweep lists ids with `SCAN` (never `KEYS`), in steps of the batch size, and asks the origin \
             once per full batch; the raw `SCAN` baseline lists the same keys in steps of 1,000 and does nothing \
             with them."
                .to_owned(),
        ],
    });
}

async fn scan_count(conn: &RedisConnection, pattern: &str) -> usize {
    let mut count = 0;
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(&mut conn.clone())
            .await
            .expect("SCAN");
        count += page.len();
        if next == 0 {
            return count;
        }
        cursor = next;
    }
}

// ------------------------------------------------------------------ 8: HTTP

/// The demo, served on its own runtime and thread: once with the cache, once with
/// `CACHE_ENABLED=false`, both over the same SQLite database with no added latency.
struct Demo {
    on: std::net::SocketAddr,
    off: std::net::SocketAddr,
    ids: Vec<RecordId>,
    origin_on: demo_app::origin::SqlOrigin,
    origin_off: demo_app::origin::SqlOrigin,
    seeded: Duration,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Demo {
    fn start(redis_url: String) -> Self {
        use demo_app::{
            api::AppState,
            app::{Secrets, build_cache, connect_store, open_database, router},
            config::{RedisUrl, Secret},
            database::DatabaseUrl,
            models::Project as DemoProject,
            origin::{OriginSettings, SqlOrigin},
        };

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("the demo's runtime");
            runtime.block_on(async move {
                let dir = tempfile::tempdir().expect("a temporary directory");
                let url: DatabaseUrl = format!("sqlite://{}", dir.path().join("demo.db").display())
                    .parse()
                    .expect("a database url");
                let started = Instant::now();
                let db = open_database(&url).await.expect("the demo database");
                let seeded = started.elapsed();
                let origin_on = SqlOrigin::new(db.clone(), OriginSettings::default());
                let origin_off = SqlOrigin::new(db, OriginSettings::default());
                let store = connect_store(Some(&RedisUrl::Single(redis_url)))
                    .await
                    .expect("the demo's store");
                let secrets = Secrets {
                    webhook: Secret::generate("webhook secret").expect("a webhook secret"),
                    admin: Secret::generate("admin token").expect("an admin token"),
                };
                let cache_on = build_cache(store.clone(), origin_on.clone(), true).expect("cache");
                let cache_off = build_cache(store, origin_off.clone(), false).expect("cache");
                let ids = origin_on
                    .recent_ids(DemoProject::schema(), None)
                    .await
                    .expect("the demo's project ids");
                let app_on = router(
                    AppState {
                        cache: cache_on,
                        origin: origin_on.clone(),
                    },
                    &secrets,
                )
                .expect("the demo's router");
                let app_off = router(
                    AppState {
                        cache: cache_off,
                        origin: origin_off.clone(),
                    },
                    &secrets,
                )
                .expect("the demo's router");
                let listen_on = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let listen_off = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let (on, off) = (
                    listen_on.local_addr().expect("address"),
                    listen_off.local_addr().expect("address"),
                );
                let _ = ready_tx.send((on, off, ids, origin_on, origin_off, seeded));
                let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                };
                let serve_on = axum::serve(listen_on, app_on).with_graceful_shutdown(until(stopped.clone()));
                let serve_off = axum::serve(listen_off, app_off).with_graceful_shutdown(until(stopped));
                let (a, b) = tokio::join!(serve_on, serve_off);
                a.expect("serving");
                b.expect("serving");
                drop(dir);
            });
        });
        let (on, off, ids, origin_on, origin_off, seeded) = ready_rx.recv().expect("the demo started");
        Self {
            on,
            off,
            ids,
            origin_on,
            origin_off,
            seeded,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn urls(&self, addr: std::net::SocketAddr) -> Vec<String> {
        (0..self.ids.len())
            .map(|i| format!("http://{addr}/projects/{}", self.ids[(i * 7_919) % self.ids.len()]))
            .collect()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The URLs one HTTP variant requests, and the headers it sends.
type Variant<'a> = (&'a [String], &'a [(&'a str, &'a str)]);

async fn http_lines(b: &mut Bench) {
    let demo = Demo::start(b.server.url());
    let concurrency = 32;
    let client = http::client(concurrency).expect("an HTTP client");
    let (urls_on, urls_off) = (demo.urls(demo.on), demo.urls(demo.off));
    let no_store: &[(&str, &str)] = &[("cache-control", "no-store")];
    let variants: [Variant<'_>; 3] = [(&urls_on, &[]), (&urls_on, no_store), (&urls_off, no_store)];

    // Fill the caches: every project once through the cached app.
    let fill = http::run(
        &client,
        &urls_on,
        &[],
        &LoadPlan {
            concurrency,
            requests: urls_on.len(),
            max_duration: Duration::from_secs(60),
        },
    )
    .await;
    assert_eq!(fill.failed, 0, "every project was served");
    let probe = client.get(&urls_on[0]).send().await.expect("a probe request");
    let x_cache = probe
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let body_len = probe.bytes().await.map_or(0, |b| b.len());
    let warm = LoadPlan {
        concurrency,
        requests: b.n(1_000, 200),
        max_duration: Duration::from_secs(10),
    };
    for (urls, headers) in variants {
        http::run(&client, urls, headers, &warm).await;
    }

    let on_before = demo.origin_on.calls().total();
    let off_before = demo.origin_off.calls().total();
    let plan = LoadPlan {
        concurrency,
        requests: b.n(4_000, 300),
        max_duration: Duration::from_secs(15),
    };
    let rounds = 4;
    let mut results = [LoadResult::default(), LoadResult::default(), LoadResult::default()];
    for round in 0..rounds {
        for k in 0..variants.len() {
            let v = (round + k) % variants.len();
            let (urls, headers) = variants[v];
            results[v].add(&http::run(&client, urls, headers, &plan).await);
        }
    }
    let on_calls = demo.origin_on.calls().total() - on_before;
    let off_calls = demo.origin_off.calls().total() - off_before;
    let seeded = demo.seeded;
    drop(client);
    drop(demo);

    let summaries: Vec<Summary> = results.iter().map(|r| r.latencies.summary()).collect();
    let failed: usize = results.iter().map(|r| r.failed).sum();
    let fig = |r: &LoadResult, s: &Summary| {
        format!(
            "{} (p50 {}, p99 {})",
            fmt_rate(r.rps()),
            fmt_duration(s.p50),
            fmt_duration(s.p99)
        )
    };
    let baseline = format!(
        "`CACHE_ENABLED=false`, `ORIGIN_LATENCY_MS=0` (SQLite alone): {}",
        fig(&results[2], &summaries[2])
    );
    let common = format!(
        "{rounds} alternating rounds of {} requests per variant from {concurrency} keep-alive connections \
         (reqwest, HTTP/1.1) on one thread; the demo serves from its own 2-thread runtime; {} failed requests. \
         The demo's seeded SQLite database ({} to create and seed), {} projects, a {body_len}-byte response.",
        thousands(plan.requests as u64),
        failed,
        fmt_duration(seeded),
        thousands(urls_on.len() as u64)
    );
    b.lines.push(Line {
        number: "8a".to_owned(),
        name: "HTTP `GET /projects/{id}`: the demo as shipped, cache hitting (response cache)".to_owned(),
        ours: fig(&results[0], &summaries[0]),
        baseline: baseline.clone(),
        ratio: fmt_ratio(results[0].rps() / results[2].rps()),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            common.clone(),
            format!(
                "Cache hitting: the response cache layer answers the whole response from Redis (`X-Cache: {x_cache}`); \
                 {on_calls} origin calls while measuring both cached variants, {off_calls} for the uncached one."
            ),
            "The ratio is of requests per second (higher is better); p99 ratio (lower is better): ".to_owned()
                + &fmt_ratio(summaries[0].p99_ratio(&summaries[2]))
                + ".",
            "`CACHE_ENABLED=false` disables the record cache but not the demo's response cache layer, which \
             still stores and serves whole responses: the uncached variant sends `Cache-Control: no-store` so \
             that every request reaches SQLite."
                .to_owned(),
        ],
    });
    b.lines.push(Line {
        number: "8b".to_owned(),
        name: "HTTP `GET /projects/{id}`: record cache hitting, response cache skipped".to_owned(),
        ours: fig(&results[1], &summaries[1]),
        baseline,
        ratio: fmt_ratio(results[1].rps() / results[2].rps()),
        target: "— (none set)".to_owned(),
        verdict: Verdict::Info,
        notes: vec![
            common,
            "The cached app with `Cache-Control: no-store` on the request: the handler's `Cache::get_as` hits \
             Redis (one `mget`) and decodes the record."
                .to_owned(),
            "p99 ratio (lower is better): ".to_owned() + &fmt_ratio(summaries[1].p99_ratio(&summaries[2])) + ".",
        ],
    });
}
