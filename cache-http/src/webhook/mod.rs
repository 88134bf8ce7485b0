//! The webhook router: the source (an Airtable automation, a database trigger) tells the cache
//! what changed, and the cache upserts or tombstones the record without asking the origin.
//!
//! | route | what |
//! |---|---|
//! | `POST /webhooks/airtable` | one [`WebhookPayload`], authenticated by `X-Airtable-Secret` |
//! | `GET /webhooks/airtable/schema` | the payload's JSON Schema |
//! | `GET /webhooks/health` | `200` when the store answers, `503` when it does not |
//!
//! Statuses: `200` applied or acknowledged (`"applied": false` with a `reason` for stale and
//! duplicate-older deliveries), `401` wrong or missing secret (nothing is read or changed),
//! `415` not JSON, `413` body over the limit, `400` malformed JSON or an unknown table, `422`
//! a payload or record that does not parse (with its `path`), `503` the store failed. Every
//! error body is JSON: `{"error": "...", ...}`.
//!
//! Ordering: a delivery is one change on the cache's one ordered change path
//! ([`Cache::apply_changes`], see [`cache_core::change`]), timed by its `timestamp`: each
//! record's deliveries are applied in timestamp order across every instance sharing the store
//! (an older one is acknowledged as `stale` without a write; an equal one applies again, so a
//! delivery answered `503` is retried as it was); a delete leaves a tombstone that refuses
//! any later delivery of the record's earlier state (`deleted`); a delivery whose write a newer
//! one overtook forgets the record, so that the next read asks the source. Timestamps are
//! compared to the microsecond; a delivery whose record does not parse (`422`) claims nothing.
//!
//! ```
//! use axum::Router;
//! use cache_core::Cache;
//! use cache_http::webhook::{self, WebhookConfig};
//!
//! fn app(cache: Cache, secret: String) -> Result<Router, cache_http::ConfigError> {
//!     Ok(Router::new().merge(webhook::routes(WebhookConfig::new(cache, secret))?))
//! }
//! ```

mod payload;

use std::{
    sync::Arc,
    time::{Instant, SystemTime},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use cache_core::{
    Cache, CacheError, RecordId,
    change::{Change, ChangeOutcome},
    log_limit::WarnLimit,
    origin::SourceRecord,
    schema::ModelError,
};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Serialize, de::IgnoredAny};
use serde_json::{Value, json};

pub use self::payload::{WebhookAction, WebhookPayload, payload_schema};
use crate::{
    ConfigError, Secret,
    dashboard::{DeliveryEvent, DeliveryLog},
    error::ApiError,
    metrics::WEBHOOK_DELIVERIES_TOTAL,
};

/// The default path of the webhook.
pub const DEFAULT_PATH: &str = "/webhooks/airtable";
/// The default header carrying the secret.
pub const DEFAULT_SECRET_HEADER: HeaderName = HeaderName::from_static("x-airtable-secret");
/// The default largest body accepted: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The webhook's configuration. The secret is checked when the router is built:
/// [`routes`] refuses an empty or short one.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    cache: Cache,
    secret: String,
    secret_header: HeaderName,
    path: String,
    max_body_bytes: usize,
    deliveries: Option<DeliveryLog>,
}

impl WebhookConfig {
    /// Deliveries for `cache`'s registered models, authenticated by `secret` (generate one
    /// with [`generate_secret`](crate::generate_secret)).
    pub fn new(cache: Cache, secret: impl Into<String>) -> Self {
        Self {
            cache,
            secret: secret.into(),
            secret_header: DEFAULT_SECRET_HEADER,
            path: DEFAULT_PATH.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            deliveries: None,
        }
    }

    /// The header carrying the secret (default `X-Airtable-Secret`).
    pub fn secret_header(mut self, name: HeaderName) -> Self {
        self.secret_header = name;
        self
    }

    /// The path deliveries are posted to (default [`DEFAULT_PATH`]). The schema is served at
    /// `{path}/schema` and the health check at `health` next to the path's last segment.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// The largest body accepted (default [`DEFAULT_MAX_BODY_BYTES`]); larger ones get `413`.
    pub fn max_body_bytes(mut self, max: usize) -> Self {
        self.max_body_bytes = max;
        self
    }

