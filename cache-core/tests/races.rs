//! Races made deterministic: origin calls held at a gate while writes run (stale-set
//! protection), and concurrent misses waiting on one origin call (stampede protection).
//! Nothing here sleeps: tests wait for the held calls and the joined misses to be counted.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

use std::time::Duration;

use cache_core::{
    CacheError,
    dependencies::{self, DependencyScope},
    store::{Lookup, Store},
    testing::OriginMethod,
};
use common::*;
use tokio::time::timeout;

/// Fails the test instead of hanging when what it waits for never happens (the feature under
/// test is missing).
async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting until {what}"))
}

fn users_seed() -> Vec<User> {
    vec![
        user("recU1", "Ada", "ada@example.com"),
        user("recU2", "Bob", "bob@example.com"),
    ]
}

// ------------------------------------------------------------------ stale sets

#[tokio::test]
async fn a_fill_that_began_before_an_invalidation_is_not_stored() {
    let h = harness();
    h.seed(&users_seed());
    let hold = h.origin.hold(OriginMethod::Fetch);
    let cache = h.cache.clone();
    let reader = tokio::spawn(async move { cache.get::<User>(&id("recU1")).await });
    within("the origin read Ada", hold.arrived(1)).await;

    h.origin.put(&user("recU1", "Ada L.", "ada@example.com")).unwrap();
    h.cache.invalidate::<User>(&id("recU1")).await.unwrap();
    hold.release();

    let read = reader.await.unwrap().unwrap().unwrap();
    assert_eq!(read.display_name, "Ada", "the racing read answers what it read");
    let now = h.cache.get::<User>(&id("recU1")).await.unwrap().unwrap();
    assert_eq!(
        now.display_name, "Ada L.",
        "its older data was not stored over the invalidation"
    );
    assert_eq!(h.origin.count(OriginMethod::Fetch), 2);
    assert_eq!(h.cache.stats().entity("users").stale_refusals, 1);
}

#[tokio::test]
async fn a_fill_that_began_before_an_upsert_is_not_stored() {
    let h = harness();
    h.seed(&users_seed());
    let hold = h.origin.hold(OriginMethod::Fetch);
    let cache = h.cache.clone();
    let reader = tokio::spawn(async move { cache.get::<User>(&id("recU1")).await });
    within("the origin read Ada", hold.arrived(1)).await;

    let newer = user("recU1", "Ada L.", "ada@example.com");
    h.origin.put(&newer).unwrap();
    h.cache.upsert(&newer).await.unwrap();
    hold.release();

    reader.await.unwrap().unwrap();
    assert_eq!(h.cache.get::<User>(&id("recU1")).await.unwrap(), Some(newer));
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1, "the upsert is what is cached");
}

#[tokio::test]
async fn a_fill_that_began_before_a_delete_is_not_stored() {
    let h = harness();
    h.seed(&users_seed());
    let hold = h.origin.hold(OriginMethod::Fetch);
    let cache = h.cache.clone();
    let reader = tokio::spawn(async move { cache.get::<User>(&id("recU1")).await });
    within("the origin read Ada", hold.arrived(1)).await;

    assert!(h.cache.delete::<User>(&id("recU1")).await.unwrap());
    hold.release();

    assert!(reader.await.unwrap().unwrap().is_some(), "it read before the delete");
    assert_eq!(h.cache.get::<User>(&id("recU1")).await.unwrap(), None);
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1, "the tombstone answered");
}

#[tokio::test]
async fn a_not_found_that_began_before_a_create_does_not_tombstone_it() {
    let h = harness();
    let hold = h.origin.hold(OriginMethod::Fetch);
    let cache = h.cache.clone();
    let reader = tokio::spawn(async move { cache.get::<User>(&id("recU9")).await });
    within("the origin found nothing", hold.arrived(1)).await;

    let created = user("recU9", "Cy", "cy@example.com");
    h.origin.put(&created).unwrap();
    h.cache.upsert(&created).await.unwrap();
    hold.release();

    assert_eq!(reader.await.unwrap().unwrap(), None);
    assert_eq!(h.cache.get::<User>(&id("recU9")).await.unwrap(), Some(created));
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1);
}

