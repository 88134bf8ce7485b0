//! The near cache (11): a hit answered in process beside a bare `moka` get and a raw Redis
//! `GET` (11a), the time from a write on one instance to its eviction from another instance's
//! near cache beside a bare RESP3 push (11b), and line 4 with the near cache on (11c).
//!
//! The near caches run over the spawned server with tracking on (`CLIENT TRACKING … BCAST`,
//! cache-redis's tracking connection), each `Cache` over a `RedisStore` of its own, as two
//! processes would be.

use std::{
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cache_core::{
    Cache, Cacheable, RecordId, UpsertOutcome,
    store::{Store, WriteMode},
};
use cache_redis::RedisStore;
use model_cache_bench::{
    model::Project,
    origin::CountingOrigin,
    report::{Line, Verdict, fmt_duration, fmt_ratio, thousands},
    sample::{Plan, Samples, Summary, interleave, time_cpu},
};
use redis::{AsyncConnectionConfig, PushInfo, PushKind};

use super::{Bench, gap, p50_p99, reads::MANY, throughput, writes};

/// Each near cache's budget: all the report's records fit.
const NEAR_BYTES: u64 = 64 << 20;
/// The namespace of the eviction line's two instances.
const EVICTION_NAMESPACE: &str = "near-eviction";
/// Records the eviction line writes in turn.
const EVICTED: usize = 100;
/// The prefix the bare push baseline tracks and writes under.
const PUSH_PREFIX: &str = "bench-push:";
/// How long an eviction (or a push) may take before the line gives up.
const EVICTION_TIMEOUT: Duration = Duration::from_secs(5);
/// The eviction target: the 99th percentile, from the start of the write.
const EVICTION_P99: Duration = Duration::from_millis(1);

pub(super) async fn near_lines(b: &mut Bench) {
    // Over the report's own namespace and records (already in Redis): this line only reads.
    let store = RedisStore::builder(b.server.url())
        .connect()
        .await
        .expect("a store for the near cache");
    let cache = near_cache(store, b.origin.clone()).await;
    hit_line(b, &cache).await;
    eviction_line(b).await;
    throughput::near_throughput_line(b, &cache).await;
}

/// A cache over `store` with its near cache on, once tracking is on.
async fn near_cache(store: RedisStore, origin: CountingOrigin) -> Cache {
    let cache = Cache::builder(store, origin)
        .register::<Project>()
        .near_cache(NEAR_BYTES)
        .build()
        .expect("a cache with a near cache");
    let near = cache.near_cache().expect("a near cache over Redis");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !near.is_enabled() {
        assert!(Instant::now() < deadline, "tracking never came on");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    cache
}

async fn hit_line(b: &mut Bench, cache: &Cache) {
    let near = cache.near_cache().expect("a near cache");
    // The first read of each finds it in Redis and keeps it; from then on it is answered here.
    for id in &b.ids {
        let found: Option<Project> = cache.get(id).await.expect("get");
        assert!(found.is_some(), "a hit");
    }
    assert!(
        b.ids.iter().all(|id| near.holds::<Project>(id)),
        "the near cache holds every record"
    );
    let sync: moka::sync::Cache<RecordId, Project> = moka::sync::Cache::builder().max_capacity(100_000).build();
    let future: moka::future::Cache<RecordId, Project> = moka::future::Cache::builder().max_capacity(100_000).build();
    for r in &b.records {
        sync.insert(r.id.clone(), r.clone());
        future.insert(r.id.clone(), r.clone()).await;
    }
    let clone = time_cpu(b.n(20_000, 2_000), 16, |i| {
        black_box(b.records[i % b.records.len()].clone());
    });
    let calls_before = b.origin.calls().total();
    let misses_before = near.stats().misses;

    let plan = Plan::new(b.n(50_000, 2_000), 1_000, 2_000).grouped(16);
    let (bench, sync, future) = (&*b, &sync, &future);
    let s = interleave(4, &plan, async |variant, i| {
        let id = &bench.ids[bench.spread(i)];
        match variant {
            0 => {
                let found: Option<Project> = cache.get(id).await.expect("get");
                assert!(black_box(found).is_some(), "a hit");
            }
            1 => assert!(black_box(sync.get(id)).is_some(), "a hit"),
            2 => assert!(black_box(future.get(id).await).is_some(), "a hit"),
            _ => assert!(black_box(near.holds::<Project>(id)), "held"),
        }
    })
    .await;
    // Against the round trip: one operation at a time, as line 1 times a raw `GET`.
    let plan = Plan::new(b.n(5_000, 500), 250, 250);
    let conn = &b.conn;
    let vs_get = interleave(2, &plan, async |variant, i| {
        let k = bench.spread(i);
        if variant == 0 {
            let found: Option<Project> = cache.get(&bench.ids[k]).await.expect("get");
            assert!(black_box(found).is_some(), "a hit");
        } else {
            let raw: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&bench.keys[k])
                .query_async(&mut conn.clone())
                .await
                .expect("GET");
            assert!(black_box(raw).is_some());
        }
    })
    .await;
    let misses = near.stats().misses - misses_before;
    // Line 2's reads (100 ids a `get_many`, the same windows) answered in process.
    let order: Vec<usize> = (0..bench.ids.len()).map(|i| bench.spread(i)).collect();
    let windows: Vec<(Vec<RecordId>, Vec<&str>)> = order
        .chunks(MANY)
        .map(|w| {
            let ids = w.iter().map(|&k| bench.ids[k].clone()).collect();
            (ids, w.iter().map(|&k| bench.keys[k].as_str()).collect())
        })
        .collect();
    let plan = Plan::new(b.n(2_000, 200), 100, 100);
    let many = interleave(2, &plan, async |variant, i| {
        let (ids, keys) = &windows[i % windows.len()];
        if variant == 0 {
            let found: Vec<Project> = cache.get_many(ids).await.expect("get_many");
            assert_eq!(black_box(found).len(), MANY, "all hits");
        } else {
            let raw: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut conn.clone())
                .await
                .expect("MGET");
            assert_eq!(black_box(raw).len(), MANY);
        }
    })
    .await;
    assert_eq!(b.origin.calls().total(), calls_before, "every measured get was a hit");
    let stats = near.stats();
    let many_misses = stats.misses - misses_before - misses;
    let (near_many, raw_many) = (many[0].summary(), many[1].summary());
    let many_note = format!(
        "`Cache::get_many` of line 2's {MANY} ids answered by the near cache: {}, against a raw `MGET` of the \
         same keys, alternating: {} ({} of the `MGET`; {many_misses} of its reads went to Redis).",
        p50_p99(&near_many),
        p50_p99(&raw_many),
        fmt_ratio(near_many.p50_ratio(&raw_many))
    );
    if let Some(line) = b.lines.iter_mut().find(|line| line.number == "2") {
        line.notes
            .push(format!("With the near cache on (line 11a): {many_note}"));
    }

    let (ours, sync_get, future_get, holds) = (s[0].summary(), s[1].summary(), s[2].summary(), s[3].summary());
    let (alone, raw) = (vs_get[0].summary(), vs_get[1].summary());
    let (best, best_name) = [
        (sync_get, "`moka::sync::Cache<RecordId, Project>::get`"),
        (future_get, "`moka::future::Cache<RecordId, Project>::get`"),
    ]
    .into_iter()
    .min_by_key(|(s, _)| s.p50)
    .expect("two baselines");
    let r = ours.p50_ratio(&best);
    let target = 1.5;
    let faster = raw.p50_ratio(&alone);
    b.lines.push(Line {
        number: "11a".to_owned(),
        name: "Near cache: `Cache::get` hit answered in process vs a bare `moka` get".to_owned(),
        ours: p50_p99(&ours),
        baseline: format!("best bare moka get ({best_name}): {}", p50_p99(&best)),
        ratio: fmt_ratio(r),
        target: format!("≤ {target:.2}x"),
        verdict: Verdict::from_check(r <= target && misses == 0),
        notes: vec![
            format!(
                "{} samples of each (each the mean of 16 gets); p99 ratio {}. Each answers an owned `Project`: \
                 moka clones the one it holds, the near cache the decoded one it keeps (no round trip, no \
                 decoding). The near cache is `CacheBuilder::near_cache(64 MiB)` over the report's `RedisStore` \
                 and its {} records, tracking on; {misses} reads it could not answer while measuring, no origin \
                 call; it held {} entries weighing {} bytes.",
                thousands(ours.count as u64),
                fmt_ratio(ours.p99_ratio(&best)),
                thousands(b.records.len() as u64),
                thousands(stats.entries),
                thousands(stats.weighted_bytes)
            ),
            format!(
                "Both moka caches: `moka::sync::Cache::get` (what the near cache is built on) {}; \
                 `moka::future::Cache::get` (line 5b's baseline) {}.",
                p50_p99(&sync_get),
                p50_p99(&future_get)
            ),
            format!(
                "Where the {} over the best bare get goes: `NearCache::holds` (hashing the id, checking the \
                 record's generation and the epoch, the moka lookup; no clone): {}; cloning a `Project`, measured \
                 alone: p50 {}; the rest of `Cache::get` (finding the entity, statistics, the dependency scope): {}.",
                gap(ours.p50, best.p50),
                p50_p99(&holds),
                fmt_duration(clone.p50),
                gap(ours.p50, holds.p50 + clone.p50)
            ),
            format!(
                "Against the round trip it saves ({} samples of each, one operation at a time, alternating): a near \
                 hit {}, a raw `GET` of the record's bytes on the store's connection {}: the near hit is {:.0}x \
                 faster (the issue asks at least 20x).",
                thousands(alone.count as u64),
                p50_p99(&alone),
                p50_p99(&raw),
                faster
            ),
            many_note,
        ],
    });
}

