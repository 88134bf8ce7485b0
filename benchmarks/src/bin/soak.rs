//! The soak: the hostile loads of issue 12 against the library in-process, each phase in a
//! process of its own so that its peak RSS is its own.
//!
//! ```text
//! cargo run --release -p model-cache-bench --bin soak              # every phase, full counts
//! cargo run --release -p model-cache-bench --bin soak -- --scale 0.1 --redis-seconds 10
//! cargo run --release -p model-cache-bench --bin soak -- --phase random-ids
//! ```
//!
//! Memory-store phases (a `Cache` over a `MemoryStore` with the given budget, in front of an
//! in-memory origin that answers after `--origin-delay-ms`):
//! - `random-ids`: 7.5M reads of random ids the origin does not have;
//! - `index-lookups`: 1.8M distinct `User::by_email` lookups that match nothing;
//! - `mixed`: 400k reads over 20k real projects, random ids, distinct and real index lookups;
//! - `weights`: what one tombstone, one marker and one 1 KiB record cost in RSS against what
//!   the store charges for them (a budget too large to evict).
//!
//! Each reports its peak RSS against `1.5 × budget + idle RSS` (the RSS before the load, the
//! origin's data included) and what `Store::stats` says the store holds.
//!
//! `redis`: distinct misses (random ids and distinct email lookups) for `--redis-seconds`
//! against a spawned `redis-server`, then every key the cache created, by kind: how many, the
//! longest time to live left, and the largest `MEMORY USAGE`.

/// The allocator a long-running service on model-cache should use: glibc's malloc keeps what the
/// cache's churn frees in its arenas (the random-ids phase peaked at 366 MiB RSS for a 128 MiB
/// budget with it, 110 MiB with mimalloc; see the guide's operations chapter).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::{
    collections::BTreeMap,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::{
    Cache, Cacheable, MemoryStore, RecordId,
    origin::{Deletion, Origin, OriginError, SourceQuery, SourceRecord},
    query::IndexQuery,
    schema::EntitySchema,
    store::{RecordWrite, RemoveMode, Store, WriteMode},
};
use cache_redis::{RedisStore, testing::RedisServer};
use demo_app::models::User;
use model_cache_bench::{
    model::{Project, Rng, event_id, generate, project_id},
    origin::CountingOrigin,
};

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
struct Args {
    phase: String,
    budget_mib: u64,
    scale: f64,
    concurrency: usize,
    origin_delay: Duration,
    redis_seconds: u64,
}

impl Args {
    fn parse() -> Result<Self, String> {
        let mut args = Self {
            phase: "all".to_owned(),
            budget_mib: 128,
            scale: 1.0,
            concurrency: 256,
            origin_delay: Duration::from_millis(1),
            redis_seconds: 60,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            let number = |v: String| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--phase" => args.phase = value()?,
                "--budget-mib" => args.budget_mib = number(value()?)? as u64,
                "--scale" => args.scale = number(value()?)?,
                "--concurrency" => args.concurrency = number(value()?)? as usize,
                "--origin-delay-ms" => args.origin_delay = Duration::from_secs_f64(number(value()?)? / 1000.0),
                "--redis-seconds" => args.redis_seconds = number(value()?)? as u64,
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(args)
    }

    fn to_flags(&self) -> Vec<String> {
        vec![
            "--budget-mib".into(),
            self.budget_mib.to_string(),
            "--scale".into(),
            self.scale.to_string(),
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--origin-delay-ms".into(),
            (self.origin_delay.as_secs_f64() * 1000.0).to_string(),
            "--redis-seconds".into(),
            self.redis_seconds.to_string(),
        ]
    }

    fn count(&self, full: u64) -> u64 {
        ((full as f64) * self.scale).round().max(1.0) as u64
    }

    fn budget(&self) -> u64 {
        self.budget_mib * MIB
    }
}

fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("soak: {err}");
            std::process::exit(2);
        }
    };
    if args.phase == "all" {
        run_all(&args);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("a tokio runtime: {e}"));
    let line = runtime.block_on(async {
        match args.phase.as_str() {
            "random-ids" => memory_phase(&args, Load::RandomIds).await,
            "index-lookups" => memory_phase(&args, Load::IndexLookups).await,
            "mixed" => memory_phase(&args, Load::Mixed).await,
            "weights" => weights(&args).await,
            "store-churn" => store_churn(&args).await,
            "redis" => redis_phase(&args).await,
            other => {
                eprintln!("soak: unknown phase {other}");
                std::process::exit(2);
            }
        }
    });
    println!("{line}");
}

