//! The in-memory store: the conformance suite, and what needs its injected clock or its key
//! layout.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::time::Duration;

use bytes::Bytes;
use cache_core::{
    MemoryStore, RecordId,
    clock::ManualClock,
    query::IndexQuery,
    schema::IndexEntries,
    store::{Lookup, QueryLookup, RecordWrite, RemoveMode, Store, StoreError, WriteMode, WriteOutcome},
    testing::conformance::{projects, users},
};

// Every check of the suite, one test each, on a fresh store.
mod conformance {
    cache_core::store_conformance_tests!(async { cache_core::MemoryStore::new() });
}

const SEC: Duration = Duration::from_secs(1);

fn id(s: &str) -> RecordId {
    RecordId::new(s).unwrap()
}

fn record(rid: &str, event: &str, ttl: Duration) -> RecordWrite {
    RecordWrite {
        id: id(rid),
        body: Bytes::from(format!(r#"{{"id":"{rid}","event":"{event}"}}"#)),
        index: IndexEntries {
            tags: vec![("event".into(), event.into())],
            scores: vec![("points".into(), 1.0)],
        },
        version: None,
        at: None,
        ttl,
    }
}

fn on_clock() -> (MemoryStore, ManualClock) {
    let clock = ManualClock::new();
    (MemoryStore::builder().clock(clock.clone()).build(), clock)
}

fn by_event(event: &str) -> IndexQuery {
    IndexQuery::all().filter("event", event.to_owned())
}

async fn token(store: &MemoryStore, q: &IndexQuery) -> cache_core::store::FillToken {
    match store.query(projects(), q).await.unwrap() {
        QueryLookup::Incomplete(t) => t,
        QueryLookup::Complete { .. } => panic!("expected incomplete"),
    }
}

#[tokio::test]
async fn records_tombstones_values_and_leases_expire_on_the_injected_clock() {
    let (store, clock) = on_clock();
    let p = projects();
    store
        .put(p, &[record("p1", "e1", 10 * SEC)], WriteMode::Upsert)
        .await
        .unwrap();
    store
        .remove(
            p,
            &[id("p2")],
            RemoveMode::Tombstone(cache_core::store::Tombstone::new(20 * SEC)),
        )
        .await
        .unwrap();
    store
        .put_value("k", Bytes::from_static(b"v"), 30 * SEC, &[])
        .await
        .unwrap();
    let lease = store.lease(p, &[id("p3")], 5 * SEC).await.unwrap();

    clock.advance(6 * SEC);
    let late = store
        .put(p, &[record("p3", "e1", 10 * SEC)], WriteMode::Fill(lease))
        .await
        .unwrap();
    assert_eq!(late, vec![WriteOutcome::LeaseLost], "an expired lease no longer holds");
    assert!(matches!(store.get(p, &id("p1")).await.unwrap(), Lookup::Hit(_)));

    clock.advance(5 * SEC);
    assert_eq!(store.get(p, &id("p1")).await.unwrap(), Lookup::Miss, "after 11s of 10s");
    assert_eq!(store.get(p, &id("p2")).await.unwrap(), Lookup::Tombstone);
    assert!(store.get_value("k").await.unwrap().is_some());

    clock.advance(10 * SEC);
    assert_eq!(store.get(p, &id("p2")).await.unwrap(), Lookup::Miss, "after 21s of 20s");
    assert!(store.get_value("k").await.unwrap().is_some());
    clock.advance(10 * SEC);
    assert_eq!(store.get_value("k").await.unwrap(), None, "after 31s of 30s");
    assert_eq!(
        store.stats().await.unwrap().total_keys,
        0,
        "expired entries are not counted"
    );
}

#[tokio::test]
async fn an_expired_record_makes_its_complete_result_incomplete_until_refilled() {
    let (store, clock) = on_clock();
    let p = projects();
    let q = by_event("e1");
    let t = token(&store, &q).await;
    let records = [record("p1", "e1", 100 * SEC), record("p2", "e1", 10 * SEC)];
    assert!(store.complete_query(p, &q, t, &records).await.unwrap().is_complete());
    assert!(matches!(store.query(p, &q).await.unwrap(), QueryLookup::Complete { page, .. } if page.len() == 2));
    clock.advance(11 * SEC);
    let t = token(&store, &q).await;
    let refill = [record("p1", "e1", 100 * SEC), record("p2", "e1", 100 * SEC)];
    assert!(store.complete_query(p, &q, t, &refill).await.unwrap().is_complete());
    assert!(matches!(store.query(p, &q).await.unwrap(), QueryLookup::Complete { page, .. } if page.len() == 2));
}

#[tokio::test]
async fn eviction_under_the_budget_never_gives_a_partial_answer() {
    let store = MemoryStore::builder().max_capacity_bytes(8 * 1024).build();
    let p = projects();
    let q = IndexQuery::all();
    let records: Vec<RecordWrite> = (0..400)
        .map(|i| record(&format!("p{i:03}"), "e1", 3600 * SEC))
        .collect();
    let t = token(&store, &q).await;
    assert!(store.complete_query(p, &q, t, &records).await.unwrap().is_complete());
    let stats = store.stats().await.unwrap();
    assert!(stats.memory_used_bytes.unwrap() <= 8 * 1024, "{stats:?}");
    let mut cached = 0;
    for r in &records {
        if matches!(store.get(p, &r.id).await.unwrap(), Lookup::Hit(_)) {
            cached += 1;
        }
    }
    assert!(cached < records.len(), "the budget evicted some records");
    match store.query(p, &q).await.unwrap() {
        QueryLookup::Incomplete(_) => {}
        QueryLookup::Complete { page, .. } => panic!("a complete answer of {} of 400 records", page.len()),
    }
}

#[tokio::test]
async fn flush_patterns_match_the_logical_keys() {
    let store = MemoryStore::new();
    let (p, u) = (projects(), users());
    let q = by_event("e1");
    let t = token(&store, &q).await;
    store
        .complete_query(
            p,
            &q,
            t,
            &[record("p1", "e1", 3600 * SEC), record("p2", "e1", 3600 * SEC)],
        )
        .await
        .unwrap()
        .is_complete();
    store
        .remove(
            p,
            &[id("p3")],
            RemoveMode::Tombstone(cache_core::store::Tombstone::new(3600 * SEC)),
        )
        .await
        .unwrap();
    store
        .put(u, &[record("u1", "x", 3600 * SEC)], WriteMode::Upsert)
        .await
        .unwrap();
    store
        .put_value("resp:/projects", Bytes::from_static(b"[]"), 3600 * SEC, &["t".into()])
        .await
        .unwrap();

    assert_eq!(store.flush(Some("conformance_projects:r:p1")).await.unwrap(), 1);
    assert_eq!(store.get(p, &id("p1")).await.unwrap(), Lookup::Miss);
    assert!(
        matches!(store.query(p, &q).await.unwrap(), QueryLookup::Incomplete(_)),
        "flushing a record drops its entity's markers"
    );
    assert_eq!(store.flush(Some("*:tomb:*")).await.unwrap(), 1);
    assert_eq!(store.get(p, &id("p3")).await.unwrap(), Lookup::Miss);
    assert_eq!(store.flush(Some("v:resp:*")).await.unwrap(), 1);
    assert_eq!(store.get_value("resp:/projects").await.unwrap(), None);
    assert!(matches!(store.get(p, &id("p2")).await.unwrap(), Lookup::Hit(_)));
    assert!(matches!(store.get(u, &id("u1")).await.unwrap(), Lookup::Hit(_)));
    assert_eq!(store.flush(Some("conformance_*:r:*")).await.unwrap(), 2);
}

#[tokio::test]
async fn flush_refuses_the_patterns_redis_refuses() {
    let store = MemoryStore::new();
    store
        .put(projects(), &[record("p1", "e1", 3600 * SEC)], WriteMode::Upsert)
        .await
        .unwrap();
    for bad in ["", "conformance_projects:r:[p", "a b", "a\n", "p1\\"] {
        let err = store.flush(Some(bad)).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)), "{bad:?}: {err:?}");
    }
    assert!(matches!(
        store.get(projects(), &id("p1")).await.unwrap(),
        Lookup::Hit(_)
    ));
    assert_eq!(store.flush(Some("conformance_projects:r:\\p1")).await.unwrap(), 1);
}

