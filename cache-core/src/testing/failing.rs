//! [`FailingStore`]: any store, taken down and brought back on demand, failing one method or
//! holding its calls at a gate, counting its calls.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use super::{Gate, lock};
use crate::{
    Cache, MemoryStore, RecordId,
    clock::ManualClock,
    feed::{FeedLock, FeedState},
    query::IndexQuery,
    schema::{EntitySchema, IndexEntries},
    store::{
        ComputeLock, ComputedLookup, ComputedWrite, DecodedCopy, FillToken, Lease, LockAttempt, LockWait, Lookup,
        QueryFill, QueryLookup, RecordWrite, RemoveMode, Store, StoreError, StoreResult, StoreStats, WriteMode,
        WriteOutcome,
    },
};

/// A store in front of another (a [`MemoryStore`] by default) that can be taken down: while it
/// is down every call fails as [`StoreError::Unavailable`], standing in for "Redis is down".
/// Methods can also be failed one by one ([`fail`](Self::fail)), and calls held at a gate
/// ([`hold`](Self::hold), [`hold_put`](Self::hold_put)) so that races are deterministic.
/// It counts the calls of each [`Store`] method, down, failing or held. Clones share the
/// switch, the failing methods, the holds, the counts and the store behind.
///
/// ```
/// use cache_core::{MemoryStore, testing::FailingStore, store::Store};
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
    failing: Arc<Mutex<HashSet<&'static str>>>,
    holds: Holds,
    calls: Arc<Mutex<HashMap<&'static str, usize>>>,
}

type Holds = Arc<Mutex<Vec<HoldRule>>>;

/// Which calls a [`StoreHold`] holds.
#[derive(Debug)]
struct HoldRule {
    method: &'static str,
    /// For `put`: only writes with a record body containing these bytes.
    needle: Option<Vec<u8>>,
    gate: Arc<Gate>,
}

impl HoldRule {
    fn holds(&self, method: &str, writes: &[RecordWrite]) -> bool {
        self.method == method
            && self.needle.as_deref().is_none_or(|needle| {
                // `windows(0)` panics; an empty needle is in every body.
                needle.is_empty() || writes.iter().any(|w| w.body.windows(needle.len()).any(|b| b == needle))
            })
    }
}

/// Calls of a [`FailingStore`] held at a gate (see [`FailingStore::hold`]). Dropping it
/// releases them.
#[derive(Debug)]
#[must_use = "dropping a hold releases it"]
pub struct StoreHold {
    holds: Holds,
    gate: Arc<Gate>,
}

impl StoreHold {
    /// Waits until `n` calls are held at the gate.
    pub async fn arrived(&self, n: usize) {
        self.gate.arrived(n).await;
    }

    /// Lets the held calls (and every later one) through.
    pub fn release(self) {
        drop(self);
    }

    /// Makes a feed's consumer lose its feed while it is held here, at its next lock renewal
    /// (a hold of `"extend_computed"`): waits for it (10 s at most), moves `clock` (the
    /// store's) past `ttl`, the consumer's lock time to live, takes the feed named `feed` as
    /// another consumer, then lets the held one go on. Answers the other consumer's state and
    /// lock.
    ///
    /// # Panics
    ///
    /// When no call arrives within 10 s, the store fails, or the lock is not free after `ttl`.
    pub async fn take_over_feed(
        self,
        clock: &ManualClock,
        cache: &Cache,
        feed: &str,
        ttl: Duration,
    ) -> (FeedState, FeedLock) {
        tokio::time::timeout(Duration::from_secs(10), self.arrived(1))
            .await
            .expect("the consumer renews its lock");
        clock.advance(ttl + Duration::from_secs(1));
        let other = FeedState::new(cache, feed);
        let taken = other
            .try_lock(ttl)
            .await
            .expect("the store answers")
            .expect("the lapsed lock is free");
        self.release();
        (other, taken)
    }
}

impl Drop for StoreHold {
    fn drop(&mut self) {
        self.gate.open();
        lock(&self.holds).retain(|rule| !Arc::ptr_eq(&rule.gate, &self.gate));
    }
}

impl<S: Store> FailingStore<S> {
    /// Wraps `inner`, up.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            down: Arc::default(),
            failing: Arc::default(),
            holds: Arc::default(),
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

