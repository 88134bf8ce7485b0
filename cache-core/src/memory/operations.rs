//! The [`Store`] contract on the in-memory state: each operation under the store's one lock,
//! with the semantics the conformance suite checks on every store.

use super::*;

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<Lookup> {
        Ok(self.inner.lookup(entity, id).await)
    }

    async fn get_with_copy(&self, entity: &EntitySchema, id: &RecordId) -> StoreResult<(Lookup, Option<DecodedCopy>)> {
        Ok(self.inner.lookup_with_copy(entity, id).await)
    }

    async fn get_many(&self, entity: &EntitySchema, ids: &[RecordId]) -> StoreResult<Vec<Lookup>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.inner.lookup(entity, id).await);
        }
        Ok(out)
    }

    async fn lease(&self, entity: &EntitySchema, ids: &[RecordId], ttl: Duration) -> StoreResult<Lease> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let now = inner.now();
        let lease = inner.next_lease.fetch_add(1, Ordering::Relaxed);
        let room = inner.lease_room(&state);
        let es = state.entities.entry(entity.entity).or_default();
        // Expired leases are dropped when the map doubled since, or (at most once a second)
        // when the leases' share of the budget is full.
        let full = room < ids.len() && es.lease_sweep_after.is_none_or(|after| now >= after);
        if es.leases.len() > es.lease_cleanup_at.max(1024) || full {
            let before = es.leases.len();
            es.leases.retain(|_, (_, expires)| *expires > now);
            es.lease_cleanup_at = es.leases.len() * 2;
            es.lease_sweep_after = Some(now + Duration::from_secs(1));
            if room + (before - es.leases.len()) < ids.len() {
                // Over the leases' share of the budget: this fill holds no lease, so its
                // result is refused (never wrong, only not cached).
                for id in ids {
                    es.leases.remove(id);
                }
                tracing::debug!(entity = entity.entity, "cache_memory_leases_full");
                return Ok(Lease(lease));
            }
        } else if room < ids.len() {
            for id in ids {
                es.leases.remove(id);
            }
            return Ok(Lease(lease));
        }
        for id in ids {
            es.leases.insert(id.clone(), (lease, now + ttl));
        }
        Ok(Lease(lease))
    }

    async fn put(
        &self,
        entity: &EntitySchema,
        writes: &[RecordWrite],
        mode: WriteMode,
    ) -> StoreResult<Vec<WriteOutcome>> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let es = state.entities.entry(entity.entity).or_default();
        let now = inner.now();
        let mut out = Vec::with_capacity(writes.len());
        for write in writes {
            if let WriteMode::Fill(lease) = mode
                && !es.lease_holds(&write.id, lease, now)
            {
                out.push(WriteOutcome::LeaseLost);
                continue;
            }
            if is_newer(inner.cached_version(entity, &write.id).await, write.version) {
                out.push(WriteOutcome::StaleVersion);
                continue;
            }
            if let Some((deleted, _)) = inner.deleted(entity, &write.id).await {
                let refusal = match (mode, deleted.order(write.version, write.at)) {
                    (_, DeleteOrder::Newer) => None,
                    (WriteMode::Upsert, DeleteOrder::NotNewer) => Some(WriteOutcome::Deleted),
                    (WriteMode::Upsert, DeleteOrder::Unordered) => Some(WriteOutcome::Unordered),
                    // A fill read the source after the delete (its lease says so): only a
                    // version proves it read an older state (a lagging replica).
                    (WriteMode::Fill(_), _) => deleted
                        .version
                        .zip(write.version)
                        .is_some_and(|(deleted, written)| written <= deleted)
                        .then_some(WriteOutcome::Deleted),
                };
                if let Some(refusal) = refusal {
                    out.push(refusal);
                    continue;
                }
            }
            let previous = inner.write_record(es, entity, write).await;
            es.leases.remove(&write.id);
            if mode == WriteMode::Upsert {
                es.seq += 1;
            }
            out.push(WriteOutcome::Written { previous });
        }
        Ok(out)
    }

    async fn remove(
        &self,
        entity: &EntitySchema,
        ids: &[RecordId],
        mode: RemoveMode,
    ) -> StoreResult<Vec<Option<IndexEntries>>> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let State {
            entities, marker_use, ..
        } = &mut *state;
        let es = entities.entry(entity.entity).or_default();
        let now = inner.now();
        let mut out = Vec::with_capacity(ids.len());
        let mut wrote = false;
        for id in ids {
            if let RemoveMode::FillTombstone { lease, .. } = mode
                && !es.lease_holds(id, lease, now)
            {
                out.push(None);
                continue;
            }
            let earlier = inner.deleted(entity, id).await;
            let tombstone = match (mode, earlier) {
                (RemoveMode::Tombstone(tombstone), earlier) => {
                    wrote = true;
                    let tombstone = match earlier {
                        Some((earlier, _)) => tombstone.merge(earlier),
                        None => tombstone,
                    };
                    Some(Entry::tombstone(Some(tombstone), true, tombstone.ttl, now))
                }
                // A delete's tombstone keeps its order and answers reads again.
                (RemoveMode::FillTombstone { .. }, Some((deleted, entry))) => {
                    Some(Entry::tombstone_until(Some(deleted), true, entry.expires_at, now))
                }
                (RemoveMode::FillTombstone { ttl, .. }, None) => Some(Entry::tombstone(None, true, ttl, now)),
                // The next read must ask the source; a delete's order stays until it expires.
                (RemoveMode::Invalidate, Some((deleted, entry))) => {
                    wrote = true;
                    Some(Entry::tombstone_until(Some(deleted), false, entry.expires_at, now))
                }
                (RemoveMode::Invalidate, None) => {
                    wrote = true;
                    None
                }
            };
            es.leases.remove(id);
            inner.entries.invalidate(&Key::record(entity, id)).await;
            match tombstone {
                Some(entry) => inner.entries.insert(Key::tombstone(entity, id), entry).await,
                None => inner.entries.invalidate(&Key::tombstone(entity, id)).await,
            }
            out.push(es.unindex(id));
        }
        if wrote {
            es.seq += 1;
        }
        if mode == RemoveMode::Invalidate {
            es.invalidate_markers(marker_use);
        }
        Ok(out)
    }

    async fn query(&self, entity: &EntitySchema, query: &IndexQuery) -> StoreResult<QueryLookup> {
        let inner = &self.inner;
        // The page is chosen under the lock and its bodies read after it is released, so that
        // a hit does not hold every other caller through its reads.
        let (token, page) = {
            let mut state = inner.lock().await;
            let now = inner.now();
            let State {
                entities, marker_use, ..
            } = &mut *state;
            let es = entities.entry(entity.entity).or_default();
            let token = es.token();
            if !es.markers.holds(&query.filter_key(), es.epoch, now, marker_use) {
                return Ok(QueryLookup::Incomplete(token));
            }
            (token, es.page(query))
        };
        let mut bodies = Vec::with_capacity(page.len());
        for (id, filed) in &page {
            match inner.live(&Key::record(entity, id)).await {
                // Exactly the write the page was chosen by: the page is one snapshot.
                Some(Entry {
                    kind: Kind::Record { body, generation, .. },
                    ..
                }) if generation == *filed => bodies.push(body),
                // Expired, evicted, or written since: never a partial or mixed page.
                _ => return Ok(QueryLookup::Incomplete(token)),
            }
        }
        Ok(QueryLookup::Complete { page: bodies, token })
    }

    async fn complete_query(
        &self,
        entity: &EntitySchema,
        query: &IndexQuery,
        token: FillToken,
        records: &[RecordWrite],
    ) -> StoreResult<QueryFill> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let es = state.entities.entry(entity.entity).or_default();
        if es.token() != token {
            return Ok(QueryFill::Refused);
        }
        let filters = filters_of(query);
        let given: HashSet<&RecordId> = records.iter().map(|r| &r.id).collect();
        let dropped: Vec<RecordId> = es
            .matching(&filters)
            .into_iter()
            .filter(|id| !given.contains(id))
            .cloned()
            .collect();
        for id in &dropped {
            inner.entries.invalidate(&Key::record(entity, id)).await;
            es.unindex(id);
        }
        for write in records {
            if !is_newer(inner.cached_version(entity, &write.id).await, write.version) {
                inner.write_record(es, entity, write).await;
            }
        }
        // An empty result is a negative answer: anyone can ask for values that match nothing.
        let ttl = records.iter().map(|r| r.ttl).max().unwrap_or(entity.negative_ttl);
        let epoch = es.epoch;
        let expires_at = inner.now() + ttl;
        let State {
            entities, marker_use, ..
        } = &mut *state;
        if let Some(es) = entities.get_mut(entity.entity) {
            es.markers.insert(
                entity.entity,
                query.filter_key(),
                filters,
                epoch,
                expires_at,
                marker_use,
            );
        }
        inner.trim_markers(&mut state);
        Ok(QueryFill::Completed { forgotten: dropped })
    }

    fn scan_ids<'a>(&'a self, entity: &'a EntitySchema, batch: usize) -> BoxStream<'a, StoreResult<Vec<RecordId>>> {
        let batch = batch.max(1);
        stream::unfold(Some(None::<RecordId>), move |cursor| async move {
            let after = cursor?;
            let candidates: Vec<RecordId> = {
                let state = self.inner.lock().await;
                let es = state.entities.get(entity.entity)?;
                let range = match &after {
                    Some(after) => es
                        .indexed
                        .range::<RecordId, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
                    None => es.indexed.range::<RecordId, _>(..),
                };
                range.take(batch).map(|(id, _)| id.clone()).collect()
            };
            let last = candidates.last().cloned()?;
            let mut ids = Vec::with_capacity(candidates.len());
            for id in candidates {
                if self.inner.live(&Key::record(entity, &id)).await.is_some() {
                    ids.push(id);
                }
            }
            Some((Ok(ids), Some(Some(last))))
        })
        .filter(|batch| futures::future::ready(!matches!(batch, Ok(ids) if ids.is_empty())))
        .boxed()
    }

    async fn flush(&self, pattern: Option<&str>) -> StoreResult<u64> {
        if let Some(pattern) = pattern {
            keys::validate_pattern(pattern)?;
        }
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let now = inner.now();
        let keys: Vec<(Arc<Key>, Entry)> = inner
            .entries
            .iter()
            .filter(|(key, _)| pattern.is_none_or(|p| keys::glob_match(p, &key.to_string())))
            .collect();
        let mut removed = 0;
        for (key, entry) in keys {
            inner.entries.invalidate(&*key).await;
            if entry.expires_at > now {
                removed += 1;
            }
            match (&*key, &entry.kind) {
                (Key::Record(entity, id), _) => {
                    let State {
                        entities, marker_use, ..
                    } = &mut *state;
                    if let Some(es) = entities.get_mut(entity) {
                        es.unindex(id);
                        es.invalidate_markers(marker_use);
                    }
                }
                (Key::Value(k), Kind::Value { tags, .. }) => forget_value_tags(&mut state.value_tags, k, tags),
                _ => {}
            }
        }
        if pattern.is_none() {
            // Keep epochs and sequences: a fill token issued before the flush stays void.
            let State {
                entities, marker_use, ..
            } = &mut *state;
            for es in entities.values_mut() {
                es.indexed.clear();
                es.tags.clear();
                es.leases.clear();
                es.invalidate_markers(marker_use);
                es.seq += 1;
            }
            state.value_tags.clear();
        }
        Ok(removed)
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn stats(&self) -> StoreResult<StoreStats> {
        let inner = &self.inner;
        inner.entries.run_pending_tasks().await;
        let (markers, side_bytes) = {
            let state = inner.lock().await;
            let leases: usize = state.entities.values().map(|es| es.leases.len()).sum();
            let markers: usize = state.entities.values().map(|es| es.markers.len()).sum();
            let side = state.marker_use.bytes + leases * LEASE_WEIGHT + state.computed.marks_weight();
            (markers, side)
        };
        let now = inner.now();
        let entries = inner.entries.iter().filter(|(_, e)| e.expires_at > now).count();
        // Markers are keys too, as on Redis; leases are not counted (they live seconds).
        let total_keys = (entries + markers) as u64;
        let used = inner.entries.weighted_size() + side_bytes as u64;
        Ok(StoreStats {
            backend: "memory".to_owned(),
            total_keys,
            memory_used_bytes: Some(used),
            memory_used_human: Some(human_bytes(used)),
            total_keys_exact: true,
            ..StoreStats::default()
        })
    }

    async fn get_value(&self, key: &str) -> StoreResult<Option<Bytes>> {
        Ok(match self.inner.live(&Key::Value(key.to_owned())).await {
            Some(Entry {
                kind: Kind::Value { body, .. },
                ..
            }) => Some(body),
            _ => None,
        })
    }

    async fn put_value(&self, key: &str, value: Bytes, ttl: Duration, tags: &[String]) -> StoreResult<()> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let k = Key::Value(key.to_owned());
        if let Some(Entry {
            kind: Kind::Value { tags: old, .. },
            ..
        }) = inner.entries.get(&k).await
        {
            forget_value_tags(&mut state.value_tags, key, &old);
        }
        for tag in tags {
            state.value_tags.entry(tag.clone()).or_default().insert(key.to_owned());
        }
        let entry = Entry {
            kind: Kind::Value {
                body: value,
                tags: tags.into(),
            },
            ttl,
            expires_at: inner.now() + ttl,
        };
        inner.entries.insert(k, entry).await;
        Ok(())
    }

    async fn purge_tags(&self, tags: &[String]) -> StoreResult<u64> {
        let inner = &self.inner;
        let mut state = inner.lock().await;
        let now = inner.now();
        state
            .computed
            .purged(tags, now, &inner.purges, inner.side_budget as usize);
        let mut keys = BTreeSet::new();
        for tag in tags {
            if let Some(found) = state.value_tags.remove(tag) {
                keys.extend(found);
            }
        }
        let mut removed = 0;
        for key in keys {
            if let Some(entry) = inner.entries.remove(&Key::Value(key.clone())).await {
                if let Kind::Value { tags, .. } = &entry.kind {
                    forget_value_tags(&mut state.value_tags, &key, tags);
                }
                if entry.expires_at > inner.now() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    async fn advance_watermark(&self, key: &str, value: i64, ttl: Duration) -> StoreResult<bool> {
        self.watermark_advance(key, value, ttl).await
    }

    async fn get_computed(&self, key: &str) -> StoreResult<crate::store::ComputedLookup> {
        self.computed_get(key).await
    }

    async fn put_computed(&self, key: &str, write: &crate::store::ComputedWrite) -> StoreResult<bool> {
        self.computed_put(key, write).await
    }

    async fn lock_computed(&self, key: &str, ttl: Duration) -> StoreResult<crate::store::LockAttempt> {
        self.computed_lock(key, ttl).await
    }

    async fn unlock_computed(&self, key: &str, lock: crate::store::ComputeLock) -> StoreResult<()> {
        self.computed_unlock(key, lock).await
    }

    async fn extend_computed(&self, key: &str, lock: crate::store::ComputeLock, ttl: Duration) -> StoreResult<bool> {
        self.computed_extend(key, lock, ttl).await
    }

    async fn wait_computed(&self, key: &str, timeout: Duration) -> StoreResult<crate::store::LockWait> {
        self.computed_wait(key, timeout).await
    }
}
