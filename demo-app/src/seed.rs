//! The demo data: users, events, projects, votes and referrals, generated from a fixed seed
//! (the same database on every machine) and inserted in batches inside one transaction
//! ([`Conn::insert`], which also fills `email_normalized`).
//!
//! The generator is ChaCha8, whose output `rand_chacha` promises not to change between
//! versions (`StdRng` makes no such promise): the README's curl examples use seeded ids, and
//! `tests/readme.rs` checks that they exist.

use std::collections::HashSet;

use cache_core::{Cacheable, schema::EntitySchema};
use chrono::{DateTime, Duration, TimeZone, Utc};
use rand::{
    Rng, SeedableRng,
    distr::{Alphanumeric, SampleString},
    seq::IndexedRandom,
};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    database::{Conn, DATA_VERSION, Database, Param, sql_timestamp},
    models,
};

/// The seed of the generator: change it and every id changes.
const SEED: u64 = 0x6861_636b_6174_686f;

/// Rows per `INSERT` (one JSON parameter each).
const ROWS_PER_INSERT: usize = 2_000;

/// How many records of each kind to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeedCounts {
    /// Users.
    pub users: usize,
    /// Events.
    pub events: usize,
    /// Projects.
    pub projects: usize,
    /// Votes.
    pub votes: usize,
    /// Referrals.
    pub referrals: usize,
}

impl SeedCounts {
    /// The demo's data set: 5,000 users, 50 events, 2,000 projects, 20,000 votes.
    pub const DEMO: Self = Self {
        users: 5_000,
        events: 50,
        projects: 2_000,
        votes: 20_000,
        referrals: 1_000,
    };

    /// The data set `demo-app airtable seed` sends: 525 records, within the 1,000 records of
    /// Airtable's free plan, sent in about 75 requests (some 17 s at 5 requests a second).
    pub const AIRTABLE: Self = Self {
        users: 200,
        events: 5,
        projects: 50,
        votes: 250,
        referrals: 20,
    };

    /// A small data set for tests.
    pub const SMALL: Self = Self {
        users: 200,
        events: 3,
        projects: 30,
        votes: 300,
        referrals: 20,
    };
}

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Dennis",
    "Donald",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ivan",
    "John",
    "Ken",
    "Leslie",
    "Linus",
    "Margaret",
    "Niklaus",
    "Radia",
    "Robin",
    "Shafi",
    "Sophie",
    "Tim",
    "Whitfield",
    "Yukihiro",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Ritchie",
    "Knuth",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Lamarr",
    "Sutherland",
    "McCarthy",
    "Thompson",
    "Lamport",
    "Torvalds",
    "Hamilton",
    "Wirth",
    "Perlman",
    "Milner",
    "Goldwasser",
    "Wilson",
    "Berners-Lee",
    "Diffie",
    "Matsumoto",
];
const DOMAINS: &[&str] = &["Example.com", "example.org", "Mail.example.net"];
const CITIES: &[&str] = &[
    "Lisbon", "Oslo", "Nairobi", "Lima", "Osaka", "Austin", "Berlin", "Porto", "Seoul", "Quito",
];
const ADJECTIVES: &[&str] = &[
    "Quantum", "Tiny", "Open", "Green", "Rusty", "Swift", "Quiet", "Brave", "Lazy", "Bright", "Hidden", "Shared",
];
const NOUNS: &[&str] = &[
    "Compass",
    "Garden",
    "Ledger",
    "Beacon",
    "Kettle",
    "Atlas",
    "Lantern",
    "Harbor",
    "Orbit",
    "Pantry",
    "Relay",
    "Sketchbook",
];

/// What was inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SeedReport {
    /// The counts.
    pub counts: SeedCounts,
}

/// The record id format of the demo: `rec` and 14 letters or digits, as Airtable's.
pub fn new_record_id(rng: &mut impl Rng) -> String {
    format!("rec{}", Alphanumeric.sample_string(rng, 14))
}

