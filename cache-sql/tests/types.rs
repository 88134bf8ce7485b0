//! Native column types read into the models, on PostgreSQL and SQLite; the start-up check;
//! a model gaining a field and its table a column.

mod common;

use std::sync::Arc;

use cache_core::{
    Cache, Cacheable, Link, Links, MemoryStore, Order, RecordId,
    origin::{Origin, SourceQuery},
};
use cache_sql::{SqlError, SqlOrigin};
use chrono::{DateTime, TimeZone, Utc};
use common::{HeldOrigin, TestDb};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    color: String,
    sizes: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "owners", source_table = "owners")]
struct Owner {
    #[cache(id)]
    id: RecordId,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "parts", source_table = "parts")]
struct Part {
    #[cache(id)]
    id: RecordId,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "gadgets", source_table = "gadgets")]
struct Gadget {
    #[cache(id)]
    id: RecordId,
    serial_no: String,
    label: String,
    small: i16,
    count: Option<i32>,
    big: i64,
    price: f64,
    ratio: f32,
    #[indexed]
    enabled: bool,
    #[sortable]
    made_at: DateTime<Utc>,
    seen_at: Option<DateTime<Utc>>,
    meta: Meta,
    extra: Option<serde_json::Value>,
    tags: Vec<String>,
    #[cache(source = "owner_id")]
    #[indexed]
    owner: Option<Link<Owner>>,
    #[cache(source = "part_ids")]
    parts: Links<Part>,
    #[cache(version)]
    updated_at: DateTime<Utc>,
}

/// Owners with the ids of their gadgets, aggregated by a view.
#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "owner_gadgets", source_table = "owner_gadgets")]
struct OwnerGadgets {
    #[cache(id)]
    id: RecordId,
    name: String,
    #[cache(source = "gadget_ids")]
    gadgets: Links<Gadget>,
}

const OWNER: &str = "7c9e6679-7425-40de-944b-e07fc1f90ae7";

const POSTGRES: &str = r#"
    CREATE TABLE owners (id uuid PRIMARY KEY, name text NOT NULL);
    CREATE TABLE parts (id bigint PRIMARY KEY, name text NOT NULL);
    CREATE TABLE gadgets (
        id bigint PRIMARY KEY,
        serial_no uuid NOT NULL,
        label text NOT NULL,
        small smallint NOT NULL,
        count integer,
        big bigint NOT NULL,
        price numeric(10, 2) NOT NULL,
        ratio real NOT NULL,
        enabled boolean NOT NULL,
        made_at timestamptz NOT NULL,
        seen_at timestamp,
        meta jsonb NOT NULL,
        extra json,
        tags text[] NOT NULL,
        owner_id uuid REFERENCES owners (id),
        part_ids bigint[] NOT NULL,
        updated_at timestamptz NOT NULL
    );
    CREATE VIEW owner_gadgets AS
        SELECT o.id, o.name, COALESCE(array_agg(g.id ORDER BY g.id) FILTER (WHERE g.id IS NOT NULL), '{}') AS gadget_ids
        FROM owners o LEFT JOIN gadgets g ON g.owner_id = o.id GROUP BY o.id, o.name;
    INSERT INTO owners VALUES ('7c9e6679-7425-40de-944b-e07fc1f90ae7', 'Grace');
    INSERT INTO parts VALUES (1, 'gear'), (2, 'spring'), (10, 'lever');
    INSERT INTO gadgets VALUES (
        9, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'clock', -3, NULL, 9007199254740993, 12.50, 0.25, true,
        '2024-05-01 12:00:00.123456+02', '2024-05-01 08:30:00', '{"color": "red", "sizes": [1, 2]}', NULL,
        '{a,"b c"}', '7c9e6679-7425-40de-944b-e07fc1f90ae7', '{1,10}', '2024-06-01 00:00:00.5+00'
    );
    INSERT INTO gadgets VALUES (
        10, 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 'lamp', 1, 7, 0, 3, 1.5, false,
        '2024-05-01 10:00:00.123999+00', NULL, '{"color": "blue", "sizes": []}', '{"any": ["thing"]}',
        '{}', NULL, '{}', '2024-06-02 00:00:00+00'
    )
"#;

