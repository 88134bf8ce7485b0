//! The telemetry layer: opens a [`DependencyScope`] per request and reports what the request
//! read from the cache in response headers (`X-Cache`, `X-Origin-Calls`).
//!
//! ```
//! use axum::{Router, routing::get};
//! use cache_http::CacheTelemetryLayer;
//!
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(CacheTelemetryLayer::new().origin_calls_header(http::HeaderName::from_static("x-airtable-hits")));
//! ```

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, PoisonError, RwLock},
    task::{Context, Poll},
    time::Instant,
};

use cache_core::dependencies::{self, DependencyScope, ReadCounts};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use metrics::Histogram;
use tower::{Layer, Service};

use crate::metrics::{REQUEST_DURATION_SECONDS, current_recorder};

/// `X-Cache`: `HIT`, `MISS` or `BYPASS`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// The default name of the origin-calls header.
pub const X_ORIGIN_CALLS: HeaderName = HeaderName::from_static("x-origin-calls");

/// How the cache served a request, as reported in `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// Every cache read of the request hit (or the response came from the response cache).
    Hit,
    /// At least one read went to the origin.
    Miss,
    /// The cache was skipped (`Cache-Control: no-cache`, a disabled cache) or not used.
    Bypass,
}

impl CacheStatus {
    /// What the request's telemetry counted says; `from_response_cache` when the response was
    /// served whole from the response cache.
    pub fn of(counts: &ReadCounts, refresh: bool, from_response_cache: bool) -> Self {
        if from_response_cache {
            Self::Hit
        } else if refresh || counts.bypasses > 0 {
            Self::Bypass
        } else if counts.misses > 0 || counts.origin_calls > 0 {
            Self::Miss
        } else if counts.hits > 0 || counts.tombstone_hits > 0 {
            Self::Hit
        } else {
            Self::Bypass
        }
    }

    /// `HIT`, `MISS` or `BYPASS`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a request's `Cache-Control` has the `no-cache` directive.
pub(crate) fn wants_refresh(headers: &HeaderMap) -> bool {
    has_directive(headers, "no-cache")
}

/// Whether a `Cache-Control` header has `directive` (case-insensitive, with or without an
/// argument).
pub(crate) fn has_directive(headers: &HeaderMap, directive: &str) -> bool {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.split('=').next().unwrap_or("").trim())
        .any(|d| d.eq_ignore_ascii_case(directive))
}

/// Marks a response served whole from the response cache (a response extension), so that the
/// telemetry layer reports `X-Cache: HIT` though no record was read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServedFromResponseCache;

/// A number as a header value; the small ones, the usual ones, without an allocation.
pub(crate) fn number_header(n: u64) -> HeaderValue {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match usize::try_from(n).ok().and_then(|i| DIGITS.get(i)) {
        Some(digit) => HeaderValue::from_static(digit),
        None => HeaderValue::from(n),
    }
}

/// The `method` label of the request duration metric: a method of RFC 9110 or PATCH, else
/// `OTHER`, so that a client sending made-up methods makes no new time series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

/// The request duration histograms of a layer, one per method label, status and cache status,
/// each registered once per recorder and kept (as cache-core keeps its own metrics), so that a
/// request records its duration without building and looking up a metric key. Bounded: ten
/// method labels, the status codes the application answers, three cache statuses.
#[derive(Debug, Default)]
struct Durations(RwLock<HashMap<DurationLabels, (usize, Histogram)>>);

/// A duration histogram's labels: method, status, cache status.
type DurationLabels = (&'static str, StatusCode, CacheStatus);

impl Durations {
    fn record(&self, method: &'static str, status: StatusCode, cache: CacheStatus, seconds: f64) {
        let key = (method, status, cache);
        let recorder = current_recorder();
        if let Some((at, histogram)) = self.0.read().unwrap_or_else(PoisonError::into_inner).get(&key)
            && *at == recorder
        {
            histogram.record(seconds);
            return;
        }
        let histogram = metrics::histogram!(
            REQUEST_DURATION_SECONDS,
            "method" => method,
            "status" => status.as_str().to_owned(),
            "cache" => cache.as_str(),
        );
        histogram.record(seconds);
        let mut histograms = self.0.write().unwrap_or_else(PoisonError::into_inner);
        histograms.insert(key, (recorder, histogram));
    }
}

/// Adds telemetry headers to every response; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct CacheTelemetryLayer {
    origin_calls_header: HeaderName,
    durations: Arc<Durations>,
}

