//! The status board: what each feed last did, in this process, for the dashboard and the
//! metrics (see the [module docs](super) for what lag means).

use super::*;

/// The most feeds a [`Feeds`] follows: reports under further names are dropped (and counted,
/// [`Feeds::dropped`]). Feed names come from configuration (one per outbox, per webhook), not
/// from data, so the bound is never reached by a correct deployment.
pub const MAX_FEEDS: usize = 32;
/// How many of its last events (batches, failures, resyncs) each feed keeps.
pub const RECENT_EVENTS: usize = 20;
/// The longest text kept in a status (a name, a position, an error message), in bytes: longer
/// text is cut.
pub const MAX_TEXT_LEN: usize = 300;

/// What the changes of a batch, or of every batch, became: [`ChangeOutcome`]s counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ChangeCounts {
    /// Applied ([`ChangeOutcome::Applied`]).
    pub applied: u64,
    /// Refused as older than what the cache holds ([`Refusal::as_str`](crate::change::Refusal::as_str)
    /// `stale`): acknowledged, rightly not applied.
    pub stale: u64,
    /// Refused because the source deleted the record after this state of it (`deleted`).
    pub deleted: u64,
    /// The record does not read as its model ([`ChangeOutcome::Invalid`]): never applied.
    pub invalid: u64,
    /// Not applied because the store or the origin failed: delivered again
    /// ([`ChangeOutcome::should_retry`]).
    pub failed: u64,
    /// The cache is disabled ([`ChangeOutcome::Disabled`]).
    pub disabled: u64,
}

impl ChangeCounts {
    /// Counts what [`Cache::apply_changes`] answered.
    pub fn of(outcomes: &[ChangeOutcome]) -> Self {
        let mut counts = Self::default();
        for outcome in outcomes {
            match outcome {
                ChangeOutcome::Applied => counts.applied += 1,
                ChangeOutcome::Refused(refusal) if refusal.as_str() == "deleted" => counts.deleted += 1,
                ChangeOutcome::Refused(_) => counts.stale += 1,
                ChangeOutcome::Invalid(_) => counts.invalid += 1,
                ChangeOutcome::Disabled => counts.disabled += 1,
                ChangeOutcome::StoreFailed | ChangeOutcome::OriginFailed => counts.failed += 1,
            }
        }
        counts
    }

    /// Refused changes, for every reason (`stale` and `deleted`).
    pub fn refused(&self) -> u64 {
        self.stale + self.deleted
    }

    /// Every change counted.
    pub fn total(&self) -> u64 {
        self.applied + self.refused() + self.invalid + self.failed + self.disabled
    }

    fn add(&mut self, other: Self) {
        self.applied += other.applied;
        self.stale += other.stale;
        self.deleted += other.deleted;
        self.invalid += other.invalid;
        self.failed += other.failed;
        self.disabled += other.disabled;
    }

    /// One word for what the batch became, as the deliveries metric labels a webhook call:
    /// `failed` (some changes are to be delivered again), `invalid_record`, `applied`, `stale`
    /// (every change refused), `disabled`, or `empty`.
    pub fn outcome(&self) -> &'static str {
        if self.failed > 0 {
            "failed"
        } else if self.invalid > 0 {
            "invalid_record"
        } else if self.applied > 0 {
            "applied"
        } else if self.refused() > 0 {
            "stale"
        } else if self.disabled > 0 {
            "disabled"
        } else {
            "empty"
        }
    }
}

/// How many changes wait at the source, as the feed can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backlog {
    /// The feed has not said (before its first look at the source).
    #[default]
    Unknown,
    /// This many (outbox rows not yet applied); `Exactly(0)` when caught up.
    Exactly(u64),
    /// Some, how many is unknown (Airtable says only that more payloads wait).
    AtLeastOne,
}

impl Backlog {
    /// Whether nothing waits.
    pub fn is_empty(self) -> bool {
        self == Self::Exactly(0)
    }

    /// The backlog as a gauge: the count, `1` for [`Backlog::AtLeastOne`], `None` when unknown.
    pub fn as_gauge(self) -> Option<u64> {
        match self {
            Self::Unknown => None,
            Self::Exactly(n) => Some(n),
            Self::AtLeastOne => Some(1),
        }
    }
}

impl fmt::Display for Backlog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown => f.write_str("unknown"),
            Self::Exactly(n) => write!(f, "{n}"),
            Self::AtLeastOne => f.write_str("more waiting"),
        }
    }
}

