//! Watermarks in the memory store: a watermark is an untagged value (`v:{key}`) holding a
//! decimal integer, compared and raised under the state lock that every value write takes.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use super::{Entry, Key, Kind, MemoryStore, forget_value_tags};
use crate::store::StoreResult;

impl MemoryStore {
    pub(super) async fn watermark_advance(&self, key: &str, value: i64, ttl: Duration) -> StoreResult<bool> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let k = Key::Value(key.to_owned());
        let previous = inner.entries.get(&k).await;
        if let Some(Entry {
            kind: Kind::Value { body, tags },
            expires_at,
            ..
        }) = &previous
        {
            let current = std::str::from_utf8(body).ok().and_then(|s| s.parse::<i64>().ok());
            if *expires_at > inner.now() && current.is_some_and(|current| current > value) {
                return Ok(false);
            }
            forget_value_tags(&mut state.value_tags, key, tags);
        }
        let entry = Entry {
            kind: Kind::Value {
                body: Bytes::from(value.to_string()),
                tags: Arc::from([]),
            },
            ttl,
            expires_at: inner.now() + ttl,
        };
        inner.entries.insert(k, entry).await;
        Ok(true)
    }
}
