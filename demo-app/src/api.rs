//! The HTTP API: reads through the cache; writes in database transactions whose changes reach
//! the cache after their commit ([`crate::writes`]).
//!
//! Read routes answer the public views (an event without its attendees and join code, a
//! project without its join code). Writes return what the database committed, as the cache
//! now holds it.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, Query as QueryParams, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use cache_core::{Cache, CacheError, CacheView, Computed, Query, RecordId, origin::OriginError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    models::{Event, Project, ProjectSort, PublicEvent, PublicProject, User, Vote},
    origin::DemoOrigin,
    writes::{self, NewProject, ProjectChanges, WriteError},
};

/// The largest page of a list.
pub const MAX_PAGE: usize = 100;
/// The page size when `limit` is absent.
pub const DEFAULT_PAGE: usize = 20;

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The cache, in front of `origin`.
    pub cache: Cache,
    /// The database, for writes.
    pub origin: DemoOrigin,
}

/// The read routes: the ones whose responses can be cached whole.
pub fn read_routes() -> Router<AppState> {
    Router::new()
        .route("/events/{id}", get(event))
        .route("/events/by-slug/{slug}", get(event_by_slug))
        .route("/events/{id}/projects", get(leaderboard))
        .route("/events/{id}/stats", get(stats))
        .route("/projects/{id}", get(project))
        .route("/users/{id}", get(user))
        .route("/users/by-email/{email}", get(user_by_email))
        .route("/users/{id}/projects", get(user_projects))
}

/// The write routes and the index.
pub fn write_routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/projects", post(create_project))
        .route(
            "/projects/{id}",
            axum::routing::patch(update_project).delete(delete_project),
        )
        .route("/projects/{id}/votes", post(cast_vote))
}

/// An error answered as `{"error": "…"}` with its status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn not_found(what: &str, id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no {what} `{id}`"))
    }

    fn from_origin(err: &OriginError) -> Self {
        match err {
            OriginError::RateLimited { retry_after_ms } => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                message: err.to_string(),
                retry_after: Some(retry_after_ms.div_ceil(1000)),
            },
            OriginError::Unsupported(_) => Self::new(StatusCode::BAD_REQUEST, err.to_string()),
            OriginError::Failed(_) => {
                tracing::error!(error = %err, "demo_origin_failed");
                Self::new(StatusCode::BAD_GATEWAY, "the source of truth failed; try again")
            }
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(err: CacheError) -> Self {
        Self::from_cache(&err)
    }
}

/// A computed value's error, shared by every request that waited for the same computation.
impl From<Arc<CacheError>> for ApiError {
    fn from(err: Arc<CacheError>) -> Self {
        Self::from_cache(&err)
    }
}

