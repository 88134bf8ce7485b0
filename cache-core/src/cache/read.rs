//! The read path: `get`, `get_many` and their views, and the fill pipeline a miss runs:
//! the store read (`read_store`), the in-process flight (`fetch_records`), the lease and the
//! origin call (`fill_records`, `origin_fetch`), and the write of what the origin answered
//! under the lease (`store_fill`). Queries share its origin and fill steps (`query.rs`).

use super::*;

impl Cache {
    /// Reads one record: from the store, or on a miss from the origin (then stored). `None`
    /// when the source does not have it (remembered as a fill tombstone for the entity's
    /// `negative_ttl`). An origin failure is an error and is never cached; a store failure is
    /// logged and answered from the origin.
    pub async fn get<T: Cacheable>(&self, id: &RecordId) -> Result<Option<T>, CacheError> {
        let schema = T::schema();
        let op = self.operation(schema.entity, Operation::Get);
        dependencies::record_tags(std::iter::once_with(|| keys::record_tag(schema.entity, id)));
        if let Some(record) = crate::near::get::<T>(self, id) {
            op.near_hit();
            return Ok(Some(record));
        }
        let mut slot = [None];
        self.read_records::<T>(schema, std::slice::from_ref(id), Fetch::One, &op, &mut slot)
            .await?;
        let [record] = slot;
        Ok(record)
    }

    /// Reads many records in one store round trip and at most one origin call: the records
    /// found, in the order of `ids` (each id once, at its first position); ids the source does
    /// not have are absent.
    pub async fn get_many<T: Cacheable>(&self, ids: &[RecordId]) -> Result<Vec<T>, CacheError> {
        let schema = T::schema();
        let op = self.operation(schema.entity, Operation::GetMany);
        let ids = distinct(ids);
        dependencies::record_tags(ids.iter().map(|id| keys::record_tag(schema.entity, id)));
        let mut slots: Vec<Option<T>> = ids.iter().map(|_| None).collect();
        self.read_records::<T>(schema, &ids, Fetch::Many, &op, &mut slots)
            .await?;
        Ok(slots.into_iter().flatten().collect())
    }

    /// [`Cache::get`], returning a view of the model.
    pub async fn get_as<T: Cacheable, V: CacheView<T>>(&self, id: &RecordId) -> Result<Option<V>, CacheError> {
        Ok(self.get::<T>(id).await?.map(V::from_model))
    }

    /// [`Cache::get_many`], returning views of the model.
    pub async fn get_many_as<T: Cacheable, V: CacheView<T>>(&self, ids: &[RecordId]) -> Result<Vec<V>, CacheError> {
        Ok(self.get_many::<T>(ids).await?.into_iter().map(V::from_model).collect())
    }

