//! Computed values in the memory store. A computed value is a value (`v:{key}`); its lock and
//! the purge marks that refuse values computed across a purge live beside the index, under the
//! same lock.

use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::watch;

use super::{Entry, Inner, Key, Kind, MemoryStore, State, forget_value_tags};
use crate::store::{
    ComputeLock, ComputedLookup, ComputedWrite, LockAttempt, LockWait, PURGE_MEMORY, PurgeStamp, StoreResult,
};

/// Purges are numbered; a stamp is the number of the last purge before a lookup.
#[derive(Debug, Default)]
pub(super) struct PurgeCounter(AtomicU64);

/// What a purge mark weighs beside twice its tag's length (the tag is kept in the map and in
/// the order of purges): its map slot, its place in the order, and the allocator's headers.
const MARK_OVERHEAD: usize = 160;

/// Locks and purge marks.
#[derive(Default)]
pub(super) struct ComputedState {
    locks: HashMap<String, Lock>,
    /// The last purge of each tag: its number and when it happened.
    marks: HashMap<String, (u64, Instant)>,
    /// Every purge of a tag in the order of their numbers (a tag purged again is here twice;
    /// the older entry is skipped when it reaches the front).
    order: VecDeque<(u64, String)>,
    /// What `order` and `marks` weigh.
    bytes: usize,
    /// The highest number among the marks forgotten: older stamps cannot be checked.
    forgotten: u64,
}

struct Lock {
    token: u64,
    expires_at: Instant,
    /// Sends `true` when released; dropped (closing the channel) when an expired lock is
    /// replaced. Either way its waiters stop waiting.
    released: watch::Sender<bool>,
}

impl ComputedState {
    /// Records a purge of `tags` (called under the state lock by `purge_tags`), then forgets
    /// the marks older than [`PURGE_MEMORY`], and the oldest ones beyond `budget` bytes (every
    /// distinct miss purges its record's tag). A forgotten mark refuses every value computed
    /// from a lookup before it: never wrong, only not stored.
    pub(super) fn purged(&mut self, tags: &[String], now: Instant, counter: &PurgeCounter, budget: usize) {
        let n = counter.0.fetch_add(1, Ordering::AcqRel) + 1;
        for tag in tags {
            self.marks.insert(tag.clone(), (n, now));
            self.order.push_back((n, tag.clone()));
            self.bytes += mark_weight(tag);
        }
        while let Some((n, tag)) = self.order.front() {
            let current = self.marks.get(tag).filter(|(m, _)| m == n).copied();
            let expired = current.is_some_and(|(_, at)| now.saturating_duration_since(at) >= PURGE_MEMORY);
            if current.is_some() && !expired && self.bytes <= budget {
                break;
            }
            if let Some((n, tag)) = self.order.pop_front() {
                self.bytes -= mark_weight(&tag);
                if current.is_some() {
                    self.marks.remove(&tag);
                    self.forgotten = self.forgotten.max(n);
                }
            }
        }
    }

    /// What the purge marks weigh, in bytes.
    pub(super) fn marks_weight(&self) -> usize {
        self.bytes
    }

    /// Whether a value computed after `stamp` with `tags` may be stored.
    fn allows(&self, stamp: PurgeStamp, tags: &[String]) -> bool {
        stamp.0 >= self.forgotten
            && tags
                .iter()
                .all(|t| self.marks.get(t).is_none_or(|(n, _)| *n <= stamp.0))
    }

    fn release(&mut self, key: &str, lock: ComputeLock) {
        if self.locks.get(key).is_some_and(|l| l.token == lock.0)
            && let Some(lock) = self.locks.remove(key)
        {
            lock.released.send_replace(true);
        }
    }
}

fn mark_weight(tag: &str) -> usize {
    2 * tag.len() + MARK_OVERHEAD
}

impl MemoryStore {
    pub(super) async fn computed_get(&self, key: &str) -> StoreResult<ComputedLookup> {
        let inner = &self.inner;
        // The stamp first: a purge between the two reads is then after the stamp.
        let stamp = PurgeStamp(inner.purges.0.load(Ordering::Acquire));
        Ok(ComputedLookup {
            value: value(inner, key).await,
            stamp,
        })
    }

