//! Deletes are final: the checks of a delete's tombstone ([`Tombstone`]) and of the one
//! ordered change path over any store.

use std::{future::Future, time::Duration};

use super::{LEASE, LONG, fresh, id, lookup, project, projects};
use crate::{
    Cache, Cacheable, RecordId, UpsertOutcome,
    change::{Change, ChangeOutcome, Refusal},
    store::{IntoStore, Lookup, RemoveMode, Tombstone, WriteMode, WriteOutcome},
    testing::MemoryOrigin,
};

fn deleted(version: Option<f64>, at: Option<i64>) -> RemoveMode {
    RemoveMode::Tombstone(Tombstone {
        version,
        at,
        ..Tombstone::new(LONG)
    })
}

/// `write` as a change that happened at source time `at`.
fn timed(write: crate::store::RecordWrite, at: Option<i64>) -> crate::store::RecordWrite {
    crate::store::RecordWrite { at, ..write }
}

/// A read-through fill of `rid` that found nothing at the origin.
async fn fill_not_found(store: &dyn crate::store::Store, rid: &str) {
    let p = projects();
    let lease = store.lease(p, &[id(rid)], LEASE).await.expect("lease");
    let mode = RemoveMode::FillTombstone { lease, ttl: LONG };
    store.remove(p, &[id(rid)], mode).await.expect("fill tombstone");
}

async fn put_one(store: &dyn crate::store::Store, write: crate::store::RecordWrite, mode: WriteMode) -> WriteOutcome {
    let mut out = store.put(projects(), &[write], mode).await.expect("put");
    out.pop().expect("one outcome")
}

/// A delete's tombstone refuses an upsert whose version is not above the deleted one, and
/// accepts a re-created record with a higher version.
pub async fn delete_refuses_writes_not_newer_by_version<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    store
        .remove(p, &[id("p1")], deleted(Some(3.0), None))
        .await
        .expect("remove");
    for version in [2.0, 3.0] {
        let write = project("p1", "e1", "open", 1.0, Some(version));
        assert_eq!(
            put_one(&*store, write, WriteMode::Upsert).await,
            WriteOutcome::Deleted,
            "version {version} after a delete of version 3"
        );
        assert_eq!(lookup(&*store, p, "p1").await, Lookup::Tombstone);
    }
    let back = project("p1", "e1", "open", 1.0, Some(4.0));
    assert!(matches!(
        put_one(&*store, back.clone(), WriteMode::Upsert).await,
        WriteOutcome::Written { .. }
    ));
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(back.body));
}

/// Without versions, a delete's source time orders writes that carry one; a write that
/// carries neither is [`WriteOutcome::Unordered`].
pub async fn delete_orders_writes_by_source_time<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    store
        .remove(p, &[id("p1")], deleted(None, Some(1_000)))
        .await
        .expect("remove");
    for (at, expected) in [
        (Some(999), WriteOutcome::Deleted),
        (Some(1_000), WriteOutcome::Deleted),
        (None, WriteOutcome::Unordered),
    ] {
        let write = timed(project("p1", "e1", "open", 1.0, None), at);
        assert_eq!(put_one(&*store, write, WriteMode::Upsert).await, expected, "at {at:?}");
    }
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Tombstone);
    let back = timed(project("p1", "e1", "open", 1.0, None), Some(1_001));
    assert!(matches!(
        put_one(&*store, back.clone(), WriteMode::Upsert).await,
        WriteOutcome::Written { .. }
    ));
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(back.body));
}

/// A later delete of the same record keeps the larger version and time of the two.
pub async fn deletes_of_one_record_merge<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    store
        .remove(projects(), &[id("p1")], deleted(Some(5.0), None))
        .await
        .expect("remove");
    // A late, older delete (a redelivery) does not lower what the tombstone keeps.
    store
        .remove(projects(), &[id("p1")], deleted(Some(2.0), Some(7)))
        .await
        .expect("remove");
    let write = project("p1", "e1", "open", 1.0, Some(4.0));
    assert_eq!(put_one(&*store, write, WriteMode::Upsert).await, WriteOutcome::Deleted);
    let write = timed(project("p1", "e1", "open", 1.0, None), Some(6));
    assert_eq!(put_one(&*store, write, WriteMode::Upsert).await, WriteOutcome::Deleted);
}

