//! The response cache layer: whole `GET` responses stored in the cache's [`Store`], purged
//! when what they were built from changes.
//!
//! Responses are [computed values](cache_core::compute): a miss runs the handler through
//! [`Cache::compute_cloned_with`], so a response has the same envelope, purge stamps and
//! stampede protection as any computed value (and, with a near cache, hot responses are
//! answered in process, decoded), and this module keeps only HTTP policy (keys, `Vary`,
//! `Cache-Control`, what may be stored, ETags, the `X-Cache-*` headers).
//!
//! A response is stored under `{prefix}{resource}:{id}:{sub}:params_{hash}:{version}` (see
//! [`ResponseCacheLayer`] for each part) with the tags of every record and index value read
//! while it was produced (collected by the request's [`DependencyScope`]). The core [`Cache`]
//! purges those tags on every upsert, invalidation and delete, so a cached
//! `GET /events/E/projects` disappears when a project of `E` changes or a new one joins `E`.
//! A response produced while one of its tags was purged is not stored (the lookup's stamp,
//! [`Store::put_computed`]): it may have been built from what the purge replaced.
//!
//! **Stampedes.** Concurrent misses of one response run the handler once: in a process, the
//! requests that miss while a handler runs for the same key wait for it; across instances
//! sharing a store, the store's compute lock ([`Store::lock_computed`]) makes the others wait
//! for its value. The waiters are answered its response with `X-Cache: HIT` and
//! [`X_CACHE_COALESCED`]. A response that turns out not storable (below), or a failure of the
//! inner service, goes to its own request only: each waiter then runs the handler itself.
//!
//! What is cached: `GET` responses with status 200 whose body has an exact size (not
//! streamed) of at most [`DEFAULT_MAX_BODY_BYTES`], without `Set-Cookie`, `Vary: *`,
//! `Cache-Control: no-store` or `private`, to requests without `Authorization` or `Cookie`
//! (unless the route opts in) and without `Cache-Control: no-store`. `HEAD` requests are
//! answered from the cache but never fill it. A request with `Cache-Control: no-cache` skips
//! the lookup and stores the fresh response.
//!
//! ```
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use cache_core::Cache;
//! use cache_http::ResponseCacheLayer;
//!
//! fn app(cache: &Cache) -> Router {
//!     Router::new().route(
//!         "/events/{id}/projects",
//!         get(|| async { "..." }).layer(ResponseCacheLayer::new(cache).ttl(Duration::from_secs(300))),
//!     )
//! }
//! ```
//!
//! [`Store`]: cache_core::store::Store
//! [`Store::put_computed`]: cache_core::store::Store::put_computed
//! [`Store::lock_computed`]: cache_core::store::Store::lock_computed

mod conditional;
mod key;
mod meter;
mod observe;
mod storable;
mod stored;

use std::{
    convert::Infallible,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    body::Body,
    extract::{FromRequestParts, MatchedPath, RawPathParams},
};
use bytes::Bytes;
use cache_core::{
    Cache, CacheError, ComputeOptions,
    compute::{Computation, Fetched, FetchedValue, ValueSource},
    dependencies::{self, DependencyScope},
    store::{StoreError, StoreResult},
};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as HttpBody;
use tower::{Layer, Service};

pub use self::key::canonical_query;
use self::{
    conditional::if_none_match,
    key::{KeyInput, default_parts},
    meter::{Meter, Meters, Outcome},
    observe::Observe,
    storable::{Skip, stored_response},
    stored::StoredResponse,
};
use crate::telemetry::{ServedFromResponseCache, has_directive, number_header, wants_refresh};

/// The default time a response lives: 5 minutes (purges usually end it sooner).
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The default largest body stored: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// The default key prefix, keeping responses apart from other computed values.
pub const DEFAULT_PREFIX: &str = "http:";

/// `X-Cache-Key`: the key a response was served from.
pub const X_CACHE_KEY: HeaderName = HeaderName::from_static("x-cache-key");
/// `X-Cache-Age`: seconds since the served response was stored.
pub const X_CACHE_AGE: HeaderName = HeaderName::from_static("x-cache-age");
/// `X-Cache-TTL`: seconds the served response has left to live.
pub const X_CACHE_TTL: HeaderName = HeaderName::from_static("x-cache-ttl");
/// `X-Cache-Coalesced: true`: the response was produced for another request that missed at
/// the same time (in this process, or in another instance holding the store's lock), which
/// this one waited for instead of running the handler.
pub const X_CACHE_COALESCED: HeaderName = HeaderName::from_static("x-cache-coalesced");

