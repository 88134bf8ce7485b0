//! The demo's source of truth: an SQL database behind `cache_core::Origin`, made as slow and
//! as rate-limited as a hosted API on demand.
//!
//! The origin is generic over [`EntitySchema`]: any registered model whose table has its
//! columns is served, with no code per entity. Records come out in source shape: single links
//! as their id column (`event_id: "recE…"`), multi-record links as the JSON list their text
//! column holds.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use cache_core::{Deletion, EntitySchema, FieldKind, Origin, OriginError, RecordId, SourceQuery, SourceRecord};
use serde::Serialize;
use serde_json::{Map, Number, Value};
use sqlx::{
    AssertSqlSafe, Column, Row, ValueRef,
    any::{Any, AnyArguments, AnyRow, AnyTypeInfoKind},
};
use tokio::time::Instant;

use crate::{
    database::Database,
    sql::{self, Bind, Statement},
};

/// The most ids put in one `IN (…)` list: far below SQLite's and PostgreSQL's parameter limits.
const MAX_IDS_PER_STATEMENT: usize = 10_000;

/// How slow the origin pretends to be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OriginSettings {
    /// Added to every call (a read, a delete, a write).
    pub latency: Duration,
    /// Calls per second at most; `0` is unlimited. A call over the limit waits for its turn
    /// (it is not refused), so clients see latency rather than errors.
    pub rate_limit: u32,
}

/// How many calls the origin has answered, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OriginCalls {
    /// `fetch`.
    pub fetch: u64,
    /// `fetch_many`.
    pub fetch_many: u64,
    /// `query`.
    pub query: u64,
    /// `exists_many`.
    pub exists_many: u64,
    /// `delete`.
    pub delete: u64,
    /// The application's writes (creating, updating, voting).
    pub write: u64,
}

impl OriginCalls {
    /// Every call.
    pub fn total(&self) -> u64 {
        self.fetch + self.fetch_many + self.query + self.exists_many + self.delete + self.write
    }
}

#[derive(Default)]
struct Counters {
    fetch: AtomicU64,
    fetch_many: AtomicU64,
    query: AtomicU64,
    exists_many: AtomicU64,
    delete: AtomicU64,
    write: AtomicU64,
}

/// Spaces calls `interval` apart: each call takes the next free slot and waits for it.
struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

struct Inner {
    db: Database,
    latency: Duration,
    limiter: Option<RateLimiter>,
    counters: Counters,
}

/// The SQL origin. Cloning is cheap: clones share the pool, the rate limit and the counters.
#[derive(Clone)]
pub struct SqlOrigin {
    inner: Arc<Inner>,
}

/// The kind of call, for the counters and the rate limit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    Fetch,
    FetchMany,
    Query,
    ExistsMany,
    Delete,
    Write,
}