#[tokio::test]
async fn a_query_fill_that_began_before_a_write_is_not_marked_complete() {
    let h = harness();
    h.seed(&users_seed());
    let hold = h.origin.hold(OriginMethod::Query);
    let cache = h.cache.clone();
    let reader = tokio::spawn(async move { cache.query(User::by_email("ada@example.com")).await });
    within("the origin answered the query", hold.arrived(1)).await;

    let moved = user("recU1", "Ada", "ada@new.example.com");
    h.origin.put(&moved).unwrap();
    h.cache.upsert(&moved).await.unwrap();
    hold.release();

    assert_eq!(ids_of(&reader.await.unwrap().unwrap()), ["recU1"], "what it read");
    assert_eq!(h.cache.stats().entity("users").stale_refusals, 1);
    let old_email = h.cache.query(User::by_email("ada@example.com")).await.unwrap();
    assert!(old_email.is_empty(), "the stale result was not kept: {old_email:?}");
    assert_eq!(h.cache.get::<User>(&id("recU1")).await.unwrap(), Some(moved));
    assert_eq!(h.origin.count(OriginMethod::Query), 2);
}

/// Runs `query` inside a `Cache-Control: no-cache` scope on its own task.
fn spawn_refresh<T: cache_core::Cacheable>(
    h: &Harness,
    query: cache_core::Query<T>,
) -> tokio::task::JoinHandle<Result<Vec<T>, CacheError>> {
    let cache = h.cache.clone();
    let refresh = DependencyScope::new().refresh(true);
    tokio::spawn(dependencies::scope(refresh, async move { cache.query(query).await }))
}

#[tokio::test]
async fn a_refresh_that_began_before_a_delete_does_not_resurrect_it() {
    let h = harness();
    h.seed(&[
        project("recP1", "recE1", Status::Submitted, 10, 1),
        project("recP2", "recE1", Status::Submitted, 20, 1),
    ]);
    let by_event = || Project::by_event(&id("recE1"));
    h.cache.query(by_event()).await.unwrap();
    let hold = h.origin.hold(OriginMethod::Query);
    let refresh = spawn_refresh(&h, by_event());
    within("the refresh read both projects", hold.arrived(1)).await;

    assert!(h.cache.delete::<Project>(&id("recP1")).await.unwrap());
    hold.release();

    assert_eq!(
        ids_of(&refresh.await.unwrap().unwrap()),
        ["recP1", "recP2"],
        "what it read"
    );
    h.origin.reset_calls();
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), None);
    assert_eq!(ids_of(&h.cache.query(by_event()).await.unwrap()), ["recP2"]);
    assert_eq!(
        h.origin.total_calls(),
        0,
        "the tombstone and the complete result answered"
    );
    assert_eq!(h.cache.stats().entity("projects").stale_refusals, 1);
}

#[tokio::test]
async fn a_refresh_that_began_before_an_upsert_does_not_overwrite_it() {
    let h = harness();
    h.seed(&users_seed());
    h.cache.query(User::by_email("ada@example.com")).await.unwrap();
    let hold = h.origin.hold(OriginMethod::Query);
    let refresh = spawn_refresh(&h, User::by_email("ada@example.com"));
    within("the refresh read Ada", hold.arrived(1)).await;

    // Users have no version field: only the fill token can refuse the older read.
    let renamed = user("recU1", "Ada L.", "ada@example.com");
    h.origin.put(&renamed).unwrap();
    h.cache.upsert(&renamed).await.unwrap();
    hold.release();

    assert_eq!(refresh.await.unwrap().unwrap()[0].display_name, "Ada", "what it read");
    h.origin.reset_calls();
    assert_eq!(h.cache.get::<User>(&id("recU1")).await.unwrap(), Some(renamed.clone()));
    let found = h.cache.query(User::by_email("ada@example.com")).await.unwrap();
    assert_eq!(found, [renamed]);
    assert_eq!(h.origin.total_calls(), 0);
}

