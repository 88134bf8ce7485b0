//! Every cache operation on the memory store with a memory origin: reads, tombstones, TTLs,
//! queries and their completeness, writes and what they purge, the disabled cache, telemetry,
//! the registry and the sweep.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cache_core::{
    CacheError, Cacheable, ConfigError, Query, RecordId, UpsertOutcome,
    dependencies::{self, DependencyScope},
    keys,
    origin::SourceRecord,
    schema::ModelError,
    store::Store,
    testing::OriginMethod,
};
use common::*;
use serde_json::json;

const TTL: Duration = Duration::from_secs(8 * 3600);

fn projects_seed() -> Vec<Project> {
    vec![
        project("recP1", "recE1", Status::Submitted, 30, 1),
        project("recP2", "recE1", Status::Submitted, 10, 1),
        project("recP3", "recE1", Status::Draft, 20, 1),
        project("recP4", "recE2", Status::Submitted, 20, 1),
        project("recP5", "recE1", Status::Submitted, 10, 1),
    ]
}

// ------------------------------------------------------------------ get

#[tokio::test]
async fn get_fills_on_miss_then_hits() {
    let h = harness();
    h.seed(&projects_seed());
    let first: Option<Project> = h.cache.get(&id("recP1")).await.unwrap();
    assert_eq!(first, Some(projects_seed()[0].clone()));
    let again: Option<Project> = h.cache.get(&id("recP1")).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1, "the second read is a hit");
    let stats = h.cache.stats().entity("projects");
    assert_eq!((stats.hits, stats.misses, stats.origin_calls), (1, 1, 1));
}

#[tokio::test]
async fn unknown_ids_are_tombstoned_until_the_tombstone_ttl() {
    let h = harness_with(|b| b.ttl_jitter(0.0));
    assert_eq!(h.cache.get::<Project>(&id("recNope")).await.unwrap(), None);
    assert_eq!(h.cache.get::<Project>(&id("recNope")).await.unwrap(), None);
    assert_eq!(
        h.origin.count(OriginMethod::Fetch),
        1,
        "the tombstone answers without the origin"
    );
    assert_eq!(h.cache.stats().entity("projects").tombstone_hits, 1);
    // Project's tombstone TTL is 1h.
    h.clock.advance(HOUR + Duration::from_secs(1));
    h.seed(&[project("recNope", "recE1", Status::Draft, 1, 1)]);
    assert!(h.cache.get::<Project>(&id("recNope")).await.unwrap().is_some());
    assert_eq!(h.origin.count(OriginMethod::Fetch), 2);
}

#[tokio::test]
async fn records_expire_after_their_ttl_with_jitter() {
    let h = harness();
    h.seed(&projects_seed());
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    // Default jitter: 8h +/- 5%.
    h.clock.advance(TTL.mul_f64(0.94));
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1, "alive before 95% of the TTL");
    h.clock.advance(TTL.mul_f64(0.12));
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    assert_eq!(h.origin.count(OriginMethod::Fetch), 2, "expired after 105% of the TTL");
}

#[tokio::test]
async fn origin_failures_are_errors_and_never_cached() {
    let h = harness();
    h.seed(&projects_seed());
    h.origin.fail(OriginMethod::Fetch);
    let err = h.cache.get::<Project>(&id("recP1")).await.unwrap_err();
    assert!(matches!(err, CacheError::Origin(_)), "{err:?}");
    assert!(err.origin_error().is_some());
    h.origin.heal();
    assert!(h.cache.get::<Project>(&id("recP1")).await.unwrap().is_some());
    assert_eq!(h.origin.count(OriginMethod::Fetch), 2);
    assert_eq!(h.cache.stats().entity("projects").origin_errors, 1);
}

