//! Writes that reach the cache after their commit, and only then: [`SqlTransaction`].
//!
//! The transaction notes which records it wrote ([`SqlTransaction::wrote`]). At
//! [`commit`](SqlTransaction::commit) it reads them back on its own connection, *before*
//! `COMMIT`, so that what it hands the cache is exactly what it commits (defaults, triggers and
//! generated columns included), together with the source time (PostgreSQL's
//! `clock_timestamp()`, read inside the transaction; for SQLite, which has one writer at a time,
//! the time at the read-back, taken while the write lock is held). Only when `COMMIT` succeeds
//! are the changes applied, through [`Cache::apply_changes`]: an upsert of the committed
//! record, a delete with the deleted version, or an invalidation. A rollback, an error or a
//! dropped transaction applies nothing. When the cache step fails after the commit, the
//! records are invalidated instead, so the next read asks the database: never stale.
//!
//! Two transactions writing the same row are ordered by its row lock, and their source times
//! with them: the later one's read-back happens after the earlier one's commit. The cache
//! refuses the earlier change if it arrives second ([`Refusal::Older`](cache_core::change::Refusal)).
//! A fill that read the row before the commit is refused after it, by the cache's own fill
//! protocol.

use std::{collections::BTreeMap, time::SystemTime};

use cache_core::{
    Cache, Cacheable, RecordId,
    change::{Change, ChangeOutcome},
    origin::Deletion,
    schema::EntitySchema,
};
use sqlx::{PgConnection, Postgres, Row, Sqlite, SqliteConnection, Transaction};

use crate::{SqlError, SqlOrigin, SqlPool, origin::Conn};

/// The most records one transaction notes; beyond it, [`SqlTransaction::wrote`] refuses.
pub const MAX_NOTED_WRITES: usize = 100_000;

enum Tx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl Tx {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Self::Postgres(tx) => Conn::Postgres(&mut *tx),
            Self::Sqlite(tx) => Conn::Sqlite(&mut *tx),
        }
    }
}

/// What a transaction noted of one record.
#[derive(Debug, Clone, Copy)]
struct Noted {
    schema: &'static EntitySchema,
    /// Deleted through [`SqlTransaction::delete`]: the deleted row's version.
    deleted_version: Option<f64>,
    /// Only forget the record (a write the transaction does not describe).
    invalidate: bool,
}

/// A database transaction whose writes reach the cache after its commit, and only then.
///
/// [`commit`](Self::commit) reads back the rows noted with [`wrote`](Self::wrote) on the
/// transaction's own connection before `COMMIT` (what the cache gets is what is committed),
/// with the database's clock as the changes' time; only when `COMMIT` succeeded does it apply
/// them through [`Cache::apply_changes`]. A rollback, an error or a drop applies nothing; a
/// cache step failing after the commit invalidates the records instead (never stale).
///
/// ```no_run
/// # use cache_core::{Cache, Cacheable, RecordId};
/// # use cache_sql::SqlOrigin;
/// # #[derive(Cacheable, Debug, Clone)]
/// # #[cache(entity = "people", source_table = "people")]
/// # struct Person { #[cache(id)] id: RecordId, name: String }
/// # async fn rename(origin: &SqlOrigin, cache: &Cache, id: &RecordId) -> Result<(), Box<dyn std::error::Error>> {
/// let mut tx = origin.begin(cache).await?;
/// sqlx::query("UPDATE people SET name = $1 WHERE id = $2")
///     .bind("Ada L.")
///     .bind(id.as_str())
///     .execute(tx.postgres()?)
///     .await?;
/// tx.wrote::<Person>(id)?;
/// // The cache holds the committed row once this returns; nothing if it failed.
/// let committed = tx.commit().await?;
/// assert!(committed.failed.is_empty());
/// # Ok(())
/// # }
/// ```
pub struct SqlTransaction {
    tx: Tx,
    origin: SqlOrigin,
    cache: Cache,
    noted: BTreeMap<(&'static str, RecordId), Noted>,
}

impl std::fmt::Debug for SqlTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlTransaction")
            .field("noted", &self.noted.len())
            .finish_non_exhaustive()
    }
}