/// The headers this layer sets on what it serves: never stored.
const OWN_HEADERS: [HeaderName; 4] = [X_CACHE_KEY, X_CACHE_AGE, X_CACHE_TTL, X_CACHE_COALESCED];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Caches whole responses of the routes it wraps; see the [module docs](self).
///
/// Put it on a route (`get(handler).layer(...)`) to key by the route's path parameters, or on
/// a router (`Router::layer`) to key by the request path. Each part of the key is
/// configurable:
/// - `resource`: [`ResponseCacheLayer::resource`], by default the first path segment;
/// - `id`: the path parameters' values joined by `,` (on a route), else the second segment;
/// - `sub`: [`ResponseCacheLayer::sub_resource`], by default the route's literal segments after the
///   first joined by `.` (on a route), else the path's segments after the second;
/// - `hash`: xxh3 of the path, the query string with its parameters sorted by name (repeated
///   parameters keep their order), and the values of the request headers named by
///   [`ResponseCacheLayer::vary`];
/// - `version`: [`ResponseCacheLayer::version`] (`v1`), bumped when a route's output changes.
#[derive(Clone)]
pub struct ResponseCacheLayer {
    config: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    /// Its store holds the responses; a disabled cache (`CACHE_ENABLED=false`) caches none.
    cache: Cache,
    prefix: String,
    resource: Option<String>,
    sub: Option<String>,
    version: String,
    ttl: Duration,
    /// The computed-value settings of a response: `ttl` exactly (no jitter), never refreshed
    /// early (a hit always answers), locked across instances.
    options: ComputeOptions,
    vary: Vec<HeaderName>,
    allow_authenticated: bool,
    max_body_bytes: usize,
    /// The metric's counters, shared by every clone of the layer.
    meters: Arc<Meters>,
}

fn compute_options(ttl: Duration) -> ComputeOptions {
    ComputeOptions::new(ttl).ttl_jitter(0.0).beta(0.0)
}

impl fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        f.debug_struct("ResponseCacheLayer")
            .field("prefix", &c.prefix)
            .field("resource", &c.resource)
            .field("sub", &c.sub)
            .field("version", &c.version)
            .field("ttl", &c.ttl)
            .field("vary", &c.vary)
            .field("allow_authenticated", &c.allow_authenticated)
            .field("max_body_bytes", &c.max_body_bytes)
            .finish_non_exhaustive()
    }
}

impl ResponseCacheLayer {
    /// Caches responses in `cache`'s store, which purges them when their records change. A
    /// disabled cache (`CACHE_ENABLED=false`) caches no response either.
    pub fn new(cache: &Cache) -> Self {
        Self {
            config: Arc::new(Config {
                cache: cache.clone(),
                prefix: DEFAULT_PREFIX.to_owned(),
                resource: None,
                sub: None,
                version: "v1".to_owned(),
                ttl: DEFAULT_TTL,
                options: compute_options(DEFAULT_TTL),
                vary: Vec::new(),
                allow_authenticated: false,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                meters: Arc::default(),
            }),
        }
    }