/// Runs each phase in a child process and prints their lines as Markdown.
fn run_all(args: &Args) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("the soak's own path: {e}"));
    let mut failed = Vec::new();
    for phase in ["weights", "random-ids", "index-lookups", "mixed", "redis"] {
        eprintln!("soak: {phase} ...");
        let output = Command::new(&exe)
            .arg("--phase")
            .arg(phase)
            .args(args.to_flags())
            .output()
            .unwrap_or_else(|e| panic!("running {phase}: {e}"));
        if !output.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&output.stderr));
            eprintln!("soak: phase {phase} failed: {}", output.status);
            failed.push(phase);
            continue;
        }
        // Each phase's figures as soon as it ends.
        println!("{}\n", String::from_utf8_lossy(&output.stdout).trim());
    }
    if !failed.is_empty() {
        eprintln!("soak: failed phases: {failed:?}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------------------ the process

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

fn rss() -> u64 {
    status_bytes("VmRSS")
}

/// Resets the peak RSS (`VmHWM`) to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / MIB as f64)
}

// ------------------------------------------------------------------------------ the origin

/// The in-memory origin, answering after a delay as a remote source would.
#[derive(Debug, Clone)]
struct SlowOrigin {
    inner: CountingOrigin,
    delay: Duration,
}

#[async_trait]
impl Origin for SlowOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        tokio::time::sleep(self.delay).await;
        self.inner.fetch(entity, id).await
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        tokio::time::sleep(self.delay).await;
        self.inner.fetch_many(entity, ids).await
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        tokio::time::sleep(self.delay).await;
        self.inner.query(entity, query).await
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        self.inner.exists_many(entity, ids).await
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        self.inner.delete(entity, id).await
    }
}

const PROJECTS: usize = 20_000;
const EVENTS: usize = 200;

fn origin(args: &Args, projects: usize) -> SlowOrigin {
    let inner = CountingOrigin::new();
    for project in generate(projects, EVENTS, model_cache_bench::model::TARGET_JSON_BYTES) {
        inner.put(&project).unwrap_or_else(|e| panic!("origin: {e}"));
    }
    SlowOrigin {
        inner,
        delay: args.origin_delay,
    }
}

fn random_id(rng: &mut Rng) -> RecordId {
    RecordId::new(format!("recX{:016x}", rng.next_u64())).unwrap_or_else(|e| panic!("id: {e}"))
}

fn random_email(rng: &mut Rng) -> String {
    format!("nobody-{:016x}@example.com", rng.next_u64())
}

// ------------------------------------------------------------------------------ memory phases

#[derive(Debug, Clone, Copy)]
enum Load {
    RandomIds,
    IndexLookups,
    Mixed,
}

impl Load {
    fn name(self) -> &'static str {
        match self {
            Self::RandomIds => "random ids",
            Self::IndexLookups => "distinct index lookups",
            Self::Mixed => "mixed keys",
        }
    }

    fn full_count(self) -> u64 {
        match self {
            Self::RandomIds => 7_500_000,
            Self::IndexLookups => 1_800_000,
            Self::Mixed => 400_000,
        }
    }
}

async fn one(cache: &Cache, load: Load, i: u64) {
    let mut rng = Rng::new(i.wrapping_mul(0x9E37_79B9) ^ 0xA5A5);
    let result = match (load, i % 10) {
        (Load::RandomIds, _) | (Load::Mixed, 4 | 5) => cache.get::<Project>(&random_id(&mut rng)).await.map(drop),
        (Load::IndexLookups, _) | (Load::Mixed, 6 | 7) => {
            cache.query(User::by_email(&random_email(&mut rng))).await.map(drop)
        }
        (Load::Mixed, 8) => {
            let event = event_id(rng.below(EVENTS as u64) as usize);
            cache.query(Project::by_event(&event).limit(20)).await.map(drop)
        }
        (Load::Mixed, 9) => {
            let ids: Vec<RecordId> = (0..5)
                .map(|_| project_id(rng.below(PROJECTS as u64) as usize))
                .collect();
            cache.get_many::<Project>(&ids).await.map(drop)
        }
        (Load::Mixed, _) => {
            let id = project_id(rng.below(PROJECTS as u64) as usize);
            cache.get::<Project>(&id).await.map(drop)
        }
    };
    if let Err(err) = result {
        panic!("{load:?} #{i}: {err}");
    }
}

