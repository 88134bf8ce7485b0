//! In-process stampede protection: origin calls in flight, which later misses join instead
//! of calling the origin again.
//!
//! A flight runs as its own task, so it completes (and fills the store) even when the caller
//! that started it goes away. Writes through the cache detach the flights they make stale:
//! a miss after an invalidation must not be answered by an origin call that began before it.
//!
//! Why this is not [`compute`'s flight](crate::compute): an origin call serves records, which
//! are `'static` data any caller can clone, so it runs detached in its own task and is shared
//! as a [`Shared`] future, keyed by entity and id (or query). A computation is the caller's
//! closure, which may borrow and cannot outlive its caller: it runs in the caller's task, and
//! when that caller goes away its waiters elect the next leader instead.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::{
    CacheError, Cacheable, RecordId,
    origin::{OriginError, SourceRecord},
    query::IndexQuery,
    schema::ModelError,
};

/// What a record flight found: the records the origin has, by id.
pub(crate) type RecordsOutcome = Result<Arc<HashMap<RecordId, Found>>, Arc<OriginError>>;
/// What a query flight found: every record matching the filters, in the query's order.
pub(crate) type QueryOutcome = Result<Arc<Vec<Found>>, Arc<OriginError>>;

/// One record a flight found, in the form every caller waiting on the flight reads it from:
/// the flight parses the origin's answer once, and nobody copies it.
#[derive(Debug, Clone)]
pub(crate) enum Found {
    /// Its cached form, as the flight stores it: a caller decodes it as a hit would.
    Cached(Bytes),
    /// A record the model reads but cannot encode (so it is not stored), in its source form.
    Source(SourceRecord),
    /// A record the model cannot read: every caller gets the model's error.
    Unreadable(Arc<ModelError>),
}

impl Found {
    pub(crate) fn decode<T: Cacheable>(&self) -> Result<T, CacheError> {
        match self {
            Self::Cached(body) => Ok(T::from_cached(body)?),
            Self::Source(source) => Ok(T::from_source(source.clone())?),
            Self::Unreadable(err) => Err(CacheError::Model(err.shared_copy())),
        }
    }
}

pub(crate) type Flight<T> = Shared<BoxFuture<'static, T>>;

type RecordKey = (&'static str, RecordId);
type QueryKey = (&'static str, IndexQuery);

#[derive(Default)]
pub(crate) struct Flights {
    next: AtomicU64,
    records: Mutex<HashMap<RecordKey, (u64, Flight<RecordsOutcome>)>>,
    queries: Mutex<HashMap<QueryKey, (u64, Flight<QueryOutcome>)>>,
}

/// The flights answering a read's ids: those already fetching some of them (`joined_ids` ids
/// joined) and the one started for the rest.
pub(crate) struct Joined {
    pub(crate) flights: Vec<Flight<RecordsOutcome>>,
    pub(crate) joined_ids: u64,
}

impl Flights {
    pub(crate) fn next_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Joins the flights fetching any of `ids`; for the rest, `start` is called (under the
    /// lock, so that no concurrent miss starts a second flight) and its flight registered.
    pub(crate) fn join_records(
        &self,
        entity: &'static str,
        ids: &[RecordId],
        start: impl FnOnce(&[RecordId]) -> (u64, Flight<RecordsOutcome>),
    ) -> Joined {
        let mut map = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let mut seen = HashSet::new();
        let mut flights = Vec::new();
        let mut joined_ids = 0;
        let mut rest = Vec::new();
        for id in ids {
            match map.get(&(entity, id.clone())) {
                Some((fid, flight)) => {
                    joined_ids += 1;
                    if seen.insert(*fid) {
                        flights.push(flight.clone());
                    }
                }
                None => rest.push(id.clone()),
            }
        }
        if !rest.is_empty() {
            let (fid, flight) = start(&rest);
            for id in &rest {
                map.insert((entity, id.clone()), (fid, flight.clone()));
            }
            flights.push(flight);
        }
        Joined { flights, joined_ids }
    }

    /// Joins the flight running `query` (filters and sort), or starts one. Answers whether it
    /// joined.
    pub(crate) fn join_query(
        &self,
        entity: &'static str,
        query: &IndexQuery,
        start: impl FnOnce() -> (u64, Flight<QueryOutcome>),
    ) -> (Flight<QueryOutcome>, bool) {
        let mut map = self.queries.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (entity, query.clone());
        if let Some((_, flight)) = map.get(&key) {
            return (flight.clone(), true);
        }
        let (fid, flight) = start();
        map.insert(key, (fid, flight.clone()));
        (flight, false)
    }

    /// A write to `ids` of `entity`: later misses must not join flights that began before it.
    pub(crate) fn detach(&self, entity: &'static str, ids: &[RecordId]) {
        {
            let mut map = self.records.lock().unwrap_or_else(PoisonError::into_inner);
            for id in ids {
                map.remove(&(entity, id.clone()));
            }
        }
        self.queries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(e, _), _| *e != entity);
    }

    fn finish_records(&self, entity: &'static str, ids: &[RecordId], fid: u64) {
        let mut map = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        for id in ids {
            let key = (entity, id.clone());
            if map.get(&key).is_some_and(|(f, _)| *f == fid) {
                map.remove(&key);
            }
        }
    }

    fn finish_query(&self, entity: &'static str, query: &IndexQuery, fid: u64) {
        let mut map = self.queries.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (entity, query.clone());
        if map.get(&key).is_some_and(|(f, _)| *f == fid) {
            map.remove(&key);
        }
    }
}

/// Unregisters a flight when its task ends, even by a panic, so that a failed flight is never
/// joined again.
pub(crate) struct FlightGuard {
    pub(crate) flights: Arc<Flights>,
    pub(crate) entity: &'static str,
    pub(crate) fid: u64,
    pub(crate) what: FlightOf,
}

pub(crate) enum FlightOf {
    Records(Vec<RecordId>),
    Query(IndexQuery),
    /// Not registered (a refresh): nothing to remove.
    Unregistered,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let flights = &self.flights;
        match &self.what {
            FlightOf::Records(ids) => flights.finish_records(self.entity, ids, self.fid),
            FlightOf::Query(query) => flights.finish_query(self.entity, query, self.fid),
            FlightOf::Unregistered => {}
        }
    }
}

/// Runs `work` as its own task and shares its outcome; a panic in it becomes an origin error.
pub(crate) fn spawn_shared<T>(
    work: impl Future<Output = Result<T, Arc<OriginError>>> + Send + 'static,
) -> Flight<Result<T, Arc<OriginError>>>
where
    T: Clone + Send + Sync + 'static,
{
    let handle = tokio::spawn(work);
    async move {
        match handle.await {
            Ok(outcome) => outcome,
            Err(err) => Err(Arc::new(OriginError::failed(format!("the origin call failed: {err}")))),
        }
    }
    .boxed()
    .shared()
}