    fn config(mut self, f: impl FnOnce(&mut Config)) -> Self {
        // Layers are configured before they are shared: this clones the configuration only
        // when a layer already cloned is configured again.
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// The key's resource part (`events`).
    pub fn resource(self, resource: impl Into<String>) -> Self {
        let resource = resource.into();
        self.config(|c| c.resource = Some(resource))
    }

    /// The key's sub-resource part (`projects`).
    pub fn sub_resource(self, sub: impl Into<String>) -> Self {
        let sub = sub.into();
        self.config(|c| c.sub = Some(sub))
    }

    /// The key's version part (default `v1`): bump it when the route's output changes shape,
    /// so that responses stored by the old code are never served.
    pub fn version(self, version: impl Into<String>) -> Self {
        let version = version.into();
        self.config(|c| c.version = version)
    }

    /// How long a response lives (default [`DEFAULT_TTL`]).
    pub fn ttl(self, ttl: Duration) -> Self {
        self.config(|c| {
            c.ttl = ttl;
            c.options = compute_options(ttl);
        })
    }

    /// A request header the route's responses vary on: its value becomes part of the key.
    /// A response whose `Vary` names a header not declared here is still served only to
    /// requests with the same value of it (checked on lookup), but variants then replace each
    /// other instead of being cached side by side.
    pub fn vary(self, header: HeaderName) -> Self {
        self.config(|c| {
            if !c.vary.contains(&header) {
                c.vary.push(header);
            }
        })
    }

    /// Also caches responses to requests with `Authorization` or `Cookie` (off by default):
    /// only for routes whose response does not depend on who asks.
    pub fn allow_authenticated(self, allow: bool) -> Self {
        self.config(|c| c.allow_authenticated = allow)
    }

    /// The largest body stored (default [`DEFAULT_MAX_BODY_BYTES`]); larger ones are passed
    /// through uncached.
    pub fn max_body_bytes(self, max: usize) -> Self {
        self.config(|c| c.max_body_bytes = max)
    }

    /// The key prefix (default [`DEFAULT_PREFIX`], `http:`).
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.config(|c| c.prefix = prefix)
    }

    /// Removes every stored response tagged with any of `tags` (record tags such as
    /// `projects:recP1`, index tags such as `projects?event=recE1`; see
    /// [`cache_core::keys`]), as [`Cache::invalidate_tags`] does: responses being produced
    /// from them answer no later miss. Answers how many were removed.
    pub async fn invalidate_tags(&self, tags: &[String]) -> StoreResult<u64> {
        let removed = self
            .config
            .cache
            .invalidate_tags(tags.iter().cloned())
            .await
            .map_err(|err| match err {
                CacheError::Store(err) => err,
                other => StoreError::Backend(other.to_string()),
            })?;
        tracing::info!(tags = ?tags, removed, "response_cache_purged");
        Ok(removed)
    }

    /// Removes the stored responses whose key, after this layer's prefix, matches the glob
    /// `pattern` (`events:recE1:*`); every stored response when `None`. Answers how many
    /// were removed. The store refuses patterns that would reach outside its namespace.
    pub async fn invalidate_pattern(&self, pattern: Option<&str>) -> StoreResult<u64> {
        let pattern = value_pattern(&self.config.prefix, pattern.unwrap_or("*"));
        let removed = self.config.cache.store().flush(Some(&pattern)).await?;
        tracing::info!(pattern, removed, "response_cache_purged");
        Ok(removed)
    }
}

/// The store flush pattern of the values whose key is `prefix` followed by something
/// matching `pattern`: stores show a value stored under `key` as `v:{key}` to flush patterns.
fn value_pattern(prefix: &str, pattern: &str) -> String {
    format!("v:{prefix}{pattern}")
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`ResponseCacheLayer`].
#[derive(Clone)]
pub struct ResponseCache<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for ResponseCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseCacheFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request; the fresh clone waits for the
        // next `poll_ready` (tower's usual pattern for services used across an await).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = Arc::clone(&self.config);
        ResponseCacheFuture {
            inner: Box::pin(serve(config, inner, req)),
        }
    }
}

/// The future of [`ResponseCache`]. Boxed: it awaits the store around the inner service.
pub struct ResponseCacheFuture<E> {
    inner: BoxFuture<'static, Result<Response<Body>, E>>,
}

impl<E> Future for ResponseCacheFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<E> fmt::Debug for ResponseCacheFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheFuture").finish_non_exhaustive()
    }
}

