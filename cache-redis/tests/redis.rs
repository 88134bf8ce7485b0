//! What the Redis store promises beyond the conformance suite, checked on real servers: round
//! trips, TTLs, scripts surviving `SCRIPT FLUSH`, the namespace boundary, the circuit breaker,
//! restarts under a running cache, key encoding, connection options.
//!
//! Every test starts its own server (or cluster) and may run in parallel with the others.

use std::{
    sync::{
        Arc, LazyLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use cache_core::{
    Cache, Cacheable, Order, RecordId,
    origin::SourceRecord,
    query::{IndexQuery, Sort},
    schema::{EntitySchema, FieldSchema, IndexEntries, IndexKind, ModelError, NoSort},
    store::{Lookup, QueryLookup, RecordWrite, RemoveMode, Store, StoreError, WriteMode, WriteOutcome},
    testing::MemoryOrigin,
};
use cache_redis::{
    CircuitBreakerConfig, CircuitState, ConnectError, RedisStore,
    testing::{RedisCluster, RedisServer},
};
use futures::StreamExt;

const LONG: Duration = Duration::from_secs(3600);

/// `redis_notes`: `tag` (indexed), `rank` (sortable).
fn notes() -> &'static EntitySchema {
    static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
        let mut tag = FieldSchema::scalar("tag", "String");
        tag.index = Some(IndexKind::Exact);
        let mut rank = FieldSchema::scalar("rank", "i64");
        rank.sortable = true;
        EntitySchema::builder("redis_notes")
            .field(FieldSchema::scalar("title", "String"))
            .field(tag)
            .field(rank)
            .build()
    });
    &SCHEMA
}

fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("test ids are valid")
}

fn note(rid: &str, tag: &str, rank: f64) -> RecordWrite {
    RecordWrite {
        id: id(rid),
        body: Bytes::from(format!(r#"{{"id":"{rid}","tag":{tag:?},"rank":{rank}}}"#)),
        index: IndexEntries {
            tags: vec![("tag".into(), tag.into())],
            scores: vec![("rank".into(), rank)],
        },
        version: None,
        at: None,
        ttl: LONG,
    }
}

fn by_tag(tag: &str) -> IndexQuery {
    IndexQuery::all().filter("tag", tag.to_owned())
}

async fn store_on(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url())
        .connect()
        .await
        .unwrap_or_else(|e| server.fail(&format!("connect: {e}")))
}

async fn upsert(store: &RedisStore, writes: &[RecordWrite]) {
    let out = store.put(notes(), writes, WriteMode::Upsert).await.expect("put");
    assert!(out.iter().all(|o| matches!(o, WriteOutcome::Written { .. })), "{out:?}");
}

/// Deletes `id` as the source reported: its tombstone lives until `LONG` ends.
async fn tombstone(store: &RedisStore, id_: &str) {
    let mode = RemoveMode::Tombstone(cache_core::store::Tombstone::new(LONG));
    store.remove(notes(), &[id(id_)], mode).await.expect("tombstone");
}

/// Fills `query`'s complete result from `records`.
async fn complete(store: &RedisStore, query: &IndexQuery, records: &[RecordWrite]) {
    let QueryLookup::Incomplete(token) = store.query(notes(), query).await.expect("query") else {
        panic!("{query:?} was already complete");
    };
    assert!(
        store
            .complete_query(notes(), query, token, records)
            .await
            .expect("complete")
            .is_complete()
    );
}

fn page_ids(lookup: QueryLookup) -> Vec<String> {
    let QueryLookup::Complete { page, .. } = lookup else {
        panic!("expected a complete page, got {lookup:?}");
    };
    page.iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_slice(b).expect("json body");
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

/// Every key of `namespace` on the server.
fn keys_of(server: &RedisServer, namespace: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<String>) = server.query(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{namespace}:*"))
                .arg("COUNT")
                .arg(1000),
        );
        keys.extend(page);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

// ------------------------------------------------------------------ round trips

#[tokio::test]
async fn a_hit_is_one_command() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let writes: Vec<RecordWrite> = (0..100)
        .map(|i| {
            note(
                &format!("n{i:03}"),
                if i % 2 == 0 { "even" } else { "odd" },
                f64::from(i),
            )
        })
        .collect();

    let (_, commands) = server.count_commands(upsert(&store, &writes[..1])).await;
    assert_eq!(commands, ["evalsha"], "an upsert is one script");
    // Moving a record between index entries is one script too.
    let (_, commands) = server.count_commands(upsert(&store, &[note("n000", "odd", 7.0)])).await;
    assert_eq!(commands, ["evalsha"]);
    upsert(&store, &writes[1..]).await;

    let (lookup, commands) = server.count_commands(store.get(notes(), &id("n001"))).await;
    assert_eq!(lookup.expect("get"), Lookup::Hit(writes[1].body.clone()));
    assert_eq!(commands, ["get"], "a get is one command");

    let ids: Vec<RecordId> = writes.iter().map(|w| w.id.clone()).collect();
    let (many, commands) = server.count_commands(store.get_many(notes(), &ids)).await;
    assert!(many.expect("get_many").iter().all(|l| matches!(l, Lookup::Hit(_))));
    assert_eq!(commands, ["mget"], "get_many of 100 ids is one command");

    let odd: Vec<RecordWrite> = writes[1..]
        .iter()
        .step_by(2)
        .cloned()
        .chain([note("n000", "odd", 7.0)])
        .collect();
    complete(&store, &by_tag("odd"), &odd).await;
    let mut query = by_tag("odd");
    query.sort = Some(Sort {
        field: "rank",
        order: Order::Desc,
    });
    query.offset = 2;
    query.limit = Some(3);
    let (page, commands) = server.count_commands(store.query(notes(), &query)).await;
    assert_eq!(page_ids(page.expect("query")), ["n095", "n093", "n091"]);
    assert_eq!(
        commands,
        ["evalsha"],
        "a query hit (filter, sort, offset, limit) is one script"
    );
}

/// A record and its tombstone share one key: a lookup reads one key per id, whatever it finds
/// (the server's keyspace hits and misses count each key a command looked up).
#[tokio::test]
async fn a_lookup_reads_one_key_per_id() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let n1 = note("n1", "a", 1.0);
    upsert(&store, std::slice::from_ref(&n1)).await;
    tombstone(&store, "n9").await;
    let keys_read = || {
        let info: String = server.query(redis::cmd("INFO").arg("stats"));
        let field = |name: &str| -> u64 {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("INFO stats has no {name}"))
        };
        field("keyspace_hits") + field("keyspace_misses")
    };
    for (rid, expected) in [
        ("n1", Lookup::Hit(n1.body.clone())),
        ("n9", Lookup::Tombstone),
        ("n5", Lookup::Miss),
    ] {
        let before = keys_read();
        assert_eq!(store.get(notes(), &id(rid)).await.expect("get"), expected);
        assert_eq!(keys_read() - before, 1, "get {rid}: one key read");
    }
    let ids = [id("n1"), id("n9"), id("n5")];
    let before = keys_read();
    let many = store.get_many(notes(), &ids).await.expect("get_many");
    assert_eq!(many, [Lookup::Hit(n1.body), Lookup::Tombstone, Lookup::Miss]);
    assert_eq!(keys_read() - before, 3, "get_many: one key read per id");
}

