//! The SQL lines (9): `cache_sql::SqlOrigin` beside hand-written sqlx statements on the same
//! pool, on SQLite always and on PostgreSQL when `TEST_POSTGRES_URL` names a server, then the
//! outbox's commit-to-cache latency and throughput into the report's Redis server.
//!
//! The table is the report's 10,000 `Project`s as a real schema would hold them: one row each,
//! native column types (PostgreSQL: `text[]` collaborators and `timestamptz`; SQLite: a JSON
//! list and ISO-8601 text), an index on the event column.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cache_core::{
    Cache, Cacheable, RecordId,
    origin::{Origin, SourceQuery, SourceRecord},
    store::{RecordWrite, Store, WriteMode},
};
use cache_redis::RedisStore;
use cache_sql::{Outbox, OutboxListener, SqlOrigin, SqlPool};
use chrono::{DateTime, SecondsFormat, Utc};
use model_cache_bench::{
    model::{Project, ProjectSort, event_id},
    report::{Line, Verdict, fmt_duration, fmt_rate, fmt_ratio, thousands},
    sample::{Plan, Samples, Summary, interleave},
};
use serde_json::{Map, Value};
use sqlx::{
    AssertSqlSafe, Connection, Executor, PgConnection, PgPool, Row, SqliteConnection, SqlitePool,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow},
};

use super::{Bench, EVENTS, p50_p99, writes};

/// The server the PostgreSQL lines use, as the tests name it.
pub(super) const POSTGRES_URL_VAR: &str = "TEST_POSTGRES_URL";
/// Ids per `fetch_many`.
const FETCH_MANY: usize = 100;
/// Ids per `exists_many`.
const EXISTS_MANY: usize = 500;
/// The target for the three statements, over hand-written SQL.
const STATEMENT_TARGET: f64 = 1.2;
/// The target for the outbox's commit-to-cache latency.
const LATENCY_TARGET_P99: Duration = Duration::from_millis(50);
/// The target for the outbox's rate.
const RATE_TARGET: f64 = 5_000.0;
/// How often the SQLite listener polls here (its default is a second).
const SQLITE_POLL: Duration = Duration::from_millis(10);
/// Outbox rows a listener applies at once (its default).
const OUTBOX_BATCH: usize = cache_sql::outbox::DEFAULT_BATCH;
/// The columns of the table, in the order the hand-written statements select them.
const COLUMNS: &str =
    "id, name, description, event_id, owner_id, collaborators, points, join_code, created_at, updated_at";

/// One database the lines run on.
enum Db {
    Sqlite {
        pool: SqlitePool,
        options: SqliteConnectOptions,
        _dir: tempfile::TempDir,
    },
    Postgres {
        pool: PgPool,
        options: PgConnectOptions,
        url: String,
        schema: String,
    },
}

impl Db {
    /// A SQLite file (WAL, as an application serving reads while it writes would set it) in a
    /// temp dir.
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("bench.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .expect("SQLite opens");
        Self::Sqlite {
            pool,
            options,
            _dir: dir,
        }
    }