#[tokio::test]
async fn a_miss_after_a_write_does_not_join_a_flight_that_began_before_it() {
    let h = harness();
    h.seed(&users_seed());
    let hold = h.origin.hold(OriginMethod::Fetch);
    let cache = h.cache.clone();
    let before = tokio::spawn(async move { cache.get::<User>(&id("recU1")).await });
    within("the first read is held", hold.arrived(1)).await;

    h.origin.put(&user("recU1", "Ada L.", "ada@example.com")).unwrap();
    h.cache.invalidate::<User>(&id("recU1")).await.unwrap();
    let cache = h.cache.clone();
    let after = tokio::spawn(async move { cache.get::<User>(&id("recU1")).await });
    within("the second read asks the origin itself", hold.arrived(2)).await;
    hold.release();

    assert_eq!(before.await.unwrap().unwrap().unwrap().display_name, "Ada");
    assert_eq!(after.await.unwrap().unwrap().unwrap().display_name, "Ada L.");
    assert_eq!(h.cache.stats().entity("users").coalesced, 0);
}

#[tokio::test]
async fn a_query_after_a_write_does_not_join_a_query_that_began_before_it() {
    let h = harness();
    h.seed(&users_seed());
    let hold = h.origin.hold(OriginMethod::Query);
    let spawn_query = || {
        let cache = h.cache.clone();
        tokio::spawn(async move { cache.query(User::by_email("ada@example.com")).await })
    };
    let before = spawn_query();
    within("the first query is held", hold.arrived(1)).await;

    let moved = user("recU1", "Ada", "ada@new.example.com");
    h.origin.put(&moved).unwrap();
    h.cache.upsert(&moved).await.unwrap();
    let after = spawn_query();
    within("the second query asks the origin itself", hold.arrived(2)).await;
    hold.release();

    assert_eq!(ids_of(&before.await.unwrap().unwrap()), ["recU1"]);
    assert!(after.await.unwrap().unwrap().is_empty(), "it saw the upsert");
}

// ------------------------------------------------------------------ stampedes

const N: u64 = 8;

#[tokio::test]
async fn concurrent_gets_make_one_origin_call() {
    let h = harness();
    h.seed(&users_seed());
    let hold = h.origin.hold(OriginMethod::Fetch);
    let readers: Vec<_> = (0..N)
        .map(|_| {
            let cache = h.cache.clone();
            tokio::spawn(async move { cache.get::<User>(&id("recU1")).await })
        })
        .collect();
    within("every miss joined the first", hold_until(&h, &hold, 1, "users", N - 1)).await;
    hold.release();
    for reader in readers {
        assert_eq!(reader.await.unwrap().unwrap(), Some(users_seed()[0].clone()));
    }
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1);
    let stats = h.cache.stats().entity("users");
    assert_eq!((stats.misses, stats.origin_calls, stats.coalesced), (N, 1, N - 1));
}

