//! The response cache's metric, `model_cache_http_response_cache_total`, by resource and
//! outcome. Each counter is registered once and kept, as cache-core keeps its own, so that a
//! hit increments it without building and looking up a metric key.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, PoisonError, RwLock},
};

use metrics::Counter;

use crate::metrics::RESPONSE_CACHE_TOTAL;

/// What happened to a request, the metric's `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Hit,
    Coalesced,
    NotModified,
    Skipped,
    Miss,
    Stored,
    Refused,
}

impl Outcome {
    const COUNT: usize = 7;

    fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Coalesced => "coalesced",
            Self::NotModified => "not_modified",
            Self::Skipped => "skipped",
            Self::Miss => "miss",
            Self::Stored => "stored",
            Self::Refused => "refused",
        }
    }
}

/// The counters of one `resource` label.
#[derive(Debug)]
pub(crate) struct Meter {
    resource: String,
    counters: [OnceLock<Counter>; Outcome::COUNT],
}

impl Meter {
    /// Counts one request with `outcome`.
    pub(crate) fn count(&self, outcome: Outcome) {
        self.counters[outcome as usize]
            .get_or_init(|| {
                metrics::counter!(RESPONSE_CACHE_TOTAL, "resource" => self.resource.clone(), "outcome" => outcome.label())
            })
            .increment(1);
    }
}

/// The meters of a layer, one per `resource` label. Bounded by the labels, which come from the
/// layer's configuration or its routes' literal segments, never from a raw path.
#[derive(Debug, Default)]
pub(crate) struct Meters(RwLock<HashMap<String, Arc<Meter>>>);

impl Meters {
    /// The meter of `resource`.
    pub(crate) fn get(&self, resource: &str) -> Arc<Meter> {
        if let Some(meter) = self.0.read().unwrap_or_else(PoisonError::into_inner).get(resource) {
            return Arc::clone(meter);
        }
        let mut meters = self.0.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(meters.entry(resource.to_owned()).or_insert_with(|| {
            Arc::new(Meter {
                resource: resource.to_owned(),
                counters: Default::default(),
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_meter_per_resource() {
        let meters = Meters::default();
        let a = meters.get("projects");
        assert!(Arc::ptr_eq(&a, &meters.get("projects")));
        assert!(!Arc::ptr_eq(&a, &meters.get("events")));
        assert_eq!(meters.0.read().unwrap().len(), 2);
    }
}
