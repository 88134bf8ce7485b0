//! The recent deliveries the dashboard lists: a bounded buffer the webhook reports into. The
//! change feeds report to the cache's feed status instead ([`cache_core::feed::Feeds`]: they
//! know nothing of HTTP), and the dashboard lists their events beside these
//! ([`DeliveryEvent::from_feed`]).

use std::{
    borrow::Cow,
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
};

use cache_core::feed::{FeedEvent, FeedEventKind};
use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many deliveries a [`DeliveryLog::default`] keeps.
pub const DEFAULT_DELIVERIES: usize = 50;
/// The longest text kept in one field of a delivery, in bytes: longer text is cut.
pub const MAX_FIELD_LEN: usize = 200;

/// One delivery of a change: a webhook call or a change-feed batch, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryEvent {
    /// When it was reported.
    pub at: DateTime<Utc>,
    /// Where it came from: `webhook`, `feed:sql`, `feed:airtable`.
    pub source: Cow<'static, str>,
    /// What became of it: `applied`, `stale`, or why it was refused (`unauthorized`,
    /// `invalid_payload`, ...), as the deliveries metric labels it.
    pub outcome: Cow<'static, str>,
    /// The entity or source table it was about, when known.
    pub entity: Option<String>,
    /// The record id it was about, when it was about one.
    pub record: Option<String>,
    /// Anything else worth showing (an error message, a batch size).
    pub detail: Option<String>,
}

impl DeliveryEvent {
    /// A delivery from `source` that ended as `outcome`, reported now.
    pub fn new(source: impl Into<Cow<'static, str>>, outcome: impl Into<Cow<'static, str>>) -> Self {
        Self {
            at: Utc::now(),
            source: cut_cow(source.into()),
            outcome: cut_cow(outcome.into()),
            entity: None,
            record: None,
            detail: None,
        }
    }

    /// The entity or source table it was about.
    pub fn entity(mut self, entity: impl Into<String>) -> Self {
        self.entity = Some(cut(entity.into()));
        self
    }

    /// The record id it was about.
    pub fn record(mut self, id: impl Into<String>) -> Self {
        self.record = Some(cut(id.into()));
        self
    }

    /// A detail (an error message, a batch size).
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(cut(detail.into()));
        self
    }

    /// Whether the outcome is a success (`applied`) or a harmless refusal (`stale`).
    pub fn is_accepted(&self) -> bool {
        matches!(self.outcome.as_ref(), "applied" | "stale")
    }

    /// A change feed's event as a delivery: source `feed:{name}`, the event's
    /// [outcome](FeedEvent::outcome), and what its changes became (or its error, or what its
    /// resync did) as the detail.
    pub fn from_feed(event: &FeedEvent) -> Self {
        let detail = match &event.kind {
            FeedEventKind::Batch { changes, position } => {
                let mut parts = Vec::new();
                for (n, what) in [
                    (changes.applied, "applied"),
                    (changes.stale, "stale"),
                    (changes.deleted, "refused as deleted"),
                    (changes.invalid, "invalid"),
                    (changes.failed, "failed, to deliver again"),
                    (changes.disabled, "cache disabled"),
                ] {
                    if n > 0 {
                        parts.push(format!("{n} {what}"));
                    }
                }
                if parts.is_empty() {
                    parts.push("no change for this cache".to_owned());
                }
                let mut detail = parts.join(", ");
                if let Some(position) = position {
                    detail.push_str(&format!("; cursor {position}"));
                }
                detail
            }
            FeedEventKind::Failed { message } => message.clone(),
            FeedEventKind::Resync(resync) => format!(
                "{}: {} checked, {} refreshed, {} removed",
                resync.reason, resync.checked, resync.refreshed, resync.removed
            ),
            _ => String::new(),
        };
        let mut delivery = Self::new(format!("feed:{}", event.feed), event.outcome()).detail(detail);
        delivery.at = DateTime::<Utc>::from(event.at);
        delivery
    }
}

#[derive(Debug)]
struct Log {
    capacity: usize,
    deliveries: VecDeque<DeliveryEvent>,
}

/// The last deliveries of changes by webhook, for the dashboard: a bounded in-process buffer,
/// cheap to clone (clones share it).
///
/// The webhook reports into it; the dashboard shows it newest first, with the change feeds'
/// events ([`cache_core::feed::Feeds::recent`]).
///
/// ```
/// use cache_http::dashboard::{DeliveryEvent, DeliveryLog};
///
/// let log = DeliveryLog::new(2);
/// log.record(DeliveryEvent::new("webhook", "applied").entity("projects").record("recP1"));
/// log.record(DeliveryEvent::new("webhook", "stale").entity("projects").record("recP1"));
/// log.record(DeliveryEvent::new("webhook", "unauthorized"));
/// let recent = log.recent();
/// assert_eq!(recent.len(), 2, "bounded");
/// assert_eq!(recent[0].outcome, "unauthorized", "newest first");
/// ```
#[derive(Debug, Clone)]
pub struct DeliveryLog {
    inner: Arc<Mutex<Log>>,
}

impl Default for DeliveryLog {
    fn default() -> Self {
        Self::new(DEFAULT_DELIVERIES)
    }
}

impl DeliveryLog {
    /// A log keeping the last `capacity` deliveries (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner: Arc::new(Mutex::new(Log {
                capacity,
                deliveries: VecDeque::with_capacity(capacity),
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a delivery, dropping the oldest when the log is full.
    pub fn record(&self, event: DeliveryEvent) {
        let mut log = self.lock();
        if log.deliveries.len() == log.capacity {
            log.deliveries.pop_front();
        }
        log.deliveries.push_back(event);
    }

    /// The deliveries kept, newest first.
    pub fn recent(&self) -> Vec<DeliveryEvent> {
        self.lock().deliveries.iter().rev().cloned().collect()
    }

    /// How many deliveries it keeps.
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }
}

fn cut(mut text: String) -> String {
    if text.len() > MAX_FIELD_LEN {
        let mut end = MAX_FIELD_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn cut_cow(text: Cow<'static, str>) -> Cow<'static, str> {
    if text.len() > MAX_FIELD_LEN {
        Cow::Owned(cut(text.into_owned()))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_on_a_char_boundary() {
        let event = DeliveryEvent::new("webhook", "error").detail("é".repeat(MAX_FIELD_LEN));
        let detail = event.detail.unwrap_or_default();
        assert!(detail.len() <= MAX_FIELD_LEN + '…'.len_utf8());
        assert!(detail.ends_with('…'));
    }

    #[test]
    fn a_feed_event_reads_as_a_delivery() {
        use cache_core::{
            change::{ChangeOutcome, Refusal},
            feed::Feeds,
        };

        let feeds = Feeds::default();
        let outbox = feeds.reporter("sql:outbox");
        outbox.applied(
            &[
                ChangeOutcome::Applied,
                ChangeOutcome::Applied,
                ChangeOutcome::Refused(Refusal::Older),
            ],
            Some("1042"),
            None,
        );
        outbox.failed(&"the database is down", None, None);
        let recent = feeds.recent();
        let failed = DeliveryEvent::from_feed(&recent[0]);
        assert_eq!(
            (failed.source.as_ref(), failed.outcome.as_ref()),
            ("feed:sql:outbox", "error")
        );
        assert_eq!(failed.detail.as_deref(), Some("the database is down"));
        let batch = DeliveryEvent::from_feed(&recent[1]);
        assert_eq!(batch.outcome, "applied");
        assert!(batch.is_accepted());
        assert_eq!(batch.detail.as_deref(), Some("2 applied, 1 stale; cursor 1042"));
    }
}
