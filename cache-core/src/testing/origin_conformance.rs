//! The origin conformance suite: what every [`Origin`] must answer, one check per function, run
//! by [`origin_conformance_tests!`](crate::origin_conformance_tests) as one test per check.
//!
//! ```ignore
//! mod conformance {
//!     // Every check calls the factory with the seed; it answers an origin holding exactly
//!     // the seed's records, or `None` to skip (a server the machine does not have).
//!     cache_core::origin_conformance_tests!(crate::seeded_origin);
//! }
//! async fn seeded_origin(seed: cache_core::testing::origin_conformance::OriginSeed) -> Option<impl cache_core::origin::Origin> {
//!     # None::<cache_core::testing::MemoryOrigin>
//! }
//! ```
//!
//! The checks use two hand-built schemas, [`teams`] and [`people`] (every kind of field: text,
//! integer, bool and link filters, a lowercase-normalised lookup, two sortable fields with
//! absent values and ties, a multi-record link, a version). The seed's records are in the
//! source shape a hand-written origin would store ([`OriginSeed`]); an origin may answer any
//! equivalent shape (a single link as `"t1"` or `["t1"]`, a number as `3` or `3.0`): the checks
//! compare what a model would read.
//!
//! The calling crate needs `tokio` (with `macros` and `rt`) as a dev-dependency.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::LazyLock,
};

use serde_json::{Map, Value, json};

use crate::{
    Order, RecordId, order,
    origin::{Origin, SourceFilter, SourceQuery, SourceRecord},
    schema::{EntitySchema, FieldKind, FieldSchema, IndexKind},
};

/// Expands to one `#[tokio::test]` per origin conformance check, each calling `$factory` (a
/// path to an `async fn(OriginSeed) -> Option<impl Origin>`) for a freshly seeded origin.
///
/// ```ignore
/// cache_core::origin_conformance_tests!(seeded_origin);
/// ```
#[macro_export]
macro_rules! origin_conformance_tests {
    ($factory:path $(,)?) => {
        $crate::__origin_conformance_tests! {
            ($factory)
            fetch_returns_the_seeded_record,
            fetch_of_an_unknown_id_is_none,
            fetch_many_leaves_out_missing_ids,
            exists_many_answers_the_present_ids,
            query_filters_on_text,
            query_filters_on_integers,
            query_filters_on_bools,
            query_filters_on_links,
            query_filters_on_normalised_values,
            query_intersects_filters,
            query_with_a_value_no_row_holds_is_empty,
            query_without_sort_orders_by_id_text,
            query_sorts_ascending_with_absent_values_first,
            query_sorts_descending_with_ties_by_id,
            query_pages_with_offset_and_limit,
            delete_answers_the_deleted_version_once,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __origin_conformance_tests {
    (($factory:path) $($check:ident,)*) => {
        $(
            #[::tokio::test]
            async fn $check() {
                $crate::testing::origin_conformance::$check($factory).await;
            }
        )*
    };
}

// ------------------------------------------------------------------ fixtures

fn indexed(name: &'static str, source: &'static str, rust_type: &'static str, kind: IndexKind) -> FieldSchema {
    let mut field = FieldSchema::scalar(name, rust_type);
    field.source_name = source;
    field.index = Some(kind);
    field
}

/// `conformance_teams` (table `conformance_teams`): `name`.
pub fn teams() -> &'static EntitySchema {
    static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
        EntitySchema::builder("conformance_teams")
            .source_table("conformance_teams")
            .field(FieldSchema::scalar("name", "String"))
            .build()
    });
    &SCHEMA
}