/// An upsert reads the record keys (where a tombstone would be) of the records it has no meta
/// for, never those of records already cached: their bodies stay out of the script. Counted
/// with `INFO commandstats`, which counts what scripts run too.
#[tokio::test]
async fn an_upsert_reads_only_the_keys_of_records_not_cached() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let writes: Vec<RecordWrite> = (0..50).map(|i| note(&format!("n{i:02}"), "a", f64::from(i))).collect();
    let reset = || server.query::<()>(redis::cmd("CONFIG").arg("RESETSTAT"));
    reset();
    upsert(&store, &writes).await;
    assert_eq!(server.command_calls("mget"), 1, "the new records' keys, in one MGET");
    reset();
    upsert(&store, &writes).await;
    assert_eq!(server.command_calls("mget"), 0, "cached records hold no tombstone");
    reset();
    upsert(&store, &[note("n00", "b", 0.0), note("n99", "a", 99.0)]).await;
    assert_eq!(server.command_calls("mget"), 1, "one of two is new");
}

#[tokio::test]
async fn script_flush_does_not_break_operations() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let records = [note("n1", "a", 1.0), note("n2", "a", 2.0)];
    complete(&store, &by_tag("a"), &records).await;

    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    let (page, commands) = server.count_commands(store.query(notes(), &by_tag("a"))).await;
    assert_eq!(page_ids(page.expect("query after SCRIPT FLUSH")), ["n1", "n2"]);
    assert_eq!(commands, ["evalsha", "script", "evalsha"], "NOSCRIPT, load, run");
    let (_, commands) = server.count_commands(store.query(notes(), &by_tag("a"))).await;
    assert_eq!(commands, ["evalsha"], "loaded again");

    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    upsert(&store, &[note("n3", "a", 3.0)]).await;
    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    tombstone(&store, "n1").await;
    let _: () = server.query(redis::cmd("SCRIPT").arg("FLUSH"));
    assert_eq!(
        page_ids(store.query(notes(), &by_tag("a")).await.expect("query")),
        ["n2", "n3"]
    );
}

// ------------------------------------------------------------------ keys

#[tokio::test]
async fn every_key_has_a_ttl() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let s = notes();
    let lease = store
        .lease(s, &[id("n1"), id("n2"), id("n9")], LONG)
        .await
        .expect("lease");
    store
        .put(s, &[note("n1", "a", 1.0), note("n2", "b", 2.0)], WriteMode::Fill(lease))
        .await
        .expect("fill");
    store
        .remove(s, &[id("n9")], RemoveMode::FillTombstone { lease, ttl: LONG })
        .await
        .expect("fill tombstone");
    complete(&store, &by_tag("a"), &[note("n1", "a", 1.0), note("n3", "a", 3.0)]).await;
    complete(
        &store,
        &IndexQuery::all(),
        &[note("n1", "a", 1.0), note("n2", "b", 2.0), note("n3", "a", 3.0)],
    )
    .await;
    upsert(&store, &[note("n2", "a", 5.0), note("n4", "c", 4.0)]).await;
    tombstone(&store, "n3").await;
    store
        .remove(s, &[id("n4")], RemoveMode::Invalidate)
        .await
        .expect("invalidate");
    assert!(matches!(
        store.query(s, &by_tag("a")).await.expect("query"),
        QueryLookup::Incomplete(_)
    ));
    store
        .put_value(
            "page:/notes?tag=a",
            Bytes::from_static(b"[]"),
            LONG,
            &["redis_notes?tag=a".to_owned()],
        )
        .await
        .expect("put_value");
    store
        .put_value("other", Bytes::from_static(b"1"), LONG, &["redis_notes:n1".to_owned()])
        .await
        .expect("put_value");
    store.purge_tags(&["redis_notes:n1".to_owned()]).await.expect("purge");

    let keys = keys_of(&server, store.namespace());
    assert!(keys.len() >= 10, "a realistic set of keys: {keys:?}");
    for key in keys {
        let ttl: i64 = server.query(redis::cmd("PTTL").arg(&key));
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
}

