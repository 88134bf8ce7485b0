//! The demo's SQL database: connecting (SQLite or PostgreSQL through sqlx's `Any` driver), the
//! tables, and the few SQL spellings that differ between the two.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Executor, any::AnyPoolOptions};

/// The SQL spoken by the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (the default: a file, no set-up).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Where the database is: `sqlite://PATH` or `postgres://…`. Parsing checks the scheme.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    dialect: Dialect,
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
        let dialect = match scheme {
            "sqlite" => Dialect::Sqlite,
            "postgres" | "postgresql" => Dialect::Postgres,
            _ => return Err(invalid("the scheme must be sqlite: or postgres:")),
        };
        let path = rest.trim_start_matches('/');
        if path.is_empty() || path.starts_with('?') {
            return Err(invalid("it names no database (sqlite://demo.db, postgres://host/db)"));
        }
        Ok(Self {
            url: url.to_owned(),
            dialect,
        })
    }
}

impl DatabaseUrl {
    /// The SQL dialect the URL implies.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The URL sqlx connects with: a SQLite file is created when missing.
    fn connect_url(&self) -> String {
        if self.dialect == Dialect::Sqlite && !self.url.contains("mode=") {
            let sep = if self.url.contains('?') { '&' } else { '?' };
            format!("{}{sep}mode=rwc", self.url)
        } else {
            self.url.clone()
        }
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

/// A connection pool and the dialect it speaks.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    dialect: Dialect,
}

/// The version of the demo's tables and generated data, kept in the `DemoData` table: a
/// database seeded by another version has other columns or other ids.
pub const DATA_VERSION: i64 = 2;

/// The demo's tables, created when missing. `{text}` is a text column type that orders by
/// bytes (as record ids and index entries are ordered in the cache), `{json}` a list of ids.
/// Multi-record links are JSON text columns: one read per record, no join table.
/// `email_normalized` is the email as the cache normalises it ([`crate::sql::normalized_column`]).
const TABLES: &[&str] = &[
    r#"CREATE TABLE IF NOT EXISTS "DemoData" ("version" BIGINT NOT NULL)"#,
    r#"CREATE TABLE IF NOT EXISTS "Users" (
        "id" {text} PRIMARY KEY,
        "email" {text} NOT NULL,
        "email_normalized" {text} NOT NULL,
        "name" {text} NOT NULL,
        "owned_events" {json},
        "attending_events" {json},
        "created_at" {text} NOT NULL,
        "updated_at" {text} NOT NULL
    )"#,
    r#"CREATE UNIQUE INDEX IF NOT EXISTS "Users_email" ON "Users" ("email_normalized")"#,
    r#"CREATE TABLE IF NOT EXISTS "Events" (
        "id" {text} PRIMARY KEY,
        "name" {text} NOT NULL,
        "slug" {text} NOT NULL UNIQUE,
        "owner_id" {text} NOT NULL,
        "attendees" {json},
        "join_code" {text} NOT NULL,
        "starts_at" {text} NOT NULL,
        "created_at" {text} NOT NULL,
        "updated_at" {text} NOT NULL
    )"#,
    r#"CREATE INDEX IF NOT EXISTS "Events_owner" ON "Events" ("owner_id")"#,
    r#"CREATE TABLE IF NOT EXISTS "Projects" (
        "id" {text} PRIMARY KEY,
        "name" {text} NOT NULL,
        "description" {text},
        "event_id" {text} NOT NULL,
        "owner_id" {text} NOT NULL,
        "collaborators" {json},
        "points" BIGINT NOT NULL DEFAULT 0,
        "join_code" {text} NOT NULL,
        "created_at" {text} NOT NULL,
        "updated_at" {text} NOT NULL
    )"#,
    r#"CREATE INDEX IF NOT EXISTS "Projects_leaderboard" ON "Projects" ("event_id", "points", "id")"#,
    r#"CREATE INDEX IF NOT EXISTS "Projects_owner" ON "Projects" ("owner_id")"#,
    r#"CREATE TABLE IF NOT EXISTS "Votes" (
        "id" {text} PRIMARY KEY,
        "voter_id" {text} NOT NULL,
        "project_id" {text} NOT NULL,
        "event_id" {text} NOT NULL,
        "points" BIGINT NOT NULL,
        "created_at" {text} NOT NULL
    )"#,
    r#"CREATE INDEX IF NOT EXISTS "Votes_project" ON "Votes" ("project_id")"#,
    r#"CREATE INDEX IF NOT EXISTS "Votes_voter" ON "Votes" ("voter_id")"#,
    r#"CREATE INDEX IF NOT EXISTS "Votes_event" ON "Votes" ("event_id")"#,
    r#"CREATE TABLE IF NOT EXISTS "Referrals" (
        "id" {text} PRIMARY KEY,
        "referrer_id" {text} NOT NULL,
        "referred_id" {text} NOT NULL,
        "event_id" {text},
        "created_at" {text} NOT NULL
    )"#,
    r#"CREATE INDEX IF NOT EXISTS "Referrals_referrer" ON "Referrals" ("referrer_id")"#,
    r#"CREATE INDEX IF NOT EXISTS "Referrals_referred" ON "Referrals" ("referred_id")"#,
];

