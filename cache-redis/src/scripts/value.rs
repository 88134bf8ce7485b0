//! Calls of the value scripts: values with their tags (`put_value`, `tag_value`), purges
//! (`purge_tag`), watermarks (`watermark`), and the flush's removal of record keys by what
//! they hold (`unlink_held`).

use cache_core::store::StoreResult;
use redis::{Script, ScriptInvocation, Value};

use super::{ScriptCall, Scripts, as_array, as_u64, backend};

/// `put_value.lua`: a value with its tags, on one server (every key in one script).
pub(crate) struct PutValue<'a> {
    pub(crate) key: &'a str,
    /// The tag sets to record the value under.
    pub(crate) tag_sets: &'a [String],
    pub(crate) value: &'a [u8],
    /// The value's lifetime (ms).
    pub(crate) ttl: u64,
}

impl ScriptCall for PutValue<'_> {
    type Reply = ();

    fn script(scripts: &Scripts) -> &Script {
        &scripts.put_value
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.key);
        for set in self.tag_sets {
            invocation.key(set);
        }
        invocation.arg(self.value).arg(self.ttl);
    }

    fn decode(&self, _reply: Value) -> StoreResult<()> {
        Ok(())
    }
}

/// `tag_value.lua`: records a value key under one tag (a cluster keeps the tag set in its own
/// slot).
pub(crate) struct TagValue<'a> {
    pub(crate) tag_set: &'a str,
    pub(crate) value_key: &'a str,
    /// How long the tag set lives at least (ms).
    pub(crate) ttl: u64,
}

impl ScriptCall for TagValue<'_> {
    type Reply = ();

    fn script(scripts: &Scripts) -> &Script {
        &scripts.tag_value
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.tag_set).arg(self.value_key).arg(self.ttl);
    }

    fn decode(&self, _reply: Value) -> StoreResult<()> {
        Ok(())
    }
}

/// `purge_tag.lua`: marks a tag purged now and answers the value keys recorded under it.
pub(crate) struct PurgeTag<'a> {
    pub(crate) tag_set: &'a str,
    pub(crate) purge_mark: &'a str,
    /// How long the mark lives (ms): `PURGE_MEMORY`.
    pub(crate) memory: u64,
}

impl ScriptCall for PurgeTag<'_> {
    /// The value keys recorded under the tag.
    type Reply = Vec<String>;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.purge_tag
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.tag_set).key(self.purge_mark).arg(self.memory);
    }

    fn decode(&self, reply: Value) -> StoreResult<Vec<String>> {
        as_array(reply, "purge_tags")?
            .into_iter()
            .map(|member| redis::from_redis_value(member).map_err(|e| backend(e.to_string())))
            .collect()
    }
}

/// `watermark.lua`: raises a watermark unless it holds a higher one.
pub(crate) struct RaiseWatermark<'a> {
    pub(crate) key: &'a str,
    pub(crate) mark: i64,
    /// The watermark's lifetime (ms).
    pub(crate) ttl: u64,
}

impl ScriptCall for RaiseWatermark<'_> {
    /// Whether the key now holds the mark (`false`: it holds a higher one).
    type Reply = bool;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.watermark
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        invocation.key(self.key).arg(self.mark).arg(self.ttl);
    }

    fn decode(&self, reply: Value) -> StoreResult<bool> {
        match as_u64(&reply) {
            Some(raised) => Ok(raised == 1),
            None => Err(backend(format!("advance_watermark: unexpected reply {reply:?}"))),
        }
    }
}

/// What a record key removed by [`UnlinkHeld`] held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unlinked {
    /// Left: it held neither what was selected nor anything.
    Kept,
    Record,
    Tombstone,
}

/// `unlink_held.lua`: removes record keys of one slot that still hold what each may lose
/// (`selects[i]`: `r`, `t` or `rt`), each checked and removed in one step.
pub(crate) struct UnlinkHeld<'a> {
    pub(crate) keys: &'a [&'a str],
    pub(crate) selects: &'a [&'static str],
}

impl ScriptCall for UnlinkHeld<'_> {
    type Reply = Vec<Unlinked>;

    fn script(scripts: &Scripts) -> &Script {
        &scripts.unlink_held
    }

    fn prepare(&self, invocation: &mut ScriptInvocation<'_>) {
        for key in self.keys {
            invocation.key(*key);
        }
        for select in self.selects {
            invocation.arg(*select);
        }
    }

    fn decode(&self, reply: Value) -> StoreResult<Vec<Unlinked>> {
        let items = as_array(reply, "unlink_held")?;
        if items.len() != self.keys.len() {
            return Err(backend("unlink_held answered the wrong number of keys"));
        }
        items
            .iter()
            .map(|item| match as_u64(item) {
                Some(0) => Ok(Unlinked::Kept),
                Some(1) => Ok(Unlinked::Record),
                Some(2) => Ok(Unlinked::Tombstone),
                _ => Err(backend(format!("unlink_held: unexpected reply {item:?}"))),
            })
            .collect()
    }
}
