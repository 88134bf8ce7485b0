//! The Grafana dashboard and the alert rules in `docs/grafana/` name only metrics the product
//! exports: the core's (`cache_core::stats::describe_metrics`) and the HTTP layer's
//! (`cache_http::metrics`), histograms with their `_bucket`, `_sum` and `_count` series.
#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeSet,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use cache_http::metrics::{
    FEED_BACKLOG, FEED_CHANGES_TOTAL, FEED_ERRORS_TOTAL, FEED_LAG_SECONDS, FEED_RESYNCS_TOTAL,
    REQUEST_DURATION_SECONDS, RESPONSE_CACHE_TOTAL, STORE_AVAILABILITY, WEBHOOK_DELIVERIES_TOTAL,
};
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::Value;

/// Collects the names of described metrics, with the series a histogram exports.
#[derive(Default)]
struct Described(Arc<Mutex<BTreeSet<String>>>);

impl Described {
    fn add(&self, name: &str) {
        self.0.lock().unwrap().insert(name.to_owned());
    }

    fn add_histogram(&self, name: &str) {
        for suffix in ["_bucket", "_sum", "_count"] {
            self.add(&format!("{name}{suffix}"));
        }
    }
}

impl Recorder for Described {
    fn describe_counter(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.add(key.as_str());
    }

    fn describe_gauge(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.add(key.as_str());
    }

    fn describe_histogram(&self, key: KeyName, _: Option<Unit>, _: SharedString) {
        self.add_histogram(key.as_str());
    }

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// Every series name the product exports.
fn exported() -> BTreeSet<String> {
    let described = Described::default();
    metrics::with_local_recorder(&described, cache_core::stats::describe_metrics);
    described.add(RESPONSE_CACHE_TOTAL);
    described.add(WEBHOOK_DELIVERIES_TOTAL);
    for name in [
        FEED_LAG_SECONDS,
        FEED_BACKLOG,
        FEED_CHANGES_TOTAL,
        FEED_ERRORS_TOTAL,
        FEED_RESYNCS_TOTAL,
        STORE_AVAILABILITY,
    ] {
        described.add(name);
    }
    described.add_histogram(REQUEST_DURATION_SECONDS);
    let names = described.0.lock().unwrap().clone();
    assert!(names.contains("model_cache_lookups_total"), "{names:?}");
    names
}

/// The metric names (`model_cache_…`) a text mentions.
fn named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("model_cache_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The names `text` mentions that the product does not export.
fn unknown(text: &str, exported: &BTreeSet<String>) -> Vec<String> {
    named(text).into_iter().filter(|n| !exported.contains(n)).collect()
}

fn read(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs/grafana")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_checker_catches_a_metric_the_product_does_not_export() {
    let exported = exported();
    assert_eq!(
        unknown("rate(model_cache_lookups_total[5m])", &exported),
        Vec::<String>::new()
    );
    assert_eq!(
        unknown("rate(model_cache_lookups[5m]) + model_cache_breaker_open", &exported),
        vec!["model_cache_breaker_open".to_owned(), "model_cache_lookups".to_owned()]
    );
}

#[test]
fn the_grafana_dashboard_names_only_exported_metrics() {
    let exported = exported();
    let text = read("dashboard.json");
    let dashboard: Value = serde_json::from_str(&text).expect("dashboard.json is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queried = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        let title = panel["title"].as_str().unwrap();
        let targets = panel["targets"]
            .as_array()
            .unwrap_or_else(|| panic!("{title} has targets"));
        assert!(!targets.is_empty(), "{title} queries something");
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("{title}: an expr"));
            assert!(!named(expr).is_empty(), "{title} queries a model-cache metric: {expr}");
            queried += 1;
        }
    }
    assert!(queried >= 15, "the dashboard covers the metrics: {queried} queries");
    let unknown = unknown(&text, &exported);
    assert!(
        unknown.is_empty(),
        "dashboard.json names metrics the product does not export: {unknown:?}"
    );
    let used = named(&text);
    for core in [
        "model_cache_lookups_total",
        "model_cache_origin_calls_total",
        "model_cache_store_errors_total",
        "model_cache_store_availability",
        "model_cache_feed_lag_seconds",
        "model_cache_feed_backlog",
        "model_cache_feed_changes_total",
    ] {
        assert!(used.contains(core), "the dashboard shows {core}");
    }
}

#[test]
fn the_alert_rules_name_only_exported_metrics() {
    let exported = exported();
    let text = read("alerts.yml");
    for alert in [
        "ModelCacheHitRateDrop",
        "ModelCacheOriginErrors",
        "ModelCacheStoreUnavailable",
        "ModelCacheStoreBreakerOpen",
        "ModelCacheFeedLagging",
        "ModelCacheWebhooksStalled",
    ] {
        assert!(text.contains(&format!("- alert: {alert}\n")), "alerts.yml has {alert}");
    }
    assert_eq!(
        text.matches("- alert: ").count(),
        text.matches("        expr: ").count(),
        "every alert has an expr"
    );
    let unknown = unknown(&text, &exported);
    assert!(
        unknown.is_empty(),
        "alerts.yml names metrics the product does not export: {unknown:?}"
    );
}