/// `conformance_people` (table `conformance_people`), one field of each kind. Fields by Rust
/// name, with their source name (the column) where it differs:
///
/// | field | source | type | |
/// |---|---|---|---|
/// | `name` | | `String` | |
/// | `email` | | `String` | indexed, lowercase |
/// | `status` | | `String` | indexed |
/// | `level` | | `i64` | indexed |
/// | `active` | | `bool` | indexed |
/// | `team` | `team_id` | `Option<Link<Team>>` | indexed |
/// | `mentors` | `mentor_ids` | `Links<Person>` | |
/// | `points` | | `Option<i64>` | sortable |
/// | `rating` | | `f64` | sortable |
/// | `version` | | `i64` | the version |
pub fn people() -> &'static EntitySchema {
    static SCHEMA: LazyLock<EntitySchema> = LazyLock::new(|| {
        let mut team = indexed("team", "team_id", "Option<Link<Team>>", IndexKind::Exact);
        team.kind = FieldKind::Link { target: teams };
        team.optional = true;
        let mut mentors = FieldSchema::scalar("mentors", "Links<Person>");
        mentors.source_name = "mentor_ids";
        mentors.kind = FieldKind::Links { target: people };
        let mut points = FieldSchema::scalar("points", "Option<i64>");
        points.sortable = true;
        points.optional = true;
        let mut rating = FieldSchema::scalar("rating", "f64");
        rating.sortable = true;
        EntitySchema::builder("conformance_people")
            .source_table("conformance_people")
            .version_field("version")
            .field(FieldSchema::scalar("name", "String"))
            .field(indexed("email", "email", "String", IndexKind::Lowercase))
            .field(indexed("status", "status", "String", IndexKind::Exact))
            .field(indexed("level", "level", "i64", IndexKind::Exact))
            .field(indexed("active", "active", "bool", IndexKind::Exact))
            .field(team)
            .field(mentors)
            .field(points)
            .field(rating)
            .field(FieldSchema::scalar("version", "i64"))
            .build()
    });
    &SCHEMA
}