#[tokio::test]
async fn a_source_record_that_does_not_parse_is_a_model_error() {
    let h = harness();
    let broken = SourceRecord {
        id: id("recU9"),
        fields: json!({"Display Name": 42, "email": "a@b.c"})
            .as_object()
            .unwrap()
            .clone(),
    };
    h.origin.put_raw(
        <User as cache_core::Cacheable>::schema(),
        broken,
        cache_core::schema::IndexEntries::default(),
    );
    let err = h.cache.get::<User>(&id("recU9")).await.unwrap_err();
    match err {
        CacheError::Model(ModelError::Field { entity, field, .. }) => {
            assert_eq!((entity, field.as_str()), ("users", "Display Name"));
        }
        other => panic!("expected a field error, got {other:?}"),
    }
    assert_eq!(
        h.memory
            .get(<User as cache_core::Cacheable>::schema(), &id("recU9"))
            .await
            .unwrap(),
        cache_core::store::Lookup::Miss,
        "an unparseable record is neither cached nor tombstoned"
    );
}

/// Whether the memory store keeps a decoded `Project` beside the bytes of `rid`.
async fn copy_kept(h: &Harness, rid: &str) -> bool {
    let (_, copy) = h.memory.get_with_copy(Project::schema(), &id(rid)).await.unwrap();
    copy.is_some_and(|c| c.get::<Project>().is_some())
}

#[tokio::test]
async fn a_decoded_copy_never_outlives_its_bytes() {
    let h = harness_with(|b| b.ttl_jitter(0.0));
    let v1 = project("recP1", "recE1", Status::Draft, 10, 1);
    h.seed(std::slice::from_ref(&v1));
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v1.clone()));
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v1.clone()));
    assert!(copy_kept(&h, "recP1").await, "the first hit kept its decoded record");
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v1.clone()));

    // A write through the cache.
    let v2 = project("recP1", "recE1", Status::Submitted, 20, 2);
    assert_eq!(h.cache.upsert(&v2).await.unwrap(), UpsertOutcome::Stored);
    assert!(!copy_kept(&h, "recP1").await, "a new write starts without a copy");
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v2.clone()));
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v2.clone()));

    // A write straight to the store (another path to the same bytes, as a change feed's).
    let v3 = project("recP1", "recE1", Status::Judged, 30, 3);
    let write = cache_core::store::RecordWrite {
        id: id("recP1"),
        body: Bytes::from(v3.to_cached().unwrap()),
        index: v3.index_entries(),
        version: Some(3.0),
        at: None,
        ttl: TTL,
    };
    h.memory
        .put(Project::schema(), &[write], cache_core::store::WriteMode::Upsert)
        .await
        .unwrap();
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v3.clone()));
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v3.clone()));

    // An invalidation: the next read asks the origin.
    let v4 = project("recP1", "recE1", Status::Judged, 40, 4);
    h.seed(std::slice::from_ref(&v4));
    h.cache.invalidate::<Project>(&id("recP1")).await.unwrap();
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v4.clone()));
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v4.clone()));
    assert!(copy_kept(&h, "recP1").await);

    // The record's expiry on the injected clock.
    let v5 = project("recP1", "recE1", Status::Judged, 50, 5);
    h.seed(std::slice::from_ref(&v5));
    h.clock.advance(TTL + Duration::from_secs(1));
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v5.clone()));
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v5));
    assert_eq!(
        h.origin.count(OriginMethod::Fetch),
        3,
        "filled after the invalidation and the expiry"
    );

    // A delete stays deleted.
    assert!(h.cache.delete::<Project>(&id("recP1")).await.unwrap());
    assert!(!copy_kept(&h, "recP1").await);
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), None);
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), None);
}

#[tokio::test]
async fn a_hit_on_a_decoded_copy_is_counted_as_a_hit() {
    let h = harness();
    h.seed(&projects_seed());
    for _ in 0..3 {
        assert!(h.cache.get::<Project>(&id("recP1")).await.unwrap().is_some());
    }
    let stats = h.cache.stats().entity("projects");
    assert_eq!((stats.hits, stats.misses, stats.origin_calls), (2, 1, 1));
    let scope = DependencyScope::new();
    let found = dependencies::scope(scope.clone(), h.cache.get::<Project>(&id("recP1")))
        .await
        .unwrap();
    assert!(found.is_some());
    assert_eq!(scope.counts().hits, 1);
    assert!(
        scope
            .snapshot()
            .tags
            .contains(&keys::record_tag("projects", &id("recP1")))
    );
}

// ------------------------------------------------------------------ get_many

