//! The demo's SQL database: connecting (a typed sqlx pool: SQLite or PostgreSQL), the tables,
//! and the one way the demo inserts rows.
//!
//! The tables follow `cache-sql`'s conventions, so that [`cache_sql::SqlOrigin`] reads them
//! with no code of the demo's: the table is the model's `source_table`, one column per field's
//! source name (`event_id` for the `event` link), the id in `id`, native types (timestamps,
//! JSON lists of ids for `Links<T>`), and `email_normalized` beside the lowercase-indexed
//! `email`, written from Rust ([`Conn::insert`]).

use std::{fmt, str::FromStr, time::Duration};

use cache_core::schema::{EntitySchema, IndexKind};
use cache_sql::{NORMALIZED_SUFFIX, SqlPool};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::{
    AssertSqlSafe, ConnectOptions, Connection, Executor, PgConnection, PgPool, SqliteConnection, SqlitePool,
    postgres::{PgConnectOptions, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions},
};

use crate::config::Source;

/// Which SQL database a [`DatabaseUrl`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlKind {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Where the database is: `sqlite://PATH` or `postgres://…`. Parsing checks the scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    kind: SqlKind,
}

/// Why a `DATABASE_URL` was refused.
#[derive(Debug, thiserror::Error)]
#[error("`{url}` is not a database URL: {reason}")]
pub struct InvalidDatabaseUrl {
    url: String,
    reason: &'static str,
}

impl FromStr for DatabaseUrl {
    type Err = InvalidDatabaseUrl;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| InvalidDatabaseUrl {
            url: url.to_owned(),
            reason,
        };
        let (scheme, rest) = url
            .split_once(':')
            .ok_or_else(|| invalid("expected sqlite://PATH or postgres://USER:PASSWORD@HOST/DB"))?;
        let kind = match scheme {
            "sqlite" => SqlKind::Sqlite,
            "postgres" | "postgresql" => SqlKind::Postgres,
            _ => return Err(invalid("the scheme must be sqlite: or postgres:")),
        };
        let path = rest.trim_start_matches('/');
        if path.is_empty() || path.starts_with('?') {
            return Err(invalid("it names no database (sqlite://demo.db, postgres://host/db)"));
        }
        Ok(Self {
            url: url.to_owned(),
            kind,
        })
    }
}

impl DatabaseUrl {
    /// The database the URL names.
    pub fn kind(&self) -> SqlKind {
        self.kind
    }