#[tokio::test]
async fn flush_pattern_matching_takes_linear_time() {
    // A recursive glob backtracks through every way of splitting the key between the stars:
    // this pattern against these keys would not finish in the lifetime of the test.
    let pattern = format!("{}b", "*a".repeat(16));
    let key = "a".repeat(120);
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let removed = runtime.block_on(async {
            let store = MemoryStore::new();
            store
                .put_value(&key, Bytes::from_static(b"v"), 3600 * SEC, &[])
                .await
                .unwrap();
            store.flush(Some(&pattern)).await.unwrap()
        });
        let _ = done.send(removed);
    });
    let removed = finished
        .recv_timeout(Duration::from_secs(30))
        .expect("the flush finished (the glob does not backtrack exponentially)");
    assert_eq!(removed, 0);
}

#[tokio::test]
async fn stats_report_the_memory_backend() {
    let store = MemoryStore::new();
    store
        .put(projects(), &[record("p1", "e1", 3600 * SEC)], WriteMode::Upsert)
        .await
        .unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.backend, "memory");
    assert_eq!(stats.total_keys, 1);
    assert!(stats.memory_used_bytes.unwrap() > 0);
    assert_eq!(
        stats.memory_used_human,
        Some(cache_core::store::human_bytes(stats.memory_used_bytes.unwrap()))
    );
    assert_eq!(stats.keyspace_hits, None);
}

