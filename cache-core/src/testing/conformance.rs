//! The store conformance suite: what every [`Store`] must do, one check per function, run by
//! [`store_conformance_tests!`](crate::store_conformance_tests) as one test per check.
//!
//! ```ignore
//! mod conformance {
//!     // Every check calls the factory for a fresh store (or a fresh namespace on one server).
//!     cache_core::store_conformance_tests!(async { my_store::connect_fresh_namespace().await });
//! }
//! ```
//!
//! The calling crate needs `tokio` (with `macros` and `rt`) as a dev-dependency. Each check
//! takes the factory, so a check may ask for two stores (to prove one namespace cannot touch
//! another).
//!
//! The checks use hand-built schemas ([`projects`], [`users`]) and no derive. Checks of TTL
//! expiry write with TTLs of a few milliseconds and poll until the store forgets: they need a
//! store on real time (the in-memory store's own tests cover expiry with a manual clock).

use std::{
    collections::BTreeSet,
    future::Future,
    sync::{Arc, LazyLock},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::StreamExt;

mod deletes;

pub use self::deletes::*;
use crate::{
    ComputeLock, ComputedWrite, EntitySchema, FieldKind, FieldSchema, FillToken, IndexEntries, IndexKind, IndexQuery,
    IntoStore, LockAttempt, LockWait, Lookup, Order, PurgeStamp, QueryLookup, RecordId, RecordWrite, RemoveMode, Sort,
    SortKey, Store, Tombstone, WriteMode, WriteOutcome,
};

/// Expands to one `#[tokio::test]` per conformance check, each calling `$factory` (an
/// expression evaluated anew for every store, typically an `async` block) for its store.
///
/// ```ignore
/// cache_core::store_conformance_tests!(async { cache_core::MemoryStore::new() });
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::__store_conformance_tests! {
            ($factory)
            get_and_get_many_answer_in_order,
            put_answers_previous_index_entries,
            invalidate_forgets_records,
            invalidate_clears_tombstone,
            tombstone_reads_as_tombstone_until_upsert,
            fill_under_lease_is_written,
            fill_refused_after_upsert,
            fill_refused_after_invalidate,
            fill_refused_after_tombstone,
            newer_lease_replaces_older,
            fill_clears_earlier_tombstone,
            fill_tombstone_respects_lease,
            older_version_refused,
            query_without_marker_is_incomplete,
            query_orders_by_sort_then_id,
            query_pages_with_offset_and_limit,
            query_intersects_filters,
            complete_query_refused_after_write,
            complete_answer_carries_a_current_token,
            complete_query_survives_fills,
            invalidation_drops_markers_of_its_entity_only,
            upsert_moves_record_between_complete_results,
            upsert_reorders_complete_results,
            new_record_enters_complete_results,
            tombstone_keeps_complete_results_correct,
            complete_query_keeps_newer_versions,
            complete_query_forgets_records_the_origin_dropped,
            complete_query_clears_tombstones,
            expired_record_in_page_makes_query_incomplete,
            ttl_expires_records_tombstones_and_values,
            scan_ids_lists_cached_ids_in_batches,
            flush_all_and_by_pattern,
            flush_stays_in_its_namespace,
            values_with_tags_are_purged,
            ping_and_stats,
            entities_are_separate,
            computed_values_are_values_purged_by_their_tags,
            computed_value_refused_after_a_purge_of_its_tags,
            compute_lock_is_exclusive_until_released,
            compute_lock_expires,
            waiter_is_woken_by_the_value,
            waiter_is_released_by_a_failed_owner,
            wait_ends_at_its_bound,
            wait_answers_at_once_without_a_lock,
            watermark_only_moves_forward,
            delete_refuses_writes_not_newer_by_version,
            delete_orders_writes_by_source_time,
            deletes_of_one_record_merge,
            fill_not_found_orders_nothing,
            invalidated_delete_still_orders_writes,
            write_racing_a_delete_is_refused,
            unversioned_write_after_a_delete_asks_the_origin,
            deliveries_around_a_delete_are_ordered,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_tests {
    (($factory:expr) $($check:ident,)*) => {
        $(
            #[::tokio::test]
            async fn $check() {
                $crate::testing::conformance::$check(|| $factory).await;
            }
        )*
    };
}

// ------------------------------------------------------------------ fixtures

fn indexed(name: &'static str, rust_type: &'static str, kind: IndexKind) -> FieldSchema {
    let mut field = FieldSchema::scalar(name, rust_type);
    field.index = Some(kind);
    field
}

/// `conformance_events`: the link target of [`projects`].
pub fn events() -> &'static EntitySchema {
    static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
        EntitySchema::builder("conformance_events")
            .source_table("Events")
            .field(FieldSchema::scalar("name", "String"))
            .build()
    });
    &SCHEMA
}

/// `conformance_projects`: `event` (a link, indexed), `status` (indexed), `points` (sortable),
/// `version` (the version field).
pub fn projects() -> &'static EntitySchema {
    static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
        let mut event = indexed("event", "Link<Event>", IndexKind::Exact);
        event.kind = FieldKind::Link { target: events };
        let mut points = FieldSchema::scalar("points", "i64");
        points.sortable = true;
        EntitySchema::builder("conformance_projects")
            .source_table("Projects")
            .version_field("version")
            .field(FieldSchema::scalar("name", "String"))
            .field(event)
            .field(indexed("status", "String", IndexKind::Exact))
            .field(points)
            .field(FieldSchema::scalar("version", "i64"))
            .build()
    });
    &SCHEMA
}

/// `conformance_users`: `email` (indexed, lower-cased).
pub fn users() -> &'static EntitySchema {
    static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
        EntitySchema::builder("conformance_users")
            .source_table("Users")
            .field(indexed("email", "String", IndexKind::Lowercase))
            .build()
    });
    &SCHEMA
}

const LONG: Duration = Duration::from_secs(3600);
const LEASE: Duration = Duration::from_secs(60);

fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("fixture ids are valid")
}

/// A project record: its body names every field so that tests can tell versions apart.
fn project(rid: &str, event: &str, status: &str, points: f64, version: Option<f64>) -> RecordWrite {
    let number = |n: Option<f64>| n.filter(|n| n.is_finite()).map_or("null".to_owned(), |n| n.to_string());
    let body = format!(
        r#"{{"id":"{rid}","event":"{event}","status":"{status}","points":{},"version":{}}}"#,
        number(Some(points)),
        number(version)
    );
    RecordWrite {
        id: id(rid),
        body: Bytes::from(body),
        index: IndexEntries {
            tags: vec![("event".into(), event.into()), ("status".into(), status.into())],
            scores: vec![("points".into(), points)],
        },
        version,
        at: None,
        ttl: LONG,
    }
}

