//! Computed values on Redis.
//!
//! A computed value is a value (`{ns}:v:{key}`, read by `get_value` too). Its lock
//! (`{ns}:lock:{<value key>}`), waiter counters and wake-up lists share the value's slot, so
//! that each script touches one slot. A purge marks each tag with the server clock
//! (`{ns}:purged:{<tag set key>}`, in the tag set's slot) before reading its set; a value is
//! stored only if none of its tags was marked since the stamp its lookup took.
//!
//! On one server the check, the write, the tag registrations, the lock release and the
//! wake-ups are one script. On a cluster the tag sets live in other slots: the value is
//! registered under its tags first (each registration answering the tag's mark), then written
//! with the lock released, then the marks are read again and the value removed if a purge
//! came in between. A purge either marks before that second read, or reads the tag set after
//! it, and then finds the registration and removes the value itself.

use std::time::Duration;

use bytes::Bytes;
use cache_core::store::{ComputeLock, ComputedLookup, ComputedWrite, LockAttempt, LockWait, PURGE_MEMORY, StoreResult};
use futures::future::try_join_all;

use super::RedisStore;
use crate::{
    layout::{lock_key, purge_mark_key, tag_set_key, value_key, wake_key},
    scripts::{
        computed::{
            ComputedDrop, ComputedExtend, ComputedGet, ComputedPut, ComputedTag, ComputedUnlock, ComputedUnwait,
            ComputedWait, WaitStart,
        },
        ms, re,
        value::PurgeTag,
    },
};

/// How long a wake-up list lives: far longer than the moment between a waiter counting
/// itself and its `BLPOP`, short enough that an unclaimed wake-up does not linger.
const WAKE_TTL: Duration = Duration::from_secs(10);

impl RedisStore {
    /// Marks `tag` purged and answers the value keys recorded under it (`purge_tags`).
    pub(super) async fn purge_tag_members(&self, tag: &str, set: &str) -> StoreResult<Vec<String>> {
        let purge_mark = purge_mark_key(&self.inner.namespace, tag);
        let call = PurgeTag {
            tag_set: set,
            purge_mark: &purge_mark,
            memory: ms(PURGE_MEMORY),
        };
        self.inner.scripts.call(&mut self.conn(), &call).await
    }

    pub(super) async fn computed_get(&self, key: &str) -> StoreResult<ComputedLookup> {
        let value_key = value_key(&self.inner.namespace, key);
        let call = ComputedGet { value_key: &value_key };
        self.guarded("get_computed", self.inner.scripts.call(&mut self.conn(), &call))
            .await
    }

    pub(super) async fn computed_put(&self, key: &str, write: &ComputedWrite) -> StoreResult<bool> {
        let ns = &self.inner.namespace;
        let value_key = value_key(ns, key);
        let lock = lock_key(ns, key);
        let token = write.lock.map(|l| l.0.to_string()).unwrap_or_default();
        let tags: Vec<(String, String)> = write
            .tags
            .iter()
            .map(|t| (tag_set_key(ns, t), purge_mark_key(ns, t)))
            .collect();
        let scripts = &self.inner.scripts;
        let ttl = ms(write.ttl);
        let put = |tags| ComputedPut {
            value_key: &value_key,
            lock: &lock,
            tags,
            value: write.value.as_ref(),
            ttl,
            stamp: write.stamp,
            purge_memory: ms(PURGE_MEMORY),
            token: &token,
            wake_ttl: ms(WAKE_TTL),
        };
        let put = self
            .guarded("put_computed", async {
                if !self.inner.conn.is_cluster() {
                    return scripts.call(&mut self.conn(), &put(&tags)).await;
                }
                let purged_since = |marks: &[Option<u64>]| marks.iter().flatten().any(|&m| m >= write.stamp.0);
                let marks = try_join_all(tags.iter().map(|(set, mark)| async {
                    let call = ComputedTag {
                        tag_set: set,
                        purge_mark: mark,
                        value_key: &value_key,
                        ttl,
                    };
                    scripts.call(&mut self.conn(), &call).await
                }))
                .await?;
                if purged_since(&marks) {
                    self.release(&lock, &token).await?;
                    return Ok(false);
                }
                if !scripts.call(&mut self.conn(), &put(&[])).await? {
                    return Ok(false);
                }
                let marks = try_join_all(tags.iter().map(|(_, mark)| async move {
                    redis::cmd("GET")
                        .arg(mark)
                        .query_async::<Option<u64>>(&mut self.conn())
                        .await
                        .map_err(re)
                }))
                .await?;
                if purged_since(&marks) {
                    let call = ComputedDrop {
                        value_key: &value_key,
                        value: write.value.as_ref(),
                    };
                    scripts.call(&mut self.conn(), &call).await?;
                    return Ok(false);
                }
                Ok(true)
            })
            .await;
        // Written or not, a near cache forgets what it held (an error may follow the write).
        self.inner.tracking.value_keys_changed([value_key.as_str()]);
        put
    }

