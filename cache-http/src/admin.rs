//! The admin router: statistics, flushing and the schema, behind a bearer token.
//!
//! | route | what |
//! |---|---|
//! | `GET /admin/cache/stats` | store gauges and the application's counters per entity; `?exact=true` counts the store's keys one by one instead of estimating |
//! | `DELETE /admin/cache?pattern=projects:*` | removes the namespace's keys matching a glob |
//! | `DELETE /admin/cache` | removes every key of the namespace |
//! | `POST /admin/cache/purge` | `{"tags": [...]}`: removes the values (responses) tagged so |
//! | `GET /admin/cache/schema` | the registered entities, their fields, indexes and JSON Schemas |
//! | `GET /admin/` | the operator's [dashboard](crate::dashboard), when [`AdminConfig::dashboard`] is set |
//!
//! Every route needs `Authorization: Bearer <token>`: `401` without it, `403` with a wrong
//! one (compared in constant time). A failing store answers `503`; a pattern that no store
//! accepts ([`validate_pattern`](cache_core::keys::validate_pattern): empty, with
//! whitespace, an unbalanced `[` `]`, a trailing `\`) or longer than [`MAX_PATTERN_LEN`]
//! answers `400`.
//!
//! ```
//! use axum::Router;
//! use cache_core::Cache;
//! use cache_http::admin::{self, AdminConfig};
//!
//! fn app(cache: Cache, token: String) -> Result<Router, cache_http::ConfigError> {
//!     Ok(Router::new().merge(admin::routes(AdminConfig::new(cache, token))?))
//! }
//! ```

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Query, Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use cache_core::{
    Cache,
    compute::ComputedStats,
    keys,
    schema::EntitySchema,
    stats::EntityStats,
    store::{StoreError, StoreStats},
};
use http::{HeaderMap, StatusCode, header};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ConfigError, Secret, error::ApiError};

/// The longest flush pattern accepted, in bytes.
pub const MAX_PATTERN_LEN: usize = 512;

/// The admin router's configuration. The token is checked when the router is built:
/// [`routes`] refuses an empty or short one.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    cache: Cache,
    token: String,
    json_schemas: BTreeMap<&'static str, Value>,
    dashboard: Option<crate::dashboard::Dashboard>,
}

impl AdminConfig {
    /// Administers `cache`, for requests bearing `token` (generate one with
    /// [`generate_secret`](crate::generate_secret)).
    pub fn new(cache: Cache, token: impl Into<String>) -> Self {
        Self {
            cache,
            token: token.into(),
            json_schemas: BTreeMap::new(),
            dashboard: None,
        }
    }

    /// Serves the operator's [dashboard](crate::dashboard) at `GET /admin/`, signed in to with
    /// the same token.
    pub fn dashboard(mut self, dashboard: crate::dashboard::Dashboard) -> Self {
        self.dashboard = Some(dashboard);
        self
    }

    /// Publishes the JSON Schema of model `T` (which derives `schemars::JsonSchema`) at
    /// `GET /admin/cache/schema`, next to its entity.
    pub fn json_schema_of<T: cache_core::Cacheable + JsonSchema>(mut self) -> Self {
        self.json_schemas
            .insert(T::schema().entity, schemars::schema_for!(T).to_value());
        self
    }
}

struct AdminState {
    cache: Cache,
    token: Secret,
    json_schemas: BTreeMap<&'static str, Value>,
}

/// The admin router: see the [module docs](self). Fails when the token is missing or shorter
/// than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN).
pub fn routes<S>(config: AdminConfig) -> Result<Router<S>, ConfigError>
where
    S: Clone + Send + Sync + 'static,
{
    let state = Arc::new(AdminState {
        token: Secret::new("admin token", &config.token)?,
        cache: config.cache,
        json_schemas: config.json_schemas,
    });
    let dashboard = config
        .dashboard
        .map(|dashboard| crate::dashboard::routes(dashboard, state.token.clone()));
    let api = Router::new()
        .route("/admin/cache/stats", get(stats))
        .route("/admin/cache", delete(flush))
        .route("/admin/cache/purge", post(purge))
        .route("/admin/cache/schema", get(schema))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), require_token))
        .with_state(state);
    // The dashboard signs in with a session cookie, not the bearer token.
    Ok(match dashboard {
        Some(dashboard) => api.merge(dashboard),
        None => api,
    })
}

