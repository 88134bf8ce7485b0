//! One call of [`Cache::compute_with`]: look up, join the computation in flight or lead one,
//! take the store's lock or wait for its holder, compute, store, answer.

use std::{
    any::Any,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use rand::Rng;
use serde::{Serialize, de::DeserializeOwned};

use super::{
    Computation, ComputeOptions, ComputeState, Fetched, FetchedValue, ValueSource,
    envelope::{Envelope, Stored, millis, refresh_early},
    flight::{self, FlightState, Leader, Role, SharedError},
    observe::{Observer, Step},
};
use crate::{
    Cache,
    dependencies::{self, DependencyScope},
    near::Near,
    store::{ComputeLock, ComputedLookup, ComputedWrite, LockAttempt, LockWait, PurgeStamp, Store, StoreError},
};

/// One call of [`Cache::compute_with`].
pub(super) struct Run<'a, T> {
    pub(super) cache: &'a Cache,
    pub(super) state: &'a ComputeState,
    pub(super) key: &'a str,
    pub(super) options: &'a ComputeOptions,
    pub(super) observer: &'a dyn Observer,
    /// Whether a value read (stored, or shared by another computation) may answer this call.
    pub(super) accept: &'a (dyn Fn(&T) -> bool + Sync),
    /// How a near cache keeps the value decoded and copies it out; without one it keeps the
    /// stored form and decodes it on each hit.
    pub(super) copier: Option<&'a dyn Copier<T>>,
}

/// How a near cache keeps a computed value decoded, and copies it out
/// ([`Cache::compute_cloned_with`]).
pub(super) trait Copier<T>: Sync {
    /// The decoded envelope to keep beside the stored form.
    fn keep(&self, envelope: &Envelope<T>) -> Box<dyn Any + Send + Sync>;
    /// The envelope [`Copier::keep`] made, if `kept` is one of this type.
    fn kept<'k>(&self, kept: &'k (dyn Any + Send + Sync)) -> Option<&'k Envelope<T>>;
    /// A copy of a value, for a caller.
    fn copy(&self, value: &T) -> T;
}

/// The [`Copier`] of values that are `Clone`.
pub(super) struct Cloning;

impl<T: Clone + Send + Sync + 'static> Copier<T> for Cloning {
    fn keep(&self, envelope: &Envelope<T>) -> Box<dyn Any + Send + Sync> {
        Box::new(envelope.clone())
    }

    fn kept<'k>(&self, kept: &'k (dyn Any + Send + Sync)) -> Option<&'k Envelope<T>> {
        kept.downcast_ref()
    }

    fn copy(&self, value: &T) -> T {
        value.clone()
    }
}

/// What a call does after looking: answer, or compute.
pub(super) enum Plan<T, E> {
    Answer(Result<FetchedValue<T>, Arc<E>>),
    Compute(Box<Job<T>>),
}

/// A computation to run.
pub(super) struct Job<T> {
    /// The in-process flight it answers (none for a refresh, or a caller that could not use
    /// the flight it joined).
    leader: Option<Leader>,
    /// The computation's dependency scope: its tags become the value's.
    reads: DependencyScope,
    stamp: PurgeStamp,
    /// The value stored before, fresh (an early refresh) or not.
    previous: Option<Stored<T>>,
    lock: Option<Arc<HeldLock>>,
    early: bool,
}

impl<T> Job<T> {
    fn alone(stamp: PurgeStamp, previous: Option<Stored<T>>) -> Box<Self> {
        Box::new(Self {
            leader: None,
            reads: DependencyScope::new(),
            stamp,
            previous,
            lock: None,
            early: false,
        })
    }
}

