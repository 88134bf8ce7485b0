//! The operator's dashboard: `GET /admin/`, a page a person opens in a browser, mounted by the
//! [admin router](crate::admin) next to its bearer-token API.
//!
//! It shows, refreshing by itself every few seconds, the hit rate, misses, origin calls per
//! second and read latency (p50/p99) per entity over the last hour as charts; the store's
//! health; computed values and response-cache hit rates; the last webhook and change-feed
//! deliveries ([`DeliveryLog`], [`Cache::feeds`]) and each change feed's cursor, last change
//! applied, lag, backlog and outcomes (read from the cache's feed status,
//! [`cache_core::feed`]). It looks up what the cache holds for
//! a record (read from the store, never filled from the origin), invalidates it, and flushes
//! by pattern after a dry run that counts what would go.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/` | the page, or the sign-in form; `?entity=&id=` looks up a record, `?flush=` runs a dry run |
//! | `POST /admin/session` | signs in: the admin token for a session cookie |
//! | `POST /admin/session/end` | signs out |
//! | `GET /admin/live` | the live panels (HTML), which the page's script fetches |
//! | `GET /admin/overview.json` | the same as JSON |
//! | `POST /admin/records/invalidate` | forgets a record |
//! | `POST /admin/flush` | flushes a pattern whose dry run was shown |
//! | `GET /admin/assets/*` | the stylesheet and the script (no CDN, no build step) |
//!
//! ## Security
//! - Signing in exchanges the admin token (compared in constant time) for a random session
//!   id in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/admin`, `Secure` when the page
//!   was reached over HTTPS, living [`Dashboard::session_ttl`]. Sessions are kept in a map of
//!   at most [`Dashboard::max_sessions`] entries.
//! - Every state change (signing in and out, invalidating, flushing) is a `POST` that must
//!   carry the session's CSRF token (not for signing in, which has no session yet), and is
//!   refused when `Sec-Fetch-Site` says another site or origin sent it or `Origin` names
//!   another host.
//! - Pages are sent with a strict `Content-Security-Policy` (no inline script), `X-Frame-Options:
//!   DENY` and `Cache-Control: no-store`.
//! - The bearer API of [`admin::routes`](crate::admin::routes) is unchanged: scripts keep
//!   using it.
//!
//! ```no_run
//! use axum::Router;
//! use cache_core::Cache;
//! use cache_http::{admin::{self, AdminConfig}, dashboard::Dashboard};
//!
//! fn app(cache: Cache, token: String) -> Result<Router, Box<dyn std::error::Error>> {
//!     let dashboard = Dashboard::new(&cache).prometheus(cache_http::metrics::install_recorder()?);
//!     // The webhook reports its deliveries here; the change feeds report to the cache.
//!     let _deliveries = dashboard.delivery_log();
//!     Ok(Router::new()
//!         .merge(cache_http::metrics::routes_for(&cache)?)
//!         .merge(admin::routes(AdminConfig::new(cache, token).dashboard(dashboard))?))
//! }
//! ```

mod chart;
mod events;
mod inspect;
mod page;
mod sampler;
mod session;

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::{
        Query, State,
        rejection::{FormRejection, QueryRejection},
    },
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use cache_core::{
    Cache, RecordId, RemoveOutcome,
    compute::ComputedStats,
    feed::{ChangeCounts, FeedStatus, FeedTotals},
    keys,
    stats::EntityStats,
    store::StoreError,
};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};

pub use events::{DEFAULT_DELIVERIES, DeliveryEvent, DeliveryLog, MAX_FIELD_LEN};
pub use inspect::MAX_DRY_RUN_IDS;
pub use sampler::{EntitySample, ResponseCacheCounts, Sample, StoreFailure, StoreHealth};

use self::{
    inspect::{DryRun, Held},
    session::{Session, Sessions},
};
use crate::{Secret, admin::MAX_PATTERN_LEN};

/// How often the sampler snapshots the cache by default.
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How many samples the charts keep by default: an hour at [`DEFAULT_SAMPLE_EVERY`].
pub const DEFAULT_HISTORY: usize = 720;
/// How long a session lives by default.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(30 * 60);
/// How many sessions are kept by default.
pub const DEFAULT_MAX_SESSIONS: usize = 64;

