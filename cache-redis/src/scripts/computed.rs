//! Calls of the computed-value scripts: the stamped lookup, the stamped write with the lock's
//! release, tag registrations on a cluster, and the lock's waiters (see `lua/computed.lua`).

use bytes::Bytes;
use cache_core::store::{ComputedLookup, PurgeStamp, StoreResult};
use redis::{Script, ScriptInvocation, Value};

use super::{ScriptCall, Scripts, as_array, as_bytes, as_u64, backend};

/// `computed_get.lua`: a computed value and the server clock (the stamp to store its
/// recomputation with).
pub(crate) struct ComputedGet<'a> {
    pub(crate) value_key: &'a str,
}

impl ScriptCall for ComputedGet<'_> {
    type Reply = ComputedLookup;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.computed_get
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.value_key);
    }

    fn decode(&self, reply: Value) -> StoreResult<ComputedLookup> {
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
    }
}

/// `computed_put.lua`: stores a computed value unless one of its tags was purged since the
/// stamp, then releases the lock and wakes its waiters.
pub(crate) struct ComputedPut<'a> {
    pub(crate) value_key: &'a str,
    pub(crate) lock: &'a str,
    /// Per tag, its set and its purge mark (one server only: on a cluster, empty, and the tags
    /// are registered with [`ComputedTag`] in their own slots).
    pub(crate) tags: &'a [(String, String)],
    pub(crate) value: &'a [u8],
    /// The value's lifetime (ms).
    pub(crate) ttl: u64,
    pub(crate) stamp: PurgeStamp,
    /// How long purge marks live (ms): `PURGE_MEMORY`.
    pub(crate) purge_memory: u64,
    /// The lock's token (`""`: no lock held).
    pub(crate) token: &'a str,
    /// How long a wake-up list lives (ms).
    pub(crate) wake_ttl: u64,
}

impl ScriptCall for ComputedPut<'_> {
    /// Whether the value was stored.
    type Reply = bool;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.computed_put
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.value_key).key(self.lock);
        for (set, mark) in self.tags {
            invocation.key(set).key(mark);
        }
        invocation
            .arg(self.value)
            .arg(self.ttl)
            .arg(self.stamp.0)
            .arg(self.purge_memory)
            .arg(self.token)
            .arg(self.wake_ttl);
    }

    fn decode(&self, reply: Value) -> StoreResult<bool> {
        as_u64(&reply)
            .map(|stored| stored == 1)
            .ok_or_else(|| backend(format!("put_computed: unexpected reply {reply:?}")))
    }
}

/// `computed_tag.lua`: records a computed value under one tag and answers when the tag was
/// last purged.
pub(crate) struct ComputedTag<'a> {
    pub(crate) tag_set: &'a str,
    pub(crate) purge_mark: &'a str,
    pub(crate) value_key: &'a str,
    /// How long the tag set lives at least (ms).
    pub(crate) ttl: u64,
}

impl ScriptCall for ComputedTag<'_> {
    /// The tag's purge mark (server microseconds), if within the purge memory.
    type Reply = Option<u64>;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.computed_tag
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation
            .key(self.tag_set)
            .key(self.purge_mark)
            .arg(self.value_key)
            .arg(self.ttl);
    }

    fn decode(&self, reply: Value) -> StoreResult<Option<u64>> {
        match reply {
            Value::Nil => Ok(None),
            other => as_u64(&other)
                .map(Some)
                .ok_or_else(|| backend(format!("put_computed: unexpected purge mark {other:?}"))),
        }
    }
}

/// `computed_drop.lua`: removes a computed value if it is still the one given.
pub(crate) struct ComputedDrop<'a> {
    pub(crate) value_key: &'a str,
    pub(crate) value: &'a [u8],
}

impl ScriptCall for ComputedDrop<'_> {
    type Reply = ();

    fn script(scripts: &Scripts) -> &Script {
        &scripts.computed_drop
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.value_key).arg(self.value);
    }

    fn decode(&self, _reply: Value) -> StoreResult<()> {
        Ok(())
    }
}

/// `computed_unlock.lua`: releases a lock its computation holds and wakes its waiters.
pub(crate) struct ComputedUnlock<'a> {
    pub(crate) lock: &'a str,
    pub(crate) token: &'a str,
    /// How long a wake-up list lives (ms).
    pub(crate) wake_ttl: u64,
}

impl ScriptCall for ComputedUnlock<'_> {
    type Reply = ();

    fn script(scripts: &Scripts) -> &Script {
        &scripts.computed_unlock
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.lock).arg(self.token).arg(self.wake_ttl);
    }

    fn decode(&self, _reply: Value) -> StoreResult<()> {
        Ok(())
    }
}

/// `computed_extend.lua`: the holder of a lock keeps it for another time to live.
pub(crate) struct ComputedExtend<'a> {
    pub(crate) lock: &'a str,
    pub(crate) token: &'a str,
    /// The lock's new time to live (ms).
    pub(crate) ttl: u64,
}

impl ScriptCall for ComputedExtend<'_> {
    /// Whether the token held the lock (and now holds it for `ttl`).
    type Reply = bool;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.computed_extend
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.lock).arg(self.token).arg(self.ttl);
    }

    fn decode(&self, reply: Value) -> StoreResult<bool> {
        as_u64(&reply)
            .map(|held| held == 1)
            .ok_or_else(|| backend("extend_computed: reply is not 0 or 1"))
    }
}

/// `computed_wait.lua`: starts waiting for the holder of a lock.
pub(crate) struct ComputedWait<'a> {
    pub(crate) value_key: &'a str,
    pub(crate) lock: &'a str,
    /// How long the wait may last (ms).
    pub(crate) bound: u64,
}

/// What [`ComputedWait`] found.
pub(crate) enum WaitStart {
    /// The value is there (`None`: it went between the lock's release and this read).
    Value(Option<Bytes>),
    /// Nobody holds the lock.
    Unlocked,
    /// Counted among the waiters of the computation holding this token.
    Waiting(String),
}

impl ScriptCall for ComputedWait<'_> {
    type Reply = WaitStart;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.computed_wait
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.value_key).key(self.lock).arg(self.bound);
    }

    fn decode(&self, reply: Value) -> StoreResult<WaitStart> {
        let mut items = as_array(reply, "wait_computed")?.into_iter();
        match items.next().as_ref().and_then(as_u64) {
            Some(1) => Ok(WaitStart::Value(items.next().and_then(as_bytes))),
            Some(0) => Ok(WaitStart::Unlocked),
            Some(2) => items
                .next()
                .and_then(as_bytes)
                .and_then(|t| String::from_utf8(t.to_vec()).ok())
                .map(WaitStart::Waiting)
                .ok_or_else(|| backend("wait_computed: reply without the lock's token")),
            other => Err(backend(format!("wait_computed: unexpected reply {other:?}"))),
        }
    }
}

/// `computed_unwait.lua`: a waiter gave up and no longer counts among the waiters.
pub(crate) struct ComputedUnwait<'a> {
    pub(crate) lock: &'a str,
    pub(crate) token: &'a str,
}

impl ScriptCall for ComputedUnwait<'_> {
    type Reply = ();

    fn script(scripts: &Scripts) -> &Script {
        &scripts.computed_unwait
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.lock).arg(self.token);
    }

    fn decode(&self, _reply: Value) -> StoreResult<()> {
        Ok(())
    }
}
