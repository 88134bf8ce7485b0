//! The key layout: every key name the store reads or writes, built in one place. See
//! [`KeyLayout`].

use std::fmt::Write as _;

use cache_core::{RecordId, keys::encode_component, query::IndexQuery, schema::EntitySchema};

use crate::ConnectError;

/// Characters a namespace cannot contain: glob syntax (a namespace is a literal `SCAN MATCH`
/// prefix) and hash-tag braces.
const FORBIDDEN_NAMESPACE_CHARS: &[char] = &['*', '?', '[', ']', '\\', '{', '}'];

/// Checks a namespace: non-empty, no whitespace, control characters, glob syntax or braces.
pub(crate) fn validate_namespace(namespace: &str) -> Result<(), ConnectError> {
    let bad = namespace
        .chars()
        .find(|&ch| ch.is_whitespace() || ch.is_control() || FORBIDDEN_NAMESPACE_CHARS.contains(&ch));
    match bad {
        _ if namespace.is_empty() => Err(ConnectError::Namespace("a namespace cannot be empty".to_owned())),
        Some(ch) => Err(ConnectError::Namespace(format!(
            "a namespace cannot contain {ch:?} (glob syntax, braces, whitespace)"
        ))),
        None => Ok(()),
    }
}

/// An entity's keys: one [`BucketKeys`] per bucket. Built by
/// [`RedisStore::key_layout`](crate::RedisStore::key_layout).
///
/// Keys live in *buckets*. Every key of one bucket shares one Redis Cluster hash
/// tag, so a multi-key script touches one slot only; an entity spread over several buckets is
/// spread over several slots (and so nodes).
///
/// ```text
/// mc:{projects}:1a2b3c4d:r:recP1            record (the cached JSON; `redis-cli GET` reads it)
///                                           or its tombstone (`!1`, `!d|...`, `!o|...`)
/// mc:{projects}:1a2b3c4d:lease:recP1        lease token of a fill in flight
/// mc:{projects}:1a2b3c4d:m                  HASH id -> the record's index entries and version
/// mc:{projects}:1a2b3c4d:ids                ZSET id -> 0: every record with index entries
/// mc:{projects}:1a2b3c4d:i:event:recE1      ZSET id -> 0: ids whose `event` is `recE1`
/// mc:{projects}:1a2b3c4d:s:points           ZSET id -> score of `points`
/// mc:{projects}:1a2b3c4d:c:9f86d081884c7d65 completeness marker of one filter set (= epoch)
/// mc:{projects}:1a2b3c4d:epoch              invalidation epoch
/// mc:{projects}:1a2b3c4d:seq                write sequence (fill tokens)
/// mc:v:<key>                                computed value / cached response
/// mc:tag:<tag>                              SET of the value keys recorded under a tag
/// mc:purged:{mc:tag:<tag>}                  when the tag was last purged (refuses values
///                                           computed across the purge)
/// mc:lock:{mc:v:<key>}                      lock on computing a value; `:waiters:<token>`
///                                           counts its waiters, `:wake:<token>` wakes them
/// ```
///
/// So that an evicted index key reads as lost, never as empty, the meta hash holds the field
/// `""` (its incarnation), the id and sort zsets the member `""` at `-inf`, and a tag set
/// `:c:<hash>` for each marker relying on it and `:m:<incarnation>` while the meta hash files
/// every id in it there: none of them is a record id. The scripts (`src/lua/entity.lua`) say
/// how they are used.
///
/// With `n > 1` buckets the hash tag is `{projects.2/4}` (bucket 2 of 4): the bucket count is
/// part of the layout, so changing it never reads a bucket filled under another split.
#[derive(Debug, Clone)]
pub struct KeyLayout {
    namespace: String,
    entity: String,
    fingerprint: String,
    count: u32,
    /// Every bucket's keys, built once: the store keeps one layout per schema, so that an
    /// operation only appends ids to prefixes.
    buckets: Box<[BucketKeys]>,
}

impl KeyLayout {
    pub(crate) fn new(namespace: &str, schema: &EntitySchema, count: u32) -> Self {
        let entity = encode_component(schema.entity).into_owned();
        let fingerprint = schema.fingerprint_hex();
        let buckets = (0..count)
            .map(|bucket| {
                let mut prefix = String::with_capacity(namespace.len() + entity.len() + 24);
                let _ = write!(prefix, "{namespace}:{{{entity}");
                if count > 1 {
                    let _ = write!(prefix, ".{bucket}/{count}");
                }
                let _ = write!(prefix, "}}:{fingerprint}");
                BucketKeys::new(prefix)
            })
            .collect();
        Self {
            namespace: namespace.to_owned(),
            entity,
            fingerprint,
            count,
            buckets,
        }
    }