async fn serve<S, ReqBody, ResBody>(
    config: Arc<Config>,
    mut inner: S,
    req: Request<ReqBody>,
) -> Result<Response<Body>, S::Error>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return inner.call(req).await.map(|r| r.map(Body::new));
    }
    let meter = metric_resource(&config, req.extensions());
    if !config.cache.is_enabled() {
        return Ok(pass_through(inner.call(req).await?, &meter, Skip::Disabled));
    }
    let headers = req.headers();
    if !config.allow_authenticated
        && (headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE))
    {
        return Ok(pass_through(inner.call(req).await?, &meter, Skip::Authenticated));
    }
    if has_directive(headers, "no-store") {
        return Ok(pass_through(inner.call(req).await?, &meter, Skip::RequestNoStore));
    }

    let (mut parts, body) = req.into_parts();
    let key = request_key(&config, &mut parts).await;
    let refresh = wants_refresh(&parts.headers);
    // Taken out of the request, which gets a copy back only if it reaches the service (a miss).
    let request = std::mem::take(&mut parts.headers);
    let observer = Observe {
        key: &key,
        meter: &meter,
    };
    let accept = |stored: &StoredResponse| stored.matches_vary(&request);
    let max = config.max_body_bytes;
    let request_headers = &request;
    let get = method == Method::GET;
    // Boxed, and only on a miss: the service's future would otherwise make this layer's
    // future (moved on every request, hit or not) as large as the handler's.
    let produce = move || {
        Box::pin(async move {
            parts.headers = request_headers.clone();
            // The service's error is this request's answer alone: the waiters run their own.
            let produced = match inner.call(Request::from_parts(parts, body)).await {
                Ok(response) if get => match stored_response(response, request_headers, max).await {
                    Ok(stored) => Computation::Store(stored),
                    Err(passed) => Computation::Answer(Ok(passed)),
                },
                Ok(response) => Computation::Answer(Ok((response.map(Body::new), Skip::Method))),
                Err(err) => Computation::Answer(Err(err)),
            };
            Ok::<_, Infallible>(produced)
        })
    };
    let lookup = config
        .cache
        .compute_cloned_with(&key, &config.options, &observer, &accept, produce);
    // A refresh gets a scope of its own, for when no telemetry layer asked for it around this
    // one. Otherwise the scopes around this layer (if any) are the ones that record what a hit
    // depends on: a scope of its own would only collect the hit's tags to drop them.
    let fetched = if refresh {
        dependencies::scope(DependencyScope::new().refresh(true), lookup).await
    } else {
        lookup.await
    };
    match fetched {
        Ok(Fetched::Value(fetched)) => Ok(respond(&key, &meter, fetched, &request, &method)),
        Ok(Fetched::Answer(Ok((response, skip)))) => Ok(pass_through(response, &meter, skip)),
        Ok(Fetched::Answer(Err(err))) => Err(err),
        Err(never) => match *never {},
    }
}

/// The key of a request; path parameters are read from the route when the layer is on one.
async fn request_key(config: &Config, parts: &mut http::request::Parts) -> String {
    let params = RawPathParams::from_request_parts(parts, &()).await.ok();
    let values: Vec<&str> = params.iter().flat_map(|p| p.iter().map(|(_, v)| v)).collect();
    let matched = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str);
    let path = parts.uri.path();
    let (resource, id, sub) = default_parts(path, matched, &values);
    KeyInput {
        prefix: &config.prefix,
        resource: config.resource.as_deref().unwrap_or(resource),
        id: &id,
        sub: config.sub.as_deref().unwrap_or(&sub),
        version: &config.version,
        path,
        query: parts.uri.query(),
        vary: &config.vary,
        headers: &parts.headers,
    }
    .key()
}

/// The meter of the response cache metric's `resource` label: the configured resource, else
/// the first literal segment of the matched route. Never the raw path: on a router-level layer
/// every unmatched path would make a new time series.
fn metric_resource(config: &Config, extensions: &http::Extensions) -> Arc<Meter> {
    let resource = match &config.resource {
        Some(resource) => resource.as_str(),
        None => extensions
            .get::<MatchedPath>()
            .and_then(|m| m.as_str().split('/').find(|s| !s.is_empty() && !s.starts_with('{')))
            .unwrap_or("_"),
    };
    config.meters.get(resource)
}

/// The answer of a request from a response: stored, produced for another request, or
/// produced for this one (then without the `X-Cache-*` headers).
fn respond(
    key: &str,
    meter: &Meter,
    fetched: FetchedValue<StoredResponse>,
    request: &HeaderMap,
    method: &Method,
) -> Response<Body> {
    let age = fetched.answered_at_ms.saturating_sub(fetched.computed_at_ms) / 1000;
    let ttl = (fetched.expires_at_ms.saturating_sub(fetched.computed_at_ms) / 1000).saturating_sub(age);
    let stored = fetched.value;
    let headers = stored.header_map();
    let served = match fetched.source {
        ValueSource::Computed => None,
        ValueSource::Shared => {
            tracing::debug!(key, age, "response_cache_coalesced");
            Some(Outcome::Coalesced)
        }
        _ => {
            tracing::debug!(key, age, "response_cache_hit");
            Some(Outcome::Hit)
        }
    };
    if if_none_match(request, &stored.etag) {
        let mut response = not_modified(&headers, meter);
        if served.is_some() {
            mark_served(&mut response, key, age, ttl, fetched.source);
        }
        return response;
    }
    let len = stored.body.len();
    let status = stored.status();
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(stored.body.clone())
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    if let Some(outcome) = served {
        meter.count(outcome);
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        mark_served(&mut response, key, age, ttl, fetched.source);
    }
    response
}