const SQLITE: &str = r#"
    CREATE TABLE owners (id TEXT PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
    CREATE TABLE gadgets (
        id INTEGER PRIMARY KEY,
        serial_no TEXT NOT NULL,
        label TEXT NOT NULL,
        small INTEGER NOT NULL,
        count INTEGER,
        big BIGINT NOT NULL,
        price NUMERIC NOT NULL,
        ratio REAL NOT NULL,
        enabled BOOLEAN NOT NULL,
        made_at TIMESTAMP NOT NULL,
        seen_at DATETIME,
        meta JSON NOT NULL,
        extra JSON,
        tags JSON NOT NULL,
        owner_id TEXT REFERENCES owners (id),
        part_ids JSON NOT NULL,
        updated_at TIMESTAMP NOT NULL
    );
    CREATE VIEW owner_gadgets AS
        SELECT o.id, o.name,
            (SELECT json_group_array(g.id) FROM (SELECT id FROM gadgets WHERE owner_id = o.id ORDER BY id) g) AS gadget_ids
        FROM owners o;
    INSERT INTO owners VALUES ('7c9e6679-7425-40de-944b-e07fc1f90ae7', 'Grace');
    INSERT INTO parts VALUES (1, 'gear'), (2, 'spring'), (10, 'lever');
    INSERT INTO gadgets VALUES (
        9, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'clock', -3, NULL, 9007199254740993, 12.50, 0.25, 1,
        '2024-05-01T12:00:00.123456+02:00', '2024-05-01T08:30:00Z', '{"color": "red", "sizes": [1, 2]}', NULL,
        '["a", "b c"]', '7c9e6679-7425-40de-944b-e07fc1f90ae7', '[1, 10]', '2024-06-01T00:00:00.5Z'
    );
    INSERT INTO gadgets VALUES (
        10, 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12', 'lamp', 1, 7, 0, 3, 1.5, 0,
        '2024-05-01T10:00:00.123999Z', NULL, '{"color": "blue", "sizes": []}', '{"any": ["thing"]}',
        '[]', NULL, '[]', '2024-06-02T00:00:00Z'
    )
"#;

fn rid(s: &str) -> RecordId {
    s.parse().expect("a valid id")
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, micros: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().expect("a valid time")
        + chrono::Duration::microseconds(i64::from(micros))
}

/// The first gadget, as both databases hold it.
fn clock() -> Gadget {
    Gadget {
        id: rid("9"),
        serial_no: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11".into(),
        label: "clock".into(),
        small: -3,
        count: None,
        big: 9_007_199_254_740_993,
        price: 12.5,
        ratio: 0.25,
        enabled: true,
        // 12:00 at +02:00 is 10:00 UTC; both databases read it back in UTC.
        made_at: at(2024, 5, 1, 10, 0, 0, 123_456),
        // A timestamp without time zone is read as UTC.
        seen_at: Some(at(2024, 5, 1, 8, 30, 0, 0)),
        meta: Meta {
            color: "red".into(),
            sizes: vec![1, 2],
        },
        extra: None,
        tags: vec!["a".into(), "b c".into()],
        owner: Some(Link::new(rid(OWNER))),
        parts: Links::new(vec![rid("1"), rid("10")]),
        updated_at: at(2024, 6, 1, 0, 0, 0, 500_000),
    }
}

async fn origin(db: TestDb, tables: &str) -> HeldOrigin {
    db.execute(tables).await;
    let origin = SqlOrigin::builder(db.pool())
        .model::<Owner>()
        .model::<Part>()
        .model::<Gadget>()
        .model::<OwnerGadgets>()
        .build()
        .await
        .expect("the tables answer the models");
    HeldOrigin {
        origin,
        db: Arc::new(db),
    }
}

async fn native_types_read_into_the_model(db: TestDb, tables: &str) {
    let origin = origin(db, tables).await;
    let record = origin
        .fetch(Gadget::schema(), &rid("9"))
        .await
        .expect("fetch answers")
        .expect("gadget 9 exists");
    assert_eq!(record.id.as_str(), "9", "an integer key as text");
    assert_eq!(Gadget::from_source(record).expect("reads as a Gadget"), clock());

    let lamp = origin
        .fetch(Gadget::schema(), &rid("10"))
        .await
        .expect("fetch answers")
        .expect("gadget 10 exists");
    let lamp = Gadget::from_source(lamp).expect("reads as a Gadget");
    assert_eq!(lamp.owner, None, "a NULL foreign key is no link");
    assert!(lamp.parts.is_empty());
    assert_eq!(lamp.extra, Some(serde_json::json!({"any": ["thing"]})));
    assert_eq!(lamp.price, 3.0);

    let owner = origin
        .fetch(Owner::schema(), &rid(OWNER))
        .await
        .expect("fetch answers")
        .expect("a uuid key");
    assert_eq!(Owner::from_source(owner).expect("reads").name, "Grace");
    // A uuid key only as the database renders it.
    let upper = rid(&OWNER.to_uppercase());
    assert!(origin.fetch(Owner::schema(), &upper).await.expect("answers").is_none());
    assert!(
        origin
            .fetch(Gadget::schema(), &rid("09"))
            .await
            .expect("answers")
            .is_none()
    );
    assert!(
        origin
            .fetch(Gadget::schema(), &rid("nine"))
            .await
            .expect("answers")
            .is_none()
    );

    let aggregated = origin
        .fetch(OwnerGadgets::schema(), &rid(OWNER))
        .await
        .expect("fetch answers")
        .expect("the view has the owner");
    let aggregated = OwnerGadgets::from_source(aggregated).expect("reads");
    assert_eq!(aggregated.gadgets.ids(), [rid("9")], "Links from a view");

    // Through the cache: a query on an indexed foreign key, sorted by a timestamp.
    let cache = Cache::builder(MemoryStore::new(), origin.clone())
        .register::<Gadget>()
        .register::<Owner>()
        .build()
        .expect("a cache");
    let owned: Vec<Gadget> = cache
        .query(Gadget::by_owner(&rid(OWNER)))
        .await
        .expect("the query answers");
    assert_eq!(owned, vec![clock()]);
    let newest: Vec<Gadget> = cache
        .query(Gadget::by_enabled(&false).desc(GadgetSort::MadeAt))
        .await
        .expect("the query answers");
    assert_eq!(newest, vec![lamp.clone()]);

    let deleted = origin
        .delete(Gadget::schema(), &rid("10"))
        .await
        .expect("delete answers")
        .expect("gadget 10 existed");
    assert_eq!(
        deleted.version,
        lamp.version(),
        "the deleted row's version, as the model computes it"
    );
    let last = Gadget::from_source(deleted.record.expect("the deleted row")).expect("reads as a Gadget");
    assert_eq!(last, lamp, "the row as it was when deleted");
}

#[tokio::test]
async fn postgres_native_types_read_into_the_model() {
    let Some(db) = TestDb::postgres().await else { return };
    native_types_read_into_the_model(db, POSTGRES).await;
}

#[tokio::test]
async fn sqlite_native_types_read_into_the_model() {
    native_types_read_into_the_model(TestDb::sqlite().await, SQLITE).await;
}

/// Times within one millisecond tie in the cache (scores are milliseconds) and are ordered
/// by id; the origin orders them the same way.
async fn times_in_one_millisecond_tie_by_id(db: TestDb, tables: &str) {
    let origin = origin(db, tables).await;
    // By the native value, 9 comes first ascending; by score (a tie), 10 ("10" < "9").
    let (lo, hi) = if origin.db.is_postgres() {
        ("'2024-05-01 10:00:00.123001+00'", "'2024-05-01 10:00:00.123999+00'")
    } else {
        ("'2024-05-01T10:00:00.123001Z'", "'2024-05-01T10:00:00.123999Z'")
    };
    origin
        .db
        .execute(&format!(
            "UPDATE gadgets SET made_at = {lo}, enabled = false WHERE id = 9; UPDATE gadgets SET made_at = {hi} WHERE id = 10"
        ))
        .await;
    let schema = Gadget::schema();
    for (order, want) in [(Order::Asc, ["10", "9"]), (Order::Desc, ["9", "10"])] {
        let query = SourceQuery {
            filters: vec![],
            sort: Some((schema.field("made_at").expect("a field"), order)),
            offset: 0,
            limit: None,
        };
        let records = origin.query(schema, &query).await.expect("answers");
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, want, "{order:?}");
    }
}