fn user(rid: &str, email: &str) -> RecordWrite {
    RecordWrite {
        id: id(rid),
        body: Bytes::from(format!(r#"{{"id":"{rid}","email":"{email}"}}"#)),
        index: IndexEntries {
            tags: vec![("email".into(), email.into())],
            scores: vec![],
        },
        version: None,
        at: None,
        ttl: LONG,
    }
}

fn by_event(event: &str) -> IndexQuery {
    IndexQuery::all().filter("event", event.to_owned())
}

fn sorted(mut query: IndexQuery, order: Order) -> IndexQuery {
    query.sort = Some(Sort { field: "points", order });
    query
}

fn page(mut query: IndexQuery, offset: usize, limit: Option<usize>) -> IndexQuery {
    query.offset = offset;
    query.limit = limit;
    query
}

async fn fresh<F, Fut, S>(factory: &F) -> Arc<dyn Store>
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    factory().await.into_store()
}

async fn upsert(store: &dyn Store, entity: &EntitySchema, writes: &[RecordWrite]) {
    let out = store.put(entity, writes, WriteMode::Upsert).await.expect("put");
    assert!(
        out.iter().all(|o| matches!(o, WriteOutcome::Written { .. })),
        "upserts are written: {out:?}"
    );
}

async fn token(store: &dyn Store, entity: &EntitySchema, query: &IndexQuery) -> FillToken {
    match store.query(entity, query).await.expect("query") {
        QueryLookup::Incomplete(token) => token,
        QueryLookup::Complete { page, .. } => panic!("{query:?} should be incomplete, got a page of {}", page.len()),
    }
}

/// Marks `query`'s filters complete with `records`.
async fn complete(store: &dyn Store, entity: &EntitySchema, query: &IndexQuery, records: &[RecordWrite]) {
    let t = token(store, entity, query).await;
    assert!(
        store
            .complete_query(entity, query, t, records)
            .await
            .expect("complete_query")
            .is_complete(),
        "complete_query with a fresh token is accepted"
    );
}

/// The ids of a complete page, read from the bodies (`{"id":"..."...`).
async fn page_ids(store: &dyn Store, entity: &EntitySchema, query: &IndexQuery) -> Vec<String> {
    match store.query(entity, query).await.expect("query") {
        QueryLookup::Complete { page, .. } => page.iter().map(body_id).collect(),
        QueryLookup::Incomplete(_) => panic!("{query:?} should be complete"),
    }
}

fn body_id(body: &Bytes) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).expect("fixture bodies are JSON");
    value["id"].as_str().expect("fixture bodies have an id").to_owned()
}

async fn is_complete(store: &dyn Store, entity: &EntitySchema, query: &IndexQuery) -> bool {
    matches!(
        store.query(entity, query).await.expect("query"),
        QueryLookup::Complete { .. }
    )
}

async fn lookup(store: &dyn Store, entity: &EntitySchema, rid: &str) -> Lookup {
    store.get(entity, &id(rid)).await.expect("get")
}

/// Index entries in a comparable form: tags as a set, scores sorted (by bits, so `-inf` compares).
type Normalized = (BTreeSet<(String, String)>, Vec<(String, u64)>);

fn normalized(entries: &IndexEntries) -> Normalized {
    let mut scores: Vec<(String, u64)> = entries.scores.iter().map(|(f, s)| (f.clone(), s.to_bits())).collect();
    scores.sort();
    (entries.tags.iter().cloned().collect(), scores)
}

/// Polls `check` until it holds, for expiry on real time.
async fn eventually<Fut: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> Fut) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------ records

/// `get` and `get_many` answer `Miss` for unknown ids and `Hit` with the body after a put;
/// `get_many` answers in the order asked.
pub async fn get_and_get_many_answer_in_order<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Miss);
    let (a, b) = (
        project("p1", "e1", "open", 1.0, None),
        project("p2", "e1", "open", 2.0, None),
    );
    upsert(&*store, p, &[a.clone(), b.clone()]).await;
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(a.body.clone()));
    let many = store
        .get_many(p, &[id("p2"), id("nope"), id("p1")])
        .await
        .expect("get_many");
    assert_eq!(many, vec![Lookup::Hit(b.body), Lookup::Miss, Lookup::Hit(a.body)]);
    assert_eq!(store.get_many(p, &[]).await.expect("get_many of nothing"), vec![]);
}

/// A put answers the record's previous index entries (`None` when it was not cached).
pub async fn put_answers_previous_index_entries<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let first = project("p1", "e1", "open", 1.0, None);
    let out = store
        .put(p, std::slice::from_ref(&first), WriteMode::Upsert)
        .await
        .expect("put");
    assert_eq!(out, vec![WriteOutcome::Written { previous: None }]);
    let out = store
        .put(p, &[project("p1", "e2", "done", 5.0, None)], WriteMode::Upsert)
        .await
        .expect("put");
    match &out[..] {
        [
            WriteOutcome::Written {
                previous: Some(previous),
            },
        ] => {
            assert_eq!(normalized(previous), normalized(&first.index));
        }
        other => panic!("expected Written with the old entries, got {other:?}"),
    }
}

/// `remove(Invalidate)` forgets records (answering their old index entries) and leaves no
/// tombstone; removing what is not cached answers `None`.
pub async fn invalidate_forgets_records<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let a = project("p1", "e1", "open", 1.0, None);
    upsert(&*store, p, std::slice::from_ref(&a)).await;
    let out = store
        .remove(p, &[id("p1"), id("p9")], RemoveMode::Invalidate)
        .await
        .expect("remove");
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].as_ref().map(normalized), Some(normalized(&a.index)));
    assert_eq!(out[1], None);
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Miss);
}

/// `remove(Invalidate)` of a tombstoned id forgets the tombstone too: the source has the record
/// again (re-created), and the next read must ask it.
pub async fn invalidate_clears_tombstone<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    store
        .remove(p, &[id("p1")], RemoveMode::Tombstone(Tombstone::new(LONG)))
        .await
        .expect("remove");
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Tombstone);
    store
        .remove(p, &[id("p1")], RemoveMode::Invalidate)
        .await
        .expect("remove");
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Miss);
}