    /// Reports every delivery and its outcome to `log` (the
    /// [dashboard's](crate::dashboard::Dashboard::delivery_log)).
    pub fn deliveries(mut self, log: DeliveryLog) -> Self {
        self.deliveries = Some(log);
        self
    }
}

/// The webhook router: see the [module docs](self). Fails when the secret is missing or
/// shorter than [`MIN_SECRET_LEN`](crate::MIN_SECRET_LEN), or the path is not absolute.
pub fn routes<S>(config: WebhookConfig) -> Result<Router<S>, ConfigError>
where
    S: Clone + Send + Sync + 'static,
{
    let receiver = WebhookReceiver::new(config)?;
    let path = receiver.path.clone();
    let health = match path.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/health"),
        None => "/health".to_owned(),
    };
    Ok(Router::new()
        .route(&path, post(receive))
        .route(&format!("{path}/schema"), get(schema))
        .route(&health, get(health_check))
        .with_state(Arc::new(receiver)))
}

async fn receive(State(receiver): State<Arc<WebhookReceiver>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match receiver.receive(&parts.headers, body).await {
        Ok(delivery) => Json(delivery).into_response(),
        Err(err) => {
            let unread = err.leaves_body_unread();
            let mut response = ApiError::from(err).into_response();
            if unread {
                // The rest of the body is still on the connection: a client keeping it alive
                // must not send its next request after it.
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    }
}

async fn schema() -> Json<Value> {
    Json(payload_schema())
}

async fn health_check(State(receiver): State<Arc<WebhookReceiver>>) -> Response {
    match receiver.cache.store().ping().await {
        Ok(()) => Json(json!({ "status": "ok", "store": "ok" })).into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "unavailable", "store": "unavailable", "error": err.to_string() })),
        )
            .into_response(),
    }
}

/// What a delivery did: the `200` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// Whether the cache was changed.
    pub applied: bool,
    /// Why not, when it was not: `stale` (a newer delivery for the record came first, or the
    /// cache holds a newer version), `deleted` (the source deleted the record after this
    /// state of it), `disabled` (the cache is off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The entity the table maps to.
    pub entity: &'static str,
    /// The record.
    pub record_id: String,
    /// `upsert` or `delete`.
    pub action: &'static str,
}

