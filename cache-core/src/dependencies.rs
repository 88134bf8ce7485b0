//! What one unit of work (an HTTP request, a computed value) depends on: the tags of every
//! record and index result it read through the cache, collected by a [`DependencyScope`].
//!
//! This is part of correctness, not an add-on: a computed value and a cached HTTP response are
//! stored under the tags their scope collected, and a write purges by tag
//! ([`keys`](crate::keys)). A read that did not record its tag into the enclosing scope would
//! leave a value that no write can purge. The scope also counts how the cache answered its reads
//! ([`ReadCounts`]: the HTTP layer's `X-Cache` headers) and carries a request's refresh
//! (`Cache-Control: no-cache`) to every read inside it.
//!
//! The HTTP layer and the response cache open a scope per request, [`Cache::get_or_compute`]
//! one per computation; every cache operation run inside records into it. Scopes nest: an
//! operation records into every enclosing scope, so a computed value evaluated inside a request
//! counts for both, and the request depends on what the value depends on.
//!
//! ```
//! use cache_core::dependencies::{self, DependencyScope};
//!
//! # async fn handler() {}
//! # async fn run() {
//! let scope = DependencyScope::new();
//! dependencies::scope(scope.clone(), handler()).await;
//! let seen = scope.snapshot();
//! println!("{} hits, {} misses, depends on {:?}", seen.hits, seen.misses, seen.tags);
//! # }
//! ```
//!
//! Operations outside any scope record nothing here (the [cache statistics](crate::stats::CacheStats)
//! and metrics still count them).
//!
//! [`Cache::get_or_compute`]: crate::Cache::get_or_compute

use std::{
    collections::BTreeSet,
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use serde::Serialize;

tokio::task_local! {
    static SCOPES: Arc<[DependencyScope]>;
}

/// The dependencies of one unit of work, collected while it runs inside [`scope`]: the tags of
/// what it read, how the cache answered, and whether it asked for a refresh. Cheap to clone:
/// clones record into the same scope.
#[derive(Debug, Clone, Default)]
pub struct DependencyScope {
    inner: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    refresh: AtomicBool,
    hits: AtomicU64,
    misses: AtomicU64,
    bypasses: AtomicU64,
    origin_calls: AtomicU64,
    tombstone_hits: AtomicU64,
    store_errors: AtomicU64,
    coalesced: AtomicU64,
    tags: Mutex<BTreeSet<String>>,
}

/// What a [`DependencyScope`] recorded so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScopeSnapshot {
    /// Records (or complete query results) answered by the cache.
    pub hits: u64,
    /// Records (or query results) the cache did not have.
    pub misses: u64,
    /// Reads that skipped the cache: it is disabled, or the scope asked for a refresh.
    pub bypasses: u64,
    /// Calls made to the origin on behalf of this work (calls it waited on, started by
    /// someone else, are in `coalesced`).
    pub origin_calls: u64,
    /// Reads answered "does not exist" by a tombstone.
    pub tombstone_hits: u64,
    /// Store failures the cache answered around (from the origin).
    pub store_errors: u64,
    /// Misses that joined an origin call already in flight instead of making their own.
    pub coalesced: u64,
    /// The tags of everything read ([`keys::record_tag`](crate::keys::record_tag),
    /// [`keys::index_tag`](crate::keys::index_tag), [`keys::entity_tag`](crate::keys::entity_tag)),
    /// sorted.
    pub tags: Vec<String>,
}

/// The counters of a [`DependencyScope`] without its tags: cheap enough to read on every request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReadCounts {
    /// See [`ScopeSnapshot::hits`].
    pub hits: u64,
    /// See [`ScopeSnapshot::misses`].
    pub misses: u64,
    /// See [`ScopeSnapshot::bypasses`].
    pub bypasses: u64,
    /// See [`ScopeSnapshot::origin_calls`].
    pub origin_calls: u64,
    /// See [`ScopeSnapshot::tombstone_hits`].
    pub tombstone_hits: u64,
    /// See [`ScopeSnapshot::store_errors`].
    pub store_errors: u64,
    /// See [`ScopeSnapshot::coalesced`].
    pub coalesced: u64,
}