#[tokio::test]
async fn fills_drop_their_leases() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let s = notes();
    let lease = store.lease(s, &[id("n1"), id("n9")], LONG).await.expect("lease");
    let out = store
        .put(s, &[note("n1", "a", 1.0)], WriteMode::Fill(lease))
        .await
        .expect("fill");
    assert!(matches!(out[..], [WriteOutcome::Written { .. }]), "{out:?}");
    store
        .remove(s, &[id("n9")], RemoveMode::FillTombstone { lease, ttl: LONG })
        .await
        .expect("fill tombstone");
    let leases: Vec<String> = keys_of(&server, store.namespace())
        .into_iter()
        .filter(|k| k.contains(":lease:"))
        .collect();
    assert!(leases.is_empty(), "leases left behind: {leases:?}");
}

/// A record key holds a record or its tombstone. An id the index files holds no tombstone,
/// short of a lost meta hash; should one meet a tombstone all the same, a query reads it as a
/// missing record (the page goes to the origin), never as a body, and a fill that forgets
/// the id leaves the tombstone, as it would a tombstone anywhere else.
#[tokio::test]
async fn indexed_ids_never_read_a_tombstone_as_a_record() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let s = notes();
    let layout = store.key_layout(s);
    complete(&store, &by_tag("a"), &[note("n1", "a", 1.0), note("n2", "a", 2.0)]).await;
    let n1 = layout.for_id(&id("n1")).record(&id("n1"));
    let _: () = server.query(redis::cmd("SET").arg(&n1).arg("!d||").arg("KEEPTTL"));
    assert!(
        matches!(
            store.query(s, &by_tag("a")).await.expect("query"),
            QueryLookup::Incomplete(_)
        ),
        "a page holding a tombstone is not answered"
    );

    // The meta hash is lost, then n2 deleted: its index entries stay behind.
    let _: () = server.query(redis::cmd("DEL").arg(layout.for_id(&id("n2")).meta()));
    tombstone(&store, "n2").await;
    complete(&store, &IndexQuery::all(), &[]).await;
    assert_eq!(store.get(s, &id("n2")).await.expect("get"), Lookup::Tombstone);
}

#[tokio::test]
async fn one_put_can_write_a_record_twice() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    complete(&store, &by_tag("a"), &[]).await;
    complete(&store, &by_tag("b"), &[]).await;
    upsert(
        &store,
        &[note("n1", "a", 1.0), note("n2", "a", 2.0), note("n1", "b", 5.0)],
    )
    .await;
    let s = notes();
    assert_eq!(page_ids(store.query(s, &by_tag("a")).await.expect("query")), ["n2"]);
    assert_eq!(page_ids(store.query(s, &by_tag("b")).await.expect("query")), ["n1"]);
    let mut by_rank = IndexQuery::all();
    by_rank.sort = Some(Sort {
        field: "rank",
        order: Order::Desc,
    });
    complete(&store, &by_rank, &[note("n1", "b", 5.0), note("n2", "a", 2.0)]).await;
    upsert(&store, &[note("n2", "a", 9.0), note("n2", "a", 3.0)]).await;
    assert_eq!(page_ids(store.query(s, &by_rank).await.expect("query")), ["n1", "n2"]);
}

#[tokio::test]
async fn the_layout_is_readable_with_redis_cli() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    upsert(&store, &[note("n1", "a b", 1.0)]).await;
    let layout = store.key_layout(notes());
    let keys = layout.for_id(&id("n1"));
    let fp = notes().fingerprint_hex();
    assert_eq!(keys.record(&id("n1")), format!("mc:{{redis_notes}}:{fp}:r:n1"));
    let body: String = server.query(redis::cmd("GET").arg(keys.record(&id("n1"))));
    assert_eq!(body, r#"{"id":"n1","tag":"a b","rank":1}"#);
    let mut members: Vec<String> = server.query(
        redis::cmd("ZRANGE")
            .arg(format!("mc:{{redis_notes}}:{fp}:i:tag:a%20b"))
            .arg(0)
            .arg(-1),
    );
    members.sort();
    // The record, and the set's clean mark (`:m:` and the meta hash's incarnation).
    assert_eq!(members.len(), 2, "{members:?}");
    assert!(members[0].starts_with(":m:") && members[1] == "n1", "{members:?}");
    let score: f64 = server.query(redis::cmd("ZSCORE").arg(keys.sort("rank")).arg("n1"));
    assert_eq!(score, 1.0);
    // The sentinels that tell an evicted key from an empty one.
    let sentinel: f64 = server.query(redis::cmd("ZSCORE").arg(keys.sort("rank")).arg(""));
    assert_eq!(sentinel, f64::NEG_INFINITY);
    let incarnation: String = server.query(redis::cmd("HGET").arg(keys.meta()).arg(""));
    assert_eq!(format!(":m:{incarnation}"), members[0]);
}

#[tokio::test]
async fn another_schema_never_reads_old_data() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    upsert(&store, &[note("n1", "a", 1.0)]).await;
    let changed = EntitySchema::builder("redis_notes")
        .field(FieldSchema::scalar("title", "String"))
        .field(FieldSchema::scalar("tag", "String"))
        .build();
    assert_eq!(store.get(&changed, &id("n1")).await.expect("get"), Lookup::Miss);
    let ids: Vec<RecordId> = store
        .scan_ids(&changed, 10)
        .next()
        .await
        .transpose()
        .expect("scan")
        .unwrap_or_default();
    assert!(ids.is_empty());
}