/// Why a delivery was rejected. Each maps to a status code and a JSON body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The secret header is missing or wrong: `401`.
    #[error("missing or wrong webhook secret")]
    Unauthorized,
    /// The body is not declared as JSON: `415`.
    #[error("the body must be JSON (Content-Type: application/json), not {0:?}")]
    UnsupportedMediaType(String),
    /// The body is over the limit: `413`.
    #[error("the body is over the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read, or is not JSON: `400`.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// The payload is JSON but not a [`WebhookPayload`]: `422`.
    #[error("invalid payload at `{path}`: {reason}")]
    InvalidPayload {
        /// Where (`timestamp`, `record_id`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// No registered model reads this table: `400`.
    #[error("unknown table `{table}`")]
    UnknownTable {
        /// The table named by the payload.
        table: String,
        /// The tables that are known.
        known: Vec<&'static str>,
    },
    /// The record does not parse as the model: `422`.
    #[error("invalid {entity} record at `{path}`: {reason}")]
    InvalidRecord {
        /// The entity.
        entity: &'static str,
        /// Where (`record.points`).
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The store failed; the sender should retry: `503`.
    #[error("the cache store failed; retry the delivery")]
    StoreFailed,
    /// Any other failure: `500`.
    #[error("webhook failed: {0}")]
    Internal(String),
}

impl WebhookError {
    /// The status code answered.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Malformed(_) | Self::UnknownTable { .. } => StatusCode::BAD_REQUEST,
            Self::InvalidPayload { .. } | Self::InvalidRecord { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::StoreFailed => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the delivery was refused before its body was read (wholly): the connection
    /// cannot carry another request.
    fn leaves_body_unread(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized | Self::UnsupportedMediaType(_) | Self::TooLarge { .. }
        )
    }

    /// The `outcome` label of the deliveries metric.
    fn outcome(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooLarge { .. } => "too_large",
            Self::Malformed(_) => "malformed",
            Self::InvalidPayload { .. } => "invalid_payload",
            Self::UnknownTable { .. } => "unknown_table",
            Self::InvalidRecord { .. } => "invalid_record",
            Self::StoreFailed | Self::Internal(_) => "error",
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        let status = err.status();
        let message = err.to_string();
        match err {
            WebhookError::Unauthorized => ApiError::new(status, message),
            WebhookError::TooLarge { limit } => ApiError::new(status, message).with("limit", limit),
            WebhookError::UnknownTable { table, known } => ApiError::new(status, message)
                .with("table", table)
                .with("known_tables", known),
            WebhookError::InvalidPayload { path, reason } => {
                ApiError::new(status, message).with("path", path).with("reason", reason)
            }
            WebhookError::InvalidRecord { entity, path, reason } => ApiError::new(status, message)
                .with("entity", entity)
                .with("path", path)
                .with("reason", reason),
            _ => ApiError::new(status, message),
        }
    }
}

/// Applies webhook deliveries to a cache: what the router's handler calls, usable from a
/// handler of your own.
#[derive(Debug)]
pub struct WebhookReceiver {
    cache: Cache,
    secret: Secret,
    secret_header: HeaderName,
    path: String,
    max_body_bytes: usize,
    deliveries: Option<DeliveryLog>,
}

impl WebhookReceiver {
    /// Checks the configuration (secret, path) and builds the receiver.
    pub fn new(config: WebhookConfig) -> Result<Self, ConfigError> {
        let secret = Secret::new("webhook secret", &config.secret)?;
        if !config.path.starts_with('/') || config.path.len() < 2 {
            return Err(ConfigError::Path {
                path: config.path,
                reason: "it must start with `/` and name a resource",
            });
        }
        Ok(Self {
            cache: config.cache,
            secret,
            secret_header: config.secret_header,
            path: config.path,
            max_body_bytes: config.max_body_bytes,
            deliveries: config.deliveries,
        })
    }

    /// Authenticates, reads and applies one delivery.
    pub async fn receive(&self, headers: &HeaderMap, body: Body) -> Result<Delivery, WebhookError> {
        let result = self.receive_inner(headers, body).await;
        match &result {
            Ok(delivery) => {
                let outcome = delivery.reason.unwrap_or("applied");
                metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "outcome" => outcome).increment(1);
                if let Some(log) = &self.deliveries {
                    log.record(
                        DeliveryEvent::new("webhook", outcome)
                            .entity(delivery.entity)
                            .record(delivery.record_id.clone())
                            .detail(delivery.action),
                    );
                }
            }
            Err(err) => {
                metrics::counter!(WEBHOOK_DELIVERIES_TOTAL, "outcome" => err.outcome()).increment(1);
                if let Some(log) = &self.deliveries {
                    log.record(DeliveryEvent::new("webhook", err.outcome()).detail(err.to_string()));
                }
                // Counted always; logged at most once a window, so that a flood of bad
                // deliveries does not flood the logs.
                static REJECTED: WarnLimit = WarnLimit::new();
                if let Some(held_back) = REJECTED.admit(Instant::now()) {
                    tracing::warn!(
                        status = err.status().as_u16(),
                        reason = err.outcome(),
                        error = %err,
                        held_back,
                        "webhook_rejected"
                    );
                }
            }
        }
        result
    }

    async fn receive_inner(&self, headers: &HeaderMap, body: Body) -> Result<Delivery, WebhookError> {
        self.authenticate(headers)?;
        check_json_content_type(headers)?;
        let bytes = read_body(headers, body, self.max_body_bytes).await?;
        let payload = parse_payload(&bytes)?;
        self.apply(payload).await
    }

    /// Whether the headers carry the secret (compared in constant time).
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), WebhookError> {
        match headers.get(&self.secret_header) {
            Some(value) if self.secret.matches(value.as_bytes()) => Ok(()),
            _ => Err(WebhookError::Unauthorized),
        }
    }

    /// Applies a delivery already authenticated and parsed: upserts the record, or removes it
    /// leaving a tombstone, unless a newer delivery for the record was applied already.
    pub async fn apply(&self, payload: WebhookPayload) -> Result<Delivery, WebhookError> {
        let registry = self.cache.entities();
        let handle = *registry
            .by_source_table(&payload.table)
            .ok_or_else(|| WebhookError::UnknownTable {
                table: payload.table.clone(),
                known: registry.iter().map(|h| h.schema().source_table).collect(),
            })?;
        let entity = handle.schema().entity;
        let id = RecordId::new(&payload.record_id).map_err(|err| WebhookError::InvalidPayload {
            path: "record_id".to_owned(),
            reason: err.to_string(),
        })?;
        let action = payload.action;
        let delivery = |applied: bool, reason: Option<&'static str>| Delivery {
            applied,
            reason,
            entity,
            record_id: id.as_str().to_owned(),
            action: action.as_str(),
        };
        let schema = handle.schema();
        let change = match action {
            WebhookAction::Upsert => {
                let record = source_record(entity, &id, payload.record)?;
                // A record that does not parse is refused before it claims its timestamp, so
                // a bad delivery cannot hold back the record's later ones.
                handle
                    .check_source(&record)
                    .map_err(|err| invalid_record(entity, err))?;
                Change::upsert(schema, record)
            }
            WebhookAction::Delete => Change::delete(schema, id.clone()),
        };
        let change = change.at(SystemTime::from(payload.timestamp));
        let outcome = self.cache.apply_change(change).await.map_err(|err| match err {
            CacheError::Model(err) => invalid_record(entity, err),
            other => WebhookError::Internal(other.to_string()),
        })?;
        match outcome {
            ChangeOutcome::Applied => {
                tracing::info!(entity, id = %id, action = action.as_str(), "webhook_applied");
                Ok(delivery(true, None))
            }
            ChangeOutcome::Refused(refusal) => {
                tracing::info!(
                    entity,
                    id = %id,
                    timestamp = %payload.timestamp,
                    reason = ?refusal,
                    "webhook_stale"
                );
                Ok(delivery(false, Some(refusal.as_str())))
            }
            ChangeOutcome::Disabled => Ok(delivery(false, Some("disabled"))),
            ChangeOutcome::Invalid(err) => Err(invalid_record(entity, err)),
            outcome if outcome.should_retry() => Err(WebhookError::StoreFailed),
            other => Err(WebhookError::Internal(format!("unexpected change outcome {other:?}"))),
        }
    }
}

