//! The response cache's metric, `model_cache_http_response_cache_total`, by resource and
//! outcome. Each counter is registered once per recorder and kept, as cache-core keeps its
//! own, so that a hit increments it without building and looking up a metric key.

use std::{
    collections::HashMap,
    sync::{Arc, OnceLock, PoisonError, RwLock},
};

use metrics::Counter;

use crate::metrics::{RESPONSE_CACHE_TOTAL, current_recorder};

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

/// The counters of one `resource` label, registered with the recorder at `recorder`.
#[derive(Debug)]
pub(crate) struct Meter {
    resource: String,
    recorder: usize,
    counters: [OnceLock<Counter>; Outcome::COUNT],
}

impl Meter {
    fn new(resource: &str, recorder: usize) -> Arc<Self> {
        Arc::new(Self {
            resource: resource.to_owned(),
            recorder,
            counters: Default::default(),
        })
    }

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
    /// The meter of `resource` for the current recorder (one registered with another is
    /// replaced).
    pub(crate) fn get(&self, resource: &str) -> Arc<Meter> {
        let recorder = current_recorder();
        if let Some(meter) = self.0.read().unwrap_or_else(PoisonError::into_inner).get(resource)
            && meter.recorder == recorder
        {
            return Arc::clone(meter);
        }
        let mut meters = self.0.write().unwrap_or_else(PoisonError::into_inner);
        let meter = meters
            .entry(resource.to_owned())
            .or_insert_with(|| Meter::new(resource, recorder));
        if meter.recorder != recorder {
            *meter = Meter::new(resource, recorder);
        }
        Arc::clone(meter)
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

    use super::*;

    #[test]
    fn one_meter_per_resource() {
        let meters = Meters::default();
        let a = meters.get("projects");
        assert!(Arc::ptr_eq(&a, &meters.get("projects")));
        assert!(!Arc::ptr_eq(&a, &meters.get("events")));
        assert_eq!(meters.0.read().unwrap().len(), 2);
    }

    /// What `recorder` counted in the response cache's metric, over every label set.
    fn counted(recorder: &PrometheusRecorder) -> u64 {
        recorder
            .handle()
            .render()
            .lines()
            .filter(|line| line.starts_with(RESPONSE_CACHE_TOTAL))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    #[test]
    fn counters_follow_the_current_recorder() {
        let meters = Meters::default();
        // Counted before any recorder of this thread: not lost for the ones after.
        meters.get("projects").count(Outcome::Hit);
        let first = PrometheusBuilder::new().build_recorder();
        let second = PrometheusBuilder::new().build_recorder();
        metrics::with_local_recorder(&first, || {
            meters.get("projects").count(Outcome::Hit);
            meters.get("projects").count(Outcome::Miss);
        });
        metrics::with_local_recorder(&second, || meters.get("projects").count(Outcome::Hit));
        assert_eq!(counted(&first), 2);
        assert_eq!(counted(&second), 1);
        assert_eq!(meters.0.read().unwrap().len(), 1, "one meter per resource");
    }
}