async fn require_token(State(state): State<Arc<AdminState>>, request: Request, next: Next) -> Response {
    match authorize(&state.token, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(err) => {
            tracing::warn!(status = err.status().as_u16(), path = %request.uri().path(), "admin_rejected");
            err.into_response()
        }
    }
}

/// `401` without a bearer token, `403` with a wrong one.
fn authorize(token: &Secret, headers: &HeaderMap) -> Result<(), ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match bearer {
        None | Some("") => {
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "a bearer token is required").challenge("Bearer"))
        }
        Some(candidate) if token.matches(candidate.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "the bearer token is not valid")),
    }
}

/// `GET /admin/cache/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsReport {
    /// The store's counters and gauges (`backend`, `total_keys`, `memory_used_bytes`,
    /// `memory_used_human`, `keyspace_hits`, `keyspace_misses`, `connected_clients`,
    /// `evicted_keys`), flattened into the report.
    #[serde(flatten)]
    pub store: StoreStats,
    /// `keyspace_hits / (keyspace_hits + keyspace_misses)` in percent, when the store knows
    /// both and has seen a lookup.
    pub hit_rate_percent: Option<f64>,
    /// The application's own counters, per entity.
    pub entities: BTreeMap<&'static str, EntityReport>,
    /// The same, added up.
    pub totals: EntityReport,
    /// Computed values' counters, per name (`Computed::new(name)` / `ComputeOptions::name`).
    pub computed: BTreeMap<&'static str, ComputedStats>,
}

/// One entity's counters in [`StatsReport`].
#[derive(Debug, Clone, Serialize)]
pub struct EntityReport {
    /// The counters (hits, misses, origin calls, tombstone hits, stale refusals, ...).
    #[serde(flatten)]
    pub stats: EntityStats,
    /// `hits / (hits + misses)` in percent, when there was a lookup.
    pub hit_rate_percent: Option<f64>,
}

impl EntityReport {
    fn new(stats: EntityStats) -> Self {
        Self {
            hit_rate_percent: rate(stats.hits, stats.misses),
            stats,
        }
    }
}

#[allow(clippy::cast_precision_loss)]
fn rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits.checked_add(misses)?;
    (total > 0).then(|| (hits as f64 * 10_000.0 / total as f64).round() / 100.0)
}

/// Builds the statistics report of `cache`: the store's figures and the cache's counters.
/// Cheap: the store may estimate its key count ([`StoreStats::total_keys_exact`]).
pub async fn stats_report(cache: &Cache) -> Result<StatsReport, cache_core::store::StoreError> {
    Ok(report_from(cache, cache.store().stats().await?))
}

/// [`stats_report`] with the store's keys counted one by one ([`Store::exact_stats`]: a scan
/// of the whole keyspace on Redis).
///
/// [`Store::exact_stats`]: cache_core::store::Store::exact_stats
pub async fn exact_stats_report(cache: &Cache) -> Result<StatsReport, cache_core::store::StoreError> {
    Ok(report_from(cache, cache.store().exact_stats().await?))
}

fn report_from(cache: &Cache, store: StoreStats) -> StatsReport {
    let counters = cache.stats();
    let mut entities: BTreeMap<&'static str, EntityReport> = cache
        .entities()
        .iter()
        .map(|h| (h.schema().entity, EntityReport::new(EntityStats::default())))
        .collect();
    for (entity, stats) in &counters.entities {
        entities.insert(entity, EntityReport::new(*stats));
    }
    let hit_rate_percent = match (store.keyspace_hits, store.keyspace_misses) {
        (Some(hits), Some(misses)) => rate(hits, misses),
        _ => None,
    };
    StatsReport {
        store,
        hit_rate_percent,
        totals: EntityReport::new(counters.total()),
        entities,
        computed: cache.computed_stats(),
    }
}

/// The query of `GET /admin/cache/stats`.
#[derive(Debug, Deserialize)]
struct StatsQuery {
    /// Count the store's keys one by one (slow on a large Redis) instead of estimating.
    #[serde(default)]
    exact: bool,
}

async fn stats(State(state): State<Arc<AdminState>>, Query(query): Query<StatsQuery>) -> Response {
    let report = if query.exact {
        exact_stats_report(&state.cache).await
    } else {
        stats_report(&state.cache).await
    };
    match report {
        Ok(report) => Json(report).into_response(),
        Err(err) => ApiError::from_store(&err).into_response(),
    }
}

/// The query of `DELETE /admin/cache`.
#[derive(Debug, Deserialize)]
struct FlushQuery {
    pattern: Option<String>,
}