/// What an origin under test holds: records per entity, in source shape (fields keyed by
/// source name, single links as one-element arrays, absent values left out).
#[derive(Debug, Clone)]
pub struct OriginSeed {
    /// Each entity with its records.
    pub entities: Vec<(&'static EntitySchema, Vec<SourceRecord>)>,
}

struct Person {
    id: &'static str,
    name: String,
    email: String,
    status: &'static str,
    level: i64,
    active: bool,
    team: Option<&'static str>,
    mentors: Vec<&'static str>,
    points: Option<i64>,
    rating: f64,
    version: i64,
}

fn id(s: &str) -> RecordId {
    RecordId::new(s).expect("fixture ids are valid")
}

fn persons() -> Vec<Person> {
    let mut out = vec![
        Person {
            id: "p1",
            name: "Ada".into(),
            email: " Ada@Example.com ".into(),
            status: "open",
            level: 1,
            active: true,
            team: Some("t1"),
            mentors: vec!["p2", "p3"],
            points: Some(30),
            rating: 4.5,
            version: 3,
        },
        Person {
            id: "p2",
            name: "Bob".into(),
            email: "bob@example.com".into(),
            status: "closed",
            level: 2,
            active: false,
            team: Some("t1"),
            mentors: vec![],
            points: Some(10),
            rating: 2.0,
            version: 1,
        },
        Person {
            id: "p3",
            name: "Cy".into(),
            email: "CY@EXAMPLE.COM".into(),
            status: "open",
            level: 2,
            active: true,
            team: Some("t2"),
            mentors: vec!["p1"],
            points: None,
            rating: 3.0,
            version: 2,
        },
        Person {
            id: "p4",
            name: "Dee".into(),
            email: "dee@example.com".into(),
            status: "open",
            level: 1,
            active: true,
            team: Some("t2"),
            mentors: vec![],
            points: Some(30),
            rating: -1.5,
            version: 5,
        },
        Person {
            id: "p5",
            name: "Éve".into(),
            // Non-ASCII: the normalised value is Unicode lower case, not ASCII lower case.
            email: "ÉVE@Example.com".into(),
            status: "closed",
            level: 3,
            active: false,
            team: None,
            mentors: vec![],
            points: Some(20),
            rating: 0.0,
            version: 1,
        },
    ];
    let more: [(&'static str, Option<i64>); 7] = [
        ("p6", Some(30)),
        ("p7", None),
        ("p8", Some(10)),
        ("p9", Some(45)),
        ("p10", Some(20)),
        ("p11", None),
        ("p12", Some(0)),
    ];
    for (n, (pid, points)) in (6_i64..).zip(more) {
        out.push(Person {
            id: pid,
            name: format!("P{n}"),
            email: format!("{pid}@example.com"),
            status: if n % 2 == 0 { "draft" } else { "open" },
            level: n % 3,
            active: n % 2 == 0,
            team: Some("t3"),
            mentors: vec![],
            points,
            rating: n as f64 / 2.0,
            version: 1,
        });
    }
    out
}

impl Person {
    fn source(&self) -> SourceRecord {
        let mut fields = Map::new();
        fields.insert("name".into(), json!(self.name));
        fields.insert("email".into(), json!(self.email));
        fields.insert("status".into(), json!(self.status));
        fields.insert("level".into(), json!(self.level));
        fields.insert("active".into(), json!(self.active));
        if let Some(team) = self.team {
            fields.insert("team_id".into(), json!([team]));
        }
        fields.insert("mentor_ids".into(), json!(self.mentors));
        if let Some(points) = self.points {
            fields.insert("points".into(), json!(points));
        }
        fields.insert("rating".into(), json!(self.rating));
        fields.insert("version".into(), json!(self.version));
        SourceRecord {
            id: id(self.id),
            fields,
        }
    }

    /// The index entry of a field, as the cache computes it.
    fn tag(&self, field: &str) -> Option<String> {
        match field {
            "email" => Some(IndexKind::Lowercase.normalize(self.email.clone())),
            "status" => Some(self.status.to_owned()),
            "level" => Some(self.level.to_string()),
            "active" => Some(self.active.to_string()),
            "team" => self.team.map(str::to_owned),
            _ => None,
        }
    }

    fn score(&self, field: &str) -> f64 {
        match field {
            "points" => self.points.map_or(f64::NEG_INFINITY, |p| p as f64),
            "rating" => self.rating,
            _ => f64::NEG_INFINITY,
        }
    }
}

/// The records every origin under test holds.
pub fn seed() -> OriginSeed {
    let team = |tid: &str, name: &str| {
        let mut fields = Map::new();
        fields.insert("name".into(), json!(name));
        SourceRecord { id: id(tid), fields }
    };
    OriginSeed {
        entities: vec![
            (
                teams(),
                vec![
                    team("t1", "Red"),
                    team("t2", "Blue"),
                    team("t3", "Green"),
                    team("t4", "Spare"),
                ],
            ),
            (people(), persons().iter().map(Person::source).collect()),
        ],
    }
}

/// A record as a model would read it: links as id lists, numbers as `f64`, absent values
/// left out.
fn canonical(schema: &EntitySchema, record: &SourceRecord) -> (RecordId, BTreeMap<&'static str, Value>) {
    let ids = |v: &Value| -> Value {
        let one = |v: &Value| match v {
            Value::String(s) => Value::String(s.clone()),
            other => Value::String(other.to_string()),
        };
        match v {
            Value::Array(items) => Value::Array(items.iter().map(one).collect()),
            other => Value::Array(vec![one(other)]),
        }
    };
    let mut out = BTreeMap::new();
    for field in &schema.fields {
        let Some(value) = record.fields.get(field.source_name).filter(|v| !v.is_null()) else {
            continue;
        };
        let value = match (field.kind, value) {
            (FieldKind::Link { .. } | FieldKind::Links { .. }, v) => ids(v),
            (FieldKind::Scalar, Value::Number(n)) => json!(n.as_f64()),
            (FieldKind::Scalar, v) => v.clone(),
        };
        out.insert(field.name, value);
    }
    (record.id.clone(), out)
}

fn expected(schema: &EntitySchema, rid: &str) -> (RecordId, BTreeMap<&'static str, Value>) {
    let seed = seed();
    let record = seed
        .entities
        .iter()
        .filter(|(s, _)| s.entity == schema.entity)
        .flat_map(|(_, records)| records)
        .find(|r| r.id.as_str() == rid)
        .expect("the fixture has the record");
    canonical(schema, record)
}

async fn origin<F, Fut, O>(factory: F) -> Option<O>
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    factory(seed()).await
}

fn filter(field: &str, value: &str) -> SourceFilter {
    SourceFilter {
        field: people().field(field).expect("a fixture field"),
        value: value.to_owned(),
    }
}

fn source_query(
    filters: Vec<SourceFilter>,
    sort: Option<(&str, Order)>,
    offset: usize,
    limit: Option<usize>,
) -> SourceQuery {
    SourceQuery {
        filters,
        sort: sort.map(|(f, o)| (people().field(f).expect("a fixture field"), o)),
        offset,
        limit,
    }
}

/// The ids a query must answer, in order: the seed filtered by the cache's index entries and
/// ordered by [`order::compare_scored`].
fn reference(query: &SourceQuery) -> Vec<String> {
    let mut matching: Vec<(f64, &'static str)> = persons()
        .iter()
        .filter(|p| {
            query
                .filters
                .iter()
                .all(|f| p.tag(f.field.name).as_deref() == Some(f.value.as_str()))
        })
        .map(|p| (query.sort.map_or(f64::NEG_INFINITY, |(f, _)| p.score(f.name)), p.id))
        .collect();
    let direction = query.sort.map(|(_, o)| o);
    matching.sort_by(|a, b| order::compare_scored((a.0, a.1), (b.0, b.1), direction));
    matching
        .into_iter()
        .skip(query.offset)
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|(_, pid)| pid.to_owned())
        .collect()
}

async fn ids_of<O: Origin>(origin: &O, query: &SourceQuery) -> Vec<String> {
    let records = origin.query(people(), query).await.expect("the query answers");
    for record in &records {
        assert_eq!(
            canonical(people(), record),
            expected(people(), record.id.as_str()),
            "a query answers whole records"
        );
    }
    records.into_iter().map(|r| r.id.as_str().to_owned()).collect()
}

async fn assert_query<O: Origin>(origin: &O, query: SourceQuery, literal: &[&str]) {
    let want = reference(&query);
    assert_eq!(want, literal, "the suite's reference agrees with the listed answer");
    assert_eq!(ids_of(origin, &query).await, literal, "query {query:?}");
}

fn set(ids: impl IntoIterator<Item = RecordId>) -> BTreeSet<String> {
    ids.into_iter().map(|id| id.as_str().to_owned()).collect()
}

// ------------------------------------------------------------------ checks

/// `fetch` answers a seeded record whole, with every field kind and a non-ASCII value.
pub async fn fetch_returns_the_seeded_record<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    for pid in ["p1", "p3", "p5", "p11"] {
        let record = origin.fetch(people(), &id(pid)).await.expect("fetch answers");
        let record = record.unwrap_or_else(|| panic!("{pid} is found"));
        assert_eq!(canonical(people(), &record), expected(people(), pid), "{pid}");
    }
    let team = origin.fetch(teams(), &id("t2")).await.expect("fetch answers");
    assert_eq!(canonical(teams(), &team.expect("t2 is found")), expected(teams(), "t2"));
}

