//! The demo's origin (`cache-sql` under the demo's latency and counters) against its real
//! tables: what comes out is what the models read, and queries order and page exactly as the
//! cache does.

mod common;

use cache_core::{
    Cache, Cacheable, MemoryStore, Order, Query, RecordId,
    origin::{Origin, SourceQuery},
    query::IndexQuery,
};
use common::{Backend, TestDb, backends, pg_schema_exists};
use demo_app::{
    app::{AppError, build_cache, open_database, open_origin},
    database::{Conn, Database},
    models::{Event, Project, ProjectSort, Referral, User, Vote},
    origin::{DemoOrigin, OriginSettings},
    writes::{self, NewProject, ProjectChanges},
};
use serde_json::{Map, Value};

async fn origin(test: &TestDb) -> DemoOrigin {
    open_origin(&test.db, OriginSettings::default())
        .await
        .expect("the tables answer the models")
}

async fn query<T: Cacheable>(origin: &DemoOrigin, query: Query<T>) -> Vec<T> {
    let source = SourceQuery::from_index_query(T::schema(), query.as_index_query()).expect("known fields");
    origin
        .query(T::schema(), &source)
        .await
        .expect("query")
        .into_iter()
        .map(|r| T::from_source(r).expect("reads as the model"))
        .collect()
}

async fn all<T: Cacheable>(origin: &DemoOrigin) -> Vec<T> {
    let source = SourceQuery::from_index_query(T::schema(), &IndexQuery::all()).expect("query");
    origin
        .query(T::schema(), &source)
        .await
        .expect("query")
        .into_iter()
        .map(|r| T::from_source(r).expect("reads as the model"))
        .collect()
}

#[tokio::test]
async fn every_entity_reads_as_its_model() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = origin(&test).await;
        let users = all::<User>(&origin).await;
        let events = all::<Event>(&origin).await;
        assert_eq!(users.len(), 200, "{backend:?}");
        assert_eq!(events.len(), 3);
        assert_eq!(all::<Project>(&origin).await.len(), 30);
        assert_eq!(all::<Vote>(&origin).await.len(), 300);
        assert_eq!(all::<Referral>(&origin).await.len(), 20);
        let event = &events[0];
        assert!(!event.attendees.is_empty());
        let owner = users.iter().find(|u| u.id == *event.owner.id()).expect("owner exists");
        assert!(owner.owned_events.contains(&event.id));
        test.cleanup().await;
    }
}

#[tokio::test]
async fn leaderboard_orders_by_points_then_id_and_pages() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = origin(&test).await;
        let event = all::<Event>(&origin).await.remove(0);

        let mut expected: Vec<Project> = all::<Project>(&origin)
            .await
            .into_iter()
            .filter(|p| p.event.id() == &event.id)
            .collect();
        expected.sort_by(|a, b| b.points.cmp(&a.points).then_with(|| b.id.cmp(&a.id)));
        let ids = |ps: &[Project]| ps.iter().map(|p| p.id.clone()).collect::<Vec<_>>();

        let board = query(&origin, Project::by_event(&event.id).desc(ProjectSort::Points)).await;
        assert_eq!(ids(&board), ids(&expected), "{backend:?}");
        let page = query(
            &origin,
            Project::by_event(&event.id)
                .desc(ProjectSort::Points)
                .offset(2)
                .limit(3),
        )
        .await;
        assert_eq!(ids(&page), ids(&expected[2..5]));
        let tail = query(
            &origin,
            Project::by_event(&event.id).desc(ProjectSort::Points).offset(3),
        )
        .await;
        assert_eq!(ids(&tail), ids(&expected[3..]));

        let oldest_first = query(
            &origin,
            Project::by_event(&event.id).sort(ProjectSort::CreatedAt, Order::Asc),
        )
        .await;
        assert!(oldest_first.windows(2).all(|w| w[0].created_at <= w[1].created_at));
        test.cleanup().await;
    }
}

