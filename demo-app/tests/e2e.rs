//! The demo end to end: a real database (SQLite file, or PostgreSQL with `TEST_POSTGRES_URL`),
//! a spawned redis-server, and the router on a real socket, driven with reqwest.

mod common;

use cache_core::{Cache, Cacheable, RecordId, origin::Origin, store::Lookup};
use cache_redis::testing::{RedisCluster, RedisServer};
use common::{Backend, TestDb, backends};
use demo_app::{
    api::AppState,
    app::{Secrets, build_cache_with, connect_store, open_origin, router},
    commands::{sweep_entities, warm_entity},
    config::{CacheSettings, DEFAULT_NEAR_MB, RedisUrl, Secret},
    database::quote,
    models::{Event, Project},
    origin::{DemoOrigin, OriginSettings},
    writes,
};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

struct TestApp {
    base: String,
    http: reqwest::Client,
    cache: Cache,
    origin: DemoOrigin,
    secrets: Secrets,
    redis: Redis,
    db: TestDb,
    server: tokio::task::JoinHandle<()>,
}

/// The Redis the test owns; stopped when dropped.
enum Redis {
    Server(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    /// `REDIS_URL` as an operator would write it.
    fn url(&self) -> String {
        match self {
            Self::Server(server) => server.url(),
            Self::Cluster(cluster) => cluster.urls().join(","),
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Server(server) => server.stop(),
            Self::Cluster(_) => unreachable!("the tests stop single servers only"),
        }
    }
}

impl TestApp {
    async fn start(backend: Backend) -> Self {
        Self::start_with(backend, Redis::Server(RedisServer::start())).await
    }

    async fn start_with(backend: Backend, redis: Redis) -> Self {
        let db = TestDb::new(backend).await;
        let origin = open_origin(&db.db, OriginSettings::default()).await.expect("origin");
        let url: RedisUrl = redis.url().parse().expect("a redis url");
        let store = connect_store(Some(&url)).await.expect("connect to the test redis");
        // As `serve` builds it over Redis: with its near cache.
        let settings = CacheSettings {
            enabled: true,
            near_bytes: DEFAULT_NEAR_MB * 1024 * 1024,
        };
        let cache = build_cache_with(store, origin.clone(), settings).expect("cache");
        let secrets = Secrets {
            webhook: Secret::generate("webhook secret").expect("secret"),
            admin: Secret::generate("admin token").expect("secret"),
        };
        let app = router(
            AppState {
                cache: cache.clone(),
                origin: origin.clone(),
            },
            &secrets,
        )
        .expect("router");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            base,
            http: reqwest::Client::new(),
            cache,
            origin,
            secrets,
            redis,
            db,
            server,
        }
    }

    async fn get(&self, path: &str) -> Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }

    async fn post(&self, path: &str, body: Value) -> Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// Runs SQL on the database behind the application's back.
    async fn sql(&self, sql: String, id: &RecordId) -> u64 {
        self.db.execute_elsewhere(&sql, id.as_str()).await
    }

    async fn first_event(&self) -> Event {
        let ids = self.origin.recent_ids(Event::schema(), Some(1)).await.expect("ids");
        self.cache.get::<Event>(&ids[0]).await.expect("get").expect("an event")
    }

    async fn stop(self) {
        self.server.abort();
        drop(self.redis);
        self.db.cleanup().await;
    }
}

fn x_cache(response: &Response) -> &str {
    response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn origin_calls(response: &Response) -> u64 {
    response
        .headers()
        .get("x-origin-calls")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX)
}

