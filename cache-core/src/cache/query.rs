//! Index queries: answered from the store when its completeness marker holds, otherwise
//! filled from the origin under a fill token (`run_query`, `fill_query`).

use super::*;

impl Cache {
    /// Runs an index query: from the store when it holds the complete result, otherwise from
    /// the origin (whose complete, unpaged result is then stored and marked complete). Results
    /// are ordered by the sort field, ties and unsorted results by id, in the sort's direction
    /// (ascending when unsorted).
    pub async fn query<T: Cacheable>(&self, query: Query<T>) -> Result<Vec<T>, CacheError> {
        let schema = T::schema();
        let op = self.operation(schema.entity, Operation::Query);
        let query = query.into_index_query();
        validate(schema, &query)?;
        if query.filters.is_empty() {
            dependencies::record_tags(std::iter::once_with(|| keys::entity_tag(schema.entity)));
        } else {
            dependencies::record_tags(
                query
                    .filters
                    .iter()
                    .map(|f| keys::index_tag(schema.entity, f.field, &f.value)),
            );
        }
        self.run_query::<T>(schema, &query, &op).await
    }

    /// [`Cache::query`], returning views of the model.
    pub async fn query_as<T: Cacheable, V: CacheView<T>>(&self, query: Query<T>) -> Result<Vec<V>, CacheError> {
        Ok(self.query::<T>(query).await?.into_iter().map(V::from_model).collect())
    }

    pub(super) async fn run_query<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        query: &IndexQuery,
        op: &OperationGuard<'_>,
    ) -> Result<Vec<T>, CacheError> {
        let inner = &self.inner;
        let entity = schema.entity;
        if !inner.enabled {
            op.bypassed(1);
            let source = source_query(schema, query)?;
            let records = self
                .ask_origin(entity, OriginCall::Query, inner.origin.query(schema, &source))
                .await;
            return records?
                .into_iter()
                .map(|r| T::from_source(r).map_err(Into::into))
                .collect();
        }
        let refresh = dependencies::refresh_requested();
        // The near cache answers what it holds; otherwise the stamp keeps the store's answer.
        let near = match refresh {
            false => crate::near::query::<T>(self, query),
            true => Err(None),
        };
        let near = match near {
            Ok(records) => return Ok(records),
            Err(stamp) => stamp,
        };
        // Whatever the store answers, the result is refilled through the fill token, as a miss
        // is: a write during the origin call refuses the refill.
        let token = match inner.store.query(schema, query).await {
            Ok(QueryLookup::Complete { page, token }) if !refresh => {
                match page.iter().map(|b| T::from_cached(b)).collect::<Result<Vec<T>, _>>() {
                    Ok(records) => {
                        crate::near::keep_query(self, near, query, &records, &page);
                        op.looked_up(1, 0, 0);
                        return Ok(records);
                    }
                    Err(err) => {
                        // The refill replaces the bodies the model cannot read.
                        tracing::warn!(entity, error = %err, "cache_unreadable");
                        Some(token)
                    }
                }
            }
            Ok(QueryLookup::Complete { token, .. } | QueryLookup::Incomplete(token)) => Some(token),
            Err(err) => {
                self.store_failed(entity, StoreStep::Read(Operation::Query), &err);
                None
            }
        };
        match refresh {
            true => op.bypassed(1),
            false => op.looked_up(0, 0, 1),
        }
        let start = |unpaged: IndexQuery, registered: bool| {
            let what = if registered {
                FlightOf::Query(unpaged.clone())
            } else {
                FlightOf::Unregistered
            };
            let cache = self.clone();
            self.start_flight(entity, what, async move {
                cache.fill_query::<T>(schema, &unpaged, token).await
            })
        };
        let unpaged = query.unpaged();
        let flight = if refresh {
            // A refresh neither joins a flight that began before it nor is joined.
            start(unpaged, false).1
        } else {
            let (flight, joined) = inner
                .flights
                .join_query(entity, &unpaged, || start(unpaged.clone(), true));
            if joined {
                op.coalesced(1);
            }
            flight
        };
        let found = flight.await.map_err(CacheError::Origin)?;
        // A record the model cannot read fails the query, in the page or not.
        if let Some(Found::Unreadable(err)) = found.iter().find(|f| matches!(f, Found::Unreadable(_))) {
            return Err(CacheError::Model(err.shared_copy()));
        }
        found
            .iter()
            .skip(query.offset)
            .take(query.limit.unwrap_or(usize::MAX))
            .map(Found::decode)
            .collect()
    }

    /// A query flight: ask the origin for the complete result, store it marked complete when
    /// the fill token still holds, and answer it in the query's order.
    pub(super) async fn fill_query<T: Cacheable>(
        &self,
        schema: &'static EntitySchema,
        unpaged: &IndexQuery,
        token: Option<FillToken>,
    ) -> QueryOutcome {
        let inner = &self.inner;
        let entity = schema.entity;
        let source = SourceQuery::from_index_query(schema, unpaged)
            .ok_or_else(|| Arc::new(OriginError::Unsupported(format!("a field of {unpaged:?} on {entity}"))))?;
        let records = self
            .ask_origin(entity, OriginCall::Query, inner.origin.query(schema, &source))
            .await
            .map_err(Arc::new)?;
        let mut rows = Vec::with_capacity(records.len());
        let mut writes = Vec::with_capacity(records.len());
        let mut complete = true;
        for source in records {
            let id = source.id.clone();
            let (score, found) = match self.read_source::<T>(source) {
                OriginRecord::Storable(write) => {
                    let row = (sort_score(unpaged, &write.index), Found::Cached(write.body.clone()));
                    writes.push(write);
                    row
                }
                OriginRecord::Unstorable(source, index) => {
                    complete = false;
                    (sort_score(unpaged, &index), Found::Source(source))
                }
                OriginRecord::Unreadable(err) => {
                    complete = false;
                    (f64::NEG_INFINITY, Found::Unreadable(Arc::new(err)))
                }
            };
            rows.push((score, id, found));
        }
        // Only the origin's whole result can be marked complete.
        if let (true, Some(token)) = (complete, token) {
            match inner.store.complete_query(schema, unpaged, token, &writes).await {
                Ok(QueryFill::Completed { forgotten }) => {
                    tracing::debug!(entity, records = writes.len(), "cache_miss_stored");
                    if !forgotten.is_empty() {
                        // The source no longer files them here (deleted, or moved): what was
                        // tagged by them, or by the result they left, is stale.
                        let mut tags = vec![keys::entity_tag(entity)];
                        tags.extend(forgotten.iter().map(|id| keys::record_tag(entity, id)));
                        tags.extend(
                            unpaged
                                .filters
                                .iter()
                                .map(|f| keys::index_tag(entity, f.field, &f.value)),
                        );
                        self.purge(schema, tags).await;
                    }
                }
                Ok(QueryFill::Refused) => {
                    inner.stats.stale(entity, StaleReason::FillToken, 1);
                    tracing::debug!(entity, reason = "fill_token", "cache_stale_refused");
                }
                Err(err) => self.store_failed(entity, StoreStep::CompleteQuery, &err),
            }
        }
        let direction = unpaged.sort.map(|s| s.order);
        rows.sort_by(|a, b| order::compare_scored((a.0, &a.1), (b.0, &b.1), direction));
        Ok(Arc::new(rows.into_iter().map(|(_, _, found)| found).collect()))
    }
}