#[tokio::test]
async fn email_and_slug_lookups() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = origin(&test).await;
        let user = all::<User>(&origin).await.remove(7);
        assert_ne!(user.email, user.email.to_lowercase(), "seeded emails have capitals");
        let shouted = format!("  {}  ", user.email.to_uppercase());
        let found = query(&origin, User::by_email(&shouted)).await;
        assert_eq!(found, [user], "{backend:?}");

        let event = all::<Event>(&origin).await.remove(1);
        let found = query(&origin, Event::by_slug(&event.slug)).await;
        assert_eq!(found, [event]);
        assert!(query(&origin, Event::by_slug("no-such-event")).await.is_empty());
        test.cleanup().await;
    }
}

#[tokio::test]
async fn lowercase_lookups_compare_what_the_cache_computes() {
    // SQL's `lower(trim(email))` makes `Éva@x.org\t` of this on SQLite (ASCII only, spaces
    // only) and `Éva@x.org` on PostgreSQL under COLLATE "C"; the cache makes `éva@x.org`.
    let stored = " ÉVA@X.ORG\t";
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = origin(&test).await;
        let row: Map<String, Value> = [
            ("id", "recEvaLowercase01"),
            ("email", stored),
            ("name", "Éva"),
            ("created_at", "2025-01-06T09:00:00.000Z"),
            ("updated_at", "2025-01-06T09:00:00.000Z"),
        ]
        .into_iter()
        .map(|(column, value)| (column.to_owned(), Value::from(value)))
        .collect();
        match &test.db {
            Database::Sqlite(pool) => {
                let mut conn = pool.acquire().await.expect("a connection");
                Conn::Sqlite(&mut conn).insert(User::schema(), &[row]).await
            }
            Database::Postgres(pool) => {
                let mut conn = pool.acquire().await.expect("a connection");
                Conn::Postgres(&mut conn).insert(User::schema(), &[row]).await
            }
        }
        .expect("insert");
        // Every row, seeded or inserted, holds its email as the cache normalises it.
        origin
            .sql()
            .expect("an SQL origin")
            .check_normalized_values()
            .await
            .unwrap_or_else(|e| panic!("{backend:?}: {e}"));

        for lookup in [stored, "éva@x.org", "\tÉva@X.Org  "] {
            let found = query(&origin, User::by_email(lookup)).await;
            let ids: Vec<&str> = found.iter().map(|u| u.id.as_str()).collect();
            assert_eq!(ids, ["recEvaLowercase01"], "{backend:?}: {lookup:?}");
            assert_eq!(found[0].email, stored, "the email itself is kept as written");
        }
        // Through the cache: what the origin answers is what the index keeps as complete.
        let cache = Cache::builder(MemoryStore::new(), origin.clone())
            .build()
            .expect("cache");
        for _ in 0..2 {
            let found = cache.query(User::by_email("ÉVA@x.org")).await.expect("query");
            assert_eq!(found.len(), 1, "{backend:?}");
        }
        assert_eq!(origin.calls().query, 4, "the second lookup is answered by the cache");

        test.cleanup().await;
    }
}

#[tokio::test]
async fn a_database_seeded_by_another_version_is_refused() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        open_database(&test.url).await.expect("this version's database opens");
        test.execute(&[r#"DELETE FROM "DemoData""#]).await;
        let err = open_database(&test.url).await.expect_err("refused");
        assert!(matches!(err, AppError::OutdatedDatabase { .. }), "{backend:?}: {err}");
        assert!(err.to_string().contains("recreate it with `demo-app seed`"), "{err}");
        test.cleanup().await;
    }
}

#[tokio::test]
async fn a_failing_test_still_drops_its_postgres_schema() {
    if !backends().contains(&Backend::Postgres) {
        return;
    }
    let (name_tx, name_rx) = std::sync::mpsc::channel();
    // A failing test as `#[tokio::test]` runs one: its own runtime, whose future panics.
    let failing = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let test = TestDb::new(Backend::Postgres).await;
            let schema = test.pg_schema().expect("a schema of its own").to_owned();
            assert!(pg_schema_exists(&schema).await);
            name_tx.send(schema).expect("send the name");
            // A transaction left open holds locks that `DROP SCHEMA` would wait for.
            let Database::Postgres(pool) = &test.db else {
                panic!("a PostgreSQL database")
            };
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query(r#"UPDATE "Projects" SET "points" = "points" + 1"#)
                .execute(&mut *tx)
                .await
                .expect("update");
            panic!("this test fails on purpose, before its cleanup");
        })
    });
    assert!(failing.join().is_err(), "the test failed");
    let schema = name_rx.recv().expect("the schema's name");
    assert!(!pg_schema_exists(&schema).await, "{schema} was left behind");
}