impl CacheTelemetryLayer {
    /// The layer, reporting origin calls in `X-Origin-Calls`.
    pub fn new() -> Self {
        Self {
            origin_calls_header: X_ORIGIN_CALLS,
            durations: Arc::default(),
        }
    }

    /// Reports origin calls in another header (`X-Airtable-Hits`).
    pub fn origin_calls_header(mut self, name: HeaderName) -> Self {
        self.origin_calls_header = name;
        self
    }
}

impl Default for CacheTelemetryLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for CacheTelemetryLayer {
    type Service = CacheTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheTelemetry {
            inner,
            origin_calls_header: self.origin_calls_header.clone(),
            durations: Arc::clone(&self.durations),
        }
    }
}

/// The service of [`CacheTelemetryLayer`].
#[derive(Debug, Clone)]
pub struct CacheTelemetry<S> {
    inner: S,
    origin_calls_header: HeaderName,
    durations: Arc<Durations>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheTelemetry<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: 'static,
    S::Error: 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = CacheTelemetryFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let refresh = wants_refresh(req.headers());
        let method = method_label(req.method());
        let t = DependencyScope::new().refresh(refresh);
        if refresh {
            tracing::debug!(method = %req.method(), path = %req.uri().path(), "cache_bypass");
        }
        let started = Instant::now();
        let inner = dependencies::scope(t.clone(), self.inner.call(req));
        let header = self.origin_calls_header.clone();
        let durations = Arc::clone(&self.durations);
        CacheTelemetryFuture {
            inner: Box::pin(async move {
                let mut response = inner.await?;
                // The counts only: the request's tags are not needed here.
                let counts = t.counts();
                let served = response.extensions_mut().remove::<ServedFromResponseCache>().is_some();
                let status = CacheStatus::of(&counts, refresh, served);
                let headers = response.headers_mut();
                headers.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
                headers.insert(header, number_header(counts.origin_calls));
                durations.record(method, response.status(), status, started.elapsed().as_secs_f64());
                Ok(response)
            }),
        }
    }
}

/// The future of [`CacheTelemetry`]. Boxed: it runs the inner future inside the core's
/// dependency scope, whose future type cannot be named.
pub struct CacheTelemetryFuture<B, E> {
    inner: BoxFuture<'static, Result<Response<B>, E>>,
}

impl<B, E> Future for CacheTelemetryFuture<B, E> {
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<B, E> fmt::Debug for CacheTelemetryFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheTelemetryFuture").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(hits: u64, misses: u64, bypasses: u64, origin_calls: u64) -> ReadCounts {
        ReadCounts {
            hits,
            misses,
            bypasses,
            origin_calls,
            ..ReadCounts::default()
        }
    }

    #[test]
    fn status_rules() {
        assert_eq!(CacheStatus::of(&counts(3, 0, 0, 0), false, false), CacheStatus::Hit);
        assert_eq!(CacheStatus::of(&counts(3, 1, 0, 1), false, false), CacheStatus::Miss);
        assert_eq!(CacheStatus::of(&counts(0, 0, 2, 1), false, false), CacheStatus::Bypass);
        assert_eq!(CacheStatus::of(&counts(0, 0, 0, 0), false, false), CacheStatus::Bypass);
        assert_eq!(CacheStatus::of(&counts(0, 0, 0, 0), true, false), CacheStatus::Bypass);
        assert_eq!(CacheStatus::of(&counts(0, 0, 0, 0), false, true), CacheStatus::Hit);
        let tombstone = ReadCounts {
            tombstone_hits: 1,
            ..ReadCounts::default()
        };
        assert_eq!(CacheStatus::of(&tombstone, false, false), CacheStatus::Hit);
    }

    #[test]
    fn cache_control_directives() {
        let mut h = HeaderMap::new();
        assert!(!wants_refresh(&h));
        h.insert(header::CACHE_CONTROL, "max-age=0, No-Cache".parse().unwrap());
        assert!(wants_refresh(&h));
        h.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert!(!wants_refresh(&h));
        assert!(has_directive(&h, "no-store"));
    }
}