#[tokio::test]
async fn get_many_answers_in_order_with_one_round_trip_and_one_origin_call() {
    let h = harness();
    h.seed(&projects_seed());
    h.cache.get::<Project>(&id("recP2")).await.unwrap();
    h.cache.get::<Project>(&id("recGone")).await.unwrap();
    h.origin.reset_calls();
    let (gets, get_manys) = (h.store.calls("get"), h.store.calls("get_many"));

    let asked = ids(&["recP3", "recP2", "recGone", "recNope", "recP1", "recP3"]);
    let found: Vec<Project> = h.cache.get_many(&asked).await.unwrap();
    assert_eq!(
        ids_of(&found),
        ["recP3", "recP2", "recP1"],
        "in order, missing absent, once each"
    );
    assert_eq!(h.store.calls("get_many") - get_manys, 1, "one store round trip");
    assert_eq!(h.store.calls("get") - gets, 0);
    let calls = h.origin.calls();
    assert_eq!(calls.len(), 1, "one origin call: {calls:?}");
    assert_eq!(calls[0].method, OriginMethod::FetchMany);
    assert_eq!(
        calls[0].ids,
        ids(&["recP3", "recNope", "recP1"]),
        "hits and tombstones are not asked"
    );

    let again: Vec<Project> = h.cache.get_many(&ids(&["recNope", "recP1"])).await.unwrap();
    assert_eq!(ids_of(&again), ["recP1"]);
    assert_eq!(h.origin.total_calls(), 1, "the id the origin lacked is now a tombstone");
    assert!(h.cache.get_many::<Project>(&[]).await.unwrap().is_empty());
}

// ------------------------------------------------------------------ queries

async fn origin_answer(h: &Harness, q: &Query<Project>) -> Vec<String> {
    use cache_core::origin::Origin;
    // The origin's own answer for the query, asked directly (not through the cache).
    let schema = <Project as cache_core::Cacheable>::schema();
    let source = cache_core::origin::SourceQuery::from_index_query(schema, q.as_index_query()).unwrap();
    let records = h.origin.query(schema, &source).await.unwrap();
    records.into_iter().map(|r| r.id.as_str().to_owned()).collect()
}

#[tokio::test]
async fn query_fills_the_complete_result_then_answers_every_page_from_the_cache() {
    let h = harness();
    h.seed(&projects_seed());
    let by_event = || Project::by_event(&id("recE1"));
    let first = h
        .cache
        .query(by_event().desc(ProjectSort::Points).offset(1).limit(2))
        .await
        .unwrap();
    // Points desc, ties by id desc: P1(30) P3(20) P5(10) P2(10).
    assert_eq!(ids_of(&first), ["recP3", "recP5"]);
    assert_eq!(h.origin.count(OriginMethod::Query), 1);
    let pages = [
        (
            by_event().desc(ProjectSort::Points),
            vec!["recP1", "recP3", "recP5", "recP2"],
        ),
        (
            by_event().asc(ProjectSort::Points).limit(3),
            vec!["recP2", "recP5", "recP3"],
        ),
        (by_event().offset(3), vec!["recP5"]),
        (by_event(), vec!["recP1", "recP2", "recP3", "recP5"]),
    ];
    h.origin.reset_calls();
    for (q, expected) in pages {
        let origin_says = origin_answer(&h, &q).await;
        h.origin.reset_calls();
        let got = h.cache.query(q).await.unwrap();
        assert_eq!(ids_of(&got), expected);
        assert_eq!(ids_of(&got), origin_says, "the cache pages as the origin does");
    }
    assert_eq!(
        h.origin.count(OriginMethod::Query),
        0,
        "every page came from the complete result"
    );
    assert_eq!(h.cache.stats().entity("projects").hits, 4);
}

