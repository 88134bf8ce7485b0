//! Index values (an email in `GET /users/by-email/{email}`, a slug) into key components
//! (`keys::encode_component`), tags (`keys::index_tag`), the Redis key layout
//! (`BucketKeys::tag`, record keys read back by `KeyLayout::record_id`) and, end to end, index
//! queries through a cache over the in-memory store.

use std::{borrow::Cow, collections::BTreeSet};

use cache_core::{Cacheable, RecordId, keys};
use cache_redis::{KeyLayout, RedisStore, testing::RedisServer};
use model_cache_fuzz::{
    Source,
    reference::{is_encoded_component, percent_decode},
};

use crate::{Event, User, cache, fuzz, origin, runtime};

#[test]
fn index_values_in_keys() {
    let rt = runtime();
    // The layouts of a real store: one bucket per entity, and four.
    let server = RedisServer::start();
    let layouts: Vec<(RedisStore, std::sync::Arc<KeyLayout>)> = [1, 4]
        .into_iter()
        .map(|buckets| {
            let store = rt
                .block_on(
                    RedisStore::builder(server.url())
                        .namespace("fz")
                        .buckets(buckets)
                        .connect(),
                )
                .unwrap();
            let layout = store.key_layout(User::schema());
            (store, layout)
        })
        .collect();

    let mut queried = 0u64;
    let mut inputs = 0u64;
    fuzz!(2_000, 256, |input: &[u8]| {
        let mut source = Source::new(input);
        inputs += 1;
        let query = source.one_in(4);
        let value = source.text(24);
        check_component(&value);
        let tag = keys::index_tag("users", "email", &value);
        let encoded = tag.strip_prefix("users?email=").unwrap();
        assert_eq!(percent_decode(encoded).as_deref(), Some(value.as_str()), "{tag}");

        for (_, layout) in &layouts {
            check_layout(layout, &value);
        }
        let stray = source.text(48);
        for (_, layout) in &layouts {
            // Whatever SCAN could return: never a panic, and an id only from a record key.
            if let Some(id) = layout.record_id(&stray) {
                assert!(stray.ends_with(&format!(":r:{id}")), "{stray:?}");
            }
        }

        if query {
            rt.block_on(check_queries(&mut source, value));
            queried += 1;
        }
    });
    eprintln!("index_values_in_keys: {queried} of {inputs} inputs also queried through a cache");
    assert!(inputs < 1_000 || queried > inputs / 8, "{queried} of {inputs} queried");
    drop(layouts);
    drop(server);
}

/// Encoded: nothing that breaks a key, decodes to the value, borrowed exactly when unchanged.
fn check_component(value: &str) {
    let encoded = keys::encode_component(value);
    assert!(is_encoded_component(&encoded), "{value:?} -> {encoded:?}");
    assert_eq!(percent_decode(&encoded).as_deref(), Some(value), "{encoded:?}");
    assert_eq!(matches!(encoded, Cow::Borrowed(_)), encoded == value, "{value:?}");
}

/// The index set of a value stays in its bucket (same hash tag, so the same cluster slot),
/// reads back as the value, and is never taken for a record key.
fn check_layout(layout: &KeyLayout, value: &str) {
    for bucket in layout.buckets() {
        let key = bucket.tag("email", value);
        let prefix = format!("{}:i:email:", bucket.prefix());
        let encoded = key.strip_prefix(&prefix).unwrap_or_else(|| panic!("{key:?}"));
        assert!(is_encoded_component(encoded), "{key:?}");
        assert_eq!(percent_decode(encoded).as_deref(), Some(value), "{key:?}");
        assert_eq!(hash_tag(&key), hash_tag(bucket.prefix()), "{key:?}");
        assert_eq!(layout.record_id(&key), None, "{key:?}");
    }
    if let Ok(id) = RecordId::new(value) {
        let bucket = layout.bucket_of(&id);
        assert!(bucket < layout.bucket_count());
        let keys = layout.for_id(&id);
        assert_eq!(keys, layout.bucket(bucket));
        let record = keys.record(&id);
        assert_eq!(layout.record_id(&record), Some(id.clone()), "{record:?}");
        assert_eq!(hash_tag(&record), hash_tag(keys.prefix()));
        assert_eq!(layout.record_id(&keys.lease(&id)), None);
    }
}

/// The part of a key Redis Cluster hashes: between the first `{` and the next `}`.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let len = key[open + 1..].find('}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// Users with fuzzed emails at the source; a lookup by a fuzzed value answers, from the
/// origin and then from the cache, the users whose normalised email equals it.
async fn check_queries(source: &mut Source<'_>, value: String) {
    let origin = origin();
    let n = source.below(4);
    let mut users = Vec::new();
    for i in 0..n {
        let email = match source.below(3) {
            0 => value.clone(),
            1 => value.to_uppercase(),
            _ => source.text(12),
        };
        let user = User {
            id: RecordId::new(format!("recU{i}")).unwrap(),
            email,
        };
        origin.put(&user).unwrap();
        users.push(user);
    }
    let (cache, _store) = cache(&origin);
    let normalise = |s: &str| s.trim().to_lowercase();
    let expected: BTreeSet<RecordId> = users
        .iter()
        .filter(|u| normalise(&u.email) == normalise(&value))
        .map(|u| u.id.clone())
        .collect();
    for round in ["miss", "hit"] {
        let found = cache.query(User::by_email(&value)).await.unwrap();
        let found: BTreeSet<RecordId> = found.into_iter().map(|u| u.id).collect();
        assert_eq!(found, expected, "{round}: {value:?} among {users:?}");
    }
    let slug = cache.query(Event::by_slug(&value)).await.unwrap();
    assert!(slug.iter().all(|e| e.slug == value), "{value:?}: {slug:?}");
}
