//! Airtable's webhooks API: the base's webhooks and their payloads (the client side; the
//! consumer is [`crate::WebhookFeed`]).

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{AirtableClient, AirtableError};

/// A webhook just created: keep its id and secret (Airtable shows the secret only once).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CreatedWebhook {
    /// `achXXXXXXXXXXXXXX`.
    pub id: String,
    /// The key of the notifications' MAC, base64.
    #[serde(rename = "macSecretBase64")]
    pub mac_secret_base64: String,
    /// When the webhook expires unless refreshed (7 days).
    #[serde(rename = "expirationTime", default)]
    pub expiration_time: Option<String>,
}

/// A webhook of the base, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookInfo {
    /// `achXXXXXXXXXXXXXX`.
    pub id: String,
    /// Where notifications go, if anywhere.
    #[serde(default)]
    pub notification_url: Option<String>,
    /// The cursor of the next payload the webhook will produce.
    #[serde(default)]
    pub cursor_for_next_payload: u64,
    /// Whether the webhook records payloads.
    #[serde(default)]
    pub is_hook_enabled: bool,
    /// Whether notifications are sent.
    #[serde(default)]
    pub are_notifications_enabled: bool,
    /// When it expires unless refreshed.
    #[serde(default)]
    pub expiration_time: Option<String>,
}

/// One page of a webhook's payloads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadPage {
    /// The payloads from the asked cursor on, oldest first.
    pub payloads: Vec<Payload>,
    /// The cursor to ask from next.
    pub cursor: u64,
    /// Whether more payloads wait after this page.
    #[serde(default)]
    pub might_have_more: bool,
}

/// One transaction of the base, as a webhook saw it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// When it happened (ISO 8601), by Airtable's clock.
    pub timestamp: String,
    /// The base's transaction number: payloads are in its order.
    pub base_transaction_number: u64,
    /// The changed records, by table id.
    #[serde(default)]
    pub changed_tables_by_id: BTreeMap<String, TableChanges>,
}

/// The record changes of one table in one payload.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableChanges {
    /// Created records (their cells, by field id, when the webhook asked for them).
    #[serde(default)]
    pub created_records_by_id: BTreeMap<String, Value>,
    /// Changed records.
    #[serde(default)]
    pub changed_records_by_id: BTreeMap<String, Value>,
    /// Deleted records.
    #[serde(default)]
    pub destroyed_record_ids: Vec<String>,
}

impl AirtableClient {
    /// `POST /v0/bases/{base}/webhooks`: a webhook on the base's record data (`tableData`),
    /// notifying `notification_url` (none: payloads are only polled).
    pub async fn create_webhook(&self, notification_url: Option<&str>) -> Result<CreatedWebhook, AirtableError> {
        let body = json!({
            "notificationUrl": notification_url,
            "specification": { "options": { "filters": { "dataTypes": ["tableData"] } } },
        });
        let url = self.url(&["bases", self.base_id(), "webhooks"]);
        self.send("create_webhook", Method::POST, url, Some(&body)).await
    }

    /// `GET /v0/bases/{base}/webhooks`.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookInfo>, AirtableError> {
        #[derive(Deserialize)]
        struct Answer {
            webhooks: Vec<WebhookInfo>,
        }
        let url = self.url(&["bases", self.base_id(), "webhooks"]);
        let answer: Answer = self.send("list_webhooks", Method::GET, url, None).await?;
        Ok(answer.webhooks)
    }

    /// `POST /v0/bases/{base}/webhooks/{id}/refresh`: 7 more days; answers the new expiry.
    pub async fn refresh_webhook(&self, id: &str) -> Result<Option<String>, AirtableError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(rename = "expirationTime", default)]
            expiration_time: Option<String>,
        }
        let url = self.url(&["bases", self.base_id(), "webhooks", id, "refresh"]);
        let answer: Answer = self.send("refresh_webhook", Method::POST, url, None).await?;
        Ok(answer.expiration_time)
    }

    /// `DELETE /v0/bases/{base}/webhooks/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), AirtableError> {
        let url = self.url(&["bases", self.base_id(), "webhooks", id]);
        let _: Value = self.send("delete_webhook", Method::DELETE, url, None).await?;
        Ok(())
    }

    /// `GET /v0/bases/{base}/webhooks/{id}/payloads?cursor=…`: the payloads from `cursor` on.
    pub async fn list_payloads(&self, id: &str, cursor: u64) -> Result<PayloadPage, AirtableError> {
        let mut url = self.url(&["bases", self.base_id(), "webhooks", id, "payloads"]);
        url.query_pairs_mut().append_pair("cursor", &cursor.to_string());
        self.send("list_payloads", Method::GET, url, None).await
    }
}