    /// A schema of its own on the server of `url`, dropped by [`Db::close`].
    async fn postgres(url: &str) -> Self {
        let schema = format!("model_cache_bench_{}", std::process::id());
        let mut admin = PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={url}: PostgreSQL does not answer: {e}"));
        admin
            .execute(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
            )))
            .await
            .expect("the bench's schema is created");
        let options: PgConnectOptions = url.parse().expect("a PostgreSQL URL");
        let options = options.options([("search_path", schema.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .expect("PostgreSQL answers");
        Self::Postgres {
            pool,
            options,
            url: url.to_owned(),
            schema,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "SQLite",
            Self::Postgres { .. } => "PostgreSQL",
        }
    }

    /// The database's version, as it reports it.
    async fn version(&self) -> String {
        let version = match self {
            Self::Sqlite { pool, .. } => sqlx::query_scalar("SELECT sqlite_version()").fetch_one(pool).await,
            Self::Postgres { pool, .. } => sqlx::query_scalar("SHOW server_version").fetch_one(pool).await,
        };
        version.unwrap_or_else(|e| format!("unknown ({e})"))
    }

    fn pool(&self) -> SqlPool {
        match self {
            Self::Sqlite { pool, .. } => pool.clone().into(),
            Self::Postgres { pool, .. } => pool.clone().into(),
        }
    }

    async fn execute(&self, sql: &str) {
        let done = match self {
            Self::Sqlite { pool, .. } => pool.execute(AssertSqlSafe(sql.to_owned())).await.map(|_| ()),
            Self::Postgres { pool, .. } => pool.execute(AssertSqlSafe(sql.to_owned())).await.map(|_| ()),
        };
        done.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// A connection outside the pool, as another writer (psql, sqlite3, a service) has.
    async fn writer(&self) -> Writer {
        match self {
            Self::Sqlite { options, .. } => {
                Writer::Sqlite(SqliteConnection::connect_with(options).await.expect("SQLite opens"))
            }
            Self::Postgres { options, .. } => {
                Writer::Postgres(PgConnection::connect_with(options).await.expect("PostgreSQL answers"))
            }
        }
    }

    async fn close(self) {
        match self {
            Self::Sqlite { pool, .. } => pool.close().await,
            Self::Postgres { pool, url, schema, .. } => {
                pool.close().await;
                let mut admin = PgConnection::connect(&url).await.expect("PostgreSQL answers");
                admin
                    .execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .await
                    .expect("the bench's schema is dropped");
            }
        }
    }

    /// The table, its index and the records.
    async fn create(&self, records: &[Project]) {
        let pg = matches!(self, Self::Postgres { .. });
        let (array, stamp) = if pg {
            ("text[]", "timestamptz")
        } else {
            ("JSON", "DATETIME")
        };
        self.execute(&format!(
            "CREATE TABLE \"Projects\" (id text PRIMARY KEY, name text NOT NULL, description text, \
             event_id text NOT NULL, owner_id text NOT NULL, collaborators {array} NOT NULL, \
             points bigint NOT NULL, join_code text NOT NULL, created_at {stamp} NOT NULL, \
             updated_at {stamp} NOT NULL)"
        ))
        .await;
        self.execute("CREATE INDEX projects_event ON \"Projects\" (event_id)")
            .await;
        for chunk in records.chunks(500) {
            let rows: Vec<String> = chunk.iter().map(|r| row_literal(r, pg)).collect();
            self.execute(&format!(
                "INSERT INTO \"Projects\" ({COLUMNS}) VALUES {}",
                rows.join(", ")
            ))
            .await;
        }
        self.execute("ANALYZE").await;
    }

    /// `UPDATE … SET updated_at = $1 WHERE id = $2` in this database's terms.
    fn update_one(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "UPDATE \"Projects\" SET points = points + 1, updated_at = $1 WHERE id = $2",
            Self::Postgres { .. } => {
                "UPDATE \"Projects\" SET points = points + 1, updated_at = CAST($1 AS timestamptz) WHERE id = $2"
            }
        }
    }
}

/// A connection of its own, writing as another program would.
enum Writer {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Writer {
    /// Runs one statement in a transaction of its own (autocommit).
    async fn update(&mut self, sql: &'static str, at: &str, id: &str) {
        let rows = match self {
            Self::Sqlite(conn) => sqlx::query(sql)
                .bind(at)
                .bind(id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()),
            Self::Postgres(conn) => sqlx::query(sql)
                .bind(at)
                .bind(id)
                .execute(conn)
                .await
                .map(|r| r.rows_affected()),
        };
        assert_eq!(rows.expect("the writer's UPDATE"), 1);
    }
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One record as an SQL row literal.
fn row_literal(r: &Project, pg: bool) -> String {
    let ids: Vec<&str> = r.collaborators.ids().iter().map(RecordId::as_str).collect();
    let collaborators = if pg {
        quoted(&format!("{{{}}}", ids.join(",")))
    } else {
        quoted(&serde_json::to_string(&ids).expect("a JSON list"))
    };
    format!(
        "({}, {}, {}, {}, {}, {collaborators}, {}, {}, {}, {})",
        quoted(r.id.as_str()),
        quoted(&r.name),
        r.description.as_deref().map_or_else(|| "NULL".to_owned(), quoted),
        quoted(r.event.id().as_str()),
        quoted(r.owner.id().as_str()),
        r.points,
        quoted(&r.join_code),
        quoted(&stamp(r.created_at)),
        quoted(&stamp(r.updated_at)),
    )
}

/// A row as hand-written code reads it on PostgreSQL: every column, in its native type. The
/// timestamps are read as the 8-byte microsecond count they travel as (what sqlx's `chrono`
/// feature decodes; the workspace builds sqlx without it).
type PgHandRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    Vec<String>,
    i64,
    String,
    i64,
    i64,
);

/// A row as hand-written code reads it on SQLite: the JSON list parsed, timestamps as text.
type SqliteHandRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    Vec<String>,
    i64,
    String,
    String,
    String,
);

fn pg_hand_row(row: &PgRow) -> PgHandRow {
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
        row.get(6),
        row.get(7),
        row.try_get_unchecked(8).expect("created_at"),
        row.try_get_unchecked(9).expect("updated_at"),
    )
}

fn sqlite_hand_row(row: &SqliteRow) -> SqliteHandRow {
    let collaborators: &str = row.get(5);
    (
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        serde_json::from_str(collaborators).expect("a JSON list"),
        row.get(6),
        row.get(7),
        row.get(8),
        row.get(9),
    )
}

/// What a hand-written statement binds.
///
/// A hand-written origin is given the ids as `RecordId`s, as `SqlOrigin` is: the list
/// parameters are built from them on each call, inside the timed call, as `SqlOrigin` builds
/// its own.
enum Binds<'a> {
    /// PostgreSQL: the ids as one `text[]`.
    Array(Vec<String>),
    /// SQLite: the ids as one JSON list, for `json_each`.
    Json(String),
    /// SQLite: one `?` per id.
    Each(&'a [RecordId]),
    /// One value.
    One(&'a str),
}

/// How a hand-written variant reads its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The id column alone.
    Ids,
    /// Every column into a tuple of native values: reading the rows and nothing more.
    Tuples,
    /// Every column into the source records an origin answers: a hand-written `Origin`.
    Records,
}