#[tokio::test]
async fn writes_keep_complete_results_correct() {
    let h = harness();
    h.seed(&projects_seed());
    let submitted = || Project::by_status(&Status::Submitted).desc(ProjectSort::Points);
    let everything = || Query::<Project>::all().asc(ProjectSort::Points);
    h.cache.query(submitted()).await.unwrap();
    h.cache.query(everything()).await.unwrap();
    h.cache.query(Project::by_status(&Status::Judged)).await.unwrap();

    // The application writes the source, then tells the cache.
    let moved = project("recP2", "recE1", Status::Judged, 99, 2);
    h.origin.put(&moved).unwrap();
    assert_eq!(h.cache.upsert(&moved).await.unwrap(), UpsertOutcome::Stored);
    let created = project("recP6", "recE2", Status::Submitted, 15, 1);
    h.origin.put(&created).unwrap();
    h.cache.upsert(&created).await.unwrap();
    let rescored = project("recP4", "recE2", Status::Submitted, 40, 2);
    h.origin.put(&rescored).unwrap();
    h.cache.upsert(&rescored).await.unwrap();
    assert!(h.cache.delete::<Project>(&id("recP1")).await.unwrap());

    let expected = [
        (origin_answer(&h, &submitted()).await, submitted()),
        (origin_answer(&h, &everything()).await, everything()),
        (
            origin_answer(&h, &Project::by_status(&Status::Judged)).await,
            Project::by_status(&Status::Judged),
        ),
    ];
    h.origin.reset_calls();
    for (origin_says, q) in expected {
        assert_eq!(ids_of(&h.cache.query(q).await.unwrap()), origin_says);
    }
    assert_eq!(h.origin.count(OriginMethod::Query), 0, "answered from the kept results");
    let submitted_now = h.cache.query(submitted()).await.unwrap();
    assert_eq!(ids_of(&submitted_now), ["recP4", "recP6", "recP5"]);
}

#[tokio::test]
async fn invalidation_makes_queries_ask_the_origin_again() {
    let h = harness();
    h.seed(&projects_seed());
    let q = || Project::by_status(&Status::Submitted);
    h.cache.query(q()).await.unwrap();
    // The source changed recP3 and the application only knows its id.
    h.origin
        .put(&project("recP3", "recE1", Status::Submitted, 20, 2))
        .unwrap();
    h.cache.invalidate::<Project>(&id("recP3")).await.unwrap();
    let got = h.cache.query(q()).await.unwrap();
    assert!(ids_of(&got).contains(&"recP3".to_owned()));
    assert_eq!(h.origin.count(OriginMethod::Query), 2);
}

#[tokio::test]
async fn an_unreadable_complete_result_is_refilled_from_the_origin() {
    use cache_core::{
        Cacheable,
        store::{RecordWrite, WriteMode},
    };
    let h = harness();
    h.seed(&projects_seed());
    let q = || Project::by_event(&id("recE1")).asc(ProjectSort::Points);
    let expected = ids_of(&h.cache.query(q()).await.unwrap());
    // A body the model cannot read (written by another version of the model), filed where the
    // record belongs: the complete result still holds it.
    let schema = Project::schema();
    let garbage = RecordWrite {
        id: id("recP3"),
        body: Bytes::from_static(b"{\"not\":\"a project\"}"),
        index: projects_seed()[2].index_entries(),
        version: None,
        at: None,
        ttl: TTL,
    };
    h.memory.put(schema, &[garbage], WriteMode::Upsert).await.unwrap();
    h.origin.reset_calls();

    assert_eq!(
        ids_of(&h.cache.query(q()).await.unwrap()),
        expected,
        "answered from the origin"
    );
    assert_eq!(h.origin.count(OriginMethod::Query), 1);
    assert_eq!(ids_of(&h.cache.query(q()).await.unwrap()), expected);
    assert_eq!(
        h.origin.count(OriginMethod::Query),
        1,
        "the refill replaced the unreadable body: the result is complete and readable again"
    );
}

#[tokio::test]
async fn invalid_queries_are_refused() {
    let h = harness();
    let err = h
        .cache
        .query(Query::<Project>::filter_unchecked("name", "x".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CacheError::InvalidQuery { entity: "projects", .. }),
        "{err:?}"
    );
    assert_eq!(h.origin.total_calls(), 0);
}

#[tokio::test]
async fn views() {
    let h = harness();
    h.seed(&projects_seed());
    let card: Option<ProjectCard> = h.cache.get_as::<Project, ProjectCard>(&id("recP1")).await.unwrap();
    assert_eq!(
        card,
        Some(ProjectCard {
            id: id("recP1"),
            name: "Project recP1".into(),
            points: 30
        })
    );
    let cards = h
        .cache
        .get_many_as::<Project, ProjectCard>(&ids(&["recP2", "recP1"]))
        .await
        .unwrap();
    assert_eq!(view_ids(&cards), ["recP2", "recP1"]);
    let cards = h
        .cache
        .query_as::<Project, ProjectCard>(Project::by_event(&id("recE2")))
        .await
        .unwrap();
    assert_eq!(view_ids(&cards), ["recP4"]);
}