/// `remove(Tombstone)` leaves a tombstone that reads as such (in `get_many` too) until an
/// upsert clears it.
pub async fn tombstone_reads_as_tombstone_until_upsert<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    upsert(&*store, p, &[project("p1", "e1", "open", 1.0, None)]).await;
    let deleted = Tombstone {
        version: Some(1.0),
        ..Tombstone::new(LONG)
    };
    store
        .remove(p, &[id("p1"), id("p2")], RemoveMode::Tombstone(deleted))
        .await
        .expect("remove");
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Tombstone);
    assert_eq!(
        store
            .get_many(p, &[id("p2"), id("p1"), id("p3")])
            .await
            .expect("get_many"),
        vec![Lookup::Tombstone, Lookup::Tombstone, Lookup::Miss]
    );
    // Re-created at the source, with a newer version.
    let back = project("p1", "e1", "open", 2.0, Some(2.0));
    upsert(&*store, p, std::slice::from_ref(&back)).await;
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(back.body));
}

// ------------------------------------------------------------------ leases

/// A fill under a lease nobody revoked is written.
pub async fn fill_under_lease_is_written<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let lease = store.lease(p, &[id("p1"), id("p2")], LEASE).await.expect("lease");
    let (a, b) = (
        project("p1", "e1", "open", 1.0, None),
        project("p2", "e1", "open", 1.0, None),
    );
    let out = store
        .put(p, &[a.clone(), b], WriteMode::Fill(lease))
        .await
        .expect("put");
    assert_eq!(out, vec![WriteOutcome::Written { previous: None }; 2]);
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(a.body));
}

/// A fill whose lease was taken before an upsert of the same record is refused; the upsert
/// stays.
pub async fn fill_refused_after_upsert<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let lease = store.lease(p, &[id("p1"), id("p2")], LEASE).await.expect("lease");
    let newer = project("p1", "e1", "open", 9.0, None);
    upsert(&*store, p, std::slice::from_ref(&newer)).await;
    let out = store
        .put(
            p,
            &[
                project("p1", "e1", "open", 1.0, None),
                project("p2", "e1", "open", 1.0, None),
            ],
            WriteMode::Fill(lease),
        )
        .await
        .expect("put");
    assert_eq!(out[0], WriteOutcome::LeaseLost, "the upserted record's fill is refused");
    assert!(
        matches!(out[1], WriteOutcome::Written { .. }),
        "the other id's lease holds"
    );
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(newer.body));
}

/// A fill whose lease was taken before an invalidation is refused; the record stays
/// forgotten.
pub async fn fill_refused_after_invalidate<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    assert_eq!(fill_after_removal(&*store, RemoveMode::Invalidate).await, Lookup::Miss);
}

/// A fill whose lease was taken before a delete (tombstone) is refused and does not clear
/// the tombstone.
pub async fn fill_refused_after_tombstone<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    assert_eq!(
        fill_after_removal(&*store, RemoveMode::Tombstone(Tombstone::new(LONG))).await,
        Lookup::Tombstone
    );
}

/// Takes a lease on `p1`, removes it with `mode`, checks the fill under the lease is refused
/// and answers what the store then holds for `p1`.
async fn fill_after_removal(store: &dyn Store, mode: RemoveMode) -> Lookup {
    let p = projects();
    let lease = store.lease(p, &[id("p1")], LEASE).await.expect("lease");
    store.remove(p, &[id("p1")], mode).await.expect("remove");
    let out = store
        .put(p, &[project("p1", "e1", "open", 1.0, None)], WriteMode::Fill(lease))
        .await
        .expect("put");
    assert_eq!(out, vec![WriteOutcome::LeaseLost]);
    lookup(store, p, "p1").await
}

/// A newer lease on an id replaces the older one: the older fill is refused.
pub async fn newer_lease_replaces_older<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let old = store.lease(p, &[id("p1")], LEASE).await.expect("lease");
    let new = store.lease(p, &[id("p1")], LEASE).await.expect("lease");
    assert_ne!(old, new, "leases are distinct");
    let stale = store
        .put(p, &[project("p1", "e1", "open", 1.0, None)], WriteMode::Fill(old))
        .await
        .expect("put");
    assert_eq!(stale, vec![WriteOutcome::LeaseLost]);
    let fresh_fill = project("p1", "e1", "open", 2.0, None);
    let out = store
        .put(p, std::slice::from_ref(&fresh_fill), WriteMode::Fill(new))
        .await
        .expect("put");
    assert!(matches!(out[0], WriteOutcome::Written { .. }), "{out:?}");
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(fresh_fill.body));
}

/// A fill under a lease taken after a tombstone (a refresh that found the record again)
/// clears the tombstone.
pub async fn fill_clears_earlier_tombstone<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    store
        .remove(p, &[id("p1")], RemoveMode::Tombstone(Tombstone::new(LONG)))
        .await
        .expect("remove");
    let lease = store.lease(p, &[id("p1")], LEASE).await.expect("lease");
    let back = project("p1", "e1", "open", 1.0, None);
    store
        .put(p, std::slice::from_ref(&back), WriteMode::Fill(lease))
        .await
        .expect("put");
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(back.body));
}

/// `RemoveMode::FillTombstone` tombstones only the ids whose lease still holds.
pub async fn fill_tombstone_respects_lease<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let lease = store.lease(p, &[id("p1"), id("p2")], LEASE).await.expect("lease");
    let created = project("p1", "e1", "open", 1.0, None);
    upsert(&*store, p, std::slice::from_ref(&created)).await;
    let out = store
        .remove(p, &[id("p1"), id("p2")], RemoveMode::FillTombstone { lease, ttl: LONG })
        .await
        .expect("remove");
    assert_eq!(out, vec![None, None]);
    assert_eq!(
        lookup(&*store, p, "p1").await,
        Lookup::Hit(created.body),
        "an upsert after the lease is not tombstoned over"
    );
    assert_eq!(lookup(&*store, p, "p2").await, Lookup::Tombstone);
}

// ------------------------------------------------------------------ versions

/// With a version field, a write older than the cached version is refused (upsert and fill);
/// an equal or newer one is written.
pub async fn older_version_refused<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let v2 = project("p1", "e1", "open", 2.0, Some(2.0));
    upsert(&*store, p, std::slice::from_ref(&v2)).await;
    let out = store
        .put(p, &[project("p1", "e1", "open", 1.0, Some(1.0))], WriteMode::Upsert)
        .await
        .expect("put");
    assert_eq!(out, vec![WriteOutcome::StaleVersion]);
    let lease = store.lease(p, &[id("p1")], LEASE).await.expect("lease");
    let out = store
        .put(
            p,
            &[project("p1", "e1", "open", 1.0, Some(1.0))],
            WriteMode::Fill(lease),
        )
        .await
        .expect("put");
    assert_eq!(out, vec![WriteOutcome::StaleVersion]);
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(v2.body));
    let v2_again = project("p1", "e1", "done", 2.0, Some(2.0));
    let v3 = project("p1", "e2", "done", 3.0, Some(3.0));
    upsert(&*store, p, &[v2_again]).await;
    upsert(&*store, p, std::slice::from_ref(&v3)).await;
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(v3.body));
}

