//! A realistic set of models, derived and exercised end to end: schema, cached form, source
//! shape, index entries and typed queries.

use cache_core::{
    CacheView, Cacheable, IndexValue, Link, Links, Order, RecordId,
    origin::SourceRecord,
    schema::{FieldKind, IndexKind, ModelError, SortField},
};
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "projects", source_table = "Projects", ttl = "8h")]
struct Project {
    #[cache(id)]
    id: RecordId,
    name: String,
    event: Link<Event>,
    collaborators: Links<User>,
    #[indexed]
    slug: String,
    #[sortable]
    points: i64,
    #[cache(version)]
    updated_at: DateTime<Utc>,
    #[cache(skip)]
    scratch: Option<String>,
    #[cache(source = "Join Code")]
    join_code: String,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "events", tombstone_ttl = "30m", negative_ttl = "45s")]
struct Event {
    #[cache(id)]
    id: RecordId,
    name: String,
    owner: Option<Link<User>>,
    #[indexed]
    status: Status,
    #[sortable]
    starts_at: Option<DateTime<Utc>>,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "users", source_table = "People", rename_all = "PascalCase")]
struct User {
    #[cache(id)]
    id: RecordId,
    display_name: String,
    #[indexed(normalize = "lowercase")]
    email: String,
    #[indexed]
    github_login: Option<String>,
    r#type: Option<String>,
    best_friend: Option<Link<User>>,
}

#[derive(IndexValue, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Status {
    Draft,
    InReview,
    Published,
}

#[derive(CacheView, Debug, PartialEq)]
#[cache(view_of = User)]
struct PublicUser {
    id: RecordId,
    display_name: String,
    #[cache(skip)]
    email: Option<String>,
}

fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("a valid id")
}

fn project() -> Project {
    Project {
        id: id("recP1"),
        name: "Hovercraft".into(),
        event: Link::new(id("recE1")),
        collaborators: Links::new(vec![id("recU1"), id("recU2")]),
        slug: "hovercraft".into(),
        points: 42,
        updated_at: Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap(),
        scratch: Some("not stored".into()),
        join_code: "XK-42".into(),
    }
}

fn user() -> User {
    User {
        id: id("recU1"),
        display_name: "Ada Lovelace".into(),
        email: " Ada@Example.org ".into(),
        github_login: None,
        r#type: Some("staff".into()),
        best_friend: Some(Link::new(id("recU2"))),
    }
}

#[test]
fn schema_field_by_field() {
    let schema = Project::schema();
    assert_eq!(schema.entity, "projects");
    assert_eq!(schema.source_table, "Projects");
    assert_eq!(schema.type_name, "Project");
    assert_eq!(schema.ttl, std::time::Duration::from_secs(8 * 3600));
    assert_eq!(schema.tombstone_ttl, cache_core::schema::DEFAULT_TOMBSTONE_TTL);
    assert_eq!(schema.negative_ttl, cache_core::schema::DEFAULT_NEGATIVE_TTL);
    assert_eq!(schema.id_field, "id");
    assert_eq!(schema.version_field, Some("updated_at"));
    let names: Vec<_> = schema.fields.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "name",
            "event",
            "collaborators",
            "slug",
            "points",
            "updated_at",
            "scratch",
            "join_code"
        ]
    );

    let name = schema.field("name").unwrap();
    assert_eq!((name.source_name, name.rust_type), ("name", "String"));
    assert!(matches!(name.kind, FieldKind::Scalar));
    assert!(!name.optional && name.index.is_none() && !name.sortable && !name.skipped);

    let event = schema.field("event").unwrap();
    assert_eq!((event.source_name, event.rust_type), ("event_id", "Link<Event>"));
    assert!(matches!(event.kind, FieldKind::Link { target } if target().entity == "events"));
    assert_eq!(event.index, Some(IndexKind::Exact));

    let collaborators = schema.field("collaborators").unwrap();
    assert_eq!(collaborators.source_name, "collaborators");
    assert!(matches!(collaborators.kind, FieldKind::Links { target } if target().entity == "users"));
    assert_eq!(collaborators.index, None);

    assert_eq!(schema.field("slug").unwrap().index, Some(IndexKind::Exact));
    let points = schema.field("points").unwrap();
    assert!(points.sortable && points.index.is_none());
    assert_eq!(schema.field("updated_at").unwrap().rust_type, "DateTime<Utc>");
    let scratch = schema.field("scratch").unwrap();
    assert!(scratch.skipped && scratch.optional);
    assert_eq!(schema.field("join_code").unwrap().source_name, "Join Code");
    assert!(schema.field("id").is_none(), "the id is not one of the fields");

    let sortable: Vec<_> = schema.sortable_fields().map(|f| f.name).collect();
    assert_eq!(sortable, ["points"]);
    let indexed: Vec<_> = schema.indexed_fields().map(|f| f.name).collect();
    assert_eq!(indexed, ["event", "slug"]);
    assert!(std::ptr::eq(schema, Project::schema()), "built once");
}