    async fn release(&self, lock: &str, token: &str) -> StoreResult<()> {
        if token.is_empty() {
            return Ok(());
        }
        let call = ComputedUnlock {
            lock,
            token,
            wake_ttl: ms(WAKE_TTL),
        };
        self.inner.scripts.call(&mut self.conn(), &call).await
    }

    pub(super) async fn computed_lock(&self, key: &str, ttl: Duration) -> StoreResult<LockAttempt> {
        let lock = lock_key(&self.inner.namespace, key);
        let token = rand::random::<u64>().max(1);
        self.guarded("lock_computed", async {
            let set: Option<String> = redis::cmd("SET")
                .arg(&lock)
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(ms(ttl))
                .query_async(&mut self.conn())
                .await
                .map_err(re)?;
            Ok(match set {
                Some(_) => LockAttempt::Acquired(ComputeLock(token)),
                None => LockAttempt::Held,
            })
        })
        .await
    }

    pub(super) async fn computed_unlock(&self, key: &str, lock: ComputeLock) -> StoreResult<()> {
        let lock_key = lock_key(&self.inner.namespace, key);
        self.guarded("unlock_computed", self.release(&lock_key, &lock.0.to_string()))
            .await
    }

    pub(super) async fn computed_extend(&self, key: &str, lock: ComputeLock, ttl: Duration) -> StoreResult<bool> {
        let lock_key = lock_key(&self.inner.namespace, key);
        let token = lock.0.to_string();
        let call = ComputedExtend {
            lock: &lock_key,
            token: &token,
            ttl: ms(ttl),
        };
        self.guarded("extend_computed", self.inner.scripts.call(&mut self.conn(), &call))
            .await
    }

    pub(super) async fn computed_wait(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        let ns = &self.inner.namespace;
        let value_key = value_key(ns, key);
        let lock = lock_key(ns, key);
        let call = ComputedWait {
            value_key: &value_key,
            lock: &lock,
            bound: ms(timeout),
        };
        let token = match self
            .guarded("wait_computed", self.inner.scripts.call(&mut self.conn(), &call))
            .await?
        {
            WaitStart::Value(Some(value)) => return Ok(LockWait::Value(value)),
            WaitStart::Value(None) | WaitStart::Unlocked => return Ok(LockWait::Released),
            WaitStart::Waiting(token) => token,
        };
        let wake = wake_key(&lock, &token);
        match self.inner.waits.pop(&wake, timeout).await {
            Ok(true) => {
                let value: Option<Bytes> = self
                    .guarded("wait_computed", async {
                        redis::cmd("GET")
                            .arg(&value_key)
                            .query_async(&mut self.conn())
                            .await
                            .map_err(re)
                    })
                    .await?;
                Ok(value.map_or(LockWait::Released, LockWait::Value))
            }
            Ok(false) => {
                self.unwait(&lock, &token).await;
                Ok(LockWait::TimedOut)
            }
            Err(err) => {
                self.unwait(&lock, &token).await;
                Err(re(err))
            }
        }
    }

    /// Stops counting a waiter that gave up (best effort: an extra wake-up left behind
    /// expires with its list, and only this computation's waiters could ever see it).
    async fn unwait(&self, lock: &str, token: &str) {
        let _ = self
            .guarded(
                "wait_computed",
                self.inner
                    .scripts
                    .call(&mut self.conn(), &ComputedUnwait { lock, token }),
            )
            .await;
    }
}