impl SqlOrigin {
    /// An origin over `db`, as slow as `settings` say.
    pub fn new(db: Database, settings: OriginSettings) -> Self {
        let limiter = (settings.rate_limit > 0).then(|| RateLimiter {
            interval: Duration::from_secs(1) / settings.rate_limit,
            next: Mutex::new(Instant::now()),
        });
        Self {
            inner: Arc::new(Inner {
                db,
                latency: settings.latency,
                limiter,
                counters: Counters::default(),
            }),
        }
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    /// The calls answered so far.
    pub fn calls(&self) -> OriginCalls {
        let c = &self.inner.counters;
        OriginCalls {
            fetch: c.fetch.load(Ordering::Relaxed),
            fetch_many: c.fetch_many.load(Ordering::Relaxed),
            query: c.query.load(Ordering::Relaxed),
            exists_many: c.exists_many.load(Ordering::Relaxed),
            delete: c.delete.load(Ordering::Relaxed),
            write: c.write.load(Ordering::Relaxed),
        }
    }

    /// Counts a call, waits for its turn under the rate limit, then pays the latency.
    pub(crate) async fn begin(&self, call: Call) {
        let c = &self.inner.counters;
        let counter = match call {
            Call::Fetch => &c.fetch,
            Call::FetchMany => &c.fetch_many,
            Call::Query => &c.query,
            Call::ExistsMany => &c.exists_many,
            Call::Delete => &c.delete,
            Call::Write => &c.write,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(limiter) = &self.inner.limiter {
            limiter.acquire().await;
        }
        if !self.inner.latency.is_zero() {
            tokio::time::sleep(self.inner.latency).await;
        }
    }

    async fn fetch_rows(&self, stmt: Statement) -> Result<Vec<AnyRow>, OriginError> {
        prepare(stmt)
            .fetch_all(self.inner.db.pool())
            .await
            .map_err(OriginError::failed)
    }
}

/// The sqlx query for a statement.
pub fn prepare(stmt: Statement) -> sqlx::query::Query<'static, Any, AnyArguments> {
    let mut query = sqlx::query(AssertSqlSafe(stmt.sql));
    for bind in stmt.binds {
        query = match bind {
            Bind::Text(s) => query.bind(s),
            Bind::Int(i) => query.bind(i),
            Bind::Bool(b) => query.bind(b),
            Bind::Null => query.bind(None::<String>),
        };
    }
    query
}

/// Reads a row into a record in source shape. `NULL` columns are left out, as Airtable leaves
/// out empty fields.
pub(crate) fn decode_row(entity: &EntitySchema, row: &AnyRow) -> Result<SourceRecord, OriginError> {
    let failed =
        |column: &str, reason: String| OriginError::failed(format!("{}.{column}: {reason}", entity.source_table));
    let mut id = None;
    let mut fields = Map::new();
    for column in row.columns() {
        let name = column.name();
        let i = column.ordinal();
        let raw = row.try_get_raw(i).map_err(OriginError::failed)?;
        if raw.is_null() {
            continue;
        }
        let kind = raw.type_info().kind();
        let value = match kind {
            AnyTypeInfoKind::Bool => Value::Bool(row.try_get(i).map_err(OriginError::failed)?),
            k if k.is_integer() => Value::Number(row.try_get::<i64, _>(i).map_err(OriginError::failed)?.into()),
            AnyTypeInfoKind::Real | AnyTypeInfoKind::Double => {
                let f: f64 = row.try_get(i).map_err(OriginError::failed)?;
                Number::from_f64(f).map_or(Value::Null, Value::Number)
            }
            AnyTypeInfoKind::Text => Value::String(row.try_get(i).map_err(OriginError::failed)?),
            other => return Err(failed(name, format!("unsupported column type {other:?}"))),
        };
        if name == entity.id_field {
            let text = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            id = Some(RecordId::new(text).map_err(|e| failed(name, e.to_string()))?);
            continue;
        }
        let is_links = entity
            .fields
            .iter()
            .any(|f| f.source_name == name && matches!(f.kind, FieldKind::Links { .. }));
        let value = match value {
            Value::String(json) if is_links => {
                serde_json::from_str(&json).map_err(|e| failed(name, format!("not a JSON list of ids: {e}")))?
            }
            value => value,
        };
        fields.insert(name.to_owned(), value);
    }
    let id = id.ok_or_else(|| failed(entity.id_field, "missing".to_owned()))?;
    Ok(SourceRecord { id, fields })
}

impl SqlOrigin {
    /// The ids of the `limit` most recent records of `entity` (all when `None`), newest
    /// first: what `demo-app warm` loads. One call.
    pub async fn recent_ids(
        &self,
        entity: &'static EntitySchema,
        limit: Option<usize>,
    ) -> Result<Vec<RecordId>, OriginError> {
        self.begin(Call::Query).await;
        self.fetch_rows(sql::recent_ids(entity, limit))
            .await?
            .iter()
            .map(|row| decode_row(entity, row).map(|r| r.id))
            .collect()
    }
}

#[async_trait]
impl Origin for SqlOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        self.begin(Call::Fetch).await;
        let rows = self.fetch_rows(sql::fetch(entity, id)).await?;
        rows.first().map(|row| decode_row(entity, row)).transpose()
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.begin(Call::FetchMany).await;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS_PER_STATEMENT) {
            for row in self.fetch_rows(sql::fetch_many(entity, chunk)).await? {
                out.push(decode_row(entity, &row)?);
            }
        }
        Ok(out)
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.begin(Call::Query).await;
        let stmt =
            sql::query(self.inner.db.dialect(), entity, query).map_err(|e| OriginError::Unsupported(e.to_string()))?;
        self.fetch_rows(stmt)
            .await?
            .iter()
            .map(|row| decode_row(entity, row))
            .collect()
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        self.begin(Call::ExistsMany).await;
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(MAX_IDS_PER_STATEMENT) {
            for row in self.fetch_rows(sql::exists_many(entity, chunk)).await? {
                out.push(decode_row(entity, &row)?.id);
            }
        }
        Ok(out)
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        self.begin(Call::Delete).await;
        // The deleted row comes back whole: the cache reads its version with the model.
        let rows = self.fetch_rows(sql::delete(entity, id)).await?;
        match rows.first() {
            Some(row) => Ok(Some(Deletion::new().with_record(decode_row(entity, row)?))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_spaces_calls() {
        let limiter = RateLimiter {
            interval: Duration::from_secs(1) / 4,
            next: Mutex::new(Instant::now()),
        };
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // The first call goes at once, the four others a quarter of a second apart.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
