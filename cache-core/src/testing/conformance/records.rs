//! Records, their tombstones, leases and versions.

use super::*;

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
