//! Configuring a [`Cache`]: [`CacheBuilder`] and the `CACHE_ENABLED` switch.

use super::*;

impl CacheBuilder {
    /// Whether the cache is used at all. A disabled cache sends every read to the origin
    /// (counted as a bypass) and every write skips the store. Enabled by default.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Reads [`CACHE_ENABLED`](CACHE_ENABLED_ENV): `false`, `0`, `no` or `off` disable the
    /// cache, `true`, `1`, `yes` or `on` enable it (any case); unset leaves the setting as it
    /// is. Any other value makes [`CacheBuilder::build`] fail with
    /// [`ConfigError::InvalidEnv`].
    pub fn enabled_from_env(self) -> Self {
        let value = std::env::var(CACHE_ENABLED_ENV).ok();
        self.enabled_from_value(value.as_deref())
    }

    pub(super) fn enabled_from_value(mut self, value: Option<&str>) -> Self {
        let Some(value) = value else {
            return self;
        };
        match parse_switch(value) {
            Ok(enabled) => self.enabled = enabled,
            Err(_) => self.errors.push(ConfigError::InvalidEnv {
                var: CACHE_ENABLED_ENV,
                value: value.to_owned(),
                expected: InvalidSwitch::EXPECTED,
            }),
        }
        self
    }

    /// Registers a model for the type-erased routers and the sweep ([`Cache::entities`]).
    /// Typed operations work for any model, registered or not.
    pub fn register<T: Cacheable>(mut self) -> Self {
        self.entities.push(EntityHandle::of::<T>());
        self
    }

    /// The fraction by which every TTL is randomly lengthened or shortened (default
    /// [`DEFAULT_TTL_JITTER`], 5%); must be in `[0, 1)`.
    pub fn ttl_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// How long a fill lease lives (default [`DEFAULT_LEASE_TTL`]). An origin call slower than
    /// this loses its lease and its result is not cached.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How long the latest source time applied to each record is remembered (default
    /// [`DEFAULT_ORDERING_TTL`](crate::change::DEFAULT_ORDERING_TTL), 7 days): a change
    /// delayed longer is not recognised as older by its time.
    pub fn ordering_ttl(mut self, ttl: Duration) -> Self {
        self.ordering_ttl = ttl;
        self
    }

    /// Keeps decoded records, index query results and computed values (cached responses among
    /// them) in this process too, up to `max_bytes` (each weighed at its cached size: see
    /// [`NearCache`](crate::near::NearCache)), so that a read of one costs no round trip. Only over a store that reports every change
    /// to what it holds, whichever instance made it: Redis, through server-assisted
    /// client-side caching (`CLIENT TRACKING`). While the store cannot vouch for that (its
    /// invalidation connection is down or not set up yet), the near cache is empty and every
    /// read goes to the store. Another store (the in-memory one needs none) gets no near cache,
    /// logged as `near_cache_unsupported`. Off by default (0 bytes); see the guide's near
    /// cache chapter.
    pub fn near_cache(mut self, max_bytes: u64) -> Self {
        self.near.max_bytes = max_bytes;
        self
    }

    /// The longest a near cache entry lives (default
    /// [`DEFAULT_NEAR_MAX_AGE`](crate::near::DEFAULT_NEAR_MAX_AGE), 60 s): a record whose TTL
    /// ran out in the store is answered here at most this long after its read, until the
    /// store reports it expired.
    pub fn near_cache_max_age(mut self, max_age: Duration) -> Self {
        self.near.max_age = max_age;
        self
    }

    /// Builds the cache.
    pub fn build(mut self) -> Result<Cache, ConfigError> {
        if let Some(err) = self.errors.drain(..).next() {
            return Err(err);
        }
        if !(0.0..1.0).contains(&self.jitter) {
            return Err(ConfigError::InvalidJitter(self.jitter));
        }
        let mut registry = Registry::default();
        for handle in self.entities {
            registry.insert(handle)?;
        }
        let near = (self.enabled && self.near.max_bytes > 0)
            .then(|| crate::near::NearCache::attach(self.near, &*self.store))
            .flatten();
        Ok(Cache {
            inner: Arc::new(Inner {
                store: self.store,
                origin: self.origin,
                enabled: self.enabled,
                registry,
                jitter: self.jitter,
                lease_ttl: self.lease_ttl,
                ordering_ttl: self.ordering_ttl,
                stats: Stats::default(),
                flights: Arc::default(),
                computed: self.compute.build(),
                near,
                feeds: crate::feed::Feeds::default(),
            }),
        })
    }
}