/// A hand-written variant of a line.
struct Hand {
    /// How the report names it.
    name: &'static str,
    sql: Arc<str>,
    binds: fn(&Input) -> Binds<'_>,
    read: Read,
}

impl Hand {
    fn reading(self, read: Read) -> Self {
        Self { read, ..self }
    }
}

/// The inputs of one operation: a window of ids, or an event's leaderboard.
struct Input {
    ids: Vec<RecordId>,
    event: String,
    query: Option<SourceQuery>,
}

impl Input {
    fn ids(ids: Vec<RecordId>) -> Self {
        Self {
            ids,
            event: String::new(),
            query: None,
        }
    }

    /// The query a miss of event `e`'s leaderboard sends the origin: unpaged, as the cache
    /// stores the whole result.
    fn leaderboard(e: usize, rows: usize) -> Self {
        let unpaged = Project::by_event(&event_id(e))
            .desc(ProjectSort::Points)
            .limit(rows)
            .into_index_query()
            .unpaged();
        Self {
            event: event_id(e).as_str().to_owned(),
            query: Some(
                SourceQuery::from_index_query(Project::schema(), &unpaged).expect("the leaderboard in source terms"),
            ),
            ..Self::ids(Vec::new())
        }
    }

    fn query(&self) -> &SourceQuery {
        self.query.as_ref().expect("a leaderboard input")
    }
}

/// The rows a hand-written statement answered.
enum Rows {
    Postgres(Vec<PgRow>),
    Sqlite(Vec<SqliteRow>),
}

/// Runs a hand-written statement.
async fn fetch(db: &Db, h: &Hand, input: &Input) -> Rows {
    match db {
        Db::Postgres { pool, .. } => {
            let query = sqlx::query(AssertSqlSafe(Arc::clone(&h.sql)));
            let query = match (h.binds)(input) {
                Binds::Array(ids) => query.bind(ids),
                Binds::One(value) => query.bind(value),
                Binds::Json(_) | Binds::Each(_) => unreachable!("SQLite binds on PostgreSQL"),
            };
            Rows::Postgres(query.fetch_all(pool).await.expect("a hand-written statement"))
        }
        Db::Sqlite { pool, .. } => {
            let query = sqlx::query(AssertSqlSafe(Arc::clone(&h.sql)));
            let query = match (h.binds)(input) {
                Binds::Json(list) => query.bind(list),
                Binds::One(value) => query.bind(value),
                Binds::Each(ids) => ids.iter().fold(query, |q, id| q.bind(id.as_str())),
                Binds::Array(_) => unreachable!("PostgreSQL binds on SQLite"),
            };
            Rows::Sqlite(query.fetch_all(pool).await.expect("a hand-written statement"))
        }
    }
}

/// What a variant answered: kept whole until its sample ends, so that every variant pays for
/// building and dropping its own answer and for nothing else; its ids for the checks.
enum Answer {
    /// The ids as the statement answered them.
    Texts(Vec<String>),
    /// The ids `exists_many` answered.
    Ids(Vec<RecordId>),
    PgTuples(Vec<PgHandRow>),
    SqliteTuples(Vec<SqliteHandRow>),
    Records(Vec<SourceRecord>),
}

impl Answer {
    fn len(&self) -> usize {
        match self {
            Self::Texts(v) => v.len(),
            Self::Ids(v) => v.len(),
            Self::PgTuples(v) => v.len(),
            Self::SqliteTuples(v) => v.len(),
            Self::Records(v) => v.len(),
        }
    }

    fn ids(&self) -> Vec<String> {
        match self {
            Self::Texts(v) => v.clone(),
            Self::Ids(v) => v.iter().map(|id| id.as_str().to_owned()).collect(),
            Self::PgTuples(v) => v.iter().map(|row| row.0.clone()).collect(),
            Self::SqliteTuples(v) => v.iter().map(|row| row.0.clone()).collect(),
            Self::Records(v) => v.iter().map(|r| r.id.as_str().to_owned()).collect(),
        }
    }
}

/// Runs a hand-written variant and reads its rows as it says.
async fn hand(db: &Db, h: &Hand, input: &Input) -> Answer {
    let rows = fetch(db, h, input).await;
    match (h.read, &rows) {
        (Read::Ids, Rows::Postgres(rows)) => Answer::Texts(rows.iter().map(|r| r.get(0)).collect()),
        (Read::Ids, Rows::Sqlite(rows)) => Answer::Texts(rows.iter().map(|r| r.get(0)).collect()),
        (Read::Tuples, Rows::Postgres(rows)) => Answer::PgTuples(rows.iter().map(pg_hand_row).collect()),
        (Read::Tuples, Rows::Sqlite(rows)) => Answer::SqliteTuples(rows.iter().map(sqlite_hand_row).collect()),
        (Read::Records, rows) => Answer::Records(records(rows)),
    }
}