/// What a commit did to the cache.
#[derive(Debug, Default, Clone, PartialEq)]
#[non_exhaustive]
pub struct Committed {
    /// Changes the cache now holds.
    pub applied: usize,
    /// Changes the cache refused, rightly (a newer state was there first).
    pub refused: usize,
    /// Records forgotten because their change could not be applied (the next read asks the
    /// database).
    pub invalidated: usize,
    /// Records neither applied nor forgotten: the store failed twice. The cache may serve
    /// them stale until they expire; the commit itself succeeded.
    pub failed: Vec<(&'static str, RecordId)>,
}

impl SqlOrigin {
    /// Begins a transaction on the origin's pool whose writes reach `cache` after commit.
    pub async fn begin(&self, cache: &Cache) -> Result<SqlTransaction, SqlError> {
        let begin = |source| SqlError::Transaction { step: "BEGIN", source };
        let tx = match self.pool() {
            SqlPool::Postgres(pool) => Tx::Postgres(pool.begin().await.map_err(begin)?),
            SqlPool::Sqlite(pool) => Tx::Sqlite(pool.begin().await.map_err(begin)?),
        };
        Ok(SqlTransaction {
            tx,
            origin: self.clone(),
            cache: cache.clone(),
            noted: BTreeMap::new(),
        })
    }
}

impl SqlTransaction {
    /// The transaction's connection, on PostgreSQL: run your statements on it.
    pub fn postgres(&mut self) -> Result<&mut PgConnection, SqlError> {
        match &mut self.tx {
            Tx::Postgres(tx) => Ok(&mut *tx),
            Tx::Sqlite(_) => Err(SqlError::WrongDatabase { wanted: "PostgreSQL" }),
        }
    }

    /// The transaction's connection, on SQLite: run your statements on it.
    pub fn sqlite(&mut self) -> Result<&mut SqliteConnection, SqlError> {
        match &mut self.tx {
            Tx::Sqlite(tx) => Ok(&mut *tx),
            Tx::Postgres(_) => Err(SqlError::WrongDatabase { wanted: "SQLite" }),
        }
    }

    /// Notes that the transaction wrote (created, updated or deleted) the record of `T`: after
    /// the commit, the cache holds the row as committed, or its deletion.
    pub fn wrote<T: Cacheable>(&mut self, id: &RecordId) -> Result<(), SqlError> {
        self.note(T::schema(), id, None, false)
    }

    /// [`wrote`](Self::wrote), by schema.
    pub fn wrote_entity(&mut self, schema: &'static EntitySchema, id: &RecordId) -> Result<(), SqlError> {
        self.note(schema, id, None, false)
    }

    /// Notes that the record changed in a way the cache should not be told: after the
    /// commit it forgets it, and the next read asks the database.
    pub fn invalidate<T: Cacheable>(&mut self, id: &RecordId) -> Result<(), SqlError> {
        self.note(T::schema(), id, None, true)
    }

    /// Deletes the record of `T` inside the transaction (the origin's own `DELETE …
    /// RETURNING`), noting the deleted version for the cache's tombstone. `None` when there
    /// was no such row.
    pub async fn delete<T: Cacheable>(&mut self, id: &RecordId) -> Result<Option<Deletion>, SqlError> {
        let schema = T::schema();
        let deleted = self
            .origin
            .delete_in(self.tx.conn(), schema, id)
            .await
            .map_err(SqlError::Origin)?;
        if let Some(deletion) = &deleted {
            self.note(schema, id, deletion.version, false)?;
        }
        Ok(deleted)
    }

    fn note(
        &mut self,
        schema: &'static EntitySchema,
        id: &RecordId,
        deleted_version: Option<f64>,
        invalidate: bool,
    ) -> Result<(), SqlError> {
        let key = (schema.entity, id.clone());
        if !self.noted.contains_key(&key) && self.noted.len() >= MAX_NOTED_WRITES {
            return Err(SqlError::TooManyWrites { max: MAX_NOTED_WRITES });
        }
        let noted = self.noted.entry(key).or_insert(Noted {
            schema,
            deleted_version: None,
            invalidate: false,
        });
        noted.deleted_version = deleted_version.or(noted.deleted_version);
        noted.invalidate |= invalidate;
        Ok(())
    }

    /// Rolls back: the cache is not touched.
    pub async fn rollback(self) -> Result<(), SqlError> {
        let rollback = |source| SqlError::Transaction {
            step: "ROLLBACK",
            source,
        };
        match self.tx {
            Tx::Postgres(tx) => tx.rollback().await.map_err(rollback),
            Tx::Sqlite(tx) => tx.rollback().await.map_err(rollback),
        }
    }

    /// Reads back what the transaction wrote, commits, and only then applies it to the cache.
    /// An error means the transaction did not commit (the cache was not touched); once it
    /// has committed, the answer is `Ok`, and [`Committed`] says what the cache did.
    pub async fn commit(mut self) -> Result<Committed, SqlError> {
        let changes = self.read_back().await?;
        let commit = |source| SqlError::Transaction { step: "COMMIT", source };
        match self.tx {
            Tx::Postgres(tx) => tx.commit().await.map_err(commit)?,
            Tx::Sqlite(tx) => tx.commit().await.map_err(commit)?,
        }
        Ok(apply(&self.cache, changes).await)
    }