// ------------------------------------------------------------------ writes

#[tokio::test]
async fn writes_purge_the_values_that_depended_on_them() {
    let h = harness();
    h.seed(&projects_seed());
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    let tagged = [
        ("record", keys::record_tag("projects", &id("recP1"))),
        ("left", keys::index_tag("projects", "status", "submitted")),
        ("entered", keys::index_tag("projects", "status", "judged")),
        ("link", keys::index_tag("projects", "event", "recE1")),
        ("entity", keys::entity_tag("projects")),
        ("other-record", keys::record_tag("projects", &id("recP2"))),
        ("other-value", keys::index_tag("projects", "status", "draft")),
        ("other-entity", keys::entity_tag("users")),
    ];
    let put_all = async || {
        for (key, tag) in &tagged {
            h.memory
                .put_value(key, Bytes::from_static(b"x"), HOUR, std::slice::from_ref(tag))
                .await
                .unwrap();
        }
    };
    let present = async || {
        let mut out = Vec::new();
        for (key, _) in &tagged {
            if h.memory.get_value(key).await.unwrap().is_some() {
                out.push(*key);
            }
        }
        out
    };

    put_all().await;
    h.cache
        .upsert(&project("recP1", "recE1", Status::Judged, 30, 2))
        .await
        .unwrap();
    assert_eq!(
        present().await,
        ["other-record", "other-value", "other-entity"],
        "upsert"
    );

    put_all().await;
    h.cache.invalidate::<Project>(&id("recP1")).await.unwrap();
    assert_eq!(
        present().await,
        ["left", "other-record", "other-value", "other-entity"],
        "invalidate purges the values the record was known to have"
    );

    // Read again from the origin, where it is still submitted.
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    put_all().await;
    h.cache.delete::<Project>(&id("recP1")).await.unwrap();
    assert_eq!(
        present().await,
        ["entered", "other-record", "other-value", "other-entity"],
        "delete purges the values of the record it removed"
    );
}

#[tokio::test]
async fn an_older_version_is_refused_not_an_error() {
    let h = harness();
    let v2 = project("recP1", "recE1", Status::Judged, 50, 2);
    assert_eq!(h.cache.upsert(&v2).await.unwrap(), UpsertOutcome::Stored);
    let v1 = project("recP1", "recE1", Status::Draft, 1, 1);
    assert_eq!(h.cache.upsert(&v1).await.unwrap(), UpsertOutcome::Stale);
    assert_eq!(h.cache.stats().entity("projects").stale_refusals, 1);
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), Some(v2));
    assert_eq!(h.origin.total_calls(), 0, "the upsert stored it: no origin call");
}

#[tokio::test]
async fn invalidate_forgets_a_record() {
    let h = harness();
    h.seed(&[user("recU1", "Ada", "ada@example.com")]);
    h.cache.get::<User>(&id("recU1")).await.unwrap();
    h.origin.put(&user("recU1", "Ada L.", "ada@example.com")).unwrap();
    assert_eq!(
        h.cache.get::<User>(&id("recU1")).await.unwrap().unwrap().display_name,
        "Ada"
    );
    h.cache.invalidate::<User>(&id("recU1")).await.unwrap();
    assert_eq!(
        h.cache.get::<User>(&id("recU1")).await.unwrap().unwrap().display_name,
        "Ada L."
    );
    assert_eq!(h.origin.count(OriginMethod::Fetch), 2);
}

#[tokio::test]
async fn delete_removes_at_the_origin_and_leaves_a_tombstone() {
    let h = harness();
    h.seed(&projects_seed());
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    assert!(h.cache.delete::<Project>(&id("recP1")).await.unwrap());
    assert!(h.origin.source::<Project>(&id("recP1")).is_none());
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), None);
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1, "the tombstone answered");
    assert!(!h.cache.delete::<Project>(&id("recNope")).await.unwrap());
}