async fn json(response: Response) -> Value {
    response.json().await.expect("a JSON body")
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn miss_then_hit() {
    for backend in backends() {
        let app = TestApp::start(backend).await;
        let event = app.first_event().await;
        let project = app
            .cache
            .query(Project::by_event(&event.id).limit(1))
            .await
            .expect("query")
            .remove(0);
        app.cache.invalidate::<Project>(&project.id).await.expect("invalidate");

        let path = format!("/projects/{}", project.id);
        let first = app.get(&path).await;
        assert_eq!(first.status(), StatusCode::OK, "{backend:?}");
        assert_eq!((x_cache(&first), origin_calls(&first)), ("MISS", 1));
        let first = json(first).await;
        assert_eq!(first["name"], project.name.as_str());
        assert!(first.get("join_code").is_none(), "the public view hides the join code");

        let second = app.get(&path).await;
        assert_eq!((x_cache(&second), origin_calls(&second)), ("HIT", 0));
        assert_eq!(json(second).await, first);

        // A record read through the cache but not yet as a response is a cache hit too.
        let by_slug = app.get(&format!("/events/by-slug/{}", event.slug)).await;
        assert_eq!(x_cache(&by_slug), "MISS");
        let by_slug = json(by_slug).await;
        assert_eq!(by_slug["id"], event.id.as_str());
        assert!(by_slug.get("attendees").is_none() && by_slug.get("join_code").is_none());
        let by_id = app.get(&format!("/events/{}", event.id)).await;
        assert_eq!((x_cache(&by_id), origin_calls(&by_id)), ("HIT", 0));
        app.stop().await;
    }
}

#[tokio::test]
async fn a_vote_reorders_the_cached_leaderboard() {
    for backend in backends() {
        let app = TestApp::start(backend).await;
        let event = app.first_event().await;
        let board = format!("/events/{}/projects?limit=100", event.id);

        let before = app.get(&board).await;
        assert_eq!(x_cache(&before), "MISS", "{backend:?}");
        let before = json(before).await;
        let cached = app.get(&board).await;
        assert_eq!(x_cache(&cached), "HIT");
        assert_eq!(json(cached).await, before);

        let items = before["items"].as_array().expect("items");
        let top_points = items[0]["points"].as_i64().expect("points");
        let last = items.last().expect("a project");
        let underdog = last["id"].as_str().expect("id").to_owned();
        let mut points = last["points"].as_i64().expect("points");
        let voter = event.attendees.ids()[0].clone();
        while points <= top_points {
            let voted = app
                .post(
                    &format!("/projects/{underdog}/votes"),
                    json!({ "voter": voter, "points": 10 }),
                )
                .await;
            assert_eq!(voted.status(), StatusCode::CREATED);
            let voted = json(voted).await;
            assert_eq!(voted["project"]["points"].as_i64(), Some(points + 10));
            points += 10;
        }

        let after = app.get(&board).await;
        assert_eq!(after.status(), StatusCode::OK);
        let after = json(after).await;
        let order = ids(&after);
        assert_eq!(order[0], underdog, "the underdog leads now");
        assert_eq!(after["items"][0]["points"].as_i64(), Some(points));
        let mut rest: Vec<String> = ids(&before).into_iter().filter(|id| *id != underdog).collect();
        rest.insert(0, underdog.clone());
        assert_eq!(order, rest, "the others keep their order");

        // The new leaderboard is what the cache serves from now on.
        let again = app.get(&board).await;
        assert_eq!(x_cache(&again), "HIT");
        assert_eq!(json(again).await, after);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_webhook_changes_what_get_returns() {
    for backend in backends() {
        let app = TestApp::start(backend).await;
        let event = app.first_event().await;
        let project = app
            .cache
            .query(Project::by_event(&event.id).limit(1))
            .await
            .expect("query")
            .remove(0);
        let path = format!("/projects/{}", project.id);
        assert_eq!(json(app.get(&path).await).await["name"], project.name.as_str());

        // Someone renames the project in the database, and the database says so.
        let changed = app
            .sql(
                format!(
                    "UPDATE {} SET \"name\" = 'Renamed by hand', \"updated_at\" = '2030-01-01T00:00:00.000Z' WHERE \"id\" = $1",
                    quote("Projects")
                ),
                &project.id,
            )
            .await;
        assert_eq!(changed, 1);
        let cached = app.get(&path).await;
        assert_eq!(x_cache(&cached), "HIT", "{backend:?}");
        assert_eq!(json(cached).await["name"], project.name.as_str(), "stale until told");

        let record = app
            .origin
            .fetch(Project::schema(), &project.id)
            .await
            .expect("fetch")
            .expect("the project");
        let delivery = app
            .http
            .post(format!("{}/webhooks/airtable", app.base))
            .header("x-airtable-secret", app.secrets.webhook.expose())
            .json(&json!({
                "table": "Projects",
                "record_id": project.id,
                "timestamp": "2030-01-01T00:00:00Z",
                "record": record.fields,
            }))
            .send()
            .await
            .expect("webhook");
        assert_eq!(delivery.status(), StatusCode::OK);
        assert_eq!(json(delivery).await["applied"], true);

        let after = app.get(&path).await;
        assert_eq!(
            (x_cache(&after), origin_calls(&after)),
            ("HIT", 0),
            "rebuilt from the cache"
        );
        assert_eq!(json(after).await["name"], "Renamed by hand");

        let refused = app
            .http
            .post(format!("{}/webhooks/airtable", app.base))
            .header("x-airtable-secret", "not the secret at all, no")
            .json(&json!({"table": "Projects", "record_id": project.id, "timestamp": "2031-01-01T00:00:00Z", "action": "delete"}))
            .send()
            .await
            .expect("webhook");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        app.stop().await;
    }
}

#[tokio::test]
async fn a_deleted_project_is_gone_and_tombstoned() {
    for backend in backends() {
        let app = TestApp::start(backend).await;
        let event = app.first_event().await;
        let project = app
            .cache
            .query(Project::by_event(&event.id).limit(1))
            .await
            .expect("query")
            .remove(0);
        let path = format!("/projects/{}", project.id);
        assert_eq!(app.get(&path).await.status(), StatusCode::OK);

        let deleted = app
            .http
            .delete(format!("{}{path}", app.base))
            .send()
            .await
            .expect("delete");
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "{backend:?}");
        assert!(
            app.origin
                .fetch(Project::schema(), &project.id)
                .await
                .expect("fetch")
                .is_none(),
            "gone from the database"
        );
        assert_eq!(
            app.cache
                .store()
                .get(Project::schema(), &project.id)
                .await
                .expect("store"),
            Lookup::Tombstone
        );

        let gone = app.get(&path).await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            (x_cache(&gone), origin_calls(&gone)),
            ("HIT", 0),
            "answered by the tombstone"
        );
        let board = json(app.get(&format!("/events/{}/projects?limit=100", event.id)).await).await;
        assert!(!ids(&board).contains(&project.id.to_string()), "left the leaderboard");

        let again = app
            .http
            .delete(format!("{}{path}", app.base))
            .send()
            .await
            .expect("delete");
        assert_eq!(again.status(), StatusCode::NOT_FOUND);
        app.stop().await;
    }
}

#[tokio::test]
async fn the_sweep_removes_what_the_database_lost() {
    for backend in backends() {
        let app = TestApp::start(backend).await;
        let warmed = warm_entity::<Project>(&app.cache, &app.origin, None, 8)
            .await
            .expect("warm");
        let cached = warmed.loaded as u64;
        assert_eq!(cached, 30, "{backend:?}");

        let victim = app.origin.recent_ids(Project::schema(), Some(1)).await.expect("ids")[0].clone();
        let path = format!("/projects/{victim}");
        assert_eq!(x_cache(&app.get(&path).await), "HIT");
        let removed = app
            .sql(format!("DELETE FROM {} WHERE \"id\" = $1", quote("Projects")), &victim)
            .await;
        assert_eq!(removed, 1);
        assert_eq!(
            app.get(&path).await.status(),
            StatusCode::OK,
            "the cache does not know yet"
        );

        let batch = 7;
        let calls_before = app.origin.calls();
        let summary = sweep_entities(&app.cache, &app.origin, &[Project::schema()], batch)
            .await
            .expect("sweep");
        let report = &summary.entities[0];
        assert_eq!((report.checked, report.removed), (cached, 1));
        assert_eq!(report.batches, cached.div_ceil(batch as u64));
        assert_eq!(summary.origin_calls, cached.div_ceil(batch as u64));
        let calls = app.origin.calls();
        assert_eq!(
            calls.exists_many - calls_before.exists_many,
            cached.div_ceil(batch as u64)
        );
        assert_eq!(
            calls.total() - calls_before.total(),
            summary.origin_calls,
            "nothing else asked"
        );

        let gone = app.get(&path).await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            (x_cache(&gone), origin_calls(&gone)),
            ("HIT", 0),
            "tombstoned by the sweep"
        );

        let second = sweep_entities(&app.cache, &app.origin, &[Project::schema()], batch)
            .await
            .expect("sweep");
        assert_eq!(
            (second.entities[0].checked, second.entities[0].removed),
            (cached - 1, 0)
        );
        app.stop().await;
    }
}

