//! The response cache layer: whole `GET` responses stored in the cache's [`Store`], purged
//! when what they were built from changes.
//!
//! A response is stored under `{prefix}{resource}:{id}:{sub}:params_{hash}:{version}` (see
//! [`ResponseCacheLayer`] for each part) with the tags of every record and index value read
//! while it was produced (the request's telemetry scope ([`cache_core::telemetry`])). The core
//! [`Cache`] purges those tags on every upsert, invalidation and delete, so a cached
//! `GET /events/E/projects` disappears when a project of `E` changes or a new one joins `E`.
//! A response produced while one of its tags was purged is not stored (the lookup's stamp,
//! [`Store::put_computed`]): it may have been built from what the purge replaced.
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

mod conditional;
mod envelope;
mod key;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    body::Body,
    extract::{FromRequestParts, MatchedPath, RawPathParams},
};
use bytes::Bytes;
use cache_core::{
    Cache, ComputedWrite, PurgeStamp, Store, StoreResult,
    telemetry::{self, Telemetry},
};
use futures::future::BoxFuture;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body as HttpBody;
use http_body_util::{BodyExt, Limited};
use tower::{Layer, Service};

pub use self::key::canonical_query;
use self::{
    conditional::{etag_for, if_none_match},
    envelope::{Envelope, Meta},
    key::{KeyInput, default_parts},
};
use crate::{
    metrics::RESPONSE_CACHE_TOTAL,
    telemetry::{ServedFromResponseCache, has_directive, wants_refresh},
};

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
    store: Arc<dyn Store>,
    /// False when built from a disabled [`Cache`] (`CACHE_ENABLED=false`): every response
    /// then comes from the handler.
    enabled: bool,
    prefix: String,
    resource: Option<String>,
    sub: Option<String>,
    version: String,
    ttl: Duration,
    vary: Vec<HeaderName>,
    allow_authenticated: bool,
    max_body_bytes: usize,
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
        let enabled = cache.is_enabled();
        Self::with_store(Arc::clone(cache.store())).config(|c| c.enabled = enabled)
    }

    /// Caches responses in `store`. Purges reach them only if the [`Cache`] writing the
    /// records uses the same store.
    pub fn with_store(store: Arc<dyn Store>) -> Self {
        Self {
            config: Arc::new(Config {
                store,
                enabled: true,
                prefix: DEFAULT_PREFIX.to_owned(),
                resource: None,
                sub: None,
                version: "v1".to_owned(),
                ttl: DEFAULT_TTL,
                vary: Vec::new(),
                allow_authenticated: false,
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
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
        self.config(|c| c.ttl = ttl)
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
    /// [`cache_core::keys`]). Answers how many were removed.
    pub async fn invalidate_tags(&self, tags: &[String]) -> StoreResult<u64> {
        let removed = self.config.store.purge_tags(tags).await?;
        tracing::info!(tags = ?tags, removed, "response_cache_purged");
        Ok(removed)
    }

    /// Removes the stored responses whose key, after this layer's prefix, matches the glob
    /// `pattern` (`events:recE1:*`); every stored response when `None`. Answers how many
    /// were removed. The store refuses patterns that would reach outside its namespace.
    pub async fn invalidate_pattern(&self, pattern: Option<&str>) -> StoreResult<u64> {
        let pattern = value_pattern(&self.config.prefix, pattern.unwrap_or("*"));
        let removed = self.config.store.flush(Some(&pattern)).await?;
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

/// Why a request or response is not cached (a `skipped` metric label and a log field).
#[derive(Debug, Clone, Copy)]
enum Skip {
    Disabled,
    Method,
    Authenticated,
    RequestNoStore,
    Status,
    SetCookie,
    VaryStar,
    ResponseNoStore,
    Streaming,
    TooLarge,
    Headers,
    BodyError,
}

impl Skip {
    fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Method => "method",
            Self::Authenticated => "authenticated",
            Self::RequestNoStore => "request_no_store",
            Self::Status => "status",
            Self::SetCookie => "set_cookie",
            Self::VaryStar => "vary_star",
            Self::ResponseNoStore => "response_no_store",
            Self::Streaming => "streaming",
            Self::TooLarge => "too_large",
            Self::Headers => "headers",
            Self::BodyError => "body_error",
        }
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
    let resource = metric_resource(&config, req.extensions());
    if !config.enabled {
        return Ok(pass_through(inner.call(req).await?, &resource, Skip::Disabled));
    }
    let headers = req.headers();
    if !config.allow_authenticated
        && (headers.contains_key(header::AUTHORIZATION) || headers.contains_key(header::COOKIE))
    {
        return Ok(pass_through(inner.call(req).await?, &resource, Skip::Authenticated));
    }
    if has_directive(headers, "no-store") {
        return Ok(pass_through(inner.call(req).await?, &resource, Skip::RequestNoStore));
    }

    let (mut parts, body) = req.into_parts();
    let key = request_key(&config, &mut parts).await;
    let refresh = wants_refresh(&parts.headers);

    // Looked up even when refreshing, for the stamp the new response is stored with.
    let (found, stamp) = lookup(&config, &key, &parts.headers).await;
    if !refresh && let Some(envelope) = found {
        return Ok(serve_stored(&key, &resource, envelope, &parts.headers, &method));
    }
    metrics::counter!(RESPONSE_CACHE_TOTAL, "resource" => resource.clone(), "outcome" => "miss").increment(1);

    let request_headers = parts.headers.clone();
    // Refresh here too, for when no telemetry layer asked for it around this one.
    let t = Telemetry::new().refresh(refresh);
    let response = telemetry::scope(t.clone(), inner.call(Request::from_parts(parts, body))).await?;
    if method != Method::GET {
        return Ok(pass_through(response, &resource, Skip::Method));
    }
    let (mut head, body) = match buffer_storable(response, config.max_body_bytes).await {
        Ok(buffered) => buffered,
        Err((response, skip)) => return Ok(pass_through(response, &resource, skip)),
    };
    let etag = match head.headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        Some(etag) => etag.to_owned(),
        None => {
            let etag = etag_for(&body);
            if let Ok(value) = HeaderValue::from_str(&etag) {
                head.headers.insert(header::ETAG, value);
            }
            etag
        }
    };
    let Some(kept) = Envelope::keep_headers(&head.headers, &[X_CACHE_KEY, X_CACHE_AGE, X_CACHE_TTL]) else {
        let response = Response::from_parts(head, Body::from(body));
        return Ok(pass_through(response, &resource, Skip::Headers));
    };
    let tags = t.snapshot().tags;
    let envelope = Envelope {
        meta: Meta {
            status: head.status.as_u16(),
            headers: kept,
            stored_at_ms: now_ms(),
            ttl_secs: config.ttl.as_secs(),
            etag: etag.clone(),
            vary: Envelope::vary_values(&request_headers, &vary_names(&head.headers)),
            tags,
        },
        body,
    };
    let body = envelope.body.clone();
    store(&config, &key, &resource, envelope, stamp).await;
    if if_none_match(&request_headers, &etag) {
        return Ok(not_modified(&head.headers, &resource));
    }
    Ok(Response::from_parts(head, Body::from(body)))
}

/// The response's head and whole body when it may be stored; else the response untouched,
/// with the reason.
async fn buffer_storable<B>(
    response: Response<B>,
    max: usize,
) -> Result<(http::response::Parts, Bytes), (Response<Body>, Skip)>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if let Err(skip) = storable(&response) {
        return Err((response.map(Body::new), skip));
    }
    match response.body().size_hint().exact() {
        None => return Err((response.map(Body::new), Skip::Streaming)),
        Some(len) if usize::try_from(len).map_or(true, |len| len > max) => {
            return Err((response.map(Body::new), Skip::TooLarge));
        }
        Some(_) => {}
    }
    let (head, body) = response.into_parts();
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok((head, collected.to_bytes())),
        Err(err) => {
            tracing::warn!(error = %err, "response_cache_body_error");
            Err((
                json_response(StatusCode::BAD_GATEWAY, "the response body failed"),
                Skip::BodyError,
            ))
        }
    }
}

/// Stores `envelope` under `key` with its tags, unless one of them was purged since `stamp`
/// (the lookup before the response was produced): the response may have been built from
/// what the purge replaced. Without a stamp (the lookup failed) nothing is stored. A failure
/// is logged: the response is still answered.
async fn store(config: &Config, key: &str, resource: &str, mut envelope: Envelope, stamp: Option<PurgeStamp>) {
    let Some(stamp) = stamp else {
        // The failed lookup was logged (`response_cache_store_error`).
        return;
    };
    let value = match envelope.encode() {
        Ok(value) => value,
        Err(err) => {
            store_error_logged(key, &err, "not stored");
            return;
        }
    };
    let write = ComputedWrite {
        value,
        ttl: config.ttl,
        tags: std::mem::take(&mut envelope.meta.tags),
        stamp,
        lock: None,
    };
    match config.store.put_computed(key, &write).await {
        Ok(true) => {
            metrics::counter!(RESPONSE_CACHE_TOTAL, "resource" => resource.to_owned(), "outcome" => "stored")
                .increment(1);
            tracing::debug!(key, tags = write.tags.len(), "response_cache_stored");
        }
        Ok(false) => {
            metrics::counter!(RESPONSE_CACHE_TOTAL, "resource" => resource.to_owned(), "outcome" => "refused")
                .increment(1);
            tracing::debug!(key, tags = write.tags.len(), "response_cache_refused");
        }
        Err(err) => tracing::warn!(key, error = %err, detail = "not stored", "response_cache_store_error"),
    }
}

/// The key of a request; path parameters are read from the route when the layer is on one.
async fn request_key(config: &Config, parts: &mut http::request::Parts) -> String {
    let params: Vec<(String, String)> = match RawPathParams::from_request_parts(parts, &()).await {
        Ok(params) => params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        Err(_) => Vec::new(),
    };
    let matched = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let path = parts.uri.path();
    let (resource, id, sub) = default_parts(path, matched.as_deref(), &params);
    KeyInput {
        prefix: &config.prefix,
        resource: config.resource.as_deref().unwrap_or(&resource),
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

/// The `resource` label of the response cache metric: the configured resource, else the
/// first literal segment of the matched route. Never the raw path: on a router-level layer
/// every unmatched path would make a new time series.
fn metric_resource(config: &Config, extensions: &http::Extensions) -> String {
    if let Some(resource) = &config.resource {
        return resource.clone();
    }
    extensions
        .get::<MatchedPath>()
        .and_then(|m| m.as_str().split('/').find(|s| !s.is_empty() && !s.starts_with('{')))
        .unwrap_or("_")
        .to_owned()
}

/// A stored response for `key` that may be served to a request with `headers`, and the
/// stamp to store a new response with (`None` when the store failed).
async fn lookup(config: &Config, key: &str, headers: &HeaderMap) -> (Option<Envelope>, Option<PurgeStamp>) {
    let (bytes, stamp) = match config.store.get_computed(key).await {
        Ok(lookup) => (lookup.value, lookup.stamp),
        Err(err) => {
            store_error_logged(key, &err, "lookup failed");
            return (None, None);
        }
    };
    let Some(bytes) = bytes else {
        return (None, Some(stamp));
    };
    let Some(envelope) = Envelope::decode(&bytes) else {
        tracing::warn!(key, "response_cache_unreadable");
        return (None, Some(stamp));
    };
    // A store that keeps values a little past their TTL must not make them live longer.
    if envelope.age_secs(now_ms()) >= envelope.meta.ttl_secs || !envelope.matches_vary(headers) {
        return (None, Some(stamp));
    }
    (Some(envelope), Some(stamp))
}

fn serve_stored(key: &str, resource: &str, envelope: Envelope, request: &HeaderMap, method: &Method) -> Response<Body> {
    let age = envelope.age_secs(now_ms());
    let ttl = envelope.meta.ttl_secs.saturating_sub(age);
    // A response built on this one depends on what it depended on.
    telemetry::record_tags(&envelope.meta.tags);
    tracing::debug!(key, age, "response_cache_hit");
    let headers = envelope.header_map();
    let mut response = if if_none_match(request, &envelope.meta.etag) {
        not_modified(&headers, resource)
    } else {
        metrics::counter!(RESPONSE_CACHE_TOTAL, "resource" => resource.to_owned(), "outcome" => "hit").increment(1);
        let len = envelope.body.len();
        let body = if method == Method::HEAD {
            Body::empty()
        } else {
            Body::from(envelope.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = envelope.status();
        *response.headers_mut() = headers;
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        response
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(key) {
        h.insert(X_CACHE_KEY, value);
    }
    h.insert(X_CACHE_AGE, HeaderValue::from(age));
    h.insert(X_CACHE_TTL, HeaderValue::from(ttl));
    response.extensions_mut().insert(ServedFromResponseCache);
    response
}

/// Why `response` may not be stored, if it may not.
fn storable<B>(response: &Response<B>) -> Result<(), Skip> {
    if response.status() != StatusCode::OK {
        return Err(Skip::Status);
    }
    let headers = response.headers();
    if headers.contains_key(header::SET_COOKIE) {
        return Err(Skip::SetCookie);
    }
    if vary_names(headers).iter().any(|n| n.as_str() == "*") || vary_star(headers) {
        return Err(Skip::VaryStar);
    }
    if has_directive(headers, "no-store") || has_directive(headers, "private") || has_directive(headers, "no-cache") {
        return Err(Skip::ResponseNoStore);
    }
    Ok(())
}

fn vary_star(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == "*")
}

/// The header names listed in the response's `Vary` (`*` excluded).
fn vary_names(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|v| HeaderName::try_from(v.trim()).ok())
        .collect()
}

fn pass_through<B>(response: Response<B>, resource: &str, skip: Skip) -> Response<Body>
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    metrics::counter!(RESPONSE_CACHE_TOTAL, "resource" => resource.to_owned(), "outcome" => "skipped").increment(1);
    tracing::trace!(reason = skip.as_str(), "response_cache_skipped");
    response.map(Body::new)
}

/// `304 Not Modified` with the headers RFC 9110 asks to repeat.
fn not_modified(headers: &HeaderMap, resource: &str) -> Response<Body> {
    metrics::counter!(RESPONSE_CACHE_TOTAL, "resource" => resource.to_owned(), "outcome" => "not_modified")
        .increment(1);
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

fn json_response(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Logs a store failure of the response cache, at most once per window in an outage.
fn store_error_logged(key: &str, err: &dyn std::fmt::Display, detail: &'static str) {
    static LIMIT: cache_core::log_limit::WarnLimit = cache_core::log_limit::WarnLimit::new();
    if let Some(held_back) = LIMIT.admit(std::time::Instant::now()) {
        tracing::warn!(key, error = %err, detail, held_back, "response_cache_store_error");
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};
    use cache_core::MemoryStore;
    use tower::ServiceExt;

    use super::*;
    use crate::CacheTelemetryLayer;

    /// Rewrites the stored response under `key` as if stored `secs_ago` seconds ago.
    async fn age(store: &Arc<dyn Store>, key: &str, secs_ago: u64) {
        let mut envelope = Envelope::decode(&store.get_value(key).await.unwrap().unwrap()).unwrap();
        envelope.meta.stored_at_ms = now_ms() - secs_ago * 1000;
        let bytes = envelope.encode().unwrap();
        store
            .put_value(key, bytes, Duration::from_secs(3600), &[])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn age_and_ttl_count_from_when_the_response_was_stored() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let layer = ResponseCacheLayer::with_store(Arc::clone(&store)).ttl(Duration::from_secs(60));
        let app: Router = Router::new()
            .route("/r", get(|| async { "body" }).layer(layer))
            .layer(CacheTelemetryLayer::new());
        let get = || app.clone().oneshot(Request::get("/r").body(Body::empty()).unwrap());
        get().await.unwrap();
        let hit = get().await.unwrap();
        let key = hit.headers()[X_CACHE_KEY].to_str().unwrap().to_owned();

        age(&store, &key, 25).await;
        let hit = get().await.unwrap();
        assert_eq!(hit.headers()["x-cache"], "HIT");
        assert_eq!(hit.headers()[X_CACHE_AGE], "25");
        assert_eq!(hit.headers()[X_CACHE_TTL], "35");

        // Past its TTL (a store that kept it longer): a miss, and stored afresh.
        age(&store, &key, 61).await;
        let miss = get().await.unwrap();
        assert!(!miss.headers().contains_key(X_CACHE_KEY));
        assert_eq!(get().await.unwrap().headers()[X_CACHE_AGE], "0");
    }

    #[tokio::test]
    async fn unreadable_entries_are_misses() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let layer = ResponseCacheLayer::with_store(Arc::clone(&store));
        let app: Router = Router::new().route("/r", get(|| async { "body" }).layer(layer));
        let get = || app.clone().oneshot(Request::get("/r").body(Body::empty()).unwrap());
        get().await.unwrap();
        let key = get().await.unwrap().headers()[X_CACHE_KEY].to_str().unwrap().to_owned();
        store
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