/// Every table, children first (the order to drop them in).
pub const TABLE_NAMES: &[&str] = &["Referrals", "Votes", "Projects", "Events", "Users", "DemoData"];

impl Database {
    /// Connects, creating a SQLite file when missing.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        // One plain connection first: a pool that cannot connect only says it timed out,
        // this says why (refused, bad password, no such database).
        let url_text = url.connect_url();
        AnyConnection::connect(&url_text).await?.close().await?;
        let pool = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match url.dialect {
                // SQLite serialises writers anyway; a few readers are plenty.
                Dialect::Sqlite => 4,
                Dialect::Postgres => 10,
            })
            .connect(&url_text)
            .await?;
        let db = Self {
            pool,
            dialect: url.dialect,
        };
        if db.dialect == Dialect::Sqlite {
            // WAL lets readers go on while a vote is written.
            db.pool.execute("PRAGMA journal_mode = WAL").await?;
        }
        Ok(db)
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Creates the tables and indexes that do not exist yet.
    pub async fn create_tables(&self) -> Result<(), sqlx::Error> {
        let (text, json) = match self.dialect {
            Dialect::Sqlite => ("TEXT", "TEXT NOT NULL DEFAULT '[]'"),
            Dialect::Postgres => (r#"TEXT COLLATE "C""#, r#"TEXT COLLATE "C" NOT NULL DEFAULT '[]'"#),
        };
        for ddl in TABLES {
            let ddl = ddl.replace("{text}", text).replace("{json}", json);
            self.pool.execute(AssertSqlSafe(ddl)).await?;
        }
        Ok(())
    }

    /// Drops every table of the demo.
    pub async fn drop_tables(&self) -> Result<(), sqlx::Error> {
        for table in TABLE_NAMES {
            self.pool
                .execute(AssertSqlSafe(format!("DROP TABLE IF EXISTS {}", quote(table))))
                .await?;
        }
        Ok(())
    }

    /// Whether the demo data is there (some user exists).
    pub async fn is_seeded(&self) -> Result<bool, sqlx::Error> {
        let row = sqlx::query(r#"SELECT 1 FROM "Users" LIMIT 1"#)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// The [`DATA_VERSION`] the database was seeded with; `None` when no seed recorded one.
    pub async fn data_version(&self) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(r#"SELECT max("version") FROM "DemoData""#)
            .fetch_one(&self.pool)
            .await
    }
}

/// A timestamp as the demo's text columns hold it: UTC, always with milliseconds, so that
/// text order is time order in both dialects (`2025-01-06T09:00:00.000Z`).
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
        assert_eq!(url.dialect(), Dialect::Sqlite);
        assert_eq!(url.connect_url(), "sqlite://demo.db?mode=rwc");
        let url: DatabaseUrl = "postgresql://u:secret@db:5432/x".parse().unwrap();
        assert_eq!(url.dialect(), Dialect::Postgres);
        assert_eq!(url.to_string(), "postgresql://u:***@db:5432/x");
        assert_eq!(url.connect_url(), "postgresql://u:secret@db:5432/x");
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
