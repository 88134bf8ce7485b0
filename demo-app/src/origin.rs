//! The demo's origin: `cache-sql`'s [`SqlOrigin`] made as slow and as rate-limited as a
//! hosted API on demand, or `cache-airtable`'s [`AirtableOrigin`]; counting its calls.
//!
//! Everything SQL is `SqlOrigin`'s: the statements, the types, the normalised lookups; and
//! everything Airtable is `AirtableOrigin`'s, its limits included. This wrapper only adds what
//! the demo shows off: for SQL, the latency of a slow source (`ORIGIN_LATENCY_MS`) and its
//! rate limit (`ORIGIN_RATE_LIMIT`); for both, counters of its calls. Airtable gets no added
//! latency or limit: it is slow and limited already (5 requests a second per base, kept by
//! its client).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use cache_airtable::AirtableOrigin;
use cache_core::{
    Order, RecordId,
    origin::{Deletion, Origin, OriginError, SourceQuery, SourceRecord},
    schema::EntitySchema,
};
use cache_sql::SqlOrigin;
use serde::Serialize;
use tokio::time::Instant;

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
    /// The application's write transactions (creating, updating, deleting, voting).
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

/// The source of truth behind the demo's origin.
#[derive(Debug, Clone)]
pub enum OriginSource {
    /// A SQL database.
    Sql(SqlOrigin),
    /// An Airtable base.
    Airtable(AirtableOrigin),
}

struct Inner {
    source: OriginSource,
    latency: Duration,
    limiter: Option<RateLimiter>,
    counters: Counters,
}

/// The demo's origin. Cloning is cheap: clones share the pool, the rate limit and the counters.
#[derive(Clone)]
pub struct DemoOrigin {
    inner: Arc<Inner>,
}

/// Every call goes to the source behind the origin.
macro_rules! delegate {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match &$self.inner.source {
            OriginSource::Sql(sql) => sql.$method($($arg),*).await,
            OriginSource::Airtable(airtable) => airtable.$method($($arg),*).await,
        }
    };
}

/// The kind of call, for the counters and the rate limit.
#[derive(Debug, Clone, Copy)]
enum Call {
    Fetch,
    FetchMany,
    Query,
    ExistsMany,
    Delete,
    Write,
}

impl DemoOrigin {
    /// `sql`, as slow as `settings` say.
    pub fn new(sql: SqlOrigin, settings: OriginSettings) -> Self {
        let limiter = (settings.rate_limit > 0).then(|| RateLimiter {
            interval: Duration::from_secs(1) / settings.rate_limit,
            next: Mutex::new(Instant::now()),
        });
        Self {
            inner: Arc::new(Inner {
                source: OriginSource::Sql(sql),
                latency: settings.latency,
                limiter,
                counters: Counters::default(),
            }),
        }
    }

    /// `airtable`, as it is: no added latency or limit.
    pub fn on_airtable(airtable: AirtableOrigin) -> Self {
        Self {
            inner: Arc::new(Inner {
                source: OriginSource::Airtable(airtable),
                latency: Duration::ZERO,
                limiter: None,
                counters: Counters::default(),
            }),
        }
    }

    /// The source underneath.
    pub fn source(&self) -> &OriginSource {
        &self.inner.source
    }

    /// The SQL origin underneath, when the source is SQL: for the outbox, which is not slowed
    /// down.
    pub fn sql(&self) -> Option<&SqlOrigin> {
        match &self.inner.source {
            OriginSource::Sql(sql) => Some(sql),
            OriginSource::Airtable(_) => None,
        }
    }

    /// The Airtable origin underneath, when the source is Airtable: for its change feed,
    /// which shares its client (one rate limit).
    pub fn airtable(&self) -> Option<&AirtableOrigin> {
        match &self.inner.source {
            OriginSource::Airtable(airtable) => Some(airtable),
            OriginSource::Sql(_) => None,
        }
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
    async fn pace(&self, call: Call) {
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

    /// Counts one of the application's writes (a transaction, or an Airtable write of one
    /// or two requests) and paces it as one call.
    pub async fn pace_write(&self) {
        self.pace(Call::Write).await;
    }

    /// The ids of the `limit` most recent records of `entity` (all when `None`), newest
    /// first by `created_at` (in id order for an entity without it sortable): what
    /// `demo-app warm` loads. One query.
    pub async fn recent_ids(
        &self,
        entity: &'static EntitySchema,
        limit: Option<usize>,
    ) -> Result<Vec<RecordId>, OriginError> {
        let query = SourceQuery {
            filters: Vec::new(),
            sort: entity
                .sortable_fields()
                .find(|f| f.name == "created_at")
                .map(|f| (f, Order::Desc)),
            offset: 0,
            limit,
        };
        Ok(self.query(entity, &query).await?.into_iter().map(|r| r.id).collect())
    }
}

#[async_trait]
impl Origin for DemoOrigin {
    async fn fetch(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<SourceRecord>, OriginError> {
        self.pace(Call::Fetch).await;
        delegate!(self.fetch(entity, id))
    }

    async fn fetch_many(
        &self,
        entity: &'static EntitySchema,
        ids: &[RecordId],
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.pace(Call::FetchMany).await;
        delegate!(self.fetch_many(entity, ids))
    }

    async fn query(
        &self,
        entity: &'static EntitySchema,
        query: &SourceQuery,
    ) -> Result<Vec<SourceRecord>, OriginError> {
        self.pace(Call::Query).await;
        delegate!(self.query(entity, query))
    }

    async fn exists_many(&self, entity: &'static EntitySchema, ids: &[RecordId]) -> Result<Vec<RecordId>, OriginError> {
        self.pace(Call::ExistsMany).await;
        delegate!(self.exists_many(entity, ids))
    }

    async fn delete(&self, entity: &'static EntitySchema, id: &RecordId) -> Result<Option<Deletion>, OriginError> {
        self.pace(Call::Delete).await;
        delegate!(self.delete(entity, id))
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