#[test]
fn schema_renames_and_options() {
    let users = User::schema();
    assert_eq!(users.source_table, "People");
    let source_names: Vec<_> = users.fields.iter().map(|f| f.source_name).collect();
    assert_eq!(
        source_names,
        ["DisplayName", "Email", "GithubLogin", "Type", "BestFriendId"]
    );
    assert_eq!(users.field("email").unwrap().index, Some(IndexKind::Lowercase));
    assert!(users.field("github_login").unwrap().optional);
    assert_eq!(users.field("type").unwrap().rust_type, "Option<String>");
    let best_friend = users.field("best_friend").unwrap();
    assert!(best_friend.optional);
    assert_eq!(best_friend.index, Some(IndexKind::Exact));

    let events = Event::schema();
    assert_eq!(events.source_table, "events", "defaults to the entity");
    assert_eq!(events.ttl, cache_core::schema::DEFAULT_TTL);
    assert_eq!(events.tombstone_ttl, std::time::Duration::from_secs(30 * 60));
    assert_eq!(events.negative_ttl, std::time::Duration::from_secs(45));
    assert_eq!(events.version_field, None);
    assert_eq!(events.field("owner").unwrap().source_name, "owner_id");

    let json = serde_json::to_value(Project::schema()).unwrap();
    assert_eq!(json["fields"][1]["target"], "events");
    assert_eq!(json["fields"][1]["index"], "exact");
    assert_ne!(Project::schema().fingerprint(), Event::schema().fingerprint());
}

