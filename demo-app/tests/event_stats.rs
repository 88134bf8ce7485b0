//! `GET /events/{id}/stats`: the demo's computed value (an aggregate over an event's projects
//! and votes) behind the response cache, on a SQLite database and a spawned redis-server.

mod common;

use cache_core::Cacheable;
use cache_redis::testing::RedisServer;
use common::{Backend, TestDb};
use demo_app::{
    api::{self, AppState},
    app::{Secrets, build_cache, connect_store, open_origin, router},
    config::{RedisUrl, Secret},
    models::Event,
    origin::OriginSettings,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test]
async fn event_stats_are_computed_once_and_follow_votes() {
    let db = TestDb::new(Backend::Sqlite).await;
    let redis = RedisServer::start();
    let origin = open_origin(&db.db, OriginSettings::default()).await.expect("origin");
    let url: RedisUrl = redis.url().parse().expect("a redis url");
    let store = connect_store(Some(&url)).await.expect("connect to the test redis");
    let cache = build_cache(store, origin.clone(), true).expect("cache");
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
    let http = reqwest::Client::new();
    let get = |path: String| {
        let request = http.get(format!("{base}{path}"));
        async move { request.send().await.expect("request") }
    };
    let x_cache = |r: &reqwest::Response| r.headers().get("x-cache").map(|v| v.to_str().unwrap_or("").to_owned());

    let event_id = origin.recent_ids(Event::schema(), Some(1)).await.expect("ids")[0].clone();
    let event: Event = cache.get(&event_id).await.expect("get").expect("an event");
    let stats_path = format!("/events/{event_id}/stats");

    let first = get(stats_path.clone()).await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(x_cache(&first).as_deref(), Some("MISS"));
    let before: Value = first.json().await.expect("json");
    let board: Value = get(format!("/events/{event_id}/projects?limit=100"))
        .await
        .json()
        .await
        .expect("json");
    let projects = board["items"].as_array().expect("items");
    assert_eq!(before["projects"].as_u64(), Some(projects.len() as u64));
    assert_eq!(
        before["top_project"]["id"], projects[0]["id"],
        "the leader tops the stats"
    );
    let total: i64 = projects.iter().map(|p| p["points"].as_i64().expect("points")).sum();
    assert_eq!(before["points"].as_i64(), Some(total));

    let again = get(stats_path.clone()).await;
    assert_eq!(x_cache(&again).as_deref(), Some("HIT"));
    let computed = cache.computed_stats()["event_stats"];
    assert_eq!((computed.misses, computed.computations), (1, 1));
    // Read directly (not through the response cache): the computed value answers.
    let direct = api::event_stats(&cache, &event_id)
        .await
        .expect("stats")
        .expect("an event");
    assert_eq!(serde_json::to_value(&direct).expect("json"), before);
    assert_eq!(cache.computed_stats()["event_stats"].hits, 1);

    // A vote changes the event's votes and points: the computed value and the cached response
    // built on it are gone.
    let underdog = projects.last().expect("a project")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let voter = event.attendees.ids()[0].clone();
    let voted = http
        .post(format!("{base}/projects/{underdog}/votes"))
        .json(&json!({ "voter": voter, "points": 10 }))
        .send()
        .await
        .expect("vote");
    assert_eq!(voted.status(), StatusCode::CREATED);
    let after = get(stats_path.clone()).await;
    assert_eq!(
        x_cache(&after).as_deref(),
        Some("MISS"),
        "the vote purged the cached response"
    );
    let after: Value = after.json().await.expect("json");
    assert_eq!(after["votes"].as_u64(), before["votes"].as_u64().map(|v| v + 1));
    assert_eq!(after["points"].as_i64(), Some(total + 10));
    assert_eq!(cache.computed_stats()["event_stats"].computations, 2);

    let missing = get("/events/recNOPE00000000000/stats".to_owned()).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    server.abort();
    drop(redis);
    db.cleanup().await;
}