/// A failure a feed reported.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedFailure {
    /// When.
    pub at: SystemTime,
    /// What failed, as the feed's error says it.
    pub message: String,
}

/// A resync: the feed lost track of the source's changes (changes dropped by the source, a
/// webhook gone or new) and checked what the cache holds against the source instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedResync {
    /// When it ended.
    pub at: SystemTime,
    /// Why, in a word: `payloads_lost`, `webhook_gone`, `new_webhook`.
    pub reason: String,
    /// The entities checked.
    pub entities: Vec<&'static str>,
    /// Cached records checked against the source.
    pub checked: u64,
    /// Records read again and cached as the source has them now.
    pub refreshed: u64,
    /// Records the source no longer has, removed (with a tombstone).
    pub removed: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl FeedResync {
    /// A resync for `reason`, ending now, with nothing counted yet.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            at: SystemTime::now(),
            reason: cut(reason.into()),
            entities: Vec::new(),
            checked: 0,
            refreshed: 0,
            removed: 0,
            elapsed: Duration::ZERO,
        }
    }
}

/// Counters since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FeedTotals {
    /// Batches handed to the cache.
    pub batches: u64,
    /// What their changes became.
    pub changes: ChangeCounts,
    /// Rounds that failed.
    pub errors: u64,
    /// Resyncs run.
    pub resyncs: u64,
}

/// One thing a feed did, for the list of recent deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedEvent {
    /// The feed.
    pub feed: String,
    /// When it was reported.
    pub at: SystemTime,
    /// What happened.
    pub kind: FeedEventKind,
}

/// What a [`FeedEvent`] was.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedEventKind {
    /// A batch was handed to the cache.
    Batch {
        /// What its changes became.
        changes: ChangeCounts,
        /// The feed's position after it, when it moved.
        position: Option<String>,
    },
    /// A round failed.
    Failed {
        /// Why.
        message: String,
    },
    /// A resync ran.
    Resync(FeedResync),
}

impl FeedEvent {
    /// One word for what became of it: a batch's [`ChangeCounts::outcome`], `error`, or
    /// `resync`.
    pub fn outcome(&self) -> &'static str {
        match &self.kind {
            FeedEventKind::Batch { changes, .. } => changes.outcome(),
            FeedEventKind::Failed { .. } => "error",
            FeedEventKind::Resync(_) => "resync",
        }
    }
}

/// Where a change feed stands, as it last reported: see the [module docs](crate::feed).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedStatus {
    /// The feed's name (`sql:outbox`, `airtable:{base}:{webhook}`).
    pub name: String,
    /// Its position after the last batch applied (an outbox `seq`, a webhook cursor).
    pub position: Option<String>,
    /// The source time of the newest change applied (by the source's clock).
    pub last_source_time: Option<SystemTime>,
    /// When that change was applied (by this process's clock).
    pub last_applied_at: Option<SystemTime>,
    /// The point up to which every change is known to be applied: the base of the
    /// [lag](FeedStatus::lag).
    pub current_as_of: Option<SystemTime>,
    /// Changes waiting at the source when the feed last looked.
    pub backlog: Backlog,
    /// What the changes of the last batch became.
    pub last_batch: Option<ChangeCounts>,
    /// Counters since the process started.
    pub totals: FeedTotals,
    /// The last failure.
    pub last_error: Option<FeedFailure>,
    /// Whether the last round failed (and nothing succeeded since).
    pub failing: bool,
    /// The last resync.
    pub last_resync: Option<FeedResync>,
    /// Whether this instance's last round found the feed held by another instance.
    pub held_elsewhere: bool,
    /// When the feed last reported anything.
    pub updated_at: SystemTime,
}

impl FeedStatus {
    fn new(name: String, now: SystemTime) -> Self {
        Self {
            name,
            position: None,
            last_source_time: None,
            last_applied_at: None,
            current_as_of: None,
            backlog: Backlog::Unknown,
            last_batch: None,
            totals: FeedTotals::default(),
            last_error: None,
            failing: false,
            last_resync: None,
            held_elsewhere: false,
            updated_at: now,
        }
    }

    /// How far behind the source the cache may be at `now`: `now -`
    /// [`current_as_of`](FeedStatus::current_as_of), zero when that is later than `now` (clock
    /// skew), `None` before the feed first looked at the source. See the
    /// [module docs](crate::feed#lag).
    pub fn lag(&self, now: SystemTime) -> Option<Duration> {
        self.current_as_of
            .map(|base| now.duration_since(base).unwrap_or(Duration::ZERO))
    }
}

