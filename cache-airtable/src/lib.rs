//! Airtable as the source of truth for model-cache: [`AirtableOrigin`] reads a base within
//! Airtable's limits, [`WebhookFeed`] keeps the cache current from the base's webhooks API,
//! and [`testing::Simulator`] (feature `testing`) stands in for Airtable in tests and offline.
//!
//! - [`AirtableClient`] is a thin typed client over `reqwest`, one function per endpoint,
//!   Airtable's error bodies decoded into [`AirtableError`]. Its limits live in one place: at
//!   most 5 requests a second to the base (configurable lower, shared by every clone of the
//!   client), a 30 s pause of the base after a 429 (calls wait or fail fast,
//!   [`OnRateLimit`]), retries with exponential backoff for 5xx answers and timeouts, batches
//!   of at most 10 records, and URLs of at most 16,000 characters (a longer list request is
//!   sent as `POST …/listRecords`).
//! - [`AirtableOrigin`] implements `cache_core::origin::Origin`: tables from each model's
//!   `source_table` (or [`AirtableOrigin::with_table`]), fields by their source names, formula
//!   values escaped by [`formula`].
//! - [`WebhookFeed`] serves the notification route (MAC checked in constant time), reads the
//!   webhook's payloads from a cursor kept in the cache's store, and applies them through
//!   `Cache::apply_changes`; it refreshes the webhook before its 7-day expiry and, when it
//!   cannot know what changed (payloads lost, the webhook gone), resyncs the base's cached
//!   records against Airtable. It reports its progress to the cache's feed status
//!   (`Cache::feeds`): cursor, lag, whether more payloads wait, outcomes.
//!
//! HTTPS (Airtable's own API) needs the `tls` feature.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use cache_airtable::{AirtableClient, AirtableConfig, AirtableOrigin, FeedConfig, WebhookFeed};
//! use cache_core::{Cache, Cacheable, MemoryStore, RecordId};
//!
//! #[derive(Cacheable, Clone, Debug)]
//! #[cache(entity = "projects", source_table = "Projects")]
//! struct Project {
//!     #[cache(id)]
//!     id: RecordId,
//!     name: String,
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // One client per base: the origin and the feed share its rate limit.
//! let client = AirtableClient::new(
//!     AirtableConfig::new("appXXXXXXXXXXXXXX", std::env::var("AIRTABLE_TOKEN")?)
//!         .requests_per_second(4), // another process shares the base
//! )?;
//! let origin = AirtableOrigin::new(client.clone());
//! let cache = Cache::builder(MemoryStore::new(), origin.clone()).register::<Project>().build()?;
//!
//! // Once, at setup: keep the id and the secret (Airtable shows the secret only now).
//! let webhook = client.create_webhook(Some("https://example.com/airtable/notifications")).await?;
//! let feed = WebhookFeed::new(cache.clone(), origin, FeedConfig::new(webhook.id, webhook.mac_secret_base64))?;
//!
//! let app: axum::Router = feed.routes("/airtable/notifications");
//! # let _ = app;
//! tokio::spawn({
//!     let feed = feed.clone();
//!     async move { feed.run(std::future::pending()).await }
//! });
//!
//! let project = cache.get::<Project>(&"recProject0000001".parse()?).await?;
//! # let _ = (project, Duration::ZERO);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod client;
mod error;
mod feed;
pub mod formula;
mod origin;
#[cfg(feature = "testing")]
pub mod testing;
mod webhooks;

pub use client::{
    AIRTABLE_API_URL, AirtableClient, AirtableConfig, DEFAULT_REQUESTS_PER_SECOND, Direction, ListRecords,
    MAX_PAGE_SIZE, MAX_RECORDS_PER_BATCH, MAX_URL_LEN, OnRateLimit, Page, RATE_LIMIT_PAUSE, Record, SortBy, TableInfo,
};
pub use error::AirtableError;
pub use feed::{FeedConfig, FeedError, MAC_HEADER, RESYNC_BATCH, RoundReport, WebhookFeed};
pub use origin::AirtableOrigin;
pub use webhooks::{CreatedWebhook, Payload, PayloadPage, TableChanges, WebhookInfo};