/// What one round of the eviction line measured.
struct Eviction {
    /// From the start of the write to the eviction (or the push) seen by the reader.
    from_start: Duration,
    /// Whether it was seen before the writer's call returned.
    before_return: bool,
    /// The writer's call alone.
    write: Duration,
}

/// The three ways a round writes, and what it waits for.
#[derive(Debug, Clone, Copy)]
enum Writer {
    /// `Cache::upsert` on instance A; waits for B's near cache to drop the record.
    Upsert,
    /// `Store::put` of the same record on A's store (one round trip); waits as above.
    StorePut,
    /// A raw `SET` on the report's connection; waits for the push on a bare tracking connection.
    BarePush,
}

const WRITERS: [Writer; 3] = [Writer::Upsert, Writer::StorePut, Writer::BarePush];

/// Two instances over one namespace, the records they share, and a bare tracking connection.
struct Pair {
    origin: CountingOrigin,
    writer: Cache,
    writer_store: RedisStore,
    reader: Cache,
    records: Vec<Project>,
    /// Versions written so far: each write's `updated_at` is later than the last.
    written: i64,
    /// Invalidation pushes the bare tracking connection has read.
    pushes: Arc<AtomicU64>,
    /// Kept open: its pushes count in `pushes`.
    _tracking: redis::aio::MultiplexedConnection,
}