#[tokio::test]
async fn special_characters_in_values_are_encoded() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let odd = "a:b *{x}? [y]\\z é\t%41";
    let also = "a:b";
    complete(&store, &by_tag(odd), &[note("n1", odd, 1.0), note("n2", odd, 2.0)]).await;
    complete(&store, &by_tag(also), &[note("n3", also, 3.0)]).await;
    assert_eq!(
        page_ids(store.query(notes(), &by_tag(odd)).await.expect("query")),
        ["n1", "n2"]
    );
    assert_eq!(
        page_ids(store.query(notes(), &by_tag(also)).await.expect("query")),
        ["n3"]
    );
    let previous = store
        .put(notes(), &[note("n1", also, 1.0)], WriteMode::Upsert)
        .await
        .expect("put");
    assert_eq!(
        previous,
        [WriteOutcome::Written {
            previous: Some(note("n1", odd, 1.0).index)
        }],
        "index entries come back decoded"
    );
    assert_eq!(
        page_ids(store.query(notes(), &by_tag(odd)).await.expect("query")),
        ["n2"]
    );
    assert_eq!(
        page_ids(store.query(notes(), &by_tag(also)).await.expect("query")),
        ["n1", "n3"]
    );

    let key = "GET /notes?tag=a:b *{x}";
    store
        .put_value(key, Bytes::from_static(b"v"), LONG, &[format!("redis_notes?tag={odd}")])
        .await
        .expect("put_value");
    assert_eq!(
        store.get_value(key).await.expect("get_value"),
        Some(Bytes::from_static(b"v"))
    );
    assert_eq!(
        store
            .purge_tags(&[format!("redis_notes?tag={odd}")])
            .await
            .expect("purge"),
        1
    );
    for key in keys_of(&server, store.namespace()) {
        assert!(!key.contains(' ') && !key.contains('*'), "{key:?} is not encoded");
    }
}

#[tokio::test]
async fn invalid_queries_are_refused() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let unindexed = IndexQuery::all().filter("title", "x".to_owned());
    assert!(matches!(
        store.query(notes(), &unindexed).await,
        Err(StoreError::Invalid(_))
    ));
    let mut unsortable = IndexQuery::all();
    unsortable.sort = Some(Sort {
        field: "tag",
        order: Order::Asc,
    });
    assert!(matches!(
        store.query(notes(), &unsortable).await,
        Err(StoreError::Invalid(_))
    ));
}

// ------------------------------------------------------------------ sweep

/// A tombstone lives in its record's key, which the sweep's scan finds: `scan_ids` does not
/// list it, so a sweep neither asks the origin about it nor tombstones it again with a new
/// lifetime (which would keep it for ever); the records are swept as before.
#[tokio::test]
async fn a_sweep_leaves_tombstones_alone() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let origin = MemoryOrigin::new();
    let cache = Cache::builder(store.clone(), origin.clone())
        .register::<Note>()
        .build()
        .expect("cache");
    for (i, rid) in ["n1", "n2", "n3"].into_iter().enumerate() {
        let note = Note {
            id: id(rid),
            tag: "t".to_owned(),
            rank: i64::try_from(i).expect("small"),
        };
        origin.put(&note).expect("origin put");
        assert_eq!(cache.get::<Note>(&note.id).await.expect("fill"), Some(note));
    }
    // A reported delete and a fill's "not found".
    assert!(cache.delete::<Note>(&id("n2")).await.expect("delete"));
    assert_eq!(cache.get::<Note>(&id("n9")).await.expect("miss"), None);
    // Short lifetimes, so that a tombstone written again shows.
    let layout = store.key_layout(notes());
    let key = |rid: &str| layout.for_id(&id(rid)).record(&id(rid));
    for rid in ["n2", "n9"] {
        let set: bool = server.query(redis::cmd("PEXPIRE").arg(key(rid)).arg(60_000));
        assert!(set, "{rid} is tombstoned");
    }

    let mut listed = Vec::new();
    let mut scan = store.scan_ids(notes(), 10);
    while let Some(batch) = scan.next().await {
        listed.extend(batch.expect("scan").into_iter().map(|id| id.as_str().to_owned()));
    }
    listed.sort();
    assert_eq!(listed, ["n1", "n3"], "the cached records, not the tombstones");

    let report = cache.sweep(notes(), 10, |_| {}).await.expect("sweep");
    assert_eq!((report.checked, report.removed), (2, 0), "{report:?}");
    for rid in ["n2", "n9"] {
        let ttl: i64 = server.query(redis::cmd("PTTL").arg(key(rid)));
        assert!(0 < ttl && ttl <= 60_000, "{rid}'s tombstone lives {ttl} ms");
        assert_eq!(store.get(notes(), &id(rid)).await.expect("get"), Lookup::Tombstone);
    }
}

// ------------------------------------------------------------------ flush

