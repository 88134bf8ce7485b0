//! Per-request telemetry: what one unit of work (an HTTP request, a computed value) read from
//! the cache, and which tags its result depends on.
//!
//! The HTTP layer opens a scope per request; every cache operation run inside it records into
//! it. Scopes nest: an operation records into every enclosing scope, so a computed value
//! evaluated inside a request counts for both.
//!
//! ```
//! use cache_core::telemetry::{self, Telemetry};
//!
//! # async fn handler() {}
//! # async fn run() {
//! let t = Telemetry::new();
//! telemetry::scope(t.clone(), handler()).await;
//! let seen = t.snapshot();
//! println!("{} hits, {} misses, tags {:?}", seen.hits, seen.misses, seen.tags);
//! # }
//! ```
//!
//! Operations outside any scope record nothing here (the [cache statistics](crate::CacheStats)
//! and metrics still count them).

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
    static SCOPES: Arc<[Telemetry]>;
}

/// A recorder for one unit of work. Cheap to clone: clones record into the same counters.
#[derive(Debug, Clone, Default)]
pub struct Telemetry {
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

/// What a [`Telemetry`] recorded so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TelemetrySnapshot {
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

/// The counters of a [`Telemetry`] without its tags: cheap enough to read on every request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TelemetryCounts {
    /// See [`TelemetrySnapshot::hits`].
    pub hits: u64,
    /// See [`TelemetrySnapshot::misses`].
    pub misses: u64,
    /// See [`TelemetrySnapshot::bypasses`].
    pub bypasses: u64,
    /// See [`TelemetrySnapshot::origin_calls`].
    pub origin_calls: u64,
    /// See [`TelemetrySnapshot::tombstone_hits`].
    pub tombstone_hits: u64,
    /// See [`TelemetrySnapshot::store_errors`].
    pub store_errors: u64,
    /// See [`TelemetrySnapshot::coalesced`].
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

impl Telemetry {
    /// A fresh recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the cache to bypass cached reads inside this scope (and the scopes it encloses)
    /// but store what it reads from the origin: `Cache-Control: no-cache`.
    pub fn refresh(self, refresh: bool) -> Self {
        self.inner.refresh.store(refresh, Ordering::Relaxed);
        self
    }

    /// Whether this recorder asks for a refresh.
    pub fn is_refresh(&self) -> bool {
        self.inner.refresh.load(Ordering::Relaxed)
    }

    /// What was counted so far, without copying the tags.
    pub fn counts(&self) -> TelemetryCounts {
        let c = &self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TelemetryCounts {
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
    pub fn snapshot(&self) -> TelemetrySnapshot {
        let c = &self.inner;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TelemetrySnapshot {
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

/// Runs `fut` with `telemetry` recording every cache operation it performs, in addition to
/// the scopes already open around it.
pub async fn scope<F: Future>(telemetry: Telemetry, fut: F) -> F::Output {
    let mut stack: Vec<Telemetry> = SCOPES.try_with(|s| s.to_vec()).unwrap_or_default();
    if !stack.iter().any(|t| Arc::ptr_eq(&t.inner, &telemetry.inner)) {
        stack.push(telemetry);
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
pub(crate) fn current() -> Option<Arc<[Telemetry]>> {
    SCOPES.try_with(Arc::clone).ok()
}

/// Runs `fut` inside scopes captured by [`current`].
pub(crate) async fn within<F: Future>(scopes: Option<Arc<[Telemetry]>>, fut: F) -> F::Output {
    match scopes {
        Some(scopes) => SCOPES.scope(scopes, fut).await,
        None => fut.await,
    }
}

/// Whether any enclosing scope asks for a refresh.
pub(crate) fn refresh_requested() -> bool {
    SCOPES
        .try_with(|stack| stack.iter().any(Telemetry::is_refresh))
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
        let outer = Telemetry::new();
        let inner = Telemetry::new();
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
        let t = Telemetry::new();
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
    async fn the_same_recorder_nested_counts_once() {
        let t = Telemetry::new();
        scope(t.clone(), scope(t.clone(), async { count(Event::Hit, 1) })).await;
        assert_eq!(t.snapshot().hits, 1);
    }

    #[tokio::test]
    async fn refresh_is_inherited_by_inner_scopes() {
        assert!(!refresh_requested());
        let outer = Telemetry::new().refresh(true);
        let seen = scope(outer, scope(Telemetry::new(), async { refresh_requested() })).await;
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
        let (outer, inner) = (Telemetry::new(), Telemetry::new());
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
        let t = Telemetry::new();
        assert_eq!(t.snapshot(), TelemetrySnapshot::default());
    }
}
