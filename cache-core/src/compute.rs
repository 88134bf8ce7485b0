//! Computed values: aggregates and other results worth caching that are not records, cached
//! with the same safety as records and invalidated by what they read.
//!
//! [`Cache::get_or_compute`] (or the typed [`Computed`]) answers a stored value or runs the
//! computation once and stores its result:
//! - **Dependencies.** The computation runs in its own [telemetry scope](crate::telemetry):
//!   the records and index results it reads through the cache become the value's tags, so an
//!   upsert, invalidation or delete of one of them, or a change to one of those index results,
//!   removes the value. Explicit tags ([`ComputeOptions::tags`]) are purged with
//!   [`Cache::invalidate_tags`]. A value computed while one of its tags was purged is not
//!   stored ([`Store::put_computed`]).
//! - **Stampedes.** In a process, one computation per key at a time; across processes, the
//!   store's lock ([`Store::lock_computed`]) lets one instance compute while the others wait
//!   for its value without polling, up to a bound, then compute themselves.
//! - **Early refresh** (XFetch): a read recomputes a value shortly before it expires, with a
//!   probability that grows as the expiry nears, so that a hot value never expires under load.
//! - **Serve-stale** (opt-in): when the computation fails, a value expired less than a bound
//!   ago is answered instead of the error.
//!
//! Errors of the computation are the caller's type, shared (`Arc<E>`) with the callers that
//! waited for the same computation, and never cached. The store failing is never an error:
//! the value is computed (and logged as `computed_store_error`).
//!
//! Tracing events: `computed_hit`, `computed_miss`, `computed_early_refresh`,
//! `computed_coalesced`, `computed_lock_wait`, `computed_lock_released`,
//! `computed_lock_wait_timeout`, `computed_stored`, `computed_refused`, `computed_error`,
//! `computed_early_refresh_failed`, `computed_served_stale`, `computed_unreadable`,
//! `computed_unserializable`, `computed_store_error`, `computed_bypass`. Metrics:
//! [`COMPUTED_TOTAL`] and [`COMPUTED_DURATION`], labelled by name.

mod computed;
mod envelope;
mod flight;
mod options;
mod random;
mod stats;

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use rand::Rng;
use serde::{Serialize, de::DeserializeOwned};

pub use self::{
    computed::Computed,
    options::{ComputeOptions, DEFAULT_BETA, DEFAULT_COMPUTE_TTL, DEFAULT_LOCK_TTL, DEFAULT_LOCK_WAIT, UNNAMED},
    random::{ManualRandom, RandomSource, SystemRandom},
    stats::{COMPUTED_DURATION, COMPUTED_TOTAL, ComputedStats},
};
use self::{
    envelope::{Envelope, Stored, WallClock, millis, refresh_early},
    flight::{ComputedFlights, FlightState, Leader, Role, SharedError},
    stats::{ComputedCounters, Outcome},
};
use crate::{
    Cache, CacheBuilder, CacheError, Clock, ComputeLock, ComputedLookup, ComputedWrite, LockAttempt, LockWait,
    PurgeStamp, Store, StoreError, SystemClock,
    telemetry::{self, Event, Telemetry},
};

/// What a [`CacheBuilder`] knows about computed values until the cache is built.
pub(crate) struct ComputeSetup {
    clock: Arc<dyn Clock>,
    random: Arc<dyn RandomSource>,
}

impl Default for ComputeSetup {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandom),
        }
    }
}

impl ComputeSetup {
    pub(crate) fn build(self) -> ComputeState {
        ComputeState {
            wall: WallClock::new(self.clock),
            random: self.random,
            flights: Arc::default(),
            counters: ComputedCounters::default(),
        }
    }
}

/// The computed-value state a cache and its clones share.
pub(crate) struct ComputeState {
    wall: WallClock,
    random: Arc<dyn RandomSource>,
    flights: Arc<ComputedFlights>,
    counters: ComputedCounters,
}