#[tokio::test]
async fn postgres_times_in_one_millisecond_tie_by_id() {
    let Some(db) = TestDb::postgres().await else { return };
    times_in_one_millisecond_tie_by_id(db, POSTGRES).await;
}

#[tokio::test]
async fn sqlite_times_in_one_millisecond_tie_by_id() {
    times_in_one_millisecond_tie_by_id(TestDb::sqlite().await, SQLITE).await;
}

mod v1 {
    use cache_core::{Cacheable, RecordId};

    #[derive(Debug, Clone, PartialEq, Cacheable)]
    #[cache(entity = "notes", source_table = "notes")]
    pub(crate) struct Note {
        #[cache(id)]
        pub(crate) id: RecordId,
        pub(crate) title: String,
    }
}

mod v2 {
    use cache_core::{Cacheable, RecordId};

    /// `Note` gaining a field: no origin code changes, only the model and the table.
    #[derive(Debug, Clone, PartialEq, Cacheable)]
    #[cache(entity = "notes", source_table = "notes")]
    pub(crate) struct Note {
        #[cache(id)]
        pub(crate) id: RecordId,
        pub(crate) title: String,
        #[indexed]
        pub(crate) pinned: bool,
    }
}

async fn a_model_gains_a_field_and_its_table_a_column(db: TestDb) {
    db.execute("CREATE TABLE notes (id TEXT PRIMARY KEY, title TEXT NOT NULL); INSERT INTO notes VALUES ('n1', 'hello'), ('n2', 'world')")
        .await;
    let before = SqlOrigin::builder(db.pool())
        .model::<v1::Note>()
        .build()
        .await
        .expect("v1 reads notes");
    let n1 = before
        .fetch(v1::Note::schema(), &rid("n1"))
        .await
        .expect("answers")
        .expect("n1");
    assert_eq!(v1::Note::from_source(n1).expect("reads").title, "hello");

    // The new model against the old table is refused at start-up, naming table and column.
    let refused = SqlOrigin::builder(db.pool()).model::<v2::Note>().build().await;
    match refused {
        Err(err @ SqlError::NoColumn { .. }) => {
            assert_eq!(err.to_string(), "table `notes` has no column `pinned` (field `pinned`)");
        }
        other => panic!("expected NoColumn, got {other:?}"),
    }

    db.execute("ALTER TABLE notes ADD COLUMN pinned BOOLEAN NOT NULL DEFAULT false; UPDATE notes SET pinned = true WHERE id = 'n2'")
        .await;
    let after = SqlOrigin::builder(db.pool())
        .model::<v2::Note>()
        .build()
        .await
        .expect("v2 reads notes");
    let cache = Cache::builder(MemoryStore::new(), after)
        .register::<v2::Note>()
        .build()
        .expect("a cache");
    let pinned: Vec<v2::Note> = cache.query(v2::Note::by_pinned(&true)).await.expect("answers");
    assert_eq!(
        pinned,
        vec![v2::Note {
            id: rid("n2"),
            title: "world".into(),
            pinned: true
        }]
    );
    // The old model still reads the table: extra columns are not its business.
    assert!(
        before
            .fetch(v1::Note::schema(), &rid("n2"))
            .await
            .expect("answers")
            .is_some()
    );
}