// ------------------------------------------------------------------ queries

/// Without a completeness marker a query is `Incomplete`, even when matching records are
/// cached.
pub async fn query_without_marker_is_incomplete<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    upsert(&*store, p, &[project("p1", "e1", "open", 1.0, None)]).await;
    assert!(!is_complete(&*store, p, &by_event("e1")).await);
    assert!(!is_complete(&*store, p, &IndexQuery::all()).await);
    complete(&*store, p, &by_event("e1"), &[project("p1", "e1", "open", 1.0, None)]).await;
    assert!(is_complete(&*store, p, &by_event("e1")).await);
    assert!(
        !is_complete(&*store, p, &by_event("e2")).await,
        "markers are per filter"
    );
}

/// Complete results are ordered by score then id, both in the sort's direction; unsorted by
/// id ascending; an absent score (`-inf`) first when ascending, and so a NaN field value
/// (which [`SortKey`] scores `-inf`: no store sees a NaN).
pub async fn query_orders_by_sort_then_id<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let records = [
        project("pc", "e1", "open", 5.0, None),
        project("pa", "e1", "open", 5.0, None),
        project("pd", "e1", "open", -2.5, None),
        project("pb", "e1", "open", 10.0, None),
        project("pe", "e1", "open", f64::NEG_INFINITY, None),
        project("pf", "e1", "open", f64::NAN.sort_score(), None),
    ];
    complete(&*store, p, &by_event("e1"), &records).await;
    assert_eq!(
        page_ids(&*store, p, &sorted(by_event("e1"), Order::Asc)).await,
        ["pe", "pf", "pd", "pa", "pc", "pb"]
    );
    assert_eq!(
        page_ids(&*store, p, &sorted(by_event("e1"), Order::Desc)).await,
        ["pb", "pc", "pa", "pd", "pf", "pe"]
    );
    assert_eq!(
        page_ids(&*store, p, &by_event("e1")).await,
        ["pa", "pb", "pc", "pd", "pe", "pf"]
    );
}

/// Offset and limit page the ordered result; a page past the end is empty (and complete).
pub async fn query_pages_with_offset_and_limit<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let records: Vec<RecordWrite> = (0..7)
        .map(|i| project(&format!("p{i}"), "e1", "open", f64::from(i % 3), None))
        .collect();
    complete(&*store, p, &by_event("e1"), &records).await;
    // By points ascending, ties by id: p0 p3 p6 (0) p1 p4 (1) p2 p5 (2).
    let q = sorted(by_event("e1"), Order::Asc);
    assert_eq!(
        page_ids(&*store, p, &page(q.clone(), 2, Some(3))).await,
        ["p6", "p1", "p4"]
    );
    assert_eq!(page_ids(&*store, p, &page(q.clone(), 5, None)).await, ["p2", "p5"]);
    assert_eq!(
        page_ids(&*store, p, &page(q.clone(), 0, Some(0))).await,
        Vec::<String>::new()
    );
    assert_eq!(page_ids(&*store, p, &page(q, 9, Some(3))).await, Vec::<String>::new());
    let desc = sorted(by_event("e1"), Order::Desc);
    assert_eq!(page_ids(&*store, p, &page(desc, 1, Some(2))).await, ["p2", "p4"]);
}

/// A query with several filters answers the records matching all of them.
pub async fn query_intersects_filters<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let both = by_event("e1").filter("status", "open".to_owned());
    complete(
        &*store,
        p,
        &both,
        &[
            project("p1", "e1", "open", 1.0, None),
            project("p3", "e1", "open", 3.0, None),
        ],
    )
    .await;
    upsert(
        &*store,
        p,
        &[
            project("p2", "e1", "done", 2.0, None),
            project("p4", "e2", "open", 4.0, None),
        ],
    )
    .await;
    assert_eq!(page_ids(&*store, p, &both).await, ["p1", "p3"]);
    upsert(&*store, p, &[project("p2", "e1", "open", 2.0, None)]).await;
    assert_eq!(page_ids(&*store, p, &both).await, ["p1", "p2", "p3"]);
}

/// A query fill is refused when the entity was written (upsert, invalidation, tombstone)
/// since its token was issued.
pub async fn complete_query_refused_after_write<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let q = by_event("e1");
    let fill = [project("p1", "e1", "open", 1.0, None)];
    let writes: [(&str, RemoveMode); 3] = [
        ("upsert", RemoveMode::Invalidate),
        ("invalidate", RemoveMode::Invalidate),
        ("tombstone", RemoveMode::Tombstone(Tombstone::new(LONG))),
    ];
    for (what, mode) in writes {
        let t = token(&*store, p, &q).await;
        if what == "upsert" {
            // A record of another index value: any write to the entity voids the token.
            upsert(&*store, p, &[project("p9", "e9", "open", 1.0, None)]).await;
        } else {
            store.remove(p, &[id("p8")], mode).await.expect("remove");
        }
        let accepted = store
            .complete_query(p, &q, t, &fill)
            .await
            .expect("complete_query")
            .is_complete();
        assert!(!accepted, "a query fill after a concurrent {what} is refused");
        assert!(!is_complete(&*store, p, &q).await, "after a refused fill ({what})");
    }
}

/// A complete answer carries the entity's current fill token, as an incomplete one does: a
/// refill with it (a `no-cache` refresh) is accepted, and refused after a write.
pub async fn complete_answer_carries_a_current_token<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let q = by_event("e1");
    complete(&*store, p, &q, &[project("p1", "e1", "open", 1.0, None)]).await;
    let complete_token = |lookup: QueryLookup| match lookup {
        QueryLookup::Complete { token, .. } => token,
        QueryLookup::Incomplete(_) => panic!("{q:?} should be complete"),
    };
    let t = complete_token(store.query(p, &q).await.expect("query"));
    let refill = [
        project("p1", "e1", "open", 1.0, None),
        project("p2", "e1", "open", 2.0, None),
    ];
    let accepted = store
        .complete_query(p, &q, t, &refill)
        .await
        .expect("complete_query")
        .is_complete();
    assert!(accepted, "a refill with the token of a complete answer");
    assert_eq!(page_ids(&*store, p, &q).await, ["p1", "p2"]);
    let t = complete_token(store.query(p, &q).await.expect("query"));
    store
        .remove(p, &[id("p1")], RemoveMode::Tombstone(Tombstone::new(LONG)))
        .await
        .expect("remove");
    let accepted = store
        .complete_query(p, &q, t, &refill)
        .await
        .expect("complete_query")
        .is_complete();
    assert!(!accepted, "a refill after a write is refused");
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Tombstone, "the delete stays");
    assert_eq!(page_ids(&*store, p, &q).await, ["p2"]);
}

