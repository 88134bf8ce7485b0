//! The admin router over real HTTP and through `oneshot`: authentication, statistics,
//! flushing, purging and the schema.
// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use axum::{Router, body::Body};
use cache_core::{store::Store, testing::OriginMethod};
use cache_http::{
    ConfigError, SecretError,
    admin::{self, AdminConfig},
};
use common::{Event, Harness, Project, TOKEN, header, id, project, serve};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn router(h: &Harness) -> Router {
    admin::routes(AdminConfig::new(h.cache.clone(), TOKEN).json_schema_of::<Event>()).unwrap()
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(json) => {
            req = req.header("content-type", "application/json");
            Body::from(json.to_string())
        }
        None => Body::empty(),
    };
    let response = app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b':' | b'*' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Warms the cache: both events, the projects of E1 (a query) and a tombstone.
async fn warm(h: &Harness) {
    for e in ["recE1", "recE2"] {
        h.cache.get::<Event>(&id(e)).await.unwrap();
    }
    h.cache.query(Project::by_event(&id("recE1"))).await.unwrap();
    h.cache.get::<Project>(&id("recNope")).await.unwrap();
    h.cache.get::<Project>(&id("recNope")).await.unwrap();
    h.cache.get::<Event>(&id("recE1")).await.unwrap();
}