    /// How many buckets the entity is spread over.
    pub fn bucket_count(&self) -> u32 {
        self.count
    }

    /// The bucket an id lives in: `xxh3(id) % buckets`.
    pub fn bucket_of(&self, id: &RecordId) -> u32 {
        if self.count == 1 {
            return 0;
        }
        (xxhash_rust::xxh3::xxh3_64(id.as_str().as_bytes()) % u64::from(self.count)) as u32
    }

    /// The keys of bucket `bucket`. Panics unless `bucket < bucket_count()`.
    pub fn bucket(&self, bucket: u32) -> BucketKeys {
        self.keys(bucket).clone()
    }

    /// The keys of the bucket `id` lives in.
    pub fn for_id(&self, id: &RecordId) -> BucketKeys {
        self.keys_for(id).clone()
    }

    /// Every bucket's keys, in bucket order.
    pub fn buckets(&self) -> Vec<BucketKeys> {
        self.buckets.to_vec()
    }

    /// [`KeyLayout::bucket`], borrowed: what the store's operations use.
    pub(crate) fn keys(&self, bucket: u32) -> &BucketKeys {
        &self.buckets[bucket as usize]
    }

    /// [`KeyLayout::for_id`], borrowed.
    pub(crate) fn keys_for(&self, id: &RecordId) -> &BucketKeys {
        self.keys(self.bucket_of(id))
    }

    /// [`KeyLayout::buckets`], borrowed.
    pub(crate) fn all_keys(&self) -> &[BucketKeys] {
        &self.buckets
    }

    /// A `SCAN MATCH` pattern covering the record keys of every bucket. It may also match
    /// another entity's keys in contrived cases (an entity named `a.1/2`), so callers check each
    /// key with [`KeyLayout::record_id`].
    pub fn record_pattern(&self) -> String {
        if self.count == 1 {
            format!("{}:r:*", self.buckets[0].prefix)
        } else {
            format!(
                "{}:{{{}.*/{}}}:{}:r:*",
                self.namespace, self.entity, self.count, self.fingerprint
            )
        }
    }

    /// The id in a record key of this entity, if `key` is one.
    pub fn record_id(&self, key: &str) -> Option<RecordId> {
        let rest = key.strip_prefix(&self.namespace)?.strip_prefix(":{")?;
        let rest = rest.strip_prefix(self.entity.as_str())?;
        let (tag_rest, rest) = rest.split_once('}')?;
        if self.count == 1 {
            if !tag_rest.is_empty() {
                return None;
            }
        } else {
            let (bucket, count) = tag_rest.strip_prefix('.')?.split_once('/')?;
            if count != self.count.to_string() || bucket.parse::<u32>().ok()? >= self.count {
                return None;
            }
        }
        let id = rest
            .strip_prefix(':')?
            .strip_prefix(self.fingerprint.as_str())?
            .strip_prefix(":r:")?;
        RecordId::new(id).ok()
    }
}

/// The keys of one bucket of one entity; see [`KeyLayout`] for the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketKeys {
    prefix: String,
    /// The keys every entity script declares: seq, meta, ids, epoch.
    shared: [String; 4],
}

impl BucketKeys {
    fn new(prefix: String) -> Self {
        let shared = [":seq", ":m", ":ids", ":epoch"].map(|suffix| format!("{prefix}{suffix}"));
        Self { prefix, shared }
    }

    /// `{prefix}{kind}{id}`, in one allocation of the right size.
    fn per_record(&self, kind: &str, id: &RecordId) -> String {
        let mut key = String::with_capacity(self.prefix.len() + kind.len() + id.as_str().len());
        key.push_str(&self.prefix);
        key.push_str(kind);
        key.push_str(id.as_str());
        key
    }

    /// The common prefix, hash tag included: `mc:{projects}:1a2b3c4d`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A record, or its tombstone: `...:r:{id}`. The two are never kept together, so one key
    /// holds either; a tombstone starts with `!`, which no cached JSON does (see
    /// `src/lua/entity.lua`).
    pub fn record(&self, id: &RecordId) -> String {
        self.per_record(":r:", id)
    }

    /// A lease: `...:lease:{id}`.
    pub fn lease(&self, id: &RecordId) -> String {
        self.per_record(":lease:", id)
    }

    /// The hash of every record's index entries and version: `...:m`.
    pub fn meta(&self) -> &str {
        &self.shared[1]
    }