const BUDGET: u64 = 1024 * 1024;

fn by_email(email: &str) -> IndexQuery {
    IndexQuery::all().filter("email", email.to_owned())
}

/// What the store says it holds, after its pending work.
async fn used(store: &MemoryStore) -> (u64, u64) {
    let stats = store.stats().await.unwrap();
    (stats.total_keys, stats.memory_used_bytes.unwrap())
}

#[tokio::test]
async fn distinct_index_lookups_stay_within_the_budget_and_are_reported() {
    let store = MemoryStore::builder().max_capacity_bytes(BUDGET).build();
    let u = users();
    let lookups = 20_000;
    for i in 0..lookups {
        let q = by_email(&format!("nobody{i}@example.com"));
        let t = match store.query(u, &q).await.unwrap() {
            QueryLookup::Incomplete(t) => t,
            QueryLookup::Complete { .. } => panic!("{i}: complete before it was filled"),
        };
        assert!(store.complete_query(u, &q, t, &[]).await.unwrap().is_complete());
    }
    let (keys, bytes) = used(&store).await;
    assert!(bytes <= BUDGET, "{bytes} bytes in a budget of {BUDGET}");
    assert!(
        keys > 0 && keys < lookups,
        "the markers are counted and bounded: {keys} keys"
    );
    // A sixteenth of the budget, at what each marker weighs (well above 100 bytes).
    assert!(
        bytes >= BUDGET / 16 - 1024,
        "the markers' share is used and reported: {bytes}"
    );
    // The oldest went first; the newest answers from the store.
    let newest = by_email(&format!("nobody{}@example.com", lookups - 1));
    assert!(matches!(store.query(u, &newest).await.unwrap(), QueryLookup::Complete { page, .. } if page.is_empty()));
    let oldest = by_email("nobody0@example.com");
    assert!(matches!(
        store.query(u, &oldest).await.unwrap(),
        QueryLookup::Incomplete(_)
    ));
}

#[tokio::test]
async fn an_empty_result_lives_the_negative_ttl_and_a_full_one_its_records_ttl() {
    let (store, clock) = on_clock();
    let p = projects();
    let (empty, full) = (by_event("none"), by_event("e1"));
    let t = token(&store, &empty).await;
    assert!(store.complete_query(p, &empty, t, &[]).await.unwrap().is_complete());
    let t = token(&store, &full).await;
    let records = [record("p1", "e1", 3600 * SEC)];
    assert!(store.complete_query(p, &full, t, &records).await.unwrap().is_complete());

    clock.advance(p.negative_ttl - SEC);
    assert!(matches!(
        store.query(p, &empty).await.unwrap(),
        QueryLookup::Complete { .. }
    ));
    clock.advance(2 * SEC);
    assert!(
        matches!(store.query(p, &empty).await.unwrap(), QueryLookup::Incomplete(_)),
        "an empty result is a negative answer: it lives {:?}",
        p.negative_ttl
    );
    assert!(matches!(store.query(p, &full).await.unwrap(), QueryLookup::Complete { page, .. } if page.len() == 1));
    assert_eq!(used(&store).await.0, 2, "the record and its result's marker");
}

