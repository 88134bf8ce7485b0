//! Index queries: completeness markers, fill tokens, order, pages and how writes keep complete results right.

use super::*;

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
