//! The record measured: the demo's `Project` (same fields, indexes and sort keys), with
//! `Deserialize` so that the `cached` peer can store it too, and a generator of realistic
//! records of about 1 KiB of JSON each.

use cache_core::{Cacheable, Link, Links, RecordId};
use chrono::{DateTime, TimeZone, Utc};
use demo_app::models::{Event, User};
use serde::{Deserialize, Serialize};

/// A team's submission to a hackathon, as the demo caches it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Cacheable)]
#[cache(entity = "projects", source_table = "Projects", ttl = "8h")]
pub struct Project {
    /// `recP…`.
    #[cache(id)]
    pub id: RecordId,
    /// The project's name.
    pub name: String,
    /// What it does: most of the record's size.
    pub description: Option<String>,
    /// The event it competes in (`Project::by_event`).
    pub event: Link<Event>,
    /// Who submitted it (`Project::by_owner`).
    pub owner: Link<User>,
    /// The other team members.
    pub collaborators: Links<User>,
    /// The leaderboard order.
    #[sortable]
    pub points: i64,
    /// The secret that lets a user join the team.
    pub join_code: String,
    /// When it was submitted.
    #[sortable]
    pub created_at: DateTime<Utc>,
    /// Bumped on every write.
    #[cache(version)]
    pub updated_at: DateTime<Utc>,
}

/// The size of cached form the generator aims at: about 1 KiB of JSON, as the demo's
/// projects with a real description.
pub const TARGET_JSON_BYTES: usize = 1024;

const WORDS: &[&str] = &[
    "a",
    "realtime",
    "dashboard",
    "for",
    "judges",
    "that",
    "ranks",
    "projects",
    "by",
    "votes",
    "and",
    "shows",
    "the",
    "team",
    "behind",
    "each",
    "entry",
    "with",
    "offline",
    "sync",
    "accessible",
    "design",
    "built",
    "on",
    "open",
    "data",
    "from",
    "city",
    "transit",
    "feeds",
    "plus",
    "a",
    "tiny",
    "rust",
    "service",
    "caching",
    "everything",
    "in",
    "redis",
];

/// A small deterministic generator (splitmix64): the same records on every run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The id of the `i`-th generated project: `recP0000000000042`.
pub fn project_id(i: usize) -> RecordId {
    RecordId::new(format!("recP{i:013}")).unwrap_or_else(|e| panic!("generated id: {e}"))
}

/// The id of the `i`-th event the projects belong to.
pub fn event_id(i: usize) -> RecordId {
    RecordId::new(format!("recE{i:013}")).unwrap_or_else(|e| panic!("generated id: {e}"))
}

fn user_id(i: u64) -> RecordId {
    RecordId::new(format!("recU{i:013}")).unwrap_or_else(|e| panic!("generated id: {e}"))
}

/// `count` projects spread evenly over `events` events, each with a description long enough
/// for its cached form to weigh about `json_bytes` bytes.
pub fn generate(count: usize, events: usize, json_bytes: usize) -> Vec<Project> {
    let mut rng = Rng::new(0x5EED);
    let start = Utc
        .with_ymd_and_hms(2025, 3, 1, 9, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    (0..count)
        .map(|i| {
            let created_at = start + chrono::Duration::seconds(i64::try_from(i).unwrap_or(i64::MAX) * 37);
            let collaborators = (0..rng.below(4)).map(|_| user_id(rng.below(5_000))).collect();
            let mut project = Project {
                id: project_id(i),
                name: format!(
                    "{} {}",
                    WORDS[rng.below(WORDS.len() as u64) as usize],
                    WORDS[rng.below(WORDS.len() as u64) as usize]
                ),
                description: Some(String::new()),
                event: Link::new(event_id(i % events.max(1))),
                owner: Link::new(user_id(rng.below(5_000))),
                collaborators: Links::new(collaborators),
                points: i64::try_from(rng.below(1_000)).unwrap_or(0),
                join_code: format!("{:08x}", rng.next_u64() as u32),
                created_at,
                updated_at: created_at,
            };
            let base = cached_len(&project);
            let mut description = String::new();
            while base + description.len() < json_bytes {
                if !description.is_empty() {
                    description.push(' ');
                }
                description.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
            }
            project.description = Some(description);
            project
        })
        .collect()
}

/// The size of a record's cached form.
pub fn cached_len<T: Cacheable>(record: &T) -> usize {
    record.to_cached().map_or(0, |bytes| bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_about_a_kibibyte_and_spread_over_events() {
        let records = generate(200, 4, TARGET_JSON_BYTES);
        assert_eq!(records, generate(200, 4, TARGET_JSON_BYTES), "deterministic");
        for r in &records {
            let len = cached_len(r);
            assert!((TARGET_JSON_BYTES..TARGET_JSON_BYTES + 16).contains(&len), "{len}");
            let back = Project::from_cached(&r.to_cached().unwrap()).unwrap();
            assert_eq!(&back, r);
        }
        let in_first = records.iter().filter(|r| r.event.id() == &event_id(0)).count();
        assert_eq!(in_first, 50);
        assert_eq!(project_id(42).as_str(), "recP0000000000042");
    }
}
