//! Maintenance: scans, flushes, values purged by tag, stats, namespaces.

use super::*;

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