    /// The changes to apply after the commit: the rows as the transaction leaves them.
    async fn read_back(&mut self) -> Result<Vec<Change>, SqlError> {
        let mut by_entity: BTreeMap<&'static str, (&'static EntitySchema, Vec<RecordId>)> = BTreeMap::new();
        for ((entity, id), noted) in &self.noted {
            if !noted.invalidate {
                by_entity
                    .entry(entity)
                    .or_insert_with(|| (noted.schema, Vec::new()))
                    .1
                    .push(id.clone());
            }
        }
        let mut rows = BTreeMap::new();
        for (entity, (schema, ids)) in by_entity {
            let records = self
                .origin
                .fetch_many_in(self.tx.conn(), schema, &ids)
                .await
                .map_err(SqlError::Origin)?;
            for record in records {
                rows.insert((entity, record.id.clone()), record);
            }
        }
        let at = self.source_time().await?;
        let mut changes = Vec::with_capacity(self.noted.len());
        for ((entity, id), noted) in std::mem::take(&mut self.noted) {
            let change = if noted.invalidate {
                Change::invalidate(noted.schema, id)
            } else if let Some(record) = rows.remove(&(entity, id.clone())) {
                Change::upsert(noted.schema, record).at(at)
            } else {
                let delete = Change::delete(noted.schema, id).at(at);
                match noted.deleted_version {
                    Some(version) => delete.version(version),
                    None => delete,
                }
            };
            changes.push(change);
        }
        Ok(changes)
    }

    /// The source time of the transaction's changes, read after its writes.
    async fn source_time(&mut self) -> Result<SystemTime, SqlError> {
        match &mut self.tx {
            Tx::Postgres(tx) => {
                let micros: i64 = sqlx::query("SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8")
                    .fetch_one(&mut **tx)
                    .await
                    .and_then(|row| row.try_get(0))
                    .map_err(|source| SqlError::Transaction {
                        step: "clock_timestamp()",
                        source,
                    })?;
                Ok(from_micros(micros))
            }
            // To the millisecond, as the outbox's triggers read SQLite's clock: a change this
            // commit applies and the same change from the outbox then carry one time.
            Tx::Sqlite(_) => {
                let now = SystemTime::now();
                let micros = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| {
                    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).saturating_mul(1000)
                });
                Ok(from_micros(micros))
            }
        }
    }
}

/// Unix microseconds as a time.
pub(crate) fn from_micros(micros: i64) -> SystemTime {
    let offset = std::time::Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        SystemTime::UNIX_EPOCH + offset
    } else {
        SystemTime::UNIX_EPOCH - offset
    }
}

/// Applies committed changes; what could not be applied is invalidated instead.
pub(crate) async fn apply(cache: &Cache, changes: Vec<Change>) -> Committed {
    let mut committed = Committed::default();
    if changes.is_empty() {
        return committed;
    }
    let targets: Vec<(&'static EntitySchema, RecordId)> =
        changes.iter().map(|c| (c.entity(), c.id().clone())).collect();
    let outcomes = match cache.apply_changes(changes).await {
        Ok(outcomes) => outcomes,
        Err(err) => {
            tracing::warn!(event = "sql_after_commit_failed", error = %err, "applying committed changes failed");
            Vec::new()
        }
    };
    let mut retry = Vec::new();
    for (i, target) in targets.into_iter().enumerate() {
        match outcomes.get(i) {
            Some(ChangeOutcome::Applied) => committed.applied += 1,
            Some(ChangeOutcome::Refused(_)) => committed.refused += 1,
            // A disabled cache holds nothing to make stale.
            Some(ChangeOutcome::Disabled) => {}
            _ => retry.push(target),
        }
    }
    if retry.is_empty() {
        return committed;
    }
    let invalidations = retry
        .iter()
        .map(|(schema, id)| Change::invalidate(schema, id.clone()))
        .collect();
    let outcomes = cache.apply_changes(invalidations).await.unwrap_or_default();
    for (i, (schema, id)) in retry.into_iter().enumerate() {
        match outcomes.get(i) {
            Some(ChangeOutcome::Applied | ChangeOutcome::Disabled | ChangeOutcome::Refused(_)) => {
                committed.invalidated += 1;
            }
            _ => {
                tracing::warn!(
                    event = "sql_after_commit_stale",
                    entity = schema.entity,
                    id = %id,
                    "a committed change reached neither the cache nor its invalidation"
                );
                committed.failed.push((schema.entity, id));
            }
        }
    }
    committed
}
