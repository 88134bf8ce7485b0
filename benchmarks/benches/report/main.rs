//! The benchmark report: `cargo bench -p model-cache-bench`.
//!
//! Spawns one `redis-server` on loopback and measures, against it, model-cache beside the
//! physical limit (raw redis-rs commands on the store's own connection, `redis-benchmark`) and
//! beside peers (`cached`'s Redis store, a bare `moka` cache), the near cache beside a bare
//! `moka` cache and a bare RESP3 push, then the demo's HTTP API with and without the cache and
//! beside a bare axum handler. Each comparison runs its variants in alternate batches after a
//! warm-up, so every ratio holds on a noisy machine. Writes `docs/benchmarks.md` and the
//! figures block of `docs/src/benchmarks.md`.
//!
//! The sources of truth are measured too, beside hand-written code: the SQL origin and its
//! outbox on SQLite (and PostgreSQL when `TEST_POSTGRES_URL` names a server: otherwise their
//! line says they were skipped), and the Airtable origin and feed against the Airtable
//! simulator, in-process on a loopback socket. Nothing reaches beyond loopback.
//!
//! For a quick look, `MODEL_CACHE_BENCH_SCALE=0.1` takes a tenth of the samples and
//! `MODEL_CACHE_BENCH_ONLY=1,3,5a` runs only those lines (`7` both memory lines, `8` all the
//! HTTP ones, `9` all the SQL lines, `10` all the Airtable ones, `11` all the near cache ones;
//! the warm-up always runs); such a partial run prints the report instead of writing it: only
//! a full run writes the docs.

mod airtable;
mod demo;
mod near;
mod peers;
mod reads;
mod sql;
mod throughput;
mod writes;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cache_core::{Cache, Cacheable, RecordId};
use cache_redis::{RedisConnection, RedisStore, testing::RedisServer};
use model_cache_bench::{
    machine::{self, Machine},
    model::{self, Project, TARGET_JSON_BYTES},
    origin::CountingOrigin,
    report::{Line, Report, fmt_duration, line_order, replace_between, thousands},
    sample::{Summary, ratio, time_cpu},
};