/// Read-through fills are not writes: a record fill, a fill tombstone or another query's fill
/// between a query's miss and its fill leave its token valid.
pub async fn complete_query_survives_fills<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let q = by_event("e1");
    let t = token(&*store, p, &q).await;
    let lease = store.lease(p, &[id("p7"), id("p8")], LEASE).await.expect("lease");
    store
        .put(p, &[project("p7", "e7", "open", 1.0, None)], WriteMode::Fill(lease))
        .await
        .expect("put");
    store
        .remove(p, &[id("p8")], RemoveMode::FillTombstone { lease, ttl: LONG })
        .await
        .expect("remove");
    complete(&*store, p, &by_event("e2"), &[project("p2", "e2", "open", 1.0, None)]).await;
    let accepted = store
        .complete_query(p, &q, t, &[project("p1", "e1", "open", 1.0, None)])
        .await
        .expect("complete_query")
        .is_complete();
    assert!(accepted, "fills are not writes");
    assert_eq!(page_ids(&*store, p, &q).await, ["p1"]);
}

/// An invalidation drops every completeness marker of its entity (where the record now
/// belongs is unknown), and only of its entity.
pub async fn invalidation_drops_markers_of_its_entity_only<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let (p, u) = (projects(), users());
    complete(&*store, p, &by_event("e1"), &[project("p1", "e1", "open", 1.0, None)]).await;
    complete(
        &*store,
        p,
        &IndexQuery::all(),
        &[project("p1", "e1", "open", 1.0, None)],
    )
    .await;
    let by_email = IndexQuery::all().filter("email", "ada@example.com".to_owned());
    complete(&*store, u, &by_email, &[user("u1", "ada@example.com")]).await;
    store
        .remove(p, &[id("p-unrelated")], RemoveMode::Invalidate)
        .await
        .expect("remove");
    assert!(!is_complete(&*store, p, &by_event("e1")).await);
    assert!(!is_complete(&*store, p, &IndexQuery::all()).await);
    assert!(
        is_complete(&*store, u, &by_email).await,
        "other entities keep their markers"
    );
}

/// An upsert moving a record from one index value to another keeps both complete results
/// correct.
pub async fn upsert_moves_record_between_complete_results<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    complete(
        &*store,
        p,
        &by_event("e1"),
        &[
            project("p1", "e1", "open", 1.0, None),
            project("p2", "e1", "open", 2.0, None),
        ],
    )
    .await;
    complete(&*store, p, &by_event("e2"), &[project("p3", "e2", "open", 3.0, None)]).await;
    upsert(&*store, p, &[project("p1", "e2", "open", 1.0, None)]).await;
    assert_eq!(page_ids(&*store, p, &by_event("e1")).await, ["p2"]);
    assert_eq!(page_ids(&*store, p, &by_event("e2")).await, ["p1", "p3"]);
}

/// An upsert changing a record's sortable value re-orders complete results.
pub async fn upsert_reorders_complete_results<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let q = sorted(by_event("e1"), Order::Desc);
    complete(
        &*store,
        p,
        &q,
        &[
            project("p1", "e1", "open", 1.0, None),
            project("p2", "e1", "open", 2.0, None),
            project("p3", "e1", "open", 3.0, None),
        ],
    )
    .await;
    assert_eq!(page_ids(&*store, p, &q).await, ["p3", "p2", "p1"]);
    upsert(&*store, p, &[project("p1", "e1", "open", 2.5, None)]).await;
    assert_eq!(page_ids(&*store, p, &q).await, ["p3", "p1", "p2"]);
    assert_eq!(page_ids(&*store, p, &page(q, 0, Some(2))).await, ["p3", "p1"]);
}

/// A record upserted for the first time enters the complete results it matches, filtered
/// and unfiltered.
pub async fn new_record_enters_complete_results<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let existing = [project("p1", "e1", "open", 1.0, None)];
    complete(&*store, p, &by_event("e1"), &existing).await;
    complete(&*store, p, &IndexQuery::all(), &existing).await;
    upsert(&*store, p, &[project("p0", "e1", "open", 1.0, None)]).await;
    upsert(&*store, p, &[project("p5", "e5", "open", 1.0, None)]).await;
    assert_eq!(page_ids(&*store, p, &by_event("e1")).await, ["p0", "p1"]);
    assert_eq!(page_ids(&*store, p, &IndexQuery::all()).await, ["p0", "p1", "p5"]);
}

/// A tombstone (delete) removes the record from complete results, which stay complete.
pub async fn tombstone_keeps_complete_results_correct<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let records = [
        project("p1", "e1", "open", 1.0, None),
        project("p2", "e1", "open", 2.0, None),
    ];
    complete(&*store, p, &by_event("e1"), &records).await;
    complete(&*store, p, &IndexQuery::all(), &records).await;
    store
        .remove(p, &[id("p1")], RemoveMode::Tombstone(Tombstone::new(LONG)))
        .await
        .expect("remove");
    assert_eq!(page_ids(&*store, p, &by_event("e1")).await, ["p2"]);
    assert_eq!(page_ids(&*store, p, &IndexQuery::all()).await, ["p2"]);
}

/// A query fill leaves records whose cached version is newer as they are (and files them
/// where their newer entries say).
pub async fn complete_query_keeps_newer_versions<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let q = by_event("e1");
    let t = token(&*store, p, &q).await;
    let lease = store.lease(p, &[id("p1")], LEASE).await.expect("lease");
    let newer = project("p1", "e2", "open", 1.0, Some(5.0));
    store
        .put(p, std::slice::from_ref(&newer), WriteMode::Fill(lease))
        .await
        .expect("put");
    let accepted = store
        .complete_query(
            p,
            &q,
            t,
            &[
                project("p1", "e1", "open", 1.0, Some(4.0)),
                project("p2", "e1", "open", 2.0, Some(1.0)),
            ],
        )
        .await
        .expect("complete_query")
        .is_complete();
    assert!(accepted);
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(newer.body));
    assert_eq!(page_ids(&*store, p, &q).await, ["p2"]);
}

