//! `#[cache(default)]`: a source record that leaves a field out (as Airtable leaves out empty
//! cells) reads as the field's default, per field and per model; everything else about the
//! record is unchanged.

use cache_core::{Cacheable, Link, Links, RecordId, origin::SourceRecord, schema::ModelError};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Defaults field by field: `name` stays required.
#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "scores", source_table = "Scores")]
struct Score {
    #[cache(id)]
    id: RecordId,
    name: String,
    #[cache(default)]
    #[sortable]
    points: i64,
    #[cache(default = "default_level", source = "Level")]
    level: u8,
    #[cache(default = "Score::unrated")]
    rating: String,
    #[cache(default)]
    voter: Option<Link<User>>,
}

impl Score {
    fn unrated() -> String {
        "unrated".to_owned()
    }
}

fn default_level() -> u8 {
    3
}

/// The recommended Airtable model: `#[cache(default)]` on the struct.
#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "votes", source_table = "Votes", default)]
struct Vote {
    #[cache(id)]
    id: RecordId,
    /// A `Link<T>` stays required.
    project: Link<Project>,
    voter: Option<Link<User>>,
    supporters: Links<User>,
    #[sortable]
    points: i64,
    comment: String,
    flagged: bool,
    tags: Vec<String>,
    note: Option<String>,
    /// The field's own default wins over the struct's.
    #[cache(default = "one")]
    weight: f64,
    /// The version stays required.
    #[cache(version)]
    revision: u64,
    #[cache(skip)]
    scratch: Option<String>,
}

fn one() -> f64 {
    1.0
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "projects")]
struct Project {
    #[cache(id)]
    id: RecordId,
}

#[derive(Cacheable, Clone, Debug, PartialEq)]
#[cache(entity = "users")]
struct User {
    #[cache(id)]
    id: RecordId,
}

fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("a valid id")
}

fn record(record_id: &str, fields: Value) -> SourceRecord {
    let Value::Object(fields) = fields else {
        panic!("fields must be an object");
    };
    SourceRecord {
        id: id(record_id),
        fields,
    }
}

fn field_error(err: ModelError) -> (String, String) {
    match err {
        ModelError::Field { field, reason, .. } => (field, reason),
        other => panic!("expected a field error, got {other:?}"),
    }
}

#[test]
fn an_absent_defaulted_field_reads_as_its_default() {
    let score = Score::from_source(record("recS1", json!({ "name": "Ada" }))).unwrap();
    assert_eq!(
        score,
        Score {
            id: id("recS1"),
            name: "Ada".into(),
            points: 0,
            level: 3,
            rating: "unrated".into(),
            voter: None,
        }
    );
}

#[test]
fn null_reads_as_the_default_too() {
    // `to_source` leaves `null` out and reading treats a missing field as `null`: the same
    // record, so the same value.
    let score = Score::from_source(record(
        "recS1",
        json!({ "name": "Ada", "points": null, "Level": null, "rating": null, "voter_id": null }),
    ))
    .unwrap();
    assert_eq!((score.points, score.level, score.rating.as_str()), (0, 3, "unrated"));
    assert_eq!(score.voter, None);
}

#[test]
fn a_present_value_is_read_not_defaulted() {
    let score = Score::from_source(record(
        "recS1",
        json!({ "name": "Ada", "points": 0, "Level": 7, "rating": "", "voter_id": ["recU1"] }),
    ))
    .unwrap();
    assert_eq!((score.points, score.level, score.rating.as_str()), (0, 7, ""));
    assert_eq!(score.voter.unwrap().id(), "recU1");
}

#[test]
fn a_present_bad_value_is_still_an_error_naming_the_field() {
    let err = Score::from_source(record("recS1", json!({ "name": "Ada", "points": "many" }))).unwrap_err();
    let (field, reason) = field_error(err);
    assert_eq!(field, "points");
    assert!(reason.starts_with("invalid type: string \"many\""), "{reason}");
    let err = Score::from_source(record("recS1", json!({ "name": "Ada", "Level": 300 }))).unwrap_err();
    assert_eq!(field_error(err).0, "Level");
}