/// PostgreSQL's epoch (2000-01-01) in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The rows as a hand-written origin answers them: the source shape, keyed by source name.
fn records(rows: &Rows) -> Vec<SourceRecord> {
    let record = |id: String, name, description: Option<String>, event, owner, collaborators: Vec<String>| {
        let mut fields = Map::new();
        fields.insert("name".to_owned(), Value::String(name));
        if let Some(description) = description {
            fields.insert("description".to_owned(), Value::String(description));
        }
        fields.insert("event_id".to_owned(), Value::String(event));
        fields.insert("owner_id".to_owned(), Value::String(owner));
        fields.insert(
            "collaborators".to_owned(),
            Value::Array(collaborators.into_iter().map(Value::String).collect()),
        );
        (RecordId::new(id).expect("an id"), fields)
    };
    let finish = |(id, mut fields): (RecordId, Map<String, Value>), points: i64, join_code, created, updated| {
        fields.insert("points".to_owned(), Value::from(points));
        fields.insert("join_code".to_owned(), Value::String(join_code));
        fields.insert("created_at".to_owned(), Value::String(created));
        fields.insert("updated_at".to_owned(), Value::String(updated));
        SourceRecord { id, fields }
    };
    match rows {
        Rows::Postgres(rows) => rows
            .iter()
            .map(|row| {
                let (id, name, description, event, owner, collaborators, points, join_code, created, updated) =
                    pg_hand_row(row);
                // As sqlx's `chrono` feature reads a `timestamptz`, then RFC 3339.
                let stamp = |micros: i64| {
                    DateTime::from_timestamp_micros(micros + PG_EPOCH_MICROS)
                        .expect("a timestamp")
                        .to_rfc3339_opts(SecondsFormat::Micros, true)
                };
                finish(
                    record(id, name, description, event, owner, collaborators),
                    points,
                    join_code,
                    stamp(created),
                    stamp(updated),
                )
            })
            .collect(),
        Rows::Sqlite(rows) => rows
            .iter()
            .map(|row| {
                let (id, name, description, event, owner, collaborators, points, join_code, created, updated) =
                    sqlite_hand_row(row);
                finish(
                    record(id, name, description, event, owner, collaborators),
                    points,
                    join_code,
                    created,
                    updated,
                )
            })
            .collect(),
    }
}

/// The hand-written ways of selecting rows by id on `db`, reading them as `read` says; on
/// SQLite a second way (one parameter an id) reads tuples too.
fn by_ids(db: &Db, select: &str, n: usize, read: Read) -> Vec<Hand> {
    match db {
        Db::Postgres { .. } => vec![Hand {
            name: "`= ANY($1)` of a `text[]`",
            sql: format!("{select} WHERE id = ANY($1)").into(),
            binds: |i| Binds::Array(i.ids.iter().map(|id| id.as_str().to_owned()).collect()),
            read,
        }],
        Db::Sqlite { .. } => vec![
            Hand {
                name: "`IN (SELECT value FROM json_each(?))`",
                sql: format!("{select} WHERE id IN (SELECT value FROM json_each($1))").into(),
                binds: |i| Binds::Json(serde_json::to_string(&i.ids).expect("a JSON list")),
                read,
            },
            Hand {
                name: "`IN (?, ?, …)`, one parameter an id",
                sql: format!("{select} WHERE id IN ({})", vec!["?"; n].join(", ")).into(),
                binds: |i| Binds::Each(&i.ids),
                read,
            },
        ],
    }
}

/// What the lines of one database share.
struct Sql<'a> {
    b: &'a Bench,
    db: Db,
    origin: SqlOrigin,
    /// Before a line's number: `9a` for SQLite, `9f` for PostgreSQL.
    first: char,
}