/// A query fill forgets cached records the store files under its filters but the origin's
/// complete result lacks, so the marked result is exactly the origin's.
pub async fn complete_query_forgets_records_the_origin_dropped<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let lease = store.lease(p, &[id("p1"), id("p2")], LEASE).await.expect("lease");
    store
        .put(
            p,
            &[
                project("p1", "e1", "open", 1.0, None),
                project("p2", "e2", "open", 2.0, None),
            ],
            WriteMode::Fill(lease),
        )
        .await
        .expect("put");
    // The source moved p1 away from e1; nobody told the cache.
    complete(&*store, p, &by_event("e1"), &[project("p3", "e1", "open", 3.0, None)]).await;
    assert_eq!(page_ids(&*store, p, &by_event("e1")).await, ["p3"]);
    assert_eq!(
        lookup(&*store, p, "p1").await,
        Lookup::Miss,
        "forgotten, not tombstoned"
    );
    assert!(
        matches!(lookup(&*store, p, "p2").await, Lookup::Hit(_)),
        "outside the filter"
    );
}

/// A query fill clears the tombstones of the records it writes.
pub async fn complete_query_clears_tombstones<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    store
        .remove(p, &[id("p1")], RemoveMode::Tombstone(Tombstone::new(LONG)))
        .await
        .expect("remove");
    let back = project("p1", "e1", "open", 1.0, None);
    complete(&*store, p, &by_event("e1"), std::slice::from_ref(&back)).await;
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Hit(back.body));
    assert_eq!(page_ids(&*store, p, &by_event("e1")).await, ["p1"]);
}

/// A record of a complete result that expired (or was evicted) makes the pages containing it
/// `Incomplete`, never a partial answer; pages without it stay complete.
pub async fn expired_record_in_page_makes_query_incomplete<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let mut short = project("p2", "e1", "open", 2.0, None);
    short.ttl = Duration::from_millis(5);
    let q = sorted(by_event("e1"), Order::Asc);
    complete(
        &*store,
        p,
        &q,
        &[
            project("p1", "e1", "open", 1.0, None),
            short,
            project("p3", "e1", "open", 3.0, None),
        ],
    )
    .await;
    let s = &*store;
    eventually("p2 expires", || async move { lookup(s, p, "p2").await == Lookup::Miss }).await;
    assert!(!is_complete(s, p, &q).await, "the whole result holds an expired record");
    assert!(
        !is_complete(s, p, &page(q.clone(), 1, Some(1))).await,
        "the page holding it"
    );
    assert_eq!(page_ids(s, p, &page(q, 0, Some(1))).await, ["p1"], "a page without it");
}

/// Records, tombstones and values expire after their TTL; longer-lived ones stay.
pub async fn ttl_expires_records_tombstones_and_values<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let short = Duration::from_millis(5);
    let mut brief = project("p1", "e1", "open", 1.0, None);
    brief.ttl = short;
    upsert(&*store, p, &[brief, project("p2", "e1", "open", 1.0, None)]).await;
    store
        .remove(p, &[id("p3")], RemoveMode::Tombstone(Tombstone::new(short)))
        .await
        .expect("remove");
    store
        .put_value("brief", Bytes::from_static(b"1"), short, &[])
        .await
        .expect("put_value");
    store
        .put_value("lasting", Bytes::from_static(b"2"), LONG, &[])
        .await
        .expect("put_value");
    let s = &*store;
    eventually("the short-lived entries expire", || async move {
        lookup(s, p, "p1").await == Lookup::Miss
            && lookup(s, p, "p3").await == Lookup::Miss
            && s.get_value("brief").await.expect("get_value").is_none()
    })
    .await;
    assert!(matches!(lookup(s, p, "p2").await, Lookup::Hit(_)));
    assert_eq!(
        s.get_value("lasting").await.expect("get_value"),
        Some(Bytes::from_static(b"2"))
    );
}

// ------------------------------------------------------------------ maintenance

/// `scan_ids` lists the entity's cached records (not tombstones, not other entities', not
/// removed ones) in batches.
pub async fn scan_ids_lists_cached_ids_in_batches<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let writes: Vec<RecordWrite> = (0..25)
        .map(|i| project(&format!("p{i:02}"), "e1", "open", 1.0, None))
        .collect();
    upsert(&*store, p, &writes).await;
    upsert(&*store, users(), &[user("u1", "a@example.com")]).await;
    store
        .remove(p, &[id("p03"), id("p04")], RemoveMode::Tombstone(Tombstone::new(LONG)))
        .await
        .expect("remove");
    store
        .remove(p, &[id("p05")], RemoveMode::Invalidate)
        .await
        .expect("remove");
    let mut seen = BTreeSet::new();
    let mut scan = store.scan_ids(p, 10);
    while let Some(batch) = scan.next().await {
        let batch = batch.expect("scan");
        assert!(
            batch.len() <= 50,
            "batches are about the size asked, got {}",
            batch.len()
        );
        seen.extend(batch.into_iter().map(|id| id.as_str().to_owned()));
    }
    let expected: BTreeSet<String> = (0..25)
        .filter(|i| ![3, 4, 5].contains(i))
        .map(|i| format!("p{i:02}"))
        .collect();
    assert_eq!(seen, expected);
}

/// `flush(None)` removes everything (records, tombstones, values, markers); a pattern that
/// matches nothing removes nothing; `*` removes everything.
pub async fn flush_all_and_by_pattern<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let p = projects();
    let fill = async |store: &dyn Store| {
        complete(store, p, &by_event("e1"), &[project("p1", "e1", "open", 1.0, None)]).await;
        store
            .remove(p, &[id("p2")], RemoveMode::Tombstone(Tombstone::new(LONG)))
            .await
            .expect("remove");
        store
            .put_value("k", Bytes::from_static(b"v"), LONG, &["t".to_owned()])
            .await
            .expect("put_value");
    };
    fill(&*store).await;
    assert_eq!(store.flush(Some("zz-matches-nothing-*")).await.expect("flush"), 0);
    assert!(matches!(lookup(&*store, p, "p1").await, Lookup::Hit(_)));
    let removed = store.flush(None).await.expect("flush");
    assert!(
        removed >= 3,
        "records, tombstones and values are keys: removed {removed}"
    );
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Miss);
    assert_eq!(lookup(&*store, p, "p2").await, Lookup::Miss);
    assert_eq!(store.get_value("k").await.expect("get_value"), None);
    assert!(!is_complete(&*store, p, &by_event("e1")).await, "markers go too");
    fill(&*store).await;
    assert!(store.flush(Some("*")).await.expect("flush") >= 3);
    assert_eq!(lookup(&*store, p, "p1").await, Lookup::Miss);
    assert!(!is_complete(&*store, p, &by_event("e1")).await);
}

