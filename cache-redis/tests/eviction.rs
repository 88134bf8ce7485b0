//! A server that evicts keys under memory pressure (`maxmemory-policy allkeys-lru` and the
//! like) deletes whole index keys while the completeness markers relying on them may survive.
//! The store must then answer "incomplete" and refill from the origin: eviction may cost hits,
//! never a wrong answer.
//!
//! Most tests delete the keys themselves with `DEL`, which is exactly what eviction does to the
//! key space, so that they are deterministic; the last one lets a small server evict. Every
//! answer is compared with the origin's, read through a cache that is turned off.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use cache_core::{
    Cache, Cacheable, MemoryStore, Query, RecordId, UpsertOutcome,
    store::{QueryLookup, Store},
    testing::MemoryOrigin,
};
use cache_redis::{BucketKeys, RedisStore, testing::RedisServer};

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "eviction_items")]
struct Item {
    #[cache(id)]
    id: RecordId,
    #[indexed]
    tag: String,
    #[indexed]
    group: String,
    #[sortable]
    rank: i64,
    /// Padding, so that a small server fills up with few records.
    note: String,
}

fn item(id: &str, tag: &str, group: &str, rank: i64) -> Item {
    Item {
        id: RecordId::new(id).expect("test ids are valid"),
        tag: tag.to_owned(),
        group: group.to_owned(),
        rank,
        note: String::new(),
    }
}