#[tokio::test]
async fn fill_tombstones_of_random_ids_stay_within_the_budget() {
    let store = MemoryStore::builder().max_capacity_bytes(BUDGET).build();
    let p = projects();
    for i in 0..20_000 {
        let ids = [id(&format!("rec{i:014}"))];
        let lease = store.lease(p, &ids, 30 * SEC).await.unwrap();
        let mode = RemoveMode::FillTombstone { lease, ttl: 300 * SEC };
        store.remove(p, &ids, mode).await.unwrap();
    }
    let (keys, bytes) = used(&store).await;
    assert!(bytes <= BUDGET, "{bytes} bytes in a budget of {BUDGET}");
    // Each tombstone weighs what it costs in moka (several hundred bytes), not its id alone.
    assert!(keys > 0 && keys < 20_000 / 4, "{keys} tombstones in {BUDGET} bytes");
}

#[tokio::test]
async fn leases_past_their_share_are_not_taken_and_their_fills_are_refused() {
    let store = MemoryStore::builder().max_capacity_bytes(64 * 1024).build();
    let p = projects();
    // Fills that never come back (an origin that hangs): their leases pile up.
    for i in 0..1_000 {
        store.lease(p, &[id(&format!("h{i}"))], 30 * SEC).await.unwrap();
    }
    let (_, bytes) = used(&store).await;
    assert!(bytes <= 64 * 1024, "{bytes}");
    let lease = store.lease(p, &[id("p1")], 30 * SEC).await.unwrap();
    let outcome = store
        .put(p, &[record("p1", "e1", 3600 * SEC)], WriteMode::Fill(lease))
        .await
        .unwrap();
    assert_eq!(
        outcome,
        vec![WriteOutcome::LeaseLost],
        "no room for its lease: not stored"
    );
    assert_eq!(store.get(p, &id("p1")).await.unwrap(), Lookup::Miss);
}

#[tokio::test]
async fn evicting_a_record_drops_only_the_results_that_contained_it() {
    let store = MemoryStore::builder().max_capacity_bytes(64 * 1024).build();
    let p = projects();
    let (other, evicted) = (by_event("e2"), by_event("e1"));
    let t = token(&store, &other).await;
    let kept = [record("k1", "e2", 3600 * SEC)];
    assert!(store.complete_query(p, &other, t, &kept).await.unwrap().is_complete());
    // Fill "e1" with more than the budget holds: its own records evict each other.
    let big: Vec<RecordWrite> = (0..200)
        .map(|i| {
            let mut r = record(&format!("p{i:03}"), "e1", 3600 * SEC);
            r.body = Bytes::from(vec![b' '; 512]);
            r
        })
        .collect();
    let t = token(&store, &evicted).await;
    assert!(store.complete_query(p, &evicted, t, &big).await.unwrap().is_complete());
    let _ = used(&store).await;
    assert!(matches!(
        store.query(p, &evicted).await.unwrap(),
        QueryLookup::Incomplete(_)
    ));
    match store.get(p, &id("k1")).await.unwrap() {
        // Kept: its result still answers.
        Lookup::Hit(_) => assert!(
            matches!(store.query(p, &other).await.unwrap(), QueryLookup::Complete { page, .. } if page.len() == 1)
        ),
        // Evicted too: its result is incomplete, never empty.
        _ => assert!(matches!(
            store.query(p, &other).await.unwrap(),
            QueryLookup::Incomplete(_)
        )),
    }
}