/// Two stores from the factory (two namespaces) do not see each other; flushing one leaves
/// the other.
pub async fn flush_stays_in_its_namespace<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let a = fresh(&factory).await;
    let b = fresh(&factory).await;
    let p = projects();
    upsert(&*a, p, &[project("p1", "e1", "open", 1.0, None)]).await;
    upsert(&*b, p, &[project("p1", "e1", "open", 1.0, None)]).await;
    b.put_value("k", Bytes::from_static(b"v"), LONG, &[])
        .await
        .expect("put_value");
    a.flush(None).await.expect("flush");
    a.flush(Some("*")).await.expect("flush");
    assert_eq!(lookup(&*a, p, "p1").await, Lookup::Miss);
    assert!(matches!(lookup(&*b, p, "p1").await, Lookup::Hit(_)));
    assert_eq!(
        b.get_value("k").await.expect("get_value"),
        Some(Bytes::from_static(b"v"))
    );
}

/// Values are stored with TTLs and tags; `purge_tags` removes every value under any of the
/// tags and answers how many.
pub async fn values_with_tags_are_purged<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(store.get_value("a").await.expect("get_value"), None);
    store
        .put_value(
            "a",
            Bytes::from_static(b"A"),
            LONG,
            &tags(&["projects:p1", "projects?*"]),
        )
        .await
        .expect("put_value");
    store
        .put_value("b", Bytes::from_static(b"B"), LONG, &tags(&["projects?event=e1"]))
        .await
        .expect("put_value");
    store
        .put_value("c", Bytes::from_static(b"C"), LONG, &tags(&["users:u1"]))
        .await
        .expect("put_value");
    assert_eq!(
        store.get_value("a").await.expect("get_value"),
        Some(Bytes::from_static(b"A"))
    );
    assert_eq!(store.purge_tags(&tags(&["nothing"])).await.expect("purge"), 0);
    let removed = store
        .purge_tags(&tags(&["projects:p1", "projects?event=e1", "projects?*"]))
        .await
        .expect("purge");
    assert_eq!(removed, 2, "each value counts once");
    assert_eq!(store.get_value("a").await.expect("get_value"), None);
    assert_eq!(store.get_value("b").await.expect("get_value"), None);
    assert_eq!(
        store.get_value("c").await.expect("get_value"),
        Some(Bytes::from_static(b"C"))
    );
    assert_eq!(store.purge_tags(&tags(&["projects:p1"])).await.expect("purge"), 0);
    store
        .put_value("a", Bytes::from_static(b"A2"), LONG, &tags(&["projects:p1"]))
        .await
        .expect("put_value");
    assert_eq!(store.purge_tags(&tags(&["projects:p1"])).await.expect("purge"), 1);
}

/// `ping` answers; `stats` names the backend and counts keys.
pub async fn ping_and_stats<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    store.ping().await.expect("ping");
    upsert(
        &*store,
        projects(),
        &[
            project("p1", "e1", "open", 1.0, None),
            project("p2", "e1", "open", 1.0, None),
        ],
    )
    .await;
    let stats = store.stats().await.expect("stats");
    assert!(!stats.backend.is_empty(), "stats name the backend");
    assert!(stats.total_keys >= 2, "two records are at least two keys: {stats:?}");
}

/// The same id in two entities is two records; queries and removals stay in their entity.
pub async fn entities_are_separate<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let (p, u) = (projects(), users());
    let pr = project("x1", "e1", "open", 1.0, None);
    let us = user("x1", "ada@example.com");
    upsert(&*store, p, std::slice::from_ref(&pr)).await;
    upsert(&*store, u, std::slice::from_ref(&us)).await;
    assert_eq!(lookup(&*store, p, "x1").await, Lookup::Hit(pr.body));
    assert_eq!(lookup(&*store, u, "x1").await, Lookup::Hit(us.body.clone()));
    complete(
        &*store,
        p,
        &IndexQuery::all(),
        &[project("x1", "e1", "open", 1.0, None)],
    )
    .await;
    store
        .remove(p, &[id("x1")], RemoveMode::Tombstone(Tombstone::new(LONG)))
        .await
        .expect("remove");
    assert_eq!(lookup(&*store, u, "x1").await, Lookup::Hit(us.body));
    assert_eq!(page_ids(&*store, p, &IndexQuery::all()).await, Vec::<String>::new());
}

// ------------------------------------------------------------------ computed values

fn computed(value: &'static str, tags: &[&str], stamp: PurgeStamp, lock: Option<ComputeLock>) -> ComputedWrite {
    ComputedWrite {
        value: Bytes::from_static(value.as_bytes()),
        ttl: LONG,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        stamp,
        lock,
    }
}

async fn stamp(store: &dyn Store, key: &str) -> PurgeStamp {
    store.get_computed(key).await.expect("get_computed").stamp
}

async fn acquire(store: &dyn Store, key: &str, ttl: Duration) -> ComputeLock {
    match store.lock_computed(key, ttl).await.expect("lock_computed") {
        LockAttempt::Acquired(lock) => lock,
        LockAttempt::Held => panic!("the lock on {key} is free"),
    }
}

async fn is_held(store: &dyn Store, key: &str) -> bool {
    // Probing takes the lock when it is free: release it again.
    match store.lock_computed(key, LONG).await.expect("lock_computed") {
        LockAttempt::Held => true,
        LockAttempt::Acquired(lock) => {
            store.unlock_computed(key, lock).await.expect("unlock_computed");
            false
        }
    }
}

/// A computed value is a value: stored with its tags, read by `get_computed` and `get_value`,
/// removed by a purge of any of its tags.
pub async fn computed_values_are_values_purged_by_their_tags<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lookup = store.get_computed("stats:e1").await.expect("get_computed");
    assert_eq!(lookup.value, None);
    let write = computed("S", &["projects?event=e1", "events:e1"], lookup.stamp, None);
    assert!(store.put_computed("stats:e1", &write).await.expect("put_computed"));
    let found = store.get_computed("stats:e1").await.expect("get_computed");
    assert_eq!(found.value, Some(Bytes::from_static(b"S")));
    assert_eq!(
        store.get_value("stats:e1").await.expect("get_value"),
        Some(Bytes::from_static(b"S"))
    );
    assert_eq!(store.purge_tags(&["events:e1".to_owned()]).await.expect("purge"), 1);
    assert_eq!(store.get_computed("stats:e1").await.expect("get_computed").value, None);
}

