//! The application's writes to the source of truth, each in a
//! [`SqlTransaction`](cache_sql::SqlTransaction): the cache gets the rows as committed, after
//! the commit and only then (nothing on a rollback or an error). Each returns the record as
//! the cache now has it. On Airtable, the same writes go through its API
//! ([`crate::airtable::writes`]).
//!
//! Every write bumps `updated_at`, the models' version, strictly: to now, or a millisecond past
//! the stored one when that is not older, so two writes in the same millisecond still get
//! different versions and the cache can always tell which is newer.
//!
//! `create_project` inserts through [`Conn::insert`], which fills normalised columns; the
//! other writes set columns by hand, so the tables they write have no lowercase-indexed field
//! (a test says so).

use cache_core::{Cache, CacheError, Cacheable, InvalidId, RecordId, origin::OriginError};
use cache_sql::{Dialect, SqlError, SqlOrigin, SqlTransaction};
use chrono::{Duration, DurationRound, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{
    airtable,
    database::{Conn, Param, sql_timestamp},
    models::{Project, Vote},
    origin::{DemoOrigin, OriginSource},
    seed::{new_join_code, new_record_id},
};

/// Why a write failed. Nothing reached the cache unless the transaction committed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A statement failed: the transaction was rolled back.
    #[error("database write failed: {0}")]
    Database(#[from] sqlx::Error),
    /// Beginning, reading back or committing the transaction failed.
    #[error(transparent)]
    Transaction(#[from] SqlError),
    /// Reading the written record back through the cache failed (the write committed).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A generated id was refused (it never is: `rec` and 14 letters or digits).
    #[error("generated id: {0}")]
    Id(#[from] InvalidId),
    /// The record committed is not there when read back: another writer deleted it at once.
    #[error("{0} `{1}` was deleted by another write meanwhile")]
    Vanished(&'static str, RecordId),
    /// The source (Airtable) failed or refused the write.
    #[error(transparent)]
    Origin(#[from] OriginError),
}

/// A project to create.
#[derive(Debug, Clone, Deserialize)]
pub struct NewProject {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// The event it competes in.
    pub event: RecordId,
    /// Who submits it.
    pub owner: RecordId,
    /// The other team members.
    #[serde(default)]
    pub collaborators: Vec<RecordId>,
}

/// Changes to a project; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectChanges {
    /// A new name.
    #[serde(default)]
    pub name: Option<String>,
    /// A new description.
    #[serde(default)]
    pub description: Option<String>,
    /// The new team (replaces the old one).
    #[serde(default)]
    pub collaborators: Option<Vec<RecordId>>,
}

/// Now, to the millisecond, as the demo writes timestamps.
fn now() -> String {
    let now = Utc::now();
    sql_timestamp(now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now))
}

/// A `Links<T>` column's value: a JSON list of ids.
fn id_list(ids: &[RecordId]) -> Value {
    Value::from(ids.iter().map(RecordId::as_str).collect::<Vec<_>>())
}

/// Begins a write transaction whose writes reach `cache` after its commit
/// ([`SqlOrigin::begin`]); counted and paced as one call of the origin.
async fn begin(origin: &DemoOrigin, sql: &SqlOrigin, cache: &Cache) -> Result<SqlTransaction, SqlError> {
    origin.pace_write().await;
    sql.begin(cache).await
}

/// The transaction's connection.
fn conn<'t>(sql: &SqlOrigin, tx: &'t mut SqlTransaction) -> Result<Conn<'t>, SqlError> {
    Ok(match sql.pool().dialect() {
        Dialect::Postgres => Conn::Postgres(tx.postgres()?),
        // Anything else is refused by `sqlite()` unless it is SQLite.
        _ => Conn::Sqlite(tx.sqlite()?),
    })
}

/// The SQL that differs between the two databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spelling {
    Sqlite,
    Postgres,
}

impl Spelling {
    fn of(conn: &Conn<'_>) -> Self {
        match conn {
            Conn::Sqlite(_) => Self::Sqlite,
            Conn::Postgres(_) => Self::Postgres,
        }
    }