async fn memory_phase(args: &Args, load: Load) -> String {
    let projects = if matches!(load, Load::Mixed) { PROJECTS } else { 0 };
    let origin = origin(args, projects);
    let store = MemoryStore::builder().max_capacity_bytes(args.budget()).build();
    let cache = Cache::builder(store.clone(), origin)
        .register::<Project>()
        .register::<User>()
        .build()
        .unwrap_or_else(|e| panic!("cache: {e}"));
    let idle = rss();
    reset_peak();
    let count = args.count(load.full_count());
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (cache, next) = (cache.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        break;
                    }
                    one(&cache, load, i).await;
                }
            })
        })
        .collect();
    // The RSS and what the store says it holds, every few seconds, on stderr.
    let sampler = {
        let (store, next) = (store.clone(), Arc::clone(&next));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let stats = store.stats().await.unwrap_or_default();
                eprintln!(
                    "soak: {} done, RSS {}, store {} keys {}",
                    next.load(Ordering::Relaxed),
                    mib(rss()),
                    stats.total_keys,
                    mib(stats.memory_used_bytes.unwrap_or(0))
                );
            }
        })
    };
    for worker in workers {
        worker.await.unwrap_or_else(|e| panic!("worker: {e}"));
    }
    sampler.abort();
    let seconds = started.elapsed().as_secs_f64();
    let peak = status_bytes("VmHWM");
    let stats = store.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
    let limit = args.budget() * 3 / 2 + idle;
    let used = stats.memory_used_bytes.unwrap_or(0);
    format!(
        "| {} | {count} | {seconds:.0} s | {} | {} | {} | {} | {} | {} ({:.0}% of the budget) |",
        load.name(),
        mib(idle),
        mib(peak),
        mib(limit),
        if peak <= limit { "yes" } else { "**no**" },
        stats.total_keys,
        mib(used),
        used as f64 * 100.0 / args.budget() as f64,
    )
}