/// `fetch` of an id the entity does not have is `None`, also when another entity has it.
pub async fn fetch_of_an_unknown_id_is_none<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    for missing in ["p99", "t1", "P1"] {
        assert!(
            origin
                .fetch(people(), &id(missing))
                .await
                .expect("fetch answers")
                .is_none(),
            "{missing} is not a person"
        );
    }
}

/// `fetch_many` answers the ids it has, whole, and leaves out the others.
pub async fn fetch_many_leaves_out_missing_ids<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    let asked = [id("p3"), id("p99"), id("p10"), id("t1"), id("p1")];
    let records = origin.fetch_many(people(), &asked).await.expect("fetch_many answers");
    assert_eq!(
        set(records.iter().map(|r| r.id.clone())),
        set([id("p1"), id("p3"), id("p10")])
    );
    for record in &records {
        assert_eq!(canonical(people(), record), expected(people(), record.id.as_str()));
    }
    assert!(origin.fetch_many(people(), &[]).await.expect("answers").is_empty());
    assert!(
        origin
            .fetch_many(people(), &[id("nobody")])
            .await
            .expect("answers")
            .is_empty()
    );
}

/// `exists_many` answers exactly the ids the source has.
pub async fn exists_many_answers_the_present_ids<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    let asked = [id("p2"), id("p98"), id("p12"), id("t2")];
    let present = origin.exists_many(people(), &asked).await.expect("exists_many answers");
    assert_eq!(set(present), set([id("p2"), id("p12")]));
    let teams_present = origin.exists_many(teams(), &asked).await.expect("answers");
    assert_eq!(set(teams_present), set([id("t2")]));
    assert!(origin.exists_many(people(), &[]).await.expect("answers").is_empty());
}

