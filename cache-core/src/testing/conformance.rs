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

mod computed;
mod deletes;
mod maintenance;
mod queries;
mod records;
mod watermarks;

pub use self::{computed::*, deletes::*, maintenance::*, queries::*, records::*, watermarks::*};
use crate::{
    Order, RecordId,
    query::{IndexQuery, Sort},
    schema::{EntitySchema, FieldKind, FieldSchema, IndexEntries, IndexKind, SortKey},
    store::{
        ComputeLock, ComputedWrite, FillToken, IntoStore, LockAttempt, LockWait, Lookup, PurgeStamp, QueryLookup,
        RecordWrite, RemoveMode, Store, Tombstone, WriteMode, WriteOutcome,
    },
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
            compute_lock_extends_for_its_holder_only,
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
            a_redelivery_after_an_untimed_invalidation_is_refused,
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