#[tokio::test]
async fn a_failed_origin_delete_leaves_the_cache_as_it_was() {
    let h = harness();
    h.seed(&projects_seed());
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    h.origin.fail(OriginMethod::Delete);
    let err = h.cache.delete::<Project>(&id("recP1")).await.unwrap_err();
    assert!(matches!(err, CacheError::Origin(_)));
    assert!(h.origin.source::<Project>(&id("recP1")).is_some());
    assert!(h.cache.get::<Project>(&id("recP1")).await.unwrap().is_some());
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1, "still cached");
}

// ------------------------------------------------------------------ disabled, refresh

#[tokio::test]
async fn a_disabled_cache_goes_straight_to_the_origin() {
    let h = harness_with(|b| b.enabled(false));
    assert!(!h.cache.is_enabled());
    h.seed(&projects_seed());
    for _ in 0..2 {
        assert!(h.cache.get::<Project>(&id("recP1")).await.unwrap().is_some());
        assert_eq!(
            h.cache
                .get_many::<Project>(&ids(&["recP2", "recP1"]))
                .await
                .unwrap()
                .len(),
            2
        );
        let page = h.cache.query(Project::by_event(&id("recE1")).limit(2)).await.unwrap();
        assert_eq!(ids_of(&page), ["recP1", "recP2"]);
    }
    assert_eq!(h.origin.total_calls(), 6);
    let stats = h.cache.stats().entity("projects");
    assert_eq!(
        (stats.bypasses, stats.hits, stats.misses),
        (8, 0, 0),
        "records and queries"
    );
    assert_eq!(stats.origin_calls, 6);
    let upserted = h
        .cache
        .upsert(&project("recP1", "recE1", Status::Judged, 1, 9))
        .await
        .unwrap();
    assert_eq!(upserted, UpsertOutcome::Disabled);
    h.cache.invalidate::<Project>(&id("recP1")).await.unwrap();
    assert_eq!(h.memory.stats().await.unwrap().total_keys, 0, "nothing was stored");
    assert_eq!(h.store.calls("get") + h.store.calls("put") + h.store.calls("remove"), 0);
}

#[tokio::test]
async fn a_refresh_bypasses_cached_reads_but_stores_what_it_reads() {
    let h = harness();
    h.seed(&[
        user("recU1", "Ada", "ada@example.com"),
        user("recU2", "Bob", "bob@example.com"),
    ]);
    h.cache.get::<User>(&id("recU1")).await.unwrap();
    h.cache.query(User::by_email("bob@example.com")).await.unwrap();
    h.origin.put(&user("recU1", "Ada L.", "ada@example.com")).unwrap();
    h.origin.put(&user("recU2", "Bob B.", "bob@example.com")).unwrap();

    let t = DependencyScope::new().refresh(true);
    let (one, many) = dependencies::scope(t.clone(), async {
        let one = h.cache.get::<User>(&id("recU1")).await.unwrap().unwrap();
        let many = h.cache.query(User::by_email("BOB@example.com")).await.unwrap();
        (one, many)
    })
    .await;
    assert_eq!(one.display_name, "Ada L.");
    assert_eq!(many[0].display_name, "Bob B.");
    assert_eq!(t.snapshot().bypasses, 2);
    assert_eq!(t.snapshot().hits, 0);

    h.origin.reset_calls();
    assert_eq!(
        h.cache.get::<User>(&id("recU1")).await.unwrap().unwrap().display_name,
        "Ada L."
    );
    let q = h.cache.query(User::by_email("bob@example.com")).await.unwrap();
    assert_eq!(q[0].display_name, "Bob B.");
    assert_eq!(h.origin.total_calls(), 0, "the refreshed records were stored");
}

// ------------------------------------------------------------------ telemetry