#[tokio::test]
async fn the_service_keeps_answering_when_redis_dies() {
    for backend in backends() {
        let mut app = TestApp::start(backend).await;
        let event = app.first_event().await;
        let projects = app
            .cache
            .query(Project::by_event(&event.id).limit(2))
            .await
            .expect("query");
        let in_event = app
            .cache
            .query(Project::by_event(&event.id))
            .await
            .expect("query")
            .len();
        let path = format!("/projects/{}", projects[0].id);
        assert_eq!(app.get(&path).await.status(), StatusCode::OK);

        app.redis.stop();
        // The near cache answers nothing once it has heard that its tracking connection is
        // gone (a moment after the server went away).
        let near = app.cache.near_cache().expect("a near cache over Redis");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while near.is_enabled() {
            assert!(std::time::Instant::now() < deadline, "the near cache turned off");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }

        let read = app.get(&path).await;
        assert_eq!(read.status(), StatusCode::OK, "{backend:?}");
        assert!(origin_calls(&read) >= 1, "served from the database");
        assert_eq!(json(read).await["id"], projects[0].id.as_str());
        let other = app.get(&format!("/projects/{}", projects[1].id)).await;
        assert_eq!(other.status(), StatusCode::OK);
        let board = app.get(&format!("/events/{}/projects", event.id)).await;
        assert_eq!(board.status(), StatusCode::OK);
        assert_eq!(
            json(board).await["items"].as_array().map(Vec::len),
            Some(in_event.min(20))
        );

        let voter = event.attendees.ids()[0].clone();
        let vote = app
            .post(
                &format!("/projects/{}/votes", projects[1].id),
                json!({ "voter": voter }),
            )
            .await;
        assert_eq!(vote.status(), StatusCode::CREATED, "writes go on, the cache skipped");
        let after = json(app.get(&format!("/projects/{}", projects[1].id)).await).await;
        assert_eq!(after["points"].as_i64(), Some(projects[1].points + 1));
        app.stop().await;
    }
}