impl ComputeState {
    /// A purge of `tags` through this cache: computations that read them are not joined, and
    /// their locks are released (their values will be refused).
    pub(crate) async fn detach(&self, tags: &[String]) {
        for lock in self.flights.detach(tags) {
            lock.release().await;
        }
    }
}

impl CacheBuilder {
    /// The clock computed values' freshness and computation times are read from (default: the
    /// system clock). Tests pass a [`ManualClock`](crate::ManualClock), usually the one their
    /// [`MemoryStore`](crate::MemoryStore) reads, and advance it instead of sleeping.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.compute.clock = Arc::new(clock);
        self
    }

    /// The random numbers early refresh draws (default: [`SystemRandom`]). Tests pass a
    /// [`ManualRandom`] to decide when a read refreshes early.
    pub fn random(mut self, random: impl RandomSource) -> Self {
        self.compute.random = Arc::new(random);
        self
    }
}

impl Cache {
    /// The value stored under `key`, or `compute`'s result, stored for the next reads; see the
    /// [module docs](self) for dependencies, locks, early refresh and serve-stale.
    ///
    /// `compute` runs at most once per call, and only when no fresh value is stored and no
    /// other computation of `key` (in this process, or in another holding the store's lock)
    /// can answer. Its error is returned to every caller that waited for it, and never cached.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cache_core::{Cache, ComputeOptions};
    ///
    /// # async fn run(cache: &Cache) -> Result<(), std::sync::Arc<std::io::Error>> {
    /// let options = ComputeOptions::new(Duration::from_secs(60)).name("site_stats");
    /// let total: u64 = cache
    ///     .get_or_compute("site_stats", &options, || async {
    ///         // Read records through `cache` here: they become the value's dependencies.
    ///         Ok::<_, std::io::Error>(42)
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_or_compute<T, E, F, Fut>(
        &self,
        key: &str,
        options: &ComputeOptions,
        compute: F,
    ) -> Result<T, Arc<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Send + Sync + 'static,
    {
        let run = Run {
            cache: self,
            state: self.compute_state(),
            key,
            options,
            name: options.policy.name,
        };
        if !self.is_enabled() {
            run.count(Outcome::Bypass);
            telemetry::count(Event::Bypass, 1);
            tracing::debug!(name = run.name, key, "computed_bypass");
            return compute().await.map_err(Arc::new);
        }
        match run.plan::<T, E>().await {
            Plan::Answer(answer) => answer,
            Plan::Compute(job) => run.compute(job, compute).await,
        }
    }

    /// Removes every cached value tagged with any of `tags` (computed values, cached
    /// responses), and keeps computations that read them from answering later misses. Answers
    /// how many values were removed.
    pub async fn invalidate_tags<I, S>(&self, tags: I) -> Result<u64, CacheError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut tags: Vec<String> = tags.into_iter().map(Into::into).collect();
        if !self.is_enabled() || tags.is_empty() {
            return Ok(0);
        }
        tags.sort();
        tags.dedup();
        self.compute_state().detach(&tags).await;
        let removed = self.store().purge_tags(&tags).await?;
        tracing::debug!(tags = tags.len(), removed, "computed_tags_invalidated");
        Ok(removed)
    }

    /// Counts of what computed values did, by [name](ComputeOptions::name).
    pub fn computed_stats(&self) -> BTreeMap<&'static str, ComputedStats> {
        self.compute_state().counters.snapshot()
    }
}

/// One call of [`Cache::get_or_compute`].
struct Run<'a> {
    cache: &'a Cache,
    state: &'a ComputeState,
    key: &'a str,
    options: &'a ComputeOptions,
    name: &'static str,
}

/// What a call does after looking: answer, or compute.
enum Plan<T, E> {
    Answer(Result<T, Arc<E>>),
    Compute(Box<Job<T>>),
}