    /// Makes every later call of the [`Store`] method named `method` (`"put"`, `"get_value"`,
    /// ...) fail as [`StoreError::Unavailable`], as if the store went down for that method alone
    /// (calls already held at a gate fail too).
    pub fn fail(&self, method: &'static str) {
        lock(&self.failing).insert(method);
    }

    /// Stops failing the methods named by [`fail`](Self::fail). A store taken down with
    /// [`set_down`](Self::set_down) stays down.
    pub fn heal(&self) {
        lock(&self.failing).clear();
    }

    /// Holds every later call of the [`Store`] method named `method` at a gate, after it is
    /// counted and before it reaches the store behind, until the returned [`StoreHold`] is
    /// released (or dropped). `scan_ids` answers a stream at once and is never held.
    ///
    /// ```
    /// use cache_core::{MemoryStore, testing::FailingStore, store::Store};
    ///
    /// # async fn demo() {
    /// let store = FailingStore::new(MemoryStore::new());
    /// let hold = store.hold("ping");
    /// let ping = tokio::spawn({
    ///     let store = store.clone();
    ///     async move { store.ping().await }
    /// });
    /// hold.arrived(1).await; // the ping waits at the gate
    /// hold.release();
    /// assert!(ping.await.unwrap().is_ok());
    /// # }
    /// ```
    pub fn hold(&self, method: &'static str) -> StoreHold {
        self.hold_where(method, None)
    }

    /// Holds every later [`put`](Store::put) with a record body containing `needle` (other
    /// puts go through), as [`hold`](Self::hold) does: to stop one record write of several
    /// that race.
    pub fn hold_put(&self, needle: &str) -> StoreHold {
        self.hold_where("put", Some(needle.as_bytes().to_vec()))
    }

