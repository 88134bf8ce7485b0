//! Models and a harness shared by the cache tests: a hackathon's projects, events and users,
//! a memory store on a manual clock behind a store that can be taken down, and a memory
//! origin.
#![allow(dead_code)]

use std::time::Duration;

use cache_core::{
    Cache, CacheBuilder, CacheView, Cacheable, IndexValue, Link, Links, MemoryStore, RecordId,
    clock::ManualClock,
    testing::{FailingStore, Hold, MemoryOrigin},
};
use serde::{Deserialize, Serialize};

#[derive(IndexValue, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    Draft,
    Submitted,
    Judged,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "projects", source_table = "Projects", ttl = "8h", tombstone_ttl = "1h")]
pub(crate) struct Project {
    #[cache(id)]
    pub(crate) id: RecordId,
    pub(crate) name: String,
    pub(crate) event: Link<Event>,
    pub(crate) collaborators: Links<User>,
    #[indexed]
    pub(crate) status: Status,
    #[sortable]
    pub(crate) points: i64,
    #[cache(version)]
    pub(crate) version: i64,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "events", source_table = "Events")]
pub(crate) struct Event {
    #[cache(id)]
    pub(crate) id: RecordId,
    pub(crate) name: String,
    #[sortable]
    pub(crate) starts_at: Option<i64>,
}

/// No version field: only leases protect its fills.
#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "users", source_table = "People", tombstone_ttl = "30m")]
pub(crate) struct User {
    #[cache(id)]
    pub(crate) id: RecordId,
    #[cache(source = "Display Name")]
    pub(crate) display_name: String,
    #[indexed(normalize = "lowercase")]
    pub(crate) email: String,
}

#[derive(CacheView, Debug, PartialEq)]
#[cache(view_of = Project)]
pub(crate) struct ProjectCard {
    pub(crate) id: RecordId,
    pub(crate) name: String,
    pub(crate) points: i64,
}

pub(crate) fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("a valid id")
}

pub(crate) fn project(rid: &str, event: &str, status: Status, points: i64, version: i64) -> Project {
    Project {
        id: id(rid),
        name: format!("Project {rid}"),
        event: Link::new(id(event)),
        collaborators: Links::new(vec![id("recU1")]),
        status,
        points,
        version,
    }
}

pub(crate) fn user(rid: &str, name: &str, email: &str) -> User {
    User {
        id: id(rid),
        display_name: name.to_owned(),
        email: email.to_owned(),
    }
}

/// A cache over a memory store on a manual clock behind a [`FailingStore`], and a memory
/// origin.
pub(crate) struct Harness {
    pub(crate) cache: Cache,
    pub(crate) store: FailingStore,
    pub(crate) memory: MemoryStore,
    pub(crate) origin: MemoryOrigin,
    pub(crate) clock: ManualClock,
}

pub(crate) fn harness() -> Harness {
    harness_with(|b| b)
}

pub(crate) fn harness_with(configure: impl FnOnce(CacheBuilder) -> CacheBuilder) -> Harness {
    let clock = ManualClock::new();
    let memory = MemoryStore::builder().clock(clock.clone()).build();
    let store = FailingStore::new(memory.clone());
    let origin = MemoryOrigin::new();
    let builder = Cache::builder(store.clone(), origin.clone())
        .register::<Project>()
        .register::<Event>()
        .register::<User>();
    let cache = configure(builder).build().expect("a valid cache");
    Harness {
        cache,
        store,
        memory,
        origin,
        clock,
    }
}

impl Harness {
    /// Puts records at the origin (not in the cache).
    pub(crate) fn seed<T: Cacheable>(&self, records: &[T]) {
        for r in records {
            self.origin.put(r).expect("fixture records render");
        }
    }

    /// Waits (by yielding, not sleeping) until `n` misses of `entity` joined a flight.
    pub(crate) async fn until_coalesced(&self, entity: &str, n: u64) {
        while self.cache.stats().entity(entity).coalesced < n {
            tokio::task::yield_now().await;
        }
    }
}

/// Waits until the hold has `n` calls, then until `joined` misses joined them.
pub(crate) async fn hold_until(h: &Harness, hold: &Hold, calls: usize, entity: &str, joined: u64) {
    hold.arrived(calls).await;
    h.until_coalesced(entity, joined).await;
}

pub(crate) fn ids(list: &[&str]) -> Vec<RecordId> {
    list.iter().map(|s| id(s)).collect()
}

/// The ids of records, for comparing answers.
pub(crate) fn ids_of<T: Cacheable>(records: &[T]) -> Vec<String> {
    records.iter().map(|r| r.id().as_str().to_owned()).collect()
}

pub(crate) fn view_ids(views: &[ProjectCard]) -> Vec<String> {
    views.iter().map(|v| v.id.as_str().to_owned()).collect()
}

pub(crate) const HOUR: Duration = Duration::from_secs(3600);