/// One thing a cache operation records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Hit,
    Miss,
    Bypass,
    OriginCall,
    TombstoneHit,
    StoreError,
    Coalesced,
}

impl DependencyScope {
    /// A fresh scope, with nothing recorded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the cache to bypass cached reads inside this scope (and the scopes it encloses)
    /// but store what it reads from the origin: `Cache-Control: no-cache`.
    pub fn refresh(self, refresh: bool) -> Self {
        self.inner.refresh.store(refresh, Ordering::Relaxed);
        self
    }

    /// Whether this scope asks for a refresh.
    pub fn is_refresh(&self) -> bool {
        self.inner.refresh.load(Ordering::Relaxed)
    }

    /// What was counted so far, without copying the tags.
    pub fn counts(&self) -> ReadCounts {
        let c = &self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ReadCounts {
            hits: load(&c.hits),
            misses: load(&c.misses),
            bypasses: load(&c.bypasses),
            origin_calls: load(&c.origin_calls),
            tombstone_hits: load(&c.tombstone_hits),
            store_errors: load(&c.store_errors),
            coalesced: load(&c.coalesced),
        }
    }

    /// What was recorded so far.
    pub fn snapshot(&self) -> ScopeSnapshot {
        let c = &self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ScopeSnapshot {
            hits: load(&c.hits),
            misses: load(&c.misses),
            bypasses: load(&c.bypasses),
            origin_calls: load(&c.origin_calls),
            tombstone_hits: load(&c.tombstone_hits),
            store_errors: load(&c.store_errors),
            coalesced: load(&c.coalesced),
            tags: c
                .tags
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
        }
    }