/// What one entry of each kind costs in RSS against what the store charges for it.
async fn weights(args: &Args) -> String {
    let n = args.count(400_000) as usize;
    let schema = Project::schema();
    let users = User::schema();
    let mut rows = Vec::new();
    // Every store stays alive to the end, so that no kind reuses memory another one freed.
    let mut kept = Vec::new();
    for kind in ["fill tombstone", "empty-result marker", "1 KiB record with its index"] {
        // Large enough that nothing is evicted: every entry stays and is charged.
        let store = MemoryStore::builder().max_capacity_bytes(64 * 1024 * MIB).build();
        let records = (kind.starts_with('1')).then(|| generate(n, EVENTS, model_cache_bench::model::TARGET_JSON_BYTES));
        let before_used = store.stats().await.map_or(0, |s| s.memory_used_bytes.unwrap_or(0));
        let before = rss();
        let mut rng = Rng::new(7);
        let long = Duration::from_secs(3600);
        for i in 0..n {
            match kind {
                "fill tombstone" => {
                    let ids = [random_id(&mut rng)];
                    let lease = store.lease(schema, &ids, long).await.unwrap_or_else(|e| panic!("{e}"));
                    store
                        .remove(schema, &ids, RemoveMode::FillTombstone { lease, ttl: long })
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                "empty-result marker" => {
                    let q = IndexQuery::all().filter("email", random_email(&mut rng));
                    let token = match store.query(users, &q).await.unwrap_or_else(|e| panic!("{e}")) {
                        cache_core::store::QueryLookup::Incomplete(token) => token,
                        cache_core::store::QueryLookup::Complete { .. } => continue,
                    };
                    store
                        .complete_query(users, &q, token, &[])
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
                _ => {
                    let Some(records) = &records else { break };
                    let p = &records[i];
                    let write = RecordWrite {
                        id: p.id().clone(),
                        body: Bytes::from(p.to_cached().unwrap_or_else(|e| panic!("{e}"))),
                        index: p.index_entries(),
                        version: p.version(),
                        at: None,
                        ttl: long,
                    };
                    store
                        .put(schema, &[write], WriteMode::Upsert)
                        .await
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
        let stats = store.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
        let after = rss();
        let charged = stats.memory_used_bytes.unwrap_or(0).saturating_sub(before_used);
        let entries = stats.total_keys.max(1);
        // The generated records were in `before` already.
        let real = after.saturating_sub(before);
        kept.push((store, records));
        rows.push(format!(
            "| {kind} | {entries} | {} B | {} B | {:.2} |",
            real / entries,
            charged / entries,
            charged as f64 / real.max(1) as f64
        ));
    }
    format!(
        "| entry | entries | RSS per entry | charged per entry | charged / RSS |\n|---|---:|---:|---:|---:|\n{}",
        rows.join("\n")
    )
}

/// Fill tombstones of random ids straight into the store, without the cache around it.
async fn store_churn(args: &Args) -> String {
    let store = MemoryStore::builder().max_capacity_bytes(args.budget()).build();
    let schema = Project::schema();
    let idle = rss();
    reset_peak();
    let n = args.count(7_500_000);
    let mut rng = Rng::new(11);
    let ttl = Duration::from_secs(300);
    for i in 0..n {
        let ids = [random_id(&mut rng)];
        let lease = store.lease(schema, &ids, ttl).await.unwrap_or_else(|e| panic!("{e}"));
        store
            .remove(schema, &ids, RemoveMode::FillTombstone { lease, ttl })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        if i % 250_000 == 0 {
            eprintln!("soak: {i} done, RSS {}", mib(rss()));
        }
    }
    let stats = store.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
    format!(
        "| store alone, fill tombstones | {n} | {} | {} | {} keys, {} |",
        mib(idle),
        mib(status_bytes("VmHWM")),
        stats.total_keys,
        mib(stats.memory_used_bytes.unwrap_or(0))
    )
}

// ------------------------------------------------------------------------------ redis

async fn redis_phase(args: &Args) -> String {
    let server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .namespace("soak")
        .connect()
        .await
        .unwrap_or_else(|e| server.fail(&format!("connect: {e}")));
    let origin = origin(args, 0);
    let cache = Cache::builder(store, origin)
        .register::<Project>()
        .register::<User>()
        .build()
        .unwrap_or_else(|e| panic!("cache: {e}"));
    let used_before: u64 = used_memory(&server);
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.redis_seconds);
    let workers: Vec<_> = (0..args.concurrency.min(64))
        .map(|_| {
            let (cache, next) = (cache.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let load = if i % 2 == 0 {
                        Load::RandomIds
                    } else {
                        Load::IndexLookups
                    };
                    one(&cache, load, i).await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap_or_else(|e| panic!("worker: {e}"));
    }
    let requests = next.load(Ordering::Relaxed);
    let used_after = used_memory(&server);
    // Every key of the namespace, by kind: count, longest TTL left, largest MEMORY USAGE.
    let mut kinds: BTreeMap<&'static str, (u64, i64, u64, u64)> = BTreeMap::new();
    let mut cursor = 0_u64;
    loop {
        let (next, keys): (u64, Vec<String>) = server.query(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg("soak:*")
                .arg("COUNT")
                .arg(1000),
        );
        for key in keys {
            let kind = key_kind(&key);
            let ttl: i64 = server.query(redis::cmd("PTTL").arg(&key));
            // Gone since the scan saw it (a lease, an expired key).
            let Some(bytes): Option<u64> =
                server.query(redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0))
            else {
                continue;
            };
            let row = kinds.entry(kind).or_insert((0, i64::MIN, 0, 0));
            row.0 += 1;
            row.1 = row.1.max(ttl);
            row.2 = row.2.max(bytes);
            row.3 += bytes;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let total: u64 = kinds.values().map(|r| r.0).sum();
    let rows: Vec<String> = kinds
        .iter()
        .map(|(kind, (n, ttl, max, sum))| {
            format!(
                "| {kind} | {n} | {:.0} s | {max} B | {} B |",
                *ttl as f64 / 1000.0,
                sum / n.max(&1)
            )
        })
        .collect();
    format!(
        "{requests} distinct misses in {} s (half random ids, half distinct email lookups): {total} keys, \
         `used_memory` {} → {}.\n\n| key | count | longest TTL left | largest `MEMORY USAGE` | mean |\n|---|---:|---:|---:|---:|\n{}",
        args.redis_seconds,
        mib(used_before),
        mib(used_after),
        rows.join("\n")
    )
}

fn used_memory(server: &RedisServer) -> u64 {
    let info: String = server.query(redis::cmd("INFO").arg("memory"));
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok())
        .unwrap_or(0)
}

fn key_kind(key: &str) -> &'static str {
    const KINDS: [(&str, &str); 9] = [
        (":lease:", "lease"),
        // A record's key holds the record or its tombstone (`!…`).
        (":r:", "record or tombstone"),
        (":c:", "completeness marker"),
        (":i:", "tag set"),
        ("purged:", "purge mark"),
        (":seq", "sequence"),
        (":epoch", "epoch"),
        (":ids", "id zset"),
        (":m", "meta hash"),
    ];
    KINDS
        .iter()
        .find(|(needle, _)| key.contains(needle))
        .map_or("other", |(_, kind)| kind)
}