    fn hold_where(&self, method: &'static str, needle: Option<Vec<u8>>) -> StoreHold {
        let gate = Arc::new(Gate::new());
        lock(&self.holds).push(HoldRule {
            method,
            needle,
            gate: Arc::clone(&gate),
        });
        StoreHold {
            holds: Arc::clone(&self.holds),
            gate,
        }
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

    /// Counts a call, holds it at the first gate that holds it, then fails it if the store is
    /// down or the method failing.
    async fn enter(&self, method: &'static str) -> StoreResult<()> {
        self.enter_writing(method, &[]).await
    }

    async fn enter_writing(&self, method: &'static str, writes: &[RecordWrite]) -> StoreResult<()> {
        self.count(method);
        let gate = lock(&self.holds)
            .iter()
            .find(|rule| rule.holds(method, writes))
            .map(|rule| Arc::clone(&rule.gate));
        if let Some(gate) = gate {
            gate.pass().await;
        }
        self.check(method)
    }

    fn count(&self, method: &'static str) {
        *lock(&self.calls).entry(method).or_default() += 1;
    }

    fn check(&self, method: &'static str) -> StoreResult<()> {
        if self.is_down() {
            return Err(StoreError::Unavailable(format!("{method}: the store is down (test)")));
        }
        if lock(&self.failing).contains(method) {
            return Err(StoreError::Unavailable(format!("{method}: told to fail (test)")));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Store> Store for FailingStore<S> {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        self.enter("get").await?;
        self.inner.get(entity, id).await
    }

    async fn get_with_copy(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<(Lookup, Option<DecodedCopy>)> {
        self.enter("get").await?;
        self.inner.get_with_copy(entity, id).await
    }

    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        self.enter("get_many").await?;
        self.inner.get_many(entity, ids).await
    }

    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        self.enter("lease").await?;
        self.inner.lease(entity, ids, ttl).await
    }

    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        self.enter_writing("put", writes).await?;
        self.inner.put(entity, writes, mode).await
    }

    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        self.enter("remove").await?;
        self.inner.remove(entity, ids, mode).await
    }

    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        self.enter("query").await?;
        self.inner.query(entity, query).await
    }

    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<QueryFill> {
        self.enter("complete_query").await?;
        self.inner.complete_query(entity, query, token, records).await
    }

    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>> {
        self.count("scan_ids");
        match self.check("scan_ids") {
            Ok(()) => self.inner.scan_ids(entity, batch),
            Err(err) => stream::once(async { Err(err) }).boxed(),
        }
    }

    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64> {
        self.enter("flush").await?;
        self.inner.flush(pattern).await
    }

    async fn ping(&self) -> StoreResult<()> {
        self.enter("ping").await?;
        self.inner.ping().await
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        self.enter("stats").await?;
        self.inner.stats().await
    }

    /// Down is unavailable, as a store with an open breaker says.
    fn availability(&self) -> crate::store::Availability {
        if self.is_down() {
            crate::store::Availability::Unavailable
        } else {
            self.inner.availability()
        }
    }

    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>> {
        self.enter("get_value").await?;
        self.inner.get_value(key).await
    }

    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        self.enter("put_value").await?;
        self.inner.put_value(key, value, ttl, tags).await
    }

    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        self.enter("purge_tags").await?;
        self.inner.purge_tags(tags).await
    }

    async fn advance_watermark(&self, key: &str, value: i64, ttl: Duration) -> StoreResult<bool> {
        self.enter("advance_watermark").await?;
        self.inner.advance_watermark(key, value, ttl).await
    }

    async fn get_computed(&self, key: &str) -> StoreResult<ComputedLookup> {
        self.enter("get_computed").await?;
        self.inner.get_computed(key).await
    }

    async fn put_computed(&self, key: &str, write: &ComputedWrite) -> StoreResult<bool> {
        self.enter("put_computed").await?;
        self.inner.put_computed(key, write).await
    }

    async fn lock_computed(&self, key: &str, ttl: Duration) -> StoreResult<LockAttempt> {
        self.enter("lock_computed").await?;
        self.inner.lock_computed(key, ttl).await
    }

    async fn unlock_computed(&self, key: &str, lock: ComputeLock) -> StoreResult<()> {
        self.enter("unlock_computed").await?;
        self.inner.unlock_computed(key, lock).await
    }

    async fn extend_computed(&self, key: &str, lock: ComputeLock, ttl: Duration) -> StoreResult<bool> {
        self.enter("extend_computed").await?;
        self.inner.extend_computed(key, lock, ttl).await
    }

    async fn wait_computed(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        self.enter("wait_computed").await?;
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

    fn write(rid: &str, name: &str) -> RecordWrite {
        RecordWrite {
            id: RecordId::new(rid).unwrap(),
            body: Bytes::from(format!(r#"{{"id":"{rid}","name":"{name}"}}"#)),
            index: IndexEntries::default(),
            version: None,
            at: None,
            ttl: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_failed_method_fails_alone_until_healed() {
        let store = FailingStore::<MemoryStore>::default();
        let entity = crate::testing::conformance::projects();
        let id = RecordId::new("p1").unwrap();
        store.fail("get");
        assert!(matches!(store.get(entity, &id).await, Err(StoreError::Unavailable(_))));
        assert!(store.get_many(entity, std::slice::from_ref(&id)).await.is_ok());
        store.heal();
        assert_eq!(store.get(entity, &id).await.unwrap(), Lookup::Miss);
        assert_eq!(store.calls("get"), 2);
    }

    #[tokio::test]
    async fn hold_put_holds_the_puts_with_the_needle_until_released() {
        let store = FailingStore::<MemoryStore>::default();
        let entity = crate::testing::conformance::projects();
        let hold = store.hold_put("Older");
        let held = tokio::spawn({
            let store = store.clone();
            async move { store.put(entity, &[write("p1", "Older")], WriteMode::Upsert).await }
        });
        hold.arrived(1).await;
        // Other puts go through; the held one is counted and has not reached the store.
        store
            .put(entity, &[write("p2", "Newest")], WriteMode::Upsert)
            .await
            .unwrap();
        assert_eq!(store.calls("put"), 2);
        assert_eq!(
            store.inner().get(entity, &RecordId::new("p1").unwrap()).await.unwrap(),
            Lookup::Miss
        );
        assert!(!held.is_finished());
        // A call already at the gate fails when the method fails before it is released.
        store.fail("put");
        hold.release();
        assert!(matches!(held.await.unwrap(), Err(StoreError::Unavailable(_))));
        store.heal();
        // Released: later puts with the needle are not held.
        store
            .put(entity, &[write("p1", "Older")], WriteMode::Upsert)
            .await
            .unwrap();
        assert!(matches!(
            store.get(entity, &RecordId::new("p1").unwrap()).await.unwrap(),
            Lookup::Hit(_)
        ));
    }
}
