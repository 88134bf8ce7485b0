//! Prometheus metrics: the exporter (installed once per process) and `GET /metrics`.
//!
//! The core emits `model_cache_*` metrics (hits, misses, origin calls and latencies per entity
//! and operation) through the `metrics` facade; this module installs the
//! recorder that renders them, and defines what the HTTP layer measures itself.
//!
//! The state of a [`Cache`] that is not an event (its change feeds' lag and backlog, the
//! store's availability) is read at each scrape ([`routes_for`], [`export`]): a gauge set when
//! something happens would stand still while a feed is stuck, which is exactly when it should
//! move.

use std::{sync::OnceLock, time::SystemTime};

use axum::{Router, extract::State, response::IntoResponse, routing::get};
use cache_core::{Cache, store::Availability};
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
/// Gauge: how far behind the source a change feed's cache may be, in seconds, by `feed`: the
/// age of the oldest change waiting, or the time since the feed last found none waiting
/// ([`FeedStatus::lag`](cache_core::feed::FeedStatus::lag)). Set at each scrape, so it grows
/// while a feed fails or stops.
pub const FEED_LAG_SECONDS: &str = "model_cache_feed_lag_seconds";
/// Gauge: changes waiting at a feed's source when it last looked, by `feed` (outbox rows; `1`
/// when Airtable says more payloads wait).
pub const FEED_BACKLOG: &str = "model_cache_feed_backlog";
/// Counter: changes a feed handed to the cache, by `feed` and `outcome`: `applied`, the
/// refusals by reason (`stale`, `deleted`), `invalid` (never applied), `failed` (delivered
/// again), `disabled`.
pub const FEED_CHANGES_TOTAL: &str = "model_cache_feed_changes_total";
/// Counter: a feed's rounds that failed, by `feed`.
pub const FEED_ERRORS_TOTAL: &str = "model_cache_feed_errors_total";
/// Counter: a feed's resyncs (it lost track of the source's changes and checked the cache
/// against the source), by `feed`.
pub const FEED_RESYNCS_TOTAL: &str = "model_cache_feed_resyncs_total";
/// Gauge: the store's availability, by `state` (`available`, `unavailable`: not connected or
/// its circuit breaker open, `probing`: the breaker lets a probe through): `1` for the current
/// state, `0` for the others.
pub const STORE_AVAILABILITY: &str = "model_cache_store_availability";

const AVAILABILITY_STATES: [Availability; 3] = [
    Availability::Available,
    Availability::Unavailable,
    Availability::Probing,
];

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
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    cache_core::stats::describe_metrics();
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
    describe_gauge!(
        FEED_LAG_SECONDS,
        Unit::Seconds,
        "How far behind the source a change feed may be: the age of the oldest change waiting, or the time since it last found none."
    );
    describe_gauge!(
        FEED_BACKLOG,
        "Changes waiting at a change feed's source when it last looked."
    );
    describe_counter!(
        FEED_CHANGES_TOTAL,
        "Changes a feed handed to the cache, by outcome: applied, stale, deleted, invalid, failed, disabled."
    );
    describe_counter!(FEED_ERRORS_TOTAL, "Change feed rounds that failed.");
    describe_counter!(FEED_RESYNCS_TOTAL, "Change feed resyncs (changes lost at the source).");
    describe_gauge!(
        STORE_AVAILABILITY,
        "The store's availability: 1 for the current state (available, unavailable, probing), 0 for the others."
    );
}

/// Sets the metrics read from `cache`'s state rather than counted as things happen: each
/// change feed's [`FEED_LAG_SECONDS`], [`FEED_BACKLOG`], [`FEED_CHANGES_TOTAL`],
/// [`FEED_ERRORS_TOTAL`] and [`FEED_RESYNCS_TOTAL`] (from [`Cache::feeds`]), and
/// [`STORE_AVAILABILITY`]. [`routes_for`] calls it at each scrape; call it yourself before
/// rendering with another exporter. One cache per process: a second one's availability would
/// overwrite the first's.
pub fn export(cache: &Cache) {
    let now = SystemTime::now();
    for status in cache.feeds().all() {
        let feed = status.name.clone();
        if let Some(lag) = status.lag(now) {
            metrics::gauge!(FEED_LAG_SECONDS, "feed" => feed.clone()).set(lag.as_secs_f64());
        }
        if let Some(backlog) = status.backlog.as_gauge() {
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(FEED_BACKLOG, "feed" => feed.clone()).set(backlog as f64);
        }
        let changes = status.totals.changes;
        for (outcome, count) in [
            ("applied", changes.applied),
            ("stale", changes.stale),
            ("deleted", changes.deleted),
            ("invalid", changes.invalid),
            ("failed", changes.failed),
            ("disabled", changes.disabled),
        ] {
            metrics::counter!(FEED_CHANGES_TOTAL, "feed" => feed.clone(), "outcome" => outcome).absolute(count);
        }
        metrics::counter!(FEED_ERRORS_TOTAL, "feed" => feed.clone()).absolute(status.totals.errors);
        metrics::counter!(FEED_RESYNCS_TOTAL, "feed" => feed).absolute(status.totals.resyncs);
    }
    let current = cache.store().availability();
    for state in AVAILABILITY_STATES {
        let value = if state == current { 1.0 } else { 0.0 };
        metrics::gauge!(STORE_AVAILABILITY, "state" => state.as_str()).set(value);
    }
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

/// `GET /metrics` as [`routes`] serves it, with `cache`'s state exported at each scrape
/// ([`export`]): its feeds' lag, backlog and outcomes, and its store's availability.
///
/// ```
/// # fn app(cache: cache_core::Cache) -> Result<(), cache_http::metrics::MetricsError> {
/// let app: axum::Router = cache_http::metrics::routes_for(&cache)?;
/// # let _ = app; Ok(()) }
/// ```
pub fn routes_for<S>(cache: &Cache) -> Result<Router<S>, MetricsError>
where
    S: Clone + Send + Sync + 'static,
{
    let handle = install_recorder()?;
    Ok(Router::new()
        .route("/metrics", get(render_with))
        .with_state((handle, cache.clone())))
}

async fn render_with(State((handle, cache)): State<(PrometheusHandle, Cache)>) -> impl IntoResponse {
    export(&cache);
    render(State(handle)).await
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

/// The address of the metrics recorder current on this thread. A metric handle belongs to the
/// recorder it was registered with: the layers keep theirs with this address and register
/// them again when another recorder is current (installed after the layer first counted, or a
/// thread's local one), as cache-core's metrics do.
pub(crate) fn current_recorder() -> usize {
    metrics::with_recorder(|r| std::ptr::from_ref(r).cast::<()>().addr())
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
