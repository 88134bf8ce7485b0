//! SQL databases (PostgreSQL, SQLite) as model-cache's source of truth, on sqlx.
//!
//! [`SqlOrigin`] serves every registered model from its table, with no code per entity: the
//! table is the model's `source_table` (a table or a view), the columns its fields' source
//! names, the key column its id field. Native column types become the source shape the models
//! read (integers and UUID keys as [`RecordId`](cache_core::RecordId) text, timestamps as
//! RFC 3339 text in UTC, `json`/`jsonb` and arrays as JSON, a foreign key as a `Link<T>`, an
//! array or JSON list of ids as `Links<T>`). Adding a field to a model and a column to the table
//! touches no origin code.
//!
//! ```no_run
//! use cache_core::{Cache, Cacheable, Link, MemoryStore, RecordId};
//! use cache_sql::SqlOrigin;
//!
//! #[derive(Cacheable, Debug, Clone)]
//! #[cache(entity = "teams", source_table = "teams")]
//! struct Team {
//!     #[cache(id)]
//!     id: RecordId,
//!     name: String,
//! }
//!
//! #[derive(Cacheable, Debug, Clone)]
//! #[cache(entity = "people", source_table = "people")]
//! struct Person {
//!     #[cache(id)]
//!     id: RecordId,
//!     // Looked up in `email_normalized`, which holds the email as the cache normalises it.
//!     #[indexed(normalize = "lowercase")]
//!     email: String,
//!     // The `team_id` column: a foreign key.
//!     #[cache(source = "team_id")]
//!     #[indexed]
//!     team: Link<Team>,
//!     #[sortable]
//!     points: i64,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let pool = sqlx::PgPool::connect("postgres://localhost/app").await?;
//! // Refuses, naming the table and the column, what the tables cannot answer exactly.
//! let origin = SqlOrigin::builder(pool).model::<Team>().model::<Person>().build().await?;
//! let cache = Cache::builder(MemoryStore::new(), origin)
//!     .register::<Team>()
//!     .register::<Person>()
//!     .build()?;
//! let ada: Option<Person> = cache.get(&"42".parse()?).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Lowercase-normalised lookups (`#[indexed(normalize = "lowercase")]`) are answered from a
//! second column, `<column>_normalized` ([`NORMALIZED_SUFFIX`]), holding the value exactly as
//! the cache normalises it; [`SqlOriginBuilder::build`] refuses a table without it, naming the
//! table and the column.
//!
//! Two more parts keep the cache in step with the database:
//!
//! - [`SqlTransaction`] ([`SqlOrigin::begin`]): the application's writes, read back before
//!   `COMMIT` and applied to the cache through [`Cache::apply_changes`](cache_core::Cache::apply_changes)
//!   only after it succeeded; nothing on rollback, error or drop.
//! - [`Outbox`] and [`OutboxListener`] ([`outbox`]): triggers generated from the models
//!   record every writer's changes in an outbox table in the writer's transaction; listeners
//!   (woken by PostgreSQL's `NOTIFY`, polling SQLite) apply them through the same path.
//!
//! ```no_run
//! # use cache_core::Cache;
//! # use cache_sql::{Outbox, OutboxListener, SqlOrigin};
//! # async fn capture(origin: SqlOrigin, cache: Cache) -> Result<(), cache_sql::SqlError> {
//! println!("{}", Outbox::new(&origin).install_sql()); // review it, or:
//! Outbox::new(&origin).install().await?;
//! let listener = OutboxListener::new(&origin, &cache);
//! tokio::spawn(async move { listener.run(std::future::pending()).await });
//! # Ok(())
//! # }
//! ```
//!
//! The guide's chapter "SQL databases" explains the tables the origin expects, the normalised
//! columns of lowercase lookups, how each native type is read, and the outbox.
#![warn(missing_docs)]

mod columns;
mod origin;
pub mod outbox;
mod plan;
mod transaction;

use std::time::Duration;

pub use origin::{DEFAULT_STATEMENT_TIMEOUT, SqlOrigin, SqlOriginBuilder};
pub use outbox::{Outbox, OutboxListener};
pub use plan::NORMALIZED_SUFFIX;
use sqlx::{PgPool, SqlitePool};
pub use transaction::{Committed, MAX_NOTED_WRITES, SqlTransaction};

/// The SQL a database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

/// A connection pool to one of the supported databases.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SqlPool {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

impl SqlPool {
    /// The SQL the pool's database speaks.
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Postgres(_) => Dialect::Postgres,
            Self::Sqlite(_) => Dialect::Sqlite,
        }
    }
}

impl From<PgPool> for SqlPool {
    fn from(pool: PgPool) -> Self {
        Self::Postgres(pool)
    }
}

