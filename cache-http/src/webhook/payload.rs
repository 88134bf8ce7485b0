//! The webhook payload: what the sender (an Airtable automation, a database trigger) posts.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One change to one record, as posted to `POST /webhooks/airtable`.
///
/// ```json
/// {
///   "table": "Projects",
///   "record_id": "recP1",
///   "timestamp": "2025-01-01T00:00:00Z",
///   "record": {"id": "recP1", "Name": "Rover", "event_id": ["recE1"], "points": 12}
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(
    title = "model-cache webhook payload",
    description = "One change to one record at the source, posted to the model-cache webhook."
)]
pub struct WebhookPayload {
    /// The table at the source (`Projects`); matched against each registered model's
    /// `source_table`.
    pub table: String,
    /// The id of the record that changed.
    pub record_id: String,
    /// When the change happened at the source (RFC 3339). Deliveries are applied in this
    /// order per record: one older than the last applied is acknowledged and ignored.
    pub timestamp: DateTime<Utc>,
    /// `upsert` (the default) or `delete`.
    #[serde(default)]
    pub action: WebhookAction,
    /// The record in its source shape: fields keyed by source field name, links as arrays of
    /// record ids (`["recE1"]`), and optionally its `id` (which must equal `record_id`).
    /// Required for `upsert`, ignored for `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Map<String, Value>>,
}

/// What happened to the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAction {
    /// The record was created or changed: `record` is its new state.
    #[default]
    Upsert,
    /// The record was deleted at the source.
    Delete,
}

impl WebhookAction {
    /// The action's name in payloads and responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Delete => "delete",
        }
    }
}

/// The JSON Schema (2020-12) of [`WebhookPayload`], as served at
/// `GET /webhooks/airtable/schema`.
pub fn payload_schema() -> Value {
    schemars::schema_for!(WebhookPayload).to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shape() {
        let payload: WebhookPayload = serde_json::from_value(serde_json::json!({
            "table": "Projects",
            "record_id": "recP1",
            "timestamp": "2025-01-01T00:00:00Z",
            "record": {"id": "recP1", "event_id": ["recE1"]}
        }))
        .unwrap();
        assert_eq!(payload.action, WebhookAction::Upsert);
        assert_eq!(payload.timestamp.timestamp(), 1_735_689_600);
        let delete: WebhookPayload = serde_json::from_value(serde_json::json!({
            "table": "Projects", "record_id": "recP1", "timestamp": "2025-01-01T01:00:00+01:00",
            "action": "delete"
        }))
        .unwrap();
        assert_eq!(delete.action, WebhookAction::Delete);
        assert_eq!(delete.timestamp, payload.timestamp);
        assert!(delete.record.is_none());
    }

    #[test]
    fn schema_describes_every_field() {
        let schema = payload_schema();
        let props = schema["properties"].as_object().unwrap();
        for field in ["table", "record_id", "timestamp", "action", "record"] {
            assert!(props.contains_key(field), "{field} missing from {schema:#}");
        }
        assert_eq!(props["timestamp"]["format"], "date-time");
        let required: Vec<_> = schema["required"].as_array().unwrap().iter().collect();
        assert_eq!(required, ["table", "record_id", "timestamp"]);
    }
}
