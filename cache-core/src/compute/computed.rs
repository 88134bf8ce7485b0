//! [`Computed`]: a function's result cached in one line at its definition, keyed by its
//! arguments.

use std::{fmt, future::Future, marker::PhantomData, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use xxhash_rust::xxh3::xxh3_64;

use super::options::{DEFAULT_COMPUTE_TTL, Policy};
use crate::{Cache, ComputeOptions, keys::encode_component};

/// A cached function of `A` answering `T`: a name, a version and the caching settings, built
/// in a `static` next to the function it caches.
///
/// The key of a call is `{name}:params_{hash}:v{version}`: `hash` is the xxh3 (64 bits, 16 hex
/// digits) of the arguments' canonical JSON (object keys sorted, no whitespace), the same in
/// every process and every run. Bump the version when the value's shape or meaning changes:
/// values stored under the old one are never read again.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{Cache, CacheError, Computed, RecordId};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct EventStats { projects: usize }
/// # async fn count_projects(cache: &Cache, event: &RecordId) -> Result<usize, CacheError> { Ok(0) }
///
/// static EVENT_STATS: Computed<RecordId, EventStats> = Computed::new("event_stats")
///     .ttl(Duration::from_secs(60))
///     .version(1);
///
/// async fn event_stats(cache: &Cache, id: &RecordId) -> Result<EventStats, std::sync::Arc<CacheError>> {
///     EVENT_STATS
///         .get(cache, id, |id| async move {
///             Ok(EventStats { projects: count_projects(cache, &id).await? })
///         })
///         .await
/// }
/// ```
pub struct Computed<A, T> {
    policy: Policy,
    version: u32,
    tags: &'static [&'static str],
    types: PhantomData<fn(A) -> T>,
}

impl<A, T> fmt::Debug for Computed<A, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Computed")
            .field("name", &self.policy.name)
            .field("version", &self.version)
            .field("policy", &self.policy)
            .field("tags", &self.tags)
            .finish()
    }
}

impl<A, T> Computed<A, T> {
    /// A cached function named `name` (the key's first part and the metrics' `name` label),
    /// version 1, fresh for [`DEFAULT_COMPUTE_TTL`], with the defaults of
    /// [`ComputeOptions::new`].
    pub const fn new(name: &'static str) -> Self {
        Self {
            policy: Policy::new(name, DEFAULT_COMPUTE_TTL),
            version: 1,
            tags: &[],
            types: PhantomData,
        }
    }

    /// The version: part of the key.
    pub const fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// How long a value is fresh ([`ComputeOptions::ttl`]).
    pub const fn ttl(mut self, ttl: Duration) -> Self {
        self.policy.ttl = ttl;
        self
    }

    /// [`ComputeOptions::ttl_jitter`].
    pub const fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.policy.jitter = Some(jitter);
        self
    }

    /// [`ComputeOptions::serve_stale`].
    pub const fn serve_stale(mut self, bound: Duration) -> Self {
        self.policy.serve_stale = Some(bound);
        self
    }

    /// [`ComputeOptions::beta`].
    pub const fn beta(mut self, beta: f64) -> Self {
        self.policy.beta = beta;
        self
    }

    /// [`ComputeOptions::lock`].
    pub const fn lock(mut self, lock: bool) -> Self {
        self.policy.lock = lock;
        self
    }

    /// [`ComputeOptions::lock_ttl`].
    pub const fn lock_ttl(mut self, ttl: Duration) -> Self {
        self.policy.lock_ttl = ttl;
        self
    }

    /// [`ComputeOptions::lock_wait`].
    pub const fn lock_wait(mut self, wait: Duration) -> Self {
        self.policy.lock_wait = wait;
        self
    }

    /// Tags every value carries ([`ComputeOptions::tags`]). Tags that depend on the arguments
    /// are recorded from inside the computation with
    /// [`dependencies::record_tags`](crate::dependencies::record_tags).
    pub const fn tags(mut self, tags: &'static [&'static str]) -> Self {
        self.tags = tags;
        self
    }

    /// The name.
    pub const fn name(&self) -> &'static str {
        self.policy.name
    }

    /// The options of one call.
    pub fn options(&self) -> ComputeOptions {
        ComputeOptions {
            policy: self.policy,
            tags: self.tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }
}