    fn count(&self, event: Event, n: u64) {
        let c = &self.inner;
        let counter = match event {
            Event::Hit => &c.hits,
            Event::Miss => &c.misses,
            Event::Bypass => &c.bypasses,
            Event::OriginCall => &c.origin_calls,
            Event::TombstoneHit => &c.tombstone_hits,
            Event::StoreError => &c.store_errors,
            Event::Coalesced => &c.coalesced,
        };
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn add_tags<S: AsRef<str>>(&self, tags: impl IntoIterator<Item = S>) {
        let mut set = self.inner.tags.lock().unwrap_or_else(PoisonError::into_inner);
        for tag in tags {
            let tag = tag.as_ref();
            if !set.contains(tag) {
                set.insert(tag.to_owned());
            }
        }
    }
}

/// Runs `fut` with `dependencies` recording every cache operation it performs, in addition to
/// the scopes already open around it.
pub async fn scope<F: Future>(dependencies: DependencyScope, fut: F) -> F::Output {
    let mut stack: Vec<DependencyScope> = SCOPES.try_with(|s| s.to_vec()).unwrap_or_default();
    if !stack.iter().any(|t| Arc::ptr_eq(&t.inner, &dependencies.inner)) {
        stack.push(dependencies);
    }
    SCOPES.scope(stack.into(), fut).await
}

/// Records that the current work depends on values tagged `tags` (for computed values and
/// response caches built on the scope). Does nothing outside a scope: pass a lazy iterator
/// (`std::iter::once_with`, `map`) and no tag is built there.
pub fn record_tags<I, S>(tags: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let _ = SCOPES.try_with(|stack| match &stack[..] {
        [] => {}
        [only] => only.add_tags(tags),
        // Several scopes read the tags: build them once.
        many => {
            let tags: Vec<S> = tags.into_iter().collect();
            for t in many {
                t.add_tags(&tags);
            }
        }
    });
}

/// Work running on behalf of the current scopes elsewhere (an origin call's own task) records
/// into them: captures them here, to pass to [`within`].
pub(crate) fn current() -> Option<Arc<[DependencyScope]>> {
    SCOPES.try_with(Arc::clone).ok()
}

/// Runs `fut` inside scopes captured by [`current`].
pub(crate) async fn within<F: Future>(scopes: Option<Arc<[DependencyScope]>>, fut: F) -> F::Output {
    match scopes {
        Some(scopes) => SCOPES.scope(scopes, fut).await,
        None => fut.await,
    }
}

/// Whether any enclosing scope asks for a refresh.
pub(crate) fn refresh_requested() -> bool {
    SCOPES
        .try_with(|stack| stack.iter().any(DependencyScope::is_refresh))
        .unwrap_or(false)
}

/// Counts an event in every enclosing scope.
pub(crate) fn count(event: Event, n: u64) {
    if n == 0 {
        return;
    }
    let _ = SCOPES.try_with(|stack| {
        for t in stack.iter() {
            t.count(event, n);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn nested_scopes_record_into_both() {
        let outer = DependencyScope::new();
        let inner = DependencyScope::new();
        scope(outer.clone(), async {
            count(Event::Hit, 1);
            scope(inner.clone(), async {
                count(Event::Miss, 2);
                record_tags(["projects:recP1"]);
            })
            .await;
        })
        .await;
        let o = outer.snapshot();
        let i = inner.snapshot();
        assert_eq!((o.hits, o.misses), (1, 2));
        assert_eq!((i.hits, i.misses), (0, 2));
        assert_eq!(o.tags, ["projects:recP1"]);
        assert_eq!(i.tags, ["projects:recP1"]);
    }

    #[tokio::test]
    async fn counts_agree_with_the_snapshot() {
        let t = DependencyScope::new();
        scope(t.clone(), async {
            count(Event::Hit, 2);
            count(Event::OriginCall, 1);
            record_tags(["projects:recP1"]);
        })
        .await;
        let (counts, snapshot) = (t.counts(), t.snapshot());
        assert_eq!((counts.hits, counts.origin_calls), (2, 1));
        assert_eq!(
            (counts.misses, counts.bypasses, counts.tombstone_hits),
            (snapshot.misses, snapshot.bypasses, snapshot.tombstone_hits)
        );
    }

    #[tokio::test]
    async fn the_same_scope_nested_counts_once() {
        let t = DependencyScope::new();
        scope(t.clone(), scope(t.clone(), async { count(Event::Hit, 1) })).await;
        assert_eq!(t.snapshot().hits, 1);
    }

    #[tokio::test]
    async fn refresh_is_inherited_by_inner_scopes() {
        assert!(!refresh_requested());
        let outer = DependencyScope::new().refresh(true);
        let seen = scope(outer, scope(DependencyScope::new(), async { refresh_requested() })).await;
        assert!(seen);
    }

    #[tokio::test]
    async fn tags_are_built_only_inside_a_scope_and_once() {
        let built = AtomicU64::new(0);
        let tag = || {
            built.fetch_add(1, Ordering::Relaxed);
            "projects:recP1".to_owned()
        };
        record_tags(std::iter::once_with(tag));
        assert_eq!(built.load(Ordering::Relaxed), 0, "outside a scope");
        let (outer, inner) = (DependencyScope::new(), DependencyScope::new());
        scope(outer.clone(), async {
            record_tags(std::iter::once_with(tag));
            scope(inner.clone(), async { record_tags(std::iter::once_with(tag)) }).await;
        })
        .await;
        assert_eq!(built.load(Ordering::Relaxed), 2, "once per call, however many scopes");
        assert_eq!(outer.snapshot().tags, ["projects:recP1"]);
        assert_eq!(inner.snapshot().tags, ["projects:recP1"]);
    }

    #[tokio::test]
    async fn outside_a_scope_nothing_is_recorded() {
        count(Event::Hit, 1);
        record_tags(["x"]);
        let t = DependencyScope::new();
        assert_eq!(t.snapshot(), ScopeSnapshot::default());
    }
}