fn ids(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

/// A server, a store and a cache on it, the origin, and `truth`: the same origin read through
/// a cache that is turned off.
struct Fixture {
    server: RedisServer,
    store: RedisStore,
    origin: MemoryOrigin,
    cache: Cache,
    truth: Cache,
}

impl Fixture {
    async fn start(args: &[&str], buckets: u32) -> Self {
        let server = RedisServer::start_with_args(args);
        let store = RedisStore::builder(server.url())
            .buckets(buckets)
            .connect()
            .await
            .unwrap_or_else(|e| server.fail(&format!("connect: {e}")));
        let origin = MemoryOrigin::new();
        let cache = Cache::builder(store.clone(), origin.clone())
            .register::<Item>()
            .build()
            .expect("cache");
        let truth = Cache::builder(MemoryStore::new(), origin.clone())
            .enabled(false)
            .register::<Item>()
            .build()
            .expect("truth");
        Self {
            server,
            store,
            origin,
            cache,
            truth,
        }
    }

    /// Writes `items` to the origin, then upserts them into the cache (as an application does).
    async fn put(&self, items: &[Item]) {
        for item in items {
            self.origin.put(item).expect("origin put");
            let outcome = self.cache.upsert(item).await.expect("upsert");
            assert_eq!(outcome, UpsertOutcome::Stored, "{:?}", item.id);
        }
    }

    /// Answers `query` through the cache, checking that the answer is the origin's.
    async fn check(&self, query: Query<Item>) -> Vec<Item> {
        let answer = self.cache.query(query.clone()).await.expect("cache query");
        let truth = self.truth.query(query.clone()).await.expect("origin query");
        assert_eq!(ids(&answer), ids(&truth), "{query:?}");
        assert_eq!(answer, truth, "{query:?}");
        answer
    }

    /// Whether the store answers `query` by itself.
    async fn is_complete(&self, query: &Query<Item>) -> bool {
        let lookup = self
            .store
            .query(Item::schema(), query.as_index_query())
            .await
            .expect("store query");
        !matches!(lookup, QueryLookup::Incomplete(_))
    }

    fn keys(&self, bucket: u32) -> BucketKeys {
        self.store.key_layout(Item::schema()).bucket(bucket)
    }

    /// Deletes `key` as eviction would.
    fn evict(&self, key: &str) {
        let removed: u64 = self.server.query(redis::cmd("DEL").arg(key));
        assert_eq!(removed, 1, "{key} existed");
    }
}

#[tokio::test]
async fn an_evicted_tag_set_is_refilled_not_read_as_empty() {
    let f = Fixture::start(&[], 1).await;
    f.put(&[
        item("i1", "a", "g1", 1),
        item("i2", "a", "g2", 2),
        item("i3", "b", "g1", 3),
    ])
    .await;
    let by_a = Item::by_tag("a");
    f.check(by_a.clone()).await;
    assert!(f.is_complete(&by_a).await);

    f.evict(&f.keys(0).tag("tag", "a"));
    assert!(!f.is_complete(&by_a).await, "a missing set is not an empty one");
    f.put(&[item("i4", "a", "g1", 4)]).await;
    assert!(
        !f.is_complete(&by_a).await,
        "a set recreated by a write holds only what was written since"
    );
    assert_eq!(ids(&f.check(by_a.clone()).await), ["i1", "i2", "i4"]);
    assert!(f.is_complete(&by_a).await, "refilled");
    assert_eq!(ids(&f.check(by_a).await), ["i1", "i2", "i4"]);
}

#[tokio::test]
async fn an_evicted_sort_zset_is_refilled_not_read_as_empty() {
    let f = Fixture::start(&[], 1).await;
    f.put(&[
        item("i1", "a", "g1", 3),
        item("i2", "a", "g1", 1),
        item("i3", "a", "g2", 2),
        item("i4", "b", "g1", 0),
    ])
    .await;
    let sorted = Item::by_tag("a").desc(ItemSort::Rank).limit(2);
    let all_sorted = Query::<Item>::all().asc(ItemSort::Rank);
    let unsorted = Item::by_tag("a");
    for query in [&sorted, &all_sorted, &unsorted] {
        f.check(query.clone()).await;
        assert!(f.is_complete(query).await);
    }

    f.evict(&f.keys(0).sort("rank"));
    assert!(!f.is_complete(&sorted).await, "sorted by a missing zset");
    assert!(!f.is_complete(&all_sorted).await, "sorted by a missing zset");
    assert!(f.is_complete(&unsorted).await, "an unsorted query does not read it");
    f.put(&[item("i5", "a", "g1", 10)]).await;
    assert!(
        !f.is_complete(&sorted).await,
        "recreated by a write, it lacks the others"
    );
    assert!(!f.is_complete(&all_sorted).await);
    assert_eq!(ids(&f.check(sorted.clone()).await), ["i5", "i1"]);
    assert_eq!(ids(&f.check(all_sorted.clone()).await), ["i4", "i2", "i3", "i1", "i5"]);
    assert_eq!(ids(&f.check(unsorted.clone()).await), ["i1", "i2", "i3", "i5"]);
    for query in [&sorted, &all_sorted, &unsorted] {
        assert!(f.is_complete(query).await, "{query:?} refilled");
    }
}

#[tokio::test]
async fn an_evicted_ids_zset_is_refilled_not_read_as_empty() {
    let f = Fixture::start(&[], 1).await;
    f.put(&[item("i1", "a", "g1", 1), item("i2", "b", "g1", 2)]).await;
    let all = Query::<Item>::all();
    let by_a = Item::by_tag("a");
    for query in [&all, &by_a] {
        f.check(query.clone()).await;
        assert!(f.is_complete(query).await);
    }

    f.evict(f.keys(0).ids());
    assert!(!f.is_complete(&all).await);
    assert!(!f.is_complete(&by_a).await, "an unsorted filter intersects the ids");
    f.put(&[item("i3", "a", "g2", 3)]).await;
    assert!(!f.is_complete(&all).await, "recreated by a write, it lacks the others");
    assert!(!f.is_complete(&by_a).await);
    assert_eq!(ids(&f.check(all.clone()).await), ["i1", "i2", "i3"]);
    assert_eq!(ids(&f.check(by_a.clone()).await), ["i1", "i3"]);
    assert!(f.is_complete(&all).await && f.is_complete(&by_a).await);
}

#[tokio::test]
async fn an_evicted_meta_hash_never_leaves_a_record_under_its_old_value() {
    let f = Fixture::start(&[], 1).await;
    f.put(&[
        item("i1", "a", "g1", 1),
        item("i2", "a", "g1", 2),
        item("i3", "b", "g1", 3),
    ])
    .await;
    let (by_a, by_b, all) = (
        Item::by_tag("a"),
        Item::by_tag("b"),
        Query::<Item>::all().desc(ItemSort::Rank),
    );
    for query in [&by_a, &by_b, &all] {
        f.check(query.clone()).await;
    }

    f.evict(f.keys(0).meta());
    // The upsert cannot read where i1 was filed: it must not stay listed under `a`.
    f.put(&[item("i1", "b", "g1", 1)]).await;
    assert_eq!(ids(&f.check(by_a.clone()).await), ["i2"]);
    assert_eq!(ids(&f.check(by_b.clone()).await), ["i1", "i3"]);
    // The source deletes i2 and the cache is told: it must leave `a` too.
    assert!(
        f.cache
            .delete::<Item>(&RecordId::new("i2").expect("id"))
            .await
            .expect("delete")
    );
    assert_eq!(ids(&f.check(by_a.clone()).await), Vec::<&str>::new());
    assert_eq!(ids(&f.check(all.clone()).await), ["i3", "i1"]);
    for query in [&by_a, &by_b, &all] {
        assert!(f.is_complete(query).await, "{query:?} refilled");
    }
}

/// A lost meta hash leaves entries the store cannot take out (i1 under `a`); a query filling
/// `a ∧ g2` does not see it, but a later write moving i1 into `g2` would expose it.
#[tokio::test]
async fn a_lost_meta_hash_leaves_no_entry_a_later_write_can_expose() {
    let f = Fixture::start(&[], 1).await;
    f.put(&[item("i1", "a", "g1", 1), item("i2", "a", "g2", 2)]).await;
    let both = Item::by_tag("a").and(Item::by_group("g2"));
    assert_eq!(ids(&f.check(both.clone()).await), ["i2"]);

    f.evict(f.keys(0).meta());
    f.put(&[item("i1", "c", "g1", 1)]).await;
    assert_eq!(ids(&f.check(both.clone()).await), ["i2"]);
    assert!(f.is_complete(&both).await);
    f.put(&[item("i1", "c", "g2", 1)]).await;
    assert_eq!(ids(&f.check(both.clone()).await), ["i2"]);
    assert_eq!(ids(&f.check(Item::by_tag("a")).await), ["i2"]);
}

#[tokio::test]
async fn eviction_in_one_bucket_makes_the_merged_answer_incomplete() {
    let f = Fixture::start(&[], 4).await;
    let items: Vec<Item> = (0..24).map(|i| item(&format!("i{i:02}"), "a", "g1", i)).collect();
    f.put(&items).await;
    let sorted = Item::by_tag("a").desc(ItemSort::Rank).offset(3).limit(5);
    f.check(sorted.clone()).await;
    assert!(f.is_complete(&sorted).await);

    let layout = f.store.key_layout(Item::schema());
    let bucket = layout.bucket_of(&items[0].id);
    f.evict(&f.keys(bucket).tag("tag", "a"));
    assert!(!f.is_complete(&sorted).await);
    f.evict(&f.keys((bucket + 1) % 4).sort("rank"));
    f.put(&[item("i99", "a", "g1", 99)]).await;
    assert_eq!(ids(&f.check(sorted.clone()).await), ["i21", "i20", "i19", "i18", "i17"]);
    assert!(f.is_complete(&sorted).await);
}

/// A real server under `allkeys-lru` evicts whatever it likes, records and index keys alike,
/// while records move between index values: every answer is still the origin's.
#[tokio::test]
async fn a_server_evicting_under_allkeys_lru_never_answers_wrong() {
    const RECORDS: usize = 1000;
    let f = Fixture::start(&["--maxmemory", "2mb", "--maxmemory-policy", "allkeys-lru"], 1).await;
    let note = "x".repeat(200);
    // The w-th write, of record w % RECORDS: each pass over them files them elsewhere.
    let version = |w: usize| {
        let (n, pass) = (w % RECORDS, w / RECORDS);
        Item {
            note: note.clone(),
            ..item(
                &format!("i{n:04}"),
                &format!("t{}", (n + pass * 5) % 12),
                &format!("g{}", (n + pass) % 6),
                ((n * 7 + pass * 13) % 100) as i64,
            )
        }
    };
    let mut written = 0;
    for round in 0..60 {
        let mut batch: Vec<Item> = (written..written + 50).map(version).collect();
        written += 50;
        // And a few records moved out of turn.
        batch.extend((0..10).map(|k| {
            let w = (round * 37 + k * 101) % written;
            Item {
                tag: format!("t{}", (w + round) % 12),
                ..version(w)
            }
        }));
        f.put(&batch).await;
        for t in 0..12 {
            f.check(Item::by_tag(&format!("t{t}"))).await;
            let group = format!("g{}", (t + round) % 6);
            f.check(
                Item::by_tag(&format!("t{t}"))
                    .and(Item::by_group(&group))
                    .desc(ItemSort::Rank)
                    .limit(5),
            )
            .await;
        }
        f.check(
            Item::by_group(&format!("g{}", round % 6))
                .asc(ItemSort::Rank)
                .offset(3)
                .limit(10),
        )
        .await;
    }
    let stats = f.store.stats().await.expect("stats");
    assert!(
        stats.evicted_keys.is_some_and(|n| n > 0),
        "the server evicted keys: {stats:?}"
    );
    assert!(f.cache.stats().total().hits > 0, "the store still answers");
}

/// The `tracing` events of this thread, each as its name and fields.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

impl Events {
    /// The events whose message, the stable event name, is `name`.
    fn named(&self, name: &str) -> Vec<String> {
        let message = format!("message={name}");
        let events = self.0.lock().expect("events");
        events
            .iter()
            .filter(|e| e.split(' ').any(|field| field == message))
            .cloned()
            .collect()
    }
}

impl tracing::Subscriber for Events {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
        let mut fields = Fields(event.metadata().name().to_owned());
        event.record(&mut fields);
        self.0.lock().expect("events").push(fields.0);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// Connecting reads the eviction policy and warns about one that evicts index keys; a user
/// without `CONFIG` connects all the same.
#[tokio::test]
async fn an_evicting_server_is_reported_when_the_store_connects() {
    let events = Events::default();
    let _guard = tracing::subscriber::set_default(events.clone());
    let evicting = RedisServer::start_with_args(&["--maxmemory-policy", "allkeys-lfu"]);
    RedisStore::connect(evicting.url()).await.expect("connect");
    let reports = events.named("redis_eviction_policy");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].contains("allkeys-lfu") && reports[0].contains("volatile-ttl"),
        "{reports:?}"
    );

    let recommended = RedisServer::start_with_args(&["--maxmemory-policy", "volatile-ttl"]);
    RedisStore::connect(recommended.url()).await.expect("connect");
    let user = "cache on >c4che ~mc:* resetchannels -@all +@read +@write +@scripting +info +time +ping";
    let mut args = vec!["--maxmemory-policy", "allkeys-lru", "--user"];
    args.extend(user.split(' '));
    let restricted = RedisServer::start_with_args(&args);
    RedisStore::connect(format!("redis://cache:c4che@127.0.0.1:{}", restricted.port()))
        .await
        .expect("a user without CONFIG connects");
    assert_eq!(events.named("redis_eviction_policy").len(), 1, "nothing more to report");
}
