//! What a change feed (SQL change capture, Airtable's webhooks API) keeps between runs, and
//! what it tells the operator.
//!
//! - **State in the store** ([`FeedState`]): its position in the source's changes, and who is
//!   consuming it. Both live in the cache's store, so that any instance continues where another
//!   stopped, and only one consumes at a time.
//! - **Status in the process** ([`Feeds`], [`Cache::feeds`]): what each feed last did, for the
//!   dashboard and the metrics: its position, the last change applied, its lag and backlog, the
//!   outcomes of its batches, its last error and resync. Bounded: [`MAX_FEEDS`] names, the last
//!   [`RECENT_EVENTS`] events of each.
//!
//! A feed is an adapter: it reads the source's changes after [`FeedState::position`], hands
//! them in source order to [`Cache::apply_changes`], and moves the position on only when no
//! change asked to be delivered again ([`ChangeOutcome::should_retry`]). Applying a change
//! twice is harmless, so a consumer that stops between the two steps loses nothing.
//!
//! ```no_run
//! # use std::time::{Duration, SystemTime};
//! # use cache_core::{Cache, feed::{Backlog, FeedState, Hold}};
//! # async fn consume(cache: Cache) -> Result<(), Box<dyn std::error::Error>> {
//! let feed = FeedState::new(&cache, "sql:outbox");
//! let status = feed.reporter();
//! if let Some(lock) = feed.try_lock(Duration::from_secs(30)).await? {
//!     let after = feed.position().await?; // None: from the start
//!     let looked = SystemTime::now();
//!     // ... read the changes after `after`, apply them, then:
//!     # let outcomes: Vec<cache_core::change::ChangeOutcome> = Vec::new(); let newest = None;
//!     if feed.set_position(&lock, "1042").await? == Hold::Lost {
//!         return Ok(()); // stalled past the lock: another consumer may have the feed now
//!     }
//!     status.applied(&outcomes, Some("1042"), newest);
//!     status.checked(Backlog::Exactly(0), None, looked);
//!     feed.unlock(lock).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! ## Lag
//!
//! A feed's lag ([`FeedStatus::lag`]) is how far behind the source the cache may be:
//! `now - current_as_of`, where `current_as_of` ([`FeedStatus::current_as_of`]) is the point up
//! to which the feed is known to have applied every change:
//!
//! - when the feed last looked at the source and found changes waiting, the source time of the
//!   oldest of them (when the feed cannot tell, the source time of the last change it applied:
//!   the oldest waiting is no older);
//! - when it found none waiting, the moment it looked, by this process's clock.
//!
//! A round that fails, a consumer that stopped, a change that cannot be applied: none of them
//! moves `current_as_of`, so the lag grows by a second every second. A healthy feed's lag stays
//! below its poll interval plus the time of a round. Source times are the source's clock (the
//! database's, Airtable's): a skew between the clocks shifts the lag by as much. On an instance
//! whose rounds find the feed held by another ([`FeedStatus::held_elsewhere`]) the lag grows
//! too: across instances, the smallest lag is the feed's.
//!
//! [`ChangeOutcome::should_retry`]: crate::change::ChangeOutcome::should_retry

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use serde::Serialize;

use crate::{
    Cache,
    change::ChangeOutcome,
    log_limit::WarnLimit,
    store::{ComputeLock, LockAttempt, StoreError, StoreResult},
};

mod status;

pub use self::status::*;

/// How long a feed's position is kept after its last move: 30 days. A feed idle for longer
/// starts again from the source's oldest change it still has.
pub const POSITION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// A change feed's position and lock in the cache's store.
#[derive(Debug, Clone)]
pub struct FeedState {
    cache: Cache,
    name: String,
    position_key: String,
    lock_key: String,
}

/// The right to consume a feed, until [`FeedState::unlock`] or its time to live, which
/// [`FeedState::extend`] and [`FeedState::set_position`] renew.
#[derive(Debug)]
#[must_use = "a feed lock is released with FeedState::unlock"]
pub struct FeedLock {
    lock: ComputeLock,
    ttl: Duration,
}

