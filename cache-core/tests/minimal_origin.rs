//! A minimal origin is two methods (`fetch_many` and `query`): the others' defaults answer
//! from them, and a cache over it reads, queries and sweeps as over any origin.
#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use async_trait::async_trait;
use cache_core::{
    Cache, CacheError, Cacheable, MemoryStore, RecordId,
    origin::{Origin, OriginError, SourceQuery, SourceRecord},
    schema::EntitySchema,
    testing::{MemoryOrigin, OriginMethod, conformance::RaceProject},
};

/// Only the two required methods, answered by a [`MemoryOrigin`] (which counts the calls).
struct Minimal(MemoryOrigin);

#[async_trait]
impl Origin for Minimal {
    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.0.fetch_many(entity, ids).await
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.0.query(entity, query).await
    }
}

fn id(s: &str) -> RecordId {
    s.parse().unwrap()
}

fn project(rid: &str, event: &str) -> RaceProject {
    RaceProject {
        id: id(rid),
        name: format!("project {rid}"),
        event: event.to_owned(),
        version: 1,
    }
}

fn seeded() -> MemoryOrigin {
    let origin = MemoryOrigin::new();
    for (rid, event) in [("p1", "e1"), ("p2", "e1"), ("p3", "e2")] {
        origin.put(&project(rid, event)).unwrap();
    }
    origin
}

#[tokio::test]
async fn the_defaults_answer_from_fetch_many() {
    let counted = seeded();
    let origin = Minimal(counted.clone());
    let schema = RaceProject::schema();

    let found = origin.fetch(schema, &id("p2")).await.unwrap().unwrap();
    assert_eq!(found.id, id("p2"));
    assert_eq!(origin.fetch(schema, &id("p9")).await.unwrap(), None);

    let mut present = origin
        .exists_many(schema, &[id("p3"), id("p9"), id("p1")])
        .await
        .unwrap();
    present.sort();
    assert_eq!(present, vec![id("p1"), id("p3")]);
    assert_eq!(
        counted.count(OriginMethod::FetchMany),
        3,
        "each default is one fetch_many call"
    );

    let err = origin.delete(schema, &id("p1")).await.unwrap_err();
    assert!(
        matches!(&err, OriginError::Unsupported(why) if why.contains("read-only")),
        "{err}"
    );
}

#[tokio::test]
async fn a_cache_over_a_minimal_origin_reads_queries_and_sweeps() {
    let counted = seeded();
    let cache = Cache::builder(MemoryStore::new(), Minimal(counted.clone()))
        .register::<RaceProject>()
        .build()
        .unwrap();
    assert_eq!(
        cache.get::<RaceProject>(&id("p1")).await.unwrap(),
        Some(project("p1", "e1"))
    );
    assert_eq!(cache.get::<RaceProject>(&id("p9")).await.unwrap(), None);
    let many = cache.get_many::<RaceProject>(&[id("p2"), id("p3")]).await.unwrap();
    assert_eq!(many.len(), 2);
    let e1 = cache.query(RaceProject::by_event("e1")).await.unwrap();
    assert_eq!(e1.len(), 2);

    counted.remove::<RaceProject>(&id("p3"));
    let report = cache.sweep(RaceProject::schema(), 100, |_| {}).await.unwrap();
    assert_eq!(report.removed, 1, "{report:?}");
    assert_eq!(cache.get::<RaceProject>(&id("p3")).await.unwrap(), None);

    let err = cache.delete::<RaceProject>(&id("p1")).await.unwrap_err();
    assert!(
        matches!(&err, CacheError::Origin(origin) if matches!(**origin, OriginError::Unsupported(_))),
        "{err}"
    );
    assert_eq!(
        cache.get::<RaceProject>(&id("p1")).await.unwrap(),
        Some(project("p1", "e1")),
        "a refused delete leaves the record"
    );
}
