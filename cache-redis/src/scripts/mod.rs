//! The Lua scripts (`src/lua/`), compiled into the binary and invoked by SHA, each with a
//! typed call beside it: a [`ScriptCall`] names the script's KEYS and ARGV (in the order its
//! header lists them) and decodes its reply into a named type, so nothing positional crosses
//! the boundary unnamed. [`entity`] holds the calls of the entity scripts, [`value`] those of
//! values, tags and watermarks, [`computed`] those of computed values' locks.
//!
//! [`redis::Script`] sends `EVALSHA` and, on `NOSCRIPT` (after a `SCRIPT FLUSH`, a restart or
//! a failover to a node that never saw the script), loads the script and retries: the cache
//! never depends on a script cache it did not fill itself. The store also loads every script
//! when it connects, so the first call of each is not a miss.

use bytes::Bytes;
use cache_core::store::{StoreError, StoreResult};
use redis::{RedisError, Script, ScriptInvocation, Value, aio::ConnectionLike};

use crate::connection::store_error;

pub(crate) mod computed;
pub(crate) mod entity;
pub(crate) mod value;

macro_rules! entity_script {
    ($file:literal) => {
        concat!(
            include_str!("../lua/util.lua"),
            include_str!("../lua/entity.lua"),
            include_str!(concat!("../lua/", $file))
        )
    };
}

macro_rules! value_script {
    ($file:literal) => {
        concat!(include_str!("../lua/util.lua"), include_str!(concat!("../lua/", $file)))
    };
}

macro_rules! computed_script {
    ($file:literal) => {
        concat!(
            include_str!("../lua/util.lua"),
            include_str!("../lua/computed.lua"),
            include_str!(concat!("../lua/", $file))
        )
    };
}

/// Every script the store runs.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) put: Script,
    pub(crate) remove: Script,
    pub(crate) lease: Script,
    pub(crate) query: Script,
    pub(crate) complete: Script,
    pub(crate) put_value: Script,
    pub(crate) tag_value: Script,
    pub(crate) purge_tag: Script,
    pub(crate) computed_get: Script,
    pub(crate) computed_put: Script,
    pub(crate) computed_tag: Script,
    pub(crate) computed_drop: Script,
    pub(crate) computed_unlock: Script,
    pub(crate) computed_extend: Script,
    pub(crate) computed_wait: Script,
    pub(crate) computed_unwait: Script,
    pub(crate) watermark: Script,
    pub(crate) unlink_held: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            put: Script::new(entity_script!("put.lua")),
            remove: Script::new(entity_script!("remove.lua")),
            lease: Script::new(entity_script!("lease.lua")),
            query: Script::new(entity_script!("query.lua")),
            complete: Script::new(entity_script!("complete.lua")),
            put_value: Script::new(value_script!("put_value.lua")),
            tag_value: Script::new(value_script!("tag_value.lua")),
            purge_tag: Script::new(value_script!("purge_tag.lua")),
            computed_get: Script::new(value_script!("computed_get.lua")),
            computed_put: Script::new(computed_script!("computed_put.lua")),
            computed_tag: Script::new(value_script!("computed_tag.lua")),
            computed_drop: Script::new(value_script!("computed_drop.lua")),
            computed_unlock: Script::new(computed_script!("computed_unlock.lua")),
            computed_extend: Script::new(value_script!("computed_extend.lua")),
            computed_wait: Script::new(value_script!("computed_wait.lua")),
            computed_unwait: Script::new(value_script!("computed_unwait.lua")),
            watermark: Script::new(value_script!("watermark.lua")),
            unlink_held: Script::new(value_script!("unlink_held.lua")),
        }
    }

    pub(crate) fn all(&self) -> [&Script; 18] {
        [
            &self.put,
            &self.remove,
            &self.lease,
            &self.query,
            &self.complete,
            &self.put_value,
            &self.tag_value,
            &self.purge_tag,
            &self.computed_get,
            &self.computed_put,
            &self.computed_tag,
            &self.computed_drop,
            &self.computed_unlock,
            &self.computed_extend,
            &self.computed_wait,
            &self.computed_unwait,
            &self.watermark,
            &self.unlink_held,
        ]
    }
}

/// A typed call of one script: what it is given and what it answers.
pub(crate) trait ScriptCall {
    /// The reply, decoded.
    type Reply;

    /// The script called.
    fn script(scripts: &Scripts) -> &Script;

    /// Adds the KEYS and ARGV, in the order the script's header lists them.
    fn prepare(&self, invocation: &mut ScriptInvocation<'_>);

    /// Decodes the script's reply.
    fn decode(&self, reply: Value) -> StoreResult<Self::Reply>;
}

impl Scripts {
    /// Runs `call` on `conn`: `EVALSHA`, loading the script on `NOSCRIPT`.
    pub(crate) async fn call<C: ScriptCall>(&self, conn: &mut impl ConnectionLike, call: &C) -> StoreResult<C::Reply> {
        let mut invocation = C::script(self).prepare_invoke();
        call.prepare(&mut invocation);
        let reply: Value = invocation.invoke_async(conn).await.map_err(re)?;
        call.decode(reply)
    }
}

/// A redis error as a store error.
pub(crate) fn re(err: RedisError) -> StoreError {
    store_error(&err)
}

/// A reply the store did not expect.
pub(crate) fn backend(what: impl Into<String>) -> StoreError {
    StoreError::Backend(what.into())
}

/// A duration as script milliseconds (at least 1: `PX 0` is an error).
pub(crate) fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// An integer reply (or one written as text).
pub(crate) fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// A string reply's bytes; `None` for nil (or anything else).
pub(crate) fn as_bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(b) => Some(Bytes::from(b)),
        _ => None,
    }
}

/// An array reply's items.
pub(crate) fn as_array(value: Value, what: &str) -> StoreResult<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => Err(backend(format!("{what}: unexpected reply {other:?}"))),
    }
}