#[tokio::test]
async fn purge_marks_of_distinct_misses_stay_within_the_budget() {
    let store = MemoryStore::builder().max_capacity_bytes(BUDGET).build();
    for i in 0..50_000 {
        store
            .purge_tags(&[format!("record:projects:rec{i:014}")])
            .await
            .unwrap();
    }
    let (_, bytes) = used(&store).await;
    assert!(bytes <= BUDGET, "{bytes} bytes in a budget of {BUDGET}");
    assert!(
        bytes >= BUDGET / 16 - 1024,
        "the marks' share is used and reported: {bytes}"
    );
    // A value computed before the forgotten marks is refused, one computed now is stored.
    let lookup = store.get_computed("k").await.unwrap();
    for i in 50_000..60_000 {
        store
            .purge_tags(&[format!("record:projects:rec{i:014}")])
            .await
            .unwrap();
    }
    let write = |stamp| cache_core::store::ComputedWrite {
        value: Bytes::from_static(b"v"),
        ttl: 60 * SEC,
        tags: vec!["unrelated".to_owned()],
        stamp,
        lock: None,
    };
    assert!(!store.put_computed("k", &write(lookup.stamp)).await.unwrap());
    let fresh = store.get_computed("k").await.unwrap();
    assert!(store.put_computed("k", &write(fresh.stamp)).await.unwrap());
}

#[tokio::test]
async fn a_miss_is_remembered_for_the_negative_ttl_not_the_tombstone_ttl() {
    use cache_core::{
        Cache, Cacheable,
        testing::{MemoryOrigin, conformance::RaceProject},
    };
    let (store, clock) = on_clock();
    let origin = MemoryOrigin::new();
    let cache = Cache::builder(store, origin.clone()).ttl_jitter(0.0).build().unwrap();
    let schema = RaceProject::schema();
    assert!(schema.negative_ttl < schema.tombstone_ttl);
    let rid = id("recLater1");
    assert_eq!(cache.get::<RaceProject>(&rid).await.unwrap(), None);
    // Created at the source without telling the cache.
    let created = RaceProject {
        id: rid.clone(),
        name: "late".into(),
        event: "recE1".into(),
        version: 1,
    };
    origin.put(&created).unwrap();
    clock.advance(schema.negative_ttl - SEC);
    assert_eq!(
        cache.get::<RaceProject>(&rid).await.unwrap(),
        None,
        "still remembered as missing"
    );
    clock.advance(2 * SEC);
    assert_eq!(cache.get::<RaceProject>(&rid).await.unwrap(), Some(created));
}

#[tokio::test]
async fn a_records_weight_counts_its_decoded_copy_and_a_new_write_drops_the_copy() {
    let p = projects();
    let weighed = |body_len: usize| async move {
        let store = MemoryStore::new();
        let mut write = record("p1", "e1", 3600 * SEC);
        write.body = Bytes::from(vec![b'x'; body_len]);
        store.put(p, &[write], WriteMode::Upsert).await.unwrap();
        used(&store).await.1
    };
    // Each byte more of the body weighs twice: once as bytes, once in the decoded copy
    // (estimated at the bytes' length again, whether or not a read kept one yet).
    let (small, large) = (weighed(1_000).await, weighed(11_000).await);
    assert_eq!(large - small, 2 * 10_000, "{small} then {large}");

    let store = MemoryStore::new();
    store
        .put(p, &[record("p1", "e1", 3600 * SEC)], WriteMode::Upsert)
        .await
        .unwrap();
    let (lookup, copy) = store.get_with_copy(p, &id("p1")).await.unwrap();
    assert!(matches!(lookup, Lookup::Hit(_)));
    copy.unwrap().keep(String::from("decoded p1"));
    let (_, copy) = store.get_with_copy(p, &id("p1")).await.unwrap();
    assert_eq!(copy.unwrap().get::<String>().map(String::as_str), Some("decoded p1"));
    assert!(
        store
            .get_with_copy(p, &id("p1"))
            .await
            .unwrap()
            .1
            .unwrap()
            .get::<u32>()
            .is_none(),
        "a copy answers only its own type"
    );
    store
        .put(p, &[record("p1", "e2", 3600 * SEC)], WriteMode::Upsert)
        .await
        .unwrap();
    let (_, copy) = store.get_with_copy(p, &id("p1")).await.unwrap();
    assert!(
        copy.unwrap().get::<String>().is_none(),
        "a new write starts without a copy"
    );
    store.remove(p, &[id("p1")], RemoveMode::Invalidate).await.unwrap();
    assert!(matches!(
        store.get_with_copy(p, &id("p1")).await.unwrap(),
        (Lookup::Miss, None)
    ));
}