impl From<SqlitePool> for SqlPool {
    fn from(pool: SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

/// What went wrong between the origin and the database; every variant names the table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The entity's `source_table` is neither a table nor a view.
    #[error("table `{table}` (of entity `{entity}`) does not exist")]
    NoTable {
        /// The table.
        table: String,
        /// The entity.
        entity: &'static str,
    },
    /// A field's column is missing.
    #[error("table `{table}` has no column `{column}` (field `{field}`)")]
    NoColumn {
        /// The table.
        table: String,
        /// The column (the field's source name).
        column: String,
        /// The field's Rust name.
        field: &'static str,
    },
    /// The id column's type cannot be a record id.
    #[error("table `{table}`: id column `{column}` is `{declared}`; an id column is an integer, a uuid or text")]
    UnsupportedKey {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its declared type.
        declared: String,
    },
    /// A sortable or version field's column has no numeric order.
    #[error(
        "table `{table}`: column `{column}` is `{declared}`; a sortable or version field needs a number or a timestamp"
    )]
    NotSortable {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its declared type.
        declared: String,
    },
    /// An indexed field's column cannot be compared for equality with an index value.
    #[error(
        "table `{table}`: column `{column}` is `{declared}`; an indexed field needs text, a number, a bool or a uuid"
    )]
    NotIndexable {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Its declared type.
        declared: String,
    },
    /// A lowercase-indexed field has no column holding its normalised value.
    #[error(
        "table `{table}`: column `{column}` is looked up lower-cased, but the table has no `{normalized}` column \
         holding it as the cache normalises it (trimmed, Unicode lower case); add it and write it from \
         `IndexKind::Lowercase.normalize` (see the guide's SQL chapter)"
    )]
    NoNormalizedColumn {
        /// The table.
        table: String,
        /// The indexed column.
        column: String,
        /// The normalised column it needs.
        normalized: String,
    },
    /// A row's normalised column does not hold its value as the cache normalises it: a
    /// lookup would miss it (see [`SqlOriginBuilder::check_normalized_values`]).
    #[error(transparent)]
    NotNormalized(Box<NotNormalized>),
    /// A query filtered on a field that is not indexed.
    #[error("table `{table}`: field `{field}` is not indexed")]
    NotFilterable {
        /// The table.
        table: String,
        /// The field.
        field: String,
    },
    /// A query sorted on a field that is not sortable.
    #[error("table `{table}`: field `{field}` is not sortable")]
    NotSortableField {
        /// The table.
        table: String,
        /// The field.
        field: String,
    },
    /// Reading the table's columns from the catalogue failed.
    #[error("reading the columns of `{table}` failed: {source}")]
    Catalogue {
        /// The table.
        table: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("statement on `{table}` failed: {source}")]
    Query {
        /// The table.
        table: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A statement ran longer than the statement timeout.
    #[error("statement on `{table}` timed out after {after:?}")]
    Timeout {
        /// The table.
        table: String,
        /// The timeout.
        after: Duration,
    },
    /// A transaction step failed (`BEGIN`, `COMMIT`, `ROLLBACK`, reading the clock).
    #[error("transaction {step} failed: {source}")]
    Transaction {
        /// The step.
        step: &'static str,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// The transaction's connection was asked for as the wrong database.
    #[error("the transaction is not on {wanted}")]
    WrongDatabase {
        /// The database asked for.
        wanted: &'static str,
    },
    /// A transaction noted more records than it may.
    #[error("a transaction notes at most {max} records; invalidate in bulk instead")]
    TooManyWrites {
        /// The bound.
        max: usize,
    },
    /// The feed's position or lock in the store failed.
    #[error("outbox feed state: {0}")]
    Feed(#[source] cache_core::store::StoreError),
    /// This listener's lock on the outbox feed lapsed (it stalled longer than its time to
    /// live) and another listener may hold the feed now: the round stopped without moving the
    /// feed's position.
    #[error("the outbox feed's lock lapsed and another listener may hold it; this round stopped")]
    FeedLost,
    /// The cache refused a batch (an entity not registered with it).
    #[error("applying outbox changes: {0}")]
    Cache(#[source] cache_core::CacheError),
    /// The store failed to apply a change: the batch stays in the outbox for the next round.
    #[error("the store failed to apply an outbox change; it is applied again at the next round")]
    Retry,
    /// Reading back or deleting a record failed (the error names the table).
    #[error(transparent)]
    Origin(cache_core::origin::OriginError),
    /// A value did not read as the source shape.
    #[error("`{table}`.`{column}`: {reason}")]
    Decode {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// What was wrong.
        reason: String,
    },
}

/// A row whose normalised column is not what the cache looks up ([`SqlError::NotNormalized`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "table `{table}`: row `{id}` has `{column}` = {value:?} but `{normalized}` = {found:?}; \
     the cache looks it up as {expected:?}"
)]
#[non_exhaustive]
pub struct NotNormalized {
    /// The table.
    pub table: String,
    /// The indexed column.
    pub column: String,
    /// Its normalised column.
    pub normalized: String,
    /// The row.
    pub id: String,
    /// The indexed column's value.
    pub value: String,
    /// What the normalised column holds.
    pub found: Option<String>,
    /// What it should hold.
    pub expected: String,
}