    /// The sorted set of every record with index entries (all scores 0, so ordered by id):
    /// `...:ids`.
    pub fn ids(&self) -> &str {
        &self.shared[2]
    }

    /// The sorted set (all scores 0) of ids whose `field` has `value`:
    /// `...:i:{field}:{encoded value}`.
    pub fn tag(&self, field: &str, value: &str) -> String {
        format!(
            "{}:i:{}:{}",
            self.prefix,
            encode_component(field),
            encode_component(value)
        )
    }

    /// The sorted set of ids by `field`: `...:s:{field}`.
    pub fn sort(&self, field: &str) -> String {
        format!("{}:s:{}", self.prefix, encode_component(field))
    }

    /// The completeness marker of `query`'s filters: `...:c:{xxh3 of the filter key}`.
    pub fn marker(&self, query: &IndexQuery) -> String {
        let hash = xxhash_rust::xxh3::xxh3_64(query.filter_key().as_bytes());
        format!("{}:c:{hash:016x}", self.prefix)
    }

    /// The invalidation epoch: `...:epoch`.
    pub fn epoch(&self) -> &str {
        &self.shared[3]
    }

    /// The write sequence: `...:seq`.
    pub fn seq(&self) -> &str {
        &self.shared[0]
    }

    /// The keys every entity script declares, in the order the scripts read them
    /// (`KEYS[1..4]`): seq, meta, ids, epoch.
    pub(crate) fn script_keys(&self) -> &[String; 4] {
        &self.shared
    }
}

/// A computed value or cached response: `{namespace}:v:{encoded key}`.
///
/// The key's `:` separators are kept (every other special character is encoded), so that a
/// flush pattern over `v:{key}`, such as the response cache's `v:http:events:*`, matches here
/// as it does on the in-memory store.
pub(crate) fn value_key(namespace: &str, key: &str) -> String {
    let mut out = format!("{namespace}:v:");
    for (i, part) in key.split(':').enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&encode_component(part));
    }
    out
}

/// The set of value keys recorded under a tag: `{namespace}:tag:{encoded tag}`.
pub(crate) fn tag_set_key(namespace: &str, tag: &str) -> String {
    format!("{namespace}:tag:{}", encode_component(tag))
}

/// The lock on computing the value under `key`: `{namespace}:lock:{<value key>}`. The waiters
/// of the computation holding token `T` count in `...:waiters:T` and are woken through the list
/// `...:wake:T`. The hash tag is the value key itself (which has no braces), so the lock and
/// its wake-ups live in the value's cluster slot.
pub(crate) fn lock_key(namespace: &str, key: &str) -> String {
    format!("{namespace}:lock:{{{}}}", value_key(namespace, key))
}

/// The list through which the waiters of the computation holding `token` are woken:
/// `{lock}:wake:{token}` (built by `computed.lua` too).
pub(crate) fn wake_key(lock: &str, token: &str) -> String {
    format!("{lock}:wake:{token}")
}

/// When a tag was last purged (server microseconds): `{namespace}:purged:{<tag set key>}`, in
/// the tag set's slot.
pub(crate) fn purge_mark_key(namespace: &str, tag: &str) -> String {
    format!("{namespace}:purged:{{{}}}", tag_set_key(namespace, tag))
}

#[cfg(test)]
mod tests {
    use cache_core::schema::FieldSchema;

    use super::*;

    fn schema() -> EntitySchema {
        EntitySchema::builder("projects")
            .field(FieldSchema::scalar("name", "String"))
            .build()
    }

    #[test]
    fn one_bucket_keys_share_the_entity_tag() {
        let layout = KeyLayout::new("mc", &schema(), 1);
        let fp = schema().fingerprint_hex();
        let id = RecordId::new("recP1").unwrap();
        let keys = layout.for_id(&id);
        assert_eq!(keys.record(&id), format!("mc:{{projects}}:{fp}:r:recP1"));
        assert_eq!(
            keys.tag("email", "a b*"),
            format!("mc:{{projects}}:{fp}:i:email:a%20b%2A")
        );
        assert_eq!(layout.record_id(&keys.record(&id)), Some(id.clone()));
        assert_eq!(layout.record_id(&keys.lease(&id)), None);
        assert_eq!(layout.record_pattern(), format!("mc:{{projects}}:{fp}:r:*"));
        assert_eq!(keys.script_keys()[1], keys.meta());
        assert_eq!(keys.epoch(), format!("mc:{{projects}}:{fp}:epoch"));
    }

