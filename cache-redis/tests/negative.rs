//! Negative answers on Redis: what a miss leaves behind (a fill that found no record, an index
//! lookup that found none) is small and lives the entity's short negative lifetime, unlike a
//! delete the source reported, which keeps its tombstone lifetime.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use cache_core::{
    Cache, Cacheable, RecordId,
    testing::{MemoryOrigin, conformance::RaceProject},
};
use cache_redis::{
    RedisStore,
    testing::{shared_server, unique_namespace},
};

/// What a key created by a miss may cost (`MEMORY USAGE`, bytes) beyond its name, which the
/// namespace and the entity choose: the tests' are long (`t-<16 hex>:{conformance_race_projects}`,
/// 60 bytes before the id), the soak's realistic ones keep every such key under 150 bytes in
/// all (`docs/benchmarks.md`, "Soak").
const MAX_BYTES_BEYOND_NAME: u64 = 100;

/// Whether `key` costs at most [`MAX_BYTES_BEYOND_NAME`] more than its name.
fn small(key: &str, bytes: u64) -> bool {
    bytes <= key.len() as u64 + MAX_BYTES_BEYOND_NAME
}

async fn cache(namespace: &str, origin: &MemoryOrigin) -> Cache {
    let store = RedisStore::builder(shared_server().url())
        .namespace(namespace)
        .connect()
        .await
        .unwrap();
    Cache::builder(store, origin.clone())
        .register::<RaceProject>()
        .build()
        .unwrap()
}

/// Every key of the namespace with its time to live (ms) and `MEMORY USAGE`.
fn keys_of(namespace: &str) -> Vec<(String, i64, u64)> {
    let server = shared_server();
    let mut keys = Vec::new();
    let mut cursor = 0_u64;
    loop {
        let (next, batch): (u64, Vec<String>) = server.query(
            redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{namespace}:*"))
                .arg("COUNT")
                .arg(1000),
        );
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    keys.sort();
    keys.into_iter()
        .map(|key| {
            let ttl: i64 = server.query(redis::cmd("PTTL").arg(&key));
            let bytes: u64 = server.query(redis::cmd("MEMORY").arg("USAGE").arg(&key).arg("SAMPLES").arg(0));
            (key, ttl, bytes)
        })
        .collect()
}

/// Whether `key` is a record key holding a tombstone (which starts with `!`, see
/// `src/lua/entity.lua`).
fn holds_tombstone(key: &str) -> bool {
    key.contains(":r:") && shared_server().query::<String>(redis::cmd("GETRANGE").arg(key).arg(0).arg(0)) == "!"
}

/// The negative lifetime with the cache's default jitter (5%).
fn negative_ms() -> i64 {
    i64::try_from(RaceProject::schema().negative_ttl.as_millis() * 105 / 100).unwrap()
}

#[tokio::test]
async fn a_miss_leaves_a_small_tombstone_that_lives_the_negative_ttl() {
    let namespace = unique_namespace();
    let origin = MemoryOrigin::new();
    let cache = cache(&namespace, &origin).await;
    let misses = 50;
    for i in 0..misses {
        let id: RecordId = format!("recMissing{i:08}").parse().unwrap();
        assert_eq!(cache.get::<RaceProject>(&id).await.unwrap(), None);
    }
    let keys = keys_of(&namespace);
    let tombstones: Vec<_> = keys.iter().filter(|(k, ..)| holds_tombstone(k)).collect();
    assert_eq!(tombstones.len(), misses, "one tombstone per miss: {keys:#?}");
    for (key, ttl, bytes) in &tombstones {
        assert!(*ttl > 0 && *ttl <= negative_ms(), "{key} lives {ttl} ms");
        assert!(small(key, *bytes), "{key} costs {bytes} bytes");
    }
    assert!(
        keys.iter().all(|(k, ..)| !k.contains(":lease:")),
        "a fill's lease is gone with it: {keys:#?}"
    );
    // Nothing else per miss: no purge mark (it would live `PURGE_MEMORY`, longer than the
    // negative lifetime), only the entity's shared keys (sequence, meta, ids).
    assert!(keys.iter().all(|(k, ..)| !k.contains("purged:")), "{keys:#?}");
    assert!(keys.len() - tombstones.len() <= 8, "{keys:#?}");
}

#[tokio::test]
async fn a_delete_the_source_reported_keeps_its_tombstone_ttl() {
    let namespace = unique_namespace();
    let origin = MemoryOrigin::new();
    let cache = cache(&namespace, &origin).await;
    let id: RecordId = "recDeleted1".parse().unwrap();
    let record = RaceProject {
        id: id.clone(),
        name: "gone".into(),
        event: "recE1".into(),
        version: 1,
    };
    origin.put(&record).unwrap();
    assert!(cache.get::<RaceProject>(&id).await.unwrap().is_some());
    assert!(cache.delete::<RaceProject>(&id).await.unwrap());
    let keys = keys_of(&namespace);
    let (key, ttl, _) = keys
        .iter()
        .find(|(k, ..)| k.ends_with(":r:recDeleted1") && holds_tombstone(k))
        .unwrap();
    let floor = RaceProject::schema().tombstone_ttl.as_millis() * 95 / 100;
    assert!(
        i64::try_from(floor).unwrap() < *ttl,
        "{key} lives {ttl} ms: a delete is not a negative answer"
    );
}

#[tokio::test]
async fn an_empty_index_result_lives_the_negative_ttl() {
    let namespace = unique_namespace();
    let origin = MemoryOrigin::new();
    let cache = cache(&namespace, &origin).await;
    let lookups = 20;
    for i in 0..lookups {
        let event = format!("recNoEvent{i:04}");
        assert!(cache.query(RaceProject::by_event(&event)).await.unwrap().is_empty());
        // Answered by the store the second time.
        assert!(cache.query(RaceProject::by_event(&event)).await.unwrap().is_empty());
    }
    let stats = cache.stats();
    assert_eq!(stats.entity("conformance_race_projects").origin_calls, lookups);
    let keys = keys_of(&namespace);
    // A marker and a tag set per lookup.
    let per_lookup: Vec<_> = keys
        .iter()
        .filter(|(k, ..)| k.contains(":c:") || k.contains(":i:"))
        .collect();
    assert_eq!(per_lookup.len(), 2 * lookups as usize, "{keys:#?}");
    for (key, ttl, bytes) in &per_lookup {
        assert!(*ttl > 0 && *ttl <= negative_ms(), "{key} lives {ttl} ms");
        // The marker is a counter; the tag set holds the marker's live member alone.
        assert!(small(key, *bytes), "{key} costs {bytes} bytes");
    }
}