/// The dashboard's configuration, handed to [`AdminConfig::dashboard`](crate::admin::AdminConfig::dashboard).
#[derive(Debug, Clone)]
pub struct Dashboard {
    cache: Cache,
    prometheus: Option<PrometheusHandle>,
    sample_every: Duration,
    history: usize,
    session_ttl: Duration,
    max_sessions: usize,
    deliveries: DeliveryLog,
}

impl Dashboard {
    /// A dashboard over `cache`, with the defaults: a sample every
    /// [`DEFAULT_SAMPLE_EVERY`], [`DEFAULT_HISTORY`] samples, sessions of
    /// [`DEFAULT_SESSION_TTL`], a [`DeliveryLog`] of [`DEFAULT_DELIVERIES`].
    pub fn new(cache: &Cache) -> Self {
        Self {
            cache: cache.clone(),
            prometheus: None,
            sample_every: DEFAULT_SAMPLE_EVERY,
            history: DEFAULT_HISTORY,
            session_ttl: DEFAULT_SESSION_TTL,
            max_sessions: DEFAULT_MAX_SESSIONS,
            deliveries: DeliveryLog::default(),
        }
    }

    /// Reads the read-latency histograms and the response cache's counters from the
    /// Prometheus recorder ([`metrics::install_recorder`](crate::metrics::install_recorder)):
    /// without it, those panels say they need it.
    pub fn prometheus(mut self, handle: PrometheusHandle) -> Self {
        self.prometheus = Some(handle);
        self
    }

    /// How often the sampler snapshots the cache (at least 100 ms).
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.sample_every = every.max(Duration::from_millis(100));
        self
    }

    /// How many samples the charts keep (at least 2): the charts span `history ×
    /// sample_every`.
    pub fn history(mut self, samples: usize) -> Self {
        self.history = samples.max(2);
        self
    }

    /// How long a session lives after signing in (at least a second).
    pub fn session_ttl(mut self, ttl: Duration) -> Self {
        self.session_ttl = ttl.max(Duration::from_secs(1));
        self
    }

    /// How many sessions are kept (at least one): signing in beyond it ends the session
    /// closest to expiry.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.max_sessions = max.max(1);
        self
    }

    /// Lists the deliveries reported to `log` (instead of a log of its own).
    pub fn deliveries(mut self, log: DeliveryLog) -> Self {
        self.deliveries = log;
        self
    }

    /// The log the dashboard lists deliveries from: give it to the webhook. (The change feeds
    /// report to the cache, [`Cache::feeds`], and are listed with it.)
    pub fn delivery_log(&self) -> DeliveryLog {
        self.deliveries.clone()
    }
}

/// The dashboard's state, shared by its handlers and its sampler.
struct DashboardState {
    cache: Cache,
    token: Secret,
    sessions: Sessions,
    sampler: sampler::Sampler,
    deliveries: DeliveryLog,
    sample_every: Duration,
    window: Duration,
    sampler_started: AtomicBool,
}

/// The dashboard's routes (see the [module docs](self)), authenticated by `token`. The
/// sampler runs while the router lives: it starts now when a Tokio runtime is current,
/// otherwise at the first request.
pub(crate) fn routes<S>(config: Dashboard, token: Secret) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let window = config
        .sample_every
        .saturating_mul(u32::try_from(config.history).unwrap_or(u32::MAX));
    let state = Arc::new(DashboardState {
        sampler: sampler::Sampler::new(config.cache.clone(), config.prometheus, config.history),
        cache: config.cache,
        token,
        sessions: Sessions::new(config.session_ttl, config.max_sessions),
        deliveries: config.deliveries,
        sample_every: config.sample_every,
        window,
        sampler_started: AtomicBool::new(false),
    });
    start_sampler(&state);
    Router::new()
        .route("/admin", get(|| async { Redirect::permanent("/admin/") }))
        .route("/admin/", get(page))
        .route("/admin/session", post(sign_in))
        .route("/admin/session/end", post(sign_out))
        .route("/admin/live", get(live))
        .route("/admin/overview.json", get(overview_json))
        .route("/admin/records/invalidate", post(invalidate))
        .route("/admin/flush", post(flush))
        .route("/admin/assets/dashboard.css", get(stylesheet))
        .route("/admin/assets/dashboard.js", get(script))
        .with_state(state)
}

