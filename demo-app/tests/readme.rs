//! The README's curl examples use ids of the seeded demo database: they must exist there, in
//! the roles the examples give them.

mod common;

use cache_core::{
    Cacheable, RecordId,
    origin::{Origin, SourceRecord},
    schema::EntitySchema,
};
use chrono::{DateTime, Utc};
use common::{Backend, TestDb};
use demo_app::{
    app::open_origin,
    models::{Event, Project, User},
    origin::{DemoOrigin, OriginSettings},
    seed::SeedCounts,
};
use serde_json::Value;

/// The "Run the demo" section of the README, where the curl examples are.
fn demo_section() -> &'static str {
    const README: &str = include_str!("../../README.md");
    let start = README.find("## Run the demo").expect("a `Run the demo` section");
    let rest = &README[start + 2..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// Every record id (`rec` and 14 letters or digits) the text names.
fn record_ids(text: &str) -> Vec<RecordId> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("rec") {
        let tail: String = text[at + 3..].chars().take_while(char::is_ascii_alphanumeric).collect();
        let before = text[..at].chars().next_back();
        if tail.len() == 14 && !before.is_some_and(|c| c.is_ascii_alphanumeric()) {
            out.push(RecordId::new(format!("rec{tail}")).expect("a record id"));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The path segment after each `prefix` in the text.
fn segments_after<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            &rest[..rest.find(['/', '?', '\'', ' ', '|', '\n']).unwrap_or(rest.len())]
        })
        .collect()
}

async fn fetch(origin: &DemoOrigin, schema: &'static EntitySchema, id: &str) -> Option<SourceRecord> {
    let id = RecordId::new(id).expect("a record id");
    origin.fetch(schema, &id).await.expect("fetch")
}

fn first_id(list: &Value) -> &str {
    list[0].as_str().expect("a link as a list of one id")
}

fn instant(value: &Value) -> DateTime<Utc> {
    value.as_str().and_then(|s| s.parse().ok()).expect("a timestamp")
}

#[tokio::test]
async fn the_readme_uses_ids_of_the_seeded_database() {
    let section = demo_section();
    let test = TestDb::seeded(Backend::Sqlite, SeedCounts::DEMO).await;
    let origin = open_origin(&test.db, OriginSettings::default()).await.expect("origin");

    let ids = record_ids(section);
    assert!(ids.len() >= 3, "the examples name records: {ids:?}");
    for id in &ids {
        let mut found = false;
        for schema in demo_app::models::schemas() {
            found |= origin.fetch(schema, id).await.expect("fetch").is_some();
        }
        assert!(found, "{id}, in the README, is not in the seeded database");
    }

    let projects = segments_after(section, "localhost:3000/projects/");
    assert!(!projects.is_empty());
    for id in projects {
        assert!(fetch(&origin, Project::schema(), id).await.is_some(), "project {id}");
    }
    let events: Vec<&str> = segments_after(section, "localhost:3000/events/")
        .into_iter()
        .filter(|s| *s != "by-slug")
        .collect();
    assert!(!events.is_empty());
    for id in events {
        assert!(fetch(&origin, Event::schema(), id).await.is_some(), "event {id}");
    }
    let slugs = segments_after(section, "/events/by-slug/");
    assert!(!slugs.is_empty());
    for slug in slugs {
        let found = origin
            .query(
                Event::schema(),
                &cache_core::origin::SourceQuery::from_index_query(
                    Event::schema(),
                    Event::by_slug(slug).as_index_query(),
                )
                .expect("a query"),
            )
            .await
            .expect("query");
        assert_eq!(found.len(), 1, "slug {slug}");
    }

    // The webhook delivers the project as the database has it, but for what it changes.
    let body = section.split("-d '").nth(1).expect("a webhook body");
    let body: Value = serde_json::from_str(&body[..body.find('\'').expect("a quoted body")]).expect("JSON");
    let record = &body["record"];
    assert_eq!(body["record_id"], record["id"]);
    let id = record["id"].as_str().expect("an id");
    let project = fetch(&origin, Project::schema(), id)
        .await
        .expect("the webhook's project");
    assert_eq!(first_id(&record["event_id"]), project.fields["event_id"]);
    assert_eq!(first_id(&record["owner_id"]), project.fields["owner_id"]);
    assert!(
        fetch(&origin, User::schema(), first_id(&record["owner_id"]))
            .await
            .is_some()
    );
    assert_eq!(instant(&record["created_at"]), instant(&project.fields["created_at"]));
    assert!(
        instant(&body["timestamp"]) > instant(&project.fields["updated_at"]),
        "the delivery is newer than the seeded project, so it applies"
    );
    test.cleanup().await;
}