    #[test]
    fn buckets_are_part_of_the_tag() {
        let layout = KeyLayout::new("mc", &schema(), 4);
        let fp = schema().fingerprint_hex();
        assert_eq!(layout.bucket(2).prefix(), format!("mc:{{projects.2/4}}:{fp}"));
        let id = RecordId::new("recP1").unwrap();
        let key = layout.for_id(&id).record(&id);
        assert_eq!(layout.record_id(&key), Some(id));
        let other = KeyLayout::new("mc", &schema(), 2);
        assert_eq!(other.record_id(&key), None, "another bucket count is another layout");
        let spread: std::collections::HashSet<u32> = (0..100)
            .map(|i| layout.bucket_of(&RecordId::new(format!("rec{i}")).unwrap()))
            .collect();
        assert_eq!(spread.len(), 4);
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(validate_namespace("mc").is_ok());
        assert!(validate_namespace("app:cache").is_ok());
        for bad in ["", "m c", "mc*", "{mc}", "mc\\"] {
            assert!(validate_namespace(bad).is_err(), "{bad:?}");
        }
    }

    /// The key scheme is written twice, here and in the scripts (`src/lua/entity.lua`,
    /// `computed.lua`): the scripts build per-record and index keys from the bucket prefix, and
    /// the wake-up list from the lock key. This runs the scripts' own key functions on a real
    /// server and checks that they build exactly what this module builds, and that they mark
    /// a tombstone in a record key as the store reads it.
    #[cfg(feature = "testing")]
    #[test]
    fn the_scripts_build_the_keys_this_layout_builds() {
        use cache_core::{keys::encode_component, schema::IndexKind};

        let schema = EntitySchema::builder("projects")
            .field(FieldSchema {
                index: Some(IndexKind::Exact),
                ..FieldSchema::scalar("email", "String")
            })
            .field(FieldSchema {
                sortable: true,
                ..FieldSchema::scalar("points", "i64")
            })
            .build();
        let fp = schema.fingerprint_hex();
        let server = crate::testing::shared_server();
        let probe = concat!(
            include_str!("lua/util.lua"),
            include_str!("lua/entity.lua"),
            "return {record_key(ARGV[2]), lease_key(ARGV[2]), ",
            "tag_key(ARGV[3], ARGV[4]), sort_key(ARGV[5]), live_member(ARGV[6]), TOMBSTONE}"
        );
        for buckets in [1, 4] {
            let layout = KeyLayout::new("mc", &schema, buckets);
            for (id, value) in [("recP1", "a b*"), ("rec:odd", "ümlaut{x}"), ("42", "")] {
                let Ok(id) = RecordId::new(id) else { continue };
                let keys = layout.for_id(&id);
                let query = IndexQuery::all().filter("email", value.to_owned());
                let marker = keys.marker(&query);
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(probe).arg(4);
                for key in keys.script_keys() {
                    cmd.arg(key);
                }
                // What the Rust side passes: the prefix, an id, the key-encoded field and value
                // (as `meta::encode` files them), a sort field, a marker.
                cmd.arg(keys.prefix())
                    .arg(id.as_str())
                    .arg(encode_component("email"))
                    .arg(encode_component(value))
                    .arg("points")
                    .arg(&marker);
                let lua: Vec<String> = server.query(&cmd);
                assert_eq!(
                    lua,
                    vec![
                        keys.record(&id),
                        keys.lease(&id),
                        keys.tag("email", value),
                        keys.sort("points"),
                        marker.strip_prefix(keys.prefix()).unwrap_or_default().to_owned(),
                        char::from(crate::store::TOMBSTONE).to_string(),
                    ],
                    "{buckets} buckets, id {id}"
                );
                assert!(keys.prefix().contains(&format!(":{fp}")), "{}", keys.prefix());
            }
        }
        let lock = lock_key("mc", "http:events:recE1");
        let probe = concat!(
            include_str!("lua/util.lua"),
            include_str!("lua/computed.lua"),
            "redis.call('SET', KEYS[1], ARGV[1]) ",
            "redis.call('SET', KEYS[1] .. ':waiters:' .. ARGV[1], '1') ",
            "release(KEYS[1], ARGV[1], 1000) ",
            "return redis.call('EXISTS', ARGV[2])"
        );
        let wake = wake_key(&lock, "t1");
        let woken: u64 = server.query(redis::cmd("EVAL").arg(probe).arg(1).arg(&lock).arg("t1").arg(&wake));
        assert_eq!(woken, 1, "computed.lua wakes the list {wake}");
        let _: u64 = server.query(redis::cmd("DEL").arg(&wake));
    }
}