#[derive(Debug)]
struct Entry {
    status: FeedStatus,
    recent: VecDeque<FeedEvent>,
}

#[derive(Debug, Default)]
struct Board {
    feeds: BTreeMap<String, Entry>,
    dropped: u64,
}

/// The change feeds' status in this process, by feed name: what the dashboard and the metrics
/// show. One per [`Cache`] ([`Cache::feeds`]); cheap to clone (clones share it).
///
/// Feeds write through a [`FeedReporter`]; readers take snapshots. Bounded: at most
/// [`MAX_FEEDS`] names, [`RECENT_EVENTS`] events each, text cut at [`MAX_TEXT_LEN`] bytes.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cache_core::feed::{Backlog, Feeds};
///
/// let feeds = Feeds::default();
/// let outbox = feeds.reporter("sql:outbox");
/// let looked = SystemTime::now();
/// outbox.applied(&[], Some("1042"), None);
/// outbox.checked(Backlog::Exactly(3), Some(looked - Duration::from_secs(5)), looked);
/// let status = feeds.status("sql:outbox").unwrap();
/// assert_eq!(status.position.as_deref(), Some("1042"));
/// assert_eq!(status.lag(looked), Some(Duration::from_secs(5)), "the oldest waiting change is 5 s old");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Feeds {
    board: Arc<Mutex<Board>>,
    full: Arc<WarnLimit>,
}

impl Feeds {
    fn lock(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the feed `name` reports.
    pub fn reporter(&self, name: &str) -> FeedReporter {
        FeedReporter {
            feeds: self.clone(),
            name: cut(name.to_owned()),
        }
    }

    /// The status of the feed `name`, if it reported.
    pub fn status(&self, name: &str) -> Option<FeedStatus> {
        self.lock().feeds.get(name).map(|e| e.status.clone())
    }

    /// Every feed's status, by name.
    pub fn all(&self) -> Vec<FeedStatus> {
        self.lock().feeds.values().map(|e| e.status.clone()).collect()
    }

    /// The last events of every feed, newest first.
    pub fn recent(&self) -> Vec<FeedEvent> {
        let mut events: Vec<FeedEvent> = self
            .lock()
            .feeds
            .values()
            .flat_map(|e| e.recent.iter().rev().cloned())
            .collect();
        // Stable: events reported at the same instant stay newest first.
        events.sort_by_key(|e| std::cmp::Reverse(e.at));
        events
    }

    /// Reports dropped because [`MAX_FEEDS`] feeds had reported already.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Runs `update` on the feed's entry, made on its first report; drops the report when the
    /// board is full.
    fn update(&self, name: &str, now: SystemTime, update: impl FnOnce(&mut Entry)) {
        let mut board = self.lock();
        if !board.feeds.contains_key(name) {
            if board.feeds.len() >= MAX_FEEDS {
                board.dropped += 1;
                drop(board);
                if let Some(held_back) = self.full.admit(Instant::now()) {
                    tracing::warn!(feed = name, max = MAX_FEEDS, held_back, "feed_status_dropped");
                }
                return;
            }
            board.feeds.insert(
                name.to_owned(),
                Entry {
                    status: FeedStatus::new(name.to_owned(), now),
                    recent: VecDeque::with_capacity(RECENT_EVENTS),
                },
            );
        }
        if let Some(entry) = board.feeds.get_mut(name) {
            update(entry);
            entry.status.updated_at = now;
        }
    }
}

impl Entry {
    fn push(&mut self, event: FeedEvent) {
        if self.recent.len() >= RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(event);
    }
}

/// Where one feed reports what it does ([`Feeds::reporter`], [`FeedState::reporter`]): cheap
/// to clone; every call takes a short lock and never fails.
#[derive(Debug, Clone)]
pub struct FeedReporter {
    feeds: Feeds,
    name: String,
}

impl FeedReporter {
    /// The feed's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A batch was handed to [`Cache::apply_changes`], which answered `outcomes`; the feed
    /// moved to `position` (when it did), and the batch's newest change happened at
    /// `newest_source_time` (when the source says).
    pub fn applied(&self, outcomes: &[ChangeOutcome], position: Option<&str>, newest_source_time: Option<SystemTime>) {
        self.applied_at(
            ChangeCounts::of(outcomes),
            position,
            newest_source_time,
            SystemTime::now(),
        );
    }