    /// Parameter `n` as a timestamp.
    fn time(self, n: usize) -> String {
        match self {
            Self::Sqlite => format!("${n}"),
            Self::Postgres => format!("CAST(${n} AS timestamptz)"),
        }
    }

    /// Parameter `n` (a JSON list of ids, or `NULL`) as the column's JSON.
    fn ids(self, n: usize) -> String {
        match self {
            Self::Sqlite => format!("${n}"),
            Self::Postgres => format!("CAST(${n} AS jsonb)"),
        }
    }

    /// The next version of a row: parameter `n` (now), or a millisecond past the stored
    /// `updated_at` when that is not older.
    fn next_version(self, n: usize) -> String {
        match self {
            Self::Sqlite => {
                format!(r#"max(${n}, strftime('%Y-%m-%dT%H:%M:%fZ', "updated_at", '+0.001 seconds'))"#)
            }
            Self::Postgres => {
                format!(r#"GREATEST(CAST(${n} AS timestamptz), "updated_at" + interval '1 millisecond')"#)
            }
        }
    }
}

/// The record as the cache has it after the commit.
async fn committed<T: Cacheable>(cache: &Cache, id: &RecordId) -> Result<T, WriteError> {
    cache
        .get::<T>(id)
        .await?
        .ok_or_else(|| WriteError::Vanished(T::schema().entity, id.clone()))
}

/// Inserts a project with no points yet.
pub async fn create_project(origin: &DemoOrigin, cache: &Cache, new: &NewProject) -> Result<Project, WriteError> {
    let sql = match origin.source() {
        OriginSource::Sql(sql) => sql,
        OriginSource::Airtable(at) => return airtable::writes::create_project(origin, at, cache, new).await,
    };
    let (id, join_code) = {
        let mut rng = rand::rng();
        (new_record_id(&mut rng), new_join_code(&mut rng))
    };
    let at = now();
    let row: Map<String, Value> = [
        ("id", Value::from(id.as_str())),
        ("name", Value::from(new.name.as_str())),
        (
            "description",
            new.description.as_deref().map_or(Value::Null, Value::from),
        ),
        ("event_id", Value::from(new.event.as_str())),
        ("owner_id", Value::from(new.owner.as_str())),
        ("collaborators", id_list(&new.collaborators)),
        ("points", Value::from(0)),
        ("join_code", Value::from(join_code)),
        ("created_at", Value::from(at.as_str())),
        ("updated_at", Value::from(at.as_str())),
    ]
    .into_iter()
    .map(|(column, value)| (column.to_owned(), value))
    .collect();
    let id = RecordId::new(&id)?;
    let mut tx = begin(origin, sql, cache).await?;
    conn(sql, &mut tx)?.insert(Project::schema(), &[row]).await?;
    tx.wrote::<Project>(&id)?;
    tx.commit().await?;
    committed(cache, &id).await
}

/// Applies `changes` to a project; `None` when there is no such project.
pub async fn update_project(
    origin: &DemoOrigin,
    cache: &Cache,
    id: &RecordId,
    changes: &ProjectChanges,
) -> Result<Option<Project>, WriteError> {
    let sql = match origin.source() {
        OriginSource::Sql(sql) => sql,
        OriginSource::Airtable(at) => return airtable::writes::update_project(origin, at, cache, id, changes).await,
    };
    let mut tx = begin(origin, sql, cache).await?;
    let mut conn = conn(sql, &mut tx)?;
    let sql = Spelling::of(&conn);
    let update = format!(
        r#"UPDATE "Projects" SET "name" = COALESCE($1, "name"), "description" = COALESCE($2, "description"),
           "collaborators" = COALESCE({}, "collaborators"), "updated_at" = {} WHERE "id" = $5"#,
        sql.ids(3),
        sql.next_version(4)
    );
    let params = vec![
        Param::Text(changes.name.clone()),
        Param::Text(changes.description.clone()),
        Param::Text(changes.collaborators.as_deref().map(|ids| id_list(ids).to_string())),
        now().as_str().into(),
        id.as_str().into(),
    ];
    if conn.execute(&update, params).await? == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    tx.wrote::<Project>(id)?;
    tx.commit().await?;
    committed(cache, id).await.map(Some)
}

/// Deletes a project; whether there was one. The cache keeps a tombstone with the deleted
/// version, after the commit.
pub async fn delete_project(origin: &DemoOrigin, cache: &Cache, id: &RecordId) -> Result<bool, WriteError> {
    let sql = match origin.source() {
        OriginSource::Sql(sql) => sql,
        OriginSource::Airtable(_) => return airtable::writes::delete_project(cache, id).await,
    };
    let mut tx = begin(origin, sql, cache).await?;
    if tx.delete::<Project>(id).await?.is_none() {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// Records `voter`'s vote for a project and adds its points to the project, in one
/// transaction; `None` when there is no such project.
pub async fn cast_vote(
    origin: &DemoOrigin,
    cache: &Cache,
    project: &RecordId,
    voter: &RecordId,
    points: i64,
) -> Result<Option<(Vote, Project)>, WriteError> {
    let sql = match origin.source() {
        OriginSource::Sql(sql) => sql,
        OriginSource::Airtable(at) => {
            return airtable::writes::cast_vote(origin, at, cache, project, voter, points).await;
        }
    };
    let vote_id = new_record_id(&mut rand::rng());
    let vote = RecordId::new(&vote_id)?;
    let at = now();
    let mut tx = begin(origin, sql, cache).await?;
    let mut conn = conn(sql, &mut tx)?;
    let sql = Spelling::of(&conn);
    // The update comes first so that SQLite takes the write lock at once.
    let bump = format!(
        r#"UPDATE "Projects" SET "points" = "points" + $1, "updated_at" = {} WHERE "id" = $3"#,
        sql.next_version(2)
    );
    let bumped = conn
        .execute(
            &bump,
            vec![Param::Int(points), at.as_str().into(), project.as_str().into()],
        )
        .await?;
    if bumped == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    let insert = format!(
        r#"INSERT INTO "Votes" ("id", "voter_id", "project_id", "event_id", "points", "created_at")
           SELECT $1, $2, "id", "event_id", $3, {} FROM "Projects" WHERE "id" = $5"#,
        sql.time(4)
    );
    let params = vec![
        vote_id.as_str().into(),
        voter.as_str().into(),
        Param::Int(points),
        at.as_str().into(),
        project.as_str().into(),
    ];
    conn.execute(&insert, params).await?;
    tx.wrote::<Project>(project)?;
    tx.wrote::<Vote>(&vote)?;
    tx.commit().await?;
    Ok(Some((committed(cache, &vote).await?, committed(cache, project).await?)))
}

#[cfg(test)]
mod tests {
    use cache_core::schema::IndexKind;

    use super::*;

    #[test]
    fn written_tables_have_no_normalised_column_to_keep() {
        // `update_project` and `cast_vote` write columns by hand: a lowercase-indexed field
        // there would need its normalised column written too.
        for schema in [Project::schema(), Vote::schema()] {
            let lowercase: Vec<&str> = schema
                .fields
                .iter()
                .filter(|f| f.index == Some(IndexKind::Lowercase))
                .map(|f| f.name)
                .collect();
            assert!(
                lowercase.is_empty(),
                "the writes to {} must fill the normalised columns of {lowercase:?}",
                schema.source_table
            );
        }
    }

    #[test]
    fn statements_differ_only_where_the_databases_do() {
        assert_eq!(Spelling::Sqlite.time(4), "$4");
        assert_eq!(Spelling::Postgres.time(4), "CAST($4 AS timestamptz)");
        assert_eq!(Spelling::Postgres.ids(3), "CAST($3 AS jsonb)");
        assert!(Spelling::Sqlite.next_version(2).starts_with("max($2, strftime("));
    }
}