pub(super) fn sort_score(query: &IndexQuery, entries: &IndexEntries) -> f64 {
    query
        .sort
        .and_then(|s| entries.score(s.field))
        .unwrap_or(f64::NEG_INFINITY)
}

/// Checks that a query filters on indexed fields and sorts by a sortable one.
pub(super) fn validate(schema: &'static EntitySchema, query: &IndexQuery) -> Result<(), CacheError> {
    let invalid = |reason: String| CacheError::InvalidQuery {
        entity: schema.entity,
        reason,
    };
    for filter in &query.filters {
        match schema.field(filter.field) {
            Some(field) if field.index.is_some() => {}
            Some(_) => return Err(invalid(format!("`{}` is not indexed", filter.field))),
            None => return Err(invalid(format!("no field `{}`", filter.field))),
        }
    }
    if let Some(sort) = query.sort {
        match schema.field(sort.field) {
            Some(field) if field.sortable => {}
            Some(_) => return Err(invalid(format!("`{}` is not sortable", sort.field))),
            None => return Err(invalid(format!("no field `{}`", sort.field))),
        }
    }
    Ok(())
}

pub(super) fn source_query(schema: &'static EntitySchema, query: &IndexQuery) -> Result<SourceQuery, CacheError> {
    SourceQuery::from_index_query(schema, query).ok_or_else(|| CacheError::InvalidQuery {
        entity: schema.entity,
        reason: "names a field the entity does not have".to_owned(),
    })
}