#[tokio::test]
async fn serves_through_a_redis_cluster() {
    let cluster = tokio::task::spawn_blocking(RedisCluster::start)
        .await
        .expect("start the cluster");
    let app = TestApp::start_with(Backend::Sqlite, Redis::Cluster(cluster)).await;
    assert!(matches!(app.redis.url().parse(), Ok(RedisUrl::Cluster(nodes)) if nodes.len() == 3));
    let event = app.first_event().await;
    let board = format!("/events/{}/projects?limit=3", event.id);
    let first = app.get(&board).await;
    assert_eq!(x_cache(&first), "MISS");
    let first = json(first).await;
    let second = app.get(&board).await;
    assert_eq!((x_cache(&second), origin_calls(&second)), ("HIT", 0));
    assert_eq!(json(second).await, first);

    let third = ids(&first)[2].clone();
    let voter = event.attendees.ids()[0].clone();
    let top = first["items"][0]["points"].as_i64().expect("points");
    let mut points = first["items"][2]["points"].as_i64().expect("points");
    while points <= top {
        let voted = app
            .post(
                &format!("/projects/{third}/votes"),
                json!({ "voter": voter, "points": 10 }),
            )
            .await;
        assert_eq!(voted.status(), StatusCode::CREATED);
        points += 10;
    }
    let after = json(app.get(&board).await).await;
    assert_eq!(ids(&after)[0], third);
    app.stop().await;
}

