//! Every form of `#[cache(default)]`, on an Airtable-style model.
use cache_core::{Cacheable, Link, Links, RecordId};

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "votes", source_table = "Votes", rename_all = "PascalCase", default)]
pub struct Vote {
    #[cache(id)]
    pub id: RecordId,
    pub project: Link<Project>,
    pub voter: Option<Link<Project>>,
    pub supporters: Links<Project>,
    #[sortable]
    pub points: i64,
    pub comment: String,
    pub flagged: bool,
    #[cache(default = "default_weight")]
    pub weight: f64,
    #[cache(default = "Vote::first_round")]
    pub round: u8,
    #[cache(version)]
    pub revision: u64,
    #[cache(skip)]
    pub scratch: Vec<u8>,
}

impl Vote {
    fn first_round() -> u8 {
        1
    }
}

fn default_weight() -> f64 {
    1.0
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "projects")]
pub struct Project {
    #[cache(id)]
    pub id: RecordId,
    pub name: String,
    #[cache(default)]
    pub points: i64,
    #[cache(default)]
    pub owner: Option<Link<Project>>,
    #[cache(default = "fallback_event")]
    pub event: Link<Project>,
    #[cache(default, source = "Tags")]
    pub tags: Vec<String>,
}

fn fallback_event() -> Link<Project> {
    Link::new(RecordId::new("recUnassigned").expect("a valid id"))
}

fn main() {
    let schema = Vote::schema();
    assert!(schema.field("points").is_some_and(|f| f.default));
    assert!(!schema.field("project").is_some_and(|f| f.default));
    assert!(Project::schema().field("event").is_some_and(|f| f.default));
}
