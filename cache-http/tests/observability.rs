//! Metrics at `GET /metrics` and the stable names of the `tracing` events, for one scenario
//! touching every part of the crate.
// Helpers outside `#[test]` functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use axum::{Router, body::Body};
use cache_http::{
    admin::{self, AdminConfig},
    metrics,
    webhook::{self, WebhookConfig},
};
use common::{Harness, SECRET, TOKEN};
use http::Request;
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{Layer, layer::Context, prelude::*};

/// Records the message of every event: our stable event names.
#[derive(Clone, Default)]
struct Names(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber> Layer<S> for Names {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        struct Message(Option<String>);
        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        let mut message = Message(None);
        event.record(&mut message);
        if let Some(name) = message.0 {
            self.0.lock().unwrap().push(name);
        }
    }
}

async fn send(app: &Router, req: Request<Body>) -> (http::StatusCode, String) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn delivery(secret: &str, timestamp: &str) -> Request<Body> {
    let payload = json!({
        "table": "Events", "record_id": "recE1", "timestamp": timestamp,
        "record": {"id": "recE1", "name": "Renamed"}
    });
    Request::post("/webhooks/airtable")
        .header("x-airtable-secret", secret)
        .header("content-type", "application/json")
        .body(Body::from(payload.to_string()))
        .unwrap()
}

#[tokio::test]
async fn metrics_and_events_of_one_scenario() {
    let names = Names::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(names.clone()));

    let h = Harness::new();
    let app = h
        .app()
        .merge(webhook::routes(WebhookConfig::new(h.cache.clone(), SECRET)).unwrap())
        .merge(admin::routes(AdminConfig::new(h.cache.clone(), TOKEN)).unwrap())
        .merge(metrics::routes().unwrap());

    send(&app, get("/events/recE1/projects")).await;
    send(&app, get("/events/recE1/projects")).await;
    let refresh = Request::get("/events/recE1")
        .header("cache-control", "no-cache")
        .body(Body::empty())
        .unwrap();
    send(&app, refresh).await;
    assert_eq!(send(&app, delivery("wrong", "2025-01-01T00:00:00Z")).await.0, 401);
    assert_eq!(send(&app, delivery(SECRET, "2025-01-02T00:00:00Z")).await.0, 200);
    assert_eq!(send(&app, delivery(SECRET, "2025-01-01T00:00:00Z")).await.0, 200);
    let flush = Request::delete("/admin/cache?pattern=events:*")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, flush).await.0, 200);
    // A made-up method is counted, under `OTHER`: a client cannot make new time series.
    let brew = Request::builder()
        .method("BREW")
        .uri("/events/recE1")
        .body(Body::empty())
        .unwrap();
    send(&app, brew).await;

    let seen = names.0.lock().unwrap().clone();
    for name in [
        "response_cache_stored",
        "response_cache_hit",
        "cache_bypass",
        "webhook_rejected",
        "webhook_applied",
        "webhook_stale",
        "admin_flush",
    ] {
        assert!(seen.iter().any(|s| s == name), "no `{name}` event in {seen:?}");
    }

    let (status, text) = send(&app, get("/metrics")).await;
    assert_eq!(status, 200);
    for needle in [
        r#"model_cache_http_response_cache_total{resource="events",outcome="stored"} 1"#,
        r#"model_cache_http_response_cache_total{resource="events",outcome="hit"} 1"#,
        r#"model_cache_http_webhook_deliveries_total{outcome="unauthorized"} 1"#,
        r#"model_cache_http_webhook_deliveries_total{outcome="applied"} 1"#,
        r#"model_cache_http_webhook_deliveries_total{outcome="stale"} 1"#,
        r#"model_cache_http_request_duration_seconds_bucket{method="GET",status="200",cache="HIT""#,
        r#"model_cache_http_request_duration_seconds_bucket{method="GET",status="200",cache="MISS""#,
        r#"model_cache_lookups_total{entity="events",operation="get",result="bypass"} 1"#,
        r#"model_cache_origin_calls_total{entity="projects",operation="query"} 1"#,
        "model_cache_operation_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "no {needle} in\n{text}");
    }
    assert!(
        text.contains(r#"model_cache_http_request_duration_seconds_count{method="OTHER""#),
        "{text}"
    );
    assert!(!text.contains("BREW"), "{text}");
}

/// The value of the series `series` (name and labels, as rendered) in a scrape.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn feed_and_store_gauges_are_read_at_each_scrape() {
    use cache_core::{
        change::{ChangeOutcome, Refusal},
        feed::{Backlog, FeedResync},
    };

    let h = Harness::new();
    let app = metrics::routes_for(&h.cache).unwrap();
    let feed = h.cache.feeds().reporter("sql:outbox");
    let now = SystemTime::now();
    feed.applied(
        &[
            ChangeOutcome::Applied,
            ChangeOutcome::Applied,
            ChangeOutcome::Refused(Refusal::Older),
            ChangeOutcome::Refused(Refusal::Deleted),
        ],
        Some("1042"),
        Some(now - Duration::from_secs(130)),
    );
    feed.checked(Backlog::Exactly(4), Some(now - Duration::from_secs(120)), now);
    feed.failed(&"the store failed", None, None);
    feed.resynced(FeedResync::new("payloads_lost"));

    let (status, text) = send(&app, get("/metrics")).await;
    assert_eq!(status, 200);
    for (series, expected) in [
        (r#"model_cache_feed_backlog{feed="sql:outbox"}"#, 4.0),
        (
            r#"model_cache_feed_changes_total{feed="sql:outbox",outcome="applied"}"#,
            2.0,
        ),
        (
            r#"model_cache_feed_changes_total{feed="sql:outbox",outcome="stale"}"#,
            1.0,
        ),
        (
            r#"model_cache_feed_changes_total{feed="sql:outbox",outcome="deleted"}"#,
            1.0,
        ),
        (
            r#"model_cache_feed_changes_total{feed="sql:outbox",outcome="failed"}"#,
            0.0,
        ),
        (r#"model_cache_feed_errors_total{feed="sql:outbox"}"#, 1.0),
        (r#"model_cache_feed_resyncs_total{feed="sql:outbox"}"#, 1.0),
        (r#"model_cache_store_availability{state="available"}"#, 1.0),
        (r#"model_cache_store_availability{state="unavailable"}"#, 0.0),
        (r#"model_cache_store_availability{state="probing"}"#, 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in\n{text}");
    }
    let lag_series = r#"model_cache_feed_lag_seconds{feed="sql:outbox"}"#;
    let lag = value(&text, lag_series).unwrap_or_else(|| panic!("no lag in\n{text}"));
    assert!(
        (120.0..180.0).contains(&lag),
        "the oldest waiting change is 120 s old: {lag}"
    );

    // Read again at the next scrape: the store goes down, and the lag does not stand still.
    h.store.set_down(true);
    let (_, text) = send(&app, get("/metrics")).await;
    assert_eq!(
        value(&text, r#"model_cache_store_availability{state="available"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(&text, r#"model_cache_store_availability{state="unavailable"}"#),
        Some(1.0)
    );
    assert!(value(&text, lag_series).unwrap() >= lag);
}