    /// Reads `ids` (distinct) through the cache into `slots` (empty, one per id): the caller
    /// owns them, so that `get` allocates no list.
    pub(super) async fn read_records<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        fetch: Fetch,
        op: &OperationGuard<'_>,
        slots: &mut [Option<T>],
    ) -> Result<(), CacheError> {
        let inner = &self.inner;
        if ids.is_empty() {
            return Ok(());
        }
        if !inner.enabled {
            op.bypassed(ids.len() as u64);
            let mut found = self
                .origin_fetch(schema, ids, fetch)
                .await
                .map_err(CacheError::Origin)?;
            for (slot, id) in slots.iter_mut().zip(ids) {
                if let Some(source) = found.remove(id) {
                    *slot = Some(T::from_source(source)?);
                }
            }
            return Ok(());
        }
        let (misses, coalesce) = if dependencies::refresh_requested() {
            op.bypassed(ids.len() as u64);
            ((0..ids.len()).collect(), false)
        } else {
            (crate::near::read_records(self, schema, ids, op, slots).await, true)
        };
        if misses.is_empty() {
            return Ok(());
        }
        let miss_ids: Vec<RecordId> = misses.iter().map(|&i| ids[i].clone()).collect();
        let found = self
            .fetch_records::<T>(schema, &miss_ids, fetch, coalesce.then_some(op))
            .await?;
        for i in misses {
            if let Some(record) = found.iter().find_map(|flight| flight.get(&ids[i])) {
                slots[i] = Some(record.decode()?);
            }
        }
        Ok(())
    }

    /// Looks `ids` up in the store, filling the slots of hits (each shown to `keep` with its
    /// position and body first); answers the positions of misses.
    pub(crate) async fn read_store<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        op: &OperationGuard<'_>,
        slots: &mut [Option<T>],
        mut keep: impl FnMut(usize, &T, &Bytes),
    ) -> Vec<usize> {
        let inner = &self.inner;
        let entity = schema.entity;
        let step = StoreStep::Read(op.operation());
        // One id (`Cache::get`) asks `Store::get_with_copy` and allocates no list of lookups.
        let (one, many) = if let [id] = ids {
            let lookup = inner.store.get_with_copy(schema, id).await.unwrap_or_else(|err| {
                self.store_failed(entity, step, &err);
                (Lookup::Miss, None)
            });
            (Some(lookup), Vec::new())
        } else {
            let lookups = match inner.store.get_many(schema, ids).await {
                Ok(lookups) if lookups.len() == ids.len() => lookups,
                Ok(lookups) => {
                    let err = StoreError::Backend(format!("answered {} lookups for {} ids", lookups.len(), ids.len()));
                    self.store_failed(entity, step, &err);
                    vec![Lookup::Miss; ids.len()]
                }
                Err(err) => {
                    self.store_failed(entity, step, &err);
                    vec![Lookup::Miss; ids.len()]
                }
            };
            (None, lookups)
        };
        let (mut hits, mut tombstones) = (0, 0);
        let mut misses = Vec::new();
        let lookups = one.into_iter().chain(many.into_iter().map(|lookup| (lookup, None)));
        for (i, (lookup, copy)) in lookups.enumerate() {
            match lookup {
                Lookup::Hit(bytes) => match decoded(copy.as_ref(), &bytes) {
                    Ok(record) => {
                        keep(i, &record, &bytes);
                        slots[i] = Some(record);
                        hits += 1;
                    }
                    Err(err) => {
                        tracing::warn!(entity, id = %ids[i], error = %err, "cache_unreadable");
                        misses.push(i);
                    }
                },
                Lookup::Tombstone => tombstones += 1,
                Lookup::Miss => misses.push(i),
            }
        }
        op.looked_up(hits, tombstones, misses.len() as u64);
        misses
    }

    /// Fetches `ids` from the origin, joining the flights already fetching some of them
    /// (when `coalesce`, counted as the operation's) and starting one flight for the rest; the
    /// flight stores what it finds. Answers what each of those flights found.
    pub(super) async fn fetch_records<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        fetch: Fetch,
        coalesce: Option<&OperationGuard<'_>>,
    ) -> Result<Vec<Arc<HashMap<RecordId, Found>>>, CacheError> {
        let entity = schema.entity;
        let start = |ids: Vec<RecordId>, registered: bool| {
            let what = if registered {
                FlightOf::Records(ids.clone())
            } else {
                FlightOf::Unregistered
            };
            let cache = self.clone();
            self.start_flight(entity, what, async move {
                cache.fill_records::<T>(schema, &ids, fetch).await
            })
        };
        let flights = if let Some(op) = coalesce {
            let joined = self
                .inner
                .flights
                .join_records(entity, ids, |rest| start(rest.to_vec(), true));
            op.coalesced(joined.joined_ids);
            joined.flights
        } else {
            vec![start(ids.to_vec(), false).1]
        };
        futures::future::join_all(flights)
            .await
            .into_iter()
            .map(|outcome| outcome.map_err(CacheError::Origin))
            .collect()
    }

    /// Runs `work` as a flight: its own task, recording into the caller's dependency scopes,
    /// that unregisters `what` from the flights when it ends (even by a panic).
    pub(super) fn start_flight<O: Clone + Send + Sync + 'static>(
        &self,
        entity: &'static str,
        what: FlightOf,
        work: impl Future<Output = Result<O, Arc<OriginError>>> + Send + 'static,
    ) -> (u64, Flight<Result<O, Arc<OriginError>>>) {
        let fid = self.inner.flights.next_id();
        let guard = FlightGuard {
            flights: Arc::clone(&self.inner.flights),
            entity,
            fid,
            what,
        };
        let scopes = dependencies::current();
        let work = async move {
            let _guard = guard;
            // The flight records (store errors, refusals) into the scope of who started it.
            dependencies::within(scopes, work).await
        };
        (fid, spawn_shared(work.instrument(tracing::Span::current())))
    }

    /// A record flight: lease, ask the origin, store what it found (under the lease) and
    /// tombstone what it lacks.
    pub(super) async fn fill_records<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        fetch: Fetch,
    ) -> RecordsOutcome {
        let inner = &self.inner;
        let lease = match inner.store.lease(schema, ids, inner.lease_ttl).await {
            Ok(lease) => Some(lease),
            Err(err) => {
                self.store_failed(schema.entity, StoreStep::Lease, &err);
                None
            }
        };
        let fetched = self.origin_fetch(schema, ids, fetch).await?;
        let mut found = HashMap::with_capacity(fetched.len());
        let mut writes = Vec::with_capacity(fetched.len());
        for (id, source) in fetched {
            let record = match self.read_source::<T>(source) {
                OriginRecord::Storable(write) => {
                    let body = Found::Cached(write.body.clone());
                    writes.push(write);
                    body
                }
                OriginRecord::Unstorable(source, _) => Found::Source(source),
                OriginRecord::Unreadable(err) => Found::Unreadable(Arc::new(err)),
            };
            found.insert(id, record);
        }
        if let Some(lease) = lease {
            self.store_fill(schema, lease, ids, &found, &writes).await;
        }
        Ok(Arc::new(found))
    }

    /// Asks the origin for `ids`, keeping only the records asked for.
    pub(super) async fn origin_fetch(
        &self,
        schema: &'static EntitySchema,
        ids: &[RecordId],
        fetch: Fetch,
    ) -> Result<HashMap<RecordId, SourceRecord>, Arc<OriginError>> {
        let origin = &self.inner.origin;
        let fetched = match (fetch, ids) {
            (Fetch::One, [id]) => {
                self.ask_origin(schema.entity, OriginCall::Fetch, async {
                    Ok(origin.fetch(schema, id).await?.into_iter().collect())
                })
                .await
            }
            _ => {
                self.ask_origin(schema.entity, OriginCall::FetchMany, origin.fetch_many(schema, ids))
                    .await
            }
        };
        let asked: HashSet<&RecordId> = ids.iter().collect();
        Ok(fetched
            .map_err(Arc::new)?
            .into_iter()
            .filter(|r| asked.contains(&r.id))
            .map(|r| (r.id.clone(), r))
            .collect())
    }

    /// Reads a record the origin gave with the model, into what a flight stores and answers.
    pub(super) fn read_source<T: Cacheable>(&self, source: SourceRecord) -> OriginRecord {
        let entity = T::schema().entity;
        let id = source.id.clone();
        let record = match T::from_source(source) {
            Ok(record) => record,
            Err(err) => {
                tracing::warn!(entity, %id, error = %err, "cache_unparseable");
                return OriginRecord::Unreadable(err);
            }
        };
        match self.record_write(&record) {
            Ok(write) => OriginRecord::Storable(write),
            Err(err) => {
                tracing::warn!(entity, %id, error = %err, "cache_unparseable");
                match record.to_source() {
                    Ok(source) => OriginRecord::Unstorable(source, record.index_entries()),
                    Err(err) => OriginRecord::Unreadable(err),
                }
            }
        }
    }

    pub(super) async fn store_fill(
        &self,
        schema: &'static EntitySchema,
        lease: crate::store::Lease,
        ids: &[RecordId],
        found: &HashMap<RecordId, Found>,
        writes: &[RecordWrite],
    ) {
        let inner = &self.inner;
        let entity = schema.entity;
        let mut tags = Vec::new();
        if !writes.is_empty() {
            match inner.store.put(schema, writes, WriteMode::Fill(lease)).await {
                Ok(outcomes) => {
                    let mut stored = 0;
                    for (write, outcome) in writes.iter().zip(outcomes) {
                        match outcome {
                            WriteOutcome::Written { previous } => {
                                stored += 1;
                                if let Some(previous) = previous {
                                    tags.extend(write_tags(schema, &write.id, Some(&previous), Some(&write.index)));
                                }
                            }
                            WriteOutcome::LeaseLost => self.stale_refused(entity, &write.id, StaleReason::Lease),
                            WriteOutcome::StaleVersion => self.stale_refused(entity, &write.id, StaleReason::Version),
                            WriteOutcome::Deleted | WriteOutcome::Unordered => {
                                self.stale_refused(entity, &write.id, StaleReason::Deleted);
                            }
                        }
                    }
                    tracing::debug!(entity, stored, "cache_miss_stored");
                }
                Err(err) => self.store_failed(entity, StoreStep::Put, &err),
            }
        }
        let missing: Vec<RecordId> = ids.iter().filter(|id| !found.contains_key(*id)).cloned().collect();
        if !missing.is_empty() {
            let mode = RemoveMode::FillTombstone {
                lease,
                // A negative answer: short-lived, unlike a delete the source reported.
                ttl: self.jittered(schema.negative_ttl),
            };
            match inner.store.remove(schema, &missing, mode).await {
                Ok(previous) => {
                    // Only what the cache held is purged. A miss the cache held nothing for
                    // changes nothing it served, and a purge would leave a purge mark per
                    // distinct miss (a key per random id on Redis, for `PURGE_MEMORY`).
                    for (id, previous) in missing.iter().zip(previous) {
                        if let Some(previous) = previous {
                            tags.push(keys::record_tag(entity, id));
                            tags.extend(write_tags(schema, id, Some(&previous), None));
                        }
                    }
                }
                Err(err) => self.store_failed(entity, StoreStep::Remove, &err),
            }
        }
        self.purge(schema, tags).await;
    }
}