#[test]
fn cached_form_is_compact_json_keyed_by_rust_names() {
    let bytes = project().to_cached().unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert_eq!(
        text,
        r#"{"id":"recP1","name":"Hovercraft","event":"recE1","collaborators":["recU1","recU2"],"slug":"hovercraft","points":42,"updated_at":"2025-03-01T12:00:00Z","join_code":"XK-42"}"#
    );
    let back = Project::from_cached(&bytes).unwrap();
    assert_eq!(
        back,
        Project {
            scratch: None,
            ..project()
        }
    );

    let user = user();
    let text = String::from_utf8(user.to_cached().unwrap()).unwrap();
    assert!(text.contains(r#""type":"staff""#), "r# is stripped: {text}");
    assert_eq!(User::from_cached(text.as_bytes()).unwrap(), user);
}

#[test]
fn unreadable_cached_form_is_an_error() {
    let err = Project::from_cached(br#"{"id":"recP1"}"#).unwrap_err();
    assert!(matches!(err, ModelError::Cached { entity: "projects", .. }), "{err}");
    assert!(err.to_string().contains("missing field `name`"), "{err}");
    assert!(Project::from_cached(b"not json").is_err());
}

#[test]
fn index_entries_are_normalised() {
    let entries = project().index_entries();
    assert_eq!(
        entries.tags,
        [
            ("event".to_owned(), "recE1".to_owned()),
            ("slug".to_owned(), "hovercraft".to_owned())
        ]
    );
    assert_eq!(entries.scores, [("points".to_owned(), 42.0)]);

    let entries = user().index_entries();
    assert_eq!(entries.tag("email"), Some("ada@example.org"));
    assert_eq!(entries.tag("github_login"), None, "absent values have no entry");
    assert_eq!(entries.tag("best_friend"), Some("recU2"));
    assert!(entries.scores.is_empty());

    let event = Event {
        id: id("recE1"),
        name: "Hack Day".into(),
        owner: None,
        status: Status::InReview,
        starts_at: None,
    };
    let entries = event.index_entries();
    assert_eq!(entries.tags, [("status".to_owned(), "in_review".to_owned())]);
    assert_eq!(entries.score("starts_at"), Some(f64::NEG_INFINITY));
}

#[test]
fn version_is_the_version_field() {
    let p = project();
    assert_eq!(p.version(), Some(p.updated_at.timestamp_millis() as f64));
    assert_eq!(user().version(), None);
}

#[test]
fn typed_queries() {
    let q = Project::by_event(&id("recE1"))
        .and(Project::by_slug("x"))
        .desc(ProjectSort::Points)
        .limit(10);
    let q = q.into_index_query();
    let filters: Vec<_> = q.filters.iter().map(|f| (f.field, f.value.as_str())).collect();
    assert_eq!(filters, [("event", "recE1"), ("slug", "x")]);
    let sort = q.sort.unwrap();
    assert_eq!((sort.field, sort.order), ("points", Order::Desc));
    assert_eq!(q.limit, Some(10));

    let q = User::by_email("  Ada@X.org").into_index_query();
    assert_eq!(q.filters[0].value, "ada@x.org");
    let q = User::by_github_login("ada").and(User::by_best_friend(&id("recU2")));
    assert_eq!(q.as_index_query().filters.len(), 2);
    let q = Event::by_status(&Status::Published).and(Event::by_owner(&id("recU1")));
    assert_eq!(q.as_index_query().filter_key(), "owner=recU1&status=published");
    assert_eq!(EventSort::StartsAt.field_name(), "starts_at");
    assert_eq!(ProjectSort::Points.field_name(), "points");
}

#[test]
fn index_value_derive_uses_the_serde_form() {
    assert_eq!(Status::InReview.index_value().as_deref(), Some("in_review"));
    assert_eq!(<Status as IndexValue>::arg_value(&Status::Draft), "draft");
}

#[test]
fn views_move_fields() {
    let view: PublicUser = CacheView::from_model(user());
    assert_eq!(
        view,
        PublicUser {
            id: id("recU1"),
            display_name: "Ada Lovelace".into(),
            email: None
        }
    );
}

fn source(id: &str, fields: serde_json::Value) -> SourceRecord {
    SourceRecord {
        id: RecordId::new(id).expect("a valid id"),
        fields: fields.as_object().expect("an object").clone(),
    }
}

#[test]
fn source_shape_round_trip() {
    let record = project().to_source().unwrap();
    assert_eq!(record.id, "recP1");
    assert_eq!(
        serde_json::Value::Object(record.fields.clone()),
        json!({
            "name": "Hovercraft",
            "event_id": ["recE1"],
            "collaborators": ["recU1", "recU2"],
            "slug": "hovercraft",
            "points": 42,
            "updated_at": "2025-03-01T12:00:00Z",
            "Join Code": "XK-42",
        })
    );
    assert_eq!(
        Project::from_source(record).unwrap(),
        Project {
            scratch: None,
            ..project()
        }
    );

    let record = user().to_source().unwrap();
    assert_eq!(
        serde_json::Value::Object(record.fields.clone()),
        json!({
            "DisplayName": "Ada Lovelace",
            "Email": " Ada@Example.org ",
            "Type": "staff",
            "BestFriendId": ["recU2"],
        }),
        "absent values are left out"
    );
    assert_eq!(User::from_source(record).unwrap(), user());
}

#[test]
fn airtable_shapes() {
    let fields = json!({
        "name": "Hack Day",
        "owner_id": "recU1",
        "status": "draft",
        "Unrelated Lookup": [1, 2, 3],
    });
    let event = Event::from_source(source("recE1", fields)).unwrap();
    assert_eq!(event.owner, Some(Link::new(id("recU1"))));
    assert_eq!(event.starts_at, None);

    for empty in [json!(null), json!([])] {
        let fields = json!({ "name": "x", "owner_id": empty, "status": "draft" });
        assert_eq!(Event::from_source(source("recE1", fields)).unwrap().owner, None);
    }
    let fields = json!({ "name": "x", "owner_id": ["recU1"], "status": "draft" });
    assert!(Event::from_source(source("recE1", fields)).unwrap().owner.is_some());

    let fields = json!({ "name": "x", "owner_id": ["recU1", "recU2"], "status": "draft" });
    match Event::from_source(source("recE1", fields)).unwrap_err() {
        ModelError::Field { entity, field, reason } => {
            assert_eq!((entity, field.as_str()), ("events", "owner_id"));
            assert!(reason.contains("invalid length 2"), "{reason}");
        }
        other => panic!("{other}"),
    }

    let mut fields = project().to_source().unwrap().fields;
    fields.remove("collaborators");
    fields.insert("event_id".into(), json!(["recE9", "recE8"]));
    let err = Project::from_source(SourceRecord {
        id: id("recP1"),
        fields,
    })
    .unwrap_err();
    assert!(
        err.to_string().starts_with("projects.event_id: invalid length 2"),
        "{err}"
    );

    let mut fields = project().to_source().unwrap().fields;
    fields.remove("collaborators");
    let p = Project::from_source(SourceRecord {
        id: id("recP1"),
        fields,
    })
    .unwrap();
    assert!(p.collaborators.is_empty(), "missing links are empty");

    let mut fields = project().to_source().unwrap().fields;
    fields.remove("Join Code");
    let err = Project::from_source(SourceRecord {
        id: id("recP1"),
        fields,
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "projects.Join Code: missing");

    let mut fields = project().to_source().unwrap().fields;
    fields.insert("points".into(), json!("many"));
    let err = Project::from_source(SourceRecord {
        id: id("recP1"),
        fields,
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "projects.points: invalid type: string \"many\", expected i64"
    );
}

/// The model's own serde attributes do not change the cached form or the source shape.
#[derive(Cacheable, Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[cache(entity = "badges")]
struct Badge {
    #[cache(id)]
    id: RecordId,
    #[serde(skip)]
    display_name: String,
    #[serde(rename = "lvl")]
    level_number: u8,
}

#[test]
fn own_serde_attributes_do_not_matter() {
    let badge = Badge {
        id: id("recB1"),
        display_name: "Gold".into(),
        level_number: 3,
    };
    assert_eq!(serde_json::to_string(&badge).unwrap(), r#"{"id":"recB1","lvl":3}"#);
    let cached = badge.to_cached().unwrap();
    assert_eq!(cached, br#"{"id":"recB1","display_name":"Gold","level_number":3}"#);
    assert_eq!(Badge::from_cached(&cached).unwrap(), badge);
    let source = badge.to_source().unwrap();
    assert_eq!(
        serde_json::Value::Object(source.fields.clone()),
        json!({ "display_name": "Gold", "level_number": 3 })
    );
    assert_eq!(Badge::from_source(source).unwrap(), badge);
}

#[test]
fn schema_json() {
    let json = serde_json::to_value(Event::schema()).unwrap();
    assert_eq!(json["entity"], "events");
    assert_eq!(json["tombstone_ttl_secs"], 30 * 60);
    assert_eq!(
        json["fields"],
        json!([
            { "name": "name", "source_name": "name", "rust_type": "String", "kind": "scalar", "target": null,
              "optional": false, "default": false, "index": null, "sortable": false, "skipped": false },
            { "name": "owner", "source_name": "owner_id", "rust_type": "Option<Link<User>>", "kind": "link",
              "target": "users", "optional": true, "default": false, "index": "exact", "sortable": false, "skipped": false },
            { "name": "status", "source_name": "status", "rust_type": "Status", "kind": "scalar", "target": null,
              "optional": false, "default": false, "index": "exact", "sortable": false, "skipped": false },
            { "name": "starts_at", "source_name": "starts_at", "rust_type": "Option<DateTime<Utc>>",
              "kind": "scalar", "target": null, "optional": true, "default": false, "index": null, "sortable": true,
              "skipped": false },
        ])
    );
}
