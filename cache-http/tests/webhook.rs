//! The webhook router over real HTTP and through `oneshot`: every status, what each changes
//! (and does not), ordering and duplicates.
// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use axum::{Router, body::Body};
use bytes::Bytes;
use cache_core::{
    Cache,
    store::{Store, StoreStats},
    testing::OriginMethod,
};
use cache_http::{
    ConfigError, SecretError,
    webhook::{self, WebhookConfig},
};
use common::{Event, Harness, Project, SECRET, header, id, serve};
use http::{HeaderName, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

fn router(cache: &Cache) -> Router {
    webhook::routes(WebhookConfig::new(cache.clone(), SECRET)).unwrap()
}

fn event_payload(name: &str, timestamp: &str) -> Value {
    json!({
        "table": "Events",
        "record_id": "recE1",
        "timestamp": timestamp,
        "record": {"id": "recE1", "name": name}
    })
}

fn project_payload(points: i64, version: i64, timestamp: &str) -> Value {
    json!({
        "table": "Projects",
        "record_id": "recP2",
        "timestamp": timestamp,
        "record": {"id": "recP2", "name": "Project recP2", "event_id": ["recE1"], "points": points, "version": version}
    })
}

async fn post(
    app: &Router,
    secret: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
) -> (StatusCode, Value) {
    let mut req = Request::post("/webhooks/airtable");
    if let Some(secret) = secret {
        req = req.header("x-airtable-secret", secret);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let response = app.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn deliver(app: &Router, payload: &Value) -> (StatusCode, Value) {
    post(app, Some(SECRET), Some("application/json"), payload.to_string()).await
}

/// Everything a delivery could have changed.
async fn state(h: &Harness) -> (StoreStats, usize, cache_core::stats::CacheStats) {
    (h.store.stats().await.unwrap(), h.origin.total_calls(), h.cache.stats())
}

#[tokio::test]
async fn an_upsert_over_http_updates_the_cache_without_the_origin() {
    let h = Harness::new();
    let app = h.app().merge(router(&h.cache));
    let base = serve(app).await;
    let client = reqwest::Client::new();

    // A cached list that the delivery must purge.
    client
        .get(format!("{base}/events/recE1/projects"))
        .send()
        .await
        .unwrap();
    let calls = h.origin.total_calls();

    let response = client
        .post(format!("{base}/webhooks/airtable"))
        .header("x-airtable-secret", SECRET)
        .json(&project_payload(50, 2, "2025-01-01T00:00:00Z"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"applied": true, "entity": "projects", "record_id": "recP2", "action": "upsert"})
    );
    assert_eq!(h.origin.total_calls(), calls, "the origin was not asked");

    let cached = h.cache.get::<Project>(&id("recP2")).await.unwrap().unwrap();
    assert_eq!((cached.points, cached.version), (50, 2));
    assert_eq!(h.origin.total_calls(), calls, "read from the cache");
    let list = client
        .get(format!("{base}/events/recE1/projects"))
        .send()
        .await
        .unwrap();
    assert!(header(&list, "x-cache-key").is_none(), "the stored list was purged");
    let list: Vec<Project> = list.json().await.unwrap();
    assert_eq!(list[0].id, id("recP2"));
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_401_and_changes_nothing() {
    let h = Harness::new();
    let app = router(&h.cache);
    let before = state(&h).await;
    let payload = event_payload("Hijacked", "2030-01-01T00:00:00Z").to_string();
    for secret in [None, Some("wrong"), Some(&SECRET[..SECRET.len() - 1]), Some("")] {
        let (status, body) = post(&app, secret, Some("application/json"), payload.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{secret:?}");
        assert_eq!(body["error"], "missing or wrong webhook secret");
    }
    // 401 comes first: even a body that is not JSON is not looked at.
    let (status, _) = post(&app, Some("wrong"), Some("text/plain"), "x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(state(&h).await, before, "store, origin and counters untouched");
    assert_eq!(before.0.total_keys, 0);

    let event = h.cache.get::<Event>(&id("recE1")).await.unwrap().unwrap();
    assert_eq!(event.name, "Hack One", "the origin's record, not the payload's");

    // The secret header is configurable.
    let custom = webhook::routes::<()>(
        WebhookConfig::new(h.cache.clone(), SECRET).secret_header(HeaderName::from_static("x-hook-token")),
    )
    .unwrap();
    let (status, _) = post(&custom, Some(SECRET), Some("application/json"), payload.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the default header no longer counts");
    let response = custom
        .oneshot(
            Request::post("/webhooks/airtable")
                .header("x-hook-token", SECRET)
                .header("content-type", "application/json")
                .body(Body::from(payload))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_table_is_400_naming_it() {
    let h = Harness::new();
    let before = state(&h).await;
    let (status, body) = deliver(
        &router(&h.cache),
        &json!({"table": "Judges", "record_id": "recJ1", "timestamp": "2025-01-01T00:00:00Z", "record": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["table"], "Judges");
    assert!(body["error"].as_str().unwrap().contains("Judges"));
    assert_eq!(body["known_tables"], json!(["Events", "Projects"]));
    assert_eq!(state(&h).await, before);
}

#[tokio::test]
async fn a_record_that_does_not_parse_is_422_with_its_path() {
    let h = Harness::new();
    let app = router(&h.cache);
    let before = state(&h).await;

    let mut payload = project_payload(1, 1, "2025-01-01T00:00:00Z");
    payload["record"]["points"] = json!("lots");
    let (status, body) = deliver(&app, &payload).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["path"], "record.points");
    assert_eq!(body["entity"], "projects");
    assert!(!body["reason"].as_str().unwrap().is_empty());

    let mut payload = project_payload(1, 1, "2025-01-01T00:00:00Z");
    payload["record"]["event_id"] = json!(["recE1", "recE2"]);
    let (status, body) = deliver(&app, &payload).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["path"], "record.event_id");

    let mut payload = project_payload(1, 1, "2025-01-01T00:00:00Z");
    payload["record"]["id"] = json!("recOther");
    let (status, body) = deliver(&app, &payload).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["path"], "record.id");

    let (status, body) = deliver(
        &app,
        &json!({"table": "Projects", "record_id": "recP2", "timestamp": "soon"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["path"], "timestamp");

    let (status, body) = deliver(
        &app,
        &json!({"table": "Projects", "record_id": "rec:P2", "timestamp": "2025-01-01T00:00:00Z", "record": {}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["path"], "record_id");

    let (status, body) = deliver(
        &app,
        &json!({"table": "Projects", "record_id": "recP2", "timestamp": "2025-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "an upsert without its record");
    assert_eq!(body["path"], "record");

    // Records that do not parse are refused before their delivery claims its timestamp, so a
    // bad delivery cannot hold back the record's later ones: nothing changed.
    assert_eq!(h.store.get_value("webhook:projects:recP2").await.unwrap(), None);
    assert_eq!(state(&h).await, before);
    let (status, _) = deliver(&app, &project_payload(1, 1, "2025-01-01T00:00:00Z")).await;
    assert_eq!(status, StatusCode::OK, "a good delivery of the same record applies");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let h = Harness::new();
    let app: Router = webhook::routes(WebhookConfig::new(h.cache.clone(), SECRET).max_body_bytes(256)).unwrap();
    let mut payload = event_payload("x", "2025-01-01T00:00:00Z");
    payload["record"]["padding"] = json!("p".repeat(300));
    let (status, body) = deliver(&app, &payload).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["limit"], 256);
    assert!(body["error"].is_string());

    // Without a Content-Length (chunked), the limit still holds.
    let chunks = payload
        .to_string()
        .into_bytes()
        .chunks(64)
        .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)))
        .collect::<Vec<_>>();
    let (status, _) = post(
        &app,
        Some(SECRET),
        Some("application/json"),
        Body::from_stream(futures::stream::iter(chunks)),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let (status, _) = deliver(&app, &event_payload("small", "2025-01-01T00:00:00Z")).await;
    assert_eq!(status, StatusCode::OK, "under the limit");

    // The default limit is 1 MiB, over real HTTP.
    let base = serve(router(&h.cache)).await;
    let mut big = event_payload("x", "2025-01-01T00:00:00Z");
    big["record"]["padding"] = json!("p".repeat(1 << 20));
    let response = reqwest::Client::new()
        .post(format!("{base}/webhooks/airtable"))
        .header("x-airtable-secret", SECRET)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.json::<Value>().await.unwrap()["limit"], 1 << 20);
}

#[tokio::test]
async fn non_json_is_415_and_malformed_json_is_400() {
    let h = Harness::new();
    let app = router(&h.cache);
    let before = state(&h).await;
    let payload = event_payload("x", "2025-01-01T00:00:00Z").to_string();
    for ct in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let (status, body) = post(&app, Some(SECRET), ct, payload.clone()).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert!(body["error"].as_str().unwrap().contains("JSON"));
    }
    for bad in ["{", "{\"table\": \"Events\",}", "[1, 2", ""] {
        let (status, body) = post(&app, Some(SECRET), Some("application/json; charset=utf-8"), bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
        assert!(body["error"].as_str().unwrap().starts_with("malformed JSON"));
    }
    assert_eq!(state(&h).await, before);
}

#[tokio::test]
async fn older_deliveries_are_acknowledged_and_ignored() {
    let h = Harness::new();
    let app = router(&h.cache);
    let (status, body) = deliver(&app, &event_payload("Newest", "2025-01-01T12:00:00Z")).await;
    assert_eq!((status, body["applied"].clone()), (StatusCode::OK, json!(true)));

    // Delivered late: older than what was applied.
    let (status, body) = deliver(&app, &event_payload("Older", "2025-01-01T11:59:59Z")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["applied"], false);
    assert_eq!(body["reason"], "stale");
    let mut delete = event_payload("", "2025-01-01T11:00:00+00:00");
    delete["action"] = json!("delete");
    let (status, body) = deliver(&app, &delete).await;
    assert_eq!((status, body["reason"].clone()), (StatusCode::OK, json!("stale")));

    let event = h.cache.get::<Event>(&id("recE1")).await.unwrap().unwrap();
    assert_eq!(event.name, "Newest");
    assert_eq!(h.origin.total_calls(), 0);

    // Offsets are compared as instants: 13:00+01:00 is 12:00Z, not newer.
    let (_, body) = deliver(&app, &event_payload("Same instant", "2025-01-01T13:00:00+01:00")).await;
    assert_eq!(
        body["applied"], true,
        "an equal timestamp is applied (a duplicate is harmless)"
    );
    let (_, body) = deliver(&app, &event_payload("Later", "2025-01-01T12:00:01Z")).await;
    assert_eq!(body["applied"], true);
    assert_eq!(h.cache.get::<Event>(&id("recE1")).await.unwrap().unwrap().name, "Later");
}

async fn deliver_owned(app: Router, payload: Value) -> (StatusCode, Value) {
    deliver(&app, &payload).await
}

async fn event_name(cache: &Cache) -> String {
    cache.get::<Event>(&id("recE1")).await.unwrap().unwrap().name
}

#[tokio::test]
async fn an_older_delivery_overtaken_on_another_instance_does_not_win() {
    let h = Harness::new();
    let (first, second) = (router(&h.cache), router(&h.instance()));
    // What the source holds after both changes.
    h.origin
        .put(&Event {
            id: id("recE1"),
            name: "Newest".into(),
        })
        .unwrap();

    // The older delivery reaches its write, and waits there.
    let hold = h.store.hold_put("Older");
    let older = tokio::spawn(deliver_owned(first, event_payload("Older", "2025-01-01T11:00:00Z")));
    hold.arrived(1).await;
    // Meanwhile the newer one is delivered to the other instance, and applied.
    let (status, body) = deliver(&second, &event_payload("Newest", "2025-01-01T12:00:00Z")).await;
    assert_eq!((status, body["applied"].clone()), (StatusCode::OK, json!(true)));
    hold.release();
    let (status, body) = older.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["applied"], false, "{body}");
    assert_eq!(body["reason"], "stale");

    assert_eq!(event_name(&h.cache).await, "Newest");
    assert_eq!(event_name(&h.instance()).await, "Newest");
}

#[tokio::test]
async fn an_older_delivery_after_a_newer_claim_on_another_instance_is_stale_at_once() {
    let h = Harness::new();
    let (first, second) = (router(&h.cache), router(&h.instance()));
    // The newer delivery claimed its timestamp and waits at its write.
    let hold = h.store.hold_put("Newest");
    let newer = tokio::spawn(deliver_owned(second, event_payload("Newest", "2025-01-01T12:00:00Z")));
    hold.arrived(1).await;
    let (status, body) = deliver(&first, &event_payload("Older", "2025-01-01T11:00:00Z")).await;
    assert_eq!((status, body["reason"].clone()), (StatusCode::OK, json!("stale")));
    hold.release();
    assert_eq!(newer.await.unwrap().1["applied"], true);
    assert_eq!(h.origin.total_calls(), 0);
    assert_eq!(event_name(&h.cache).await, "Newest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_to_two_instances_leave_the_newest() {
    let h = Harness::new();
    let apps = [router(&h.cache), router(&h.instance())];
    h.origin
        .put(&Event {
            id: id("recE1"),
            name: "v19".into(),
        })
        .unwrap();
    // Timestamps out of order, alternating instances.
    let order = [7, 19, 3, 12, 0, 18, 5, 14, 9, 1, 16, 11, 4, 17, 8, 2, 13, 6, 15, 10];
    let deliveries = order.iter().enumerate().map(|(i, &n)| {
        let payload = event_payload(&format!("v{n}"), &format!("2025-01-01T12:00:{n:02}Z"));
        tokio::spawn(deliver_owned(apps[i % 2].clone(), payload))
    });
    for delivery in futures::future::join_all(deliveries).await {
        assert_eq!(delivery.unwrap().0, StatusCode::OK);
    }
    assert_eq!(event_name(&h.cache).await, "v19");
}

#[tokio::test]
async fn a_delivery_whose_write_failed_after_its_claim_is_retried_as_it_was() {
    let h = Harness::new();
    let app = router(&h.cache);
    h.store.fail("put");
    let (status, _) = deliver(&app, &event_payload("Newest", "2025-01-01T12:00:00Z")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    h.store.heal();
    // The sender retries the newer delivery; an older one arriving first is still older.
    let (_, body) = deliver(&app, &event_payload("Older", "2025-01-01T11:00:00Z")).await;
    assert_eq!(body["reason"], "stale");
    let (status, body) = deliver(&app, &event_payload("Newest", "2025-01-01T12:00:00Z")).await;
    assert_eq!((status, body["applied"].clone()), (StatusCode::OK, json!(true)));
    assert_eq!(event_name(&h.cache).await, "Newest");
}

#[tokio::test]
async fn a_write_whose_claim_cannot_be_checked_is_forgotten_and_retried() {
    let h = Harness::new();
    let app = router(&h.cache);
    h.store.fail("get_value");
    let (status, _) = deliver(&app, &event_payload("Unchecked", "2025-01-01T12:00:00Z")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    h.store.heal();
    assert_eq!(
        event_name(&h.cache).await,
        "Hack One",
        "forgotten: read from the source"
    );
    let (_, body) = deliver(&app, &event_payload("Unchecked", "2025-01-01T12:00:00Z")).await;
    assert_eq!(body["applied"], true);
    assert_eq!(event_name(&h.cache).await, "Unchecked");
}

#[tokio::test]
async fn an_older_version_is_refused_by_the_core() {
    let h = Harness::new();
    let app = router(&h.cache);
    let (_, body) = deliver(&app, &project_payload(30, 3, "2025-01-01T00:00:00Z")).await;
    assert_eq!(body["applied"], true);
    // A later delivery carrying an older version (the sender read a stale copy).
    let (status, body) = deliver(&app, &project_payload(20, 2, "2025-01-01T00:05:00Z")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["applied"], false);
    assert_eq!(body["reason"], "stale");
    let cached = h.cache.get::<Project>(&id("recP2")).await.unwrap().unwrap();
    assert_eq!((cached.points, cached.version), (30, 3));
    assert_eq!(h.cache.stats().entity("projects").stale_refusals, 1);
}

#[tokio::test]
async fn duplicate_deliveries_are_harmless() {
    let h = Harness::new();
    let app = router(&h.cache);
    let payload = project_payload(42, 2, "2025-01-01T00:00:00Z");
    let first = deliver(&app, &payload).await;
    let second = deliver(&app, &payload).await;
    assert_eq!(first, second);
    assert_eq!(first.0, StatusCode::OK);
    let cached = h.cache.get::<Project>(&id("recP2")).await.unwrap().unwrap();
    assert_eq!((cached.points, cached.version), (42, 2));
    assert_eq!(h.origin.total_calls(), 0);
    let listed = h.cache.query(Project::by_event(&id("recE1"))).await.unwrap();
    assert_eq!(listed.iter().filter(|p| p.id == id("recP2")).count(), 1, "indexed once");
}

#[tokio::test]
async fn a_delete_tombstones_without_deleting_at_the_origin() {
    let h = Harness::new();
    let app = router(&h.cache);
    h.cache.get::<Project>(&id("recP2")).await.unwrap();
    let payload =
        json!({"table": "Projects", "record_id": "recP2", "timestamp": "2025-01-01T00:00:00Z", "action": "delete"});
    let (status, body) = deliver(&app, &payload).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"applied": true, "entity": "projects", "record_id": "recP2", "action": "delete"})
    );
    let calls = h.origin.total_calls();
    assert_eq!(h.cache.get::<Project>(&id("recP2")).await.unwrap(), None, "tombstoned");
    assert_eq!(h.origin.total_calls(), calls, "answered by the tombstone");
    assert_eq!(h.origin.count(OriginMethod::Delete), 0);
    assert!(
        h.origin.source::<Project>(&id("recP2")).is_some(),
        "the source was not asked to delete"
    );
    let (status, _) = deliver(&app, &payload).await;
    assert_eq!(status, StatusCode::OK, "a duplicate delete is harmless");
}

#[tokio::test]
async fn a_failing_store_is_503_so_the_sender_retries() {
    let h = Harness::new();
    let app = router(&h.cache);
    h.store.set_down(true);
    let (status, body) = deliver(&app, &project_payload(1, 2, "2025-01-01T00:00:00Z")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["error"].is_string());
    h.store.set_down(false);
    let (status, _) = deliver(&app, &project_payload(1, 2, "2025-01-01T00:00:00Z")).await;
    assert_eq!(status, StatusCode::OK, "the retry succeeds");
}

#[tokio::test]
async fn a_delete_while_the_store_is_down_is_503_and_the_retry_tombstones() {
    let h = Harness::new();
    let app = router(&h.cache);
    h.cache.get::<Project>(&id("recP2")).await.unwrap();
    let payload =
        json!({"table": "Projects", "record_id": "recP2", "timestamp": "2025-01-01T00:00:00Z", "action": "delete"});
    h.store.set_down(true);
    let (status, body) = deliver(&app, &payload).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    h.store.set_down(false);
    let (status, _) = deliver(&app, &payload).await;
    assert_eq!(status, StatusCode::OK, "the retry succeeds");
    let calls = h.origin.total_calls();
    assert_eq!(h.cache.get::<Project>(&id("recP2")).await.unwrap(), None, "tombstoned");
    assert_eq!(h.origin.total_calls(), calls, "answered by the tombstone");
}

#[tokio::test]
async fn schema_and_health_routes() {
    let h = Harness::new();
    let base = serve(router(&h.cache)).await;
    let client = reqwest::Client::new();
    let schema: Value = client
        .get(format!("{base}/webhooks/airtable/schema"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(schema["title"], "model-cache webhook payload");
    assert_eq!(schema["required"], json!(["table", "record_id", "timestamp"]));

    let health = client.get(format!("{base}/webhooks/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    h.store.set_down(true);
    let health = client.get(format!("{base}/webhooks/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.json::<Value>().await.unwrap()["store"], "unavailable");
}

#[tokio::test]
async fn the_path_is_configurable() {
    let h = Harness::new();
    let app: Router = webhook::routes(WebhookConfig::new(h.cache.clone(), SECRET).path("/hooks/source")).unwrap();
    let response = app
        .clone()
        .oneshot(
            Request::post("/hooks/source")
                .header("x-airtable-secret", SECRET)
                .header("content-type", "application/json")
                .body(Body::from(event_payload("Moved", "2025-01-01T00:00:00Z").to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for path in ["/hooks/source/schema", "/hooks/health"] {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[test]
fn refuses_to_build_without_a_proper_secret() {
    let h = Harness::new();
    let build = |secret: &str| webhook::routes::<()>(WebhookConfig::new(h.cache.clone(), secret)).map(|_| ());
    assert!(matches!(
        build(""),
        Err(ConfigError::Secret(SecretError::Missing { .. }))
    ));
    assert!(matches!(
        build("   "),
        Err(ConfigError::Secret(SecretError::Missing { .. }))
    ));
    assert!(matches!(
        build("short"),
        Err(ConfigError::Secret(SecretError::TooShort { .. }))
    ));
    assert!(build(SECRET).is_ok());
    let bad_path = webhook::routes::<()>(WebhookConfig::new(h.cache.clone(), SECRET).path("hooks"));
    assert!(matches!(bad_path, Err(ConfigError::Path { .. })));
}

/// A delivery refused before its body was read says `Connection: close`, so a keep-alive
/// client sends its next request on a fresh connection, and every next request succeeds.
#[tokio::test]
async fn keep_alive_clients_survive_a_401_and_a_415() {
    let h = Harness::new();
    let base = serve(router(&h.cache)).await;
    let client = reqwest::Client::new();
    let big = vec![b'x'; 50 * 1024];
    for round in 0..20 {
        let wrong_secret = client
            .post(format!("{base}/webhooks/airtable"))
            .header("x-airtable-secret", "wrong")
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(wrong_secret.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header(&wrong_secret, "connection"), Some("close"), "round {round}");
        let not_json = client
            .post(format!("{base}/webhooks/airtable"))
            .header("x-airtable-secret", SECRET)
            .header("content-type", "text/plain")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(header(&not_json, "connection"), Some("close"), "round {round}");
        let next = client
            .post(format!("{base}/webhooks/airtable"))
            .header("x-airtable-secret", SECRET)
            .json(&event_payload("Renamed", "2026-01-01T00:00:00Z"))
            .send()
            .await
            .unwrap_or_else(|err| panic!("round {round}: the next request failed: {err}"));
        assert_eq!(next.status(), StatusCode::OK, "round {round}");
    }
}

/// A delete, then the record's earlier state delivered late (or again): acknowledged as not
/// applied, with a reason, and the record stays deleted.
#[tokio::test]
async fn a_late_delivery_after_a_delete_is_refused() {
    let h = Harness::new();
    let app = router(&h.cache);
    let post = |payload: Value| {
        app.clone().oneshot(
            Request::post("/webhooks/airtable")
                .header("x-airtable-secret", SECRET)
                .header("content-type", "application/json")
                .body(Body::from(payload.to_string()))
                .unwrap(),
        )
    };
    let body = |response: http::Response<Body>| async move {
        serde_json::from_slice::<Value>(&response.into_body().collect().await.unwrap().to_bytes()).unwrap()
    };
    let first = post(project_payload(5, 1, "2026-11-21T09:00:00Z")).await.unwrap();
    assert_eq!(body(first).await["applied"], true);
    // The application deletes the project (stamped with the cache's clock, now).
    assert!(h.cache.delete::<Project>(&id("recP2")).await.unwrap());
    for _ in 0..2 {
        let late = post(project_payload(5, 1, "2026-11-21T09:00:00Z")).await.unwrap();
        assert_eq!(late.status(), StatusCode::OK);
        let late = body(late).await;
        assert_eq!(late["applied"], false, "{late}");
        assert_eq!(late["reason"], "stale", "{late}");
    }
    assert_eq!(h.cache.get::<Project>(&id("recP2")).await.unwrap(), None);

    // A delete the source delivered, then an earlier state of the record: refused by its time.
    let delete =
        json!({"table": "Projects", "record_id": "recP1", "timestamp": "2026-11-21T10:00:00Z", "action": "delete"});
    assert_eq!(body(post(delete).await.unwrap()).await["applied"], true);
    let mut earlier = project_payload(5, 1, "2026-11-21T09:59:59Z");
    earlier["record_id"] = json!("recP1");
    earlier["record"]["id"] = json!("recP1");
    let refused = body(post(earlier).await.unwrap()).await;
    assert_eq!(refused["applied"], false, "{refused}");
    assert_eq!(refused["reason"], "stale", "{refused}");
    assert_eq!(h.cache.get::<Project>(&id("recP1")).await.unwrap(), None);
}
