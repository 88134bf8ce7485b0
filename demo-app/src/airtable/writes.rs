//! The application's writes on Airtable, through the client: each reaches the cache right
//! after Airtable answered it (the app's own change, [`Cache::upsert`] or [`Cache::delete`]),
//! and again through the webhook feed, which the cache refuses as no newer.
//!
//! Airtable has no transactions. A vote creates the vote, then raises the project's points
//! from what Airtable has now: two votes for one project at the same moment may count one of
//! them in the points (both votes are kept). Every write bumps `updated_at`, the models'
//! version, to now or a millisecond past the version the cache has, as the SQL writes do.

use cache_airtable::{AirtableOrigin, Record};
use cache_core::{
    Cache, Cacheable, RecordId,
    origin::{Origin, OriginError, SourceRecord},
};
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Map, Value};

use crate::{
    database::sql_timestamp,
    models::{Project, Vote},
    origin::DemoOrigin,
    seed::new_join_code,
    writes::{NewProject, ProjectChanges, WriteError},
};

/// Now, to the millisecond.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now)
}

/// The next version after `current`: now, or a millisecond past it when that is not older.
fn next_version(current: DateTime<Utc>) -> DateTime<Utc> {
    now().max(current + Duration::milliseconds(1))
}

/// A link cell: Airtable sends link fields as lists of ids, a single link too.
fn links<'a>(ids: impl IntoIterator<Item = &'a RecordId>) -> Value {
    Value::from(ids.into_iter().map(RecordId::as_str).collect::<Vec<_>>())
}

/// The record Airtable answered, as the model.
fn model<T: Cacheable>(record: Record) -> Result<T, WriteError> {
    let id = RecordId::new(&record.id)?;
    Ok(T::from_source(SourceRecord {
        id,
        fields: record.fields,
    })
    .map_err(cache_core::CacheError::from)?)
}

fn airtable_failed(err: cache_airtable::AirtableError) -> WriteError {
    WriteError::Origin(OriginError::from(err))
}

/// The one record Airtable answered for a write of one.
fn only(table: &str, records: Vec<Record>) -> Result<Record, WriteError> {
    records
        .into_iter()
        .next()
        .ok_or_else(|| WriteError::Origin(OriginError::failed(format!("Airtable answered no record of {table}"))))
}

/// Stores what Airtable answered in the cache, then reads it back as the cache has it.
async fn settle<T: Cacheable>(cache: &Cache, record: T) -> Result<T, WriteError> {
    let id = record.id().clone();
    cache.upsert(&record).await?;
    cache
        .get::<T>(&id)
        .await?
        .ok_or_else(|| WriteError::Vanished(T::schema().entity, id))
}

/// Creates a project with no points yet.
pub(crate) async fn create_project(
    origin: &DemoOrigin,
    airtable: &AirtableOrigin,
    cache: &Cache,
    new: &NewProject,
) -> Result<Project, WriteError> {
    let at = sql_timestamp(now());
    let join_code = new_join_code(&mut rand::rng());
    let mut fields = Map::new();
    fields.insert("name".to_owned(), Value::from(new.name.as_str()));
    if let Some(description) = &new.description {
        fields.insert("description".to_owned(), Value::from(description.as_str()));
    }
    fields.insert("event_id".to_owned(), links([&new.event]));
    fields.insert("owner_id".to_owned(), links([&new.owner]));
    fields.insert("collaborators".to_owned(), links(&new.collaborators));
    fields.insert("points".to_owned(), Value::from(0));
    fields.insert("join_code".to_owned(), Value::from(join_code));
    fields.insert("created_at".to_owned(), Value::from(at.as_str()));
    fields.insert("updated_at".to_owned(), Value::from(at.as_str()));
    let table = airtable.table_of(Project::schema());
    origin.pace_write().await;
    let created = airtable
        .client()
        .create_records(table, vec![fields])
        .await
        .map_err(airtable_failed)?;
    settle(cache, model::<Project>(only(table, created)?)?).await
}