#[tokio::test]
async fn flush_never_leaves_the_namespace() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let neighbour = RedisStore::builder(server.url())
        .namespace("mc2")
        .connect()
        .await
        .expect("connect");
    let foreign = ["foreign", "mc", "mcx:a", "mc-other:r:n1", "other:mc:x", "{mc}:x", "mc2"];
    for key in foreign {
        let _: () = server.query(redis::cmd("SET").arg(key).arg("keep"));
    }
    upsert(&neighbour, &[note("n1", "a", 1.0)]).await;
    upsert(&store, &[note("n1", "a", 1.0), note("n2", "b", 2.0)]).await;
    store
        .put_value("v", Bytes::from_static(b"1"), LONG, &["t".to_owned()])
        .await
        .expect("put_value");

    assert_eq!(store.flush(Some("v:*")).await.expect("flush values"), 1);
    assert_eq!(store.get_value("v").await.expect("get_value"), None);
    assert!(matches!(
        store.get(notes(), &id("n1")).await.expect("get"),
        Lookup::Hit(_)
    ));
    for refused in ["", "*\\", "[", "a]", "* *", "*\n*"] {
        assert!(
            matches!(store.flush(Some(refused)).await, Err(StoreError::Invalid(_))),
            "{refused:?} is refused"
        );
    }
    assert_eq!(store.flush(Some("redis_notes:r:\\n2")).await.expect("an escape"), 1);
    store.flush(Some("*:*")).await.expect("flush");
    store.flush(Some("*")).await.expect("flush");
    store.flush(None).await.expect("flush");
    assert!(keys_of(&server, "mc").is_empty(), "the namespace is empty");
    for key in foreign {
        let value: Option<String> = server.query(redis::cmd("GET").arg(key));
        assert_eq!(value.as_deref(), Some("keep"), "{key} is outside the namespace");
    }
    assert!(matches!(
        neighbour.get(notes(), &id("n1")).await.expect("get"),
        Lookup::Hit(_)
    ));
}

#[tokio::test]
async fn value_keys_match_flush_patterns_as_on_the_memory_store() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let memory = cache_core::MemoryStore::new();
    let keys = [
        "http:events:recE1:projects:params_1:v1",
        "http:events:recE2:_:params_2:v1",
        "http:users:recU1:_:params_3:v1",
        "stats:params_{x}*:1",
    ];
    for key in keys {
        for s in [&store as &dyn Store, &memory] {
            s.put_value(key, Bytes::from_static(b"1"), LONG, &[])
                .await
                .expect("put_value");
        }
    }
    for s in [&store as &dyn Store, &memory] {
        assert_eq!(s.flush(Some("v:http:events:*")).await.expect("flush"), 2);
        assert_eq!(s.get_value(keys[0]).await.expect("get"), None);
        assert!(
            s.get_value(keys[2]).await.expect("get").is_some(),
            "other resources stay"
        );
        assert!(
            s.get_value(keys[3]).await.expect("get").is_some(),
            "glob syntax in a key is data"
        );
    }
}

/// `redis_tasks`: no index.
fn tasks() -> &'static EntitySchema {
    static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
        EntitySchema::builder("redis_tasks")
            .field(FieldSchema::scalar("title", "String"))
            .build()
    });
    &SCHEMA
}

/// What a store holds of the records, tombstones and values `flush_patterns_...` writes, and
/// whether it answers the query on tag `a` by itself.
async fn logical_state(store: &dyn Store) -> Vec<String> {
    let mut state = Vec::new();
    for (schema, rid) in [
        (notes(), "n1"),
        (notes(), "n2"),
        (notes(), "n3"),
        (notes(), "n9"),
        (tasks(), "t1"),
    ] {
        let lookup = match store.get(schema, &id(rid)).await.expect("get") {
            Lookup::Hit(_) => "hit",
            Lookup::Tombstone => "tombstone",
            Lookup::Miss => "miss",
        };
        state.push(format!("{}:{rid} {lookup}", schema.entity));
    }
    for key in ["http:notes:a", "stats:n3"] {
        let value = store.get_value(key).await.expect("get_value");
        state.push(format!("v:{key} {}", if value.is_some() { "hit" } else { "miss" }));
    }
    let complete = !matches!(
        store.query(notes(), &by_tag("a")).await.expect("query"),
        QueryLookup::Incomplete(_)
    );
    state.push(format!("tag=a complete: {complete}"));
    state
}