/// Starts the sampler once, when a runtime is current. It holds the state weakly and ends
/// when the router is dropped.
fn start_sampler(state: &Arc<DashboardState>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if state.sampler_started.swap(true, Ordering::AcqRel) {
        return;
    }
    // The first interval counts from now, whenever the task below first runs.
    state.sampler.set_baseline();
    let weak: Weak<DashboardState> = Arc::downgrade(state);
    let every = state.sample_every;
    runtime.spawn(async move {
        let Some(state) = weak.upgrade() else {
            return;
        };
        state.sampler.check_store().await;
        drop(state);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(state) = weak.upgrade() else {
                break;
            };
            state.sampler.sample().await;
        }
    });
}

// ------------------------------------------------------------------ the overview

/// Everything the live panels show.
#[derive(Debug, Clone, Serialize)]
struct Overview {
    generated_at: DateTime<Utc>,
    sample_every_seconds: f64,
    window_seconds: f64,
    store: StoreHealth,
    /// Counters since the process started, per entity.
    entities: BTreeMap<&'static str, EntityTotals>,
    samples: Vec<Sample>,
    computed: BTreeMap<&'static str, ComputedStats>,
    /// `None` without the Prometheus recorder.
    response_cache: Option<BTreeMap<String, ResponseCacheCounts>>,
    latency_known: bool,
    /// Webhook deliveries and change-feed events, newest first.
    deliveries: Vec<DeliveryEvent>,
    /// The change feeds, by name.
    feeds: BTreeMap<String, FeedView>,
}

/// A change feed as the dashboard shows it: its [`FeedStatus`], times as UTC, and the lag
/// at the moment of the overview.
#[derive(Debug, Clone, Serialize)]
struct FeedView {
    position: Option<String>,
    /// The source time of the newest change applied.
    last_source_time: Option<DateTime<Utc>>,
    /// When it was applied.
    last_applied_at: Option<DateTime<Utc>>,
    /// Every change up to this point is applied: the lag's base.
    current_as_of: Option<DateTime<Utc>>,
    lag_seconds: Option<f64>,
    /// Changes waiting: a count, `1` for "more wait", `None` when unknown.
    backlog: Option<u64>,
    backlog_text: String,
    last_batch: Option<ChangeCounts>,
    totals: FeedTotals,
    failing: bool,
    last_error: Option<FailureView>,
    last_resync: Option<ResyncView>,
    held_elsewhere: bool,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
struct FailureView {
    at: DateTime<Utc>,
    message: String,
}

#[derive(Debug, Clone, Serialize)]
struct ResyncView {
    at: DateTime<Utc>,
    reason: String,
    entities: Vec<&'static str>,
    checked: u64,
    refreshed: u64,
    removed: u64,
    elapsed_ms: u64,
}

impl FeedView {
    fn new(status: FeedStatus, now: DateTime<Utc>) -> Self {
        let utc = |t: std::time::SystemTime| DateTime::<Utc>::from(t);
        Self {
            lag_seconds: status.lag(now.into()).map(|lag| lag.as_secs_f64()),
            backlog: status.backlog.as_gauge(),
            backlog_text: status.backlog.to_string(),
            position: status.position,
            last_source_time: status.last_source_time.map(utc),
            last_applied_at: status.last_applied_at.map(utc),
            current_as_of: status.current_as_of.map(utc),
            last_batch: status.last_batch,
            totals: status.totals,
            failing: status.failing,
            last_error: status.last_error.map(|e| FailureView {
                at: utc(e.at),
                message: e.message,
            }),
            last_resync: status.last_resync.map(|r| ResyncView {
                at: utc(r.at),
                reason: r.reason,
                entities: r.entities,
                checked: r.checked,
                refreshed: r.refreshed,
                removed: r.removed,
                elapsed_ms: u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
            }),
            held_elsewhere: status.held_elsewhere,
            updated_at: utc(status.updated_at),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize)]
struct EntityTotals {
    #[serde(flatten)]
    stats: EntityStats,
    hit_rate_percent: Option<f64>,
}

fn overview(state: &DashboardState) -> Overview {
    let counters = state.cache.stats();
    let entities = state
        .cache
        .entities()
        .iter()
        .map(|handle| {
            let stats = counters.entity(handle.schema().entity);
            (
                handle.schema().entity,
                EntityTotals {
                    stats,
                    hit_rate_percent: sampler::percent(stats.hits, stats.misses),
                },
            )
        })
        .collect();
    let view = state.sampler.view();
    let now = Utc::now();
    let feeds = state.cache.feeds();
    // Webhook deliveries and feed events together, newest first, as many as the log keeps.
    let mut deliveries = state.deliveries.recent();
    deliveries.extend(feeds.recent().iter().map(DeliveryEvent::from_feed));
    deliveries.sort_by_key(|d| std::cmp::Reverse(d.at));
    deliveries.truncate(state.deliveries.capacity());
    Overview {
        generated_at: now,
        sample_every_seconds: state.sample_every.as_secs_f64(),
        window_seconds: state.window.as_secs_f64(),
        store: view.store,
        entities,
        samples: view.samples,
        computed: state.cache.computed_stats(),
        response_cache: view.responses,
        latency_known: view.latency_known,
        deliveries,
        feeds: feeds
            .all()
            .into_iter()
            .map(|status| (status.name.clone(), FeedView::new(status, now)))
            .collect(),
    }
}

// ------------------------------------------------------------------ responses

/// The headers of every dashboard page.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    response
}

/// `Referrer-Policy: same-origin` rather than `no-referrer`: under `no-referrer` browsers send
/// `Origin: null` with the page's own forms, which the cross-site check must refuse.
fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn see_other(location: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    secure_headers(response.headers_mut());
    response
}

/// A refused request: a short page saying why, with a way back to the sign-in form.
fn refused(status: StatusCode, message: &str, path: &str, reason: &str) -> Response {
    tracing::warn!(status = status.as_u16(), path, reason, "dashboard_refused");
    html(status, page::refusal(status, message))
}

/// The signed-in session of a request, if any.
fn signed_in(state: &DashboardState, headers: &HeaderMap) -> Option<(String, Session)> {
    let id = session::session_id(headers)?;
    let session = state.sessions.get(id, Instant::now())?;
    Some((id.to_owned(), session))
}

/// Why a state change was refused.
#[derive(Debug, Clone, Copy)]
struct Refusal {
    status: StatusCode,
    message: &'static str,
    reason: &'static str,
}

impl Refusal {
    fn respond(self, path: &str) -> Response {
        refused(self.status, self.message, path, self.reason)
    }
}

/// Checks a state-changing request: the same origin, a live session, the session's CSRF
/// token. Answers the session id and the session.
fn check_change(state: &DashboardState, headers: &HeaderMap, csrf: Option<&str>) -> Result<(String, Session), Refusal> {
    let cross_site = |why: session::CrossSite| Refusal {
        status: StatusCode::FORBIDDEN,
        message: why.message(),
        reason: why.label(),
    };
    session::check_origin(headers).map_err(cross_site)?;
    let (id, session) = signed_in(state, headers).ok_or(Refusal {
        status: StatusCode::UNAUTHORIZED,
        message: "refused: sign in first (there is no session, or it expired)",
        reason: "no_session",
    })?;
    session::check_csrf(&session, csrf).map_err(cross_site)?;
    Ok((id, session))
}

// ------------------------------------------------------------------ handlers

/// The query of `GET /admin/`.
#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    entity: Option<String>,
    id: Option<String>,
    flush: Option<String>,
}