    pub(super) fn applied_at(
        &self,
        changes: ChangeCounts,
        position: Option<&str>,
        newest: Option<SystemTime>,
        now: SystemTime,
    ) {
        let position = position.map(|p| cut(p.to_owned()));
        self.feeds.update(&self.name, now, |entry| {
            let status = &mut entry.status;
            if let Some(position) = &position {
                status.position = Some(position.clone());
            }
            // A batch of refusals applied nothing, but its changes are behind the feed all
            // the same: the source time moves with whatever was handed over.
            if changes.failed == 0 && changes.total() > 0 {
                if let Some(newest) = newest {
                    status.last_source_time = Some(status.last_source_time.map_or(newest, |t| t.max(newest)));
                }
                status.last_applied_at = Some(now);
            }
            status.last_batch = Some(changes);
            status.totals.batches += 1;
            status.totals.changes.add(changes);
            status.held_elsewhere = false;
            entry.push(FeedEvent {
                feed: self.name.clone(),
                at: now,
                kind: FeedEventKind::Batch { changes, position },
            });
        });
    }

    /// The feed looked at the source at `checked_at` (this process's clock, taken before it
    /// looked) and found `backlog` waiting, the oldest of it from `oldest_waiting` (the source's
    /// clock) when it can tell. Ends a successful round; moves
    /// [`current_as_of`](FeedStatus::current_as_of) as the [module docs](crate::feed#lag) say.
    pub fn checked(&self, backlog: Backlog, oldest_waiting: Option<SystemTime>, checked_at: SystemTime) {
        self.checked_at(backlog, oldest_waiting, checked_at, SystemTime::now());
    }

    pub(super) fn checked_at(
        &self,
        backlog: Backlog,
        oldest: Option<SystemTime>,
        checked_at: SystemTime,
        now: SystemTime,
    ) {
        self.feeds.update(&self.name, now, |entry| {
            let status = &mut entry.status;
            status.backlog = backlog;
            status.failing = false;
            status.held_elsewhere = false;
            status.current_as_of = if backlog.is_empty() {
                Some(checked_at)
            } else {
                oldest.or(status.last_source_time).or(status.current_as_of)
            };
        });
    }

    /// A round failed with `error`. `oldest_waiting`: the source time of the oldest change
    /// waiting (read and not applied, or counted), when the feed knows it
    /// ([`current_as_of`](FeedStatus::current_as_of) becomes it, as after
    /// [`checked`](Self::checked)); `backlog` when the feed could still count it.
    pub fn failed(&self, error: &dyn fmt::Display, oldest_waiting: Option<SystemTime>, backlog: Option<Backlog>) {
        self.failed_at(&error.to_string(), oldest_waiting, backlog, SystemTime::now());
    }

    pub(super) fn failed_at(
        &self,
        message: &str,
        oldest: Option<SystemTime>,
        backlog: Option<Backlog>,
        now: SystemTime,
    ) {
        let message = cut(message.to_owned());
        self.feeds.update(&self.name, now, |entry| {
            let status = &mut entry.status;
            status.last_error = Some(FeedFailure {
                at: now,
                message: message.clone(),
            });
            status.failing = true;
            status.totals.errors += 1;
            if let Some(backlog) = backlog {
                status.backlog = backlog;
            }
            if oldest.is_some() {
                status.current_as_of = oldest;
            }
            entry.push(FeedEvent {
                feed: self.name.clone(),
                at: now,
                kind: FeedEventKind::Failed { message },
            });
        });
    }

    /// The feed is at `position`, without a batch to report (a cursor it starts from, or
    /// moved past changes that were none of this cache's).
    pub fn position(&self, position: &str) {
        let position = cut(position.to_owned());
        self.feeds.update(&self.name, SystemTime::now(), |entry| {
            entry.status.position = Some(position);
        });
    }

    /// The round found the feed held by another instance, and did nothing.
    pub fn held_elsewhere(&self) {
        self.feeds.update(&self.name, SystemTime::now(), |entry| {
            entry.status.held_elsewhere = true;
        });
    }

    /// A resync ran.
    pub fn resynced(&self, resync: FeedResync) {
        let now = SystemTime::now();
        self.feeds.update(&self.name, now, |entry| {
            entry.status.totals.resyncs += 1;
            entry.status.last_resync = Some(resync.clone());
            entry.push(FeedEvent {
                feed: self.name.clone(),
                at: now,
                kind: FeedEventKind::Resync(resync),
            });
        });
    }
}

/// `text`, cut to [`MAX_TEXT_LEN`] bytes on a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_LEN {
        let mut end = MAX_TEXT_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}
