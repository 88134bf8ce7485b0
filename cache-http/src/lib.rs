//! axum/tower integration for model-cache: what a web application puts in front of its
//! handlers and next to its routes.
//!
//! - [`CacheTelemetryLayer`]: per-request telemetry, reported as `X-Cache` and
//!   `X-Origin-Calls` headers.
//! - [`ResponseCacheLayer`]: whole `GET` responses cached in the store, purged by the record
//!   writes they depend on, with `ETag` and `304 Not Modified`.
//! - [`webhook::routes`]: `POST /webhooks/airtable`, the source telling the cache what changed.
//! - [`admin::routes`]: statistics, flushing and the schema, behind a bearer token.
//! - [`dashboard`]: the operator's page at `GET /admin/`, for a person with the admin token.
//! - [`metrics::routes`]: `GET /metrics` for Prometheus.
//!
//! The crate is generic over the [`Store`](cache_core::store::Store): it works over Redis, Valkey or
//! the in-memory store alike.
#![warn(missing_docs)]

pub mod admin;
pub mod dashboard;
mod error;
pub mod metrics;
pub mod response_cache;
mod secret;
pub mod telemetry;
pub mod webhook;

pub use error::ConfigError;
pub use response_cache::ResponseCacheLayer;
pub use secret::{MIN_SECRET_LEN, Secret, SecretError, generate_secret};
pub use telemetry::{CacheStatus, CacheTelemetryLayer};
