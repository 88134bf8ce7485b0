//! The store's state under its lock: looking entries up, weighing leases and markers against
//! their shares of the budget, writing a record into its index entries.

use super::*;

impl Inner {
    pub(super) fn now(&self) -> Instant {
        self.clock.now()
    }

    pub(super) async fn live(&self, key: &Key) -> Option<Entry> {
        let entry = self.entries.get(key).await?;
        (entry.expires_at > self.now()).then_some(entry)
    }

    /// [`Inner::live`] by a borrowed key.
    async fn live_record(&self, key: &RecordKey<'_>) -> Option<Entry> {
        let entry = self.entries.get(key).await?;
        (entry.expires_at > self.now()).then_some(entry)
    }

    pub(super) async fn lookup(&self, entity: &EntitySchema, id: &RecordId) -> Lookup {
        self.lookup_with_copy(entity, id).await.0
    }

    /// The lookup, and on a hit the decoded copy kept with its bytes.
    pub(super) async fn lookup_with_copy(&self, entity: &EntitySchema, id: &RecordId) -> (Lookup, Option<DecodedCopy>) {
        if let Some(Entry {
            kind: Kind::Record { body, copy, .. },
            ..
        }) = self.live_record(&RecordKey::record(entity.entity, id)).await
        {
            return (Lookup::Hit(body), Some(copy));
        }
        let lookup = match self.live_record(&RecordKey::tombstone(entity.entity, id)).await {
            Some(Entry {
                kind: Kind::Tombstone { answers: true, .. },
                ..
            }) => Lookup::Tombstone,
            _ => Lookup::Miss,
        };
        (lookup, None)
    }

    /// The delete the source reported for a record, while its tombstone lives.
    pub(super) async fn deleted(&self, entity: &EntitySchema, id: &RecordId) -> Option<(Tombstone, Entry)> {
        let entry = self.live(&Key::tombstone(entity, id)).await?;
        match entry.kind {
            Kind::Tombstone {
                deleted: Some(deleted), ..
            } => Some((deleted, entry)),
            _ => None,
        }
    }

    pub(super) async fn cached_version(&self, entity: &EntitySchema, id: &RecordId) -> Option<f64> {
        match self.live(&Key::record(entity, id)).await?.kind {
            Kind::Record { version, .. } => version,
            _ => None,
        }
    }

    /// Locks the state, first forgetting what moka evicted.
    pub(super) async fn lock(&self) -> tokio::sync::MutexGuard<'_, State> {
        let mut state = self.state.lock().await;
        let evicted = std::mem::take(&mut *self.evicted.lock().unwrap_or_else(PoisonError::into_inner));
        for (key, entry) in evicted {
            match (&*key, entry.kind) {
                (Key::Record(entity, id), Kind::Record { generation, .. }) => {
                    let State {
                        entities, marker_use, ..
                    } = &mut *state;
                    let Some(es) = entities.get_mut(entity) else {
                        continue;
                    };
                    if es.indexed.get(id).is_some_and(|i| i.generation == generation) {
                        // The complete results that contained it are no longer all here.
                        if let Some(entries) = es.unindex(id) {
                            es.markers.drop_covering(&entries, marker_use);
                        }
                    }
                }
                // Only when no newer value took the key (a replacement is not an eviction).
                (Key::Value(k), Kind::Value { tags, .. }) if !self.entries.contains_key(&*key) => {
                    forget_value_tags(&mut state.value_tags, k, &tags);
                }
                _ => {}
            }
        }
        state
    }

    /// How many more leases fit in their share of the budget.
    pub(super) fn lease_room(&self, state: &State) -> usize {
        let held: usize = state.entities.values().map(|es| es.leases.len()).sum();
        (self.side_budget as usize / LEASE_WEIGHT).saturating_sub(held)
    }

    /// Drops the oldest markers until they fit in their share of the budget, and expired ones
    /// at the front of the queue on the way.
    pub(super) fn trim_markers(&self, state: &mut State) {
        let now = self.now();
        let cap = self.side_budget as usize;
        let State {
            entities, marker_use, ..
        } = state;
        while let Some((entity, key, stamp)) = marker_use.pop_oldest() {
            let Some(es) = entities.get_mut(entity) else {
                continue;
            };
            if !es.markers.is_current(&key, stamp) {
                continue;
            }
            // `holds` drops an expired marker itself.
            if !es.markers.holds(&key, es.epoch, now, marker_use) || marker_use.bytes > cap {
                es.markers.remove(&key, Some(stamp), marker_use);
                continue;
            }
            // Still wanted, and within the budget: it stays first in line.
            marker_use.push_front(entity, key, stamp);
            break;
        }
        if marker_use.queue_is_stale() {
            marker_use.retain_queue(|entity, key, stamp| {
                entities.get(entity).is_some_and(|es| es.markers.is_current(key, stamp))
            });
        }
    }

    pub(super) async fn write_record(
        &self,
        es: &mut EntityState,
        entity: &EntitySchema,
        write: &RecordWrite,
    ) -> Option<IndexEntries> {
        let generation = self.next_gen.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            kind: Kind::Record {
                body: write.body.clone(),
                version: write.version,
                generation,
                index_weight: index_weight(&write.id, &write.index),
                copy: DecodedCopy::new(),
            },
            ttl: write.ttl,
            expires_at: self.now() + write.ttl,
        };
        self.entries.insert(Key::record(entity, &write.id), entry).await;
        self.entries.invalidate(&Key::tombstone(entity, &write.id)).await;
        es.index(&write.id, write.index.clone(), generation)
    }
}

pub(super) fn forget_value_tags(value_tags: &mut HashMap<String, HashSet<String>>, key: &str, tags: &[String]) {
    for tag in tags {
        if let Some(keys) = value_tags.get_mut(tag) {
            keys.remove(key);
            if keys.is_empty() {
                value_tags.remove(tag);
            }
        }
    }
}

pub(super) fn is_newer(cached: Option<f64>, incoming: Option<f64>) -> bool {
    matches!((cached, incoming), (Some(cached), Some(incoming)) if cached > incoming)
}
