//! The change feed on Airtable's webhooks API: a notification route that checks
//! `X-Airtable-Content-MAC` and wakes the consumer, and the consumer that reads the webhook's
//! payloads from a cursor kept in the cache's store and hands them, in
//! `baseTransactionNumber` order, to the cache's one change path.
//!
//! When the feed cannot know what changed (payloads dropped past Airtable's retention, the
//! webhook gone, no cursor yet for this webhook) it resyncs: every cached record of the
//! base's entities is read again from Airtable, 100 a request, and cached as Airtable has it
//! now, or removed with a tombstone when Airtable no longer has it ([`WebhookFeed::resync`]).
//!
//! Every page, failure and resync is reported to the cache's feed status ([`Cache::feeds`],
//! under the feed's name): the cursor, what the changes became, whether more payloads wait
//! (`mightHaveMore`), and the lag (see [`cache_core::feed`]).

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::Engine;
use cache_core::{
    Cache, CacheError, RecordId,
    change::Change,
    feed::{Backlog, ChangeCounts, FeedLock, FeedReporter, FeedResync, FeedState, Hold},
    keys,
    origin::SourceRecord,
    schema::EntitySchema,
    store::StoreError,
};
use futures::StreamExt;
use hmac::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::{AirtableError, AirtableOrigin, Payload};

/// The header Airtable signs notifications with.
pub const MAC_HEADER: &str = "x-airtable-content-mac";

/// Why the feed could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// Airtable failed or refused.
    #[error(transparent)]
    Airtable(#[from] AirtableError),
    /// Reading the changed records failed.
    #[error("reading changed records failed: {0}")]
    Origin(#[from] cache_core::origin::OriginError),
    /// The cache's store failed: nothing was acknowledged; the same payloads are read again.
    #[error("the feed's store failed: {0}")]
    Store(#[from] StoreError),
    /// The cache refused the changes (an entity not registered).
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Some changes asked to be delivered again (the store failed under them): the cursor
    /// stays, and the next round reads them again.
    #[error("{0} changes were not applied; the cursor stays for a retry")]
    Retry(usize),
    /// The webhook no longer exists (it expired unrefreshed, or was deleted): the base's
    /// cached records were resynced once; create a webhook again
    /// ([`AirtableClient::create_webhook`](crate::AirtableClient::create_webhook)) and run a
    /// feed on it.
    #[error("the webhook {0} is gone (expired or deleted); the base's cached records were resynced")]
    WebhookGone(String),
    /// The configuration is unusable.
    #[error("invalid feed configuration: {0}")]
    Config(String),
    /// This consumer's lock on the feed lapsed (it stalled longer than
    /// [`FeedConfig::lock_ttl`]) and another consumer may hold the feed now: the round stopped
    /// without moving the cursor, which stays where the feed's holder puts it.
    #[error("the feed's lock lapsed and another consumer may hold it; this round stopped")]
    LockLost,
}

/// How the feed runs.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// The webhook to read (`achXXXXXXXXXXXXXX`).
    pub webhook_id: String,
    /// Its MAC secret as Airtable gave it (`macSecretBase64`).
    pub mac_secret_base64: String,
    /// How often to read payloads without a notification (a missed ping is caught then).
    pub poll_interval: Duration,
    /// How often to refresh the webhook: well within Airtable's 7-day expiry.
    pub refresh_interval: Duration,
    /// How long a consumer's lock on the feed lasts without being renewed: a round renews it
    /// each time it moves the cursor and around each request of a resync, and a consumer that
    /// dies frees the feed after it.
    pub lock_ttl: Duration,
    /// Payload pages read per round at most (the rest waits for the next round).
    pub max_pages_per_round: usize,
}

impl FeedConfig {
    /// The feed of a webhook, polling every minute and refreshing daily.
    pub fn new(webhook_id: impl Into<String>, mac_secret_base64: impl Into<String>) -> Self {
        Self {
            webhook_id: webhook_id.into(),
            mac_secret_base64: mac_secret_base64.into(),
            poll_interval: Duration::from_secs(60),
            refresh_interval: Duration::from_secs(24 * 3600),
            lock_ttl: Duration::from_secs(120),
            max_pages_per_round: 100,
        }
    }
}

/// What one round of the consumer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoundReport {
    /// Another consumer holds the feed: this one did nothing.
    pub busy: bool,
    /// Payloads read.
    pub payloads: usize,
    /// Changes handed to the cache (upserts and deletes).
    pub changes: usize,
    /// Changes the cache refused as older or deleted (acknowledged all the same).
    pub refused: usize,
    /// Changes whose record does not parse as the model (logged as
    /// `airtable_feed_change_invalid`; the record stays as cached).
    pub invalid: usize,
    /// The feed could not know what changed (payloads lost past Airtable's retention, or no
    /// cursor yet for this webhook): the base's cached records were resynced
    /// ([`WebhookFeed::resync`]).
    pub resynced: bool,
    /// More payloads wait (the round stopped at its page bound).
    pub more: bool,
}