impl<T: Serialize + DeserializeOwned> Run<'_, T> {
    fn store(&self) -> &Arc<dyn Store> {
        self.cache.store()
    }

    fn store_failed(&self, operation: &'static str, error: &StoreError) {
        self.observer.observe(Step::StoreError { operation, error });
    }

    fn decode(&self, bytes: Bytes) -> Option<Stored<T>> {
        match Stored::decode(bytes) {
            Ok(stored) => Some(stored),
            Err(error) => {
                // Another call site stores another type under this key, or an older shape.
                self.observer.observe(Step::Unreadable { error: &error });
                None
            }
        }
    }

    /// A value read (stored, or another computation's) that this caller may answer.
    fn acceptable(&self, bytes: Bytes) -> Option<Stored<T>> {
        self.decode(bytes)
            .filter(|stored| (self.accept)(&stored.envelope.value))
    }

    /// A value answered from the store or another computation: whoever builds on it depends
    /// on what it depends on.
    fn answer(&self, stored: Stored<T>, source: ValueSource) -> FetchedValue<T> {
        let Envelope {
            value,
            computed_at_ms,
            expires_at_ms,
            tags,
            ..
        } = stored.envelope;
        self.answered(value, &tags, (computed_at_ms, expires_at_ms), source)
    }

    /// [`Run::answer`] of `value`, stored with `tags` at `computed_at_ms` until
    /// `expires_at_ms`.
    fn answered(
        &self,
        value: T,
        tags: &[String],
        (computed_at_ms, expires_at_ms): (u64, u64),
        source: ValueSource,
    ) -> FetchedValue<T> {
        dependencies::record_tags(tags);
        FetchedValue {
            value,
            source,
            computed_at_ms,
            expires_at_ms,
            answered_at_ms: self.state.wall.now_ms(),
        }
    }

    pub(super) async fn plan<E>(&self) -> Plan<T, E>
    where
        E: Send + Sync + 'static,
    {
        let policy = &self.options.policy;
        let refresh = dependencies::refresh_requested();
        let mut looked = None;
        if !refresh {
            match self.quick_read().await {
                Quick::Hit(stored) => return Plan::Answer(Ok(self.hit(stored))),
                Quick::Copied(fetched) => {
                    self.observer.observe(Step::Hit);
                    return Plan::Answer(Ok(fetched));
                }
                Quick::Early(stored) => {
                    let stamp = self.stamp().await;
                    return self.early_refresh(stored, stamp).await;
                }
                Quick::Failed => looked = Some((None, PurgeStamp(0))),
                Quick::Look => {}
            }
        }
        let mut counted = false;
        loop {
            let (previous, stamp) = match looked.take() {
                Some(looked) => looked,
                None => self.read().await,
            };
            let previous = match previous {
                Some(stored) if !refresh => match self.usable(&stored.envelope) {
                    Some(Fresh::Answer) => return Plan::Answer(Ok(self.hit(stored))),
                    Some(Fresh::RefreshEarly) => return self.early_refresh(stored, stamp).await,
                    None => Some(stored),
                },
                other => other,
            };
            if !counted {
                counted = true;
                self.observer.observe(Step::Miss { refresh });
            }
            if refresh {
                return Plan::Compute(Job::alone(stamp, previous));
            }
            let reads = DependencyScope::new();
            let leader = match self.state.flights.join_or_lead(self.key, &reads) {
                Role::Lead(leader) => leader,
                Role::Join(rx) => {
                    self.observer.observe(Step::Coalesced);
                    match flight::outcome(rx).await {
                        FlightState::Value(bytes) => match self.acceptable(bytes) {
                            Some(stored) => return Plan::Answer(Ok(self.answer(stored, ValueSource::Shared))),
                            None => return Plan::Compute(Job::alone(stamp, previous)),
                        },
                        FlightState::Failed(err) => match err.downcast::<E>() {
                            Ok(err) => return Plan::Answer(Err(err)),
                            Err(_) => return Plan::Compute(Job::alone(stamp, previous)),
                        },
                        // The leader's answer was its own: each waiter computes its own, side
                        // by side rather than one after another.
                        FlightState::Unshared => return Plan::Compute(Job::alone(stamp, previous)),
                        FlightState::Abandoned | FlightState::Running => continue,
                    }
                }
            };
            let lock = if policy.lock {
                match self.lock_or_wait(&leader).await {
                    Locked::Owner(lock) => Some(lock),
                    Locked::Nobody => None,
                    Locked::Answered(stored) => {
                        leader.finish(FlightState::Value(stored.bytes.clone()));
                        return Plan::Answer(Ok(self.answer(stored, ValueSource::Shared)));
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

    fn hit(&self, stored: Stored<T>) -> FetchedValue<T> {
        self.observer.observe(Step::Hit);
        self.answer(stored, ValueSource::Stored)
    }

    /// A fresh value XFetch chose to recompute: by this caller, unless a computation of it
    /// already runs here or elsewhere (then the value is answered as it is).
    async fn early_refresh<E>(&self, stored: Stored<T>, stamp: PurgeStamp) -> Plan<T, E> {
        let reads = DependencyScope::new();
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
        self.observer.observe(Step::EarlyRefresh {
            expires_at_ms: stored.envelope.expires_at_ms,
            delta_ms: stored.envelope.delta_ms,
        });
        Plan::Compute(Box::new(Job {
            leader: Some(leader),
            reads,
            stamp,
            previous: Some(stored),
            lock,
            early: true,
        }))
    }

    /// A hit needs no stamp (only a computation is stored with one), so the first look is a
    /// plain read of the value ([`Store::get_value`]: a `GET` on Redis, where the stamped
    /// lookup is a script costing several times as much on the server), or the near cache's
    /// copy of what such a read answered. What it cannot answer (missing, stale, refused,
    /// unreadable) is looked up again with a stamp, which reports it.
    async fn quick_read(&self) -> Quick<T> {
        let near = self.cache.near_cache();
        let stamp = match near {
            Some(near) => match near.value(self.key, |bytes, decoded| Some(self.judge_near(bytes, decoded))) {
                Near::Hit(quick) => {
                    near.count_value(!matches!(quick, Quick::Look));
                    return quick;
                }
                Near::Miss(stamp) => {
                    near.count_value(false);
                    Some(stamp)
                }
                Near::Off => None,
            },
            None => None,
        };
        let bytes = match self.store().get_value(self.key).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Quick::Look,
            Err(err) => {
                self.store_failed("get_value", &err);
                return Quick::Failed;
            }
        };
        let Ok(stored) = Stored::<T>::decode(bytes) else {
            return Quick::Look;
        };
        if let (Some(near), Some(stamp)) = (near, stamp)
            && stored.is_fresh(self.state.wall.now_ms())
        {
            let decoded = || self.copier.map(|copier| copier.keep(&stored.envelope));
            near.keep_value(stamp, self.key, &stored.bytes, decoded);
        }
        self.judge(stored)
    }

    /// What the first look makes of the near cache's entry: its decoded envelope when it keeps
    /// one of this type (copied out only when it answers), else its stored form, decoded.
    fn judge_near(&self, bytes: &Bytes, decoded: Option<&(dyn Any + Send + Sync)>) -> Quick<T> {
        if let Some((copier, envelope)) = self.copier.and_then(|copier| Some((copier, copier.kept(decoded?)?))) {
            return match self.usable(envelope) {
                Some(Fresh::Answer) => Quick::Copied(self.answered(
                    copier.copy(&envelope.value),
                    &envelope.tags,
                    (envelope.computed_at_ms, envelope.expires_at_ms),
                    ValueSource::Stored,
                )),
                Some(Fresh::RefreshEarly) => match Stored::decode(bytes.clone()) {
                    Ok(stored) => Quick::Early(stored),
                    Err(_) => Quick::Look,
                },
                None => Quick::Look,
            };
        }
        match Stored::decode(bytes.clone()) {
            Ok(stored) => self.judge(stored),
            Err(_) => Quick::Look,
        }
    }

    /// What the first look makes of a stored value.
    fn judge(&self, stored: Stored<T>) -> Quick<T> {
        match self.usable(&stored.envelope) {
            Some(Fresh::Answer) => Quick::Hit(stored),
            Some(Fresh::RefreshEarly) => Quick::Early(stored),
            None => Quick::Look,
        }
    }

    /// What a stored value is to this call: `None` when it is stale or the caller refuses it;
    /// else answered, or recomputed early as XFetch picks.
    fn usable(&self, envelope: &Envelope<T>) -> Option<Fresh> {
        let now = self.state.wall.now_ms();
        if !envelope.is_fresh(now) || !(self.accept)(&envelope.value) {
            return None;
        }
        let rand = self.state.random.unit();
        Some(
            match refresh_early(
                now,
                envelope.expires_at_ms,
                envelope.delta_ms,
                self.options.policy.beta(),
                rand,
            ) {
                true => Fresh::RefreshEarly,
                false => Fresh::Answer,
            },
        )
    }

    /// The stamp of a computation that starts now: taken after the value was read, which is
    /// still before the computation reads anything, so a purge it races is still seen.
    async fn stamp(&self) -> PurgeStamp {
        match self.store().get_computed(self.key).await {
            Ok(lookup) => lookup.stamp,
            Err(err) => {
                self.store_failed("get_computed", &err);
                PurgeStamp(0)
            }
        }
    }

    /// Reads the stored value; an unreadable one (another type, an older shape) is a miss.
    async fn read(&self) -> (Option<Stored<T>>, PurgeStamp) {
        match self.store().get_computed(self.key).await {
            Ok(ComputedLookup { value, stamp }) => (value.and_then(|bytes| self.decode(bytes)), stamp),
            Err(err) => {
                self.store_failed("get_computed", &err);
                (None, PurgeStamp(0))
            }
        }
    }

    /// Takes the store's lock, or waits for its holder's value.
    async fn lock_or_wait(&self, leader: &Leader) -> Locked<T> {
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
        self.observer.observe(Step::LockWait {
            bound: policy.lock_wait,
        });
        match store.wait_computed(self.key, policy.lock_wait).await {
            Ok(LockWait::Value(bytes)) => match self.acceptable(bytes) {
                Some(stored) => Locked::Answered(stored),
                None => Locked::Nobody,
            },
            Ok(LockWait::Released) => {
                // Its holder failed (or its value was refused or purged): compute, under the
                // lock if it is free, so that later misses wait for this computation.
                self.observer.observe(Step::LockReleased);
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
                self.observer.observe(Step::LockWaitTimeout {
                    bound: policy.lock_wait,
                });
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
    pub(super) async fn compute<A, E, F, Fut>(&self, job: Box<Job<T>>, compute: F) -> Result<Fetched<T, A>, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Computation<T, A>, E>>,
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
        let outcome = dependencies::scope(reads.clone(), async {
            dependencies::record_tags(&self.options.tags);
            compute().await
        })
        .await;
        let took = wall.instant().saturating_duration_since(started);
        self.observer.observe(Step::Computed { took });
        let err = match outcome {
            Ok(Computation::Store(value)) => {
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
                    Err(error) => {
                        self.observer.observe(Step::Unserializable { error: &error });
                        self.release(lock.take()).await;
                    }
                }
                return Ok(Fetched::Value(FetchedValue {
                    value: envelope.value,
                    source: ValueSource::Computed,
                    computed_at_ms: envelope.computed_at_ms,
                    expires_at_ms: envelope.expires_at_ms,
                    answered_at_ms: now,
                }));
            }
            Ok(Computation::Answer(answer)) => {
                self.release(lock.take()).await;
                if let Some(leader) = leader {
                    leader.finish(FlightState::Unshared);
                }
                return Ok(Fetched::Answer(answer));
            }
            Err(err) => err,
        };
        self.observer.observe(Step::Error { early });
        self.release(lock.take()).await;
        let now = wall.now_ms();
        if let Some(previous) = previous {
            if early && previous.is_fresh(now) {
                // Still fresh: answer it; the next reads try again.
                self.observer.observe(Step::EarlyRefreshFailed);
                return Ok(Fetched::Value(self.answer(previous, ValueSource::Stored)));
            }
            if let Some(bound) = self.options.policy.serve_stale
                && previous.within_stale_bound(now, bound)
            {
                self.observer.observe(Step::ServedStale {
                    expired_ms_ago: now.saturating_sub(previous.envelope.expires_at_ms),
                });
                if let Some(leader) = leader {
                    leader.finish(FlightState::Value(previous.bytes.clone()));
                }
                return Ok(Fetched::Value(self.answer(previous, ValueSource::Stored)));
            }
        }
        let err = Arc::new(err);
        if let Some(leader) = leader {
            leader.finish(FlightState::Failed(Arc::clone(&err) as SharedError));
        }
        Err(err)
    }

    /// Stores a computed value for its TTL plus the serve-stale bound, releasing the lock.
    async fn put(
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
            Ok(true) => self.observer.observe(Step::Stored { tags: write.tags.len() }),
            Ok(false) => self.observer.observe(Step::Refused),
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

/// What a fresh value the caller accepts is to this call ([`Run::usable`]).
enum Fresh {
    /// Answered as it is.
    Answer,
    /// Answered by a recomputation XFetch chose to start early.
    RefreshEarly,
}

/// What the first, unstamped read of a value came to.
enum Quick<T> {
    /// A fresh value the caller accepts.
    Hit(Stored<T>),
    /// A fresh value the caller accepts, copied from the near cache's decoded one.
    Copied(FetchedValue<T>),
    /// A fresh value XFetch chose to recompute.
    Early(Stored<T>),
    /// The store failed: computed without a stamp (its value is refused), as when the
    /// stamped lookup fails.
    Failed,
    /// Nothing this read can answer: the stamped lookup decides.
    Look,
}

/// What taking the lock came to.
enum Locked<T> {
    /// This caller computes under the lock.
    Owner(Arc<HeldLock>),
    /// This caller computes without it (the wait failed or ended without a value it can use).
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

    /// Releases the lock now, unless it was released already.
    pub(super) async fn release(&self) {
        if let Some(lock) = self.take()
            && let Err(err) = self.store.unlock_computed(&self.key, lock).await
        {
            tracing::warn!(key = self.key, operation = "unlock_computed", error = %err, "computed_store_error");
        }
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

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.release_in_background();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        convert::Infallible,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;
    use crate::{MemoryStore, compute::Tally, testing::MemoryOrigin};

    fn cache() -> Cache {
        Cache::builder(MemoryStore::new(), MemoryOrigin::new()).build().unwrap()
    }

    async fn until_waiting(cache: &Cache, n: usize) {
        while cache.computation_waiters() < n {
            tokio::task::yield_now().await;
        }
    }

    /// A computation's own answer is neither stored nor shared: the callers that waited for
    /// it compute their own.
    #[tokio::test]
    async fn an_answer_stays_with_its_caller_and_waiters_compute_their_own() {
        let cache = cache();
        let options = ComputeOptions::new(Duration::from_secs(60));
        let tally = Tally {
            cache: &cache,
            name: "answer",
            key: "k",
        };
        let calls = AtomicUsize::new(0);
        let call = || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n == 0 {
                until_waiting(&cache, 2).await;
                return Ok::<_, Infallible>(Computation::Answer(n));
            }
            Ok(Computation::Store(n))
        };
        let fetch = || cache.compute_with::<usize, usize, _, _, _>("k", &options, &tally, &|_| true, call);
        let (first, second, third) = tokio::join!(fetch(), fetch(), fetch());
        assert_eq!(first.unwrap(), Fetched::Answer(0));
        for waiter in [second.unwrap(), third.unwrap()] {
            let Fetched::Value(value) = waiter else {
                panic!("a waiter computes a value of its own")
            };
            assert_eq!(value.source, ValueSource::Computed);
            assert!(value.value > 0);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    /// A stored value the caller refuses is a miss, and the value computed replaces it.
    #[tokio::test]
    async fn a_refused_value_is_a_miss() {
        let cache = cache();
        let options = ComputeOptions::new(Duration::from_secs(60));
        let tally = Tally {
            cache: &cache,
            name: "refuse",
            key: "k",
        };
        let store = |v: u32| move || async move { Ok::<_, Infallible>(Computation::<u32, ()>::Store(v)) };
        let fetch = |accept: &'static (dyn Fn(&u32) -> bool + Sync), v: u32| {
            let (cache, options, tally) = (&cache, &options, &tally);
            async move {
                match cache.compute_with("k", options, tally, accept, store(v)).await.unwrap() {
                    Fetched::Value(value) => (value.value, value.source),
                    Fetched::Answer(()) => panic!("values only"),
                }
            }
        };
        assert_eq!(fetch(&|_| true, 1).await, (1, ValueSource::Computed));
        assert_eq!(fetch(&|_| true, 2).await, (1, ValueSource::Stored));
        assert_eq!(fetch(&|v| *v != 1, 3).await, (3, ValueSource::Computed));
        assert_eq!(fetch(&|_| true, 4).await, (3, ValueSource::Stored));
    }
}