impl Pair {
    /// The next version of record `k`, put at the origin too.
    fn next_version(&mut self, k: usize) -> Project {
        self.written += 1;
        let record = &mut self.records[k];
        record.updated_at += chrono::Duration::milliseconds(1);
        record.name = format!("write {}", self.written);
        self.origin.put(&*record).expect("a source record");
        record.clone()
    }

    /// One round of `writer` on record `k`.
    async fn round(&mut self, b: &Bench, writer: Writer, k: usize) -> Eviction {
        let id = self.records[k].id.clone();
        let near = self.reader.near_cache().expect("a near cache").clone();
        if !matches!(writer, Writer::BarePush) {
            while !near.holds::<Project>(&id) {
                let found: Option<Project> = self.reader.get(&id).await.expect("get");
                assert!(found.is_some(), "a hit");
            }
        }
        let write = self.next_version(k);
        let before = self.pushes.load(Ordering::SeqCst);
        let gone = || match writer {
            Writer::BarePush => self.pushes.load(Ordering::SeqCst) != before,
            _ => !near.holds::<Project>(&id),
        };
        let started = Instant::now();
        let write = async {
            match writer {
                Writer::Upsert => {
                    let outcome = self.writer.upsert(&write).await.expect("upsert");
                    assert!(matches!(outcome, UpsertOutcome::Stored), "stored, not {outcome:?}");
                }
                Writer::StorePut => {
                    self.writer_store
                        .put(
                            Project::schema(),
                            &writes::record_writes(std::slice::from_ref(&write)),
                            WriteMode::Upsert,
                        )
                        .await
                        .expect("put");
                }
                Writer::BarePush => {
                    let () = redis::cmd("SET")
                        .arg(format!("{PUSH_PREFIX}{k}"))
                        .arg(&b.bodies[k])
                        .query_async(&mut b.conn.clone())
                        .await
                        .expect("SET");
                }
            }
            Instant::now()
        };
        // Watched while the write is under way, not after it returned: a write of several
        // round trips may be seen long before its last reply. Both sides are watched alike,
        // yielding to the runtime (and so to the connections' readers) between two looks.
        let watch = async {
            while !gone() {
                assert!(started.elapsed() < EVICTION_TIMEOUT, "{writer:?}: never evicted");
                tokio::task::yield_now().await;
            }
            Instant::now()
        };
        let (returned, evicted) = tokio::join!(write, watch);
        Eviction {
            from_start: evicted - started,
            before_return: evicted < returned,
            write: returned - started,
        }
    }
}

