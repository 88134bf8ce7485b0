//! The write routes' transactions, on SQLite and PostgreSQL: the cache gets what a
//! transaction committed, after the commit, and nothing of one that failed.

mod common;

use std::sync::Arc;

use cache_core::{Cache, Cacheable, MemoryStore, RecordId, origin::Origin, store::Lookup};
use common::{Backend, TestDb, backends};
use demo_app::{
    api::AppState,
    app::{Secrets, build_cache, open_origin, router},
    config::Secret,
    models::{Event, Project},
    origin::{DemoOrigin, OriginSettings},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct TestApp {
    base: String,
    http: reqwest::Client,
    cache: Cache,
    origin: DemoOrigin,
    server: tokio::task::JoinHandle<()>,
}

async fn start(test: &TestDb) -> TestApp {
    let origin = open_origin(&test.db, OriginSettings::default()).await.expect("origin");
    let cache = build_cache(Arc::new(MemoryStore::new()), origin.clone(), true).expect("cache");
    let secrets = Secrets {
        webhook: Secret::generate("webhook secret").expect("secret"),
        admin: Secret::generate("admin token").expect("secret"),
    };
    let state = AppState {
        cache: cache.clone(),
        origin: origin.clone(),
    };
    let app = router(state, &secrets).expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    TestApp {
        base,
        http: reqwest::Client::new(),
        cache,
        origin,
        server,
    }
}

/// What the store holds for the project, without asking the database.
async fn cached(cache: &Cache, id: &RecordId) -> Lookup {
    cache
        .store()
        .get(Project::schema(), id)
        .await
        .expect("the store answers")
}

/// The project as the database has it.
async fn stored(origin: &DemoOrigin, id: &RecordId) -> Project {
    let record = origin
        .fetch(Project::schema(), id)
        .await
        .expect("fetch")
        .expect("the project");
    Project::from_source(record).expect("a project")
}

/// A trigger that makes every insert into `Votes` fail: the vote's transaction, which has
/// already added the points to the project, rolls back.
async fn refuse_votes(test: &TestDb, backend: Backend) {
    match backend {
        Backend::Sqlite => {
            test.execute(&[r#"CREATE TRIGGER "refuse_votes" BEFORE INSERT ON "Votes"
                BEGIN SELECT RAISE(ABORT, 'votes are closed'); END"#])
                .await;
        }
        Backend::Postgres => {
            test.execute(&[
                r#"CREATE FUNCTION "refuse_votes"() RETURNS trigger LANGUAGE plpgsql
                   AS $$ BEGIN RAISE EXCEPTION 'votes are closed'; END $$"#,
                r#"CREATE TRIGGER "refuse_votes" BEFORE INSERT ON "Votes"
                   FOR EACH ROW EXECUTE FUNCTION "refuse_votes"()"#,
            ])
            .await;
        }
    }
}

async fn allow_votes(test: &TestDb, backend: Backend) {
    match backend {
        Backend::Sqlite => test.execute(&[r#"DROP TRIGGER "refuse_votes""#]).await,
        Backend::Postgres => test.execute(&[r#"DROP TRIGGER "refuse_votes" ON "Votes""#]).await,
    }
}

#[tokio::test]
async fn a_write_whose_transaction_fails_leaves_the_cache_untouched() {
    for backend in backends() {
        let test = TestDb::new(backend).await;
        let app = start(&test).await;
        let events = app.origin.recent_ids(Event::schema(), Some(1)).await.expect("ids");
        let event: Event = app.cache.get(&events[0]).await.expect("get").expect("an event");
        let project = app
            .cache
            .query(Project::by_event(&event.id).limit(1))
            .await
            .expect("query")
            .remove(0);
        let path = format!("{}/projects/{}", app.base, project.id);
        let before: Value = app
            .http
            .get(&path)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let Lookup::Hit(cached_before) = cached(&app.cache, &project.id).await else {
            panic!("{backend:?}: the project is cached");
        };
        let voter = event.attendees.ids()[0].clone();
        let vote = || {
            app.http
                .post(format!("{path}/votes"))
                .json(&json!({ "voter": voter, "points": 5 }))
                .send()
        };

        refuse_votes(&test, backend).await;
        let refused = vote().await.expect("vote");
        assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR, "{backend:?}");
        assert_eq!(
            stored(&app.origin, &project.id).await,
            project,
            "{backend:?}: the points added before the failing insert were rolled back"
        );
        assert_eq!(
            cached(&app.cache, &project.id).await,
            Lookup::Hit(cached_before.clone()),
            "{backend:?}: the cache holds what it held, neither changed nor forgotten"
        );
        let after = app.http.get(&path).send().await.expect("get");
        assert_eq!(after.headers()["x-origin-calls"], "0", "{backend:?}");
        assert_eq!(after.json::<Value>().await.expect("json"), before);

        // The same write, once it can commit, reaches the cache after its commit.
        allow_votes(&test, backend).await;
        let voted = vote().await.expect("vote");
        assert_eq!(voted.status(), StatusCode::CREATED, "{backend:?}");
        let committed = stored(&app.origin, &project.id).await;
        assert_eq!(committed.points, project.points + 5);
        let Lookup::Hit(bytes) = cached(&app.cache, &project.id).await else {
            panic!("{backend:?}: the committed project is cached");
        };
        assert_eq!(
            Project::from_cached(&bytes).expect("a project"),
            committed,
            "{backend:?}"
        );
        app.server.abort();
        test.cleanup().await;
    }
}
