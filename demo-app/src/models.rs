//! The hackathon-judging domain: users, events, projects, votes and referrals.
//!
//! The cached forms are the richest ones (`Event` keeps its attendees and join code); the API
//! hands out the public views ([`PublicEvent`], [`PublicProject`]) built from them.
//!
//! The same models read SQL and Airtable. Airtable leaves empty cells out of its records (an
//! empty list of links, a number never set): the fields that may be empty say what an absent
//! cell means with `#[cache(default)]` (an empty list, `0`), as the guide recommends for
//! Airtable models; the SQL tables always have them.

use cache_core::{CacheView, Cacheable, Link, Links, RecordId, schema::EntitySchema};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// A person: judges, hackers and organisers alike.
#[derive(Debug, Clone, PartialEq, Serialize, Cacheable)]
#[cache(entity = "users", source_table = "Users", ttl = "8h")]
pub struct User {
    /// `rec…`, as Airtable would name it.
    #[cache(id)]
    pub id: RecordId,
    /// Unique; looked up case-insensitively (`User::by_email`).
    #[indexed(normalize = "lowercase")]
    pub email: String,
    /// The name shown on the leaderboard (column `name`).
    #[cache(source = "name")]
    pub display_name: String,
    /// The events this user organises.
    #[cache(default)]
    pub owned_events: Links<Event>,
    /// The events this user attends.
    #[cache(default)]
    pub attending_events: Links<Event>,
    /// When the user signed up.
    #[sortable]
    pub created_at: DateTime<Utc>,
    /// Bumped on every write; a cached copy older than another is never written over it.
    #[cache(version)]
    pub updated_at: DateTime<Utc>,
}

/// A hackathon, as cached: with its attendees and join code. Serve [`PublicEvent`].
#[derive(Debug, Clone, PartialEq, Serialize, Cacheable)]
#[cache(entity = "events", source_table = "Events", ttl = "8h")]
pub struct Event {
    /// `rec…`.
    #[cache(id)]
    pub id: RecordId,
    /// The event's name.
    pub name: String,
    /// Unique, used in URLs (`Event::by_slug`).
    #[indexed]
    pub slug: String,
    /// The organiser (column `owner_id`, indexed: `Event::by_owner`).
    pub owner: Link<User>,
    /// Everyone taking part.
    #[cache(default)]
    pub attendees: Links<User>,
    /// The secret that lets a user join; never served publicly.
    pub join_code: String,
    /// When the event starts.
    #[sortable]
    pub starts_at: DateTime<Utc>,
    /// When the event was created.
    #[sortable]
    pub created_at: DateTime<Utc>,
    /// Bumped on every write.
    #[cache(version)]
    pub updated_at: DateTime<Utc>,
}

/// What anyone may see of an event: no attendee list, no join code.
#[derive(Debug, Clone, PartialEq, Serialize, CacheView)]
#[cache(view_of = Event)]
pub struct PublicEvent {
    /// `rec…`.
    pub id: RecordId,
    /// The event's name.
    pub name: String,
    /// Unique, used in URLs.
    pub slug: String,
    /// The organiser.
    pub owner: Link<User>,
    /// When the event starts.
    pub starts_at: DateTime<Utc>,
    /// When the event was created.
    pub created_at: DateTime<Utc>,
    /// When the event last changed.
    pub updated_at: DateTime<Utc>,
}

/// A team's submission to one event, as cached. Serve [`PublicProject`].
#[derive(Debug, Clone, PartialEq, Serialize, Cacheable)]
#[cache(entity = "projects", source_table = "Projects", ttl = "8h")]
pub struct Project {
    /// `rec…`.
    #[cache(id)]
    pub id: RecordId,
    /// The project's name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The event it competes in (column `event_id`; `Project::by_event`).
    pub event: Link<Event>,
    /// Who submitted it (column `owner_id`; `Project::by_owner`).
    pub owner: Link<User>,
    /// The other team members.
    #[cache(default)]
    pub collaborators: Links<User>,
    /// The sum of its votes: the leaderboard order.
    #[cache(default)]
    #[sortable]
    pub points: i64,
    /// The secret that lets a user join the team; never served publicly.
    pub join_code: String,
    /// When it was submitted.
    #[sortable]
    pub created_at: DateTime<Utc>,
    /// Bumped on every write (a vote too).
    #[cache(version)]
    pub updated_at: DateTime<Utc>,
}

/// What anyone may see of a project: everything but the join code.
#[derive(Debug, Clone, PartialEq, Serialize, CacheView)]
#[cache(view_of = Project)]
pub struct PublicProject {
    /// `rec…`.
    pub id: RecordId,
    /// The project's name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The event it competes in.
    pub event: Link<Event>,
    /// Who submitted it.
    pub owner: Link<User>,
    /// The other team members.
    pub collaborators: Links<User>,
    /// Its points.
    pub points: i64,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// One judge's vote for one project. Votes never change, so they carry no version.
#[derive(Debug, Clone, PartialEq, Serialize, Cacheable)]
#[cache(entity = "votes", source_table = "Votes", ttl = "8h")]
pub struct Vote {
    /// `rec…`.
    #[cache(id)]
    pub id: RecordId,
    /// Who voted (column `voter_id`; `Vote::by_voter`).
    pub voter: Link<User>,
    /// For which project (column `project_id`; `Vote::by_project`).
    pub project: Link<Project>,
    /// In which event (column `event_id`; `Vote::by_event`).
    pub event: Link<Event>,
    /// The points the vote gave.
    #[cache(default)]
    pub points: i64,
    /// When it was cast.
    #[sortable]
    pub created_at: DateTime<Utc>,
}

/// One user bringing another to the platform, possibly for an event.
#[derive(Debug, Clone, PartialEq, Serialize, Cacheable)]
#[cache(entity = "referrals", source_table = "Referrals", ttl = "8h")]
pub struct Referral {
    /// `rec…`.
    #[cache(id)]
    pub id: RecordId,
    /// Who invited (column `referrer_id`; `Referral::by_referrer`).
    pub referrer: Link<User>,
    /// Who was invited (column `referred_id`; `Referral::by_referred`).
    pub referred: Link<User>,
    /// The event the invitation was for, if any (column `event_id`).
    pub event: Option<Link<Event>>,
    /// When the invitation was accepted.
    #[sortable]
    pub created_at: DateTime<Utc>,
}

/// The schema of every model of the demo, in the order a person reads them.
pub fn schemas() -> [&'static EntitySchema; 5] {
    [
        User::schema(),
        Event::schema(),
        Project::schema(),
        Vote::schema(),
        Referral::schema(),
    ]
}
