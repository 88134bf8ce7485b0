//! The write lines: warming 10,000 records (6a), sweeping 100,000 (6b), and what a cached
//! record weighs in Redis (7).

use std::time::Instant;

use bytes::Bytes;
use cache_core::{
    Cache, Cacheable, RecordId,
    store::{Lookup, RecordWrite, Store, WriteMode},
};
use cache_redis::{RedisConnection, RedisStore};
use model_cache_bench::{
    model::{self, Project, TARGET_JSON_BYTES},
    origin::CountingOrigin,
    report::{Line, Verdict, fmt_duration, fmt_ratio, thousands},
    sample::ratio,
};

use super::{Bench, EVENTS, TTL, WARM_BATCH, gap};

/// Records cached for the sweep.
const SWEEP_RECORDS: usize = 100_000;
/// Ids per `Origin::exists_many` call of the sweep (the demo's default).
const SWEEP_BATCH: usize = 500;
/// One sweep record in this many is gone from the origin, for the sweep to remove.
const SWEEP_GONE_EVERY: usize = 1_000;
/// Records per `Store::put` when filling the sweep's store.
const PUT_BATCH: usize = 1_000;

pub(super) async fn warm_line(b: &mut Bench) {
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
    let target = 1.2;
    let r = ratio(ours, hand);
    b.lines.push(Line {
        number: "6a".to_owned(),
        name: format!("Warm-up: {} records written with their indexes", thousands(n as u64)),
        ours: format!(
            "{} ({}/s), `get_many` batches of {WARM_BATCH}",
            fmt_duration(ours),
            thousands((n as f64 / ours.as_secs_f64()) as u64)
        ),
        baseline: format!("hand-written pipelines of the same keys: {}", fmt_duration(hand)),
        ratio: fmt_ratio(r),
        target: format!("≤ {target:.2}x hand-written pipelines"),
        verdict: Verdict::from_check(r <= target),
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
                "Where the time goes ({} over the hand-written pipelines): `Store::put` alone of the same records \
                 (upserts, batches of {WARM_BATCH}, encoding included): {} ({} the hand-written pipelines) — the \
                 atomic script moving each record into its index entries; the client's CPU work of the fills \
                 alone (parsing {} source records, encoding them, computing their index entries): {}; the rest \
                 (the store read that finds them missing, the leases, the origin calls, cloning source records): \
                 {}.",
                gap(ours, hand),
                fmt_duration(put),
                fmt_ratio(ratio(put, hand)),
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
                "`used_memory` grew by {} bytes per record during model-cache's warm-up (see line 7); a fill's \
                 lease key lives from its lease to its write, which deletes it.",
                thousands(memory_per_record)
            ),
        ],
    });
}

/// What `Store::put` takes for `records`, as the cache builds it.
pub(super) fn record_writes(records: &[Project]) -> Vec<RecordWrite> {
    records
        .iter()
        .map(|r| RecordWrite {
            id: r.id.clone(),
            body: Bytes::from(r.to_cached().expect("cached form")),
            index: r.index_entries(),
            version: r.version(),
            at: None,
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

pub(super) async fn sweep_line(b: &mut Bench) {
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
    // A removed record's key now holds its tombstone (a record's key holds one or the other).
    let tombstoned = store
        .get_many(schema, &gone)
        .await
        .expect("the removed records' lookups")
        .iter()
        .filter(|lookup| matches!(lookup, Lookup::Tombstone))
        .count();
    store.flush(None).await.expect("flush the sweep namespace");

    let expected_calls = count.div_ceil(SWEEP_BATCH) as u64;
    let calls = origin.calls().exists_many;
    let ok = calls == expected_calls
        && report.batches == expected_calls
        && report.checked == count as u64
        && report.removed == gone.len() as u64
        && listed == count
        && left == count
        && tombstoned == gone.len();
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
            "The sweep lists ids with `SCAN` (never `KEYS`), in steps of the batch size, reads the first byte \
             of each key found (one pipelined `GETRANGE … 0 0` a page: a record's key holds the record or its \
             tombstone, and a tombstone is not swept again), and asks the origin once per full batch; the raw \
             `SCAN` baseline lists the same keys in steps of 1,000 and does nothing with them. Afterwards the \
             removed records' keys hold their tombstones (checked)."
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

/// Line 7b's target: a record with its index entries, at most this many times its JSON.
const INDEXED_TARGET: f64 = 1.5;

/// The bytes line 7b's target allows a record of `json` bytes of JSON.
fn indexed_budget(json: u64) -> u64 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let budget = (json as f64 * INDEXED_TARGET).floor() as u64;
    budget
}

pub(super) async fn memory_lines(b: &mut Bench) {
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
        if rest.starts_with(":r:") {
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
            r if r.starts_with(":i:") => tags += usage,
            r if r.starts_with(":s:") => sorts += usage,
            r => {
                other += usage;
                other_keys.push(r.trim_start_matches(':').to_owned());
            }
        }
    }
    let index = (meta + idset + tags + sorts + other) / n;
    #[allow(clippy::cast_precision_loss)]
    let times_of = |bytes: u64| bytes as f64 / json as f64;
    let times = |bytes: u64| fmt_ratio(times_of(bytes));
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
        target: format!("≤ {INDEXED_TARGET:.2}x its JSON"),
        verdict: Verdict::from_check(times_of(record + index) <= INDEXED_TARGET),
        notes: vec![
            format!(
                "Where the bytes go, beside the {} B of JSON: the record key's own overhead (its name of about {} \
                 bytes, Redis's per-key and expiry entries) {} B, the index entries {} B; the target allows {} B \
                 in all, {} B of overhead.",
                thousands(json),
                b.keys[0].len(),
                thousands(record.saturating_sub(json)),
                thousands(index),
                thousands(indexed_budget(json)),
                thousands(indexed_budget(json).saturating_sub(json))
            ),
            format!(
                "Index share per record (whole keys over {} records): meta hash {} B, id set {} B, tag sets \
                 (`event`, `owner`) {} B, sort sets (`points`, `created_at`) {} B, {}.",
                thousands(n),
                meta / n,
                idset / n,
                tags / n,
                sorts / n,
                if other_keys.is_empty() {
                    "no other key".to_owned()
                } else {
                    format!("other keys (`{}`) {} B", other_keys.join("`, `"), other / n)
                }
            ),
            "The meta hash keeps each record's index entries and version so that an upsert can move the \
             record out of its old index entries atomically, without reading the old record."
                .to_owned(),
            format!(
                "Not counted: {} lease keys left by the warm-up's fills (a fill that wrote deletes its lease; one \
                 that did not leaves it to the 30 s lease TTL).",
                thousands(leases)
            ),
        ],
    });
}