/// How many cached records a resync reads again per request: one page of Airtable's.
pub const RESYNC_BATCH: usize = crate::MAX_PAGE_SIZE as usize;

/// The webhooks-API change feed of one base. Cheap to clone.
#[derive(Clone)]
pub struct WebhookFeed {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache,
    origin: AirtableOrigin,
    state: FeedState,
    status: FeedReporter,
    config: FeedConfig,
    mac_secret: Vec<u8>,
    wake: Notify,
    notifications: AtomicU64,
    /// Whether this process resynced the base after the webhook went away: once is enough,
    /// every later round finds it gone too.
    resynced_gone: AtomicBool,
    /// Table id → entity, resolved from the base's schema when a payload names a table.
    tables: Mutex<HashMap<String, Option<&'static EntitySchema>>>,
}

impl std::fmt::Debug for WebhookFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookFeed")
            .field("webhook_id", &self.inner.config.webhook_id)
            .finish_non_exhaustive()
    }
}

impl WebhookFeed {
    /// The feed of `config`'s webhook into `cache`, reading records through `origin` (share
    /// the cache's origin: one rate limit). The cursor and the consumer lock live in the
    /// cache's store under `airtable:{base}:{webhook}`.
    pub fn new(cache: Cache, origin: AirtableOrigin, config: FeedConfig) -> Result<Self, FeedError> {
        let mac_secret = base64::engine::general_purpose::STANDARD
            .decode(config.mac_secret_base64.trim())
            .map_err(|e| FeedError::Config(format!("mac_secret_base64 is not base64: {e}")))?;
        if config.webhook_id.is_empty() {
            return Err(FeedError::Config("webhook_id is empty".to_owned()));
        }
        let name = format!("airtable:{}:{}", origin.client().base_id(), config.webhook_id);
        let state = FeedState::new(&cache, name);
        Ok(Self {
            inner: Arc::new(Inner {
                status: state.reporter(),
                state,
                cache,
                origin,
                config,
                mac_secret,
                wake: Notify::new(),
                notifications: AtomicU64::new(0),
                resynced_gone: AtomicBool::new(false),
                tables: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The notification route, `POST {path}`: checks the MAC in constant time (401 and
    /// nothing else when it is wrong or missing), wakes the consumer, and answers 204 at once.
    pub fn routes<S: Clone + Send + Sync + 'static>(&self, path: &str) -> Router<S> {
        Router::new().route(path, post(notification)).with_state(self.clone())
    }

    /// Whether `mac_header` (`hmac-sha256=<hex>`) signs `body` with the webhook's secret.
    pub fn verify(&self, mac_header: Option<&str>, body: &[u8]) -> bool {
        let Some(given) = mac_header
            .and_then(|h| h.trim().strip_prefix("hmac-sha256="))
            .and_then(|hex| hex::decode(hex).ok())
        else {
            return false;
        };
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.inner.mac_secret) else {
            return false;
        };
        mac.update(body);
        let expected = mac.finalize().into_bytes();
        bool::from(expected.as_slice().ct_eq(given.as_slice()))
    }

    /// Notifications accepted (with a valid MAC) since the feed started.
    pub fn notifications(&self) -> u64 {
        self.inner.notifications.load(Ordering::Relaxed)
    }

    /// Wakes the consumer (as a notification does).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Runs the consumer until `shutdown` completes: a round at start, on every notification
    /// and every `poll_interval`; the webhook refreshed every `refresh_interval`.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut next_refresh = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next_refresh {
                next_refresh = match self.refresh().await {
                    Ok(()) => tokio::time::Instant::now() + self.inner.config.refresh_interval,
                    Err(err) => {
                        tracing::warn!(webhook = %self.inner.config.webhook_id, error = %err, "airtable_webhook_refresh_failed");
                        tokio::time::Instant::now() + self.inner.config.poll_interval
                    }
                };
            }
            let more = match self.round().await {
                Ok(report) => report.more,
                Err(err) => {
                    tracing::warn!(webhook = %self.inner.config.webhook_id, error = %err, "airtable_feed_round_failed");
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
    }

    /// Refreshes the webhook (7 more days).
    pub async fn refresh(&self) -> Result<(), FeedError> {
        let expires = self
            .inner
            .origin
            .client()
            .refresh_webhook(&self.inner.config.webhook_id)
            .await?;
        tracing::debug!(webhook = %self.inner.config.webhook_id, expires = ?expires, "airtable_webhook_refreshed");
        Ok(())
    }

    /// The feed's name in the store and in the cache's feed status:
    /// `airtable:{base}:{webhook}`.
    pub fn name(&self) -> &str {
        self.inner.state.name()
    }

    /// One round: takes the feed (unless another consumer holds it), reads the payloads after
    /// the stored cursor, applies them, and moves the cursor after each applied page. Reports
    /// each page, the round's end or its failure to the cache's feed status.
    pub async fn round(&self) -> Result<RoundReport, FeedError> {
        let inner = &self.inner;
        let lock = match inner.state.try_lock(inner.config.lock_ttl).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                inner.status.held_elsewhere();
                return Ok(RoundReport {
                    busy: true,
                    ..RoundReport::default()
                });
            }
            Err(err) => {
                let err = FeedError::from(err);
                inner.status.failed(&err, None, None);
                return Err(err);
            }
        };
        // The time of the oldest payload read and not applied, for the lag.
        let mut unapplied = None;
        let result = self.consume(&lock, &mut unapplied).await;
        if let Err(err) = &result {
            inner.status.failed(err, unapplied, None);
        }
        // The lock lapses by itself if this fails; the cursor is what matters.
        if let Err(err) = inner.state.unlock(lock).await {
            tracing::warn!(error = %err, "airtable_feed_unlock_failed");
        }
        result
    }

    async fn consume(&self, lock: &FeedLock, unapplied: &mut Option<SystemTime>) -> Result<RoundReport, FeedError> {
        let inner = &self.inner;
        let client = inner.origin.client();
        let mut report = RoundReport::default();
        let stored = inner.state.position().await?;
        // Without a cursor (a new or recreated webhook, or a cursor the store lost) the feed
        // cannot know what changed before its webhook's first payload.
        let mut unfollowed = stored.is_none();
        if unfollowed {
            self.resync_held("no_cursor", Some(lock)).await?;
            report.resynced = true;
        }
        let mut cursor = stored.and_then(|p| p.parse::<u64>().ok()).unwrap_or(1);
        for _ in 0..inner.config.max_pages_per_round {
            let looked = SystemTime::now();
            let page = match client.list_payloads(&inner.config.webhook_id, cursor).await {
                Ok(page) => page,
                Err(err) if err.status() == Some(404) => {
                    tracing::error!(webhook = %inner.config.webhook_id, "airtable_feed_webhook_gone");
                    if !inner.resynced_gone.load(Ordering::Acquire) {
                        self.resync_held("webhook_gone", Some(lock)).await?;
                        inner.resynced_gone.store(true, Ordering::Release);
                    }
                    return Err(FeedError::WebhookGone(inner.config.webhook_id.clone()));
                }
                Err(err) => return Err(err.into()),
            };
            // Airtable keeps payloads 7 days: a page that starts past the asked cursor means
            // some were dropped, and with them changes the cache never heard of.
            let skipped = page.cursor.saturating_sub(cursor) > page.payloads.len() as u64;
            if skipped && !report.resynced {
                tracing::error!(
                    webhook = %inner.config.webhook_id,
                    cursor,
                    next = page.cursor,
                    "airtable_feed_payloads_lost"
                );
                self.resync_held("payloads_lost", Some(lock)).await?;
                report.resynced = true;
            }
            let mut payloads = page.payloads;
            payloads.sort_by_key(|p| p.base_transaction_number);
            let times: Vec<SystemTime> = payloads
                .iter()
                .filter_map(|p| crate::origin::parse_time(&p.timestamp))
                .collect();
            *unapplied = times.iter().min().copied();
            let changes = self.changes(&payloads).await?;
            report.payloads += payloads.len();
            report.changes += changes.len();
            let outcomes = if changes.is_empty() {
                Vec::new()
            } else {
                inner.cache.apply_changes(changes).await?
            };
            let counts = ChangeCounts::of(&outcomes);
            if counts.failed > 0 {
                inner.status.applied(&outcomes, None, None);
                return Err(FeedError::Retry(usize::try_from(counts.failed).unwrap_or(usize::MAX)));
            }
            for outcome in &outcomes {
                match outcome {
                    cache_core::change::ChangeOutcome::Refused(refusal) => {
                        tracing::debug!(reason = refusal.as_str(), "airtable_feed_change_refused");
                    }
                    cache_core::change::ChangeOutcome::Invalid(err) => {
                        tracing::warn!(error = %err, "airtable_feed_change_invalid");
                    }
                    _ => {}
                }
            }
            report.refused += usize::try_from(counts.refused()).unwrap_or(usize::MAX);
            report.invalid += usize::try_from(counts.invalid).unwrap_or(usize::MAX);
            if page.cursor != cursor || unfollowed {
                if inner.state.set_position(lock, &page.cursor.to_string()).await? == Hold::Lost {
                    return Err(FeedError::LockLost);
                }
                cursor = page.cursor;
                unfollowed = false;
            }
            *unapplied = None;
            if payloads.is_empty() {
                inner.status.position(&cursor.to_string());
            } else {
                inner
                    .status
                    .applied(&outcomes, Some(&cursor.to_string()), times.iter().max().copied());
            }
            if !page.might_have_more {
                inner.status.checked(Backlog::Exactly(0), None, looked);
                if report.payloads > 0 {
                    tracing::debug!(
                        webhook = %inner.config.webhook_id,
                        payloads = report.payloads,
                        changes = report.changes,
                        cursor,
                        "airtable_feed_applied"
                    );
                }
                return Ok(report);
            }
        }
        // The round's page bound: more wait, from after the last payload applied.
        inner.status.checked(Backlog::AtLeastOne, None, SystemTime::now());
        report.more = true;
        Ok(report)
    }

    /// The payloads' changes in order: created and changed records read whole (a payload has
    /// cells by field id, or none), deletes at the payload's time.
    async fn changes(&self, payloads: &[Payload]) -> Result<Vec<Change>, FeedError> {
        // Read every created or changed record once, per entity, in batches.
        let mut wanted: HashMap<&'static str, (&'static EntitySchema, Vec<RecordId>)> = HashMap::new();
        for payload in payloads {
            for (table, changes) in &payload.changed_tables_by_id {
                let Some(entity) = self.entity_of(table).await? else {
                    continue;
                };
                let ids = changes
                    .created_records_by_id
                    .keys()
                    .chain(changes.changed_records_by_id.keys());
                let entry = wanted.entry(entity.entity).or_insert_with(|| (entity, Vec::new()));
                for id in ids {
                    if let Ok(id) = RecordId::new(id) {
                        entry.1.push(id);
                    }
                }
            }
        }
        let mut records = HashMap::new();
        for (entity, mut ids) in wanted.into_values() {
            let mut seen = HashSet::new();
            ids.retain(|id| seen.insert(id.clone()));
            if ids.is_empty() {
                continue;
            }
            let fetched = cache_core::origin::Origin::fetch_many(&self.inner.origin, entity, &ids).await?;
            for record in fetched {
                records.insert((entity.entity, record.id.clone()), record);
            }
        }
        let mut changes = Vec::new();
        for payload in payloads {
            let at = crate::origin::parse_time(&payload.timestamp);
            for (table, table_changes) in &payload.changed_tables_by_id {
                let Some(entity) = self.entity_of(table).await? else {
                    continue;
                };
                let upserted = table_changes
                    .created_records_by_id
                    .keys()
                    .chain(table_changes.changed_records_by_id.keys());
                for id in upserted {
                    let Ok(id) = RecordId::new(id) else { continue };
                    // Gone since: a later payload deletes it.
                    let Some(record) = records.get(&(entity.entity, id)) else {
                        continue;
                    };
                    changes.push(with_at(Change::upsert(entity, record.clone()), at));
                }
                for id in &table_changes.destroyed_record_ids {
                    let Ok(id) = RecordId::new(id) else { continue };
                    changes.push(with_at(Change::delete(entity, id), at));
                }
            }
        }
        Ok(changes)
    }

    /// The registered entity a table id belongs to; the base's schema is read once, and again
    /// for a table not seen before.
    async fn entity_of(&self, table_id: &str) -> Result<Option<&'static EntitySchema>, FeedError> {
        if let Some(known) = lock(&self.inner.tables).get(table_id) {
            return Ok(*known);
        }
        self.load_tables().await?;
        // Bounded: the base's tables, plus this one if the base does not list it.
        let entity = *lock(&self.inner.tables).entry(table_id.to_owned()).or_insert(None);
        Ok(entity)
    }