#[tokio::test]
async fn concurrent_get_manys_share_the_ids_in_flight_and_fetch_the_rest_once() {
    let h = harness();
    let all: Vec<User> = (1..=6)
        .map(|i| user(&format!("recU{i}"), "U", &format!("u{i}@example.com")))
        .collect();
    h.seed(&all);
    let hold = h.origin.hold(OriginMethod::FetchMany);
    let spawn = |list: &'static [&'static str]| {
        let cache = h.cache.clone();
        tokio::spawn(async move { cache.get_many::<User>(&ids(list)).await })
    };
    let first = spawn(&["recU1", "recU2", "recU3"]);
    within("the first batch is held", hold.arrived(1)).await;
    let second = spawn(&["recU2", "recU3", "recU4", "recU5"]);
    within(
        "the rest of the second batch is asked",
        hold_until(&h, &hold, 2, "users", 2),
    )
    .await;
    let third = spawn(&["recU5", "recU1"]);
    within("the third batch joins both", h.until_coalesced("users", 4)).await;
    hold.release();

    assert_eq!(ids_of(&first.await.unwrap().unwrap()), ["recU1", "recU2", "recU3"]);
    assert_eq!(
        ids_of(&second.await.unwrap().unwrap()),
        ["recU2", "recU3", "recU4", "recU5"]
    );
    assert_eq!(ids_of(&third.await.unwrap().unwrap()), ["recU5", "recU1"]);
    let calls = h.origin.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1].ids, ids(&["recU4", "recU5"]), "only the ids not in flight");
}

#[tokio::test]
async fn concurrent_queries_make_one_origin_call() {
    let h = harness();
    let all: Vec<Project> = (0..10)
        .map(|i| project(&format!("recP{i}"), "recE1", Status::Submitted, i, 1))
        .collect();
    h.seed(&all);
    let hold = h.origin.hold(OriginMethod::Query);
    let readers: Vec<_> = (0..N)
        .map(|page| {
            let cache = h.cache.clone();
            tokio::spawn(async move {
                let q = Project::by_event(&id("recE1"))
                    .desc(ProjectSort::Points)
                    .offset(page as usize)
                    .limit(2);
                cache.query(q).await
            })
        })
        .collect();
    within(
        "every query joined the first",
        hold_until(&h, &hold, 1, "projects", N - 1),
    )
    .await;
    hold.release();
    for (page, reader) in readers.into_iter().enumerate() {
        let got = reader.await.unwrap().unwrap();
        let expected: Vec<String> = (0..10).rev().skip(page).take(2).map(|i| format!("recP{i}")).collect();
        assert_eq!(ids_of(&got), expected, "page at offset {page}");
    }
    assert_eq!(h.origin.count(OriginMethod::Query), 1);
}

#[tokio::test]
async fn waiters_share_an_origin_error_and_it_is_not_cached() {
    let h = harness();
    h.seed(&users_seed());
    h.origin.fail(OriginMethod::Fetch);
    let hold = h.origin.hold(OriginMethod::Fetch);
    let readers: Vec<_> = (0..N)
        .map(|_| {
            let cache = h.cache.clone();
            tokio::spawn(async move { cache.get::<User>(&id("recU1")).await })
        })
        .collect();
    within("every miss joined the first", hold_until(&h, &hold, 1, "users", N - 1)).await;
    hold.release();
    for reader in readers {
        let err = reader.await.unwrap().unwrap_err();
        assert!(matches!(err, CacheError::Origin(_)), "{err:?}");
    }
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1);
    h.origin.heal();
    assert!(h.cache.get::<User>(&id("recU1")).await.unwrap().is_some());
    assert_eq!(h.origin.count(OriginMethod::Fetch), 2, "the error was not remembered");
}

#[tokio::test]
async fn a_fill_completes_when_its_caller_goes_away() {
    let h = harness();
    h.seed(&users_seed());
    let hold = h.origin.hold(OriginMethod::Fetch);
    let cache = h.cache.clone();
    let reader = tokio::spawn(async move { cache.get::<User>(&id("recU1")).await });
    within("the read is held", hold.arrived(1)).await;
    reader.abort();
    assert!(reader.await.unwrap_err().is_cancelled());
    hold.release();
    let schema = <User as cache_core::Cacheable>::schema();
    within("the abandoned fill is stored", async {
        while !matches!(h.memory.get(schema, &id("recU1")).await.unwrap(), Lookup::Hit(_)) {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(h.cache.get::<User>(&id("recU1")).await.unwrap().is_some());
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1);
}
