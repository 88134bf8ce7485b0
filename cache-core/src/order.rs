//! The one order of query results, shared by the cache and the in-memory store so that a page
//! from the store equals the page from the origin.

use std::cmp::Ordering;

use crate::{Order, RecordId};

/// Compares two results by (score, id): ascending when `order` is `None` or `Asc`, both parts
/// reversed when `Desc`. Unsorted queries pass equal scores, leaving the id order.
pub(crate) fn compare(order: Option<Order>, a: (f64, &RecordId), b: (f64, &RecordId)) -> Ordering {
    // `+ 0.0` makes -0.0 equal to 0.0, as Redis scores are.
    let ascending = (a.0 + 0.0).total_cmp(&(b.0 + 0.0)).then_with(|| a.1.cmp(b.1));
    match order {
        Some(Order::Desc) => ascending.reverse(),
        Some(Order::Asc) | None => ascending,
    }
}
