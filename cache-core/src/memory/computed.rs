//! Computed values in the memory store. A computed value is a value (`v:{key}`); its lock and
//! the purge marks that refuse values computed across a purge live beside the index, under the
//! same lock.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::watch;

use super::{Entry, Inner, Key, Kind, MemoryStore, State, forget_value_tags};
use crate::{ComputeLock, ComputedLookup, ComputedWrite, LockAttempt, LockWait, PURGE_MEMORY, PurgeStamp, StoreResult};

/// Purges are numbered; a stamp is the number of the last purge before a lookup.
#[derive(Debug, Default)]
pub(super) struct PurgeCounter(AtomicU64);

/// Locks and purge marks.
#[derive(Default)]
pub(super) struct ComputedState {
    locks: HashMap<String, Lock>,
    /// The last purge of each tag: its number and when it happened.
    marks: HashMap<String, (u64, Instant)>,
    /// The highest number among the marks forgotten: older stamps cannot be checked.
    forgotten: u64,
    /// Mark count above which marks older than [`PURGE_MEMORY`] are forgotten.
    cleanup_at: usize,
}

struct Lock {
    token: u64,
    expires_at: Instant,
    /// Sends `true` when released; dropped (closing the channel) when an expired lock is
    /// replaced. Either way its waiters stop waiting.
    released: watch::Sender<bool>,
}

impl ComputedState {
    /// Records a purge of `tags` (called under the state lock by `purge_tags`).
    pub(super) fn purged(&mut self, tags: &[String], now: Instant, counter: &PurgeCounter) {
        let n = counter.0.fetch_add(1, Ordering::AcqRel) + 1;
        for tag in tags {
            self.marks.insert(tag.clone(), (n, now));
        }
        if self.marks.len() > self.cleanup_at.max(1024) {
            let mut forgotten = self.forgotten;
            self.marks.retain(|_, (n, at)| {
                let keep = now.saturating_duration_since(*at) < PURGE_MEMORY;
                if !keep {
                    forgotten = forgotten.max(*n);
                }
                keep
            });
            self.forgotten = forgotten;
            self.cleanup_at = self.marks.len() * 2;
        }
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
        state.purged(&tags(&["a"]), now, &counter);
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
            state.purged(&[format!("t{i}")], start, &counter);
        }
        let later = start + PURGE_MEMORY + Duration::from_secs(1);
        for i in 0..1000 {
            state.purged(&[format!("u{i}")], later, &counter);
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
}