#[tokio::test]
async fn batches_existence_and_delete() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = origin(&test).await;
        let schema = Project::schema();
        let projects = all::<Project>(&origin).await;
        let missing = RecordId::new("recNOPE0000000000").unwrap();
        let ids = vec![projects[0].id.clone(), missing.clone(), projects[1].id.clone()];

        let mut fetched: Vec<RecordId> = origin
            .fetch_many(schema, &ids)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        fetched.sort();
        let mut expected = vec![projects[0].id.clone(), projects[1].id.clone()];
        expected.sort();
        assert_eq!(fetched, expected, "{backend:?}");
        let mut present = origin.exists_many(schema, &ids).await.unwrap();
        present.sort();
        assert_eq!(present, expected);

        let deleted = origin
            .delete(schema, &projects[0].id)
            .await
            .unwrap()
            .expect("it existed");
        // The deleted row comes back whole, so the cache can read the version it had.
        let row = deleted.record.expect("the deleted row");
        assert_eq!(row.id, projects[0].id);
        assert_eq!(
            Project::from_source(row).unwrap().version(),
            projects[0].version(),
            "{backend:?}"
        );
        assert!(origin.delete(schema, &projects[0].id).await.unwrap().is_none());
        assert!(origin.fetch(schema, &projects[0].id).await.unwrap().is_none());
        let calls = origin.calls();
        assert_eq!(
            (calls.fetch_many, calls.exists_many, calls.delete, calls.fetch),
            (1, 1, 2, 1)
        );
        test.cleanup().await;
    }
}

#[tokio::test]
async fn writes_bump_the_version_strictly() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let origin = origin(&test).await;
        let cache = build_cache(std::sync::Arc::new(MemoryStore::new()), origin.clone(), true).expect("cache");
        let event = all::<Event>(&origin).await.remove(0);
        let owner = event.attendees.ids()[0].clone();
        let created = writes::create_project(
            &origin,
            &cache,
            &NewProject {
                name: "Cache Money".to_owned(),
                description: None,
                event: event.id.clone(),
                owner: owner.clone(),
                collaborators: vec![event.attendees.ids()[1].clone()],
            },
        )
        .await
        .unwrap();
        assert_eq!(created.points, 0, "{backend:?}");
        assert_eq!(created.collaborators.len(), 1);

        let mut last = created.clone();
        for _ in 0..3 {
            let (vote, project) = writes::cast_vote(&origin, &cache, &created.id, &owner, 2)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(vote.project.id(), &created.id);
            assert_eq!(vote.event.id(), &event.id, "the vote's event is the project's");
            assert_eq!(project.points, last.points + 2);
            assert!(project.updated_at > last.updated_at, "versions only go up");
            last = project;
        }
        let renamed = writes::update_project(
            &origin,
            &cache,
            &created.id,
            &ProjectChanges {
                name: Some("Cache Rules".to_owned()),
                collaborators: Some(Vec::new()),
                ..ProjectChanges::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!((renamed.name.as_str(), renamed.points), ("Cache Rules", 6));
        assert!(renamed.updated_at > last.updated_at);
        assert_eq!(renamed.description, None);
        assert!(renamed.collaborators.is_empty());
        // What the write answered is what the database holds.
        let stored = Project::from_source(
            origin
                .fetch(Project::schema(), &created.id)
                .await
                .unwrap()
                .expect("the project"),
        )
        .unwrap();
        assert_eq!(stored, renamed, "{backend:?}");

        let nobody = RecordId::new("recNOPE0000000000").unwrap();
        assert!(
            writes::cast_vote(&origin, &cache, &nobody, &owner, 1)
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            writes::update_project(&origin, &cache, &nobody, &ProjectChanges::default())
                .await
                .unwrap()
                .is_none()
        );
        assert!(writes::delete_project(&origin, &cache, &created.id).await.unwrap());
        assert!(!writes::delete_project(&origin, &cache, &created.id).await.unwrap());
        assert_eq!(origin.calls().write, 9, "each write is one paced call");
        test.cleanup().await;
    }
}