#[test]
fn an_absent_field_without_default_is_still_missing() {
    let err = Score::from_source(record("recS1", json!({ "points": 4 }))).unwrap_err();
    assert_eq!(err.to_string(), "scores.name: missing");
    assert_eq!(field_error(err), ("name".to_owned(), "missing".to_owned()));
}

#[test]
fn a_struct_default_covers_every_absent_field_but_links_and_the_version() {
    // What Airtable sends for a vote whose cells are all empty but the link and the version.
    let vote = Vote::from_source(record("recV1", json!({ "project_id": ["recP1"], "revision": 2 }))).unwrap();
    assert_eq!(
        vote,
        Vote {
            id: id("recV1"),
            project: Link::new(id("recP1")),
            voter: None,
            supporters: Links::default(),
            points: 0,
            comment: String::new(),
            flagged: false,
            tags: Vec::new(),
            note: None,
            weight: 1.0,
            revision: 2,
            scratch: None,
        }
    );

    let err = Vote::from_source(record("recV1", json!({ "revision": 2 }))).unwrap_err();
    assert_eq!(err.to_string(), "votes.project_id: missing");
    let err = Vote::from_source(record("recV1", json!({ "project_id": ["recP1"] }))).unwrap_err();
    assert_eq!(err.to_string(), "votes.revision: missing");
}

fn full_vote() -> Vote {
    Vote {
        id: id("recV1"),
        project: Link::new(id("recP1")),
        voter: Some(Link::new(id("recU1"))),
        supporters: Links::new(vec![id("recU2"), id("recU3")]),
        points: 5,
        comment: "great".into(),
        flagged: true,
        tags: vec!["a".into()],
        note: Some("n".into()),
        weight: 2.5,
        revision: 7,
        scratch: None,
    }
}

fn empty_vote() -> Vote {
    Vote {
        voter: None,
        supporters: Links::default(),
        points: 0,
        comment: String::new(),
        flagged: false,
        tags: Vec::new(),
        note: None,
        weight: 1.0,
        ..full_vote()
    }
}

#[test]
fn to_source_then_from_source_is_the_same_record() {
    for vote in [full_vote(), empty_vote()] {
        let source = vote.to_source().unwrap();
        assert_eq!(Vote::from_source(source).unwrap(), vote);
        let cached = vote.to_cached().unwrap();
        assert_eq!(Vote::from_cached(&cached).unwrap(), vote);
    }
    for score in [
        Score {
            id: id("recS1"),
            name: "Ada".into(),
            points: 9,
            level: 0,
            rating: String::new(),
            voter: Some(Link::new(id("recU1"))),
        },
        Score::from_source(record("recS2", json!({ "name": "Bob" }))).unwrap(),
    ] {
        assert_eq!(Score::from_source(score.to_source().unwrap()).unwrap(), score);
    }
}

/// Leaves out the cells Airtable leaves out: empty text, empty lists, unchecked boxes.
fn as_airtable_sends_it(source: SourceRecord) -> SourceRecord {
    let fields: Map<String, Value> = source
        .fields
        .into_iter()
        .filter(|(_, value)| !matches!(value, Value::Null | Value::Bool(false)))
        .filter(|(_, value)| value.as_str() != Some("") && value.as_array().is_none_or(|a| !a.is_empty()))
        .collect();
    SourceRecord { id: source.id, fields }
}

#[test]
fn a_record_with_empty_cells_survives_airtable_leaving_them_out() {
    let vote = Vote {
        points: 0,
        weight: 1.0,
        ..empty_vote()
    };
    let sent = as_airtable_sends_it(vote.to_source().unwrap());
    assert_eq!(
        Value::Object(sent.fields.clone()),
        json!({ "project_id": ["recP1"], "points": 0, "weight": 1.0, "revision": 7 })
    );
    assert_eq!(Vote::from_source(sent).unwrap(), vote);
}