/// A flush pattern means the same on Redis (with one bucket and with several) as on the
/// in-memory store: it matches logical keys (`redis_notes:r:n1`, `redis_notes:tomb:n9`,
/// `v:http:notes:a`; a record key is the one or the other by what it holds), so the same patterns remove the same records, tombstones and values and
/// answer the same counts; and once a record of an entity is flushed, its queries go to the
/// origin again, whose answer is then exactly what the store serves.
#[tokio::test]
async fn flush_patterns_remove_the_same_logical_keys_as_on_the_memory_store() {
    let server = RedisServer::start();
    let cases: &[(Option<&str>, u64)] = &[
        (Some("redis_notes:r:n1"), 1),
        (Some("redis_notes:r:\\n[12]"), 2),
        (Some("redis_notes:r:n3"), 1),
        (Some("*:tomb:*"), 1),
        (Some("redis_notes:tomb:*"), 1),
        (Some("redis_notes:t*"), 1),
        (Some("*n9"), 1),
        (Some("v:http:*"), 1),
        (Some("redis_notes:*"), 4),
        (Some("redis_note?:*"), 4),
        (Some("redis_*:r:*"), 4),
        (Some("*3"), 2),
        (Some("redis_tasks:*"), 1),
        (Some("{redis_notes}:*"), 0),
        (Some("redis_notes"), 0),
        (Some("tag:*"), 0),
        (Some("*"), 7),
        (None, 7),
    ];
    for &(pattern, removed) in cases {
        let memory = cache_core::MemoryStore::new();
        let mut stores: Vec<Box<dyn Store>> = vec![Box::new(memory)];
        for buckets in [1, 4] {
            let store = RedisStore::builder(server.url())
                .namespace(cache_redis::testing::unique_namespace())
                .buckets(buckets)
                .connect()
                .await
                .unwrap_or_else(|e| server.fail(&format!("connect: {e}")));
            stores.push(Box::new(store));
        }
        let mut states = Vec::new();
        for store in &stores {
            let store = &**store;
            let origin = [note("n1", "a", 1.0), note("n2", "a", 2.0), note("n3", "b", 3.0)];
            let QueryLookup::Incomplete(token) = store.query(notes(), &by_tag("a")).await.expect("query") else {
                panic!("a fresh store has no complete result");
            };
            let filled = store
                .complete_query(notes(), &by_tag("a"), token, &origin[..2])
                .await
                .expect("complete")
                .is_complete();
            assert!(filled);
            store.put(notes(), &origin[2..], WriteMode::Upsert).await.expect("put");
            store
                .remove(
                    notes(),
                    &[id("n9")],
                    RemoveMode::Tombstone(cache_core::store::Tombstone::new(LONG)),
                )
                .await
                .expect("tombstone");
            let mut task = note("t1", "x", 0.0);
            task.index = IndexEntries::default();
            store.put(tasks(), &[task], WriteMode::Upsert).await.expect("put");
            for key in ["http:notes:a", "stats:n3"] {
                store
                    .put_value(key, Bytes::from_static(b"1"), LONG, &[])
                    .await
                    .expect("put_value");
            }
            let complete = logical_state(store).await;
            assert!(complete.contains(&"tag=a complete: true".to_owned()), "{complete:?}");

            assert_eq!(store.flush(pattern).await.expect("flush"), removed, "{pattern:?}");
            let state = logical_state(store).await;
            if state.contains(&"tag=a complete: false".to_owned()) {
                // The origin moved on meanwhile: n1 left the result, n4 joined it.
                let QueryLookup::Incomplete(token) = store.query(notes(), &by_tag("a")).await.expect("query") else {
                    unreachable!("incomplete just now");
                };
                let origin = [note("n2", "a", 2.0), note("n4", "a", 4.0)];
                let filled = store
                    .complete_query(notes(), &by_tag("a"), token, &origin)
                    .await
                    .expect("complete")
                    .is_complete();
                assert!(filled, "{pattern:?}");
                assert_eq!(
                    page_ids(store.query(notes(), &by_tag("a")).await.expect("query")),
                    ["n2", "n4"],
                    "{pattern:?}: the origin's answer, nothing left over"
                );
            }
            states.push(state);
        }
        assert_eq!(states[0], states[1], "{pattern:?}: memory and one bucket");
        assert_eq!(states[0], states[2], "{pattern:?}: memory and four buckets");
    }
}

#[tokio::test]
async fn stats_read_info_and_count_the_namespace() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    let _: () = server.query(redis::cmd("SET").arg("foreign").arg("x"));
    upsert(&store, &[note("n1", "a", 1.0)]).await;
    let _ = store.get(notes(), &id("n1")).await.expect("get");
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.backend, "redis");
    let namespace_keys = keys_of(&server, "mc").len() as u64;
    assert_eq!(stats.total_keys, namespace_keys, "{stats:?}");
    assert!(stats.memory_used_bytes.is_some_and(|b| b > 0));
    assert!(stats.memory_used_human.is_some());
    assert!(stats.keyspace_hits.is_some_and(|h| h >= 1));
    assert!(stats.connected_clients.is_some_and(|c| c >= 1));
    assert_eq!(stats.evicted_keys, Some(0));
}

// ------------------------------------------------------------------ failures

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_fails_fast_and_recovers() {
    let mut server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .timeouts(Duration::from_millis(500), Duration::from_millis(500))
        .circuit_breaker(CircuitBreakerConfig {
            failure_threshold: 3,
            cool_down: Duration::from_millis(300),
        })
        .connect()
        .await
        .expect("connect");
    upsert(&store, &[note("n1", "a", 1.0)]).await;
    server.stop();

    for attempt in 1..=3 {
        let err = store.get(notes(), &id("n1")).await.expect_err("the server is down");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
        assert_eq!(store.circuit().consecutive_failures, attempt);
    }
    let open = store.circuit();
    assert_eq!(open.state, CircuitState::Open);
    assert_eq!((open.opened, open.rejected), (1, 0));
    let err = store.get(notes(), &id("n1")).await.expect_err("open");
    assert!(matches!(err, StoreError::Refused(_)), "refused without trying: {err}");
    assert_eq!(store.circuit().rejected, 1, "the 4th call never reached the network");
    assert!(matches!(store.ping().await, Err(StoreError::Refused(_))));

    tokio::task::block_in_place(|| server.start_again());
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the breaker never closed: {:?}",
            store.circuit()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.circuit().state, CircuitState::Closed);
    upsert(&store, &[note("n1", "a", 2.0)]).await;
    assert!(matches!(
        store.get(notes(), &id("n1")).await.expect("get"),
        Lookup::Hit(_)
    ));
}

/// A hand-written model (no derive), so that reads run through a real `Cache`.
#[derive(Debug, Clone, PartialEq)]
struct Note {
    id: RecordId,
    tag: String,
    rank: i64,
}

impl Cacheable for Note {
    type Sort = NoSort;