/// Checks a flush pattern before the store sees it, with the rules every store applies
/// ([`keys::validate_pattern`]) and a length bound.
fn validate_pattern(pattern: &str) -> Result<(), ApiError> {
    let bad = |reason: &str| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("invalid pattern: {reason}")).with("pattern", pattern)
    };
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(bad("it is too long"));
    }
    keys::validate_pattern(pattern).map_err(|err| match err {
        StoreError::Invalid(reason) => bad(&reason),
        other => bad(&other.to_string()),
    })
}

async fn flush(State(state): State<Arc<AdminState>>, Query(query): Query<FlushQuery>) -> Response {
    let pattern = query.pattern.as_deref();
    if let Some(Err(err)) = pattern.map(validate_pattern) {
        return err.into_response();
    }
    match state.cache.store().flush(pattern).await {
        Ok(removed) => {
            tracing::info!(pattern = pattern.unwrap_or("*"), removed, "admin_flush");
            Json(serde_json::json!({ "removed": removed, "pattern": pattern })).into_response()
        }
        Err(err) => {
            tracing::warn!(pattern = pattern.unwrap_or("*"), error = %err, "admin_flush_failed");
            ApiError::from_store(&err).with("pattern", pattern).into_response()
        }
    }
}

/// The body of `POST /admin/cache/purge`.
#[derive(Debug, Deserialize)]
struct PurgeRequest {
    tags: Vec<String>,
}

async fn purge(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<PurgeRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let tags = match body {
        Ok(Json(request)) => request.tags,
        Err(rejection) => {
            return ApiError::new(rejection.status(), rejection.body_text()).into_response();
        }
    };
    if tags.is_empty() || tags.iter().any(String::is_empty) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "`tags` must be a non-empty list of non-empty tags",
        )
        .into_response();
    }
    match state.cache.store().purge_tags(&tags).await {
        Ok(removed) => {
            tracing::info!(tags = ?tags, removed, "admin_purge");
            Json(serde_json::json!({ "removed": removed, "tags": tags })).into_response()
        }
        Err(err) => ApiError::from_store(&err).into_response(),
    }
}

/// One entity in `GET /admin/cache/schema`.
#[derive(Debug, Serialize)]
struct EntityDescription {
    #[serde(flatten)]
    schema: &'static EntitySchema,
    indexed_fields: Vec<&'static str>,
    sortable_fields: Vec<&'static str>,
    json_schema: Option<Value>,
}

async fn schema(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let entities: Vec<EntityDescription> = state
        .cache
        .entities()
        .iter()
        .map(|handle| {
            let schema = handle.schema();
            EntityDescription {
                schema,
                indexed_fields: schema.indexed_fields().map(|f| f.name).collect(),
                sortable_fields: schema.sortable_fields().map(|f| f.name).collect(),
                json_schema: state.json_schemas.get(schema.entity).cloned(),
            }
        })
        .collect();
    Json(serde_json::json!({ "entities": entities }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_round_to_hundredths() {
        assert_eq!(rate(0, 0), None);
        assert_eq!(rate(1, 2), Some(33.33));
        assert_eq!(rate(5, 0), Some(100.0));
    }

    #[test]
    fn bearer_tokens() {
        let token = Secret::new("admin token", "0123456789abcdef0123456789").unwrap();
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, value.parse().unwrap());
            authorize(&token, &h).map_err(|e| e.status())
        };
        assert_eq!(
            authorize(&token, &HeaderMap::new()).map_err(|e| e.status()),
            Err(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(with("Basic abc"), Err(StatusCode::UNAUTHORIZED));
        assert_eq!(with("Bearer "), Err(StatusCode::UNAUTHORIZED));
        assert_eq!(with("Bearer wrong"), Err(StatusCode::FORBIDDEN));
        assert_eq!(with("bearer 0123456789abcdef0123456789"), Ok(()));
    }

    #[test]
    fn patterns() {
        assert!(validate_pattern("projects:*").is_ok());
        assert!(validate_pattern("").is_err());
        assert!(validate_pattern("a b").is_err());
        assert!(validate_pattern(&"x".repeat(MAX_PATTERN_LEN + 1)).is_err());
        // The rules every store applies.
        assert!(validate_pattern("projects:[ab").is_err());
        assert!(validate_pattern("projects:\\").is_err());
        assert!(validate_pattern("v:\\*").is_ok());
    }
}
