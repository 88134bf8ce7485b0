//! What a change feed (SQL change capture, Airtable's webhooks API) keeps between runs: its
//! position in the source's changes, and who is consuming it. Both live in the cache's store,
//! so that any instance continues where another stopped, and only one consumes at a time.
//!
//! A feed is an adapter: it reads the source's changes after [`FeedState::position`], hands
//! them in source order to [`Cache::apply_changes`], and moves the position on only when no
//! change asked to be delivered again ([`ChangeOutcome::should_retry`]). Applying a change
//! twice is harmless, so a consumer that stops between the two steps loses nothing.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use cache_core::{Cache, feed::FeedState};
//! # async fn consume(cache: Cache) -> Result<(), Box<dyn std::error::Error>> {
//! let feed = FeedState::new(&cache, "sql:outbox");
//! if let Some(lock) = feed.try_lock(Duration::from_secs(30)).await? {
//!     let after = feed.position().await?; // None: from the start
//!     // ... read the changes after `after`, apply them, then:
//!     feed.set_position(&lock, "1042").await?;
//!     feed.unlock(lock).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! [`ChangeOutcome::should_retry`]: crate::ChangeOutcome::should_retry

use std::time::Duration;

use bytes::Bytes;

use crate::{Cache, ComputeLock, LockAttempt, StoreError, StoreResult};

/// How long a feed's position is kept after its last move: 30 days. A feed idle for longer
/// starts again from the source's oldest change it still has.
pub const POSITION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A change feed's position and lock in the cache's store.
#[derive(Debug, Clone)]
pub struct FeedState {
    cache: Cache,
    position_key: String,
    lock_key: String,
}

/// The right to consume a feed, until [`FeedState::unlock`] or its time to live.
#[derive(Debug)]
#[must_use = "a feed lock is released with FeedState::unlock"]
pub struct FeedLock {
    lock: ComputeLock,
}

impl FeedState {
    /// The state of the feed named `feed` (`sql:outbox`, `airtable:appXXXX`): one name per
    /// source, the same on every instance.
    pub fn new(cache: &Cache, feed: impl Into<String>) -> Self {
        let feed = feed.into();
        Self {
            cache: cache.clone(),
            position_key: format!("feed:{feed}:position"),
            lock_key: format!("feed:{feed}:lock"),
        }
    }

    /// Takes the feed for `ttl`, unless another consumer holds it (`None`). A consumer that
    /// dies holding it frees it when `ttl` passes: keep each batch well within it.
    pub async fn try_lock(&self, ttl: Duration) -> StoreResult<Option<FeedLock>> {
        match self.cache.store().lock_computed(&self.lock_key, ttl).await? {
            LockAttempt::Acquired(lock) => Ok(Some(FeedLock { lock })),
            LockAttempt::Held => Ok(None),
        }
    }

    /// Where the feed is: the position of the last change applied, `None` before the first.
    pub async fn position(&self) -> StoreResult<Option<String>> {
        match self.cache.store().get_value(&self.position_key).await? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| StoreError::Backend(format!("{} is not text", self.position_key))),
        }
    }

    /// Moves the feed to `position`, after its changes were applied.
    pub async fn set_position(&self, lock: &FeedLock, position: &str) -> StoreResult<()> {
        let _ = lock;
        self.cache
            .store()
            .put_value(&self.position_key, Bytes::from(position.to_owned()), POSITION_TTL, &[])
            .await
    }

    /// Releases the feed.
    pub async fn unlock(&self, lock: FeedLock) -> StoreResult<()> {
        self.cache.store().unlock_computed(&self.lock_key, lock.lock).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, testing::MemoryOrigin};

    #[tokio::test]
    async fn one_consumer_at_a_time_and_the_position_survives_it() {
        let cache = Cache::builder(MemoryStore::new(), MemoryOrigin::new()).build().unwrap();
        let feed = FeedState::new(&cache, "test");
        let other = FeedState::new(&cache.clone(), "test");
        assert_eq!(feed.position().await.unwrap(), None);
        let lock = feed.try_lock(Duration::from_secs(30)).await.unwrap().unwrap();
        assert!(other.try_lock(Duration::from_secs(30)).await.unwrap().is_none());
        feed.set_position(&lock, "42").await.unwrap();
        feed.unlock(lock).await.unwrap();
        let lock = other.try_lock(Duration::from_secs(30)).await.unwrap().unwrap();
        assert_eq!(other.position().await.unwrap().as_deref(), Some("42"));
        other.unlock(lock).await.unwrap();
        assert_eq!(FeedState::new(&cache, "another").position().await.unwrap(), None);
    }
}