/// A join code: six capital letters or digits.
pub fn new_join_code(rng: &mut impl Rng) -> String {
    const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..6)
        .map(|_| char::from(*CHARS.choose(rng).unwrap_or(&b'X')))
        .collect()
}

struct Ids {
    rng: ChaCha8Rng,
    seen: HashSet<String>,
}

impl Ids {
    fn next(&mut self) -> String {
        loop {
            let id = new_record_id(&mut self.rng);
            if self.seen.insert(id.clone()) {
                return id;
            }
        }
    }
}

struct User {
    id: String,
    email: String,
    name: String,
    owned: Vec<usize>,
    attending: Vec<usize>,
    created_at: DateTime<Utc>,
}

struct Event {
    id: String,
    name: String,
    slug: String,
    owner: usize,
    attendees: Vec<usize>,
    join_code: String,
    starts_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
}

struct Project {
    id: String,
    name: String,
    description: Option<String>,
    event: usize,
    owner: usize,
    collaborators: Vec<usize>,
    points: i64,
    join_code: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

struct Vote {
    id: String,
    voter: usize,
    project: usize,
    created_at: DateTime<Utc>,
}

struct Referral {
    id: String,
    referrer: usize,
    referred: usize,
    event: Option<usize>,
    created_at: DateTime<Utc>,
}

struct Data {
    users: Vec<User>,
    events: Vec<Event>,
    projects: Vec<Project>,
    votes: Vec<Vote>,
    referrals: Vec<Referral>,
}

fn generate(counts: SeedCounts) -> Data {
    // Ids come from their own generator so that they stay the same whatever else changes.
    let mut ids = Ids {
        rng: ChaCha8Rng::seed_from_u64(SEED),
        seen: HashSet::new(),
    };
    let mut rng = ChaCha8Rng::seed_from_u64(SEED.wrapping_add(1));
    let base = Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).single().unwrap_or_default();
    let users_n = counts.users.max(2);
    let events_n = counts.events.max(1);

    let mut users: Vec<User> = (0..users_n)
        .map(|i| {
            let first = FIRST_NAMES.choose(&mut rng).copied().unwrap_or("Ada");
            let last = LAST_NAMES.choose(&mut rng).copied().unwrap_or("Lovelace");
            let domain = DOMAINS.choose(&mut rng).copied().unwrap_or("example.com");
            User {
                id: ids.next(),
                // Mixed case on purpose: emails are looked up case-insensitively.
                email: format!("{first}.{last}{i}@{domain}"),
                name: format!("{first} {last}"),
                owned: Vec::new(),
                attending: Vec::new(),
                created_at: base - Duration::minutes(rng.random_range(0..60 * 24 * 365)),
            }
        })
        .collect();

    let mut events: Vec<Event> = (0..events_n)
        .map(|i| {
            let city = CITIES[i % CITIES.len()];
            let edition = i / CITIES.len() + 1;
            let starts_at = base + Duration::days(7 * i as i64);
            let owner = rng.random_range(0..users_n);
            users[owner].owned.push(i);
            Event {
                id: ids.next(),
                name: format!("{city} Hack #{edition}"),
                slug: format!("{}-hack-{edition}", city.to_lowercase()),
                owner,
                attendees: Vec::new(),
                join_code: new_join_code(&mut rng),
                starts_at,
                created_at: starts_at - Duration::days(30),
            }
        })
        .collect();

    // Everyone attends one event; a fifth attend a second one.
    for (u, user) in users.iter_mut().enumerate() {
        let first = rng.random_range(0..events_n);
        user.attending.push(first);
        events[first].attendees.push(u);
        if events_n > 1 && rng.random_bool(0.2) {
            let second = (first + rng.random_range(1..events_n)) % events_n;
            user.attending.push(second);
            events[second].attendees.push(u);
        }
    }