    /// The source of truth the URL names, when `SOURCE` leaves it to `DATABASE_URL`.
    pub fn source(&self) -> Source {
        match self.kind {
            SqlKind::Sqlite => Source::Sqlite,
            SqlKind::Postgres => Source::Postgres,
        }
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for DatabaseUrl {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((scheme, rest)) = self.url.split_once("://") else {
            return f.write_str(&self.url);
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        match rest[..authority_end].rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
                let masked = if userinfo.contains(':') { ":***" } else { "" };
                write!(f, "{scheme}://{user}{masked}@{host}{}", &rest[authority_end..])
            }
            None => f.write_str(&self.url),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A connection pool to the demo's database. Cloning is cheap: clones share the pool.
#[derive(Debug, Clone)]
pub enum Database {
    /// SQLite (the default: a file, no set-up).
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

/// The version of the demo's tables and generated data, kept in the `DemoData` table: a
/// database seeded by another version has other columns or other ids.
pub const DATA_VERSION: i64 = 3;

/// The demo's tables, created when missing. `{id}` is the key's text type (ordered by bytes
/// on PostgreSQL, as ids are in the cache), `{time}` a timestamp, `{ids}` a JSON list of ids
/// (a `Links<T>`: one read per record, no join table).
const TABLES: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS "DemoData" ("version" BIGINT NOT NULL)"#,
    r#"CREATE TABLE IF NOT EXISTS "Users" (
        "id" {id} PRIMARY KEY,
        "email" TEXT NOT NULL,
        "email_normalized" TEXT NOT NULL,
        "name" TEXT NOT NULL,
        "owned_events" {ids},
        "attending_events" {ids},
        "created_at" {time} NOT NULL,
        "updated_at" {time} NOT NULL
    )"#,
    r#"CREATE UNIQUE INDEX IF NOT EXISTS "Users_email" ON "Users" ("email_normalized")"#,
    r#"CREATE TABLE IF NOT EXISTS "Events" (
        "id" {id} PRIMARY KEY,
        "name" TEXT NOT NULL,
        "slug" TEXT NOT NULL UNIQUE,
        "owner_id" {id} NOT NULL,
        "attendees" {ids},
        "join_code" TEXT NOT NULL,
        "starts_at" {time} NOT NULL,
        "created_at" {time} NOT NULL,
        "updated_at" {time} NOT NULL
    )"#,
    r#"CREATE INDEX IF NOT EXISTS "Events_owner" ON "Events" ("owner_id")"#,
    r#"CREATE TABLE IF NOT EXISTS "Projects" (
        "id" {id} PRIMARY KEY,
        "name" TEXT NOT NULL,
        "description" TEXT,
        "event_id" {id} NOT NULL,
        "owner_id" {id} NOT NULL,
        "collaborators" {ids},
        "points" BIGINT NOT NULL DEFAULT 0,
        "join_code" TEXT NOT NULL,
        "created_at" {time} NOT NULL,
        "updated_at" {time} NOT NULL
    )"#,
    r#"CREATE INDEX IF NOT EXISTS "Projects_leaderboard" ON "Projects" ("event_id", "points", "id")"#,
    r#"CREATE INDEX IF NOT EXISTS "Projects_owner" ON "Projects" ("owner_id")"#,
    r#"CREATE TABLE IF NOT EXISTS "Votes" (
        "id" {id} PRIMARY KEY,
        "voter_id" {id} NOT NULL,
        "project_id" {id} NOT NULL,
        "event_id" {id} NOT NULL,
        "points" BIGINT NOT NULL,
        "created_at" {time} NOT NULL
    )"#,
    r#"CREATE INDEX IF NOT EXISTS "Votes_project" ON "Votes" ("project_id")"#,
    r#"CREATE INDEX IF NOT EXISTS "Votes_voter" ON "Votes" ("voter_id")"#,
    r#"CREATE INDEX IF NOT EXISTS "Votes_event" ON "Votes" ("event_id")"#,
    r#"CREATE TABLE IF NOT EXISTS "Referrals" (
        "id" {id} PRIMARY KEY,
        "referrer_id" {id} NOT NULL,
        "referred_id" {id} NOT NULL,
        "event_id" {id},
        "created_at" {time} NOT NULL
    )"#,
    r#"CREATE INDEX IF NOT EXISTS "Referrals_referrer" ON "Referrals" ("referrer_id")"#,
    r#"CREATE INDEX IF NOT EXISTS "Referrals_referred" ON "Referrals" ("referred_id")"#,
];

/// Every table, children first (the order to drop them in).
pub const TABLE_NAMES: &[&str] = &["Referrals", "Votes", "Projects", "Events", "Users", "DemoData"];