/// A lookup's outcome, for the page.
#[derive(Debug)]
enum LookupResult {
    Found {
        entity: &'static str,
        id: RecordId,
        held: Held,
    },
    /// Bad input (`400`) or a failing store (`503`).
    Invalid {
        entity: String,
        id: String,
        message: String,
        status: StatusCode,
    },
}

/// A dry run's outcome, for the page.
#[derive(Debug)]
enum DryRunResult {
    Counted(DryRun),
    /// Bad input (`400`) or a failing store (`503`).
    Invalid {
        pattern: String,
        message: String,
        status: StatusCode,
    },
}

async fn page(
    State(state): State<Arc<DashboardState>>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    start_sampler(&state);
    let Some((id, session)) = signed_in(&state, &headers) else {
        let mut response = html(StatusCode::OK, page::sign_in(None));
        if session::session_id(&headers).is_some() {
            response
                .headers_mut()
                .insert(header::SET_COOKIE, session::removal_cookie());
        }
        return response;
    };
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let mut status = StatusCode::OK;
    let lookup = match (query.entity, query.id) {
        (Some(entity), Some(record)) if !record.trim().is_empty() => {
            let result = lookup(&state.cache, &entity, record.trim()).await;
            if let LookupResult::Invalid { status: refused, .. } = &result {
                status = *refused;
            }
            Some(result)
        }
        _ => None,
    };
    let dry_run = match query.flush {
        Some(pattern) => {
            let pattern = pattern.trim().to_owned();
            let result = match validate_pattern(&pattern) {
                Err(message) => DryRunResult::Invalid {
                    pattern,
                    message,
                    status: StatusCode::BAD_REQUEST,
                },
                Ok(()) => match inspect::dry_run(&state.cache, &pattern).await {
                    Ok(run) => {
                        state
                            .sessions
                            .update(&id, Instant::now(), |s| s.pending_flush = Some(pattern.clone()));
                        DryRunResult::Counted(run)
                    }
                    Err(err) => DryRunResult::Invalid {
                        pattern,
                        message: err.to_string(),
                        status: crate::error::ApiError::from_store(&err).status(),
                    },
                },
            };
            if let DryRunResult::Invalid { status: refused, .. } = &result {
                status = *refused;
            }
            Some(result)
        }
        None => None,
    };
    let notice = state.sessions.take_notice(&id, Instant::now());
    let entities: Vec<&'static str> = state.cache.entities().iter().map(|h| h.schema().entity).collect();
    let body = page::dashboard(&page::PageContext {
        overview: &overview(&state),
        csrf: &session.csrf,
        notice: notice.as_deref(),
        entities: &entities,
        lookup: lookup.as_ref(),
        dry_run: dry_run.as_ref(),
    });
    html(status, body)
}

