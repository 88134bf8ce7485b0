//! Prometheus metrics: the exporter (installed once per process) and `GET /metrics`.
//!
//! The core emits `model_cache_*` metrics (hits, misses, origin calls and latencies per entity
//! and operation) through the `metrics` facade; this module installs the
//! recorder that renders them, and defines what the HTTP layer measures itself.

use std::sync::OnceLock;

use axum::{Router, extract::State, response::IntoResponse, routing::get};
use http::{HeaderValue, header};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counter: response cache lookups and stores, by `resource` and `outcome`
/// (`hit`, `miss`, `stored`, `refused` (a tag it read was purged meanwhile), `not_modified`,
/// `skipped`).
pub const RESPONSE_CACHE_TOTAL: &str = "model_cache_http_response_cache_total";
/// Counter: webhook deliveries, by `outcome` (`applied`, `stale`, `disabled`, `unauthorized`,
/// `unknown_table`, `invalid_payload`, `invalid_record`, `too_large`, `unsupported_media_type`,
/// `malformed`, `error`).
pub const WEBHOOK_DELIVERIES_TOTAL: &str = "model_cache_http_webhook_deliveries_total";
/// Histogram: request latency in seconds, by `method`, `status` and `cache`
/// (the `X-Cache` value).
pub const REQUEST_DURATION_SECONDS: &str = "model_cache_http_request_duration_seconds";

/// Latency buckets (seconds) for every `*_seconds` histogram: from half a millisecond (a
/// cache hit) to ten seconds (a slow origin).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Why the Prometheus recorder could not be installed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct MetricsError(String);

static HANDLE: OnceLock<Result<PrometheusHandle, MetricsError>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's global `metrics` recorder, once: later
/// calls (from any thread) return the same handle. Fails when another recorder was installed
/// first by something else.
pub fn install_recorder() -> Result<PrometheusHandle, MetricsError> {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .map_err(|e| MetricsError(e.to_string()))?
                .install_recorder()
                .map_err(|e| MetricsError(e.to_string()))?;
            describe();
            Ok(handle)
        })
        .clone()
}

/// Registers the help text and units of the core's metrics and of this crate's.
fn describe() {
    use metrics::{Unit, describe_counter, describe_histogram};
    cache_core::describe_metrics();
    describe_counter!(
        RESPONSE_CACHE_TOTAL,
        "Response cache lookups and stores by outcome: hit, miss, stored, refused, not_modified, skipped."
    );
    describe_counter!(WEBHOOK_DELIVERIES_TOTAL, "Webhook deliveries by outcome.");
    describe_histogram!(
        REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "HTTP request latency, by method, status and X-Cache."
    );
}

/// `GET /metrics` in the Prometheus text format, installing the recorder if it is not yet.
///
/// ```
/// let app: axum::Router = cache_http::metrics::routes()?;
/// # Ok::<(), cache_http::metrics::MetricsError>(())
/// ```
pub fn routes<S>() -> Result<Router<S>, MetricsError>
where
    S: Clone + Send + Sync + 'static,
{
    let handle = install_recorder()?;
    Ok(Router::new().route("/metrics", get(render)).with_state(handle))
}

async fn render(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    // Without the exporter's own HTTP listener nothing else runs upkeep (draining histogram
    // buckets); a scrape is the natural moment.
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn installing_twice_is_safe_and_metrics_render() {
        let first = install_recorder().unwrap();
        let second = install_recorder().unwrap();
        metrics::counter!(RESPONSE_CACHE_TOTAL, "resource" => "metrics_test", "outcome" => "hit").increment(1);
        metrics::histogram!(REQUEST_DURATION_SECONDS, "method" => "GET", "status" => "200", "cache" => "HIT")
            .record(0.002);
        assert!(second.render().contains("metrics_test"));
        drop(first);

        let _twice: Router = routes().unwrap();
        let app: Router = routes().unwrap();
        let response = app
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(
            text.contains(r#"model_cache_http_response_cache_total{resource="metrics_test",outcome="hit"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("model_cache_http_request_duration_seconds_bucket"),
            "histograms have buckets: {text}"
        );
    }
}