/// An exact filter on a text field.
pub async fn query_filters_on_text<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(
        &origin,
        source_query(vec![filter("status", "closed")], None, 0, None),
        &["p2", "p5"],
    )
    .await;
    assert_query(
        &origin,
        source_query(vec![filter("status", "draft")], None, 0, None),
        &["p10", "p12", "p6", "p8"],
    )
    .await;
    // Exact means exact: no case folding.
    assert_query(
        &origin,
        source_query(vec![filter("status", "Closed")], None, 0, None),
        &[],
    )
    .await;
}

/// An exact filter on an integer field.
pub async fn query_filters_on_integers<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(
        &origin,
        source_query(vec![filter("level", "2")], None, 0, None),
        &["p11", "p2", "p3", "p8"],
    )
    .await;
    assert_query(
        &origin,
        source_query(vec![filter("level", "0")], None, 0, None),
        &["p12", "p6", "p9"],
    )
    .await;
}

/// An exact filter on a bool field.
pub async fn query_filters_on_bools<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(
        &origin,
        source_query(vec![filter("active", "false")], None, 0, None),
        &["p11", "p2", "p5", "p7", "p9"],
    )
    .await;
    assert_query(
        &origin,
        source_query(vec![filter("active", "true")], None, 0, None),
        &["p1", "p10", "p12", "p3", "p4", "p6", "p8"],
    )
    .await;
}

/// An exact filter on a single-record link: the linked id.
pub async fn query_filters_on_links<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(
        &origin,
        source_query(vec![filter("team", "t2")], None, 0, None),
        &["p3", "p4"],
    )
    .await;
    assert_query(&origin, source_query(vec![filter("team", "t9")], None, 0, None), &[]).await;
}

/// A lowercase-normalised lookup: the value normalised as the cache normalises it (trimmed,
/// Unicode lower case) finds the record whatever case and spaces it was written with.
pub async fn query_filters_on_normalised_values<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    for (value, want) in [
        ("ada@example.com", "p1"),
        ("cy@example.com", "p3"),
        ("éve@example.com", "p5"),
        ("p10@example.com", "p10"),
    ] {
        let value = IndexKind::Lowercase.normalize(value.to_owned());
        assert_query(
            &origin,
            source_query(vec![filter("email", &value)], None, 0, None),
            &[want],
        )
        .await;
    }
    assert_query(
        &origin,
        source_query(vec![filter("email", "nobody@example.com")], None, 0, None),
        &[],
    )
    .await;
}

/// Several filters: all of them hold.
pub async fn query_intersects_filters<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(
        &origin,
        source_query(vec![filter("status", "open"), filter("active", "true")], None, 0, None),
        &["p1", "p3", "p4"],
    )
    .await;
    assert_query(
        &origin,
        source_query(
            vec![filter("status", "open"), filter("active", "true"), filter("team", "t2")],
            Some(("points", Order::Desc)),
            0,
            None,
        ),
        &["p4", "p3"],
    )
    .await;
    assert_query(
        &origin,
        source_query(vec![filter("status", "closed"), filter("level", "1")], None, 0, None),
        &[],
    )
    .await;
}

/// A filter value that no row can hold (not an integer, for an integer field) matches
/// nothing; it is not an error.
pub async fn query_with_a_value_no_row_holds_is_empty<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(&origin, source_query(vec![filter("level", "two")], None, 0, None), &[]).await;
    assert_query(&origin, source_query(vec![filter("level", "02")], None, 0, None), &[]).await;
    assert_query(&origin, source_query(vec![filter("active", "yes")], None, 0, None), &[]).await;
}