    let mut projects: Vec<Project> = (0..counts.projects)
        .map(|_| {
            let event = rng.random_range(0..events_n);
            let pool = &events[event].attendees;
            let owner = pool.choose(&mut rng).copied().unwrap_or(0);
            let mut collaborators = Vec::new();
            for _ in 0..rng.random_range(0..=3) {
                if let Some(&c) = pool.choose(&mut rng)
                    && c != owner
                    && !collaborators.contains(&c)
                {
                    collaborators.push(c);
                }
            }
            let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("Open");
            let noun = NOUNS.choose(&mut rng).copied().unwrap_or("Garden");
            let created_at = events[event].starts_at + Duration::minutes(rng.random_range(0..60 * 36));
            Project {
                id: ids.next(),
                name: format!("{adjective} {noun}"),
                description: rng
                    .random_bool(0.8)
                    .then(|| format!("{adjective} {noun}, built at {}", events[event].name)),
                event,
                owner,
                collaborators,
                points: 0,
                join_code: new_join_code(&mut rng),
                created_at,
                updated_at: created_at,
            }
        })
        .collect();

    let mut votes = Vec::with_capacity(counts.votes);
    if !projects.is_empty() {
        for _ in 0..counts.votes {
            let p = rng.random_range(0..projects.len());
            let project = &mut projects[p];
            let voter = events[project.event].attendees.choose(&mut rng).copied().unwrap_or(0);
            let created_at = project.created_at + Duration::minutes(rng.random_range(1..60 * 12));
            project.points += 1;
            project.updated_at = project.updated_at.max(created_at);
            votes.push(Vote {
                id: ids.next(),
                voter,
                project: p,
                created_at,
            });
        }
    }

    let referrals = (0..counts.referrals)
        .map(|_| {
            let referrer = rng.random_range(0..users_n);
            let referred = (referrer + rng.random_range(1..users_n)) % users_n;
            Referral {
                id: ids.next(),
                referrer,
                referred,
                event: rng.random_bool(0.5).then(|| rng.random_range(0..events_n)),
                created_at: base - Duration::minutes(rng.random_range(0..60 * 24 * 90)),
            }
        })
        .collect();

    Data {
        users,
        events,
        projects,
        votes,
        referrals,
    }
}

/// Drops and recreates the tables, then inserts the generated data in one transaction.
pub async fn seed(db: &Database, counts: SeedCounts) -> Result<SeedReport, sqlx::Error> {
    let data = generate(counts);
    db.drop_tables().await?;
    db.create_tables().await?;
    match db {
        Database::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            insert_all(Conn::Sqlite(&mut tx), &data).await?;
            tx.commit().await?;
        }
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            insert_all(Conn::Postgres(&mut tx), &data).await?;
            tx.commit().await?;
        }
    }
    Ok(SeedReport {
        counts: SeedCounts {
            users: data.users.len(),
            events: data.events.len(),
            projects: data.projects.len(),
            votes: data.votes.len(),
            referrals: data.referrals.len(),
        },
    })
}

/// A row: column names and values.
fn row<const N: usize>(values: [(&str, Value); N]) -> Map<String, Value> {
    values
        .into_iter()
        .map(|(column, value)| (column.to_owned(), value))
        .collect()
}

/// The generated data as rows, table by table (users, events, projects, votes, referrals:
/// every table after the ones its single links point to), each row keyed by column
/// (`id`, then the models' source names), single links as an id (or `null`), `Links<T>` as a
/// list of ids, times as text ([`sql_timestamp`]).
pub fn tables(counts: SeedCounts) -> Vec<(&'static EntitySchema, Vec<Map<String, Value>>)> {
    to_tables(&generate(counts))
}

