//! What the record cache counts and traces, each named once: the operations an application
//! calls ([`Operation`]), the origin calls they make ([`OriginCall`]), the store steps whose
//! failure is counted ([`StoreStep`]); and the guard that times an operation and records its
//! lookups ([`OperationGuard`]), so that the read and write paths carry one line per event
//! instead of interleaved statistics and tracing. The names are the `operation` labels of the
//! metrics ([`crate::stats`]). Computed values observe their own steps (`compute/observe.rs`).

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Instant,
};

use crate::{Cache, dependencies::Event, origin::OriginError, stats::Stats, store::StoreError};

/// An operation of the record cache, as the application calls it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    /// `Cache::get`.
    Get,
    /// `Cache::get_many`.
    GetMany,
    /// `Cache::query`.
    Query,
    /// `Cache::upsert`, or an upsert through the change path.
    Upsert,
    /// `Cache::invalidate`, or an invalidation through the change path.
    Invalidate,
    /// `Cache::delete`, or a delete through the change path.
    Delete,
    /// `Cache::sweep`.
    Sweep,
}

impl Operation {
    /// The metric label.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::GetMany => "get_many",
            Self::Query => "query",
            Self::Upsert => "upsert",
            Self::Invalidate => "invalidate",
            Self::Delete => "delete",
            Self::Sweep => "sweep",
        }
    }
}

/// A call to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginCall {
    /// `Origin::fetch` (one id).
    Fetch,
    /// `Origin::fetch_many`.
    FetchMany,
    /// `Origin::query`.
    Query,
    /// `Origin::delete`.
    Delete,
    /// `Origin::exists_many` (the sweep).
    ExistsMany,
}

impl OriginCall {
    /// The metric label.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Fetch => "fetch",
            Self::FetchMany => "fetch_many",
            Self::Query => "query",
            Self::Delete => "delete",
            Self::ExistsMany => "exists_many",
        }
    }
}

/// A step of the record cache that asks the store, named in `cache_store_error` and
/// `model_cache_store_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreStep {
    /// The store read of an operation (`get`, `get_many`, `query`).
    Read(Operation),
    /// `Store::lease`, before a fill.
    Lease,
    /// `Store::put`.
    Put,
    /// `Store::remove`.
    Remove,
    /// `Store::complete_query`.
    CompleteQuery,
    /// `Store::purge_tags`.
    PurgeTags,
    /// The change path's watermark claim.
    AdvanceWatermark,
    /// The change path's watermark read.
    GetValue,
}

impl StoreStep {
    /// The metric label.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Read(operation) => operation.name(),
            Self::Lease => "lease",
            Self::Put => "put",
            Self::Remove => "remove",
            Self::CompleteQuery => "complete_query",
            Self::PurgeTags => "purge_tags",
            Self::AdvanceWatermark => "advance_watermark",
            Self::GetValue => "get_value",
        }
    }
}

/// One running operation: records its duration when dropped (however it ends), and counts
/// and traces what its lookups found.
#[must_use = "the operation is timed until the guard drops"]
pub(crate) struct OperationGuard<'a> {
    stats: &'a Stats,
    entity: &'static str,
    operation: Operation,
    started: Instant,
    timed: bool,
    /// Hits of a lookup that found nothing else, counted with the duration when the guard
    /// drops: one meter lookup for both, on the hit path.
    hits: AtomicU64,
}

impl Cache {
    /// Starts timing `operation` on `entity`.
    pub(crate) fn operation(&self, entity: &'static str, operation: Operation) -> OperationGuard<'_> {
        OperationGuard {
            stats: self.stats_handle(),
            entity,
            operation,
            started: Instant::now(),
            timed: true,
            hits: AtomicU64::new(0),
        }
    }

    /// Calls the origin: counts the call, times it, and logs a failure (rate-limited).
    pub(crate) async fn ask_origin<R>(
        &self,
        entity: &'static str,
        call: OriginCall,
        work: impl Future<Output = Result<R, OriginError>>,
    ) -> Result<R, OriginError> {
        let stats = self.stats_handle();
        stats.origin_call(entity, call);
        let started = Instant::now();
        let out = work.await;
        stats.origin_done(entity, call, started.elapsed(), out.is_ok());
        if let Err(err) = &out
            && let Some(held) = stats.warnings.origin.admit(Instant::now())
        {
            tracing::warn!(entity, operation = call.name(), error = %err, held_back = held, "cache_origin_error");
        }
        out
    }

    /// Counts and logs a store failure. A refusal is the store saying it is down, which it
    /// logs itself on the state change; logging each one would be one line per request in an
    /// outage.
    pub(crate) fn store_failed(&self, entity: &'static str, step: StoreStep, err: &StoreError) {
        let stats = self.stats_handle();
        stats.store_error(entity, step);
        if !matches!(err, StoreError::Refused(_))
            && let Some(held) = stats.warnings.store.admit(Instant::now())
        {
            tracing::warn!(entity, operation = step.name(), error = %err, held_back = held, "cache_store_error");
        }
    }
}

impl OperationGuard<'_> {
    /// The operation.
    pub(crate) fn operation(&self) -> Operation {
        self.operation
    }

    /// `n` records answered without the cache (disabled, or a refresh was asked for).
    pub(crate) fn bypassed(&self, n: u64) {
        self.stats.lookup(self.entity, self.operation, Event::Bypass, n);
        tracing::debug!(entity = self.entity, operation = self.operation.name(), "cache_bypass");
    }

    /// What the store answered for the operation's records.
    pub(crate) fn looked_up(&self, hits: u64, tombstones: u64, misses: u64) {
        let (stats, entity, operation) = (self.stats, self.entity, self.operation);
        if tombstones + misses == 0 && self.timed {
            // Nothing else to wait for: counted with the duration (`Drop`).
            self.hits.fetch_add(hits, Relaxed);
        } else {
            stats.lookup(entity, operation, Event::Hit, hits);
        }
        stats.lookup(entity, operation, Event::TombstoneHit, tombstones);
        stats.lookup(entity, operation, Event::Miss, misses);
        if hits + tombstones > 0 {
            tracing::debug!(entity, operation = operation.name(), hits, tombstones, "cache_hit");
        }
    }

    /// `n` records joined a flight already asking the origin for them.
    pub(crate) fn coalesced(&self, n: u64) {
        self.stats.coalesced(self.entity, self.operation, n);
    }

    /// A `get` the near cache answered: its hit and the operation's duration, in one meter
    /// lookup (the near cache's hit path).
    pub(crate) fn near_hit(mut self) {
        self.timed = false;
        self.stats
            .hits_done(self.entity, self.operation, 1, true, self.started.elapsed());
        tracing::debug!(
            entity = self.entity,
            operation = self.operation.name(),
            hits = 1,
            "cache_near_hit"
        );
    }
}

impl Drop for OperationGuard<'_> {
    fn drop(&mut self) {
        if !self.timed {
            return;
        }
        let took = self.started.elapsed();
        match *self.hits.get_mut() {
            0 => self.stats.operation_done(self.entity, self.operation, took),
            hits => self.stats.hits_done(self.entity, self.operation, hits, false, took),
        }
    }
}