impl ApiError {
    fn from_cache(err: &CacheError) -> Self {
        match err {
            CacheError::Origin(origin) => Self::from_origin(origin),
            CacheError::InvalidQuery { .. } => Self::new(StatusCode::BAD_REQUEST, err.to_string()),
            _ => {
                tracing::error!(error = %err, "demo_cache_failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
            }
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(err: WriteError) -> Self {
        match &err {
            WriteError::Cache(cache) => Self::from_cache(cache),
            WriteError::Origin(origin) => Self::from_origin(origin),
            _ => {
                tracing::error!(error = %err, "demo_write_failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the write failed")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn record_id(what: &str, id: &str) -> ApiResult<RecordId> {
    RecordId::new(id).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad {what} id: {e}")))
}

/// `?offset=&limit=`.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Page {
    /// Results to skip (default 0).
    #[serde(default)]
    pub offset: usize,
    /// Results to return (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]).
    pub limit: Option<usize>,
}

impl Page {
    fn limit(&self) -> ApiResult<usize> {
        match self.limit.unwrap_or(DEFAULT_PAGE) {
            0 => Err(ApiError::new(StatusCode::BAD_REQUEST, "limit must be at least 1")),
            l if l > MAX_PAGE => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("limit must be at most {MAX_PAGE}"),
            )),
            l => Ok(l),
        }
    }
}

/// A page of a list.
#[derive(Debug, Serialize)]
pub struct Paged<T> {
    /// Results skipped.
    pub offset: usize,
    /// The page size asked for.
    pub limit: usize,
    /// The page.
    pub items: Vec<T>,
}

async fn index() -> Json<serde_json::Value> {
    Json(json!({
        "name": "demo-app",
        "about": "A hackathon-judging API reading through model-cache",
        "routes": [
            "GET /events/{id}",
            "GET /events/by-slug/{slug}",
            "GET /events/{id}/projects?offset=&limit=",
            "GET /events/{id}/stats",
            "GET /projects/{id}",
            "GET /users/{id}",
            "GET /users/by-email/{email}",
            "GET /users/{id}/projects",
            "POST /projects",
            "PATCH /projects/{id}",
            "DELETE /projects/{id}",
            "POST /projects/{id}/votes",
            "POST /webhooks/airtable",
            "POST /airtable/notifications (SOURCE=airtable, with a webhook set up)",
            "GET /admin/cache/stats",
            "GET /metrics",
        ],
    }))
}

async fn event(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<PublicEvent>> {
    let rid = record_id("event", &id)?;
    match app.cache.get_as::<Event, PublicEvent>(&rid).await? {
        Some(event) => Ok(Json(event)),
        None => Err(ApiError::not_found("event", &id)),
    }
}

async fn event_by_slug(State(app): State<AppState>, Path(slug): Path<String>) -> ApiResult<Json<PublicEvent>> {
    let found = app
        .cache
        .query_as::<Event, PublicEvent>(Event::by_slug(&slug).limit(1))
        .await?;
    found
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("event with slug", &slug))
}

/// The leaderboard: the event's projects, most points first.
async fn leaderboard(
    State(app): State<AppState>,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<Page>,
) -> ApiResult<Json<Paged<PublicProject>>> {
    let rid = record_id("event", &id)?;
    let limit = page.limit()?;
    if app.cache.get::<Event>(&rid).await?.is_none() {
        return Err(ApiError::not_found("event", &id));
    }
    let query = Project::by_event(&rid)
        .desc(ProjectSort::Points)
        .offset(page.offset)
        .limit(limit);
    let items = app.cache.query_as::<Project, PublicProject>(query).await?;
    Ok(Json(Paged {
        offset: page.offset,
        limit,
        items,
    }))
}

/// What `GET /events/{id}/stats` answers: an aggregate over the event's projects and votes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventStats {
    /// The event.
    pub event: RecordId,
    /// Projects competing.
    pub projects: usize,
    /// Votes cast.
    pub votes: usize,
    /// Points given, all projects together.
    pub points: i64,
    /// The leading project, if any.
    pub top_project: Option<TopProject>,
}

/// The leading project of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopProject {
    /// `rec…`.
    pub id: RecordId,
    /// Its name.
    pub name: String,
    /// Its points.
    pub points: i64,
}

/// An event's statistics as a computed value: the event, its projects and its votes are read
/// through the cache, so a vote, a project joining, leaving or changing, or a change to the
/// event removes it; otherwise it lives 5 minutes, is refreshed early when read often, and is
/// served up to an hour stale while the database fails.
pub static EVENT_STATS: Computed<RecordId, Option<EventStats>> = Computed::new("event_stats")
    .ttl(Duration::from_secs(300))
    .serve_stale(Duration::from_secs(3600))
    .version(1);

/// The statistics of `event` (`None` when there is no such event), cached in [`EVENT_STATS`].
pub async fn event_stats(cache: &Cache, event: &RecordId) -> Result<Option<EventStats>, Arc<CacheError>> {
    EVENT_STATS
        .get(cache, event, |event| async move {
            if cache.get::<Event>(&event).await?.is_none() {
                return Ok(None);
            }
            let projects = cache.query(Project::by_event(&event).desc(ProjectSort::Points)).await?;
            let votes = cache.query(Vote::by_event(&event)).await?;
            Ok(Some(EventStats {
                projects: projects.len(),
                votes: votes.len(),
                points: projects.iter().map(|p| p.points).sum(),
                top_project: projects.first().map(|p| TopProject {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    points: p.points,
                }),
                event,
            }))
        })
        .await
}

async fn stats(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<EventStats>> {
    let rid = record_id("event", &id)?;
    match event_stats(&app.cache, &rid).await? {
        Some(stats) => Ok(Json(stats)),
        None => Err(ApiError::not_found("event", &id)),
    }
}

async fn project(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<PublicProject>> {
    let rid = record_id("project", &id)?;
    match app.cache.get_as::<Project, PublicProject>(&rid).await? {
        Some(project) => Ok(Json(project)),
        None => Err(ApiError::not_found("project", &id)),
    }
}

async fn user(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<User>> {
    let rid = record_id("user", &id)?;
    match app.cache.get::<User>(&rid).await? {
        Some(user) => Ok(Json(user)),
        None => Err(ApiError::not_found("user", &id)),
    }
}

async fn user_by_email(State(app): State<AppState>, Path(email): Path<String>) -> ApiResult<Json<User>> {
    let found = app.cache.query(User::by_email(&email).limit(1)).await?;
    found
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found("user with email", &email))
}

/// The projects a user owns, newest first.
async fn user_projects(
    State(app): State<AppState>,
    Path(id): Path<String>,
    QueryParams(page): QueryParams<Page>,
) -> ApiResult<Json<Paged<PublicProject>>> {
    let rid = record_id("user", &id)?;
    let limit = page.limit()?;
    if app.cache.get::<User>(&rid).await?.is_none() {
        return Err(ApiError::not_found("user", &id));
    }
    let query: Query<Project> = Project::by_owner(&rid)
        .desc(ProjectSort::CreatedAt)
        .offset(page.offset)
        .limit(limit);
    let items = app.cache.query_as::<Project, PublicProject>(query).await?;
    Ok(Json(Paged {
        offset: page.offset,
        limit,
        items,
    }))
}

/// Checks, through the cache, that the users exist.
async fn require_users(app: &AppState, ids: &[RecordId]) -> ApiResult<()> {
    let found = app.cache.get_many::<User>(ids).await?;
    match ids.iter().find(|id| !found.iter().any(|u| &u.id == *id)) {
        Some(missing) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("no user `{missing}`"),
        )),
        None => Ok(()),
    }
}

async fn create_project(
    State(app): State<AppState>,
    Json(new): Json<NewProject>,
) -> ApiResult<(StatusCode, Json<PublicProject>)> {
    if new.name.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a project needs a name",
        ));
    }
    if app.cache.get::<Event>(&new.event).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("no event `{}`", new.event),
        ));
    }
    let members: Vec<RecordId> = std::iter::once(&new.owner).chain(&new.collaborators).cloned().collect();
    require_users(&app, &members).await?;
    let project = writes::create_project(&app.origin, &app.cache, &new).await?;
    tracing::info!(id = %project.id, event = %project.event.id(), "demo_project_created");
    Ok((StatusCode::CREATED, Json(PublicProject::from_model(project))))
}