    fn schema() -> &'static EntitySchema {
        notes()
    }

    fn id(&self) -> &RecordId {
        &self.id
    }

    fn version(&self) -> Option<f64> {
        None
    }

    fn index_entries(&self) -> IndexEntries {
        IndexEntries {
            tags: vec![("tag".into(), self.tag.clone())],
            #[allow(clippy::cast_precision_loss)]
            scores: vec![("rank".into(), self.rank as f64)],
        }
    }

    fn to_cached(&self) -> Result<Vec<u8>, ModelError> {
        serde_json::to_vec(&serde_json::json!({"id": self.id, "tag": self.tag, "rank": self.rank})).map_err(|source| {
            ModelError::Serialize {
                entity: "redis_notes",
                source,
            }
        })
    }

    fn from_cached(bytes: &[u8]) -> Result<Self, ModelError> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|source| ModelError::Cached {
            entity: "redis_notes",
            source,
        })?;
        Ok(Self {
            id: id(v["id"].as_str().unwrap_or("?")),
            tag: v["tag"].as_str().unwrap_or_default().to_owned(),
            rank: v["rank"].as_i64().unwrap_or_default(),
        })
    }

    fn to_source(&self) -> Result<SourceRecord, ModelError> {
        let mut fields = serde_json::Map::new();
        fields.insert("tag".into(), self.tag.clone().into());
        fields.insert("rank".into(), self.rank.into());
        Ok(SourceRecord {
            id: self.id.clone(),
            fields,
        })
    }

    fn from_source(record: SourceRecord) -> Result<Self, ModelError> {
        Ok(Self {
            id: record.id,
            tag: record.fields["tag"].as_str().unwrap_or_default().to_owned(),
            rank: record.fields["rank"].as_i64().unwrap_or_default(),
        })
    }
}

/// Reads run through a `Cache` while the server is killed and started again on the same
/// port: every read answers (from the origin while Redis is down), and reads are cache hits
/// again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_keeps_answering_through_a_restart() {
    let mut server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .timeouts(Duration::from_millis(300), Duration::from_millis(300))
        .circuit_breaker(CircuitBreakerConfig {
            failure_threshold: 2,
            cool_down: Duration::from_millis(100),
        })
        .connect()
        .await
        .expect("connect");
    let origin = MemoryOrigin::new();
    let records: Vec<Note> = (0..20)
        .map(|i| Note {
            id: id(&format!("n{i}")),
            tag: "t".to_owned(),
            rank: i,
        })
        .collect();
    for record in &records {
        origin.put(record).expect("origin put");
    }
    let cache = Cache::builder(store.clone(), origin.clone())
        .register::<Note>()
        .build()
        .expect("cache");
    for record in &records {
        assert_eq!(cache.get::<Note>(&record.id).await.expect("warm"), Some(record.clone()));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = tokio::spawn({
        let (cache, records, stop, reads) = (cache.clone(), records.clone(), stop.clone(), reads.clone());
        async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let record = &records[i % records.len()];
                let read = cache.get::<Note>(&record.id).await;
                assert_eq!(read.expect("no error surfaces"), Some(record.clone()));
                reads.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::task::yield_now().await;
            }
        }
    });
    let wait_for_reads = async |n: u64| {
        let target = reads.load(Ordering::Relaxed) + n;
        let deadline = Instant::now() + Duration::from_secs(20);
        while reads.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "reads stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };

    wait_for_reads(50).await;
    let before = cache.stats().total();
    tokio::task::block_in_place(|| server.stop());
    wait_for_reads(200).await;
    let down = cache.stats().total();
    assert!(
        down.origin_calls > before.origin_calls,
        "answered from the origin while down"
    );
    assert!(store.circuit().opened >= 1, "the breaker opened: {:?}", store.circuit());

    tokio::task::block_in_place(|| server.start_again());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mark = cache.stats().total();
        wait_for_reads(100).await;
        let now = cache.stats().total();
        if now.origin_calls == mark.origin_calls && now.hits >= mark.hits + 100 {
            break;
        }
        assert!(Instant::now() < deadline, "never back to cache hits: {now:?}");
    }
    stop.store(true, Ordering::Relaxed);
    reader.await.expect("the reader saw no error");
    assert_eq!(store.circuit().state, CircuitState::Closed);
}

// ------------------------------------------------------------------ connecting

#[tokio::test]
async fn acl_users_and_valkey_urls_connect() {
    let users = concat!(
        "--user alice on >s3cret ~* &* +@all ",
        // The least a store needs (the docs list it): its namespace's keys and these commands.
        "--user cache on >c4che ~mc:* resetchannels -@all +@read +@write +@scripting +info +time +ping",
    );
    let server = RedisServer::start_with_args(&users.split(' ').collect::<Vec<_>>());
    let port = server.port();
    let store = RedisStore::builder(format!("valkey://alice:s3cret@127.0.0.1:{port}"))
        .connect()
        .await
        .expect("ACL user over a valkey:// url");
    upsert(&store, &[note("n1", "a", 1.0)]).await;
    let whoami: String = redis::cmd("ACL")
        .arg("WHOAMI")
        .query_async(&mut store.connection())
        .await
        .expect("whoami");
    assert_eq!(whoami, "alice");
    let least = RedisStore::builder(format!("redis://cache:c4che@127.0.0.1:{port}"))
        .connect()
        .await
        .expect("connect with the documented ACL");
    upsert(&least, &[note("n1", "a", 1.0)]).await;
    complete(&least, &by_tag("a"), &[note("n1", "a", 1.0)]).await;
    assert_eq!(
        page_ids(least.query(notes(), &by_tag("a")).await.expect("query")),
        ["n1"]
    );
    least
        .put_value("v", Bytes::from_static(b"1"), LONG, &["t".to_owned()])
        .await
        .expect("put_value");
    assert_eq!(least.purge_tags(&["t".to_owned()]).await.expect("purge"), 1);
    least.stats().await.expect("stats");
    assert!(least.flush(None).await.expect("flush") > 0);
    let wrong = RedisStore::builder(format!("redis://alice:wrong@127.0.0.1:{port}"))
        .connect()
        .await;
    assert!(matches!(wrong, Err(ConnectError::Connect(_))), "{wrong:?}");
    let bad = RedisStore::builder(server.url()).namespace("a b").connect().await;
    assert!(matches!(bad, Err(ConnectError::Namespace(_))), "{bad:?}");
    let none = RedisStore::builder(server.url()).buckets(0).connect().await;
    assert!(matches!(none, Err(ConnectError::Config(_))), "{none:?}");
}