fn to_tables(data: &Data) -> Vec<(&'static EntitySchema, Vec<Map<String, Value>>)> {
    let user_id = |i: &usize| Value::from(data.users[*i].id.as_str());
    let event_id = |i: &usize| Value::from(data.events[*i].id.as_str());
    let text = |s: &str| Value::from(s);
    let time = |t: &DateTime<Utc>| Value::from(sql_timestamp(*t));

    let users = data.users.iter().map(|u| {
        row([
            ("id", text(&u.id)),
            ("email", text(&u.email)),
            ("name", text(&u.name)),
            ("owned_events", u.owned.iter().map(event_id).collect()),
            ("attending_events", u.attending.iter().map(event_id).collect()),
            ("created_at", time(&u.created_at)),
            ("updated_at", time(&u.created_at)),
        ])
    });
    let events = data.events.iter().map(|e| {
        row([
            ("id", text(&e.id)),
            ("name", text(&e.name)),
            ("slug", text(&e.slug)),
            ("owner_id", user_id(&e.owner)),
            ("attendees", e.attendees.iter().map(user_id).collect()),
            ("join_code", text(&e.join_code)),
            ("starts_at", time(&e.starts_at)),
            ("created_at", time(&e.created_at)),
            ("updated_at", time(&e.created_at)),
        ])
    });
    let projects = data.projects.iter().map(|p| {
        row([
            ("id", text(&p.id)),
            ("name", text(&p.name)),
            ("description", p.description.as_deref().map_or(Value::Null, text)),
            ("event_id", event_id(&p.event)),
            ("owner_id", user_id(&p.owner)),
            ("collaborators", p.collaborators.iter().map(user_id).collect()),
            ("points", Value::from(p.points)),
            ("join_code", text(&p.join_code)),
            ("created_at", time(&p.created_at)),
            ("updated_at", time(&p.updated_at)),
        ])
    });
    let votes = data.votes.iter().map(|v| {
        let project = &data.projects[v.project];
        row([
            ("id", text(&v.id)),
            ("voter_id", user_id(&v.voter)),
            ("project_id", text(&project.id)),
            ("event_id", event_id(&project.event)),
            ("points", Value::from(1)),
            ("created_at", time(&v.created_at)),
        ])
    });
    let referrals = data.referrals.iter().map(|r| {
        row([
            ("id", text(&r.id)),
            ("referrer_id", user_id(&r.referrer)),
            ("referred_id", user_id(&r.referred)),
            ("event_id", r.event.as_ref().map_or(Value::Null, event_id)),
            ("created_at", time(&r.created_at)),
        ])
    });
    vec![
        (models::User::schema(), users.collect()),
        (models::Event::schema(), events.collect()),
        (models::Project::schema(), projects.collect()),
        (models::Vote::schema(), votes.collect()),
        (models::Referral::schema(), referrals.collect()),
    ]
}

async fn insert_all(mut conn: Conn<'_>, data: &Data) -> Result<(), sqlx::Error> {
    for (schema, rows) in to_tables(data) {
        insert(&mut conn, schema, rows.into_iter()).await?;
    }
    conn.execute(
        r#"INSERT INTO "DemoData" ("version") VALUES ($1)"#,
        vec![Param::Int(DATA_VERSION)],
    )
    .await?;
    Ok(())
}

/// Inserts rows into the entity's table, [`ROWS_PER_INSERT`] at a time.
async fn insert(
    conn: &mut Conn<'_>,
    entity: &EntitySchema,
    rows: impl Iterator<Item = Map<String, Value>>,
) -> Result<(), sqlx::Error> {
    let rows: Vec<Map<String, Value>> = rows.collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        conn.insert(entity, chunk).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_consistent() {
        let a = generate(SeedCounts::SMALL);
        let b = generate(SeedCounts::SMALL);
        let ids = |d: &Data| d.projects.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b));
        for p in &a.projects {
            assert!(p.id.starts_with("rec") && p.id.len() == 17, "{}", p.id);
            assert!(a.events[p.event].attendees.contains(&p.owner));
        }
        let points: i64 = a.projects.iter().map(|p| p.points).sum();
        assert_eq!(points, a.votes.len() as i64);
        let slugs: HashSet<_> = a.events.iter().map(|e| &e.slug).collect();
        assert_eq!(slugs.len(), a.events.len(), "slugs are unique");
        for (i, e) in a.events.iter().enumerate() {
            assert!(a.users[e.owner].owned.contains(&i));
            for u in &e.attendees {
                assert!(a.users[*u].attending.contains(&i));
            }
        }
    }
}
