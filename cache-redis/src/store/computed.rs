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
use cache_core::{
    ComputeLock, ComputedLookup, ComputedWrite, LockAttempt, LockWait, PURGE_MEMORY, PurgeStamp, StoreResult,
};
use futures::future::try_join_all;
use redis::Value;

use super::{RedisStore, as_array, as_bytes, as_u64, backend, ms, re};
use crate::layout::{lock_key, purge_mark_key, tag_set_key, value_key};

/// How long a wake-up list lives: far longer than the moment between a waiter counting
/// itself and its `BLPOP`, short enough that an unclaimed wake-up does not linger.
const WAKE_TTL: Duration = Duration::from_secs(10);

impl RedisStore {
    /// Marks `tag` purged and answers the value keys recorded under it (`purge_tags`).
    pub(super) async fn purge_tag_members(&self, tag: &str, set: &str) -> StoreResult<Vec<String>> {
        let mut invocation = self.inner.scripts.purge_tag.key(set);
        invocation
            .key(purge_mark_key(&self.inner.namespace, tag))
            .arg(ms(PURGE_MEMORY));
        invocation.invoke_async(&mut self.conn()).await.map_err(re)
    }

    pub(super) async fn computed_get(&self, key: &str) -> StoreResult<ComputedLookup> {
        let value_key = value_key(&self.inner.namespace, key);
        self.guarded("get_computed", async {
            let reply: Value = self
                .inner
                .scripts
                .computed_get
                .key(&value_key)
                .invoke_async(&mut self.conn())
                .await
                .map_err(re)?;
            let mut items = as_array(reply, "get_computed")?.into_iter();
            let value = items.next().and_then(as_bytes);
            let stamp = items
                .next()
                .as_ref()
                .and_then(as_u64)
                .ok_or_else(|| backend("get_computed: reply without the server clock"))?;
            Ok(ComputedLookup {
                value,
                stamp: PurgeStamp(stamp),
            })
        })
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
        let put = |with_tags: bool| {
            let mut invocation = scripts.computed_put.key(&value_key);
            invocation.key(&lock);
            if with_tags {
                for (set, mark) in &tags {
                    invocation.key(set).key(mark);
                }
            }
            invocation
                .arg(write.value.as_ref())
                .arg(ttl)
                .arg(write.stamp.0)
                .arg(ms(PURGE_MEMORY))
                .arg(&token)
                .arg(ms(WAKE_TTL));
            invocation
        };
        self.guarded("put_computed", async {
            if !self.inner.conn.is_cluster() {
                let stored: u64 = put(true).invoke_async(&mut self.conn()).await.map_err(re)?;
                return Ok(stored == 1);
            }
            let purged_since = |marks: &[Option<u64>]| marks.iter().flatten().any(|&m| m >= write.stamp.0);
            let marks = try_join_all(tags.iter().map(|(set, mark)| {
                let mut invocation = scripts.computed_tag.key(set);
                invocation.key(mark).arg(&value_key).arg(ttl);
                async move {
                    invocation
                        .invoke_async::<Option<u64>>(&mut self.conn())
                        .await
                        .map_err(re)
                }
            }))
            .await?;
            if purged_since(&marks) {
                self.release(&lock, &token).await?;
                return Ok(false);
            }
            let stored: u64 = put(false).invoke_async(&mut self.conn()).await.map_err(re)?;
            if stored != 1 {
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
                scripts
                    .computed_drop
                    .key(&value_key)
                    .arg(write.value.as_ref())
                    .invoke_async::<Value>(&mut self.conn())
                    .await
                    .map_err(re)?;
                return Ok(false);
            }
            Ok(true)
        })
        .await
    }

    async fn release(&self, lock: &str, token: &str) -> StoreResult<()> {
        if token.is_empty() {
            return Ok(());
        }
        self.inner
            .scripts
            .computed_unlock
            .key(lock)
            .arg(token)
            .arg(ms(WAKE_TTL))
            .invoke_async::<Value>(&mut self.conn())
            .await
            .map(drop)
            .map_err(re)
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

    pub(super) async fn computed_wait(&self, key: &str, timeout: Duration) -> StoreResult<LockWait> {
        let ns = &self.inner.namespace;
        let value_key = value_key(ns, key);
        let lock = lock_key(ns, key);
        let begin = self
            .guarded("wait_computed", async {
                let reply: Value = self
                    .inner
                    .scripts
                    .computed_wait
                    .key(&value_key)
                    .key(&lock)
                    .arg(ms(timeout))
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(re)?;
                as_array(reply, "wait_computed")
            })
            .await?;
        let mut items = begin.into_iter();
        let token = match items.next().as_ref().and_then(as_u64) {
            Some(1) => {
                return Ok(match items.next().and_then(as_bytes) {
                    Some(value) => LockWait::Value(value),
                    None => LockWait::Released,
                });
            }
            Some(0) => return Ok(LockWait::Released),
            Some(2) => items
                .next()
                .and_then(as_bytes)
                .and_then(|t| String::from_utf8(t.to_vec()).ok())
                .ok_or_else(|| backend("wait_computed: reply without the lock's token"))?,
            other => return Err(backend(format!("wait_computed: unexpected reply {other:?}"))),
        };
        let wake = format!("{lock}:wake:{token}");
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
            .guarded("wait_computed", async {
                self.inner
                    .scripts
                    .computed_unwait
                    .key(lock)
                    .arg(token)
                    .invoke_async::<Value>(&mut self.conn())
                    .await
                    .map(drop)
                    .map_err(re)
            })
            .await;
    }
}