#[test]
fn the_schema_says_which_fields_take_a_default() {
    let defaults = |schema: &cache_core::schema::EntitySchema| -> Vec<(&str, bool)> {
        schema.fields.iter().map(|f| (f.name, f.default)).collect()
    };
    assert_eq!(
        defaults(Score::schema()),
        [
            ("name", false),
            ("points", true),
            ("level", true),
            ("rating", true),
            ("voter", true)
        ]
    );
    assert_eq!(
        defaults(Vote::schema()),
        [
            ("project", false),
            ("voter", true),
            ("supporters", true),
            ("points", true),
            ("comment", true),
            ("flagged", true),
            ("tags", true),
            ("note", true),
            ("weight", true),
            ("revision", false),
            ("scratch", false),
        ]
    );
    let may_be_absent: Vec<&str> = Vote::schema()
        .fields
        .iter()
        .filter(|f| !f.may_be_absent())
        .map(|f| f.name)
        .collect();
    assert_eq!(may_be_absent, ["project", "revision"]);

    let json = serde_json::to_value(Score::schema()).unwrap();
    assert_eq!(
        json["fields"][1],
        json!({ "name": "points", "source_name": "points", "rust_type": "i64", "kind": "scalar", "target": null,
                "optional": false, "default": true, "index": null, "sortable": true, "skipped": false })
    );
    assert_eq!(json["fields"][0]["default"], false);
}

#[test]
fn a_default_does_not_change_the_fingerprint() {
    // Only reading from the source changes: what is stored, and so every key, stays the same.
    #[derive(Cacheable)]
    #[cache(entity = "scores")]
    struct Required {
        #[cache(id)]
        id: RecordId,
        name: String,
        #[sortable]
        points: i64,
        #[cache(source = "Level")]
        level: u8,
        rating: String,
        voter: Option<Link<User>>,
    }
    assert_eq!(Required::schema().fingerprint(), Score::schema().fingerprint());
}

fn record_id() -> impl Strategy<Value = RecordId> {
    "rec[A-Za-z0-9]{1,14}".prop_map(|s| id(&s))
}

prop_compose! {
    /// Any vote, empty values included.
    fn any_vote()(
        vote_id in record_id(),
        project in record_id(),
        voter in proptest::option::of(record_id()),
        supporters in proptest::collection::vec(record_id(), 0..3),
        points in prop_oneof![Just(0_i64), any::<i64>()],
        comment in prop_oneof![Just(String::new()), ".*"],
        flagged in any::<bool>(),
        tags in proptest::collection::vec(".*", 0..3),
        // Not `Some("")`: Airtable sends an empty text cell as nothing, which is `None`.
        note in proptest::option::of(".+"),
        weight in prop_oneof![Just(1.0_f64), -1e9..1e9_f64],
        revision in any::<u64>(),
    ) -> Vote {
        Vote {
            id: vote_id,
            project: Link::new(project),
            voter: voter.map(Link::new),
            supporters: Links::new(supporters),
            points,
            comment,
            flagged,
            tags,
            note,
            weight,
            revision,
            scratch: None,
        }
    }
}

proptest! {
    /// Whatever Airtable leaves out, and whichever cells holding their field's default value
    /// are emptied besides (an empty number cell is absent, not `0`), the record reads back as
    /// the one that was written.
    #[test]
    fn a_vote_survives_its_empty_cells_being_left_out(vote in any_vote(), drop in any::<[bool; 2]>()) {
        let mut sent = as_airtable_sends_it(vote.to_source().unwrap());
        for (field, default, dropped) in [("points", json!(0), drop[0]), ("weight", json!(1.0), drop[1])] {
            if dropped && sent.fields.get(field) == Some(&default) {
                sent.fields.remove(field);
            }
        }
        prop_assert_eq!(Vote::from_source(sent).unwrap(), vote);
    }
}
