//! Computed values: aggregates and other results worth caching that are not records, cached
//! with the same safety as records and invalidated by what they read.
//!
//! [`Cache::get_or_compute`] (or the typed [`Computed`]) answers a stored value or runs the
//! computation once and stores its result:
//! - **Dependencies.** The computation runs in its own [dependency scope](crate::dependencies):
//!   the records and index results it reads through the cache become the value's tags, so an
//!   upsert, invalidation or delete of one of them, or a change to one of those index results,
//!   removes the value. Explicit tags ([`ComputeOptions::tags`]) are purged with
//!   [`Cache::invalidate_tags`]. A value computed while one of its tags was purged is not
//!   stored ([`Store::put_computed`](crate::store::Store::put_computed)).
//! - **Stampedes.** In a process, one computation per key at a time; across processes, the
//!   store's lock ([`Store::lock_computed`](crate::store::Store::lock_computed)) lets one instance compute while the others wait
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
//!
//! [`Cache::compute_with`] is the same machinery one level down, for a caller that decides per
//! result whether it is stored ([`Computation`]), refuses some stored values, and counts and
//! logs in its own terms ([`Observer`]): the HTTP response cache stands on it, so a response
//! has the envelope, the purge stamps and the stampede protection of a computed value.

mod computed;
mod envelope;
mod flight;
mod observe;
mod options;
mod random;
mod run;
mod stats;

use std::{collections::BTreeMap, convert::Infallible, future::Future, sync::Arc};

use serde::{Serialize, de::DeserializeOwned};