/// Whether a consumer still held its feed when it renewed its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a consumer that lost its feed stops: another may be consuming it"]
pub enum Hold {
    /// The lock was still this consumer's, and now lasts its time to live again.
    Kept,
    /// The lock lapsed (the consumer stalled longer than its time to live) and another
    /// consumer may hold the feed now: this one stops, leaving the position to it.
    Lost,
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
            name: feed,
        }
    }

    /// The feed's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the feed reports what it does: its entry in the cache's [`Feeds`].
    pub fn reporter(&self) -> FeedReporter {
        self.cache.feeds().reporter(&self.name)
    }

    /// Takes the feed for `ttl`, unless another consumer holds it (`None`). A consumer that
    /// dies holding it frees it when `ttl` passes; one that lives renews it
    /// ([`FeedState::extend`], [`FeedState::set_position`]) well within `ttl`.
    pub async fn try_lock(&self, ttl: Duration) -> StoreResult<Option<FeedLock>> {
        match self.cache.store().lock_computed(&self.lock_key, ttl).await? {
            LockAttempt::Acquired(lock) => Ok(Some(FeedLock { lock, ttl })),
            LockAttempt::Held => Ok(None),
        }
    }

    /// Renews `lock` for the time to live it was taken with, if it still holds the feed: a
    /// consumer calls it between the steps of work that may outlast that time (a resync), and
    /// stops on [`Hold::Lost`].
    pub async fn extend(&self, lock: &FeedLock) -> StoreResult<Hold> {
        let kept = self
            .cache
            .store()
            .extend_computed(&self.lock_key, lock.lock, lock.ttl)
            .await?;
        if kept {
            return Ok(Hold::Kept);
        }
        tracing::warn!(feed = %self.name, "feed_lock_lost");
        Ok(Hold::Lost)
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

    /// Moves the feed to `position`, after its changes were applied, if `lock` still holds
    /// the feed (renewing it first): a consumer whose lock lapsed gets [`Hold::Lost`] and
    /// leaves the position to the feed's current holder. The renewal and the write are two
    /// calls: a consumer that stalls between them for longer than the lock's time to live can
    /// still write once after losing it (the position key and the lock key may live on
    /// different nodes of a cluster, so no single script can check and write both).
    pub async fn set_position(&self, lock: &FeedLock, position: &str) -> StoreResult<Hold> {
        if self.extend(lock).await? == Hold::Lost {
            return Ok(Hold::Lost);
        }
        self.cache
            .store()
            .put_value(&self.position_key, Bytes::from(position.to_owned()), POSITION_TTL, &[])
            .await?;
        Ok(Hold::Kept)
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
        assert_eq!(feed.set_position(&lock, "42").await.unwrap(), Hold::Kept);
        feed.unlock(lock).await.unwrap();
        let lock = other.try_lock(Duration::from_secs(30)).await.unwrap().unwrap();
        assert_eq!(other.position().await.unwrap().as_deref(), Some("42"));
        other.unlock(lock).await.unwrap();
        assert_eq!(FeedState::new(&cache, "another").position().await.unwrap(), None);
    }
    #[tokio::test]
    async fn a_consumer_whose_lock_lapsed_never_moves_the_position_back() {
        let clock = crate::clock::ManualClock::new();
        let store = MemoryStore::builder().clock(clock.clone()).build();
        let cache = Cache::builder(store, MemoryOrigin::new()).build().unwrap();
        let (a, b) = (FeedState::new(&cache, "test"), FeedState::new(&cache, "test"));
        let ttl = Duration::from_secs(30);
        let slow = a.try_lock(ttl).await.unwrap().unwrap();
        assert_eq!(a.set_position(&slow, "10").await.unwrap(), Hold::Kept);

        // Renewed within its time to live, the lock outlasts it.
        clock.advance(Duration::from_secs(20));
        assert_eq!(a.extend(&slow).await.unwrap(), Hold::Kept);
        clock.advance(Duration::from_secs(20));
        assert!(b.try_lock(ttl).await.unwrap().is_none(), "held 40 s after it was taken");

        // Stalled past it: another consumer takes the feed and moves it on.
        clock.advance(Duration::from_secs(11));
        let fresh = b.try_lock(ttl).await.unwrap().expect("the lapsed lock is free");
        assert_eq!(b.set_position(&fresh, "20").await.unwrap(), Hold::Kept);

        // The stalled consumer wakes: it lost the feed, and the position stays at 20.
        assert_eq!(a.extend(&slow).await.unwrap(), Hold::Lost);
        assert_eq!(a.set_position(&slow, "11").await.unwrap(), Hold::Lost);
        assert_eq!(a.position().await.unwrap().as_deref(), Some("20"));
        assert!(
            a.try_lock(ttl).await.unwrap().is_none(),
            "the new holder keeps the feed"
        );
        b.unlock(fresh).await.unwrap();
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn outcomes_are_counted_by_reason() {
        let outcomes = [
            ChangeOutcome::Applied,
            ChangeOutcome::Applied,
            ChangeOutcome::Refused(crate::change::Refusal::Older),
            ChangeOutcome::Refused(crate::change::Refusal::Superseded),
            ChangeOutcome::Refused(crate::change::Refusal::Deleted),
            ChangeOutcome::StoreFailed,
            ChangeOutcome::Disabled,
        ];
        let counts = ChangeCounts::of(&outcomes);
        assert_eq!((counts.applied, counts.stale, counts.deleted), (2, 2, 1));
        assert_eq!((counts.failed, counts.disabled, counts.invalid), (1, 1, 0));
        assert_eq!((counts.refused(), counts.total()), (3, 7));
        assert_eq!(counts.outcome(), "failed", "a batch to deliver again says so first");
        assert_eq!(ChangeCounts::of(&outcomes[..2]).outcome(), "applied");
        assert_eq!(ChangeCounts::of(&outcomes[2..5]).outcome(), "stale");
        assert_eq!(ChangeCounts::of(&[]).outcome(), "empty");
    }

    #[test]
    fn lag_is_the_oldest_waiting_change_or_the_last_look_when_caught_up() {
        let feeds = Feeds::default();
        let feed = feeds.reporter("sql:outbox");
        assert!(feeds.status("sql:outbox").is_none(), "nothing before the first report");

        // Caught up when looking at t=100: current as of then.
        feed.checked_at(Backlog::Exactly(0), None, at(100), at(100));
        let status = feeds.status("sql:outbox").unwrap();
        assert_eq!(
            status.lag(at(130)),
            Some(Duration::from_secs(30)),
            "grows while nobody looks"
        );
        assert_eq!(status.lag(at(90)), Some(Duration::ZERO), "never negative");

        // A batch of changes from t=120..125, then three more wait, the oldest from t=127.
        let changes = ChangeCounts {
            applied: 4,
            stale: 1,
            ..ChangeCounts::default()
        };
        feed.applied_at(changes, Some("17"), Some(at(125)), at(140));
        feed.checked_at(Backlog::Exactly(3), Some(at(127)), at(139), at(140));
        let status = feeds.status("sql:outbox").unwrap();
        assert_eq!(status.position.as_deref(), Some("17"));
        assert_eq!(status.last_source_time, Some(at(125)));
        assert_eq!(status.last_applied_at, Some(at(140)));
        assert_eq!(status.backlog, Backlog::Exactly(3));
        assert_eq!(status.current_as_of, Some(at(127)));
        assert_eq!(status.lag(at(140)), Some(Duration::from_secs(13)));

        // More waits, how much unknown: as of the last change applied.
        feed.checked_at(Backlog::AtLeastOne, None, at(141), at(141));
        assert_eq!(feeds.status("sql:outbox").unwrap().current_as_of, Some(at(125)));

        // A failing round: the lag runs from the oldest change waiting.
        feed.failed_at("the store is down", Some(at(126)), Some(Backlog::Exactly(5)), at(150));
        let status = feeds.status("sql:outbox").unwrap();
        assert!(status.failing);
        assert_eq!(status.current_as_of, Some(at(126)), "as of the oldest change waiting");
        assert_eq!(status.backlog, Backlog::Exactly(5));
        assert_eq!(
            status.last_error.as_ref().map(|e| e.message.as_str()),
            Some("the store is down")
        );
        assert_eq!(status.lag(at(200)), Some(Duration::from_secs(74)));
        feed.failed_at("again", None, None, at(160));
        let status = feeds.status("sql:outbox").unwrap();
        assert_eq!(
            status.current_as_of,
            Some(at(126)),
            "a failure that knows nothing moves nothing"
        );
        assert_eq!(status.backlog, Backlog::Exactly(5));

        // Recovered and caught up.
        feed.applied_at(
            ChangeCounts {
                applied: 5,
                ..ChangeCounts::default()
            },
            Some("22"),
            Some(at(130)),
            at(170),
        );
        feed.checked_at(Backlog::Exactly(0), None, at(169), at(170));
        let status = feeds.status("sql:outbox").unwrap();
        assert!(
            !status.failing,
            "the error stays on record, the feed is no longer failing"
        );
        assert_eq!(status.last_error.as_ref().map(|e| e.at), Some(at(160)));
        assert_eq!(status.lag(at(170)), Some(Duration::from_secs(1)));
        assert_eq!(status.totals.batches, 2);
        assert_eq!(status.totals.errors, 2);
        assert_eq!((status.totals.changes.applied, status.totals.changes.stale), (9, 1));
        assert_eq!(status.last_batch.map(|b| b.applied), Some(5));
    }

    #[test]
    fn a_failed_batch_does_not_move_what_was_applied() {
        let feeds = Feeds::default();
        let feed = feeds.reporter("f");
        let failed = ChangeCounts {
            applied: 1,
            failed: 1,
            ..ChangeCounts::default()
        };
        feed.applied_at(failed, None, Some(at(10)), at(20));
        let status = feeds.status("f").unwrap();
        assert_eq!((status.last_source_time, status.last_applied_at), (None, None));
        assert_eq!(status.totals.changes.failed, 1);
        assert_eq!(feeds.recent()[0].outcome(), "failed");
    }

    #[test]
    fn events_and_names_are_bounded() {
        let feeds = Feeds::default();
        for n in 0..MAX_FEEDS + 5 {
            feeds.reporter(&format!("feed{n}")).held_elsewhere();
        }
        assert_eq!(feeds.all().len(), MAX_FEEDS);
        assert_eq!(feeds.dropped(), 5);
        feeds.reporter("feed0").failed(&"boom", None, None);
        assert!(feeds.status("feed0").unwrap().failing, "a known feed still reports");

        let feed = feeds.reporter("feed1");
        for n in 0..RECENT_EVENTS as u64 + 7 {
            feed.applied_at(
                ChangeCounts {
                    applied: 1,
                    ..ChangeCounts::default()
                },
                Some(&n.to_string()),
                None,
                at(n),
            );
        }
        let mut resync = FeedResync::new("payloads_lost");
        resync.removed = 2;
        feed.resynced(resync);
        let recent: Vec<FeedEvent> = feeds.recent().into_iter().filter(|e| e.feed == "feed1").collect();
        assert_eq!(recent.len(), RECENT_EVENTS);
        assert_eq!(recent[0].outcome(), "resync", "newest first");
        let status = feeds.status("feed1").unwrap();
        assert_eq!(status.totals.resyncs, 1);
        assert_eq!(status.last_resync.map(|r| r.removed), Some(2));
        assert_eq!(status.position.as_deref(), Some("26"));

        let long = "é".repeat(MAX_TEXT_LEN);
        feeds.reporter("feed2").failed(&long, None, None);
        let message = feeds.status("feed2").unwrap().last_error.unwrap().message;
        assert!(message.len() <= MAX_TEXT_LEN + '…'.len_utf8() && message.ends_with('…'));
    }

    #[tokio::test]
    async fn the_cache_holds_one_board_its_clones_share() {
        let cache = Cache::builder(MemoryStore::new(), MemoryOrigin::new()).build().unwrap();
        let state = FeedState::new(&cache.clone(), "sql:outbox");
        state.reporter().checked(Backlog::Exactly(0), None, SystemTime::now());
        assert_eq!(cache.feeds().all().len(), 1);
        assert_eq!(cache.feeds().status("sql:outbox").unwrap().backlog, Backlog::Exactly(0));
    }
}
