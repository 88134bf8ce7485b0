//! The dashboard's memory: every few seconds the sampler snapshots the cache's counters, the
//! store's health and (when the Prometheus recorder is given) the latency histograms and the
//! response cache's counters, and keeps the differences in a bounded ring.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use cache_core::{
    Cache,
    stats::CacheStats,
    store::{StoreError, StoreResult, StoreStats},
};
use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;

use crate::metrics::RESPONSE_CACHE_TOTAL;

/// The histogram the latency charts read: cache reads, by entity.
const OPERATION_DURATION: &str = "model_cache_operation_duration_seconds_bucket";
/// The operations counted as reads (answered by the store on a hit).
const READS: [&str; 3] = ["get", "get_many", "query"];
/// The response cache resources followed; more are added up under `(other)`.
const MAX_RESOURCES: usize = 32;

/// One entity over one sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct EntitySample {
    /// Hits in the interval.
    pub hits: u64,
    /// Misses in the interval.
    pub misses: u64,
    /// `hits / (hits + misses)` in percent, when there was a lookup.
    pub hit_rate_percent: Option<f64>,
    /// Misses per second.
    pub misses_per_second: f64,
    /// Origin calls per second.
    pub origin_calls_per_second: f64,
    /// Origin errors in the interval.
    pub origin_errors: u64,
    /// Store failures the cache answered around, in the interval.
    pub store_errors: u64,
    /// The median duration of the entity's reads, in milliseconds, when the Prometheus
    /// recorder is installed and there were reads.
    pub p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub p99_ms: Option<f64>,
}

/// One sampling interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// When the interval ended.
    pub at: DateTime<Utc>,
    /// How long it was, in seconds.
    pub seconds: f64,
    /// How long the store took to answer a ping at the end of it, in milliseconds (`None`
    /// when it did not answer).
    pub ping_ms: Option<f64>,
    /// Per entity.
    pub entities: BTreeMap<&'static str, EntitySample>,
}

/// What the store said at the last sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreHealth {
    /// When it was checked (`None` before the first sample).
    pub checked_at: Option<DateTime<Utc>>,
    /// Whether it answered the ping.
    pub reachable: bool,
    /// How long the ping took, in milliseconds.
    pub ping_ms: Option<f64>,
    /// Its counters and gauges, when it answered.
    pub stats: Option<StoreStats>,
    /// The last error it answered with (a ping or the statistics), and when: an open circuit
    /// breaker shows here as "unavailable".
    pub last_error: Option<StoreFailure>,
    /// Whether it takes calls, as its connection and circuit breaker say
    /// ([`Store::availability`](cache_core::store::Store::availability)).
    pub availability: Option<cache_core::store::Availability>,
}

/// A store error seen by the sampler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreFailure {
    /// When.
    pub at: DateTime<Utc>,
    /// The error.
    pub message: String,
}

/// A response cache resource's counts since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ResponseCacheCounts {
    /// Responses served from the cache (`hit` and `not_modified`).
    pub hits: u64,
    /// Lookups that found nothing.
    pub misses: u64,
    /// Responses stored.
    pub stored: u64,
    /// Responses not stored because a tag they read was purged meanwhile.
    pub refused: u64,
    /// `hits / (hits + misses)` in percent, when there was a lookup.
    pub hit_rate_percent: Option<f64>,
}

/// The counters at one sample, from which the next interval is computed.
#[derive(Debug)]
struct Raw {
    at: Instant,
    stats: CacheStats,
    buckets: BTreeMap<String, Vec<(f64, u64)>>,
}

#[derive(Debug, Default)]
struct State {
    ring: VecDeque<Sample>,
    previous: Option<Raw>,
    store: StoreHealth,
    responses: Option<BTreeMap<String, ResponseCacheCounts>>,
}

/// Samples a cache into a bounded ring.
#[derive(Debug)]
pub(crate) struct Sampler {
    cache: Cache,
    prometheus: Option<PrometheusHandle>,
    capacity: usize,
    state: Mutex<State>,
}

