//! Deletes are final across instances: two `Cache`s sharing one Redis namespace, one deleting
//! and the other receiving late, duplicated and out-of-order changes of the record.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::time::{Duration, SystemTime};

use cache_core::{
    Cache, Cacheable, RecordId, UpsertOutcome,
    change::{Change, ChangeOutcome, Refusal},
    testing::{MemoryOrigin, conformance::RaceProject},
};
use cache_redis::{RedisStore, testing::shared_server};

async fn instance(namespace: &str, origin: &MemoryOrigin) -> Cache {
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

#[tokio::test]
async fn a_delete_on_one_instance_refuses_late_changes_on_another() {
    let namespace = cache_redis::testing::unique_namespace();
    let origin = MemoryOrigin::new();
    let (a, b) = (instance(&namespace, &origin).await, instance(&namespace, &origin).await);
    let id: RecordId = "recRace1".parse().unwrap();
    let state = |name: &str, version: i64| RaceProject {
        id: id.clone(),
        name: name.into(),
        event: "recE1".into(),
        version,
    };
    let before = SystemTime::now() - Duration::from_secs(60);
    let delivery =
        |p: &RaceProject, at: SystemTime| Change::upsert(RaceProject::schema(), p.to_source().unwrap()).at(at);

    origin.put(&state("first", 1)).unwrap();
    assert_eq!(b.get::<RaceProject>(&id).await.unwrap(), Some(state("first", 1)));
    origin.put(&state("voted", 2)).unwrap();
    // Instance A deletes (stamped with its clock, now).
    assert!(a.delete::<RaceProject>(&id).await.unwrap());

    // On instance B: the state before the delete, delivered late, and a duplicate of it.
    for _ in 0..2 {
        let outcome = b.apply_change(delivery(&state("voted", 2), before)).await.unwrap();
        assert!(matches!(outcome, ChangeOutcome::Refused(Refusal::Older)), "{outcome:?}");
    }
    // Out of order: an earlier state still.
    let outcome = b
        .apply_change(delivery(&state("first", 1), before - Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(matches!(outcome, ChangeOutcome::Refused(Refusal::Older)), "{outcome:?}");
    // The application's write that raced the delete, landing on B.
    assert_eq!(b.upsert(&state("voted", 2)).await.unwrap(), UpsertOutcome::Deleted);
    for cache in [&a, &b] {
        assert_eq!(cache.get::<RaceProject>(&id).await.unwrap(), None);
        assert!(cache.query(RaceProject::by_event("recE1")).await.unwrap().is_empty());
    }

    // Re-created at the source, delivered to B after the delete: both serve it.
    origin.put(&state("again", 3)).unwrap();
    let outcome = b
        .apply_change(delivery(&state("again", 3), SystemTime::now()))
        .await
        .unwrap();
    assert!(matches!(outcome, ChangeOutcome::Applied), "{outcome:?}");
    for cache in [&a, &b] {
        assert_eq!(cache.get::<RaceProject>(&id).await.unwrap(), Some(state("again", 3)));
    }
}