#[tokio::test]
async fn every_route_needs_the_token() {
    let h = Harness::new();
    warm(&h).await;
    let app = router(&h);
    let keys = h.store.stats().await.unwrap().total_keys;
    let routes = [
        (Method::GET, "/admin/cache/stats", None),
        (Method::DELETE, "/admin/cache", None),
        (Method::DELETE, "/admin/cache?pattern=*", None),
        (
            Method::POST,
            "/admin/cache/purge",
            Some(json!({"tags": ["projects?*"]})),
        ),
        (Method::GET, "/admin/cache/schema", None),
    ];
    for (method, uri, body) in routes {
        let (status, json) = call(&app, method.clone(), uri, None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert!(json["error"].is_string());
        let (status, json) = call(&app, method.clone(), uri, Some("wrong-token"), body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert!(json["error"].is_string());
    }
    assert_eq!(h.store.stats().await.unwrap().total_keys, keys, "nothing flushed");

    let response = app
        .clone()
        .oneshot(Request::get("/admin/cache/stats").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let response = app
        .oneshot(
            Request::get("/admin/cache/stats")
                .header("authorization", format!("Basic {TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "only bearer tokens");
}

#[tokio::test]
async fn stats_over_http() {
    let h = Harness::new();
    warm(&h).await;
    let base = serve(router(&h)).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/admin/cache/stats"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    let stats: Value = response.json().await.unwrap();
    for field in [
        "total_keys",
        "memory_used_bytes",
        "memory_used_human",
        "keyspace_hits",
        "keyspace_misses",
        "hit_rate_percent",
        "connected_clients",
        "evicted_keys",
    ] {
        assert!(stats.get(field).is_some(), "{field} missing from {stats:#}");
    }
    assert_eq!(stats["backend"], "memory");
    assert!(stats["total_keys"].as_u64().unwrap() >= 5, "{stats:#}");
    assert!(stats["memory_used_human"].is_string());
    assert!(stats["keyspace_hits"].is_null(), "the memory store does not know it");

    let events = &stats["entities"]["events"];
    assert_eq!(events["hits"], 1);
    assert_eq!(events["misses"], 2);
    assert_eq!(events["origin_calls"], 2);
    assert_eq!(events["hit_rate_percent"], 33.33);
    let projects = &stats["entities"]["projects"];
    assert_eq!(projects["tombstone_hits"], 1);
    assert_eq!(projects["stale_refusals"], 0);
    assert_eq!(projects["origin_calls"], 2);
    assert_eq!(stats["totals"]["origin_calls"], 4);

    h.cache.upsert(&project("recP1", "recE1", 1, 5)).await.unwrap();
    h.cache.upsert(&project("recP1", "recE1", 1, 4)).await.unwrap();
    let (_, stats) = call(&router(&h), Method::GET, "/admin/cache/stats", Some(TOKEN), None).await;
    assert_eq!(stats["entities"]["projects"]["stale_refusals"], 1);
    assert_eq!(stats["total_keys_exact"], true, "the memory store counts what it holds");
    let (status, exact) = call(
        &router(&h),
        Method::GET,
        "/admin/cache/stats?exact=true",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(exact["total_keys"], stats["total_keys"]);
    let (status, _) = call(
        &router(&h),
        Method::GET,
        "/admin/cache/stats?exact=perhaps",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a malformed `exact` is refused");

    let options = cache_core::ComputeOptions::new(std::time::Duration::from_secs(60)).name("site_stats");
    for _ in 0..2 {
        let value: u32 = h
            .cache
            .get_or_compute("site_stats", &options, || async { Ok::<_, std::io::Error>(7) })
            .await
            .unwrap();
        assert_eq!(value, 7);
    }
    let (_, stats) = call(&router(&h), Method::GET, "/admin/cache/stats", Some(TOKEN), None).await;
    let computed = &stats["computed"]["site_stats"];
    assert_eq!(
        (&computed["misses"], &computed["hits"]),
        (&json!(1), &json!(1)),
        "{stats:#}"
    );
}

#[tokio::test]
async fn flush_by_pattern_stays_in_the_namespace() {
    let h = Harness::new();
    warm(&h).await;
    let base = serve(router(&h)).await;
    let client = reqwest::Client::new();
    let flush = |pattern: Option<&str>| {
        let url = match pattern {
            Some(pattern) => format!("{base}/admin/cache?pattern={}", encode(pattern)),
            None => format!("{base}/admin/cache"),
        };
        client.delete(url).bearer_auth(TOKEN).send()
    };

    let response = flush(Some("events:r:*")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["removed"], 2);
    assert_eq!(body["pattern"], "events:r:*");
    let calls = h.origin.count(OriginMethod::Fetch);
    h.cache.get::<Event>(&id("recE1")).await.unwrap();
    assert_eq!(h.origin.count(OriginMethod::Fetch), calls + 1, "the event was flushed");
    let calls = h.origin.total_calls();
    h.cache.get::<Project>(&id("recP1")).await.unwrap();
    assert_eq!(h.origin.total_calls(), calls, "projects were not");

    for bad in ["", "a b", "events:[ab", "events:]", "events:\\"] {
        let response = flush(Some(bad)).await.unwrap();
        assert_eq!(response.status(), 400, "{bad:?}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{bad:?}");
    }

    let total = h.store.stats().await.unwrap().total_keys;
    let response = flush(None).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    // `removed` counts the logical keys (records, tombstones, values); the store's key count
    // also counts its index markers.
    let removed = body["removed"].as_u64().unwrap();
    assert!(removed > 0 && removed <= total, "removed {removed} of {total}");
    assert!(body["pattern"].is_null());
    assert_eq!(h.store.stats().await.unwrap().total_keys, 0);
}

#[tokio::test]
async fn a_store_that_is_down_is_503() {
    let h = Harness::new();
    let app = router(&h);
    h.store.set_down(true);
    for (method, uri, body) in [
        (Method::GET, "/admin/cache/stats", None),
        (Method::DELETE, "/admin/cache", None),
        (Method::DELETE, "/admin/cache?pattern=events:*", None),
        (Method::POST, "/admin/cache/purge", Some(json!({"tags": ["events?*"]}))),
    ] {
        let (status, json) = call(&app, method.clone(), uri, Some(TOKEN), body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{method} {uri}");
        assert!(json["error"].as_str().unwrap().contains("unavailable"), "{json}");
    }
}

#[tokio::test]
async fn purge_by_tag_removes_stored_responses() {
    let h = Harness::new();
    let app = h.app().merge(router(&h));
    let get = || {
        app.clone()
            .oneshot(Request::get("/events/recE1/projects").body(Body::empty()).unwrap())
    };
    get().await.unwrap();
    assert!(get().await.unwrap().headers().contains_key("x-cache-key"));
    let (status, body) = call(
        &app,
        Method::POST,
        "/admin/cache/purge",
        Some(TOKEN),
        Some(json!({"tags": ["projects?event=recE1"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["removed"], 1);
    assert!(!get().await.unwrap().headers().contains_key("x-cache-key"));

    let (status, _) = call(
        &app,
        Method::POST,
        "/admin/cache/purge",
        Some(TOKEN),
        Some(json!({"tags": []})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = call(
        &app,
        Method::POST,
        "/admin/cache/purge",
        Some(TOKEN),
        Some(json!({"tag": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn schema_lists_entities_fields_indexes_and_json_schemas() {
    let h = Harness::new();
    let (status, body) = call(&router(&h), Method::GET, "/admin/cache/schema", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let entities = body["entities"].as_array().unwrap();
    let names: Vec<&str> = entities.iter().map(|e| e["entity"].as_str().unwrap()).collect();
    assert_eq!(names, ["events", "projects"]);
    let projects = &entities[1];
    assert_eq!(projects["source_table"], "Projects");
    assert_eq!(projects["version_field"], "version");
    assert_eq!(projects["indexed_fields"], json!(["event"]));
    assert_eq!(projects["sortable_fields"], json!(["points"]));
    let event_field = projects["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "event")
        .unwrap();
    assert_eq!(event_field["source_name"], "event_id");
    assert_eq!(event_field["kind"], "link");
    assert_eq!(event_field["target"], "events");
    assert!(projects["json_schema"].is_null(), "not configured for projects");
    let events = &entities[0];
    assert_eq!(events["json_schema"]["title"], "Event");
    assert_eq!(events["json_schema"]["properties"]["name"]["type"], "string");
}

#[test]
fn refuses_to_build_without_a_token() {
    let h = Harness::new();
    let build = |token: &str| admin::routes::<()>(AdminConfig::new(h.cache.clone(), token)).map(|_| ());
    assert!(matches!(
        build(""),
        Err(ConfigError::Secret(SecretError::Missing { .. }))
    ));
    assert!(matches!(
        build("letmein"),
        Err(ConfigError::Secret(SecretError::TooShort { .. }))
    ));
    assert!(build(TOKEN).is_ok());
}