/// The one documented command.
const COMMAND: &str = "cargo bench -p model-cache-bench";
/// Records cached for the latency lines.
const RECORDS: usize = 10_000;
/// Events the records are spread over (200 projects each).
const EVENTS: usize = 50;
/// Ids per `get_many` when warming, as `demo-app warm` does by default.
const WARM_BATCH: usize = 500;
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
    // The soak binary's section (`--bin soak`) is not measured here: it is kept as it is.
    let soak = std::fs::read_to_string(&out)
        .ok()
        .and_then(|old| old.find("\n## Soak").map(|at| old[at..].to_owned()))
        .unwrap_or_default();
    let written = format!("{}{soak}", report.to_markdown());
    std::fs::write(&out, written).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
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
    /// The cached form of each record.
    bodies: Vec<Vec<u8>>,
    /// Decoding one cached record on its own ([`Bench::decode_time`]).
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

    /// The records in the binary form the `cached` peer stores: MessagePack as `rmp_serde`
    /// writes a struct (its fields in order, no names).
    fn msgpack(&self) -> Vec<Vec<u8>> {
        self.records
            .iter()
            .map(|r| rmp_serde::to_vec(r).expect("msgpack"))
            .collect()
    }

    /// Decoding one cached record on its own, hot: measured by the first line that asks, so
    /// that each line that quotes it has it in a partial run too.
    fn decode_time(&mut self) -> Summary {
        if let Some(decode) = self.decode_one {
            return decode;
        }
        let decode = time_cpu(self.n(20_000, 2_000), 16, |i| {
            let body = &self.bodies[i % self.bodies.len()];
            std::hint::black_box(Project::from_cached(body).expect("decode"));
        });
        self.decode_one = Some(decode);
        decode
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

/// The stores' operation budget: the default (250 ms) is for a live request; a bulk write of
/// 500 records on a loaded 2-core machine can take longer, and a run must not fail on it.
pub(crate) const BULK_BUDGET: Duration = Duration::from_secs(10);

async fn run(scale: f64, only: Option<&[String]>) -> Report {
    let started = Instant::now();
    let server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .operation_budget(BULK_BUDGET)
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
        bodies,
        decode_one: None,
        lines: Vec::new(),
    };

    // The warm-up always runs: the lines after it read what it cached.
    step("6a warm-up", writes::warm_line(&mut b)).await;
    if wanted(only, "7") {
        step("7 memory", writes::memory_lines(&mut b)).await;
    }
    if wanted(only, "1") {
        step("1 get", reads::get_line(&mut b)).await;
    }
    if wanted(only, "2") {
        step("2 get_many", reads::get_many_line(&mut b)).await;
    }
    if wanted(only, "3") {
        step("3 query", reads::query_line(&mut b)).await;
    }
    if wanted(only, "4") {
        step("4 throughput", throughput::throughput_line(&mut b)).await;
    }
    if wanted(only, "5a") {
        step("5a cached", peers::cached_line(&mut b)).await;
    }
    if wanted(only, "5b") {
        step("5b moka", peers::moka_line(&mut b)).await;
    }
    if wanted(only, "6b") {
        step("6b sweep", writes::sweep_line(&mut b)).await;
    }
    if wanted(only, "9") {
        step("9 SQL", sql::sql_lines(&mut b)).await;
    }
    if wanted(only, "10") {
        step("10 Airtable", airtable::airtable_lines(&mut b)).await;
    }
    if wanted(only, "11") {
        step("11 near cache", near::near_lines(&mut b)).await;
    }
    // Last: the demo's router installs the Prometheus recorder for the whole process, which
    // would make every later in-process line pay for metrics.
    if wanted(only, "8") {
        step("8 http", demo::http_lines(&mut b)).await;
    }

    let mut lines = std::mem::take(&mut b.lines);
    lines.sort_by(|x, y| line_order(&x.number).cmp(&line_order(&y.number)));
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
        "No metrics recorder is installed for lines 1 to 7 and 9 to 11 (the library's default); line 8 runs \
         the demo as shipped, with its Prometheus recorder."
            .to_owned(),
        format!(
            "SQL lines (9): the same {} `Project`s in a `Projects` table of native column types, indexed on \
             `event_id`: a SQLite file (WAL) in a temp dir, and a schema of its own on the PostgreSQL server of \
             `{}` when it is set. `SqlOrigin` and the hand-written sqlx statements share one pool of 4 \
             connections; each line runs them in alternate batches as above and judges the median against the \
             best hand-written variant. Like `SqlOrigin`, a hand-written variant is given the ids as \
             `RecordId`s and builds its list parameter (a `text[]`, a JSON list) on each call. The outbox lines write through a connection of their own and apply into \
             the spawned Redis server (a namespace of their own).",
            thousands(b.records.len() as u64),
            sql::POSTGRES_URL_VAR
        ),
        "Airtable lines (10): the crate's simulator (`cache_airtable::testing::Simulator`: Airtable's paging, \
         formulas, 5 requests a second per base with 429, webhooks with signed notifications) on a loopback \
         port in the same process, the client at its defaults; requests are the simulator's own count. The \
         cache is on the spawned Redis server (a namespace of its own)."
            .to_owned(),
        "Near cache lines (11): `CacheBuilder::near_cache(64 MiB)` over `RedisStore`s on the spawned server, \
         kept consistent by `CLIENT TRACKING` (broadcast mode, cache-redis's RESP3 tracking connection per \
         store); every measured read is a near hit. The eviction line's two instances are two `Cache`s over \
         two `RedisStore`s in a namespace of their own, as two processes would be, on the one runtime."
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