async fn lookup(cache: &Cache, entity: &str, record: &str) -> LookupResult {
    let invalid = |message: String, status: StatusCode| LookupResult::Invalid {
        entity: entity.to_owned(),
        id: record.to_owned(),
        message,
        status,
    };
    let Some(handle) = cache.entities().get(entity) else {
        return invalid(
            format!("no entity is registered as {entity:?}"),
            StatusCode::BAD_REQUEST,
        );
    };
    let id = match RecordId::new(record) {
        Ok(id) => id,
        Err(err) => return invalid(err.to_string(), StatusCode::BAD_REQUEST),
    };
    match inspect::inspect(cache, handle.schema(), &id).await {
        Ok(held) => LookupResult::Found {
            entity: handle.schema().entity,
            id,
            held,
        },
        Err(err) => invalid(
            format!("the store did not answer: {err}"),
            crate::error::ApiError::from_store(&err).status(),
        ),
    }
}

fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("the pattern is longer than {MAX_PATTERN_LEN} bytes"));
    }
    keys::validate_pattern(pattern).map_err(|err| match err {
        StoreError::Invalid(reason) => reason,
        other => other.to_string(),
    })
}

#[derive(Debug, Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
}

async fn sign_in(
    State(state): State<Arc<DashboardState>>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<SignInForm>, FormRejection>,
) -> Response {
    // A sign-in sent by another site would sign the browser in to the attacker's choice.
    if let Err(why) = session::check_origin(&headers) {
        return refused(StatusCode::FORBIDDEN, why.message(), "/admin/session", why.label());
    }
    let candidate = form.map(|Form(f)| f.token).unwrap_or_default();
    if !state.token.matches(candidate.trim().as_bytes()) {
        tracing::warn!("dashboard_sign_in_refused");
        let message = if candidate.trim().is_empty() {
            "Enter the admin token."
        } else {
            "That is not the admin token."
        };
        return html(StatusCode::FORBIDDEN, page::sign_in(Some(message)));
    }
    let id = match state.sessions.open(Instant::now()) {
        Ok(id) => id,
        Err(err) => {
            tracing::error!(error = %err, "dashboard_session_failed");
            return html(
                StatusCode::INTERNAL_SERVER_ERROR,
                page::sign_in(Some("No session could be opened.")),
            );
        }
    };
    let secure = session::is_https(&headers, uri.scheme_str());
    let Some(cookie) = session::session_cookie(&id, state.sessions.ttl(), secure) else {
        return html(
            StatusCode::INTERNAL_SERVER_ERROR,
            page::sign_in(Some("No session could be opened.")),
        );
    };
    tracing::info!("dashboard_sign_in");
    let mut response = see_other("/admin/");
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

#[derive(Debug, Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn sign_out(
    State(state): State<Arc<DashboardState>>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.as_ref().ok().and_then(|Form(f)| f.csrf.as_deref());
    let (id, _) = match check_change(&state, &headers, csrf) {
        Ok(found) => found,
        Err(refusal) => return refusal.respond("/admin/session/end"),
    };
    state.sessions.close(&id);
    tracing::info!("dashboard_sign_out");
    let mut response = see_other("/admin/");
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::removal_cookie());
    response
}

