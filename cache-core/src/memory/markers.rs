//! Completeness markers of the memory store: which index results it holds complete.
//!
//! Anyone can ask for index values that match nothing (`/users/by-email/<random>`), and each
//! distinct lookup leaves a marker, so markers are bounded three ways: each has a lifetime
//! (an empty result the entity's `negative_ttl`, others as long as their records), all of them
//! together weigh at most their share of the store's budget (the oldest go first), and each is
//! weighed at what it costs here (its key, its filters, its slots in the maps and the queue).
//!
//! A marker is filed under its first filter, so that an evicted record finds the markers that
//! may contain it without looking at the others.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::Instant,
};

use crate::schema::IndexEntries;

/// What a marker weighs beside its key and filters: its slot in its entity's map (a hash
/// table at most half full), its place in the order of insertion and under its first filter,
/// and the allocator's headers of its key and filter strings.
const MARKER_OVERHEAD: usize = 420;
/// What each filter of a marker weighs beside its text: two `String`s in the marker and the
/// key under which it is filed, with their allocations.
const FILTER_OVERHEAD: usize = 112;

/// The markers of one entity.
#[derive(Default)]
pub(super) struct EntityMarkers {
    by_key: HashMap<Arc<str>, Marker>,
    /// Keys of the markers with filters, by their first filter.
    by_first: HashMap<(String, String), Vec<Arc<str>>>,
}

struct Marker {
    /// The entity's epoch when it was marked: a marker of an older epoch is void.
    epoch: u64,
    filters: Vec<(String, String)>,
    expires_at: Instant,
    /// Which insertion this is, so that the queue never drops a newer marker under the key.
    stamp: u64,
    weight: usize,
}

/// Where the markers of every entity stand against their share of the budget.
#[derive(Default)]
pub(super) struct MarkerUse {
    /// (entity, key, stamp) in the order markers were set; entries of markers gone since are
    /// skipped when they reach the front.
    queue: VecDeque<(&'static str, Arc<str>, u64)>,
    pub(super) bytes: usize,
    pub(super) count: usize,
    next_stamp: u64,
}

impl EntityMarkers {
    /// Whether the result under `key` is complete in `epoch` at `now`; an expired marker is
    /// dropped.
    pub(super) fn holds(&mut self, key: &str, epoch: u64, now: Instant, usage: &mut MarkerUse) -> bool {
        match self.by_key.get(key) {
            Some(m) if m.expires_at <= now => {
                self.remove(key, None, usage);
                false
            }
            Some(m) => m.epoch == epoch,
            None => false,
        }
    }

    /// Marks the result under `key` complete until `expires_at`.
    pub(super) fn insert(
        &mut self,
        entity: &'static str,
        key: String,
        filters: Vec<(String, String)>,
        epoch: u64,
        expires_at: Instant,
        usage: &mut MarkerUse,
    ) {
        self.remove(&key, None, usage);
        let key: Arc<str> = Arc::from(key);
        let weight = weight(&key, &filters);
        let stamp = usage.next_stamp;
        usage.next_stamp += 1;
        if let Some(first) = filters.first() {
            self.by_first.entry(first.clone()).or_default().push(Arc::clone(&key));
        }
        usage.queue.push_back((entity, Arc::clone(&key), stamp));
        usage.bytes += weight;
        usage.count += 1;
        self.by_key.insert(
            key,
            Marker {
                epoch,
                filters,
                expires_at,
                stamp,
                weight,
            },
        );
    }

    /// Removes the marker under `key` (only the insertion `stamp`, when given).
    pub(super) fn remove(&mut self, key: &str, stamp: Option<u64>, usage: &mut MarkerUse) {
        if stamp.is_some_and(|s| self.by_key.get(key).is_none_or(|m| m.stamp != s)) {
            return;
        }
        let Some(marker) = self.by_key.remove(key) else {
            return;
        };
        usage.bytes -= marker.weight;
        usage.count -= 1;
        if let Some(first) = marker.filters.first()
            && let Some(keys) = self.by_first.get_mut(first)
        {
            keys.retain(|k| &**k != key);
            if keys.is_empty() {
                self.by_first.remove(first);
            }
        }
    }

    /// Drops every marker (an invalidation: where records belong is no longer known).
    pub(super) fn clear(&mut self, usage: &mut MarkerUse) {
        for marker in self.by_key.values() {
            usage.bytes -= marker.weight;
            usage.count -= 1;
        }
        self.by_key = HashMap::new();
        self.by_first = HashMap::new();
    }

    /// Drops the markers whose result contains a record filed under `entries` (it was
    /// evicted: their results are no longer all here). Looks only at the markers filed under
    /// one of the record's own values, and the unfiltered one.
    pub(super) fn drop_covering(&mut self, entries: &IndexEntries, usage: &mut MarkerUse) {
        let mut doomed: Vec<Arc<str>> = Vec::new();
        if self.by_key.contains_key("*") {
            doomed.push(Arc::from("*"));
        }
        for tag in &entries.tags {
            for key in self.by_first.get(tag).into_iter().flatten() {
                let covers = self.by_key.get(key).is_some_and(|m| {
                    m.filters
                        .iter()
                        .all(|(field, value)| entries.tag(field) == Some(value.as_str()))
                });
                if covers {
                    doomed.push(Arc::clone(key));
                }
            }
        }
        for key in doomed {
            self.remove(&key, None, usage);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.by_key.len()
    }
}

impl MarkerUse {
    /// The oldest entry of the queue, for the store to drop (the marker may be gone already).
    pub(super) fn pop_oldest(&mut self) -> Option<(&'static str, Arc<str>, u64)> {
        self.queue.pop_front()
    }

    /// Puts an entry taken by [`MarkerUse::pop_oldest`] back in front.
    pub(super) fn push_front(&mut self, entity: &'static str, key: Arc<str>, stamp: u64) {
        self.queue.push_front((entity, key, stamp));
    }

    /// Whether the queue holds many entries of markers gone since: the store then rebuilds it.
    pub(super) fn queue_is_stale(&self) -> bool {
        self.queue.len() > 2 * self.count + 1024
    }

    /// Keeps only the queue entries `live` answers true for.
    pub(super) fn retain_queue(&mut self, mut live: impl FnMut(&'static str, &str, u64) -> bool) {
        self.queue.retain(|(entity, key, stamp)| live(entity, key, *stamp));
        self.queue.shrink_to(self.queue.len() * 2);
    }
}

impl EntityMarkers {
    pub(super) fn is_current(&self, key: &str, stamp: u64) -> bool {
        self.by_key.get(key).is_some_and(|m| m.stamp == stamp)
    }
}

/// What a marker costs here.
fn weight(key: &str, filters: &[(String, String)]) -> usize {
    MARKER_OVERHEAD
        + key.len()
        + filters
            .iter()
            .map(|(f, v)| 2 * (f.len() + v.len()) + FILTER_OVERHEAD)
            .sum::<usize>()
}
