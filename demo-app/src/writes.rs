//! The application's writes to the source of truth. Each returns the record as the database
//! now has it, for the caller to `upsert` into the cache.
//!
//! Every write bumps `updated_at`, the models' version, strictly: an `UPDATE` only applies when
//! the stored `updated_at` is older than the new one, so two writes in the same millisecond
//! still get different versions and the cache can always tell which is newer.
//!
//! The tables written here have no lowercase-indexed field, so no normalised column
//! ([`crate::sql::normalized_column`]) to keep in step; a test says so.

use cache_core::{Cacheable, ModelError, OriginError, RecordId};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::Deserialize;
use sqlx::Row;

use crate::{
    database::{quote, sql_timestamp},
    models::{Project, Vote},
    origin::{Call, SqlOrigin, decode_row, prepare},
    seed::{new_join_code, new_record_id},
    sql::{Bind, Statement, columns},
};

/// How many times a write retries when another write bumped the version first.
const MAX_ATTEMPTS: usize = 8;

/// Why a write failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The database failed.
    #[error("database write failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The written row did not read back as a record.
    #[error(transparent)]
    Origin(#[from] OriginError),
    /// The written row did not read back as the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Other writes kept bumping the record's version.
    #[error("the record kept changing; try again")]
    Contended,
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

/// Now, to the millisecond (what the text columns keep).
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now)
}

fn id_list(ids: &[RecordId]) -> Bind {
    Bind::Text(serde_json::Value::from(ids.iter().map(RecordId::as_str).collect::<Vec<_>>()).to_string())
}

fn text(s: &str) -> Bind {
    Bind::Text(s.to_owned())
}

impl SqlOrigin {
    /// Inserts a project with no points yet.
    pub async fn insert_project(&self, new: &NewProject) -> Result<Project, WriteError> {
        self.begin(Call::Write).await;
        let schema = Project::schema();
        let at = sql_timestamp(now());
        let (id, join_code) = {
            let mut rng = rand::rng();
            (new_record_id(&mut rng), new_join_code(&mut rng))
        };
        let stmt = Statement {
            sql: format!(
                "INSERT INTO {} (\"id\", \"name\", \"description\", \"event_id\", \"owner_id\", \"collaborators\", \
                 \"points\", \"join_code\", \"created_at\", \"updated_at\") \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $8) RETURNING {}",
                quote(schema.source_table),
                columns(schema)
            ),
            binds: vec![
                text(&id),
                text(&new.name),
                new.description.as_deref().map_or(Bind::Null, text),
                text(new.event.as_str()),
                text(new.owner.as_str()),
                id_list(&new.collaborators),
                text(&join_code),
                text(&at),
            ],
        };
        let row = prepare(stmt).fetch_one(self.database().pool()).await?;
        Ok(Project::from_source(decode_row(schema, &row)?)?)
    }

    /// Applies `changes` to a project; `None` when there is no such project.
    pub async fn update_project(&self, id: &RecordId, changes: &ProjectChanges) -> Result<Option<Project>, WriteError> {
        self.begin(Call::Write).await;
        let schema = Project::schema();
        let set = |at: &str| Statement {
            sql: format!(
                "UPDATE {} SET \"name\" = COALESCE($1, \"name\"), \"description\" = COALESCE($2, \"description\"), \
                 \"collaborators\" = COALESCE($3, \"collaborators\"), \"updated_at\" = $4 \
                 WHERE \"id\" = $5 AND \"updated_at\" < $4 RETURNING {}",
                quote(schema.source_table),
                columns(schema)
            ),
            binds: vec![
                changes.name.as_deref().map_or(Bind::Null, text),
                changes.description.as_deref().map_or(Bind::Null, text),
                changes.collaborators.as_deref().map_or(Bind::Null, id_list),
                text(at),
                text(id.as_str()),
            ],
        };
        let mut at = now();
        for _ in 0..MAX_ATTEMPTS {
            if let Some(row) = prepare(set(&sql_timestamp(at)))
                .fetch_optional(self.database().pool())
                .await?
            {
                return Ok(Some(Project::from_source(decode_row(schema, &row)?)?));
            }
            match self.project_version(id).await? {
                None => return Ok(None),
                Some(current) => at = at.max(current + Duration::milliseconds(1)),
            }
        }
        Err(WriteError::Contended)
    }

    /// Records `voter`'s vote for a project and adds its points to the project, in one
    /// transaction; `None` when there is no such project.
    pub async fn cast_vote(
        &self,
        project: &RecordId,
        voter: &RecordId,
        points: i64,
    ) -> Result<Option<(Vote, Project)>, WriteError> {
        self.begin(Call::Write).await;
        let projects = Project::schema();
        let votes = Vote::schema();
        let vote_id = new_record_id(&mut rand::rng());
        let mut at = now();
        for _ in 0..MAX_ATTEMPTS {
            let stamp = sql_timestamp(at);
            let mut tx = self.database().pool().begin().await?;
            // The update comes first so that SQLite takes the write lock at once.
            let bump = Statement {
                sql: format!(
                    "UPDATE {} SET \"points\" = \"points\" + $1, \"updated_at\" = $2 \
                     WHERE \"id\" = $3 AND \"updated_at\" < $2 RETURNING {}",
                    quote(projects.source_table),
                    columns(projects)
                ),
                binds: vec![Bind::Int(points), text(&stamp), text(project.as_str())],
            };
            let Some(row) = prepare(bump).fetch_optional(&mut *tx).await? else {
                tx.rollback().await?;
                match self.project_version(project).await? {
                    None => return Ok(None),
                    Some(current) => at = at.max(current + Duration::milliseconds(1)),
                }
                continue;
            };
            let updated = Project::from_source(decode_row(projects, &row)?)?;
            let insert = Statement {
                sql: format!(
                    "INSERT INTO {} (\"id\", \"voter_id\", \"project_id\", \"event_id\", \"points\", \"created_at\") \
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING {}",
                    quote(votes.source_table),
                    columns(votes)
                ),
                binds: vec![
                    text(&vote_id),
                    text(voter.as_str()),
                    text(project.as_str()),
                    text(updated.event.id().as_str()),
                    Bind::Int(points),
                    text(&stamp),
                ],
            };
            let row = prepare(insert).fetch_one(&mut *tx).await?;
            let vote = Vote::from_source(decode_row(votes, &row)?)?;
            tx.commit().await?;
            return Ok(Some((vote, updated)));
        }
        Err(WriteError::Contended)
    }

    /// The project's stored `updated_at`, if the project exists.
    async fn project_version(&self, id: &RecordId) -> Result<Option<DateTime<Utc>>, WriteError> {
        let stmt = Statement {
            sql: format!(
                "SELECT \"updated_at\" FROM {} WHERE \"id\" = $1",
                quote(Project::schema().source_table)
            ),
            binds: vec![text(id.as_str())],
        };
        let Some(row) = prepare(stmt).fetch_optional(self.database().pool()).await? else {
            return Ok(None);
        };
        let stamp: String = row.try_get(0)?;
        let at = DateTime::parse_from_rfc3339(&stamp)
            .map_err(|e| OriginError::failed(format!("Projects.updated_at: `{stamp}`: {e}")))?;
        Ok(Some(at.with_timezone(&Utc)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_tables_have_no_normalised_column_to_keep() {
        for schema in [Project::schema(), Vote::schema()] {
            let normalized: Vec<String> = schema.fields.iter().filter_map(crate::sql::normalized_column).collect();
            assert!(
                normalized.is_empty(),
                "the writes to {} must fill {normalized:?}",
                schema.source_table
            );
        }
    }
}