/// A fill's "not found" orders nothing: the record created at the source afterwards is
/// upserted whatever it carries.
pub async fn fill_not_found_orders_nothing<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    fill_not_found(&*store, "p1").await;
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Tombstone);
    let created = project("p1", "e1", "open", 1.0, None);
    assert!(matches!(
        put_one(&*store, created.clone(), WriteMode::Upsert).await,
        WriteOutcome::Written { .. }
    ));
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(created.body));
}

/// An invalidated delete answers reads as a miss (the origin decides) but still refuses
/// writes not newer than it; a fill that then finds nothing keeps its order, and a fill of a
/// re-created record (read after the delete, under a lease taken after it) is written.
pub async fn invalidated_delete_still_orders_writes<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    store
        .remove(p, &[id("p1")], deleted(Some(3.0), None))
        .await
        .expect("remove");
    store
        .remove(p, &[id("p1")], RemoveMode::Invalidate)
        .await
        .expect("invalidate");
    assert_eq!(
        lookup(&*store, p, "p1").await,
        Lookup::Miss,
        "an invalidated delete misses"
    );
    let stale = project("p1", "e1", "open", 1.0, Some(3.0));
    assert_eq!(
        put_one(&*store, stale.clone(), WriteMode::Upsert).await,
        WriteOutcome::Deleted
    );

    fill_not_found(&*store, "p1").await;
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Tombstone);
    assert_eq!(
        put_one(&*store, stale, WriteMode::Upsert).await,
        WriteOutcome::Deleted,
        "the fill's not-found kept the delete's order"
    );

    let lease = store.lease(p, &[id("p1")], LEASE).await.expect("lease");
    let older = project("p1", "e1", "open", 1.0, Some(2.0));
    assert_eq!(
        put_one(&*store, older, WriteMode::Fill(lease)).await,
        WriteOutcome::Deleted,
        "a fill of a version not above the deleted one read an older state"
    );
    let lease = store.lease(p, &[id("p1")], LEASE).await.expect("lease");
    let recreated = project("p1", "e1", "open", 1.0, Some(9.0));
    assert!(matches!(
        put_one(&*store, recreated.clone(), WriteMode::Fill(lease)).await,
        WriteOutcome::Written { .. }
    ));
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(recreated.body));
}

// ------------------------------------------------------------------ through the cache

/// A versioned model for the checks through [`Cache`].
#[derive(crate::Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "conformance_race_projects", source_table = "RaceProjects")]
pub struct RaceProject {
    /// The id.
    #[cache(id)]
    pub id: RecordId,
    /// What a write changes.
    pub name: String,
    /// The event, indexed.
    #[indexed]
    pub event: String,
    /// The version.
    #[cache(version)]
    pub version: i64,
}

/// A model without a version field, as votes are.
#[derive(crate::Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "conformance_race_votes", source_table = "RaceVotes")]
pub struct RaceVote {
    /// The id.
    #[cache(id)]
    pub id: RecordId,
    /// The project voted for, indexed.
    #[indexed]
    pub project: String,
    /// What a write changes.
    pub points: i64,
}

async fn race_cache<F, Fut, S>(factory: &F) -> (Cache, MemoryOrigin)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let origin = MemoryOrigin::new();
    let cache = Cache::builder(fresh(factory).await, origin.clone())
        .register::<RaceProject>()
        .register::<RaceVote>()
        .build()
        .expect("cache");
    (cache, origin)
}

