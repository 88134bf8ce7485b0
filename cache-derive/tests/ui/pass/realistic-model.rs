//! Every attribute on one realistic set of models.
use cache_core::{CacheView, Cacheable, IndexValue, Link, Links, Query, RecordId};
use serde::{Deserialize, Serialize};

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "projects", source_table = "Projects", ttl = "8h", tombstone_ttl = "6h")]
pub struct Project {
    #[cache(id)]
    pub id: RecordId,
    pub name: String,
    pub event: Link<Event>,
    pub collaborators: Links<User>,
    #[indexed]
    pub slug: String,
    #[sortable]
    pub points: i64,
    #[cache(version)]
    pub updated_at: chrono::DateTime<chrono::Utc>,
    #[cache(skip)]
    pub scratch: Option<String>,
    #[cache(source = "Join Code")]
    pub join_code: String,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "events", rename_all = "camelCase", ttl = "1h30m", crate = "::cache_core")]
pub struct Event {
    #[cache(id)]
    pub id: cache_core::RecordId,
    pub event_name: String,
    pub owner: Option<Link<User>>,
    #[indexed]
    pub status: Status,
    #[indexed]
    pub year: u16,
    #[sortable]
    #[cache(version)]
    pub revision: u64,
    #[sortable]
    pub starts_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "users", ttl = "500ms")]
pub(crate) struct User {
    #[cache(id)]
    pub(crate) id: RecordId,
    #[indexed(normalize = "lowercase")]
    pub(crate) email: String,
    #[indexed]
    pub(crate) r#type: Option<String>,
    #[indexed]
    pub(crate) active: bool,
}

#[derive(IndexValue, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Published,
}

#[derive(CacheView)]
#[cache(view_of = Project)]
pub struct ProjectCard {
    pub id: RecordId,
    pub name: String,
    pub points: i64,
    #[cache(skip)]
    pub highlighted: bool,
}

fn main() {
    let id = RecordId::new("recE1").unwrap();
    let _: Query<Project> = Project::by_event(&id)
        .and(Project::by_slug("x"))
        .desc(ProjectSort::Points);
    let _: Query<Event> = Event::by_status(&Status::Draft)
        .and(Event::by_owner(&id))
        .and(Event::by_year(&2025))
        .asc(EventSort::StartsAt)
        .desc(EventSort::Revision);
    let _: Query<User> = User::by_email("Ada@X.org")
        .and(User::by_type("staff"))
        .and(User::by_active(&true));
    let _: fn(Project) -> ProjectCard = CacheView::from_model;
    assert_eq!(Project::schema().entity, "projects");
    assert_eq!(Event::schema().field("event_name").unwrap().source_name, "eventName");
    assert_eq!(Event::schema().field("owner").unwrap().source_name, "ownerId");
}