async fn update_project(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(changes): Json<ProjectChanges>,
) -> ApiResult<Json<PublicProject>> {
    let rid = record_id("project", &id)?;
    if changes.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a project needs a name",
        ));
    }
    if let Some(collaborators) = &changes.collaborators {
        require_users(&app, collaborators).await?;
    }
    let Some(project) = writes::update_project(&app.origin, &app.cache, &rid, &changes).await? else {
        return Err(ApiError::not_found("project", &id));
    };
    Ok(Json(PublicProject::from_model(project)))
}

async fn delete_project(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    let rid = record_id("project", &id)?;
    if writes::delete_project(&app.origin, &app.cache, &rid).await? {
        tracing::info!(%id, "demo_project_deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("project", &id))
    }
}

/// `POST /projects/{id}/votes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoteRequest {
    /// Who votes.
    pub voter: RecordId,
    /// Points given, 1 to 10 (default 1).
    #[serde(default = "one")]
    pub points: i64,
}

fn one() -> i64 {
    1
}

/// What a vote answers: the vote and the project's new standing.
#[derive(Debug, Serialize)]
pub struct VoteResponse {
    /// The vote recorded.
    pub vote: Vote,
    /// The project with its new points.
    pub project: PublicProject,
}

async fn cast_vote(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Json(request): Json<VoteRequest>,
) -> ApiResult<(StatusCode, Json<VoteResponse>)> {
    let rid = record_id("project", &id)?;
    if !(1..=10).contains(&request.points) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "points must be from 1 to 10",
        ));
    }
    require_users(&app, std::slice::from_ref(&request.voter)).await?;
    let Some((vote, project)) =
        writes::cast_vote(&app.origin, &app.cache, &rid, &request.voter, request.points).await?
    else {
        return Err(ApiError::not_found("project", &id));
    };
    Ok((
        StatusCode::CREATED,
        Json(VoteResponse {
            vote,
            project: PublicProject::from_model(project),
        }),
    ))
}