/// A value computed across a purge of one of its tags (the purge came after its lookup) is
/// refused; with other tags, or after a fresh lookup, it is stored.
pub async fn computed_value_refused_after_a_purge_of_its_tags<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let before = stamp(&*store, "stats:e1").await;
    // Nothing is recorded under the tag yet: the purge must still be remembered.
    assert_eq!(store.purge_tags(&["projects:p1".to_owned()]).await.expect("purge"), 0);
    let refused = computed("old", &["events:e1", "projects:p1"], before, None);
    assert!(!store.put_computed("stats:e1", &refused).await.expect("put_computed"));
    assert_eq!(store.get_computed("stats:e1").await.expect("get_computed").value, None);
    let unrelated = computed("other", &["users:u1"], before, None);
    assert!(store.put_computed("stats:u1", &unrelated).await.expect("put_computed"));
    let after = stamp(&*store, "stats:e1").await;
    let fresh_write = computed("new", &["events:e1", "projects:p1"], after, None);
    assert!(
        store
            .put_computed("stats:e1", &fresh_write)
            .await
            .expect("put_computed")
    );
    assert_eq!(
        store.get_computed("stats:e1").await.expect("get_computed").value,
        Some(Bytes::from_static(b"new"))
    );
}

/// One holder at a time; only its token releases the lock, by an unlock or by storing the
/// value (even a refused one).
pub async fn compute_lock_is_exclusive_until_released<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lock = acquire(&*store, "k", LONG).await;
    assert_eq!(store.lock_computed("k", LONG).await.expect("lock"), LockAttempt::Held);
    assert!(!is_held(&*store, "other").await, "locks are per key");
    store
        .unlock_computed("k", ComputeLock(lock.0.wrapping_add(1)))
        .await
        .expect("unlock");
    assert!(is_held(&*store, "k").await, "another token does not release it");
    store.unlock_computed("k", lock).await.expect("unlock");
    let lock = acquire(&*store, "k", LONG).await;
    let s = stamp(&*store, "k").await;
    store.purge_tags(&["t".to_owned()]).await.expect("purge");
    let write = computed("v", &["t"], s, Some(lock));
    assert!(!store.put_computed("k", &write).await.expect("put_computed"), "refused");
    assert!(!is_held(&*store, "k").await, "a refused write still releases the lock");
    let lock = acquire(&*store, "k", LONG).await;
    let s = stamp(&*store, "k").await;
    assert!(
        store
            .put_computed("k", &computed("v", &[], s, Some(lock)))
            .await
            .expect("put")
    );
    assert!(!is_held(&*store, "k").await, "storing the value releases the lock");
}

/// A lock whose holder went away frees itself after its TTL.
pub async fn compute_lock_expires<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    acquire(&*store, "k", Duration::from_millis(5)).await;
    let s = &*store;
    eventually("the lock expires", || async move { !is_held(s, "k").await }).await;
}

/// A waiter gets the value its holder stores.
pub async fn waiter_is_woken_by_the_value<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lock = acquire(&*store, "k", LONG).await;
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_computed("k", Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    let s = stamp(&*store, "k").await;
    assert!(
        store
            .put_computed("k", &computed("V", &[], s, Some(lock)))
            .await
            .expect("put")
    );
    let woken = waiter.await.expect("the waiter task").expect("wait_computed");
    assert_eq!(woken, LockWait::Value(Bytes::from_static(b"V")));
}

/// A waiter whose holder fails (unlocks without a value) stops waiting at once.
pub async fn waiter_is_released_by_a_failed_owner<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let lock = acquire(&*store, "k", LONG).await;
    let waiter = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.wait_computed("k", Duration::from_secs(30)).await })
    };
    tokio::task::yield_now().await;
    store.unlock_computed("k", lock).await.expect("unlock");
    let started = Instant::now();
    let woken = waiter.await.expect("the waiter task").expect("wait_computed");
    assert_eq!(woken, LockWait::Released);
    assert!(started.elapsed() < Duration::from_secs(20), "woken, not timed out");
}

/// A wait lasts at most its bound.
pub async fn wait_ends_at_its_bound<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    acquire(&*store, "k", LONG).await;
    let waited = store
        .wait_computed("k", Duration::from_millis(50))
        .await
        .expect("wait_computed");
    assert_eq!(waited, LockWait::TimedOut);
}

/// Nothing to wait for: the value is there, or nobody holds the lock.
pub async fn wait_answers_at_once_without_a_lock<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let bound = Duration::from_secs(30);
    assert_eq!(store.wait_computed("k", bound).await.expect("wait"), LockWait::Released);
    let s = stamp(&*store, "k").await;
    assert!(
        store
            .put_computed("k", &computed("V", &[], s, None))
            .await
            .expect("put")
    );
    acquire(&*store, "k", LONG).await;
    assert_eq!(
        store.wait_computed("k", bound).await.expect("wait"),
        LockWait::Value(Bytes::from_static(b"V"))
    );
}

// ------------------------------------------------------------------ watermarks

/// A watermark is raised, never lowered; an equal value is accepted again (a retried claim);
/// integers compare exactly, beyond what a double holds; concurrent claims leave the highest.
pub async fn watermark_only_moves_forward<F, Fut, S>(factory: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
    S: IntoStore,
{
    let store = fresh(&factory).await;
    let advance = |key: &'static str, value: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .advance_watermark(key, value, LONG)
                .await
                .expect("advance_watermark")
        }
    };
    let read = |key: &'static str| {
        let store = Arc::clone(&store);
        async move { store.get_value(key).await.expect("get_value") }
    };
    assert!(advance("w", 10).await, "a missing watermark is set");
    assert_eq!(read("w").await, Some(Bytes::from_static(b"10")));
    assert!(!advance("w", 9).await, "a lower value is refused");
    assert_eq!(read("w").await, Some(Bytes::from_static(b"10")));
    assert!(advance("w", 10).await, "an equal value is accepted again");
    assert!(advance("w", 11).await);
    assert_eq!(read("w").await, Some(Bytes::from_static(b"11")));
    assert_eq!(read("other").await, None, "watermarks are per key");

    assert!(advance("big", i64::MAX).await);
    assert!(!advance("big", i64::MAX - 1).await, "compared exactly, not as doubles");
    assert!(advance("negative", -5).await);
    assert!(!advance("negative", -10).await);
    assert!(advance("negative", 0).await);
    assert!(!advance("negative", -1).await);

    store
        .put_value("garbage", Bytes::from_static(b"not a mark"), LONG, &[])
        .await
        .expect("put_value");
    assert!(
        advance("garbage", -1).await,
        "a value that is not an integer counts as missing"
    );

    let values = [7, 3, 19, 11, 20, 1, 15, 20, 4];
    let claims = futures::future::join_all(values.iter().map(|&v| advance("raced", v))).await;
    assert_eq!(read("raced").await, Some(Bytes::from_static(b"20")));
    for (value, claimed) in values.iter().zip(claims) {
        if *value == 20 {
            assert!(claimed, "the highest value is always accepted");
        }
    }
}