/// The record of an upsert in its source shape: `record` without its `id`, which must be
/// `record_id` when present.
fn source_record(
    entity: &'static str,
    id: &RecordId,
    record: Option<serde_json::Map<String, Value>>,
) -> Result<SourceRecord, WebhookError> {
    let Some(mut fields) = record else {
        return Err(WebhookError::InvalidPayload {
            path: "record".to_owned(),
            reason: "an upsert needs the record".to_owned(),
        });
    };
    match fields.remove("id") {
        None => {}
        Some(Value::String(inner)) if inner == id.as_str() => {}
        Some(other) => {
            return Err(WebhookError::InvalidRecord {
                entity,
                path: "record.id".to_owned(),
                reason: format!("must equal record_id {:?}, found {other}", id.as_str()),
            });
        }
    }
    Ok(SourceRecord { id: id.clone(), fields })
}

/// `application/json` or any `application/*+json`, with or without parameters.
fn check_json_content_type(headers: &HeaderMap) -> Result<(), WebhookError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let json = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(WebhookError::UnsupportedMediaType(value))
    }
}

async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, WebhookError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(WebhookError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(WebhookError::TooLarge { limit }),
        Err(err) => Err(WebhookError::Malformed(format!("the body could not be read: {err}"))),
    }
}

/// Syntax errors are `400`; JSON of the wrong shape is `422` with the path of the problem.
/// The body is parsed once, straight into the payload.
fn parse_payload(bytes: &[u8]) -> Result<WebhookPayload, WebhookError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let payload = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let err = err.into_inner();
        // Valid JSON of the wrong shape is 422, whatever serde_json calls the error (a wrong
        // enum value is a "syntax" error to it); a body malformed anywhere is 400. Checking
        // costs a second pass, but only for a body that is refused anyway.
        if serde_json::from_slice::<IgnoredAny>(bytes).is_ok() {
            WebhookError::InvalidPayload {
                path,
                reason: err.to_string(),
            }
        } else {
            WebhookError::Malformed(err.to_string())
        }
    })?;
    de.end().map_err(|err| WebhookError::Malformed(err.to_string()))?;
    Ok(payload)
}

