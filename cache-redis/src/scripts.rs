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
        }
    }

    pub(crate) fn all(&self) -> [&Script; 7] {
        [
            &self.put,
            &self.remove,
            &self.lease,
            &self.query,
            &self.complete,
            &self.put_value,
            &self.tag_value,
        ]
    }
}
