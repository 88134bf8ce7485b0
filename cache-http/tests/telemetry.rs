//! `X-Cache` and `X-Origin-Calls` over real HTTP and through `oneshot`.
// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use axum::{Router, body::Body, routing::get};
use cache_core::{Cache, testing::OriginMethod};
use cache_http::CacheTelemetryLayer;
use common::{Event, Harness, Project, header, id, serve};
use http::{HeaderName, Request};
use tower::ServiceExt;

#[tokio::test]
async fn miss_then_hit_then_bypass_over_http() {
    let h = Harness::new();
    let base = serve(h.app()).await;
    let client = reqwest::Client::new();

    let first = client.get(format!("{base}/events/recE1")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache"), Some("MISS"));
    assert_eq!(header(&first, "x-origin-calls"), Some("1"));

    let second = client.get(format!("{base}/events/recE1")).send().await.unwrap();
    assert_eq!(header(&second, "x-cache"), Some("HIT"));
    assert_eq!(header(&second, "x-origin-calls"), Some("0"));
    assert_eq!(h.origin.count(OriginMethod::Fetch), 1);

    // no-cache: the cached record is skipped and the origin asked again.
    let refreshed = client
        .get(format!("{base}/events/recE1"))
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200);
    assert_eq!(header(&refreshed, "x-cache"), Some("BYPASS"));
    assert_eq!(header(&refreshed, "x-origin-calls"), Some("1"));
    assert_eq!(h.origin.count(OriginMethod::Fetch), 2);
    assert_eq!(refreshed.json::<Event>().await.unwrap().name, "Hack One");
}

#[tokio::test]
async fn no_cache_refreshes_what_it_reads() {
    let h = Harness::new();
    let app = h.app();
    let get = |cc: Option<&str>| {
        let mut req = Request::get("/events/recE1");
        if let Some(cc) = cc {
            req = req.header("cache-control", cc);
        }
        app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    assert_eq!(get(None).await.unwrap().headers()["x-cache"], "MISS");
    // The source changes behind the cache's back; a refresh reads and stores the new name.
    h.origin
        .put(&Event {
            id: id("recE1"),
            name: "Renamed".into(),
        })
        .unwrap();
    assert_eq!(get(Some("no-cache")).await.unwrap().headers()["x-cache"], "BYPASS");
    let after = h.cache.get::<Event>(&id("recE1")).await.unwrap().unwrap();
    assert_eq!(after.name, "Renamed", "the refresh stored what it read");
    assert_eq!(get(None).await.unwrap().headers()["x-cache"], "HIT");
}

#[tokio::test]
async fn a_request_that_reads_nothing_is_a_bypass() {
    let app: Router = Router::new()
        .route("/", get(|| async { "static" }))
        .layer(CacheTelemetryLayer::new());
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["x-cache"], "BYPASS");
    assert_eq!(response.headers()["x-origin-calls"], "0");
}

#[tokio::test]
async fn mixed_hits_and_misses_are_a_miss_and_count_every_origin_call() {
    let h = Harness::new();
    h.cache.get::<Event>(&id("recE1")).await.unwrap();
    let cache = h.cache.clone();
    let app: Router = Router::new()
        .route(
            "/both",
            get(move || async move {
                cache.get::<Event>(&id("recE1")).await.unwrap();
                cache.get::<Event>(&id("recE2")).await.unwrap();
                cache.get::<Event>(&id("recMissing")).await.unwrap();
                "ok"
            }),
        )
        .layer(CacheTelemetryLayer::new().origin_calls_header(HeaderName::from_static("x-airtable-hits")));
    let response = app
        .oneshot(Request::get("/both").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["x-cache"], "MISS");
    assert_eq!(response.headers()["x-airtable-hits"], "2");
    assert!(
        response.headers().get("x-origin-calls").is_none(),
        "the header name is configurable"
    );
}

#[tokio::test]
async fn a_disabled_cache_is_a_bypass() {
    let h = Harness::new();
    let cache = Cache::builder(cache_core::MemoryStore::new(), h.origin.clone())
        .enabled(false)
        .build()
        .unwrap();
    let app: Router = Router::new()
        .route(
            "/",
            get(move || async move {
                cache.get::<Event>(&id("recE1")).await.unwrap();
                cache.query(Project::by_event(&id("recE1"))).await.unwrap();
                "ok"
            }),
        )
        .layer(CacheTelemetryLayer::new());
    let response = app
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["x-cache"], "BYPASS");
    assert_eq!(response.headers()["x-origin-calls"], "2");
    assert_eq!(h.origin.total_calls(), 2, "both reads went to the origin");
}