/// The three ways a deleted project used to come back, each answered 404 now: a write racing
/// the delete, a late webhook of its earlier state, and a cached response outliving a query
/// refill that found it gone.
#[tokio::test]
async fn deletes_are_final() {
    for backend in backends() {
        let app = TestApp::start(backend).await;
        let event = app.first_event().await;
        let mut projects = app
            .cache
            .query(Project::by_event(&event.id).limit(3))
            .await
            .expect("query");
        let (raced, late, purged) = (projects.remove(0), projects.remove(0), projects.remove(0));

        // 1. A write racing the delete: its database write commits first, its cache upsert
        //    lands after the delete's tombstone.
        let path = format!("/projects/{}", raced.id);
        assert_eq!(app.get(&path).await.status(), StatusCode::OK);
        let changes = demo_app::writes::ProjectChanges {
            name: Some("Written before the delete".into()),
            description: None,
            collaborators: None,
        };
        let written = writes::update_project(&app.origin, &app.cache, &raced.id, &changes)
            .await
            .expect("update")
            .expect("the project");
        let deleted = app
            .http
            .delete(format!("{}{path}", app.base))
            .send()
            .await
            .expect("delete");
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "{backend:?}");
        assert_eq!(
            app.cache.upsert(&written).await.expect("upsert"),
            cache_core::UpsertOutcome::Deleted,
            "{backend:?}"
        );
        let gone = app.get(&path).await;
        assert_eq!(gone.status(), StatusCode::NOT_FOUND, "{backend:?}");
        let board = json(app.get(&format!("/events/{}/projects?limit=100", event.id)).await).await;
        assert!(!ids(&board).contains(&raced.id.to_string()), "{backend:?}");

        // 2. A late webhook of the state before the delete.
        let path = format!("/projects/{}", late.id);
        let record = app
            .origin
            .fetch(Project::schema(), &late.id)
            .await
            .expect("fetch")
            .expect("the project");
        let deleted = app
            .http
            .delete(format!("{}{path}", app.base))
            .send()
            .await
            .expect("delete");
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        let delivery = app
            .http
            .post(format!("{}/webhooks/airtable", app.base))
            .header("x-airtable-secret", app.secrets.webhook.expose())
            .json(&json!({
                "table": "Projects",
                "record_id": late.id,
                "timestamp": record.fields["updated_at"],
                "record": record.fields,
            }))
            .send()
            .await
            .expect("webhook");
        assert_eq!(delivery.status(), StatusCode::OK);
        let delivery = json(delivery).await;
        assert_eq!(delivery["applied"], false, "{backend:?}: {delivery}");
        assert!(delivery["reason"].is_string(), "{delivery}");
        assert_eq!(app.get(&path).await.status(), StatusCode::NOT_FOUND, "{backend:?}");

        // 3. A cached response of a project a query refill finds gone.
        let path = format!("/projects/{}", purged.id);
        assert_eq!(app.get(&path).await.status(), StatusCode::OK);
        assert!(
            app.get(&path).await.headers().contains_key("x-cache-key"),
            "response cached"
        );
        let removed = app
            .sql(
                format!("DELETE FROM {} WHERE \"id\" = $1", quote("Projects")),
                &purged.id,
            )
            .await;
        assert_eq!(removed, 1);
        let refreshed = app
            .http
            .get(format!("{}/events/{}/projects?limit=100", app.base, event.id))
            .header("cache-control", "no-cache")
            .send()
            .await
            .expect("leaderboard");
        assert!(!ids(&json(refreshed).await).contains(&purged.id.to_string()));
        let after = app.get(&path).await;
        assert!(
            !after.headers().contains_key("x-cache-key"),
            "{backend:?}: the response was purged"
        );
        assert_eq!(after.status(), StatusCode::NOT_FOUND, "{backend:?}");
        app.stop().await;
    }
}