/// A write racing a delete (the write committed at the source first, its cache upsert lands
/// after the delete's tombstone: the deterministic order of the race) is refused, and the
/// record stays deleted for reads and queries.
pub async fn write_racing_a_delete_is_refused<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let (cache, origin) = race_cache(&factory).await;
    let pid = id("p1");
    let first = RaceProject {
        id: pid.clone(),
        name: "first".into(),
        event: "e1".into(),
        version: 1,
    };
    origin.put(&first).expect("origin");
    assert_eq!(cache.get::<RaceProject>(&pid).await.expect("get"), Some(first.clone()));
    let by_event = || RaceProject::by_event("e1");
    assert_eq!(cache.query(by_event()).await.expect("query").len(), 1);
    // The write commits at the source ...
    let voted = RaceProject {
        name: "voted".into(),
        version: 2,
        ..first
    };
    origin.put(&voted).expect("origin");
    // ... the delete commits after it and reaches the cache first ...
    assert!(cache.delete::<RaceProject>(&pid).await.expect("delete"));
    // ... and the write's upsert lands last.
    assert_eq!(cache.upsert(&voted).await.expect("upsert"), UpsertOutcome::Deleted);
    assert_eq!(cache.get::<RaceProject>(&pid).await.expect("get"), None);
    assert!(cache.query(by_event()).await.expect("query").is_empty());
    assert_eq!(cache.stats().entity("conformance_race_projects").stale_refusals, 1);

    // A record re-created at the source with a newer version is accepted.
    let recreated = RaceProject {
        name: "recreated".into(),
        version: 3,
        ..voted
    };
    origin.put(&recreated).expect("origin");
    assert_eq!(cache.upsert(&recreated).await.expect("upsert"), UpsertOutcome::Stored);
    assert_eq!(cache.get::<RaceProject>(&pid).await.expect("get"), Some(recreated));
}

/// Without a version field, the late write cannot be ordered against the delete: the cache
/// asks the origin, which says the record is gone.
pub async fn unversioned_write_after_a_delete_asks_the_origin<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let (cache, origin) = race_cache(&factory).await;
    let vid = id("v1");
    let vote = RaceVote {
        id: vid.clone(),
        project: "p1".into(),
        points: 1,
    };
    origin.put(&vote).expect("origin");
    let changed = RaceVote { points: 5, ..vote };
    origin.put(&changed).expect("origin");
    assert!(cache.delete::<RaceVote>(&vid).await.expect("delete"));
    origin.reset_calls();
    assert_eq!(cache.upsert(&changed).await.expect("upsert"), UpsertOutcome::Deleted);
    assert_eq!(origin.total_calls(), 1, "the origin was asked once");
    assert_eq!(cache.get::<RaceVote>(&vid).await.expect("get"), None);
    assert_eq!(origin.total_calls(), 1, "and its answer is cached");

    // Re-created at the source: the unordered upsert is settled by the origin, which has it.
    origin.put(&changed).expect("origin");
    assert_eq!(cache.upsert(&changed).await.expect("upsert"), UpsertOutcome::Stored);
    assert_eq!(cache.get::<RaceVote>(&vid).await.expect("get"), Some(changed));
}