#[tokio::test]
async fn the_raw_connection_reads_the_same_keys() {
    let server = RedisServer::start();
    let store = store_on(&server).await;
    store
        .put_value("hello", Bytes::from_static(b"world"), LONG, &[])
        .await
        .expect("put_value");
    let raw: Option<Vec<u8>> = redis::cmd("GET")
        .arg(store.value_key("hello"))
        .query_async(&mut store.connection())
        .await
        .expect("raw GET");
    assert_eq!(raw.as_deref(), Some(&b"world"[..]));
}

// ------------------------------------------------------------------ cluster

#[tokio::test]
async fn cluster_buckets_spread_an_entity_over_slots_and_queries_merge() {
    let cluster = RedisCluster::start();
    let store = RedisStore::cluster(cluster.urls())
        .buckets(8)
        .connect()
        .await
        .unwrap_or_else(|e| cluster.fail(&format!("connect: {e}")));
    let layout = store.key_layout(notes());
    let node = &cluster.nodes()[0];
    let slots: std::collections::HashSet<u16> = layout
        .buckets()
        .iter()
        .map(|b| node.query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(b.seq())))
        .collect();
    assert_eq!(slots.len(), 8, "one slot per bucket");

    let records: Vec<RecordWrite> = (0..40)
        .map(|i| note(&format!("n{i:02}"), "t", f64::from(i % 7)))
        .collect();
    let mut query = by_tag("t");
    query.sort = Some(Sort {
        field: "rank",
        order: Order::Desc,
    });
    complete(&store, &query, &records).await;
    query.offset = 3;
    query.limit = Some(4);
    // rank desc, ties by id desc: 6 (n34 n27 n20 n13 n06), 5 (n33 ...)
    assert_eq!(
        page_ids(store.query(notes(), &query).await.expect("query")),
        ["n13", "n06", "n33", "n26"]
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.backend, "redis-cluster");
    assert!(stats.total_keys >= 40 + 8, "{stats:?}");
    assert_eq!(
        store.flush(None).await.expect("flush"),
        40,
        "the records; index keys go uncounted"
    );
    assert_eq!(store.stats().await.expect("stats").total_keys, 0);
}

/// `rediss://` against a server with a certificate from a private CA (made here with
/// `openssl`), trusted through the builder.
#[cfg(feature = "tls")]
#[tokio::test]
async fn rediss_urls_connect_over_tls() {
    use std::process::Command;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("this test makes its certificates with the openssl CLI (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    std::fs::write(path("san.ext"), "subjectAltName=IP:127.0.0.1\n").expect("write ext");
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=model-cache test CA",
        "-keyout",
        &path("ca.key"),
        "-out",
        &path("ca.crt"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &path("server.key"),
        "-out",
        &path("server.csr"),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-days",
        "1",
        "-in",
        &path("server.csr"),
        "-CA",
        &path("ca.crt"),
        "-CAkey",
        &path("ca.key"),
        "-CAcreateserial",
        "-extfile",
        &path("san.ext"),
        "-out",
        &path("server.crt"),
    ]);
    let server = RedisServer::start_with_tls(&[
        "--tls-cert-file",
        &path("server.crt"),
        "--tls-key-file",
        &path("server.key"),
        "--tls-ca-cert-file",
        &path("ca.crt"),
        "--tls-auth-clients",
        "no",
    ]);
    let tls_port = server.tls_port().expect("a TLS port");
    let ca = std::fs::read(path("ca.crt")).expect("read CA");
    let store = RedisStore::builder(format!("rediss://127.0.0.1:{tls_port}"))
        .tls_root_certificate(ca)
        .connect()
        .await
        .unwrap_or_else(|e| server.fail(&format!("TLS connect: {e}")));
    upsert(&store, &[note("n1", "a", 1.0)]).await;
    assert!(matches!(
        store.get(notes(), &id("n1")).await.expect("get"),
        Lookup::Hit(_)
    ));
    let untrusted = RedisStore::builder(format!("rediss://127.0.0.1:{tls_port}"))
        .connect()
        .await;
    assert!(untrusted.is_err(), "a certificate from an unknown CA is refused");
}

/// Two instances (separate connections) racing to raise one watermark: the highest value
/// stands, and every claim refused saw a higher one (webhook ordering across instances).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_claims_race_across_connections() {
    let server = RedisServer::start();
    let stores = [Arc::new(store_on(&server).await), Arc::new(store_on(&server).await)];
    let values: Vec<i64> = (0..200).map(|i| (i * 7919) % 200).collect();
    let claims = futures::future::join_all(values.iter().enumerate().map(|(i, &value)| {
        let store = Arc::clone(&stores[i % 2]);
        tokio::spawn(async move { store.advance_watermark("webhook:race", value, LONG).await })
    }))
    .await;
    let max = values.iter().copied().max().expect("values");
    for (value, claim) in values.iter().zip(claims) {
        let claimed = claim.expect("task").expect("advance_watermark");
        assert!(claimed || *value < max, "the highest value is never refused");
    }
    assert_eq!(
        stores[0].get_value("webhook:race").await.expect("get_value"),
        Some(Bytes::from(max.to_string()))
    );
    assert!(
        !stores[1]
            .advance_watermark("webhook:race", max - 1, LONG)
            .await
            .expect("advance")
    );
    assert!(
        stores[1]
            .advance_watermark("webhook:race", max, LONG)
            .await
            .expect("advance")
    );
}