/// Unsorted results come in id order, the ids compared as text (`p10` before `p2`).
pub async fn query_without_sort_orders_by_id_text<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(
        &origin,
        source_query(vec![], None, 0, None),
        &[
            "p1", "p10", "p11", "p12", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9",
        ],
    )
    .await;
}

/// Ascending: absent values first, ties by id ascending; negative numbers and zero in order.
pub async fn query_sorts_ascending_with_absent_values_first<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(
        &origin,
        source_query(vec![], Some(("points", Order::Asc)), 0, None),
        &[
            "p11", "p3", "p7", "p12", "p2", "p8", "p10", "p5", "p1", "p4", "p6", "p9",
        ],
    )
    .await;
    assert_query(
        &origin,
        source_query(vec![filter("status", "open")], Some(("rating", Order::Asc)), 0, None),
        &["p4", "p3", "p7", "p1", "p9", "p11"],
    )
    .await;
}

/// Descending: both the score and the id tie-break reversed, absent values last.
pub async fn query_sorts_descending_with_ties_by_id<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    assert_query(
        &origin,
        source_query(vec![], Some(("points", Order::Desc)), 0, None),
        &[
            "p9", "p6", "p4", "p1", "p5", "p10", "p8", "p2", "p12", "p7", "p3", "p11",
        ],
    )
    .await;
}

/// Pages with offset and limit are slices of the whole order, for each order.
pub async fn query_pages_with_offset_and_limit<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    for sort in [
        None,
        Some(("points", Order::Asc)),
        Some(("points", Order::Desc)),
        Some(("rating", Order::Desc)),
    ] {
        let whole = ids_of(&origin, &source_query(vec![], sort, 0, None)).await;
        assert_eq!(whole, reference(&source_query(vec![], sort, 0, None)), "{sort:?}");
        let mut paged = Vec::new();
        for offset in (0..whole.len() + 5).step_by(5) {
            paged.extend(ids_of(&origin, &source_query(vec![], sort, offset, Some(5))).await);
        }
        assert_eq!(paged, whole, "pages of 5 in {sort:?}");
        assert_eq!(
            ids_of(&origin, &source_query(vec![], sort, 3, None)).await,
            whole[3..].to_vec(),
            "an offset without a limit"
        );
        assert!(
            ids_of(&origin, &source_query(vec![], sort, 0, Some(0)))
                .await
                .is_empty()
        );
        assert!(
            ids_of(&origin, &source_query(vec![], sort, 100, Some(5)))
                .await
                .is_empty()
        );
    }
}

/// `delete` answers the deleted record's version once; the record is gone afterwards.
pub async fn delete_answers_the_deleted_version_once<F, Fut, O>(factory: F)
where
    F: FnOnce(OriginSeed) -> Fut,
    Fut: Future<Output = Option<O>>,
    O: Origin,
{
    let Some(origin) = origin(factory).await else { return };
    let deleted = origin.delete(people(), &id("p3")).await.expect("delete answers");
    let deleted = deleted.expect("p3 existed");
    assert_eq!(deleted.version, Some(2.0), "the deleted row's version");
    assert!(origin.fetch(people(), &id("p3")).await.expect("answers").is_none());
    assert!(
        origin
            .exists_many(people(), &[id("p3"), id("p4")])
            .await
            .expect("answers")
            .iter()
            .all(|i| i.as_str() == "p4")
    );
    assert!(
        origin.delete(people(), &id("p3")).await.expect("answers").is_none(),
        "a second delete finds nothing"
    );
    assert!(origin.delete(people(), &id("p99")).await.expect("answers").is_none());
    let team = origin
        .delete(teams(), &id("t4"))
        .await
        .expect("answers")
        .expect("t4 existed");
    assert_eq!(team.version, None, "an entity without a version field");
    assert_eq!(
        ids_of(&origin, &source_query(vec![filter("team", "t2")], None, 0, None)).await,
        ["p4"],
        "queries no longer see it"
    );
}