/// A computation to run.
struct Job<T> {
    /// The in-process flight it answers (none for a refresh, or a caller that could not use
    /// the flight it joined).
    leader: Option<Leader>,
    /// The computation's telemetry scope: its tags become the value's.
    reads: Telemetry,
    stamp: PurgeStamp,
    /// The value stored before, fresh (an early refresh) or not.
    previous: Option<Stored<T>>,
    lock: Option<Arc<HeldLock>>,
    early: bool,
}

impl<T> Job<T> {
    fn alone(stamp: PurgeStamp, previous: Option<Stored<T>>) -> Self {
        Self {
            leader: None,
            reads: Telemetry::new(),
            stamp,
            previous,
            lock: None,
            early: false,
        }
    }
}

impl Run<'_> {
    fn store(&self) -> &Arc<dyn Store> {
        self.cache.store()
    }

    fn count(&self, outcome: Outcome) {
        self.state.counters.count(self.name, outcome);
    }

    fn store_failed(&self, operation: &'static str, err: &StoreError) {
        self.count(Outcome::StoreError);
        telemetry::count(Event::StoreError, 1);
        let warnings = &self.cache.stats_handle().warnings;
        if let Some(held) = warnings.store.admit(std::time::Instant::now()) {
            tracing::warn!(name = self.name, key = self.key, operation, error = %err, held_back = held, "computed_store_error");
        }
    }

    /// A value answered from the store or another computation: whoever builds on it depends
    /// on what it depends on.
    fn answer<T>(&self, stored: Stored<T>) -> T {
        telemetry::record_tags(&stored.envelope.tags);
        stored.envelope.value
    }

    async fn plan<T, E>(&self) -> Plan<T, E>
    where
        T: DeserializeOwned,
        E: Send + Sync + 'static,
    {
        let policy = &self.options.policy;
        let refresh = telemetry::refresh_requested();
        let mut counted = false;
        loop {
            let (previous, stamp) = self.read::<T>().await;
            let now = self.state.wall.now_ms();
            let previous = match previous {
                Some(stored) if !refresh && stored.is_fresh(now) => {
                    let env = &stored.envelope;
                    let rand = self.state.random.unit();
                    if !refresh_early(now, env.expires_at_ms, env.delta_ms, policy.beta(), rand) {
                        return Plan::Answer(Ok(self.hit(stored)));
                    }
                    return self.early_refresh(stored, stamp).await;
                }
                other => other,
            };
            if !counted {
                counted = true;
                self.count(Outcome::Miss);
                telemetry::count(if refresh { Event::Bypass } else { Event::Miss }, 1);
                tracing::debug!(name = self.name, key = self.key, refresh, "computed_miss");
            }
            if refresh {
                return Plan::Compute(Box::new(Job::alone(stamp, previous)));
            }
            let reads = Telemetry::new();
            let leader = match self.state.flights.join_or_lead(self.key, &reads) {
                Role::Lead(leader) => leader,
                Role::Join(rx) => {
                    self.count(Outcome::Coalesced);
                    telemetry::count(Event::Coalesced, 1);
                    tracing::debug!(name = self.name, key = self.key, "computed_coalesced");
                    match flight::outcome(rx).await {
                        FlightState::Value(bytes) => match Stored::<T>::decode(bytes) {
                            Ok(stored) => return Plan::Answer(Ok(self.answer(stored))),
                            Err(err) => {
                                // Another call site stores another type under this key.
                                tracing::warn!(name = self.name, key = self.key, error = %err, "computed_unreadable");
                                return Plan::Compute(Box::new(Job::alone(stamp, previous)));
                            }
                        },
                        FlightState::Failed(err) => match err.downcast::<E>() {
                            Ok(err) => return Plan::Answer(Err(err)),
                            Err(_) => return Plan::Compute(Box::new(Job::alone(stamp, previous))),
                        },
                        FlightState::Abandoned | FlightState::Running => continue,
                    }
                }
            };
            let lock = if policy.lock {
                match self.lock_or_wait::<T>(&leader).await {
                    Locked::Owner(lock) => Some(lock),
                    Locked::Nobody => None,
                    Locked::Answered(stored) => {
                        leader.finish(FlightState::Value(stored.bytes.clone()));
                        return Plan::Answer(Ok(self.answer(stored)));
                    }
                }
            } else {
                None
            };
            return Plan::Compute(Box::new(Job {
                leader: Some(leader),
                reads,
                stamp,
                previous,
                lock,
                early: false,
            }));
        }
    }

    fn hit<T>(&self, stored: Stored<T>) -> T {
        self.count(Outcome::Hit);
        telemetry::count(Event::Hit, 1);
        tracing::debug!(name = self.name, key = self.key, "computed_hit");
        self.answer(stored)
    }

    /// A fresh value XFetch chose to recompute: by this caller, unless a computation of it
    /// already runs here or elsewhere (then the value is answered as it is).
    async fn early_refresh<T, E>(&self, stored: Stored<T>, stamp: PurgeStamp) -> Plan<T, E> {
        let reads = Telemetry::new();
        let Some(leader) = self.state.flights.try_lead(self.key, &reads) else {
            return Plan::Answer(Ok(self.hit(stored)));
        };
        let mut lock = None;
        if self.options.policy.lock {
            match self.store().lock_computed(self.key, self.options.policy.lock_ttl).await {
                Ok(LockAttempt::Acquired(l)) => lock = Some(self.held(&leader, l)),
                Ok(LockAttempt::Held) => {
                    leader.finish(FlightState::Abandoned);
                    return Plan::Answer(Ok(self.hit(stored)));
                }
                Err(err) => self.store_failed("lock_computed", &err),
            }
        }
        self.count(Outcome::EarlyRefresh);
        tracing::debug!(
            name = self.name,
            key = self.key,
            expires_at_ms = stored.envelope.expires_at_ms,
            delta_ms = stored.envelope.delta_ms,
            "computed_early_refresh"
        );
        Plan::Compute(Box::new(Job {
            leader: Some(leader),
            reads,
            stamp,
            previous: Some(stored),
            lock,
            early: true,
        }))
    }

    /// Reads the stored value; an unreadable one (another type, an older shape) is a miss.
    async fn read<T: DeserializeOwned>(&self) -> (Option<Stored<T>>, PurgeStamp) {
        match self.store().get_computed(self.key).await {
            Ok(ComputedLookup { value, stamp }) => {
                let stored = value.and_then(|bytes| match Stored::decode(bytes) {
                    Ok(stored) => Some(stored),
                    Err(err) => {
                        tracing::warn!(name = self.name, key = self.key, error = %err, "computed_unreadable");
                        None
                    }
                });
                (stored, stamp)
            }
            Err(err) => {
                self.store_failed("get_computed", &err);
                (None, PurgeStamp(0))
            }
        }
    }

    /// Takes the store's lock, or waits for its holder's value.
    async fn lock_or_wait<T: DeserializeOwned>(&self, leader: &Leader) -> Locked<T> {
        let policy = &self.options.policy;
        let store = self.store();
        match store.lock_computed(self.key, policy.lock_ttl).await {
            Ok(LockAttempt::Acquired(lock)) => return Locked::Owner(self.held(leader, lock)),
            Ok(LockAttempt::Held) => {}
            Err(err) => {
                self.store_failed("lock_computed", &err);
                return Locked::Nobody;
            }
        }
        self.count(Outcome::LockWait);
        tracing::debug!(
            name = self.name,
            key = self.key,
            bound_ms = millis(policy.lock_wait),
            "computed_lock_wait"
        );
        match store.wait_computed(self.key, policy.lock_wait).await {
            Ok(LockWait::Value(bytes)) => match Stored::decode(bytes) {
                Ok(stored) => Locked::Answered(stored),
                Err(err) => {
                    tracing::warn!(name = self.name, key = self.key, error = %err, "computed_unreadable");
                    Locked::Nobody
                }
            },
            Ok(LockWait::Released) => {
                // Its holder failed (or its value was refused or purged): compute, under the
                // lock if it is free, so that later misses wait for this computation.
                tracing::debug!(name = self.name, key = self.key, "computed_lock_released");
                match store.lock_computed(self.key, policy.lock_ttl).await {
                    Ok(LockAttempt::Acquired(lock)) => Locked::Owner(self.held(leader, lock)),
                    Ok(LockAttempt::Held) => Locked::Nobody,
                    Err(err) => {
                        self.store_failed("lock_computed", &err);
                        Locked::Nobody
                    }
                }
            }
            Ok(LockWait::TimedOut) => {
                self.count(Outcome::LockWaitTimeout);
                tracing::warn!(
                    name = self.name,
                    key = self.key,
                    bound_ms = millis(policy.lock_wait),
                    "computed_lock_wait_timeout"
                );
                Locked::Nobody
            }
            Err(err) => {
                self.store_failed("wait_computed", &err);
                Locked::Nobody
            }
        }
    }

    /// A lock taken for `leader`'s computation, released early if a purge detaches it.
    fn held(&self, leader: &Leader, lock: ComputeLock) -> Arc<HeldLock> {
        let held = Arc::new(HeldLock {
            store: Arc::clone(self.store()),
            key: self.key.to_owned(),
            lock: Mutex::new(Some(lock)),
        });
        leader.holds(Arc::clone(&held));
        held
    }

    /// Runs the computation, stores its value, answers it (or on failure a fallback).
    async fn compute<T, E, F, Fut>(&self, job: Box<Job<T>>, compute: F) -> Result<T, Arc<E>>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Send + Sync + 'static,
    {
        let Job {
            leader,
            reads,
            stamp,
            previous,
            mut lock,
            early,
        } = *job;
        let wall = &self.state.wall;
        let started = wall.instant();
        let outcome = telemetry::scope(reads.clone(), async {
            telemetry::record_tags(&self.options.tags);
            compute().await
        })
        .await;
        let took = wall.instant().saturating_duration_since(started);
        self.state.counters.computed(self.name, took);
        let err = match outcome {
            Ok(value) => {
                let now = wall.now_ms();
                let ttl = self.ttl();
                let envelope = Envelope {
                    value,
                    computed_at_ms: now,
                    expires_at_ms: now.saturating_add(millis(ttl)),
                    delta_ms: millis(took),
                    tags: reads.snapshot().tags,
                };
                match serde_json::to_vec(&envelope) {
                    Ok(bytes) => {
                        let bytes = Bytes::from(bytes);
                        self.put(bytes.clone(), ttl, &envelope, stamp, lock.take().and_then(|l| l.take()))
                            .await;
                        if let Some(leader) = leader {
                            leader.finish(FlightState::Value(bytes));
                        }
                    }
                    Err(err) => {
                        tracing::warn!(name = self.name, key = self.key, error = %err, "computed_unserializable");
                        self.release(lock.take()).await;
                    }
                }
                return Ok(envelope.value);
            }
            Err(err) => err,
        };
        self.count(Outcome::Error);
        tracing::warn!(name = self.name, key = self.key, early, "computed_error");
        self.release(lock.take()).await;
        let now = wall.now_ms();
        if let Some(previous) = previous {
            if early && previous.is_fresh(now) {
                // Still fresh: answer it; the next reads try again.
                tracing::warn!(name = self.name, key = self.key, "computed_early_refresh_failed");
                return Ok(self.answer(previous));
            }
            if let Some(bound) = self.options.policy.serve_stale
                && previous.within_stale_bound(now, bound)
            {
                self.count(Outcome::StaleServed);
                tracing::warn!(
                    name = self.name,
                    key = self.key,
                    expired_ms_ago = now.saturating_sub(previous.envelope.expires_at_ms),
                    "computed_served_stale"
                );
                if let Some(leader) = leader {
                    leader.finish(FlightState::Value(previous.bytes.clone()));
                }
                return Ok(self.answer(previous));
            }
        }
        let err = Arc::new(err);
        if let Some(leader) = leader {
            leader.finish(FlightState::Failed(Arc::clone(&err) as SharedError));
        }
        Err(err)
    }

    /// Stores a computed value for its TTL plus the serve-stale bound, releasing the lock.
    async fn put<T>(
        &self,
        bytes: Bytes,
        ttl: Duration,
        envelope: &Envelope<T>,
        stamp: PurgeStamp,
        lock: Option<ComputeLock>,
    ) {
        let keep = ttl.saturating_add(self.options.policy.serve_stale.unwrap_or_default());
        let write = ComputedWrite {
            value: bytes,
            ttl: keep,
            tags: envelope.tags.clone(),
            stamp,
            lock,
        };
        match self.store().put_computed(self.key, &write).await {
            Ok(true) => tracing::debug!(
                name = self.name,
                key = self.key,
                tags = write.tags.len(),
                "computed_stored"
            ),
            Ok(false) => {
                self.count(Outcome::Refused);
                tracing::debug!(name = self.name, key = self.key, "computed_refused");
            }
            Err(err) => {
                self.store_failed("put_computed", &err);
                if let Some(lock) = lock
                    && let Err(err) = self.store().unlock_computed(self.key, lock).await
                {
                    self.store_failed("unlock_computed", &err);
                }
            }
        }
    }

    async fn release(&self, lock: Option<Arc<HeldLock>>) {
        if let Some(lock) = lock.and_then(|l| l.take())
            && let Err(err) = self.store().unlock_computed(self.key, lock).await
        {
            self.store_failed("unlock_computed", &err);
        }
    }

    /// The TTL, jittered by the call site's jitter or the cache's.
    fn ttl(&self) -> Duration {
        let policy = &self.options.policy;
        match policy.jitter() {
            None => self.cache.jittered(policy.ttl),
            Some(0.0) => policy.ttl,
            Some(jitter) => {
                let factor = 1.0 + rand::rng().random_range(-jitter..=jitter);
                Duration::try_from_secs_f64(policy.ttl.as_secs_f64() * factor).unwrap_or(policy.ttl)
            }
        }
    }
}

