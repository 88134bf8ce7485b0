//! The recent deliveries the dashboard lists, and the change feeds' progress: a bounded
//! buffer the webhook and the feeds report into.

use std::{
    borrow::Cow,
    collections::{BTreeMap, VecDeque},
    sync::{Arc, Mutex, PoisonError},
};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// How many deliveries a [`DeliveryLog::default`] keeps.
pub const DEFAULT_DELIVERIES: usize = 50;
/// How many change feeds a [`DeliveryLog`] follows; reports of more feeds are dropped.
pub const MAX_FEEDS: usize = 16;
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
}

/// Where a change feed stands, as the feed reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeedProgress {
    /// The feed's cursor (an outbox id, an Airtable webhook cursor), as text.
    pub cursor: String,
    /// When the feed last applied a change, if it did.
    pub last_applied: Option<DateTime<Utc>>,
    /// Changes known to be waiting, when the feed can tell.
    pub backlog: Option<u64>,
    /// When this progress was reported.
    pub reported_at: DateTime<Utc>,
}

impl FeedProgress {
    /// Progress at `cursor`, reported now.
    pub fn new(cursor: impl Into<String>) -> Self {
        Self {
            cursor: cut(cursor.into()),
            last_applied: None,
            backlog: None,
            reported_at: Utc::now(),
        }
    }

    /// When the feed last applied a change.
    pub fn last_applied(mut self, at: DateTime<Utc>) -> Self {
        self.last_applied = Some(at);
        self
    }

    /// How many changes are waiting.
    pub fn backlog(mut self, backlog: u64) -> Self {
        self.backlog = Some(backlog);
        self
    }
}

#[derive(Debug)]
struct Log {
    capacity: usize,
    deliveries: VecDeque<DeliveryEvent>,
    feeds: BTreeMap<String, FeedProgress>,
}

/// The last deliveries of changes (webhooks, change feeds) and the feeds' progress, for the
/// dashboard: a bounded in-process buffer, cheap to clone (clones share it).
///
/// The webhook and the feeds report into it; the dashboard shows it newest first.
///
/// ```
/// use cache_http::dashboard::{DeliveryEvent, DeliveryLog, FeedProgress};
///
/// let log = DeliveryLog::new(2);
/// log.record(DeliveryEvent::new("webhook", "applied").entity("projects").record("recP1"));
/// log.record(DeliveryEvent::new("webhook", "stale").entity("projects").record("recP1"));
/// log.record(DeliveryEvent::new("webhook", "unauthorized"));
/// let recent = log.recent();
/// assert_eq!(recent.len(), 2, "bounded");
/// assert_eq!(recent[0].outcome, "unauthorized", "newest first");
///
/// log.feed_progress("sql", FeedProgress::new("1042").backlog(3));
/// assert_eq!(log.feeds()["sql"].backlog, Some(3));
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
                feeds: BTreeMap::new(),
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

    /// Records where the change feed `name` stands, replacing its previous report. Reports
    /// of feeds beyond the first [`MAX_FEEDS`] are dropped.
    pub fn feed_progress(&self, name: impl Into<String>, progress: FeedProgress) {
        let name = cut(name.into());
        let mut log = self.lock();
        if log.feeds.len() >= MAX_FEEDS && !log.feeds.contains_key(&name) {
            return;
        }
        log.feeds.insert(name, progress);
    }

    /// The feeds' last reports, by name.
    pub fn feeds(&self) -> BTreeMap<String, FeedProgress> {
        self.lock().feeds.clone()
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
    fn feeds_are_bounded() {
        let log = DeliveryLog::default();
        for n in 0..MAX_FEEDS + 3 {
            log.feed_progress(format!("feed{n}"), FeedProgress::new("0"));
        }
        assert_eq!(log.feeds().len(), MAX_FEEDS);
        log.feed_progress("feed0", FeedProgress::new("7"));
        assert_eq!(log.feeds()["feed0"].cursor, "7", "a known feed still reports");
    }
}