/// A record that does not parse as its model: 422 with the field's path.
fn invalid_record(entity: &'static str, err: ModelError) -> WebhookError {
    match err {
        ModelError::Field { field, reason, .. } => WebhookError::InvalidRecord {
            entity,
            path: format!("record.{field}"),
            reason,
        },
        other => WebhookError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            check_json_content_type(&h)
        };
        assert!(with("application/json").is_ok());
        assert!(with("Application/JSON; charset=utf-8").is_ok());
        assert!(with("application/vnd.airtable+json").is_ok());
        assert!(matches!(with("text/plain"), Err(WebhookError::UnsupportedMediaType(_))));
        assert!(check_json_content_type(&HeaderMap::new()).is_err());
    }

    #[test]
    fn payload_errors_say_where() {
        assert!(matches!(parse_payload(b"{not json"), Err(WebhookError::Malformed(_))));
        assert!(matches!(parse_payload(b"{} trailing"), Err(WebhookError::Malformed(_))));
        assert!(matches!(
            parse_payload(br#"{"table": 5, "#),
            Err(WebhookError::Malformed(_))
        ));
        let err =
            parse_payload(br#"{"table": "Projects", "record_id": "recP1", "timestamp": "yesterday"}"#).unwrap_err();
        match err {
            WebhookError::InvalidPayload { path, reason } => {
                assert_eq!(path, "timestamp");
                // Parsed from the body itself, not from a `Value` copy of it.
                assert!(reason.contains("line 1 column"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_payload(br#"{"table": "Projects", "record_id": 5} trailing"#),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn a_wrong_action_is_a_wrong_shape_not_malformed_json() {
        for action in ["null", "5", "[]", "\"upsertt\""] {
            let body = format!(
                r#"{{"table": "Projects", "record_id": "recE1", "timestamp": "2026-01-01T00:00:00Z", "action": {action}}}"#
            );
            match parse_payload(body.as_bytes()) {
                Err(WebhookError::InvalidPayload { path, .. }) => assert_eq!(path, "action", "{action}"),
                other => panic!("{action}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_field_given_twice_is_refused() {
        // A `Value` keeps the last of the two: which one the sender meant is not ours to guess.
        let err = parse_payload(
            br#"{"table": "Projects", "table": "Events", "record_id": "recP1", "timestamp": "2025-01-01T00:00:00Z"}"#,
        )
        .unwrap_err();
        match err {
            WebhookError::InvalidPayload { reason, .. } => assert!(reason.contains("duplicate field"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn record_id_must_agree() {
        let id = RecordId::new("recP1").unwrap();
        let mut fields = serde_json::Map::new();
        fields.insert("id".into(), json!("recP2"));
        assert!(matches!(
            source_record("projects", &id, Some(fields)),
            Err(WebhookError::InvalidRecord { .. })
        ));
        let mut fields = serde_json::Map::new();
        fields.insert("id".into(), json!("recP1"));
        fields.insert("Name".into(), json!("x"));
        let record = source_record("projects", &id, Some(fields)).unwrap();
        assert!(!record.fields.contains_key("id"));
        assert!(source_record("projects", &id, None).is_err());
    }
}
