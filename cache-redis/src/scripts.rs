//! The Lua scripts (`src/lua/`), compiled into the binary and invoked by SHA.
//!
//! [`redis::Script`] sends `EVALSHA` and, on `NOSCRIPT` (after a `SCRIPT FLUSH`, a restart or
//! a failover to a node that never saw the script), loads the script and retries: the cache
//! never depends on a script cache it did not fill itself. The store also loads every script
//! when it connects, so the first call of each is not a miss.

use redis::Script;

macro_rules! entity_script {
    ($file:literal) => {
        concat!(
            include_str!("lua/util.lua"),
            include_str!("lua/entity.lua"),
            include_str!(concat!("lua/", $file))
        )
    };
}

macro_rules! value_script {
    ($file:literal) => {
        concat!(include_str!("lua/util.lua"), include_str!(concat!("lua/", $file)))
    };
}

macro_rules! computed_script {
    ($file:literal) => {
        concat!(
            include_str!("lua/util.lua"),
            include_str!("lua/computed.lua"),
            include_str!(concat!("lua/", $file))
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
    pub(crate) computed_wait: Script,
    pub(crate) computed_unwait: Script,
    pub(crate) watermark: Script,
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
            computed_wait: Script::new(value_script!("computed_wait.lua")),
            computed_unwait: Script::new(value_script!("computed_unwait.lua")),
            watermark: Script::new(value_script!("watermark.lua")),
        }
    }

    pub(crate) fn all(&self) -> [&Script; 16] {
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
            &self.computed_wait,
            &self.computed_unwait,
            &self.watermark,
        ]
    }
}