    /// Reads the base's tables, and which registered entity each is (one request).
    async fn load_tables(&self) -> Result<Vec<&'static EntitySchema>, FeedError> {
        let tables = self.inner.origin.client().list_tables().await?;
        let mut map = lock(&self.inner.tables);
        map.clear();
        let mut served = Vec::new();
        for table in tables {
            let entity = self
                .inner
                .cache
                .entities()
                .iter()
                .map(|handle| handle.schema())
                .find(|schema| {
                    let source = self.inner.origin.table_of(schema);
                    source == table.id || source == table.name
                });
            if let Some(entity) = entity
                && !served.iter().any(|e: &&EntitySchema| e.entity == entity.entity)
            {
                served.push(entity);
            }
            map.insert(table.id, entity);
        }
        Ok(served)
    }

    /// Checks every cached record of the base's entities against Airtable, for when the feed
    /// cannot know what changed (`reason`: `payloads_lost`, `webhook_gone`, `no_cursor`): the
    /// cached ids are read again, [`RESYNC_BATCH`] a request (as the sweep checks them, but
    /// with their cells, so that one request both finds the deleted and refreshes the
    /// changed). A record Airtable has is cached as it is now; one it no longer has is removed
    /// with a tombstone. Both go through `Cache::apply_changes`. The entities' complete query
    /// results and computed values are dropped too: a record created meanwhile is in none of
    /// them. Reported to the feed status and logged as `airtable_feed_resync`.
    ///
    /// It reads about `cached records / 100` pages within the base's rate limit: 10,000 cached
    /// records take some 20 s at 5 requests a second. Run by a round, it renews the feed's lock
    /// before each request and before applying what it read, so a longer resync keeps the feed
    /// (and stops with [`FeedError::LockLost`] if it stalled past the lock). Called directly, it
    /// takes no lock.
    pub async fn resync(&self, reason: &str) -> Result<FeedResync, FeedError> {
        self.resync_held(reason, None).await
    }

    /// Renews `lock` (a round's; `None` outside a round: nothing to renew), or stops with
    /// [`FeedError::LockLost`] when it lapsed.
    async fn keep(&self, lock: Option<&FeedLock>) -> Result<(), FeedError> {
        match lock {
            Some(lock) if self.inner.state.extend(lock).await? == Hold::Lost => Err(FeedError::LockLost),
            _ => Ok(()),
        }
    }

    /// [`WebhookFeed::resync`], renewing `lock` (the round's) before each request and before
    /// applying what it read.
    async fn resync_held(&self, reason: &str, lock: Option<&FeedLock>) -> Result<FeedResync, FeedError> {
        let inner = &self.inner;
        let started = Instant::now();
        let mut resync = FeedResync::new(reason);
        for entity in self.load_tables().await? {
            resync.entities.push(entity.entity);
            let ids: Vec<RecordId> = {
                let mut seen = HashSet::new();
                let mut scan = inner.cache.store().scan_ids(entity, RESYNC_BATCH);
                let mut ids = Vec::new();
                while let Some(batch) = scan.next().await {
                    // A networked store's scan may answer an id twice.
                    ids.extend(batch?.into_iter().filter(|id| seen.insert(id.clone())));
                }
                ids
            };
            for chunk in ids.chunks(RESYNC_BATCH) {
                self.keep(lock).await?;
                let fetched = cache_core::origin::Origin::fetch_many(&inner.origin, entity, chunk).await?;
                // Again before applying: the request may have waited out rate limits and
                // retries for longer than the lock, and what it read is applied unordered.
                self.keep(lock).await?;
                let mut found: HashMap<RecordId, SourceRecord> =
                    fetched.into_iter().map(|r| (r.id.clone(), r)).collect();
                let mut changes = Vec::with_capacity(chunk.len() * 2);
                let now = SystemTime::now();
                for id in chunk {
                    match found.remove(id) {
                        // Forgotten first: that drops the entity's complete query results.
                        Some(record) => {
                            changes.push(Change::invalidate(entity, id.clone()));
                            changes.push(Change::upsert(entity, record));
                            resync.refreshed += 1;
                        }
                        // Airtable did not have it now: a change of it from before is refused.
                        None => {
                            changes.push(Change::delete(entity, id.clone()).at(now));
                            resync.removed += 1;
                        }
                    }
                }
                let outcomes = inner.cache.apply_changes(changes).await?;
                let retry = outcomes.iter().filter(|o| o.should_retry()).count();
                if retry > 0 {
                    return Err(FeedError::Retry(retry));
                }
                resync.checked += chunk.len() as u64;
            }
            inner.cache.invalidate_tags([keys::entity_tag(entity.entity)]).await?;
        }
        resync.elapsed = started.elapsed();
        resync.at = SystemTime::now();
        // A resync that found nothing cached (a first start on an empty cache) is routine;
        // one that had to check records means changes may have been missed meanwhile.
        if resync.checked == 0 {
            tracing::info!(
                base = %inner.origin.client().base_id(),
                webhook = %inner.config.webhook_id,
                reason,
                checked = 0,
                "airtable_feed_resync"
            );
        } else {
            tracing::warn!(
                base = %inner.origin.client().base_id(),
                webhook = %inner.config.webhook_id,
                reason,
                checked = resync.checked,
                refreshed = resync.refreshed,
                removed = resync.removed,
                "airtable_feed_resync"
            );
        }
        inner.status.resynced(resync.clone());
        Ok(resync)
    }
}

fn with_at(change: Change, at: Option<SystemTime>) -> Change {
    match at {
        Some(at) => change.at(at),
        None => change,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn notification(State(feed): State<WebhookFeed>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mac = headers.get(MAC_HEADER).and_then(|v| v.to_str().ok());
    if !feed.verify(mac, &body) {
        tracing::debug!("airtable_notification_refused");
        return StatusCode::UNAUTHORIZED;
    }
    feed.inner.notifications.fetch_add(1, Ordering::Relaxed);
    feed.wake();
    StatusCode::NO_CONTENT
}