/// What taking the lock came to.
enum Locked<T> {
    /// This caller computes under the lock.
    Owner(Arc<HeldLock>),
    /// This caller computes without it (the wait failed or ended without a value).
    Nobody,
    /// The holder's value arrived.
    Answered(Stored<T>),
}

/// A lock this process holds, released once: by the write of the value, by the unlock of a
/// failed computation, by a purge that detached the computation (its value will be refused:
/// the next one need not wait for it), or, when the computation is dropped half-way (its
/// caller went away), in the background, so that waiters do not wait out its TTL.
pub(crate) struct HeldLock {
    store: Arc<dyn Store>,
    key: String,
    lock: Mutex<Option<ComputeLock>>,
}

impl HeldLock {
    /// The lock, unless it was released already.
    fn take(&self) -> Option<ComputeLock> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn release_in_background(&self) {
        let Some(lock) = self.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = Arc::clone(&self.store);
            let key = self.key.clone();
            runtime.spawn(async move {
                if let Err(err) = store.unlock_computed(&key, lock).await {
                    tracing::warn!(key, operation = "unlock_computed", error = %err, "computed_store_error");
                }
            });
        }
    }
}

impl HeldLock {
    /// Releases the lock now, unless it was released already.
    async fn release(&self) {
        if let Some(lock) = self.take()
            && let Err(err) = self.store.unlock_computed(&self.key, lock).await
        {
            tracing::warn!(key = self.key, operation = "unlock_computed", error = %err, "computed_store_error");
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.release_in_background();
    }
}