impl Database {
    /// Connects, creating a SQLite file when missing.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, sqlx::Error> {
        Ok(match url.kind {
            SqlKind::Sqlite => {
                let options = SqliteConnectOptions::from_str(&url.url)?
                    .create_if_missing(true)
                    // WAL lets readers go on while a vote is written.
                    .journal_mode(SqliteJournalMode::Wal);
                Self::Sqlite(
                    SqlitePoolOptions::new()
                        .acquire_timeout(Duration::from_secs(10))
                        // SQLite serialises writers anyway; a few readers are plenty.
                        .max_connections(4)
                        .connect_with(options)
                        .await?,
                )
            }
            SqlKind::Postgres => {
                let options = PgConnectOptions::from_str(&url.url)?;
                // One plain connection first: a pool that cannot connect only says it timed
                // out, this says why (refused, bad password, no such database).
                options.connect().await?.close().await?;
                Self::Postgres(
                    PgPoolOptions::new()
                        .acquire_timeout(Duration::from_secs(10))
                        .max_connections(10)
                        .connect_with(options)
                        .await?,
                )
            }
        })
    }

    /// The pool, as `cache-sql` takes it.
    pub fn sql_pool(&self) -> SqlPool {
        match self {
            Self::Sqlite(pool) => pool.clone().into(),
            Self::Postgres(pool) => pool.clone().into(),
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }

    /// Runs one statement without parameters.
    pub async fn execute(&self, sql: &str) -> Result<u64, sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_owned());
        Ok(match self {
            Self::Sqlite(pool) => pool.execute(sql).await?.rows_affected(),
            Self::Postgres(pool) => pool.execute(sql).await?.rows_affected(),
        })
    }

    /// One number: the first column of the first row of `sql`.
    pub async fn scalar(&self, sql: &str) -> Result<Option<i64>, sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_optional(pool).await.map(Option::flatten),
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_optional(pool).await.map(Option::flatten),
        }
    }

    /// Creates the tables and indexes that do not exist yet.
    pub async fn create_tables(&self) -> Result<(), sqlx::Error> {
        let (id, time, ids) = match self {
            Self::Sqlite(_) => ("TEXT", "TIMESTAMP", "JSON NOT NULL DEFAULT '[]'"),
            Self::Postgres(_) => (r#"TEXT COLLATE "C""#, "TIMESTAMPTZ", "JSONB NOT NULL DEFAULT '[]'"),
        };
        for ddl in TABLES {
            let ddl = ddl.replace("{id}", id).replace("{time}", time).replace("{ids}", ids);
            self.execute(&ddl).await?;
        }
        Ok(())
    }

    /// Drops every table of the demo.
    pub async fn drop_tables(&self) -> Result<(), sqlx::Error> {
        for table in TABLE_NAMES {
            self.execute(&format!("DROP TABLE IF EXISTS {}", quote(table))).await?;
        }
        Ok(())
    }

    /// Whether the demo data is there (some user exists).
    pub async fn is_seeded(&self) -> Result<bool, sqlx::Error> {
        Ok(self
            .scalar(r#"SELECT CAST(1 AS BIGINT) FROM "Users" LIMIT 1"#)
            .await?
            .is_some())
    }

    /// The [`DATA_VERSION`] the database was seeded with; `None` when no seed recorded one.
    pub async fn data_version(&self) -> Result<Option<i64>, sqlx::Error> {
        self.scalar(r#"SELECT max("version") FROM "DemoData""#).await
    }

    /// Whether the outbox table of `cache-sql` is there: `demo-app outbox install` made it
    /// (and `outbox remove` keeps it, with what it still holds).
    pub async fn has_outbox(&self) -> Result<bool, sqlx::Error> {
        let table = cache_sql::outbox::OUTBOX_TABLE;
        let found = match self {
            Self::Sqlite(pool) => {
                sqlx::query_scalar::<_, i64>("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = $1")
                    .bind(table)
                    .fetch_optional(pool)
                    .await?
            }
            Self::Postgres(pool) => sqlx::query_scalar::<_, i32>("SELECT 1 WHERE to_regclass($1) IS NOT NULL")
                .bind(table)
                .fetch_optional(pool)
                .await?
                .map(i64::from),
        };
        Ok(found.is_some())
    }
}

/// A connection the demo writes on: a transaction's (seeding, or a
/// [`SqlTransaction`](cache_sql::SqlTransaction)'s).
#[derive(Debug)]
pub enum Conn<'a> {
    /// SQLite.
    Sqlite(&'a mut SqliteConnection),
    /// PostgreSQL.
    Postgres(&'a mut PgConnection),
}

/// A statement's parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    /// Text, or `NULL`.
    Text(Option<String>),
    /// An integer.
    Int(i64),
}

impl From<&str> for Param {
    fn from(text: &str) -> Self {
        Self::Text(Some(text.to_owned()))
    }
}

impl Conn<'_> {
    /// Runs a statement with `$1, $2, …` bound to `params`; the rows it changed.
    pub async fn execute(&mut self, sql: &str, params: Vec<Param>) -> Result<u64, sqlx::Error> {
        macro_rules! bound {
            ($query:expr) => {{
                let mut query = $query;
                for param in params {
                    query = match param {
                        Param::Text(text) => query.bind(text),
                        Param::Int(n) => query.bind(n),
                    };
                }
                query
            }};
        }
        let sql = AssertSqlSafe(sql.to_owned());
        Ok(match self {
            Self::Sqlite(conn) => bound!(sqlx::query(sql)).execute(&mut **conn).await?.rows_affected(),
            Self::Postgres(conn) => bound!(sqlx::query(sql)).execute(&mut **conn).await?.rows_affected(),
        })
    }

    /// Inserts `rows` (objects keyed by column: text, numbers, `null`, JSON lists of ids) into
    /// the entity's table in one statement, with the normalised column of each
    /// lowercase-indexed field ([`NORMALIZED_SUFFIX`]) filled from its value exactly as the
    /// cache normalises it. The rows travel as one JSON parameter, which each database
    /// converts to the columns' types (`json_each` on SQLite, `json_populate_recordset` on
    /// PostgreSQL).
    pub async fn insert(&mut self, entity: &EntitySchema, rows: &[Map<String, Value>]) -> Result<u64, sqlx::Error> {
        let Some(first) = rows.first() else {
            return Ok(0);
        };
        let normalized: Vec<(&str, String)> = entity
            .fields
            .iter()
            .filter(|f| f.index == Some(IndexKind::Lowercase) && first.contains_key(f.source_name))
            .map(|f| (f.source_name, format!("{}{NORMALIZED_SUFFIX}", f.source_name)))
            .collect();
        let rows: Vec<Value> = rows
            .iter()
            .map(|row| {
                let mut row = row.clone();
                for (column, into) in &normalized {
                    if let Some(Value::String(value)) = row.get(*column) {
                        let value = IndexKind::Lowercase.normalize(value.clone());
                        row.insert(into.clone(), Value::String(value));
                    }
                }
                Value::Object(row)
            })
            .collect();
        let columns: Vec<&str> = first
            .keys()
            .map(String::as_str)
            .chain(normalized.iter().map(|(_, into)| into.as_str()))
            .collect();
        let names: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let table = quote(entity.source_table);
        let sql = match self {
            Self::Sqlite(_) => {
                let values: Vec<String> = columns
                    .iter()
                    .map(|c| format!("json_extract(value, '$.{}')", quote(c).replace('\'', "''")))
                    .collect();
                format!(
                    "INSERT INTO {table} ({}) SELECT {} FROM json_each($1)",
                    names.join(", "),
                    values.join(", ")
                )
            }
            Self::Postgres(_) => format!(
                "INSERT INTO {table} ({0}) SELECT {0} FROM json_populate_recordset(NULL::{table}, CAST($1 AS json))",
                names.join(", ")
            ),
        };
        self.execute(&sql, vec![Param::Text(Some(Value::Array(rows).to_string()))])
            .await
    }
}

/// A timestamp as the demo writes it: UTC, always with milliseconds
/// (`2025-01-06T09:00:00.000Z`), so that text order is time order in SQLite's text columns.
pub fn sql_timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Quotes an SQL identifier: both dialects take `"…"` with `"` doubled.
pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_schemes() {
        let url: DatabaseUrl = "sqlite://demo.db".parse().unwrap();
        assert_eq!(url.source(), Source::Sqlite);
        let url: DatabaseUrl = "postgresql://u:secret@db:5432/x".parse().unwrap();
        assert_eq!(url.source(), Source::Postgres);
        assert_eq!(url.to_string(), "postgresql://u:***@db:5432/x");
        assert_eq!(url.as_str(), "postgresql://u:secret@db:5432/x");
        let url: DatabaseUrl = "postgres://u@db/x?options[search_path]=a@b".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://u@db/x?options[search_path]=a@b");

        let err = "mysql://db/x".parse::<DatabaseUrl>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`mysql://db/x` is not a database URL: the scheme must be sqlite: or postgres:"
        );
        assert!("demo.db".parse::<DatabaseUrl>().is_err());
        assert!("sqlite://".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote("Projects"), r#""Projects""#);
        assert_eq!(quote(r#"a"b"#), r#""a""b""#);
    }
}