/// Applies `changes` to a project; `None` when there is no such project.
pub(crate) async fn update_project(
    origin: &DemoOrigin,
    airtable: &AirtableOrigin,
    cache: &Cache,
    id: &RecordId,
    changes: &ProjectChanges,
) -> Result<Option<Project>, WriteError> {
    let Some(current) = cache.get::<Project>(id).await? else {
        return Ok(None);
    };
    let mut fields = Map::new();
    if let Some(name) = &changes.name {
        fields.insert("name".to_owned(), Value::from(name.as_str()));
    }
    if let Some(description) = &changes.description {
        fields.insert("description".to_owned(), Value::from(description.as_str()));
    }
    if let Some(collaborators) = &changes.collaborators {
        fields.insert("collaborators".to_owned(), links(collaborators));
    }
    fields.insert(
        "updated_at".to_owned(),
        Value::from(sql_timestamp(next_version(current.updated_at))),
    );
    let table = airtable.table_of(Project::schema());
    origin.pace_write().await;
    let updated = match airtable
        .client()
        .update_records(table, vec![(id.as_str().to_owned(), fields)])
        .await
    {
        Ok(records) => only(table, records)?,
        // Deleted in Airtable since the cache read it.
        Err(err) if err.is_record_not_found() => return Ok(None),
        Err(err) => return Err(airtable_failed(err)),
    };
    settle(cache, model::<Project>(updated)?).await.map(Some)
}

/// Deletes a project; whether there was one. The cache keeps a tombstone with the deleted
/// version ([`Cache::delete`]: the origin reads the record, then deletes it).
pub(crate) async fn delete_project(cache: &Cache, id: &RecordId) -> Result<bool, WriteError> {
    Ok(cache.delete::<Project>(id).await?)
}

/// Records `voter`'s vote for a project, then adds its points to the project as Airtable has
/// it now; `None` when there is no such project.
pub(crate) async fn cast_vote(
    origin: &DemoOrigin,
    airtable: &AirtableOrigin,
    cache: &Cache,
    project: &RecordId,
    voter: &RecordId,
    points: i64,
) -> Result<Option<(Vote, Project)>, WriteError> {
    // From Airtable, not the cache: the points are added to what Airtable holds.
    let Some(current) = origin.fetch(Project::schema(), project).await? else {
        return Ok(None);
    };
    let current = Project::from_source(current).map_err(cache_core::CacheError::from)?;
    let at = now();
    let votes = airtable.table_of(Vote::schema());
    let projects = airtable.table_of(Project::schema());
    origin.pace_write().await;
    let vote: Map<String, Value> = [
        ("voter_id", links([voter])),
        ("project_id", links([project])),
        ("event_id", links([current.event.id()])),
        ("points", Value::from(points)),
        ("created_at", Value::from(sql_timestamp(at))),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let created = airtable
        .client()
        .create_records(votes, vec![vote])
        .await
        .map_err(airtable_failed)?;
    let vote = model::<Vote>(only(votes, created)?)?;
    let mut fields = Map::new();
    fields.insert("points".to_owned(), Value::from(current.points + points));
    fields.insert(
        "updated_at".to_owned(),
        Value::from(sql_timestamp(next_version(current.updated_at))),
    );
    let updated = match airtable
        .client()
        .update_records(projects, vec![(project.as_str().to_owned(), fields)])
        .await
    {
        Ok(records) => only(projects, records)?,
        // Deleted meanwhile: the vote stays, as it would in Airtable's own interface.
        Err(err) if err.is_record_not_found() => return Ok(None),
        Err(err) => return Err(airtable_failed(err)),
    };
    let vote = settle(cache, vote).await?;
    let project = settle(cache, model::<Project>(updated)?).await?;
    Ok(Some((vote, project)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_only_grow() {
        let later = now() + Duration::hours(1);
        assert_eq!(next_version(later), later + Duration::milliseconds(1));
        let earlier = now() - Duration::hours(1);
        assert!(next_version(earlier) > earlier + Duration::minutes(59));
        assert_eq!(
            links([&RecordId::new("recA000000000001").unwrap()]),
            json!(["recA000000000001"])
        );
    }
}