impl<A: Serialize, T> Computed<A, T> {
    /// The key of the value for `args`: `{name}:params_{hash}:v{version}`. Fails only when
    /// `args` cannot be serialised as JSON (a map with non-string keys).
    ///
    /// ```
    /// # use cache_core::Computed;
    /// static TOP: Computed<(String, u32), Vec<String>> = Computed::new("top_projects").version(2);
    /// let key = TOP.key(&("recE1".to_owned(), 10)).unwrap();
    /// assert!(key.starts_with("top_projects:params_"));
    /// assert!(key.ends_with(":v2"));
    /// ```
    pub fn key(&self, args: &A) -> Result<String, serde_json::Error> {
        let hash = params_hash(args)?;
        Ok(format!(
            "{}:params_{hash:016x}:v{}",
            encode_component(self.policy.name),
            self.version
        ))
    }
}

impl<A, T> Computed<A, T>
where
    A: Serialize + Clone,
    T: Serialize + DeserializeOwned,
{
    /// The value for `args`: cached, or computed by `compute` (given a clone of the arguments)
    /// and stored. See [`Cache::get_or_compute`].
    pub async fn get<E, F, Fut>(&self, cache: &Cache, args: &A, compute: F) -> Result<T, Arc<E>>
    where
        F: FnOnce(A) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Send + Sync + 'static,
    {
        match self.key(args) {
            Ok(key) => {
                cache
                    .get_or_compute(&key, &self.options(), || compute(args.clone()))
                    .await
            }
            Err(err) => {
                tracing::warn!(name = self.policy.name, error = %err, "computed_key_unserializable");
                compute(args.clone()).await.map_err(Arc::new)
            }
        }
    }
}

/// xxh3 of the canonical JSON of `args`.
fn params_hash<A: Serialize>(args: &A) -> Result<u64, serde_json::Error> {
    let value = serde_json::to_value(args)?;
    let mut out = String::new();
    canonical(&value, &mut out)?;
    Ok(xxh3_64(out.as_bytes()))
}

/// Writes `value` as JSON with object keys sorted, whatever order the map keeps them in.
fn canonical(value: &Value, out: &mut String) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k)?);
                out.push(':');
                canonical(v, out)?;
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out)?;
            }
            out.push(']');
        }
        scalar => out.push_str(&serde_json::to_string(scalar)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::RecordId;

    static STATS: Computed<RecordId, u32> = Computed::new("event_stats")
        .ttl(Duration::from_secs(60))
        .version(3)
        .beta(1.5)
        .serve_stale(Duration::from_secs(5))
        .tags(&["site"]);

    #[test]
    fn keys_are_stable_across_runs() {
        let id = RecordId::new("recE1").unwrap();
        // Pinned: a change here orphans every value stored by an earlier release.
        assert_eq!(STATS.key(&id).unwrap(), "event_stats:params_7e913000c07262ac:v3");
        assert_eq!(format!("{:016x}", xxh3_64(b"\"recE1\"")), "7e913000c07262ac");
    }

    #[test]
    fn maps_hash_the_same_in_any_order() {
        let a: HashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let b: HashMap<String, u32> = (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
        assert_eq!(params_hash(&a).unwrap(), params_hash(&b).unwrap());
        assert_ne!(params_hash(&1u32).unwrap(), params_hash(&"1").unwrap());
    }

    #[test]
    fn names_are_encoded_and_options_carried() {
        static ODD: Computed<u32, u32> = Computed::new("a:b");
        assert!(ODD.key(&1).unwrap().starts_with("a%3Ab:params_"));
        let options = STATS.options();
        assert_eq!(options.policy.name, "event_stats");
        assert_eq!(options.policy.beta, 1.5);
        assert_eq!(options.tags, ["site"]);
    }

    #[test]
    fn unserialisable_arguments_have_no_key() {
        let mut bad: HashMap<(u8, u8), u8> = HashMap::new();
        bad.insert((1, 2), 3);
        static BAD: Computed<HashMap<(u8, u8), u8>, u8> = Computed::new("bad");
        assert!(BAD.key(&bad).is_err());
    }
}