#[tokio::test]
async fn telemetry_counts_and_tags_what_a_scope_read() {
    let h = harness();
    h.seed(&projects_seed());
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    let t = DependencyScope::new();
    dependencies::scope(t.clone(), async {
        h.cache.get::<Project>(&id("recP1")).await.unwrap();
        h.cache.get::<Project>(&id("recNope")).await.unwrap();
        h.cache.get::<Project>(&id("recNope")).await.unwrap();
        h.cache.get_many::<Project>(&ids(&["recP1", "recP2"])).await.unwrap();
        h.cache
            .query(Project::by_event(&id("recE2")).and(Project::by_status(&Status::Submitted)))
            .await
            .unwrap();
        h.cache.query(Query::<Project>::all()).await.unwrap();
    })
    .await;
    let seen = t.snapshot();
    assert_eq!(seen.hits, 2, "recP1 twice");
    assert_eq!(seen.misses, 4, "recNope, recP2, two queries");
    assert_eq!(seen.tombstone_hits, 1);
    assert_eq!(seen.origin_calls, 4);
    assert_eq!(seen.bypasses, 0);
    assert_eq!(
        seen.tags,
        [
            "projects:recNope",
            "projects:recP1",
            "projects:recP2",
            "projects?*",
            "projects?event=recE2",
            "projects?status=submitted",
        ]
    );
    // Outside a scope nothing is recorded, and another scope starts from zero.
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    assert_eq!(t.snapshot().hits, 2);
}

#[tokio::test]
async fn a_computed_value_scope_inside_a_request_records_into_both() {
    let h = harness();
    h.seed(&projects_seed());
    let request = DependencyScope::new();
    let computed = DependencyScope::new();
    dependencies::scope(request.clone(), async {
        h.cache.get::<Project>(&id("recP1")).await.unwrap();
        dependencies::scope(computed.clone(), async {
            h.cache.get::<Project>(&id("recP2")).await.unwrap();
        })
        .await;
    })
    .await;
    assert_eq!(request.snapshot().misses, 2);
    assert_eq!(request.snapshot().tags, ["projects:recP1", "projects:recP2"]);
    assert_eq!(computed.snapshot().misses, 1);
    assert_eq!(computed.snapshot().tags, ["projects:recP2"]);
}

// ------------------------------------------------------------------ registry

#[tokio::test]
async fn the_registry_acts_on_entities_named_at_run_time() {
    let h = harness();
    let registry = h.cache.entities();
    assert_eq!(registry.len(), 3);
    let users = registry.by_source_table("People").expect("registered by source table");
    assert_eq!(users.schema().entity, "users");
    assert!(registry.get("users").is_some());
    assert!(registry.get("People").is_none());

    let source = SourceRecord {
        id: id("recU1"),
        fields: json!({"Display Name": "Ada", "email": "Ada@Example.com"})
            .as_object()
            .unwrap()
            .clone(),
    };
    assert_eq!(
        users.upsert_source(&h.cache, source).await.unwrap(),
        UpsertOutcome::Stored
    );
    let json = users.get_json(&h.cache, &id("recU1")).await.unwrap();
    assert_eq!(
        json,
        Some(json!({"id": "recU1", "display_name": "Ada", "email": "Ada@Example.com"}))
    );
    assert_eq!(h.origin.total_calls(), 0, "the webhook's record was cached");

    let bad = SourceRecord {
        id: id("recU2"),
        fields: json!({"email": "x@y.z"}).as_object().unwrap().clone(),
    };
    let err = users.upsert_source(&h.cache, bad).await.unwrap_err();
    assert!(
        matches!(&err, CacheError::Model(ModelError::Field { field, .. }) if field == "Display Name"),
        "{err:?}"
    );

    assert_eq!(
        users.remove(&h.cache, &id("recU1"), true).await,
        cache_core::RemoveOutcome::Removed
    );
    assert_eq!(h.cache.get::<User>(&id("recU1")).await.unwrap(), None);
    assert_eq!(
        h.origin.total_calls(),
        0,
        "a delete webhook tombstones without the origin"
    );

    h.seed(&[user("recU3", "Cy", "cy@example.com")]);
    h.cache.get::<User>(&id("recU3")).await.unwrap();
    assert_eq!(
        users.remove(&h.cache, &id("recU3"), false).await,
        cache_core::RemoveOutcome::Removed
    );
    h.cache.get::<User>(&id("recU3")).await.unwrap();
    assert_eq!(h.origin.count(OriginMethod::Fetch), 2, "an invalidation forgets");
}

