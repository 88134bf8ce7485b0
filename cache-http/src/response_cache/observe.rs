//! The response cache's [`Observer`]: what the computed-value machinery does for a request,
//! counted in `model_cache_http_response_cache_total` and logged as `response_cache_*`.

use cache_core::{
    compute::{Observer, Step},
    store::StoreError,
};

use super::meter::{Meter, Outcome};

/// Counts and logs what the computed-value machinery does for one request, as the response
/// cache's metric and `response_cache_*` events.
pub(crate) struct Observe<'a> {
    pub(crate) key: &'a str,
    pub(crate) meter: &'a Meter,
}

impl Observe<'_> {
    fn count(&self, outcome: Outcome) {
        self.meter.count(outcome);
    }
}

impl Observer for Observe<'_> {
    fn observe(&self, step: Step<'_>) {
        let key = self.key;
        match step {
            Step::Miss { .. } => self.count(Outcome::Miss),
            Step::Stored { tags } => {
                self.count(Outcome::Stored);
                tracing::debug!(key, tags, "response_cache_stored");
            }
            Step::Refused => {
                self.count(Outcome::Refused);
                tracing::debug!(key, "response_cache_refused");
            }
            Step::LockWait { bound } => {
                tracing::debug!(key, bound_ms = bound.as_millis(), "response_cache_lock_wait");
            }
            Step::LockWaitTimeout { bound } => {
                tracing::warn!(key, bound_ms = bound.as_millis(), "response_cache_lock_wait_timeout");
            }
            Step::Unreadable { error } => tracing::warn!(key, error = %error, "response_cache_unreadable"),
            Step::Unserializable { error } => tracing::warn!(key, error = %error, "response_cache_unencodable"),
            Step::StoreError { operation, error } => {
                let detail = match operation {
                    "get_value" | "get_computed" => "lookup failed",
                    "put_computed" => "not stored",
                    other => other,
                };
                store_error_logged(key, error, detail);
            }
            _ => {}
        }
    }
}

/// Logs a store failure of the response cache, at most once per window in an outage; not a
/// refusal, which the store logs itself when its state changes.
fn store_error_logged(key: &str, err: &StoreError, detail: &str) {
    static LIMIT: cache_core::log_limit::WarnLimit = cache_core::log_limit::WarnLimit::new();
    if !matches!(err, StoreError::Refused(_))
        && let Some(held_back) = LIMIT.admit(std::time::Instant::now())
    {
        tracing::warn!(key, error = %err, detail, held_back, "response_cache_store_error");
    }
}