pub use self::{
    computed::Computed,
    observe::{Observer, Step},
    options::{ComputeOptions, DEFAULT_BETA, DEFAULT_COMPUTE_TTL, DEFAULT_LOCK_TTL, DEFAULT_LOCK_WAIT, UNNAMED},
    random::{ManualRandom, RandomSource, SystemRandom},
    stats::{COMPUTED_DURATION, COMPUTED_TOTAL, ComputedStats},
};
use self::{
    envelope::WallClock,
    flight::ComputedFlights,
    observe::Tally,
    run::{HeldLock, Plan, Run},
    stats::ComputedCounters,
};
use crate::{
    Cache, CacheBuilder, CacheError,
    clock::{Clock, SystemClock},
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
    /// system clock). Tests pass a [`ManualClock`](crate::clock::ManualClock), usually the one their
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
        let tally = Tally {
            cache: self,
            name: options.policy.name,
            key,
        };
        let store = || async { compute().await.map(Computation::<T, Infallible>::Store) };
        match self.compute_with(key, options, &tally, &|_| true, store).await? {
            Fetched::Value(fetched) => Ok(fetched.value),
            Fetched::Answer(never) => match never {},
        }
    }

    /// The machinery under [`Cache::get_or_compute`], for callers that decide per result
    /// whether it is stored, refuse some stored values, and count and log in their own terms
    /// (the HTTP response cache): the value stored under `key` (when `accept` takes it), or
    /// `compute`'s result.
    ///
    /// - `compute` answers [`Computation::Store`] for a value to store and to share with the
    ///   calls waiting for it, or [`Computation::Answer`] for an answer to this call alone:
    ///   nothing is stored, and each waiting call then runs its own computation. Its error is
    ///   shared with the waiting calls (put an error in an `Answer` to keep it to this call).
    /// - `accept` sees every value read, from the store or from another computation; one it
    ///   refuses is a miss for this call (and a value it computes replaces it).
    /// - `observer` is told every [`Step`]: nothing here counts or logs on its own.
    ///
    /// Dependencies, stampede protection, early refresh and serve-stale are those of the
    /// [module docs](self).
    pub async fn compute_with<T, A, E, F, Fut>(
        &self,
        key: &str,
        options: &ComputeOptions,
        observer: &dyn Observer,
        accept: &(dyn Fn(&T) -> bool + Sync),
        compute: F,
    ) -> Result<Fetched<T, A>, Arc<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Computation<T, A>, E>>,
        E: Send + Sync + 'static,
    {
        self.compute_via(key, options, observer, accept, None, compute).await
    }

    /// [`Cache::compute_with`] for a value that can be cloned: a [near
    /// cache](crate::near::NearCache) keeps it decoded beside its stored form, and a hit in it
    /// answers a clone instead of decoding the stored form again (the HTTP response cache's
    /// path). Without a near cache the two are the same.
    pub async fn compute_cloned_with<T, A, E, F, Fut>(
        &self,
        key: &str,
        options: &ComputeOptions,
        observer: &dyn Observer,
        accept: &(dyn Fn(&T) -> bool + Sync),
        compute: F,
    ) -> Result<Fetched<T, A>, Arc<E>>
    where
        T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Computation<T, A>, E>>,
        E: Send + Sync + 'static,
    {
        self.compute_via(key, options, observer, accept, Some(&run::Cloning), compute)
            .await
    }

    async fn compute_via<T, A, E, F, Fut>(
        &self,
        key: &str,
        options: &ComputeOptions,
        observer: &dyn Observer,
        accept: &(dyn Fn(&T) -> bool + Sync),
        copier: Option<&dyn run::Copier<T>>,
        compute: F,
    ) -> Result<Fetched<T, A>, Arc<E>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Computation<T, A>, E>>,
        E: Send + Sync + 'static,
    {
        let state = self.compute_state();
        if !self.is_enabled() {
            observer.observe(Step::Bypass);
            return match compute().await.map_err(Arc::new)? {
                Computation::Store(value) => {
                    let now = state.wall.now_ms();
                    Ok(Fetched::Value(FetchedValue {
                        value,
                        source: ValueSource::Computed,
                        computed_at_ms: now,
                        expires_at_ms: now,
                        answered_at_ms: now,
                    }))
                }
                Computation::Answer(answer) => Ok(Fetched::Answer(answer)),
            };
        }
        let run = Run {
            cache: self,
            state,
            key,
            options,
            observer,
            accept,
            copier,
        };
        match run.plan::<E>().await {
            Plan::Answer(answer) => answer.map(Fetched::Value),
            Plan::Compute(job) => run.compute(job, compute).await,
        }
    }

    /// How many calls in this process wait for a computation in flight (computed values and
    /// cached responses): for tests and diagnostics.
    pub fn computation_waiters(&self) -> usize {
        self.compute_state().flights.waiters()
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

/// What a computation run by [`Cache::compute_with`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Computation<T, A> {
    /// A value to store, answered to this call and shared with the calls waiting for it.
    Store(T),
    /// An answer for this call alone: nothing is stored, nothing is shared; the calls waiting
    /// for this computation run their own.
    Answer(A),
}

/// What [`Cache::compute_with`] answers: a value, or the computation's own answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched<T, A> {
    /// A stored value, another computation's, or this call's.
    Value(FetchedValue<T>),
    /// This call's computation answered [`Computation::Answer`].
    Answer(A),
}

/// A value answered by [`Cache::compute_with`], with where it came from and its times (Unix
/// milliseconds, read from the cache's [clock](CacheBuilder::clock)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchedValue<T> {
    /// The value.
    pub value: T,
    /// Where it came from.
    pub source: ValueSource,
    /// When it was computed.
    pub computed_at_ms: u64,
    /// When it stops being fresh.
    pub expires_at_ms: u64,
    /// When it was answered: `answered_at_ms - computed_at_ms` is its age.
    pub answered_at_ms: u64,
}

/// Where a [`FetchedValue`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueSource {
    /// The store: a hit (or, when the computation failed, a fallback to the value stored
    /// before).
    Stored,
    /// Another call's computation, waited for in this process or, through the store's lock,
    /// in another instance.
    Shared,
    /// This call's computation.
    Computed,
}