#[test]
fn registering_two_models_under_one_name_is_an_error() {
    #[derive(cache_core::Cacheable, Clone, Debug)]
    #[cache(entity = "users", source_table = "Users2")]
    struct OtherUser {
        #[cache(id)]
        id: RecordId,
    }
    let err = cache_core::Cache::builder(cache_core::MemoryStore::new(), cache_core::testing::MemoryOrigin::new())
        .register::<User>()
        .register::<OtherUser>()
        .build()
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::DuplicateEntity { entity: "users", .. }),
        "{err}"
    );
}

// ------------------------------------------------------------------ sweep

#[tokio::test]
async fn sweep_removes_exactly_what_the_origin_lost() {
    let h = harness();
    let all: Vec<Project> = (0..23)
        .map(|i| project(&format!("recP{i:02}"), "recE1", Status::Submitted, i, 1))
        .collect();
    h.seed(&all);
    let all_ids: Vec<RecordId> = all.iter().map(|p| p.id.clone()).collect();
    h.cache.get_many::<Project>(&all_ids).await.unwrap();
    h.cache.query(Project::by_status(&Status::Submitted)).await.unwrap();
    let lost = ["recP00", "recP07", "recP08", "recP15", "recP22"];
    for rid in lost {
        assert!(h.origin.remove::<Project>(&id(rid)));
    }
    h.origin.reset_calls();

    let mut progress = Vec::new();
    let report = h
        .cache
        .sweep(<Project as cache_core::Cacheable>::schema(), 5, |p| progress.push(p))
        .await
        .unwrap();
    assert_eq!((report.checked, report.removed, report.batches), (23, 5, 5));
    assert_eq!(h.origin.count(OriginMethod::ExistsMany), 5, "ceil(23 / 5) calls");
    assert!(h.origin.calls().iter().all(|c| c.ids.len() <= 5));
    assert_eq!(progress.len(), 5);
    assert_eq!(progress.last().map(|p| p.removed), Some(5));

    h.origin.reset_calls();
    let left: Vec<Project> = h.cache.get_many(&all_ids).await.unwrap();
    assert_eq!(left.len(), 18);
    assert_eq!(h.origin.total_calls(), 0, "kept records hit, lost ones are tombstones");
    let q = h.cache.query(Project::by_status(&Status::Submitted)).await.unwrap();
    assert_eq!(q.len(), 18);
    assert_eq!(
        h.origin.total_calls(),
        0,
        "the complete result stayed complete and correct"
    );
}

// ------------------------------------------------------------------ fail open

#[tokio::test]
async fn a_failing_store_is_answered_around_from_the_origin() {
    let h = harness();
    h.seed(&projects_seed());
    h.store.set_down(true);
    let t = DependencyScope::new();
    dependencies::scope(t.clone(), async {
        assert!(h.cache.get::<Project>(&id("recP1")).await.unwrap().is_some());
        let many = h.cache.get_many::<Project>(&ids(&["recP2", "recP1"])).await.unwrap();
        assert_eq!(ids_of(&many), ["recP2", "recP1"]);
        let q = h
            .cache
            .query(Project::by_event(&id("recE1")).asc(ProjectSort::Points))
            .await
            .unwrap();
        assert_eq!(ids_of(&q), ["recP2", "recP5", "recP3", "recP1"]);
        let upserted = h
            .cache
            .upsert(&project("recP1", "recE1", Status::Judged, 1, 2))
            .await
            .unwrap();
        assert_eq!(upserted, UpsertOutcome::StoreFailed);
        h.cache.invalidate::<Project>(&id("recP1")).await.unwrap();
        assert!(h.cache.delete::<Project>(&id("recP5")).await.unwrap());
    })
    .await;
    assert!(
        h.origin.source::<Project>(&id("recP5")).is_none(),
        "the delete reached the origin"
    );
    let stats = h.cache.stats().entity("projects");
    assert!(stats.store_errors >= 6, "{stats:?}");
    assert_eq!(t.snapshot().store_errors, stats.store_errors);
    assert_eq!(stats.origin_calls, 4, "fetch, fetch_many, query, delete");

    h.store.set_down(false);
    h.cache.get::<Project>(&id("recP2")).await.unwrap();
    h.cache.get::<Project>(&id("recP2")).await.unwrap();
    assert_eq!(
        h.cache.stats().entity("projects").hits,
        1,
        "the store serves again once it is back"
    );
}