async fn live(State(state): State<Arc<DashboardState>>, headers: HeaderMap) -> Response {
    start_sampler(&state);
    if signed_in(&state, &headers).is_none() {
        return refused(
            StatusCode::UNAUTHORIZED,
            "refused: sign in first",
            "/admin/live",
            "no_session",
        );
    }
    html(StatusCode::OK, page::live(&overview(&state)))
}

async fn overview_json(State(state): State<Arc<DashboardState>>, headers: HeaderMap) -> Response {
    start_sampler(&state);
    if signed_in(&state, &headers).is_none() {
        return refused(
            StatusCode::UNAUTHORIZED,
            "refused: sign in first",
            "/admin/overview.json",
            "no_session",
        );
    }
    let mut response = Json(overview(&state)).into_response();
    secure_headers(response.headers_mut());
    response
}

#[derive(Debug, Deserialize)]
struct InvalidateForm {
    csrf: Option<String>,
    #[serde(default)]
    entity: String,
    #[serde(default)]
    id: String,
}

async fn invalidate(
    State(state): State<Arc<DashboardState>>,
    headers: HeaderMap,
    form: Result<Form<InvalidateForm>, FormRejection>,
) -> Response {
    let path = "/admin/records/invalidate";
    let Ok(Form(form)) = form else {
        return refused(StatusCode::BAD_REQUEST, "the form could not be read", path, "bad_form");
    };
    let (session_id, _) = match check_change(&state, &headers, form.csrf.as_deref()) {
        Ok(found) => found,
        Err(refusal) => return refusal.respond(path),
    };
    let Some(handle) = state.cache.entities().get(&form.entity) else {
        return refused(StatusCode::BAD_REQUEST, "no such entity", path, "unknown_entity");
    };
    let id = match RecordId::new(form.id.trim()) {
        Ok(id) => id,
        Err(err) => return refused(StatusCode::BAD_REQUEST, &err.to_string(), path, "invalid_id"),
    };
    let entity = handle.schema().entity;
    let notice = match handle.remove(&state.cache, &id, false).await {
        RemoveOutcome::Removed => {
            tracing::info!(entity, id = %id, "dashboard_invalidate");
            format!("Invalidated {entity} {id}: the next read goes to the origin.")
        }
        RemoveOutcome::Disabled => "The cache is disabled: nothing was touched.".to_owned(),
        _ => format!("The store failed: {entity} {id} may still be cached until its TTL runs out."),
    };
    state
        .sessions
        .update(&session_id, Instant::now(), |s| s.notice = Some(notice));
    see_other(&format!(
        "/admin/?entity={}&id={}#lookup",
        page::encode_query(entity),
        page::encode_query(id.as_str())
    ))
}

#[derive(Debug, Deserialize)]
struct FlushForm {
    csrf: Option<String>,
    #[serde(default)]
    pattern: String,
}

async fn flush(
    State(state): State<Arc<DashboardState>>,
    headers: HeaderMap,
    form: Result<Form<FlushForm>, FormRejection>,
) -> Response {
    let path = "/admin/flush";
    let Ok(Form(form)) = form else {
        return refused(StatusCode::BAD_REQUEST, "the form could not be read", path, "bad_form");
    };
    let (session_id, session) = match check_change(&state, &headers, form.csrf.as_deref()) {
        Ok(found) => found,
        Err(refusal) => return refusal.respond(path),
    };
    let pattern = form.pattern.trim();
    if session.pending_flush.as_deref() != Some(pattern) {
        return refused(
            StatusCode::CONFLICT,
            "refused: run the dry run of this pattern first, then confirm it",
            path,
            "no_dry_run",
        );
    }
    if let Err(message) = validate_pattern(pattern) {
        return refused(StatusCode::BAD_REQUEST, &message, path, "invalid_pattern");
    }
    let notice = match state.cache.store().flush(Some(pattern)).await {
        Ok(removed) => {
            tracing::info!(pattern, removed, "dashboard_flush");
            format!(
                "Flushed {pattern}: {removed} {} removed.",
                if removed == 1 { "key" } else { "keys" }
            )
        }
        Err(err) => {
            tracing::warn!(pattern, error = %err, "dashboard_flush_failed");
            format!("The flush of {pattern} failed: {err}")
        }
    };
    state.sessions.update(&session_id, Instant::now(), |s| {
        s.pending_flush = None;
        s.notice = Some(notice);
    });
    see_other("/admin/#flush")
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("assets/dashboard.css"))
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("assets/dashboard.js"))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