impl Sql<'_> {
    fn number(&self, k: u8) -> String {
        format!("9{}", char::from(self.first as u8 + k))
    }

    /// Times `ours` against every hand-written variant in alternate batches; answers their
    /// summaries, ours first. `ours` answers the ids it read.
    async fn compare(&self, inputs: &[Input], hands: &[Hand], ours: impl AsyncFn(&Input) -> Answer) -> Vec<Summary> {
        // Every variant answers the same rows.
        for input in inputs.iter().take(3) {
            let mut want = ours(input).await.ids();
            want.sort();
            for h in hands {
                let mut got = hand(&self.db, h, input).await.ids();
                got.sort();
                assert_eq!(got, want, "{}: {} answers other rows", self.db.label(), h.name);
            }
        }
        let plan = Plan::new(self.b.n(2_000, 200), 100, 100);
        let s = interleave(1 + hands.len(), &plan, async |variant, i| {
            let input = &inputs[i % inputs.len()];
            let answer = match variant {
                0 => ours(input).await,
                v => hand(&self.db, &hands[v - 1], input).await,
            };
            assert!(std::hint::black_box(answer).len() > 0);
        })
        .await;
        s.iter().map(Samples::summary).collect()
    }

    /// Checks that the hand-written origin answers exactly what `SqlOrigin` does (the same
    /// records, read into the same `Project`s), so that it does the same work.
    async fn check_records(&self, h: &Hand, input: &Input, ours: Vec<SourceRecord>) {
        let read = |records: Vec<SourceRecord>| {
            let mut projects: Vec<Project> = records
                .into_iter()
                .map(|r| Project::from_source(r).expect("a project"))
                .collect();
            projects.sort_by(|a, b| a.id.cmp(&b.id));
            projects
        };
        let theirs = records(&fetch(&self.db, h, input).await);
        assert_eq!(read(theirs), read(ours), "{}: the hand-written origin", self.db.label());
    }

    /// A line reading records: checks that the hand-written origin answers what `ours` does,
    /// times them all, and judges ours against the hand-written origin.
    async fn records_line(
        &self,
        k: u8,
        name: String,
        (inputs, hands): (&[Input], &[Hand]),
        rows: usize,
        ours: impl AsyncFn(&Input) -> Vec<SourceRecord>,
        notes: Vec<String>,
    ) -> Line {
        let origin = hands
            .iter()
            .find(|h| h.read == Read::Records)
            .expect("a hand-written origin");
        self.check_records(origin, &inputs[0], ours(&inputs[0]).await).await;
        let s = self
            .compare(inputs, hands, async |input| {
                let found = ours(input).await;
                assert_eq!(found.len(), rows);
                Answer::Records(found)
            })
            .await;
        self.judge_records(k, name, hands, &s, notes)
    }

    /// Ours against the hand-written origin (the same statement's job, answering the same
    /// source records); the hand-written tuples are the floor.
    fn judge_records(&self, k: u8, name: String, hands: &[Hand], s: &[Summary], notes: Vec<String>) -> Line {
        let ours = s[0];
        let (origin, origin_hand) = s[1..]
            .iter()
            .zip(hands)
            .find(|(_, h)| h.read == Read::Records)
            .expect("a hand-written origin");
        let (floor, floor_hand) = s[1..]
            .iter()
            .zip(hands)
            .filter(|(_, h)| h.read == Read::Tuples)
            .min_by_key(|(s, _)| s.p50)
            .expect("a hand-written read");
        let r = ours.p50_ratio(origin);
        let mut all = vec![
            format!(
                "{} samples of each; p99 ratio {}.",
                thousands(ours.count as u64),
                fmt_ratio(ours.p99_ratio(origin))
            ),
            format!(
                "The baseline is what a hand-written `Origin` does: its own statement ({}), each row read into \
                 the source record `SqlOrigin` answers (checked equal: the same `Project`s).",
                origin_hand.name
            ),
            format!(
                "The floor: the hand-written statement reading its rows into tuples of native values and \
                 nothing more ({}): {}; model-cache over it: {}. Building the source records (a JSON map a \
                 row) takes {} of the hand-written origin's median.",
                floor_hand.name,
                p50_p99(floor),
                fmt_ratio(ours.p50_ratio(floor)),
                fmt_duration(origin.p50.saturating_sub(floor.p50)),
            ),
        ];
        if hands.iter().filter(|h| h.read == Read::Tuples).count() > 1 {
            all.push(format!(
                "Hand-written reads: {}.",
                s[1..]
                    .iter()
                    .zip(hands)
                    .filter(|(_, h)| h.read == Read::Tuples)
                    .map(|(s, h)| format!("{}: {}", h.name, p50_p99(s)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        all.extend(notes);
        Line {
            number: self.number(k),
            name: format!("{}: {name}", self.db.label()),
            ours: p50_p99(&ours),
            baseline: format!("hand-written sqlx origin, {}: {}", origin_hand.name, p50_p99(origin)),
            ratio: fmt_ratio(r),
            target: format!("≤ {STATEMENT_TARGET:.2}x"),
            verdict: Verdict::from_check(r <= STATEMENT_TARGET),
            notes: all,
        }
    }

    async fn fetch_many_line(&self) -> Line {
        let schema = Project::schema();
        let inputs = windows(self.b, FETCH_MANY);
        let select = format!("SELECT {COLUMNS} FROM \"Projects\"");
        let mut hands = by_ids(&self.db, &select, FETCH_MANY, Read::Tuples);
        hands.extend(by_ids(&self.db, &select, FETCH_MANY, Read::Records).into_iter().take(1));
        self.records_line(
            0,
            format!("`SqlOrigin::fetch_many` of {FETCH_MANY} ids vs hand-written SQL"),
            (&inputs, &hands),
            FETCH_MANY,
            async |input| self.origin.fetch_many(schema, &input.ids).await.expect("fetch_many"),
            vec![format!(
                "{} {} ({}). Every variant reads all ten columns of {FETCH_MANY} rows (about 1 KiB each) in one \
                 statement, over a fixed permutation of the {} ids.",
                self.db.label(),
                self.db.version().await,
                match self.db {
                    Db::Sqlite { .. } => "the library sqlx bundles, a file in a temp dir",
                    Db::Postgres { .. } => "on loopback",
                },
                thousands(self.b.ids.len() as u64)
            )],
        )
        .await
    }

    async fn query_line(&self) -> Line {
        let schema = Project::schema();
        let per_event = self.b.records.len() / EVENTS;
        let inputs: Vec<Input> = (0..EVENTS).map(|e| Input::leaderboard(e, per_event)).collect();
        let leaderboard = Hand {
            name: "`WHERE event_id = $1 ORDER BY points DESC, id DESC`",
            sql: format!("SELECT {COLUMNS} FROM \"Projects\" WHERE event_id = $1 ORDER BY points DESC, id DESC").into(),
            binds: |i| Binds::One(&i.event),
            read: Read::Ids,
        };
        // The same rows in the same order, not only the same set.
        for input in inputs.iter().take(3) {
            let ours: Vec<String> = self
                .origin
                .query(schema, input.query())
                .await
                .expect("query")
                .into_iter()
                .map(|r| r.id.as_str().to_owned())
                .collect();
            let theirs = hand(&self.db, &leaderboard, input).await.ids();
            assert_eq!(ours, theirs, "{}: the leaderboard's order", self.db.label());
        }
        let hands = [
            Hand {
                sql: Arc::clone(&leaderboard.sql),
                ..leaderboard
            }
            .reading(Read::Tuples),
            leaderboard.reading(Read::Records),
        ];
        self.records_line(
            1,
            format!("`SqlOrigin::query` of a leaderboard miss ({per_event} rows) vs hand-written SQL"),
            (&inputs, &hands),
            per_event,
            async |input| self.origin.query(schema, input.query()).await.expect("query"),
            vec![format!(
                "The query a leaderboard miss sends the origin: one event's projects by points descending, \
                 unpaged (the cache stores the whole result), {per_event} rows of all ten columns, over the \
                 {EVENTS} events in turn. model-cache orders by the sort field's score and ties by the id's \
                 bytes, exactly as the cache orders them; the hand-written statement by `points` and `id`, which \
                 for these rows is the same order (checked)."
            )],
        )
        .await
    }

    async fn exists_many_line(&self) -> Line {
        let schema = Project::schema();
        let inputs = windows(self.b, EXISTS_MANY);
        let hands = by_ids(&self.db, "SELECT id FROM \"Projects\"", EXISTS_MANY, Read::Ids);
        let s = self
            .compare(&inputs, &hands, async |input| {
                let found = self.origin.exists_many(schema, &input.ids).await.expect("exists_many");
                assert_eq!(found.len(), EXISTS_MANY);
                Answer::Ids(found)
            })
            .await;
        let ours = s[0];
        let (best, best_hand) = s[1..]
            .iter()
            .zip(&hands)
            .min_by_key(|(s, _)| s.p50)
            .expect("a hand-written variant");
        let r = ours.p50_ratio(best);
        let mut notes = vec![format!(
            "{} samples of each; p99 ratio {}. What a sweep asks per batch: which of these ids the table still \
             has; every variant reads the ids alone.",
            thousands(ours.count as u64),
            fmt_ratio(ours.p99_ratio(best))
        )];
        if hands.len() > 1 {
            notes.push(format!(
                "Hand-written variants: {}.",
                s[1..]
                    .iter()
                    .zip(&hands)
                    .map(|(s, h)| format!("{}: {}", h.name, p50_p99(s)))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        Line {
            number: self.number(2),
            name: format!(
                "{}: `SqlOrigin::exists_many` of {EXISTS_MANY} ids vs hand-written SQL",
                self.db.label()
            ),
            ours: p50_p99(&ours),
            baseline: format!("hand-written sqlx, {}: {}", best_hand.name, p50_p99(best)),
            ratio: fmt_ratio(r),
            target: format!("≤ {STATEMENT_TARGET:.2}x"),
            verdict: Verdict::from_check(r <= STATEMENT_TARGET),
            notes,
        }
    }

    /// The outbox's latency (one change at a time) and rate (10,000 at once), into the
    /// report's Redis server under a namespace of its own.
    async fn outbox_lines(&self) -> [Line; 2] {
        let schema = Project::schema();
        let store = RedisStore::builder(self.b.server.url())
            .namespace(format!("bench-sql-{}", self.db.label().to_ascii_lowercase()))
            .operation_budget(crate::BULK_BUDGET)
            .connect()
            .await
            .expect("connect the outbox's store");
        let cache = Cache::builder(store.clone(), self.origin.clone())
            .register::<Project>()
            .build()
            .expect("the outbox's cache");
        Outbox::new(&self.origin)
            .install()
            .await
            .expect("the outbox's triggers");
        let (applied_tx, mut applied) = tokio::sync::mpsc::unbounded_channel::<(Vec<RecordId>, Instant)>();
        let mut listener = OutboxListener::new(&self.origin, &cache).on_batch(move |rows| {
            let _ = applied_tx.send((rows.iter().map(|r| r.id.clone()).collect(), Instant::now()));
        });
        let pg = matches!(self.db, Db::Postgres { .. });
        if !pg {
            listener = listener.poll_interval(SQLITE_POLL);
        }
        let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn({
            let listener = listener.clone();
            async move {
                listener
                    .run(async {
                        let _ = stop.await;
                    })
                    .await
            }
        });
        // Later than any version the records have, and rising with every write.
        let mut clock = Utc::now();
        let mut next_at = || {
            clock += chrono::Duration::milliseconds(1);
            stamp(clock)
        };

        let mut writer = self.db.writer().await;
        let update = self.db.update_one();
        let changes = self.b.n(1_000, 100);
        let mut latency = Samples::new();
        let mut statement = Samples::new();
        for i in 0..changes + 20 {
            let id = &self.b.ids[self.b.spread(i)];
            let at = next_at();
            let started = Instant::now();
            writer.update(update, &at, id.as_str()).await;
            let committed = started.elapsed();
            let reached = loop {
                let (ids, when) = tokio::time::timeout(Duration::from_secs(10), applied.recv())
                    .await
                    .unwrap_or_else(|_| panic!("{}: a change did not reach the cache in 10 s", self.db.label()))
                    .expect("the listener runs");
                if ids.contains(id) {
                    break when;
                }
            };
            // The first changes warm the connections and statements up.
            if i >= 20 {
                latency.push(reached.duration_since(started));
                statement.push(committed);
            }
        }
        let _ = stop_tx.send(());
        running
            .await
            .expect("the listener task")
            .expect("the listener stops cleanly");
        drop(listener);
        let latency = latency.summary();
        let statement = statement.summary();
        let floor = match self.db {
            Db::Postgres { ref options, .. } => Some(notify_round_trip(options, self.b.n(1_000, 100)).await),
            Db::Sqlite { .. } => None,
        };

        // The rate: every row changed in one statement while no listener runs, then drained.
        let listener = OutboxListener::new(&self.origin, &cache);
        let rounds = 3;
        let mut rates = Vec::new();
        let mut drained_rows = 0;
        for _ in 0..rounds {
            let at = next_at();
            let sql = match self.db {
                Db::Sqlite { .. } => format!(
                    "UPDATE \"Projects\" SET points = points + 1, updated_at = {}",
                    quoted(&at)
                ),
                Db::Postgres { .. } => format!(
                    "UPDATE \"Projects\" SET points = points + 1, updated_at = CAST({} AS timestamptz)",
                    quoted(&at)
                ),
            };
            self.db.execute(&sql).await;
            let started = Instant::now();
            let mut rows = 0;
            loop {
                let drained = listener.run_once().await.expect("an outbox round");
                rows += drained.rows;
                if drained.rows == 0 {
                    break;
                }
            }
            let took = started.elapsed();
            assert_eq!(rows, self.b.records.len(), "every change applied");
            drained_rows = rows;
            rates.push(rows as f64 / took.as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        let rate = rates[rounds / 2];
        // The store's own limit: the same records written by `Store::put`, in the listener's
        // batches.
        let mut put_rates = Vec::new();
        for _ in 0..rounds {
            // Newer than what the cache holds, as the changes were: a write never refused.
            clock += chrono::Duration::seconds(1);
            let newer: Vec<Project> = self
                .b
                .records
                .iter()
                .map(|r| Project {
                    updated_at: clock,
                    ..r.clone()
                })
                .collect();
            let batches: Vec<Vec<RecordWrite>> = newer.chunks(OUTBOX_BATCH).map(writes::record_writes).collect();
            let started = Instant::now();
            for writes in &batches {
                store.put(schema, writes, WriteMode::Upsert).await.expect("put");
            }
            put_rates.push(self.b.records.len() as f64 / started.elapsed().as_secs_f64());
        }
        put_rates.sort_by(f64::total_cmp);
        let put_rate = put_rates[rounds / 2];
        Outbox::new(&self.origin).remove().await.expect("the triggers removed");

        let label = self.db.label();
        let (how, baseline, ratio) = match floor {
            Some(notify) => (
                "woken by `NOTIFY`".to_owned(),
                format!("a bare `NOTIFY` reaching a `PgListener`: {}", p50_p99(&notify)),
                fmt_ratio(latency.p50_ratio(&notify)),
            ),
            None => (
                format!("polled every {}", fmt_duration(SQLITE_POLL)),
                format!(
                    "the poll interval, {} (a change waits half of it on average)",
                    fmt_duration(SQLITE_POLL)
                ),
                "—".to_owned(),
            ),
        };
        let latency_line = Line {
            number: self.number(3),
            name: format!("{label}: outbox commit-to-cache latency ({how})"),
            ours: p50_p99(&latency),
            baseline,
            ratio,
            target: format!("p99 ≤ {}", fmt_duration(LATENCY_TARGET_P99)),
            verdict: Verdict::from_check(latency.p99 <= LATENCY_TARGET_P99),
            notes: vec![
                format!(
                    "{} single-row `UPDATE`s, one at a time, each committed on a connection of its own (as psql or \
                     another service writes), after 20 untimed; the trigger records each in the outbox and the \
                     listener applies it to the Redis store through `Cache::apply_changes`. Timed from sending the \
                     `UPDATE` to the listener's `on_batch` (called once the batch is applied and pruned); the \
                     `UPDATE` itself, commit included: {}.",
                    thousands(latency.count as u64),
                    p50_p99(&statement)
                ),
                match self.db {
                    Db::Sqlite { .. } => format!(
                        "SQLite has no notifications: the listener polls (every {} here, `OutboxListener::poll_interval`; \
                         its default is 1 s, which puts the median near half a second).",
                        fmt_duration(SQLITE_POLL)
                    ),
                    Db::Postgres { .. } => "The trigger's `NOTIFY` wakes the listener at once; its poll (1 s) is only \
                                            the safety net."
                        .to_owned(),
                },
            ],
        };
        let rate_line = Line {
            number: self.number(4),
            name: format!("{label}: outbox changes applied per second"),
            ours: format!(
                "{} ({} changes drained in batches of {OUTBOX_BATCH})",
                fmt_rate(rate),
                thousands(drained_rows as u64)
            ),
            baseline: format!(
                "`Store::put` of the same records in batches of {OUTBOX_BATCH} (the store's write alone): {}",
                fmt_rate(put_rate)
            ),
            ratio: fmt_ratio(rate / put_rate),
            target: format!("≥ {}", fmt_rate(RATE_TARGET)),
            verdict: Verdict::from_check(rate >= RATE_TARGET),
            notes: vec![
                format!(
                    "Median of {rounds} rounds: every row changed by one `UPDATE` while no listener runs, then \
                     `OutboxListener::run_once` until the outbox is empty (rates: {}).",
                    rates.iter().map(|r| fmt_rate(*r)).collect::<Vec<_>>().join(", ")
                ),
                "Each batch: one read of the outbox, one `fetch_many` of the changed rows, `Cache::apply_changes` \
                 (a watermark claim per record, then one store write), one `DELETE` of the applied outbox rows."
                    .to_owned(),
            ],
        };
        [latency_line, rate_line]
    }
}

/// `n`-id windows over a fixed permutation of the ids.
fn windows(b: &Bench, n: usize) -> Vec<Input> {
    let order: Vec<usize> = (0..b.ids.len()).map(|i| b.spread(i)).collect();
    order
        .chunks(n)
        .filter(|w| w.len() == n)
        .map(|w| Input::ids(w.iter().map(|&k| b.ids[k].clone()).collect()))
        .collect()
}

/// A bare `NOTIFY` on one connection reaching a `PgListener` on another: PostgreSQL's floor
/// for waking a listener.
async fn notify_round_trip(options: &PgConnectOptions, samples: usize) -> Summary {
    let mut listener = PgListener::connect_with(&PgPool::connect_lazy_with(options.clone()))
        .await
        .expect("a PgListener");
    listener.listen("model_cache_bench").await.expect("LISTEN");
    let mut conn = PgConnection::connect_with(options).await.expect("PostgreSQL answers");
    let mut out = Samples::new();
    for i in 0..samples + 20 {
        let started = Instant::now();
        conn.execute("NOTIFY model_cache_bench").await.expect("NOTIFY");
        tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("the notification arrives")
            .expect("a notification");
        if i >= 20 {
            out.push(started.elapsed());
        }
    }
    out.summary()
}

/// The SQL lines: SQLite, then PostgreSQL when [`POSTGRES_URL_VAR`] is set.
pub(super) async fn sql_lines(b: &mut Bench) {
    let mut lines = Vec::new();
    let postgres = std::env::var(POSTGRES_URL_VAR).ok().filter(|u| !u.is_empty());
    for (db, first) in [(Some(Db::sqlite().await), 'a'), (None, 'f')] {
        let db = match (db, &postgres) {
            (Some(db), _) => db,
            (None, Some(url)) => Db::postgres(url).await,
            (None, None) => {
                lines.push(Line {
                    number: "9f".to_owned(),
                    name: "PostgreSQL: the lines 9a–9e on PostgreSQL".to_owned(),
                    ours: format!("skipped: `{POSTGRES_URL_VAR}` is unset"),
                    baseline: "—".to_owned(),
                    ratio: "—".to_owned(),
                    target: "—".to_owned(),
                    verdict: Verdict::Info,
                    notes: vec![format!(
                        "Set `{POSTGRES_URL_VAR}` (`postgres://postgres@127.0.0.1:5432/test`, as the tests use) to \
                         run them; the bench creates a schema of its own and drops it after."
                    )],
                });
                continue;
            }
        };
        let label = db.label();
        eprintln!("model-cache bench: 9 {label}: creating the table...");
        db.create(&b.records).await;
        let origin = SqlOrigin::builder(db.pool())
            .model::<Project>()
            .build()
            .await
            .unwrap_or_else(|e| panic!("{label}: the origin refuses the table: {e}"));
        let sql = Sql {
            b: &*b,
            db,
            origin,
            first,
        };
        eprintln!("model-cache bench: 9 {label}: fetch_many...");
        lines.push(sql.fetch_many_line().await);
        eprintln!("model-cache bench: 9 {label}: query...");
        lines.push(sql.query_line().await);
        eprintln!("model-cache bench: 9 {label}: exists_many...");
        lines.push(sql.exists_many_line().await);
        eprintln!("model-cache bench: 9 {label}: outbox...");
        lines.extend(sql.outbox_lines().await);
        let Sql { db, .. } = sql;
        db.close().await;
    }
    b.lines.extend(lines);
}