/// Deliveries by source time around a delete: late, duplicated and out of order, through
/// [`Cache::apply_changes`].
pub async fn deliveries_around_a_delete_are_ordered<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let (cache, origin) = race_cache(&factory).await;
    let pid = id("p1");
    let at = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs);
    let record = |name: &str, version: i64| {
        RaceProject {
            id: pid.clone(),
            name: name.into(),
            event: "e1".into(),
            version,
        }
        .to_source()
        .expect("source")
    };
    let schema = RaceProject::schema();
    let upsert = |name: &str, version: i64, secs: u64| Change::upsert(schema, record(name, version)).at(at(secs));
    let outcomes = cache
        .apply_changes(vec![
            upsert("one", 1, 10),
            Change::delete(schema, pid.clone()).at(at(20)),
            // Late: the state before the delete, first delivered after it.
            upsert("one", 1, 10),
            // Out of order: an earlier state still.
            upsert("zero", 0, 5),
            // A duplicate of the delete.
            Change::delete(schema, pid.clone()).at(at(20)),
        ])
        .await
        .expect("apply");
    let labels: Vec<String> = outcomes.iter().map(|o| format!("{o:?}")).collect();
    assert!(matches!(outcomes[0], ChangeOutcome::Applied), "{labels:?}");
    assert!(matches!(outcomes[1], ChangeOutcome::Applied), "{labels:?}");
    assert!(
        matches!(outcomes[2], ChangeOutcome::Refused(Refusal::Older)),
        "{labels:?}"
    );
    assert!(
        matches!(outcomes[3], ChangeOutcome::Refused(Refusal::Older)),
        "{labels:?}"
    );
    assert!(matches!(outcomes[4], ChangeOutcome::Applied), "{labels:?}");
    assert_eq!(origin.total_calls(), 0, "ordered by the store alone");
    assert_eq!(cache.get::<RaceProject>(&pid).await.expect("get"), None);
    // A genuine re-creation, later than the delete, is applied.
    let outcome = cache.apply_change(upsert("two", 2, 30)).await.expect("apply");
    assert!(matches!(outcome, ChangeOutcome::Applied), "{outcome:?}");
    assert_eq!(
        cache.get::<RaceProject>(&pid).await.expect("get").map(|p| p.name),
        Some("two".into())
    );
}

/// A change redelivered after an invalidation that carried no source time is refused: the
/// invalidation said the source moved on, so neither a redelivered delete (its tombstone would
/// answer "not found" for the record the source re-created) nor a redelivered upsert (an older
/// record) may come back. The next read asks the origin.
pub async fn a_redelivery_after_an_untimed_invalidation_is_refused<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let (cache, origin) = race_cache(&factory).await;
    let schema = RaceProject::schema();
    let at = |secs: u64| std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs);
    let project = |rid: &str, name: &str, version: i64| RaceProject {
        id: id(rid),
        name: name.into(),
        event: "e1".into(),
        version,
    };

    // A delete the source reported; then the source re-creates the record and the application
    // only invalidates it; then the delete is delivered again.
    let deleted = id("p1");
    let outcome = cache
        .apply_change(Change::delete(schema, deleted.clone()).at(at(10)))
        .await
        .expect("apply");
    assert!(matches!(outcome, ChangeOutcome::Applied), "{outcome:?}");
    origin.put(&project("p1", "again", 2)).expect("origin");
    cache.invalidate::<RaceProject>(&deleted).await.expect("invalidate");
    let outcome = cache
        .apply_change(Change::delete(schema, deleted.clone()).at(at(10)))
        .await
        .expect("apply");
    assert!(
        matches!(outcome, ChangeOutcome::Refused(Refusal::Older)),
        "a redelivered delete after the invalidation: {outcome:?}"
    );
    assert_eq!(
        cache.get::<RaceProject>(&deleted).await.expect("get"),
        Some(project("p1", "again", 2)),
        "the record the source re-created"
    );

    // The same for an upsert: the source moved on to version 2 and the application only
    // invalidated; the version-1 change is delivered again.
    let changed = id("p2");
    let first = project("p2", "first", 1);
    origin.put(&first).expect("origin");
    let upsert = Change::upsert(schema, first.to_source().expect("source")).at(at(10));
    let outcome = cache.apply_change(upsert.clone()).await.expect("apply");
    assert!(matches!(outcome, ChangeOutcome::Applied), "{outcome:?}");
    origin.put(&project("p2", "second", 2)).expect("origin");
    cache.invalidate::<RaceProject>(&changed).await.expect("invalidate");
    let outcome = cache.apply_change(upsert).await.expect("apply");
    assert!(
        matches!(outcome, ChangeOutcome::Refused(Refusal::Older)),
        "a redelivered upsert after the invalidation: {outcome:?}"
    );
    assert_eq!(
        cache.get::<RaceProject>(&changed).await.expect("get").map(|p| p.name),
        Some("second".into())
    );
}
