//! The one order of query results, shared by the cache, the in-memory origin and every store
//! (the in-memory store sorts with it, the Redis store merges its buckets with it), so that a
//! page from a store equals the page from the origin.

use std::cmp::Ordering;

use crate::Order;

/// Compares two query results by (score, id): ascending when `order` is `None` or `Asc`, both
/// parts reversed when `Desc`. Unsorted queries pass equal scores, leaving the id order. The id
/// is anything ordered as the id's text is (`RecordId`, `str`).
///
/// Scores are never NaN ([`SortKey`](crate::schema::SortKey) scores a NaN `-inf`); -0.0 equals 0.0,
/// as in Redis.
///
/// ```
/// use cache_core::{Order, order::compare_scored};
/// use std::cmp::Ordering;
///
/// assert_eq!(compare_scored((1.0, "b"), (1.0, "a"), None), Ordering::Greater);
/// assert_eq!(compare_scored((1.0, "b"), (2.0, "a"), Some(Order::Desc)), Ordering::Greater);
/// assert_eq!(compare_scored((-0.0, "a"), (0.0, "a"), Some(Order::Asc)), Ordering::Equal);
/// ```
pub fn compare_scored<I: Ord + ?Sized>(a: (f64, &I), b: (f64, &I), order: Option<Order>) -> Ordering {
    // `+ 0.0` makes -0.0 equal to 0.0, as Redis scores are.
    let ascending = (a.0 + 0.0).total_cmp(&(b.0 + 0.0)).then_with(|| a.1.cmp(b.1));
    match order {
        Some(Order::Desc) => ascending.reverse(),
        Some(Order::Asc) | None => ascending,
    }
}
