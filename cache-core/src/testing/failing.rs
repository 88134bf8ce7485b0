//! [`FailingStore`]: any store, taken down and brought back on demand, counting its calls.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::lock;
use crate::{
    ComputeLock, ComputedLookup, ComputedWrite, EntitySchema, FillToken, IndexEntries, IndexQuery, Lease, LockAttempt,
    LockWait, Lookup, MemoryStore, QueryLookup, RecordId, RecordWrite, RemoveMode, Store, StoreError, StoreResult,
    StoreStats, WriteMode, WriteOutcome,
};

/// A store in front of another (a [`MemoryStore`] by default) that can be taken down: while it
/// is down every call fails as [`StoreError::Unavailable`], standing in for "Redis is down".
/// It counts the calls of each [`Store`] method, down or not. Clones share the switch, the
/// counts and the store behind.
///
/// ```
/// use cache_core::{MemoryStore, Store, testing::FailingStore};
///
/// # async fn demo() {
/// let store = FailingStore::new(MemoryStore::new());
/// store.set_down(true);
/// assert!(store.ping().await.is_err());
/// store.set_down(false);
/// assert!(store.ping().await.is_ok());
/// assert_eq!(store.calls("ping"), 2);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct FailingStore<S = MemoryStore> {
    inner: S,
    down: Arc<AtomicBool>,
    calls: Arc<Mutex<HashMap<&'static str, usize>>>,
}

impl<S: Store> FailingStore<S> {
    /// Wraps `inner`, up.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            down: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// Takes the store down (`true`) or brings it back (`false`).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Whether the store is down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// The number of calls of the [`Store`] method named `method` (`"get"`, `"put"`, ...).
    pub fn calls(&self, method: &str) -> usize {
        lock(&self.calls).get(method).copied().unwrap_or(0)
    }

    /// The number of calls of every method.
    pub fn total_calls(&self) -> usize {
        lock(&self.calls).values().sum()
    }

    /// Forgets the calls counted so far.
    pub fn reset_calls(&self) {
        lock(&self.calls).clear();
    }

    /// The store behind.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn enter(&self, method: &'static str) -> StoreResult<()> {
        *lock(&self.calls).entry(method).or_default() += 1;
        if self.is_down() {
            return Err(StoreError::Unavailable(format!("{method}: the store is down (test)")));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for FailingStore<S> {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        self.enter("get")?;
        self.inner.get(entity, id).await
    }

    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        self.enter("get_many")?;
        self.inner.get_many(entity, ids).await
    }

    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        self.enter("lease")?;
        self.inner.lease(entity, ids, ttl).await
    }

    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        self.enter("put")?;
        self.inner.put(entity, writes, mode).await
    }

    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        self.enter("remove")?;
        self.inner.remove(entity, ids, mode).await
    }

    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        self.enter("query")?;
        self.inner.query(entity, query).await
    }

    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<bool> {
        self.enter("complete_query")?;
        self.inner.complete_query(entity, query, token, records).await
    }

    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>> {
        match self.enter("scan_ids") {
            Ok(()) => self.inner.scan_ids(entity, batch),
            Err(err) => stream::once(async { Err(err) }).boxed(),
        }
    }

    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64> {
        self.enter("flush")?;
        self.inner.flush(pattern).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.enter("ping")?;
        self.inner.ping().await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        self.enter("stats")?;
        self.inner.stats().await
    }

    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>> {
        self.enter("get_value")?;
        self.inner.get_value(key).await
    }

    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        self.enter("put_value")?;
        self.inner.put_value(key, value, ttl, tags).await
    }

    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        self.enter("purge_tags")?;
        self.inner.purge_tags(tags).await
    }

    async fn advance_watermark(&self, key: &str, value: i64, ttl: Duration) -> StoreResult<bool> {
        self.enter("advance_watermark")?;
        self.inner.advance_watermark(key, value, ttl).await
    }

    async fn get_computed(&self, key: &str) -> StoreResult<ComputedLookup> {
        self.enter("get_computed")?;
        self.inner.get_computed(key).await
    }

    async fn put_computed(&self, key: &str, write: &ComputedWrite) -> StoreResult<bool> {
        self.enter("put_computed")?;
        self.inner.put_computed(key, write).await
    }

    async fn lock_computed(&self, key: &str, ttl: Duration) -> StoreResult<LockAttempt> {
        self.enter("lock_computed")?;
        self.inner.lock_computed(key, ttl).await
    }

    async fn unlock_computed(&self, key: &str, lock: ComputeLock) -> StoreResult<()> {
        self.enter("unlock_computed")?;
        self.inner.unlock_computed(key, lock).await
    }

    async fn wait_computed(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        self.enter("wait_computed")?;
        self.inner.wait_computed(key, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every check of the suite passes through the wrapper while it is up.
    mod conformance {
        crate::store_conformance_tests!(async { crate::testing::FailingStore::<crate::MemoryStore>::default() });
    }

    #[tokio::test]
    async fn down_fails_every_call_and_counts_it() {
        let store = FailingStore::<MemoryStore>::default();
        let entity = crate::testing::conformance::projects();
        let id = RecordId::new("p1").unwrap();
        store.set_down(true);
        assert!(matches!(store.get(entity, &id).await, Err(StoreError::Unavailable(_))));
        let mut scan = store.scan_ids(entity, 10);
        assert!(matches!(scan.next().await, Some(Err(StoreError::Unavailable(_)))));
        drop(scan);
        store.set_down(false);
        assert_eq!(store.get(entity, &id).await.unwrap(), Lookup::Miss);
        assert_eq!(
            (store.calls("get"), store.calls("scan_ids"), store.total_calls()),
            (2, 1, 3)
        );
        store.reset_calls();
        assert_eq!(store.total_calls(), 0);
    }
}