/// A hit's record: a clone of the decoded copy the store keeps beside `bytes` when it holds a
/// `T`, otherwise `bytes` decoded (and kept there for the next read, when the store keeps
/// copies and the model can be copied: [`Cacheable::near_copy`]).
fn decoded<T: Cacheable>(copy: Option<&DecodedCopy>, bytes: &Bytes) -> Result<T, crate::schema::ModelError> {
    let Some(copy) = copy else {
        return T::from_cached(bytes);
    };
    if let Some(record) = copy.get::<T>().and_then(T::near_copy) {
        return Ok(record);
    }
    let record = T::from_cached(bytes)?;
    if let Some(kept) = record.near_copy() {
        copy.keep(kept);
    }
    Ok(record)
}

/// A record the origin gave, read by the model.
pub(super) enum OriginRecord {
    /// Readable and encodable: the write that stores it (its body is what callers decode).
    Storable(RecordWrite),
    /// Readable, but the model cannot encode it: not stored; callers read its source form,
    /// with these index entries.
    Unstorable(SourceRecord, IndexEntries),
    /// The model cannot read it.
    Unreadable(crate::schema::ModelError),
}

/// How a record flight asks the origin.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fetch {
    /// `Origin::fetch` (one id).
    One,
    /// `Origin::fetch_many`.
    Many,
}

/// `ids` without repeats, each at its first position; borrowed when there are none (the usual
/// case), so that a read of distinct ids copies nothing.
pub(super) fn distinct(ids: &[RecordId]) -> Cow<'_, [RecordId]> {
    if ids.len() < 2 {
        return Cow::Borrowed(ids);
    }
    let mut seen = HashSet::with_capacity(ids.len());
    match ids.iter().position(|id| !seen.insert(id)) {
        None => Cow::Borrowed(ids),
        Some(first_repeat) => {
            let mut distinct = ids[..first_repeat].to_vec();
            distinct.extend(ids[first_repeat..].iter().filter(|id| seen.insert(*id)).cloned());
            Cow::Owned(distinct)
        }
    }
}