/// The headers and the extension of a response this request did not produce.
fn mark_served(response: &mut Response<Body>, key: &str, age: u64, ttl: u64, source: ValueSource) {
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(key) {
        h.insert(X_CACHE_KEY, value);
    }
    h.insert(X_CACHE_AGE, number_header(age));
    h.insert(X_CACHE_TTL, number_header(ttl));
    if source == ValueSource::Shared {
        h.insert(X_CACHE_COALESCED, HeaderValue::from_static("true"));
    }
    response.extensions_mut().insert(ServedFromResponseCache);
}

fn pass_through<B>(response: Response<B>, meter: &Meter, skip: Skip) -> Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    meter.count(Outcome::Skipped);
    tracing::trace!(reason = skip.as_str(), "response_cache_skipped");
    response.map(Body::new)
}

/// `304 Not Modified` with the headers RFC 9110 asks to repeat.
fn not_modified(headers: &HeaderMap, meter: &Meter) -> Response<Body> {
    meter.count(Outcome::NotModified);
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    for name in [
        header::ETAG,
        header::CACHE_CONTROL,
        header::VARY,
        header::EXPIRES,
        header::CONTENT_LOCATION,
        header::LAST_MODIFIED,
    ] {
        for value in headers.get_all(&name) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};
    use cache_core::{MemoryStore, clock::ManualClock, testing::MemoryOrigin};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::CacheTelemetryLayer;

    /// A cache whose computed values (responses) are judged by `clock`; its store keeps them
    /// on real time, longer.
    fn cache(clock: &ManualClock) -> Cache {
        Cache::builder(MemoryStore::new(), MemoryOrigin::new())
            .clock(clock.clone())
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn age_and_ttl_count_from_when_the_response_was_stored() {
        let clock = ManualClock::new();
        let cache = cache(&clock);
        let layer = ResponseCacheLayer::new(&cache).ttl(Duration::from_secs(60));
        let app: Router = Router::new()
            .route("/r", get(|| async { "body" }).layer(layer))
            .layer(CacheTelemetryLayer::new());
        let get = || app.clone().oneshot(Request::get("/r").body(Body::empty()).unwrap());
        get().await.unwrap();

        clock.advance(Duration::from_secs(25));
        let hit = get().await.unwrap();
        assert_eq!(hit.headers()["x-cache"], "HIT");
        assert_eq!(hit.headers()[X_CACHE_AGE], "25");
        assert_eq!(hit.headers()[X_CACHE_TTL], "35");

        // Past its TTL (the store still keeps it): a miss, and stored afresh.
        clock.advance(Duration::from_secs(36));
        let miss = get().await.unwrap();
        assert!(!miss.headers().contains_key(X_CACHE_KEY));
        assert_eq!(get().await.unwrap().headers()[X_CACHE_AGE], "0");
    }

    #[tokio::test]
    async fn unreadable_entries_are_misses() {
        let cache = cache(&ManualClock::new());
        let layer = ResponseCacheLayer::new(&cache);
        let app: Router = Router::new().route("/r", get(|| async { "body" }).layer(layer));
        let get = || app.clone().oneshot(Request::get("/r").body(Body::empty()).unwrap());
        get().await.unwrap();
        let key = get().await.unwrap().headers()[X_CACHE_KEY].to_str().unwrap().to_owned();
        cache
            .store()
            .put_value(&key, Bytes::from_static(b"garbage"), Duration::from_secs(60), &[])
            .await
            .unwrap();
        let response = get().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key(X_CACHE_KEY));
        assert_eq!(&response.into_body().collect().await.unwrap().to_bytes()[..], b"body");
    }

    #[test]
    fn value_patterns_stay_under_the_prefix() {
        assert_eq!(value_pattern("http:", "events:*"), "v:http:events:*");
    }
}
