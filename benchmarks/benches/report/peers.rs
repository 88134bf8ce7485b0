//! The peers (5): `cached`'s Redis store beside the Redis store, a bare `moka` cache beside
//! the `MemoryStore`.

use bytes::Bytes;
use cache_core::{
    Cache, Cacheable, MemoryStore, RecordId,
    store::{DecodedCopy, Lookup, Store},
};
use cached::ConcurrentCachedAsync;
use model_cache_bench::{
    model::Project,
    report::{Line, Verdict, fmt_duration, fmt_ratio, thousands},
    sample::{Plan, interleave, time_cpu},
};

use super::{Bench, TTL, WARM_BATCH, gap, p50_p99, signed};

pub(super) async fn cached_line(b: &mut Bench) {
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
    let msgpack = b.msgpack();
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

    // The two connections' own cost: a raw `GET` on the store's connection, and one on a plain
    // `MultiplexedConnection`, as `cached` reads.
    let peer_prefix = peer_key
        .strip_suffix(names[0].as_str())
        .expect("cached's key ends with the id (no `:` or `%` to escape in these ids)")
        .to_owned();
    let peer_keys: Vec<String> = names.iter().map(|name| format!("{peer_prefix}{name}")).collect();
    let plain = redis::Client::open(b.server.url())
        .expect("a client")
        .get_multiplexed_async_connection()
        .await
        .expect("a plain multiplexed connection");

    let plan = Plan::new(b.n(40_000, 2_000), 500, 2_000);
    let (cache, bench, peer, plain) = (&b.cache, &*b, &peer, &plain);
    let s = interleave(4, &plan, async |variant, i| {
        let k = bench.spread(i);
        match variant {
            0 => {
                let found: Option<Project> = cache.get(&bench.ids[k]).await.expect("get");
                assert!(found.is_some(), "a hit");
            }
            1 => {
                let found = peer.async_cache_get(&names[k]).await.expect("cached get");
                assert!(std::hint::black_box(found).is_some(), "a hit");
            }
            2 => {
                let raw: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&bench.keys[k])
                    .query_async(&mut bench.conn.clone())
                    .await
                    .expect("GET");
                assert!(std::hint::black_box(raw).is_some(), "a hit");
            }
            _ => {
                let raw: Option<Vec<u8>> = redis::cmd("GET")
                    .arg(&peer_keys[k])
                    .query_async(&mut plain.clone())
                    .await
                    .expect("GET");
                assert!(std::hint::black_box(raw).is_some(), "a hit");
            }
        }
    })
    .await;
    let (ours, theirs, store_raw, plain_raw) = (s[0].summary(), s[1].summary(), s[2].summary(), s[3].summary());
    let r = ours.p50_ratio(&theirs);
    let decode = b.decode_time();
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
                 ({} per get); model-cache over a `ConnectionManager` wrapping one (`get` of the record's key, \
                 which holds the record or its tombstone).",
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
            format!(
                "Where the {} between the medians goes, measured alongside: the connection, a raw `GET` of the \
                 record's key (1,027 B of JSON) on the store's connection, a `ConnectionManager` that \
                 reconnects by itself, used here without the store's breaker or budget: {}, against one of \
                 `cached`'s key (its MessagePack) on a plain `MultiplexedConnection`: {} ({}); the read over \
                 each raw `GET`, model-cache {} (key, breaker, operation budget, decode, statistics), `cached` \
                 {} (key, a one-command pipeline, decode).",
                gap(ours.p50, theirs.p50),
                p50_p99(&store_raw),
                p50_p99(&plain_raw),
                signed(store_raw.p50, plain_raw.p50),
                signed(ours.p50, store_raw.p50),
                signed(theirs.p50, plain_raw.p50)
            ),
        ],
    });
}

pub(super) async fn moka_line(b: &mut Bench) {
    let memory = MemoryStore::new();
    let cache = Cache::builder(memory.clone(), b.origin.clone())
        .register::<Project>()
        .build()
        .expect("the in-memory cache");
    for chunk in b.ids.chunks(WARM_BATCH) {
        cache.get_many::<Project>(chunk).await.expect("fill the memory store");
    }
    // The first get of a record decodes its bytes and keeps the decoded copy beside them.
    for id in &b.ids {
        let found: Option<Project> = cache.get(id).await.expect("get");
        assert!(found.is_some(), "a hit");
    }
    let moka: moka::future::Cache<RecordId, Project> = moka::future::Cache::builder().max_capacity(100_000).build();
    for r in &b.records {
        moka.insert(r.id.clone(), r.clone()).await;
    }
    let clone = time_cpu(b.n(20_000, 2_000), 16, |i| {
        std::hint::black_box(b.records[i % b.records.len()].clone());
    });
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
            _ => match memory.get_with_copy(schema, id).await.expect("store get") {
                (Lookup::Hit(bytes), Some(copy)) => {
                    assert!(copy.get::<Project>().is_some(), "a decoded copy");
                    std::hint::black_box::<(Bytes, DecodedCopy)>((bytes, copy));
                }
                other => panic!("a hit with its decoded copy, not {other:?}"),
            },
        }
    })
    .await;
    assert_eq!(b.origin.calls().total(), calls_before, "every measured get was a hit");
    let (ours, theirs, store) = (s[0].summary(), s[1].summary(), s[2].summary());
    let r = ours.p50_ratio(&theirs);
    let target = 1.5;
    let decode = b.decode_time();
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
                 clones the one it holds, model-cache the decoded copy the memory store keeps beside the record's \
                 bytes (kept by the first get of each record, made before measuring).",
                thousands(ours.count as u64),
                fmt_ratio(ours.p99_ratio(&theirs))
            ),
            format!(
                "Where the {} between the medians goes: `MemoryStore::get_with_copy` alone (a moka get of the \
                 cached bytes and their decoded copy, plus the store's expiry check): {}; cloning a `Project`, \
                 measured alone: p50 {}; the rest (statistics, the dependency scope, `dyn Store`): {}.",
                gap(ours.p50, theirs.p50),
                p50_p99(&store),
                fmt_duration(clone.p50),
                fmt_duration(ours.p50.saturating_sub(store.p50).saturating_sub(clone.p50))
            ),
            format!(
                "The memory store keeps records in their cached form (bytes, as Redis does, so both stores \
                 behave the same) and beside it the record the first get decoded, which goes with the bytes on \
                 any write, delete, invalidation, eviction or expiry; its memory budget weighs the copy at the \
                 bytes' length again. Without the copy every hit would decode the JSON instead (decoding alone: p50 {}).",
                fmt_duration(decode.p50)
            ),
        ],
    });
}