#[tokio::test]
async fn postgres_a_model_gains_a_field_and_its_table_a_column() {
    let Some(db) = TestDb::postgres().await else { return };
    a_model_gains_a_field_and_its_table_a_column(db).await;
}

#[tokio::test]
async fn sqlite_a_model_gains_a_field_and_its_table_a_column() {
    a_model_gains_a_field_and_its_table_a_column(TestDb::sqlite().await).await;
}

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "members", source_table = "members")]
struct Member {
    #[cache(id)]
    id: RecordId,
    #[indexed(normalize = "lowercase")]
    email: String,
    #[sortable]
    joined: i64,
}

/// What the start-up check refuses, each error naming the table and the column.
async fn the_start_up_check_names_table_and_column(db: TestDb) {
    let missing = SqlOrigin::builder(db.pool()).model::<Member>().build().await;
    assert!(
        matches!(&missing, Err(SqlError::NoTable { table, .. }) if table == "members"),
        "{missing:?}"
    );

    db.execute("CREATE TABLE members (id TEXT PRIMARY KEY, email TEXT NOT NULL, joined TEXT NOT NULL)")
        .await;
    let unnormalised = SqlOrigin::builder(db.pool()).model::<Member>().build().await;
    match unnormalised {
        Err(err @ SqlError::NoNormalizedColumn { .. }) => {
            let message = err.to_string();
            assert!(message.contains("`members`"), "{message}");
            assert!(message.contains("`email`"), "{message}");
            assert!(message.contains("`email_normalized`"), "{message}");
        }
        other => panic!("expected NoNormalizedColumn, got {other:?}"),
    }

    db.execute("ALTER TABLE members ADD COLUMN email_normalized TEXT").await;
    let unsortable = SqlOrigin::builder(db.pool()).model::<Member>().build().await;
    assert!(
        matches!(&unsortable, Err(SqlError::NotSortable { table, column, .. }) if table == "members" && column == "joined"),
        "a sortable field on a text column: {unsortable:?}"
    );
}

