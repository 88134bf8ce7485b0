//! What every HTTP test needs: models, a cache over the in-memory origin and a
//! [`FailingStore`] (taken down, failing one method or holding a write on demand), a gate to
//! hold a handler at, and a real server on a free loopback port.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use cache_core::{
    Cache, Cacheable, Link, MemoryStore, RecordId,
    store::Store,
    testing::{FailingStore, MemoryOrigin},
};
use cache_http::{CacheTelemetryLayer, ResponseCacheLayer};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub const SECRET: &str = "test-secret-0123456789-abcdefghijklmnop";
pub const TOKEN: &str = "admin-token-0123456789-abcdefghijklmnop";

/// A hackathon. No version field: webhooks order its deliveries by timestamp alone.
#[derive(Cacheable, Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[cache(entity = "events", source_table = "Events")]
pub struct Event {
    #[cache(id)]
    #[schemars(with = "String")]
    pub id: RecordId,
    pub name: String,
}

/// A project competing in one event (column `event_id`, indexed: `Project::by_event`).
#[derive(Cacheable, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cache(entity = "projects", source_table = "Projects")]
pub struct Project {
    #[cache(id)]
    pub id: RecordId,
    pub name: String,
    pub event: Link<Event>,
    #[sortable]
    pub points: i64,
    #[cache(version)]
    pub version: i64,
}

pub fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("a valid id")
}

pub fn project(pid: &str, event: &str, points: i64, version: i64) -> Project {
    Project {
        id: id(pid),
        name: format!("Project {pid}"),
        event: Link::new(id(event)),
        points,
        version,
    }
}

/// Where a held handler waits: the test learns that it arrived, then lets it go on.
#[derive(Debug, Default)]
pub struct Gate {
    arrived: Notify,
    release: Notify,
}

impl Gate {
    /// Waits until the held call reached the gate.
    pub async fn arrived(&self) {
        self.arrived.notified().await;
    }

    /// Lets the held call go on.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// Called by the held code: signals its arrival and waits to be released. `Notify` keeps
    /// one permit, so neither side can miss the other.
    pub async fn pass(&self) {
        self.arrived.notify_one();
        self.release.notified().await;
    }
}

/// A cache over a [`FailingStore`] and a [`MemoryOrigin`] holding two events and three
/// projects: P1 (10 points) and P2 (5) in E1, P3 (7) in E2.
pub struct Harness {
    pub cache: Cache,
    pub origin: MemoryOrigin,
    pub store: Arc<FailingStore>,
}

impl Harness {
    pub fn new() -> Self {
        let origin = MemoryOrigin::new();
        for (eid, name) in [("recE1", "Hack One"), ("recE2", "Hack Two")] {
            origin
                .put(&Event {
                    id: id(eid),
                    name: name.into(),
                })
                .unwrap();
        }
        origin.put(&project("recP1", "recE1", 10, 1)).unwrap();
        origin.put(&project("recP2", "recE1", 5, 1)).unwrap();
        origin.put(&project("recP3", "recE2", 7, 1)).unwrap();
        let store = Arc::new(FailingStore::new(MemoryStore::new()));
        let cache = cache_on(&store, &origin);
        Self { cache, origin, store }
    }

    /// Another application instance: its own cache (in-process state) on the same store and
    /// source.
    pub fn instance(&self) -> Cache {
        cache_on(&self.store, &self.origin)
    }

    /// The demo application: `GET /events/{id}` (no response cache) and
    /// `GET /events/{id}/projects` (response-cached, 60 s), under the telemetry layer.
    pub fn app(&self) -> Router {
        self.app_with(ResponseCacheLayer::new(&self.cache).ttl(Duration::from_secs(60)))
    }

    pub fn app_with(&self, layer: ResponseCacheLayer) -> Router {
        Router::new()
            .route("/events/{id}", get(get_event))
            .route("/events/{id}/projects", get(list_projects).layer(layer))
            .with_state(self.cache.clone())
            .layer(CacheTelemetryLayer::new())
    }
}

fn cache_on(store: &Arc<FailingStore>, origin: &MemoryOrigin) -> Cache {
    Cache::builder(Arc::clone(store) as Arc<dyn Store>, origin.clone())
        .ttl_jitter(0.0)
        .register::<Event>()
        .register::<Project>()
        .build()
        .unwrap()
}

async fn get_event(State(cache): State<Cache>, Path(eid): Path<String>) -> Response {
    let Ok(eid) = RecordId::new(eid) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match cache.get::<Event>(&eid).await {
        Ok(Some(event)) => Json(event).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

async fn list_projects(State(cache): State<Cache>, Path(eid): Path<String>) -> Response {
    let Ok(eid) = RecordId::new(eid) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match cache.query(Project::by_event(&eid).desc(ProjectSort::Points)).await {
        Ok(projects) => Json(projects).into_response(),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()).into_response(),
    }
}

/// Serves `router` on a free loopback port; answers its base URL. The listener is bound
/// before this returns, so requests can be sent at once.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

pub fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}