/// What the sampler knows, copied out for a page.
#[derive(Debug, Clone)]
pub(crate) struct SamplerView {
    pub(crate) samples: Vec<Sample>,
    pub(crate) store: StoreHealth,
    pub(crate) responses: Option<BTreeMap<String, ResponseCacheCounts>>,
    pub(crate) latency_known: bool,
}

impl Sampler {
    pub(crate) fn new(cache: Cache, prometheus: Option<PrometheusHandle>, capacity: usize) -> Self {
        Self {
            cache,
            prometheus,
            capacity: capacity.max(2),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn view(&self) -> SamplerView {
        let state = self.lock();
        SamplerView {
            samples: state.ring.iter().cloned().collect(),
            store: state.store.clone(),
            responses: state.responses.clone(),
            latency_known: self.prometheus.is_some(),
        }
    }

    /// Takes the baseline the first interval is counted from: the counters now. Synchronous,
    /// so that a caller starting the sampler counts from that moment on, not from whenever the
    /// runtime first schedules the sampling task (reads made meanwhile would otherwise fall
    /// into the baseline and never show in an interval).
    pub(crate) fn set_baseline(&self) {
        let (raw, responses) = self.counters();
        let mut state = self.lock();
        if responses.is_some() {
            state.responses = responses;
        }
        state.previous = Some(raw);
    }

    /// The counters now, and the response cache's counts when there is a recorder to read.
    fn counters(&self) -> (Raw, Option<BTreeMap<String, ResponseCacheCounts>>) {
        let at = Instant::now();
        let stats = self.cache.stats();
        let text = self.prometheus.as_ref().map(|handle| {
            handle.run_upkeep();
            handle.render()
        });
        let (buckets, responses) = text.as_deref().map(parse_exposition).unwrap_or_default();
        (Raw { at, stats, buckets }, text.is_some().then_some(responses))
    }

    /// Checks the store's health now (a ping and its statistics, each bounded) and keeps what
    /// it found; answers the ping's time when the store answered it.
    pub(crate) async fn check_store(&self) -> Option<f64> {
        let store = self.cache.store();
        let started = Instant::now();
        let ping = bounded(store.ping()).await;
        let ping_ms = ping.is_ok().then(|| millis(started.elapsed()));
        let stats = bounded(store.stats()).await;

        let mut state = self.lock();
        let wall = Utc::now();
        let failure = ping
            .err()
            .map(|e| e.to_string())
            .or_else(|| stats.as_ref().err().map(ToString::to_string));
        if let Some(message) = failure {
            if state.store.reachable || state.store.checked_at.is_none() {
                tracing::warn!(error = %message, "dashboard_store_unhealthy");
            }
            state.store.last_error = Some(StoreFailure { at: wall, message });
        } else if !state.store.reachable && state.store.checked_at.is_some() {
            tracing::info!("dashboard_store_healthy");
        }
        state.store.checked_at = Some(wall);
        state.store.reachable = ping_ms.is_some();
        state.store.ping_ms = ping_ms;
        state.store.availability = Some(store.availability());
        state.store.stats = stats.ok();
        ping_ms
    }

    /// Takes one sample: the store's health now, and the interval since the last sample
    /// (without a baseline, [`Sampler::set_baseline`], the first sample only sets one).
    pub(crate) async fn sample(&self) {
        let ping_ms = self.check_store().await;
        let (raw, responses) = self.counters();
        let mut state = self.lock();
        if responses.is_some() {
            state.responses = responses;
        }
        if let Some(previous) = state.previous.take() {
            let sample = self.interval(&previous, &raw, Utc::now(), ping_ms);
            if state.ring.len() == self.capacity {
                state.ring.pop_front();
            }
            state.ring.push_back(sample);
        }
        state.previous = Some(raw);
    }

    #[allow(clippy::cast_precision_loss)]
    fn interval(&self, before: &Raw, after: &Raw, at: DateTime<Utc>, ping_ms: Option<f64>) -> Sample {
        let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
        let entities = self
            .cache
            .entities()
            .iter()
            .map(|handle| {
                let entity = handle.schema().entity;
                let (b, a) = (before.stats.entity(entity), after.stats.entity(entity));
                let hits = a.hits.saturating_sub(b.hits);
                let misses = a.misses.saturating_sub(b.misses);
                let latency = delta_buckets(before.buckets.get(entity), after.buckets.get(entity));
                let sample = EntitySample {
                    hits,
                    misses,
                    hit_rate_percent: percent(hits, misses),
                    misses_per_second: misses as f64 / seconds,
                    origin_calls_per_second: a.origin_calls.saturating_sub(b.origin_calls) as f64 / seconds,
                    origin_errors: a.origin_errors.saturating_sub(b.origin_errors),
                    store_errors: a.store_errors.saturating_sub(b.store_errors),
                    p50_ms: latency.as_deref().and_then(|l| quantile(l, 0.5)).map(|s| s * 1000.0),
                    p99_ms: latency.as_deref().and_then(|l| quantile(l, 0.99)).map(|s| s * 1000.0),
                };
                (entity, sample)
            })
            .collect();
        Sample {
            at,
            seconds,
            ping_ms,
            entities,
        }
    }
}

/// How long the sampler waits for the store: a store that hangs must not stop the charts.
const STORE_TIMEOUT: Duration = Duration::from_secs(5);

async fn bounded<T>(call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(STORE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable(format!("no answer within {STORE_TIMEOUT:?}"))))
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `hits / (hits + misses)` in percent, to two decimals.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn percent(hits: u64, misses: u64) -> Option<f64> {
    let total = hits.checked_add(misses)?;
    (total > 0).then(|| (hits as f64 * 10_000.0 / total as f64).round() / 100.0)
}

/// The cumulative buckets of an interval: `after - before`, bucket by bucket.
fn delta_buckets(before: Option<&Vec<(f64, u64)>>, after: Option<&Vec<(f64, u64)>>) -> Option<Vec<(f64, u64)>> {
    let after = after?;
    Some(
        after
            .iter()
            .map(|&(le, count)| {
                let earlier = before
                    .and_then(|b| b.iter().find(|(l, _)| l.total_cmp(&le).is_eq()))
                    .map_or(0, |&(_, c)| c);
                (le, count.saturating_sub(earlier))
            })
            .collect(),
    )
}

/// The `q` quantile of cumulative histogram buckets `(upper bound, count)` sorted by bound,
/// interpolated inside its bucket as Prometheus' `histogram_quantile` does; `None` without
/// observations. A quantile in the `+Inf` bucket answers the largest finite bound.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count.saturating_sub(below);
            if inside == 0 {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - below as f64) / inside as f64);
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

type Buckets = BTreeMap<String, Vec<(f64, u64)>>;

/// Reads what the dashboard needs from the Prometheus text exposition: the read-latency
/// buckets by entity (operations added up) and the response cache's counts by resource.
pub(crate) fn parse_exposition(text: &str) -> (Buckets, BTreeMap<String, ResponseCacheCounts>) {
    let mut buckets: BTreeMap<String, BTreeMap<u64, (f64, u64)>> = BTreeMap::new();
    let mut responses: BTreeMap<String, ResponseCacheCounts> = BTreeMap::new();
    for line in text.lines() {
        let Some(SampleLine { name, labels, value }) = parse_line(line) else {
            continue;
        };
        let label = |key: &str| labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if name == OPERATION_DURATION {
            let (Some(entity), Some(operation), Some(le)) = (label("entity"), label("operation"), label("le")) else {
                continue;
            };
            if !READS.contains(&operation) {
                continue;
            }
            let Ok(le) = le.parse::<f64>() else { continue };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let count = value as u64;
            let slot = buckets
                .entry(entity.to_owned())
                .or_default()
                .entry(le.to_bits())
                .or_insert((le, 0));
            slot.1 += count;
        } else if name == RESPONSE_CACHE_TOTAL {
            let (Some(resource), Some(outcome)) = (label("resource"), label("outcome")) else {
                continue;
            };
            let key = if responses.len() < MAX_RESOURCES || responses.contains_key(resource) {
                resource.to_owned()
            } else {
                "(other)".to_owned()
            };
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let count = value as u64;
            let counts = responses.entry(key).or_default();
            match outcome {
                "hit" | "not_modified" => counts.hits += count,
                "miss" => counts.misses += count,
                "stored" => counts.stored += count,
                "refused" => counts.refused += count,
                _ => {}
            }
        }
    }
    for counts in responses.values_mut() {
        counts.hit_rate_percent = percent(counts.hits, counts.misses);
    }
    let buckets = buckets
        .into_iter()
        .map(|(entity, by_bound)| {
            let mut list: Vec<(f64, u64)> = by_bound.into_values().collect();
            list.sort_by(|a, b| a.0.total_cmp(&b.0));
            (entity, list)
        })
        .collect();
    (buckets, responses)
}

/// One sample line of the text exposition.
struct SampleLine<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Reads one sample line of the text exposition. Comments and malformed lines answer `None`.
fn parse_line(line: &str) -> Option<SampleLine<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        loop {
            // key
            let mut key = String::new();
            let mut closed = false;
            for (_, c) in chars.by_ref() {
                match c {
                    '=' => break,
                    '}' => {
                        closed = true;
                        break;
                    }
                    ',' | ' ' => {}
                    c => key.push(c),
                }
            }
            if closed {
                rest = &body[chars.next().map_or(body.len(), |(i, _)| i)..];
                break;
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.push((key, value));
            let mut peek = chars.clone();
            if let Some((i, '}')) = peek.next() {
                rest = &body[i + 1..];
                break;
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    Some(SampleLine { name, labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let buckets = [(0.001, 50), (0.01, 90), (0.1, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&buckets, 0.5), Some(0.001));
        let p99 = quantile(&buckets, 0.99).unwrap();
        assert!((p99 - 0.091).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&[(0.001, 0), (f64::INFINITY, 0)], 0.5), None);
        assert_eq!(
            quantile(&[(0.001, 0), (f64::INFINITY, 4)], 0.5),
            Some(0.001),
            "+Inf answers the last bound"
        );
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn reads_the_exposition() {
        let text = r#"# HELP model_cache_operation_duration_seconds Duration of cache operations.
# TYPE model_cache_operation_duration_seconds histogram
model_cache_operation_duration_seconds_bucket{entity="projects",operation="get",le="0.001"} 3
model_cache_operation_duration_seconds_bucket{entity="projects",operation="get",le="+Inf"} 4
model_cache_operation_duration_seconds_bucket{entity="projects",operation="query",le="0.001"} 1
model_cache_operation_duration_seconds_bucket{entity="projects",operation="query",le="+Inf"} 1
model_cache_operation_duration_seconds_bucket{entity="projects",operation="upsert",le="+Inf"} 9
model_cache_operation_duration_seconds_sum{entity="projects",operation="get"} 0.01
model_cache_http_response_cache_total{resource="say \"hi\"",outcome="hit"} 3
model_cache_http_response_cache_total{resource="say \"hi\"",outcome="not_modified"} 1
model_cache_http_response_cache_total{resource="say \"hi\"",outcome="miss"} 4
garbage{ line
"#;
        let (buckets, responses) = parse_exposition(text);
        assert_eq!(
            buckets["projects"],
            vec![(0.001, 4), (f64::INFINITY, 5)],
            "reads only, added up"
        );
        let counts = responses["say \"hi\""];
        assert_eq!(
            (counts.hits, counts.misses, counts.hit_rate_percent),
            (4, 4, Some(50.0))
        );
    }

    #[test]
    fn delta_of_buckets() {
        let before = vec![(0.001, 3), (f64::INFINITY, 4)];
        let after = vec![(0.001, 5), (0.01, 1), (f64::INFINITY, 9)];
        assert_eq!(
            delta_buckets(Some(&before), Some(&after)),
            Some(vec![(0.001, 2), (0.01, 1), (f64::INFINITY, 5)])
        );
        assert_eq!(delta_buckets(Some(&before), None), None);
    }
}
