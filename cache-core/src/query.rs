//! Index queries: equality on indexed fields, ordered by a sortable field, paged.

use std::{fmt, marker::PhantomData};

use serde::Serialize;

use crate::{Cacheable, schema::SortField};

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Smallest first.
    Asc,
    /// Largest first.
    Desc,
}

/// One equality condition: `field = value`, the value normalised as the index stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Filter {
    /// The Rust name of the indexed field.
    pub field: &'static str,
    /// The normalised value.
    pub value: String,
}

/// The order of a query's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Sort {
    /// The Rust name of the sortable field.
    pub field: &'static str,
    /// The direction.
    pub order: Order,
}

/// An untyped index query, as stores and origins see it.
///
/// Results are ordered by the sort field when there is one, ties (and unsorted queries) by
/// record id, in the direction of the sort (ascending when unsorted). Every store and origin
/// orders the same way, so a page from the cache equals the page from the origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct IndexQuery {
    /// The conditions, all of which must hold; sorted by field and deduplicated.
    pub filters: Vec<Filter>,
    /// The order, if any.
    pub sort: Option<Sort>,
    /// Results to skip.
    pub offset: usize,
    /// Results to return at most.
    pub limit: Option<usize>,
}

impl IndexQuery {
    /// A query over every record of the entity.
    pub fn all() -> Self {
        Self {
            filters: Vec::new(),
            sort: None,
            offset: 0,
            limit: None,
        }
    }

    /// Adds a condition, keeping the filters in canonical order.
    pub fn filter(mut self, field: &'static str, value: String) -> Self {
        let filter = Filter { field, value };
        if let Err(at) = self.filters.binary_search(&filter) {
            self.filters.insert(at, filter);
        }
        self
    }

    /// The canonical text of the filter part (`event=recE1&slug=x`, values percent-encoded),
    /// the same for every query with the same conditions whatever the sort and page. Stores
    /// key completeness markers by it (hashed), and the HTTP layer tags responses with it.
    pub fn filter_key(&self) -> String {
        if self.filters.is_empty() {
            return "*".to_owned();
        }
        let mut out = String::new();
        for (i, f) in self.filters.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            out.push_str(f.field);
            out.push('=');
            out.push_str(&crate::keys::encode_component(&f.value));
        }
        out
    }

    /// The same conditions with no sort and no paging: what the cache asks the origin for to
    /// learn a complete result.
    pub fn unpaged(&self) -> Self {
        Self {
            filters: self.filters.clone(),
            sort: self.sort,
            offset: 0,
            limit: None,
        }
    }
}

/// A typed query over `T`, built from the derive's constructors
/// (`Project::by_event(&id)`, `Project::by_slug("x")`) and refined with [`Query::and`],
/// [`Query::sort`], [`Query::offset`] and [`Query::limit`].
pub struct Query<T> {
    inner: IndexQuery,
    model: PhantomData<fn() -> T>,
}

impl<T: Cacheable> Query<T> {
    /// Every record of `T`.
    pub fn all() -> Self {
        Self::from_untyped(IndexQuery::all())
    }

    /// A query with one condition. The derive's `by_*` constructors call this with a field
    /// they checked is indexed; call those rather than this.
    #[doc(hidden)]
    pub fn filter_unchecked(field: &'static str, value: String) -> Self {
        Self::all().and_filter(field, value)
    }

    fn and_filter(mut self, field: &'static str, value: String) -> Self {
        self.inner = self.inner.filter(field, value);
        self
    }

    fn from_untyped(inner: IndexQuery) -> Self {
        Self {
            inner,
            model: PhantomData,
        }
    }

    /// Both queries' conditions.
    pub fn and(mut self, other: Query<T>) -> Self {
        for f in other.inner.filters {
            self = self.and_filter(f.field, f.value);
        }
        self
    }

    /// Orders the results by a sortable field.
    pub fn sort(mut self, field: T::Sort, order: Order) -> Self {
        self.inner.sort = Some(Sort {
            field: field.field_name(),
            order,
        });
        self
    }

    /// Orders the results by a sortable field, smallest first.
    pub fn asc(self, field: T::Sort) -> Self {
        self.sort(field, Order::Asc)
    }

    /// Orders the results by a sortable field, largest first.
    pub fn desc(self, field: T::Sort) -> Self {
        self.sort(field, Order::Desc)
    }

    /// Skips the first `offset` results.
    pub fn offset(mut self, offset: usize) -> Self {
        self.inner.offset = offset;
        self
    }

    /// Returns at most `limit` results.
    pub fn limit(mut self, limit: usize) -> Self {
        self.inner.limit = Some(limit);
        self
    }

    /// The untyped query.
    pub fn as_index_query(&self) -> &IndexQuery {
        &self.inner
    }

    /// Consumes the typed query into the untyped one.
    pub fn into_index_query(self) -> IndexQuery {
        self.inner
    }
}

impl<T> Clone for Query<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            model: PhantomData,
        }
    }
}

impl<T> fmt::Debug for Query<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
