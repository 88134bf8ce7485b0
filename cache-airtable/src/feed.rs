//! The change feed on Airtable's webhooks API: a notification route that checks
//! `X-Airtable-Content-MAC` and wakes the consumer, and the consumer that reads the webhook's
//! payloads from a cursor kept in the cache's store and hands them, in
//! `baseTransactionNumber` order, to the cache's one change path.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use base64::Engine;
use cache_core::{Cache, CacheError, Change, EntitySchema, RecordId, StoreError, feed::FeedState};
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
    Origin(#[from] cache_core::OriginError),
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
    /// entities were invalidated; create a webhook again
    /// ([`AirtableClient::create_webhook`](crate::AirtableClient::create_webhook)).
    #[error("the webhook {0} is gone (expired or deleted); the base's cached records were invalidated")]
    WebhookGone(String),
    /// The configuration is unusable.
    #[error("invalid feed configuration: {0}")]
    Config(String),
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
    /// How long one consumer holds the feed at most per round.
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
    /// Payloads were lost (older than Airtable keeps them): the base's entities were
    /// invalidated.
    pub resynced: bool,
    /// More payloads wait (the round stopped at its page bound).
    pub more: bool,
}

/// The webhooks-API change feed of one base. Cheap to clone.
#[derive(Clone)]
pub struct WebhookFeed {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Cache,
    origin: AirtableOrigin,
    state: FeedState,
    config: FeedConfig,
    mac_secret: Vec<u8>,
    wake: Notify,
    notifications: AtomicU64,
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
        Ok(Self {
            inner: Arc::new(Inner {
                state: FeedState::new(&cache, name),
                cache,
                origin,
                config,
                mac_secret,
                wake: Notify::new(),
                notifications: AtomicU64::new(0),
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

    /// One round: takes the feed (unless another consumer holds it), reads the payloads after
    /// the stored cursor, applies them, and moves the cursor after each applied page.
    pub async fn round(&self) -> Result<RoundReport, FeedError> {
        let Some(lock) = self.inner.state.try_lock(self.inner.config.lock_ttl).await? else {
            return Ok(RoundReport {
                busy: true,
                ..RoundReport::default()
            });
        };
        let result = self.consume(&lock).await;
        // The lock lapses by itself if this fails; the cursor is what matters.
        if let Err(err) = self.inner.state.unlock(lock).await {
            tracing::warn!(error = %err, "airtable_feed_unlock_failed");
        }
        result
    }

    async fn consume(&self, lock: &cache_core::feed::FeedLock) -> Result<RoundReport, FeedError> {
        let inner = &self.inner;
        let client = inner.origin.client();
        let mut report = RoundReport::default();
        let mut cursor = match inner.state.position().await? {
            Some(position) => position.parse::<u64>().unwrap_or(1),
            None => 1,
        };
        for _ in 0..inner.config.max_pages_per_round {
            let page = match client.list_payloads(&inner.config.webhook_id, cursor).await {
                Ok(page) => page,
                Err(err) if err.status() == Some(404) => {
                    tracing::error!(webhook = %inner.config.webhook_id, "airtable_feed_webhook_gone");
                    self.invalidate_base().await?;
                    return Err(FeedError::WebhookGone(inner.config.webhook_id.clone()));
                }
                Err(err) => return Err(err.into()),
            };
            // Airtable keeps payloads 7 days: a page that starts past the asked cursor means
            // some were dropped, and with them changes the cache never heard of.
            let skipped = page.cursor.saturating_sub(cursor) > page.payloads.len() as u64;
            if skipped {
                tracing::error!(
                    webhook = %inner.config.webhook_id,
                    cursor,
                    next = page.cursor,
                    "airtable_feed_payloads_lost"
                );
                self.invalidate_base().await?;
                report.resynced = true;
            }
            let mut payloads = page.payloads;
            payloads.sort_by_key(|p| p.base_transaction_number);
            let changes = self.changes(&payloads).await?;
            report.payloads += payloads.len();
            report.changes += changes.len();
            if !changes.is_empty() {
                metrics::counter!("airtable_feed_changes_total").increment(changes.len() as u64);
                let outcomes = inner.cache.apply_changes(changes).await?;
                let retry = outcomes.iter().filter(|o| o.should_retry()).count();
                if retry > 0 {
                    return Err(FeedError::Retry(retry));
                }
                for outcome in &outcomes {
                    match outcome {
                        cache_core::ChangeOutcome::Refused(refusal) => {
                            report.refused += 1;
                            tracing::debug!(reason = refusal.as_str(), "airtable_feed_change_refused");
                        }
                        cache_core::ChangeOutcome::Invalid(err) => {
                            report.invalid += 1;
                            tracing::warn!(error = %err, "airtable_feed_change_invalid");
                        }
                        _ => {}
                    }
                }
            }
            if page.cursor != cursor {
                inner.state.set_position(lock, &page.cursor.to_string()).await?;
                cursor = page.cursor;
            }
            if !page.might_have_more {
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
            let fetched = cache_core::Origin::fetch_many(&self.inner.origin, entity, &ids).await?;
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
        let tables = self.inner.origin.client().list_tables().await?;
        let mut map = lock(&self.inner.tables);
        map.clear();
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
            map.insert(table.id, entity);
        }
        // Bounded: the base's tables, plus this one if the base does not list it.
        let entity = *map.entry(table_id.to_owned()).or_insert(None);
        Ok(entity)
    }

    /// Invalidates every cached record of the entities this base serves: after lost
    /// payloads, the next read of each asks Airtable.
    async fn invalidate_base(&self) -> Result<(), FeedError> {
        let inner = &self.inner;
        let mut invalidated = 0usize;
        let entities: Vec<&'static EntitySchema> = inner.cache.entities().iter().map(|h| h.schema()).collect();
        for entity in entities {
            let ids: Vec<RecordId> = {
                let mut scan = inner.cache.store().scan_ids(entity, 500);
                let mut ids = Vec::new();
                while let Some(batch) = scan.next().await {
                    ids.extend(batch?);
                }
                ids
            };
            for chunk in ids.chunks(500) {
                let changes = chunk.iter().map(|id| Change::invalidate(entity, id.clone())).collect();
                let outcomes = inner.cache.apply_changes(changes).await?;
                let retry = outcomes.iter().filter(|o| o.should_retry()).count();
                if retry > 0 {
                    return Err(FeedError::Retry(retry));
                }
                invalidated += chunk.len();
            }
        }
        tracing::warn!(
            base = %inner.origin.client().base_id(),
            webhook = %inner.config.webhook_id,
            invalidated,
            "airtable_feed_resync"
        );
        metrics::counter!("airtable_feed_resyncs_total").increment(1);
        Ok(())
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