async fn eviction_line(b: &mut Bench) {
    let origin = CountingOrigin::new();
    let records: Vec<Project> = b.records[..EVICTED.min(b.records.len())].to_vec();
    for r in &records {
        origin.put(r).expect("a source record");
    }
    let connect = || async {
        RedisStore::builder(b.server.url())
            .namespace(EVICTION_NAMESPACE)
            .connect()
            .await
            .expect("an instance's store")
    };
    let writer_store = connect().await;
    let writer = near_cache(writer_store.clone(), origin.clone()).await;
    let reader = near_cache(connect().await, origin.clone()).await;
    let ids: Vec<RecordId> = records.iter().map(|r| r.id.clone()).collect();
    writer.get_many::<Project>(&ids).await.expect("fill the namespace");

    // The bare baseline: a RESP3 connection tracking a prefix of its own, counting its pushes.
    let pushes = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&pushes);
    let config = AsyncConnectionConfig::new().set_push_sender(move |push: PushInfo| {
        if push.kind == PushKind::Invalidate {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        Ok::<(), std::convert::Infallible>(())
    });
    let mut tracking = redis::Client::open(format!("redis://127.0.0.1:{}/?protocol=resp3", b.server.port()))
        .expect("a RESP3 client")
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("a RESP3 connection");
    let () = redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(PUSH_PREFIX)
        .query_async(&mut tracking)
        .await
        .expect("CLIENT TRACKING ON");

    let mut pair = Pair {
        origin,
        writer,
        writer_store,
        reader,
        records,
        written: 0,
        pushes,
        _tracking: tracking,
    };
    let count = pair.records.len();
    // The commands of one upsert, then an untimed warm-up of each writer.
    let write = pair.next_version(0);
    let (_, commands) = b.server.count_commands(pair.writer.upsert(&write)).await;
    for round in 0..b.n(100, 20) {
        for writer in WRITERS {
            pair.round(b, writer, round % count).await;
        }
    }
    let rounds = b.n(2_000, 200);
    let mut from_start = vec![Samples::new(); WRITERS.len()];
    let mut early = [0usize; WRITERS.len()];
    let mut write_time = vec![Samples::new(); WRITERS.len()];
    for round in 0..rounds {
        for k in 0..WRITERS.len() {
            // The order rotates, so that no writer always runs right after another.
            let w = (round + k) % WRITERS.len();
            let e = pair.round(b, WRITERS[w], round % count).await;
            from_start[w].push(e.from_start);
            early[w] += usize::from(e.before_return);
            write_time[w].push(e.write);
        }
    }
    let sum = |s: &[Samples]| s.iter().map(Samples::summary).collect::<Vec<Summary>>();
    let (from_start, write_time) = (sum(&from_start), sum(&write_time));
    let (upsert, put, push) = (from_start[0], from_start[1], from_start[2]);
    #[allow(clippy::cast_precision_loss)]
    let early_share = |w: usize| format!("{:.0}%", 100.0 * early[w] as f64 / rounds as f64);
    let r = upsert.p50_ratio(&push);
    b.lines.push(Line {
        number: "11b".to_owned(),
        name: "Near cache: a write on one instance to its eviction from another's near cache (loopback)".to_owned(),
        ours: format!("from the start of `Cache::upsert`: {}", p50_p99(&upsert)),
        baseline: format!(
            "a bare RESP3 push (`SET` on one connection to the `invalidate` push read on another, tracking \
             `BCAST`): {}",
            p50_p99(&push)
        ),
        ratio: fmt_ratio(r),
        target: format!("p99 ≤ {}", fmt_duration(EVICTION_P99)),
        verdict: Verdict::from_check(upsert.p99 <= EVICTION_P99),
        notes: vec![
            format!(
                "{} rounds of each writer, alternating: instance B reads a record until its near cache holds it, \
                 instance A writes a newer version, and B's near cache is watched (`NearCache::holds`, yielding \
                 to the runtime between two looks) from the start of the write, alongside it, until it no longer \
                 answers the record. A and B are two `Cache`s, each over a `RedisStore` of its own (its own \
                 connections and tracking connection), namespace `{EVICTION_NAMESPACE}` on the spawned server, on \
                 one current-thread runtime; the bare push is watched the same way. p99 ratio {}.",
                thousands(rounds as u64),
                fmt_ratio(upsert.p99_ratio(&push))
            ),
            format!(
                "Where the time goes: `Cache::upsert` sends {} ({} round trips, one after another: the record's \
                 write, then the purges of what it touched) and takes {} to return; B had dropped the record \
                 before it returned in {} of the rounds. The eviction follows the record's write, not the whole \
                 call.",
                commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "),
                commands.len(),
                p50_p99(&write_time[0]),
                early_share(0)
            ),
            format!(
                "From the start of a one-round-trip `Store::put` of the same record on A's store (the store's \
                 write alone, no purge): {} ({} the bare push); the call itself {}, B evicting before it returned \
                 in {} of the rounds. The bare push: its `SET` {}, the push read before the `SET`'s reply in {} of \
                 the rounds.",
                p50_p99(&put),
                fmt_ratio(put.p50_ratio(&push)),
                p50_p99(&write_time[1]),
                early_share(1),
                p50_p99(&write_time[2]),
                early_share(2)
            ),
        ],
    });
}