    pub(super) async fn computed_put(&self, key: &str, write: &ComputedWrite) -> StoreResult<bool> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let stored = state.computed.allows(write.stamp, &write.tags);
        if stored {
            insert_value(inner, &mut state, key, write).await;
        }
        if let Some(lock) = write.lock {
            state.computed.release(key, lock);
        }
        Ok(stored)
    }

    pub(super) async fn computed_lock(&self, key: &str, ttl: Duration) -> StoreResult<LockAttempt> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let now = inner.now();
        let locks = &mut state.computed.locks;
        if locks.get(key).is_some_and(|l| l.expires_at > now) {
            return Ok(LockAttempt::Held);
        }
        if locks.len() >= 1024 {
            locks.retain(|_, l| l.expires_at > now);
        }
        let token = rand::random::<u64>().max(1);
        locks.insert(
            key.to_owned(),
            Lock {
                token,
                expires_at: now + ttl,
                released: watch::Sender::new(false),
            },
        );
        Ok(LockAttempt::Acquired(ComputeLock(token)))
    }

    pub(super) async fn computed_unlock(&self, key: &str, lock: ComputeLock) -> StoreResult<()> {
        self.inner.lock().await.computed.release(key, lock);
        Ok(())
    }

    pub(super) async fn computed_extend(&self, key: &str, lock: ComputeLock, ttl: Duration) -> StoreResult<bool> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let now = inner.now();
        Ok(match state.computed.locks.get_mut(key) {
            Some(held) if held.token == lock.0 && held.expires_at > now => {
                held.expires_at = now + ttl;
                true
            }
            _ => false,
        })
    }

    pub(super) async fn computed_wait(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        let inner = &self.inner;
        let mut released = {
            let state = inner.lock().await;
            if let Some(value) = value(inner, key).await {
                return Ok(LockWait::Value(value));
            }
            match state.computed.locks.get(key) {
                Some(lock) if lock.expires_at > inner.now() => lock.released.subscribe(),
                _ => return Ok(LockWait::Released),
            }
        };
        // Closed (an expired lock replaced) counts as released.
        if tokio::time::timeout(timeout, released.wait_for(|r| *r)).await.is_err() {
            return Ok(LockWait::TimedOut);
        }
        Ok(match value(inner, key).await {
            Some(value) => LockWait::Value(value),
            None => LockWait::Released,
        })
    }
}

async fn value(inner: &Inner, key: &str) -> Option<Bytes> {
    match inner.live(&Key::Value(key.to_owned())).await {
        Some(Entry {
            kind: Kind::Value { body, .. },
            ..
        }) => Some(body),
        _ => None,
    }
}

/// Stores a value with its tags, as `put_value` does, under the state lock already held.
async fn insert_value(inner: &Inner, state: &mut State, key: &str, write: &ComputedWrite) {
    let k = Key::Value(key.to_owned());
    if let Some(Entry {
        kind: Kind::Value { tags: old, .. },
        ..
    }) = inner.entries.get(&k).await
    {
        forget_value_tags(&mut state.value_tags, key, &old);
    }
    for tag in &write.tags {
        state.value_tags.entry(tag.clone()).or_default().insert(key.to_owned());
    }
    let entry = Entry {
        kind: Kind::Value {
            body: write.value.clone(),
            tags: write.tags.as_slice().into(),
        },
        ttl: write.ttl,
        expires_at: inner.now() + write.ttl,
    };
    inner.entries.insert(k, entry).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_refuse_stamps_before_a_purge_of_their_tags() {
        let mut state = ComputedState::default();
        let counter = PurgeCounter::default();
        let now = Instant::now();
        let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let before = PurgeStamp(counter.0.load(Ordering::Acquire));
        state.purged(&tags(&["a"]), now, &counter, usize::MAX);
        let after = PurgeStamp(counter.0.load(Ordering::Acquire));
        assert!(!state.allows(before, &tags(&["a", "b"])));
        assert!(state.allows(before, &tags(&["b"])));
        assert!(state.allows(after, &tags(&["a"])));
    }

    #[test]
    fn forgotten_marks_refuse_old_stamps() {
        let mut state = ComputedState::default();
        let counter = PurgeCounter::default();
        let start = Instant::now();
        let old = PurgeStamp(0);
        for i in 0..1100 {
            state.purged(&[format!("t{i}")], start, &counter, usize::MAX);
        }
        let later = start + PURGE_MEMORY + Duration::from_secs(1);
        for i in 0..1000 {
            state.purged(&[format!("u{i}")], later, &counter, usize::MAX);
        }
        assert!(
            state.marks.len() <= 1000,
            "old marks are forgotten: {}",
            state.marks.len()
        );
        assert!(
            !state.allows(old, &["unrelated".to_owned()]),
            "a stamp older than what is remembered"
        );
        let recent = PurgeStamp(counter.0.load(Ordering::Acquire));
        assert!(state.allows(recent, &["t5".to_owned()]));
    }

    #[test]
    fn marks_beyond_their_budget_are_forgotten_oldest_first() {
        let mut state = ComputedState::default();
        let counter = PurgeCounter::default();
        let now = Instant::now();
        let budget = 100 * mark_weight("t000");
        let first = PurgeStamp(counter.0.load(Ordering::Acquire));
        for i in 0..1000 {
            state.purged(&[format!("t{i:03}")], now, &counter, budget);
        }
        assert!(state.marks_weight() <= budget, "{}", state.marks_weight());
        assert!(state.marks.len() <= 100 && state.marks.contains_key("t999"));
        assert!(!state.allows(first, &["t999".to_owned()]), "a purge after the stamp");
        assert!(
            !state.allows(first, &["other".to_owned()]),
            "older than what is remembered"
        );
        let recent = PurgeStamp(counter.0.load(Ordering::Acquire));
        assert!(state.allows(recent, &["t999".to_owned()]));
    }
}