#[tokio::test]
async fn postgres_the_start_up_check_names_table_and_column() {
    let Some(db) = TestDb::postgres().await else { return };
    the_start_up_check_names_table_and_column(db).await;
}

#[tokio::test]
async fn sqlite_the_start_up_check_names_table_and_column() {
    the_start_up_check_names_table_and_column(TestDb::sqlite().await).await;
}

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "codes", source_table = "codes")]
struct Code {
    #[cache(id)]
    id: RecordId,
    #[indexed]
    label: String,
}

/// A longer id or value is not cut down to a `varchar(3)` that another row holds.
#[tokio::test]
async fn postgres_bounded_text_is_compared_whole() {
    let Some(db) = TestDb::postgres().await else { return };
    db.execute("CREATE TABLE codes (id varchar(3) PRIMARY KEY, label character varying(3) NOT NULL); INSERT INTO codes VALUES ('abc', 'xyz')")
        .await;
    let origin = SqlOrigin::builder(db.pool())
        .model::<Code>()
        .build()
        .await
        .expect("builds");
    assert!(
        origin
            .fetch(Code::schema(), &rid("abc"))
            .await
            .expect("answers")
            .is_some()
    );
    assert!(
        origin
            .fetch(Code::schema(), &rid("abcd"))
            .await
            .expect("answers")
            .is_none()
    );
    assert!(
        origin
            .exists_many(Code::schema(), &[rid("abcd")])
            .await
            .expect("answers")
            .is_empty()
    );
    let cache = Cache::builder(MemoryStore::new(), origin)
        .register::<Code>()
        .build()
        .expect("a cache");
    assert!(cache.query(Code::by_label("xyzw")).await.expect("answers").is_empty());
    assert_eq!(cache.query(Code::by_label("xyz")).await.expect("answers").len(), 1);
}

#[derive(Debug, Clone, PartialEq, Cacheable)]
#[cache(entity = "subscribers", source_table = "subscribers")]
struct Subscriber {
    #[cache(id)]
    id: RecordId,
    #[indexed(normalize = "lowercase")]
    email: String,
}

/// A normalised column that does not hold what the cache looks up (here: lower-cased but not
/// trimmed, as SQL's `lower()` alone would write it) is refused, naming table, column and row.
async fn normalised_values_are_checked_on_demand(db: TestDb) {
    db.execute("CREATE TABLE subscribers (id TEXT PRIMARY KEY, email TEXT NOT NULL, email_normalized TEXT)")
        .await;
    db.execute_in_transaction(&[
        "INSERT INTO subscribers VALUES ('s1', 'ada@example.com', 'ada@example.com')".to_owned(),
        "INSERT INTO subscribers VALUES ('s2', ' ÉVE@Example.com', ' éve@example.com')".to_owned(),
    ])
    .await;
    let unchecked = SqlOrigin::builder(db.pool()).model::<Subscriber>().build().await;
    assert!(unchecked.is_ok(), "the column exists: the data is not read by default");
    let checked = SqlOrigin::builder(db.pool())
        .model::<Subscriber>()
        .check_normalized_values(true)
        .build()
        .await;
    match checked {
        Err(SqlError::NotNormalized(row)) => {
            assert_eq!(
                (row.table.as_str(), row.column.as_str(), row.id.as_str()),
                ("subscribers", "email", "s2")
            );
            assert_eq!(row.expected, "éve@example.com");
        }
        other => panic!("expected NotNormalized, got {other:?}"),
    }
    db.execute("UPDATE subscribers SET email_normalized = 'éve@example.com' WHERE id = 's2'")
        .await;
    SqlOrigin::builder(db.pool())
        .model::<Subscriber>()
        .check_normalized_values(true)
        .build()
        .await
        .expect("every row normalised as the cache does");
}

#[tokio::test]
async fn postgres_normalised_values_are_checked_on_demand() {
    let Some(db) = TestDb::postgres().await else { return };
    normalised_values_are_checked_on_demand(db).await;
}

#[tokio::test]
async fn sqlite_normalised_values_are_checked_on_demand() {
    normalised_values_are_checked_on_demand(TestDb::sqlite().await).await;
}
